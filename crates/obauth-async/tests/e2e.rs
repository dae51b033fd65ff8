//! Every operation end to end through obauth-async against obauth-mock over real HTTP,
//! with the error paths, injected faults and the token managers (with their stores).

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use obauth_async::core::expiry::ExpiryPolicy;
use obauth_async::core::pkce::Pkce;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::store::{Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord};
use obauth_async::core::truelayer::Environment;
use obauth_async::core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_async::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_async::core::worldline::WorldlineAuth;
use obauth_async::core::worldline::assertion::{
    AssertionConfig, KeyError, RsaKeySigner, SigningCertificate,
};
use obauth_async::core::{
    BaseUrl, OsRandom, StoreError, StoreErrorKind, TimeoutPhase, TransportErrorKind, random,
};
use obauth_async::types::truelayer::providers::ProvidersQuery;
use obauth_async::types::truelayer::{Country, Scope};
use obauth_async::types::{
    AccessToken, AuthorizationCode, ClientSecret, ErrorCode, RefreshToken, Scopes, worldline,
};
use obauth_async::{
    Error, HttpTransport, ManagerOptions, MemoryStore, OutgoingRequest, ReqwestTransport, Timeouts,
    TokenSource, TokenStore, TrueLayerClient, UserTokens, WorldlineClient,
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
    truelayer_with(
        mock,
        Timeouts {
            connect: Duration::from_secs(2),
            total: Duration::from_millis(800),
        },
    )
}

/// The mock's TrueLayer client with these timeouts.
fn truelayer_with(mock: &MockServer, timeouts: Timeouts) -> TrueLayerClient {
    TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(fast_retries())
    .timeouts(timeouts)
    .build()
    .unwrap()
}

/// A TrueLayer client for the mock's client that sends through `transport`.
fn truelayer_over(base_url: &str, transport: Arc<dyn HttpTransport>) -> TrueLayerClient {
    TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base_url).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(fast_retries())
    .transport(transport)
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
async fn connect(
    client: &TrueLayerClient,
    mock: &MockServer,
) -> obauth_async::types::truelayer::token::TokenResponse {
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
        .await
        .unwrap();
    let back = mock.approve(&link).unwrap();
    let callback = parse_callback(&back, &state).unwrap();
    client
        .exchange_code(callback.code, REDIRECT, Some(pkce.verifier().clone()))
        .await
        .unwrap()
}

#[tokio::test]
async fn truelayer_user_connection_lifecycle() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    assert_eq!(token.expires_in, 3600);
    let first_refresh = token.refresh_token.clone().unwrap();

    let debug = client
        .create_debug_id(token.access_token.clone())
        .await
        .unwrap();
    assert_eq!(debug.provider_id, "ob-transferwise");
    // As the spec describes it, with no body: the debug id created last.
    let deleted = client.delete_debug_id().await.unwrap();
    assert_eq!(deleted.debug_id, debug.debug_id);
    let none_left = client.delete_debug_id().await.unwrap_err();
    assert_eq!(none_left.api_code(), Some(&ErrorCode::NotFound));
    // The opt-in body names the credential.
    let again = client
        .create_debug_id(token.access_token.clone())
        .await
        .unwrap();
    let deleted = client
        .delete_debug_id_with_token(token.access_token.clone())
        .await
        .unwrap();
    assert_eq!(deleted.debug_id, again.debug_id);
    let none_left = client
        .delete_debug_id_with_token(token.access_token.clone())
        .await
        .unwrap_err();
    assert_eq!(none_left.api_code(), Some(&ErrorCode::NotFound));

    // Refresh rotates; the spent token is refused.
    let refreshed = client.refresh(first_refresh.clone()).await.unwrap();
    let second_refresh = refreshed.refresh_token.clone().unwrap();
    assert_ne!(
        second_refresh.expose_secret(),
        first_refresh.expose_secret()
    );
    let reused = client.refresh(first_refresh).await.unwrap_err();
    assert_eq!(reused.api_code(), Some(&ErrorCode::InvalidGrant));

    // Reauthentication keeps the connection.
    let state = random::new_state(&mut OsRandom).unwrap();
    let link = client
        .create_reauth_link(ReauthLink::new(second_refresh.clone(), REDIRECT).state(&state))
        .await
        .unwrap();
    let callback = parse_callback(&mock.approve(&link).unwrap(), &state).unwrap();
    let renewed = client
        .exchange_code(callback.code, REDIRECT, None)
        .await
        .unwrap();

    // Deleting the credential revokes its tokens.
    client
        .delete_credential(renewed.access_token.clone())
        .await
        .unwrap();
    let revoked = client
        .create_debug_id(renewed.access_token)
        .await
        .unwrap_err();
    assert_eq!(revoked.api_code(), Some(&ErrorCode::Unauthorized));
    assert_eq!(revoked.status().map(|s| s.as_u16()), Some(401));
    let gone = client
        .refresh(renewed.refresh_token.unwrap())
        .await
        .unwrap_err();
    assert_eq!(gone.api_code(), Some(&ErrorCode::InvalidGrant));
    let bad_delete = client
        .delete_credential(AccessToken::new("nope"))
        .await
        .unwrap_err();
    assert_eq!(bad_delete.api_code(), Some(&ErrorCode::Unauthorized));
}

#[tokio::test]
async fn code_exchange_errors() {
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
        .await
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
        Err(obauth_async::core::CallbackError::Denied {
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
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::UnauthorizedClient));
}

#[tokio::test]
async fn client_credentials_and_providers() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = client
        .client_credentials(Scopes::from([Scope::Payments]))
        .await
        .unwrap();
    assert!(token.refresh_token.is_none());
    let refused = client
        .client_credentials(Scopes::from([Scope::Info]))
        .await
        .unwrap_err();
    assert_eq!(refused.api_code(), Some(&ErrorCode::InvalidScope));

    let all = client.providers(ProvidersQuery::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    let filtered = client
        .providers(ProvidersQuery {
            client_id: Some(obauth_mock::TRUELAYER_CLIENT_ID.into()),
            scopes: Scopes::from([Scope::Info, Scope::Cards]),
            countries: vec![Country::Uk],
        })
        .await
        .unwrap();
    let ids: Vec<_> = filtered.iter().map(|p| p.provider_id.as_str()).collect();
    assert_eq!(ids, ["mock", "ob-lloyds-business"]);
    let french = client
        .providers(ProvidersQuery {
            countries: vec![Country::Fr],
            ..ProvidersQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(french[0].steps[0].fields[0].id, "branch-name");
}

#[tokio::test]
async fn worldline_secret_and_errors() {
    let mock = MockServer::start();
    let client = worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET);
    let token = client
        .token(Scopes::from([
            worldline::Scope::Vop,
            worldline::Scope::Wero,
        ]))
        .await
        .unwrap();
    assert_eq!(token.expires_in, 300);
    assert_eq!(token.scope.unwrap().to_wire(), "VOP WERO");

    let error = client
        .token(Scopes::from([worldline::Scope::from("IDEAL")]))
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidScope));
    let wrong = worldline_secret(&mock, "not-the-secret");
    let error = wrong
        .token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400));
    assert!(!format!("{error} {error:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn worldline_client_assertion() {
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
    good.token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap();
    good.token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap();
    let error = client(signer(), Some("https://elsewhere.example"))
        .token(Scopes::from([worldline::Scope::Vop]))
        .await
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
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    // A scope the client may not use.
    let error = good
        .token(Scopes::from([worldline::Scope::Wero]))
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidScope));
    assert_eq!(mock.requests(Endpoint::WorldlineToken), 5);
}

