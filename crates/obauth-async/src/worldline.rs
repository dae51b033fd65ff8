//! The Worldline client: the realm token endpoint.

use std::sync::Arc;

use obauth_core::client::{Bound, WorldlineSettings};
use obauth_core::retry::RetryPolicy;
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, Operation};
use obauth_types::Scopes;
use obauth_types::worldline::Scope;
use obauth_types::worldline::token::TokenResponse;

use crate::transport::{self, HttpTransport};
use crate::{Error, execute};

/// A Worldline client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct WorldlineClient {
    inner: Arc<Bound<WorldlineConfig, dyn HttpTransport>>,
}

/// Builds a [`WorldlineClient`].
#[must_use]
pub struct WorldlineClientBuilder {
    settings: WorldlineSettings,
    transport: transport::Choice,
}

impl WorldlineClientBuilder {
    obauth_core::client_builder_setters!();

    /// Sends through your own `reqwest::Client`.
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.transport.native = Some(client);
        self
    }

    /// Sends through any [`HttpTransport`].
    pub fn transport(mut self, transport: Arc<dyn HttpTransport>) -> Self {
        self.transport.custom = Some(transport);
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<WorldlineClient, Error> {
        let bound = transport::bind(self.transport, self.settings.into_config()?)?;
        Ok(WorldlineClient {
            inner: Arc::new(bound),
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
            settings: WorldlineSettings::new(base_url, realm.into(), client_id.into(), auth),
            transport: transport::Choice::default(),
        }
    }

    /// The settings this client sends with.
    pub fn config(&self) -> &WorldlineConfig {
        self.inner.config()
    }

    /// Runs any core operation through this client's transport and retry policy.
    pub async fn execute<O: Operation + Sync>(&self, op: &O) -> Result<O::Output, Error> {
        execute(
            &**self.inner.transport(),
            self.inner.retry(),
            op,
            obauth_core::CallLimit::Budget(self.inner.call_timeout()),
        )
        .await
    }

    pub(crate) fn transport(&self) -> Arc<dyn HttpTransport> {
        Arc::clone(self.inner.transport())
    }

    pub(crate) fn retry(&self) -> RetryPolicy {
        self.inner.retry()
    }

    /// `POST …/protocol/openid-connect/token`, `client_credentials`. For a cached token,
    /// use [`crate::TokenSource::worldline`].
    pub async fn token(&self, scopes: Scopes<Scope>) -> Result<TokenResponse, Error> {
        self.execute(&self.config().token(scopes)).await
    }
}
