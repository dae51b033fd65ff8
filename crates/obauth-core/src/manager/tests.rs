//! The token machine with a fake clock, a real in-memory store and a scripted server: every
//! transition, without HTTP.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::StatusCode;

use super::*;
use crate::error::{ApiError, StoreError, StoreErrorKind, TimeoutPhase};
use crate::random::OsRandom;
use crate::store::{Cas, Lease, MemoryStore, StoreKey, Stored, TokenStore};

/// A flight that records its result.
#[derive(Default)]
struct TestFlight {
    result: Mutex<Option<Result<AccessToken, Error>>>,
    completions: Mutex<u32>,
}

impl Flight for TestFlight {
    fn complete(&self, result: &Result<AccessToken, Error>) {
        *self.result.lock().unwrap() = Some(result.clone());
        *self.completions.lock().unwrap() += 1;
    }
}

impl TestFlight {
    fn token(&self) -> String {
        match &*self.result.lock().unwrap() {
            Some(Ok(token)) => token.expose_secret().to_owned(),
            other => panic!("the flight ended with {other:?}"),
        }
    }
}

type Cell = Arc<TokenCell<TestFlight>>;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fixed start; tests move both clocks from it by hand.
fn t0() -> Now {
    Now {
        wall: SystemTime::UNIX_EPOCH + secs(1_700_000_000),
        mono: Instant::now(),
    }
}

fn at(start: Now, offset: Duration) -> Now {
    start.after(offset)
}

/// No skew and a refresh window of 20 s: a 100 s token is fresh for 80 s, usable for 100 s.
fn options() -> ManagerOptions {
    ManagerOptions {
        expiry: ExpiryPolicy {
            max_skew: Duration::ZERO,
            skew_fraction: 0.0,
            max_refresh_window: secs(20),
            refresh_fraction: 1.0,
        },
        deadline: secs(30),
        lease_grace: LEASE_GRACE,
        lease_poll: Duration::from_millis(50),
        refresh_without_store: false,
    }
}

fn cell(kind: TokenKind, seed: Seed) -> Cell {
    Arc::new(TokenCell::new(
        kind,
        options(),
        LeaseHolder::random(&mut OsRandom).unwrap(),
        seed,
    ))
}

fn app_key() -> StoreKey {
    StoreKey::client_credentials(
        "https://auth.example/token",
        "client",
        "client_secret_post",
        "payments",
    )
}

fn user_key() -> StoreKey {
    StoreKey::user(
        "https://auth.example/token",
        "client",
        "client_secret_post",
        &crate::store::ConnectionName::new("alice").unwrap(),
    )
}

fn issued(access: &str, expires_in: u64, refresh: Option<&str>) -> Result<Answer, Error> {
    Ok(Answer::Issued(Issued {
        access_token: AccessToken::new(access),
        expires_in,
        refresh_token: refresh.map(RefreshToken::new),
    }))
}

fn api_error(code: ErrorCode) -> Error {
    Error::Api(Box::new(ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        description: None,
        details: None,
        trace_id: None,
        retry_after: None,
    }))
}

use obauth_types::ErrorCode;

fn record(
    access: Option<&str>,
    obtained_at: SystemTime,
    expires_in: u64,
    refresh: Option<&str>,
) -> TokenRecord {
    TokenRecord {
        access_token: access.map(AccessToken::new),
        obtained_at,
        expires_in,
        refresh_token: refresh.map(RefreshToken::new),
    }
}

/// What the driver did, in order, for tests of the ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Did {
    Load,
    LoadPrevious,
    Lease,
    Sleep,
    Send(Option<String>),
    Persist(Expect),
    Release,
}

/// Drives `fetch` against `store` with the server's scripted `answers`, the clock at `now`.
struct Driver<'a> {
    store: &'a dyn TokenStore,
    key: StoreKey,
    answers: VecDeque<Result<Answer, Error>>,
    did: Vec<Did>,
    /// Hooks run before the named action reaches the store: to let "another process" act.
    before_persist: Option<Box<dyn FnMut() + 'a>>,
    before_load: Option<Box<dyn FnMut() + 'a>>,
    clock: Now,
    /// The fetch's notices, as the binding would log them.
    notices: Vec<&'static str>,
}

impl<'a> Driver<'a> {
    fn new(store: &'a dyn TokenStore, key: StoreKey, clock: Now) -> Self {
        Self {
            store,
            key,
            answers: VecDeque::new(),
            did: Vec::new(),
            before_persist: None,
            before_load: None,
            clock,
            notices: Vec::new(),
        }
    }

    fn answer(mut self, answer: Result<Answer, Error>) -> Self {
        self.answers.push_back(answer);
        self
    }

    fn run(&mut self, mut fetch: Fetch<TestFlight>) -> Result<AccessToken, Error> {
        let mut event = Event::Start;
        for step in 0.. {
            // A fetch that never ends is a bug to report, not a test to hang.
            assert!(step < MAX_STEPS, "the fetch did not end: {:?}", self.did);
            let now = self.clock;
            let action = fetch.step(now, event);
            match fetch.take_notice() {
                Some(Notice::StoreUnavailable(_)) => self.notices.push("unavailable"),
                Some(Notice::StoreBack) => self.notices.push("back"),
                None => {}
            }
            event = match action {
                Action::Load => {
                    self.did.push(Did::Load);
                    if let Some(hook) = self.before_load.as_mut() {
                        hook();
                    }
                    Event::Loaded(self.store.load(&self.key))
                }
                Action::LoadPrevious(previous) => {
                    self.did.push(Did::LoadPrevious);
                    Event::Loaded(self.store.load(&previous))
                }
                Action::Lease { holder, ttl } => {
                    self.did.push(Did::Lease);
                    Event::Leased(self.store.try_lease(&self.key, &holder, ttl, now.wall))
                }
                Action::Sleep(pause) => {
                    self.did.push(Did::Sleep);
                    self.clock = self.clock.after(pause);
                    Event::Woke
                }
                Action::Send { grant, .. } => {
                    self.did.push(Did::Send(match &grant {
                        Grant::ClientCredentials => None,
                        Grant::Refresh(token) => Some(token.expose_secret().to_owned()),
                    }));
                    let result = self.answers.pop_front().expect("an unscripted request");
                    Event::Answered { sent: now, result }
                }
                Action::Persist { expect, record } => {
                    self.did.push(Did::Persist(expect));
                    if let Some(hook) = self.before_persist.as_mut() {
                        hook();
                    }
                    Event::Persisted(self.store.compare_and_swap(&self.key, expect, &record))
                }
                Action::Release { holder } => {
                    self.did.push(Did::Release);
                    Event::Released(self.store.release(&self.key, &holder))
                }
                Action::Done(result) => return result,
            };
        }
        unreachable!()
    }
}

/// More steps than any fetch in these tests needs (the longest, a lease waited on for a
/// whole deadline of 30 s polled every 50 ms, takes about 1,200).
const MAX_STEPS: usize = 10_000;

fn lead(cell: &Cell, now: Now) -> Fetch<TestFlight> {
    match cell.join(now, true) {
        Join::Lead(fetch) => fetch,
        Join::Serve(_) => panic!("expected to lead a fetch, was served"),
        Join::Wait(_) => panic!("expected to lead a fetch, was told to wait"),
        Join::Refresh { .. } => panic!("expected to lead a fetch, was told to refresh aside"),
    }
}

fn served(cell: &Cell, now: Now) -> String {
    match cell.join(now, true) {
        Join::Serve(token) => token.expose_secret().to_owned(),
        _ => panic!("expected to be served"),
    }
}

fn token(result: Result<AccessToken, Error>) -> String {
    result.expect("a token").expose_secret().to_owned()
}

