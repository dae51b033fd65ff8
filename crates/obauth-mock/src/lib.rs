//! An in-process mock of TrueLayer's Authentication Server and Worldline's Keycloak token
//! endpoint, with real semantics, for testing code that uses obauth (or any client).
//!
//! ```no_run
//! let mock = obauth_mock::MockServer::start();
//! let base = mock.base_url();               // http://127.0.0.1:PORT  (TrueLayer)
//! let worldline = mock.worldline_base_url(); // http://127.0.0.1:PORT/auth
//! # let _ = (base, worldline);
//! ```
//!
//! What it does, as the specs describe:
//! * **TrueLayer**: registered clients and secrets; authorization codes bound to client,
//!   redirect URI and PKCE challenge, single-use (a reused code revokes what it issued);
//!   refresh tokens that rotate, a spent one answering `invalid_grant` and, as RFC 9700
//!   §4.14.2 describes, revoking its whole grant (see
//!   [`MockServer::set_refresh_token_reuse_detection`]); access tokens that expire; debug
//!   ids; credential deletion that revokes the connection's tokens; the providers list of
//!   the spec's example with its filters.
//! * **Worldline**: realms whose clients authenticate with a secret or an RS256 client
//!   assertion, verified against the registered public key by `kid`, with `aud`, `exp`
//!   and `jti` replay checks, answering `invalid_client` / `invalid_scope` as the spec shows.
//! * **Consent in a browser**: the auth links and the hosted dialog point at the mock, which
//!   shows a plain consent page (what is asked, Allow and Deny; no script); the decision
//!   goes to the redirect URI with a code or `error=access_denied` (`303`, or an
//!   auto-submitting form for `form_post`). Loopback redirect URIs registered without a
//!   port match any port (RFC 8252 §7.3): see [`TRUELAYER_LOOPBACK_REDIRECT_URIS`].
//! * **Consent without a browser**: [`MockServer::approve`] (and [`MockServer::deny`])
//!   plays the user's decision and returns the redirect back (`…?code=…&state=…`, or the
//!   `form_post` body), ready for the redirect parser.
//! * **Faults on demand**: [`MockServer::inject`] makes the next N answers of an endpoint a
//!   status (500, 503, 429 with `Retry-After`), a delay, a malformed or truncated body, an
//!   HTML error page, or a connection closed mid-answer.
//! * **Counting**: [`MockServer::requests`] says how many requests reached each endpoint;
//!   [`MockServer::successful_refreshes`], [`MockServer::refused_refreshes`],
//!   [`MockServer::refresh_token_reuses`] and [`MockServer::revoked_grants`] what the
//!   refresh-token grant did.
//! * **No echo**: an error answer names a field but never shows a value of the request;
//!   a sender-chosen name (an unknown field, a scope) is shown only if it is a plain name
//!   of at most 40 characters.
//!
//! The server runs on its own thread with its own single-threaded tokio runtime, on
//! `127.0.0.1` and an ephemeral port, so sync and async tests use it alike. It stops when
//! the [`MockServer`] is dropped. It is a test tool, not a production server: state is in
//! memory, and secrets are compared in constant time only where a test could notice.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod http_server;
mod state;
mod truelayer;
mod wire;
mod worldline;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use state::Fault;
use state::State;
pub use wire::Endpoint;
pub use worldline::SigningIdentity;

/// The SHA-1 fingerprint of a PEM certificate's DER, upper-case hex: the `kid` Worldline
/// expects. Computed by the mock on its own, independently of obauth-core.
pub fn certificate_fingerprint(certificate_pem: &str) -> Result<String, String> {
    worldline::certificate_identity(certificate_pem).map(|(kid, _)| kid)
}

