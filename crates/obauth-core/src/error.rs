//! The core's error type: what went wrong, typed by what a caller would do about it.
//!
//! A leaf of the crate: the rest imports it, and it imports only the `redact` module's
//! text helpers. No variant carries a secret: server bodies appear only as short excerpts
//! with token-like values redacted, and inputs are described, never echoed.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use obauth_types::{ErrorCode, ErrorDetails};

use crate::redact::server_text;

/// Everything a call can fail with: before sending, in the transport, or in the answer.
///
/// The bindings (`obauth-async`, `obauth-blocking`) use this same type, so code that handles
/// errors works with either. It is `Clone` so that one failed token fetch can be handed to
/// every caller that waited for it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an OAuth-style error body (`error`, `error_description`).
    Api(Box<ApiError>),
    /// The server answered with something the spec does not promise (HTML from a proxy,
    /// an empty or truncated body, the wrong shape, a redirect).
    UnexpectedResponse(Box<UnexpectedResponse>),
    /// An input or setting was refused before anything was sent.
    InvalidInput(InvalidInput),
    /// A client assertion could not be signed.
    Signing(SigningError),
    /// The redirect back from the authorization dialog carried no usable code.
    Callback(CallbackError),
    /// The operating system's random source failed.
    Randomness(RandomnessError),
    /// The transport failed: no connection, a broken connection, a body over the cap, a
    /// redirect an HTTP client followed on its own.
    Transport(TransportError),
    /// A connect or total timeout expired.
    Timeout(TimeoutError),
    /// The refresh token was refused (`invalid_grant`): the user must re-authenticate,
    /// e.g. through a reauthentication link built from the token this error carries.
    ReauthenticationRequired(ReauthenticationRequired),
    /// A token store failed.
    Store(StoreError),
}

impl Error {
    /// A short, stable name of the kind of error (`api`, `unexpected_response`,
    /// `invalid_input`, `signing`, `callback`, `randomness`, `transport`, `timeout`,
    /// `reauthentication_required`, `store`): for metrics and log fields. Never holds a
    /// secret or server text.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Api(_) => "api",
            Error::UnexpectedResponse(_) => "unexpected_response",
            Error::InvalidInput(_) => "invalid_input",
            Error::Signing(_) => "signing",
            Error::Callback(_) => "callback",
            Error::Randomness(_) => "randomness",
            Error::Transport(_) => "transport",
            Error::Timeout(_) => "timeout",
            Error::ReauthenticationRequired(_) => "reauthentication_required",
            Error::Store(_) => "store",
        }
    }

    /// Whether sending the same operation again may succeed: throttling (429), server-side
    /// failures (5xx and the equivalent error codes) and gateway errors. Whether a retry is
    /// *safe* depends on the operation too: see [`crate::retry::RetryPolicy::decide`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(transport) => matches!(
                transport.kind,
                TransportErrorKind::Connect | TransportErrorKind::Io
            ),
            Error::Timeout(_) => true,
            Error::ReauthenticationRequired(_) | Error::Store(_) => false,
            Error::Api(api) => {
                is_retryable_status(api.status)
                    || matches!(
                        api.code,
                        ErrorCode::InternalServerError
                            | ErrorCode::ServerError
                            | ErrorCode::TemporarilyUnavailable
                    )
            }
            Error::UnexpectedResponse(unexpected) => is_retryable_status(unexpected.status),
            Error::InvalidInput(_) | Error::Signing(_) | Error::Callback(_) => false,
            Error::Randomness(_) => false,
        }
    }

    /// The HTTP status of the server's answer, if there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(api) => Some(api.status),
            Error::UnexpectedResponse(unexpected) => Some(unexpected.status),
            _ => None,
        }
    }

    /// The server's error code, for an API error.
    pub fn api_code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api(api) => Some(&api.code),
            _ => None,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Error::Api(api) => api.retry_after,
            Error::UnexpectedResponse(unexpected) => unexpected.retry_after,
            _ => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, problem: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput(InvalidInput::new(what, problem))
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(api) => api.fmt(f),
            Error::UnexpectedResponse(unexpected) => unexpected.fmt(f),
            Error::InvalidInput(invalid) => invalid.fmt(f),
            Error::Signing(signing) => signing.fmt(f),
            Error::Callback(callback) => callback.fmt(f),
            Error::Randomness(random) => random.fmt(f),
            Error::Transport(transport) => transport.fmt(f),
            Error::Timeout(timeout) => timeout.fmt(f),
            Error::ReauthenticationRequired(reauth) => reauth.fmt(f),
            Error::Store(store) => store.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Signing(signing) => signing.source(),
            Error::Transport(transport) => transport.source(),
            Error::Store(store) => store.source(),
            Error::ReauthenticationRequired(reauth) => Some(&*reauth.cause),
            _ => None,
        }
    }
}

