//! An [`AsyncTokenStore`] in PostgreSQL, for obauth's async token managers: users' bank
//! connections kept in the database a service already backs up, replicates and restores,
//! with single-flight across replicas on the database's own locks.
//!
//! ```no_run
//! # async fn run() -> Result<(), obauth_core::StoreError> {
//! use obauth_postgres::PostgresStore;
//!
//! let store = PostgresStore::open("postgres://app:password@db.internal/app")?
//!     .with_table("obauth", "tokens")?;
//! store.migrate().await?; // once, at deploy time (or `obauth store migrate`)
//! // UserTokens::open(&client, "alice", store)
//! # Ok(()) }
//! ```
//!
//! * **Migrated on request.** [`PostgresStore::migrate`] creates the schema and the table
//!   (key, sealed record, version, expiry, timestamps) and records the schema version; it is
//!   never run silently on connect. A store whose table is missing says so.
//! * **Compare-and-swap.** Every write compares the version in a transaction: a replica
//!   that read version 3 cannot overwrite version 4.
//! * **Single-flight on the database.** A lease is a session-level advisory lock
//!   (`pg_try_advisory_lock`) held on a connection of its own until the fetch ends or its
//!   time to live runs out (the connection is then closed, as Redis lets a key expire); a
//!   replica that dies mid-refresh loses its session and with it the lock, and another
//!   takes over. No second system is needed.
//! * **Bounded.** Every call has a timeout ([`DEFAULT_TIMEOUT`], or
//!   [`PostgresStore::with_timeout`]); a database that is down, unreachable or slow is a
//!   [`StoreErrorKind::Unavailable`] error, on which a user's connection is not refreshed
//!   blind.
//! * **Private.** With [`PostgresStore::open_sealed`] every record is sealed with
//!   AES-256-GCM under your key and the database never sees a token in clear; without one,
//!   anyone who can read the table reads the tokens. The password (in the URL's user-info
//!   or a `password=` parameter) never appears in `Debug` or errors.
//!
//! Connections are plain TCP (or a Unix socket): reach the database over a network you
//! trust, and seal the records. This crate is for the async binding only (tokio); the
//! blocking binding keeps tokens in SQLite or Redis.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod sql;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Object, PoolError, RecyclingMethod};
use obauth_core::OsRandom;
use obauth_core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord,
    codec,
};
use obauth_core::{StoreError, StoreErrorKind};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

pub use sql::SCHEMA_VERSION;
use sql::Table;

pub use deadpool_postgres::Pool;

/// How long one call may take (a connection from the pool, the statements, the commit)
/// before it fails as unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The most connections a store opens (leases held included).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Token records in a PostgreSQL table. Cheap to share (`Arc`); `Debug` shows the URL
/// without its password, never a token.
pub struct PostgresStore {
    pool: Pool,
    /// What the pool connects with (password included): only to build the pool again.
    /// `None` for a pool the application gave.
    config: Option<tokio_postgres::Config>,
    shown: String,
    table: Table,
    sealing: Option<SealingKey>,
    timeout: Duration,
    /// The connections that hold this process's leases, by key and holder.
    leases: Arc<Leases>,
}

/// The connections that hold a store's leases, by key and holder.
type Leases = Mutex<HashMap<(String, LeaseHolder), LeaseConnection>>;

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .field("table", &self.table.name())
            .field("timeout", &self.timeout)
            .field("sealed", &self.sealing.is_some())
            .finish()
    }
}

impl PostgresStore {
    /// The table layout this version creates and reads ([`SCHEMA_VERSION`]).
    pub const SCHEMA_VERSION: i32 = SCHEMA_VERSION;

