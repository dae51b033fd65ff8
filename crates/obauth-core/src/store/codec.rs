//! The bytes a durable store keeps for a [`TokenRecord`]: JSON, or that JSON sealed with
//! AES-256-GCM under a key you supply.
//!
//! Sealed bytes are `OBAUTHS1` (8 bytes), a random 96-bit nonce, then the ciphertext and its
//! 128-bit tag. The [`StoreKey`] is the associated data, so a sealed record copied under
//! another key does not open. Reading a record sealed under another key, a tampered one, a
//! sealed one without a key, or a plain one while a key is set is a
//! [`StoreErrorKind::Sealed`] error; a record that is not a record at all is
//! [`StoreErrorKind::Corrupt`]. Nothing here panics on any input.
//!
//! The cipher comes from the crypto library the binding already links: aws-lc-rs (feature
//! `aws-lc-rs`, the async binding's) or ring (feature `ring`, the blocking binding's).
//! Without either, sealing is refused with a typed error.
//!
//! Without a key a record is plain JSON: anyone who can read the store reads the tokens.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use obauth_types::{AccessToken, RefreshToken};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{StoreKey, TokenRecord};
use crate::error::{InvalidInput, RandomnessError, StoreError, StoreErrorKind};
use crate::random::RandomSource;

/// The record format this version writes; a higher one was written by a newer obauth.
pub const FORMAT: u32 = 1;

/// The first bytes of a sealed record.
pub const SEALED_MAGIC: &[u8; 8] = b"OBAUTHS1";

#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 256-bit key that seals token records. `Debug` shows nothing of it, and its bytes are
/// wiped when it is dropped.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate(random: &mut dyn RandomSource) -> Result<Self, RandomnessError> {
        let mut key = Self::new([0; 32]);
        random.fill(&mut key.0[..])?;
        Ok(key)
    }

    /// A key written as base64 (standard or URL-safe alphabet, with or without padding;
    /// surrounding white space, such as a key file's last newline, is ignored). It must
    /// decode to exactly 32 bytes. The error never shows the text.
    pub fn from_base64(text: &str) -> Result<Self, InvalidInput> {
        let text = text.trim();
        let lenient = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(false);
        let decoded = Zeroizing::new(
            GeneralPurpose::new(&base64::alphabet::STANDARD, lenient)
                .decode(text)
                .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient).decode(text))
                .map_err(|_| InvalidInput::new("sealing key", "is not base64"))?,
        );
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            InvalidInput::new("sealing key", "must be 32 bytes (44 characters of base64)")
        })?;
        Ok(Self::new(bytes))
    }

    /// The key as standard base64, to write into a key file. It is the secret itself.
    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(&self.0[..]))
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    format: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a AccessToken>,
    obtained_at_ms: u64,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a RefreshToken>,
}

#[derive(Deserialize)]
struct WireIn {
    format: u32,
    #[serde(default)]
    access_token: Option<AccessToken>,
    obtained_at_ms: u64,
    expires_in: u64,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
}

fn corrupt(key: &StoreKey, why: impl Into<Cow<'static, str>>) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("the record of {key} is unreadable: {}", why.into()),
    )
}

fn sealed(key: &StoreKey, why: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Sealed, format!("the record of {key} {why}"))
}

/// The bytes to store for `record` under `key`: sealed when `sealing` is given.
pub fn encode(
    record: &TokenRecord,
    key: &StoreKey,
    sealing: Option<&SealingKey>,
    random: &mut dyn RandomSource,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let millis = record
        .obtained_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let wire = WireOut {
        format: FORMAT,
        access_token: record.access_token.as_ref(),
        obtained_at_ms: u64::try_from(millis).unwrap_or(u64::MAX),
        expires_in: record.expires_in,
        refresh_token: record.refresh_token.as_ref(),
    };
    // Sized so that serde_json never reallocates (which would leave an unwiped copy of the
    // tokens behind): JSON escaping at most doubles a token's length.
    let tokens = record
        .access_token
        .as_ref()
        .map_or(0, |t| t.expose_secret().len())
        + record
            .refresh_token
            .as_ref()
            .map_or(0, |t| t.expose_secret().len());
    let mut plain = Zeroizing::new(Vec::with_capacity(256 + 2 * tokens + TAG_LEN));
    serde_json::to_writer(&mut *plain, &wire)
        .map_err(|error| corrupt(key, format!("it could not be encoded: {error}")))?;
    match sealing {
        None => Ok(plain),
        Some(sealing) => seal(sealing, key, plain, random),
    }
}

