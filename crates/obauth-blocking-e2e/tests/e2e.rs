//! Every operation end to end through obauth-blocking against obauth-mock over real HTTP,
//! with the error paths, injected faults and the token managers.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::retry::RetryPolicy;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_blocking::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_blocking::core::worldline::WorldlineAuth;
use obauth_blocking::core::worldline::assertion::{
    AssertionConfig, RsaKeySigner, SigningCertificate,
};
use obauth_blocking::core::{
    BaseUrl, OsRandom, StoreError, TimeoutPhase, TransportErrorKind, random,
};
use obauth_blocking::types::truelayer::providers::ProvidersQuery;
use obauth_blocking::types::truelayer::{Country, Scope};
use obauth_blocking::types::{
    AccessToken, ClientSecret, ErrorCode, RefreshToken, Scopes, worldline,
};
use obauth_blocking::{
    Error, RefreshTokenStore, Timeouts, TokenSource, TrueLayerClient, UserTokens, WorldlineClient,
};
use obauth_mock::{Endpoint, Fault, MockServer, SigningIdentity};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

fn truelayer(mock: &MockServer) -> TrueLayerClient {
    TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(fast_retries())
    .timeouts(Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_millis(800),
    })
    .build()
    .unwrap()
}

fn worldline_secret(mock: &MockServer, secret: &str) -> WorldlineClient {
    WorldlineClient::builder(
        BaseUrl::parse(&mock.worldline_base_url()).unwrap(),
        obauth_mock::WORLDLINE_REALM,
        obauth_mock::WORLDLINE_CLIENT_ID,
        WorldlineAuth::ClientSecret(ClientSecret::new(secret)),
    )
    .retry_policy(fast_retries())
    .build()
    .unwrap()
}

const SCOPES: [Scope; 3] = [Scope::Info, Scope::Accounts, Scope::OfflineAccess];
const REDIRECT: &str = obauth_mock::TRUELAYER_REDIRECT_URI;

/// Auth link with PKCE → consent → code exchange: a user connection.
fn connect(
    client: &TrueLayerClient,
    mock: &MockServer,
) -> obauth_blocking::types::truelayer::token::TokenResponse {
    let pkce = Pkce::generate(&mut OsRandom).unwrap();
    let state = random::new_state(&mut OsRandom).unwrap();
    let link = client
        .create_auth_link(
            AuthLink::new(
                "ob-transferwise",
                Scopes::from(SCOPES),
                REDIRECT,
                "consent-1",
            )
            .state(&state)
            .pkce(&pkce),
        )
        .unwrap();
    let back = mock.approve(&link).unwrap();
    let callback = parse_callback(&back, &state).unwrap();
    client
        .exchange_code(callback.code, REDIRECT, Some(pkce.verifier().clone()))
        .unwrap()
}

#[test]
fn truelayer_user_connection_lifecycle() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    assert_eq!(token.expires_in, 3600);
    let first_refresh = token.refresh_token.clone().unwrap();

    let debug = client.create_debug_id(token.access_token.clone()).unwrap();
    assert_eq!(debug.provider_id, "ob-transferwise");
    let deleted = client.delete_debug_id(token.access_token.clone()).unwrap();
    assert_eq!(deleted.debug_id, debug.debug_id);
    let none_left = client
        .delete_debug_id(token.access_token.clone())
        .unwrap_err();
    assert_eq!(none_left.api_code(), Some(&ErrorCode::NotFound));

    // Refresh rotates; the spent token is refused.
    let refreshed = client.refresh(first_refresh.clone()).unwrap();
    let second_refresh = refreshed.refresh_token.clone().unwrap();
    assert_ne!(
        second_refresh.expose_secret(),
        first_refresh.expose_secret()
    );
    let reused = client.refresh(first_refresh).unwrap_err();
    assert_eq!(reused.api_code(), Some(&ErrorCode::InvalidGrant));

    // Reauthentication keeps the connection.
    let state = random::new_state(&mut OsRandom).unwrap();
    let link = client
        .create_reauth_link(ReauthLink::new(second_refresh.clone(), REDIRECT).state(&state))
        .unwrap();
    let callback = parse_callback(&mock.approve(&link).unwrap(), &state).unwrap();
    let renewed = client.exchange_code(callback.code, REDIRECT, None).unwrap();

    // Deleting the credential revokes its tokens.
    client
        .delete_credential(renewed.access_token.clone())
        .unwrap();
    let revoked = client.create_debug_id(renewed.access_token).unwrap_err();
    assert_eq!(revoked.api_code(), Some(&ErrorCode::Unauthorized));
    assert_eq!(revoked.status().map(|s| s.as_u16()), Some(401));
    let gone = client.refresh(renewed.refresh_token.unwrap()).unwrap_err();
    assert_eq!(gone.api_code(), Some(&ErrorCode::InvalidGrant));
    let bad_delete = client
        .delete_credential(AccessToken::new("nope"))
        .unwrap_err();
    assert_eq!(bad_delete.api_code(), Some(&ErrorCode::Unauthorized));
}