#[tokio::test]
async fn retryable_faults_are_retried_within_the_budget() {
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
        .await
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
    let error = client
        .providers(ProvidersQuery::default())
        .await
        .unwrap_err();
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
    let patient = truelayer_with(
        &mock,
        Timeouts {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(10),
        },
    );
    let started = Instant::now();
    patient.providers(ProvidersQuery::default()).await.unwrap();
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
        .await
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
    client.providers(ProvidersQuery::default()).await.unwrap();
    assert_eq!(mock.requests(Endpoint::Providers), 2);

    // Past the budget the last error comes back.
    mock.reset_counts();
    mock.inject(Some(Endpoint::Providers), 3, Fault::HtmlPage(502));
    let error = client
        .providers(ProvidersQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.status.as_u16() == 502),
        "{error:?}"
    );
    assert_eq!(mock.requests(Endpoint::Providers), 3);
}

#[tokio::test]
async fn single_use_codes_are_never_retried() {
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
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    // The code was not consumed by the refused attempt.
    let token = client
        .exchange_code(callback.code, REDIRECT, None)
        .await
        .unwrap();

    // A lost answer (timeout, truncated body) is not retried for a refresh either: the
    // server may have rotated the token already.
    let refresh = token.refresh_token.unwrap();
    mock.reset_counts();
    mock.inject(Some(Endpoint::TrueLayerToken), 1, Fault::TruncatedBody);
    let error = client.refresh(refresh.clone()).await.unwrap_err();
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
    let error = client.refresh(refresh).await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[tokio::test]
async fn non_retryable_faults_give_typed_errors_and_nothing_hangs() {
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
    let error = impatient.client_credentials(scopes()).await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(t) if t.phase == TimeoutPhase::Deadline),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    mock.inject(None, 1, Fault::MalformedBody);
    let error = client.client_credentials(scopes()).await.unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.kind == obauth_async::core::error::UnexpectedKind::NotJson),
        "{error:?}"
    );
    assert!(!error.to_string().contains("mock-malformed"));

    mock.inject(None, 1, Fault::TruncatedBody);
    let error = client.client_credentials(scopes()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::Io),
        "{error:?}"
    );

    mock.inject(None, 1, Fault::HtmlPage(500));
    let error = client.client_credentials(scopes()).await.unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedResponse(u) if u.excerpt.contains("upstream unavailable")),
        "{error:?}"
    );

    mock.inject(None, 1, Fault::OversizedBody(2 * 1024 * 1024));
    let error = client.client_credentials(scopes()).await.unwrap_err();
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
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Transport(t) if t.kind() == TransportErrorKind::Connect),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_mock_refuses_replayed_expired_and_long_lived_assertions() {
    use obauth_async::core::{Operation, RequestContext};

    let mock = MockServer::start();
    let identity = SigningIdentity::generate().unwrap();
    mock.register_worldline_assertion_client(
        "jwt-realm",
        "5734699",
        &identity.certificate_pem,
        &["VOP"],
    )
    .unwrap();
    let certificate = SigningCertificate::from_pem(&identity.certificate_pem).unwrap();
    let config = |lifetime: Duration| {
        let signer = RsaKeySigner::from_pem(&identity.private_key_pem, &certificate).unwrap();
        obauth_async::core::worldline::WorldlineConfig::new(
            BaseUrl::parse(&mock.worldline_base_url()).unwrap(),
            "jwt-realm",
            "5734699",
            WorldlineAuth::Assertion(
                AssertionConfig::new(signer)
                    .unwrap()
                    .with_lifetime(lifetime)
                    .unwrap(),
            ),
        )
        .unwrap()
    };
    let transport = ReqwestTransport::new(Timeouts::default()).unwrap();
    let scopes = || Scopes::from([worldline::Scope::Vop]);
    let signed = |config: &obauth_async::core::worldline::WorldlineConfig, at: SystemTime| {
        config
            .token(scopes())
            .build_request(&mut RequestContext::new(at, &mut OsRandom))
            .unwrap()
    };
    let default = config(Duration::from_secs(60));
    let op = default.token(scopes());

    // The same signed request twice: the second is a jti replay.
    let request = signed(&default, SystemTime::now());
    let replay = request.clone();
    op.parse_response(&transport.send(request.into()).await.unwrap())
        .unwrap();
    let error = op
        .parse_response(&transport.send(replay.into()).await.unwrap())
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    assert!(error.to_string().contains("reuse"), "{error}");

    // Signed two minutes ago: expired.
    let old = signed(&default, SystemTime::now() - Duration::from_secs(120));
    let error = op
        .parse_response(&transport.send(old.into()).await.unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("expired"), "{error}");

    // Valid for two minutes: over Keycloak's default maximum.
    let long = config(Duration::from_secs(120));
    let request = signed(&long, SystemTime::now());
    let error = op
        .parse_response(&transport.send(request.into()).await.unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("lifetime"), "{error}");
}

/// A server on its own thread that answers every request with a 307 to `location`.
fn redirecting_server(location: String) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head and the (small, content-length) body.
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_caller_client_that_follows_redirects_is_caught() {
    let mock = MockServer::start();
    let redirector = redirecting_server(format!("{}/connect/token", mock.base_url()));
    // A client with reqwest's default policy, which follows a 307 and re-sends the body
    // (and its client secret) to wherever the Location points.
    let following = reqwest::Client::new();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&format!("http://{redirector}")).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .reqwest_client(following)
    .build()
    .unwrap();
    let error = client
        .client_credentials(Scopes::from([Scope::Payments]))
        .await
        .unwrap_err();
    match &error {
        Error::Transport(transport) => {
            assert_eq!(
                transport.kind(),
                TransportErrorKind::RedirectFollowed,
                "{error}"
            )
        }
        other => panic!("expected RedirectFollowed, got {other:?}"),
    }

    // obauth's own client does not follow it: the 307 is an unexpected answer.
    let own = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&format!("http://{redirector}")).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    let error = own
        .client_credentials(Scopes::from([Scope::Payments]))
        .await
        .unwrap_err();
    assert_eq!(
        error.status(),
        Some(http::StatusCode::TEMPORARY_REDIRECT),
        "{error}"
    );
}

