//! Every operation end to end through obauth-blocking against obauth-mock over real HTTP,
//! with the error paths, injected faults and the token managers.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use obauth_blocking::core::expiry::ExpiryPolicy;
use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::retry::RetryPolicy;
use obauth_blocking::core::store::{
    Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord,
};
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_blocking::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_blocking::core::worldline::WorldlineAuth;
use obauth_blocking::core::worldline::assertion::{
    AssertionConfig, KeyError, RsaKeySigner, SigningCertificate,
};
use obauth_blocking::core::{
    BaseUrl, OsRandom, StoreError, StoreErrorKind, TimeoutPhase, TransportErrorKind, random,
};
use obauth_blocking::types::truelayer::providers::ProvidersQuery;
use obauth_blocking::types::truelayer::{Country, Scope};
use obauth_blocking::types::{
    AccessToken, AuthorizationCode, ClientSecret, ErrorCode, RefreshToken, Scopes, worldline,
};
use obauth_blocking::{
    Error, HttpTransport, ManagerOptions, MemoryStore, OutgoingRequest, Timeouts, TokenSource,
    TokenStore, TrueLayerClient, UreqTransport, UserTokens, WorldlineClient,
};
use obauth_mock::{Endpoint, Fault, MockServer, SigningIdentity};
use obauth_test_peers::hostile::{counting_listener, hostile_answers};

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
    // As the spec describes it, with no body: the debug id created last.
    let deleted = client.delete_debug_id().unwrap();
    assert_eq!(deleted.debug_id, debug.debug_id);
    let none_left = client.delete_debug_id().unwrap_err();
    assert_eq!(none_left.api_code(), Some(&ErrorCode::NotFound));
    // The opt-in body names the credential.
    let again = client.create_debug_id(token.access_token.clone()).unwrap();
    let deleted = client
        .delete_debug_id_with_token(token.access_token.clone())
        .unwrap();
    assert_eq!(deleted.debug_id, again.debug_id);
    let none_left = client
        .delete_debug_id_with_token(token.access_token.clone())
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
    let client = |signer: RsaKeySigner, audience: Option<&str>| {
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
    let signer = || RsaKeySigner::from_pem(&identity.private_key_pem, &certificate).unwrap();
    let good = client(signer(), None);
    // Two in a row: each carries a fresh jti.
    good.token(Scopes::from([worldline::Scope::Vop])).unwrap();
    good.token(Scopes::from([worldline::Scope::Vop])).unwrap();
    let error = client(signer(), Some("https://elsewhere.example"))
        .token(Scopes::from([worldline::Scope::Vop]))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    // Another key with the certificate: refused when the signer is made, before a request.
    let impostor = SigningIdentity::generate().unwrap();
    assert_eq!(
        RsaKeySigner::from_pem(&impostor.private_key_pem, &certificate).unwrap_err(),
        KeyError::DoesNotMatchCertificate
    );
    // Forced through with the right kid and no certificate to check: the server refuses.
    let forced = RsaKeySigner::from_pem_with_key_id(&impostor.private_key_pem, &kid).unwrap();
    let error = client(forced, None)
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
    // A Retry-After that the call's total timeout (800 ms here) has no room for: the call
    // ends at once with the answer in hand, rather than after the wait.
    let started = Instant::now();
    let error = client.providers(ProvidersQuery::default()).unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(429), "{error}");
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(mock.requests(Endpoint::Providers), 1);
    // With room for it, the wait is honoured.
    mock.reset_counts();
    mock.inject(
        Some(Endpoint::Providers),
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    );
    let patient = truelayer_with_total(&mock, Duration::from_secs(10));
    let started = Instant::now();
    patient.providers(ProvidersQuery::default()).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(mock.requests(Endpoint::Providers), 2);

    // A server that answers slower than the total timeout, each attempt: the attempts share
    // the one deadline, so the call ends near it, not after three of them.
    let slow = MockServer::start();
    slow.inject(None, 3, Fault::Delay(Duration::from_secs(2)));
    let started = Instant::now();
    let error = truelayer(&slow)
        .providers(ProvidersQuery::default())
        .unwrap_err();
    assert!(matches!(&error, Error::Timeout(_)), "{error:?}");
    assert!(error.to_string().contains("overall deadline"), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

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
fn non_retryable_faults_give_typed_errors_and_nothing_hangs() {
    let mock = MockServer::start();
    let with_total = |total| {
        TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .retry_policy(RetryPolicy::never())
        .timeouts(Timeouts {
            connect: Duration::from_secs(5),
            total,
        })
        .build()
        .unwrap()
    };
    // A short timeout only for the call whose timeout is what is checked: the others must
    // not time out on a loaded machine instead of showing their fault.
    let impatient = with_total(Duration::from_millis(300));
    let client = with_total(Duration::from_secs(10));
    let scopes = || Scopes::from([Scope::Payments]);

    mock.inject(None, 1, Fault::Delay(Duration::from_secs(2)));
    let started = Instant::now();
    let error = impatient.client_credentials(scopes()).unwrap_err();
    assert!(
        matches!(error, Error::Timeout(t) if t.phase == TimeoutPhase::Deadline),
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

// ---------------------------------------------------------------------------------------
// Token managers.
// ---------------------------------------------------------------------------------------

/// A TrueLayer client against `mock` whose attempts may take up to `total`.
fn truelayer_with_total(mock: &MockServer, total: Duration) -> TrueLayerClient {
    TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(fast_retries())
    .timeouts(Timeouts {
        connect: Duration::from_secs(2),
        total,
    })
    .build()
    .unwrap()
}

fn payments() -> Scopes<Scope> {
    Scopes::from([Scope::Payments])
}

fn secret(token: &AccessToken) -> String {
    token.expose_secret().to_owned()
}

/// Fresh for 10 % of the lifetime (0.3 s of the mock's 3 s below), then due for refresh
/// until it expires.
fn due_early() -> ExpiryPolicy {
    ExpiryPolicy {
        max_skew: Duration::ZERO,
        skew_fraction: 0.0,
        max_refresh_window: Duration::from_secs(3600),
        refresh_fraction: 0.9,
    }
}

/// Polls `f` every 20 ms until it gives something, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(found) = f() {
            return Some(found);
        }
        if started.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on `n` threads released at once; each gets its index.
fn together<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    let (f, barrier) = (&f, &barrier);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_token_due_for_refresh_is_refreshed_once_and_kept_if_that_fails() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(3), Duration::from_secs(3));
    let client = truelayer(&mock);
    let source = TokenSource::truelayer(client, payments()).with_expiry_policy(due_early());
    let first = source.access_token().unwrap();
    assert_eq!(secret(&source.access_token().unwrap()), secret(&first));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    // Due: the valid token is still served, while one refresh, aside, replaces it.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(secret(&source.access_token().unwrap()), secret(&first));
    let second = eventually(Duration::from_secs(2), || {
        let token = source.access_token().unwrap();
        (token.expose_secret() != first.expose_secret()).then_some(token)
    })
    .expect("refreshed while still valid");
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
    assert_eq!(secret(&source.access_token().unwrap()), secret(&second));
    eventually(Duration::from_secs(2), || {
        (mock.requests(Endpoint::TrueLayerToken) == 5).then_some(())
    })
    .expect("one refresh, retried to its budget");
    std::thread::sleep(Duration::from_millis(100));
    // It backs off (1 s) rather than asking again on every call.
    for _ in 0..5 {
        assert_eq!(secret(&source.access_token().unwrap()), secret(&second));
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 5);

    // After the pause, and before the valid token expires, the next refresh succeeds.
    let third = eventually(Duration::from_secs(3), || {
        let token = source.access_token().unwrap();
        (token.expose_secret() != second.expose_secret()).then_some(token)
    })
    .expect("refreshed after the backoff");
    assert_ne!(secret(&third), secret(&first));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 6);
}

