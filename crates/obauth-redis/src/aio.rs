//! [`AsyncRedisStore`]: the store on redis's tokio connection manager.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use obauth_core::StoreError;
use obauth_core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord,
};
use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::protocol::{self, COMPARE_AND_SWAP, RELEASE, Settings, TRY_LEASE};

/// Token records in Redis, for obauth-async: one multiplexed connection, kept by redis's
/// tokio connection manager, which reconnects by itself after Redis restarts or the
/// connection drops. It is made on the first call, on the tokio runtime of that call: use
/// a store on one runtime. Every call is bounded by the store's timeout. `Debug` shows the
/// URL without its password, never a token.
pub struct AsyncRedisStore {
    settings: Settings,
    manager: Mutex<Option<ConnectionManager>>,
}

impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.debug("AsyncRedisStore", f)
    }
}

impl AsyncRedisStore {
    /// A store at `url` (`redis://[user[:password]@]host[:port][/db]`, or `rediss://` for
    /// TLS), records not sealed. Nothing is connected until the first call.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self::with(Settings::new(url, None)?))
    }

    /// A store at `url` whose records are sealed with `key` (AES-256-GCM): a record
    /// sealed under another key, or tampered with, is a
    /// [`StoreErrorKind::Sealed`](obauth_core::StoreErrorKind::Sealed) error.
    pub fn open_sealed(url: &str, key: SealingKey) -> Result<Self, StoreError> {
        Ok(Self::with(Settings::new(url, Some(key))?))
    }

    fn with(settings: Settings) -> Self {
        Self {
            settings,
            manager: Mutex::new(None),
        }
    }

    /// Trusts the PEM certificate(s) in `pem` for `rediss://` (a private CA) instead of the
    /// platform's root certificates. The server's name or address is checked against its
    /// certificate either way.
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Result<Self, StoreError> {
        self.settings.set_root_certificate(pem)?;
        // A connection made before trusted something else.
        *self
            .manager
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(self)
    }

    /// How long one call may take (connecting, sending, reading) before it fails as
    /// unavailable: above zero and at most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); default
    /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT).
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, StoreError> {
        self.settings.set_timeout(timeout)?;
        Ok(self)
    }

    /// What the store's keys start with (default `obauth`): `PREFIX:record:KEY` and
    /// `PREFIX:lease:KEY`. Stores that share tokens must share the prefix, blocking and
    /// async alike.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, StoreError> {
        self.settings.set_prefix(prefix)?;
        Ok(self)
    }

    /// The connection manager, made on first use.
    fn manager(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let timeout = self.settings.timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let manager = self
            .settings
            .client
            .get_connection_manager_lazy(config)
            .map_err(|error| self.settings.failure("connect", &error))?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Runs `call` on the manager within the store's timeout.
    async fn run<T, F, Fut>(&self, doing: &str, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let manager = self.manager()?;
        match tokio::time::timeout(self.settings.timeout, call(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.is_timeout() => Err(self.settings.timed_out(doing)),
            Ok(Err(error)) => Err(self.settings.failure(doing, &error)),
            Err(_) => Err(self.settings.timed_out(doing)),
        }
    }
}

#[async_trait::async_trait]
impl AsyncTokenStore for AsyncRedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        let record_key = self.settings.record_key(key);
        let (version, bytes): (Option<u64>, Option<Vec<u8>>) = self
            .run("read a record", |mut manager| async move {
                redis::cmd("HMGET")
                    .arg(record_key)
                    .arg("v")
                    .arg("r")
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        self.settings.stored(key, version, bytes)
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let encoded = self.settings.encode(key, record)?;
        let (mode, version) = protocol::expectation(expect);
        let record_key = self.settings.record_key(key);
        let answer = self
            .run("write a record", |mut manager| async move {
                COMPARE_AND_SWAP
                    .key(record_key)
                    .arg(mode)
                    .arg(version)
                    .arg(&encoded[..])
                    .invoke_async(&mut manager)
                    .await
            })
            .await?;
        self.settings.cas_answer(key, answer)
    }

    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        let lease_key = self.settings.lease_key(key);
        let holder = holder.to_hex();
        let left: i64 = self
            .run("take a lease", |mut manager| async move {
                TRY_LEASE
                    .key(lease_key)
                    .arg(holder)
                    .arg(protocol::ttl_millis(ttl))
                    .invoke_async(&mut manager)
                    .await
            })
            .await?;
        Ok(protocol::lease_answer(left, now))
    }

    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        let lease_key = self.settings.lease_key(key);
        let holder = holder.to_hex();
        let _: i64 = self
            .run("give a lease back", |mut manager| async move {
                RELEASE
                    .key(lease_key)
                    .arg(holder)
                    .invoke_async(&mut manager)
                    .await
            })
            .await?;
        Ok(())
    }
}
