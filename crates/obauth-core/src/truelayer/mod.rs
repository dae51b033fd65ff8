//! TrueLayer's Authentication Server: configuration and one module per API area
//! (as the spec tags them), each holding that area's [`Operation`](crate::Operation)s.
//!
//! ```
//! use obauth_core::truelayer::{Environment, TrueLayerConfig};
//! use obauth_core::types::ClientSecret;
//!
//! let config = TrueLayerConfig::new(Environment::Sandbox, "sandbox-client-id")?
//!     .with_client_secret(ClientSecret::new("from-your-secret-store"));
//! assert_eq!(config.base_url().as_str(), "https://auth.truelayer-sandbox.com");
//! # Ok::<(), obauth_core::InvalidInput>(())
//! ```

pub mod auth_dialog;
pub mod auth_link;
pub mod debug;
pub mod loopback;
pub mod providers;
pub mod token;

use http::{HeaderValue, Uri};
use obauth_types::ClientSecret;

use crate::error::{Error, InvalidInput};
use crate::url::BaseUrl;
use crate::validate;
use crate::wire::USER_AGENT;

/// The production server.
pub const PRODUCTION_URL: &str = "https://auth.truelayer.com";
/// The sandbox server.
pub const SANDBOX_URL: &str = "https://auth.truelayer-sandbox.com";

/// Which TrueLayer server to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environment {
    /// `https://auth.truelayer.com`.
    Production,
    /// `https://auth.truelayer-sandbox.com`.
    Sandbox,
    /// Any other server with the same API, e.g. a local mock.
    Custom(BaseUrl),
}

impl Environment {
    /// The base URL of the API (which is also the auth dialog's).
    pub fn base_url(&self) -> BaseUrl {
        match self {
            Environment::Production => BaseUrl(PRODUCTION_URL.to_owned()),
            Environment::Sandbox => BaseUrl(SANDBOX_URL.to_owned()),
            Environment::Custom(base) => base.clone(),
        }
    }
}

/// A TrueLayer client's settings, and the factory of its operations.
///
/// Built once and shared: it holds the endpoints already parsed, the client id and the
/// optional secret (only the token grants need it).
#[derive(Clone, Debug)]
pub struct TrueLayerConfig {
    base: BaseUrl,
    client_id: String,
    client_secret: Option<ClientSecret>,
    user_agent: HeaderValue,
    endpoints: Endpoints,
}

#[derive(Clone, Debug)]
struct Endpoints {
    token: Uri,
    auth_uri: Uri,
    reauth_uri: Uri,
    debug: Uri,
    delete: Uri,
    providers: Uri,
}

impl TrueLayerConfig {
    /// Settings for `client_id` on `environment`, without a client secret.
    pub fn new(
        environment: Environment,
        client_id: impl Into<String>,
    ) -> Result<Self, InvalidInput> {
        let client_id = client_id.into();
        validate::required("client_id", &client_id)?;
        let base = environment.base_url();
        let endpoints = Endpoints {
            token: base.join("/connect/token")?,
            auth_uri: base.join("/v1/authuri")?,
            reauth_uri: base.join("/v1/reauthuri")?,
            debug: base.join("/api/debug")?,
            delete: base.join("/api/delete")?,
            providers: base.join("/api/providers")?,
        };
        Ok(Self {
            base,
            client_id,
            client_secret: None,
            user_agent: HeaderValue::from_static(USER_AGENT),
            endpoints,
        })
    }

    /// Adds the client secret the token grants authenticate with.
    pub fn with_client_secret(mut self, client_secret: ClientSecret) -> Self {
        self.client_secret = Some(client_secret);
        self
    }

    /// Replaces the `User-Agent` (default `obauth/<version>`).
    pub fn with_user_agent(mut self, user_agent: &str) -> Result<Self, InvalidInput> {
        self.user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| InvalidInput::new("user agent", "not a valid header value"))?;
        Ok(self)
    }

    /// The base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint, `{base}/connect/token`.
    pub fn token_url(&self) -> &Uri {
        &self.endpoints.token
    }

    /// Whether a client secret is configured.
    pub fn has_client_secret(&self) -> bool {
        self.client_secret.is_some()
    }

    fn client_secret(&self) -> Result<&ClientSecret, Error> {
        match &self.client_secret {
            Some(secret) if !secret.is_empty() => Ok(secret),
            _ => Err(Error::invalid(
                "client_secret",
                "this operation needs the client secret; set it with with_client_secret",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_and_validation() {
        let sandbox = TrueLayerConfig::new(Environment::Sandbox, "id").unwrap();
        assert_eq!(
            sandbox.endpoints.token,
            "https://auth.truelayer-sandbox.com/connect/token"
        );
        let production = TrueLayerConfig::new(Environment::Production, "id").unwrap();
        assert_eq!(
            production.endpoints.providers,
            "https://auth.truelayer.com/api/providers"
        );
        let local = Environment::Custom(BaseUrl::parse("http://127.0.0.1:8080/prefix/").unwrap());
        let local = TrueLayerConfig::new(local, "id").unwrap();
        assert_eq!(
            local.endpoints.debug,
            "http://127.0.0.1:8080/prefix/api/debug"
        );
        assert_eq!(
            TrueLayerConfig::new(Environment::Sandbox, " ")
                .unwrap_err()
                .what(),
            "client_id"
        );
        assert!(sandbox.clone().with_user_agent("bad\nagent").is_err());
        assert!(!sandbox.has_client_secret());
        assert!(matches!(
            sandbox.client_secret(),
            Err(Error::InvalidInput(_))
        ));
    }
}
