//! `obauth demo`: every operation of both APIs on the embedded mock, once through the
//! async client and once through the blocking client.

use std::sync::atomic::{AtomicUsize, Ordering};

use obauth_async::core::pkce::Pkce;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::truelayer::Environment;
use obauth_async::core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_async::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_async::core::worldline::WorldlineAuth;
use obauth_async::core::worldline::assertion::{AssertionConfig, RsaKeySigner, SigningCertificate};
use obauth_async::core::{BaseUrl, OsRandom, random};
use obauth_async::types::truelayer::providers::ProvidersQuery;
use obauth_async::types::truelayer::{Country, Scope};
use obauth_async::types::{ClientSecret, ErrorCode, Scopes, worldline};
use obauth_mock::{Endpoint, MockServer, SigningIdentity};

use crate::failure::Failure;

const REALM_JWT: &str = "demo-jwt-realm";
const JWT_CLIENT: &str = "5734699";

struct Tally {
    passed: AtomicUsize,
    failed: AtomicUsize,
}

impl Tally {
    fn step<T, E: std::fmt::Display>(
        &self,
        binding: &str,
        name: &str,
        result: Result<T, E>,
        describe: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.passed.fetch_add(1, Ordering::Relaxed);
                say!("  ok    [{binding:<8}] {name:<34} {}", describe(&value));
                Some(value)
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                say!("  FAIL  [{binding:<8}] {name:<34} {error}");
                None
            }
        }
    }
}

/// The first characters of a secret, enough to tell two apart.
fn short(secret: &str) -> String {
    let head: String = secret.chars().take(10).collect();
    format!("{head}…")
}

/// The assertion signer: a fresh key and a self-signed certificate, registered with the
/// mock as Worldline registers a client's certificate at onboarding.
struct DemoKey {
    private_pem: String,
    certificate: SigningCertificate,
}

fn demo_key(mock: &MockServer) -> Result<DemoKey, String> {
    let identity = SigningIdentity::generate()?;
    let kid = mock.register_worldline_assertion_client(
        REALM_JWT,
        JWT_CLIENT,
        &identity.certificate_pem,
        &["VOP", "WERO"],
    )?;
    let certificate =
        SigningCertificate::from_pem(&identity.certificate_pem).map_err(|e| e.to_string())?;
    if certificate.sha1_fingerprint() != kid {
        return Err("obauth and the mock disagree on the certificate fingerprint".to_owned());
    }
    Ok(DemoKey {
        private_pem: identity.private_key_pem,
        certificate,
    })
}