/// The TrueLayer client registered at start.
pub const TRUELAYER_CLIENT_ID: &str = "mock-client";
/// Its secret.
pub const TRUELAYER_CLIENT_SECRET: &str = "mock-secret";
/// A redirect URI registered for it.
pub const TRUELAYER_REDIRECT_URI: &str = "https://app.example/callback";
/// Loopback redirect URIs registered for it, for native apps and the CLI's `connect`: as
/// RFC 8252 §7.3 asks of a server, any port matches a loopback URI registered without one
/// (`http://127.0.0.1:43210/callback` matches `http://127.0.0.1/callback`).
pub const TRUELAYER_LOOPBACK_REDIRECT_URIS: [&str; 3] = [
    "http://127.0.0.1/callback",
    "http://localhost/callback",
    "http://[::1]/callback",
];
/// The Worldline realm registered at start.
pub const WORLDLINE_REALM: &str = "mock-realm";
/// The Worldline client (secret) registered at start, allowed `VOP` and `WERO`.
pub const WORLDLINE_CLIENT_ID: &str = "Worldline-000021";
/// Its secret.
pub const WORLDLINE_CLIENT_SECRET: &str = "password123";

/// A running mock server. Cheap handle to shared state; dropping it stops the server.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Starts a server on `127.0.0.1` and an ephemeral port.
    ///
    /// # Panics
    /// If no loopback port can be bound or the thread cannot start: a test set-up failure.
    pub fn start() -> Self {
        Self::start_on(0).expect("the mock server could not bind 127.0.0.1")
    }

    /// Starts a server on `127.0.0.1:port` (0 for an ephemeral port).
    pub fn start_on(port: u16) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(format!("http://{addr}"))));
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("obauth-mock".into())
            .spawn(move || runtime.block_on(http_server::serve(listener, thread_state, stopped)))?;
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`: TrueLayer's base URL (API and auth dialog).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/auth`: Worldline's base URL (the spec's server URL).
    pub fn worldline_base_url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    /// The realm issuer URL `{worldline base}/realms/{realm}`: the assertion audience.
    pub fn worldline_issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.worldline_base_url())
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long a connection may take to send a request's headers, or stay idle between
    /// requests, before the mock closes it (default 20 s; applies to connections accepted
    /// from now on). A client that sends half a request and waits holds nothing for long.
    pub fn set_header_read_timeout(&self, timeout: Duration) {
        self.state().header_read_timeout = timeout;
    }

    /// The consent links issued and not yet used, and the bytes they hold. Both are
    /// bounded (10,000 links, 8 MiB): the oldest links are forgotten first.
    pub fn open_consents(&self) -> (usize, usize) {
        self.state().truelayer.open_consents()
    }

    /// Registers a TrueLayer client with its secret and allowed redirect URIs.
    pub fn register_truelayer_client(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uris: &[&str],
    ) {
        self.state()
            .truelayer
            .register_client(client_id, client_secret, redirect_uris);
    }

    /// Sets the lifetime of the access tokens issued from now on (default 3600 s TrueLayer,
    /// 300 s Worldline).
    pub fn set_access_token_lifetime(&self, truelayer: Duration, worldline: Duration) {
        let mut state = self.state();
        state.truelayer.token_lifetime = truelayer;
        state.worldline.token_lifetime = worldline;
    }

    /// Turns refresh-token reuse detection on or off; it is on from the start, as on real
    /// servers.
    ///
    /// Every TrueLayer refresh token belongs to a grant: each authorization-code exchange
    /// starts one (a code from [`MockServer::approve`] included, for a new connection or a
    /// reauthentication), and each refresh that rotates the refresh token stays in it. On,
    /// presenting a rotated (spent) refresh token to `POST /connect/token` answers
    /// `400 {"error":"invalid_grant"}` and revokes the whole grant (RFC 9700 §4.14.2): its
    /// current refresh token answers `invalid_grant` too, and its access tokens are refused
    /// wherever the mock checks one (`DELETE /api/delete`, `POST`/`DELETE /api/debug`). The
    /// connection stays: a reauth link may still name any of its refresh tokens. Off, the
    /// spent token answers `invalid_grant` and nothing else happens, for tests that present
    /// one on purpose and go on with the current one.
    ///
    /// Applies to the refresh requests that arrive from now on, whichever grant they
    /// belong to; grants already revoked stay revoked.
    pub fn set_refresh_token_reuse_detection(&self, enabled: bool) {
        self.state().truelayer.reuse_detection = enabled;
    }

    /// Registers a Worldline client that authenticates with a secret, allowed `scopes`.
    pub fn register_worldline_secret_client(
        &self,
        realm: &str,
        client_id: &str,
        secret: &str,
        scopes: &[&str],
    ) {
        self.state().worldline.register(
            realm,
            client_id,
            worldline::ClientAuth::Secret(secret.to_owned()),
            scopes,
        );
    }

    /// Registers a Worldline client that authenticates with RS256 assertions, as Worldline
    /// registers one at onboarding: by its certificate. The assertion's `kid` must be the
    /// certificate's SHA-1 fingerprint (upper-case hex), which this returns, and its
    /// signature must verify with the certificate's RSA public key.
    pub fn register_worldline_assertion_client(
        &self,
        realm: &str,
        client_id: &str,
        certificate_pem: &str,
        scopes: &[&str],
    ) -> Result<String, String> {
        let (kid, key) = worldline::certificate_identity(certificate_pem)?;
        self.state().worldline.register(
            realm,
            client_id,
            worldline::ClientAuth::Assertion {
                kid: kid.clone(),
                key,
            },
            scopes,
        );
        Ok(kid)
    }

    /// Plays the user's consent on a link the mock issued (auth link, reauth link or
    /// hosted-dialog URL) and returns where the bank would send the user back: the redirect
    /// URL with `code` and `state`, or for `form_post` the form body.
    pub fn approve(&self, link: &str) -> Result<String, String> {
        self.state().truelayer.approve(link, None)
    }

    /// Plays the user's refusal: the redirect carries `error=access_denied`.
    pub fn deny(&self, link: &str) -> Result<String, String> {
        self.state().truelayer.approve(link, Some("access_denied"))
    }

    /// Makes the next `times` answers of `endpoint` (any endpoint if `None`) the `fault`.
    pub fn inject(&self, endpoint: Option<Endpoint>, times: usize, fault: Fault) {
        self.state().faults.push((endpoint, times, fault));
    }

    /// How many requests reached `endpoint` so far (faulted ones included).
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.state().counts.get(&endpoint).copied().unwrap_or(0)
    }

    /// How many TrueLayer refresh requests (`grant_type=refresh_token`, client
    /// authenticated) were answered with new tokens so far. A refresh whose answer an
    /// injected fault spoiled ([`Fault::TruncatedBody`]) still counts: the server rotated.
    pub fn successful_refreshes(&self) -> usize {
        self.state().truelayer.refresh_counts.succeeded
    }

    /// How many TrueLayer refresh requests (client authenticated) were answered
    /// `invalid_grant` so far, whatever the reason: an unknown, spent or other client's
    /// refresh token, or one of a revoked grant or a deleted connection.
    pub fn refused_refreshes(&self) -> usize {
        self.state().truelayer.refresh_counts.refused
    }

    /// How many TrueLayer refresh requests presented a rotated (spent) refresh token so
    /// far: the reuse detections, counted with detection off too (each was refused).
    pub fn refresh_token_reuses(&self) -> usize {
        self.state().truelayer.refresh_counts.reuses
    }

    /// How many grants reuse detection revoked so far: at most one per grant, however
    /// often its spent tokens come back. Always 0 with detection off. Deleting a
    /// credential or replaying a code revokes tokens too but does not count here.
    pub fn revoked_grants(&self) -> usize {
        self.state().truelayer.refresh_counts.revoked_grants
    }

    /// Whether `access_token` is a TrueLayer access token this mock issued that has neither
    /// expired nor been revoked: what an API protected by these tokens would check (the
    /// middleware tests' protected resource asks this).
    pub fn access_token_valid(&self, access_token: &str) -> bool {
        self.state().truelayer.access_token_valid(access_token)
    }

    /// Revokes one TrueLayer access token; `false` if the mock never issued it (or already
    /// forgot it).
    pub fn revoke_access_token(&self, access_token: &str) -> bool {
        self.state().truelayer.revoke_access_token(access_token)
    }

    /// Forgets every count: the request counts and the refresh counts.
    pub fn reset_counts(&self) {
        let mut state = self.state();
        state.counts.clear();
        state.truelayer.refresh_counts = Default::default();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