#[test]
fn a_cold_fetch_takes_the_lease_asks_once_writes_then_serves() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    assert!(cell.fresh(now.wall).is_none());
    let fetch = lead(&cell, now);
    // While it runs, others wait on its flight and nothing is served.
    let Join::Wait(flight) = cell.join(now, true) else {
        panic!("a second caller should wait")
    };
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A1", 100, None));
    assert_eq!(token(driver.run(fetch)), "A1");
    assert_eq!(
        driver.did,
        [
            Did::Load,
            Did::Lease,
            Did::Load,
            Did::Send(None),
            Did::Persist(Expect::Absent),
            Did::Release
        ]
    );
    assert_eq!(flight.token(), "A1");
    assert_eq!(*flight.completions.lock().unwrap(), 1);
    let stored = store.load(&app_key()).unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.record, record(Some("A1"), now.wall, 100, None));
    // The lease was given back: another holder gets it at once.
    let other = LeaseHolder::random(&mut OsRandom).unwrap();
    assert_eq!(
        store
            .try_lease(&app_key(), &other, secs(1), now.wall)
            .unwrap(),
        Lease::Granted
    );
    // Served on the fast path, but never for longer than RECHECK without the machine.
    assert_eq!(cell.fresh(now.wall).unwrap().expose_secret(), "A1");
    assert_eq!(
        cell.fresh(now.wall + RECHECK - Duration::from_nanos(1))
            .unwrap()
            .expose_secret(),
        "A1"
    );
    assert!(cell.fresh(now.wall + RECHECK).is_none());
    assert!(cell.fresh(now.wall - Duration::from_nanos(1)).is_none());
    // The machine re-checks and serves again.
    assert_eq!(served(&cell, at(now, secs(50))), "A1");
    assert!(cell.fresh(at(now, secs(50)).wall).is_some());
    assert_eq!(cell.remaining(at(now, secs(50))), Some(secs(50)));
}

#[test]
fn a_fresh_record_another_process_wrote_is_adopted_without_a_request() {
    let store = MemoryStore::new();
    let now = t0();
    store
        .compare_and_swap(
            &app_key(),
            Expect::Absent,
            &record(Some("THEIRS"), now.wall - secs(10), 100, None),
        )
        .unwrap();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "THEIRS");
    assert_eq!(driver.did, [Did::Load]);
    // Its age counts from when it was obtained: due 70 s from now, not 80.
    assert_eq!(served(&cell, at(now, secs(69))), "THEIRS");
    assert!(matches!(
        cell.join(at(now, secs(70)), true),
        Join::Refresh { .. }
    ));
}

#[test]
fn a_record_dated_in_the_future_is_not_fresh_for_that_long() {
    let store = MemoryStore::new();
    let now = t0();
    // A writer whose clock runs a day ahead, or a planted record: were it age zero, it would
    // be adopted, and re-adopted by every fetch, for a day.
    store
        .compare_and_swap(
            &app_key(),
            Expect::Absent,
            &record(Some("AHEAD"), now.wall + secs(86_400), 3600, None),
        )
        .unwrap();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A1", 3600, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A1");
    assert!(driver.did.contains(&Did::Send(None)));
    // A few seconds ahead (clocks of two hosts) costs the token as much, no more.
    let store = MemoryStore::new();
    store
        .compare_and_swap(
            &app_key(),
            Expect::Absent,
            &record(Some("SKEWED"), now.wall + secs(3), 100, None),
        )
        .unwrap();
    let skewed = self::cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now);
    assert_eq!(token(driver.run(lead(&skewed, now))), "SKEWED");
    assert_eq!(driver.did, [Did::Load]);
}

#[test]
fn a_record_that_is_due_or_expired_is_refreshed_not_adopted() {
    let store = MemoryStore::new();
    let now = t0();
    // Each round writes over the last (`Any`), and the fetch after it writes once more.
    for (age, expect) in [(85, Expect::Version(1)), (150, Expect::Version(3))] {
        store
            .compare_and_swap(
                &app_key(),
                Expect::Any,
                &record(Some("OLD"), now.wall - secs(age), 100, None),
            )
            .unwrap();
        let cell = cell(TokenKind::Application, Seed::Empty);
        let mut driver = Driver::new(&store, app_key(), now).answer(issued("NEW", 100, None));
        assert_eq!(token(driver.run(lead(&cell, now))), "NEW");
        assert!(
            driver.did.contains(&Did::Persist(expect)),
            "{:?}",
            driver.did
        );
    }
}

#[test]
fn an_early_refresh_serves_the_valid_token_meanwhile_and_replaces_it() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    // Fresh until 80 s; due from then until 100 s.
    assert_eq!(served(&cell, at(now, secs(79))), "A1");
    let due = at(now, secs(85));
    let Join::Refresh { serve, fetch } = cell.join(due, true) else {
        panic!("a due token should be refreshed aside")
    };
    assert_eq!(serve.expose_secret(), "A1");
    assert!(fetch.is_early());
    // While the refresh runs, everyone is served the valid token, on the fast path too.
    assert_eq!(served(&cell, due), "A1");
    assert_eq!(cell.fresh(due.wall).unwrap().expose_secret(), "A1");
    let mut driver = Driver::new(&store, app_key(), due).answer(issued("A2", 100, None));
    assert_eq!(token(driver.run(fetch)), "A2");
    assert!(driver.did.contains(&Did::Persist(Expect::Version(1))));
    assert_eq!(served(&cell, due), "A2");
    assert_eq!(cell.fresh(due.wall).unwrap().expose_secret(), "A2");
}

#[test]
fn without_background_a_due_token_is_served_until_it_expires() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    assert!(matches!(
        cell.join(at(now, secs(85)), false),
        Join::Serve(_)
    ));
    assert!(matches!(
        cell.join(at(now, secs(100)), false),
        Join::Lead(_)
    ));
}

#[test]
fn a_failed_early_refresh_keeps_serving_and_backs_off_but_expiry_fetches_at_once() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    let down = || Err(api_error(ErrorCode::TemporarilyUnavailable));
    let due = at(now, secs(85));
    let Join::Refresh { fetch, .. } = cell.join(due, true) else {
        panic!("expected an early refresh")
    };
    assert!(
        Driver::new(&store, app_key(), due)
            .answer(down())
            .run(fetch)
            .is_err()
    );
    // Backing off: the valid token is served, on the fast path until the pause ends.
    assert_eq!(served(&cell, due), "A1");
    assert!(cell.fresh(due.wall).is_some());
    assert!(cell.fresh(due.wall + EARLY_RETRY_FIRST).is_none());
    let pause_over = due.after(EARLY_RETRY_FIRST);
    let Join::Refresh { fetch, .. } = cell.join(pause_over, true) else {
        panic!("after the pause the next early refresh starts")
    };
    assert!(
        Driver::new(&store, app_key(), pause_over)
            .answer(down())
            .run(fetch)
            .is_err()
    );
    // The second failure in a row doubles the pause.
    assert_eq!(served(&cell, pause_over.after(EARLY_RETRY_FIRST)), "A1");
    assert!(matches!(
        cell.join(pause_over.after(2 * EARLY_RETRY_FIRST), true),
        Join::Refresh { .. }
    ));
    // Expired: fetched at once, backoff or not.
    let expired = at(now, secs(100));
    drop(lead(&cell, expired));
    // A success clears the backoff.
    let fetch = lead(&cell, expired);
    Driver::new(&store, app_key(), expired)
        .answer(issued("A3", 100, None))
        .run(fetch)
        .unwrap();
    let state = cell.state();
    assert_eq!((state.failures, state.early_retry_at), (0, None));
}

#[test]
fn backoff_pauses_double_up_to_the_cap() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut pauses = Vec::new();
    for _ in 0..8 {
        let fetch = lead(&cell, now);
        let _ = Driver::new(&store, app_key(), now)
            .answer(Err(api_error(ErrorCode::ServerError)))
            .run(fetch);
        let at = cell.state().early_retry_at.unwrap();
        pauses.push(at - now.mono);
    }
    let expected: Vec<Duration> = [1, 2, 4, 8, 16, 30, 30, 30].into_iter().map(secs).collect();
    assert_eq!(pauses, expected);
}

#[test]
fn invalidation_names_the_token_and_a_refused_one_is_never_adopted_again() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    // A late report about some older token changes nothing.
    cell.invalidate(&AccessToken::new("A0"));
    assert_eq!(cell.fresh(now.wall).unwrap().expose_secret(), "A1");
    assert_eq!(served(&cell, now), "A1");
    // The current one refused: the store still holds it, but it is not taken back.
    cell.invalidate(&AccessToken::new("A1"));
    assert!(cell.fresh(now.wall).is_none());
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A2", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A2");
    assert!(driver.did.contains(&Did::Send(None)));
    assert_eq!(served(&cell, now), "A2");
}

#[test]
fn the_cached_tokens_header_is_built_once_and_follows_the_token() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    assert!(cell.fresh_authorization(now.wall).is_none());
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    let first = cell.fresh_authorization(now.wall).unwrap();
    assert_eq!(first, "Bearer A1");
    assert!(first.is_sensitive());
    // The second read shares the first one's bytes: no copy of the token per read.
    let second = cell.fresh_authorization(now.wall).unwrap();
    assert_eq!(first.as_bytes().as_ptr(), second.as_bytes().as_ptr());
    // Served only in the same window as the token.
    assert!(cell.fresh_authorization(now.wall + RECHECK).is_none());
    // A refused token's header is gone with it, and the next token has its own.
    cell.invalidate(&AccessToken::new("A1"));
    assert!(cell.fresh_authorization(now.wall).is_none());
    Driver::new(&store, app_key(), now)
        .answer(issued("A2", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    assert_eq!(cell.fresh_authorization(now.wall).unwrap(), "Bearer A2");
}

#[test]
fn a_token_that_is_no_header_value_is_not_served_as_one() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1\nInjected: 1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    // The token itself is served (it is the server's); as a header it is not, and the
    // slow path's `bearer::authorization` says why.
    assert!(cell.fresh(now.wall).is_some());
    assert!(cell.fresh_authorization(now.wall).is_none());
}