#[test]
fn code_exchange_errors() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let pkce = Pkce::generate(&mut OsRandom).unwrap();
    let dialog = AuthDialog::new(REDIRECT, Scopes::from(SCOPES), "st").pkce(&pkce);
    let url = client.auth_dialog_url(&dialog).unwrap();
    let callback = parse_callback(&mock.approve(&url).unwrap(), "st").unwrap();

    // Wrong verifier, then the right one, then a replay.
    let wrong = Pkce::generate(&mut OsRandom).unwrap();
    let error = client
        .exchange_code(
            callback.code.clone(),
            REDIRECT,
            Some(wrong.verifier().clone()),
        )
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidGrant));
    let denied = mock
        .deny(
            &client
                .auth_dialog_url(&AuthDialog::new(REDIRECT, Scopes::from(SCOPES), "s2"))
                .unwrap(),
        )
        .unwrap();
    assert!(matches!(
        parse_callback(&denied, "s2"),
        Err(obauth_blocking::core::CallbackError::Denied {
            code: ErrorCode::AccessDenied,
            ..
        })
    ));

    let bad_secret = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new("wrong"))
    .build()
    .unwrap();
    let error = bad_secret
        .client_credentials(Scopes::from([Scope::Payments]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::UnauthorizedClient));
}

#[test]
fn client_credentials_and_providers() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = client
        .client_credentials(Scopes::from([Scope::Payments]))
        .unwrap();
    assert!(token.refresh_token.is_none());
    let refused = client
        .client_credentials(Scopes::from([Scope::Info]))
        .unwrap_err();
    assert_eq!(refused.api_code(), Some(&ErrorCode::InvalidScope));

    let all = client.providers(ProvidersQuery::default()).unwrap();
    assert_eq!(all.len(), 4);
    let filtered = client
        .providers(ProvidersQuery {
            client_id: Some(obauth_mock::TRUELAYER_CLIENT_ID.into()),
            scopes: Scopes::from([Scope::Info, Scope::Cards]),
            countries: vec![Country::Uk],
        })
        .unwrap();
    let ids: Vec<_> = filtered.iter().map(|p| p.provider_id.as_str()).collect();
    assert_eq!(ids, ["mock", "ob-lloyds-business"]);
    let french = client
        .providers(ProvidersQuery {
            countries: vec![Country::Fr],
            ..ProvidersQuery::default()
        })
        .unwrap();
    assert_eq!(french[0].steps[0].fields[0].id, "branch-name");
}

#[test]
fn worldline_secret_and_errors() {
    let mock = MockServer::start();
    let client = worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET);
    let token = client
        .token(Scopes::from([
            worldline::Scope::Vop,
            worldline::Scope::Wero,
        ]))
        .unwrap();
    assert_eq!(token.expires_in, 300);
    assert_eq!(token.scope.unwrap().to_wire(), "VOP WERO");

    let error = client
        .token(Scopes::from([worldline::Scope::from("IDEAL")]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidScope));
    let wrong = worldline_secret(&mock, "not-the-secret");
    let error = wrong
        .token(Scopes::from([worldline::Scope::Vop]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400));
    assert!(!format!("{error} {error:?}").contains("not-the-secret"));
}

