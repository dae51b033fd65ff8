//! The RS256 client-assertion JWT (RFC 7523) Worldline accepts instead of a secret.
//!
//! Header `{"alg":"RS256","typ":"JWT","kid":<fingerprint>}`, where `kid` is the upper-case
//! hex SHA-1 fingerprint of the signing certificate's DER; claims `iss` = `sub` = client id,
//! `aud` a single string (default: the realm's issuer URL), `iat`, `exp` (default 60 s
//! later, Keycloak's default maximum) and a fresh random `jti` (Keycloak refuses reuse).
//!
//! The private key is parsed once, when the [`RsaKeySigner`] is made (and checked against
//! the certificate there); each assertion then costs one signature, computed by the RSA
//! library the binding already links for TLS ([`RsaBackend`]). The header is encoded once
//! too. To sign with a key held elsewhere (HSM, KMS), implement [`AssertionSigner`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use obauth_types::ClientAssertion;
use serde::Serialize;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

pub use super::signer::{KeyError, MIN_RSA_BITS, RsaBackend, RsaKeySigner};
use super::signer::{RSA_ENCRYPTION, RsaPublic};
use crate::error::{Error, InvalidInput, SigningError};
use crate::random::{RandomSource, random_token};

/// The default assertion lifetime: 60 s, Keycloak's default maximum.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// The longest lifetime obauth accepts.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Signs client assertions with RS256.
///
/// Implement it to keep the private key in an HSM or a cloud KMS: obauth builds the JWT
/// and hands you only the bytes to sign.
pub trait AssertionSigner: Send + Sync {
    /// The JWS `kid`. For Worldline: the signing certificate's SHA-1 fingerprint,
    /// upper-case hex (see [`SigningCertificate::sha1_fingerprint`]).
    fn key_id(&self) -> &str;

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `signing_input`.
    fn sign_rs256(&self, signing_input: &[u8]) -> Result<Vec<u8>, SigningError>;
}

/// The certificate Worldline registered for the client: its fingerprint is the `kid`, and
/// its public key is what an [`RsaKeySigner`]'s private key must match.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningCertificate {
    fingerprint: String,
    rsa_public: Option<RsaPublic>,
}

impl SigningCertificate {
    /// Reads the first `CERTIFICATE` block of a PEM file (a chain is fine).
    pub fn from_pem(pem: &str) -> Result<Self, InvalidInput> {
        let der = pem_block(pem, &["CERTIFICATE"], "certificate")?.1;
        Self::from_der(&der)
    }

    /// Reads a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, InvalidInput> {
        use der::Decode;
        use x509_cert::certificate::{CertificateInner, Raw};
        // The `Raw` profile reads what RFC 5280 allows and what real CAs issue beside it
        // (negative serial numbers, odd time encodings): only the public key is needed.
        let certificate = CertificateInner::<Raw>::from_der(der)
            .map_err(|_| InvalidInput::new("certificate", "not a DER-encoded X.509 certificate"))?;
        let spki = certificate.tbs_certificate().subject_public_key_info();
        let rsa_public = (spki.algorithm.oid == RSA_ENCRYPTION)
            .then(|| spki.subject_public_key.as_bytes())
            .flatten()
            .and_then(RsaPublic::from_pkcs1_der);
        Ok(Self {
            fingerprint: upper_hex(&Sha1::digest(der)),
            rsa_public,
        })
    }

    /// The certificate's RSA public key; `None` when it holds another kind of key.
    pub(crate) fn rsa_public(&self) -> Option<&RsaPublic> {
        self.rsa_public.as_ref()
    }

    /// The SHA-1 fingerprint of the DER, upper-case hex without separators
    /// (as `openssl x509 -fingerprint -sha1` prints it, less the colons).
    pub fn sha1_fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for SigningCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCertificate")
            .field("sha1_fingerprint", &self.fingerprint)
            .finish()
    }
}

fn check_key_id(key_id: &str) -> Result<(), InvalidInput> {
    if key_id.trim().is_empty() || key_id.chars().any(char::is_control) {
        Err(InvalidInput::new(
            "key id",
            "must be non-empty printable text",
        ))
    } else {
        Ok(())
    }
}

/// How assertions are made: the signer, the audience and the lifetime.
#[derive(Clone)]
pub struct AssertionConfig {
    signer: Arc<dyn AssertionSigner>,
    encoded_header: Arc<str>,
    audience: Option<String>,
    lifetime: Duration,
}

impl AssertionConfig {
    /// Assertions signed by `signer`, with the default audience and lifetime.
    /// Fails if the signer's `kid` is empty or not printable.
    pub fn new(signer: impl AssertionSigner + 'static) -> Result<Self, InvalidInput> {
        Self::from_arc(Arc::new(signer))
    }

