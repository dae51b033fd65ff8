//! One call of an operation, retries included, as a state machine the bindings drive.
//!
//! ```text
//! let mut call = Call::new(&op, policy);            // .with_deadline(…) for one overall bound
//! loop {
//!     let request = call.request(Now::system(), &mut OsRandom)?;
//!     let outcome = transport.send(request);             // Result<Response, Error>
//!     match call.outcome(outcome, Now::system(), &mut OsRandom) {
//!         Step::Done(result) => return result,
//!         Step::Retry(delay) => sleep(delay),
//!     }
//! }
//! ```
//!
//! With a deadline, no attempt starts and no wait is begun that the deadline does not
//! leave room for, and each request carries an [`AttemptTimeout`] (in its extensions) no
//! longer than the time left, which the bindings' transports apply on top of their own
//! per-attempt timeout.

use std::time::{Duration, Instant};

use http::{Request, Response};

use crate::error::{Error, InvalidInput, TimeoutError, TimeoutPhase};
use crate::expiry::Now;
use crate::operation::{Operation, RequestContext};
use crate::random::{RandomSource, random_u64};
use crate::retry::{Failure, RetryDecision, RetryPolicy};
use crate::scrub::RequestSecrets;

/// Connect and total timeouts, which every transport must enforce on each attempt (the
/// bindings' transports do, also on a client or agent you hand them). A client's call also
/// ends within `total` as a whole: its attempts and the pauses between them share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Resolving, connecting and the TLS handshake. Default 10 s.
    pub connect: Duration,
    /// The whole attempt, from sending to the last body byte, and for a client's call,
    /// every attempt and pause together. Default 30 s.
    pub total: Duration,
}

impl Timeouts {
    /// The longest timeout obauth accepts: one hour.
    pub const MAX: Duration = Duration::from_secs(3600);

    /// Checks that both timeouts are above zero and at most [`Timeouts::MAX`]. A zero
    /// timeout would fail every call, and an enormous one (`Duration::MAX` for "no
    /// timeout") is no timeout at all and makes some clients' deadline arithmetic
    /// overflow; the bindings refuse both when a client is built and when a request is
    /// sent.
    pub fn check(&self) -> Result<(), InvalidInput> {
        for (what, timeout) in [
            ("connect timeout", self.connect),
            ("total timeout", self.total),
        ] {
            if timeout.is_zero() || timeout > Self::MAX {
                return Err(InvalidInput::new(
                    what,
                    "must be above zero and at most one hour",
                ));
            }
        }
        Ok(())
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(30),
        }
    }
}

/// The longest a single attempt may take, set by [`Call`] on the requests it builds when
/// it has a deadline: a transport bounds the attempt by this as well as by its own total
/// timeout. Read it with `request.extensions().get::<AttemptTimeout>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimeout(pub Duration);

/// How a call is bounded as a whole (see [`Call::with_limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallLimit {
    /// A fixed deadline, such as a token manager's for its whole fetch.
    Deadline(Instant),
    /// A client's total timeout, counted from the start of the call.
    Budget(Duration),
}

/// The attempts of one operation under a retry policy.
#[derive(Debug)]
pub struct Call<'o, O> {
    op: &'o O,
    policy: RetryPolicy,
    attempt: u32,
    deadline: Option<Instant>,
    /// With a budget (see [`Call::with_budget`]): its length, which an attempt with all of
    /// it still ahead needs no cap for.
    budget: Option<Duration>,
    /// The secrets of every request built so far, removed from the error that ends the call.
    secrets: RequestSecrets,
}

/// What the binding does next.
#[derive(Debug)]
pub enum Step<T> {
    /// The call is over.
    Done(Result<T, Error>),
    /// Sleep this long, then ask for the next [`Call::request`].
    Retry(Duration),
}

impl<'o, O: Operation> Call<'o, O> {
    /// A call of `op` that retries as `policy` and the operation's [`Operation::replay`] allow.
    pub fn new(op: &'o O, policy: RetryPolicy) -> Self {
        Self {
            op,
            policy,
            attempt: 0,
            deadline: None,
            budget: None,
            secrets: RequestSecrets::default(),
        }
    }