#[tokio::test]
async fn urls_that_reqwest_normalises_are_not_mistaken_for_redirects() {
    let mock = MockServer::start();
    let transport = ReqwestTransport::new(Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(5),
    })
    .unwrap();
    // reqwest parses `/./connect/token` into `/connect/token` and lowercases the scheme:
    // the answer comes from the URL it sent, which is no redirect.
    let url = format!("{}/./connect/token", mock.base_url()).replacen("http:", "HTTP:", 1);
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .unwrap();
    let response = transport.send(request.into()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unbounded_or_zero_timeouts_are_refused() {
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

        // A transport over a caller's client refuses them when sending: tokio would
        // quietly treat `Duration::MAX` as no timeout at all.
        let transport = ReqwestTransport::with_client(reqwest::Client::new(), timeouts);
        let request = http::Request::post(format!("{}/connect/token", mock.base_url()))
            .body(Vec::new())
            .unwrap();
        assert!(
            matches!(
                transport.send(request.into()).await,
                Err(Error::InvalidInput(_))
            ),
            "{timeouts:?}"
        );
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}

// ---------------------------------------------------------------------------------------
// Token managers: helpers.
// ---------------------------------------------------------------------------------------

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A [`MemoryStore`] with hooks in `compare_and_swap`, as each test needs them: it records
/// every record written, can panic on or refuse the next writes or fail the next reads,
/// and can hold writes at a gate until the test opens it. It may block (the async binding then calls it on tokio's
/// blocking pool) unless built [`inline`](TestStore::inline).
struct TestStore {
    inner: MemoryStore,
    may_block: bool,
    panics: AtomicUsize,
    refusals: AtomicUsize,
    failed_loads: AtomicUsize,
    written: Mutex<Vec<TokenRecord>>,
    /// Whether the gate is closed.
    gate: Mutex<bool>,
    opened: Condvar,
    at_gate: AtomicUsize,
}

impl TestStore {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            may_block: true,
            panics: AtomicUsize::new(0),
            refusals: AtomicUsize::new(0),
            failed_loads: AtomicUsize::new(0),
            written: Mutex::new(Vec::new()),
            gate: Mutex::new(false),
            opened: Condvar::new(),
            at_gate: AtomicUsize::new(0),
        }
    }

    /// A store the binding calls in place, like a `MemoryStore`.
    fn inline() -> Self {
        Self {
            may_block: false,
            ..Self::new()
        }
    }

    /// The next `n` writes panic, as a buggy store might.
    fn panic_next(&self, n: usize) {
        self.panics.store(n, Ordering::SeqCst);
    }

    /// The next `n` writes fail with `Unavailable`.
    fn refuse_next(&self, n: usize) {
        self.refusals.store(n, Ordering::SeqCst);
    }

    /// The next `n` reads fail with `Unavailable`.
    fn fail_loads(&self, n: usize) {
        self.failed_loads.store(n, Ordering::SeqCst);
    }

    /// Writes wait until [`TestStore::open_gate`] (at most 10 s, then they fail).
    fn gated(self) -> Self {
        *self.gate.lock().unwrap() = true;
        self
    }

    fn open_gate(&self) {
        *self.gate.lock().unwrap() = false;
        self.opened.notify_all();
    }

    fn waiting_at_gate(&self) -> usize {
        self.at_gate.load(Ordering::SeqCst)
    }

    /// The refresh tokens of the records written, in order.
    fn saved_refresh_tokens(&self) -> Vec<String> {
        self.written
            .lock()
            .unwrap()
            .iter()
            .filter_map(|record| record.refresh_token.as_ref())
            .map(|token| token.expose_secret().to_owned())
            .collect()
    }

    /// What the store holds under `key`.
    fn record(&self, key: &StoreKey) -> Option<TokenRecord> {
        self.inner.load(key).unwrap().map(|stored| stored.record)
    }
}

impl TokenStore for TestStore {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        if take_one(&self.failed_loads) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "database unavailable",
            ));
        }
        self.inner.load(key)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        if take_one(&self.panics) {
            panic!("the store's bug (this panic is expected by the test)");
        }
        if take_one(&self.refusals) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "database unavailable",
            ));
        }
        {
            let closed = self.gate.lock().unwrap();
            if *closed {
                self.at_gate.fetch_add(1, Ordering::SeqCst);
                let (closed, _) = self
                    .opened
                    .wait_timeout_while(closed, Duration::from_secs(10), |closed| *closed)
                    .unwrap();
                self.at_gate.fetch_sub(1, Ordering::SeqCst);
                if *closed {
                    return Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        "the test never opened the gate",
                    ));
                }
            }
        }
        let result = self.inner.compare_and_swap(key, expect, record);
        if let Ok(Cas::Written(_)) = result {
            self.written.lock().unwrap().push(record.clone());
        }
        result
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

    fn may_block(&self) -> bool {
        self.may_block
    }
}

/// Waits until `done` holds, checking every 5 ms, for at most 5 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let limit = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Calls `source` until it serves a token other than `old` (an early refresh running aside
/// has landed), for at most 5 s.
async fn token_after(source: &TokenSource, old: &AccessToken) -> AccessToken {
    let limit = Instant::now() + Duration::from_secs(5);
    loop {
        let token = source.access_token().await.unwrap();
        if token.expose_secret() != old.expose_secret() {
            return token;
        }
        assert!(Instant::now() < limit, "the refresh never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fresh for 10 % of the lifetime, then due for refresh until it expires (no skew).
fn refresh_early() -> ExpiryPolicy {
    ExpiryPolicy {
        max_skew: Duration::ZERO,
        skew_fraction: 0.0,
        max_refresh_window: Duration::from_secs(3600),
        refresh_fraction: 0.9,
    }
}

async fn futures_join(source: &TokenSource, n: usize) -> Vec<Result<AccessToken, Error>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let source = source.clone();
        set.spawn(async move { source.access_token().await });
    }
    let mut results = Vec::new();
    while let Some(result) = set.join_next().await {
        results.push(result.unwrap());
    }
    results
}

async fn futures_join_user(tokens: &UserTokens, n: usize) -> Vec<Result<AccessToken, Error>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.access_token().await });
    }
    let mut results = Vec::new();
    while let Some(result) = set.join_next().await {
        results.push(result.unwrap());
    }
    results
}