#[test]
fn worldline_client_assertion() {
    let mock = MockServer::start();
    let identity = SigningIdentity::generate().unwrap();
    let kid = mock
        .register_worldline_assertion_client(
            "jwt-realm",
            "5734699",
            &identity.certificate_pem,
            &["VOP"],
        )
        .unwrap();
    let certificate = SigningCertificate::from_pem(&identity.certificate_pem).unwrap();
    assert_eq!(
        certificate.sha1_fingerprint(),
        kid,
        "obauth and the mock agree on the kid"
    );
    let client = |private_pem: &str, audience: Option<&str>| {
        let signer = RsaKeySigner::from_pem(private_pem, &certificate).unwrap();
        let mut assertion = AssertionConfig::new(signer).unwrap();
        if let Some(audience) = audience {
            assertion = assertion.with_audience(audience);
        }
        WorldlineClient::builder(
            BaseUrl::parse(&mock.worldline_base_url()).unwrap(),
            "jwt-realm",
            "5734699",
            WorldlineAuth::Assertion(assertion),
        )
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap()
    };
    let good = client(&identity.private_key_pem, None);
    // Two in a row: each carries a fresh jti.
    good.token(Scopes::from([worldline::Scope::Vop])).unwrap();
    good.token(Scopes::from([worldline::Scope::Vop])).unwrap();
    let error = client(&identity.private_key_pem, Some("https://elsewhere.example"))
        .token(Scopes::from([worldline::Scope::Vop]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    // The right kid but another key: the signature does not verify.
    let impostor = SigningIdentity::generate().unwrap();
    let error = client(&impostor.private_key_pem, None)
        .token(Scopes::from([worldline::Scope::Vop]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    // A scope the client may not use.
    let error = good
        .token(Scopes::from([worldline::Scope::Wero]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidScope));
    assert_eq!(mock.requests(Endpoint::WorldlineToken), 5);
}

#[test]
fn retryable_faults_are_retried_within_the_budget() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        2,
        Fault::Status {
            status: 503,
            retry_after: None,
        },
    );
    client
        .client_credentials(Scopes::from([Scope::Payments]))
        .unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);

    mock.reset_counts();
    mock.inject(
        Some(Endpoint::Providers),
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    );
    let started = Instant::now();
    client.providers(ProvidersQuery::default()).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(mock.requests(Endpoint::Providers), 2);

    mock.reset_counts();
    mock.inject(Some(Endpoint::Providers), 1, Fault::CloseConnection);
    client.providers(ProvidersQuery::default()).unwrap();
    assert_eq!(mock.requests(Endpoint::Providers), 2);

    // Past the budget the last error comes back.
    mock.reset_counts();
    mock.inject(Some(Endpoint::Providers), 3, Fault::HtmlPage(502));
    let error = client.providers(ProvidersQuery::default()).unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.status.as_u16() == 502),
        "{error:?}"
    );
    assert_eq!(mock.requests(Endpoint::Providers), 3);
}

#[test]
fn single_use_codes_are_never_retried() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let dialog = AuthDialog::new(REDIRECT, Scopes::from(SCOPES), "s");
    let callback = parse_callback(
        &mock
            .approve(&client.auth_dialog_url(&dialog).unwrap())
            .unwrap(),
        "s",
    )
    .unwrap();
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Status {
            status: 503,
            retry_after: None,
        },
    );
    let error = client
        .exchange_code(callback.code.clone(), REDIRECT, None)
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    // The code was not consumed by the refused attempt.
    let token = client.exchange_code(callback.code, REDIRECT, None).unwrap();

    // A lost answer (timeout, truncated body) is not retried for a refresh either: the
    // server may have rotated the token already.
    let refresh = token.refresh_token.unwrap();
    mock.reset_counts();
    mock.inject(Some(Endpoint::TrueLayerToken), 1, Fault::TruncatedBody);
    let error = client.refresh(refresh.clone()).unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::Io),
        "{error:?}"
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_secs(2)),
    );
    let error = client.refresh(refresh).unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn a_token_due_for_refresh_is_refreshed_once_and_kept_if_that_fails() {
    use obauth_blocking::core::expiry::ExpiryPolicy;
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(3), Duration::from_secs(3));
    let client = truelayer(&mock);
    // Fresh for 10 % of the lifetime (0.3 s), then due for refresh until it expires.
    let policy = ExpiryPolicy {
        max_skew: Duration::ZERO,
        skew_fraction: 0.0,
        max_refresh_window: Duration::from_secs(3600),
        refresh_fraction: 0.9,
    };
    let source =
        TokenSource::truelayer(client, Scopes::from([Scope::Payments])).with_expiry_policy(policy);
    let first = source.access_token().unwrap();
    assert_eq!(
        source.access_token().unwrap().expose_secret(),
        first.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    std::thread::sleep(Duration::from_millis(400));
    let second = source.access_token().unwrap();
    assert_ne!(
        second.expose_secret(),
        first.expose_secret(),
        "refreshed while still valid"
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // Due again, and the refresh fails: the still-valid token is served.
    std::thread::sleep(Duration::from_millis(400));
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        3,
        Fault::Status {
            status: 500,
            retry_after: None,
        },
    );
    let third = source.access_token().unwrap();
    assert_eq!(third.expose_secret(), second.expose_secret());
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        5,
        "one refresh, retried to its budget"
    );
}