#[test]
fn callers_holding_a_valid_token_never_wait_on_an_early_refresh() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(3), Duration::from_secs(3));
    // Attempts may take 5 s: the refresh below is slow, not failed.
    let client = truelayer_with_total(&mock, Duration::from_secs(5));
    let source = TokenSource::truelayer(client, payments()).with_expiry_policy(due_early());
    let first = source.access_token().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_secs(2)),
    );

    // Due, and the refresh takes 2 s: every caller gets the valid token at once meanwhile.
    let started = Instant::now();
    for _ in 0..5 {
        let asked = Instant::now();
        let token = source.access_token().unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(secret(&token), secret(&first));
        std::thread::sleep(Duration::from_millis(100));
    }
    for token in together(8, |_| source.access_token()) {
        assert_eq!(secret(&token.unwrap()), secret(&first));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        2,
        "one refresh under way"
    );

    // A little later the refreshed token is served.
    let second = eventually(Duration::from_secs(4), || {
        let token = source.access_token().unwrap();
        (token.expose_secret() != first.expose_secret()).then_some(token)
    })
    .expect("the refreshed token is served once it arrives");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(secret(&source.access_token().unwrap()), secret(&second));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn one_deadline_bounds_the_whole_fetch_whatever_the_client_timeout() {
    let mock = MockServer::start();
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        10,
        Fault::Delay(Duration::from_secs(3)),
    );
    // Each attempt may take 30 s, and a timed-out client-credentials request is retried.
    let client = truelayer_with_total(&mock, Duration::from_secs(30));
    let options = ManagerOptions {
        deadline: Duration::from_secs(1),
        ..ManagerOptions::default()
    };
    let source = TokenSource::truelayer(client.clone(), payments())
        .with_options(options)
        .unwrap();
    let started = Instant::now();
    let error = source.access_token().unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // Out-of-bounds options are refused.
    for options in [
        ManagerOptions {
            deadline: Duration::ZERO,
            ..ManagerOptions::default()
        },
        ManagerOptions {
            deadline: Duration::from_secs(3601),
            ..ManagerOptions::default()
        },
        ManagerOptions {
            lease_poll: Duration::ZERO,
            ..ManagerOptions::default()
        },
    ] {
        let refused = TokenSource::truelayer(client.clone(), payments()).with_options(options);
        assert!(
            matches!(refused, Err(Error::InvalidInput(_))),
            "{options:?}"
        );
    }
}

