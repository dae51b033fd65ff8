//! The mock's wire primitives, shared by the TrueLayer and Worldline handlers: the
//! `Endpoint` a request reached, the `Request` a handler reads, the `Answer` it
//! gives, and the two helpers every handler uses, `random_token` to mint opaque
//! tokens and `same` to compare secrets in constant time.
//!
//! A leaf: it imports nothing from the handlers (`truelayer`, `worldline`) nor from
//! `state`, which composes them, so the handlers and the composition depend on it
//! and not on each other in a circle.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

/// The mock's endpoints, for counting and for targeting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// TrueLayer `POST /connect/token`.
    TrueLayerToken,
    /// TrueLayer `POST /v1/authuri`.
    AuthLink,
    /// TrueLayer `POST /v1/reauthuri`.
    ReauthLink,
    /// TrueLayer `POST /api/debug`.
    CreateDebugId,
    /// TrueLayer `DELETE /api/debug`.
    DeleteDebugId,
    /// TrueLayer `DELETE /api/delete`.
    DeleteCredential,
    /// TrueLayer `GET /api/providers`.
    Providers,
    /// The hosted auth dialog and the mock's consent pages.
    Consent,
    /// Worldline `POST /auth/realms/{realm}/protocol/openid-connect/token`.
    WorldlineToken,
    /// Anything else (answered 404).
    Unknown,
}

impl Endpoint {
    pub(crate) fn of(method: &Method, path: &str) -> Self {
        match (method.as_str(), path) {
            ("POST", "/connect/token") => Endpoint::TrueLayerToken,
            ("POST", "/v1/authuri") => Endpoint::AuthLink,
            ("POST", "/v1/reauthuri") => Endpoint::ReauthLink,
            ("POST", "/api/debug") => Endpoint::CreateDebugId,
            ("DELETE", "/api/debug") => Endpoint::DeleteDebugId,
            ("DELETE", "/api/delete") => Endpoint::DeleteCredential,
            ("GET", "/api/providers") => Endpoint::Providers,
            ("GET", "/") => Endpoint::Consent,
            ("GET", path) if path.starts_with("/mock/consent/") => Endpoint::Consent,
            ("POST", path)
                if path.starts_with("/auth/realms/")
                    && path.ends_with("/protocol/openid-connect/token") =>
            {
                Endpoint::WorldlineToken
            }
            _ => Endpoint::Unknown,
        }
    }
}

/// A request as the handlers see it.
pub(crate) struct Request {
    pub(crate) endpoint: Endpoint,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// What the HTTP layer sends.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Self {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string().into_bytes())
    }

    /// An OAuth-style error body.
    pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": code, "error_description": description }),
        )
    }

    /// TrueLayer's error body with `error_details.reason`.
    pub(crate) fn error_with_reason(
        status: StatusCode,
        code: &str,
        description: &str,
        reason: &str,
    ) -> Self {
        Self::json(
            status,
            &serde_json::json!({
                "error": code,
                "error_description": description,
                "error_details": { "reason": reason },
            }),
        )
    }

    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn redirect(location: &str) -> Self {
        let mut answer = Self::empty(StatusCode::FOUND);
        if let Ok(value) = HeaderValue::from_str(location) {
            answer.headers.insert(http::header::LOCATION, value);
        }
        answer
    }

    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// A random opaque token: `prefix` + 256 random bits, base64url.
pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The OS source failing in a test tool is not worth an error path: fall back to
    // a process-unique counter mixed into zeros, which still never repeats.
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        bytes[..8].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Constant-time string equality.
pub(crate) fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
