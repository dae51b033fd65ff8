//! The token managers' logic, without I/O: one machine that both bindings drive.
//!
//! A [`TokenCell`] holds one token's state for a process: the token served on the fast
//! path (read without a lock), and behind a lock what the machine knows (the access token
//! and its [`Age`], the refresh token, the store version, a rotated record not yet
//! written, the backoff after failures, the flight under way). A caller that finds no fresh
//! token [joins](TokenCell::join) and is told what to do:
//!
//! ```text
//!   fresh(wall) ──Some──▶ serve                                    (no lock: the hot path)
//!        │None
//!        ▼
//!   join(now) ──▶ Serve(token)              still valid, or valid while someone refreshes
//!             ──▶ Wait(flight)              another caller's fetch is under way
//!             ──▶ Lead(fetch)               run this fetch, then return its result
//!             ──▶ Refresh{serve, fetch}     serve this valid token now; run the fetch aside
//! ```
//!
//! A [`Fetch`] is the leader's errand, step by step: the binding does what each [`Action`]
//! says (read the store, take the store's lease, sleep, send the token request, write the
//! record, give the lease back) and feeds the outcome back as an [`Event`], until
//! [`Action::Done`]. In order: a rotated record the store refused earlier is written first;
//! the store is read, and a fresh record another process wrote is adopted; otherwise the
//! lease is taken (others poll the store until the record changes or the lease runs out),
//! the store read again, the token requested, the new record written with
//! compare-and-swap, and only then the access token handed out. A rotated refresh token is
//! kept in memory from the moment it arrives until the store has it, so no failure in
//! between loses it.
//!
//! Every fetch has one deadline ([`ManagerOptions::deadline`]) for all of it. The lease
//! lives for what is left of it plus a grace ([`ManagerOptions::lease_grace`], 10 s by
//! default) for the write after the answer, so that it does not run out between the token
//! request and the write; a process that dies holding the lease holds it no longer than
//! that. If the write of a
//! rotated refresh token fails, the lease is not given back: it runs out, and until then
//! no other process presents the spent refresh token, while this one writes the new one
//! first thing on its next call (and then gives the lease back).
//!
//! Dropping a [`Fetch`] before it is done (a panic in a store, a runtime shutting down, a
//! task never polled) ends its flight: the waiters are woken with an error, and the next
//! caller starts afresh (after writing any rotated token first).

mod api;
mod endpoint;
mod fetch;
mod managed;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use obauth_types::{AccessToken, RefreshToken};

pub use self::endpoint::{
    Answer, Grant, Issued, TRUELAYER_AUTH_METHOD, TokenEndpoint, TokenKind, TokenRequest,
};
pub use self::fetch::{Action, Event, Fetch, Notice};
pub use self::managed::Managed;
use crate::error::{Error, InvalidInput, ReauthenticationRequired};
use crate::expiry::{Age, ExpiryPolicy, Freshness, Now, Windows};
use crate::store::{Expect, LeaseHolder, StoreKey, TokenRecord};

/// The longest the fast path serves a token without the machine looking at both clocks
/// again: a wall clock stepped back can stretch a token's life by at most this much.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long a store lease outlives its fetch's deadline by default
/// ([`ManagerOptions::lease_grace`]): the time the record's write may take after the token
/// request's answer (a busy SQLite file, a slow Redis or PostgreSQL).
pub const LEASE_GRACE: Duration = Duration::from_secs(10);

/// The least time left of a fetch's deadline (or a quarter of the deadline, if that is
/// less) with which a refresh token is presented. Cut short, a refresh request may still
/// reach the server, which then rotates the token into an answer no one reads: with less
/// time left, the fetch ends with a deadline error and the refresh token stays valid.
pub const MIN_REFRESH_TIME: Duration = Duration::from_secs(2);

/// The first pause before refreshing again after an early refresh failed.
pub const EARLY_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest pause between early refreshes that keep failing.
pub const EARLY_RETRY_MAX: Duration = Duration::from_secs(30);