    /// The same for a shared signer.
    pub fn from_arc(signer: Arc<dyn AssertionSigner>) -> Result<Self, InvalidInput> {
        check_key_id(signer.key_id())?;
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: "RS256",
            typ: "JWT",
            kid: signer.key_id(),
        })
        .map_err(|_| InvalidInput::new("key id", "could not be encoded"))?;
        Ok(Self {
            encoded_header: URL_SAFE_NO_PAD.encode(header).into(),
            signer,
            audience: None,
            lifetime: DEFAULT_LIFETIME,
        })
    }

    /// Sets `aud` (default: the realm's issuer URL, `{base}/realms/{realm}`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the lifetime (`exp` − `iat`), from 1 s to [`MAX_LIFETIME`].
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self, InvalidInput> {
        if lifetime < Duration::from_secs(1) || lifetime > MAX_LIFETIME {
            return Err(InvalidInput::new(
                "assertion lifetime",
                "must be between 1 second and 1 hour",
            ));
        }
        self.lifetime = lifetime;
        Ok(self)
    }

    /// The configured audience, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The `kid` the assertions carry.
    pub fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    /// Signs one assertion for `client_id` at `now`, with `default_audience` unless an
    /// audience was set, and a `jti` of 128 random bits.
    pub fn sign(
        &self,
        client_id: &str,
        default_audience: &str,
        now: SystemTime,
        random: &mut dyn RandomSource,
    ) -> Result<ClientAssertion, Error> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
            jti: &'a str,
        }
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| Error::invalid("clock", "the time is before 1970"))?
            .as_secs();
        let jti = random_token(random, 16)?;
        let claims = serde_json::to_vec(&Claims {
            iss: client_id,
            sub: client_id,
            aud: self.audience.as_deref().unwrap_or(default_audience),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
            jti: &jti,
        })
        .map_err(|_| Error::invalid("assertion claims", "could not be serialized"))?;

        let mut jwt = String::with_capacity(self.encoded_header.len() + claims.len() * 4 / 3 + 350);
        jwt.push_str(&self.encoded_header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
        let signature = self.signer.sign_rs256(jwt.as_bytes())?;
        if signature.is_empty() {
            return Err(SigningError::new("the signer returned an empty signature").into());
        }
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(ClientAssertion::new(jwt))
    }
}

impl fmt::Debug for AssertionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionConfig")
            .field("key_id", &self.signer.key_id())
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// The first PEM block with one of `labels`: its label and DER bytes.
pub(crate) fn pem_block<'l>(
    pem: &str,
    labels: &[&'l str],
    what: &'static str,
) -> Result<(&'l str, Zeroizing<Vec<u8>>), InvalidInput> {
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..].find("-----").map(|at| at + 11);
        let Some(label_end) = label_end else { break };
        let found = &block[11..label_end];
        let end_marker = format!("-----END {found}-----");
        // The END line is looked for after the BEGIN line: the two may share their dashes
        // (`-----BEGIN X-----END X-----`), and the body lies between them.
        let body_start = label_end + 5;
        let Some(end) = block[body_start..]
            .find(&end_marker)
            .map(|at| at + body_start)
        else {
            break;
        };
        if let Some(label) = labels.iter().find(|label| **label == found) {
            let body = &block[body_start..end];
            return Ok((label, pem_body(body, what)?));
        }
        rest = &block[end + end_marker.len()..];
    }
    Err(InvalidInput::new(
        what,
        match what {
            "certificate" => "no `-----BEGIN CERTIFICATE-----` block found",
            _ => "no `-----BEGIN (RSA) PRIVATE KEY-----` block found",
        },
    ))
}

/// A PEM block's base64 body, as OpenSSL reads it: lines of any length (76 columns, or the
/// whole key on one line, as environment variables and secret stores hand it over), with
/// any white space around them. A body with RFC 1421 headers (`Proc-Type: …`, an old-style
/// encrypted key) is not a key obauth can use.
fn pem_body(body: &str, what: &'static str) -> Result<Zeroizing<Vec<u8>>, InvalidInput> {
    if body.contains(':') {
        return Err(InvalidInput::new(
            what,
            "the PEM block has headers (an encrypted key?); decrypt it first",
        ));
    }
    let text: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let der = lenient
        .decode(text.as_bytes())
        .map_err(|_| InvalidInput::new(what, "the PEM block is not valid base64"))?;
    if der.is_empty() {
        return Err(InvalidInput::new(what, "the PEM block is empty"));
    }
    Ok(Zeroizing::new(der))
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}
