//! One call of an operation, retries included, as a state machine the bindings drive.
//!
//! ```text
//! let mut call = Call::new(&op, policy);
//! loop {
//!     let request = call.request(SystemTime::now(), &mut OsRandom)?;
//!     let outcome = transport.send(request);             // Result<Response, Error>
//!     match call.outcome(outcome, SystemTime::now(), &mut OsRandom) {
//!         Step::Done(result) => return result,
//!         Step::Retry(delay) => sleep(delay),
//!     }
//! }
//! ```

use std::time::{Duration, SystemTime};

use http::{Request, Response};

use crate::error::{Error, InvalidInput};
use crate::operation::{Operation, RequestContext};
use crate::random::{RandomSource, random_u64};
use crate::retry::{Failure, RetryDecision, RetryPolicy};

/// Connect and total timeouts of one attempt, which every transport must enforce (the
/// bindings' transports do, also on a client or agent you hand them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Resolving, connecting and the TLS handshake. Default 10 s.
    pub connect: Duration,
    /// The whole attempt, from sending to the last body byte. Default 30 s.
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

/// The attempts of one operation under a retry policy.
#[derive(Debug)]
pub struct Call<'o, O> {
    op: &'o O,
    policy: RetryPolicy,
    attempt: u32,
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
        }
    }

    /// How many attempts have been started.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The request of the next attempt, built afresh (a new assertion `jti` each time).
    pub fn request(
        &mut self,
        now: SystemTime,
        random: &mut dyn RandomSource,
    ) -> Result<Request<Vec<u8>>, Error> {
        self.attempt += 1;
        self.op.build_request(&mut RequestContext::new(now, random))
    }

    /// Takes the transport's outcome for the current attempt and says what comes next.
    pub fn outcome<B: AsRef<[u8]>>(
        &mut self,
        outcome: Result<Response<B>, Error>,
        now: SystemTime,
        random: &mut dyn RandomSource,
    ) -> Step<O::Output> {
        let error = match outcome.and_then(|response| self.op.parse_response(&response)) {
            Ok(output) => return Step::Done(Ok(output)),
            Err(error) => error,
        };
        let jitter = random_u64(random).unwrap_or(0);
        match self.policy.decide(
            self.op.replay(),
            self.attempt.max(1),
            Failure::of(&error),
            now,
            jitter,
        ) {
            RetryDecision::RetryAfter(delay) => Step::Retry(delay),
            RetryDecision::GiveUp => Step::Done(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use obauth_types::{AuthorizationCode, RefreshToken, Scopes, truelayer::Scope};

    use super::*;
    use crate::error::{TimeoutError, TimeoutPhase, TransportError, TransportErrorKind};
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
        let now = SystemTime::UNIX_EPOCH;
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
        call.request(SystemTime::UNIX_EPOCH, &mut OsRandom).unwrap();
        assert!(matches!(
            call.outcome(status(200, TOKEN), SystemTime::UNIX_EPOCH, &mut OsRandom),
            Step::Done(Ok(_))
        ));

        let exchange = config.exchange_code(AuthorizationCode::new("c"), "https://a/cb", None);
        let mut call = Call::new(&exchange, RetryPolicy::default());
        call.request(SystemTime::UNIX_EPOCH, &mut OsRandom).unwrap();
        let refused = Err(Error::Transport(TransportError::new(
            TransportErrorKind::Connect,
            "refused",
        )));
        assert!(matches!(
            call.outcome::<Vec<u8>>(refused, SystemTime::UNIX_EPOCH, &mut OsRandom),
            Step::Done(Err(Error::Transport(_)))
        ));
    }

    #[test]
    fn refresh_retries_only_when_nothing_was_processed() {
        let config = config();
        let op = config.refresh(RefreshToken::new("r"));
        let now = SystemTime::UNIX_EPOCH;
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
}
