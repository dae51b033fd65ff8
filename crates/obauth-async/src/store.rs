//! Where an async token manager keeps its tokens: [`Store`], a handle on either face of a
//! token store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use obauth_core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, MemoryStore, StoreHandle, StoreKey, Stored,
    TokenRecord, TokenStore,
};
use obauth_core::{StoreError, StoreErrorKind};

/// A token store as the async managers hold it: a synchronous [`TokenStore`] (memory,
/// SQLite, your own), called on tokio's blocking pool when it [may
/// block](TokenStore::may_block), or an [`AsyncTokenStore`] (Redis, your own), awaited in
/// place. Cheap to clone: clones are the same store.
///
/// Made with `.into()` from an `Arc` of either kind (`Arc::new(SqliteStore::open(…)?)`,
/// an `Arc<dyn TokenStore>`), or from the `RedisStore` of the `redis` feature.
#[derive(Clone)]
pub struct Store(Face);

#[derive(Clone)]
enum Face {
    Sync(Arc<dyn TokenStore>),
    Async(Arc<dyn AsyncTokenStore>),
}

impl Store {
    /// A synchronous store.
    pub fn sync(store: Arc<dyn TokenStore>) -> Self {
        Self(Face::Sync(store))
    }

    /// An async store.
    pub fn from_async(store: Arc<dyn AsyncTokenStore>) -> Self {
        Self(Face::Async(store))
    }

    pub(crate) async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        match &self.0 {
            Face::Sync(store) => call(store, key, |store, key| store.load(key)).await,
            Face::Async(store) => store.load(key).await,
        }
    }

    pub(crate) async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: TokenRecord,
    ) -> Result<Cas, StoreError> {
        match &self.0 {
            Face::Sync(store) => {
                call(store, key, move |store, key| {
                    store.compare_and_swap(key, expect, &record)
                })
                .await
            }
            Face::Async(store) => store.compare_and_swap(key, expect, &record).await,
        }
    }

    pub(crate) async fn try_lease(
        &self,
        key: &StoreKey,
        holder: LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        match &self.0 {
            Face::Sync(store) => {
                call(store, key, move |store, key| {
                    store.try_lease(key, &holder, ttl, SystemTime::now())
                })
                .await
            }
            Face::Async(store) => store.try_lease(key, &holder, ttl, SystemTime::now()).await,
        }
    }

    pub(crate) async fn release(
        &self,
        key: &StoreKey,
        holder: LeaseHolder,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Face::Sync(store) => {
                call(store, key, move |store, key| store.release(key, &holder)).await
            }
            Face::Async(store) => store.release(key, &holder).await,
        }
    }
}

/// Calls a synchronous store: on tokio's blocking pool if it may block and there is a
/// runtime, in place otherwise.
async fn call<T, F>(store: &Arc<dyn TokenStore>, key: &StoreKey, call: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn TokenStore, &StoreKey) -> Result<T, StoreError> + Send + 'static,
{
    if store.may_block()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let store = Arc::clone(store);
        let key = key.clone();
        return runtime
            .spawn_blocking(move || call(&*store, &key))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Other,
                    "the token store panicked",
                ))
            });
    }
    call(&**store, key)
}

impl StoreHandle for Store {
    fn memory() -> Self {
        Self::sync(Arc::new(MemoryStore::new()))
    }
}

impl<S: TokenStore + 'static> From<Arc<S>> for Store {
    fn from(store: Arc<S>) -> Self {
        Self::sync(store)
    }
}

impl From<Arc<dyn TokenStore>> for Store {
    fn from(store: Arc<dyn TokenStore>) -> Self {
        Self::sync(store)
    }
}

impl From<Arc<dyn AsyncTokenStore>> for Store {
    fn from(store: Arc<dyn AsyncTokenStore>) -> Self {
        Self::from_async(store)
    }
}

#[cfg(feature = "postgres")]
impl From<obauth_postgres::PostgresStore> for Store {
    fn from(store: obauth_postgres::PostgresStore) -> Self {
        Self::from_async(Arc::new(store))
    }
}

#[cfg(feature = "redis")]
impl From<obauth_redis::AsyncRedisStore> for Store {
    fn from(store: obauth_redis::AsyncRedisStore) -> Self {
        Self::from_async(Arc::new(store))
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Face::Sync(_) => "Store(sync)",
            Face::Async(_) => "Store(async)",
        })
    }
}
