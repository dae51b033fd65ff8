//! Receiving the auth dialog's redirect on a loopback address, as RFC 8252 describes for
//! native apps: the machine that answers the browser, without the socket.
//!
//! A binding (or your own server) binds the addresses [`LoopbackRedirect::listen_addrs`]
//! names, reads each connection's bytes into a [`RequestReader`], hands the request to a
//! [`RedirectReceiver`], writes back the [`Reply`]'s bytes and closes the connection. The
//! receiver decides everything else:
//!
//! * only the redirect URI's path is a callback; any other path (a favicon, a probe) is a
//!   `404` and the wait goes on, as does a request whose `Host` is not this loopback
//!   address (a DNS-rebinding page cannot reach the receiver through a name of its own);
//! * the callback is read with the dialog's parser ([`super::auth_dialog::parse_callback`]),
//!   from the query (`response_mode=query`) or from a posted form (`form_post`); `state` is
//!   checked in constant time;
//! * a callback whose `state` is missing or wrong (or that repeats a parameter) cannot be
//!   this sign-in's: it is refused (`400`, [`Event::Refused`]) and the wait goes on, so a
//!   stray or hostile request cannot end the sign-in before the real redirect arrives;
//! * exactly one callback with the right `state` ends the wait, whatever it holds: a code,
//!   the dialog's error (`access_denied`, …) or no code. After that, a replay of the same
//!   callback or any other one is refused (`409`), and the first outcome stands;
//! * every answer is a short page that says what happened and that the tab can be closed;
//!   no page shows the code, and none can be cached or leak the address through `Referer`.
//!
//! ```
//! use obauth_core::truelayer::loopback::{Event, LoopbackRedirect, RedirectReceiver, RequestReader};
//!
//! let redirect = LoopbackRedirect::parse("http://127.0.0.1:8080/callback")?;
//! let mut receiver = RedirectReceiver::new(&redirect, 8080, "st-1");
//! let mut reader = RequestReader::new();
//! let bytes = b"GET /callback?code=c-1&state=st-1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
//! let request = reader.push(bytes).unwrap().expect("a whole request");
//! let reply = receiver.respond(&request);
//! assert_eq!(reply.response.status(), 200);
//! let Event::Received(Ok(callback)) = reply.event else { panic!() };
//! assert_eq!(callback.code.expose_secret(), "c-1");
//! # Ok::<(), obauth_core::InvalidInput>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::auth_dialog::{AuthorizationCallback, parse_callback, parse_callback_with_issuer};
use crate::error::{CallbackError, InvalidInput};

/// The largest request head (request line and headers) the receiver reads.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long one connection to a listener may take to send its request, and then to take
/// the answer (a browser opens speculative connections that may never send anything).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections a listener serves at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// The largest request body (a `form_post` form) the receiver reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most headers a request may carry.
const MAX_HEADERS: usize = 64;

/// A loopback redirect URI, checked: `http`, a loopback host (`127.0.0.1` or another
/// `127.x.y.z`, `[::1]`, or `localhost`), no user info, no fragment.
///
/// Without a port (`http://127.0.0.1/callback`) the port is chosen when binding, as RFC 8252
/// §7.3 lets a native app do: the URI sent to the server is [`Self::redirect_uri`] of the
/// port bound. A server that allow-lists exact URIs (TrueLayer Console does) needs the port
/// written out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackRedirect {
    host: LoopbackHost,
    /// The host as written (`LocalHost` stays `LocalHost`).
    host_text: String,
    port: Option<u16>,
    path: String,
    /// What follows the authority, as written (possibly nothing).
    rest: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopbackHost {
    V4(Ipv4Addr),
    V6,
    Localhost,
}