#[test]
fn sixty_four_cold_threads_make_one_token_request() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let source = TokenSource::truelayer(client.clone(), payments());
    let results = together(64, |_| source.access_token());
    let tokens: HashSet<_> = results.into_iter().map(|r| secret(&r.unwrap())).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    source.access_token().unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    let token_url = client.config().token_url().to_string();
    assert_eq!(
        source.key().as_str(),
        format!(
            r#"["client_credentials","{token_url}","{}","client_secret_json","payments"]"#,
            obauth_mock::TRUELAYER_CLIENT_ID
        )
    );
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
    let results = together(20, |_| source.access_token());
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

#[test]
fn two_token_sources_on_one_store_make_one_token_request() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(MemoryStore::new());
    let a = TokenSource::truelayer(client.clone(), payments()).with_store(store.clone());
    let b = TokenSource::truelayer(client.clone(), payments()).with_store(store.clone());
    assert_eq!(a.key(), b.key());
    let tokens: HashSet<_> = together(16, |i| if i % 2 == 0 { &a } else { &b }.access_token())
        .into_iter()
        .map(|r| secret(&r.unwrap()))
        .collect();
    assert_eq!(tokens.len(), 1, "both serve the one token");
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    let shared = tokens.into_iter().next().unwrap();
    assert_eq!(secret(&a.access_token().unwrap()), shared);
    assert_eq!(secret(&b.access_token().unwrap()), shared);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    // A source with a store of its own shares nothing.
    let alone = TokenSource::truelayer(client, payments());
    assert_ne!(secret(&alone.access_token().unwrap()), shared);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn invalidation_names_the_token_and_a_late_report_changes_nothing() {
    let mock = MockServer::start();
    let client = truelayer(&mock);

    let source = TokenSource::truelayer(client.clone(), payments());
    let a = source.access_token().unwrap();
    source.invalidate(&a);
    let b = source.access_token().unwrap();
    assert_ne!(secret(&a), secret(&b));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
    // Another caller reports A refused, late: B is kept.
    source.invalidate(&a);
    assert_eq!(secret(&source.access_token().unwrap()), secret(&b));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // The same for a user's connection: no extra rotation.
    let original = connect(&client, &mock).refresh_token.unwrap();
    mock.reset_counts();
    let tokens = UserTokens::new(&client, "alice", original, Arc::new(MemoryStore::new())).unwrap();
    let a = tokens.access_token().unwrap();
    tokens.invalidate(&a);
    let b = tokens.access_token().unwrap();
    assert_ne!(secret(&a), secret(&b));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
    let rotated = tokens.refresh_token().unwrap();
    tokens.invalidate(&a);
    assert_eq!(secret(&tokens.access_token().unwrap()), secret(&b));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        rotated.expose_secret()
    );
    client.create_debug_id(b).unwrap();
}

/// A [`MemoryStore`] that records what it writes, and can hold, refuse or panic in its
/// next writes.
#[derive(Default)]
struct TestStore {
    inner: MemoryStore,
    /// The records written, in order.
    written: Mutex<Vec<TokenRecord>>,
    /// How many of the next writes fail with `Unavailable`.
    refuse: AtomicUsize,
    /// How many of the next writes panic.
    panic: AtomicUsize,
    /// While shut, every write waits.
    gate: Gate,
}

struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: Mutex::new(true),
            opened: Condvar::new(),
        }
    }
}

impl Gate {
    fn shut() -> Self {
        Self {
            open: Mutex::new(false),
            opened: Condvar::new(),
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let _open = self
            .opened
            .wait_while(self.open.lock().unwrap(), |open| !*open)
            .unwrap();
    }
}

/// Takes one from `counter`, if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl TestStore {
    fn written_refresh_tokens(&self) -> Vec<String> {
        self.written
            .lock()
            .unwrap()
            .iter()
            .map(|record| {
                record
                    .refresh_token
                    .as_ref()
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            })
            .collect()
    }

