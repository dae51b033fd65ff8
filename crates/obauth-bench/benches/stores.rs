//! The token stores under measurement, written to target/obauth-bench/stores.json:
//!
//! * the first `access_token()` of a process whose token is in a SQLite file (open the
//!   store, read the record, adopt it) against a bare rusqlite open and `SELECT` of the
//!   same record, opened the same way, paired in the same run;
//! * how many token requests four processes of fifty callers make on a cold SQLite file
//!   (the processes are this binary, started again with `--cold-start-worker`);
//! * the same first read served from Redis, against a bare `HMGET` of the record on a
//!   connection of the same kind (one round trip each);
//! * how many token requests eight processes of fifty callers make on a cold Redis key, and
//!   how many refresh requests eight processes make refreshing one user connection twenty
//!   times each against obauth-mock with refresh-token reuse detection on;
//! * the same first read served from PostgreSQL (async), against a bare `SELECT` of the
//!   record on the same pool, and the refresh storm on PostgreSQL;
//! * a soak: 1,000 async tasks and two threads reading continuously through SQLite-backed
//!   sources while obauth-mock issues 2-second tokens: errors, token requests against the
//!   number the expiry policy implies, and the read latency's p50/p99/max.
//!
//! `-- --test` (what `cargo xtask bench --smoke` passes) runs each once, briefly.

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use obauth_blocking::core::BaseUrl;
use obauth_blocking::core::expiry::ExpiryPolicy;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::parse_callback;
use obauth_blocking::core::truelayer::auth_link::AuthLink;
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{ClientSecret, Scopes};
use obauth_blocking::{RedisStore, SqliteStore, TokenStore};
use obauth_mock::{Endpoint, MockServer};
use obauth_test_peers::{PostgresServer, RedisServer};
use rusqlite::{Connection, OpenFlags};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--cold-start-worker") {
        cold_start_worker(&args[at + 1], &args[at + 2]);
        return;
    }
    if let Some(at) = args.iter().position(|arg| arg == "--storm-worker") {
        storm_worker(&args[at + 1], &args[at + 2]);
        return;
    }
    // A smoke run: `cargo bench -- --test`, or `cargo test --benches` (which, unlike
    // `cargo bench`, does not pass `--bench`).
    let smoke = args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench");
    let dir = TempDir::new();
    let addr = obauth_bench::start_token_server();
    let base = format!("http://{addr}");

    let first_read = first_read(&base, &dir.0, if smoke { 3 } else { 41 });
    let path = dir.0.join("cold-start.db");
    let sqlite_cold_start = cold_start(&base, path.to_str().unwrap(), 4);
    let redis = RedisServer::start().unwrap();
    let redis_first_read = redis_first_read(&base, &redis.url(), if smoke { 3 } else { 101 });
    // Cold: the first read above left the token in Redis.
    let mut flush = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("FLUSHALL").query(&mut flush).unwrap();
    let redis_cold_start = cold_start(&base, &redis.url(), 8);
    let redis_storm = refresh_storm(&redis.url());
    let postgres = PostgresServer::start().unwrap();
    let postgres_first_read =
        postgres_first_read(&base, &postgres.url(), if smoke { 3 } else { 101 });
    let postgres_storm = refresh_storm(&postgres.url());
    let soak = soak(
        &dir.0,
        if smoke {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(60)
        },
    );

    let out = serde_json::json!({
        "first_read": first_read,
        "cold_start": sqlite_cold_start,
        "redis_first_read": redis_first_read,
        "redis_cold_start": redis_cold_start,
        "refresh_storm": redis_storm,
        "postgres_first_read": postgres_first_read,
        "postgres_storm": postgres_storm,
        "soak": soak,
    });
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/obauth-bench");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("stores.json"), out.to_string()).unwrap();
    println!("stores: {out}");
}

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("obauth-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn blocking_client(base: &str) -> obauth_blocking::TrueLayerClient {
    obauth_blocking::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .build()
    .unwrap()
}

fn blocking_source(
    client: obauth_blocking::TrueLayerClient,
    store: Arc<dyn TokenStore>,
) -> obauth_blocking::TokenSource {
    obauth_blocking::TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
        .with_store(store)
}

