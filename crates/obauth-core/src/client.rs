//! What every client has, whatever binding sends its requests: the settings a client
//! builder collects and their checks, written once for `obauth-async` and
//! `obauth-blocking`, which add only their transport options.
//!
//! The bindings' builders hold a [`TrueLayerSettings`] or a [`WorldlineSettings`] and get
//! their common setters from [`client_builder_setters!`](crate::client_builder_setters);
//! their TrueLayer clients get every operation method from
//! [`truelayer_client_methods!`](crate::truelayer_client_methods), `async` or not. These
//! macros are for the bindings, not for applications.

use std::sync::Arc;
use std::time::Duration;

use obauth_types::ClientSecret;

use crate::call::Timeouts;
use crate::error::{Error, InvalidInput};
use crate::retry::RetryPolicy;
use crate::truelayer::{Environment, TrueLayerConfig};
use crate::url::BaseUrl;
use crate::worldline::{WorldlineAuth, WorldlineConfig};

/// The settings every client has.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// The `User-Agent`; `obauth/<version>` when unset.
    pub user_agent: Option<String>,
    /// The connect timeout of each attempt, and the total time of a call: its attempts and
    /// the pauses between them share `total`.
    pub timeouts: Timeouts,
    /// When and how often to retry.
    pub retry: RetryPolicy,
}

/// A client's checked settings bound to a binding's transport (`T`): what a client holds.
pub struct Bound<C, T: ?Sized> {
    config: C,
    transport: Arc<T>,
    retry: RetryPolicy,
    call_timeout: Duration,
}

impl<C, T: ?Sized> Bound<C, T> {
    /// `config` sent through `transport` under `retry`; each call ends within the default
    /// total timeout (30 s), retries included.
    pub fn new(config: C, transport: Arc<T>, retry: RetryPolicy) -> Self {
        Self {
            config,
            transport,
            retry,
            call_timeout: Timeouts::default().total,
        }
    }

    /// The time one call may take, every attempt and pause included.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }

    /// The time one call may take, every attempt and pause included (the total timeout):
    /// see [`crate::Call::with_budget`].
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The settings the client sends with.
    pub fn config(&self) -> &C {
        &self.config
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<T> {
        &self.transport
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }
}

impl<C: std::fmt::Debug, T: ?Sized> std::fmt::Debug for Bound<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What a client builder was given to send with: a transport of the caller's own (`T`), the
/// caller's own HTTP client (`N`: a `reqwest::Client`, a `ureq::Agent`), or neither.
pub struct TransportChoice<T: ?Sized, N> {
    /// The caller's own transport: it wins, and brings its own timeouts.
    pub custom: Option<Arc<T>>,
    /// The caller's own HTTP client, to wrap in the binding's transport.
    pub native: Option<N>,
}

impl<T: ?Sized, N> Default for TransportChoice<T, N> {
    fn default() -> Self {
        Self {
            custom: None,
            native: None,
        }
    }
}

impl<T: ?Sized, N> TransportChoice<T, N> {
    /// Binds the checked `settings` to the transport the client ends up with: the caller's
    /// own transport as it is; otherwise, once the timeouts are checked, what `make` builds
    /// from the caller's HTTP client, if any, and those timeouts.
    pub fn bind<C>(
        self,
        (config, common): (C, ClientSettings),
        make: impl FnOnce(Option<N>, Timeouts) -> Result<Arc<T>, Error>,
    ) -> Result<Bound<C, T>, Error> {
        common.retry.check()?;
        // Checked with a transport of the caller's own too: `total` bounds every call.
        common.timeouts.check()?;
        if common.retry.max_attempts > 1 && common.retry.base_delay >= common.timeouts.total {
            // The first pause alone would use up the call: no retry could ever be made.
            return Err(InvalidInput::new(
                "retry policy",
                "base_delay must be shorter than the total timeout, which a call's attempts and pauses share",
            )
            .into());
        }
        let transport = match self.custom {
            Some(custom) => custom,
            None => make(self.native, common.timeouts)?,
        };
        Ok(Bound::new(config, transport, common.retry).with_call_timeout(common.timeouts.total))
    }
}

/// A TrueLayer client's settings, before they are checked.
#[derive(Clone, Debug)]
pub struct TrueLayerSettings {
    /// Production or sandbox (or a base URL of your own, for tests).
    pub environment: Environment,
    /// The client id from TrueLayer Console.
    pub client_id: String,
    /// The client secret, which the token grants need.
    pub client_secret: Option<ClientSecret>,
    /// What every client has.
    pub common: ClientSettings,
}

impl TrueLayerSettings {
    /// Settings for `client_id` on `environment`, the rest at their defaults.
    pub fn new(environment: Environment, client_id: String) -> Self {
        Self {
            environment,
            client_id,
            client_secret: None,
            common: ClientSettings::default(),
        }
    }

