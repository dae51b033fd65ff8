//! Calling another API with obauth's tokens: middleware that sets
//! `Authorization: Bearer …` and, when the API says the token is invalid, invalidates it,
//! fetches a fresh one and sends the request once more (if its body can be sent again).
//!
//! - [`BearerMiddleware`] for reqwest-middleware (feature `reqwest-middleware`):
//!   `ClientBuilder::new(reqwest::Client::new()).with(BearerMiddleware::new(source)).build()`.
//! - [`BearerLayer`] for tower (feature `tower`): any `Service<http::Request<B>>`, such as a
//!   hyper-util client, a tonic channel or a tower-http stack.
//!
//! Both take a [`BearerSource`]: [`TokenSource`], [`UserTokens`], or your own type. What
//! counts as "the token is invalid" is [`BearerPolicy`]'s call (by default a `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3.1); a `403` never is, and
//! no request is sent more than twice.

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use obauth_core::bearer::{After, BearerPolicy};
use obauth_types::AccessToken;

use crate::{Error, TokenSource, UserTokens};

/// Where the middleware gets its tokens: [`TokenSource`], [`UserTokens`], or your own.
///
/// Your own type writes [`bearer_token`](Self::bearer_token) and
/// [`refused`](Self::refused); [`authorization_header`](Self::authorization_header) builds
/// the header from the token unless the type has a cheaper way (obauth's managers keep the
/// cached token's header, built once).
#[async_trait]
pub trait BearerSource: Send + Sync + 'static {
    /// The access token to send (cached while fresh).
    async fn bearer_token(&self) -> Result<AccessToken, Error>;

    /// The API refused `token`: never serve it again.
    fn refused(&self, token: &AccessToken);

    /// The `Authorization` value that carries [`bearer_token`](Self::bearer_token)'s token,
    /// as [`obauth_core::bearer::authorization`] builds it. An override must give exactly
    /// that value (`Bearer ` and the token): the middleware reads the token back from it
    /// ([`obauth_core::bearer::token_in`]) to report it [`refused`](Self::refused).
    async fn authorization_header(&self) -> Result<HeaderValue, Error> {
        Ok(obauth_core::bearer::authorization(
            &self.bearer_token().await?,
        )?)
    }
}

macro_rules! manager_source {
    ($($manager:ty),*) => {$(
        #[async_trait]
        impl BearerSource for $manager {
            async fn bearer_token(&self) -> Result<AccessToken, Error> {
                self.access_token().await
            }

            fn refused(&self, token: &AccessToken) {
                self.invalidate(token);
            }

            async fn authorization_header(&self) -> Result<HeaderValue, Error> {
                <$manager>::authorization_header(self).await
            }
        }
    )*};
}
manager_source!(TokenSource, UserTokens);

#[async_trait]
impl<S: BearerSource + ?Sized> BearerSource for Arc<S> {
    async fn bearer_token(&self) -> Result<AccessToken, Error> {
        (**self).bearer_token().await
    }

    fn refused(&self, token: &AccessToken) {
        (**self).refused(token);
    }

    async fn authorization_header(&self) -> Result<HeaderValue, Error> {
        (**self).authorization_header().await
    }
}

/// Reports the token `header` carried as refused.
fn refuse<S: BearerSource + ?Sized>(source: &S, header: &HeaderValue) {
    if let Some(token) = obauth_core::bearer::token_in(header) {
        source.refused(&token);
    }
}

#[cfg(feature = "reqwest-middleware")]
mod reqwest_mw {
    use super::*;
    use reqwest_middleware::{Middleware, Next};

    /// reqwest-middleware's [`Middleware`]: the bearer token from `S` on every request,
    /// and one more attempt with a fresh token when the API refuses it (bodies that
    /// `reqwest::Request::try_clone` can copy; a stream is not sent again).
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

    #[async_trait]
    impl<S: BearerSource> Middleware for BearerMiddleware<S> {
        async fn handle(
            &self,
            mut request: reqwest::Request,
            extensions: &mut http::Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            if !self.policy.should_set(request.headers()) {
                return next.run(request, extensions).await;
            }
            let header = self
                .source
                .authorization_header()
                .await
                .map_err(reqwest_middleware::Error::middleware)?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, header.clone());
            let replay = request.try_clone();
            let response = next.clone().run(request, extensions).await?;
            let after = self.policy.after(
                response.status(),
                response.headers(),
                replay.is_some(),
                false,
            );
            match (after, replay) {
                (After::Done, _) => Ok(response),
                (After::InvalidateOnly, _) | (After::InvalidateAndRetry, None) => {
                    refuse(&self.source, &header);
                    Ok(response)
                }
                (After::InvalidateAndRetry, Some(mut again)) => {
                    refuse(&self.source, &header);
                    drop(response);
                    let fresh = self
                        .source
                        .authorization_header()
                        .await
                        .map_err(reqwest_middleware::Error::middleware)?;
                    again
                        .headers_mut()
                        .insert(http::header::AUTHORIZATION, fresh.clone());
                    let response = next.run(again, extensions).await?;
                    // A refused fresh token is not served again either.
                    if self.policy.refuses(response.status(), response.headers()) {
                        refuse(&self.source, &fresh);
                    }
                    Ok(response)
                }
            }
        }
    }
}