/// The first read of a process, paired against a bare open and `SELECT` of the record.
fn first_read(base: &str, dir: &Path, rounds: usize) -> serde_json::Value {
    let path = dir.join("first-read.db");
    let client = blocking_client(base);
    // One process writes the token; every round below is a "fresh process" reading it.
    let writer = blocking_source(client.clone(), Arc::new(SqliteStore::open(&path).unwrap()));
    writer.access_token().unwrap();
    let key = writer.key().as_str().to_owned();
    let before = obauth_bench::requests();

    let ours = || {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let source = blocking_source(client.clone(), store);
        black_box(source.access_token().unwrap());
    };
    let bare = || {
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_EXRESCODE,
        )
        .unwrap();
        connection.busy_timeout(Duration::from_secs(5)).unwrap();
        let _: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .unwrap();
        connection
            .pragma_update(None, "synchronous", "FULL")
            .unwrap();
        let _: String = connection
            .pragma_query_value(None, "quick_check", |row| row.get(0))
            .unwrap();
        let _: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        let record: (i64, Vec<u8>) = connection
            .query_row(
                "SELECT version, record FROM obauth_tokens WHERE key = ?1",
                [key.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        black_box(record);
    };
    let time = |f: &dyn Fn()| {
        let began = Instant::now();
        f();
        began.elapsed()
    };
    let (mut ours_ns, mut bare_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = time(&ours);
            (a, time(&bare))
        } else {
            let b = time(&bare);
            (time(&ours), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        ours_ns.push(a.as_nanos() as f64);
        bare_ns.push(b.as_nanos() as f64);
    }
    assert_eq!(
        obauth_bench::requests(),
        before,
        "every first read was served from the file"
    );
    serde_json::json!({
        "rounds": rounds,
        "obauth_ns": median(ours_ns),
        "reference_ns": median(bare_ns),
        "ratio": median(ratios),
    })
}

/// `processes` copies of this binary, fifty callers each, on one cold store (a SQLite path
/// or a Redis URL).
fn cold_start(base: &str, store: &str, processes: usize) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap();
    let before = obauth_bench::requests();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args(["--cold-start-worker", store, base])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a cold-start worker failed");
        tokens.extend(
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(tokens.len(), 50 * processes);
    tokens.dedup();
    serde_json::json!({
        "processes": processes,
        "callers": 50 * processes,
        "distinct_tokens": tokens.len(),
        "requests": obauth_bench::requests() - before,
    })
}

/// A store from its spec: a Redis URL, or a SQLite path.
fn open_store(spec: &str) -> Arc<dyn TokenStore> {
    if spec.starts_with("redis://") {
        Arc::new(RedisStore::open(spec).unwrap())
    } else {
        Arc::new(SqliteStore::open(spec).unwrap())
    }
}

/// One of the cold-start processes: fifty threads asking at once.
fn cold_start_worker(store: &str, base: &str) {
    let source = blocking_source(blocking_client(base), open_store(store));
    let barrier = std::sync::Barrier::new(50);
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    source.access_token().unwrap().expose_secret().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for token in tokens {
        println!("{}", &token[..token.len().min(64)]);
    }
}

/// The first read of a process served from Redis, paired against a bare `HMGET` of the
/// record. Both sides use a connection already made (the store's pooled one; a redis
/// connection of the same kind for the reference): one round trip each.
fn redis_first_read(base: &str, url: &str, rounds: usize) -> serde_json::Value {
    let client = blocking_client(base);
    let store: Arc<dyn TokenStore> = Arc::new(RedisStore::open(url).unwrap());
    let writer = blocking_source(client.clone(), Arc::clone(&store));
    writer.access_token().unwrap();
    let name = format!("obauth:record:{}", writer.key().as_str());
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let before = obauth_bench::requests();
    let ours = || {
        let source = blocking_source(client.clone(), Arc::clone(&store));
        black_box(source.access_token().unwrap());
    };
    let mut bare = || {
        let record: (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&name)
            .arg("v")
            .arg("r")
            .query(&mut connection)
            .unwrap();
        black_box(record);
    };
    // Warm both.
    ours();
    bare();
    let (mut ours_ns, mut bare_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let time = |f: &mut dyn FnMut()| {
            let began = Instant::now();
            f();
            began.elapsed()
        };
        let (a, b) = if round % 2 == 0 {
            let a = time(&mut || ours());
            (a, time(&mut bare))
        } else {
            let b = time(&mut bare);
            (time(&mut || ours()), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        ours_ns.push(a.as_nanos() as f64);
        bare_ns.push(b.as_nanos() as f64);
    }
    assert_eq!(
        obauth_bench::requests(),
        before,
        "every first read was served from Redis"
    );
    serde_json::json!({
        "rounds": rounds,
        "obauth_ns": median(ours_ns),
        "reference_ns": median(bare_ns),
        "ratio": median(ratios),
    })
}

/// Eight copies of this binary refresh one user connection twenty times each, on Redis,
/// against obauth-mock with refresh-token reuse detection on.
fn refresh_storm(url: &str) -> serde_json::Value {
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(true);
    let client = obauth_blocking::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let redirect = obauth_mock::TRUELAYER_REDIRECT_URI;
    let state = "storm-state";
    let link = client
        .create_auth_link(AuthLink::new("ob-transferwise", scopes, redirect, "c-1").state(state))
        .unwrap();
    let callback = parse_callback(&mock.approve(&link).unwrap(), state).unwrap();
    let requested_at = SystemTime::now();
    let answer = client.exchange_code(callback.code, redirect, None).unwrap();
    if url.starts_with("postgres://") {
        runtime().block_on(async {
            let store = obauth_async::PostgresStore::open(url).unwrap();
            store.migrate().await.unwrap();
            obauth_async::UserTokens::from_token_response(
                &async_client(&mock.base_url()),
                "storm",
                &answer,
                requested_at,
                store,
            )
            .await
            .unwrap();
        });
    } else {
        let store: Arc<dyn TokenStore> = Arc::new(RedisStore::open(url).unwrap());
        obauth_blocking::UserTokens::from_token_response(
            &client,
            "storm",
            &answer,
            requested_at,
            store,
        )
        .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let began = Instant::now();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args(["--storm-worker", url, &mock.base_url()])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a storm worker failed");
    }
    serde_json::json!({
        "processes": 8,
        "refreshes_asked": 8 * STORM_REFRESHES,
        "refresh_requests": mock.successful_refreshes() + mock.refused_refreshes(),
        "refused": mock.refused_refreshes(),
        "reuses": mock.refresh_token_reuses(),
        "revoked_grants": mock.revoked_grants(),
        "seconds": began.elapsed().as_secs_f64(),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An async client of the mock at `base`.
fn async_client(base: &str) -> obauth_async::TrueLayerClient {
    obauth_async::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap()
}

/// The first read of a process served from PostgreSQL (a fresh manager on a store whose
/// pool is warm), paired against a bare `SELECT` of the record through the same pool, the
/// statement prepared: one round trip each.
fn postgres_first_read(base: &str, url: &str, rounds: usize) -> serde_json::Value {
    let runtime = runtime();
    runtime.block_on(async {
        // One pool for both sides: the store's reads and the bare SELECT share connections.
        let config: tokio_postgres::Config = url.parse().unwrap();
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
            config,
            tokio_postgres::NoTls,
        ))
        .max_size(4)
        .build()
        .unwrap();
        let store = Arc::new(obauth_async::PostgresStore::from_pool(pool.clone(), None));
        store.migrate().await.unwrap();
        let client = obauth_async::TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(base).unwrap()),
            "client-id",
        )
        .client_secret(ClientSecret::new("client-secret"))
        .build()
        .unwrap();
        let source = |store: &Arc<obauth_async::PostgresStore>| {
            let store: Arc<dyn obauth_async::AsyncTokenStore> = store.clone();
            obauth_async::TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]))
                .with_store(obauth_async::Store::from_async(store))
        };
        let writer = source(&store);
        writer.access_token().await.unwrap();
        let key = writer.key().as_str().to_owned();
        let bare = || async {
            let client = pool.get().await.unwrap();
            let select = client
                .prepare_cached(
                    "SELECT version, record FROM \"public\".\"obauth_tokens\" WHERE key = $1",
                )
                .await
                .unwrap();
            let row = client.query_opt(&select, &[&key]).await.unwrap().unwrap();
            let record: (i64, Vec<u8>) = (row.get(0), row.get(1));
            black_box(record);
        };
        let ours = || async {
            black_box(source(&store).access_token().await.unwrap());
        };
        // Warm both (connections made, statements prepared, plans settled).
        for _ in 0..200 {
            ours().await;
            bare().await;
        }
        let before = obauth_bench::requests();
        let (mut ours_ns, mut bare_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let began = Instant::now();
                ours().await;
                let a = began.elapsed();
                let began = Instant::now();
                bare().await;
                (a, began.elapsed())
            } else {
                let began = Instant::now();
                bare().await;
                let b = began.elapsed();
                let began = Instant::now();
                ours().await;
                (began.elapsed(), b)
            };
            ratios.push(a.as_secs_f64() / b.as_secs_f64());
            ours_ns.push(a.as_nanos() as f64);
            bare_ns.push(b.as_nanos() as f64);
        }
        assert_eq!(
            obauth_bench::requests(),
            before,
            "every first read was served from PostgreSQL"
        );
        serde_json::json!({
            "rounds": rounds,
            "obauth_ns": median(ours_ns),
            "reference_ns": median(bare_ns),
            "ratio": median(ratios),
        })
    })
}