    /// Checks the settings and builds the client's [`TrueLayerConfig`]; the common
    /// settings come back for the binding's transport.
    pub fn into_config(self) -> Result<(TrueLayerConfig, ClientSettings), Error> {
        let mut config = TrueLayerConfig::new(self.environment, self.client_id)?;
        if let Some(secret) = self.client_secret {
            config = config.with_client_secret(secret);
        }
        if let Some(user_agent) = &self.common.user_agent {
            config = config.with_user_agent(user_agent)?;
        }
        Ok((config, self.common))
    }
}

/// A Worldline client's settings, before they are checked.
#[derive(Clone, Debug)]
pub struct WorldlineSettings {
    /// The base URL, ending in `/auth`.
    pub base_url: BaseUrl,
    /// The realm from onboarding.
    pub realm: String,
    /// The client id.
    pub client_id: String,
    /// A client secret or a client assertion.
    pub auth: WorldlineAuth,
    /// What every client has.
    pub common: ClientSettings,
}

impl WorldlineSettings {
    /// Settings for `client_id` in `realm` at `base_url`, the rest at their defaults.
    pub fn new(base_url: BaseUrl, realm: String, client_id: String, auth: WorldlineAuth) -> Self {
        Self {
            base_url,
            realm,
            client_id,
            auth,
            common: ClientSettings::default(),
        }
    }

    /// Checks the settings and builds the client's [`WorldlineConfig`]; the common
    /// settings come back for the binding's transport.
    pub fn into_config(self) -> Result<(WorldlineConfig, ClientSettings), Error> {
        let mut config =
            WorldlineConfig::new(self.base_url, self.realm, self.client_id, self.auth)?;
        if let Some(user_agent) = &self.common.user_agent {
            config = config.with_user_agent(user_agent)?;
        }
        Ok((config, self.common))
    }
}

/// The setters every client builder has, for a builder with a `settings` field holding a
/// [`TrueLayerSettings`] or [`WorldlineSettings`]. For the bindings.
#[doc(hidden)]
#[macro_export]
macro_rules! client_builder_setters {
    () => {
        /// The `User-Agent` (default `obauth/<version>`).
        pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
            self.settings.common.user_agent = Some(user_agent.into());
            self
        }

        /// The connect timeout of each attempt and the total time of each call, retries and
        /// the pauses between them included (defaults: 10 s and 30 s). Each must be
        /// above zero and at most [`Timeouts::MAX`](crate::Timeouts::MAX) (an hour); `build`
        /// refuses others.
        pub fn timeouts(mut self, timeouts: $crate::Timeouts) -> Self {
            self.settings.common.timeouts = timeouts;
            self
        }

        /// The retry policy (default:
        /// [`RetryPolicy::default`]($crate::retry::RetryPolicy::default)); `build` refuses
        /// one that [`RetryPolicy::check`]($crate::retry::RetryPolicy::check) refuses.
        pub fn retry_policy(mut self, retry: $crate::retry::RetryPolicy) -> Self {
            self.settings.common.retry = retry;
            self
        }
    };
}

