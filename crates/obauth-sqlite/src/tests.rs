#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use obauth_core::store::ConnectionName;
use obauth_types::{AccessToken, RefreshToken};

use super::*;

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let mut id = [0u8; 8];
        obauth_core::RandomSource::fill(&mut OsRandom, &mut id).unwrap();
        let name: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("obauth-sqlite-{name}"));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> StoreKey {
    StoreKey::user(
        "https://auth.example/connect/token",
        "client",
        "client_secret_post",
        &ConnectionName::new("alice").unwrap(),
    )
}

fn record(access: &str, refresh: &str) -> TokenRecord {
    TokenRecord {
        access_token: Some(AccessToken::new(access)),
        obtained_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        expires_in: 3600,
        refresh_token: Some(RefreshToken::new(refresh)),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn records_round_trip_with_versions_and_conflicts() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.file("tokens.db")).unwrap();
    assert_eq!(store.load(&key()).unwrap(), None);
    assert_eq!(
        store
            .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
            .unwrap(),
        Cas::Written(1)
    );
    let stored = store.load(&key()).unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.record, record("A1", "R1"));
    // A writer that read nothing, or an old version, loses and sees what is there.
    for stale in [Expect::Absent, Expect::Version(7)] {
        match store
            .compare_and_swap(&key(), stale, &record("X", "X"))
            .unwrap()
        {
            Cas::Conflict(Some(current)) => assert_eq!(current, stored),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        store
            .compare_and_swap(&key(), Expect::Version(1), &record("A2", "R2"))
            .unwrap(),
        Cas::Written(2)
    );
    assert_eq!(
        store
            .compare_and_swap(&key(), Expect::Any, &record("A3", "R3"))
            .unwrap(),
        Cas::Written(3)
    );
    assert_eq!(
        store.load(&key()).unwrap().unwrap().record,
        record("A3", "R3")
    );
    let other = StoreKey::client_credentials("u", "c", "m", "s");
    assert_eq!(store.load(&other).unwrap(), None);
    assert!(matches!(
        store
            .compare_and_swap(&other, Expect::Version(1), &record("B", "B"))
            .unwrap(),
        Cas::Conflict(None)
    ));
    let debug = format!("{store:?}");
    assert!(
        debug.contains("tokens.db") && !debug.contains("A3"),
        "{debug}"
    );
}

#[test]
fn the_file_and_its_journal_are_private_and_data_outlives_the_store() {
    let dir = TempDir::new();
    let path = dir.file("tokens.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    for journal in ["tokens.db-wal", "tokens.db-shm"] {
        let journal = dir.file(journal);
        assert!(journal.exists(), "{journal:?}");
        assert_eq!(mode(&journal), 0o600, "{journal:?}");
    }
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.load(&key()).unwrap().unwrap().record,
        record("A1", "R1")
    );

    // A file someone left readable is narrowed on open.
    let loose = dir.file("loose.db");
    std::fs::write(&loose, b"").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteStore::open(&loose).unwrap();
    assert_eq!(mode(&loose), 0o600);
}

