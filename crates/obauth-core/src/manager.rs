//! The runtime-free half of the token managers: what a cached token is, what identifies a
//! cache, what a refresh answer means, and the single-flight cell both bindings wait on.
//! The bindings add only the waiting (a result cell and a tokio `Notify`, or a std
//! `OnceLock`, per fetch) and, for async, the task the fetch runs on.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use obauth_types::{AccessToken, ErrorCode, RefreshToken, Scopes, truelayer, worldline};

use crate::error::{Error, ReauthenticationRequired};
use crate::expiry::{ExpiryPolicy, Freshness, TokenSchedule};
use crate::truelayer::TrueLayerConfig;
use crate::worldline::WorldlineConfig;

/// An access token and when it must be refreshed.
#[derive(Clone, Debug)]
pub struct CachedToken {
    access_token: AccessToken,
    schedule: TokenSchedule,
}

impl CachedToken {
    /// A token obtained from a request sent at `requested_at`, valid for `expires_in` seconds.
    pub fn new(
        access_token: AccessToken,
        expires_in: u64,
        requested_at: Instant,
        policy: &ExpiryPolicy,
    ) -> Self {
        Self {
            access_token,
            schedule: policy.schedule_secs(requested_at, expires_in),
        }
    }

    /// The token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// Where it stands at `now`.
    pub fn freshness(&self, now: Instant) -> Freshness {
        self.schedule.freshness(now)
    }

    /// Its schedule.
    pub fn schedule(&self) -> &TokenSchedule {
        &self.schedule
    }
}

/// What identifies a client-credentials token: two sources share a cached token only if
/// they agree on all four parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The scopes, space-delimited, in the order asked.
    pub scopes: String,
    /// `client_secret_post`, `client_secret_json` or `private_key_jwt`.
    pub auth_method: &'static str,
}

impl CacheKey {
    /// The key of TrueLayer `client_credentials` tokens for `scopes`.
    pub fn truelayer(config: &TrueLayerConfig, scopes: &Scopes<truelayer::Scope>) -> Self {
        Self {
            token_url: config.token_url().to_string(),
            client_id: config.client_id().to_owned(),
            scopes: scopes.to_wire(),
            auth_method: "client_secret_post",
        }
    }

    /// The key of Worldline tokens for `scopes`.
    pub fn worldline(config: &WorldlineConfig, scopes: &Scopes<worldline::Scope>) -> Self {
        Self {
            token_url: config.token_url().to_string(),
            client_id: config.client_id().to_owned(),
            scopes: scopes.to_wire(),
            auth_method: config.auth_method(),
        }
    }
}

/// What a fetch yields to everyone who waited for it.
pub type FetchResult = Result<Arc<CachedToken>, Error>;

/// A cached token that reads without locks, and at most one fetch at a time.
///
/// `F` is the binding's wait cell for one fetch (a result cell with a tokio `Notify`, or a
/// `std::sync::OnceLock<FetchResult>`): callers that [`join`](Self::join) the same flight
/// wait on the same cell and share its result; the caller told to
/// [`Lead`](Join::Lead) runs the fetch.
///
/// When a refresh of a token that is due but still valid fails, the still-valid token is
/// served, and the next early refresh waits [`EARLY_RETRY_FIRST`], doubling with each
/// failure in a row up to [`EARLY_RETRY_MAX`]: a failing server is not asked again on
/// every call. A token that has expired is always fetched at once.
pub struct SingleFlight<F> {
    cached: ArcSwapOption<CachedToken>,
    slot: Mutex<Slot<F>>,
}

/// The first pause before refreshing again after an early refresh failed.
pub const EARLY_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest pause between early refreshes that keep failing.
pub const EARLY_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The flight under way, and the failures since the last token.
struct Slot<F> {
    flight: Option<Arc<F>>,
    failures: u32,
    /// No early refresh before this.
    early_retry_at: Option<Instant>,
}

/// Where a caller stands after [`SingleFlight::join`].
pub enum Join<F> {
    /// Serve this token.
    Serve(AccessToken),
    /// This caller started the flight: run the fetch (or have it run) and wait on it.
    Lead(Arc<F>),
    /// Another caller's flight is under way: wait on it.
    Wait(Arc<F>),
}

