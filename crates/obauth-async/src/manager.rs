//! Token managers: call them on every request; they serve the cached token while it is
//! fresh and fetch a new one, once, when it is due.
//!
//! * [`TokenSource`]: an application token (client credentials) for TrueLayer or Worldline.
//! * [`UserTokens`]: a user's TrueLayer connection, refreshed with its rotating refresh
//!   token, which reaches the store before the new access token reaches you.
//!
//! Both keep their state in a [`Store`]: a [`MemoryStore`](crate::MemoryStore)
//! of their own unless you give them one (with the `sqlite` feature, `SqliteStore` shares
//! tokens between the processes of a host; with `redis`, `RedisStore` between the replicas
//! of a service). Every decision (fresh, due, expired, who
//! fetches, what is written when, what a refused refresh means) is
//! `obauth_core::manager`'s; this module only does what it says and waits.
//!
//! Reading a fresh token takes no lock: an atomic load, a clock read and a copy of the
//! token. Fetching is single-flight: concurrent callers that find no fresh token wait for
//! one fetch and all get its result, token or error. A token due for refresh is still
//! served while one fetch, on a task of its own, replaces it: no caller holding a valid
//! token waits for a refresh.
//!
//! A fetch runs on a task of its own (`tokio::spawn`), so it is finished even if every
//! caller stops waiting (a `tokio::time::timeout` around `access_token()`, a `select!`): a
//! refresh whose answer the server has sent is never cut short before the rotated refresh
//! token is written. If that task is dropped before it ends (the runtime shutting down),
//! its waiters get an error and the next call starts afresh.
//!
//! Outside a tokio runtime (a custom [`HttpTransport`] on another
//! executor) the fetch runs in the caller's future, retries and lease waits sleep on a
//! helper thread, and a token due for refresh is served until it expires, then fetched.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::HeaderValue;
use obauth_core::Error;
use obauth_core::expiry::Now;
use obauth_core::manager::{Action, Event, Fetch, Flight as CoreFlight, Join};
use obauth_types::AccessToken;
use tokio::sync::Notify;

use crate::store::Store;
use crate::transport::HttpTransport;
use crate::{execute, sleep, trace};

/// One fetch's result, set once, and the callers waiting for it.
#[derive(Default)]
struct Flight {
    result: OnceLock<Result<AccessToken, Error>>,
    done: Notify,
}

impl CoreFlight for Flight {
    fn complete(&self, result: &Result<AccessToken, Error>) {
        let _ = self.result.set(result.clone());
        self.done.notify_waiters();
    }
}

impl Flight {
    async fn wait(&self) -> Result<AccessToken, Error> {
        loop {
            let notified = self.done.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so a result set in between still wakes us.
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            notified.await;
        }
    }
}

type Managed = obauth_core::manager::Managed<Flight, dyn HttpTransport, Store>;

fn access_token(managed: &Arc<Managed>) -> TokenRead<'_, AccessToken> {
    match managed.cell().fresh(SystemTime::now()) {
        Some(token) => {
            trace::hit(managed.key());
            TokenRead::Fresh(Some(token))
        }
        None => TokenRead::Fetch(Box::pin(slow(managed))),
    }
}

fn authorization_header(managed: &Arc<Managed>) -> TokenRead<'_, HeaderValue> {
    match managed.cell().fresh_authorization(SystemTime::now()) {
        Some(header) => {
            trace::hit(managed.key());
            TokenRead::Fresh(Some(header))
        }
        None => TokenRead::Fetch(Box::pin(async move {
            Ok(obauth_core::bearer::authorization(&slow(managed).await?)?)
        })),
    }
}

async fn slow(managed: &Arc<Managed>) -> Result<AccessToken, Error> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let key = managed.key();
    match managed.cell().join(Now::system(), runtime.is_some()) {
        Join::Serve(token) => {
            trace::decision(key, "serve");
            Ok(token)
        }
        Join::Wait(flight) => {
            trace::decision(key, "wait");
            flight.wait().await
        }
        Join::Lead(fetch) => match runtime {
            Some(runtime) => {
                trace::decision(key, "fetch");
                let flight = Arc::clone(fetch.flight());
                spawn(managed, &runtime, fetch);
                flight.wait().await
            }
            None => {
                trace::decision(key, "fetch");
                drive(managed, fetch).await
            }
        },
        Join::Refresh { serve, fetch } => {
            trace::decision(key, "refresh early");
            if let Some(runtime) = runtime {
                spawn(managed, &runtime, fetch);
            }
            Ok(serve)
        }
    }
}