#[test]
fn expire_forces_the_next_call_to_fetch() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    cell.expire();
    assert!(cell.fresh(now.wall).is_none());
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A2", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A2");
}

#[test]
fn a_forced_refresh_does_not_take_a_fresh_record_from_the_store_instead() {
    let store = MemoryStore::new();
    let now = t0();
    store
        .compare_and_swap(
            &user_key(),
            Expect::Absent,
            &record(Some("U1"), now.wall, 100, Some("R1")),
        )
        .unwrap();
    // A process that has not read the store yet asks for a refresh.
    let cell = cell(TokenKind::User, Seed::Empty);
    cell.expire();
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U2", 100, Some("R2")));
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert!(driver.did.contains(&Did::Send(Some("R1".into()))));
    // Done once: the next call is served as usual.
    assert_eq!(served(&cell, now), "U2");
    cell.state().access = None;
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert_eq!(driver.did, [Did::Load]);
}

#[test]
fn a_token_expired_during_suspend_is_not_served_after_resume() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    // Two hours asleep: the monotonic clock moved two seconds.
    let resumed = Now {
        wall: now.wall + secs(7200),
        mono: now.mono + secs(2),
    };
    assert!(cell.fresh(resumed.wall).is_none());
    assert!(matches!(cell.join(resumed, true), Join::Lead(_)));
}

#[test]
fn a_wall_clock_stepped_back_does_not_stretch_a_token() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    assert_eq!(served(&cell, at(now, secs(60))), "A1");
    // 100 s after the request by the monotonic clock; the wall clock was stepped back 50 s.
    let stepped = Now {
        wall: now.wall + secs(50),
        mono: now.mono + secs(100),
    };
    // The fast path does not serve a wall time before its last check...
    assert!(cell.fresh(stepped.wall).is_none());
    // ...and the machine counts the monotonic time: expired.
    assert!(matches!(cell.join(stepped, true), Join::Lead(_)));
}

/// The key obauth 0.1 wrote `user_key()`'s records under, and a cell that knows it.
fn renamed_user_key() -> (StoreKey, StoreKey, Cell) {
    let old = user_key();
    let new = StoreKey::user(
        "https://auth.example/token",
        "client",
        super::TRUELAYER_AUTH_METHOD,
        &crate::store::ConnectionName::new("alice").unwrap(),
    )
    .with_previous(&old);
    assert_eq!(new.previous().as_ref(), Some(&old));
    // The previous name does not make another key: a store finds the record either way.
    let plain = StoreKey::user(
        "https://auth.example/token",
        "client",
        super::TRUELAYER_AUTH_METHOD,
        &crate::store::ConnectionName::new("alice").unwrap(),
    );
    assert_eq!(plain, new);
    assert_ne!(plain, old);
    let cell = Arc::new(
        TokenCell::new(
            TokenKind::User,
            options(),
            LeaseHolder::random(&mut OsRandom).unwrap(),
            Seed::Empty,
        )
        .with_previous_key(new.previous()),
    );
    (old, new, cell)
}

#[test]
fn a_connection_saved_under_the_previous_key_is_moved_and_refreshed_with_its_token() {
    let (old, new, cell) = renamed_user_key();
    let store = MemoryStore::new();
    let saved = record(Some("U1"), t0().wall - secs(500), 100, Some("R1"));
    store
        .compare_and_swap(&old, Expect::Absent, &saved)
        .unwrap();
    let now = t0();
    let mut driver = Driver::new(&store, new.clone(), now).answer(issued("U2", 100, Some("R2")));
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert_eq!(
        driver.did,
        [
            Did::Load,
            Did::LoadPrevious,
            Did::Persist(Expect::Absent),
            Did::Load,
            Did::Lease,
            Did::Load,
            // The saved refresh token, not a request for re-authentication.
            Did::Send(Some("R1".to_owned())),
            Did::Persist(Expect::Version(1)),
            Did::Release,
        ]
    );
    let moved = store.load(&new).unwrap().unwrap();
    assert_eq!(moved.record.refresh_token.unwrap().expose_secret(), "R2");
    // The old record is left as it was, and not read again.
    assert_eq!(store.load(&old).unwrap().unwrap().record, saved);
    let mut again =
        Driver::new(&store, new, now.after(secs(200))).answer(issued("U3", 100, Some("R3")));
    assert_eq!(token(again.run(lead(&cell, now.after(secs(200))))), "U3");
    assert!(!again.did.contains(&Did::LoadPrevious), "{:?}", again.did);
}

#[test]
fn a_fresh_token_under_the_previous_key_is_served_without_a_request() {
    let (old, new, cell) = renamed_user_key();
    let store = MemoryStore::new();
    let saved = record(Some("U1"), t0().wall, 100, Some("R1"));
    store
        .compare_and_swap(&old, Expect::Absent, &saved)
        .unwrap();
    let mut driver = Driver::new(&store, new.clone(), t0());
    assert_eq!(token(driver.run(lead(&cell, t0()))), "U1");
    assert_eq!(
        driver.did,
        [
            Did::Load,
            Did::LoadPrevious,
            Did::Persist(Expect::Absent),
            Did::Load
        ]
    );
    assert_eq!(store.load(&new).unwrap().unwrap().record, saved);
}

#[test]
fn with_nothing_under_either_key_a_connection_is_missing_as_before() {
    let (_, new, cell) = renamed_user_key();
    let store = MemoryStore::new();
    let mut driver = Driver::new(&store, new.clone(), t0());
    let error = driver.run(lead(&cell, t0())).unwrap_err();
    assert!(
        matches!(&error, Error::Store(e) if e.kind() == StoreErrorKind::NotFound),
        "{error:?}"
    );
    assert_eq!(driver.did[..2], [Did::Load, Did::LoadPrevious]);
    assert!(store.load(&new).unwrap().is_none());
    // Once per manager: a later fetch does not pay the extra read again.
    let mut again = Driver::new(&store, new, t0());
    assert!(again.run(lead(&cell, t0())).is_err());
    assert!(!again.did.contains(&Did::LoadPrevious), "{:?}", again.did);
}

#[test]
fn a_user_refresh_writes_the_rotated_token_before_anyone_sees_the_new_access_token() {
    let store = MemoryStore::new();
    store
        .compare_and_swap(
            &user_key(),
            Expect::Absent,
            &record(Some("U1"), t0().wall - secs(500), 100, Some("R1")),
        )
        .unwrap();
    let cell = cell(TokenKind::User, Seed::Empty);
    let now = t0();
    let mut fetch = lead(&cell, now);
    let Join::Wait(flight) = cell.join(now, true) else {
        panic!("others wait")
    };
    // Step by hand up to the write, and stop there.
    let mut event = Event::Start;
    loop {
        event = match fetch.step(now, event) {
            Action::Load => Event::Loaded(store.load(&user_key())),
            Action::Lease { holder, ttl } => {
                Event::Leased(store.try_lease(&user_key(), &holder, ttl, now.wall))
            }
            Action::Send { grant, .. } => {
                assert!(matches!(&grant, Grant::Refresh(r) if r.expose_secret() == "R1"));
                Event::Answered {
                    sent: now,
                    result: issued("U2", 100, Some("R2")),
                }
            }
            Action::Persist { expect, record } => {
                assert_eq!(expect, Expect::Version(1));
                assert_eq!(record.refresh_token.as_ref().unwrap().expose_secret(), "R2");
                break;
            }
            other => panic!("unexpected {other:?}"),
        };
    }
    // The rotated token is in memory already; nobody has the new access token.
    assert_eq!(cell.refresh_token().unwrap().expose_secret(), "R2");
    assert!(flight.result.lock().unwrap().is_none());
    assert!(cell.fresh(now.wall).is_none());
    assert!(matches!(cell.join(now, true), Join::Wait(_)));
    // The store takes it: then, and only then, the token is handed out.
    let written = store
        .compare_and_swap(
            &user_key(),
            Expect::Version(1),
            &record(Some("U2"), now.wall, 100, Some("R2")),
        )
        .unwrap();
    let Action::Release { holder } = fetch.step(now, Event::Persisted(Ok(written))) else {
        panic!("the lease goes back before the end")
    };
    store.release(&user_key(), &holder).unwrap();
    assert!(flight.result.lock().unwrap().is_none());
    let Action::Done(result) = fetch.step(now, Event::Released(Ok(()))) else {
        panic!("done")
    };
    assert_eq!(token(result), "U2");
    assert_eq!(flight.token(), "U2");
}

