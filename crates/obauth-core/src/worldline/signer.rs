//! In-process RS256 signing: an RSA private key, parsed once, checked against the
//! certificate Worldline registered, and used by one of the RSA libraries compiled in.
//!
//! Backends, chosen by feature of `obauth-core` (each binding turns on the one its TLS
//! stack already links, so signing adds no crypto library):
//!
//! | backend | feature | constant-time private-key operation |
//! |---|---|---|
//! | [`RsaBackend::AwsLcRs`] | `aws-lc-rs` (obauth-async) | yes (AWS-LC) |
//! | [`RsaBackend::Ring`] | `ring` (obauth-blocking) | yes (BoringSSL's code) |
//! | [`RsaBackend::RustCrypto`] | `rsa` (opt-in) | **no**: RUSTSEC-2023-0071 (Marvin) |
//!
//! [`RsaBackend::preferred`] picks the first available in that order.

use std::fmt;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Reader, SliceReader};
use zeroize::Zeroizing;

use super::assertion::{AssertionSigner, SigningCertificate, pem_block};
use crate::error::{InvalidInput, SigningError};

/// The smallest RSA modulus obauth signs with.
pub const MIN_RSA_BITS: usize = 2048;

/// The library that computes an [`RsaKeySigner`]'s signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RsaBackend {
    /// AWS-LC through `aws-lc-rs` (feature `aws-lc-rs`; what obauth-async links for TLS).
    AwsLcRs,
    /// `ring` (feature `ring`; what obauth-blocking links for TLS).
    Ring,
    /// The pure-Rust `rsa` crate (feature `rsa`, opt-in). Its private-key operation is not
    /// constant-time (RUSTSEC-2023-0071, no fixed release): use it only where neither of
    /// the others builds.
    RustCrypto,
}

impl RsaBackend {
    /// Every backend, in order of preference.
    pub const ALL: [RsaBackend; 3] = [Self::AwsLcRs, Self::Ring, Self::RustCrypto];

    /// The first backend compiled in, in the order of [`Self::ALL`]; `None` when none is.
    pub fn preferred() -> Option<Self> {
        Self::ALL.into_iter().find(|backend| backend.is_available())
    }

    /// Whether this build has the backend (its feature of `obauth-core` is on).
    pub fn is_available(self) -> bool {
        match self {
            Self::AwsLcRs => cfg!(feature = "aws-lc-rs"),
            Self::Ring => cfg!(feature = "ring"),
            Self::RustCrypto => cfg!(feature = "rsa"),
        }
    }

    /// The backend's name, as its crate is called.
    pub fn name(self) -> &'static str {
        match self {
            Self::AwsLcRs => "aws-lc-rs",
            Self::Ring => "ring",
            Self::RustCrypto => "rsa",
        }
    }
}

impl fmt::Display for RsaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private key that cannot sign for the client, found when the signer is made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text or bytes are not a private key obauth can read; the input error says why.
    Unreadable(InvalidInput),
    /// The key is RSA but its modulus is shorter than [`MIN_RSA_BITS`].
    TooShort {
        /// The modulus length.
        bits: usize,
    },
    /// The key is not the private half of the certificate's public key: Worldline would
    /// answer every assertion with `invalid_client`.
    DoesNotMatchCertificate,
    /// The certificate's public key is not an RSA key, so RS256 cannot be verified with it.
    CertificateNotRsa,
    /// The backend asked for is not compiled in.
    BackendUnavailable(RsaBackend),
    /// The `kid` is empty or not printable.
    InvalidKeyId,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(input) => input.fmt(f),
            Self::TooShort { bits } => write!(
                f,
                "invalid private key: RSA keys shorter than {MIN_RSA_BITS} bits are refused (this one has {bits})"
            ),
            Self::DoesNotMatchCertificate => f.write_str(
                "invalid private key: it does not belong to the certificate (its public key differs from the certificate's)",
            ),
            Self::CertificateNotRsa => {
                f.write_str("invalid certificate: its public key is not an RSA key")
            }
            Self::BackendUnavailable(backend) => write!(
                f,
                "invalid private key: the {backend} signing backend is not compiled in (feature `{}` of obauth-core)",
                backend.name()
            ),
            Self::InvalidKeyId => f.write_str("invalid key id: must be non-empty printable text"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<InvalidInput> for KeyError {
    fn from(input: InvalidInput) -> Self {
        Self::Unreadable(input)
    }
}

impl From<KeyError> for InvalidInput {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Unreadable(input) => input,
            KeyError::CertificateNotRsa => {
                InvalidInput::new("certificate", "its public key is not an RSA key")
            }
            KeyError::InvalidKeyId => {
                InvalidInput::new("key id", "must be non-empty printable text")
            }
            other => {
                let text = other.to_string();
                let problem = text
                    .strip_prefix("invalid private key: ")
                    .unwrap_or(&text)
                    .to_owned();
                InvalidInput::new("private key", problem)
            }
        }
    }
}

