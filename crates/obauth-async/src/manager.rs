//! Token managers: call them on every request; they serve the cached token while it is
//! fresh and fetch a new one, once, when it is due.
//!
//! * [`TokenSource`]: an application token (client credentials) for TrueLayer or Worldline.
//! * [`UserTokens`]: a user's TrueLayer connection, refreshed with its rotating refresh
//!   token, which reaches your [`RefreshTokenStore`] before the new access token reaches you.
//!
//! Reading a fresh token takes no lock: it loads the cached token through `arc-swap`
//! and clones the token string. Fetching is single-flight: concurrent callers that find
//! the cache cold or expired wait for one request and all get its result, token or error.
//! A failed fetch caches nothing. When a token is due but still valid, one caller
//! refreshes it while the others keep being served the valid one.
//!
//! A fetch runs on a task of its own (`tokio::spawn`), so it is finished even if every
//! caller stops waiting (a `tokio::time::timeout` around `access_token()`, a `select!`):
//! a refresh whose answer the server has sent is never cut short before the rotated
//! refresh token is kept, and a cancelled caller never leaves a second refresh to start
//! with the spent one. Outside a tokio runtime (a custom transport on another executor)
//! the fetch runs in the caller's future instead.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use obauth_core::expiry::ExpiryPolicy;
use obauth_core::manager::{
    CacheKey, CachedToken, FetchResult, Join, SingleFlight, next_refresh_token, refresh_error,
    settle,
};
use obauth_core::{Error, InvalidInput, StoreError, TransportError, TransportErrorKind};
use obauth_types::truelayer::token::TokenResponse;
use obauth_types::{AccessToken, RefreshToken, Scopes, truelayer, worldline};
use tokio::sync::Notify;

use crate::{TrueLayerClient, WorldlineClient};

/// One fetch: its result, set once by whoever runs the fetch, and the callers waiting for it.
#[derive(Default)]
struct Flight {
    result: OnceLock<FetchResult>,
    done: Notify,
}

impl Flight {
    /// Waits for the result.
    async fn wait(&self) -> FetchResult {
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

type Flights = SingleFlight<Flight>;

/// What owns a cache: reached from the fetch's task, which holds it alive.
trait Owner: Send + Sync + 'static {
    fn flights(&self) -> &Flights;
}

/// Runs one fetch to its end for everyone waiting on `flight`: publishes a token, ends
/// the flight, then hands the result to the waiters. If the fetch is dropped before it
/// finishes (a panic in a `RefreshTokenStore`, the runtime shutting down, or a cancelled
/// caller outside a runtime), the flight still ends and the waiters get an error instead
/// of waiting forever.
async fn lead<O, Fut>(owner: Arc<O>, flight: Arc<Flight>, fetch: Fut)
where
    O: Owner,
    Fut: Future<Output = FetchResult>,
{
    struct Finish<'a> {
        flights: &'a Flights,
        flight: &'a Arc<Flight>,
        result: Option<FetchResult>,
    }
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.flights.end(self.flight);
            let result = self.result.take().unwrap_or_else(|| {
                Err(Error::Transport(TransportError::new(
                    TransportErrorKind::Request,
                    "the token fetch was abandoned before it finished",
                )))
            });
            let _ = self.flight.result.set(result);
            self.flight.done.notify_waiters();
        }
    }
    let mut finish = Finish {
        flights: owner.flights(),
        flight: &flight,
        result: None,
    };
    let result = fetch.await;
    owner.flights().publish(&result);
    finish.result = Some(result);
}

/// Serves a token from `owner`'s cache, fetching with `fetch` when it is due.
async fn serve<O, F, Fut>(owner: &Arc<O>, fetch: F) -> Result<AccessToken, Error>
where
    O: Owner,
    F: FnOnce(Arc<O>) -> Fut,
    Fut: Future<Output = FetchResult> + Send + 'static,
{
    let flights = owner.flights();
    let valid = match flights.fresh(Instant::now()) {
        Ok(token) => return Ok(token),
        Err(valid) => valid,
    };
    let flight = match flights.join(valid.as_ref()) {
        Join::Serve(token) => return Ok(token),
        Join::Wait(flight) => flight,
        Join::Lead(flight) => {
            let task = lead(
                Arc::clone(owner),
                Arc::clone(&flight),
                fetch(Arc::clone(owner)),
            );
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(task);
                }
                Err(_) => task.await,
            }
            flight
        }
    };
    let result = flight.wait().await;
    settle(result, valid)
}