impl LoopbackRedirect {
    /// Checks `redirect_uri` and keeps what the receiver needs.
    pub fn parse(redirect_uri: &str) -> Result<Self, InvalidInput> {
        const WHAT: &str = "redirect_uri";
        if redirect_uri.contains('#') {
            return Err(InvalidInput::new(WHAT, "must not have a fragment"));
        }
        let uri: http::Uri = redirect_uri
            .parse()
            .map_err(|_| InvalidInput::new(WHAT, "is not a valid URI"))?;
        if uri.scheme_str() != Some("http") {
            return Err(InvalidInput::new(
                WHAT,
                "a loopback redirect URI is plain http:// (RFC 8252 §7.3)",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| InvalidInput::new(WHAT, "has no host"))?;
        if authority.as_str().contains('@') {
            return Err(InvalidInput::new(WHAT, "must not carry user info"));
        }
        let host_text = authority.host();
        let host = if host_text.eq_ignore_ascii_case("localhost") {
            LoopbackHost::Localhost
        } else if host_text == "[::1]" {
            LoopbackHost::V6
        } else {
            match host_text.parse::<Ipv4Addr>() {
                Ok(ip) if ip.is_loopback() => LoopbackHost::V4(ip),
                _ => {
                    return Err(InvalidInput::new(
                        WHAT,
                        "the host must be 127.0.0.1, [::1] or localhost: the receiver listens \
                         on this machine only",
                    ));
                }
            }
        };
        let after_host = &authority.as_str()[host_text.len()..];
        let port = match after_host.strip_prefix(':') {
            None if after_host.is_empty() => None,
            Some(digits)
                if !digits.is_empty()
                    && digits.len() <= 5
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                match digits.parse::<u16>() {
                    Ok(0) | Err(_) => {
                        return Err(InvalidInput::new(
                            WHAT,
                            "the port must be 1-65535 (leave it out to take any free port)",
                        ));
                    }
                    Ok(port) => Some(port),
                }
            }
            _ => {
                return Err(InvalidInput::new(
                    WHAT,
                    "the port must be 1-65535 (leave it out to take any free port)",
                ));
            }
        };
        let path = uri.path().to_owned();
        // The URI sent to the server must be the one allow-listed, character for character:
        // what follows the authority is kept as written.
        let after_scheme = &redirect_uri["http://".len()..];
        let rest = after_scheme[authority.as_str().len()..].to_owned();
        Ok(Self {
            host,
            host_text: host_text.to_owned(),
            port,
            path,
            rest,
        })
    }

    /// The port written in the URI; `None` means any free port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path the callback arrives on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The addresses to listen on, the port left `0` when the URI names none. The first
    /// must be bound; the others are best-effort, on the port the first one got (for
    /// `localhost`: `127.0.0.1`, then `[::1]` where the host has IPv6, because a browser
    /// may try either).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let port = self.port.unwrap_or(0);
        match self.host {
            LoopbackHost::V4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            LoopbackHost::V6 => vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)],
            LoopbackHost::Localhost => vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            ],
        }
    }

    /// Whether a failed bind of the `index`th of [`Self::listen_addrs`] ends the listener.
    /// The first address must be bound. The others (`[::1]` beside `127.0.0.1` for
    /// `localhost`) may be missing where the host has no IPv6, but not held by another
    /// program: that program would get the browser's redirect, the code with it, whenever
    /// the browser tries `::1` first.
    pub fn bind_failure_is_fatal(index: usize, error: &std::io::Error) -> bool {
        index == 0 || error.kind() == std::io::ErrorKind::AddrInUse
    }

    /// The redirect URI to send to the server once `port` is bound: the URI as written,
    /// with the port.
    pub fn redirect_uri(&self, port: u16) -> String {
        format!("http://{}:{port}{}", self.host_text, self.rest)
    }
}

/// A request the reader could not take: the connection gets [`ReadError::response`] and
/// is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// Not an HTTP/1.x request.
    Malformed,
    /// Headers over [`MAX_HEAD_BYTES`] or more than 64 of them.
    HeadTooLarge,
    /// A body over [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// A chunked body: browsers send forms with a `Content-Length`.
    Chunked,
    /// The connection ended in the middle of a request.
    Truncated,
}

impl ReadError {
    /// The page to answer with.
    pub fn response(&self) -> Response<Vec<u8>> {
        let (status, text) = match self {
            ReadError::Malformed | ReadError::Truncated => (
                StatusCode::BAD_REQUEST,
                "This is not a request obauth can read.",
            ),
            ReadError::HeadTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "The request's headers are too large.",
            ),
            ReadError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request's body is too large.",
            ),
            ReadError::Chunked => (
                StatusCode::LENGTH_REQUIRED,
                "A request body needs a Content-Length here.",
            ),
        };
        page(status, "Not a sign-in response", text)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadError::Malformed => "not an HTTP/1.x request",
            ReadError::HeadTooLarge => "request headers too large",
            ReadError::BodyTooLarge => "request body too large",
            ReadError::Chunked => "chunked request body",
            ReadError::Truncated => "connection closed in the middle of a request",
        })
    }
}

