//! The bindings' public token-manager types, written once: `token_manager_types!` expands,
//! in `obauth-async` and in `obauth-blocking`, to `TokenSource` and `UserTokens` with every
//! method that is the same in both. Each binding adds by hand only what differs: how
//! `access_token()` waits (a future, or the thread), and nothing else. For the bindings,
//! not for applications.

/// Expands to `TokenSource` and `UserTokens` over the binding's `Managed` (an alias of
/// [`Managed`](crate::manager::Managed) with its flight and transport) and its
/// `TrueLayerClient` / `WorldlineClient` (which have `config()`, `transport()` and
/// `retry()`). `store:` names the type the methods take a store as (it converts `.into()`
/// the binding's [`StoreHandle`](crate::store::StoreHandle)); then `async await` in an
/// async binding, nothing in a blocking one. The binding writes `access_token(&self)` for
/// both types.
#[doc(hidden)]
#[macro_export]
// `crate::` is meant: the binding's clients and re-exports, where the macro expands.
#[allow(clippy::crate_in_macro_def)]
macro_rules! token_manager_types {
    (store: $store:ty; $($async:ident $await:ident)?) => {
        /// A cached client-credentials token for TrueLayer or Worldline. Cheap to clone;
        /// clones share the cache.
        #[derive(Clone, Debug)]
        pub struct TokenSource {
            inner: ::std::sync::Arc<Managed>,
        }

        impl TokenSource {
            /// TrueLayer `client_credentials` tokens for `scopes`.
            pub fn truelayer(
                client: crate::TrueLayerClient,
                scopes: $crate::types::Scopes<$crate::types::truelayer::Scope>,
            ) -> Self {
                let endpoint = $crate::manager::TokenEndpoint::TrueLayer {
                    config: client.config().clone(),
                    scopes,
                };
                Self::from(Managed::application(endpoint, client.transport(), client.retry()))
            }

            /// Worldline tokens for `scopes`, with the client's secret or assertion.
            pub fn worldline(
                client: crate::WorldlineClient,
                scopes: $crate::types::Scopes<$crate::types::worldline::Scope>,
            ) -> Self {
                let endpoint = $crate::manager::TokenEndpoint::Worldline {
                    config: client.config().clone(),
                    scopes,
                };
                Self::from(Managed::application(endpoint, client.transport(), client.retry()))
            }

            fn from(managed: Managed) -> Self {
                Self {
                    inner: ::std::sync::Arc::new(managed),
                }
            }

            /// Keeps the token in `store` (shared with other managers and, for a durable
            /// store, other processes); the cache starts empty.
            pub fn with_store(
                self,
                store: $store,
            ) -> Self {
                Self::from(self.inner.with_store(store.into()))
            }

            /// Replaces the options (expiry policy, fetch deadline, lease polling); the
            /// cache starts empty. Refused if the deadline or the poll interval is out of
            /// bounds.
            pub fn with_options(
                self,
                options: $crate::manager::ManagerOptions,
            ) -> Result<Self, $crate::Error> {
                Ok(Self::from(self.inner.with_options(options)?))
            }

            /// Replaces the expiry policy; the cache starts empty.
            pub fn with_expiry_policy(self, expiry: $crate::expiry::ExpiryPolicy) -> Self {
                Self::from(self.inner.with_expiry(expiry))
            }

            /// What the token is stored under: token URL, client id, auth method and scopes.
            pub fn key(&self) -> &$crate::store::StoreKey {
                self.inner.key()
            }

            /// Reports that an API refused `rejected`: if it is the cached token, the next
            /// call fetches a new one; if a newer one is cached already, nothing happens.
            pub fn invalidate(&self, rejected: &$crate::types::AccessToken) {
                self.inner.cell().invalidate(rejected);
            }

            /// How long the cached token is still served, if there is one.
            pub fn remaining(&self) -> Option<::std::time::Duration> {
                self.inner.cell().remaining($crate::expiry::Now::system())
            }
        }

        /// A user's TrueLayer connection: the access token, refreshed with the rotating
        /// refresh token, kept in a [`TokenStore`](crate::TokenStore) under a connection
        /// name you choose. Cheap to clone; clones share the state.
        ///
        /// A rotated refresh token is written to the store before the new access token is
        /// handed to anyone. If the write fails, the call fails with
        /// [`Error::Store`](crate::Error::Store); the tokens stay in memory and are written
        /// first thing on the next call, which then serves the access token without
        /// another refresh.
        #[derive(Clone, Debug)]
        pub struct UserTokens {
            inner: ::std::sync::Arc<Managed>,
        }

        impl UserTokens {
            fn build(
                client: &crate::TrueLayerClient,
                connection: &str,
                store: $store,
                seed: $crate::manager::Seed,
            ) -> Result<Self, $crate::Error> {
                let endpoint = $crate::manager::TokenEndpoint::TrueLayerUser {
                    config: client.config().clone(),
                    connection: $crate::store::ConnectionName::new(connection)?,
                };
                let managed = Managed::new(
                    endpoint,
                    client.transport(),
                    client.retry(),
                    store.into(),
                    $crate::manager::ManagerOptions::default(),
                    seed,
                )?;
                Ok(Self {
                    inner: ::std::sync::Arc::new(managed),
                })
            }

            /// The connection `connection` as `store` holds it; the first call reads it
            /// (an [`Error::Store`](crate::Error::Store) of kind `NotFound` if it was never
            /// saved).
            pub fn open(
                client: &crate::TrueLayerClient,
                connection: &str,
                store: $store,
            ) -> Result<Self, $crate::Error> {
                Self::build(client, connection, store, $crate::manager::Seed::Empty)
            }

            /// A connection known by its refresh token, kept in `store` under `connection`.
            /// A record already in the store under that name wins over `refresh_token`.
            pub fn new(
                client: &crate::TrueLayerClient,
                connection: &str,
                refresh_token: $crate::types::RefreshToken,
                store: $store,
            ) -> Result<Self, $crate::Error> {
                let seed = $crate::manager::Seed::RefreshToken(refresh_token);
                Self::build(client, connection, store, seed)
            }

            /// A connection from the code exchange's answer, to a request sent at
            /// `requested_at`: written to `store` under `connection` (replacing an earlier
            /// connection of that name) before this returns. It needs `offline_access`, for
            /// a refresh token. If the store fails, the error says so and `response` is
            /// still yours to try again with.
            pub $($async)? fn from_token_response(
                client: &crate::TrueLayerClient,
                connection: &str,
                response: &$crate::types::truelayer::token::TokenResponse,
                requested_at: ::std::time::SystemTime,
                store: $store,
            ) -> Result<Self, $crate::Error> {
                let seed = $crate::manager::Seed::from_token_response(response, requested_at)?;
                let tokens = Self::build(client, connection, store, seed)?;
                let written = tokens.access_token()$(.$await)?;
                written?;
                Ok(tokens)
            }

            /// Replaces the options (expiry policy, fetch deadline, lease polling); the
            /// cache starts empty and reads the store again.
            pub fn with_options(
                self,
                options: $crate::manager::ManagerOptions,
            ) -> Result<Self, $crate::Error> {
                Ok(Self {
                    inner: ::std::sync::Arc::new(self.inner.with_options(options)?),
                })
            }

            /// Refreshes now, even if the cached access token is fresh (concurrent callers
            /// share the refresh), and returns the new access token.
            pub $($async)? fn refresh_now(
                &self,
            ) -> Result<$crate::types::AccessToken, $crate::Error> {
                self.inner.cell().expire();
                self.access_token()$(.$await)?
            }

            /// Reports that an API refused `rejected`: if it is the cached token, the next
            /// call refreshes; if a newer one is cached already, nothing happens (no extra
            /// rotation).
            pub fn invalidate(&self, rejected: &$crate::types::AccessToken) {
                self.inner.cell().invalidate(rejected);
            }

            /// The refresh token this process knows (none before the store was first read).
            pub fn refresh_token(&self) -> Option<$crate::types::RefreshToken> {
                self.inner.cell().refresh_token()
            }

            /// How long the cached access token is still served, if there is one.
            pub fn remaining(&self) -> Option<::std::time::Duration> {
                self.inner.cell().remaining($crate::expiry::Now::system())
            }

            /// What the connection is stored under.
            pub fn key(&self) -> &$crate::store::StoreKey {
                self.inner.key()
            }
        }
    };
}
