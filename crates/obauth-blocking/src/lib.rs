//! The blocking binding of obauth: TrueLayer and Worldline clients on ureq, and the token
//! managers a service calls on every request. No async runtime: this crate never depends
//! on tokio.
//!
//! ```no_run
//! use obauth_blocking::TrueLayerClient;
//! use obauth_blocking::core::truelayer::Environment;
//! use obauth_blocking::types::{ClientSecret, Scopes, truelayer::Scope};
//!
//! let client = TrueLayerClient::builder(Environment::Sandbox, "client-id")
//!     .client_secret(ClientSecret::new("from-your-secret-store"))
//!     .build()?;
//! let token = client.client_credentials(Scopes::from([Scope::Payments]))?;
//! # let _ = token; Ok::<(), obauth_blocking::Error>(())
//! ```
//!
//! The API is `obauth-async`'s without `async`: same types, same method names. Every method
//! hands an `http::Request` built by [`obauth_core`] to ureq and the `http::Response` back
//! to the core; this crate only sends, sleeps between retries, and does the waiting and
//! store calls the token machine of [`obauth_core::manager`] asks for. With the `sqlite`
//! feature, `SqliteStore` keeps tokens for every process of a host; with `redis`,
//! `RedisStore` for the replicas of a service. There is no PostgreSQL store here: its
//! client (tokio-postgres) needs tokio, which this crate never pulls in; keep users'
//! connections in SQLite or Redis, or use `obauth-async`'s `PostgresStore`. With
//! `middleware`, the `bearer` module calls other APIs with these tokens (a ureq agent wrapper and
//! ureq middleware that set the header and replace a refused token).
//! [`loopback::RedirectListener`] receives the auth dialog's redirect on this machine (RFC
//! 8252), on threads of its own that end when it is dropped.
//!
//! Transport defaults: ureq with rustls, statuses are answers (`http_status_as_error` off),
//! no redirects ever, a 10 s connect timeout and a 30 s total timeout per attempt, response
//! bodies capped at [`MAX_RESPONSE_BODY`](obauth_core::MAX_RESPONSE_BODY), resolved
//! addresses cached for a minute, one connection pool per client.
//!
//! This crate is not for async code (use `obauth-async`) nor for building requests yourself
//! (use `obauth-core`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "middleware")]
pub mod bearer;
pub mod loopback;
pub mod manager;
pub mod transport;
pub mod truelayer;
pub mod worldline;

pub use manager::{TokenSource, UserTokens};
pub use obauth_core as core;
pub use obauth_core::manager::ManagerOptions;
pub use obauth_core::store::{MemoryStore, SealingKey, TokenStore};
pub use obauth_core::{Error, OutgoingRequest};
#[cfg(feature = "redis")]
pub use obauth_redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use obauth_sqlite::SqliteStore;
pub use obauth_types as types;
pub use transport::{HttpTransport, Timeouts, UreqTransport};
pub use truelayer::TrueLayerClient;
pub use worldline::WorldlineClient;

use std::time::Instant;

use obauth_core::expiry::Now;
use obauth_core::retry::RetryPolicy;
use obauth_core::{Call, CallLimit, Operation, OsRandom, Step};

/// Runs `op` through `transport`, retrying as `policy` and the operation allow, and within
/// `deadline` if there is one.
///
/// With the `tracing` feature, the call is a span `obauth.call` (see [`trace`]).
pub(crate) fn execute<O: Operation>(
    transport: &dyn HttpTransport,
    policy: RetryPolicy,
    op: &O,
    limit: CallLimit,
) -> Result<O::Output, Error> {
    let started = Instant::now();
    let span = trace::call_span(op);
    let _entered = span.enter();
    let mut call = Call::new(op, policy).with_limit(limit, started);
    let mut seen = trace::Seen::default();
    loop {
        let request = call.request(Now::system(), &mut OsRandom)?;
        let outcome = transport.send(OutgoingRequest::new(request));
        trace::attempt(&span, &mut seen, call.attempts(), &outcome, started);
        match call.outcome(outcome, Now::system(), &mut OsRandom) {
            Step::Done(result) => {
                trace::done(&span, &seen, call.attempts(), &result, started);
                return result;
            }
            Step::Retry(delay) => {
                trace::retry(delay);
                std::thread::sleep(delay);
            }
        }
    }
}

/// What the binding tells `tracing` (feature `tracing`, on by default): the span
/// `obauth.call` per API call and the token managers' events, their names and fields.
pub use obauth_trace as trace;