/// How a token manager behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ManagerOptions {
    /// When a token counts as due and as expired.
    pub expiry: ExpiryPolicy,
    /// One deadline for a whole fetch: reading the store, waiting for another process's
    /// lease, every attempt and retry of the token request, writing the record. Default
    /// 60 s; above zero and at most an hour.
    pub deadline: Duration,
    /// How long the store lease outlives what is left of the deadline when it is taken, so
    /// that it does not run out between the token request's answer and the write. Also how
    /// much longer than the deadline a process that dies holding it delays the others.
    /// Default [`LEASE_GRACE`] (10 s); at most 10 minutes.
    pub lease_grace: Duration,
    /// How often a process waiting for another's lease reads the store again. Default
    /// 50 ms; above zero and at most the deadline.
    pub lease_poll: Duration,
    /// What a user's connection does when its store is unreachable
    /// ([`StoreErrorKind::Unavailable`](crate::StoreErrorKind::Unavailable)). `false`, the
    /// default: the call fails with that error, because the refresh token this process
    /// holds in memory may already have been spent by another process sharing the store,
    /// and presenting it again makes a server that detects reuse (RFC 9700) revoke the
    /// whole grant. `true`: it refreshes with the refresh token in memory, serves the new
    /// access token, and keeps the rotated refresh token in memory until the store is back,
    /// when it is written before anything else; safe only when no other process refreshes
    /// the same connection. Application tokens are always fetched while the store is out
    /// of reach.
    pub refresh_without_store: bool,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            deadline: Duration::from_secs(60),
            lease_grace: LEASE_GRACE,
            lease_poll: Duration::from_millis(50),
            refresh_without_store: false,
        }
    }
}

impl ManagerOptions {
    /// Checks the bounds above.
    pub fn check(&self) -> Result<(), InvalidInput> {
        if self.deadline.is_zero() || self.deadline > Duration::from_secs(3600) {
            return Err(InvalidInput::new(
                "fetch deadline",
                "must be above zero and at most one hour",
            ));
        }
        if self.lease_grace > Duration::from_secs(600) {
            return Err(InvalidInput::new(
                "lease grace",
                "must be at most ten minutes",
            ));
        }
        if self.lease_poll.is_zero() || self.lease_poll > self.deadline {
            return Err(InvalidInput::new(
                "lease poll interval",
                "must be above zero and at most the fetch deadline",
            ));
        }
        Ok(())
    }
}

/// The binding's wait cell for one fetch: callers that [`Join::Wait`] block on it (a tokio
/// `Notify`, a std `Condvar`) until the fetch completes it.
pub trait Flight: Default + Send + Sync {
    /// Hands the fetch's result to every waiter. Called exactly once per flight, also when
    /// the fetch was abandoned.
    fn complete(&self, result: &Result<AccessToken, Error>);
}

/// How a manager starts.
#[derive(Clone, Debug)]
pub enum Seed {
    /// Nothing known: the store, then the server.
    Empty,
    /// A user's connection known by its refresh token; a record in the store wins over it.
    RefreshToken(RefreshToken),
    /// Tokens just obtained (a code exchange): written over whatever the store holds before
    /// anything is served.
    Obtained(TokenRecord),
    /// Tokens obtained that the store has not accepted yet, written first, if the store
    /// still holds what `expect` says: what a reconfigured manager carries over.
    Unwritten {
        /// The tokens.
        record: TokenRecord,
        /// What the store must hold for them to be written.
        expect: Expect,
    },
}

/// Where a caller stands after [`TokenCell::join`].
pub enum Join<F: Flight> {
    /// Serve this token.
    Serve(AccessToken),
    /// Another caller's fetch is under way: wait on it.
    Wait(Arc<F>),
    /// Run this fetch and return what it ends with.
    Lead(Fetch<F>),
    /// Serve `serve` now, and run `fetch` aside (a task, a thread): the token is still
    /// valid and due for refresh.
    Refresh {
        /// The valid token to serve.
        serve: AccessToken,
        /// The early refresh to run without making the caller wait.
        fetch: Fetch<F>,
    },
}

/// One token's state in a process: the hot path and the machine. See the module docs.
pub struct TokenCell<F: Flight> {
    entry: ArcSwapOption<Entry>,
    state: Mutex<State<F>>,
    kind: TokenKind,
    options: ManagerOptions,
    holder: LeaseHolder,
    /// The key an older obauth wrote this token under, looked at when the key is empty.
    previous: Option<StoreKey>,
}