/// What `access_token()` returns: ready at its first poll with the fresh token read when
/// it was called, or the fetch, boxed so that the fresh case stays small. The fresh case
/// holds the bare token rather than a finished `Result`: moving a `Result<_, Error>` in and
/// out of a future costs more than the rest of the read.
enum TokenRead<'a> {
    Fresh(Option<AccessToken>),
    Fetch(Pin<Box<dyn Future<Output = Result<AccessToken, Error>> + Send + 'a>>),
}

impl Future for TokenRead<'_> {
    type Output = Result<AccessToken, Error>;

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

/// What fetches a new token; clients are cheap to clone (they share their pool).
#[derive(Clone)]
enum Fetcher {
    TrueLayer(TrueLayerClient, Scopes<truelayer::Scope>),
    Worldline(WorldlineClient, Scopes<worldline::Scope>),
}

/// A cached client-credentials token for TrueLayer or Worldline. Cheap to clone; clones
/// share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<SourceInner>,
}

struct SourceInner {
    fetcher: Fetcher,
    key: CacheKey,
    policy: ExpiryPolicy,
    flights: Flights,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// TrueLayer `client_credentials` tokens for `scopes`.
    pub fn truelayer(client: TrueLayerClient, scopes: Scopes<truelayer::Scope>) -> Self {
        let key = CacheKey::truelayer(client.config(), &scopes);
        Self::new(
            Fetcher::TrueLayer(client, scopes),
            key,
            ExpiryPolicy::default(),
        )
    }

    /// Worldline tokens for `scopes`, with the client's secret or assertion.
    pub fn worldline(client: WorldlineClient, scopes: Scopes<worldline::Scope>) -> Self {
        let key = CacheKey::worldline(client.config(), &scopes);
        Self::new(
            Fetcher::Worldline(client, scopes),
            key,
            ExpiryPolicy::default(),
        )
    }

    fn new(fetcher: Fetcher, key: CacheKey, policy: ExpiryPolicy) -> Self {
        Self {
            inner: Arc::new(SourceInner {
                fetcher,
                key,
                policy,
                flights: Flights::new(None),
            }),
        }
    }

    /// Replaces the expiry policy; the cache starts empty.
    pub fn with_expiry_policy(self, policy: ExpiryPolicy) -> Self {
        Self::new(self.inner.fetcher.clone(), self.inner.key.clone(), policy)
    }

    /// What identifies this token: token URL, client id, scopes and auth method.
    pub fn key(&self) -> &CacheKey {
        &self.inner.key
    }

    /// The access token: cached while fresh, fetched once for all concurrent callers when due.
    ///
    /// A fresh token is read when this is called, without a lock; the future is then ready at
    /// its first poll and small (the fetch, when one is needed, is boxed).
    pub fn access_token(&self) -> impl Future<Output = Result<AccessToken, Error>> + Send + '_ {
        match self.inner.flights.fresh(Instant::now()) {
            Ok(token) => TokenRead::Fresh(Some(token)),
            Err(_) => TokenRead::Fetch(Box::pin(serve(&self.inner, SourceInner::fetch))),
        }
    }

    /// Drops the cached token (e.g. after the API refused it); the next call fetches.
    pub fn invalidate(&self) {
        self.inner.flights.clear();
    }
}

impl Owner for SourceInner {
    fn flights(&self) -> &Flights {
        &self.flights
    }
}

impl SourceInner {
    async fn fetch(self: Arc<Self>) -> FetchResult {
        let requested_at = Instant::now();
        let (access_token, expires_in) = match &self.fetcher {
            Fetcher::TrueLayer(client, scopes) => {
                let token = client.client_credentials(scopes.clone()).await?;
                (token.access_token, token.expires_in)
            }
            Fetcher::Worldline(client, scopes) => {
                let token = client.token(scopes.clone()).await?;
                (token.access_token, token.expires_in)
            }
        };
        Ok(Arc::new(CachedToken::new(
            access_token,
            expires_in,
            requested_at,
            &self.policy,
        )))
    }
}

/// Where a user's rotated refresh token goes, before the new access token is handed out.
///
/// Save it durably (database, vault): the previous refresh token is spent once the server
/// answers. If `save` fails, the call fails with [`Error::Store`]; obauth keeps the new
/// refresh token in memory and saves it again first thing on the next call, without
/// another refresh. `save` must not call back into the same [`UserTokens`]: that call
/// would wait for the refresh that is waiting for `save`.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Persists `refresh_token`, replacing the previous one.
    async fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError>;
}