/// A store that refuses writes while `down` is set.
struct Flaky {
    inner: MemoryStore,
    down: Mutex<bool>,
}
impl TokenStore for Flaky {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.inner.load(key)
    }
    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        if *self.down.lock().unwrap() {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "disk full"));
        }
        self.inner.compare_and_swap(key, expect, record)
    }
    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.inner.try_lease(key, holder, ttl, now)
    }
    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.inner.release(key, holder)
    }
}

#[test]
fn a_refused_write_keeps_the_rotated_token_and_the_next_call_writes_it_without_refreshing() {
    let store = Flaky {
        inner: MemoryStore::new(),
        down: Mutex::new(false),
    };
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    *store.down.lock().unwrap() = true;
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U2", 100, Some("R2")));
    match driver.run(lead(&cell, now)) {
        Err(Error::Store(error)) => {
            assert_eq!(error.kind(), StoreErrorKind::Unavailable);
            // Reported as a write that failed after the rotation, without the token.
            let text = error.to_string();
            assert!(text.contains("rotated the refresh token"), "{text}");
            assert!(text.contains("kept in memory"), "{text}");
            assert!(!text.contains("R2") && !format!("{error:?}").contains("R2"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        driver.did,
        [
            Did::Load,
            Did::Lease,
            Did::Load,
            Did::Send(Some("R1".into())),
            Did::Persist(Expect::Absent),
        ]
    );
    assert_eq!(cell.refresh_token().unwrap().expose_secret(), "R2");
    assert!(cell.fresh(now.wall).is_none());
    // The lease is kept, not given back: another process cannot take it and present the
    // spent R1 while the store still holds it, until the lease runs out.
    let other = LeaseHolder::random(&mut OsRandom).unwrap();
    assert!(matches!(
        store.try_lease(&user_key(), &other, secs(1), now.wall),
        Ok(Lease::Held { .. })
    ));
    // Still down: the next call tries the write first and does not refresh.
    let mut driver = Driver::new(&store, user_key(), now);
    assert!(driver.run(lead(&cell, now)).is_err());
    assert_eq!(driver.did, [Did::Persist(Expect::Absent)]);
    // Back up: written, and the access token obtained with it is served, no new request;
    // the lease goes back.
    *store.down.lock().unwrap() = false;
    let later = at(now, secs(5));
    let mut driver = Driver::new(&store, user_key(), later);
    assert_eq!(token(driver.run(lead(&cell, later))), "U2");
    assert_eq!(driver.did, [Did::Persist(Expect::Absent), Did::Release]);
    assert_eq!(
        store
            .try_lease(&user_key(), &other, secs(1), later.wall)
            .unwrap(),
        Lease::Granted
    );
    let stored = store.load(&user_key()).unwrap().unwrap();
    assert_eq!(stored.record.refresh_token.unwrap().expose_secret(), "R2");
    // Its age counted from the request, not from the write.
    assert_eq!(cell.remaining(later), Some(secs(95)));
}

#[test]
fn a_lease_inherited_with_unwritten_tokens_is_given_back_only_by_a_write_of_them() {
    let store = Flaky {
        inner: MemoryStore::new(),
        down: Mutex::new(true),
    };
    let old = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    // The write of the rotated tokens fails: the old cell keeps its lease.
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U2", 100, Some("R2")));
    assert!(driver.run(lead(&old, now)).is_err());
    let kept = old.state().kept_lease.unwrap();
    assert_eq!(kept, old.holder);
    *store.down.lock().unwrap() = false;
    // A reconfigured manager: a new cell with the tokens and the kept lease.
    let new = cell(TokenKind::User, old.handover());
    new.state().kept_lease = Some(kept);
    // The old cell, still in use, writes them first and gives its lease back, then takes
    // it again for a refresh, which is under way when the new cell is first called.
    old.expire();
    let mut fetch = lead(&old, now);
    let mut event = Event::Start;
    loop {
        event = match fetch.step(now, event) {
            Action::Persist { expect, record } => {
                Event::Persisted(store.compare_and_swap(&user_key(), expect, &record))
            }
            Action::Release { holder } => Event::Released(store.release(&user_key(), &holder)),
            Action::Load => Event::Loaded(store.load(&user_key())),
            Action::Lease { holder, ttl } => {
                Event::Leased(store.try_lease(&user_key(), &holder, ttl, now.wall))
            }
            Action::Send { grant, .. } => {
                assert!(matches!(grant, Grant::Refresh(token) if token.expose_secret() == "R2"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // The new cell's write conflicts: the inherited lease, which the old cell holds again
    // now, is not given back from under it; a refresh asked of the new cell waits for it.
    new.expire();
    let mut driver = Driver::new(&store, user_key(), now);
    let mut new_fetch = lead(&new, now);
    let mut event = Event::Start;
    for _ in 0..4 {
        event = match new_fetch.step(now, event) {
            Action::Persist { expect, record } => {
                driver.did.push(Did::Persist(expect));
                Event::Persisted(store.compare_and_swap(&user_key(), expect, &record))
            }
            Action::Release { .. } => panic!("gave back a lease another cell holds"),
            Action::Load => Event::Loaded(store.load(&user_key())),
            Action::Lease { holder, ttl } => {
                let lease = store.try_lease(&user_key(), &holder, ttl, now.wall);
                assert!(matches!(lease, Ok(Lease::Held { .. })), "{lease:?}");
                break;
            }
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(driver.did, [Did::Persist(Expect::Absent)]);
    assert!(new.state().kept_lease.is_none());
    drop(fetch);
}

#[test]
fn a_malformed_answer_with_a_rotated_token_keeps_the_token_and_reports_the_error() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    let malformed = Error::InvalidInput(crate::error::InvalidInput::new(
        "x",
        "stands in for a parse error",
    ));
    let mut driver = Driver::new(&store, user_key(), now).answer(Ok(Answer::Rotated {
        refresh_token: RefreshToken::new("R2"),
        error: malformed,
    }));
    assert!(matches!(
        driver.run(lead(&cell, now)),
        Err(Error::InvalidInput(_))
    ));
    let stored = store.load(&user_key()).unwrap().unwrap();
    assert_eq!(stored.record, record(None, now.wall, 0, Some("R2")));
    // The next call refreshes with the rotated token.
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U3", 100, Some("R3")));
    assert_eq!(token(driver.run(lead(&cell, now))), "U3");
    assert!(driver.did.contains(&Did::Send(Some("R2".into()))));
}

#[test]
fn a_refused_refresh_token_asks_for_reauthentication_once_and_then_without_asking() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    let mut driver =
        Driver::new(&store, user_key(), now).answer(Err(api_error(ErrorCode::InvalidGrant)));
    match driver.run(lead(&cell, now)) {
        Err(Error::ReauthenticationRequired(reauth)) => {
            assert_eq!(reauth.refresh_token().expose_secret(), "R1");
        }
        other => panic!("{other:?}"),
    }
    // Asked again: the answer is known, the server is not asked.
    let mut driver = Driver::new(&store, user_key(), now);
    assert!(matches!(
        driver.run(lead(&cell, now)),
        Err(Error::ReauthenticationRequired(_))
    ));
    assert!(!driver.did.iter().any(|did| matches!(did, Did::Send(_))));
    // The user consented again elsewhere and the store has a new refresh token: used.
    store
        .compare_and_swap(
            &user_key(),
            Expect::Any,
            &record(None, now.wall, 0, Some("R9")),
        )
        .unwrap();
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U9", 100, Some("R10")));
    assert_eq!(token(driver.run(lead(&cell, now))), "U9");
    assert!(driver.did.contains(&Did::Send(Some("R9".into()))));
    // Other API errors pass through as they are.
    cell.expire();
    let mut driver =
        Driver::new(&store, user_key(), now).answer(Err(api_error(ErrorCode::InvalidClient)));
    assert!(matches!(driver.run(lead(&cell, now)), Err(Error::Api(_))));
}

#[test]
fn a_conflicting_write_adopts_the_record_that_won() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("MINE", 100, None));
    let other = &store;
    driver.before_persist = Some(Box::new(move || {
        other
            .compare_and_swap(
                &app_key(),
                Expect::Absent,
                &record(Some("THEIRS"), now.wall, 100, None),
            )
            .unwrap();
    }));
    assert_eq!(token(driver.run(lead(&cell, now))), "THEIRS");
    assert_eq!(served(&cell, now), "THEIRS");
    assert_eq!(cell.state().version, Some(1));
    assert_eq!(store.load(&app_key()).unwrap().unwrap().version, 1);
}

#[test]
fn a_conflict_with_a_stale_record_serves_this_process_its_own_token() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("MINE", 100, None));
    let other = &store;
    driver.before_persist = Some(Box::new(move || {
        other
            .compare_and_swap(
                &app_key(),
                Expect::Absent,
                &record(Some("OLD"), now.wall - secs(500), 100, None),
            )
            .unwrap();
    }));
    assert_eq!(token(driver.run(lead(&cell, now))), "MINE");
    assert_eq!(served(&cell, now), "MINE");
}

/// A store whose every call fails.
struct Down;

impl TokenStore for Down {
    fn load(&self, _: &StoreKey) -> Result<Option<Stored>, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    fn compare_and_swap(
        &self,
        _: &StoreKey,
        _: Expect,
        _: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    fn try_lease(
        &self,
        _: &StoreKey,
        _: &LeaseHolder,
        _: Duration,
        _: SystemTime,
    ) -> Result<Lease, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    fn release(&self, _: &StoreKey, _: &LeaseHolder) -> Result<(), StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
}

#[test]
fn a_failing_store_costs_an_application_token_its_sharing_and_nothing_more() {
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut driver = Driver::new(&Down, app_key(), now).answer(issued("A1", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A1");
    assert_eq!(driver.did, [Did::Load, Did::Send(None)]);
    assert_eq!(served(&cell, now), "A1");
    // A failed lease (after a good load) degrades the same way.
    struct LeaseDown(MemoryStore);
    impl TokenStore for LeaseDown {
        fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
            self.0.load(key)
        }
        fn compare_and_swap(
            &self,
            key: &StoreKey,
            expect: Expect,
            record: &TokenRecord,
        ) -> Result<Cas, StoreError> {
            self.0.compare_and_swap(key, expect, record)
        }
        fn try_lease(
            &self,
            _: &StoreKey,
            _: &LeaseHolder,
            _: Duration,
            _: SystemTime,
        ) -> Result<Lease, StoreError> {
            Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
        }
        fn release(&self, _: &StoreKey, _: &LeaseHolder) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let store = LeaseDown(MemoryStore::new());
    let cell2 = super::tests::cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A2", 100, None));
    assert_eq!(token(driver.run(lead(&cell2, now))), "A2");
    assert_eq!(driver.did, [Did::Load, Did::Lease, Did::Send(None)]);
}

#[test]
fn an_outage_is_noticed_once_and_its_end_once() {
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut driver = Driver::new(&Down, app_key(), now).answer(issued("A1", 100, None));
    token(driver.run(lead(&cell, now)));
    assert_eq!(driver.notices, ["unavailable"]);
    // Still down at the next fetch: nothing new to say.
    let later = at(now, secs(101));
    let mut driver = Driver::new(&Down, app_key(), later).answer(issued("A2", 100, None));
    token(driver.run(lead(&cell, later)));
    assert!(driver.notices.is_empty(), "{:?}", driver.notices);
    // Back: said once, at its first answer.
    let store = MemoryStore::new();
    let back = at(now, secs(202));
    let mut driver = Driver::new(&store, app_key(), back).answer(issued("A3", 100, None));
    token(driver.run(lead(&cell, back)));
    assert_eq!(driver.notices, ["back"]);
    // A store that is there but wrong is an error to report, not an outage.
    let user = super::tests::cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R")));
    struct Sealed;
    impl TokenStore for Sealed {
        fn load(&self, _: &StoreKey) -> Result<Option<Stored>, StoreError> {
            Err(StoreError::new(StoreErrorKind::Sealed, "another key"))
        }
        fn compare_and_swap(
            &self,
            _: &StoreKey,
            _: Expect,
            _: &TokenRecord,
        ) -> Result<Cas, StoreError> {
            unreachable!()
        }
        fn try_lease(
            &self,
            _: &StoreKey,
            _: &LeaseHolder,
            _: Duration,
            _: SystemTime,
        ) -> Result<Lease, StoreError> {
            unreachable!()
        }
        fn release(&self, _: &StoreKey, _: &LeaseHolder) -> Result<(), StoreError> {
            unreachable!()
        }
    }
    let mut driver = Driver::new(&Sealed, user_key(), now);
    assert!(driver.run(lead(&user, now)).is_err());
    assert!(driver.notices.is_empty());
    // What the bindings log: a warning naming the error, then a line at information level.
    let down = Notice::StoreUnavailable(StoreError::new(StoreErrorKind::Unavailable, "refused"));
    assert!(down.is_warning());
    assert!(!Notice::StoreBack.is_warning());
    let text = down.to_string();
    assert!(
        text.starts_with("token store unavailable (token store: refused)"),
        "{text}"
    );
    assert_eq!(Notice::StoreBack.to_string(), "token store answers again");
}

#[test]
fn a_store_that_is_there_but_wrong_is_reported_not_worked_around() {
    /// A store whose records do not open (sealed under another key, corrupted).
    struct Wrong(StoreErrorKind);
    impl TokenStore for Wrong {
        fn load(&self, _: &StoreKey) -> Result<Option<Stored>, StoreError> {
            Err(StoreError::new(self.0, "wrong"))
        }
        fn compare_and_swap(
            &self,
            _: &StoreKey,
            _: Expect,
            _: &TokenRecord,
        ) -> Result<Cas, StoreError> {
            Err(StoreError::new(self.0, "wrong"))
        }
        fn try_lease(
            &self,
            _: &StoreKey,
            _: &LeaseHolder,
            _: Duration,
            _: SystemTime,
        ) -> Result<Lease, StoreError> {
            Ok(Lease::Granted)
        }
        fn release(&self, _: &StoreKey, _: &LeaseHolder) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let now = t0();
    for kind in [
        StoreErrorKind::Sealed,
        StoreErrorKind::Corrupt,
        StoreErrorKind::Other,
    ] {
        let cell = cell(TokenKind::Application, Seed::Empty);
        let wrong = Wrong(kind);
        let mut driver = Driver::new(&wrong, app_key(), now);
        match driver.run(lead(&cell, now)) {
            Err(Error::Store(error)) => assert_eq!(error.kind(), kind),
            other => panic!("{other:?}"),
        }
        assert_eq!(driver.did, [Did::Load]);
    }
}

#[test]
fn a_failing_store_stops_a_user_refresh_before_it_spends_anything() {
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    let mut driver = Driver::new(&Down, user_key(), now);
    match driver.run(lead(&cell, now)) {
        Err(Error::Store(error)) => assert_eq!(error.kind(), StoreErrorKind::Unavailable),
        other => panic!("{other:?}"),
    }
    assert_eq!(driver.did, [Did::Load]);
}

#[test]
fn a_user_who_opted_in_refreshes_from_memory_while_the_store_is_down_and_writes_it_back_after() {
    let options = ManagerOptions {
        refresh_without_store: true,
        ..options()
    };
    let cell: Cell = Arc::new(TokenCell::new(
        TokenKind::User,
        options,
        LeaseHolder::random(&mut OsRandom).unwrap(),
        Seed::RefreshToken(RefreshToken::new("R1")),
    ));
    let now = t0();
    // Down from the start: refreshed with the token in memory, served.
    let mut driver = Driver::new(&Down, user_key(), now).answer(issued("A2", 100, Some("R2")));
    assert_eq!(token(driver.run(lead(&cell, now))), "A2");
    assert_eq!(driver.did, [Did::Load, Did::Send(Some("R1".into()))]);
    // Served from memory; a caller that can run a fetch aside tries to write it (early).
    assert!(matches!(cell.join(now, false), Join::Serve(token) if token.expose_secret() == "A2"));
    let soon = at(now, secs(1));
    let Join::Refresh { serve, fetch } = cell.join(soon, true) else {
        panic!("expected an early write aside");
    };
    assert_eq!(serve.expose_secret(), "A2");
    let mut driver = Driver::new(&Down, user_key(), soon);
    assert!(matches!(driver.run(fetch), Err(Error::Store(_))));
    assert_eq!(
        driver.did,
        [Did::Persist(Expect::Absent)],
        "no refresh: A2 is valid"
    );
    // The failed write backs off: the next callers are served without a store call.
    assert!(matches!(cell.join(at(now, secs(1)), true), Join::Serve(_)));
    // Expired, still down: the unsaved tokens cannot be written; refreshed with R2.
    let later = at(now, secs(101));
    let mut driver = Driver::new(&Down, user_key(), later).answer(issued("A3", 100, Some("R3")));
    assert_eq!(token(driver.run(lead(&cell, later))), "A3");
    assert_eq!(
        driver.did,
        [Did::Persist(Expect::Absent), Did::Send(Some("R2".into()))]
    );
    // Back: the last rotated token is written before anything else, then refreshed.
    let store = MemoryStore::new();
    let back = at(now, secs(202));
    let mut driver = Driver::new(&store, user_key(), back).answer(issued("A4", 100, Some("R4")));
    assert_eq!(token(driver.run(lead(&cell, back))), "A4");
    assert_eq!(driver.did[0], Did::Persist(Expect::Absent));
    assert!(
        driver.did.contains(&Did::Send(Some("R3".into()))),
        "{:?}",
        driver.did
    );
    let stored = store.load(&user_key()).unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.record.refresh_token.unwrap().expose_secret(), "R4");
}

#[test]
fn a_write_that_fails_for_an_application_token_still_serves_it_from_memory() {
    struct WriteDown(MemoryStore);
    impl TokenStore for WriteDown {
        fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
            self.0.load(key)
        }
        fn compare_and_swap(
            &self,
            _: &StoreKey,
            _: Expect,
            _: &TokenRecord,
        ) -> Result<Cas, StoreError> {
            Err(StoreError::new(StoreErrorKind::Unavailable, "read-only"))
        }
        fn try_lease(
            &self,
            key: &StoreKey,
            holder: &LeaseHolder,
            ttl: Duration,
            now: SystemTime,
        ) -> Result<Lease, StoreError> {
            self.0.try_lease(key, holder, ttl, now)
        }
        fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
            self.0.release(key, holder)
        }
    }
    let store = WriteDown(MemoryStore::new());
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A1", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A1");
    assert_eq!(served(&cell, now), "A1");
}

#[test]
fn a_lease_held_elsewhere_is_waited_on_and_the_winner_adopted() {
    let store = MemoryStore::new();
    let now = t0();
    let other = LeaseHolder::random(&mut OsRandom).unwrap();
    store
        .try_lease(&app_key(), &other, secs(30), now.wall)
        .unwrap();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now);
    let mut loads = 0;
    let winner = &store;
    driver.before_load = Some(Box::new(move || {
        loads += 1;
        // The other process writes its token before our third look.
        if loads == 3 {
            winner
                .compare_and_swap(
                    &app_key(),
                    Expect::Absent,
                    &record(Some("WINNER"), now.wall, 100, None),
                )
                .unwrap();
        }
    }));
    assert_eq!(token(driver.run(lead(&cell, now))), "WINNER");
    assert_eq!(
        driver.did,
        [
            Did::Load,
            Did::Lease,
            Did::Sleep,
            Did::Load,
            Did::Lease,
            Did::Sleep,
            Did::Load
        ]
    );
    assert_eq!(driver.clock, now.after(Duration::from_millis(100)));
}

#[test]
fn a_lease_whose_holder_died_is_taken_over_when_it_runs_out() {
    let store = MemoryStore::new();
    let now = t0();
    let dead = LeaseHolder::random(&mut OsRandom).unwrap();
    store
        .try_lease(&app_key(), &dead, Duration::from_millis(120), now.wall)
        .unwrap();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A1", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A1");
    let sleeps = driver.did.iter().filter(|did| **did == Did::Sleep).count();
    assert_eq!(sleeps, 3, "{:?}", driver.did);
    // The last pause is cut to when the lease runs out: 50 + 50 + 20 ms.
    assert_eq!(driver.clock, now.after(Duration::from_millis(120)));
}

#[test]
fn a_lease_held_past_the_deadline_is_a_typed_error() {
    let store = MemoryStore::new();
    let now = t0();
    let other = LeaseHolder::random(&mut OsRandom).unwrap();
    store
        .try_lease(&app_key(), &other, secs(3600), now.wall)
        .unwrap();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let mut driver = Driver::new(&store, app_key(), now);
    match driver.run(lead(&cell, now)) {
        Err(Error::Store(error)) => assert_eq!(error.kind(), StoreErrorKind::LeaseTimeout),
        other => panic!("{other:?}"),
    }
    // Polled until the 30 s deadline, not beyond.
    assert_eq!(driver.clock, now.after(secs(30)));
}

#[test]
fn the_deadline_passing_before_the_lease_is_a_timeout() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut fetch = lead(&cell, now);
    assert!(matches!(fetch.step(now, Event::Start), Action::Load));
    match fetch.step(at(now, secs(30)), Event::Loaded(store.load(&app_key()))) {
        Action::Done(Err(Error::Timeout(timeout))) => {
            assert_eq!(timeout.phase, TimeoutPhase::Deadline)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refresh_token_is_not_presented_in_the_last_moments_of_the_deadline() {
    // A user fetch that gets the lease with 1.5 s of its 30 s left: were the refresh sent
    // and cut short, the server could rotate the token into an answer no one reads.
    let run = |left: Duration| {
        let store = MemoryStore::new();
        let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
        let now = t0();
        let late = at(now, secs(30) - left);
        let mut fetch = lead(&cell, now);
        let mut event = Event::Start;
        loop {
            event = match fetch.step(late, event) {
                Action::Load => Event::Loaded(store.load(&user_key())),
                Action::Lease { holder, ttl } => {
                    Event::Leased(store.try_lease(&user_key(), &holder, ttl, late.wall))
                }
                Action::Release { holder } => Event::Released(store.release(&user_key(), &holder)),
                Action::Send { .. } => break None,
                Action::Done(result) => break Some(result),
                other => panic!("{other:?}"),
            }
        }
    };
    match run(Duration::from_millis(1500)) {
        Some(Err(Error::Timeout(timeout))) => assert_eq!(timeout.phase, TimeoutPhase::Deadline),
        other => panic!("expected a deadline error without a request: {other:?}"),
    }
    // With MIN_REFRESH_TIME left, it is sent.
    assert!(run(MIN_REFRESH_TIME).is_none());
}

#[test]
fn the_send_action_carries_the_fetch_deadline() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut fetch = lead(&cell, now);
    let mut event = Event::Start;
    loop {
        event = match fetch.step(now, event) {
            Action::Load => Event::Loaded(store.load(&app_key())),
            Action::Lease { holder, ttl } => {
                // What is left of the deadline, and the grace for the write after it.
                assert_eq!(ttl, secs(30) + LEASE_GRACE);
                Event::Leased(store.try_lease(&app_key(), &holder, ttl, now.wall))
            }
            Action::Send { deadline, .. } => {
                assert_eq!(deadline, now.mono + secs(30));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_abandoned_fetch_wakes_its_waiters_and_the_next_caller_starts_again() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut fetch = lead(&cell, now);
    let Join::Wait(flight) = cell.join(now, true) else {
        panic!("waits")
    };
    assert!(matches!(fetch.step(now, Event::Start), Action::Load));
    drop(fetch);
    assert!(matches!(
        &*flight.result.lock().unwrap(),
        Some(Err(Error::Transport(_)))
    ));
    let mut driver = Driver::new(&store, app_key(), now).answer(issued("A1", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "A1");
    // A fetch dropped before its first step ends its flight too.
    cell.expire();
    let never_run = lead(&cell, now);
    let Join::Wait(flight) = cell.join(now, true) else {
        panic!("waits")
    };
    drop(never_run);
    assert_eq!(*flight.completions.lock().unwrap(), 1);
    assert!(matches!(cell.join(now, true), Join::Lead(_)));
}

#[test]
fn an_abandoned_user_refresh_keeps_the_rotated_token_for_the_next_call() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    let mut fetch = lead(&cell, now);
    let mut event = Event::Start;
    loop {
        event = match fetch.step(now, event) {
            Action::Load => Event::Loaded(store.load(&user_key())),
            Action::Lease { holder, ttl } => {
                Event::Leased(store.try_lease(&user_key(), &holder, ttl, now.wall))
            }
            Action::Send { .. } => Event::Answered {
                sent: now,
                result: issued("U2", 100, Some("R2")),
            },
            Action::Persist { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    // The writer panics (or its task is dropped) before the store answers: its lease is
    // kept, as after a refused write, so no other process presents the spent R1.
    drop(fetch);
    let other = LeaseHolder::random(&mut OsRandom).unwrap();
    assert!(matches!(
        store.try_lease(&user_key(), &other, secs(1), now.wall),
        Ok(Lease::Held { .. })
    ));
    // The next call writes the tokens first, serves them, and gives the lease back.
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert_eq!(driver.did, [Did::Persist(Expect::Absent), Did::Release]);
    assert_eq!(
        store
            .try_lease(&user_key(), &other, secs(1), now.wall)
            .unwrap(),
        Lease::Granted
    );
}

#[test]
fn tokens_obtained_by_a_code_exchange_are_written_over_the_old_connection_first() {
    let store = MemoryStore::new();
    let now = t0();
    store
        .compare_and_swap(
            &user_key(),
            Expect::Absent,
            &record(Some("OLD"), now.wall, 100, Some("R-OLD")),
        )
        .unwrap();
    let cell = cell(
        TokenKind::User,
        Seed::Obtained(record(Some("NEW"), now.wall, 100, Some("R-NEW"))),
    );
    assert_eq!(cell.refresh_token().unwrap().expose_secret(), "R-NEW");
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "NEW");
    assert_eq!(driver.did, [Did::Persist(Expect::Any)]);
    assert_eq!(
        store
            .load(&user_key())
            .unwrap()
            .unwrap()
            .record
            .refresh_token
            .unwrap()
            .expose_secret(),
        "R-NEW"
    );
}

#[test]
fn an_obtained_token_written_too_late_to_be_fresh_is_refreshed() {
    let store = MemoryStore::new();
    let now = t0();
    let cell = cell(
        TokenKind::User,
        Seed::Obtained(record(Some("NEW"), now.wall - secs(90), 100, Some("R1"))),
    );
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U2", 100, Some("R2")));
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert_eq!(driver.did[0], Did::Persist(Expect::Any));
    assert!(driver.did.contains(&Did::Send(Some("R1".into()))));
    assert!(driver.did.contains(&Did::Persist(Expect::Version(1))));
}

#[test]
fn a_conflict_on_the_first_write_gives_way_to_the_stored_record() {
    let store = MemoryStore::new();
    let now = t0();
    let cell = cell(TokenKind::User, Seed::Empty);
    // A rotated record, refused earlier, that expects version 1 while the store moved on.
    cell.state().unsaved = Some(Unsaved {
        record: record(Some("MINE"), now.wall, 100, Some("R-MINE")),
        expect: Expect::Version(1),
    });
    store
        .compare_and_swap(
            &user_key(),
            Expect::Absent,
            &record(Some("V1"), now.wall, 100, Some("R-V1")),
        )
        .unwrap();
    store
        .compare_and_swap(
            &user_key(),
            Expect::Version(1),
            &record(Some("V2"), now.wall, 100, Some("R-V2")),
        )
        .unwrap();
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "V2");
    assert_eq!(driver.did, [Did::Persist(Expect::Version(1)), Did::Load]);
    assert!(cell.state().unsaved.is_none());
}

#[test]
fn a_user_connection_nobody_saved_is_not_found() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::User, Seed::Empty);
    let now = t0();
    match Driver::new(&store, user_key(), now).run(lead(&cell, now)) {
        Err(Error::Store(error)) => assert_eq!(error.kind(), StoreErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_user_token_known_only_by_its_refresh_token_is_refreshed_and_written_as_new() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    let now = t0();
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U1", 100, None));
    assert_eq!(token(driver.run(lead(&cell, now))), "U1");
    // The server did not rotate: the same refresh token is kept.
    let stored = store.load(&user_key()).unwrap().unwrap();
    assert_eq!(stored.record, record(Some("U1"), now.wall, 100, Some("R1")));
    assert_eq!(cell.refresh_token().unwrap().expose_secret(), "R1");
    // An empty refresh token in an answer counts as none.
    cell.expire();
    let mut driver = Driver::new(&store, user_key(), now).answer(issued("U2", 100, Some("")));
    token(driver.run(lead(&cell, now)));
    assert_eq!(
        store
            .load(&user_key())
            .unwrap()
            .unwrap()
            .record
            .refresh_token
            .unwrap()
            .expose_secret(),
        "R1"
    );
}

#[test]
fn an_application_token_never_keeps_a_refresh_token() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, Some("UNEXPECTED")))
        .run(lead(&cell, now))
        .unwrap();
    assert!(
        store
            .load(&app_key())
            .unwrap()
            .unwrap()
            .record
            .refresh_token
            .is_none()
    );
}

#[test]
fn an_event_out_of_order_ends_the_fetch_with_an_error_not_a_panic() {
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let mut fetch = lead(&cell, now);
    let Join::Wait(flight) = cell.join(now, true) else {
        panic!("waits")
    };
    assert!(matches!(fetch.step(now, Event::Woke), Action::Done(Err(_))));
    assert!(flight.result.lock().unwrap().as_ref().unwrap().is_err());
    // Stepping a finished fetch again keeps answering Done.
    assert!(matches!(
        fetch.step(now, Event::Start),
        Action::Done(Err(_))
    ));
    assert_eq!(*flight.completions.lock().unwrap(), 1);
}

#[test]
fn options_are_checked() {
    assert!(ManagerOptions::default().check().is_ok());
    let bad = [
        ManagerOptions {
            deadline: Duration::ZERO,
            ..Default::default()
        },
        ManagerOptions {
            deadline: secs(3601),
            ..Default::default()
        },
        ManagerOptions {
            lease_poll: Duration::ZERO,
            ..Default::default()
        },
        ManagerOptions {
            lease_poll: secs(61),
            ..Default::default()
        },
        ManagerOptions {
            lease_grace: secs(601),
            ..Default::default()
        },
    ];
    for options in bad {
        assert!(options.check().is_err(), "{options:?}");
    }
    assert!(
        ManagerOptions {
            deadline: secs(3600),
            lease_poll: secs(3600),
            lease_grace: Duration::ZERO,
            ..Default::default()
        }
        .check()
        .is_ok()
    );
}

#[test]
fn next_refresh_token_prefers_a_rotated_non_empty_one() {
    let used = RefreshToken::new("old");
    assert_eq!(
        next_refresh_token(&used, Some(RefreshToken::new("new"))).expose_secret(),
        "new"
    );
    assert_eq!(next_refresh_token(&used, None).expose_secret(), "old");
    assert_eq!(
        next_refresh_token(&used, Some(RefreshToken::new(""))).expose_secret(),
        "old"
    );
}

#[test]
fn a_write_refused_after_an_early_refresh_keeps_serving_the_old_token_and_writes_first() {
    let store = Flaky {
        inner: MemoryStore::new(),
        down: Mutex::new(false),
    };
    let now = t0();
    let cell = cell(
        TokenKind::User,
        Seed::Obtained(record(Some("U1"), now.wall, 100, Some("R1"))),
    );
    Driver::new(&store, user_key(), now)
        .run(lead(&cell, now))
        .unwrap();
    // Due: refreshed aside, and the write of the rotated tokens is refused.
    let due = at(now, secs(85));
    let Join::Refresh { serve, fetch } = cell.join(due, true) else {
        panic!("expected an early refresh")
    };
    assert_eq!(serve.expose_secret(), "U1");
    *store.down.lock().unwrap() = true;
    let mut driver = Driver::new(&store, user_key(), due).answer(issued("U2", 100, Some("R2")));
    assert!(matches!(driver.run(fetch), Err(Error::Store(_))));
    // The old token is still valid: served, while the unwritten tokens wait for the store.
    assert_eq!(served(&cell, due), "U1");
    assert_eq!(cell.fresh(due.wall).unwrap().expose_secret(), "U1");
    assert_eq!(cell.refresh_token().unwrap().expose_secret(), "R2");
    // After the backoff, the next early fetch writes them first and serves them: no refresh.
    *store.down.lock().unwrap() = false;
    let later = due.after(EARLY_RETRY_FIRST);
    let Join::Refresh { serve, fetch } = cell.join(later, true) else {
        panic!("expected the write to be retried aside")
    };
    assert_eq!(serve.expose_secret(), "U1");
    let mut driver = Driver::new(&store, user_key(), later);
    assert_eq!(token(driver.run(fetch)), "U2");
    assert_eq!(driver.did, [Did::Persist(Expect::Version(1)), Did::Release]);
    assert_eq!(served(&cell, later), "U2");
    // Even a token fresh by its age counts as due while something waits to be written.
    let fresh_but_unwritten = super::tests::cell(TokenKind::User, Seed::Empty);
    fresh_but_unwritten.state().access = cell.state().access.as_ref().map(|access| Access {
        token: access.token.clone(),
        age: Age::new(later),
        windows: access.windows,
    });
    fresh_but_unwritten.state().unsaved = Some(Unsaved {
        record: record(Some("U3"), later.wall, 100, Some("R3")),
        expect: Expect::Version(2),
    });
    assert!(matches!(
        fresh_but_unwritten.join(later, true),
        Join::Refresh { .. }
    ));
}

#[test]
fn a_handover_carries_unwritten_tokens_and_else_the_refresh_token() {
    let now = t0();
    assert!(matches!(
        cell(TokenKind::Application, Seed::Empty).handover(),
        Seed::Empty
    ));
    let known = cell(TokenKind::User, Seed::RefreshToken(RefreshToken::new("R1")));
    match known.handover() {
        Seed::RefreshToken(token) => assert_eq!(token.expose_secret(), "R1"),
        other => panic!("{other:?}"),
    }
    let pending = cell(TokenKind::User, Seed::Empty);
    pending.state().unsaved = Some(Unsaved {
        record: record(Some("U2"), now.wall, 100, Some("R2")),
        expect: Expect::Version(4),
    });
    let Seed::Unwritten {
        record: carried,
        expect,
    } = pending.handover()
    else {
        panic!("the unwritten tokens must carry over")
    };
    assert_eq!(expect, Expect::Version(4));
    assert_eq!(carried, record(Some("U2"), now.wall, 100, Some("R2")));
    // A cell started from it writes them first, expecting the same version.
    let store = MemoryStore::new();
    let next = cell(
        TokenKind::User,
        Seed::Unwritten {
            record: carried,
            expect: Expect::Absent,
        },
    );
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&next, now))), "U2");
    assert_eq!(driver.did, [Did::Persist(Expect::Absent)]);
}