#[test]
fn side_files_left_readable_are_narrowed_with_the_file() {
    let dir = TempDir::new();
    let path = dir.file("sides.db");
    drop(SqliteStore::open(&path).unwrap());
    // Another connection keeps the write-ahead log and its index in place (as a crash
    // would), and someone made all three readable.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x)")
        .unwrap();
    let side = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    for file in [path.clone(), side("-wal"), side("-shm")] {
        assert!(file.exists(), "{}", file.display());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    for file in [path.clone(), side("-wal"), side("-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store
        .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
        .unwrap();
    drop(other);
}

#[test]
fn two_stores_on_one_file_share_records_and_leases() {
    let dir = TempDir::new();
    let path = dir.file("shared.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    a.compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
        .unwrap();
    assert_eq!(b.load(&key()).unwrap().unwrap().version, 1);
    let (holder_a, holder_b) = (
        LeaseHolder::generate(&mut OsRandom),
        LeaseHolder::generate(&mut OsRandom),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ttl = Duration::from_secs(5);
    assert_eq!(
        a.try_lease(&key(), &holder_a, ttl, now).unwrap(),
        Lease::Granted
    );
    assert_eq!(
        b.try_lease(&key(), &holder_b, ttl, now).unwrap(),
        Lease::Held { until: now + ttl }
    );
    // The holder renews; another releasing it changes nothing.
    assert_eq!(
        a.try_lease(&key(), &holder_a, ttl, now + Duration::from_secs(1))
            .unwrap(),
        Lease::Granted
    );
    b.release(&key(), &holder_b).unwrap();
    assert!(matches!(
        b.try_lease(&key(), &holder_b, ttl, now + Duration::from_secs(2))
            .unwrap(),
        Lease::Held { .. }
    ));
    // Expired: taken over.
    assert_eq!(
        b.try_lease(&key(), &holder_b, ttl, now + Duration::from_secs(6))
            .unwrap(),
        Lease::Granted
    );
    b.release(&key(), &holder_b).unwrap();
    assert_eq!(
        a.try_lease(&key(), &holder_a, ttl, now).unwrap(),
        Lease::Granted
    );
}

#[test]
fn concurrent_writers_never_lose_an_update() {
    let dir = TempDir::new();
    let path = dir.file("busy.db");
    SqliteStore::open(&path).unwrap();
    let threads = 6;
    let rounds = 20;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let path = &path;
            scope.spawn(move || {
                let store = SqliteStore::open(path).unwrap();
                for round in 0..rounds {
                    loop {
                        let expect = Expect::after(store.load(&key()).unwrap().map(|s| s.version));
                        let mine = record(&format!("{thread}-{round}"), "R");
                        match store.compare_and_swap(&key(), expect, &mine).unwrap() {
                            Cas::Written(_) => break,
                            Cas::Conflict(_) => continue,
                        }
                    }
                }
            });
        }
    });
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load(&key()).unwrap().unwrap().version,
        threads * rounds
    );
}

#[test]
fn sealed_records_hide_the_tokens_and_refuse_the_wrong_key() {
    let dir = TempDir::new();
    let path = dir.file("sealed.db");
    let key_a = SealingKey::generate(&mut OsRandom).unwrap();
    let sealed = SqliteStore::open_sealed(&path, key_a.clone()).unwrap();
    sealed
        .compare_and_swap(
            &key(),
            Expect::Absent,
            &record("access-marker-1", "refresh-marker-1"),
        )
        .unwrap();
    assert_eq!(
        sealed.load(&key()).unwrap().unwrap().record,
        record("access-marker-1", "refresh-marker-1")
    );
    drop(sealed);
    // Nothing of the tokens in the file or its journal.
    for file in ["sealed.db", "sealed.db-wal"] {
        let bytes = std::fs::read(dir.file(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("marker"), "{file} holds a token");
    }
    let wrong =
        SqliteStore::open_sealed(&path, SealingKey::generate(&mut OsRandom).unwrap()).unwrap();
    assert_eq!(
        wrong.load(&key()).unwrap_err().kind(),
        StoreErrorKind::Sealed
    );
    // A writer with the wrong key cannot read the conflict either: a typed error.
    assert_eq!(
        wrong
            .compare_and_swap(&key(), Expect::Absent, &record("x", "y"))
            .unwrap_err()
            .kind(),
        StoreErrorKind::Sealed
    );
    let plain = SqliteStore::open(&path).unwrap();
    assert_eq!(
        plain.load(&key()).unwrap_err().kind(),
        StoreErrorKind::Sealed
    );
    // A plain record where a key is set is refused too.
    let other = StoreKey::client_credentials("u", "c", "m", "s");
    plain
        .compare_and_swap(&other, Expect::Absent, &record("p", "p"))
        .unwrap();
    let keyed = SqliteStore::open_sealed(&path, key_a).unwrap();
    assert_eq!(
        keyed.load(&other).unwrap_err().kind(),
        StoreErrorKind::Sealed
    );
}

#[test]
fn a_corrupted_or_truncated_file_is_a_typed_error_naming_it() {
    let dir = TempDir::new();
    let garbage = dir.file("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let error = SqliteStore::open(&garbage).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("garbage.db"), "{error}");

    // A real store cut in half.
    let path = dir.file("cut.db");
    let store = SqliteStore::open(&path).unwrap();
    for n in 0..200 {
        let key = StoreKey::client_credentials("u", "c", "m", &format!("scope-{n}"));
        store
            .compare_and_swap(&key, Expect::Absent, &record(&"a".repeat(500), "r"))
            .unwrap();
    }
    drop(store);
    // Fold the journal into the file, then cut the file.
    let full = {
        let store = SqliteStore::open(&path).unwrap();
        store
            .connection()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .ok();
        drop(store);
        std::fs::read(&path).unwrap()
    };
    assert!(full.len() > 40_000, "{}", full.len());
    let _ = std::fs::remove_file(dir.file("cut.db-wal"));
    let _ = std::fs::remove_file(dir.file("cut.db-shm"));
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("cut.db"), "{error}");
}

#[test]
fn a_schema_from_a_newer_obauth_is_refused_and_a_missing_directory_is_unavailable() {
    let dir = TempDir::new();
    let path = dir.file("newer.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .connection()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(store);
    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(error.to_string().contains("newer obauth"), "{error}");

    let error = SqliteStore::open(dir.file("no/such/dir/tokens.db")).unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    assert!(error.to_string().contains("no/such/dir"), "{error}");
}

#[test]
fn a_record_damaged_inside_a_healthy_file_is_corrupt_not_garbage() {
    let dir = TempDir::new();
    let path = dir.file("damaged.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
        .unwrap();
    store
        .connection()
        .execute(
            "UPDATE obauth_tokens SET record = X'7B2266' WHERE key = ?1",
            [key().as_str()],
        )
        .unwrap();
    assert_eq!(
        store.load(&key()).unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
    store
        .connection()
        .execute(
            "UPDATE obauth_tokens SET version = -1 WHERE key = ?1",
            [key().as_str()],
        )
        .unwrap();
    assert_eq!(
        store.load(&key()).unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
}

#[test]
fn a_busy_timeout_out_of_bounds_is_refused() {
    let dir = TempDir::new();
    let path = dir.file("bounds.db");
    for timeout in [
        Duration::ZERO,
        MAX_BUSY_TIMEOUT + Duration::from_millis(1),
        // Past what SQLite's i32 milliseconds hold (rusqlite would panic).
        Duration::from_secs(3_000_000),
    ] {
        let error = SqliteStore::open(&path)
            .unwrap()
            .with_busy_timeout(timeout)
            .unwrap_err();
        assert!(error.to_string().contains("busy timeout"), "{error}");
    }
    assert!(
        SqliteStore::open(&path)
            .unwrap()
            .with_busy_timeout(MAX_BUSY_TIMEOUT)
            .is_ok()
    );
}

#[test]
fn a_write_lock_held_elsewhere_is_waited_on_for_the_busy_timeout_then_reported() {
    let dir = TempDir::new();
    let path = dir.file("locked.db");
    let store = SqliteStore::open(&path)
        .unwrap()
        .with_busy_timeout(Duration::from_millis(200))
        .unwrap();
    // Another process holds the write lock and does not let go.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let holding = other
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let started = std::time::Instant::now();
    let error = store
        .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("locked.db"), "{error}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Reads go on while a writer holds the lock (WAL), and the write goes through after.
    assert_eq!(store.load(&key()).unwrap(), None);
    drop(holding);
    assert_eq!(
        store
            .compare_and_swap(&key(), Expect::Absent, &record("A1", "R1"))
            .unwrap(),
        Cas::Written(1)
    );
}

#[test]
fn many_processes_opening_a_new_file_at_once_all_get_a_store() {
    // SQLite answers SQLITE_BUSY without waiting while another connection switches a new
    // file to WAL: 4 processes starting together on a cold file hit it.
    for round in 0..100 {
        let dir = TempDir::new();
        let path = dir.file(&format!("cold-{round}.db"));
        let barrier = std::sync::Barrier::new(12);
        std::thread::scope(|scope| {
            let opened: Vec<_> = (0..12)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        SqliteStore::open(&path).map(|_| ())
                    })
                })
                .collect();
            for handle in opened {
                handle.join().unwrap().unwrap();
            }
        });
    }
}
