//! PostgreSQL-backed user connections in real async processes, against obauth-mock with
//! refresh-token reuse detection on and a PostgreSQL server of the test's own: a refresh
//! storm, a lock holder killed, the database stopped, killed and restarted.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::ClientSecret;
use obauth_async::{PostgresStore, TrueLayerClient, UserTokens};
use obauth_mock::{Endpoint, Fault, MockServer};
use obauth_test_peers::PostgresServer;

use common::{exchange, run, tokens, worker};

const REFRESH: [&str; 5] = ["--mode", "user", "--connection", "alice", "--refresh"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Migrates the table and saves a connection `alice` made on the mock.
fn connect(mock: &MockServer, server: &PostgresServer) {
    let (_, token, requested_at) = exchange(mock);
    runtime().block_on(async {
        let store = PostgresStore::open(&server.url()).unwrap();
        store.migrate().await.unwrap();
        let client = TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .build()
        .unwrap();
        UserTokens::from_token_response(&client, "alice", &token, requested_at, store)
            .await
            .unwrap();
    });
}

/// What a worker printed, and whether it succeeded.
fn lines(child: Child) -> (bool, Vec<String>) {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (
        output.status.success(),
        stdout.lines().map(str::to_owned).collect(),
    )
}

#[test]
fn eight_processes_refreshing_one_connection_never_present_a_refresh_token_twice() {
    let server = PostgresServer::start().unwrap();
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(true);
    connect(&mock, &server);
    let mut args = REFRESH.to_vec();
    args.extend(["--repeat", "20"]);
    let children: Vec<Child> = (0..8)
        .map(|_| {
            worker("async", &mock, &server.url(), &args)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for child in children {
        all.extend(tokens(child.wait_with_output().unwrap()));
    }
    assert_eq!(all.len(), 160);
    assert_eq!(
        mock.refresh_token_reuses(),
        0,
        "a refresh token was presented twice"
    );
    assert_eq!(mock.revoked_grants(), 0);
    assert_eq!(mock.refused_refreshes(), 0);
    assert_eq!(mock.successful_refreshes(), 160);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 161);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 160);
}

#[test]
fn a_lock_holder_killed_mid_refresh_is_taken_over_as_its_session_ends() {
    let server = PostgresServer::start().unwrap();
    let mock = MockServer::start();
    connect(&mock, &server);
    // The holder's refresh never gets an answer in time.
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_secs(30)),
    );
    let before = mock.requests(Endpoint::TrueLayerToken);
    let mut holder = worker("async", &mock, &server.url(), &REFRESH)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while mock.requests(Endpoint::TrueLayerToken) == before {
        assert!(started.elapsed() < Duration::from_secs(20), "never asked");
        std::thread::sleep(Duration::from_millis(10));
    }
    holder.kill().unwrap(); // SIGKILL: its session, and the lock, end with it
    holder.wait().unwrap();
    let killed = Instant::now();
    let next = tokens(run(&mut worker("async", &mock, &server.url(), &REFRESH)));
    assert_eq!(next.len(), 1);
    // No lease time-out to wait out: the lock went with the session.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    // The dead holder's refresh was answered (after it died) or not: either way the next
    // process refreshed with what the table held, and the record is its.
    assert_eq!(mock.refused_refreshes(), 0);
    let stored = server.psql("SELECT version FROM obauth_tokens").unwrap();
    assert_eq!(stored.trim(), "2", "the saved connection, then one refresh");
}

#[test]
fn a_stopped_database_refuses_blind_refreshes_and_a_killed_one_keeps_every_commit() {
    let mut server = PostgresServer::start().unwrap();
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(true);
    connect(&mock, &server);
    tokens(run(&mut worker("async", &mock, &server.url(), &REFRESH)));
    let refreshes = mock.successful_refreshes();

    server.stop().unwrap();
    let (ok, lines) = lines(
        worker("async", &mock, &server.url(), &REFRESH)
            .spawn()
            .unwrap(),
    );
    assert!(!ok, "refreshed without its store");
    assert!(lines[0].starts_with("err store/Unavailable"), "{lines:?}");
    assert_eq!(mock.successful_refreshes(), refreshes, "a blind refresh");

    server.restart().unwrap();
    tokens(run(&mut worker("async", &mock, &server.url(), &REFRESH)));
    // Killed with SIGKILL right after: every committed refresh token is there and works.
    server.kill();
    server.restart().unwrap();
    let mut args = REFRESH.to_vec();
    args.extend(["--repeat", "3"]);
    tokens(run(&mut worker("async", &mock, &server.url(), &args)));
    assert_eq!(mock.refused_refreshes(), 0);
    assert_eq!(mock.revoked_grants(), 0);
    assert_eq!(mock.successful_refreshes(), refreshes + 4);
}

/// A store on which another writer lands a record between this manager's read and its write.
struct Racing {
    inner: PostgresStore,
    other: PostgresStore,
    theirs: obauth_async::core::store::TokenRecord,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl obauth_async::AsyncTokenStore for Racing {
    async fn load(
        &self,
        key: &obauth_async::core::store::StoreKey,
    ) -> Result<Option<obauth_async::core::store::Stored>, obauth_async::core::StoreError> {
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &obauth_async::core::store::StoreKey,
        expect: obauth_async::core::store::Expect,
        record: &obauth_async::core::store::TokenRecord,
    ) -> Result<obauth_async::core::store::Cas, obauth_async::core::StoreError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.other
                .compare_and_swap(key, obauth_async::core::store::Expect::Any, &self.theirs)
                .await?;
        }
        self.inner.compare_and_swap(key, expect, record).await
    }

    async fn try_lease(
        &self,
        key: &obauth_async::core::store::StoreKey,
        holder: &obauth_async::core::store::LeaseHolder,
        ttl: Duration,
        now: std::time::SystemTime,
    ) -> Result<obauth_async::core::store::Lease, obauth_async::core::StoreError> {
        self.inner.try_lease(key, holder, ttl, now).await
    }

    async fn release(
        &self,
        key: &obauth_async::core::store::StoreKey,
        holder: &obauth_async::core::store::LeaseHolder,
    ) -> Result<(), obauth_async::core::StoreError> {
        self.inner.release(key, holder).await
    }
}

#[test]
fn a_writer_that_loses_the_race_adopts_the_newer_record() {
    let server = PostgresServer::start().unwrap();
    let mock = MockServer::start();
    runtime().block_on(async {
        let store = PostgresStore::open(&server.url()).unwrap();
        store.migrate().await.unwrap();
        let theirs = obauth_async::core::store::TokenRecord {
            access_token: Some(obauth_async::types::AccessToken::new("THEIRS")),
            obtained_at: std::time::SystemTime::now(),
            expires_in: 3600,
            refresh_token: None,
        };
        let racing = Racing {
            inner: store,
            other: PostgresStore::open(&server.url()).unwrap(),
            theirs,
            raced: std::sync::atomic::AtomicBool::new(false),
        };
        let client = TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .build()
        .unwrap();
        let source = obauth_async::TokenSource::truelayer(
            client,
            obauth_async::types::Scopes::from([obauth_async::types::truelayer::Scope::Payments]),
        )
        .with_store(obauth_async::Store::from_async(std::sync::Arc::new(racing)));
        // Its own token was fetched, but the write found a newer record: that one is served.
        let token = source.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), "THEIRS");
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    });
    let stored = server.psql("SELECT version FROM obauth_tokens").unwrap();
    assert_eq!(stored.trim(), "1", "the loser did not overwrite the winner");
}