impl From<InvalidInput> for Error {
    fn from(invalid: InvalidInput) -> Self {
        Error::InvalidInput(invalid)
    }
}

impl From<StoreError> for Error {
    /// A store that failed to open (or any store call made by hand), as the error the
    /// clients and token managers return.
    fn from(store: StoreError) -> Self {
        Error::Store(store)
    }
}

impl From<SigningError> for Error {
    fn from(signing: SigningError) -> Self {
        Error::Signing(signing)
    }
}

impl From<CallbackError> for Error {
    fn from(callback: CallbackError) -> Self {
        Error::Callback(callback)
    }
}

impl From<RandomnessError> for Error {
    fn from(random: RandomnessError) -> Self {
        Error::Randomness(random)
    }
}

/// A server's `Retry-After` (RFC 9110 §10.2.3): seconds, or a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(Duration),
    /// `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
    At(SystemTime),
}

impl RetryAfter {
    /// Reads the header; an unreadable value counts as absent.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
            // A delay too large for a u64 of seconds is a delay too long to wait for, not
            // an absent header (which would be retried at once).
            let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
            return Some(RetryAfter::Delay(Duration::from_secs(seconds)));
        }
        httpdate::parse_http_date(value).ok().map(RetryAfter::At)
    }

    /// How long to wait from `now`; a date in the past means no wait.
    pub fn delay_from(self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(delay) => delay,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

/// An OAuth-style error answer.
///
/// The fields hold what the server sent. `Display` and `Debug` show the server's texts
/// folded to one line, cut short, and with anything token-like redacted (a server or
/// gateway may echo a credential back in `error_description`), and show only the names
/// of `error_details`' other keys.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status (servers differ on 400 vs 401 for the same code, so match on `code`).
    pub status: StatusCode,
    /// The `error` code; unknown codes are kept.
    pub code: ErrorCode,
    /// `error_description`.
    pub description: Option<String>,
    /// TrueLayer's `error_details`, every key kept.
    pub details: Option<ErrorDetails>,
    /// A trace or correlation id header, to quote to the provider's support.
    pub trace_id: Option<String>,
    /// `Retry-After`, if sent.
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = server_text(self.code.as_ref(), 64);
        write!(f, "server answered {}", self.status)?;
        if !code.is_empty() {
            write!(f, ": {code}")?;
        }
        if let Some(description) = &self.description {
            write!(f, ": {}", server_text(description, 300))?;
        }
        if let Some(reason) = self.details.as_ref().and_then(|d| d.reason.as_deref()) {
            write!(f, " ({})", server_text(reason, 300))?;
        }
        if let Some(trace_id) = &self.trace_id {
            write!(f, " [trace id {trace_id}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = self.details.as_ref().map(|details| {
            (
                details
                    .reason
                    .as_deref()
                    .map(|reason| server_text(reason, 300)),
                details.other.keys().collect::<Vec<_>>(),
            )
        });
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &server_text(self.code.as_ref(), 64))
            .field(
                "description",
                &self
                    .description
                    .as_deref()
                    .map(|text| server_text(text, 300)),
            )
            .field("details (reason, other keys)", &details)
            .field("trace_id", &self.trace_id)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// What was wrong with an unexpected response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnexpectedKind {
    /// The body was empty where JSON was promised.
    EmptyBody,
    /// The body is not JSON (an HTML error page from a proxy, plain text, truncated JSON).
    NotJson,
    /// JSON, but not the promised shape; says which field or type was off.
    WrongShape(String),
    /// A redirect: obauth never follows redirects on these endpoints.
    Redirect,
    /// An auth-link answer with `"success": false`.
    LinkNotCreated,
}

