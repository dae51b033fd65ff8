//! Starts real servers for obauth's tests: [`OidcProvider`], a certified OpenID Connect
//! server (panva/oidc-provider on Node.js) configured as a Keycloak realm, the stand-in for
//! Worldline's token endpoint.
//!
//! The peer lives in `tests/peers/oidc-provider` (a pinned `package-lock.json` and a small
//! server script). The harness installs it with `npm ci` the first time, starts it on
//! `127.0.0.1` with an ephemeral port, waits for the line it prints when ready, and kills it
//! when the [`OidcProvider`] is dropped, also when a test fails.
//!
//! [`TracingRecorder`]: a `tracing` subscriber that keeps everything as text.
//!
//! [`ProtectedResource`]: an API on loopback that takes only valid bearer tokens, for the
//! middleware tests.
//!
//! [`loopback_request`]: one request written by hand to a loopback redirect listener.
//!
//! Also the stores' servers, each on loopback with an ephemeral port and a temporary
//! directory, killed and restarted by the fault tests: [`RedisServer`] and
//! [`PostgresServer`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod browserless;
pub mod hostile;
mod postgres;
mod protected;
mod tracing_recorder;

pub use browserless::{PageAnswer, loopback_request};
pub use postgres::{POSTGRES_DATABASE, POSTGRES_USER, PostgresServer};
pub use protected::{ProtectedResource, Seen};
pub use tracing_recorder::TracingRecorder;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use obauth_mock::SigningIdentity;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// The realm the peer serves.
pub const REALM: &str = "obauth";
/// The `client_secret_post` client.
pub const SECRET_CLIENT: &str = "secret-client";
/// Its secret.
pub const SECRET: &str = "peer-s3cret-value";
/// The `private_key_jwt` client.
pub const JWT_CLIENT: &str = "jwt-client";
/// The scopes both clients may use.
pub const CLIENT_SCOPES: &str = "VOP WERO";
/// A scope the server knows but no client may use.
pub const FORBIDDEN_SCOPE: &str = "ADMIN";

/// A running oidc-provider.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    config: PathBuf,
    /// `http://127.0.0.1:PORT/auth`: the Worldline base URL to point clients at.
    pub base_url: String,
    /// `{base_url}/realms/obauth`: the issuer, which obauth uses as the assertion audience.
    pub issuer: String,
    /// The key and certificate registered for [`JWT_CLIENT`] (kid = SHA-1 fingerprint).
    pub identity: SigningIdentity,
    /// That kid.
    pub kid: String,
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/oidc-provider")
}

/// Installs the pinned peer once per process (`npm ci`), unless it is already installed.
fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = peer_dir();
            if dir.join("node_modules/oidc-provider/package.json").exists() {
                return Ok(());
            }
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("npm could not start ({e}): install Node.js 20+ and npm"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("npm ci failed in {}: {status}", dir.display()))
            }
        })
        .clone()
}

/// The public JWK of a PKCS#8 private key, with `kid`.
fn jwk(private_key_pem: &str, kid: &str) -> Result<Value, String> {
    let key = rsa::PrivateKey::from_pkcs8_pem(private_key_pem).map_err(|e| e.to_string())?;
    Ok(json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(key.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(key.e_bytes()),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }))
}

