//! The sans-IO core of obauth: every operation of TrueLayer's Authentication Server and
//! Worldline's token endpoint as a pure request builder and a pure response parser.
//!
//! No sockets, no TLS, no runtime, no clock and no global state: an operation turns its
//! inputs into an `http::Request<Vec<u8>>`, and turns the `http::Response` you got back into
//! a typed result or a typed [`Error`]. Time and randomness arrive as arguments
//! ([`RequestContext`], `now` parameters), so every decision here is reproducible in a test.
//! The same holds for the bookkeeping around the calls: token expiry ([`expiry`]), retries
//! ([`retry`] and [`call`]), PKCE ([`pkce`]), the Worldline client assertion
//! ([`worldline::assertion`]), and the token managers' whole life cycle ([`manager`]: a
//! machine that says what to do next, which the bindings drive), with the records it keeps
//! behind a [`store::TokenStore`] (in memory here; in SQLite with `obauth-sqlite`), and
//! the decisions of the bindings' bearer-token middleware ([`bearer`]: when to set the
//! header, which `401` means a fresh token and one more try), and the answers of a
//! loopback redirect receiver ([`truelayer::loopback`]: the browser's request in, the page
//! and the callback out).
//!
//! ```text
//!   TrueLayerConfig / WorldlineConfig        (endpoints, credentials; built once)
//!          │  .exchange_code(…) / .token(…)
//!          ▼
//!   impl Operation ──build_request(cx)──▶ http::Request<Vec<u8>> ──▶ your HTTP client
//!          │                                                                │
//!          └────────parse_response(&resp)◀── http::Response<impl AsRef<[u8]>> ◀─┘
//!                        │
//!                        ▼
//!            Ok(typed output) | Err(Error) ──▶ retry::RetryPolicy::decide(…)
//! ```
//!
//! This crate is not an HTTP client and touches no file: `obauth-async` (reqwest) and
//! `obauth-blocking` (ureq) are thin loops around it, and you can drive it with any client
//! you like. The data types
//! live in `obauth-types`, re-exported here as [`types`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bearer;
pub mod call;
pub mod client;
pub mod error;
pub mod expiry;
pub mod manager;
pub mod operation;
mod outgoing;
pub mod pkce;
pub mod random;
mod redact;
pub mod retry;
mod scrub;
pub mod store;
pub mod truelayer;
pub mod url;
mod validate;
mod wire;
pub mod worldline;

pub use call::{AttemptTimeout, Call, CallLimit, Step, Timeouts};
pub use error::{
    ApiError, CallbackError, Error, InvalidInput, ReauthenticationRequired, SigningError,
    StoreError, StoreErrorKind, TimeoutError, TimeoutPhase, TransportError, TransportErrorKind,
    UnexpectedResponse,
};
pub use obauth_types as types;
pub use operation::{Operation, Replay, RequestContext};
pub use outgoing::OutgoingRequest;
pub use random::{OsRandom, RandomSource};
pub use url::BaseUrl;
pub use wire::{MAX_RESPONSE_BODY, USER_AGENT, server_trace_id};