impl std::error::Error for ReadError {}

/// Gathers one HTTP/1.x request from a connection's bytes, bounded in size.
#[derive(Default)]
pub struct RequestReader {
    buffer: Vec<u8>,
}

impl fmt::Debug for RequestReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are a callback: the code and `state` (and a form_post `id_token`).
        f.debug_struct("RequestReader")
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl RequestReader {
    /// An empty reader, for one connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bytes just read: the whole request once it has arrived, `None` while more
    /// is needed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Request<Vec<u8>>>, ReadError> {
        self.buffer.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.buffer) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.buffer.len() > MAX_HEAD_BYTES => {
                return Err(ReadError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
            Err(_) => return Err(ReadError::Malformed),
        };
        if head_len > MAX_HEAD_BYTES {
            return Err(ReadError::HeadTooLarge);
        }
        let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
            .map_err(|_| ReadError::Malformed)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(parsed.path.unwrap_or_default());
        let mut content_length: Option<usize> = None;
        for header in parsed.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(ReadError::Chunked);
            }
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|text| text.trim().parse::<usize>().ok())
                    .ok_or(ReadError::Malformed)?;
                if content_length.is_some_and(|earlier| earlier != length) {
                    return Err(ReadError::Malformed);
                }
                content_length = Some(length);
            }
            builder = builder.header(header.name, header.value);
        }
        let length = content_length.unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Err(ReadError::BodyTooLarge);
        }
        if self.buffer.len() < head_len + length {
            return Ok(None);
        }
        let body = self.buffer[head_len..head_len + length].to_vec();
        builder
            .body(body)
            .map(Some)
            .map_err(|_| ReadError::Malformed)
    }

    /// The connection ended: an error if part of a request had arrived.
    pub fn finish(&self) -> Result<(), ReadError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(ReadError::Truncated)
        }
    }
}

/// What a request meant for the wait.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Not a callback (another path or method, a foreign `Host`): answered, and the wait
    /// goes on.
    Ignored,
    /// The callback, with what it carried: the wait is over.
    Received(Result<AuthorizationCallback, CallbackError>),
    /// A callback refused: before the wait is over, one that cannot be this sign-in's
    /// ([`CallbackError::StateMismatch`], [`CallbackError::DuplicateParameter`]), and the wait
    /// goes on; after it, any ([`CallbackError::Replayed`],
    /// [`CallbackError::AlreadyFinished`]), and the first outcome stands.
    Refused(CallbackError),
}

/// The answer to one request: the page for the browser, and what it meant.
#[derive(Debug)]
pub struct Reply {
    /// The page to send back (the connection is closed after it).
    pub response: Response<Vec<u8>>,
    /// What the request meant for the wait.
    pub event: Event,
}

/// Answers the requests that reach the loopback listener, and says when the callback has
/// come. One receiver per sign-in: it expects one `state`.
pub struct RedirectReceiver {
    path: String,
    port: u16,
    expected_state: String,
    expected_issuer: Option<String>,
    finished: Option<Finished>,
}

struct Finished {
    /// The digest of the callback that ended the wait, to tell a replay from another one.
    digest: [u8; 32],
}

impl fmt::Debug for RedirectReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `state` is a one-time value that binds the callback to this sign-in: not shown.
        f.debug_struct("RedirectReceiver")
            .field("path", &self.path)
            .field("port", &self.port)
            .field("finished", &self.finished.is_some())
            .finish_non_exhaustive()
    }
}

impl RedirectReceiver {
    /// A receiver for `redirect` bound on `port`, expecting `expected_state` (the `state`
    /// of the dialog link; make one with [`crate::random::new_state`]).
    pub fn new(redirect: &LoopbackRedirect, port: u16, expected_state: impl Into<String>) -> Self {
        Self {
            path: redirect.path.clone(),
            port,
            expected_state: expected_state.into(),
            expected_issuer: None,
            finished: None,
        }
    }

