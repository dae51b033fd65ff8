//! The async binding of obauth: TrueLayer and Worldline clients on tokio + reqwest, and the
//! token managers a service calls on every request.
//!
//! ```no_run
//! # async fn run() -> Result<(), obauth_async::Error> {
//! use obauth_async::TrueLayerClient;
//! use obauth_async::core::truelayer::Environment;
//! use obauth_async::types::{ClientSecret, Scopes, truelayer::Scope};
//!
//! let client = TrueLayerClient::builder(Environment::Sandbox, "client-id")
//!     .client_secret(ClientSecret::new("from-your-secret-store"))
//!     .build()?;
//! let token = client.client_credentials(Scopes::from([Scope::Payments])).await?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! Every method hands an `http::Request` built by [`obauth_core`] to the transport, and the
//! `http::Response` back to the core: this crate has no request or response logic of its
//! own, only the sending, the sleeping between retries, and the locking around cached
//! tokens. `obauth-blocking` has the same API without `async`.
//!
//! Transport defaults: reqwest with rustls, no redirects ever, a 10 s connect timeout and a
//! 30 s total timeout per attempt, response bodies capped at
//! [`MAX_RESPONSE_BODY`](obauth_core::MAX_RESPONSE_BODY), one connection pool per client.
//! It works on the multi-thread and the current-thread tokio runtimes. The only task it
//! spawns is a token manager's fetch, so that a fetch is finished even when its callers
//! stop waiting (see [`manager`]).
//!
//! This crate is not for blocking code (use `obauth-blocking`) nor for building requests
//! yourself (use `obauth-core`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod manager;
pub mod transport;
pub mod truelayer;
pub mod worldline;

pub use manager::{RefreshTokenStore, TokenSource, UserTokens};
pub use obauth_core as core;
pub use obauth_core::Error;
pub use obauth_types as types;
pub use transport::{HttpTransport, ReqwestTransport, Timeouts};
pub use truelayer::TrueLayerClient;
pub use worldline::WorldlineClient;

use std::time::SystemTime;

use obauth_core::retry::RetryPolicy;
use obauth_core::{Call, Operation, OsRandom, Step};

/// Runs `op` through `transport`, retrying as `policy` and the operation allow.
pub(crate) async fn execute<O: Operation>(
    transport: &dyn HttpTransport,
    policy: RetryPolicy,
    op: &O,
) -> Result<O::Output, Error> {
    let mut call = Call::new(op, policy);
    loop {
        let request = call.request(SystemTime::now(), &mut OsRandom)?;
        let outcome = transport.send(request).await;
        match call.outcome(outcome, SystemTime::now(), &mut OsRandom) {
            Step::Done(result) => return result,
            Step::Retry(delay) => tokio::time::sleep(delay).await,
        }
    }
}
