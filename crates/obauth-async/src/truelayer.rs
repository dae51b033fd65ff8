//! The TrueLayer client: one method per operation of the Authentication Server.

use std::sync::Arc;

use obauth_core::retry::RetryPolicy;
use obauth_core::truelayer::auth_dialog::AuthDialog;
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::{InvalidInput, Operation};
use obauth_types::truelayer::Scope;
use obauth_types::truelayer::debug::DebugIdResponse;
use obauth_types::truelayer::providers::{Provider, ProvidersQuery};
use obauth_types::truelayer::token::TokenResponse;
use obauth_types::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken, Scopes,
};

use crate::transport::{self, HttpTransport, Timeouts};
use crate::{Error, execute};

/// A TrueLayer client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct TrueLayerClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: TrueLayerConfig,
    transport: Arc<dyn HttpTransport>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TrueLayerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrueLayerClient")
            .field("config", &self.inner.config)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TrueLayerClient`].
#[must_use]
pub struct TrueLayerClientBuilder {
    environment: Environment,
    client_id: String,
    client_secret: Option<ClientSecret>,
    user_agent: Option<String>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    transport: Option<Arc<dyn HttpTransport>>,
    reqwest: Option<reqwest::Client>,
}

impl TrueLayerClientBuilder {
    /// The client secret (the token grants need it; links and providers do not).
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// The `User-Agent` (default `obauth/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Connect and total timeouts per attempt (defaults: 10 s and 30 s). Each must be above
    /// zero and at most [`Timeouts::MAX`] (an hour); `build` refuses others.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends through your own `reqwest::Client` (see [`crate::ReqwestTransport::with_client`]).
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.reqwest = Some(client);
        self
    }

    /// Sends through any [`HttpTransport`]; `timeouts` and `reqwest_client` are then unused.
    pub fn transport(mut self, transport: Arc<dyn HttpTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<TrueLayerClient, Error> {
        let mut config = TrueLayerConfig::new(self.environment, self.client_id)?;
        if let Some(secret) = self.client_secret {
            config = config.with_client_secret(secret);
        }
        if let Some(user_agent) = &self.user_agent {
            config = config.with_user_agent(user_agent)?;
        }
        let transport = transport::choose(self.transport, self.reqwest, self.timeouts)?;
        Ok(TrueLayerClient {
            inner: Arc::new(Inner {
                config,
                transport,
                retry: self.retry,
            }),
        })
    }
}

impl TrueLayerClient {
    /// Starts building a client for `client_id` on `environment`.
    pub fn builder(
        environment: Environment,
        client_id: impl Into<String>,
    ) -> TrueLayerClientBuilder {
        TrueLayerClientBuilder {
            environment,
            client_id: client_id.into(),
            client_secret: None,
            user_agent: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            transport: None,
            reqwest: None,
        }
    }

    /// The settings this client sends with.
    pub fn config(&self) -> &TrueLayerConfig {
        &self.inner.config
    }

    /// Runs any core operation through this client's transport and retry policy.
    pub async fn execute<O: Operation + Sync>(&self, op: &O) -> Result<O::Output, Error> {
        execute(&*self.inner.transport, self.inner.retry, op).await
    }

    /// `POST /connect/token`, `authorization_code`: exchanges the code from the redirect.
    /// Never retried (the code is single-use).
    pub async fn exchange_code(
        &self,
        code: AuthorizationCode,
        redirect_uri: impl Into<String>,
        code_verifier: Option<CodeVerifier>,
    ) -> Result<TokenResponse, Error> {
        self.execute(
            &self
                .config()
                .exchange_code(code, redirect_uri, code_verifier),
        )
        .await
    }

    /// `POST /connect/token`, `refresh_token`. Store the rotated refresh token it returns;
    /// [`crate::UserTokens`] does that for you.
    pub async fn refresh(&self, refresh_token: RefreshToken) -> Result<TokenResponse, Error> {
        self.execute(&self.config().refresh(refresh_token)).await
    }

    /// `POST /connect/token`, `client_credentials`. For a cached token, use
    /// [`crate::TokenSource::truelayer`].
    pub async fn client_credentials(&self, scopes: Scopes<Scope>) -> Result<TokenResponse, Error> {
        self.execute(&self.config().client_credentials(scopes))
            .await
    }

    /// `POST /v1/authuri`: a direct bank authentication link.
    pub async fn create_auth_link(&self, link: AuthLink) -> Result<String, Error> {
        self.execute(&self.config().create_auth_link(link)).await
    }

    /// `POST /v1/reauthuri`: a reauthentication link.
    pub async fn create_reauth_link(&self, link: ReauthLink) -> Result<String, Error> {
        self.execute(&self.config().create_reauth_link(link)).await
    }

    /// `POST /api/debug`: a debug id for TrueLayer support.
    pub async fn create_debug_id(
        &self,
        access_token: AccessToken,
    ) -> Result<DebugIdResponse, Error> {
        self.execute(&self.config().create_debug_id(access_token))
            .await
    }

    /// `DELETE /api/debug`: deletes the debug id of the credential behind `access_token`.
    pub async fn delete_debug_id(
        &self,
        access_token: AccessToken,
    ) -> Result<DebugIdResponse, Error> {
        self.execute(&self.config().delete_debug_id(access_token))
            .await
    }

    /// `DELETE /api/delete`: deletes the connection behind `access_token`.
    pub async fn delete_credential(&self, access_token: AccessToken) -> Result<(), Error> {
        self.execute(&self.config().delete_credential(access_token))
            .await
    }

    /// `GET /api/providers`.
    pub async fn providers(&self, query: ProvidersQuery) -> Result<Vec<Provider>, Error> {
        self.execute(&self.config().providers(query)).await
    }

    /// The hosted auth-dialog URL (no network).
    pub fn auth_dialog_url(&self, dialog: &AuthDialog) -> Result<String, InvalidInput> {
        self.config().auth_dialog_url(dialog)
    }
}