impl fmt::Display for UnexpectedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnexpectedKind::EmptyBody => f.write_str("empty body"),
            UnexpectedKind::NotJson => f.write_str("body is not JSON"),
            UnexpectedKind::WrongShape(why) => write!(f, "JSON of the wrong shape: {why}"),
            UnexpectedKind::Redirect => f.write_str("redirect (not followed)"),
            UnexpectedKind::LinkNotCreated => f.write_str("link not created (success: false)"),
        }
    }
}

/// An answer that is not what the spec promises.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnexpectedResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong.
    pub kind: UnexpectedKind,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The start of the body, with secret-looking values redacted.
    pub excerpt: String,
    /// A trace or correlation id header.
    pub trace_id: Option<String>,
    /// `Retry-After`, if sent.
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for UnexpectedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected response (HTTP {}", self.status)?;
        if let Some(content_type) = &self.content_type {
            write!(f, ", {content_type}")?;
        }
        write!(f, "): {}", self.kind)?;
        if !self.excerpt.is_empty() {
            write!(f, "; body starts: {}", self.excerpt)?;
        }
        if let Some(trace_id) = &self.trace_id {
            write!(f, " [trace id {trace_id}]")?;
        }
        Ok(())
    }
}

/// An input or setting refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidInput {
    what: &'static str,
    problem: Cow<'static, str>,
}

impl InvalidInput {
    /// `what` names the input (`"redirect_uri"`, `"base URL"`); `problem` says what to fix.
    /// Neither may contain a secret value.
    pub fn new(what: &'static str, problem: impl Into<Cow<'static, str>>) -> Self {
        Self {
            what,
            problem: problem.into(),
        }
    }

    /// The input that was refused.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.problem)
    }
}

impl std::error::Error for InvalidInput {}

type Source = Arc<dyn std::error::Error + Send + Sync>;

/// A client assertion could not be signed. Custom [`crate::worldline::assertion::AssertionSigner`]s
/// (HSM, KMS) report their failures with it.
#[derive(Clone, Debug)]
pub struct SigningError {
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl SigningError {
    /// A failure described by `message`, which must not contain key material.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// The same, with the underlying cause.
    pub fn with_source(
        message: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::from(source.into())),
        }
    }
}

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signing the client assertion failed: {}", self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SigningError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// What kind of transport failure happened, as far as a caller or a retry cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection was made (refused, DNS, TLS handshake): nothing reached the server.
    Connect,
    /// The connection broke after the request may have been sent (reset, closed
    /// mid-response, truncated body).
    Io,
    /// The body was larger than the binding's cap ([`crate::MAX_RESPONSE_BODY`] by default).
    BodyTooLarge,
    /// A caller-supplied HTTP client followed a redirect; obauth never does.
    RedirectFollowed,
    /// The request could not be handed to the HTTP client (e.g. an invalid header).
    Request,
}

/// The transport failed. Built by the bindings from their HTTP client's errors, so that no
/// client type appears in obauth's API.
#[derive(Clone, Debug)]
pub struct TransportError {
    kind: TransportErrorKind,
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl TransportError {
    /// A failure of `kind`, described by `message` (which must hold no secret).
    pub fn new(kind: TransportErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same with the HTTP client's error as its cause.
    pub fn with_source(
        kind: TransportErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transport error: {}", self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Which deadline expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Connecting (resolution, TCP, TLS): the request was not sent.
    Connect,
    /// The whole call, from sending to the last body byte.
    Total,
    /// The deadline of the whole call (a client's total timeout; for a token manager, the
    /// whole fetch: store, lease, every attempt and the waits between them): no further
    /// attempt or wait fitted in it.
    Deadline,
}

/// A deadline expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutError {
    /// Which deadline.
    pub phase: TimeoutPhase,
    /// Its length.
    pub after: Duration,
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Total => "waiting for the answer",
            TimeoutPhase::Deadline => {
                f.write_str(
                    "timed out: the call's overall deadline passed (its attempts and the pauses between them share the total timeout)",
                )?;
                if !self.after.is_zero() {
                    write!(f, " (the last attempt had {:.1?} left)", self.after)?;
                }
                return Ok(());
            }
        };
        write!(f, "timed out {phase} after {:.1?}", self.after)
    }
}

/// The refresh token was refused; the user has to go through the bank again.
#[derive(Clone, Debug)]
pub struct ReauthenticationRequired {
    refresh_token: obauth_types::RefreshToken,
    cause: Box<ApiError>,
}