#[test]
fn non_retryable_faults_give_typed_errors_and_nothing_hangs() {
    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .timeouts(Timeouts {
        connect: Duration::from_secs(1),
        total: Duration::from_millis(300),
    })
    .build()
    .unwrap();
    let scopes = || Scopes::from([Scope::Payments]);

    mock.inject(None, 1, Fault::Delay(Duration::from_secs(2)));
    let started = Instant::now();
    let error = client.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(error, Error::Timeout(t) if t.phase == TimeoutPhase::Total),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    mock.inject(None, 1, Fault::MalformedBody);
    let error = client.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.kind == obauth_blocking::core::error::UnexpectedKind::NotJson),
        "{error:?}"
    );
    assert!(!error.to_string().contains("mock-malformed"));

    mock.inject(None, 1, Fault::TruncatedBody);
    let error = client.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::Io),
        "{error:?}"
    );

    mock.inject(None, 1, Fault::HtmlPage(500));
    let error = client.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.excerpt.contains("upstream unavailable")),
        "{error:?}"
    );

    mock.inject(None, 1, Fault::OversizedBody(2 * 1024 * 1024));
    let error = client.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::BodyTooLarge),
        "{error:?}"
    );

    let nobody = BaseUrl::parse("http://127.0.0.1:1").unwrap();
    let unreachable = TrueLayerClient::builder(Environment::Custom(nobody), "id")
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap();
    let error = unreachable
        .providers(ProvidersQuery::default())
        .unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::Connect),
        "{error:?}"
    );
}

#[test]
fn sixty_four_cold_threads_make_one_token_request() {
    let mock = MockServer::start();
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
    let results = together(64, || source.access_token());
    let tokens: std::collections::HashSet<_> = results
        .into_iter()
        .map(|r| r.unwrap().expose_secret().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    source.access_token().unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(source.key().scopes, "payments");
}

/// Runs `f` on `n` threads released at once.
fn together<T: Send>(n: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    f()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_failed_fetch_reaches_every_waiter_and_is_not_cached() {
    let mock = MockServer::start();
    let client = worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET);
    let source = TokenSource::worldline(client, Scopes::from([worldline::Scope::Vop]));
    mock.inject(
        None,
        60,
        Fault::Status {
            status: 500,
            retry_after: None,
        },
    );
    let results = together(20, || source.access_token());
    assert!(results.iter().all(|r| matches!(r, Err(Error::Api(_)))));
    // Waiters share fetches: a thread that arrives after one ended starts the next, so
    // there may be a few, each retried to its budget of 3, but never one per thread.
    let requests = mock.requests(Endpoint::WorldlineToken);
    assert!(
        requests.is_multiple_of(3) && requests < 20 * 3,
        "{requests} requests"
    );
    let token = std::iter::repeat_with(|| source.access_token())
        .take(25)
        .find_map(Result::ok)
        .expect("the source recovers once the faults are spent");
    assert!(token.expose_secret().starts_with("wl-at-"));
}

#[test]
fn expired_tokens_are_fetched_again() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(0), Duration::from_secs(0));
    let source = TokenSource::worldline(
        worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET),
        Scopes::from([worldline::Scope::Vop]),
    );
    let a = source.access_token().unwrap();
    let b = source.access_token().unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(mock.requests(Endpoint::WorldlineToken), 2);
}

/// Records saves, and can refuse the first one.
struct Recorder {
    saved: Mutex<Vec<String>>,
    events: Arc<Mutex<Vec<String>>>,
    refuse_first: Mutex<bool>,
}

impl RefreshTokenStore for Recorder {
    fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
        let mut refuse = self.refuse_first.lock().unwrap();
        if *refuse {
            *refuse = false;
            return Err(StoreError::new("database unavailable"));
        }
        self.saved
            .lock()
            .unwrap()
            .push(refresh_token.expose_secret().to_owned());
        self.events.lock().unwrap().push("saved".into());
        Ok(())
    }
}

