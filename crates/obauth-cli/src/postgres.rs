//! The PostgreSQL token store for the command line, which runs on obauth-blocking: the
//! async store driven by a runtime of its own, one call at a time.

use std::time::{Duration, SystemTime};

use obauth_async::PostgresStore;
use obauth_blocking::core::StoreError;
use obauth_blocking::core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord,
    TokenStore,
};

/// A [`PostgresStore`] seen as a [`TokenStore`].
pub(crate) struct BlockingPostgres {
    store: PostgresStore,
    runtime: tokio::runtime::Runtime,
}

impl BlockingPostgres {
    /// The store at `url`, in `table` (`SCHEMA.TABLE`) if given, sealed with `key` if given.
    pub(crate) fn open(
        url: &str,
        table: Option<&str>,
        key: Option<SealingKey>,
    ) -> Result<Self, StoreError> {
        let store = match key {
            Some(key) => PostgresStore::open_sealed(url, key)?,
            None => PostgresStore::open(url)?,
        };
        let store = match table {
            Some(table) => {
                let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                store.with_table(schema, name)?
            }
            None => store,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                StoreError::new(
                    obauth_blocking::core::StoreErrorKind::Other,
                    format!("no runtime for the PostgreSQL store: {error}"),
                )
            })?;
        Ok(Self { store, runtime })
    }

    /// Creates or upgrades the table; the qualified name it migrated.
    pub(crate) fn migrate(&self) -> Result<String, StoreError> {
        self.runtime.block_on(self.store.migrate())?;
        Ok(self.store.table())
    }
}

impl TokenStore for BlockingPostgres {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.runtime.block_on(self.store.load(key))
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.runtime
            .block_on(self.store.compare_and_swap(key, expect, record))
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.runtime
            .block_on(self.store.try_lease(key, holder, ttl, now))
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.runtime.block_on(self.store.release(key, holder))
    }
}
