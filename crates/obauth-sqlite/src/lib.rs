//! A [`TokenStore`] in a SQLite file, for obauth's token managers: the processes of one
//! host that open the same file share their tokens, make one token request between them
//! (a lease row in the same database keeps the fetch single-flight across processes), and
//! find the tokens again after a restart.
//!
//! ```no_run
//! # fn run() -> Result<(), obauth_core::StoreError> {
//! use obauth_sqlite::SqliteStore;
//!
//! let store = SqliteStore::open("/var/lib/my-service/tokens.db")?;
//! // TokenSource::truelayer(client, scopes).with_store(std::sync::Arc::new(store))
//! # let _ = store; Ok(()) }
//! ```
//!
//! * **Durable and crash-safe.** WAL journal with `synchronous=FULL`: a write that returned
//!   survives a crash of the process or the machine, and a crash at any point leaves a file
//!   that opens and holds either the old record or the new one.
//! * **Private.** The file is created mode 0600 (and an existing one is narrowed to 0600);
//!   SQLite gives its `-wal` and `-shm` files the same mode. With
//!   [`SqliteStore::open_sealed`] every record is sealed with AES-256-GCM under your key;
//!   without one, anyone who can read the file reads the tokens.
//! * **Bounded.** Every call waits at most [`BUSY_TIMEOUT`] (or what
//!   [`SqliteStore::with_busy_timeout`] sets) for another process's write lock, then fails
//!   with a [`StoreErrorKind::Unavailable`] error.
//! * **Versioned.** The schema version lives in the file (`PRAGMA user_version`) and is
//!   migrated on open; a file from a newer obauth is refused, not misread. A truncated or
//!   corrupted file is a [`StoreErrorKind::Corrupt`] error naming the file.
//!
//! This crate is not a general key-value store, and not for sharing tokens between hosts
//! (SQLite over a network file system does not lock reliably): the Redis store is.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use obauth_core::OsRandom;
use obauth_core::store::codec;
use obauth_core::store::{
    Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord, TokenStore,
};
use obauth_core::{StoreError, StoreErrorKind};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use zeroize::Zeroizing;

