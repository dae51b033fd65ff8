//! The mock's wire primitives, shared by the TrueLayer and Worldline handlers: the
//! `Endpoint` a request reached, the `Request` a handler reads, the `Answer` it
//! gives, and the helpers every handler uses: `random_token` to mint opaque tokens,
//! `same` to compare secrets in constant time, and `shown_name` / `shown_names` to put a
//! sender-chosen name (a field, a scope) in an error message without echoing a value.
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
            ("GET" | "POST", path) if path.starts_with("/mock/consent/") => Endpoint::Consent,
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
    pub(crate) method: Method,
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

    /// A redirect with `status` (`303 See Other` after a posted form).
    pub(crate) fn redirect(status: StatusCode, location: &str) -> Self {
        let mut answer = Self::empty(status);
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

/// The longest sender-chosen name an error message shows.
const MAX_SHOWN_NAME: usize = 40;

/// Whether an error message may show `name`: a plain parameter or scope name, 1 to 40
/// bytes, an ASCII letter then ASCII letters, digits, `_`, `-`, `.` or `:`. Anything else
/// (long, empty, punctuation, spaces, non-ASCII) may be a value that slipped into a name,
/// a secret split by an unencoded `&` or a whole token, so it is not shown.
fn plain_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= MAX_SHOWN_NAME
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A sender-chosen field name as an error message shows it: in backticks if it is a plain
/// name, otherwise withheld, only its length said.
pub(crate) fn shown_name(name: &str) -> String {
    if plain_name(name) {
        format!("`{name}`")
    } else {
        format!("(a name of {} bytes, not shown)", name.len())
    }
}

/// Sender-chosen names (scopes) as an error message lists them: the plain ones, space
/// separated, then how many were withheld.
pub(crate) fn shown_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut shown = Vec::new();
    let mut withheld = 0usize;
    for name in names {
        if plain_name(name) {
            shown.push(name);
        } else {
            withheld += 1;
        }
    }
    let mut text = shown.join(" ");
    if withheld > 0 {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("({withheld} not shown)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{shown_name, shown_names};

    #[test]
    fn plain_names_are_shown_and_anything_else_only_measured() {
        assert_eq!(shown_name("client_secret"), "`client_secret`");
        assert_eq!(
            shown_name("recurring_payments:sweeping"),
            "`recurring_payments:sweeping`"
        );
        assert_eq!(shown_name(""), "(a name of 0 bytes, not shown)");
        assert_eq!(shown_name("a b"), "(a name of 3 bytes, not shown)");
        assert_eq!(shown_name("`x`"), "(a name of 3 bytes, not shown)");
        assert_eq!(shown_name("1abc"), "(a name of 4 bytes, not shown)");
        assert_eq!(shown_name("sécret"), "(a name of 7 bytes, not shown)");
        let long = "a".repeat(41);
        assert_eq!(shown_name(&long), "(a name of 41 bytes, not shown)");
        assert_eq!(shown_name(&long[..40]), format!("`{}`", &long[..40]));
        assert_eq!(shown_names(["VOP", "IDEAL"]), "VOP IDEAL");
        assert_eq!(shown_names(["VOP", "x y", "{}"]), "VOP (2 not shown)");
        assert_eq!(shown_names(["=secret"]), "(1 not shown)");
    }
}
