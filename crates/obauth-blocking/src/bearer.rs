//! Calling another API with obauth's tokens over ureq: [`BearerAgent`], which sets
//! `Authorization: Bearer …` and, when the API says the token is invalid, invalidates it and
//! sends the request once more with a fresh one; and [`BearerMiddleware`], the same in
//! ureq's middleware slot, without the second attempt.
//!
//! ```no_run
//! # fn demo(source: obauth_blocking::TokenSource) -> Result<(), ureq::Error> {
//! use obauth_blocking::bearer::BearerAgent;
//!
//! let api = BearerAgent::new(ureq::Agent::new_with_defaults(), source);
//! let request = http::Request::post("https://api.example/payments")
//!     .header("content-type", "application/json")
//!     .body(r#"{"amount": 100}"#)?;
//! let response = api.run(request)?;
//! # Ok(()) }
//! ```
//!
//! Why two: ureq's middleware chain sends a request at most once (`MiddlewareNext` is
//! consumed by `handle`) and its body is a stream it cannot copy, so a middleware cannot
//! retry. [`BearerAgent`] wraps the agent instead and takes bodies that can be sent again
//! (`&str`, `String`, `&[u8]`, `Vec<u8>`, `()`).
//!
//! What counts as "the token is invalid" is [`BearerPolicy`]'s call (by default a `401`
//! with `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3.1); a `403` never is.

use std::sync::Arc;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use obauth_core::bearer::{After, BearerPolicy, RetryOn, authorization, token_in};
use obauth_types::AccessToken;
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Agent, AsSendBody, Body, SendBody};

use crate::{Error, TokenSource, UserTokens};

/// Where the middleware gets its tokens: [`TokenSource`], [`UserTokens`], or your own.
///
/// Your own type writes [`bearer_token`](Self::bearer_token) and
/// [`refused`](Self::refused); [`authorization_header`](Self::authorization_header) builds
/// the header from the token unless the type has a cheaper way (obauth's managers keep the
/// cached token's header, built once).
pub trait BearerSource: Send + Sync + 'static {
    /// The access token to send (cached while fresh).
    fn bearer_token(&self) -> Result<AccessToken, Error>;

    /// The API refused `token`: never serve it again.
    fn refused(&self, token: &AccessToken);

    /// The `Authorization` value that carries [`bearer_token`](Self::bearer_token)'s token,
    /// as [`obauth_core::bearer::authorization`] builds it. An override must give exactly
    /// that value (`Bearer ` and the token): the middleware reads the token back from it
    /// ([`obauth_core::bearer::token_in`]) to report it [`refused`](Self::refused).
    fn authorization_header(&self) -> Result<HeaderValue, Error> {
        Ok(authorization(&self.bearer_token()?)?)
    }
}

macro_rules! manager_source {
    ($($manager:ty),*) => {$(
        impl BearerSource for $manager {
            fn bearer_token(&self) -> Result<AccessToken, Error> {
                self.access_token()
            }

            fn refused(&self, token: &AccessToken) {
                self.invalidate(token);
            }

            fn authorization_header(&self) -> Result<HeaderValue, Error> {
                <$manager>::authorization_header(self)
            }
        }
    )*};
}
manager_source!(TokenSource, UserTokens);

impl<S: BearerSource + ?Sized> BearerSource for Arc<S> {
    fn bearer_token(&self) -> Result<AccessToken, Error> {
        (**self).bearer_token()
    }

    fn refused(&self, token: &AccessToken) {
        (**self).refused(token);
    }

    fn authorization_header(&self) -> Result<HeaderValue, Error> {
        (**self).authorization_header()
    }
}

/// Reports the token `header` carried as refused.
fn refuse<S: BearerSource + ?Sized>(source: &S, header: &HeaderValue) {
    if let Some(token) = token_in(header) {
        source.refused(&token);
    }
}

/// A token that could not be had, as ureq's error (its `source` is obauth's [`Error`]).
fn token_error(error: Error) -> ureq::Error {
    ureq::Error::Other(Box::new(error))
}

/// A ureq [`Agent`] whose requests carry a bearer token from `S`: on a refused token, one
/// more attempt with a fresh one.
#[derive(Clone)]
pub struct BearerAgent<S> {
    agent: Agent,
    source: S,
    policy: BearerPolicy,
}