/// Reads the bytes a store kept for `key`.
pub fn decode(
    bytes: &[u8],
    key: &StoreKey,
    sealing: Option<&SealingKey>,
) -> Result<TokenRecord, StoreError> {
    let opened;
    let plain: &[u8] = match (bytes.strip_prefix(SEALED_MAGIC), sealing) {
        (Some(_), None) => {
            return Err(sealed(key, "is sealed, and no sealing key was given"));
        }
        (Some(body), Some(sealing)) => {
            opened = open(sealing, key, body)?;
            &opened
        }
        // Whatever the bytes are (JSON after a byte of whitespace parses as well as JSON):
        // with a key, only a sealed record is read.
        (None, Some(_)) => {
            return Err(sealed(
                key,
                "is not sealed, but a sealing key is set: it may have been planted; \
                 delete it or open the store without the key",
            ));
        }
        (None, _) => bytes,
    };
    let wire: WireIn = serde_json::from_slice(plain)
        .map_err(|error| corrupt(key, crate::redact::describe_serde_error(&error)))?;
    if wire.format != FORMAT {
        return Err(corrupt(
            key,
            format!(
                "format {} (this obauth reads format {FORMAT}; a newer one wrote it)",
                wire.format
            ),
        ));
    }
    let obtained_at = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(wire.obtained_at_ms))
        .ok_or_else(|| corrupt(key, "its time is out of range"))?;
    Ok(TokenRecord {
        access_token: wire.access_token.filter(|token| !token.is_empty()),
        obtained_at,
        expires_in: wire.expires_in,
        refresh_token: wire.refresh_token.filter(|token| !token.is_empty()),
    })
}

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::aead;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring::aead;

#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
fn cipher(sealing: &SealingKey) -> aead::LessSafeKey {
    // A 32-byte key is what AES-256-GCM takes: this cannot fail, but is not unwrapped.
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, &sealing.0[..]);
    aead::LessSafeKey::new(key.unwrap_or_else(|_| unreachable!("AES-256 takes 32-byte keys")))
}

#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
fn seal(
    sealing: &SealingKey,
    key: &StoreKey,
    mut plain: Zeroizing<Vec<u8>>,
    random: &mut dyn RandomSource,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|error| {
        StoreError::with_source(StoreErrorKind::Other, "no randomness for the nonce", error)
    })?;
    cipher(sealing)
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(key.as_str().as_bytes()),
            &mut *plain,
        )
        .map_err(|_| sealed(key, "could not be sealed"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        SEALED_MAGIC.len() + NONCE_LEN + plain.len(),
    ));
    out.extend_from_slice(SEALED_MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plain);
    Ok(out)
}