impl ReauthenticationRequired {
    /// Wraps the server's refusal of `refresh_token`.
    pub fn new(refresh_token: obauth_types::RefreshToken, cause: Box<ApiError>) -> Self {
        Self {
            refresh_token,
            cause,
        }
    }

    /// The refused refresh token: TrueLayer's `/v1/reauthuri` takes it to build a
    /// reauthentication link (see [`crate::truelayer::auth_link::ReauthLink`]).
    pub fn refresh_token(&self) -> &obauth_types::RefreshToken {
        &self.refresh_token
    }

    /// The server's answer.
    pub fn cause(&self) -> &ApiError {
        &self.cause
    }

    pub(crate) fn cause_mut(&mut self) -> &mut ApiError {
        &mut self.cause
    }
}

impl fmt::Display for ReauthenticationRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "re-authentication required: {}", self.cause)
    }
}

impl std::error::Error for ApiError {}

/// What kind of token-store failure happened, as far as a caller cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached, or did not answer in time (I/O error, a database
    /// locked past its busy timeout, a lost connection).
    Unavailable,
    /// A record or the store itself is unreadable: a truncated or corrupted file, a record
    /// of the wrong shape, a schema written by a newer obauth.
    Corrupt,
    /// A sealed record could not be opened: sealed under another key or tampered with, no
    /// key given for a sealed record, or a key given and the record not sealed.
    Sealed,
    /// Nothing is stored where something must be: a user connection that was never saved.
    NotFound,
    /// Another process held the lease on this token past this call's deadline.
    LeaseTimeout,
    /// A custom store's own failure.
    Other,
}

/// A token store failed. A user's rotated refresh token that could not be written is kept
/// in memory and written first thing on the next call, before anything is refreshed.
#[derive(Clone, Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl StoreError {
    /// A failure of `kind` described by `message` (no secrets; a file name is fine).
    pub fn new(kind: StoreErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same with the underlying cause.
    pub fn with_source(
        kind: StoreErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The same failure, saying that it came after the server rotated a refresh token.
    pub(crate) fn after_rotation(mut self) -> Self {
        self.message = format!(
            "{} (after the server rotated the refresh token: the new one is kept in memory, \
             and written before anything else on the next call)",
            self.message
        )
        .into();
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token store: {}", self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// The operating system's random source failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomnessError {
    pub(crate) code: Option<u32>,
}

impl fmt::Display for RandomnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operating system's random source failed")?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RandomnessError {}

/// The redirect back from the authorization dialog did not yield a code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackError {
    /// The dialog returned an error (RFC 6749 §4.1.2.1), e.g. `access_denied`.
    Denied {
        /// The error code.
        code: ErrorCode,
        /// `error_description`.
        description: Option<String>,
    },
    /// `state` is missing or differs from the one sent: possibly a forged redirect.
    StateMismatch,
    /// A required parameter is missing.
    MissingParameter(&'static str),
    /// A parameter appears more than once (RFC 6749 §3.1).
    DuplicateParameter(String),
    /// `iss` differs from the expected issuer (RFC 9207).
    IssuerMismatch,
    /// The same redirect arrived again after it had been taken (a reload, a replay): a
    /// code is taken once.
    Replayed,
    /// A redirect arrived after the receiver had already taken one: refused.
    AlreadyFinished,
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackError::Denied { code, description } => {
                write!(f, "authorization failed: {code}")?;
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                Ok(())
            }
            CallbackError::StateMismatch => {
                f.write_str("authorization redirect: state is missing or does not match")
            }
            CallbackError::MissingParameter(name) => {
                write!(f, "authorization redirect: missing `{name}`")
            }
            CallbackError::DuplicateParameter(name) => {
                write!(f, "authorization redirect: `{name}` appears more than once")
            }
            CallbackError::IssuerMismatch => {
                f.write_str("authorization redirect: `iss` is not the expected issuer")
            }
            CallbackError::Replayed => {
                f.write_str("authorization redirect: already received once (a replay)")
            }
            CallbackError::AlreadyFinished => {
                f.write_str("authorization redirect: the receiver had already taken a redirect")
            }
        }
    }
}

impl std::error::Error for CallbackError {}