#[test]
fn a_forced_refresh_whose_write_was_refused_is_not_repeated() {
    let store = MemoryStore::new();
    let now = t0();
    store
        .compare_and_swap(
            &user_key(),
            Expect::Absent,
            &record(Some("U1"), now.wall, 100, Some("R1")),
        )
        .unwrap();
    let cell = cell(TokenKind::User, Seed::Empty);
    cell.expire();
    // The refresh happens; the write is refused.
    let mut answers = VecDeque::from([issued("U2", 100, Some("R2"))]);
    let mut fetch = lead(&cell, now);
    let mut event = Event::Start;
    let result = loop {
        event = match fetch.step(now, event) {
            Action::Load => Event::Loaded(store.load(&user_key())),
            Action::Lease { holder, ttl } => {
                Event::Leased(store.try_lease(&user_key(), &holder, ttl, now.wall))
            }
            Action::Send { .. } => Event::Answered {
                sent: now,
                result: answers.pop_front().unwrap(),
            },
            Action::Persist { .. } => {
                Event::Persisted(Err(StoreError::new(StoreErrorKind::Unavailable, "down")))
            }
            Action::Release { holder } => Event::Released(store.release(&user_key(), &holder)),
            Action::Done(result) => break result,
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(result, Err(Error::Store(_))));
    // The next call writes the kept tokens and serves them: no second refresh; the lease
    // kept for them is given back.
    let mut driver = Driver::new(&store, user_key(), now);
    assert_eq!(token(driver.run(lead(&cell, now))), "U2");
    assert_eq!(driver.did, [Did::Persist(Expect::Version(1)), Did::Release]);
}

#[test]
fn the_fast_path_never_serves_past_the_window_the_machine_allowed() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 100, None))
        .run(lead(&cell, now))
        .unwrap();
    let ms = Duration::from_millis;
    // Half a second of freshness left: served for that half second, not a full RECHECK.
    assert_eq!(served(&cell, now.after(ms(79_500))), "A1");
    assert!(cell.fresh(now.after(ms(79_900)).wall).is_some());
    assert!(cell.fresh(now.after(ms(80_000)).wall).is_none());

    // Due, nobody refreshing it and no backoff: callers must reach the machine.
    assert!(matches!(
        cell.join(now.after(ms(85_000)), false),
        Join::Serve(_)
    ));
    assert!(cell.fresh(now.after(ms(85_000)).wall).is_none());

    // Due while a refresh runs: served on the fast path until it expires, not beyond.
    let late = now.after(ms(99_500));
    let Join::Refresh { fetch, .. } = cell.join(late, true) else {
        panic!("an early refresh")
    };
    assert!(cell.fresh(now.after(ms(99_900)).wall).is_some());
    assert!(cell.fresh(now.after(ms(100_000)).wall).is_none());

    // The refresh fails: backing off, but still not past the token's expiry.
    let failed = Driver::new(&store, app_key(), late)
        .answer(Err(api_error(ErrorCode::ServerError)))
        .run(fetch);
    assert!(failed.is_err());
    assert!(cell.fresh(now.after(ms(99_900)).wall).is_some());
    assert!(cell.fresh(now.after(ms(100_000)).wall).is_none());
}

