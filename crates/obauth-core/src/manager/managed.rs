//! What a binding's token manager holds, built and re-configured here so that both bindings
//! do it alike. The bindings add only the driving: doing what a [`Fetch`](super::Fetch)
//! says, and waiting.

use std::sync::Arc;
use std::time::SystemTime;

use obauth_types::truelayer::token::TokenResponse;

use super::{Flight, ManagerOptions, Seed, TokenCell, TokenEndpoint};
use crate::error::{Error, InvalidInput};
use crate::expiry::ExpiryPolicy;
use crate::retry::RetryPolicy;
use crate::store::{LeaseHolder, StoreHandle, StoreKey, TokenRecord};

/// One managed token: the machine's cell, what it fetches from, where it is kept, and how
/// the binding sends (`T`, its transport, and the retry policy). `S` is the binding's
/// handle on the store: an `Arc<dyn TokenStore>`, or a handle that also takes async stores.
pub struct Managed<F: Flight, T: ?Sized, S: StoreHandle> {
    cell: Arc<TokenCell<F>>,
    endpoint: TokenEndpoint,
    key: StoreKey,
    store: S,
    transport: Arc<T>,
    retry: RetryPolicy,
}

impl<F: Flight, T: ?Sized, S: StoreHandle> std::fmt::Debug for Managed<F, T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<F: Flight, T: ?Sized, S: StoreHandle> Managed<F, T, S> {
    /// A manager of `endpoint`'s token kept in `store`, starting from `seed`. Refused if
    /// `options` are out of bounds.
    pub fn new(
        endpoint: TokenEndpoint,
        transport: Arc<T>,
        retry: RetryPolicy,
        store: S,
        options: ManagerOptions,
        seed: Seed,
    ) -> Result<Self, InvalidInput> {
        options.check()?;
        Ok(Self::checked(
            endpoint, transport, retry, store, options, seed,
        ))
    }

    /// An application token in a memory store of its own, with the default options.
    pub fn application(endpoint: TokenEndpoint, transport: Arc<T>, retry: RetryPolicy) -> Self {
        Self::checked(
            endpoint,
            transport,
            retry,
            S::memory(),
            ManagerOptions::default(),
            Seed::Empty,
        )
    }

    fn checked(
        endpoint: TokenEndpoint,
        transport: Arc<T>,
        retry: RetryPolicy,
        store: S,
        options: ManagerOptions,
        seed: Seed,
    ) -> Self {
        let key = endpoint.key();
        Self::keyed(endpoint, key, transport, retry, store, options, seed)
    }

    fn keyed(
        endpoint: TokenEndpoint,
        key: StoreKey,
        transport: Arc<T>,
        retry: RetryPolicy,
        store: S,
        options: ManagerOptions,
        seed: Seed,
    ) -> Self {
        let holder = LeaseHolder::unique();
        Self {
            cell: Arc::new(
                TokenCell::new(endpoint.kind(), options, holder, seed)
                    .with_previous_key(key.previous()),
            ),
            key,
            endpoint,
            store,
            transport,
            retry,
        }
    }

    /// The same token with other settings: a new cell. Nothing cached carries over, but
    /// tokens not yet written do (the new cell writes them first, then gives back the lease
    /// kept for them), and so does a user's refresh token known in memory (a record in the
    /// store still wins over that).
    fn reconfigured(&self, store: S, options: ManagerOptions) -> Self {
        let seed = self.cell.handover();
        let kept_lease = self.cell.state().kept_lease;
        let new = Self::keyed(
            self.endpoint.clone(),
            self.key.clone(),
            Arc::clone(&self.transport),
            self.retry,
            store,
            options,
            seed,
        );
        // The lease kept for the unwritten tokens goes with them: the new cell gives it
        // back once it has written them.
        new.cell.state().kept_lease = kept_lease;
        new
    }

    /// The same token kept in `store`.
    pub fn with_store(&self, store: S) -> Self {
        self.reconfigured(store, *self.cell.options())
    }

    /// The same token with `options`; refused if they are out of bounds.
    pub fn with_options(&self, options: ManagerOptions) -> Result<Self, InvalidInput> {
        options.check()?;
        Ok(self.reconfigured(self.store.clone(), options))
    }

    /// The same token with another expiry policy.
    pub fn with_expiry(&self, expiry: ExpiryPolicy) -> Self {
        let options = ManagerOptions {
            expiry,
            ..*self.cell.options()
        };
        self.reconfigured(self.store.clone(), options)
    }

    /// The machine's cell.
    pub fn cell(&self) -> &Arc<TokenCell<F>> {
        &self.cell
    }

    /// What the token is fetched from.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// What it is stored under.
    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    /// Where it is stored.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The binding's transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The retry policy of the token requests.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }
}

impl Seed {
    /// The tokens of a code exchange's answer, to a request sent at `requested_at`. Refused
    /// without a refresh token (the connection could not be kept: ask for `offline_access`).
    pub fn from_token_response(
        response: &TokenResponse,
        requested_at: SystemTime,
    ) -> Result<Self, Error> {
        if response
            .refresh_token
            .as_ref()
            .is_none_or(|token| token.is_empty())
        {
            return Err(Error::InvalidInput(InvalidInput::new(
                "token response",
                "has no refresh_token; ask for the offline_access scope",
            )));
        }
        Ok(Seed::Obtained(TokenRecord {
            access_token: Some(response.access_token.clone()),
            obtained_at: requested_at,
            expires_in: response.expires_in,
            refresh_token: response.refresh_token.clone(),
        }))
    }
}
