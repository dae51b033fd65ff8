//! What every operation shares on the wire: request construction and response
//! classification. The secret-free excerpts of bodies are the `redact` module's.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{HeaderMap, Method, Request, Response, Uri};
use obauth_types::{AccessToken, ErrorResponse, TokenType};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Error, RetryAfter, UnexpectedKind, UnexpectedResponse};
use crate::redact::{EXCERPT_CHARS, describe_serde_error, excerpt, truncate_chars, without_bom};

/// The default `User-Agent`: `obauth/<version>`.
pub const USER_AGENT: &str = concat!("obauth/", env!("CARGO_PKG_VERSION"));

/// The largest response body the bindings read (1 MiB); a larger one is an error.
/// The largest real answer, the providers list, is well under 200 KiB.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded, so a space is
/// `%20` (as OpenAPI's `spaceDelimited` style and TrueLayer's auth-link examples show).
pub(crate) const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub(crate) const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

/// Appends `name=value` to a query string, percent-encoding both.
pub(crate) fn push_query(query: &mut String, name: &str, value: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    query.extend(utf8_percent_encode(name, QUERY_COMPONENT));
    query.push('=');
    query.extend(utf8_percent_encode(value, QUERY_COMPONENT));
}

/// A request with the headers every call carries.
pub(crate) fn request(
    method: Method,
    uri: Uri,
    user_agent: &HeaderValue,
    content_type: Option<HeaderValue>,
    body: Vec<u8>,
) -> Request<Vec<u8>> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(ACCEPT, JSON);
    headers.insert(http::header::USER_AGENT, user_agent.clone());
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, content_type);
    }
    request
}

/// A request whose body is `body` as JSON.
pub(crate) fn json_request(
    method: Method,
    uri: Uri,
    user_agent: &HeaderValue,
    body: &impl serde::Serialize,
) -> Result<Request<Vec<u8>>, Error> {
    // Token and link bodies are a few hundred bytes: one allocation, no regrowth.
    let mut buffer = Vec::with_capacity(512);
    serde_json::to_writer(&mut buffer, body)
        .map_err(|_| Error::invalid("request body", "could not be serialized as JSON"))?;
    let body = buffer;
    Ok(request(method, uri, user_agent, Some(JSON), body))
}

/// Adds `Authorization: Bearer <token>`, marked sensitive so HTTP stacks that honour the
/// flag keep it out of their logs.
pub(crate) fn set_bearer(request: &mut Request<Vec<u8>>, token: &str) -> Result<(), Error> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
        Error::invalid(
            "access token",
            "contains characters not allowed in a header",
        )
    })?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// Parses a JSON success body into `T`, or classifies the failure.
pub(crate) fn parse_json<T: DeserializeOwned, B: AsRef<[u8]>>(
    response: &Response<B>,
) -> Result<T, Error> {
    let status = response.status();
    let body = without_bom(response.body().as_ref());
    if !status.is_success() {
        return Err(failure(response));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(unexpected(response, UnexpectedKind::EmptyBody));
    }
    if !content_type_allows_json(response.headers()) {
        return Err(unexpected(response, UnexpectedKind::NotJson));
    }
    match serde_json::from_slice::<T>(body) {
        Ok(value) => Ok(value),
        Err(error) => {
            // A 200 that carries an error body is still the server saying no.
            if let Some(api) = coded_error(body) {
                return Err(api_error(response, api));
            }
            let kind = if error.is_syntax() || error.is_eof() {
                UnexpectedKind::NotJson
            } else {
                UnexpectedKind::WrongShape(describe_serde_error(&error))
            };
            Err(unexpected(response, kind))
        }
    }
}

/// Parses a token response and checks what serde cannot: a usable bearer token.
pub(crate) fn parse_token<T: DeserializeOwned, B: AsRef<[u8]>>(
    response: &Response<B>,
    parts: impl Fn(&T) -> (&AccessToken, &TokenType),
) -> Result<T, Error> {
    let token: T = parse_json(response)?;
    let (access_token, token_type) = parts(&token);
    if access_token.is_empty() {
        return Err(unexpected(
            response,
            UnexpectedKind::WrongShape("access_token is empty".to_owned()),
        ));
    }
    if *token_type != TokenType::Bearer {
        return Err(unexpected(
            response,
            UnexpectedKind::WrongShape(format!(
                "token_type is {}, expected Bearer",
                truncate_chars(token_type.as_str(), 32)
            )),
        ));
    }
    Ok(token)
}