#[test]
fn while_backing_off_the_fast_path_serves_until_the_pause_ends_not_beyond() {
    let store = MemoryStore::new();
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    // A 1,000 s token: fresh for 980 s, usable for 1,000 s.
    Driver::new(&store, app_key(), now)
        .answer(issued("A1", 1000, None))
        .run(lead(&cell, now))
        .unwrap();
    let due = now.after(secs(985));
    let Join::Refresh { fetch, .. } = cell.join(due, true) else {
        panic!("an early refresh")
    };
    assert!(
        Driver::new(&store, app_key(), due)
            .answer(Err(api_error(ErrorCode::ServerError)))
            .run(fetch)
            .is_err()
    );
    // The first pause is 1 s. Half-way through it, a caller is served and the fast path
    // is allowed the rest of the pause: no further (the next early refresh is due then).
    let ms = Duration::from_millis;
    assert_eq!(served(&cell, due.after(ms(500))), "A1");
    assert!(cell.fresh(due.after(ms(900)).wall).is_some());
    assert!(cell.fresh(due.after(ms(1000)).wall).is_none());
    assert!(cell.fresh(due.after(ms(1200)).wall).is_none());
    assert!(matches!(
        cell.join(due.after(ms(1000)), true),
        Join::Refresh { .. }
    ));
}

