//! The request a binding hands to its transport, with a `Debug` that shows no secret.

use std::fmt;
use std::ops::{Deref, DerefMut};

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};

/// A request for a transport to send: an `http::Request` whose body and credentials stay
/// out of `Debug`.
///
/// The body of a token request holds the client secret, a code, a refresh token or a
/// client assertion, and `http::Request`'s own `Debug` prints it (as bytes, which decode
/// back to the secret). A transport that logs what it is handed with `{:?}` logs this
/// instead: the method, URI, version, the header names with `Authorization`,
/// `Proxy-Authorization`, `Cookie` and every header marked sensitive shown as
/// `[redacted]`, and the body's length.
///
/// It dereferences to the `http::Request` for reading (and for adding a header);
/// [`OutgoingRequest::into_inner`] hands over the request itself to send it.
pub struct OutgoingRequest(http::Request<Vec<u8>>);

impl OutgoingRequest {
    /// Wraps a request.
    pub fn new(request: http::Request<Vec<u8>>) -> Self {
        Self(request)
    }

    /// The request, to send. Its `Debug` is `http`'s, which shows the body: don't log it.
    pub fn into_inner(self) -> http::Request<Vec<u8>> {
        self.0
    }
}

impl From<http::Request<Vec<u8>>> for OutgoingRequest {
    fn from(request: http::Request<Vec<u8>>) -> Self {
        Self(request)
    }
}

impl Deref for OutgoingRequest {
    type Target = http::Request<Vec<u8>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for OutgoingRequest {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Header values shown as `[redacted]`.
struct Headers<'a>(&'a http::HeaderMap);

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            let secret = value.is_sensitive()
                || name == AUTHORIZATION
                || name == PROXY_AUTHORIZATION
                || name == COOKIE;
            match value.to_str() {
                Ok(text) if !secret => map.entry(&name.as_str(), &text),
                _ => map.entry(&name.as_str(), &format_args!("[redacted]")),
            };
        }
        map.finish()
    }
}

impl fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingRequest")
            .field("method", self.0.method())
            .field("uri", self.0.uri())
            .field("version", &self.0.version())
            .field("headers", &Headers(self.0.headers()))
            .field(
                "body",
                &format_args!("[redacted; {} bytes]", self.0.body().len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_shape_of_the_request_and_none_of_its_secrets() {
        let mut bearer = http::HeaderValue::from_static("Bearer Access-Token-1");
        bearer.set_sensitive(false);
        let request = http::Request::post("https://auth.example/connect/token")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, bearer)
            .header(COOKIE, "session=Cookie-2")
            .header("x-api-key", {
                let mut key = http::HeaderValue::from_static("Api-Key-4");
                key.set_sensitive(true);
                key
            })
            .body(br#"{"client_secret":"Body-Secret-3"}"#.to_vec())
            .unwrap();
        let shown = format!("{:?}", OutgoingRequest::new(request));
        for secret in [
            "Access-Token-1",
            "Cookie-2",
            "Body-Secret-3",
            "Api-Key-4",
            "66, 111, 100",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for part in [
            "POST",
            "https://auth.example/connect/token",
            "\"content-type\": \"application/json\"",
            "\"authorization\": [redacted]",
            "\"x-api-key\": [redacted]",
            "[redacted; 33 bytes]",
        ] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
        // http's own Debug of the same request would have shown the body.
        let inner = OutgoingRequest::from(
            http::Request::post("/")
                .body(b"Body-Secret-3".to_vec())
                .unwrap(),
        )
        .into_inner();
        assert!(format!("{inner:?}").contains("66, 111, 100"));
    }
}