/// Every TrueLayer operation as a client method, for a client with `config()` and
/// `execute(&op)`: `truelayer_client_methods!(async await)` for an async client,
/// `truelayer_client_methods!()` for a blocking one. For the bindings.
#[doc(hidden)]
#[macro_export]
macro_rules! truelayer_client_methods {
    ($($async:ident $await:ident)?) => {
        /// `POST /connect/token`, `authorization_code`: exchanges the code from the redirect.
        /// Never retried (the code is single-use).
        pub $($async)? fn exchange_code(
            &self,
            code: $crate::types::AuthorizationCode,
            redirect_uri: impl Into<String>,
            code_verifier: Option<$crate::types::CodeVerifier>,
        ) -> Result<$crate::types::truelayer::token::TokenResponse, $crate::Error> {
            self.execute(&self.config().exchange_code(code, redirect_uri, code_verifier))
                $(.$await)?
        }

        /// `POST /connect/token`, `refresh_token`. Store the rotated refresh token it
        /// returns; [`UserTokens`](crate::UserTokens) does that for you.
        pub $($async)? fn refresh(
            &self,
            refresh_token: $crate::types::RefreshToken,
        ) -> Result<$crate::types::truelayer::token::TokenResponse, $crate::Error> {
            self.execute(&self.config().refresh(refresh_token))$(.$await)?
        }

        /// `POST /connect/token`, `client_credentials`. For a cached token, use
        /// [`TokenSource::truelayer`](crate::TokenSource::truelayer).
        pub $($async)? fn client_credentials(
            &self,
            scopes: $crate::types::Scopes<$crate::types::truelayer::Scope>,
        ) -> Result<$crate::types::truelayer::token::TokenResponse, $crate::Error> {
            self.execute(&self.config().client_credentials(scopes))$(.$await)?
        }

        /// `POST /v1/authuri`: a direct bank authentication link.
        pub $($async)? fn create_auth_link(
            &self,
            link: $crate::truelayer::auth_link::AuthLink,
        ) -> Result<String, $crate::Error> {
            self.execute(&self.config().create_auth_link(link))$(.$await)?
        }

        /// `POST /v1/reauthuri`: a reauthentication link.
        pub $($async)? fn create_reauth_link(
            &self,
            link: $crate::truelayer::auth_link::ReauthLink,
        ) -> Result<String, $crate::Error> {
            self.execute(&self.config().create_reauth_link(link))$(.$await)?
        }

        /// `POST /api/debug`: a debug id for TrueLayer support.
        pub $($async)? fn create_debug_id(
            &self,
            access_token: $crate::types::AccessToken,
        ) -> Result<$crate::types::truelayer::debug::DebugIdResponse, $crate::Error> {
            self.execute(&self.config().create_debug_id(access_token))$(.$await)?
        }

        /// `DELETE /api/debug` as the spec describes it: no body, no parameter.
        pub $($async)? fn delete_debug_id(
            &self,
        ) -> Result<$crate::types::truelayer::debug::DebugIdResponse, $crate::Error> {
            self.execute(&self.config().delete_debug_id())$(.$await)?
        }

        /// `DELETE /api/debug` with `{"access_token": …}` as its body, naming the credential
        /// whose debug id to delete: for a server known to want it (the spec gives the
        /// operation no body).
        pub $($async)? fn delete_debug_id_with_token(
            &self,
            access_token: $crate::types::AccessToken,
        ) -> Result<$crate::types::truelayer::debug::DebugIdResponse, $crate::Error> {
            self.execute(&self.config().delete_debug_id_with_token(access_token))$(.$await)?
        }

        /// `DELETE /api/delete`: deletes the connection behind `access_token`.
        pub $($async)? fn delete_credential(
            &self,
            access_token: $crate::types::AccessToken,
        ) -> Result<(), $crate::Error> {
            self.execute(&self.config().delete_credential(access_token))$(.$await)?
        }

        /// `GET /api/providers`.
        pub $($async)? fn providers(
            &self,
            query: $crate::types::truelayer::providers::ProvidersQuery,
        ) -> Result<Vec<$crate::types::truelayer::providers::Provider>, $crate::Error> {
            self.execute(&self.config().providers(query))$(.$await)?
        }

        /// The hosted auth-dialog URL (no network).
        pub fn auth_dialog_url(
            &self,
            dialog: &$crate::truelayer::auth_dialog::AuthDialog,
        ) -> Result<String, $crate::InvalidInput> {
            self.config().auth_dialog_url(dialog)
        }
    };
}
