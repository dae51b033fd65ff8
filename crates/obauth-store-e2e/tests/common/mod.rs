//! What the process tests share: the worker command, its output, temporary directories,
//! and a user connection made on the mock.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::store::TokenStore;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::parse_callback;
use obauth_blocking::core::truelayer::auth_link::AuthLink;
use obauth_blocking::core::{BaseUrl, OsRandom, random};
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{ClientSecret, Scopes};
use obauth_blocking::{TrueLayerClient, UserTokens};
use obauth_mock::MockServer;

pub const BINDINGS: [&str; 2] = ["blocking", "async"];

/// A fresh directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
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

    pub fn db(&self) -> String {
        self.0.join("tokens.db").display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn worker(binding: &str, mock: &MockServer, db: &str, extra: &[&str]) -> Command {
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
pub fn tokens(output: Output) -> Vec<String> {
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

pub fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

/// Links, consents and exchanges a code on the mock; saves the connection as `alice`.
pub fn connect(mock: &MockServer, store: Arc<dyn TokenStore>) {
    let (client, token, requested_at) = exchange(mock);
    UserTokens::from_token_response(&client, "alice", &token, requested_at, store).unwrap();
}

/// Links, consents and exchanges a code on the mock: the answer, and when it was asked for.
pub fn exchange(
    mock: &MockServer,
) -> (
    TrueLayerClient,
    obauth_blocking::types::truelayer::token::TokenResponse,
    SystemTime,
) {
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
    (client, token, requested_at)
}