    /// A store at `url` (`postgres://user:password@host:port/database`, or any URL
    /// tokio-postgres reads), in the table `obauth_tokens` of the `public` schema, records not
    /// sealed. Nothing is connected until the first call.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::with(url, None)
    }

    /// A store at `url` whose records are sealed with `key` (AES-256-GCM): a record sealed
    /// under another key, or tampered with, is a [`StoreErrorKind::Sealed`] error.
    pub fn open_sealed(url: &str, key: SealingKey) -> Result<Self, StoreError> {
        Self::with(url, Some(key))
    }

    fn with(url: &str, sealing: Option<SealingKey>) -> Result<Self, StoreError> {
        let shown = obauth_core::store::url_without_password(url);
        let invalid = || {
            StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "the PostgreSQL URL {shown} is not valid: expected \
                     postgres://user:password@host[:port]/database"
                ),
            )
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid());
        }
        // tokio-postgres's own parse errors may quote the URL: not passed on.
        let mut config = tokio_postgres::Config::from_str(url).map_err(|_| invalid())?;
        config
            .connect_timeout(DEFAULT_TIMEOUT)
            .application_name("obauth");
        let store = Self {
            pool: pool(config.clone(), DEFAULT_TIMEOUT, DEFAULT_POOL_SIZE)?,
            config: Some(config),
            shown,
            table: Table::default(),
            sealing,
            timeout: DEFAULT_TIMEOUT,
            leases: Arc::new(Mutex::new(HashMap::new())),
        };
        Ok(store)
    }

    /// A store on a pool the application already has (its own size and timeouts; each call
    /// is still bounded by [`with_timeout`](Self::with_timeout)), records sealed with `key`
    /// if given. Leases take connections out of that pool while they are held.
    pub fn from_pool(pool: Pool, key: Option<SealingKey>) -> Self {
        Self {
            pool,
            config: None,
            shown: "(the application's pool)".to_owned(),
            table: Table::default(),
            sealing: key,
            timeout: DEFAULT_TIMEOUT,
            leases: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Keeps the records in `schema`.`table` (default `public`.`obauth_tokens`): names of
    /// 1 to 63 ASCII letters, digits and underscores, not starting with a digit.
    pub fn with_table(mut self, schema: &str, table: &str) -> Result<Self, StoreError> {
        self.table = Table::new(schema, table)?;
        Ok(self)
    }

    /// How long one call may take before it fails as unavailable: above zero and at most
    /// [`MAX_TIMEOUT`]; default [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, StoreError> {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the PostgreSQL timeout must be above zero and at most 60 s",
            ));
        }
        if let Some(config) = self.config.as_mut() {
            config.connect_timeout(timeout);
            self.pool = pool(config.clone(), timeout, self.pool.status().max_size)?;
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// The table's qualified name, as SQL reads it.
    pub fn table(&self) -> String {
        self.table.name()
    }

    /// Creates the schema and the table if they are missing, and brings an older table up
    /// to [`SCHEMA_VERSION`]; refuses a table of a newer obauth. Safe to run from several
    /// replicas at once (they take turns on an advisory lock). Run it at deploy time, or
    /// with `obauth store migrate`: a store never migrates on its own.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let table = &self.table;
        self.bounded("migrate the table", async {
            let mut client = self
                .pool
                .get()
                .await
                .map_err(|error| self.pool_failure(error))?;
            let transaction = client
                .transaction()
                .await
                .map_err(|error| self.failure("migrate the table", &error))?;
            let fail = |error: tokio_postgres::Error| self.failure("migrate the table", &error);
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock($1)",
                    &[&table.migration_lock()],
                )
                .await
                .map_err(fail)?;
            transaction
                .batch_execute(&table.versions_ddl())
                .await
                .map_err(fail)?;
            let current: Option<i32> = transaction
                .query_opt(&table.version_query(), &[&table.name()])
                .await
                .map_err(fail)?
                .map(|row| row.get(0));
            match current {
                Some(SCHEMA_VERSION) => {}
                None => {
                    transaction
                        .batch_execute(&table.ddl())
                        .await
                        .map_err(fail)?;
                    transaction
                        .execute(&table.record_version(), &[&table.name(), &SCHEMA_VERSION])
                        .await
                        .map_err(fail)?;
                }
                Some(newer) => {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        format!(
                            "the token table {} has schema {newer}; this obauth reads schema \
                             {SCHEMA_VERSION} (a newer obauth migrated it)",
                            table.name()
                        ),
                    ));
                }
            }
            transaction.commit().await.map_err(fail)
        })
        .await
    }

    /// Runs `call` within the store's timeout.
    async fn bounded<T>(
        &self,
        doing: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!(
                        "PostgreSQL at {} did not {doing} within {} ms",
                        self.shown,
                        self.timeout.as_millis()
                    ),
                ))
            })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| self.pool_failure(error))
    }

    fn pool_failure(&self, error: PoolError) -> StoreError {
        match error {
            PoolError::Backend(error) => self.failure("connect", &error),
            PoolError::Timeout(_) => StoreError::new(
                StoreErrorKind::Unavailable,
                format!("PostgreSQL at {} gave no connection in time", self.shown),
            ),
            other => StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "PostgreSQL at {}: the connection pool failed: {other}",
                    self.shown
                ),
            ),
        }
    }

    /// A database failure as a store error: a server that is down, shutting down,
    /// unreachable or out of connections is [`StoreErrorKind::Unavailable`]; a missing
    /// table says to migrate.
    fn failure(&self, doing: &str, error: &tokio_postgres::Error) -> StoreError {
        let code = error.code();
        if code == Some(&SqlState::UNDEFINED_TABLE) {
            return StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "the token table {} does not exist in PostgreSQL at {}: run \
                     PostgresStore::migrate() or `obauth store migrate` first",
                    self.table.name(),
                    self.shown
                ),
            );
        }
        let unavailable = match code {
            Some(code) => {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                        SqlState::QUERY_CANCELED,
                    ]
                    .contains(code)
            }
            None => {
                error.is_closed()
                    || std::error::Error::source(error)
                        .is_some_and(|source| source.is::<std::io::Error>())
            }
        };
        let kind = if unavailable {
            StoreErrorKind::Unavailable
        } else {
            StoreErrorKind::Other
        };
        let text = error.to_string();
        let line: String = text
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        StoreError::new(
            kind,
            format!("PostgreSQL at {} failed to {doing}: {line}", self.shown),
        )
    }

    fn stored(&self, key: &StoreKey, version: i64, bytes: Vec<u8>) -> Result<Stored, StoreError> {
        let bytes = Zeroizing::new(bytes);
        let version = u64::try_from(version)
            .ok()
            .filter(|version| *version > 0)
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "the record of {key} in {} has version {version}",
                        self.table.name()
                    ),
                )
            })?;
        Ok(Stored {
            version,
            record: codec::decode(&bytes, key, self.sealing.as_ref())?,
        })
    }
}

