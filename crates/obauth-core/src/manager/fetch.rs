//! One fetch, step by step: what the leader does, told by the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use obauth_types::{AccessToken, ErrorCode, RefreshToken};

use super::{Answer, Flight, Grant, State, TokenCell, TokenKind, Unsaved, next_refresh_token};
use crate::error::{
    Error, ReauthenticationRequired, StoreError, StoreErrorKind, TimeoutError, TimeoutPhase,
    TransportError, TransportErrorKind,
};
use crate::expiry::{Age, Freshness, Now};
use crate::store::{Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord};

/// What the binding does next for a [`Fetch`].
#[derive(Debug)]
pub enum Action {
    /// Read the record: `store.load(key)`, then feed [`Event::Loaded`].
    Load,
    /// Read the record under the key an older obauth used (the manager's key holds
    /// nothing): `store.load(&previous)`, then feed [`Event::Loaded`]. What is found there
    /// is then written under the manager's key with [`Action::Persist`].
    LoadPrevious(StoreKey),
    /// Take the lease: `store.try_lease(key, holder, ttl, now.wall)`, then [`Event::Leased`].
    Lease {
        /// This manager's holder id.
        holder: LeaseHolder,
        /// For how long.
        ttl: Duration,
    },
    /// Wait this long (another process holds the lease), then feed [`Event::Woke`].
    Sleep(Duration),
    /// Send the token request for `grant` (see [`super::TokenEndpoint::request`]) with a
    /// [`Call`](crate::Call) bounded by `deadline`; note the time just before sending, and
    /// feed [`Event::Answered`].
    Send {
        /// What to ask for.
        grant: Grant,
        /// The fetch's deadline, for [`Call::with_deadline`](crate::Call::with_deadline).
        deadline: Instant,
    },
    /// Write `record`: `store.compare_and_swap(key, expect, record)`, then
    /// [`Event::Persisted`].
    Persist {
        /// What the store must hold for the write to happen.
        expect: Expect,
        /// The record.
        record: TokenRecord,
    },
    /// Give the lease back: `store.release(key, holder)`, then [`Event::Released`].
    Release {
        /// This manager's holder id.
        holder: LeaseHolder,
    },
    /// The fetch is over: the flight's waiters have been handed this result; return it to
    /// the caller that led the fetch (if it is waiting).
    Done(Result<AccessToken, Error>),
}

/// What the binding feeds a [`Fetch`]: the outcome of the last [`Action`].
#[derive(Debug)]
pub enum Event {
    /// The first event of every fetch.
    Start,
    /// The outcome of [`Action::Load`].
    Loaded(Result<Option<Stored>, StoreError>),
    /// The outcome of [`Action::Lease`].
    Leased(Result<Lease, StoreError>),
    /// [`Action::Sleep`] is over.
    Woke,
    /// The outcome of [`Action::Send`].
    Answered {
        /// When the request was sent: the token's age counts from here.
        sent: Now,
        /// The answer.
        result: Result<Answer, Error>,
    },
    /// The outcome of [`Action::Persist`].
    Persisted(Result<Cas, StoreError>),
    /// The outcome of [`Action::Release`].
    Released(Result<(), StoreError>),
}

/// What a binding tells its log about a fetch (the core has no logger): read with
/// [`Fetch::take_notice`] after each [`Fetch::step`]. Each is given once per change, for
/// all the fetches of one token manager.
#[derive(Clone, Debug)]
pub enum Notice {
    /// The store stopped answering (an [`Unavailable`](StoreErrorKind::Unavailable) error):
    /// application tokens are fetched for this process alone until it answers again, a
    /// user's connection is not refreshed. A warning, once per outage.
    StoreUnavailable(StoreError),
    /// The store answers again after an outage.
    StoreBack,
}

impl Notice {
    /// Whether it is logged as a warning (otherwise as information).
    pub fn is_warning(&self) -> bool {
        matches!(self, Notice::StoreUnavailable(_))
    }
}

impl std::fmt::Display for Notice {
    /// The log line: no secret (store errors hold no token and no password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::StoreUnavailable(error) => write!(
                f,
                "token store unavailable ({error}): application tokens are fetched for this \
                 process alone, and user connections are not refreshed, until it answers again"
            ),
            Notice::StoreBack => f.write_str("token store answers again"),
        }
    }
}