/// What the fast path serves, and the wall-clock window in which it may, without asking the
/// machine: from when the machine last checked both clocks, for at most [`RECHECK`].
struct Entry {
    token: AccessToken,
    /// The token as an `Authorization` value, built by the first caller that asks for it
    /// (`None`: the token is not a valid header value).
    header: OnceLock<Option<HeaderValue>>,
    from: SystemTime,
    until: SystemTime,
}

impl Entry {
    /// The entry, if the machine said it may be served at wall time `wall`.
    #[inline]
    fn servable(&self, wall: SystemTime) -> Option<&Self> {
        (self.from <= wall && wall < self.until).then_some(self)
    }
}

struct State<F> {
    flight: Option<Arc<F>>,
    access: Option<Access>,
    refresh_token: Option<RefreshToken>,
    /// The store version this process's state came from or was written as.
    version: Option<u64>,
    /// Tokens obtained that the store has not accepted yet: written before anything else.
    unsaved: Option<Unsaved>,
    /// The holder whose lease was kept when `unsaved` could not be written (see the module
    /// docs): the fetch that writes them gives it back. A reconfigured manager's new cell
    /// inherits it with the tokens.
    kept_lease: Option<LeaseHolder>,
    /// The last access token a caller reported refused: never adopted again from a store.
    rejected: Option<AccessToken>,
    /// The refresh token the server refused, and its answer.
    dead: Option<ReauthenticationRequired>,
    /// A refresh was asked for ([`TokenCell::expire`]): the next fetch does not adopt a
    /// fresh record, it fetches.
    forced: bool,
    failures: u32,
    early_retry_at: Option<Instant>,
    /// The store was last found unreachable (told once, in a [`Notice`]).
    outage: bool,
    /// The key's previous name has been looked at (see [`TokenCell::with_previous_key`]):
    /// once per cell, so that only a process's first fetch pays the extra read.
    looked_previous: bool,
}

struct Unsaved {
    record: TokenRecord,
    expect: Expect,
}

struct Access {
    token: AccessToken,
    age: Age,
    windows: Windows,
}

impl<F> State<F> {
    /// How long early refreshes still back off after a failure (zero when they do not).
    fn backoff_left(&self, now: Now) -> Duration {
        self.early_retry_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now.mono))
    }

    fn backing_off(&self, now: Now) -> bool {
        !self.backoff_left(now).is_zero()
    }

    /// The token the fast path may serve at `now`, and for how long at most. A due token is
    /// served there only while someone refreshes it or early refreshes back off; otherwise
    /// a caller must reach the machine, which starts the refresh.
    fn servable(&self, now: Now) -> Option<(&AccessToken, Duration)> {
        let access = self.access.as_ref()?;
        let age = access.age.at(now);
        // Saturating: `freshness` already orders age against both windows, and this runs
        // under the state lock, where a panic would strand a flight just started.
        let left = match self.freshness(access, now) {
            Freshness::Fresh => access.windows.fresh.saturating_sub(age),
            Freshness::RefreshSoon if self.flight.is_some() => {
                access.windows.usable.saturating_sub(age)
            }
            Freshness::RefreshSoon => access
                .windows
                .usable
                .saturating_sub(age)
                .min(self.backoff_left(now)),
            Freshness::Expired => return None,
        };
        Some((&access.token, left))
    }

    /// Where the current access token stands. Tokens obtained but not yet written make it
    /// due at once: it is still valid (it was handed out before), but the next fetch, which
    /// writes them, must run.
    fn freshness(&self, access: &Access, now: Now) -> Freshness {
        match access.windows.freshness(access.age.at(now)) {
            Freshness::Fresh if self.unsaved.is_some() => Freshness::RefreshSoon,
            freshness => freshness,
        }
    }

    /// Makes `record`, obtained at the time `age` counts from, the current state.
    fn set_current(&mut self, record: &TokenRecord, age: Age, expiry: &ExpiryPolicy) {
        self.access = record.access_token.as_ref().map(|token| Access {
            token: token.clone(),
            age,
            windows: expiry.windows_secs(record.expires_in),
        });
        if let Some(refresh_token) = &record.refresh_token {
            self.refresh_token = Some(refresh_token.clone());
        }
    }
}

