//! The PostgreSQL store against a real server of the test's own: migration on request, the
//! store contract, leases on the database's locks (and their release with a dead session),
//! sealing, the password out of sight, and a server stopped, killed and restarted.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use obauth_core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord,
};
use obauth_core::{OsRandom, StoreErrorKind};
use obauth_postgres::PostgresStore;
use obauth_test_peers::PostgresServer;
use obauth_types::{AccessToken, RefreshToken};

fn key(name: &str) -> StoreKey {
    StoreKey::client_credentials("https://auth.example/connect/token", "client", "post", name)
}

fn record(access: &str, refresh: &str) -> TokenRecord {
    TokenRecord {
        access_token: Some(AccessToken::new(access)),
        obtained_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        expires_in: 3600,
        refresh_token: Some(RefreshToken::new(refresh)),
    }
}

fn holder() -> LeaseHolder {
    LeaseHolder::random(&mut OsRandom).unwrap()
}

async fn migrated(server: &PostgresServer) -> PostgresStore {
    let store = PostgresStore::open(&server.url()).unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_created_until_migrate_which_is_versioned_and_repeatable() {
    let server = PostgresServer::start().unwrap();
    let store = PostgresStore::open(&server.url())
        .unwrap()
        .with_table("tokens", "user_tokens")
        .unwrap();
    let error = store.load(&key("a")).await.unwrap_err();
    assert!(error.to_string().contains("migrate"), "{error}");
    // Several replicas migrating at once take turns.
    let (a, b, c) = tokio::join!(store.migrate(), store.migrate(), store.migrate());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert_eq!(store.load(&key("a")).await.unwrap(), None);
    let versions = server
        .psql("SELECT table_name, version FROM tokens.obauth_schema_versions")
        .unwrap();
    assert_eq!(versions.trim(), "\"tokens\".\"user_tokens\"|1");
    // A table a newer obauth migrated is refused, not misread.
    server
        .psql("UPDATE tokens.obauth_schema_versions SET version = 9")
        .unwrap();
    assert_eq!(
        store.migrate().await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
    assert!(
        PostgresStore::open(&server.url())
            .unwrap()
            .with_table("a-b", "t")
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_compared_and_swapped_on_their_version() {
    let server = PostgresServer::start().unwrap();
    let store = migrated(&server).await;
    let other = PostgresStore::open(&server.url()).unwrap();
    let key = key("cas");
    let first = record("a1", "r1");
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Absent, &first)
            .await
            .unwrap(),
        Cas::Written(1)
    );
    assert_eq!(
        other
            .compare_and_swap(&key, Expect::Absent, &record("x", "x"))
            .await
            .unwrap(),
        Cas::Conflict(Some(Stored {
            version: 1,
            record: first.clone()
        }))
    );
    let second = record("a2", "r2");
    assert_eq!(
        other
            .compare_and_swap(&key, Expect::Version(1), &second)
            .await
            .unwrap(),
        Cas::Written(2)
    );
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Version(1), &record("stale", "stale"))
            .await
            .unwrap(),
        Cas::Conflict(Some(Stored {
            version: 2,
            record: second.clone()
        })),
        "a stale writer must not overwrite a newer record"
    );
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Any, &first)
            .await
            .unwrap(),
        Cas::Written(3)
    );
    assert_eq!(
        store
            .compare_and_swap(&self::key("none"), Expect::Version(3), &first)
            .await
            .unwrap(),
        Cas::Conflict(None)
    );
    assert_eq!(store.load(&key).await.unwrap().unwrap().record, first);
    // The expiry column says when the access token expires, for people and clean-up jobs.
    let expires = server
        .psql("SELECT floor(extract(epoch FROM expires_at))::bigint, version FROM obauth_tokens WHERE version = 3")
        .unwrap();
    assert_eq!(expires.trim(), "1700003600|3");

    // Many writers, no lost update.
    let store = std::sync::Arc::new(store);
    let counter = self::key("counter");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (store, counter) = (store.clone(), counter.clone());
        tasks.spawn(async move {
            for _ in 0..10 {
                loop {
                    let current = store.load(&counter).await.unwrap();
                    let mut next = record("a", "r");
                    next.expires_in = current.as_ref().map_or(0, |s| s.record.expires_in) + 1;
                    let expect = Expect::after(current.map(|s| s.version));
                    if let Cas::Written(_) = store
                        .compare_and_swap(&counter, expect, &next)
                        .await
                        .unwrap()
                    {
                        break;
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        store
            .load(&counter)
            .await
            .unwrap()
            .unwrap()
            .record
            .expires_in,
        60
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_one_holder_at_a_time_and_dies_with_its_session() {
    let server = PostgresServer::start().unwrap();
    let a = migrated(&server).await;
    let b = PostgresStore::open(&server.url()).unwrap();
    let key = key("lease");
    let (first, second) = (holder(), holder());
    let now = SystemTime::now();
    let ttl = Duration::from_secs(10);
    assert_eq!(
        a.try_lease(&key, &first, ttl, now).await.unwrap(),
        Lease::Granted
    );
    assert_eq!(
        a.try_lease(&key, &first, ttl, now).await.unwrap(),
        Lease::Granted
    );
    // Another holder, in this process (another connection) or another: held.
    assert!(matches!(
        a.try_lease(&key, &second, ttl, now).await.unwrap(),
        Lease::Held { .. }
    ));
    assert!(matches!(
        b.try_lease(&key, &second, ttl, now).await.unwrap(),
        Lease::Held { .. }
    ));
    // Another key is free.
    assert_eq!(
        b.try_lease(&self::key("other"), &second, ttl, now)
            .await
            .unwrap(),
        Lease::Granted
    );
    // Released by a stranger: nothing happens. By its holder: free.
    b.release(&key, &second).await.unwrap();
    assert!(matches!(
        b.try_lease(&key, &second, ttl, now).await.unwrap(),
        Lease::Held { .. }
    ));
    a.release(&key, &first).await.unwrap();
    assert_eq!(
        b.try_lease(&key, &second, ttl, now).await.unwrap(),
        Lease::Granted
    );

    // A holder whose session dies (the process killed) lets the lock go with it.
    let victim = holder();
    let lonely = self::key("victim");
    assert_eq!(
        a.try_lease(&lonely, &victim, ttl, now).await.unwrap(),
        Lease::Granted
    );
    server
        .psql(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND pid <> pg_backend_pid()",
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if b.try_lease(&lonely, &holder(), ttl, now).await.unwrap() == Lease::Granted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead session's lock stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_records_are_never_in_clear_in_the_database() {
    let server = PostgresServer::start().unwrap();
    let sealing = SealingKey::generate(&mut OsRandom).unwrap();
    let store = PostgresStore::open_sealed(&server.url(), sealing.clone()).unwrap();
    store.migrate().await.unwrap();
    let key = key("sealed");
    let secret = record("access-MARKER-1", "refresh-MARKER-2");
    store
        .compare_and_swap(&key, Expect::Absent, &secret)
        .await
        .unwrap();
    let raw = server
        .psql("SELECT encode(record, 'escape') FROM obauth_tokens")
        .unwrap();
    assert!(!raw.is_empty());
    assert!(!raw.contains("MARKER"), "{raw}");
    let same = PostgresStore::open_sealed(&server.url(), sealing).unwrap();
    assert_eq!(same.load(&key).await.unwrap().unwrap().record, secret);
    let wrong =
        PostgresStore::open_sealed(&server.url(), SealingKey::generate(&mut OsRandom).unwrap())
            .unwrap();
    assert_eq!(
        wrong.load(&key).await.unwrap_err().kind(),
        StoreErrorKind::Sealed
    );
    assert!(!format!("{store:?}").contains("MARKER"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_stays_out_of_debug_and_errors() {
    let server = PostgresServer::start().unwrap();
    let password = server.password().to_owned();
    let store = migrated(&server).await;
    assert!(!format!("{store:?}").contains(&password));
    assert!(format!("{store:?}").contains(&format!("127.0.0.1:{}", server.port())));
    let wrong = server.url().replace(&password, "wrong-MARKER-3");
    let error = PostgresStore::open(&wrong)
        .unwrap()
        .load(&key("x"))
        .await
        .unwrap_err();
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(
            !shown.contains("MARKER") && !shown.contains(&password),
            "{shown}"
        );
    }
    let query = format!(
        "postgres://obauth@127.0.0.1:{}/obauth?password=qp-MARKER-4",
        server.port()
    );
    let store = PostgresStore::open(&query).unwrap();
    assert!(!format!("{store:?}").contains("MARKER"));
    for bad in [
        "postgres://:MARKER-5@h:notaport/db",
        "mysql://MARKER-6@h/db",
        "MARKER-7",
    ] {
        let error = PostgresStore::open(bad).unwrap_err();
        assert!(!error.to_string().contains("MARKER"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_in_bounded_time_and_a_restart_is_picked_up() {
    let mut server = PostgresServer::start().unwrap();
    let store = PostgresStore::open(&server.url())
        .unwrap()
        .with_timeout(Duration::from_millis(800))
        .unwrap();
    store.migrate().await.unwrap();
    let key = key("durable");
    store
        .compare_and_swap(&key, Expect::Absent, &record("a", "r"))
        .await
        .unwrap();
    server.stop().unwrap();
    let started = std::time::Instant::now();
    let error = store.load(&key).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.restart().unwrap();
    // Killed with SIGKILL right after a commit: the commit is there after recovery.
    store
        .compare_and_swap(&key, Expect::Version(1), &record("a2", "r2"))
        .await
        .unwrap();
    server.kill();
    assert_eq!(
        store.load(&key).await.unwrap_err().kind(),
        StoreErrorKind::Unavailable
    );
    server.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        match store.load(&key).await {
            Ok(stored) => break stored.unwrap(),
            Err(error) if std::time::Instant::now() < deadline => {
                assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("did not reconnect: {error}"),
        }
    };
    assert_eq!(stored.version, 2);
    assert_eq!(stored.record, record("a2", "r2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_applications_own_pool_shares_it() {
    let server = PostgresServer::start().unwrap();
    let config: tokio_postgres::Config = server.url().parse().unwrap();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        config,
        tokio_postgres::NoTls,
    ))
    .max_size(2)
    .build()
    .unwrap();
    let store = PostgresStore::from_pool(pool.clone(), None)
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    store.migrate().await.unwrap();
    let key = key("pooled");
    store
        .compare_and_swap(&key, Expect::Absent, &record("a", "r"))
        .await
        .unwrap();
    // The application's own queries see the record on the same pool.
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT version FROM obauth_tokens WHERE key = $1",
            &[&key.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(client);
    // A lease holds one of its connections until released.
    let holder = holder();
    let now = SystemTime::now();
    assert_eq!(
        store
            .try_lease(&key, &holder, Duration::from_secs(5), now)
            .await
            .unwrap(),
        Lease::Granted
    );
    assert_eq!(pool.status().size - pool.status().available, 1);
    store.release(&key, &holder).await.unwrap();
    assert_eq!(pool.status().size - pool.status().available, 0);
    assert!(format!("{store:?}").contains("application's pool"));
}

/// How many advisory locks the server holds, as psql prints the count.
fn advisory_locks(server: &PostgresServer) -> String {
    server
        .psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_runs_out_by_itself_and_a_renewal_moves_its_end() {
    let server = PostgresServer::start().unwrap();
    let a = migrated(&server).await;
    let b = PostgresStore::open(&server.url()).unwrap();
    let advisory = || advisory_locks(&server);
    let key = key("kept");
    let kept = holder();
    let now = SystemTime::now();
    let ttl = Duration::from_millis(400);
    assert_eq!(
        a.try_lease(&key, &kept, ttl, now).await.unwrap(),
        Lease::Granted
    );
    // Renewed half-way: it lasts 400 ms from then, not from when it was taken.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        a.try_lease(&key, &kept, ttl, now).await.unwrap(),
        Lease::Granted
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        b.try_lease(&key, &holder(), ttl, now).await.unwrap(),
        Lease::Held { .. }
    ));
    // Never given back (a write of rotated tokens failed, a fetch dropped), and `a` is not
    // called again: the lock goes all the same when its time is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while advisory() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the run-out lease kept its lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        b.try_lease(&key, &holder(), ttl, now).await.unwrap(),
        Lease::Granted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_given_back_ends_with_its_time_or_its_store_and_never_returns_to_the_pool() {
    let server = PostgresServer::start().unwrap();
    let advisory = || advisory_locks(&server);
    let config: tokio_postgres::Config = server.url().parse().unwrap();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        config,
        tokio_postgres::NoTls,
    ))
    .max_size(4)
    .build()
    .unwrap();
    let store = PostgresStore::from_pool(pool.clone(), None);
    store.migrate().await.unwrap();
    let key = key("forgotten");
    let now = SystemTime::now();
    // Taken for 200 ms and never given back (a fetch dropped mid-way).
    assert_eq!(
        store
            .try_lease(&key, &holder(), Duration::from_millis(200), now)
            .await
            .unwrap(),
        Lease::Granted
    );
    assert_eq!(advisory(), "1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its time is up: the next caller in this process ends it and takes the lease.
    let next = holder();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store
        .try_lease(&key, &next, Duration::from_secs(30), now)
        .await
        .unwrap()
        != Lease::Granted
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run-out lease stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(advisory(), "1");
    // The store dropped while holding it: its connection is closed, not handed back to the
    // application's pool still holding the lock.
    drop(store);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while advisory() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "a pooled connection kept the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = pool.get().await.unwrap();
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
}