// ---------------------------------------------------------------------------------------
// Application tokens.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_due_for_refresh_is_refreshed_once_and_kept_if_that_fails() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(3), Duration::from_secs(3));
    let client = truelayer(&mock);
    // Fresh for 0.3 s, then due for refresh until it expires at 3 s.
    let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
        .with_expiry_policy(refresh_early());
    let first = source.access_token().await.unwrap();
    assert_eq!(
        source.access_token().await.unwrap().expose_secret(),
        first.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    // Due: the valid token is served while one refresh replaces it aside.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let served = source.access_token().await.unwrap();
    assert_eq!(served.expose_secret(), first.expose_secret());
    let second = token_after(&source, &first).await;
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // Due again, and the refresh fails: the still-valid token is served.
    tokio::time::sleep(Duration::from_millis(400)).await;
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        3,
        Fault::Status {
            status: 500,
            retry_after: None,
        },
    );
    let third = source.access_token().await.unwrap();
    assert_eq!(third.expose_secret(), second.expose_secret());
    eventually("the refresh to be retried to its budget", || {
        mock.requests(Endpoint::TrueLayerToken) >= 5
    })
    .await;
    // After the failure (backing off for a second), callers keep the valid token without
    // asking again.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(300) {
        let again = source.access_token().await.unwrap();
        assert_eq!(again.expose_secret(), second.expose_secret());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        5,
        "one refresh, retried to its budget, then backing off"
    );
}

#[tokio::test]
async fn callers_holding_a_valid_token_never_wait_on_an_early_refresh() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(3), Duration::from_secs(3));
    // A total timeout above the server's delay, so that the refresh is slow, not retried.
    let client = truelayer_with(
        &mock,
        Timeouts {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(10),
        },
    );
    let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
        .with_expiry_policy(refresh_early());
    let first = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Due for refresh, and the server takes 2 s to answer the refresh.
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let served = source.access_token().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} on the refresh",
        started.elapsed()
    );
    assert_eq!(served.expose_secret(), first.expose_secret());
    // Meanwhile every caller is served at once, and nobody starts a second refresh.
    let again = Instant::now();
    assert_eq!(
        source.access_token().await.unwrap().expose_secret(),
        first.expose_secret()
    );
    assert!(again.elapsed() < Duration::from_secs(1));

    // Later calls get the new token.
    let second = token_after(&source, &first).await;
    assert_ne!(second.expose_secret(), first.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[tokio::test]
async fn one_deadline_bounds_the_whole_fetch() {
    let mock = MockServer::start();
    // Each attempt may take 30 s; the manager's deadline is 1 s for everything.
    let client = truelayer_with(
        &mock,
        Timeouts {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(30),
        },
    );
    let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
        .with_options(ManagerOptions {
            deadline: Duration::from_secs(1),
            ..ManagerOptions::default()
        })
        .unwrap();
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        10,
        Fault::Delay(Duration::from_secs(3)),
    );
    let started = Instant::now();
    let error = source.access_token().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&error, Error::Timeout(t) if t.phase == TimeoutPhase::Deadline),
        "{error:?}"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test]
async fn out_of_bounds_options_are_refused() {
    let mock = MockServer::start();
    let source = || TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
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
        ManagerOptions {
            deadline: Duration::from_secs(1),
            lease_poll: Duration::from_secs(2),
            ..ManagerOptions::default()
        },
    ] {
        assert!(
            matches!(source().with_options(options), Err(Error::InvalidInput(_))),
            "{options:?}"
        );
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_callers_make_one_token_request() {
    let mock = MockServer::start();
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.access_token().await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        tokens.insert(task.await.unwrap().unwrap().expose_secret().to_owned());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    // Cached afterwards.
    source.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(
        source.key().as_str(),
        format!(
            r#"["client_credentials","{}/connect/token","{}","client_secret_json","payments"]"#,
            mock.base_url(),
            obauth_mock::TRUELAYER_CLIENT_ID
        )
    );
    assert!(
        source
            .remaining()
            .is_some_and(|left| left > Duration::ZERO && left <= Duration::from_secs(3600))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_sharing_a_store_make_one_token_request() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(MemoryStore::new());
    let source = || {
        TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]))
            .with_store(store.clone())
    };
    let (a, b) = (source(), source());
    assert_eq!(a.key(), b.key());
    // Cold and at the same time: one takes the store's lease and fetches, the other waits
    // for the record.
    let (from_a, from_b) = tokio::join!(a.access_token(), b.access_token());
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(from_a.expose_secret(), from_b.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    // A source that starts later reads the token from the store.
    let c = source();
    assert_eq!(
        c.access_token().await.unwrap().expose_secret(),
        from_a.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    // Another scope is another key: not shared.
    let other = TokenSource::truelayer(client.clone(), Scopes::from([Scope::Info]))
        .with_store(store.clone());
    assert_ne!(other.key(), a.key());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_fetch_reaches_every_waiter_and_is_not_cached() {
    let mock = MockServer::start();
    let client = worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET);
    let source = TokenSource::worldline(client, Scopes::from([worldline::Scope::Vop]));
    mock.inject(
        None,
        3,
        Fault::Status {
            status: 500,
            retry_after: None,
        },
    );
    let results = futures_join(&source, 20).await;
    assert!(results.iter().all(|r| matches!(r, Err(Error::Api(_)))));
    assert_eq!(
        mock.requests(Endpoint::WorldlineToken),
        3,
        "one fetch, retried to its budget"
    );
    let token = source.access_token().await.unwrap();
    assert!(token.expose_secret().starts_with("wl-at-"));
    assert_eq!(mock.requests(Endpoint::WorldlineToken), 4);
}

#[tokio::test]
async fn expired_tokens_are_fetched_again() {
    let mock = MockServer::start();
    mock.set_access_token_lifetime(Duration::from_secs(0), Duration::from_secs(0));
    let source = TokenSource::worldline(
        worldline_secret(&mock, obauth_mock::WORLDLINE_CLIENT_SECRET),
        Scopes::from([worldline::Scope::Vop]),
    );
    let a = source.access_token().await.unwrap();
    let b = source.access_token().await.unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(mock.requests(Endpoint::WorldlineToken), 2);
}

#[tokio::test]
async fn invalidating_an_application_token_names_it_and_a_late_report_changes_nothing() {
    let mock = MockServer::start();
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
    let a = source.access_token().await.unwrap();
    source.invalidate(&a);
    let b = source.access_token().await.unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // Another caller that was still using A reports it late: B stays cached.
    source.invalidate(&a);
    assert!(source.remaining().is_some(), "B was dropped from the cache");
    assert_eq!(
        source.access_token().await.unwrap().expose_secret(),
        b.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // Reporting B itself does fetch a new one.
    source.invalidate(&b);
    let c = source.access_token().await.unwrap();
    assert_ne!(c.expose_secret(), b.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);
}

#[tokio::test]
async fn a_cold_fetch_whose_caller_gives_up_serves_the_next_caller() {
    let mock = MockServer::start();
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_millis(300)),
    );
    let gave_up = tokio::time::timeout(Duration::from_millis(50), source.access_token()).await;
    assert!(gave_up.is_err());
    source.access_token().await.unwrap();
    source.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

#[test]
fn a_fetch_task_dropped_before_its_first_poll_does_not_wedge_the_source() {
    let mock = MockServer::start();
    let source = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]));
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    doomed.block_on(async {
        // One poll: the caller leads the fetch, spawns its task and waits for it. `block_on`
        // returns at once, so the task is never run.
        let mut call = pin!(source.access_token());
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    });
    // Shutting the runtime down drops the unpolled task.
    drop(doomed);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(5), source.access_token()).await
        })
        .expect("the source is wedged by the dropped fetch")
        .unwrap();
    assert!(token.expose_secret().starts_with("tl-at-"));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