    /// Also requires `iss`, when the server sends one, to be `issuer` (RFC 9207).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.expected_issuer = Some(issuer.into());
        self
    }

    /// Whether a callback has ended the wait.
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// Answers one request.
    pub fn respond(&mut self, request: &Request<Vec<u8>>) -> Reply {
        if !self.host_is_ours(request) {
            return ignored(page(
                StatusCode::BAD_REQUEST,
                "Not a sign-in response",
                "This address answers only on its loopback name.",
            ));
        }
        if request.uri().path() != self.path {
            return ignored(page(
                StatusCode::NOT_FOUND,
                "Not found",
                "Nothing here: obauth is waiting for the sign-in response on another path.",
            ));
        }
        // `?` first: the dialog parser reads what follows the first `?`, and a value may hold
        // a `?` of its own (an `error_description` asking a question).
        let input = match *request.method() {
            Method::GET => format!("?{}", request.uri().query().unwrap_or_default()),
            Method::POST if is_form(request) => {
                format!("?{}", String::from_utf8_lossy(request.body()))
            }
            Method::POST => {
                return ignored(page(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Not a sign-in response",
                    "A posted sign-in response is a form (application/x-www-form-urlencoded).",
                ));
            }
            _ => {
                let mut response = page(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Not a sign-in response",
                    "The sign-in response arrives with GET or POST.",
                );
                response
                    .headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
                return ignored(response);
            }
        };
        let digest: [u8; 32] = Sha256::digest(input.as_bytes()).into();
        if let Some(finished) = &self.finished {
            let error = if bool::from(subtle::ConstantTimeEq::ct_eq(
                &finished.digest[..],
                &digest[..],
            )) {
                CallbackError::Replayed
            } else {
                CallbackError::AlreadyFinished
            };
            let text = match error {
                CallbackError::Replayed => {
                    "This sign-in response was already received: it is not taken twice. \
                     Return to the terminal; you can close this tab."
                }
                _ => {
                    "obauth has already received a sign-in response and is not waiting for \
                     another. Return to the terminal; you can close this tab."
                }
            };
            return Reply {
                response: page(StatusCode::CONFLICT, "Already received", text),
                event: Event::Refused(error),
            };
        }
        let outcome = match &self.expected_issuer {
            Some(issuer) => parse_callback_with_issuer(&input, &self.expected_state, issuer),
            None => parse_callback(&input, &self.expected_state),
        };
        // Without the right `state` nothing says the request is this sign-in's: anyone who
        // can reach the port could send it. Refused, and the wait goes on.
        if let Err(error @ (CallbackError::StateMismatch | CallbackError::DuplicateParameter(_))) =
            outcome
        {
            let text = match error {
                CallbackError::StateMismatch => {
                    "This response does not belong to the sign-in obauth started (its state \
                     does not match), so it was refused. obauth is still waiting for the \
                     right one."
                }
                _ => {
                    "This response repeats a parameter, so it was refused. obauth is still \
                     waiting for the sign-in response."
                }
            };
            return Reply {
                response: page(StatusCode::BAD_REQUEST, "Sign-in refused", text),
                event: Event::Refused(error),
            };
        }
        self.finished = Some(Finished { digest });
        let response = match &outcome {
            Ok(_) => page(
                StatusCode::OK,
                "Signed in",
                "obauth received the authorization and is finishing the connection in your \
                 terminal. You can close this tab.",
            ),
            Err(CallbackError::Denied { code, description }) => {
                let mut text = format!("The connection was not made: {code}");
                if let Some(description) = description {
                    text.push_str(" (");
                    text.extend(description.chars().filter(|c| !c.is_control()).take(200));
                    text.push(')');
                }
                text.push_str(". Return to the terminal; you can close this tab.");
                page(StatusCode::OK, "Not connected", &text)
            }
            Err(error) => page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &format!(
                    "The sign-in response could not be used: {error}. Start again from the terminal."
                ),
            ),
        };
        Reply {
            response,
            event: Event::Received(outcome),
        }
    }

    /// `Host` must name this loopback address and port: another name means a page that
    /// rebound its own domain to 127.0.0.1.
    fn host_is_ours(&self, request: &Request<Vec<u8>>) -> bool {
        let Some(host) = request.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        // `name[:port]`, the name possibly `[::1]`; no port is http's 80.
        let (name, port) = match host.rfind(':') {
            Some(colon) if !host[colon..].contains(']') => (&host[..colon], &host[colon + 1..]),
            _ => (host, "80"),
        };
        let loopback_name = name.eq_ignore_ascii_case("localhost")
            || name == "[::1]"
            || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
        loopback_name && port.parse::<u16>() == Ok(self.port)
    }
}