/// The tour, written once for both bindings: `$($await)*` is `.await` or nothing.
macro_rules! tour {
    ($tally:expr, $binding:expr, $mock:expr, $key:expr, $tl:ident, $wl:ident, $wl_jwt:ident, $source:ident, $listener:ty, $($await:tt)*) => {{
        let tally = $tally;
        let binding = $binding;
        let mock: &MockServer = $mock;
        let redirect = obauth_mock::TRUELAYER_REDIRECT_URI;
        let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::Balance, Scope::OfflineAccess]);

        let query = ProvidersQuery { countries: vec![Country::Uk], ..ProvidersQuery::default() };
        tally.step(binding, "truelayer.providers.list", $tl.providers(query)$($await)*, |p| format!("{} UK providers", p.len()));
        tally.step(binding, "truelayer.token.client_credentials", $tl.client_credentials(Scopes::from([Scope::Payments]))$($await)*, |t| {
            format!("access_token {} expires_in {}", short(t.access_token.expose_secret()), t.expires_in)
        });

        let pkce = tally.step(binding, "(PKCE pair generated)", Pkce::generate(&mut OsRandom), |p| {
            format!("challenge {}", short(p.challenge()))
        });
        let state = tally
            .step(binding, "(state generated)", random::new_state(&mut OsRandom), |s| short(s))
            .unwrap_or_default();
        let mut link = AuthLink::new("ob-transferwise", scopes.clone(), redirect, "demo-consent").state(&state);
        if let Some(pkce) = &pkce {
            link = link.pkce(pkce);
        }
        let url = tally.step(binding, "truelayer.auth_link.create", $tl.create_auth_link(link)$($await)*, |url| url.clone());
        let callback = url
            .map(|url| mock.approve(&url).and_then(|back| parse_callback(&back, &state).map_err(|e| e.to_string())))
            .and_then(|result| tally.step(binding, "(user consents on the mock)", result, |_| "code received, state checked".to_owned()));
        let token = match callback {
            Some(callback) => tally.step(
                binding,
                "truelayer.token.exchange_code",
                $tl.exchange_code(callback.code, redirect, pkce.as_ref().map(|p| p.verifier().clone()))$($await)*,
                |t| format!("access_token {} refresh_token {}", short(t.access_token.expose_secret()),
                    t.refresh_token.as_ref().map(|r| short(r.expose_secret())).unwrap_or_default()),
            ),
            None => None,
        };
        if let Some(token) = token {
            tally.step(binding, "truelayer.debug.create", $tl.create_debug_id(token.access_token.clone())$($await)*, |d| d.debug_id.clone());
            tally.step(binding, "truelayer.debug.delete", $tl.delete_debug_id()$($await)*, |d| format!("{} deleted", d.debug_id));
            let refresh = token.refresh_token.clone().ok_or("the exchange issued no refresh token");
            if let Some(refresh) = tally.step(binding, "(offline_access gave a refresh token)", refresh, |r| short(r.expose_secret())) {
                let rotated = tally.step(binding, "truelayer.token.refresh", $tl.refresh(refresh.clone())$($await)*, |t| {
                    format!("rotated to {}", t.refresh_token.as_ref().map(|r| short(r.expose_secret())).unwrap_or_default())
                });
                let reused = match $tl.refresh(refresh)$($await)* {
                    Err(error) if error.api_code() == Some(&ErrorCode::InvalidGrant) => Ok("invalid_grant, as it should".to_owned()),
                    Err(error) => Err(error.to_string()),
                    Ok(_) => Err("the spent refresh token was accepted".to_owned()),
                };
                tally.step(binding, "(a spent refresh token is refused)", reused, |s| s.clone());
                if let Some(new_refresh) = rotated.and_then(|t| t.refresh_token) {
                    let reauth = $tl.create_reauth_link(ReauthLink::new(new_refresh, redirect).state(&state))$($await)*;
                    tally.step(binding, "truelayer.auth_link.create_reauth", reauth, |url| url.clone());
                }
            }
            tally.step(binding, "truelayer.token.delete_credential", $tl.delete_credential(token.access_token.clone())$($await)*, |_| "connection deleted".to_owned());
        }

        tally.step(binding, "worldline.token (client secret)", $wl.token(Scopes::from([worldline::Scope::Vop, worldline::Scope::Wero]))$($await)*, |t| {
            format!("access_token {} expires_in {}", short(t.access_token.expose_secret()), t.expires_in)
        });
        if let Some($wl_jwt) = tally.step(binding, "(assertion client set up)", $wl_jwt.as_ref().ok_or("no signer"), |_| "key and certificate loaded".to_owned()) {
            for attempt in ["worldline.token (RS256 assertion)", "worldline.token (again, fresh jti)"] {
                tally.step(binding, attempt, $wl_jwt.token(Scopes::from([worldline::Scope::Vop]))$($await)*, |t| {
                    format!("access_token {} kid {}", short(t.access_token.expose_secret()), short($key.certificate.sha1_fingerprint()))
                });
            }
        }
        let before = mock.requests(Endpoint::WorldlineToken);
        let first = $source.access_token()$($await)*;
        let second = $source.access_token()$($await)*;
        let cached = match (first, second) {
            (Ok(a), Ok(b)) if a.expose_secret() == b.expose_secret() => Ok(mock.requests(Endpoint::WorldlineToken) - before),
            (Err(error), _) | (_, Err(error)) => Err(error.to_string()),
            _ => Err("two different tokens".to_owned()),
        };
        tally.step(binding, "token source: two reads", cached, |n| format!("{n} token request(s) for two reads"));

        // `obauth truelayer connect`, the person played by the mock's consent simulation and
        // the browser by one request to the loopback listener.
        let connected = async_or_not!($($await)*, {
            let state = random::new_state(&mut OsRandom).map_err(|e| e.to_string())?;
            let pkce = Pkce::generate(&mut OsRandom).map_err(|e| e.to_string())?;
            let mut listener = <$listener>::bind("http://127.0.0.1/callback", &state)$($await)*.map_err(|e| e.to_string())?;
            let redirect_uri = listener.redirect_uri().to_owned();
            let dialog = AuthDialog::new(&redirect_uri, scopes.clone(), &state).pkce(&pkce).provider_id("ob-mock");
            let link = $tl.config().auth_dialog_url(&dialog).map_err(|e| e.to_string())?;
            let back = mock.approve(&link)?;
            let browser = std::thread::spawn(move || follow_redirect(&back));
            let callback = listener.wait(std::time::Duration::from_secs(10))$($await)*.map_err(|e| e.to_string())?;
            let page = browser.join().map_err(|_| "the browser thread panicked".to_owned())??;
            let token = $tl.exchange_code(callback.code, redirect_uri.as_str(), Some(pkce.verifier().clone()))$($await)*.map_err(|e| e.to_string())?;
            Ok::<_, String>((redirect_uri, page, token.expires_in))
        });
        tally.step(binding, "truelayer connect (loopback redirect)", connected, |(uri, page, expires_in)| {
            format!("code received on {uri} (page: {page}); access token for {expires_in} s")
        });
    }};
}

/// A block that may use `?`, run as it is (blocking) or awaited (async).
macro_rules! async_or_not {
    (, $body:block) => {
        (|| $body)()
    };
    (.await, $body:block) => {
        async { $body }.await
    };
}

