//! PKCE (RFC 7636): verifier generation and the S256 challenge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use obauth_types::CodeVerifier;
use sha2::{Digest, Sha256};

use crate::error::{Error, InvalidInput, RandomnessError};
use crate::random::RandomSource;

/// The verifier length obauth generates by default: 43 characters, 256 bits of entropy
/// (RFC 7636 §7.1's recommendation of a 32-octet random sequence, base64url-encoded).
pub const DEFAULT_VERIFIER_LEN: usize = 43;

/// The characters a verifier may contain: `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
const UNRESERVED: &[u8; 66] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/// A verifier and its S256 challenge. Send the challenge with the auth link; keep the
/// verifier (server-side, tied to the user's session) for the code exchange.
#[derive(Clone, Debug)]
pub struct Pkce {
    verifier: CodeVerifier,
    challenge: String,
}

impl Pkce {
    /// A fresh pair with a [`DEFAULT_VERIFIER_LEN`]-character verifier.
    pub fn generate(random: &mut dyn RandomSource) -> Result<Self, Error> {
        Self::generate_with_len(random, DEFAULT_VERIFIER_LEN)
    }

    /// A fresh pair with a verifier of `len` characters (43 to 128), each drawn uniformly
    /// from the unreserved alphabet.
    pub fn generate_with_len(random: &mut dyn RandomSource, len: usize) -> Result<Self, Error> {
        check_len(len)?;
        let mut verifier = String::with_capacity(len);
        let mut buffer = [0u8; 64];
        // Rejection sampling keeps the draw uniform: 198 = 3 × 66 is the largest multiple
        // of the alphabet size that fits in a byte. A healthy source rejects ~23 % of bytes;
        // one that yields nothing usable in 16 × 64 bytes is broken, not unlucky.
        for _ in 0..16 {
            if verifier.len() == len {
                break;
            }
            random.fill(&mut buffer)?;
            for byte in buffer {
                if byte < 198 && verifier.len() < len {
                    verifier.push(char::from(UNRESERVED[usize::from(byte % 66)]));
                }
            }
        }
        if verifier.len() < len {
            return Err(RandomnessError { code: None }.into());
        }
        Ok(Self::from_verifier(CodeVerifier::new(verifier))?)
    }

    /// The pair for an existing verifier, checked against RFC 7636 §4.1.
    pub fn from_verifier(verifier: CodeVerifier) -> Result<Self, InvalidInput> {
        validate_verifier(&verifier)?;
        let challenge = s256_challenge(&verifier);
        Ok(Self {
            verifier,
            challenge,
        })
    }

    /// The secret verifier, for the token exchange.
    pub fn verifier(&self) -> &CodeVerifier {
        &self.verifier
    }

    /// The challenge, for the auth link (`code_challenge`, with method `S256`).
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// Splits into the verifier and the challenge.
    pub fn into_parts(self) -> (CodeVerifier, String) {
        (self.verifier, self.challenge)
    }
}

/// `BASE64URL(SHA256(ASCII(verifier)))`, RFC 7636 §4.2.
pub fn s256_challenge(verifier: &CodeVerifier) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

/// Checks length (43–128) and alphabet (RFC 7636 §4.1).
pub fn validate_verifier(verifier: &CodeVerifier) -> Result<(), InvalidInput> {
    let value = verifier.expose_secret();
    check_len(value.len())?;
    if value.bytes().all(is_unreserved) {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "code_verifier",
            "may only contain A-Z a-z 0-9 - . _ ~",
        ))
    }
}

/// `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`, without a search through [`UNRESERVED`].
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn check_len(len: usize) -> Result<(), InvalidInput> {
    if (43..=128).contains(&len) {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "code_verifier",
            format!("must be 43 to 128 characters long, not {len}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::OsRandom;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            s256_challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let pair = Pkce::from_verifier(verifier).unwrap();
        assert_eq!(
            pair.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_fresh_and_redacted() {
        let a = Pkce::generate(&mut OsRandom).unwrap();
        let b = Pkce::generate(&mut OsRandom).unwrap();
        assert_eq!(a.verifier().expose_secret().len(), 43);
        assert_ne!(a.verifier().expose_secret(), b.verifier().expose_secret());
        assert!(validate_verifier(a.verifier()).is_ok());
        assert_eq!(a.challenge(), s256_challenge(a.verifier()));
        assert!(!format!("{a:?}").contains(a.verifier().expose_secret()));
        let long = Pkce::generate_with_len(&mut OsRandom, 128).unwrap();
        assert_eq!(long.verifier().expose_secret().len(), 128);
    }

    #[test]
    fn bad_lengths_and_characters_are_refused() {
        assert!(Pkce::generate_with_len(&mut OsRandom, 42).is_err());
        assert!(Pkce::generate_with_len(&mut OsRandom, 129).is_err());
        let error =
            Pkce::from_verifier(CodeVerifier::new(format!("{}+", "a".repeat(42)))).unwrap_err();
        assert_eq!(error.what(), "code_verifier");
        assert!(Pkce::from_verifier(CodeVerifier::new("short")).is_err());
    }

    #[test]
    fn rejection_sampling_skips_biased_bytes() {
        /// Yields 255 (always rejected) then 0..: the verifier must start with 'A'.
        struct Scripted(u8);
        impl RandomSource for Scripted {
            fn fill(&mut self, dest: &mut [u8]) -> Result<(), crate::error::RandomnessError> {
                for byte in dest {
                    *byte = if self.0 == 0 { 255 } else { self.0 - 1 };
                    self.0 = self.0.wrapping_add(1);
                }
                Ok(())
            }
        }
        let pair = Pkce::generate_with_len(&mut Scripted(0), 43).unwrap();
        assert!(pair.verifier().expose_secret().starts_with("ABCD"));

        /// A stuck source: every byte is rejected. Generation must stop, not spin.
        struct Stuck;
        impl RandomSource for Stuck {
            fn fill(&mut self, dest: &mut [u8]) -> Result<(), crate::error::RandomnessError> {
                dest.fill(0xff);
                Ok(())
            }
        }
        assert!(matches!(
            Pkce::generate(&mut Stuck),
            Err(Error::Randomness(_))
        ));
    }
}