impl<F: Flight> TokenCell<F> {
    /// A cell for a token of `kind`, starting from `seed`. `holder` names this cell in store
    /// leases (a fresh random one per cell).
    pub fn new(kind: TokenKind, options: ManagerOptions, holder: LeaseHolder, seed: Seed) -> Self {
        let (refresh_token, unsaved) = match seed {
            Seed::Empty => (None, None),
            Seed::RefreshToken(token) => (Some(token), None),
            Seed::Obtained(record) => (
                record.refresh_token.clone(),
                Some(Unsaved {
                    record,
                    expect: Expect::Any,
                }),
            ),
            Seed::Unwritten { record, expect } => (
                record.refresh_token.clone(),
                Some(Unsaved { record, expect }),
            ),
        };
        Self {
            entry: ArcSwapOption::empty(),
            state: Mutex::new(State {
                flight: None,
                access: None,
                refresh_token,
                version: None,
                unsaved,
                kept_lease: None,
                rejected: None,
                dead: None,
                forced: false,
                failures: 0,
                early_retry_at: None,
                outage: false,
                looked_previous: false,
            }),
            kind,
            options,
            holder,
            previous: None,
        }
    }

    /// Makes the first fetch that finds nothing under the manager's key look under
    /// `previous`, once per cell, and move what it finds (see [`StoreKey::with_previous`]).
    pub fn with_previous_key(mut self, previous: Option<StoreKey>) -> Self {
        self.previous = previous;
        self
    }

    fn state(&self) -> MutexGuard<'_, State<F>> {
        // No code panics while holding this lock (it only moves values around), and every
        // field is valid on its own: a poisoned lock is still a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fast path: the token, if the machine said it may be served at wall time `wall`.
    /// One atomic load and two comparisons; no lock.
    #[inline]
    pub fn fresh(&self, wall: SystemTime) -> Option<AccessToken> {
        let entry = self.entry.load();
        Some(entry.as_deref()?.servable(wall)?.token.clone())
    }

    /// The fast path for a request to another API: the token as its `Authorization` value
    /// ([`bearer::authorization`](crate::bearer::authorization)), built once per published
    /// token and then shared (a reference count, not a copy of the token). `None` when
    /// [`fresh`](Self::fresh) would be, or when the token is not a valid header value (the
    /// slow path then says why).
    #[inline]
    pub fn fresh_authorization(&self, wall: SystemTime) -> Option<HeaderValue> {
        let entry = self.entry.load();
        let entry = entry.as_deref()?.servable(wall)?;
        entry
            .header
            .get_or_init(|| crate::bearer::authorization(&entry.token).ok())
            .clone()
    }

    fn publish(&self, state: &State<F>, now: Now) {
        let entry = state.servable(now).and_then(|(token, left)| {
            let until = now.wall.checked_add(left.min(RECHECK))?;
            Some(Arc::new(Entry {
                token: token.clone(),
                header: OnceLock::new(),
                from: now.wall,
                until,
            }))
        });
        self.entry.store(entry);
    }

    /// The slow path, for a caller the fast path did not serve. `background` says whether
    /// the caller can run a fetch aside ([`Join::Refresh`]); without it, a token due for
    /// refresh is served until it expires and then fetched in the caller's path.
    pub fn join(self: &Arc<Self>, now: Now, background: bool) -> Join<F> {
        let mut state = self.state();
        let mut early = None;
        if let Some(access) = state.access.as_mut() {
            access.age.advance(now);
        }
        if let Some(access) = state.access.as_ref() {
            match state.freshness(access, now) {
                Freshness::Fresh => {
                    let token = access.token.clone();
                    self.publish(&state, now);
                    return Join::Serve(token);
                }
                Freshness::RefreshSoon => early = Some(access.token.clone()),
                Freshness::Expired => {}
            }
        }
        if let Some(valid) = early {
            if state.flight.is_some() || state.backing_off(now) || !background {
                self.publish(&state, now);
                return Join::Serve(valid);
            }
            let fetch = self.start(&mut state, now, true);
            self.publish(&state, now);
            return Join::Refresh {
                serve: valid,
                fetch,
            };
        }
        if let Some(flight) = &state.flight {
            return Join::Wait(Arc::clone(flight));
        }
        let fetch = self.start(&mut state, now, false);
        self.entry.store(None);
        Join::Lead(fetch)
    }

