//! Retry decisions without I/O: which failures retry, how long to wait, when to stop.
//!
//! The bindings only sleep; every decision is a pure function of the failure, the attempt
//! number, the operation's [`Replay`] rule, the server's `Retry-After`, the time and a random
//! number for jitter.

use std::time::{Duration, SystemTime};

pub use crate::error::RetryAfter;
use crate::error::{Error, InvalidInput, TimeoutPhase, TransportErrorKind};
use crate::operation::Replay;

/// How an attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No connection was made (refused, DNS, TLS handshake): the server saw nothing.
    Connect,
    /// The request may have reached the server but no full answer came back (timeout,
    /// connection reset, truncated body).
    NoAnswer,
    /// The server answered with a retryable error (429, 5xx, gateway errors).
    Server {
        /// Whether the status says the request was not acted on (429, 503).
        not_processed: bool,
        /// The server's `Retry-After`.
        retry_after: Option<RetryAfter>,
    },
    /// Anything else: a client error, bad input, a failed signature. Never retried.
    Final,
}

impl Failure {
    /// Classifies an error: no connection, no answer, a retryable answer, or final.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Transport(transport) => {
                return match transport.kind() {
                    TransportErrorKind::Connect => Failure::Connect,
                    TransportErrorKind::Io => Failure::NoAnswer,
                    _ => Failure::Final,
                };
            }
            Error::Timeout(timeout) => {
                return match timeout.phase {
                    TimeoutPhase::Connect => Failure::Connect,
                    _ => Failure::NoAnswer,
                };
            }
            _ => {}
        }
        if !error.is_retryable() {
            return Failure::Final;
        }
        let not_processed = error
            .status()
            .is_some_and(|status| matches!(status.as_u16(), 429 | 503));
        Failure::Server {
            not_processed,
            retry_after: error.retry_after(),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop and return the error.
    GiveUp,
}