fn ignored(response: Response<Vec<u8>>) -> Reply {
    Reply {
        response,
        event: Event::Ignored,
    }
}

fn is_form(request: &Request<Vec<u8>>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A short HTML page: no script, nothing loaded from anywhere, not cached, no `Referer`.
fn page(status: StatusCode, title: &str, text: &str) -> Response<Vec<u8>> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>obauth: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;\
         padding:0 1em;line-height:1.5}}</style></head>\n<body><h1>{title}</h1>\n<p id=\"message\">{text}</p></body></html>\n",
        title = escape_html(title),
        text = escape_html(text),
    );
    let mut response = Response::new(body.into_bytes());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("connection", "close"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The bytes of `response` on the wire: HTTP/1.1, with `Content-Length`.
pub fn encode_response(response: &Response<Vec<u8>>) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256 + response.body().len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in response.headers() {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", response.body().len()).as_bytes());
    out.extend_from_slice(response.body());
    out
}

/// The callbacks a listener refused while waiting, kept for its user to report (the CLI
/// prints each): at most [`Refusals::MAX`], so a flood of forged redirects costs no memory.
/// Only refusals made while waiting are kept; a replay after the outcome is answered, not
/// recorded.
#[derive(Debug, Default)]
pub struct Refusals {
    kept: Vec<CallbackError>,
}

impl Refusals {
    /// How many refusals are kept.
    pub const MAX: usize = 64;

    /// Records what `event` refused, if it is a refusal made while waiting.
    pub fn record(&mut self, event: &Event) {
        if let Event::Refused(
            error @ (CallbackError::StateMismatch | CallbackError::DuplicateParameter(_)),
        ) = event
            && self.kept.len() < Self::MAX
        {
            self.kept.push(error.clone());
        }
    }

    /// The refusals kept, oldest first.
    pub fn all(&self) -> &[CallbackError] {
        &self.kept
    }
}

/// Why no callback came out of the loopback listener.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The redirect URI is not one a loopback listener can serve.
    InvalidRedirectUri(InvalidInput),
    /// Another program listens on the redirect URI's port.
    AddressInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
    },
    /// The address could not be bound for another reason (permissions, no such address).
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// No callback came within the wait. The listener still listens: wait again, or drop
    /// it to free the port.
    TimedOut {
        /// How long this wait lasted.
        waited: Duration,
    },
    /// The wait was cancelled (Ctrl-C, say): nothing was received.
    Cancelled,
    /// The callback came, and it carried no usable code: the dialog's error
    /// ([`CallbackError::Denied`]), a `state` that does not match, a missing `code`.
    Callback(CallbackError),
    /// The callback was already taken by an earlier wait.
    AlreadyTaken,
}

impl ReceiveError {
    /// The error for a failed bind of `addr`: [`ReceiveError::AddressInUse`] when the port
    /// is taken.
    pub fn bind(addr: SocketAddr, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ReceiveError::AddressInUse { addr }
        } else {
            ReceiveError::Bind { addr, source }
        }
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::InvalidRedirectUri(invalid) => invalid.fmt(f),
            ReceiveError::AddressInUse { addr } => write!(
                f,
                "port {} is already in use ({addr}): another program listens there; stop it \
                 or choose another port in the redirect URI",
                addr.port()
            ),
            ReceiveError::Bind { addr, source } => {
                write!(
                    f,
                    "cannot listen on {addr} (port {}): {source}",
                    addr.port()
                )
            }
            ReceiveError::TimedOut { waited } => write!(
                f,
                "no redirect came back from the dialog within {}s",
                waited.as_secs()
            ),
            ReceiveError::Cancelled => f.write_str("cancelled while waiting for the redirect"),
            ReceiveError::Callback(error) => error.fmt(f),
            ReceiveError::AlreadyTaken => {
                f.write_str("the redirect was already taken by an earlier wait")
            }
        }
    }
}

impl std::error::Error for ReceiveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReceiveError::InvalidRedirectUri(invalid) => Some(invalid),
            ReceiveError::Bind { source, .. } => Some(source),
            ReceiveError::Callback(error) => Some(error),
            _ => None,
        }
    }
}

impl From<InvalidInput> for ReceiveError {
    fn from(invalid: InvalidInput) -> Self {
        ReceiveError::InvalidRedirectUri(invalid)
    }
}

#[cfg(test)]
mod tests;
