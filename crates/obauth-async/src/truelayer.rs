//! The TrueLayer client: one method per operation of the Authentication Server.

use std::sync::Arc;

use obauth_core::Operation;
use obauth_core::client::{Bound, TrueLayerSettings};
use obauth_core::retry::RetryPolicy;
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_types::ClientSecret;

use crate::transport::{self, HttpTransport};
use crate::{Error, execute};

/// A TrueLayer client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct TrueLayerClient {
    inner: Arc<Bound<TrueLayerConfig, dyn HttpTransport>>,
}

/// Builds a [`TrueLayerClient`].
#[must_use]
pub struct TrueLayerClientBuilder {
    settings: TrueLayerSettings,
    transport: transport::Choice,
}

impl TrueLayerClientBuilder {
    /// The client secret (the token grants need it; links and providers do not).
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.settings.client_secret = Some(secret);
        self
    }

    obauth_core::client_builder_setters!();

    /// Sends through your own `reqwest::Client` (see [`crate::ReqwestTransport::with_client`]).
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.transport.native = Some(client);
        self
    }

    /// Sends through any [`HttpTransport`]; `timeouts` and `reqwest_client` are then unused.
    pub fn transport(mut self, transport: Arc<dyn HttpTransport>) -> Self {
        self.transport.custom = Some(transport);
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<TrueLayerClient, Error> {
        let bound = transport::bind(self.transport, self.settings.into_config()?)?;
        Ok(TrueLayerClient {
            inner: Arc::new(bound),
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
            settings: TrueLayerSettings::new(environment, client_id.into()),
            transport: transport::Choice::default(),
        }
    }

    /// The settings this client sends with.
    pub fn config(&self) -> &TrueLayerConfig {
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

    obauth_core::truelayer_client_methods!(async await);
}