impl From<KeyError> for crate::Error {
    fn from(error: KeyError) -> Self {
        crate::Error::InvalidInput(error.into())
    }
}

/// An RSA public key's modulus and exponent, big-endian without leading zeros.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RsaPublic {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl RsaPublic {
    /// Reads a PKCS#1 `RSAPublicKey` (what an X.509 `subjectPublicKey` holds for
    /// `rsaEncryption`, and what ring and aws-lc-rs give for a key pair's public half).
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Option<Self> {
        #[derive(der::Sequence)]
        struct RsaPublicKey<'a> {
            modulus: UintRef<'a>,
            public_exponent: UintRef<'a>,
        }
        let key = RsaPublicKey::from_der(der).ok()?;
        Some(Self {
            modulus: key.modulus.as_bytes().to_vec(),
            exponent: key.public_exponent.as_bytes().to_vec(),
        })
    }

    /// The public half of a private key: the modulus and exponent that PKCS#1's
    /// `RSAPrivateKey` carries, inside PKCS#8's `PrivateKeyInfo` for that form.
    fn of_private_key(der: &[u8], format: KeyFormat) -> Result<Self, KeyError> {
        let pkcs1 = match format {
            KeyFormat::Pkcs1 => der,
            KeyFormat::Pkcs8 => match pkcs8_inner(der) {
                Ok((algorithm, inner)) if algorithm == RSA_ENCRYPTION => inner,
                Ok(_) => {
                    return Err(KeyError::Unreadable(InvalidInput::new(
                        "private key",
                        "is not an RSA key (RS256 needs one)",
                    )));
                }
                Err(_) => return Err(KeyError::Unreadable(bad_key())),
            },
        };
        rsa_private_key_public_half(pkcs1).map_err(|_| KeyError::Unreadable(bad_key()))
    }

    fn bits(&self) -> usize {
        match self.modulus.first() {
            None => 0,
            Some(first) => (self.modulus.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        }
    }
}

