//! Calling another API with the token: the decisions every bearer-token middleware makes,
//! written once for the bindings' reqwest, tower and ureq middleware.
//!
//! A middleware sets `Authorization: Bearer …` on a request ([`BearerPolicy::should_set`],
//! [`authorization`]), sends it, and asks [`BearerPolicy::after`] what the answer means: a
//! `401` whose `WWW-Authenticate` challenge says the token is invalid or expired (RFC 6750
//! §3.1 `invalid_token`) means the cached token is no good: the middleware invalidates it,
//! fetches a fresh one and sends the request once more, if its body can be sent again.
//! Never more than once, never on a `403` (the token is fine, the permission is not).

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use obauth_types::AccessToken;

use crate::error::InvalidInput;

/// Which `401` answers mean "the token is no good; get another and try once more".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryOn {
    /// A `401` with a `Bearer` challenge whose `error` is `invalid_token` (RFC 6750 §3.1:
    /// "expired, revoked, malformed, or invalid for other reasons"). The default: an API
    /// that answers `401` for other reasons (no permission, a bad signature of its own)
    /// is not asked twice.
    #[default]
    InvalidToken,
    /// Any `401`, whatever its challenge says: for APIs that send no `WWW-Authenticate`.
    Any401,
    /// Never: the `401` is returned as it is (the token is still invalidated, so the next
    /// request gets a fresh one).
    Never,
}

/// How a bearer-token middleware behaves. The defaults suit an API that follows RFC 6750.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BearerPolicy {
    /// Which `401`s lead to a fresh token and one more attempt.
    pub retry_on: RetryOn,
    /// Replace an `Authorization` header the request already has. Off by default: a request
    /// that carries its own credentials is sent as it is, and its answers are not judged.
    pub replace_authorization: bool,
}

/// What a middleware does with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Hand the answer to the caller.
    Done,
    /// The token was refused: invalidate it and hand the answer to the caller (the request
    /// cannot or may not be sent again).
    InvalidateOnly,
    /// The token was refused: invalidate it, get a fresh one, send the request once more
    /// and hand that answer to the caller, whatever it is.
    InvalidateAndRetry,
}

impl BearerPolicy {
    /// Whether the middleware sets the header on a request with these `headers`.
    pub fn should_set(&self, headers: &HeaderMap) -> bool {
        self.replace_authorization || !headers.contains_key(AUTHORIZATION)
    }

    /// Whether an answer says the token it was sent with is no good (and is to be
    /// invalidated): a `401` that [`Self::retry_on`] counts.
    pub fn refuses(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        status == StatusCode::UNAUTHORIZED
            && match self.retry_on {
                RetryOn::InvalidToken => {
                    bearer_challenge_error(headers).as_deref() == Some("invalid_token")
                }
                RetryOn::Any401 | RetryOn::Never => true,
            }
    }

    /// What to do with an answer to a request that carried the middleware's token.
    /// `replayable`: the request's body can be sent again. `retried`: this answer is
    /// already to the second attempt.
    pub fn after(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        replayable: bool,
        retried: bool,
    ) -> After {
        if !self.refuses(status, headers) {
            After::Done
        } else if retried || !replayable || self.retry_on == RetryOn::Never {
            After::InvalidateOnly
        } else {
            After::InvalidateAndRetry
        }
    }
}

/// The `Authorization: Bearer …` value for `token`, marked sensitive (HTTP/2 never indexes
/// it, and `http`'s `Debug` shows `Sensitive`).
pub fn authorization(token: &AccessToken) -> Result<HeaderValue, InvalidInput> {
    let mut value = HeaderValue::try_from(format!("{BEARER}{}", token.expose_secret()))
        .map_err(|_| InvalidInput::new("access token", "is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

const BEARER: &str = "Bearer ";

/// The token in a value [`authorization`] built: for a middleware that holds the header it
/// sent and must report its token refused. `None` for any other value.
pub fn token_in(value: &HeaderValue) -> Option<AccessToken> {
    let token = value.as_bytes().strip_prefix(BEARER.as_bytes())?;
    std::str::from_utf8(token).ok().map(AccessToken::new)
}

/// The `error` parameter of the first `Bearer` challenge among the `WWW-Authenticate`
/// headers (RFC 6750 §3, RFC 9110 §11.6.1), if any.
pub fn bearer_challenge_error(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            challenges(value)
                .into_iter()
                .find(|challenge| challenge.scheme.eq_ignore_ascii_case("bearer"))
                .map(|challenge| {
                    challenge
                        .params
                        .into_iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("error"))
                        .map(|(_, value)| value)
                })
        })
        .flatten()
}

struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

/// Splits a `WWW-Authenticate` value into challenges: `Scheme name=value, name="quoted",
/// Other realm="x"`. Lenient: what cannot be read is skipped, never an error.
fn challenges(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for item in split_outside_quotes(value) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        // `Scheme` or `Scheme param=…` starts a challenge; `param=…` continues one.
        let (first, rest) = item
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((item, ""));
        let starts_challenge = !first.contains('=');
        let param = if starts_challenge {
            out.push(Challenge {
                scheme: first.to_owned(),
                params: Vec::new(),
            });
            rest.trim()
        } else {
            item
        };
        if let (Some(challenge), Some((name, value))) = (out.last_mut(), param.split_once('=')) {
            challenge
                .params
                .push((name.trim().to_owned(), unquote(value.trim())));
        }
    }
    out
}

