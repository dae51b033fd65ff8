//! Every operation end to end through obauth-async against obauth-mock over real HTTP,
//! with the error paths, injected faults and the token managers.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use obauth_async::core::pkce::Pkce;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::truelayer::Environment;
use obauth_async::core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_async::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_async::core::worldline::WorldlineAuth;
use obauth_async::core::worldline::assertion::{AssertionConfig, RsaKeySigner, SigningCertificate};
use obauth_async::core::{BaseUrl, OsRandom, StoreError, TimeoutPhase, TransportErrorKind, random};
use obauth_async::types::truelayer::providers::ProvidersQuery;
use obauth_async::types::truelayer::{Country, Scope};
use obauth_async::types::{AccessToken, ClientSecret, ErrorCode, RefreshToken, Scopes, worldline};
use obauth_async::{
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
    let deleted = client
        .delete_debug_id(token.access_token.clone())
        .await
        .unwrap();
    assert_eq!(deleted.debug_id, debug.debug_id);
    let none_left = client
        .delete_debug_id(token.access_token.clone())
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
    good.token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap();
    good.token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap();
    let error = client(&identity.private_key_pem, Some("https://elsewhere.example"))
        .token(Scopes::from([worldline::Scope::Vop]))
        .await
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    // The right kid but another key: the signature does not verify.
    let impostor = SigningIdentity::generate().unwrap();
    let error = client(&impostor.private_key_pem, None)
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
    let started = Instant::now();
    client.providers(ProvidersQuery::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(mock.requests(Endpoint::Providers), 2);

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
async fn a_token_due_for_refresh_is_refreshed_once_and_kept_if_that_fails() {
    use obauth_async::core::expiry::ExpiryPolicy;
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
    let first = source.access_token().await.unwrap();
    assert_eq!(
        source.access_token().await.unwrap().expose_secret(),
        first.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = source.access_token().await.unwrap();
    assert_ne!(
        second.expose_secret(),
        first.expose_secret(),
        "refreshed while still valid"
    );
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
    assert_eq!(
        mock.requests(Endpoint::TrueLayerToken),
        5,
        "one refresh, retried to its budget"
    );
    // Right after the failure, callers keep the valid token without asking again.
    for _ in 0..10 {
        let again = source.access_token().await.unwrap();
        assert_eq!(again.expose_secret(), second.expose_secret());
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 5, "backing off");
}

#[tokio::test]
async fn non_retryable_faults_give_typed_errors_and_nothing_hangs() {
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
    let error = client.client_credentials(scopes()).await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(t) if t.phase == TimeoutPhase::Total),
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
    assert_eq!(source.key().scopes, "payments");
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

/// Records saves, and can refuse the first one.
struct Recorder {
    saved: Mutex<Vec<String>>,
    events: Arc<Mutex<Vec<String>>>,
    refuse_first: Mutex<bool>,
}

#[async_trait]
impl RefreshTokenStore for Recorder {
    async fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
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

#[tokio::test]
async fn a_refused_save_keeps_the_rotated_token_and_hands_out_nothing() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
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
    let error = tokens.access_token().await.unwrap_err();
    assert!(matches!(error, Error::Store(_)), "{error:?}");
    assert!(store.saved.lock().unwrap().is_empty());
    let kept = tokens.refresh_token();
    assert_ne!(kept.expose_secret(), original.expose_secret());

    // Next call: saves the kept token first, then refreshes with it and saves the new one.
    let access = tokens.access_token().await.unwrap();
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
    client.create_debug_id(access).await.unwrap();
}

/// A store whose `save` waits until the test opens the gate.
struct GatedStore {
    gate: tokio::sync::Semaphore,
    saved: Mutex<Vec<String>>,
}

#[async_trait]
impl RefreshTokenStore for GatedStore {
    async fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| StoreError::new("closed"))?;
        self.saved
            .lock()
            .unwrap()
            .push(refresh_token.expose_secret().to_owned());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_sees_the_new_access_token_until_the_store_has_the_refresh_token() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let store = Arc::new(GatedStore {
        gate: tokio::sync::Semaphore::new(0),
        saved: Mutex::new(Vec::new()),
    });
    let tokens = UserTokens::new(client, token.refresh_token.unwrap(), store.clone());
    let first = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.access_token().await }
    });
    let second = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.access_token().await }
    });
    // The refresh has happened on the server; the store holds the gate shut.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    store.gate.add_permits(1);
    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(
        *store.saved.lock().unwrap(),
        [tokens.refresh_token().expose_secret().to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_connection_make_one_call() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    mock.reset_counts();
    let store = Arc::new(Recorder {
        saved: Mutex::new(Vec::new()),
        events: Arc::new(Mutex::new(Vec::new())),
        refuse_first: Mutex::new(false),
    });
    let tokens = UserTokens::new(client, token.refresh_token.unwrap(), store.clone());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.access_token().await });
    }
    while let Some(result) = set.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
    assert_eq!(store.saved.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_refresh_token_asks_for_reauthentication() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let token = connect(&client, &mock).await;
    let refresh = token.refresh_token.unwrap();
    client.refresh(refresh.clone()).await.unwrap(); // spends it
    let recorder = Arc::new(Recorder {
        saved: Mutex::new(Vec::new()),
        events: Arc::new(Mutex::new(Vec::new())),
        refuse_first: Mutex::new(false),
    });
    let tokens = UserTokens::new(client.clone(), refresh.clone(), recorder);
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

#[tokio::test]
async fn the_mock_refuses_replayed_expired_and_long_lived_assertions() {
    use obauth_async::core::{Operation, RequestContext};
    use obauth_async::{HttpTransport, ReqwestTransport};
    use std::time::SystemTime;

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
    op.parse_response(&transport.send(request).await.unwrap())
        .unwrap();
    let error = op
        .parse_response(&transport.send(replay).await.unwrap())
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
    assert!(error.to_string().contains("reuse"), "{error}");

    // Signed two minutes ago: expired.
    let old = signed(&default, SystemTime::now() - Duration::from_secs(120));
    let error = op
        .parse_response(&transport.send(old).await.unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("expired"), "{error}");

    // Valid for two minutes: over Keycloak's default maximum.
    let long = config(Duration::from_secs(120));
    let request = signed(&long, SystemTime::now());
    let error = op
        .parse_response(&transport.send(request).await.unwrap())
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
    use obauth_async::{HttpTransport, ReqwestTransport};
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
    let response = transport.send(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unbounded_or_zero_timeouts_are_refused() {
    use obauth_async::{HttpTransport, ReqwestTransport};
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
            matches!(transport.send(request).await, Err(Error::InvalidInput(_))),
            "{timeouts:?}"
        );
    }
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
}

/// Counts saves and checks each rotated token is saved once.
#[derive(Default)]
struct Saves(Mutex<Vec<String>>);

#[async_trait]
impl RefreshTokenStore for Saves {
    async fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .push(refresh_token.expose_secret().to_owned());
        Ok(())
    }
}

