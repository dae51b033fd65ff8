//! The mock's shared state, its endpoints, and its faults.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode};

use crate::truelayer::TrueLayerState;
use crate::worldline::WorldlineState;

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

/// A misbehaviour to inject instead of the real answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an OAuth error body (`rate_limited` for 429,
    /// `temporarily_unavailable` for 503, `server_error` otherwise), with
    /// `Retry-After: seconds` if given.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally (longer than the client's timeout to time out).
    Delay(Duration),
    /// A complete `200` answer whose JSON body is cut short (`{"access_token":"…`).
    MalformedBody,
    /// The real answer's headers and half its body, then the connection closes.
    TruncatedBody,
    /// An HTML error page with this status, as a proxy or gateway sends.
    HtmlPage(u16),
    /// Close the connection without answering.
    CloseConnection,
    /// A `200` JSON answer of exactly this many bytes (at least 14), sent with a
    /// `Content-Length` (to exercise body caps).
    OversizedBody(usize),
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

/// How the HTTP layer delivers an answer.
pub(crate) enum Delivery {
    Whole(Answer),
    Truncated(Answer),
    Close,
    Delayed(Duration),
}

pub(crate) struct State {
    pub(crate) truelayer: TrueLayerState,
    pub(crate) worldline: WorldlineState,
    pub(crate) faults: Vec<(Option<Endpoint>, usize, Fault)>,
    pub(crate) counts: HashMap<Endpoint, usize>,
}

impl State {
    pub(crate) fn new(base: String) -> Self {
        Self {
            truelayer: TrueLayerState::new(base.clone()),
            worldline: WorldlineState::new(format!("{base}/auth")),
            faults: Vec::new(),
            counts: HashMap::new(),
        }
    }

    /// Counts the request and takes the fault aimed at it, if any.
    pub(crate) fn arrive(&mut self, endpoint: Endpoint) -> Option<Fault> {
        *self.counts.entry(endpoint).or_insert(0) += 1;
        let index = self.faults.iter().position(|(target, times, _)| {
            *times > 0 && target.is_none_or(|target| target == endpoint)
        })?;
        let entry = &mut self.faults[index];
        entry.1 -= 1;
        let fault = entry.2.clone();
        if entry.1 == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

    pub(crate) fn handle(&mut self, request: &Request) -> Answer {
        match request.endpoint {
            Endpoint::WorldlineToken => self.worldline.token(request),
            Endpoint::Unknown => {
                Answer::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            }
            _ => self.truelayer.handle(request),
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

/// Turns a fault into what to deliver; `real` computes the real answer when needed.
pub(crate) fn deliver(fault: Fault, real: impl FnOnce() -> Answer) -> Delivery {
    match fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                429 => "rate_limited",
                503 => "temporarily_unavailable",
                _ => "server_error",
            };
            let mut answer = Answer::error(status, code, "injected by obauth-mock");
            if let Some(seconds) = retry_after {
                answer = answer.header(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Delivery::Whole(answer)
        }
        Fault::Delay(delay) => Delivery::Delayed(delay),
        Fault::MalformedBody => Delivery::Whole(Answer::new(
            StatusCode::OK,
            "application/json",
            br#"{"access_token":"mock-malformed","expires_in":36"#.to_vec(),
        )),
        Fault::TruncatedBody => Delivery::Truncated(real()),
        Fault::HtmlPage(status) => Delivery::Whole(Answer::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "text/html",
            format!("<html><head><title>{status} Error</title></head><body><h1>{status}</h1><p>upstream unavailable</p></body></html>")
                .into_bytes(),
        )),
        Fault::CloseConnection => Delivery::Close,
        Fault::OversizedBody(bytes) => {
            // `{"padding":""}` is 14 bytes.
            let padding = "x".repeat(bytes.saturating_sub(14));
            Delivery::Whole(Answer::json(StatusCode::OK, &serde_json::json!({ "padding": padding })))
        }
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
