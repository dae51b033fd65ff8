//! Redis-backed token managers in real processes, async and blocking mixed, against
//! obauth-mock (refresh-token reuse detection on, as RFC 9700 asks of servers) and a
//! `redis-server` of the test's own: one token request for a fleet, one presentation per
//! refresh token, a lease holder killed or paused, Redis killed, restarted and emptied.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obauth_blocking::RedisStore;
use obauth_blocking::core::store::{StoreKey, TokenStore};
use obauth_mock::{Endpoint, Fault, MockServer};
use obauth_test_peers::RedisServer;

use common::{connect, run, tokens, worker};

/// Half the processes of a fleet are async, half blocking.
fn binding(n: usize) -> &'static str {
    if n.is_multiple_of(2) {
        "async"
    } else {
        "blocking"
    }
}

/// The key the workers' application token is kept under.
fn app_key(mock: &MockServer) -> StoreKey {
    StoreKey::client_credentials(
        &format!("{}/connect/token", mock.base_url()),
        "mock-client",
        obauth_blocking::core::manager::TRUELAYER_AUTH_METHOD,
        "payments",
    )
}

/// What a worker printed, line by line, whether it succeeded or not.
fn lines(child: Child) -> (bool, Vec<String>) {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (
        output.status.success(),
        stdout.lines().map(str::to_owned).collect(),
    )
}

/// Sends `signal` (STOP, CONT) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn eight_processes_of_fifty_callers_on_a_cold_key_make_one_token_request() {
    let redis = RedisServer::start().unwrap();
    let mock = MockServer::start();
    // The first answer takes a while, so that every process finds the lease taken.
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_millis(500)),
    );
    let args = ["--mode", "app", "--callers", "50"];
    let children: Vec<Child> = (0..8)
        .map(|n| {
            worker(binding(n), &mock, &redis.url(), &args)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for child in children {
        all.extend(tokens(child.wait_with_output().unwrap()));
    }
    assert_eq!(all.len(), 400);
    all.dedup();
    assert_eq!(
        all.len(),
        1,
        "every caller of every process got the same token"
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

#[test]
fn eight_processes_refreshing_one_connection_never_present_a_refresh_token_twice() {
    let redis = RedisServer::start().unwrap();
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(true);
    connect(&mock, Arc::new(RedisStore::open(&redis.url()).unwrap()));
    let args = [
        "--mode",
        "user",
        "--connection",
        "alice",
        "--refresh",
        "--repeat",
        "20",
    ];
    let children: Vec<Child> = (0..8)
        .map(|n| {
            worker(binding(n), &mock, &redis.url(), &args)
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
    // Every refresh asked for was made once: 160 refreshes, 160 refresh requests, and the
    // code exchange.
    assert_eq!(mock.successful_refreshes(), 160);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 161);
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        160,
        "every refresh handed out a new access token"
    );
    // The connection still works after the storm.
    let after = tokens(run(&mut worker(
        "blocking",
        &mock,
        &redis.url(),
        &["--mode", "user", "--connection", "alice", "--refresh"],
    )));
    assert_eq!(after.len(), 1);
}

#[test]
fn a_lease_holder_killed_mid_fetch_is_taken_over_when_its_lease_runs_out() {
    for (n, holder_binding) in ["async", "blocking"].into_iter().enumerate() {
        let redis = RedisServer::start().unwrap();
        let mock = MockServer::start();
        mock.inject(
            Some(Endpoint::TrueLayerToken),
            1,
            Fault::Delay(Duration::from_secs(30)),
        );
        let mut holder = worker(
            holder_binding,
            &mock,
            &redis.url(),
            &["--mode", "app", "--deadline-ms", "2000"],
        )
        .spawn()
        .unwrap();
        let started = Instant::now();
        while mock.requests(Endpoint::TrueLayerToken) == 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "never asked");
            std::thread::sleep(Duration::from_millis(10));
        }
        holder.kill().unwrap(); // SIGKILL: the lease is not given back
        holder.wait().unwrap();
        let next = tokens(run(&mut worker(
            binding(n + 1),
            &mock,
            &redis.url(),
            &["--mode", "app", "--deadline-ms", "15000"],
        )));
        let elapsed = started.elapsed();
        assert_eq!(
            mock.requests(Endpoint::TrueLayerToken),
            2,
            "{holder_binding}"
        );
        assert!(
            elapsed >= Duration::from_millis(1900),
            "{holder_binding}: the lease was taken over before it ran out ({elapsed:?})"
        );
        assert!(
            elapsed < Duration::from_secs(8),
            "{holder_binding}: took {elapsed:?}, more than the lease and one request"
        );
        // The record is the one the second process fetched and served.
        let stored = RedisStore::open(&redis.url())
            .unwrap()
            .load(&app_key(&mock))
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.record.access_token.unwrap().expose_secret(), next[0]);
    }
}