#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
fn open(
    sealing: &SealingKey,
    key: &StoreKey,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(sealed(key, "is sealed but cut short"));
    }
    let (nonce, sealed_text) = body.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| sealed(key, "is sealed but cut short"))?;
    let mut buffer = Zeroizing::new(sealed_text.to_vec());
    let length = cipher(sealing)
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(key.as_str().as_bytes()),
            &mut buffer[..],
        )
        .map_err(|_| {
            sealed(
                key,
                "does not open with this sealing key: sealed under another key, or tampered with",
            )
        })?
        .len();
    buffer.truncate(length);
    Ok(buffer)
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn no_backend(key: &StoreKey) -> StoreError {
    sealed(
        key,
        "cannot be sealed or opened: obauth-core was built without a cipher \
         (enable its `ring` or `aws-lc-rs` feature)",
    )
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn seal(
    _: &SealingKey,
    key: &StoreKey,
    _: Zeroizing<Vec<u8>>,
    _: &mut dyn RandomSource,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    Err(no_backend(key))
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn open(_: &SealingKey, key: &StoreKey, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    Err(no_backend(key))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE;

    use super::*;
    use crate::random::OsRandom;

    fn key() -> StoreKey {
        StoreKey::user(
            "https://a/token",
            "id",
            "client_secret_post",
            &super::super::ConnectionName::new("alice").unwrap(),
        )
    }

    fn record() -> TokenRecord {
        TokenRecord {
            access_token: Some(AccessToken::new("access-\"quoted\"-secret")),
            obtained_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            expires_in: 3600,
            refresh_token: Some(RefreshToken::new("refresh-secret")),
        }
    }

    #[test]
    fn plain_records_round_trip() {
        let bytes = encode(&record(), &key(), None, &mut OsRandom).unwrap();
        assert!(bytes.starts_with(b"{\"format\":1,"));
        assert_eq!(decode(&bytes, &key(), None).unwrap(), record());
        let bare = TokenRecord {
            access_token: None,
            refresh_token: None,
            ..record()
        };
        let bytes = encode(&bare, &key(), None, &mut OsRandom).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("token"));
        assert_eq!(decode(&bytes, &key(), None).unwrap(), bare);
    }

    #[test]
    fn unreadable_records_are_typed_errors() {
        let kind = |bytes: &[u8]| decode(bytes, &key(), None).unwrap_err().kind();
        assert_eq!(kind(b""), StoreErrorKind::Corrupt);
        assert_eq!(kind(b"{\"format\":1,"), StoreErrorKind::Corrupt);
        assert_eq!(kind(&[0xff; 40]), StoreErrorKind::Corrupt);
        let newer = br#"{"format":2,"obtained_at_ms":0,"expires_in":1}"#;
        let error = decode(newer, &key(), None).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Corrupt);
        assert!(error.to_string().contains("newer"), "{error}");
        let wrong_type = br#"{"format":1,"obtained_at_ms":0,"expires_in":"secret-ish"}"#;
        let error = decode(wrong_type, &key(), None).unwrap_err();
        assert!(!error.to_string().contains("secret-ish"), "{error}");
        let far = br#"{"format":1,"obtained_at_ms":18446744073709551615,"expires_in":1}"#;
        // Either representable or refused: never a panic.
        let _ = decode(far, &key(), None);
    }

    #[test]
    fn keys_parse_from_base64_and_never_show() {
        let key = SealingKey::generate(&mut OsRandom).unwrap();
        let text = key.expose_base64();
        assert_eq!(text.len(), 44);
        let back = SealingKey::from_base64(&format!("  {}\n", &*text)).unwrap();
        assert_eq!(back.0[..], key.0[..]);
        let url_safe = URL_SAFE.encode(&key.0[..]);
        assert_eq!(
            SealingKey::from_base64(url_safe.trim_end_matches('='))
                .unwrap()
                .0[..],
            key.0[..]
        );
        assert_eq!(format!("{key:?}"), "SealingKey(<redacted>)");
        let short = SealingKey::from_base64("c2hvcnQ=").unwrap_err();
        assert!(short.to_string().contains("32 bytes"));
        let junk = SealingKey::from_base64("not base64 at all!").unwrap_err();
        assert!(!junk.to_string().contains("at all"));
    }

    #[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
    mod sealed {
        use super::*;

        #[test]
        fn sealed_records_round_trip_and_hide_the_tokens() {
            let sealing = SealingKey::generate(&mut OsRandom).unwrap();
            let bytes = encode(&record(), &key(), Some(&sealing), &mut OsRandom).unwrap();
            assert!(bytes.starts_with(SEALED_MAGIC));
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("secret") && !text.contains("format"));
            assert_eq!(decode(&bytes, &key(), Some(&sealing)).unwrap(), record());
            // Two seals of one record differ (fresh nonce).
            let again = encode(&record(), &key(), Some(&sealing), &mut OsRandom).unwrap();
            assert_ne!(bytes, again);
        }

        #[test]
        fn wrong_key_tampering_moved_records_and_missing_keys_are_refused() {
            let sealing = SealingKey::generate(&mut OsRandom).unwrap();
            let other = SealingKey::generate(&mut OsRandom).unwrap();
            let bytes = encode(&record(), &key(), Some(&sealing), &mut OsRandom).unwrap();
            let sealed_kind = |bytes: &[u8], under: &StoreKey, with: Option<&SealingKey>| {
                decode(bytes, under, with).unwrap_err().kind()
            };
            assert_eq!(
                sealed_kind(&bytes, &key(), Some(&other)),
                StoreErrorKind::Sealed
            );
            assert_eq!(sealed_kind(&bytes, &key(), None), StoreErrorKind::Sealed);
            let bob = crate::store::ConnectionName::new("bob").unwrap();
            let elsewhere = StoreKey::user("https://a/token", "id", "client_secret_post", &bob);
            assert_eq!(
                sealed_kind(&bytes, &elsewhere, Some(&sealing)),
                StoreErrorKind::Sealed
            );
            for at in [SEALED_MAGIC.len(), SEALED_MAGIC.len() + 13, bytes.len() - 1] {
                let mut tampered = bytes.to_vec();
                tampered[at] ^= 1;
                assert_eq!(
                    sealed_kind(&tampered, &key(), Some(&sealing)),
                    StoreErrorKind::Sealed
                );
            }
            for cut in [SEALED_MAGIC.len(), SEALED_MAGIC.len() + 20, bytes.len() - 1] {
                assert_eq!(
                    sealed_kind(&bytes[..cut], &key(), Some(&sealing)),
                    StoreErrorKind::Sealed
                );
            }
            let plain = encode(&record(), &key(), None, &mut OsRandom).unwrap();
            assert_eq!(
                sealed_kind(&plain, &key(), Some(&sealing)),
                StoreErrorKind::Sealed
            );
            // A planted plain record that does not start with `{` (JSON allows whitespace
            // first) is refused all the same, as is anything else without the seal.
            for prefix in [&b"\n"[..], b" ", b"\t\r\n "] {
                let planted = [prefix, &plain[..]].concat();
                assert!(decode(&planted, &key(), None).is_ok());
                assert_eq!(
                    sealed_kind(&planted, &key(), Some(&sealing)),
                    StoreErrorKind::Sealed
                );
            }
            assert_eq!(
                sealed_kind(b"garbage", &key(), Some(&sealing)),
                StoreErrorKind::Sealed
            );
        }
    }
}