/// A user's TrueLayer connection: the access token, refreshed with the rotating refresh
/// token. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct UserTokens {
    inner: Arc<UserInner>,
}

struct UserInner {
    client: TrueLayerClient,
    store: Arc<dyn RefreshTokenStore>,
    policy: ExpiryPolicy,
    refresh: ArcSwap<Refresh>,
    flights: Flights,
}

struct Refresh {
    token: RefreshToken,
    /// Rotated but not yet accepted by the store.
    unsaved: bool,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens").finish_non_exhaustive()
    }
}

impl UserTokens {
    /// A connection known by its refresh token; the first call refreshes.
    pub fn new(
        client: TrueLayerClient,
        refresh_token: RefreshToken,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Self {
        Self::with_access_token(client, refresh_token, None, store, ExpiryPolicy::default())
    }

    /// A connection from the code exchange's answer, obtained from a request sent at
    /// `requested_at`. Its refresh token should already be stored; it needs `offline_access`.
    pub fn from_token_response(
        client: TrueLayerClient,
        response: TokenResponse,
        requested_at: Instant,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Result<Self, Error> {
        let policy = ExpiryPolicy::default();
        let refresh_token = response.refresh_token.ok_or_else(|| {
            Error::InvalidInput(InvalidInput::new(
                "token response",
                "has no refresh_token; ask for the offline_access scope",
            ))
        })?;
        let access = CachedToken::new(
            response.access_token,
            response.expires_in,
            requested_at,
            &policy,
        );
        Ok(Self::with_access_token(
            client,
            refresh_token,
            Some(access),
            store,
            policy,
        ))
    }

    fn with_access_token(
        client: TrueLayerClient,
        refresh_token: RefreshToken,
        access: Option<CachedToken>,
        store: Arc<dyn RefreshTokenStore>,
        policy: ExpiryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(UserInner {
                client,
                store,
                policy,
                refresh: ArcSwap::from_pointee(Refresh {
                    token: refresh_token,
                    unsaved: false,
                }),
                flights: Flights::new(access),
            }),
        }
    }

    /// The access token: cached while fresh, refreshed once for all concurrent callers when
    /// due. [`Error::ReauthenticationRequired`] when the bank connection has expired.
    pub fn access_token(&self) -> impl Future<Output = Result<AccessToken, Error>> + Send + '_ {
        match self.inner.flights.fresh(Instant::now()) {
            Ok(token) => TokenRead::Fresh(Some(token)),
            Err(_) => TokenRead::Fetch(Box::pin(serve(&self.inner, UserInner::refresh))),
        }
    }

    /// Drops the cached access token (e.g. after the API refused it); the next call
    /// refreshes.
    pub fn invalidate(&self) {
        self.inner.flights.clear();
    }

    /// The current refresh token.
    pub fn refresh_token(&self) -> RefreshToken {
        self.inner.refresh.load().token.clone()
    }
}

impl Owner for UserInner {
    fn flights(&self) -> &Flights {
        &self.flights
    }
}

impl UserInner {
    async fn refresh(self: Arc<Self>) -> FetchResult {
        let inner = &*self;
        let mut current = inner.refresh.load_full();
        if current.unsaved {
            // A rotated token the store refused earlier: save it before anything else,
            // without spending it on a new refresh.
            inner
                .store
                .save(&current.token)
                .await
                .map_err(Error::Store)?;
            current = Arc::new(Refresh {
                token: current.token.clone(),
                unsaved: false,
            });
            inner.refresh.store(Arc::clone(&current));
        }
        let requested_at = Instant::now();
        let response = inner
            .client
            .refresh(current.token.clone())
            .await
            .map_err(|error| refresh_error(error, &current.token))?;
        let (next, rotated) = next_refresh_token(&current.token, response.refresh_token);
        if rotated {
            // The old token is spent from here on: keep the new one in memory first, so
            // that a failed (or, async, cancelled) save cannot lose it, then hand it to the
            // store, and only then hand out the access token.
            inner.refresh.store(Arc::new(Refresh {
                token: next.clone(),
                unsaved: true,
            }));
            inner.store.save(&next).await.map_err(Error::Store)?;
            inner.refresh.store(Arc::new(Refresh {
                token: next,
                unsaved: false,
            }));
        }
        Ok(Arc::new(CachedToken::new(
            response.access_token,
            response.expires_in,
            requested_at,
            &inner.policy,
        )))
    }
}