    /// What the store holds under `key`.
    fn record(&self, key: &StoreKey) -> TokenRecord {
        self.inner
            .load(key)
            .unwrap()
            .expect("a stored record")
            .record
    }
}

impl TokenStore for TestStore {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.inner.load(key)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.gate.pass();
        if take_one(&self.panic) {
            panic!("injected: the token store panicked mid-write");
        }
        if take_one(&self.refuse) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "database unavailable",
            ));
        }
        let cas = self.inner.compare_and_swap(key, expect, record)?;
        if matches!(cas, Cas::Written(_)) {
            self.written.lock().unwrap().push(record.clone());
        }
        Ok(cas)
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.inner.try_lease(key, holder, ttl, now)
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.inner.release(key, holder)
    }
}

#[test]
fn a_refused_write_keeps_the_rotated_token_and_the_next_call_writes_it_without_refreshing() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let original = connect(&client, &mock).refresh_token.unwrap();
    mock.reset_counts();
    let store = Arc::new(TestStore::default());
    store.refuse.store(1, Ordering::SeqCst);
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();

    // The store refuses: no access token is handed out, and the rotated refresh token is
    // kept in memory rather than lost.
    let error = tokens.access_token().unwrap_err();
    assert!(
        matches!(&error, Error::Store(e) if e.kind() == StoreErrorKind::Unavailable),
        "{error:?}"
    );
    assert!(store.written_refresh_tokens().is_empty());
    assert!(store.inner.load(tokens.key()).unwrap().is_none());
    let kept = tokens.refresh_token().unwrap();
    assert_ne!(kept.expose_secret(), original.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    // Next call: writes the kept tokens first, then serves the access token obtained with
    // them, without another refresh.
    let access = tokens.access_token().unwrap();
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        1,
        "no second refresh"
    );
    assert_eq!(store.written_refresh_tokens(), [kept.expose_secret()]);
    let record = store.record(tokens.key());
    assert_eq!(
        record.access_token.unwrap().expose_secret(),
        access.expose_secret()
    );
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        kept.expose_secret()
    );
    // The access token works.
    client.create_debug_id(access).unwrap();
}

#[test]
fn no_caller_sees_the_new_access_token_until_the_store_has_the_refresh_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let original = connect(&client, &mock).refresh_token.unwrap();
    let store = Arc::new(TestStore {
        gate: Gate::shut(),
        ..TestStore::default()
    });
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();
    let first = std::thread::spawn({
        let tokens = tokens.clone();
        move || tokens.access_token()
    });
    let second = std::thread::spawn({
        let tokens = tokens.clone();
        move || tokens.access_token()
    });
    // The refresh has happened on the server and the rotated token is kept in memory; the
    // store holds the gate shut.
    let rotated = eventually(Duration::from_secs(2), || {
        tokens
            .refresh_token()
            .filter(|token| token.expose_secret() != original.expose_secret())
    })
    .expect("the refresh answered");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        2,
        "exchange + one refresh"
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "nobody has the access token yet"
    );
    assert!(store.inner.load(tokens.key()).unwrap().is_none());
    store.gate.open();
    let (first, second) = (
        first.join().unwrap().unwrap(),
        second.join().unwrap().unwrap(),
    );
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(store.written_refresh_tokens(), [rotated.expose_secret()]);
    assert_eq!(
        store
            .record(tokens.key())
            .access_token
            .unwrap()
            .expose_secret(),
        first.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn concurrent_refreshes_of_one_connection_make_one_call() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let original = connect(&client, &mock).refresh_token.unwrap();
    mock.reset_counts();
    let store = Arc::new(TestStore::default());
    let tokens = UserTokens::new(&client, "alice", original, store.clone()).unwrap();
    let served: HashSet<_> = together(32, |_| tokens.access_token())
        .into_iter()
        .map(|r| secret(&r.unwrap()))
        .collect();
    assert_eq!(served.len(), 1);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(store.written_refresh_tokens().len(), 1);
}

