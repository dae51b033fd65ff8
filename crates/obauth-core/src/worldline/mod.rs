//! Worldline Open Banking's token endpoint, a Keycloak realm:
//! `POST {base}/realms/{realm}/protocol/openid-connect/token`.
//!
//! `base` is the spec's server URL, which ends in `/auth` (`https://HOST/auth`).
//!
//! ```
//! use obauth_core::BaseUrl;
//! use obauth_core::types::ClientSecret;
//! use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
//!
//! let base = BaseUrl::parse("https://openbanking.example/auth")?;
//! let config = WorldlineConfig::new(
//!     base,
//!     "my-realm",
//!     "Worldline-000021",
//!     WorldlineAuth::ClientSecret(ClientSecret::new("from-your-secret-store")),
//! )?;
//! assert_eq!(
//!     config.token_url().to_string(),
//!     "https://openbanking.example/auth/realms/my-realm/protocol/openid-connect/token"
//! );
//! # Ok::<(), obauth_core::InvalidInput>(())
//! ```

pub mod assertion;
mod signer;
pub mod token;

use std::fmt;

use http::{HeaderValue, Uri};
use obauth_types::ClientSecret;
use percent_encoding::utf8_percent_encode;

use crate::error::InvalidInput;
use crate::url::BaseUrl;
use crate::validate;
use crate::wire::{QUERY_COMPONENT, USER_AGENT};
use assertion::AssertionConfig;

/// How the client authenticates at the token endpoint.
#[derive(Clone)]
pub enum WorldlineAuth {
    /// `client_id` + `client_secret` in the form body.
    ClientSecret(ClientSecret),
    /// An RS256 client-assertion JWT, signed afresh for every request.
    Assertion(AssertionConfig),
}

impl fmt::Debug for WorldlineAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldlineAuth::ClientSecret(secret) => {
                f.debug_tuple("ClientSecret").field(secret).finish()
            }
            WorldlineAuth::Assertion(config) => f.debug_tuple("Assertion").field(config).finish(),
        }
    }
}

/// A Worldline client's settings, and the factory of its token requests.
#[derive(Clone, Debug)]
pub struct WorldlineConfig {
    base: BaseUrl,
    realm: String,
    client_id: String,
    auth: WorldlineAuth,
    token_url: Uri,
    issuer: String,
    user_agent: HeaderValue,
}

impl WorldlineConfig {
    /// Settings for `client_id` in `realm` at `base` (the URL ending in `/auth`).
    ///
    /// With [`WorldlineAuth::Assertion`] and no audience set on it, the assertion's `aud`
    /// is the realm's issuer URL, `{base}/realms/{realm}`.
    pub fn new(
        base: BaseUrl,
        realm: impl Into<String>,
        client_id: impl Into<String>,
        auth: WorldlineAuth,
    ) -> Result<Self, InvalidInput> {
        let realm = realm.into();
        let client_id = client_id.into();
        validate::required("realm", &realm)?;
        if realm == "." || realm == ".." {
            return Err(InvalidInput::new(
                "realm",
                "must not be `.` or `..` (it would change the token URL's path)",
            ));
        }
        validate::required("client_id", &client_id)?;
        if let WorldlineAuth::ClientSecret(secret) = &auth {
            validate::required("client_secret", secret.expose_secret())?;
        }
        let realm_segment: String = utf8_percent_encode(&realm, QUERY_COMPONENT).collect();
        let issuer = format!("{}/realms/{realm_segment}", base.as_str());
        let token_url = base.join(&format!(
            "/realms/{realm_segment}/protocol/openid-connect/token"
        ))?;
        Ok(Self {
            base,
            realm,
            client_id,
            auth,
            token_url,
            issuer,
            user_agent: HeaderValue::from_static(USER_AGENT),
        })
    }

    /// Replaces the `User-Agent` (default `obauth/<version>`).
    pub fn with_user_agent(mut self, user_agent: &str) -> Result<Self, InvalidInput> {
        self.user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| InvalidInput::new("user agent", "not a valid header value"))?;
        Ok(self)
    }

    /// The base URL (ending in `/auth`).
    pub fn base_url(&self) -> &BaseUrl {
        &self.base
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Uri {
        &self.token_url
    }

    /// The realm's issuer URL, `{base}/realms/{realm}`: the default assertion audience.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How the client authenticates.
    pub fn auth(&self) -> &WorldlineAuth {
        &self.auth
    }

    /// Stable text naming the auth method, for cache keys (never the secret itself).
    pub fn auth_method(&self) -> &'static str {
        match self.auth {
            WorldlineAuth::ClientSecret(_) => "client_secret_post",
            WorldlineAuth::Assertion(_) => "private_key_jwt",
        }
    }

    pub(crate) fn user_agent(&self) -> &HeaderValue {
        &self.user_agent
    }
}
