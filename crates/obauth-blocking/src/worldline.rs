//! The Worldline client: the realm token endpoint.

use std::sync::Arc;

use obauth_core::retry::RetryPolicy;
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, Operation};
use obauth_types::Scopes;
use obauth_types::worldline::Scope;
use obauth_types::worldline::token::TokenResponse;

use crate::transport::{self, HttpTransport, Timeouts};
use crate::{Error, execute};

/// A Worldline client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct WorldlineClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorldlineConfig,
    transport: Arc<dyn HttpTransport>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for WorldlineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldlineClient")
            .field("config", &self.inner.config)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`WorldlineClient`].
#[must_use]
pub struct WorldlineClientBuilder {
    base_url: BaseUrl,
    realm: String,
    client_id: String,
    auth: WorldlineAuth,
    user_agent: Option<String>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    transport: Option<Arc<dyn HttpTransport>>,
    agent: Option<ureq::Agent>,
}

impl WorldlineClientBuilder {
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

    /// Sends through your own `ureq::Agent`.
    pub fn agent(mut self, agent: ureq::Agent) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Sends through any [`HttpTransport`].
    pub fn transport(mut self, transport: Arc<dyn HttpTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<WorldlineClient, Error> {
        let mut config =
            WorldlineConfig::new(self.base_url, self.realm, self.client_id, self.auth)?;
        if let Some(user_agent) = &self.user_agent {
            config = config.with_user_agent(user_agent)?;
        }
        let transport = transport::choose(self.transport, self.agent, self.timeouts)?;
        Ok(WorldlineClient {
            inner: Arc::new(Inner {
                config,
                transport,
                retry: self.retry,
            }),
        })
    }
}

impl WorldlineClient {
    /// Starts building a client for `client_id` in `realm` at `base_url` (ending in `/auth`).
    pub fn builder(
        base_url: BaseUrl,
        realm: impl Into<String>,
        client_id: impl Into<String>,
        auth: WorldlineAuth,
    ) -> WorldlineClientBuilder {
        WorldlineClientBuilder {
            base_url,
            realm: realm.into(),
            client_id: client_id.into(),
            auth,
            user_agent: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            transport: None,
            agent: None,
        }
    }

    /// The settings this client sends with.
    pub fn config(&self) -> &WorldlineConfig {
        &self.inner.config
    }

    /// Runs any core operation through this client's transport and retry policy.
    pub fn execute<O: Operation + Sync>(&self, op: &O) -> Result<O::Output, Error> {
        execute(&*self.inner.transport, self.inner.retry, op)
    }

    /// `POST …/protocol/openid-connect/token`, `client_credentials`. For a cached token,
    /// use [`crate::TokenSource::worldline`].
    pub fn token(&self, scopes: Scopes<Scope>) -> Result<TokenResponse, Error> {
        self.execute(&self.config().token(scopes))
    }
}