#[test]
fn a_leader_that_panics_never_leads_to_two_refreshes_with_one_refresh_token() {
    const THREADS: usize = 8;
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let original = connect(&client, &mock).refresh_token.unwrap();
    mock.reset_counts();
    // The first write panics (after the refresh rotated the token); later ones work.
    let store = Arc::new(TestStore::default());
    store.panic.store(1, Ordering::SeqCst);
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();

    let barrier = Arc::new(Barrier::new(THREADS));
    let (sender, outcomes) = mpsc::channel();
    for _ in 0..THREADS {
        let (tokens, barrier, sender) = (tokens.clone(), Arc::clone(&barrier), sender.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| tokens.access_token()));
            // `Err(())`: this thread led the fetch, and the store panicked in it.
            let _ = sender.send(outcome.map_err(|_| ()));
        });
    }
    let outcomes: Vec<_> = (0..THREADS)
        .map(|_| {
            outcomes
                .recv_timeout(Duration::from_secs(10))
                .expect("no caller hangs")
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_err()).count(),
        1,
        "the leader's store panicked"
    );
    let mut served = HashSet::new();
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Ok(token) => {
                served.insert(secret(&token));
            }
            Err(Error::ReauthenticationRequired(reauth)) => {
                panic!("a refresh token was presented twice: {reauth:?}")
            }
            Err(Error::Transport(error)) => {
                assert!(error.to_string().contains("abandoned"), "{error}")
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        1,
        "one refresh for the whole burst"
    );
    let kept = tokens.refresh_token().unwrap();
    assert_ne!(kept.expose_secret(), original.expose_secret());

    // The next call writes the kept rotated token (unless a caller of the burst did) and
    // serves the access token obtained with it, without another refresh.
    let access = tokens.access_token().unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(store.written_refresh_tokens(), [kept.expose_secret()]);
    assert_eq!(
        store
            .record(tokens.key())
            .access_token
            .unwrap()
            .expose_secret(),
        access.expose_secret()
    );
    assert!(served.iter().all(|token| token == access.expose_secret()));
    client.create_debug_id(access).unwrap();
}

/// Forwards to the mock, but takes `expires_in` out of the first successful refresh
/// answer: a 200 whose access token cannot be used, though its rotated refresh token can.
struct StripExpiresIn {
    inner: UreqTransport,
    armed: AtomicBool,
    /// The rotated refresh token of the answer it spoiled.
    rotated: Mutex<Option<String>>,
}

impl HttpTransport for StripExpiresIn {
    fn send(&self, request: OutgoingRequest) -> Result<http::Response<Vec<u8>>, Error> {
        let refresh = serde_json::from_slice::<serde_json::Value>(request.body())
            .is_ok_and(|body| body["grant_type"] == "refresh_token");
        let mut response = self.inner.send(request)?;
        if refresh && response.status().is_success() && self.armed.swap(false, Ordering::SeqCst) {
            let mut body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            let fields = body.as_object_mut().unwrap();
            assert!(fields.remove("expires_in").is_some());
            *self.rotated.lock().unwrap() = fields
                .get("refresh_token")
                .and_then(|token| token.as_str())
                .map(str::to_owned);
            *response.body_mut() = serde_json::to_vec(&body).unwrap();
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
        }
        Ok(response)
    }
}

#[test]
fn a_rotated_refresh_token_survives_a_malformed_success_answer() {
    let mock = MockServer::start();
    let transport = Arc::new(StripExpiresIn {
        inner: UreqTransport::new(Timeouts::default()),
        armed: AtomicBool::new(true),
        rotated: Mutex::new(None),
    });
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(fast_retries())
    .transport(transport.clone())
    .build()
    .unwrap();
    let original = connect(&client, &mock).refresh_token.unwrap();
    mock.reset_counts();
    let store = Arc::new(TestStore::default());
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();

    let error = tokens.access_token().unwrap_err();
    assert!(matches!(error, Error::UnexpectedResponse(_)), "{error:?}");
    let rotated = transport
        .rotated
        .lock()
        .unwrap()
        .clone()
        .expect("the mock rotated the refresh token");
    assert_ne!(rotated, original.expose_secret());
    assert!(!format!("{error} {error:?}").contains(&rotated));
    // The store holds the rotated refresh token (and no access token).
    let record = store.record(tokens.key());
    assert_eq!(record.refresh_token.unwrap().expose_secret(), rotated);
    assert!(record.access_token.is_none());
    assert_eq!(tokens.refresh_token().unwrap().expose_secret(), rotated);

    // The mock refuses a spent refresh token: success proves the rotated one was used.
    let access = tokens.access_token().unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
    let next = tokens.refresh_token().unwrap();
    assert_ne!(next.expose_secret(), rotated);
    assert_eq!(
        store
            .record(tokens.key())
            .refresh_token
            .unwrap()
            .expose_secret(),
        next.expose_secret()
    );
    client.create_debug_id(access).unwrap();
}

