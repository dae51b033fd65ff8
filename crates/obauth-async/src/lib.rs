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
//! own, only the sending, the sleeping between retries, and the waiting and store calls the
//! token machine of [`obauth_core::manager`] asks for. `obauth-blocking` has the same API
//! without `async`. With the `sqlite` feature, `SqliteStore` keeps tokens for every
//! process of a host; with `redis`, `RedisStore` for the replicas of a service; with
//! `postgres`, `PostgresStore` keeps users' connections in the service's database.
//! [`loopback::RedirectListener`] receives the auth dialog's redirect on this machine, for
//! programs that run where their user is (RFC 8252).
//!
//! Transport defaults: reqwest with rustls, no redirects ever, a 10 s connect timeout and a
//! 30 s total timeout per attempt, response bodies capped at
//! [`MAX_RESPONSE_BODY`](obauth_core::MAX_RESPONSE_BODY), one connection pool per client.
//! It works on the multi-thread and the current-thread tokio runtimes. The tasks it spawns
//! are a token manager's fetch, so that a fetch is finished even when its callers stop
//! waiting (see [`manager`]), and a redirect listener's accept loop and connections, which
//! end when the listener is dropped.
//!
//! This crate is not for blocking code (use `obauth-blocking`) nor for building requests
//! yourself (use `obauth-core`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(feature = "reqwest-middleware", feature = "tower"))]
pub mod bearer;
pub mod loopback;
pub mod manager;
pub mod store;
pub mod transport;
pub mod truelayer;
pub mod worldline;

pub use manager::{TokenSource, UserTokens};
pub use obauth_core as core;
pub use obauth_core::manager::ManagerOptions;
pub use obauth_core::store::{AsyncTokenStore, MemoryStore, SealingKey, TokenStore};
pub use obauth_core::{Error, OutgoingRequest};
#[cfg(feature = "postgres")]
pub use obauth_postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use obauth_redis::AsyncRedisStore as RedisStore;
#[cfg(feature = "sqlite")]
pub use obauth_sqlite::SqliteStore;
pub use obauth_types as types;
pub use store::Store;
pub use transport::{HttpTransport, ReqwestTransport, Timeouts};
pub use truelayer::TrueLayerClient;
pub use worldline::WorldlineClient;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use obauth_core::expiry::Now;
use obauth_core::retry::RetryPolicy;
use obauth_core::{Call, CallLimit, Operation, OsRandom, Step};

/// Runs `op` through `transport`, retrying as `policy` and the operation allow, and within
/// `deadline` if there is one.
///
/// With the `tracing` feature, the call is a span `obauth.call` (see [`trace`]).
pub(crate) async fn execute<O: Operation>(
    transport: &dyn HttpTransport,
    policy: RetryPolicy,
    op: &O,
    limit: CallLimit,
) -> Result<O::Output, Error> {
    let span = trace::call_span(op);
    trace::instrument(attempts(transport, policy, op, limit, &span), &span).await
}

async fn attempts<O: Operation>(
    transport: &dyn HttpTransport,
    policy: RetryPolicy,
    op: &O,
    limit: CallLimit,
    span: &trace::CallSpan,
) -> Result<O::Output, Error> {
    let started = Instant::now();
    let mut call = Call::new(op, policy).with_limit(limit, started);
    let mut seen = trace::Seen::default();
    loop {
        let request = call.request(Now::system(), &mut OsRandom)?;
        let outcome = transport.send(OutgoingRequest::new(request)).await;
        trace::attempt(span, &mut seen, call.attempts(), &outcome, started);
        match call.outcome(outcome, Now::system(), &mut OsRandom) {
            Step::Done(result) => {
                trace::done(span, &seen, call.attempts(), &result, started);
                return result;
            }
            Step::Retry(delay) => {
                trace::retry(delay);
                sleep(delay).await;
            }
        }
    }
}

/// What the binding tells `tracing` (feature `tracing`, on by default): the span
/// `obauth.call` per API call and the token managers' events, their names and fields.
pub use obauth_trace as trace;

/// Sleeps on tokio's timer inside a runtime, and on a helper thread outside one (a custom
/// transport on another executor), so that a retry never needs a reactor that is not there.
pub(crate) async fn sleep(pause: Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(pause).await;
    } else {
        ThreadSleep::new(pause).await;
    }
}

/// A timer that needs no runtime: a thread sleeps and wakes the task.
struct ThreadSleep {
    pause: Duration,
    shared: Option<Arc<Mutex<Alarm>>>,
}

/// Whether the timer thread has woken up, and whom to wake then.
#[derive(Default)]
struct Alarm {
    rang: bool,
    waker: Option<Waker>,
}

impl ThreadSleep {
    fn new(pause: Duration) -> Self {
        Self {
            pause,
            shared: None,
        }
    }
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let pause = self.pause;
        let shared = self.shared.get_or_insert_with(|| {
            let shared = Arc::new(Mutex::new(Alarm::default()));
            let timer = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("obauth-sleep".into())
                .spawn(move || {
                    std::thread::sleep(pause);
                    let mut state = timer.lock().unwrap_or_else(PoisonError::into_inner);
                    state.rang = true;
                    if let Some(waker) = state.waker.take() {
                        waker.wake();
                    }
                });
            if spawned.is_err() {
                // No thread to be had: sleep here, which blocks this executor thread but
                // still ends.
                std::thread::sleep(pause);
                shared.lock().unwrap_or_else(PoisonError::into_inner).rang = true;
            }
            shared
        });
        let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
        if state.rang {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