enum Step {
    Start,
    PersistUnsaved,
    Load,
    LoadPrevious,
    MovePrevious,
    Lease,
    Sleep,
    Send,
    Persist {
        record: TokenRecord,
        sent: Now,
        then: Result<AccessToken, Error>,
    },
    Release(Result<AccessToken, Error>),
    /// Giving back the lease kept for tokens just written (see the cell's
    /// `kept_lease`); then serving them (`written`) or going on from the store.
    ReleaseKept {
        written: bool,
        holder: LeaseHolder,
    },
    /// Between taking the step and setting the next: never seen unless a step panicked.
    Busy,
    Done,
}

/// The errand of the caller that leads a fetch. Drive it with [`Fetch::step`] until
/// [`Action::Done`]; if it is dropped before that, its waiters are woken with an error.
pub struct Fetch<F: Flight> {
    cell: Arc<TokenCell<F>>,
    flight: Arc<F>,
    deadline: Instant,
    early: bool,
    step: Step,
    /// This fetch holds the store lease.
    leased: bool,
    /// What the store held when last read.
    loaded: Option<Stored>,
    /// The application store failed: the token is fetched and kept in memory only.
    store_down: bool,
    /// The refresh token sent with the request.
    presented: Option<RefreshToken>,
    /// Another holder's lease has been waited on.
    waited: bool,
    /// A refresh was asked for: no fresh record is adopted instead.
    forced: bool,
    /// For the binding's log.
    notice: Option<Notice>,
}

impl<F: Flight> std::fmt::Debug for Fetch<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("early", &self.early)
            .field("leased", &self.leased)
            .finish_non_exhaustive()
    }
}

impl<F: Flight> Fetch<F> {
    pub(super) fn new(
        cell: Arc<TokenCell<F>>,
        flight: Arc<F>,
        now: Now,
        early: bool,
        forced: bool,
    ) -> Self {
        let deadline = now
            .mono
            .checked_add(cell.options.deadline)
            .unwrap_or(now.mono);
        Self {
            cell,
            flight,
            deadline,
            early,
            step: Step::Start,
            leased: false,
            loaded: None,
            store_down: false,
            presented: None,
            waited: false,
            forced,
            notice: None,
        }
    }

    /// The flight this fetch completes: wait on it for the result when the fetch runs
    /// elsewhere (a spawned task).
    pub fn flight(&self) -> &Arc<F> {
        &self.flight
    }

    /// Whether this is an early refresh, run while a valid token is still being served.
    pub fn is_early(&self) -> bool {
        self.early
    }

    /// What the binding should log now, if anything (see [`Notice`]).
    pub fn take_notice(&mut self) -> Option<Notice> {
        self.notice.take()
    }

    /// Notes whether the store answered, for [`Notice`]s.
    fn observe(&mut self, event: &Event) {
        let error = match event {
            Event::Loaded(result) => result.as_ref().err(),
            Event::Leased(result) => result.as_ref().err(),
            Event::Persisted(result) => result.as_ref().err(),
            Event::Released(result) => result.as_ref().err(),
            Event::Start | Event::Woke | Event::Answered { .. } => return,
        };
        let mut state = self.cell.state();
        match error {
            None if state.outage => {
                state.outage = false;
                self.notice = Some(Notice::StoreBack);
            }
            Some(error) if error.kind() == StoreErrorKind::Unavailable && !state.outage => {
                state.outage = true;
                self.notice = Some(Notice::StoreUnavailable(error.clone()));
            }
            _ => {}
        }
    }

