//! The in-memory store: the default, nothing written anywhere.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord, TokenStore};
use crate::error::StoreError;

/// Records in this process's memory: what a token manager uses when you give it no store.
/// Share one `MemoryStore` (in an `Arc`) between managers of the same token to share it
/// within a process; nothing outlives the process. `Debug` shows no token.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<StoreKey, Stored>,
    leases: HashMap<StoreKey, (LeaseHolder, SystemTime)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change below is a single map operation: a panic elsewhere cannot leave a
        // half-written state behind, so a poisoned lock is safe to use.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.inner().records.len())
            .finish_non_exhaustive()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        Ok(self.inner().records.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let mut inner = self.inner();
        let current = inner.records.get(key);
        if !expect.holds(current.map(|stored| stored.version)) {
            return Ok(Cas::Conflict(current.cloned()));
        }
        let version = current.map_or(1, |stored| stored.version.saturating_add(1));
        inner.records.insert(
            key.clone(),
            Stored {
                version,
                record: record.clone(),
            },
        );
        Ok(Cas::Written(version))
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        let mut inner = self.inner();
        if let Some((other, until)) = inner.leases.get(key)
            && other != holder
            && *until > now
        {
            return Ok(Lease::Held { until: *until });
        }
        let until = now.checked_add(ttl).unwrap_or(now);
        inner.leases.insert(key.clone(), (*holder, until));
        Ok(Lease::Granted)
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        let mut inner = self.inner();
        if inner
            .leases
            .get(key)
            .is_some_and(|(other, _)| other == holder)
        {
            inner.leases.remove(key);
        }
        Ok(())
    }

    fn may_block(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use obauth_types::AccessToken;

    use super::*;
    use crate::random::OsRandom;

    fn record(token: &str) -> TokenRecord {
        TokenRecord {
            access_token: Some(AccessToken::new(format!("token-{token}"))),
            obtained_at: SystemTime::UNIX_EPOCH,
            expires_in: 60,
            refresh_token: None,
        }
    }

    #[test]
    fn compare_and_swap_versions() {
        let store = MemoryStore::new();
        let key = StoreKey::client_credentials("u", "c", "m", "s");
        assert_eq!(store.load(&key).unwrap(), None);
        assert_eq!(
            store
                .compare_and_swap(&key, Expect::Absent, &record("a"))
                .unwrap(),
            Cas::Written(1)
        );
        // A second writer that also saw nothing loses and is shown the winner.
        match store
            .compare_and_swap(&key, Expect::Absent, &record("b"))
            .unwrap()
        {
            Cas::Conflict(Some(stored)) => {
                assert_eq!(stored.version, 1);
                assert_eq!(stored.record, record("a"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store
                .compare_and_swap(&key, Expect::Version(1), &record("c"))
                .unwrap(),
            Cas::Written(2)
        );
        assert!(matches!(
            store
                .compare_and_swap(&key, Expect::Version(1), &record("d"))
                .unwrap(),
            Cas::Conflict(_)
        ));
        assert_eq!(
            store
                .compare_and_swap(&key, Expect::Any, &record("e"))
                .unwrap(),
            Cas::Written(3)
        );
        assert_eq!(store.load(&key).unwrap().unwrap().record, record("e"));
        let debug = format!("{store:?}");
        assert!(
            debug.contains("records: 1") && !debug.contains("token-"),
            "{debug}"
        );
    }

    #[test]
    fn leases_exclude_others_until_released_or_expired() {
        let store = MemoryStore::new();
        let key = StoreKey::client_credentials("u", "c", "m", "s");
        let a = LeaseHolder::random(&mut OsRandom).unwrap();
        let b = LeaseHolder::random(&mut OsRandom).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let ttl = Duration::from_secs(10);
        assert_eq!(store.try_lease(&key, &a, ttl, t0).unwrap(), Lease::Granted);
        assert_eq!(
            store.try_lease(&key, &b, ttl, t0).unwrap(),
            Lease::Held { until: t0 + ttl }
        );
        // The holder renews its own lease.
        assert_eq!(store.try_lease(&key, &a, ttl, t0).unwrap(), Lease::Granted);
        // Releasing someone else's lease does nothing.
        store.release(&key, &b).unwrap();
        assert!(matches!(
            store.try_lease(&key, &b, ttl, t0).unwrap(),
            Lease::Held { .. }
        ));
        // An expired lease is taken over.
        assert_eq!(
            store.try_lease(&key, &b, ttl, t0 + ttl).unwrap(),
            Lease::Granted
        );
        store.release(&key, &b).unwrap();
        assert_eq!(store.try_lease(&key, &a, ttl, t0).unwrap(), Lease::Granted);
        assert!(!store.may_block());
    }
}