/// Runs `future` to completion on this thread, with no runtime at all: the waker unparks
/// the thread. Panics if it takes longer than `limit`.
fn block_on<F: Future>(future: F, limit: Duration) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the future did not finish in time");
        std::thread::park_timeout(left);
    }
}

/// A transport with canned answers, one per call, that counts the calls.
struct Scripted {
    answers: Mutex<std::collections::VecDeque<(u16, &'static str)>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = (u16, &'static str)>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into_iter().collect()),
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HttpTransport for Scripted {
    async fn send(&self, _request: OutgoingRequest) -> Result<http::Response<Vec<u8>>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (status, body) = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("more calls than scripted answers");
        Ok(http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap())
    }
}

const BUSY: (u16, &str) = (503, r#"{"error":"temporarily_unavailable"}"#);
const TOKEN: (u16, &str) = (
    200,
    r#"{"access_token":"a","expires_in":60,"token_type":"Bearer"}"#,
);

#[test]
fn retries_work_outside_a_tokio_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let nowhere = "http://127.0.0.1:1";

    let transport = Scripted::new([BUSY, TOKEN]);
    let client = truelayer_over(nowhere, transport.clone());
    let token = block_on(
        client.client_credentials(Scopes::from([Scope::Payments])),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(token.access_token.expose_secret(), "a");
    assert_eq!(transport.calls(), 2);

    // A token manager's fetch, outside a runtime, runs in the caller's future.
    let transport = Scripted::new([BUSY, TOKEN]);
    let source = TokenSource::truelayer(
        truelayer_over(nowhere, transport.clone()),
        Scopes::from([Scope::Payments]),
    );
    let token = block_on(source.access_token(), Duration::from_secs(5)).unwrap();
    assert_eq!(token.expose_secret(), "a");
    assert_eq!(transport.calls(), 2);
    let cached = block_on(source.access_token(), Duration::from_secs(5)).unwrap();
    assert_eq!(cached.expose_secret(), "a");
    assert_eq!(transport.calls(), 2);
}

// ---------------------------------------------------------------------------------------
// User tokens.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_saved_connection_is_opened_from_the_store_and_an_unsaved_one_is_not_found() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(MemoryStore::new());

    let unsaved = UserTokens::open(&client, "alice", store.clone()).unwrap();
    match unsaved.access_token().await {
        Err(Error::Store(error)) => assert_eq!(error.kind(), StoreErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert!(unsaved.refresh_token().is_none());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);

    let requested_at = SystemTime::now();
    let token = connect(&client, &mock).await;
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1, "the exchange");
    let tokens =
        UserTokens::from_token_response(&client, "alice", &token, requested_at, store.clone())
            .await
            .unwrap();
    // Written before it returned.
    let stored = store.load(tokens.key()).unwrap().unwrap().record;
    assert_eq!(
        stored.access_token.as_ref().map(AccessToken::expose_secret),
        Some(token.access_token.expose_secret())
    );
    assert_eq!(
        stored
            .refresh_token
            .as_ref()
            .map(RefreshToken::expose_secret),
        token
            .refresh_token
            .as_ref()
            .map(RefreshToken::expose_secret)
    );
    assert_eq!(stored.obtained_at, requested_at);
    assert_eq!(stored.expires_in, token.expires_in);
    assert_eq!(tokens.key().connection(), Some("alice"));

    // Opened again (another process, a restart): served from the store, no request.
    let reopened = UserTokens::open(&client, "alice", store.clone()).unwrap();
    assert_eq!(reopened.key(), tokens.key());
    assert_eq!(
        reopened.access_token().await.unwrap().expose_secret(),
        token.access_token.expose_secret()
    );
    assert_eq!(
        reopened
            .refresh_token()
            .as_ref()
            .map(RefreshToken::expose_secret),
        token
            .refresh_token
            .as_ref()
            .map(RefreshToken::expose_secret)
    );
    assert!(reopened.remaining().is_some());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    // Another name is another connection.
    let bob = UserTokens::open(&client, "bob", store.clone()).unwrap();
    assert!(matches!(
        bob.access_token().await,
        Err(Error::Store(error)) if error.kind() == StoreErrorKind::NotFound
    ));
    assert!(matches!(
        UserTokens::open(&client, "", store.clone()),
        Err(Error::InvalidInput(_))
    ));
    // A token without a refresh token (no `offline_access`) cannot be kept.
    let mut no_refresh = token.clone();
    no_refresh.refresh_token = None;
    assert!(matches!(
        UserTokens::from_token_response(&client, "carol", &no_refresh, requested_at, store.clone())
            .await,
        Err(Error::InvalidInput(_))
    ));
    let carol = UserTokens::open(&client, "carol", store).unwrap();
    assert!(matches!(
        carol.access_token().await,
        Err(Error::Store(error)) if error.kind() == StoreErrorKind::NotFound
    ));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

#[tokio::test]
async fn invalidating_a_user_token_names_it_and_a_late_report_does_not_rotate_again() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(TestStore::inline());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.unwrap(),
        store.clone(),
    )
    .unwrap();
    let a = tokens.access_token().await.unwrap();
    let b = tokens.refresh_now().await.unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    let requests = mock.requests(Endpoint::TrueLayerToken);
    assert_eq!(requests, 3, "exchange + two refreshes");
    let refresh_token = tokens.refresh_token().unwrap();

    // A caller that was still using A reports it refused: B stays cached, nothing rotates.
    tokens.invalidate(&a);
    assert!(tokens.remaining().is_some(), "B was dropped from the cache");
    assert_eq!(
        tokens.access_token().await.unwrap().expose_secret(),
        b.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests);
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        refresh_token.expose_secret()
    );
    assert_eq!(store.saved_refresh_tokens().len(), 2);

    // Reporting B refreshes.
    tokens.invalidate(&b);
    let c = tokens.access_token().await.unwrap();
    assert_ne!(c.expose_secret(), b.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 1);
    client.create_debug_id(c).await.unwrap();
}