/// Ends the lease `id` when its time runs out, whether or not this process calls the store
/// again: its connection is closed and the server lets the lock go, as Redis lets a key
/// expire. A lease renewed meanwhile is waited on until its new end; one given back is
/// left alone. Outside a tokio runtime, the next `try_lease` of the store ends it instead.
fn expire_at(leases: &Arc<Leases>, id: (String, LeaseHolder), mut until: std::time::Instant) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let leases = Arc::downgrade(leases);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep_until(until.into()).await;
            let Some(leases) = leases.upgrade() else {
                return;
            };
            let mut held = leases.lock().unwrap_or_else(PoisonError::into_inner);
            match held.get(&id) {
                Some(lease) if lease.until > std::time::Instant::now() => until = lease.until,
                Some(_) => {
                    let ended = held.remove(&id);
                    drop(held);
                    drop(ended);
                    return;
                }
                None => return,
            }
        }
    });
}

/// A connection that may hold an advisory lock. Dropped without [`give_back`](Self::give_back)
/// (a lease never released, its time run out, a call cancelled mid-way, the store dropped),
/// it is closed rather than pooled: the server lets the lock go with the session, and no
/// other caller is handed a connection that still holds it.
struct LeaseConnection {
    client: Option<Object>,
    /// When the lease runs out in this process (its time to live from when it was taken).
    until: std::time::Instant,
}

impl LeaseConnection {
    fn client(&self) -> &Object {
        // Only `give_back` and `Drop` take it out, and both consume the value.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease connection is taken once"))
    }

    /// Returns the connection to the pool: only once it holds no lock.
    fn give_back(mut self) {
        drop(self.client.take());
    }
}

impl Drop for LeaseConnection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// A pool of at most `size` connections to `config`, each waited for, made and checked
/// within `timeout`.
fn pool(
    config: tokio_postgres::Config,
    timeout: Duration,
    size: usize,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|error| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("the PostgreSQL connection pool could not be built: {error}"),
            )
        })
}

/// When the record's access token expires, in seconds since the epoch, for the table's
/// `expires_at` column (for people and clean-up jobs; obauth ages records itself).
fn expires_at(record: &TokenRecord) -> Option<f64> {
    record.access_token.as_ref()?;
    let obtained = record
        .obtained_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    // Seconds as f64 lose nothing a timestamp column keeps for the next 100 million years.
    #[allow(clippy::cast_precision_loss)]
    Some(obtained + record.expires_in as f64)
}

