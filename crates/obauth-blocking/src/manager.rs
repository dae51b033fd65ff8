//! Token managers: call them on every request; they serve the cached token while it is
//! fresh and fetch a new one, once, when it is due.
//!
//! * [`TokenSource`]: an application token (client credentials) for TrueLayer or Worldline.
//! * [`UserTokens`]: a user's TrueLayer connection, refreshed with its rotating refresh
//!   token, which reaches the store before the new access token reaches you.
//!
//! Both keep their state behind a [`TokenStore`]: a [`MemoryStore`](crate::MemoryStore)
//! of their own unless you give them one (with the `sqlite` feature, `SqliteStore` shares
//! tokens between the processes of a host). Every decision (fresh, due, expired, who
//! fetches, what is written when, what a refused refresh means) is
//! `obauth_core::manager`'s; this module only does what it says and waits.
//!
//! Reading a fresh token takes no lock: an atomic load, a clock read and a copy of the
//! token. Fetching is single-flight: concurrent callers that find no fresh token wait for
//! one fetch and all get its result, token or error. A token due for refresh is still
//! served while one fetch, on a thread of its own, replaces it: no caller holding a valid
//! token waits for a refresh. A fetch that panics (in a store of your own, say) wakes its
//! waiters with an error, and keeps a rotated refresh token for the next call to write.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use obauth_core::Error;
use obauth_core::expiry::{ExpiryPolicy, Now};
use obauth_core::manager::{
    Action, Event, Fetch, Flight as CoreFlight, Join, ManagerOptions, Seed, TokenEndpoint,
};
use obauth_core::store::{ConnectionName, StoreKey, TokenStore};
use obauth_types::truelayer::token::TokenResponse;
use obauth_types::{AccessToken, RefreshToken, Scopes, truelayer, worldline};

use crate::transport::HttpTransport;
use crate::{TrueLayerClient, WorldlineClient, execute};

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

type Managed = obauth_core::manager::Managed<Flight, dyn HttpTransport>;

