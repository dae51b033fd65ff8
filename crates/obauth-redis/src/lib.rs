//! A [`TokenStore`](obauth_core::store::TokenStore) on Redis, for obauth's token managers:
//! the replicas of a service that point at the same Redis share their tokens, make one token
//! request per key between them, and never present one refresh token twice.
//!
//! ```no_run
//! # fn run() -> Result<(), obauth_core::StoreError> {
//! use obauth_redis::RedisStore;
//!
//! let store = RedisStore::open("redis://:password@redis.internal:6379/2")?;
//! // TokenSource::truelayer(client, scopes).with_store(std::sync::Arc::new(store))
//! # let _ = store; Ok(()) }
//! ```
//!
//! Two faces over the same keys and scripts, so that blocking and async replicas share one
//! store: [`RedisStore`] (feature `blocking`) on redis's synchronous connections, with no
//! tokio in its tree, and `AsyncRedisStore` (feature `tokio`) on redis's tokio connection
//! manager, which reconnects by itself.
//!
//! * **Compare-and-swap.** A record is a Redis hash (`v`: its version, `r`: the encoded
//!   record) written by a Lua script that compares the version and writes in one step: a
//!   writer that read version 3 cannot overwrite version 4, so a replica whose lease ran out
//!   while it was paused cannot overwrite what the next holder wrote (it gets the newer
//!   record back and adopts it).
//! * **Leases.** One key per token, `SET` with a random holder id and an expiry in Redis's
//!   own clock (the token manager asks for the fetch's deadline); given back by a script that
//!   deletes it only if the caller still holds it. Replicas without the lease read the record
//!   again every [`lease_poll`](obauth_core::manager::ManagerOptions::lease_poll) and adopt
//!   it when it changes.
//! * **Bounded.** Every call has a timeout ([`DEFAULT_TIMEOUT`], or
//!   [`RedisStore::with_timeout`]); an unreachable or slow Redis is a
//!   [`StoreErrorKind::Unavailable`](obauth_core::StoreErrorKind::Unavailable) error, on which the token managers serve
//!   client-credentials tokens fetched in-process and refuse to refresh a user's
//!   connection blind.
//! * **Private.** With [`RedisStore::open_sealed`] every record is sealed with AES-256-GCM
//!   under your key; without one, anyone who can read the Redis database reads the tokens.
//!   The URL's password never appears in `Debug`, errors or logs.
//!
//! Redis must keep these keys: see `docs/guide.md` for the settings that user tokens need
//! (append-only file with fsync, a `maxmemory-policy` that never evicts them).
//!
//! This crate is not a Redis client for anything else, and not for Redis Cluster or
//! Sentinel (standalone Redis only).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod aio;
#[cfg(feature = "blocking")]
mod blocking;
mod protocol;

#[cfg(feature = "tokio")]
pub use aio::AsyncRedisStore;
#[cfg(feature = "blocking")]
pub use blocking::RedisStore;

use std::time::Duration;

/// How long one call to Redis may take, connecting included, before it fails as
/// unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// What the keys of this store start with, unless set otherwise.
pub const DEFAULT_PREFIX: &str = "obauth";