impl OidcProvider {
    /// Installs (once) and starts the peer with the two clients.
    pub fn start() -> Result<Self, String> {
        install()?;
        let identity = SigningIdentity::generate()?;
        let kid = obauth_mock::certificate_fingerprint(&identity.certificate_pem)?;
        let config = json!({
            "realm": REALM,
            "scopes": ["VOP", "WERO", FORBIDDEN_SCOPE],
            "clients": [
                {
                    "client_id": SECRET_CLIENT,
                    "client_secret": SECRET,
                    "grant_types": ["client_credentials"],
                    "response_types": [],
                    "redirect_uris": [],
                    "token_endpoint_auth_method": "client_secret_post",
                    "scope": CLIENT_SCOPES,
                },
                {
                    "client_id": JWT_CLIENT,
                    "grant_types": ["client_credentials"],
                    "response_types": [],
                    "redirect_uris": [],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "token_endpoint_auth_signing_alg": "RS256",
                    "jwks": { "keys": [jwk(&identity.private_key_pem, &kid)?] },
                    "scope": CLIENT_SCOPES,
                },
            ],
        });
        let path = std::env::temp_dir().join(format!(
            "obauth-oidc-provider-{}-{}.json",
            std::process::id(),
            kid
        ));
        std::fs::write(&path, config.to_string()).map_err(|e| e.to_string())?;
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(&path)
            .current_dir(peer_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("node could not start ({e}): install Node.js 20+"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (ready, first_line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready.send(line);
        });
        let line = match first_line.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if !line.trim().is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("oidc-provider did not become ready within 30 s".into());
            }
        };
        let ready: Value =
            serde_json::from_str(&line).map_err(|e| format!("bad ready line {line:?}: {e}"))?;
        Ok(Self {
            child,
            config: path,
            base_url: ready["base_url"].as_str().unwrap_or_default().to_owned(),
            issuer: ready["issuer"].as_str().unwrap_or_default().to_owned(),
            identity,
            kid,
        })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A `redis-server` of the test's own: loopback, an ephemeral port, a temporary directory
/// (its data and append-only files), removed when dropped. Killed, paused and restarted on
/// the same port by the fault tests.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    append_only: bool,
    /// Serves TLS only, with this certificate and key (files in `dir`).
    tls: bool,
}

/// What `RedisServer::start` says when the machine has no `redis-server`.
const NO_REDIS: &str = "redis-server is not installed: `apt-get install redis-server` \
                        (the README's test command installs it when run as root)";

impl RedisServer {
    /// Starts a server that keeps nothing on disk (no snapshots, no append-only file).
    pub fn start() -> Result<Self, String> {
        Self::start_with(false, None)
    }

    /// Starts a server with the append-only file on and `appendfsync always`: every write
    /// it acknowledged survives a SIGKILL, as user tokens need.
    pub fn start_durable() -> Result<Self, String> {
        Self::start_with(true, None)
    }

    /// Starts a server that speaks only TLS (`rediss://`), with `certificate_pem` and
    /// `key_pem`; clients are not asked for certificates.
    pub fn start_tls(certificate_pem: &str, key_pem: &str) -> Result<Self, String> {
        Self::start_with(false, Some((certificate_pem, key_pem)))
    }

    fn start_with(append_only: bool, tls: Option<(&str, &str)>) -> Result<Self, String> {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "obauth-redis-{}-{count}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some((certificate, key)) = tls {
            std::fs::write(dir.join("tls.crt"), certificate).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("tls.key"), key).map_err(|e| e.to_string())?;
        }
        let mut last = String::new();
        // The port is found free, then bound by redis: another process may take it in
        // between, so a few tries.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut server = Self {
                child: None,
                dir: dir.clone(),
                port,
                append_only,
                tls: tls.is_some(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) if error == NO_REDIS => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        if self.tls {
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("tls.key"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        command
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .args(["--logfile", "redis.log"]);
        if self.append_only {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => NO_REDIS.to_owned(),
                _ => format!("redis-server could not start: {error}"),
            })?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}) on port {}: see {}",
                    self.port,
                    self.dir.join("redis.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "redis-server did not answer PING within 10 s on port {}",
            self.port
        ))
    }

    /// Whether the server answers `PING` now (for a TLS server: whether its log says it is
    /// ready).
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.tls {
            return std::fs::read_to_string(self.dir.join("redis.log"))
                .is_ok_and(|log| log.contains("Ready to accept connections"));
        }
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory: with the append-only file on, it
    /// loads what it had acknowledged.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Starts it again on the same port with nothing: its files are deleted first.
    pub fn restart_empty(&mut self) -> Result<(), String> {
        self.kill();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
