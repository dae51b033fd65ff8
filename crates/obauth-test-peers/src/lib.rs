//! Starts real servers for obauth's tests: [`OidcProvider`], a certified OpenID Connect
//! server (panva/oidc-provider on Node.js) configured as a Keycloak realm, the stand-in for
//! Worldline's token endpoint.
//!
//! The peer lives in `tests/peers/oidc-provider` (a pinned `package-lock.json` and a small
//! server script). The harness installs it with `npm ci` the first time, starts it on
//! `127.0.0.1` with an ephemeral port, waits for the line it prints when ready, and kills it
//! when the [`OidcProvider`] is dropped, also when a test fails.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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