fn access_token(managed: &Arc<Managed>) -> Result<AccessToken, Error> {
    if let Some(token) = managed.cell().fresh(SystemTime::now()) {
        return Ok(token);
    }
    match managed.cell().join(Now::system(), true) {
        Join::Serve(token) => Ok(token),
        Join::Wait(flight) => flight.wait(),
        Join::Lead(fetch) => drive(managed, fetch),
        Join::Refresh { serve, fetch } => {
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
        event = match fetch.step(Now::system(), event) {
            Action::Load => Event::Loaded(store.load(key)),
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
                    execute(managed.transport(), managed.retry(), &op, Some(deadline))
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

/// A cached client-credentials token for TrueLayer or Worldline. Cheap to clone; clones
/// share the cache.
#[derive(Clone, Debug)]
pub struct TokenSource {
    inner: Arc<Managed>,
}

impl TokenSource {
    /// TrueLayer `client_credentials` tokens for `scopes`.
    pub fn truelayer(client: TrueLayerClient, scopes: Scopes<truelayer::Scope>) -> Self {
        let endpoint = TokenEndpoint::TrueLayer {
            config: client.config().clone(),
            scopes,
        };
        Self::from(Managed::application(
            endpoint,
            client.transport(),
            client.retry(),
        ))
    }

    /// Worldline tokens for `scopes`, with the client's secret or assertion.
    pub fn worldline(client: WorldlineClient, scopes: Scopes<worldline::Scope>) -> Self {
        let endpoint = TokenEndpoint::Worldline {
            config: client.config().clone(),
            scopes,
        };
        Self::from(Managed::application(
            endpoint,
            client.transport(),
            client.retry(),
        ))
    }

    fn from(managed: Managed) -> Self {
        Self {
            inner: Arc::new(managed),
        }
    }

    /// Keeps the token in `store` (shared with other managers and, for a durable store,
    /// other processes); the cache starts empty.
    pub fn with_store(self, store: Arc<dyn TokenStore>) -> Self {
        Self::from(self.inner.with_store(store))
    }

    /// Replaces the options (expiry policy, fetch deadline, lease polling); the cache starts
    /// empty. Refused if the deadline or the poll interval is out of bounds.
    pub fn with_options(self, options: ManagerOptions) -> Result<Self, Error> {
        Ok(Self::from(self.inner.with_options(options)?))
    }

    /// Replaces the expiry policy; the cache starts empty.
    pub fn with_expiry_policy(self, expiry: ExpiryPolicy) -> Self {
        Self::from(self.inner.with_expiry(expiry))
    }

    /// What the token is stored under: token URL, client id, auth method and scopes.
    pub fn key(&self) -> &StoreKey {
        self.inner.key()
    }

    /// The access token: cached while fresh, fetched once for all concurrent callers when due.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        access_token(&self.inner)
    }

    /// Reports that an API refused `rejected`: if it is the cached token, the next call
    /// fetches a new one; if a newer one is cached already, nothing happens.
    pub fn invalidate(&self, rejected: &AccessToken) {
        self.inner.cell().invalidate(rejected);
    }

    /// How long the cached token is still served, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.inner.cell().remaining(Now::system())
    }
}

/// A user's TrueLayer connection: the access token, refreshed with the rotating refresh
/// token, kept in a [`TokenStore`] under a connection name you choose. Cheap to clone;
/// clones share the state.
///
/// A rotated refresh token is written to the store before the new access token is handed
/// to anyone. If the write fails, the call fails with [`Error::Store`]; the tokens stay in
/// memory and are written first thing on the next call, which then serves the access
/// token without another refresh.
#[derive(Clone, Debug)]
pub struct UserTokens {
    inner: Arc<Managed>,
}

impl UserTokens {
    fn build(
        client: &TrueLayerClient,
        connection: &str,
        store: Arc<dyn TokenStore>,
        seed: Seed,
    ) -> Result<Self, Error> {
        let endpoint = TokenEndpoint::TrueLayerUser {
            config: client.config().clone(),
            connection: ConnectionName::new(connection)?,
        };
        let managed = Managed::new(
            endpoint,
            client.transport(),
            client.retry(),
            store,
            ManagerOptions::default(),
            seed,
        )?;
        Ok(Self {
            inner: Arc::new(managed),
        })
    }

    /// The connection `connection` as `store` holds it; the first call reads it (an
    /// [`Error::Store`] of kind `NotFound` if it was never saved).
    pub fn open(
        client: &TrueLayerClient,
        connection: &str,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, Error> {
        Self::build(client, connection, store, Seed::Empty)
    }

    /// A connection known by its refresh token, kept in `store` under `connection`. A
    /// record already in the store under that name wins over `refresh_token`.
    pub fn new(
        client: &TrueLayerClient,
        connection: &str,
        refresh_token: RefreshToken,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, Error> {
        Self::build(client, connection, store, Seed::RefreshToken(refresh_token))
    }

    /// A connection from the code exchange's answer, to a request sent at `requested_at`:
    /// written to `store` under `connection` (replacing an earlier connection of that
    /// name) before this returns. It needs `offline_access`, for a refresh token. If the
    /// store fails, the error says so and `response` is still yours to try again with.
    pub fn from_token_response(
        client: &TrueLayerClient,
        connection: &str,
        response: &TokenResponse,
        requested_at: SystemTime,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, Error> {
        let seed = Seed::from_token_response(response, requested_at)?;
        let tokens = Self::build(client, connection, store, seed)?;
        tokens.access_token()?;
        Ok(tokens)
    }

    /// Replaces the options (expiry policy, fetch deadline, lease polling); the cache starts
    /// empty and reads the store again.
    pub fn with_options(self, options: ManagerOptions) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(self.inner.with_options(options)?),
        })
    }

    /// The access token: cached while fresh, refreshed once for all concurrent callers when
    /// due. [`Error::ReauthenticationRequired`] when the bank connection has expired.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        access_token(&self.inner)
    }

    /// Refreshes now, even if the cached access token is fresh (concurrent callers share
    /// the refresh), and returns the new access token.
    pub fn refresh_now(&self) -> Result<AccessToken, Error> {
        self.inner.cell().expire();
        access_token(&self.inner)
    }

    /// Reports that an API refused `rejected`: if it is the cached token, the next call
    /// refreshes; if a newer one is cached already, nothing happens (no extra rotation).
    pub fn invalidate(&self, rejected: &AccessToken) {
        self.inner.cell().invalidate(rejected);
    }

    /// The refresh token this process knows (none before the store was first read).
    pub fn refresh_token(&self) -> Option<RefreshToken> {
        self.inner.cell().refresh_token()
    }

    /// How long the cached access token is still served, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.inner.cell().remaining(Now::system())
    }

    /// What the connection is stored under.
    pub fn key(&self) -> &StoreKey {
        self.inner.key()
    }
}