/// When and how often to retry.
///
/// Defaults: 3 attempts in all, exponential backoff from 200 ms doubling to at most 5 s
/// with "equal jitter" (half fixed, half random, so retries never come in a burst), and a
/// server's `Retry-After` honoured up to 30 s (a longer one gives up, returning the error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The backoff before the second attempt.
    pub base_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` to wait for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The most attempts a policy may make.
    pub const MAX_ATTEMPTS: u32 = 10;

    /// The longest pause a policy may take between two attempts.
    pub const MAX_PAUSE: Duration = Duration::from_secs(300);

    /// Checks that the policy makes sense: 1 to [`MAX_ATTEMPTS`](Self::MAX_ATTEMPTS)
    /// attempts, a base delay no longer than the largest backoff, and pauses (the largest
    /// backoff, the longest `Retry-After` waited for) of at most
    /// [`MAX_PAUSE`](Self::MAX_PAUSE). The client builders refuse others.
    pub fn check(&self) -> Result<(), InvalidInput> {
        let what = "retry policy";
        if self.max_attempts == 0 || self.max_attempts > Self::MAX_ATTEMPTS {
            return Err(InvalidInput::new(what, "max_attempts must be 1 to 10"));
        }
        if self.base_delay > self.max_delay {
            return Err(InvalidInput::new(
                what,
                "base_delay must not exceed max_delay",
            ));
        }
        if self.max_delay > Self::MAX_PAUSE || self.max_retry_after > Self::MAX_PAUSE {
            return Err(InvalidInput::new(
                what,
                "max_delay and max_retry_after must be at most five minutes",
            ));
        }
        Ok(())
    }

    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Decides after attempt number `attempt` (1 for the first) failed with `failure`.
    /// `random` is any uniformly random `u64`, for jitter.
    pub fn decide(
        &self,
        replay: Replay,
        attempt: u32,
        failure: Failure,
        now: SystemTime,
        random: u64,
    ) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let (allowed, retry_after) = match (replay, failure) {
            (_, Failure::Final) | (Replay::Never, _) => (false, None),
            (_, Failure::Connect) => (true, None),
            (Replay::Safe, Failure::NoAnswer) => (true, None),
            (Replay::IfNotProcessed, Failure::NoAnswer) => (false, None),
            (Replay::Safe, Failure::Server { retry_after, .. }) => (true, retry_after),
            (
                Replay::IfNotProcessed,
                Failure::Server {
                    not_processed,
                    retry_after,
                },
            ) => (not_processed, retry_after),
        };
        if !allowed {
            return RetryDecision::GiveUp;
        }
        if let Some(retry_after) = retry_after {
            let wait = retry_after.delay_from(now);
            return if wait <= self.max_retry_after {
                RetryDecision::RetryAfter(wait)
            } else {
                RetryDecision::GiveUp
            };
        }
        RetryDecision::RetryAfter(self.backoff(attempt, random))
    }

    /// The jittered backoff after attempt `attempt`: between half and all of
    /// `min(max_delay, base_delay × 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .base_delay
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = spread
            .checked_add(1)
            .map_or(random, |modulus| random % modulus);
        half.saturating_add(Duration::from_nanos(jitter))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::RETRY_AFTER;

    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn server(not_processed: bool) -> Failure {
        Failure::Server {
            not_processed,
            retry_after: None,
        }
    }

    #[test]
    fn failures_are_classified_by_what_the_server_may_have_seen() {
        use crate::error::{TimeoutError, TransportError};
        let transport = |kind| Error::Transport(TransportError::new(kind, "x"));
        let timeout = |phase| {
            Error::Timeout(TimeoutError {
                phase,
                after: Duration::from_secs(1),
            })
        };
        // Nothing reached the server: even a call that must not be repeated once processed
        // may be sent again.
        assert_eq!(
            Failure::of(&transport(TransportErrorKind::Connect)),
            Failure::Connect
        );
        assert_eq!(
            Failure::of(&timeout(TimeoutPhase::Connect)),
            Failure::Connect
        );
        // It may have been processed: no answer, whatever the phase.
        assert_eq!(
            Failure::of(&transport(TransportErrorKind::Io)),
            Failure::NoAnswer
        );
        assert_eq!(
            Failure::of(&timeout(TimeoutPhase::Total)),
            Failure::NoAnswer
        );
        assert_eq!(
            Failure::of(&timeout(TimeoutPhase::Deadline)),
            Failure::NoAnswer
        );
        // The rest of the transport's failures are final.
        for kind in [
            TransportErrorKind::BodyTooLarge,
            TransportErrorKind::RedirectFollowed,
            TransportErrorKind::Request,
        ] {
            assert_eq!(Failure::of(&transport(kind)), Failure::Final);
        }
        // What that means for a refresh (repeat only if not processed).
        let policy = RetryPolicy::default();
        let decide =
            |error: &Error| policy.decide(Replay::IfNotProcessed, 1, Failure::of(error), NOW, 0);
        assert!(matches!(
            decide(&transport(TransportErrorKind::Connect)),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            decide(&transport(TransportErrorKind::Io)),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn single_use_and_final_failures_never_retry() {
        let policy = RetryPolicy::default();
        for failure in [
            Failure::Connect,
            Failure::NoAnswer,
            server(true),
            server(false),
        ] {
            assert_eq!(
                policy.decide(Replay::Never, 1, failure, NOW, 0),
                RetryDecision::GiveUp
            );
        }
        assert_eq!(
            policy.decide(Replay::Safe, 1, Failure::Final, NOW, 0),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn if_not_processed_retries_only_when_the_server_did_not_act() {
        let policy = RetryPolicy::default();
        let retry = |failure| policy.decide(Replay::IfNotProcessed, 1, failure, NOW, 0);
        assert!(matches!(
            retry(Failure::Connect),
            RetryDecision::RetryAfter(_)
        ));
        assert!(matches!(retry(server(true)), RetryDecision::RetryAfter(_)));
        assert_eq!(retry(Failure::NoAnswer), RetryDecision::GiveUp);
        assert_eq!(retry(server(false)), RetryDecision::GiveUp);
    }

    #[test]
    fn nonsense_policies_are_refused() {
        assert!(RetryPolicy::default().check().is_ok());
        assert!(RetryPolicy::never().check().is_ok());
        let policy = RetryPolicy::default();
        let bad = [
            RetryPolicy {
                max_attempts: 0,
                ..policy
            },
            RetryPolicy {
                max_attempts: 11,
                ..policy
            },
            RetryPolicy {
                base_delay: Duration::from_secs(6),
                ..policy
            },
            RetryPolicy {
                max_delay: Duration::from_secs(301),
                base_delay: Duration::ZERO,
                ..policy
            },
            RetryPolicy {
                max_retry_after: Duration::MAX,
                ..policy
            },
        ];
        for bad in bad {
            assert_eq!(bad.check().unwrap_err().what(), "retry policy", "{bad:?}");
        }
        let edge = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(300),
        };
        assert!(edge.check().is_ok());
    }

    #[test]
    fn attempts_are_capped() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.decide(Replay::Safe, 2, Failure::NoAnswer, NOW, 0),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            policy.decide(Replay::Safe, 3, Failure::NoAnswer, NOW, 0),
            RetryDecision::GiveUp
        );
        assert_eq!(
            RetryPolicy::never().decide(Replay::Safe, 1, Failure::Connect, NOW, 0),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0), Duration::from_millis(100));
        assert_eq!(
            policy.backoff(1, u64::MAX),
            Duration::from_millis(100) + Duration::from_nanos(u64::MAX % 100_000_001)
        );
        assert_eq!(policy.backoff(2, 0), Duration::from_millis(200));
        assert_eq!(policy.backoff(3, 100_000_000), Duration::from_millis(500));
        assert!(policy.backoff(3, 400_000_000) <= Duration::from_millis(800));
        assert_eq!(policy.backoff(40, 0), Duration::from_millis(2500));
        assert!(policy.backoff(40, u64::MAX) <= Duration::from_secs(5));
        let huge = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..policy
        };
        assert!(huge.backoff(1, 5) >= Duration::MAX / 2);
        assert!(huge.backoff(64, u64::MAX) >= Duration::MAX / 2);
        let zero = RetryPolicy {
            base_delay: Duration::ZERO,
            ..policy
        };
        assert_eq!(zero.backoff(3, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn retry_after_wins_and_too_long_gives_up() {
        let policy = RetryPolicy::default();
        let after = |retry_after| Failure::Server {
            not_processed: true,
            retry_after: Some(retry_after),
        };
        assert_eq!(
            policy.decide(
                Replay::Safe,
                1,
                after(RetryAfter::Delay(Duration::from_secs(7))),
                NOW,
                0
            ),
            RetryDecision::RetryAfter(Duration::from_secs(7))
        );
        let date = NOW + Duration::from_secs(12);
        assert_eq!(
            policy.decide(Replay::Safe, 1, after(RetryAfter::At(date)), NOW, 0),
            RetryDecision::RetryAfter(Duration::from_secs(12))
        );
        assert_eq!(
            policy.decide(
                Replay::Safe,
                1,
                after(RetryAfter::At(NOW)),
                NOW + Duration::from_secs(5),
                0
            ),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            policy.decide(
                Replay::Safe,
                1,
                after(RetryAfter::Delay(Duration::from_secs(31))),
                NOW,
                0
            ),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn retry_after_header_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(
            RetryAfter::from_headers(&headers),
            Some(RetryAfter::Delay(Duration::from_secs(120)))
        );
        headers.insert(
            RETRY_AFTER,
            "Thu, 01 Jan 1970 00:01:40 GMT".parse().unwrap(),
        );
        assert_eq!(
            RetryAfter::from_headers(&headers),
            Some(RetryAfter::At(NOW + Duration::from_secs(100)))
        );
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(RetryAfter::from_headers(&headers), None);
        // Too large to hold is too long to wait, not absent.
        for huge in [
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            headers.insert(RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(
                RetryAfter::from_headers(&headers),
                Some(RetryAfter::Delay(Duration::from_secs(u64::MAX))),
                "{huge}"
            );
            let failure = Failure::Server {
                not_processed: true,
                retry_after: RetryAfter::from_headers(&headers),
            };
            assert_eq!(
                RetryPolicy::default().decide(Replay::Safe, 1, failure, NOW, 0),
                RetryDecision::GiveUp
            );
        }
        assert_eq!(RetryAfter::from_headers(&HeaderMap::new()), None);
    }
}
