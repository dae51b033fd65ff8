//! Randomness as an input: the OS source in production, a seeded one in tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::RandomnessError;

/// A source of cryptographically secure random bytes.
///
/// obauth uses it for PKCE verifiers, `state`/`nonce` values and assertion `jti`s. Pass
/// [`OsRandom`] in production; tests pass a deterministic source.
pub trait RandomSource {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomnessError>;
}

/// The operating system's secure random source (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomnessError> {
        getrandom::fill(dest).map_err(|error| RandomnessError {
            code: Some(error.raw_os_error().map_or(0, |code| code.unsigned_abs())),
        })
    }
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomnessError> {
        (**self).fill(dest)
    }
}

/// `bytes` random bytes as unpadded base64url: an opaque token for `state`, `nonce`, `jti`.
pub fn random_token(
    random: &mut dyn RandomSource,
    bytes: usize,
) -> Result<String, RandomnessError> {
    let mut buffer = vec![0u8; bytes];
    random.fill(&mut buffer)?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// A fresh `state` for an auth link: 128 random bits, base64url.
pub fn new_state(random: &mut dyn RandomSource) -> Result<String, RandomnessError> {
    random_token(random, 16)
}

/// A fresh OpenID Connect `nonce`: 128 random bits, base64url.
pub fn new_nonce(random: &mut dyn RandomSource) -> Result<String, RandomnessError> {
    random_token(random, 16)
}

/// A uniformly random `u64`, for retry jitter.
pub fn random_u64(random: &mut dyn RandomSource) -> Result<u64, RandomnessError> {
    let mut bytes = [0u8; 8];
    random.fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_tokens_are_distinct_and_url_safe() {
        let a = new_state(&mut OsRandom).unwrap();
        let b = new_state(&mut OsRandom).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