#[async_trait::async_trait]
impl AsyncTokenStore for PostgresStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.bounded("read a record", async {
            let client = self.client().await?;
            let fail = |error: tokio_postgres::Error| self.failure("read a record", &error);
            // Prepared once per connection: a read is one round trip.
            let select = client
                .prepare_cached(&self.table.select())
                .await
                .map_err(fail)?;
            let row = client
                .query_opt(&select, &[&key.as_str()])
                .await
                .map_err(fail)?;
            row.map(|row| self.stored(key, row.get(0), row.get(1)))
                .transpose()
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let encoded = codec::encode(record, key, self.sealing.as_ref(), &mut OsRandom)?;
        let expires = expires_at(record);
        self.bounded("write a record", async {
            let mut client = self.client().await?;
            let fail = |error: tokio_postgres::Error| self.failure("write a record", &error);
            let transaction = client.transaction().await.map_err(fail)?;
            let bytes: &[u8] = &encoded;
            let sql = match expect {
                Expect::Absent => self.table.insert(),
                Expect::Version(_) => self.table.update(),
                Expect::Any => self.table.upsert(),
            };
            let write = transaction.prepare_cached(&sql).await.map_err(fail)?;
            let written = match expect {
                Expect::Version(version) => {
                    let version = i64::try_from(version).unwrap_or(i64::MAX);
                    transaction
                        .query_opt(&write, &[&key.as_str(), &bytes, &expires, &version])
                        .await
                        .map_err(fail)?
                }
                Expect::Absent | Expect::Any => transaction
                    .query_opt(&write, &[&key.as_str(), &bytes, &expires])
                    .await
                    .map_err(fail)?,
            };
            let answer = match written {
                Some(row) => {
                    let version: i64 = row.get(0);
                    Cas::Written(u64::try_from(version).unwrap_or_default())
                }
                None => {
                    let select = transaction
                        .prepare_cached(&self.table.select())
                        .await
                        .map_err(fail)?;
                    let current = transaction
                        .query_opt(&select, &[&key.as_str()])
                        .await
                        .map_err(fail)?;
                    Cas::Conflict(
                        current
                            .map(|row| self.stored(key, row.get(0), row.get(1)))
                            .transpose()?,
                    )
                }
            };
            transaction.commit().await.map_err(fail)?;
            Ok(answer)
        })
        .await
    }

    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        let id = (key.as_str().to_owned(), *holder);
        {
            let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
            // Leases that ran out without being given back (a fetch dropped mid-way) end
            // here: their connections close, and the server lets the locks go.
            let instant = std::time::Instant::now();
            leases.retain(|_, held| held.until > instant);
            if let Some(held) = leases.get_mut(&id) {
                // Held on its own connection since it was taken: it lasts `ttl` from now.
                held.until = held
                    .until
                    .max(instant.checked_add(ttl).unwrap_or(held.until));
                return Ok(Lease::Granted);
            }
        }
        let lock = self.table.lease_lock(key);
        self.bounded("take a lease", async {
            let connection = LeaseConnection {
                client: Some(self.client().await?),
                until: std::time::Instant::now()
                    .checked_add(ttl)
                    .unwrap_or_else(std::time::Instant::now),
            };
            // Cancelled from here on (the timeout), `connection` is closed, not pooled.
            let taken: bool = connection
                .client()
                .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
                .await
                .map_err(|error| self.failure("take a lease", &error))?
                .get(0);
            if !taken {
                connection.give_back();
                // The holder keeps it until it releases or its session ends: look again
                // after the poll interval (the machine sleeps the shorter of the two).
                return Ok(Lease::Held {
                    until: now.checked_add(ttl).unwrap_or(now),
                });
            }
            let until = connection.until;
            self.leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.clone(), connection);
            expire_at(&self.leases, id, until);
            Ok(Lease::Granted)
        })
        .await
    }

    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        let held = self
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(key.as_str().to_owned(), *holder));
        let Some(connection) = held else {
            return Ok(());
        };
        let lock = self.table.lease_lock(key);
        let unlocked = tokio::time::timeout(
            self.timeout,
            connection
                .client()
                .query_one("SELECT pg_advisory_unlock($1)", &[&lock]),
        )
        .await;
        match unlocked {
            Ok(Ok(_)) => {
                connection.give_back();
                Ok(())
            }
            failed => {
                // The lock may still be held by this session: the connection is closed, not
                // pooled, and the server lets the lock go with it.
                drop(connection);
                match failed {
                    Ok(Err(error)) => Err(self.failure("give a lease back", &error)),
                    _ => Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        format!(
                            "PostgreSQL at {} did not give a lease back in time",
                            self.shown
                        ),
                    )),
                }
            }
        }
    }
}