#[test]
fn a_fetch_says_what_it_is_and_completes_the_flight_its_waiters_hold() {
    let cell = cell(TokenKind::Application, Seed::Empty);
    let now = t0();
    let fetch = lead(&cell, now);
    assert!(!fetch.is_early());
    let debug = format!("{fetch:?}");
    assert!(
        debug.starts_with("Fetch") && debug.contains("early: false"),
        "{debug}"
    );
    let Join::Wait(waiting) = cell.join(now, true) else {
        panic!("waits")
    };
    assert!(Arc::ptr_eq(fetch.flight(), &waiting));
}

#[test]
fn reconfiguring_keeps_the_options_it_was_not_asked_to_change() {
    struct NoTransport;
    let endpoint = TokenEndpoint::TrueLayer {
        config: crate::truelayer::TrueLayerConfig::new(
            crate::truelayer::Environment::Sandbox,
            "client",
        )
        .unwrap(),
        scopes: obauth_types::Scopes::from([obauth_types::truelayer::Scope::Payments]),
    };
    let options = ManagerOptions {
        deadline: secs(7),
        lease_poll: Duration::from_millis(70),
        ..ManagerOptions::default()
    };
    let managed: Managed<TestFlight, NoTransport, Arc<dyn TokenStore>> = Managed::new(
        endpoint,
        Arc::new(NoTransport),
        crate::retry::RetryPolicy::never(),
        Arc::new(MemoryStore::new()) as Arc<dyn TokenStore>,
        options,
        Seed::Empty,
    )
    .unwrap();
    assert_eq!(*managed.cell().options(), options);
    assert_eq!(managed.retry(), crate::retry::RetryPolicy::never());
    let debug = format!("{managed:?}");
    assert!(
        debug.contains("Managed") && debug.contains("client_credentials"),
        "{debug}"
    );
    let moved = managed.with_store(Arc::new(MemoryStore::new()));
    assert_eq!(moved.retry(), crate::retry::RetryPolicy::never());
    assert_eq!(*moved.cell().options(), options);
    let expiry = ExpiryPolicy {
        refresh_fraction: 0.5,
        ..ExpiryPolicy::default()
    };
    let repoliced = moved.with_expiry(expiry);
    assert_eq!(repoliced.cell().options().expiry, expiry);
    assert_eq!(repoliced.cell().options().deadline, secs(7));
    assert!(
        repoliced
            .with_options(ManagerOptions {
                deadline: Duration::ZERO,
                ..options
            })
            .is_err()
    );
    assert_eq!(
        repoliced
            .with_options(ManagerOptions::default())
            .unwrap()
            .cell()
            .options()
            .deadline,
        secs(60)
    );
}