    fn start(self: &Arc<Self>, state: &mut State<F>, now: Now, early: bool) -> Fetch<F> {
        let flight = Arc::new(F::default());
        state.flight = Some(Arc::clone(&flight));
        Fetch::new(Arc::clone(self), flight, now, early, state.forced)
    }

    /// Reports that `rejected` was refused by an API. If it is the token this cell holds,
    /// the next call fetches a new one (and never adopts `rejected` again from a store);
    /// if the cell already holds a newer token, nothing changes.
    pub fn invalidate(&self, rejected: &AccessToken) {
        let mut state = self.state();
        if state
            .access
            .as_ref()
            .is_some_and(|access| access.token.expose_secret() == rejected.expose_secret())
        {
            state.access = None;
            state.rejected = Some(rejected.clone());
            self.entry.store(None);
        }
    }

    /// Treats the cached access token as expired: the next call fetches (a user's token is
    /// refreshed) even if it, or a record in the store, is fresh.
    pub fn expire(&self) {
        let mut state = self.state();
        if let Some(access) = state.access.take() {
            state.rejected = Some(access.token);
        }
        state.forced = true;
        self.entry.store(None);
    }

    /// What a new cell for the same token starts from, so that nothing this one holds is
    /// lost: tokens not yet written, else the refresh token known in memory (a record in
    /// the store still wins over that).
    pub fn handover(&self) -> Seed {
        let state = self.state();
        match (&state.unsaved, &state.refresh_token) {
            (Some(unsaved), _) => Seed::Unwritten {
                record: unsaved.record.clone(),
                expect: unsaved.expect,
            },
            (None, Some(token)) => Seed::RefreshToken(token.clone()),
            (None, None) => Seed::Empty,
        }
    }

    /// The refresh token this process knows, the one not yet written first.
    pub fn refresh_token(&self) -> Option<RefreshToken> {
        let state = self.state();
        state
            .unsaved
            .as_ref()
            .and_then(|unsaved| unsaved.record.refresh_token.clone())
            .or_else(|| state.refresh_token.clone())
    }

    /// The options this cell runs with.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// How long the cached access token is still served from `now` (its usable window less
    /// its age), if the cell holds one.
    pub fn remaining(&self, now: Now) -> Option<Duration> {
        let state = self.state();
        let access = state.access.as_ref()?;
        Some(access.windows.usable.saturating_sub(access.age.at(now)))
    }

    /// Ends `flight` with `result`: publishes, sets or clears the backoff, wakes the waiters.
    fn complete(&self, flight: &Arc<F>, result: &Result<AccessToken, Error>, now: Option<Now>) {
        {
            let mut state = self.state();
            if state
                .flight
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, flight))
            {
                state.flight = None;
            }
            if let Some(now) = now {
                match result {
                    Ok(_) => {
                        state.failures = 0;
                        state.early_retry_at = None;
                        state.forced = false;
                    }
                    Err(_) => {
                        let pause = EARLY_RETRY_FIRST
                            .saturating_mul(1 << state.failures.min(16))
                            .min(EARLY_RETRY_MAX);
                        state.failures = state.failures.saturating_add(1);
                        state.early_retry_at = now.mono.checked_add(pause);
                    }
                }
                self.publish(&state, now);
            } else {
                self.entry.store(None);
            }
        }
        flight.complete(result);
    }
}

/// The refresh token to keep after a refresh: the rotated one if the server sent one,
/// else the one used (servers that do not rotate keep it valid).
fn next_refresh_token(used: &RefreshToken, issued: Option<RefreshToken>) -> RefreshToken {
    match issued {
        Some(issued) if !issued.is_empty() => issued,
        _ => used.clone(),
    }
}

#[cfg(test)]
mod tests;