/// Splits at commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// A token or a quoted string's content (`\x` is `x`).
fn unquote(value: &str) -> String {
    match value
        .strip_prefix('"')
        .map(|inner| inner.strip_suffix('"').unwrap_or(inner))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.extend(chars.next());
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_bearer_error_is_read_from_any_challenge_layout() {
        let cases: [(&[&str], Option<&str>); 8] = [
            (
                &[
                    r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
                ],
                Some("invalid_token"),
            ),
            (&["Bearer error=invalid_token"], Some("invalid_token")),
            (
                &[r#"bearer ERROR="insufficient_scope""#],
                Some("insufficient_scope"),
            ),
            (
                &[r#"Basic realm="a, b", Bearer error="invalid_token""#],
                Some("invalid_token"),
            ),
            (
                &["Basic realm=x", r#"Bearer error="invalid_token""#],
                Some("invalid_token"),
            ),
            (&[r#"Bearer realm="x""#], None),
            (&[r#"Basic error="invalid_token""#], None),
            (
                &[r#"Bearer error_description="a \"quoted, text\"", error="invalid_request""#],
                Some("invalid_request"),
            ),
        ];
        for (values, expected) in cases {
            assert_eq!(
                bearer_challenge_error(&challenge(values)).as_deref(),
                expected,
                "{values:?}"
            );
        }
        assert_eq!(bearer_challenge_error(&HeaderMap::new()), None);
    }

    #[test]
    fn only_an_invalid_token_401_is_retried_by_default_and_only_once() {
        let policy = BearerPolicy::default();
        let invalid = challenge(&[r#"Bearer error="invalid_token""#]);
        let scope = challenge(&[r#"Bearer error="insufficient_scope""#]);
        let none = HeaderMap::new();
        let s401 = StatusCode::UNAUTHORIZED;
        assert_eq!(
            policy.after(s401, &invalid, true, false),
            After::InvalidateAndRetry
        );
        assert_eq!(
            policy.after(s401, &invalid, true, true),
            After::InvalidateOnly
        );
        assert_eq!(
            policy.after(s401, &invalid, false, false),
            After::InvalidateOnly
        );
        assert_eq!(policy.after(s401, &scope, true, false), After::Done);
        assert_eq!(policy.after(s401, &none, true, false), After::Done);
        for status in [
            StatusCode::FORBIDDEN,
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
        ] {
            assert_eq!(policy.after(status, &invalid, true, false), After::Done);
        }
        let any = BearerPolicy {
            retry_on: RetryOn::Any401,
            ..BearerPolicy::default()
        };
        assert_eq!(
            any.after(s401, &none, true, false),
            After::InvalidateAndRetry
        );
        assert_eq!(
            any.after(StatusCode::FORBIDDEN, &none, true, false),
            After::Done
        );
        let never = BearerPolicy {
            retry_on: RetryOn::Never,
            ..BearerPolicy::default()
        };
        assert_eq!(
            never.after(s401, &invalid, true, false),
            After::InvalidateOnly
        );
        // The refusal alone, as the second attempt's answer is judged.
        assert!(policy.refuses(s401, &invalid));
        assert!(!policy.refuses(s401, &scope));
        assert!(!policy.refuses(StatusCode::FORBIDDEN, &invalid));
        assert!(any.refuses(s401, &none) && never.refuses(s401, &none));
    }

    #[test]
    fn an_existing_authorization_is_kept_unless_asked() {
        let mut headers = HeaderMap::new();
        assert!(BearerPolicy::default().should_set(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert!(!BearerPolicy::default().should_set(&headers));
        let replace = BearerPolicy {
            replace_authorization: true,
            ..BearerPolicy::default()
        };
        assert!(replace.should_set(&headers));
    }

    #[test]
    fn the_header_is_sensitive_and_a_bad_token_is_an_error() {
        let value = authorization(&AccessToken::new("abc")).unwrap();
        assert_eq!(value, "Bearer abc");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("abc"));
        assert!(authorization(&AccessToken::new("a\r\nInjected: 1")).is_err());
    }

    #[test]
    fn the_token_is_read_back_only_from_a_bearer_value() {
        let value = authorization(&AccessToken::new("eyJ.a-b_c.d~e")).unwrap();
        assert_eq!(token_in(&value).unwrap().expose_secret(), "eyJ.a-b_c.d~e");
        for other in ["Basic YWxhZGRpbjo=", "Bearer", "bearer abc", "Bearerabc"] {
            assert!(
                token_in(&HeaderValue::from_static(other)).is_none(),
                "{other}"
            );
        }
        // Bytes that are a valid header value but not UTF-8.
        let latin1 = HeaderValue::from_bytes(b"Bearer \xe9").unwrap();
        assert!(token_in(&latin1).is_none());
    }
}
