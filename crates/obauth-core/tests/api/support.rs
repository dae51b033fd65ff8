//! Shared test helpers.

use std::sync::OnceLock;
use std::time::SystemTime;

use http::{Request, Response, StatusCode};
use obauth_core::error::RandomnessError;
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::types::ClientSecret;
use obauth_core::{BaseUrl, Operation, RandomSource, RequestContext};
use rsa::PrivateKey;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/",
            $path
        ))
    };
}
pub(crate) use fixture;

/// A deterministic "random" source: 0, 1, 2, … so requests are reproducible.
pub(crate) struct Counter(pub u8);

impl RandomSource for Counter {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomnessError> {
        for byte in dest {
            *byte = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(())
    }
}

/// Builds an operation's request with a fixed clock and counter randomness.
pub(crate) fn build<O: Operation>(op: &O) -> Result<Request<Vec<u8>>, obauth_core::Error> {
    let mut random = Counter(0);
    op.build_request(&mut RequestContext::new(
        SystemTime::UNIX_EPOCH,
        &mut random,
    ))
}

pub(crate) fn body_text(request: &Request<Vec<u8>>) -> &str {
    std::str::from_utf8(request.body()).unwrap()
}

pub(crate) fn header<'a>(request: &'a Request<Vec<u8>>, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// A response with a JSON content type.
pub(crate) fn json(status: u16, body: &str) -> Response<Vec<u8>> {
    with_type(status, Some("application/json; charset=utf-8"), body)
}

pub(crate) fn with_type(status: u16, content_type: Option<&str>, body: &str) -> Response<Vec<u8>> {
    let mut response = Response::new(body.as_bytes().to_vec());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert("content-type", content_type.parse().unwrap());
    }
    response
}

pub(crate) fn sandbox() -> TrueLayerConfig {
    TrueLayerConfig::new(Environment::Sandbox, "sandbox-client")
        .unwrap()
        .with_client_secret(ClientSecret::new("s3cr3t-value"))
}

pub(crate) fn local() -> TrueLayerConfig {
    let base = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
    TrueLayerConfig::new(Environment::Custom(base), "local-client")
        .unwrap()
        .with_client_secret(ClientSecret::new("s3cr3t-value"))
}

/// One 2048-bit key per test run: generation is the slow part.
pub(crate) fn test_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())
}

/// A self-signed certificate (PEM) of [`test_key`]'s public key.
pub(crate) fn test_certificate_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| self_signed(test_key()))
}

/// A self-signed certificate (PEM) of `key`'s public key.
pub(crate) fn self_signed(key: &PrivateKey) -> String {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    rcgen::CertificateParams::new(vec!["obauth-core test client".to_owned()])
        .unwrap()
        .self_signed(&pair)
        .unwrap()
        .pem()
}