impl<F: Default> SingleFlight<F> {
    /// A cell holding `initial`, if any.
    pub fn new(initial: Option<CachedToken>) -> Self {
        Self {
            cached: ArcSwapOption::new(initial.map(Arc::new)),
            slot: Mutex::new(Slot {
                flight: None,
                failures: 0,
                early_retry_at: None,
            }),
        }
    }

    /// The cached token if it is fresh at `now`; `Err(due)` otherwise, carrying the
    /// still-valid token when one is due for refresh.
    pub fn fresh(&self, now: Instant) -> Result<AccessToken, Option<Arc<CachedToken>>> {
        let cached = self.cached.load();
        match cached.as_deref() {
            Some(token) => match token.freshness(now) {
                Freshness::Fresh => Ok(token.access_token().clone()),
                Freshness::RefreshSoon => Err(cached.clone()),
                Freshness::Expired => Err(None),
            },
            None => Err(None),
        }
    }

    /// Joins the fetch under way or starts one. With `serve_valid`, a still-valid token is
    /// served instead of waiting for somebody else's fetch, or instead of starting a fetch
    /// while early refreshes are backing off after a failure.
    pub fn join(&self, serve_valid: Option<&Arc<CachedToken>>) -> Join<F> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // A fetch may have finished between the caller's look and this lock.
        if let Ok(token) = self.fresh(now) {
            return Join::Serve(token);
        }
        if let Some(valid) = serve_valid {
            let backing_off = slot.early_retry_at.is_some_and(|at| now < at);
            if slot.flight.is_some() || backing_off {
                return Join::Serve(valid.access_token().clone());
            }
        }
        if let Some(flight) = slot.flight.as_ref() {
            return Join::Wait(Arc::clone(flight));
        }
        let flight = Arc::new(F::default());
        slot.flight = Some(Arc::clone(&flight));
        Join::Lead(flight)
    }

    /// Publishes a fetch's token; a failure instead pushes the next early refresh back.
    pub fn publish(&self, result: &FetchResult) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(token) => {
                self.cached.store(Some(Arc::clone(token)));
                slot.failures = 0;
                slot.early_retry_at = None;
            }
            Err(_) => {
                let pause = EARLY_RETRY_FIRST
                    .saturating_mul(1 << slot.failures.min(16))
                    .min(EARLY_RETRY_MAX);
                slot.failures = slot.failures.saturating_add(1);
                slot.early_retry_at = Instant::now().checked_add(pause);
            }
        }
    }

    /// Ends `flight`, so that the next miss starts a new one.
    pub fn end(&self, flight: &Arc<F>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot
            .flight
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, flight))
        {
            slot.flight = None;
        }
    }

    /// Drops the cached token.
    pub fn clear(&self) {
        self.cached.store(None);
    }
}

/// Ends a flight however its fetch ends: with a result, or abandoned (a dropped future, a
/// panic), so that an abandoned fetch never leaves a stale flight behind. Hold it for the
/// duration of the fetch.
pub struct EndFlight<'a, F: Default> {
    flights: &'a SingleFlight<F>,
    flight: &'a Arc<F>,
}

impl<'a, F: Default> EndFlight<'a, F> {
    /// A guard for `flight` of `flights`.
    pub fn new(flights: &'a SingleFlight<F>, flight: &'a Arc<F>) -> Self {
        Self { flights, flight }
    }
}

impl<F: Default> Drop for EndFlight<'_, F> {
    fn drop(&mut self) {
        self.flights.end(self.flight);
    }
}

/// What a caller gets once the flight it waited on is over: the fetched token, or, if an
/// early refresh failed, the token it was to replace as long as that is still valid now
/// (the fetch may have taken longer than the token had left).
pub fn settle(result: FetchResult, valid: Option<Arc<CachedToken>>) -> Result<AccessToken, Error> {
    match (result, valid) {
        (Ok(token), _) => Ok(token.access_token().clone()),
        (Err(error), Some(valid)) => match valid.freshness(Instant::now()) {
            Freshness::Expired => Err(error),
            _ => Ok(valid.access_token().clone()),
        },
        (Err(error), None) => Err(error),
    }
}

/// The refresh token to keep after a refresh: the rotated one if the server sent one,
/// else the one used (servers that do not rotate keep it valid).
pub fn next_refresh_token(
    used: &RefreshToken,
    issued: Option<RefreshToken>,
) -> (RefreshToken, bool) {
    match issued {
        Some(issued) if !issued.is_empty() => {
            let rotated = issued.expose_secret() != used.expose_secret();
            (issued, rotated)
        }
        _ => (used.clone(), false),
    }
}