    /// Bounds the whole call, every attempt and wait included, by `deadline`: each attempt
    /// carries an [`AttemptTimeout`] of what is left.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// [`Call::with_deadline`] or [`Call::with_budget`] (from `now`), as `limit` says.
    pub fn with_limit(self, limit: CallLimit, now: Instant) -> Self {
        match limit {
            CallLimit::Deadline(deadline) => self.with_deadline(deadline),
            CallLimit::Budget(budget) => self.with_budget(now, budget),
        }
    }

    /// Bounds the whole call by `budget` from `now` (a client's total timeout): like
    /// [`Call::with_deadline`], except that an attempt with the whole budget still ahead
    /// (the first) carries no [`AttemptTimeout`], since the transport's own total timeout,
    /// the same length, already bounds it. A transport then configures nothing per request.
    pub fn with_budget(mut self, now: Instant, budget: Duration) -> Self {
        self.deadline = now.checked_add(budget);
        self.budget = Some(budget);
        self
    }

    fn past_deadline(&self) -> Error {
        Error::Timeout(TimeoutError {
            phase: TimeoutPhase::Deadline,
            after: Duration::ZERO,
        })
    }

    /// How many attempts have been started.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The request of the next attempt, built afresh (a new assertion `jti` each time).
    /// Past the deadline, if there is one, the call ends with [`TimeoutPhase::Deadline`].
    pub fn request(
        &mut self,
        now: Now,
        random: &mut dyn RandomSource,
    ) -> Result<Request<Vec<u8>>, Error> {
        let left = match self.deadline {
            Some(deadline) => match deadline.checked_duration_since(now.mono) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(self.past_deadline()),
            },
            None => None,
        };
        self.attempt += 1;
        let mut request = self
            .op
            .build_request(&mut RequestContext::new(now.wall, random))?;
        // A millisecond of slack: the first attempt of a budgeted call starts microseconds
        // after the budget did.
        let capped = |left: Duration| {
            self.budget
                .is_none_or(|budget| left + Duration::from_millis(1) < budget)
        };
        if let Some(left) = left.filter(|left| capped(*left)) {
            request.extensions_mut().insert(AttemptTimeout(left));
        }
        self.secrets.add_request(&request);
        Ok(request)
    }

    /// The error that ends the call. With a budget, an attempt that ran into its total
    /// timeout ran into the call's: the transport's total is the budget, and never more
    /// than what was left of it. The message then says so.
    fn last(&self, error: Error) -> Error {
        match error {
            Error::Timeout(TimeoutError {
                phase: TimeoutPhase::Total,
                after,
            }) if self.budget.is_some() => Error::Timeout(TimeoutError {
                phase: TimeoutPhase::Deadline,
                after,
            }),
            other => other,
        }
    }

    /// Takes the transport's outcome for the current attempt and says what comes next.
    ///
    /// An error that ends the call has every secret of the call's requests (the client
    /// secret, a code, a token, an assertion; raw, percent-, form- or JSON-encoded) replaced
    /// by `<redacted>` in whatever text the server sent: a server that quotes the request
    /// back cannot put a credential into a log through obauth's error.
    pub fn outcome<B: AsRef<[u8]>>(
        &mut self,
        outcome: Result<Response<B>, Error>,
        now: Now,
        random: &mut dyn RandomSource,
    ) -> Step<O::Output> {
        let mut error = match outcome.and_then(|response| self.op.parse_response(&response)) {
            Ok(mut output) => {
                if let Some(error) = O::error_in_output(&mut output) {
                    self.secrets.scrub_error(error);
                }
                return Step::Done(Ok(output));
            }
            Err(error) => error,
        };
        self.secrets.scrub_error(&mut error);
        let jitter = random_u64(random).unwrap_or(0);
        match self.policy.decide(
            self.op.replay(),
            self.attempt.max(1),
            Failure::of(&error),
            now.wall,
            jitter,
        ) {
            // A wait that would end at or past the deadline leaves no room for the attempt
            // after it: give up now with the error in hand.
            RetryDecision::RetryAfter(delay)
                if self.deadline.is_some_and(|deadline| {
                    now.mono.checked_add(delay).is_none_or(|at| at >= deadline)
                }) =>
            {
                Step::Done(Err(self.last(error)))
            }
            RetryDecision::RetryAfter(delay) => Step::Retry(delay),
            RetryDecision::GiveUp => Step::Done(Err(self.last(error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use obauth_types::{AuthorizationCode, RefreshToken, Scopes, truelayer::Scope};

    use super::*;
    use crate::error::{TransportError, TransportErrorKind};
    use crate::random::OsRandom;
    use crate::truelayer::{Environment, TrueLayerConfig};

    #[test]
    fn timeouts_must_be_above_zero_and_at_most_an_hour() {
        assert!(Timeouts::default().check().is_ok());
        let at = |connect, total| Timeouts { connect, total }.check();
        assert!(at(Timeouts::MAX, Timeouts::MAX).is_ok());
        assert!(at(Duration::from_millis(1), Duration::from_millis(1)).is_ok());
        assert_eq!(
            at(Duration::ZERO, Duration::from_secs(1))
                .unwrap_err()
                .what(),
            "connect timeout"
        );
        assert_eq!(
            at(Duration::from_secs(1), Duration::MAX)
                .unwrap_err()
                .what(),
            "total timeout"
        );
        assert!(
            at(
                Duration::from_secs(1),
                Timeouts::MAX + Duration::from_nanos(1)
            )
            .is_err()
        );
    }

    fn t0() -> Now {
        Now {
            wall: std::time::SystemTime::UNIX_EPOCH,
            mono: Instant::now(),
        }
    }

    fn config() -> TrueLayerConfig {
        TrueLayerConfig::new(Environment::Sandbox, "id")
            .unwrap()
            .with_client_secret("s".into())
    }

    fn status(code: u16, body: &str) -> Result<Response<Vec<u8>>, Error> {
        let mut response = Response::new(body.as_bytes().to_vec());
        *response.status_mut() = StatusCode::from_u16(code).unwrap();
        Ok(response)
    }

    const TOKEN: &str = r#"{"access_token":"a","expires_in":60,"token_type":"Bearer"}"#;

    #[test]
    fn safe_calls_retry_server_errors_until_the_cap() {
        let config = config();
        let op = config.client_credentials(Scopes::from([Scope::Payments]));
        let mut call = Call::new(&op, RetryPolicy::default());
        let now = t0();
        call.request(now, &mut OsRandom).unwrap();
        assert!(matches!(
            call.outcome(status(503, ""), now, &mut OsRandom),
            Step::Retry(_)
        ));
        call.request(now, &mut OsRandom).unwrap();
        let timeout = Err(Error::Timeout(TimeoutError {
            phase: TimeoutPhase::Total,
            after: Duration::from_secs(1),
        }));
        assert!(matches!(
            call.outcome::<Vec<u8>>(timeout, now, &mut OsRandom),
            Step::Retry(_)
        ));
        call.request(now, &mut OsRandom).unwrap();
        match call.outcome(status(502, "<html>"), now, &mut OsRandom) {
            Step::Done(Err(error)) => assert_eq!(error.status(), Some(StatusCode::BAD_GATEWAY)),
            other => panic!("expected to give up, got {other:?}"),
        }
        assert_eq!(call.attempts(), 3);
    }

    #[test]
    fn success_ends_the_call_and_single_use_codes_never_retry() {
        let config = config();
        let op = config.client_credentials(Scopes::from([Scope::Payments]));
        let mut call = Call::new(&op, RetryPolicy::default());
        call.request(t0(), &mut OsRandom).unwrap();
        assert!(matches!(
            call.outcome(status(200, TOKEN), t0(), &mut OsRandom),
            Step::Done(Ok(_))
        ));

        let exchange = config.exchange_code(AuthorizationCode::new("c"), "https://a/cb", None);
        let mut call = Call::new(&exchange, RetryPolicy::default());
        call.request(t0(), &mut OsRandom).unwrap();
        let refused = Err(Error::Transport(TransportError::new(
            TransportErrorKind::Connect,
            "refused",
        )));
        assert!(matches!(
            call.outcome::<Vec<u8>>(refused, t0(), &mut OsRandom),
            Step::Done(Err(Error::Transport(_)))
        ));
    }

    #[test]
    fn refresh_retries_only_when_nothing_was_processed() {
        let config = config();
        let op = config.refresh(RefreshToken::new("r"));
        let now = t0();
        let mut call = Call::new(&op, RetryPolicy::default());
        call.request(now, &mut OsRandom).unwrap();
        let reset = Err(Error::Transport(TransportError::new(
            TransportErrorKind::Io,
            "reset",
        )));
        assert!(matches!(
            call.outcome::<Vec<u8>>(reset, now, &mut OsRandom),
            Step::Done(Err(_))
        ));
        let mut call = Call::new(&op, RetryPolicy::default());
        call.request(now, &mut OsRandom).unwrap();
        assert!(matches!(
            call.outcome(status(429, ""), now, &mut OsRandom),
            Step::Retry(_)
        ));
    }

    #[test]
    fn a_budget_leaves_the_first_attempt_to_the_transport_and_caps_the_rest() {
        let config = config();
        let op = config.client_credentials(Scopes::from([Scope::Payments]));
        let start = t0();
        let mut call =
            Call::new(&op, RetryPolicy::default()).with_budget(start.mono, Duration::from_secs(10));
        // The whole budget ahead: the transport's own total timeout (the same) bounds it.
        let request = call.request(start, &mut OsRandom).unwrap();
        assert_eq!(request.extensions().get::<AttemptTimeout>(), None);
        // After 4 s and a retryable failure, the retry gets what is left.
        let later = start.after(Duration::from_secs(4));
        assert!(matches!(
            call.outcome(status(503, ""), later, &mut OsRandom),
            Step::Retry(_)
        ));
        let request = call.request(later, &mut OsRandom).unwrap();
        assert_eq!(
            request.extensions().get::<AttemptTimeout>(),
            Some(&AttemptTimeout(Duration::from_secs(6)))
        );
        // Past the budget, no attempt starts.
        match call.request(start.after(Duration::from_secs(10)), &mut OsRandom) {
            Err(Error::Timeout(timeout)) => assert_eq!(timeout.phase, TimeoutPhase::Deadline),
            other => panic!("expected the deadline, got {other:?}"),
        }
    }

    #[test]
    fn a_deadline_caps_each_attempt_and_refuses_waits_and_attempts_past_it() {
        let config = config();
        let op = config.client_credentials(Scopes::from([Scope::Payments]));
        let start = t0();
        let deadline = start.mono + Duration::from_secs(10);
        let mut call = Call::new(&op, RetryPolicy::default()).with_deadline(deadline);

        let request = call.request(start, &mut OsRandom).unwrap();
        assert_eq!(
            request.extensions().get::<AttemptTimeout>(),
            Some(&AttemptTimeout(Duration::from_secs(10)))
        );
        // 4 s later, a 503 with a backoff that fits: retried, the next attempt gets 6 s.
        let later = start.after(Duration::from_secs(4));
        assert!(matches!(
            call.outcome(status(503, ""), later, &mut OsRandom),
            Step::Retry(_)
        ));
        let request = call.request(later, &mut OsRandom).unwrap();
        assert_eq!(
            request.extensions().get::<AttemptTimeout>(),
            Some(&AttemptTimeout(Duration::from_secs(6)))
        );
        // A Retry-After that would end exactly at the deadline: the error is returned now.
        let mut busy = Response::new(Vec::new());
        *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        busy.headers_mut()
            .insert(http::header::RETRY_AFTER, "6".parse().unwrap());
        match call.outcome(Ok(busy), later, &mut OsRandom) {
            Step::Done(Err(error)) => {
                assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE))
            }
            other => panic!("expected to give up, got {other:?}"),
        }
        // At the deadline itself no attempt starts.
        let mut call = Call::new(&op, RetryPolicy::default()).with_deadline(deadline);
        match call.request(start.after(Duration::from_secs(10)), &mut OsRandom) {
            Err(Error::Timeout(timeout)) => assert_eq!(timeout.phase, TimeoutPhase::Deadline),
            other => panic!("expected the deadline, got {other:?}"),
        }
        assert_eq!(call.attempts(), 0);
        // Without a deadline nothing is attached.
        let mut call = Call::new(&op, RetryPolicy::default());
        let request = call.request(start, &mut OsRandom).unwrap();
        assert!(request.extensions().get::<AttemptTimeout>().is_none());
    }
}
