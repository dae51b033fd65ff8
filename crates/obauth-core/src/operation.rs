//! The seam between the core and a transport: every API call is an [`Operation`].

use std::time::SystemTime;

use crate::error::Error;
use crate::random::RandomSource;

/// One API call: a pure request builder and a pure response parser.
///
/// A binding's whole job is:
///
/// ```text
/// loop {
///     let request = op.build_request(&mut cx)?;      // fresh per attempt
///     let response = transport.send(request)?;       // the only I/O
///     match op.parse_response(&response) {
///         Err(e) => consult RetryPolicy::decide(op.replay(), …), sleep, continue,
///         done => return done,
///     }
/// }
/// ```
///
/// `build_request` is called once per attempt, so an operation that signs (the Worldline
/// client assertion) signs afresh each time, with a new `jti`.
pub trait Operation {
    /// What a successful call yields.
    type Output;

    /// A stable name for logs and metrics, e.g. `truelayer.token.exchange_code`.
    const NAME: &'static str;

    /// The name of this call: [`Self::NAME`], unless the operation stands for one of
    /// several (a token manager's request names the grant it sends).
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Whether this call may be sent again after a failure.
    fn replay(&self) -> Replay;

    /// Builds the request. Fails only on invalid input or a failed signature.
    fn build_request(&self, cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error>;

    /// Parses the server's answer. Never panics, whatever the status, headers or bytes.
    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<Self::Output, Error>;

    /// An error a successful output carries (a token manager's refresh answered with a new
    /// refresh token and a refused rest), so that [`Call`](crate::Call) scrubs the request's
    /// secrets out of it as it does out of a failed call's error. None by default.
    fn error_in_output(output: &mut Self::Output) -> Option<&mut Error> {
        let _ = output;
        None
    }
}

/// The inputs of a request that come from outside: the wall clock and randomness.
pub struct RequestContext<'a> {
    /// The current time, for assertion `iat`/`exp`.
    pub now: SystemTime,
    /// Randomness, for assertion `jti`.
    pub random: &'a mut dyn RandomSource,
}

impl<'a> RequestContext<'a> {
    /// A context at `now` drawing from `random`.
    pub fn new(now: SystemTime, random: &'a mut dyn RandomSource) -> Self {
        Self { now, random }
    }
}

impl std::fmt::Debug for RequestContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Whether an operation may be sent again, decided by what a repeat would do on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Repeating is harmless (reads, idempotent deletes, a new client-credentials token).
    Safe,
    /// Repeat only when the server certainly did not act on the first attempt (the
    /// connection failed, or it answered 429/503). A refresh token rotates when used: a blind
    /// retry after a lost answer would present a spent token.
    IfNotProcessed,
    /// Never repeat: an authorization code is single-use, and a second try would fail with
    /// `invalid_grant` (and may make the server revoke the tokens of the first).
    Never,
}