/// Accepts a 2xx whatever its body (`DELETE /api/delete` has none), unless the body is an
/// OAuth error: a 200 carrying `{"error": …}` is the server saying no.
pub(crate) fn parse_empty<B: AsRef<[u8]>>(response: &Response<B>) -> Result<(), Error> {
    if !response.status().is_success() {
        return Err(failure(response));
    }
    match coded_error(without_bom(response.body().as_ref())) {
        Some(api) => Err(api_error(response, api)),
        None => Ok(()),
    }
}

/// An OAuth error body with an `error` code: what makes a 2xx answer a refusal.
fn coded_error(body: &[u8]) -> Option<ErrorResponse> {
    serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .filter(|api| !api.error.as_str().is_empty())
}

/// Classifies a non-2xx answer: an OAuth error body becomes [`Error::Api`], anything else
/// [`Error::UnexpectedResponse`].
pub(crate) fn failure<B: AsRef<[u8]>>(response: &Response<B>) -> Error {
    let status = response.status();
    if status.is_redirection() {
        return unexpected(response, UnexpectedKind::Redirect);
    }
    let body = without_bom(response.body().as_ref());
    if body.iter().all(u8::is_ascii_whitespace) {
        return unexpected(response, UnexpectedKind::EmptyBody);
    }
    // Error bodies are read whatever their Content-Type: some gateways label JSON text/plain.
    match serde_json::from_slice::<ErrorResponse>(body) {
        // Neither a code nor a description: JSON, but no OAuth-style error.
        Ok(api) if api.error.as_str().is_empty() && api.error_description.is_none() => unexpected(
            response,
            UnexpectedKind::WrongShape("no `error` or `error_description`".into()),
        ),
        Ok(api) => api_error(response, api),
        Err(error) if error.is_syntax() || error.is_eof() => {
            unexpected(response, UnexpectedKind::NotJson)
        }
        Err(error) => unexpected(
            response,
            UnexpectedKind::WrongShape(describe_serde_error(&error)),
        ),
    }
}

fn api_error<B>(response: &Response<B>, api: ErrorResponse) -> Error {
    Error::Api(Box::new(ApiError {
        status: response.status(),
        code: api.error,
        description: api.error_description,
        details: api.error_details,
        trace_id: trace_id(response.headers()),
        retry_after: RetryAfter::from_headers(response.headers()),
    }))
}

pub(crate) fn unexpected<B: AsRef<[u8]>>(response: &Response<B>, kind: UnexpectedKind) -> Error {
    let headers = response.headers();
    let excerpt = if kind == UnexpectedKind::Redirect {
        // Where it points is more use than the body; the query may hold secrets, so drop it.
        headers
            .get(LOCATION)
            .and_then(|location| location.to_str().ok())
            .map(|location| {
                let without_query = location.split(['?', '#']).next().unwrap_or_default();
                format!("Location: {}", truncate_chars(without_query, EXCERPT_CHARS))
            })
            .unwrap_or_default()
    } else {
        excerpt(response.body().as_ref())
    };
    Error::UnexpectedResponse(Box::new(UnexpectedResponse {
        status: response.status(),
        kind,
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| truncate_chars(value, 100)),
        excerpt,
        trace_id: trace_id(headers),
        retry_after: RetryAfter::from_headers(headers),
    }))
}

/// JSON unless a `Content-Type` says otherwise (`application/json`, `…+json`, or absent).
fn content_type_allows_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .get(essence.len().saturating_sub(5)..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"))
}

/// Headers that carry a request's trace or correlation id, in order of preference.
const TRACE_HEADERS: [&str; 5] = [
    "tl-correlation-id",
    "x-tl-correlation-id",
    "x-correlation-id",
    "x-request-id",
    "x-trace-id",
];

/// The request or trace id a server sent with its answer (`x-request-id`, `tl-correlation-id`
/// and the like), trimmed to 128 characters: what to quote to the server's support, and
/// what the bindings' tracing spans record.
pub fn server_trace_id(headers: &HeaderMap) -> Option<String> {
    trace_id(headers)
}

fn trace_id(headers: &HeaderMap) -> Option<String> {
    TRACE_HEADERS.iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        (!value.is_empty()).then(|| truncate_chars(value, 128))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_encode_spaces_as_percent_20() {
        let mut query = String::new();
        push_query(&mut query, "scope", "info accounts");
        push_query(&mut query, "redirect_uri", "https://x.test/cb?a=1&b=ü");
        assert_eq!(
            query,
            "scope=info%20accounts&redirect_uri=https%3A%2F%2Fx.test%2Fcb%3Fa%3D1%26b%3D%C3%BC"
        );
    }
}