impl<S> std::fmt::Debug for BearerAgent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAgent")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S: BearerSource> BearerAgent<S> {
    /// Requests through `agent` with tokens from `source`, under the default policy.
    pub fn new(agent: Agent, source: S) -> Self {
        Self {
            agent,
            source,
            policy: BearerPolicy::default(),
        }
    }

    /// The same with `policy`.
    pub fn with_policy(mut self, policy: BearerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The agent requests go through.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Sends `request` with the token. A request that already has an `Authorization`
    /// header is sent as it is (unless the policy replaces it). The agent's own
    /// `http_status_as_error` is honoured for the answer handed back.
    pub fn run<B: AsSendBody + Clone>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<Body>, ureq::Error> {
        if !self.policy.should_set(request.headers()) {
            return self.agent.run(request);
        }
        let again = request.clone();
        let header = self.source.authorization_header().map_err(token_error)?;
        let response = self.send(request, header.clone())?;
        let response = match self
            .policy
            .after(response.status(), response.headers(), true, false)
        {
            After::Done => response,
            After::InvalidateOnly => {
                refuse(&self.source, &header);
                response
            }
            After::InvalidateAndRetry => {
                refuse(&self.source, &header);
                drop(response);
                let fresh = self.source.authorization_header().map_err(token_error)?;
                let response = self.send(again, fresh.clone())?;
                // A refused fresh token is not served again either.
                if self.policy.refuses(response.status(), response.headers()) {
                    refuse(&self.source, &fresh);
                }
                response
            }
        };
        let status = response.status();
        if self.agent.config().http_status_as_error() && status.as_u16() >= 400 {
            return Err(ureq::Error::StatusCode(status.as_u16()));
        }
        Ok(response)
    }

    fn send<B: AsSendBody>(
        &self,
        mut request: http::Request<B>,
        header: HeaderValue,
    ) -> Result<http::Response<Body>, ureq::Error> {
        request.headers_mut().insert(AUTHORIZATION, header);
        if !self.agent.config().http_status_as_error() {
            return self.agent.run(request);
        }
        // The answer is judged here before it becomes an error, so that its challenge can
        // be read: this request alone gets statuses as answers (a copy of the agent's
        // configuration, which an agent built with `http_status_as_error(false)` spares).
        let request = self
            .agent
            .configure_request(request)
            .http_status_as_error(false)
            .build();
        self.agent.run(request)
    }
}

/// ureq middleware: sets the bearer token from `S` on each request and, when the API
/// refuses it, invalidates it so that the next request gets a fresh one. It cannot send
/// the request again (see the module docs): use [`BearerAgent`] for that.
///
/// The `WWW-Authenticate` challenge is read only from an answer ureq hands over: build the
/// agent with `http_status_as_error(false)`. With ureq's default (`true`), a `401` arrives
/// as `Error::StatusCode(401)` without headers, and counts as a refusal only under
/// [`RetryOn::Any401`] or [`RetryOn::Never`].
#[derive(Clone)]
pub struct BearerMiddleware<S> {
    source: S,
    policy: BearerPolicy,
}

impl<S> std::fmt::Debug for BearerMiddleware<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerMiddleware")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S: BearerSource> BearerMiddleware<S> {
    /// Tokens from `source`, under the default policy.
    pub fn new(source: S) -> Self {
        Self {
            source,
            policy: BearerPolicy::default(),
        }
    }

    /// The same with `policy`.
    pub fn with_policy(mut self, policy: BearerPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl<S: BearerSource> Middleware for BearerMiddleware<S> {
    fn handle(
        &self,
        mut request: http::Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<http::Response<Body>, ureq::Error> {
        if !self.policy.should_set(request.headers()) {
            return next.handle(request);
        }
        let header = self.source.authorization_header().map_err(token_error)?;
        request.headers_mut().insert(AUTHORIZATION, header.clone());
        match next.handle(request) {
            Ok(response) => {
                if self.policy.refuses(response.status(), response.headers()) {
                    refuse(&self.source, &header);
                }
                Ok(response)
            }
            Err(ureq::Error::StatusCode(401))
                if matches!(self.policy.retry_on, RetryOn::Any401 | RetryOn::Never) =>
            {
                refuse(&self.source, &header);
                Err(ureq::Error::StatusCode(401))
            }
            Err(error) => Err(error),
        }
    }
}