/// Runs `fetch` on a task of its own. The fetch moves into the task before it is spawned:
/// if the task is dropped unpolled (a runtime shutting down), dropping the fetch still
/// wakes its waiters.
fn spawn(managed: &Arc<Managed>, runtime: &tokio::runtime::Handle, fetch: Fetch<Flight>) {
    let managed = Arc::clone(managed);
    runtime.spawn(async move {
        let _ = drive(&managed, fetch).await;
    });
}

/// Does what the machine says until it is done.
async fn drive(managed: &Managed, mut fetch: Fetch<Flight>) -> Result<AccessToken, Error> {
    let (store, key) = (managed.store(), managed.key());
    let mut event = Event::Start;
    loop {
        let action = fetch.step(Now::system(), event);
        if let Some(notice) = fetch.take_notice() {
            trace::notice(key, notice);
        }
        trace::action(key, &action);
        event = match action {
            Action::Load => Event::Loaded(store.load(key).await),
            Action::LoadPrevious(previous) => Event::Loaded(store.load(&previous).await),
            Action::Lease { holder, ttl } => Event::Leased(store.try_lease(key, holder, ttl).await),
            Action::Sleep(pause) => {
                sleep(pause).await;
                Event::Woke
            }
            Action::Send { grant, deadline } => {
                let sent = Now::system();
                let result = match managed.endpoint().request(&grant) {
                    Ok(op) => {
                        execute(
                            managed.transport(),
                            managed.retry(),
                            &op,
                            obauth_core::CallLimit::Deadline(deadline),
                        )
                        .await
                    }
                    Err(error) => Err(error),
                };
                Event::Answered { sent, result }
            }
            Action::Persist { expect, record } => {
                Event::Persisted(store.compare_and_swap(key, expect, record).await)
            }
            Action::Release { holder } => Event::Released(store.release(key, holder).await),
            Action::Done(result) => return result,
        };
    }
}

/// What `access_token()` (and `authorization_header()`) returns: ready at its first poll
/// with the fresh token read when it was called, or the fetch, boxed so that the fresh case
/// stays small. The fresh case holds the bare token rather than a finished `Result`: moving
/// a `Result<_, Error>` in and out of a future costs more than the rest of the read.
enum TokenRead<'a, T> {
    Fresh(Option<T>),
    Fetch(Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>),
}

impl<T: Unpin> Future for TokenRead<'_, T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // Like any future (and `std::future::Ready`), it panics if polled again after
            // it has completed: that is a bug in the caller's executor, not bad input.
            TokenRead::Fresh(token) => Poll::Ready(Ok(token
                .take()
                .expect("access_token() future polled after completion"))),
            TokenRead::Fetch(fetch) => fetch.as_mut().poll(cx),
        }
    }
}

obauth_core::token_manager_types!(store: impl Into<Store>; async await);

impl TokenSource {
    /// The access token: cached while fresh, fetched once for all concurrent callers when due.
    ///
    /// A fresh token is read when this is called, without a lock; the future is then ready at
    /// its first poll and small (the fetch, when one is needed, is boxed).
    pub fn access_token(&self) -> impl Future<Output = Result<AccessToken, Error>> + Send + '_ {
        access_token(&self.inner)
    }

    /// The access token as the `Authorization` header value of a request to another API
    /// (`Bearer …`, marked sensitive), read like [`access_token`](Self::access_token). A
    /// cached token's header is built once and then shared: no copy of the token per call.
    /// [`Error::InvalidInput`] if the server sent a token that is not a valid header value.
    pub fn authorization_header(
        &self,
    ) -> impl Future<Output = Result<HeaderValue, Error>> + Send + '_ {
        authorization_header(&self.inner)
    }
}

impl UserTokens {
    /// The access token: cached while fresh, refreshed once for all concurrent callers when
    /// due. [`Error::ReauthenticationRequired`] when the bank connection has expired.
    pub fn access_token(&self) -> impl Future<Output = Result<AccessToken, Error>> + Send + '_ {
        access_token(&self.inner)
    }

    /// The access token as the `Authorization` header value of a request to another API
    /// (`Bearer …`, marked sensitive), read like [`access_token`](Self::access_token). A
    /// cached token's header is built once and then shared: no copy of the token per call.
    pub fn authorization_header(
        &self,
    ) -> impl Future<Output = Result<HeaderValue, Error>> + Send + '_ {
        authorization_header(&self.inner)
    }
}