/// `rsaEncryption` (RFC 8017 A.1), the algorithm of RSA keys in PKCS#8 and X.509.
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` (RFC 5958): the algorithm and the inner
/// private key's bytes. Attributes and a public key after it are skipped.
fn pkcs8_inner(der: &[u8]) -> der::Result<(ObjectIdentifier, &[u8])> {
    let mut reader = SliceReader::new(der)?;
    let inner = reader.sequence(|reader| {
        let _version = UintRef::decode(reader)?;
        let algorithm = reader.sequence(|reader| {
            let oid = ObjectIdentifier::decode(reader)?;
            let _parameters = Option::<AnyRef<'_>>::decode(reader)?;
            Ok::<_, der::Error>(oid)
        })?;
        let key = <&OctetStringRef>::decode(reader)?;
        reader.read_slice(reader.remaining_len())?;
        Ok::<_, der::Error>((algorithm, key.as_bytes()))
    })?;
    reader.finish()?;
    Ok(inner)
}

/// PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2): its modulus and public exponent.
fn rsa_private_key_public_half(der: &[u8]) -> der::Result<RsaPublic> {
    let mut reader = SliceReader::new(der)?;
    let public = reader.sequence(|reader| {
        let _version = UintRef::decode(reader)?;
        let modulus = UintRef::decode(reader)?;
        let exponent = UintRef::decode(reader)?;
        reader.read_slice(reader.remaining_len())?;
        Ok::<_, der::Error>(RsaPublic {
            modulus: modulus.as_bytes().to_vec(),
            exponent: exponent.as_bytes().to_vec(),
        })
    })?;
    reader.finish()?;
    Ok(public)
}

/// The forms a private key comes in.
#[derive(Clone, Copy)]
enum KeyFormat {
    /// PKCS#8 `PrivateKeyInfo` (`-----BEGIN PRIVATE KEY-----`).
    Pkcs8,
    /// PKCS#1 `RSAPrivateKey` (`-----BEGIN RSA PRIVATE KEY-----`).
    Pkcs1,
}

/// A parsed private key, in the backend that signs with it.
// One per signer, made once and never moved on a hot path: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Key {
    #[cfg(feature = "aws-lc-rs")]
    AwsLcRs(aws_lc_rs::signature::RsaKeyPair),
    #[cfg(feature = "ring")]
    Ring(ring::signature::RsaKeyPair),
    #[cfg(feature = "rsa")]
    RustCrypto(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
}

impl Key {
    #[cfg_attr(
        not(any(feature = "aws-lc-rs", feature = "ring", feature = "rsa")),
        allow(unused_variables)
    )]
    fn parse(backend: RsaBackend, der: &[u8], format: KeyFormat) -> Result<Self, KeyError> {
        // The backend's own words may describe the key; obauth's never do.
        let unreadable = || KeyError::Unreadable(bad_key());
        match backend {
            #[cfg(feature = "aws-lc-rs")]
            RsaBackend::AwsLcRs => {
                use aws_lc_rs::signature::RsaKeyPair;
                match format {
                    KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(der),
                    KeyFormat::Pkcs1 => RsaKeyPair::from_der(der),
                }
                .map(Key::AwsLcRs)
                .map_err(|_| unreadable())
            }
            #[cfg(feature = "ring")]
            RsaBackend::Ring => {
                use ring::signature::RsaKeyPair;
                match format {
                    KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(der),
                    KeyFormat::Pkcs1 => RsaKeyPair::from_der(der),
                }
                .map(Key::Ring)
                .map_err(|_| unreadable())
            }
            #[cfg(feature = "rsa")]
            RsaBackend::RustCrypto => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let key = match format {
                    KeyFormat::Pkcs8 => rsa::PrivateKey::from_pkcs8_der(der).ok(),
                    KeyFormat::Pkcs1 => rsa::PrivateKey::from_pkcs1_der(der).ok(),
                };
                key.map(|key| Key::RustCrypto(rsa::pkcs1v15::SigningKey::new(key)))
                    .ok_or_else(unreadable)
            }
            #[allow(unreachable_patterns)]
            other => Err(KeyError::BackendUnavailable(other)),
        }
    }

    #[cfg_attr(
        not(any(feature = "aws-lc-rs", feature = "ring", feature = "rsa")),
        allow(unused_variables)
    )]
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SigningError> {
        let failed = || SigningError::new("the RSA signature operation failed");
        match self {
            #[cfg(feature = "aws-lc-rs")]
            Key::AwsLcRs(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(|_| failed())?;
                Ok(signature)
            }
            #[cfg(feature = "ring")]
            Key::Ring(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(|_| failed())?;
                Ok(signature)
            }
            #[cfg(feature = "rsa")]
            Key::RustCrypto(key) => {
                use rsa::signature::{SignatureEncoding, Signer};
                // Blinded with the OS random source, never the caller's `RandomSource`.
                key.try_sign(input)
                    .map(|signature| signature.to_vec())
                    .map_err(|_| failed())
            }
            #[allow(unreachable_patterns)]
            _ => Err(failed()),
        }
    }
}

/// An RSA private key, parsed once, that signs assertions in-process with one of the
/// [`RsaBackend`]s compiled in.
///
/// Made from a key and the certificate Worldline registered for it, the signer checks
/// that the key is RSA of at least [`MIN_RSA_BITS`] bits and is the private half of the
/// certificate's public key: a wrong key is a [`KeyError`] here, not an `invalid_client`
/// from the server later.
pub struct RsaKeySigner {
    key: Key,
    key_id: String,
    backend: RsaBackend,
}

impl RsaKeySigner {
    /// Parses a PEM private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`), checks
    /// it against `certificate` and uses the certificate's fingerprint as `kid`. Signs with
    /// [`RsaBackend::preferred`].
    pub fn from_pem(
        private_key_pem: &str,
        certificate: &SigningCertificate,
    ) -> Result<Self, KeyError> {
        Self::from_pem_using(preferred()?, private_key_pem, certificate)
    }

    /// The same with a chosen backend.
    pub fn from_pem_using(
        backend: RsaBackend,
        private_key_pem: &str,
        certificate: &SigningCertificate,
    ) -> Result<Self, KeyError> {
        let (der, format) = pem_key(private_key_pem)?;
        Self::parse(
            backend,
            &der,
            format,
            certificate.sha1_fingerprint(),
            Some(certificate),
        )
    }

    /// A PEM private key with an explicit `kid` and no certificate to check it against
    /// (its size is still checked). Prefer [`Self::from_pem`] where the certificate is at
    /// hand.
    pub fn from_pem_with_key_id(private_key_pem: &str, key_id: &str) -> Result<Self, KeyError> {
        let (der, format) = pem_key(private_key_pem)?;
        Self::parse(preferred()?, &der, format, key_id, None)
    }

    /// Parses a DER private key, PKCS#8 or PKCS#1, and checks it against `certificate`.
    pub fn from_der(der: &[u8], certificate: &SigningCertificate) -> Result<Self, KeyError> {
        Self::from_der_using(preferred()?, der, certificate)
    }

    /// The same with a chosen backend.
    pub fn from_der_using(
        backend: RsaBackend,
        der: &[u8],
        certificate: &SigningCertificate,
    ) -> Result<Self, KeyError> {
        let kid = certificate.sha1_fingerprint();
        Self::parse(backend, der, KeyFormat::Pkcs8, kid, Some(certificate)).or_else(|pkcs8| {
            match Self::parse(backend, der, KeyFormat::Pkcs1, kid, Some(certificate)) {
                Err(KeyError::Unreadable(_)) => Err(pkcs8),
                other => other,
            }
        })
    }

    /// The backend that signs.
    pub fn backend(&self) -> RsaBackend {
        self.backend
    }

    fn parse(
        backend: RsaBackend,
        der: &[u8],
        format: KeyFormat,
        key_id: &str,
        certificate: Option<&SigningCertificate>,
    ) -> Result<Self, KeyError> {
        if key_id.trim().is_empty() || key_id.chars().any(char::is_control) {
            return Err(KeyError::InvalidKeyId);
        }
        if !backend.is_available() {
            return Err(KeyError::BackendUnavailable(backend));
        }
        // The size and the match are checked on the key's own encoding, the same way
        // whichever backend then parses it.
        let public = RsaPublic::of_private_key(der, format)?;
        if public.bits() < MIN_RSA_BITS {
            return Err(KeyError::TooShort {
                bits: public.bits(),
            });
        }
        if let Some(certificate) = certificate {
            match certificate.rsa_public() {
                None => return Err(KeyError::CertificateNotRsa),
                Some(expected) if *expected != public => {
                    return Err(KeyError::DoesNotMatchCertificate);
                }
                Some(_) => {}
            }
        }
        let key = Key::parse(backend, der, format)?;
        // A key whose private half is corrupted (a CRT value changed) can still parse, and
        // then fails every signature: the backends check each signature against the public
        // key. One signature now makes that an error here, before any request.
        key.sign(b"obauth: can this key sign?").map_err(|_| {
            KeyError::Unreadable(InvalidInput::new(
                "private key",
                "cannot sign: its private part does not fit its public part (a corrupted key?)",
            ))
        })?;
        Ok(Self {
            key,
            key_id: key_id.to_owned(),
            backend,
        })
    }
}