    /// Feeds the outcome of the last action (first [`Event::Start`]) and returns the next.
    pub fn step(&mut self, now: Now, event: Event) -> Action {
        self.observe(&event);
        match (std::mem::replace(&mut self.step, Step::Busy), event) {
            (Step::Start, Event::Start) => self.start(),
            (Step::PersistUnsaved, Event::Persisted(result)) => self.unsaved_persisted(now, result),
            (Step::ReleaseKept { written, .. }, Event::Released(_)) => {
                if written {
                    self.unsaved_written(now)
                } else {
                    self.load()
                }
            }
            (Step::Load, Event::Loaded(result)) => self.loaded(now, result),
            (Step::LoadPrevious, Event::Loaded(result)) => self.loaded_previous(now, result),
            (Step::MovePrevious, Event::Persisted(result)) => match result {
                // Moved, or someone else wrote the key meanwhile: read it again either way.
                Ok(_) => self.load(),
                Err(error) => self.store_failed(now, error),
            },
            (Step::Lease, Event::Leased(result)) => self.leased(now, result),
            (Step::Sleep, Event::Woke) => self.load(),
            (Step::Send, Event::Answered { sent, result }) => self.answered(now, sent, result),
            (Step::Persist { record, sent, then }, Event::Persisted(result)) => {
                self.persisted(now, result, record, sent, then)
            }
            (Step::Release(then), Event::Released(_)) => self.done(now, then),
            (Step::Done, _) => {
                self.step = Step::Done;
                Action::Done(Err(abandoned()))
            }
            (_, _) => self.finish(
                now,
                Err(Error::Transport(TransportError::new(
                    TransportErrorKind::Request,
                    "the token machine was fed an event it did not ask for",
                ))),
            ),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<F>> {
        self.cell.state()
    }

    fn start(&mut self) -> Action {
        let unsaved = self
            .state()
            .unsaved
            .as_ref()
            .map(|unsaved| (unsaved.expect, unsaved.record.clone()));
        match unsaved {
            Some((expect, record)) => {
                self.step = Step::PersistUnsaved;
                Action::Persist { expect, record }
            }
            // A kept lease whose giving back was cut short (a fetch dropped mid-way): back
            // first, then the store.
            None => {
                let kept = self.state().kept_lease.take();
                self.release_kept(kept, false)
                    .unwrap_or_else(|| self.load())
            }
        }
    }

    fn load(&mut self) -> Action {
        self.step = Step::Load;
        Action::Load
    }

    fn unsaved_persisted(&mut self, now: Now, result: Result<Cas, StoreError>) -> Action {
        match result {
            Ok(Cas::Written(version)) => {
                let kept = {
                    let mut state = self.state();
                    state.version = Some(version);
                    if let Some(unsaved) = state.unsaved.take() {
                        let age = Age::since(unsaved.record.obtained_at, now);
                        state.set_current(&unsaved.record, age, &self.cell.options.expiry);
                    }
                    state.kept_lease.take()
                };
                self.release_kept(kept, true)
                    .unwrap_or_else(|| self.unsaved_written(now))
            }
            Ok(Cas::Conflict(_)) => {
                // Someone else wrote since: theirs is as new as ours, and is what every
                // other process now sees. Drop ours and carry on from the store. A lease
                // this cell kept goes back; one inherited from the cell it replaced does
                // not: that cell, still in use, may be the writer and hold it again now.
                let kept = {
                    let mut state = self.state();
                    state.unsaved = None;
                    state.kept_lease.take()
                };
                let own = kept.filter(|holder| *holder == self.cell.holder);
                self.release_kept(own, false).unwrap_or_else(|| self.load())
            }
            Err(error) if self.degrades(&error) => {
                // Still out of reach, and the user chose to go on without it: the tokens
                // stay unsaved, and are refreshed from memory when due.
                self.store_down = true;
                match self.fresh_in_memory(now) {
                    // A write tried early, while the tokens are valid: reported, so that the
                    // next try backs off while the valid token keeps being served.
                    Some(_) if self.early => self.finish(now, Err(Error::Store(error))),
                    Some(token) => self.finish(now, Ok(token)),
                    None => self.grant(now),
                }
            }
            Err(error) => self.finish(now, Err(Error::Store(error))),
        }
    }

    /// Gives back the lease kept for the tokens just written (or dropped on a conflict),
    /// if one was: nothing waits for it any more. A no-op in the store if it ran out and
    /// another holder has it now.
    fn release_kept(&mut self, kept: Option<LeaseHolder>, written: bool) -> Option<Action> {
        let holder = kept?;
        self.step = Step::ReleaseKept { written, holder };
        Some(Action::Release { holder })
    }

    /// After the tokens left unsaved were written: serve what was obtained with them if it
    /// is fresh (no second refresh), or go on from the store.
    fn unsaved_written(&mut self, now: Now) -> Action {
        match self.fresh_in_memory(now) {
            Some(token) => self.finish(now, Ok(token)),
            None => self.load(),
        }
    }

    /// The access token in memory, if it is fresh and no refresh was asked for.
    fn fresh_in_memory(&self, now: Now) -> Option<AccessToken> {
        if self.forced {
            return None;
        }
        let state = self.state();
        let access = state.access.as_ref()?;
        (access.windows.freshness(access.age.at(now)) == Freshness::Fresh)
            .then(|| access.token.clone())
    }

    /// Adopts `stored` if it holds a fresh access token that no caller reported refused.
    fn adopt_if_fresh(&self, now: Now, stored: &Stored) -> Option<AccessToken> {
        if self.forced {
            return None;
        }
        let token = stored.record.access_token.as_ref()?;
        let age = Age::since(stored.record.obtained_at, now);
        let windows = self
            .cell
            .options
            .expiry
            .windows_secs(stored.record.expires_in);
        if windows.freshness(age.at(now)) != Freshness::Fresh {
            return None;
        }
        let mut state = self.state();
        if state
            .rejected
            .as_ref()
            .is_some_and(|rejected| rejected.expose_secret() == token.expose_secret())
        {
            return None;
        }
        state.version = Some(stored.version);
        state.set_current(&stored.record, age, &self.cell.options.expiry);
        Some(token.clone())
    }

    fn loaded(&mut self, now: Now, result: Result<Option<Stored>, StoreError>) -> Action {
        let stored = match result {
            Ok(stored) => stored,
            Err(error) => return self.store_failed(now, error),
        };
        if stored.is_none()
            && let Some(previous) = self.cell.previous.clone()
        {
            let looked = std::mem::replace(&mut self.state().looked_previous, true);
            if !looked {
                self.step = Step::LoadPrevious;
                return Action::LoadPrevious(previous);
            }
        }
        if let Some(token) = stored
            .as_ref()
            .and_then(|stored| self.adopt_if_fresh(now, stored))
        {
            return self.finish(now, Ok(token));
        }
        self.loaded = stored;
        if self.leased {
            return self.grant(now);
        }
        match self.left(now) {
            Some(left) => {
                self.step = Step::Lease;
                Action::Lease {
                    holder: self.cell.holder,
                    ttl: left.saturating_add(self.cell.options.lease_grace),
                }
            }
            None if self.waited => self.finish(now, Err(lease_timeout())),
            None => self.finish(now, Err(deadline_passed())),
        }
    }

    /// What the key an older obauth used holds: moved under the manager's key (written only
    /// if that is still empty), or, if nothing, the key's emptiness stands.
    fn loaded_previous(&mut self, now: Now, result: Result<Option<Stored>, StoreError>) -> Action {
        match result {
            Ok(Some(stored)) => {
                self.step = Step::MovePrevious;
                Action::Persist {
                    expect: Expect::Absent,
                    record: stored.record,
                }
            }
            Ok(None) => self.loaded(now, Ok(None)),
            Err(error) => self.store_failed(now, error),
        }
    }

    /// The time left before the deadline, if any.
    fn left(&self, now: Now) -> Option<Duration> {
        self.deadline
            .checked_duration_since(now.mono)
            .filter(|left| !left.is_zero())
    }

    fn leased(&mut self, now: Now, result: Result<Lease, StoreError>) -> Action {
        match result {
            Ok(Lease::Granted) => {
                self.leased = true;
                self.load()
            }
            Ok(Lease::Held { until }) => match self.left(now) {
                Some(left) => {
                    let free_in = until
                        .duration_since(now.wall)
                        .unwrap_or(Duration::ZERO)
                        .max(Duration::from_millis(1));
                    self.waited = true;
                    self.step = Step::Sleep;
                    Action::Sleep(self.cell.options.lease_poll.min(left).min(free_in))
                }
                None => self.finish(now, Err(lease_timeout())),
            },
            Err(error) => self.store_failed(now, error),
        }
    }

    fn store_failed(&mut self, now: Now, error: StoreError) -> Action {
        if self.degrades(&error) {
            // Any process may fetch an application token: while the store is out of reach,
            // fetch it for this process alone. (A user's, only if the user said so.)
            self.store_down = true;
            return self.grant(now);
        }
        // A user's refresh token lives in the store: using the one in memory might present
        // a token another process has already spent. And a store that is there but wrong
        // (corrupted, sealed under another key) is a mistake to report, not to work around.
        self.finish(now, Err(Error::Store(error)))
    }

    /// Whether `error` lets this fetch go on without the store: an unreachable store, for
    /// an application token, or for a user's if [`ManagerOptions::refresh_without_store`]
    /// is set.
    ///
    /// [`ManagerOptions::refresh_without_store`]: super::ManagerOptions::refresh_without_store
    fn degrades(&self, error: &StoreError) -> bool {
        error.kind() == StoreErrorKind::Unavailable
            && (self.cell.kind == TokenKind::Application || self.cell.options.refresh_without_store)
    }

    fn grant(&mut self, now: Now) -> Action {
        match self.cell.kind {
            TokenKind::Application => self.send(Grant::ClientCredentials),
            TokenKind::User => {
                let (refresh_token, dead) = {
                    let state = self.state();
                    let refresh_token = self
                        .loaded
                        .as_ref()
                        .and_then(|stored| stored.record.refresh_token.clone())
                        .or_else(|| state.refresh_token.clone());
                    (refresh_token, state.dead.clone())
                };
                let Some(refresh_token) = refresh_token else {
                    return self.finish(
                        now,
                        Err(Error::Store(StoreError::new(
                            StoreErrorKind::NotFound,
                            "no refresh token is stored for this connection",
                        ))),
                    );
                };
                if let Some(dead) = dead
                    && dead.refresh_token().expose_secret() == refresh_token.expose_secret()
                {
                    // Refused before: asking again would only be refused again.
                    return self.finish(now, Err(Error::ReauthenticationRequired(dead)));
                }
                let floor = super::MIN_REFRESH_TIME.min(self.cell.options.deadline / 4);
                if self.left(now).is_none_or(|left| left < floor) {
                    return self.finish(now, Err(deadline_passed()));
                }
                self.presented = Some(refresh_token.clone());
                self.send(Grant::Refresh(refresh_token))
            }
        }
    }

    fn send(&mut self, grant: Grant) -> Action {
        self.step = Step::Send;
        Action::Send {
            grant,
            deadline: self.deadline,
        }
    }

    fn answered(&mut self, now: Now, sent: Now, result: Result<Answer, Error>) -> Action {
        let (record, then) = match result {
            Ok(Answer::Issued(issued)) => {
                // The asked-for refresh has happened: once its tokens are written, nothing
                // forces another.
                self.forced = false;
                self.state().forced = false;
                let refresh_token = match (self.cell.kind, &self.presented) {
                    (TokenKind::User, Some(used)) => {
                        Some(next_refresh_token(used, issued.refresh_token))
                    }
                    _ => None,
                };
                let record = TokenRecord {
                    access_token: Some(issued.access_token.clone()),
                    obtained_at: sent.wall,
                    expires_in: issued.expires_in,
                    refresh_token,
                };
                (record, Ok(issued.access_token))
            }
            Ok(Answer::Rotated {
                refresh_token,
                error,
            }) => {
                let record = TokenRecord {
                    access_token: None,
                    obtained_at: sent.wall,
                    expires_in: 0,
                    refresh_token: Some(refresh_token),
                };
                (record, Err(error))
            }
            Err(error) => {
                let error = match (&self.presented, error) {
                    (Some(used), Error::Api(api)) if api.code == ErrorCode::InvalidGrant => {
                        let reauth = ReauthenticationRequired::new(used.clone(), api);
                        self.state().dead = Some(reauth.clone());
                        Error::ReauthenticationRequired(reauth)
                    }
                    (_, error) => error,
                };
                return self.finish(now, Err(error));
            }
        };
        if self.store_down {
            let mut state = self.state();
            if self.cell.kind == TokenKind::User {
                // Written first thing once the store is back.
                let expect = Expect::after(state.version);
                state.unsaved = Some(Unsaved {
                    record: record.clone(),
                    expect,
                });
            }
            state.set_current(&record, Age::new(sent), &self.cell.options.expiry);
            drop(state);
            return self.finish(now, then);
        }
        let expect = Expect::after(self.loaded.as_ref().map(|stored| stored.version));
        if self.cell.kind == TokenKind::User {
            // The old refresh token is spent: from here until the store has the new one, it
            // lives in memory, so that no failure (a refused write, a panic, a dropped
            // task) can lose it; the next fetch writes it before anything else.
            self.state().unsaved = Some(Unsaved {
                record: record.clone(),
                expect,
            });
        }
        self.step = Step::Persist {
            record: record.clone(),
            sent,
            then,
        };
        Action::Persist { expect, record }
    }

    fn persisted(
        &mut self,
        now: Now,
        result: Result<Cas, StoreError>,
        record: TokenRecord,
        sent: Now,
        then: Result<AccessToken, Error>,
    ) -> Action {
        let expiry = self.cell.options.expiry;
        match result {
            Ok(Cas::Written(version)) => {
                let mut state = self.state();
                state.unsaved = None;
                state.version = Some(version);
                state.set_current(&record, Age::new(sent), &expiry);
            }
            Ok(Cas::Conflict(current)) => {
                // Another writer got there first: its record is what the store holds, so it
                // is adopted if fresh; otherwise this process serves its own token.
                self.state().unsaved = None;
                if let Some(theirs) = current
                    .as_ref()
                    .and_then(|stored| self.adopt_if_fresh(now, stored))
                {
                    return self.finish(now, Ok(theirs));
                }
                let mut state = self.state();
                state.version = current.map(|stored| stored.version);
                state.set_current(&record, Age::new(sent), &expiry);
            }
            // Still unsaved, for a user: the next fetch writes it first.
            Err(error) if self.degrades(&error) => {
                self.state().set_current(&record, Age::new(sent), &expiry);
            }
            // A user's tokens are kept unsaved: the next fetch writes them first.
            Err(error) => {
                let rotated = self.presented.as_ref().is_some_and(|presented| {
                    record
                        .refresh_token
                        .as_ref()
                        .is_some_and(|new| new.expose_secret() != presented.expose_secret())
                });
                let error = if rotated {
                    error.after_rotation()
                } else {
                    error
                };
                return self.finish(now, Err(Error::Store(error)));
            }
        }
        self.finish(now, then)
    }

    /// Ends the fetch with `result`, giving the lease back first if it is held, unless
    /// tokens the store has not accepted are left: then the lease is kept (it runs out), so
    /// that no other process presents the refresh token they replaced before this one has
    /// written them.
    fn finish(&mut self, now: Now, result: Result<AccessToken, Error>) -> Action {
        if self.leased {
            self.leased = false;
            let mut state = self.state();
            if state.unsaved.is_some() {
                state.kept_lease = Some(self.cell.holder);
                drop(state);
                return self.done(now, result);
            }
            drop(state);
            self.step = Step::Release(result);
            return Action::Release {
                holder: self.cell.holder,
            };
        }
        self.done(now, result)
    }

    fn done(&mut self, now: Now, result: Result<AccessToken, Error>) -> Action {
        self.step = Step::Done;
        self.cell.complete(&self.flight, &result, Some(now));
        Action::Done(result)
    }
}

impl<F: Flight> Drop for Fetch<F> {
    fn drop(&mut self) {
        if !matches!(self.step, Step::Done) {
            // A lease this fetch held, or was giving back, while tokens are unwritten is
            // kept as `finish` keeps it: the fetch that writes them gives it back.
            let holder = match self.step {
                Step::ReleaseKept { holder, .. } => Some(holder),
                _ if self.leased && self.state().unsaved.is_some() => Some(self.cell.holder),
                _ => None,
            };
            if let Some(holder) = holder {
                self.state().kept_lease.get_or_insert(holder);
            }
            self.cell.complete(&self.flight, &Err(abandoned()), None);
        }
    }
}

/// Whether a fetch goes on without the store after `error`: only for an application token,
/// and only while the store is unreachable.
fn abandoned() -> Error {
    Error::Transport(TransportError::new(
        TransportErrorKind::Request,
        "the token fetch was abandoned before it finished",
    ))
}

fn lease_timeout() -> Error {
    Error::Store(StoreError::new(
        StoreErrorKind::LeaseTimeout,
        "another process held this token's lease past the fetch deadline",
    ))
}

fn deadline_passed() -> Error {
    Error::Timeout(TimeoutError {
        phase: TimeoutPhase::Deadline,
        after: Duration::ZERO,
    })
}