/// The browser's part: follows the redirect back to the loopback listener and returns the
/// landing page's heading.
fn follow_redirect(url: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let rest = url
        .strip_prefix("http://")
        .ok_or("not a loopback redirect")?;
    let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {target} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut page = String::new();
    stream
        .read_to_string(&mut page)
        .map_err(|e| e.to_string())?;
    let heading = page
        .split("<h1>")
        .nth(1)
        .and_then(|rest| rest.split("</h1>").next())
        .ok_or("no landing page")?;
    Ok(heading.to_owned())
}

/// Two token sources, as two processes would have, on one SQLite file in a temporary
/// directory: how many token requests they make between them.
fn shared_store(
    mock: &MockServer,
    client: &obauth_blocking::TrueLayerClient,
) -> Result<usize, String> {
    use std::sync::Arc;

    use obauth_blocking::{SqliteStore, TokenSource};
    let dir = std::env::temp_dir().join(format!("obauth-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let result = (|| {
        let before = mock.requests(Endpoint::TrueLayerToken);
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let store = SqliteStore::open(dir.join("tokens.db")).map_err(|e| e.to_string())?;
            let source = TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]))
                .with_store(Arc::new(store));
            let token = source.access_token().map_err(|e| e.to_string())?;
            tokens.push(token.expose_secret().to_owned());
        }
        if tokens[0] != tokens[1] {
            return Err("the two sources got different tokens".to_owned());
        }
        Ok(mock.requests(Endpoint::TrueLayerToken) - before)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub(crate) fn run() -> Result<(), Failure> {
    let mock = MockServer::start();
    // The tour presents a spent refresh token on purpose, then goes on with the connection:
    // reuse detection would revoke the grant (and the access token the tour deletes with).
    mock.set_refresh_token_reuse_detection(false);
    say!("obauth demo on obauth-mock at {}", mock.base_url());
    let key =
        demo_key(&mock).map_err(|error| Failure::Failed(format!("demo set-up failed: {error}")))?;
    let tally = Tally {
        passed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    };
    let base = |url: String| BaseUrl::parse(&url).map_err(|e| Failure::Failed(e.to_string()));
    let tl_base = base(mock.base_url())?;
    let wl_base = base(mock.worldline_base_url())?;
    let secret = |s: &str| ClientSecret::new(s);
    let signer = || -> Option<WorldlineAuth> {
        let signer = RsaKeySigner::from_pem(&key.private_pem, &key.certificate).ok()?;
        Some(WorldlineAuth::Assertion(AssertionConfig::new(signer).ok()?))
    };

    say!("\nasync (obauth-async, tokio + reqwest)");
    {
        use obauth_async::{TokenSource, TrueLayerClient, WorldlineClient};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Failed(format!("no tokio runtime: {e}")))?;
        let tl = TrueLayerClient::builder(
            Environment::Custom(tl_base.clone()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(secret(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .retry_policy(RetryPolicy::never())
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let wl = WorldlineClient::builder(
            wl_base.clone(),
            obauth_mock::WORLDLINE_REALM,
            obauth_mock::WORLDLINE_CLIENT_ID,
            WorldlineAuth::ClientSecret(secret(obauth_mock::WORLDLINE_CLIENT_SECRET)),
        )
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let wl_jwt = signer().and_then(|auth| {
            WorldlineClient::builder(wl_base.clone(), REALM_JWT, JWT_CLIENT, auth)
                .build()
                .ok()
        });
        let source = TokenSource::worldline(wl.clone(), Scopes::from([worldline::Scope::Vop]));
        runtime.block_on(async {
            tour!(&tally, "async", &mock, &key, tl, wl, wl_jwt, source, obauth_async::loopback::RedirectListener, .await)
        });
    }

    say!("\nblocking (obauth-blocking, ureq)");
    {
        use obauth_blocking::{TokenSource, TrueLayerClient, WorldlineClient};
        let tl = TrueLayerClient::builder(
            Environment::Custom(tl_base),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(secret(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .retry_policy(RetryPolicy::never())
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let wl = WorldlineClient::builder(
            wl_base.clone(),
            obauth_mock::WORLDLINE_REALM,
            obauth_mock::WORLDLINE_CLIENT_ID,
            WorldlineAuth::ClientSecret(secret(obauth_mock::WORLDLINE_CLIENT_SECRET)),
        )
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let wl_jwt = signer().and_then(|auth| {
            WorldlineClient::builder(wl_base, REALM_JWT, JWT_CLIENT, auth)
                .build()
                .ok()
        });
        let source = TokenSource::worldline(wl.clone(), Scopes::from([worldline::Scope::Vop]));
        let store_client = tl.clone();
        tour!(
            &tally,
            "blocking",
            &mock,
            &key,
            tl,
            wl,
            wl_jwt,
            source,
            obauth_blocking::loopback::RedirectListener,
        );
        let shared = shared_store(&mock, &store_client);
        tally.step(
            "blocking",
            "token store (SQLite): two sources",
            shared,
            |n| format!("{n} token request(s) between them, as between two processes"),
        );
    }

    let (passed, failed) = (
        tally.passed.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    say!("\ndemo: {passed} steps passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Failed(format!("demo: {failed} step(s) failed")))
    }
}
