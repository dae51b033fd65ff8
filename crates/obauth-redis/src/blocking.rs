//! [`RedisStore`]: the store on redis's synchronous connections.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use obauth_core::StoreError;
use obauth_core::store::{
    Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord, TokenStore,
};
use redis::{Connection, RedisError};

use crate::protocol::{self, COMPARE_AND_SWAP, RELEASE, Settings, TRY_LEASE};

/// How many idle connections a store keeps for the next calls.
const IDLE: usize = 4;

/// Token records in Redis, for obauth-blocking (and any synchronous caller). Calls take a
/// connection from a small pool of its own, opened when first needed, with the store's
/// timeout on connecting, reading and writing; a connection that failed is dropped, and the
/// next call connects again, so a restarted Redis is picked up by itself. `Debug` shows
/// the URL without its password, never a token.
pub struct RedisStore {
    settings: Settings,
    idle: Mutex<Vec<Connection>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.debug("RedisStore", f)
    }
}

impl RedisStore {
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
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Trusts the PEM certificate(s) in `pem` for `rediss://` (a private CA) instead of the
    /// platform's root certificates. The server's name or address is checked against its
    /// certificate either way.
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Result<Self, StoreError> {
        self.settings.set_root_certificate(pem)?;
        // Connections made before trusted something else.
        self.idle
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
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
    /// `PREFIX:lease:KEY`. Stores that share tokens must share the prefix.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, StoreError> {
        self.settings.set_prefix(prefix)?;
        Ok(self)
    }

    /// Runs `call` on a pooled connection, or a new one; keeps the connection only if the
    /// call did not fail on it.
    fn with_connection<T>(
        &self,
        doing: &str,
        call: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self
                .connect()
                .map_err(|error| self.settings.failure("connect", &error))?,
        };
        match call(&mut connection) {
            Ok(value) => {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < IDLE {
                    idle.push(connection);
                }
                Ok(value)
            }
            Err(error) if error.is_timeout() => Err(self.settings.timed_out(doing)),
            Err(error) => Err(self.settings.failure(doing, &error)),
        }
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let timeout = self.settings.timeout;
        let connection = self.settings.client.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(connection)
    }
}

impl TokenStore for RedisStore {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        let (version, bytes): (Option<u64>, Option<Vec<u8>>) =
            self.with_connection("read a record", |connection| {
                redis::cmd("HMGET")
                    .arg(self.settings.record_key(key))
                    .arg("v")
                    .arg("r")
                    .query(connection)
            })?;
        self.settings.stored(key, version, bytes)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let encoded = self.settings.encode(key, record)?;
        let (mode, version) = protocol::expectation(expect);
        let answer = self.with_connection("write a record", |connection| {
            COMPARE_AND_SWAP
                .key(self.settings.record_key(key))
                .arg(mode)
                .arg(version)
                .arg(&encoded[..])
                .invoke(connection)
        })?;
        self.settings.cas_answer(key, answer)
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        let left: i64 = self.with_connection("take a lease", |connection| {
            TRY_LEASE
                .key(self.settings.lease_key(key))
                .arg(holder.to_hex())
                .arg(protocol::ttl_millis(ttl))
                .invoke(connection)
        })?;
        Ok(protocol::lease_answer(left, now))
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        let _: i64 = self.with_connection("give a lease back", |connection| {
            RELEASE
                .key(self.settings.lease_key(key))
                .arg(holder.to_hex())
                .invoke(connection)
        })?;
        Ok(())
    }
}
