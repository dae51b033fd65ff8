//! SQLite-backed token managers in real processes, async and blocking, against obauth-mock:
//! sharing across runs, single-flight across processes, and processes killed with SIGKILL
//! at the two moments that matter (holding the lease; right after writing a rotated
//! refresh token).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obauth_blocking::SqliteStore;
use obauth_blocking::core::store::{StoreKey, TokenStore};
use obauth_mock::{Endpoint, Fault, MockServer};

mod common;

use common::{BINDINGS, TempDir, connect, run, tokens, worker};

#[test]
fn two_processes_one_after_the_other_make_one_token_request() {
    for binding in BINDINGS {
        let mock = MockServer::start();
        let dir = TempDir::new("sequential");
        let app = ["--mode", "app"];
        let first = tokens(run(&mut worker(binding, &mock, &dir.db(), &app)));
        let second = tokens(run(&mut worker(binding, &mock, &dir.db(), &app)));
        assert_eq!(first, second, "{binding}");
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1, "{binding}");
    }
}

#[test]
fn four_processes_of_fifty_callers_on_a_cold_file_make_one_token_request() {
    for binding in BINDINGS {
        let mock = MockServer::start();
        // The first answer takes a while, so that every process finds the lease taken.
        mock.inject(
            Some(Endpoint::TrueLayerToken),
            1,
            Fault::Delay(Duration::from_millis(400)),
        );
        let dir = TempDir::new("cold");
        let args = ["--mode", "app", "--callers", "50"];
        let children: Vec<Child> = (0..4)
            .map(|_| worker(binding, &mock, &dir.db(), &args).spawn().unwrap())
            .collect();
        let mut all = Vec::new();
        for child in children {
            all.extend(tokens(child.wait_with_output().unwrap()));
        }
        assert_eq!(all.len(), 200, "{binding}");
        all.dedup();
        assert_eq!(all.len(), 1, "{binding}: every caller got the same token");
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1, "{binding}");
    }
}

#[test]
fn a_process_killed_while_holding_the_lease_is_taken_over_when_the_lease_runs_out() {
    for binding in BINDINGS {
        let mock = MockServer::start();
        // The holder's request never gets an answer in time.
        mock.inject(
            Some(Endpoint::TrueLayerToken),
            1,
            Fault::Delay(Duration::from_secs(30)),
        );
        let dir = TempDir::new("lease");
        let mut holder = worker(
            binding,
            &mock,
            &dir.db(),
            &["--mode", "app", "--deadline-ms", "2000"],
        )
        .spawn()
        .unwrap();
        let started = Instant::now();
        while mock.requests(Endpoint::TrueLayerToken) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the holder never asked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        holder.kill().unwrap(); // SIGKILL: no destructor, no release
        holder.wait().unwrap();
        let taken_over = Instant::now();
        let next = tokens(run(&mut worker(
            binding,
            &mock,
            &dir.db(),
            &["--mode", "app", "--deadline-ms", "15000"],
        )));
        assert_eq!(next.len(), 1);
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2, "{binding}");
        // It waited for the dead holder's lease (2 s from when it was taken) to run out.
        assert!(
            taken_over.duration_since(started) + taken_over.elapsed()
                >= Duration::from_millis(1900),
            "{binding}: took the lease over before it ran out"
        );
    }
}

#[test]
fn a_process_killed_right_after_writing_a_rotated_refresh_token_loses_nothing() {
    for binding in BINDINGS {
        let mock = MockServer::start();
        let dir = TempDir::new("rotation");
        connect(&mock, Arc::new(SqliteStore::open(dir.db()).unwrap()));
        let refresh = ["--mode", "user", "--connection", "alice", "--refresh"];
        // A short deadline: the victim dies holding the lease, which others wait out.
        let mut args = refresh.to_vec();
        args.extend(["--hang-after-persist", "--deadline-ms", "1000"]);
        let mut victim = worker(binding, &mock, &dir.db(), &args).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(victim.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "persisted", "{binding}");
        victim.kill().unwrap();
        victim.wait().unwrap();
        // The rotated refresh token is in the file: the next process refreshes with it
        // (the mock answers a spent one with invalid_grant), twice in a row.
        for _ in 0..2 {
            let next = tokens(run(&mut worker(binding, &mock, &dir.db(), &refresh)));
            assert_eq!(next.len(), 1, "{binding}");
        }
        // The code exchange and three refreshes, none of them refused.
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 4, "{binding}");
    }
}

#[test]
fn a_store_written_by_a_process_killed_mid_write_still_opens_with_a_whole_record() {
    let dir = TempDir::new("churn");
    let db = dir.db();
    drop(SqliteStore::open(&db).unwrap());
    for round in 0..5u64 {
        let mock = MockServer::start();
        let mut writer = worker("blocking", &mock, &db, &["--churn", "100000"])
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        // Let it write a little (a different amount each round), then kill it mid-stream.
        for _ in 0..(5 + round * 7) {
            lines.next().unwrap().unwrap();
        }
        writer.kill().unwrap();
        writer.wait().unwrap();
        let store = SqliteStore::open(&db).unwrap();
        let key = StoreKey::client_credentials("churn", "churn", "churn", "churn");
        let stored = store.load(&key).unwrap().unwrap();
        let token = stored.record.access_token.unwrap();
        assert!(
            token
                .expose_secret()
                .starts_with(&format!("churn-{}-", stored.record.expires_in)),
            "a torn record"
        );
    }
}
