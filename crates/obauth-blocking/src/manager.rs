//! Token managers: call them on every request; they serve the cached token while it is
//! fresh and fetch a new one, once, when it is due.
//!
//! * [`TokenSource`]: an application token (client credentials) for TrueLayer or Worldline.
//! * [`UserTokens`]: a user's TrueLayer connection, refreshed with its rotating refresh
//!   token, which reaches the store before the new access token reaches you.
//!
//! Both keep their state behind a [`TokenStore`](crate::TokenStore): a
//! [`MemoryStore`](crate::MemoryStore) of their own unless you give them one (with the
//! `sqlite` feature, `SqliteStore` shares tokens between the processes of a host; with
//! `redis`, `RedisStore` between the replicas of a service). Every
//! decision (fresh, due, expired, who fetches, what is written when, what a refused refresh
//! means) is `obauth_core::manager`'s; this module only does what it says and waits.
//!
//! Reading a fresh token takes no lock: an atomic load, a clock read and a copy of the
//! token. Fetching is single-flight: concurrent callers that find no fresh token wait for
//! one fetch and all get its result, token or error. A token due for refresh is still
//! served while one fetch, on a thread of its own, replaces it: no caller holding a valid
//! token waits for a refresh. A fetch that panics (in a store of your own, say) wakes its
//! waiters with an error, and keeps a rotated refresh token for the next call to write.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use http::HeaderValue;
use obauth_core::Error;
use obauth_core::expiry::Now;
use obauth_core::manager::{Action, Event, Fetch, Flight as CoreFlight, Join};
use obauth_types::AccessToken;

use crate::transport::HttpTransport;
use crate::{execute, trace};

/// One fetch's result, set once, and the threads waiting for it.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<AccessToken, Error>>>,
    done: Condvar,
}

impl CoreFlight for Flight {
    fn complete(&self, result: &Result<AccessToken, Error>) {
        let mut slot = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(result.clone());
        }
        self.done.notify_all();
    }
}

impl Flight {
    fn wait(&self) -> Result<AccessToken, Error> {
        let mut slot = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = slot.as_ref() {
                return result.clone();
            }
            slot = self.done.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

type Managed = obauth_core::manager::Managed<
    Flight,
    dyn HttpTransport,
    Arc<dyn obauth_core::store::TokenStore>,
>;

fn access_token(managed: &Arc<Managed>) -> Result<AccessToken, Error> {
    if let Some(token) = managed.cell().fresh(SystemTime::now()) {
        trace::hit(managed.key());
        return Ok(token);
    }
    let key = managed.key();
    match managed.cell().join(Now::system(), true) {
        Join::Serve(token) => {
            trace::decision(key, "serve");
            Ok(token)
        }
        Join::Wait(flight) => {
            trace::decision(key, "wait");
            flight.wait()
        }
        Join::Lead(fetch) => {
            trace::decision(key, "fetch");
            drive(managed, fetch)
        }
        Join::Refresh { serve, fetch } => {
            trace::decision(key, "refresh early");
            let background = Arc::clone(managed);
            // If no thread can be had, the closure (and the fetch in it) is dropped, which
            // ends the flight; the valid token is served all the same.
            let _ = std::thread::Builder::new()
                .name("obauth-refresh".into())
                .spawn(move || drive(&background, fetch));
            Ok(serve)
        }
    }
}

/// Does what the machine says until it is done.
fn drive(managed: &Managed, mut fetch: Fetch<Flight>) -> Result<AccessToken, Error> {
    let (store, key) = (managed.store(), managed.key());
    let mut event = Event::Start;
    loop {
        let action = fetch.step(Now::system(), event);
        if let Some(notice) = fetch.take_notice() {
            trace::notice(key, notice);
        }
        trace::action(key, &action);
        event = match action {
            Action::Load => Event::Loaded(store.load(key)),
            Action::LoadPrevious(previous) => Event::Loaded(store.load(&previous)),
            Action::Lease { holder, ttl } => {
                Event::Leased(store.try_lease(key, &holder, ttl, SystemTime::now()))
            }
            Action::Sleep(pause) => {
                std::thread::sleep(pause);
                Event::Woke
            }
            Action::Send { grant, deadline } => {
                let sent = Now::system();
                let result = managed.endpoint().request(&grant).and_then(|op| {
                    execute(
                        managed.transport(),
                        managed.retry(),
                        &op,
                        obauth_core::CallLimit::Deadline(deadline),
                    )
                });
                Event::Answered { sent, result }
            }
            Action::Persist { expect, record } => {
                Event::Persisted(store.compare_and_swap(key, expect, &record))
            }
            Action::Release { holder } => Event::Released(store.release(key, &holder)),
            Action::Done(result) => return result,
        };
    }
}

obauth_core::token_manager_types!(store: Arc<dyn obauth_core::store::TokenStore>;);

/// The token as an `Authorization` value: the cached one's, built once, or one built from
/// the token the slow path gives.
fn authorization_header(managed: &Arc<Managed>) -> Result<HeaderValue, Error> {
    if let Some(header) = managed.cell().fresh_authorization(SystemTime::now()) {
        trace::hit(managed.key());
        return Ok(header);
    }
    Ok(obauth_core::bearer::authorization(&access_token(managed)?)?)
}

impl TokenSource {
    /// The access token: cached while fresh, fetched once for all concurrent callers when due.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        access_token(&self.inner)
    }

    /// The access token as the `Authorization` header value of a request to another API
    /// (`Bearer …`, marked sensitive), read like [`access_token`](Self::access_token). A
    /// cached token's header is built once and then shared: no copy of the token per call.
    /// [`Error::InvalidInput`] if the server sent a token that is not a valid header value.
    pub fn authorization_header(&self) -> Result<HeaderValue, Error> {
        authorization_header(&self.inner)
    }
}

impl UserTokens {
    /// The access token: cached while fresh, refreshed once for all concurrent callers when
    /// due. [`Error::ReauthenticationRequired`] when the bank connection has expired.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        access_token(&self.inner)
    }

    /// The access token as the `Authorization` header value of a request to another API
    /// (`Bearer …`, marked sensitive), read like [`access_token`](Self::access_token). A
    /// cached token's header is built once and then shared: no copy of the token per call.
    pub fn authorization_header(&self) -> Result<HeaderValue, Error> {
        authorization_header(&self.inner)
    }
}