fn preferred() -> Result<RsaBackend, KeyError> {
    // With no backend compiled in, name the one the bindings would have turned on.
    RsaBackend::preferred().ok_or(KeyError::BackendUnavailable(RsaBackend::AwsLcRs))
}

/// A PEM private key's DER and form.
fn pem_key(pem: &str) -> Result<(Zeroizing<Vec<u8>>, KeyFormat), KeyError> {
    let (label, der) = pem_block(
        pem,
        &["RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"],
        "private key",
    )?;
    match label {
        "RSA PRIVATE KEY" => Ok((der, KeyFormat::Pkcs1)),
        "PRIVATE KEY" => Ok((der, KeyFormat::Pkcs8)),
        _ => Err(KeyError::Unreadable(InvalidInput::new(
            "private key",
            "is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)",
        ))),
    }
}

fn bad_key() -> InvalidInput {
    InvalidInput::new("private key", "not a readable RSA private key")
}

impl AssertionSigner for RsaKeySigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn sign_rs256(&self, signing_input: &[u8]) -> Result<Vec<u8>, SigningError> {
        self.key.sign(signing_input)
    }
}

impl fmt::Debug for RsaKeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeySigner")
            .field("key_id", &self.key_id)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_the_modulus_without_leading_zeros() {
        let public = |modulus: &[u8]| RsaPublic {
            modulus: modulus.to_vec(),
            exponent: vec![1, 0, 1],
        };
        assert_eq!(public(&[]).bits(), 0);
        assert_eq!(public(&[1]).bits(), 1);
        assert_eq!(public(&[0x80, 0]).bits(), 16);
        assert_eq!(public(&[0x7f, 0, 0]).bits(), 23);
    }

    #[test]
    fn a_pkcs1_public_key_is_read_and_garbage_is_not() {
        // SEQUENCE { INTEGER 0x00C5 (leading zero for the sign), INTEGER 65537 }
        let der = [
            0x30, 0x09, 0x02, 0x02, 0x00, 0xc5, 0x02, 0x03, 0x01, 0x00, 0x01,
        ];
        let public = RsaPublic::from_pkcs1_der(&der).unwrap();
        assert_eq!(public.modulus, [0xc5]);
        assert_eq!(public.exponent, [1, 0, 1]);
        assert!(RsaPublic::from_pkcs1_der(&der[..5]).is_none());
        assert!(RsaPublic::from_pkcs1_der(&[0x04, 0x00]).is_none());
    }

    #[test]
    fn preference_follows_the_order_of_all() {
        let available: Vec<RsaBackend> = RsaBackend::ALL
            .into_iter()
            .filter(|backend| backend.is_available())
            .collect();
        assert_eq!(RsaBackend::preferred(), available.first().copied());
    }
}