#[test]
fn a_refused_refresh_token_asks_for_reauthentication() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock);
    let refresh = token.refresh_token.unwrap();
    client.refresh(refresh.clone()).unwrap(); // spends it
    let tokens = UserTokens::new(
        &client,
        "alice",
        refresh.clone(),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
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
    // Asked again: the answer is known, and the server is not asked again.
    mock.reset_counts();
    let again = tokens.access_token().unwrap_err();
    assert!(
        matches!(again, Error::ReauthenticationRequired(_)),
        "{again:?}"
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}

#[test]
fn a_connection_nobody_saved_is_not_found_and_a_saved_one_opens_without_a_request() {
    fn not_found(result: Result<AccessToken, Error>) {
        match result {
            Err(Error::Store(error)) => assert_eq!(error.kind(), StoreErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(MemoryStore::new());
    let early = UserTokens::open(&client, "alice", store.clone()).unwrap();
    not_found(early.access_token());
    assert!(early.refresh_token().is_none());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);

    let requested_at = SystemTime::now();
    let response = connect(&client, &mock);
    mock.reset_counts();
    let saved =
        UserTokens::from_token_response(&client, "alice", &response, requested_at, store.clone())
            .unwrap();
    // Written before it returned.
    let record = store.load(saved.key()).unwrap().unwrap().record;
    assert_eq!(
        record.access_token.unwrap().expose_secret(),
        response.access_token.expose_secret()
    );
    let saved_refresh = response.refresh_token.clone().unwrap();
    assert_eq!(
        record.refresh_token.unwrap().expose_secret(),
        saved_refresh.expose_secret()
    );

    let reopened = UserTokens::open(&client, "alice", store.clone()).unwrap();
    assert_eq!(reopened.key(), saved.key());
    assert_eq!(
        secret(&reopened.access_token().unwrap()),
        secret(&response.access_token)
    );
    // The handle opened before the connection was saved finds it now too.
    assert_eq!(
        secret(&early.access_token().unwrap()),
        secret(&response.access_token)
    );
    // Another name is another connection.
    not_found(
        UserTokens::open(&client, "bob", store.clone())
            .unwrap()
            .access_token(),
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);

    // A forced refresh: one request, the rotated token written.
    let refreshed = reopened.refresh_now().unwrap();
    assert_ne!(secret(&refreshed), secret(&response.access_token));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    let rotated = reopened.refresh_token().unwrap();
    assert_ne!(rotated.expose_secret(), saved_refresh.expose_secret());
    let record = store.load(reopened.key()).unwrap().unwrap().record;
    assert_eq!(
        record.refresh_token.unwrap().expose_secret(),
        rotated.expose_secret()
    );
    client.create_debug_id(refreshed).unwrap();
}

#[test]
fn a_fetch_cut_short_by_its_deadline_says_so() {
    let mock = MockServer::start();
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        10,
        Fault::Delay(Duration::from_secs(3)),
    );
    let deadline = Duration::from_secs(1);
    let source = TokenSource::truelayer(
        truelayer_with_total(&mock, Duration::from_secs(30)),
        payments(),
    )
    .with_options(ManagerOptions {
        deadline,
        ..ManagerOptions::default()
    })
    .unwrap();
    match source.access_token().unwrap_err() {
        Error::Timeout(timeout) => {
            assert!(timeout.after <= deadline, "{timeout:?}: {timeout}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reconfiguring_a_connection_keeps_a_rotated_token_the_store_refused() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(TestStore::default());
    let requested_at = SystemTime::now();
    let response = connect(&client, &mock);
    let tokens =
        UserTokens::from_token_response(&client, "alice", &response, requested_at, store.clone())
            .unwrap();
    // The rotation's write is refused: the rotated token lives in memory only, and the
    // store still holds the spent one.
    store.refuse.store(1, Ordering::SeqCst);
    let refused = tokens.refresh_now().unwrap_err();
    assert!(matches!(refused, Error::Store(_)), "{refused:?}");
    mock.reset_counts();

    let tokens = tokens
        .with_options(ManagerOptions {
            deadline: Duration::from_secs(30),
            ..ManagerOptions::default()
        })
        .unwrap();
    tokens.access_token().unwrap();
    // The connection still refreshes: the rotated token was kept, not the spent one.
    let refreshed = tokens.refresh_now();
    assert!(refreshed.is_ok(), "{refreshed:?}");
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(
        store
            .record(tokens.key())
            .refresh_token
            .unwrap()
            .expose_secret(),
        tokens.refresh_token().unwrap().expose_secret()
    );
    client.create_debug_id(refreshed.unwrap()).unwrap();
}

#[test]
fn unbounded_or_zero_timeouts_are_refused_not_panicked_on() {
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
            matches!(transport.send(request.into()), Err(Error::InvalidInput(_))),
            "{timeouts:?}"
        );
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}

/// A memory store that can be switched off (every call then fails as unreachable).
struct Switchable {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> Result<(), obauth_blocking::core::StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(obauth_blocking::core::StoreError::new(
                obauth_blocking::core::StoreErrorKind::Unavailable,
                "connection refused",
            ));
        }
        Ok(())
    }
}

impl TokenStore for Switchable {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, obauth_blocking::core::StoreError> {
        self.check()?;
        self.inner.load(key)
    }
    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, obauth_blocking::core::StoreError> {
        self.check()?;
        self.inner.compare_and_swap(key, expect, record)
    }
    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, obauth_blocking::core::StoreError> {
        self.check()?;
        self.inner.try_lease(key, holder, ttl, now)
    }
    fn release(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
    ) -> Result<(), obauth_blocking::core::StoreError> {
        self.check()?;
        self.inner.release(key, holder)
    }
}

#[test]
fn a_store_outage_is_one_warning_and_its_end_one_line() {
    let mock = MockServer::start();
    let store = Arc::new(Switchable {
        inner: MemoryStore::new(),
        down: AtomicBool::new(true),
    });
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]))
        .with_store(store.clone());
    let recorder = obauth_test_peers::TracingRecorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        // Down: served all the same, fetch after fetch.
        for _ in 0..3 {
            let token = source.access_token().unwrap();
            source.invalidate(&token);
        }
        assert!(store.inner.load(source.key()).unwrap().is_none());
        store.down.store(false, Ordering::SeqCst);
        source.access_token().unwrap();
    });
    let events = recorder.events();
    let warnings: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::WARN)
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert!(
        warnings[0].1.contains("token store unavailable"),
        "{events:?}"
    );
    assert!(warnings[0].1.contains("connection refused"), "{events:?}");
    assert!(warnings[0].1.contains("store_key="), "{events:?}");
    let back: Vec<_> = events
        .iter()
        .filter(|(level, text)| *level == tracing::Level::INFO && text.contains("answers again"))
        .collect();
    assert_eq!(back.len(), 1, "{events:?}");
    // Nothing else at INFO or above: the per-fetch detail is DEBUG.
    let loud = events
        .iter()
        .filter(|(level, _)| *level <= tracing::Level::INFO)
        .count();
    assert_eq!(loud, 2, "{events:?}");
}