#[tokio::test]
async fn a_refused_write_keeps_the_rotated_token_and_the_next_call_writes_it_without_refreshing() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(TestStore::new());
    store.refuse_next(1);
    let original = token.refresh_token.clone().unwrap();
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();

    // The store refuses: no access token is handed out, and the rotated refresh token
    // is kept in memory rather than lost.
    let error = tokens.access_token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Store(store) if store.kind() == StoreErrorKind::Unavailable),
        "{error:?}"
    );
    assert!(store.saved_refresh_tokens().is_empty());
    let kept = tokens.refresh_token().unwrap();
    assert_ne!(kept.expose_secret(), original.expose_secret());
    let requests = mock.requests(Endpoint::TrueLayerToken);

    // Next call: writes the kept tokens first, then serves the access token obtained with
    // them, without another refresh.
    let access = tokens.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests);
    assert_eq!(
        store.saved_refresh_tokens(),
        [kept.expose_secret().to_owned()]
    );
    let stored = store.record(tokens.key()).unwrap();
    assert_eq!(
        stored.access_token.as_ref().map(AccessToken::expose_secret),
        Some(access.expose_secret())
    );
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        kept.expose_secret()
    );
    // The access token works.
    client.create_debug_id(access).await.unwrap();
}

/// Forwards to the mock, but takes `expires_in` out of the first successful refresh answer:
/// a 200 whose access token cannot be used, though its rotated refresh token can.
struct DropsExpiresIn {
    inner: ReqwestTransport,
    armed: AtomicBool,
    /// The rotated refresh token of the altered answer.
    rotated: Mutex<Option<String>>,
}

/// The string value of the member `name` of a compact JSON object.
fn json_string(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let length = body[start..].find('"')?;
    Some(body[start..start + length].to_owned())
}

/// A compact JSON object without its member `name`, whose value is a number.
fn without_member(body: &str, name: &str) -> String {
    let start = body.find(&format!("\"{name}\":")).unwrap();
    let end = start + body[start..].find([',', '}']).unwrap();
    if body.as_bytes()[end] == b',' {
        format!("{}{}", &body[..start], &body[end + 1..])
    } else {
        let comma = body[..start].rfind(',').unwrap();
        format!("{}{}", &body[..comma], &body[end..])
    }
}

#[async_trait]
impl HttpTransport for DropsExpiresIn {
    async fn send(&self, request: OutgoingRequest) -> Result<http::Response<Vec<u8>>, Error> {
        let refresh =
            String::from_utf8_lossy(request.body()).contains(r#""grant_type":"refresh_token""#);
        let mut response = self.inner.send(request).await?;
        if refresh && response.status().is_success() && self.armed.swap(false, Ordering::SeqCst) {
            let body = String::from_utf8(response.body().clone()).unwrap();
            *self.rotated.lock().unwrap() = json_string(&body, "refresh_token");
            let altered = without_member(&body, "expires_in");
            assert!(!altered.contains("expires_in") && altered.contains("access_token"));
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
            *response.body_mut() = altered.into_bytes();
        }
        Ok(response)
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_malformed_200() {
    let mock = MockServer::start();
    let transport = Arc::new(DropsExpiresIn {
        inner: ReqwestTransport::new(Timeouts::default()).unwrap(),
        armed: AtomicBool::new(true),
        rotated: Mutex::new(None),
    });
    let client = truelayer_over(&mock.base_url(), transport.clone());
    let token = connect(&client, &mock).await;
    let original = token.refresh_token.unwrap();
    let store = Arc::new(MemoryStore::new());
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();

    // The server rotated the refresh token, but its answer has no `expires_in`.
    let error = tokens.access_token().await.unwrap_err();
    assert!(matches!(error, Error::UnexpectedResponse(_)), "{error:?}");
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        2,
        "exchange + one refresh"
    );
    let rotated = transport
        .rotated
        .lock()
        .unwrap()
        .clone()
        .expect("the refresh answer was altered");
    assert_ne!(rotated, original.expose_secret());
    // The store holds the rotated token (and no access token).
    let stored = store.load(tokens.key()).unwrap().unwrap().record;
    assert_eq!(
        stored
            .refresh_token
            .as_ref()
            .map(RefreshToken::expose_secret),
        Some(rotated.as_str())
    );
    assert!(stored.access_token.is_none());
    assert_eq!(tokens.refresh_token().unwrap().expose_secret(), rotated);

    // The next call refreshes with it, and the mock takes it (it refuses spent ones).
    let access = tokens.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);
    let stored = store.load(tokens.key()).unwrap().unwrap().record;
    assert_ne!(
        stored
            .refresh_token
            .as_ref()
            .map(RefreshToken::expose_secret),
        Some(rotated.as_str())
    );
    client.create_debug_id(access).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_sees_the_new_access_token_until_the_store_has_the_refresh_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(TestStore::new().gated());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.unwrap(),
        store.clone(),
    )
    .unwrap();
    let first = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.access_token().await }
    });
    let second = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.access_token().await }
    });
    // The refresh has happened on the server; the store holds the write at its gate.
    eventually("the write to reach the gate", || {
        store.waiting_at_gate() == 1
    })
    .await;
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        2,
        "exchange + one refresh"
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "nobody has the access token yet"
    );
    assert!(store.saved_refresh_tokens().is_empty());
    store.open_gate();
    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(
        store.saved_refresh_tokens(),
        [tokens.refresh_token().unwrap().expose_secret().to_owned()]
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_connection_make_one_call() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    mock.reset_counts();
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.unwrap(),
        store.clone(),
    )
    .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.access_token().await });
    }
    while let Some(result) = set.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(store.saved_refresh_tokens().len(), 1);
}

#[tokio::test]
async fn a_refused_refresh_token_asks_for_reauthentication() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let refresh = token.refresh_token.unwrap();
    client.refresh(refresh.clone()).await.unwrap(); // spends it
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(&client, "alice", refresh.clone(), store.clone()).unwrap();
    let requests = mock.requests(Endpoint::TrueLayerToken);
    for _ in 0..2 {
        match tokens.access_token().await.unwrap_err() {
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
    // Asked once: a refresh token refused is not presented again.
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 1);
    assert!(store.saved_refresh_tokens().is_empty());
}