/// The schema this version writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a call waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`SqliteStore::with_busy_timeout`] takes: what the other stores allow a call.
pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Token records in a SQLite file. `Debug` shows the path, never a token.
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
    sealing: Option<SealingKey>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("sealed", &self.sealing.is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`; records are plain JSON.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), None)
    }

    /// Opens (or creates) the store at `path`, sealing every record under `key`. A record
    /// sealed under another key, a tampered one, or a plain one is refused when read.
    pub fn open_sealed(path: impl AsRef<Path>, key: SealingKey) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), Some(key))
    }

    fn open_with(path: &Path, sealing: Option<SealingKey>) -> Result<Self, StoreError> {
        create_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let connection =
            Connection::open_with_flags(path, flags).map_err(|error| failure(path, error))?;
        let store = Self {
            path: path.to_owned(),
            connection: Mutex::new(connection),
            sealing,
        };
        store.prepare()?;
        Ok(store)
    }

    /// Waits at most `timeout` (instead of [`BUSY_TIMEOUT`]) for another connection's write
    /// lock before a call fails with [`StoreErrorKind::Unavailable`]. Above zero and at most
    /// [`MAX_BUSY_TIMEOUT`].
    pub fn with_busy_timeout(self, timeout: Duration) -> Result<Self, StoreError> {
        if timeout.is_zero() || timeout > MAX_BUSY_TIMEOUT {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the SQLite busy timeout must be above zero and at most 60 s",
            ));
        }
        self.connection()
            .busy_timeout(timeout)
            .map_err(|error| self.failure(error))?;
        Ok(self)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // Every use below is one statement or one transaction, which SQLite rolls back if
        // it did not commit: a panic elsewhere leaves nothing half-done in the connection.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn failure(&self, error: rusqlite::Error) -> StoreError {
        failure(&self.path, error)
    }

    /// Journal, durability, integrity and schema, checked or set up on every open. SQLite
    /// answers SQLITE_BUSY at once, without its busy handler, while another connection is
    /// switching a new file to WAL or recovering it (processes started together on a cold
    /// file): such an open is tried again, backing off, for up to [`BUSY_TIMEOUT`].
    fn prepare(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.prepare_once() {
                Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }

    fn prepare_once(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|error| self.failure(error))?;
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|error| self.failure(error))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "token store {}: SQLite would not use a write-ahead log (journal mode {mode})",
                    self.path.display()
                ),
            ));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|error| self.failure(error))?;
        let check: String = connection
            .pragma_query_value(None, "quick_check", |row| row.get(0))
            .map_err(|error| self.failure(error))?;
        if check != "ok" {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "token store {} is corrupted (SQLite's check: {})",
                    self.path.display(),
                    check.chars().take(200).collect::<String>()
                ),
            ));
        }
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|error| self.failure(error))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Another process may be migrating at the same moment: decide again inside a write
        // lock (taken only here, so that an open of a current file writes nothing).
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.failure(error))?;
        let version: i64 = transaction
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|error| self.failure(error))?;
        match version {
            SCHEMA_VERSION => {}
            0 => {
                transaction
                    .execute_batch(
                        "CREATE TABLE IF NOT EXISTS obauth_tokens (
                             key TEXT PRIMARY KEY NOT NULL,
                             version INTEGER NOT NULL,
                             record BLOB NOT NULL
                         ) STRICT;
                         CREATE TABLE IF NOT EXISTS obauth_leases (
                             key TEXT PRIMARY KEY NOT NULL,
                             holder TEXT NOT NULL,
                             expires_ms INTEGER NOT NULL
                         ) STRICT;",
                    )
                    .map_err(|error| self.failure(error))?;
                transaction
                    .pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(|error| self.failure(error))?;
            }
            newer => {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "token store {} has schema {newer}; this obauth reads schema \
                         {SCHEMA_VERSION} (a newer obauth wrote it)",
                        self.path.display()
                    ),
                ));
            }
        }
        transaction.commit().map_err(|error| self.failure(error))
    }

    fn stored(&self, key: &StoreKey, version: i64, bytes: &[u8]) -> Result<Stored, StoreError> {
        let version = u64::try_from(version).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "token store {}: the record of {key} has version {version}",
                    self.path.display()
                ),
            )
        })?;
        Ok(Stored {
            version,
            record: codec::decode(bytes, key, self.sealing.as_ref())?,
        })
    }
}

/// Whether `error` is SQLite's "database is locked".
fn is_busy(error: &StoreError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<rusqlite::Error>())
        .is_some_and(|source| source.sqlite_error_code() == Some(ErrorCode::DatabaseBusy))
}

impl TokenStore for SqliteStore {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        let connection = self.connection();
        let row: Option<(i64, Vec<u8>)> = connection
            .query_row(
                "SELECT version, record FROM obauth_tokens WHERE key = ?1",
                [key.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|error| self.failure(error))?;
        drop(connection);
        // The record bytes may hold tokens: wiped once decoded.
        row.map(|(version, bytes)| {
            let bytes = Zeroizing::new(bytes);
            self.stored(key, version, &bytes)
        })
        .transpose()
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let encoded = codec::encode(record, key, self.sealing.as_ref(), &mut OsRandom)?;
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.failure(error))?;
        let current: Option<(i64, Vec<u8>)> = transaction
            .query_row(
                "SELECT version, record FROM obauth_tokens WHERE key = ?1",
                [key.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|error| self.failure(error))?;
        let current_version = current
            .as_ref()
            .map(|(version, _)| u64::try_from(*version).unwrap_or(u64::MAX));
        if !expect.holds(current_version) {
            drop(transaction);
            drop(connection);
            return match current {
                Some((version, bytes)) => {
                    let bytes = Zeroizing::new(bytes);
                    Ok(Cas::Conflict(Some(self.stored(key, version, &bytes)?)))
                }
                None => Ok(Cas::Conflict(None)),
            };
        }
        drop(current.map(|(_, bytes)| Zeroizing::new(bytes)));
        let version = current_version.map_or(1, |version| version.saturating_add(1));
        let stored_version = i64::try_from(version).unwrap_or(i64::MAX);
        transaction
            .execute(
                "INSERT INTO obauth_tokens (key, version, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET version = ?2, record = ?3",
                rusqlite::params![key.as_str(), stored_version, &encoded[..]],
            )
            .map_err(|error| self.failure(error))?;
        transaction.commit().map_err(|error| self.failure(error))?;
        Ok(Cas::Written(version))
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        let now_ms = millis(now);
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.failure(error))?;
        let current: Option<(String, i64)> = transaction
            .query_row(
                "SELECT holder, expires_ms FROM obauth_leases WHERE key = ?1",
                [key.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|error| self.failure(error))?;
        let me = holder.to_hex();
        if let Some((other, expires_ms)) = current
            && other != me
            && expires_ms > now_ms
        {
            // A time past what this platform's clock holds: held; the caller asks again
            // after its usual pause.
            let until = u64::try_from(expires_ms)
                .ok()
                .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
                .unwrap_or(now);
            return Ok(Lease::Held { until });
        }
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        transaction
            .execute(
                "INSERT INTO obauth_leases (key, holder, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET holder = ?2, expires_ms = ?3",
                rusqlite::params![key.as_str(), me, until],
            )
            .map_err(|error| self.failure(error))?;
        transaction.commit().map_err(|error| self.failure(error))?;
        Ok(Lease::Granted)
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.connection()
            .execute(
                "DELETE FROM obauth_leases WHERE key = ?1 AND holder = ?2",
                rusqlite::params![key.as_str(), holder.to_hex()],
            )
            .map(drop)
            .map_err(|error| self.failure(error))
    }
}

fn millis(time: SystemTime) -> i64 {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// Creates the file mode 0600 if it does not exist, and narrows an existing one to 0600.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, error: std::io::Error| {
        StoreError::with_source(
            StoreErrorKind::Unavailable,
            format!("token store {}: {what}", path.display()),
            error,
        )
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .map_err(|error| io("cannot be opened", error))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = file
            .metadata()
            .map_err(|error| io("cannot be read", error))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|error| io("cannot be made private (mode 0600)", error))?;
        }
        // The write-ahead log and its index hold page images of the records: left behind
        // (a crash) while the file was readable by others, they keep that mode, since SQLite
        // sets a side file's mode only when it creates one.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = Path::new(&side);
            match std::fs::metadata(side) {
                Ok(metadata) if metadata.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(side, std::fs::Permissions::from_mode(0o600))
                        .map_err(|error| {
                            io("has a side file that cannot be made private", error)
                        })?;
                }
                _ => {}
            }
        }
    }
    drop(file);
    Ok(())
}

/// A SQLite error as a store error of the right kind, naming the file.
fn failure(path: &Path, error: rusqlite::Error) -> StoreError {
    let kind = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory,
        ) => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    };
    let what = match kind {
        StoreErrorKind::Corrupt => "is corrupted or not a token store",
        StoreErrorKind::Unavailable => "is unavailable",
        _ => "failed",
    };
    StoreError::with_source(
        kind,
        format!("token store {} {what}", path.display()),
        error,
    )
}

#[cfg(test)]
mod tests;