/// Refreshes per storm process.
const STORM_REFRESHES: usize = 20;

/// One of the storm processes: refreshes the connection, one refresh after another (async
/// on PostgreSQL, whose store is async only; blocking otherwise).
fn storm_worker(url: &str, base: &str) {
    if url.starts_with("postgres://") {
        runtime().block_on(async {
            let store = obauth_async::PostgresStore::open(url).unwrap();
            let tokens =
                obauth_async::UserTokens::open(&async_client(base), "storm", store).unwrap();
            for _ in 0..STORM_REFRESHES {
                tokens.refresh_now().await.unwrap();
            }
        });
        return;
    }
    let client = obauth_blocking::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    let tokens = obauth_blocking::UserTokens::open(&client, "storm", open_store(url)).unwrap();
    for _ in 0..STORM_REFRESHES {
        tokens.refresh_now().unwrap();
    }
}

/// Latencies in log-linear buckets (8 per power of two) and the exact maximum.
struct Histogram {
    buckets: Vec<u64>,
    max_ns: u64,
    count: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; 64 * 8],
            max_ns: 0,
            count: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        let ns = ns.max(1);
        let power = 63 - ns.leading_zeros() as usize;
        let fraction = if power >= 3 {
            ((ns >> (power - 3)) & 7) as usize
        } else {
            0
        };
        power * 8 + fraction
    }

    /// The upper bound of bucket `index`, in nanoseconds.
    fn bound(index: usize) -> u64 {
        let (power, fraction) = (index / 8, (index % 8) as u64);
        if power < 3 {
            return 1 << (power + 1);
        }
        (8 + fraction + 1) << (power - 3)
    }

    fn record(&mut self, ns: u64) {
        self.buckets[Self::bucket(ns)] += 1;
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
        self.count += other.count;
    }

    fn quantile(&self, q: f64) -> u64 {
        let wanted = (self.count as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted.max(1) {
                return Self::bound(index).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// The load held: 1,000 async tasks and 2 threads read continuously for `length`.
fn soak(dir: &Path, length: Duration) -> serde_json::Value {
    let mock = MockServer::start();
    let lifetime = Duration::from_secs(2);
    mock.set_access_token_lifetime(lifetime, lifetime);
    let path = dir.join("soak.db");
    let base = BaseUrl::parse(&mock.base_url()).unwrap();
    let secret = || ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET);
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let async_source = {
        let _guard = runtime.enter();
        obauth_async::TokenSource::truelayer(
            obauth_async::TrueLayerClient::builder(
                Environment::Custom(base.clone()),
                obauth_mock::TRUELAYER_CLIENT_ID,
            )
            .client_secret(secret())
            .build()
            .unwrap(),
            Scopes::from([Scope::Payments]),
        )
        .with_store(Arc::clone(&store))
    };
    let blocking = obauth_blocking::TokenSource::truelayer(
        obauth_blocking::TrueLayerClient::builder(
            Environment::Custom(base),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(secret())
        .build()
        .unwrap(),
        Scopes::from([Scope::Payments]),
    )
    .with_store(Arc::new(SqliteStore::open(&path).unwrap()));

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (source, stop, errors) = (blocking.clone(), Arc::clone(&stop), Arc::clone(&errors));
            std::thread::spawn(move || {
                let mut histogram = Histogram::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    if source.access_token().is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    histogram.record(at.elapsed().as_nanos() as u64);
                }
                histogram
            })
        })
        .collect();
    let mut histogram = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (source, stop, errors) =
                (async_source.clone(), Arc::clone(&stop), Arc::clone(&errors));
            tasks.spawn(async move {
                let mut histogram = Histogram::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    if source.access_token().await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    histogram.record(at.elapsed().as_nanos() as u64);
                    tokio::task::yield_now().await;
                }
                histogram
            });
        }
        tokio::time::sleep(length).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Histogram::new();
        while let Some(task) = tasks.join_next().await {
            all.merge(&task.unwrap());
        }
        all
    });
    for thread in threads {
        histogram.merge(&thread.join().unwrap());
    }
    let elapsed = began.elapsed();
    let requests = mock.requests(Endpoint::TrueLayerToken);
    // A token is replaced once it is due: every `fresh` window of the default policy, plus
    // the first request.
    let fresh = ExpiryPolicy::default().windows(lifetime).fresh;
    let expected = 1 + (elapsed.as_secs_f64() / fresh.as_secs_f64()).floor() as u64;
    serde_json::json!({
        "seconds": elapsed.as_secs_f64(),
        "tasks": 1000,
        "threads": 2,
        "token_lifetime_s": lifetime.as_secs(),
        "refresh_every_s": fresh.as_secs_f64(),
        "reads": histogram.count,
        "errors": errors.load(Ordering::Relaxed),
        "requests": requests,
        "expected_requests": expected,
        "p50_ns": histogram.quantile(0.5),
        "p99_ns": histogram.quantile(0.99),
        "max_ns": histogram.max_ns,
    })
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