#[cfg(feature = "reqwest-middleware")]
pub use reqwest_mw::BearerMiddleware;

#[cfg(feature = "tower")]
mod tower_layer {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use tower::{Layer, Service};

    use super::*;

    /// The error of a [`BearerService`]: the inner service's, or obauth's when no token
    /// could be had.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// A request body that can say whether it can be sent again, and give a copy if so.
    pub trait ReplayBody: Sized {
        /// A copy to send again, or `None` for a body that can be read only once.
        fn try_clone(&self) -> Option<Self>;
    }

    macro_rules! replayable {
        ($($body:ty),* $(,)?) => {$(
            impl ReplayBody for $body {
                fn try_clone(&self) -> Option<Self> {
                    Some(self.clone())
                }
            }
        )*};
    }
    replayable!(
        (),
        String,
        Vec<u8>,
        &'static str,
        &'static [u8],
        Bytes,
        http_body_util::Full<Bytes>,
        http_body_util::Empty<Bytes>,
    );

    impl<E> ReplayBody for http_body_util::combinators::BoxBody<Bytes, E> {
        /// A boxed body is a stream: never sent again.
        fn try_clone(&self) -> Option<Self> {
            None
        }
    }

    impl<E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
        /// A boxed body is a stream: never sent again.
        fn try_clone(&self) -> Option<Self> {
            None
        }
    }

    /// tower [`Layer`] of [`BearerService`].
    #[derive(Clone)]
    pub struct BearerLayer<S> {
        source: S,
        policy: BearerPolicy,
    }

    impl<S> std::fmt::Debug for BearerLayer<S> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("BearerLayer")
                .field("policy", &self.policy)
                .finish_non_exhaustive()
        }
    }

    impl<S: BearerSource + Clone> BearerLayer<S> {
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

    impl<S: Clone, I> Layer<I> for BearerLayer<S> {
        type Service = BearerService<I, S>;

        fn layer(&self, inner: I) -> Self::Service {
            BearerService {
                inner,
                source: self.source.clone(),
                policy: self.policy,
            }
        }
    }

    /// A service that sends `http::Request`s through `I` with the bearer token from `S`,
    /// and once more with a fresh token when the API refuses it (bodies whose
    /// [`ReplayBody::try_clone`] gives a copy).
    #[derive(Clone)]
    pub struct BearerService<I, S> {
        inner: I,
        source: S,
        policy: BearerPolicy,
    }

    impl<I, S> std::fmt::Debug for BearerService<I, S> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("BearerService")
                .field("policy", &self.policy)
                .finish_non_exhaustive()
        }
    }

    fn try_clone_request<B: ReplayBody>(request: &http::Request<B>) -> Option<http::Request<B>> {
        let body = request.body().try_clone()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    impl<I, S, B, RB> Service<http::Request<B>> for BearerService<I, S>
    where
        I: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
        I::Future: Send,
        I::Error: Into<BoxError>,
        S: BearerSource + Clone,
        B: ReplayBody + Send + 'static,
        RB: Send + 'static,
    {
        type Response = http::Response<RB>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
            // The service made ready is the one to call; its clone stays for next time.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let (source, policy) = (self.source.clone(), self.policy);
            Box::pin(async move {
                if !policy.should_set(request.headers()) {
                    return inner.call(request).await.map_err(Into::into);
                }
                let header = source.authorization_header().await?;
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, header.clone());
                let replay = try_clone_request(&request);
                let response = inner.call(request).await.map_err(Into::into)?;
                let after = policy.after(
                    response.status(),
                    response.headers(),
                    replay.is_some(),
                    false,
                );
                match (after, replay) {
                    (After::Done, _) => Ok(response),
                    (After::InvalidateOnly, _) | (After::InvalidateAndRetry, None) => {
                        refuse(&source, &header);
                        Ok(response)
                    }
                    (After::InvalidateAndRetry, Some(mut again)) => {
                        refuse(&source, &header);
                        drop(response);
                        let fresh = source.authorization_header().await?;
                        again
                            .headers_mut()
                            .insert(http::header::AUTHORIZATION, fresh.clone());
                        std::future::poll_fn(|cx| inner.poll_ready(cx))
                            .await
                            .map_err(Into::into)?;
                        let response = inner.call(again).await.map_err(Into::into)?;
                        // A refused fresh token is not served again either.
                        if policy.refuses(response.status(), response.headers()) {
                            refuse(&source, &fresh);
                        }
                        Ok(response)
                    }
                }
            })
        }
    }
}

#[cfg(feature = "tower")]
pub use tower_layer::{BearerLayer, BearerService, BoxError, ReplayBody};