/// Every text of `error` a caller can reach, its public fields included.
fn every_text(error: &Error) -> String {
    let mut shown = format!("{error}\n{error:?}\n");
    match error {
        Error::Api(api) => {
            shown.push_str(api.code.as_ref());
            shown.push_str(api.description.as_deref().unwrap_or_default());
            if let Some(details) = &api.details {
                shown.push_str(details.reason.as_deref().unwrap_or_default());
                shown.push_str(&format!("{:?}", details.other));
            }
        }
        Error::UnexpectedResponse(unexpected) => shown.push_str(&unexpected.excerpt),
        _ => panic!(
            "the echoing server's answer should be an API error or an unexpected response: {error}"
        ),
    }
    shown
}

#[test]
fn a_server_quoting_the_request_gets_none_of_its_secrets_into_an_error() {
    // Short secrets, which the generic redaction of long token-like runs would miss.
    const CLIENT_SECRET: &str = "Cs-Echo-77";
    const CODE: &str = "Code/Echo 88";
    const REFRESH: &str = "Rt-Echo-99";
    const ACCESS: &str = "At-Echo-66";
    const WORLDLINE_SECRET: &str = "Wl-Echo-55";
    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        "echo-client",
    )
    .client_secret(ClientSecret::new(CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    let worldline = WorldlineClient::builder(
        BaseUrl::parse(&mock.worldline_base_url()).unwrap(),
        obauth_mock::WORLDLINE_REALM,
        "echo-client",
        WorldlineAuth::ClientSecret(ClientSecret::new(WORLDLINE_SECRET)),
    )
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    let verifier = Pkce::generate(&mut OsRandom).unwrap().verifier().clone();
    let verifier_text = verifier.expose_secret().to_owned();
    let mut checked = 0;
    macro_rules! echoed {
        ($endpoint:expr, $secrets:expr, $call:expr) => {
            for fault in [Fault::EchoRequest, Fault::EchoRequestPage] {
                mock.inject(Some($endpoint), 1, fault);
                let error = $call.unwrap_err();
                let shown = every_text(&error);
                for secret in $secrets {
                    assert!(
                        !shown.contains(secret),
                        "{secret} reached the error: {shown}"
                    );
                }
                // Not vacuous: the server did quote the request, and obauth cut it out.
                assert!(shown.contains("<redacted>"), "{shown}");
                checked += 1;
            }
        };
    }
    echoed!(
        Endpoint::TrueLayerToken,
        [CLIENT_SECRET],
        client.client_credentials(Scopes::from([Scope::Payments]))
    );
    echoed!(
        Endpoint::TrueLayerToken,
        [CLIENT_SECRET, CODE, "Code%2FEcho", verifier_text.as_str()],
        client.exchange_code(
            AuthorizationCode::new(CODE),
            "https://app.example/cb",
            Some(verifier.clone())
        )
    );
    echoed!(
        Endpoint::TrueLayerToken,
        [CLIENT_SECRET, REFRESH],
        client.refresh(RefreshToken::new(REFRESH))
    );
    echoed!(
        Endpoint::ReauthLink,
        [CLIENT_SECRET, REFRESH],
        client.create_reauth_link(ReauthLink::new(
            RefreshToken::new(REFRESH),
            "https://app.example/cb"
        ))
    );
    echoed!(
        Endpoint::CreateDebugId,
        [ACCESS],
        client.create_debug_id(AccessToken::new(ACCESS))
    );
    echoed!(
        Endpoint::DeleteDebugId,
        [ACCESS],
        client.delete_debug_id_with_token(AccessToken::new(ACCESS))
    );
    echoed!(
        Endpoint::DeleteCredential,
        [ACCESS],
        client.delete_credential(AccessToken::new(ACCESS))
    );
    echoed!(
        Endpoint::WorldlineToken,
        [WORLDLINE_SECRET],
        worldline.token(Scopes::from([worldline::Scope::Vop]))
    );
    assert_eq!(checked, 16);
}

#[test]
fn hostile_servers_get_typed_errors_in_time_and_no_redirect_is_followed() {
    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .timeouts(Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_millis(2500),
    })
    .build()
    .unwrap();
    let (target, connections) = counting_listener();
    for (name, fault, expected) in hostile_answers(&target) {
        mock.inject(Some(Endpoint::TrueLayerToken), 1, fault);
        let started = Instant::now();
        let error = client
            .client_credentials(Scopes::from([Scope::Payments]))
            .expect_err(name);
        assert!(expected(&error), "{name}: {error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(
            !error
                .to_string()
                .contains(obauth_mock::TRUELAYER_CLIENT_SECRET),
            "{name}: {error}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
}

#[test]
fn a_retry_policy_whose_first_pause_outlasts_the_total_timeout_is_refused() {
    let mock = MockServer::start();
    let build = |policy: RetryPolicy, total: Duration| {
        TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .retry_policy(policy)
        .timeouts(Timeouts {
            connect: Duration::from_secs(1),
            total,
        })
        .build()
    };
    // The default policy pauses 200 ms first: a 150 ms call has no room for any retry.
    match build(RetryPolicy::default(), Duration::from_millis(150)) {
        Err(Error::InvalidInput(invalid)) => {
            assert_eq!(invalid.what(), "retry policy");
            assert!(invalid.problem().contains("total timeout"), "{invalid}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Fine with room for a pause, or with no retries at all.
    assert!(build(RetryPolicy::default(), Duration::from_secs(1)).is_ok());
    assert!(build(RetryPolicy::never(), Duration::from_millis(150)).is_ok());
    // The same goes for a caller's own agent or transport.
    let own = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .agent(UreqTransport::agent(Timeouts::default()))
    .timeouts(Timeouts {
        connect: Duration::from_secs(1),
        total: Duration::from_millis(100),
    })
    .build();
    assert!(matches!(own, Err(Error::InvalidInput(_))));
}

#[test]
fn a_connection_saved_under_the_old_key_name_is_still_found_and_moved() {
    // obauth 0.1 named TrueLayer's client authentication `client_secret_post` in store
    // keys; a connection saved then must keep working after the rename.
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let response = connect(&client, &mock);
    mock.reset_counts();
    let store = Arc::new(MemoryStore::new());
    let old_key = StoreKey::user(
        &client.config().token_url().to_string(),
        obauth_mock::TRUELAYER_CLIENT_ID,
        "client_secret_post",
        &obauth_blocking::core::store::ConnectionName::new("alice").unwrap(),
    );
    let saved = response.refresh_token.clone().unwrap();
    let stale = TokenRecord {
        access_token: Some(response.access_token.clone()),
        obtained_at: SystemTime::now() - Duration::from_secs(7200),
        expires_in: 3600,
        refresh_token: Some(saved.clone()),
    };
    store
        .compare_and_swap(&old_key, Expect::Absent, &stale)
        .unwrap();

    let user = UserTokens::open(&client, "alice", store.clone()).unwrap();
    assert_ne!(user.key(), &old_key);
    assert_eq!(user.key().previous().as_ref(), Some(&old_key));
    let fresh = user.access_token().unwrap();
    // Refreshed with the saved token: one request, no re-authentication.
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_ne!(secret(&fresh), secret(&response.access_token));
    let moved = store.load(user.key()).unwrap().unwrap().record;
    let rotated = moved.refresh_token.unwrap();
    assert_ne!(rotated.expose_secret(), saved.expose_secret());
    assert_eq!(secret(&moved.access_token.unwrap()), secret(&fresh));
}