#[test]
fn a_holder_paused_past_its_lease_cannot_overwrite_the_newer_record() {
    for (n, stale_binding) in ["async", "blocking"].into_iter().enumerate() {
        let redis = RedisServer::start().unwrap();
        let mock = MockServer::start();
        let mut stale = worker(
            stale_binding,
            &mock,
            &redis.url(),
            &[
                "--mode",
                "app",
                "--deadline-ms",
                "1000",
                "--pause-before-persist",
                "300",
            ],
        )
        .spawn()
        .unwrap();
        let mut out = BufReader::new(stale.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "persisting", "{stale_binding}");
        // Paused with its token in hand, before it writes; its lease runs out meanwhile.
        signal(stale.id(), "STOP");
        std::thread::sleep(Duration::from_millis(1200));
        let fresh = tokens(run(&mut worker(
            binding(n + 1),
            &mock,
            &redis.url(),
            &["--mode", "app"],
        )));
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
        let store = RedisStore::open(&redis.url()).unwrap();
        let before = store.load(&app_key(&mock)).unwrap().unwrap();
        assert_eq!(
            before.record.access_token.as_ref().unwrap().expose_secret(),
            fresh[0]
        );
        // Resumed: its write expected no record and finds one, so it is refused.
        signal(stale.id(), "CONT");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        stale.wait().unwrap();
        let after = store.load(&app_key(&mock)).unwrap().unwrap();
        assert_eq!(
            after, before,
            "{stale_binding}: the stale holder overwrote the record"
        );
        assert!(!rest.contains("persisting\npersisting"), "{rest}");
        // It adopted the newer record instead of serving its own token.
        assert_eq!(rest.trim(), format!("ok {}", fresh[0]), "{stale_binding}");
    }
}

#[test]
fn rediss_works_in_a_program_that_links_both_rustls_crypto_providers() {
    // This test binary links rustls with ring (ureq) and aws-lc-rs (reqwest): rustls then
    // panics on a TLS client config unless someone chose a provider, which the store does.
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let redis = RedisServer::start_tls(&cert.pem(), &signing_key.serialize_pem()).unwrap();
    let store = RedisStore::open(&redis.url())
        .unwrap()
        .with_root_certificate(cert.pem().as_bytes())
        .unwrap();
    assert_eq!(
        store
            .load(&StoreKey::client_credentials("u", "c", "m", "s"))
            .unwrap(),
        None
    );
}

#[test]
fn application_tokens_outlive_a_dead_redis_and_recover_when_it_comes_back_empty() {
    let mut redis = RedisServer::start().unwrap();
    let mock = MockServer::start();
    // Short tokens, so that several are fetched during the run.
    mock.set_access_token_lifetime(Duration::from_secs(1), Duration::from_secs(1));
    let args = [
        "--mode",
        "app",
        "--callers",
        "4",
        "--repeat",
        "60",
        "--every-ms",
        "50",
    ];
    let children: Vec<Child> = (0..4)
        .map(|n| {
            worker(binding(n), &mock, &redis.url(), &args)
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    redis.kill();
    for child in children {
        let (ok, lines) = lines(child);
        assert!(
            ok,
            "a caller failed while Redis was down:\n{}",
            lines.join("\n")
        );
        assert_eq!(lines.len(), 4 * 60);
    }
    // Redis back with nothing: the first process fetches once and shares it again.
    redis.restart_empty().unwrap();
    let before = mock.requests(Endpoint::TrueLayerToken);
    let first = tokens(run(&mut worker(
        "async",
        &mock,
        &redis.url(),
        &["--mode", "app"],
    )));
    let second = tokens(run(&mut worker(
        "blocking",
        &mock,
        &redis.url(),
        &["--mode", "app"],
    )));
    assert_eq!(first, second);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), before + 1);
}

#[test]
fn a_user_connection_is_never_refreshed_blind_and_survives_a_redis_killed_with_sigkill() {
    let mut redis = RedisServer::start_durable().unwrap();
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(true);
    connect(&mock, Arc::new(RedisStore::open(&redis.url()).unwrap()));
    let refresh = ["--mode", "user", "--connection", "alice", "--refresh"];
    for binding in ["async", "blocking"] {
        tokens(run(&mut worker(binding, &mock, &redis.url(), &refresh)));
    }
    redis.kill();
    let refreshes = mock.successful_refreshes();
    for binding in ["async", "blocking"] {
        let (ok, lines) = lines(
            worker(binding, &mock, &redis.url(), &refresh)
                .spawn()
                .unwrap(),
        );
        assert!(!ok, "{binding}: refreshed without its store");
        assert!(
            lines[0].starts_with("err store/Unavailable"),
            "{binding}: {lines:?}"
        );
    }
    assert_eq!(mock.successful_refreshes(), refreshes, "a blind refresh");
    // Back from its append-only file: the last rotated refresh token is there and works.
    redis.restart().unwrap();
    for binding in ["async", "blocking"] {
        tokens(run(&mut worker(binding, &mock, &redis.url(), &refresh)));
    }
    assert_eq!(mock.refused_refreshes(), 0);
    assert_eq!(mock.revoked_grants(), 0);
    assert_eq!(mock.successful_refreshes(), refreshes + 2);
}
