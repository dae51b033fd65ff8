//! SQLite-backed token managers in real processes, async and blocking, against obauth-mock:
//! sharing across runs, single-flight across processes, and processes killed with SIGKILL
//! at the two moments that matter (holding the lease; right after writing a rotated
//! refresh token).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::store::{StoreKey, TokenStore};
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::parse_callback;
use obauth_blocking::core::truelayer::auth_link::AuthLink;
use obauth_blocking::core::{BaseUrl, OsRandom, random};
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{ClientSecret, Scopes};
use obauth_blocking::{SqliteStore, TrueLayerClient, UserTokens};
use obauth_mock::{Endpoint, Fault, MockServer};

const BINDINGS: [&str; 2] = ["blocking", "async"];

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "obauth-processes-{}-{name}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn db(&self) -> String {
        self.0.join("tokens.db").display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn worker(binding: &str, mock: &MockServer, db: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_token-worker"));
    command
        .args([
            "--binding",
            binding,
            "--store",
            db,
            "--base",
            &mock.base_url(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The tokens a finished worker printed; panics with its output if any caller failed.
fn tokens(output: Output) -> Vec<String> {
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "worker failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| line.strip_prefix("ok ").unwrap().to_owned())
        .collect()
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

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

/// Links, consents and exchanges a code on the mock; saves the connection as `alice`.
fn connect(mock: &MockServer, db: &str) {
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    let pkce = Pkce::generate(&mut OsRandom).unwrap();
    let state = random::new_state(&mut OsRandom).unwrap();
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let redirect = obauth_mock::TRUELAYER_REDIRECT_URI;
    let link = client
        .create_auth_link(
            AuthLink::new("ob-transferwise", scopes, redirect, "consent-1")
                .state(&state)
                .pkce(&pkce),
        )
        .unwrap();
    let callback = parse_callback(&mock.approve(&link).unwrap(), &state).unwrap();
    let requested_at = SystemTime::now();
    let token = client
        .exchange_code(callback.code, redirect, Some(pkce.verifier().clone()))
        .unwrap();
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(db).unwrap());
    UserTokens::from_token_response(&client, "alice", &token, requested_at, store).unwrap();
}

#[test]
fn a_process_killed_right_after_writing_a_rotated_refresh_token_loses_nothing() {
    for binding in BINDINGS {
        let mock = MockServer::start();
        let dir = TempDir::new("rotation");
        connect(&mock, &dir.db());
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