#[tokio::test]
async fn a_refresh_whose_caller_gives_up_still_finishes_and_is_not_repeated() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let connection = connect(&client, &mock).await;
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(
        &client,
        "alice",
        connection.refresh_token.clone().unwrap(),
        store.clone(),
    )
    .unwrap();
    let before = mock.requests(Endpoint::TrueLayerToken);

    // The server takes 300 ms; the caller gives up after 50 ms, mid-refresh.
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        Fault::Delay(Duration::from_millis(300)),
    );
    let gave_up = tokio::time::timeout(Duration::from_millis(50), tokens.access_token()).await;
    assert!(gave_up.is_err(), "the caller should have timed out");

    // The refresh went on without it: the next caller gets its result (no second refresh
    // with the spent token, no false ReauthenticationRequired), and the rotated refresh
    // token was written once.
    let access = tokens.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken) - before, 1);
    assert_eq!(
        store.saved_refresh_tokens(),
        [tokens.refresh_token().unwrap().expose_secret().to_owned()]
    );
    client.create_debug_id(access).await.unwrap();
}

/// A store whose first write panics: every waiter gets an error (none hangs), the rotated
/// token is kept, and the next call writes it without refreshing again.
async fn a_panicking_store(store: TestStore, expected: fn(&Error) -> bool) {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let connection = connect(&client, &mock).await;
    let original = connection.refresh_token.clone().unwrap();
    let store = Arc::new(store);
    store.panic_next(1);
    let tokens = UserTokens::new(&client, "alice", original.clone(), store.clone()).unwrap();
    let callers = futures_join_user(&tokens, 5);
    let results = tokio::time::timeout(Duration::from_secs(5), callers)
        .await
        .expect("the waiters must not hang");
    for result in results {
        assert!(result.as_ref().is_err_and(expected), "{result:?}");
    }
    let requests = mock.requests(Endpoint::TrueLayerToken);
    assert_eq!(requests, 2, "exchange + one refresh");
    // The rotated token was kept in memory before the store was called.
    let kept = tokens.refresh_token().unwrap();
    assert_ne!(kept.expose_secret(), original.expose_secret());

    // The store works again: the kept tokens are written, and the access token obtained
    // with them served, without another refresh.
    let access = tokio::time::timeout(Duration::from_secs(5), tokens.access_token())
        .await
        .expect("the next call must not hang")
        .unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests);
    assert_eq!(
        store.saved_refresh_tokens(),
        [kept.expose_secret().to_owned()]
    );
    client.create_debug_id(access).await.unwrap();
}

#[tokio::test]
async fn a_store_that_panics_on_the_blocking_pool_fails_the_waiters_with_a_store_error() {
    a_panicking_store(
        TestStore::new(),
        |error| matches!(error, Error::Store(store) if store.kind() == StoreErrorKind::Other),
    )
    .await;
}

#[tokio::test]
async fn a_store_that_panics_in_place_fails_the_waiters_instead_of_hanging_them() {
    a_panicking_store(TestStore::inline(), |error| {
        matches!(error, Error::Transport(_))
    })
    .await;
}

#[tokio::test]
async fn refresh_now_refreshes_even_before_anything_is_cached() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let store = Arc::new(MemoryStore::new());
    let requested_at = SystemTime::now();
    let token = connect(&client, &mock).await;
    UserTokens::from_token_response(&client, "alice", &token, requested_at, store.clone())
        .await
        .unwrap();
    let requests = mock.requests(Endpoint::TrueLayerToken);

    // Opened in another process (or after a restart): "refreshes now, even if the cached
    // access token is fresh, and returns the new access token".
    let reopened = UserTokens::open(&client, "alice", store).unwrap();
    let refreshed = reopened.refresh_now().await.unwrap();
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        requests + 1,
        "refresh_now() did not refresh"
    );
    assert_ne!(
        refreshed.expose_secret(),
        token.access_token.expose_secret()
    );
}

#[tokio::test]
async fn with_options_keeps_a_rotated_token_the_store_has_not_accepted() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.unwrap(),
        store.clone(),
    )
    .unwrap();
    let first = tokens.access_token().await.unwrap(); // written: the store's record
    store.refuse_next(1);
    assert!(matches!(tokens.refresh_now().await, Err(Error::Store(_))));
    let kept = tokens.refresh_token().unwrap();
    let requests = mock.requests(Endpoint::TrueLayerToken);

    let tokens = tokens.with_options(ManagerOptions::default()).unwrap();
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        kept.expose_secret()
    );
    // As after any refused write: the kept tokens are written first, and the access token
    // obtained with them is served, without another refresh.
    let access = tokens.access_token().await.unwrap();
    assert_eq!(
        store.saved_refresh_tokens().last().map(String::as_str),
        Some(kept.expose_secret()),
        "the rotated refresh token never reached the store"
    );
    assert_ne!(access.expose_secret(), first.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests);
    // And the connection still refreshes.
    tokens.refresh_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_of_one_connection_refresh_once_and_never_present_a_spent_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(MemoryStore::new());
    // Two processes' managers of one connection that the store knows only by its refresh
    // token: both must refresh, and the mock refuses a refresh token presented twice.
    let (one, two) = (
        UserTokens::open(&client, "alice", store.clone()).unwrap(),
        UserTokens::open(&client, "alice", store.clone()).unwrap(),
    );
    let written = store
        .compare_and_swap(
            one.key(),
            Expect::Absent,
            &TokenRecord {
                access_token: None,
                obtained_at: SystemTime::now(),
                expires_in: 0,
                refresh_token: token.refresh_token.clone(),
            },
        )
        .unwrap();
    assert_eq!(written, Cas::Written(1));
    let requests = mock.requests(Endpoint::TrueLayerToken);

    let (from_one, from_two) = tokio::join!(one.access_token(), two.access_token());
    let (from_one, from_two) = (from_one.unwrap(), from_two.unwrap());
    assert_eq!(from_one.expose_secret(), from_two.expose_secret());
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 1);
    assert_eq!(
        one.refresh_token()
            .as_ref()
            .map(RefreshToken::expose_secret),
        two.refresh_token()
            .as_ref()
            .map(RefreshToken::expose_secret)
    );
    client.create_debug_id(from_one).await.unwrap();
}