#[tokio::test]
async fn a_refresh_whose_caller_gives_up_still_finishes_and_is_not_repeated() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let connection = connect(&client, &mock).await;
    let store = Arc::new(Saves::default());
    let tokens = UserTokens::new(
        client.clone(),
        connection.refresh_token.clone().unwrap(),
        store.clone(),
    );
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
    // token was saved once.
    let access = tokens.access_token().await.unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken) - before, 1);
    let saved = store.0.lock().unwrap().clone();
    assert_eq!(saved, [tokens.refresh_token().expose_secret().to_owned()]);
    client.create_debug_id(access).await.unwrap();
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

/// A store that panics, as a buggy one might.
struct Panicking;

#[async_trait]
impl RefreshTokenStore for Panicking {
    async fn save(&self, _: &RefreshToken) -> Result<(), StoreError> {
        panic!("the store's bug (this panic is expected by the test)");
    }
}

#[tokio::test]
async fn a_panicking_store_fails_the_waiters_instead_of_hanging_them() {
    let mock = MockServer::start();
    let client = truelayer(&mock);
    let connection = connect(&client, &mock).await;
    let original = connection.refresh_token.clone().unwrap();
    let tokens = UserTokens::new(client, original.clone(), Arc::new(Panicking));
    let callers = futures_join_user(&tokens, 5);
    let results = tokio::time::timeout(Duration::from_secs(5), callers)
        .await
        .expect("the waiters must not hang");
    for result in results {
        assert!(matches!(result, Err(Error::Transport(_))), "{result:?}");
    }
    // The rotated token was kept in memory before the store was called.
    assert_ne!(
        tokens.refresh_token().expose_secret(),
        original.expose_secret()
    );
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
