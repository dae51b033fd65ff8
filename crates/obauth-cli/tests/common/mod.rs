//! `obauth truelayer connect` as a child process: started against obauth-mock, its printed
//! link read from stderr as a person would read it, its end collected.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use obauth_mock::MockServer;

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "obauth-cli-{}-{name}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn store(&self) -> String {
        format!("sqlite:{}", self.0.join("tokens.db").display())
    }

    /// The store's bytes on disk, its write-ahead log included.
    pub(crate) fn db(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(self.0.join("tokens.db")).unwrap();
        bytes.extend(std::fs::read(self.0.join("tokens.db-wal")).unwrap_or_default());
        bytes
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `obauth` with the mock's client, the secret from the environment, and `args`.
pub(crate) fn obauth(mock: &MockServer, store: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_obauth"));
    command
        .args(["--base-url", &mock.base_url(), "--token-store", store])
        .args(args)
        .env_remove("OBAUTH_TOKEN_STORE")
        .env_remove("OBAUTH_TOKEN_STORE_KEY")
        .env("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID)
        .env("OBAUTH_CLIENT_SECRET", obauth_mock::TRUELAYER_CLIENT_SECRET)
        // No browser is ever opened by a test, --no-browser or not.
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER");
    command
}

/// A `connect` in progress.
pub(crate) struct Connecting {
    pub(crate) child: Child,
    /// The dialog link it printed.
    pub(crate) link: String,
    /// The redirect URI it listens on.
    pub(crate) redirect_uri: String,
    lines: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Starts `obauth truelayer connect ARGS --no-browser` and waits (20 s at most) until it
/// has printed its link and says it is waiting.
pub(crate) fn start_connect(mock: &MockServer, store: &str, args: &[&str]) -> Connecting {
    let mut command = obauth(mock, store, &["truelayer", "connect", "--no-browser"]);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let (stdout_sender, stdout) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = stdout_sender.send(text);
    });
    let stderr = child.stderr.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut link = None;
    let mut redirect_uri = None;
    while link.is_none() || redirect_uri.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("connect printed no link and no wait: {seen:?}"));
        let trimmed = line.trim();
        if trimmed.starts_with("http") {
            link = Some(trimmed.to_owned());
        }
        if let Some(rest) = trimmed.strip_prefix("obauth: waiting for the redirect on ") {
            redirect_uri = Some(rest.split(':').take(3).collect::<Vec<_>>().join(":"));
        }
        seen.push(line);
    }
    Connecting {
        child,
        link: link.unwrap(),
        redirect_uri: redirect_uri.unwrap(),
        lines,
        stdout,
        seen,
    }
}

/// How a `connect` ended.
pub(crate) struct Ended {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Connecting {
    /// The port the redirect listener is on.
    pub(crate) fn port(&self) -> u16 {
        let after = self.redirect_uri.rsplit(':').next().unwrap();
        after.split('/').next().unwrap().parse().unwrap()
    }

    /// Waits (60 s at most) for the process to end.
    pub(crate) fn finish(mut self) -> Ended {
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(60));
        let stdout = self
            .stdout
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        let mut stderr = self.seen.join("\n");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stderr.push('\n');
            stderr.push_str(&line);
        }
        Ended {
            status,
            stdout,
            stderr,
        }
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("connect did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