#[tokio::test]
async fn a_failing_store_stops_a_user_refresh_but_not_an_application_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let requests = mock.requests(Endpoint::TrueLayerToken);

    // A user's refresh token lives in the store: without it, nothing is refreshed (the one
    // in memory may have been spent by another process).
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.clone().unwrap(),
        store.clone(),
    )
    .unwrap();
    store.fail_loads(1);
    let error = tokens.access_token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Store(store) if store.kind() == StoreErrorKind::Unavailable),
        "{error:?}"
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests);
    // Once the store answers, it refreshes.
    tokens.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 1);

    // Any process may fetch an application token: a failing store only costs the sharing.
    let store = Arc::new(TestStore::new());
    let source = TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]))
        .with_store(store.clone());
    store.fail_loads(1);
    let served = source.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 2);
    assert_eq!(
        source.access_token().await.unwrap().expose_secret(),
        served.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), requests + 2);
}

// ---------------------------------------------------------------------------------------
// Library bugs found while writing these tests: each test states the documented behaviour
// and is ignored until the library is fixed.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_forced_refresh_whose_write_was_refused_is_not_repeated_by_the_next_call() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(TestStore::new());
    let tokens = UserTokens::new(
        &client,
        "alice",
        token.refresh_token.unwrap(),
        store.clone(),
    )
    .unwrap();
    tokens.access_token().await.unwrap();

    // The forced refresh happens on the server; its write is refused.
    store.refuse_next(1);
    assert!(matches!(tokens.refresh_now().await, Err(Error::Store(_))));
    let kept = tokens.refresh_token().unwrap();
    let requests = mock.requests(Endpoint::TrueLayerToken);

    // As after any refused write: the next call writes the kept tokens, then serves the
    // access token obtained with them, without another refresh.
    let access = tokens.access_token().await.unwrap();
    assert!(
        store
            .saved_refresh_tokens()
            .contains(&kept.expose_secret().to_owned()),
        "the kept refresh token was never written"
    );
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        requests,
        "the next call refreshed again"
    );
    assert_eq!(
        store.saved_refresh_tokens().last().map(String::as_str),
        Some(kept.expose_secret())
    );
    assert_eq!(
        tokens.refresh_token().unwrap().expose_secret(),
        kept.expose_secret()
    );
    client.create_debug_id(access).await.unwrap();
}

/// A store with an async face: a memory store behind async methods, noting the thread each
/// call ran on and what it was asked.
#[derive(Default)]
struct AsyncMemory {
    inner: MemoryStore,
    threads: Mutex<Vec<std::thread::ThreadId>>,
    calls: Mutex<Vec<&'static str>>,
}

impl AsyncMemory {
    fn note(&self, call: &'static str) {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl obauth_async::AsyncTokenStore for AsyncMemory {
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.note("load");
        tokio::task::yield_now().await;
        TokenStore::load(&self.inner, key)
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.note("cas");
        TokenStore::compare_and_swap(&self.inner, key, expect, record)
    }

    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.note("lease");
        TokenStore::try_lease(&self.inner, key, holder, ttl, now)
    }

    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.note("release");
        TokenStore::release(&self.inner, key, holder)
    }
}

#[test]
fn an_async_store_is_awaited_in_place_and_shared_by_its_managers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mock = MockServer::start();
        let store = Arc::new(AsyncMemory::default());
        let handle = obauth_async::Store::from_async(store.clone());
        let first = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]))
            .with_store(handle.clone());
        let token = first.access_token().await.unwrap();
        assert_eq!(
            *store.calls.lock().unwrap(),
            ["load", "load", "lease", "load", "cas", "release"],
            "read, read under the key's previous name (once per manager), lease, read again \
             under the lease, write, give the lease back"
        );
        // Awaited on the caller's runtime thread, not on the blocking pool.
        let here = std::thread::current().id();
        assert!(store.threads.lock().unwrap().iter().all(|id| *id == here));
        // A second manager on the same store adopts the token: no second request.
        let second = TokenSource::truelayer(truelayer(&mock), Scopes::from([Scope::Payments]))
            .with_store(handle);
        assert_eq!(
            second.access_token().await.unwrap().expose_secret(),
            token.expose_secret()
        );
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    });
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

#[tokio::test]
async fn a_server_quoting_the_request_gets_none_of_its_secrets_into_an_error() {
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
                let error = $call.await.unwrap_err();
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

/// A transport that logs what it is handed with `{:?}`, then sends it.
struct Logging {
    inner: ReqwestTransport,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl HttpTransport for Logging {
    async fn send(&self, request: OutgoingRequest) -> Result<http::Response<Vec<u8>>, Error> {
        self.log.lock().unwrap().push(format!("{request:?}"));
        self.inner.send(request).await
    }
}

#[tokio::test]
async fn a_transport_that_logs_its_requests_logs_no_secret() {
    let mock = MockServer::start();
    let logging = Arc::new(Logging {
        inner: ReqwestTransport::new(Timeouts::default()).unwrap(),
        log: Mutex::new(Vec::new()),
    });
    let client = truelayer_over(&mock.base_url(), logging.clone());
    client
        .client_credentials(Scopes::from([Scope::Payments]))
        .await
        .unwrap();
    let error = client
        .delete_credential(AccessToken::new("Logged-Access-Token"))
        .await
        .unwrap_err();
    assert!(error.status().is_some(), "{error}");
    let log = logging.log.lock().unwrap().join("\n");
    assert!(
        log.contains("POST") && log.contains("/connect/token"),
        "{log}"
    );
    assert!(log.contains("\"authorization\": [redacted]"), "{log}");
    for secret in [obauth_mock::TRUELAYER_CLIENT_SECRET, "Logged-Access-Token"] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[tokio::test]
async fn hostile_servers_get_typed_errors_in_time_and_no_redirect_is_followed() {
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
            .await
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

#[tokio::test]
async fn a_connection_saved_under_the_old_key_name_is_still_found_and_moved() {
    // obauth 0.1 named TrueLayer's client authentication `client_secret_post` in store
    // keys; a connection saved then must keep working after the rename.
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let response = connect(&client, &mock).await;
    mock.reset_counts();
    let store = Arc::new(MemoryStore::new());
    let old_key = StoreKey::user(
        &client.config().token_url().to_string(),
        obauth_mock::TRUELAYER_CLIENT_ID,
        "client_secret_post",
        &obauth_async::core::store::ConnectionName::new("alice").unwrap(),
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
    let fresh = user.access_token().await.unwrap();
    // Refreshed with the saved token: one request, no re-authentication.
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_ne!(fresh.expose_secret(), response.access_token.expose_secret());
    let moved = store.load(user.key()).unwrap().unwrap().record;
    let rotated = moved.refresh_token.unwrap();
    assert_ne!(rotated.expose_secret(), saved.expose_secret());
    assert_eq!(
        moved.access_token.unwrap().expose_secret(),
        fresh.expose_secret()
    );
}