/// Turns a refused refresh (`invalid_grant`) into [`Error::ReauthenticationRequired`];
/// other errors pass through.
pub fn refresh_error(error: Error, refresh_token: &RefreshToken) -> Error {
    match error {
        Error::Api(api) if api.code == ErrorCode::InvalidGrant => Error::ReauthenticationRequired(
            ReauthenticationRequired::new(refresh_token.clone(), api),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::error::ApiError;

    #[test]
    fn rotation_and_reauthentication() {
        let used = RefreshToken::new("old");
        let (kept, rotated) = next_refresh_token(&used, Some(RefreshToken::new("new")));
        assert_eq!((kept.expose_secret(), rotated), ("new", true));
        let (kept, rotated) = next_refresh_token(&used, None);
        assert_eq!((kept.expose_secret(), rotated), ("old", false));
        let (kept, rotated) = next_refresh_token(&used, Some(RefreshToken::new("")));
        assert_eq!((kept.expose_secret(), rotated), ("old", false));

        let api = |code| {
            Error::Api(Box::new(ApiError {
                status: StatusCode::BAD_REQUEST,
                code,
                description: None,
                details: None,
                trace_id: None,
                retry_after: None,
            }))
        };
        match refresh_error(api(ErrorCode::InvalidGrant), &used) {
            Error::ReauthenticationRequired(reauth) => {
                assert_eq!(reauth.refresh_token().expose_secret(), "old");
                assert!(!reauth.to_string().contains("old"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refresh_error(api(ErrorCode::InvalidClient), &used),
            Error::Api(_)
        ));
    }

    #[test]
    fn early_refreshes_back_off_after_a_failure_but_expired_tokens_do_not() {
        let now = Instant::now();
        // Valid for 100 s from 50 s ago, due for refresh after the first 10 s.
        let policy = ExpiryPolicy {
            max_skew: Duration::ZERO,
            skew_fraction: 0.0,
            max_refresh_window: Duration::from_secs(3600),
            refresh_fraction: 0.9,
        };
        let Some(issued) = now.checked_sub(Duration::from_secs(50)) else {
            return; // a machine up for less than 50 s cannot place the token in the past
        };
        let token = CachedToken::new(AccessToken::new("old"), 100, issued, &policy);
        let flights = SingleFlight::<()>::new(Some(token));
        let valid = match flights.fresh(now) {
            Err(Some(valid)) => valid,
            _ => panic!("the token should be due but valid"),
        };
        let failed = || Err(Error::Store(crate::error::StoreError::new("down")));

        let Join::Lead(flight) = flights.join(Some(&valid)) else {
            panic!("the first early refresh should start")
        };
        // While it runs, others are served the valid token.
        assert!(matches!(flights.join(Some(&valid)), Join::Serve(_)));
        flights.publish(&failed());
        flights.end(&flight);
        // It failed: no new early refresh for a while, the valid token is served...
        assert!(matches!(flights.join(Some(&valid)), Join::Serve(_)));
        // ...but a caller without a valid token (expired, invalidated) fetches at once.
        let Join::Lead(flight) = flights.join(None) else {
            panic!("a caller with no valid token must fetch")
        };
        flights.publish(&failed());
        flights.end(&flight);
        {
            let slot = flights.slot.lock().unwrap();
            assert_eq!(slot.failures, 2);
            let pause = slot.early_retry_at.unwrap() - Instant::now();
            assert!(pause > EARLY_RETRY_FIRST && pause <= 2 * EARLY_RETRY_FIRST);
        }
        // A success clears the backoff.
        let fresh = CachedToken::new(AccessToken::new("new"), 100, Instant::now(), &policy);
        flights.publish(&Ok(Arc::new(fresh)));
        let slot = flights.slot.lock().unwrap();
        assert_eq!((slot.failures, slot.early_retry_at), (0, None));
    }

    #[test]
    fn cached_token_freshness() {
        let start = Instant::now();
        let token = CachedToken::new(AccessToken::new("a"), 300, start, &ExpiryPolicy::default());
        assert_eq!(token.freshness(start), Freshness::Fresh);
        assert_eq!(
            token.freshness(start + Duration::from_secs(280)),
            Freshness::Expired
        );
    }
}