#[test]
fn a_refused_save_keeps_the_rotated_token_and_hands_out_nothing() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    let events = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(Recorder {
        saved: Mutex::new(Vec::new()),
        events: Arc::clone(&events),
        refuse_first: Mutex::new(true),
    });
    let original = token.refresh_token.clone().unwrap();
    let tokens = UserTokens::new(client.clone(), original.clone(), store.clone());

    // The store refuses: no access token is handed out, and the rotated refresh token
    // is kept in memory rather than lost.
    let error = tokens.access_token().unwrap_err();
    assert!(matches!(error, Error::Store(_)), "{error:?}");
    assert!(store.saved.lock().unwrap().is_empty());
    let kept = tokens.refresh_token();
    assert_ne!(kept.expose_secret(), original.expose_secret());

    // Next call: saves the kept token first, then refreshes with it and saves the new one.
    let access = tokens.access_token().unwrap();
    let saved = store.saved.lock().unwrap().clone();
    assert_eq!(
        saved,
        [
            kept.expose_secret().to_owned(),
            tokens.refresh_token().expose_secret().to_owned()
        ]
    );
    assert_eq!(events.lock().unwrap().len(), 2);
    // The access token works.
    client.create_debug_id(access).unwrap();
}

/// A store whose `save` waits until the test opens the gate.
struct GatedStore {
    gate: (Mutex<bool>, std::sync::Condvar),
    saved: Mutex<Vec<String>>,
}

impl RefreshTokenStore for GatedStore {
    fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
        let (open, opened) = &self.gate;
        let _open = opened
            .wait_while(open.lock().unwrap(), |open| !*open)
            .unwrap();
        self.saved
            .lock()
            .unwrap()
            .push(refresh_token.expose_secret().to_owned());
        Ok(())
    }
}

#[test]
fn no_caller_sees_the_new_access_token_until_the_store_has_the_refresh_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    let store = Arc::new(GatedStore {
        gate: (Mutex::new(false), std::sync::Condvar::new()),
        saved: Mutex::new(Vec::new()),
    });
    let tokens = UserTokens::new(client, token.refresh_token.unwrap(), store.clone());
    let first = std::thread::spawn({
        let tokens = tokens.clone();
        move || tokens.access_token()
    });
    let second = std::thread::spawn({
        let tokens = tokens.clone();
        move || tokens.access_token()
    });
    // The refresh has happened on the server; the store holds the gate shut.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        2,
        "exchange + one refresh"
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "nobody has the access token yet"
    );
    assert!(store.saved.lock().unwrap().is_empty());
    *store.gate.0.lock().unwrap() = true;
    store.gate.1.notify_all();
    let (first, second) = (
        first.join().unwrap().unwrap(),
        second.join().unwrap().unwrap(),
    );
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(
        *store.saved.lock().unwrap(),
        [tokens.refresh_token().expose_secret().to_owned()]
    );
}

#[test]
fn concurrent_refreshes_of_one_connection_make_one_call() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    mock.reset_counts();
    let store = Arc::new(Recorder {
        saved: Mutex::new(Vec::new()),
        events: Arc::new(Mutex::new(Vec::new())),
        refuse_first: Mutex::new(false),
    });
    let tokens = UserTokens::new(client, token.refresh_token.unwrap(), store.clone());
    for result in together(32, || tokens.access_token()) {
        result.unwrap();
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(store.saved.lock().unwrap().len(), 1);
}

#[test]
fn a_refused_refresh_token_asks_for_reauthentication() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    let refresh = token.refresh_token.unwrap();
    client.refresh(refresh.clone()).unwrap(); // spends it
    let recorder = Arc::new(Recorder {
        saved: Mutex::new(Vec::new()),
        events: Arc::new(Mutex::new(Vec::new())),
        refuse_first: Mutex::new(false),
    });
    let tokens = UserTokens::new(client.clone(), refresh.clone(), recorder);
    match tokens.access_token().unwrap_err() {
        Error::ReauthenticationRequired(reauth) => {
            assert_eq!(
                reauth.refresh_token().expose_secret(),
                refresh.expose_secret()
            );
            assert_eq!(reauth.cause().code, ErrorCode::InvalidGrant);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unbounded_or_zero_timeouts_are_refused_not_panicked_on() {
    use obauth_blocking::{HttpTransport, UreqTransport};
    let mock = MockServer::start();
    for timeouts in [
        Timeouts {
            connect: Duration::from_secs(1),
            total: Duration::MAX,
        },
        Timeouts {
            connect: Duration::ZERO,
            total: Duration::from_secs(1),
        },
    ] {
        let built = TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .timeouts(timeouts)
        .build();
        assert!(matches!(built, Err(Error::InvalidInput(_))), "{timeouts:?}");

        // A transport built directly refuses them when sending (ureq would panic adding
        // `Duration::MAX` to an `Instant`).
        let transport = UreqTransport::new(timeouts);
        let request = http::Request::post(format!("{}/connect/token", mock.base_url()))
            .body(Vec::new())
            .unwrap();
        assert!(
            matches!(transport.send(request), Err(Error::InvalidInput(_))),
            "{timeouts:?}"
        );
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}
