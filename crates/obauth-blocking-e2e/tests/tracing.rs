//! What obauth-blocking tells `tracing`: a span per call with its fields, the token
//! managers' decisions, and never a secret, on success and on every error path (a server
//! that quotes the request back included).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::retry::RetryPolicy;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::parse_callback;
use obauth_blocking::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_blocking::core::worldline::WorldlineAuth;
use obauth_blocking::core::{BaseUrl, OsRandom, random};
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{AccessToken, ClientSecret, RefreshToken, Scopes, worldline};
use obauth_blocking::{MemoryStore, TokenSource, TrueLayerClient, UserTokens, WorldlineClient};
use obauth_mock::{Endpoint, Fault, MockServer};
use obauth_test_peers::TracingRecorder;

fn assert_no_secret(recorded: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !recorded.contains(secret),
            "{secret:?} reached tracing:\n{recorded}"
        );
    }
}

#[test]
fn calls_and_managers_are_traced_without_a_secret_on_success() {
    let recorder = TracingRecorder::default();
    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    let mut secrets: Vec<String> = vec![obauth_mock::TRUELAYER_CLIENT_SECRET.to_owned()];
    tracing::subscriber::with_default(recorder.clone(), || {
        let pkce = Pkce::generate(&mut OsRandom).unwrap();
        let state = random::new_state(&mut OsRandom).unwrap();
        let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
        let link = client
            .create_auth_link(
                AuthLink::new(
                    "ob-transferwise",
                    scopes,
                    obauth_mock::TRUELAYER_REDIRECT_URI,
                    "consent-1",
                )
                .state(&state)
                .pkce(&pkce),
            )
            .unwrap();
        let callback = parse_callback(&mock.approve(&link).unwrap(), &state).unwrap();
        secrets.push(callback.code.expose_secret().to_owned());
        secrets.push(pkce.verifier().expose_secret().to_owned());
        let requested_at = SystemTime::now();
        let tokens = client
            .exchange_code(
                callback.code,
                obauth_mock::TRUELAYER_REDIRECT_URI,
                Some(pkce.verifier().clone()),
            )
            .unwrap();
        secrets.push(tokens.access_token.expose_secret().to_owned());
        secrets.push(
            tokens
                .refresh_token
                .clone()
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
        let user = UserTokens::from_token_response(
            &client,
            "alice",
            &tokens,
            requested_at,
            Arc::new(MemoryStore::new()),
        )
        .unwrap();
        let refreshed = user.refresh_now().unwrap();
        secrets.push(refreshed.expose_secret().to_owned());
        secrets.push(user.refresh_token().unwrap().expose_secret().to_owned());
        let source = TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]));
        secrets.push(source.access_token().unwrap().expose_secret().to_owned());
        // Served from memory: a TRACE `hit`.
        assert_eq!(
            source.access_token().unwrap().expose_secret(),
            secrets.last().unwrap().as_str()
        );
        client.create_debug_id(refreshed.clone()).unwrap();
    });
    let recorded = recorder.text();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&recorded, &secrets);
    // Not vacuous: each call is a span with its fields, and the managers said what they did.
    for expected in [
        "span obauth.call operation=\"truelayer.auth_link.create\" server=\"truelayer\"",
        "operation=\"truelayer.token.exchange_code\"",
        "operation=\"truelayer.token.refresh\"",
        "operation=\"truelayer.token.client_credentials\"",
        "record attempts=1",
        "status=200",
        "outcome=\"ok\"",
        "decision=\"fetch\"",
        "decision=\"hit\"",
        "token manager: store write",
        "grant=\"refresh_token\"",
        "grant=\"client_credentials\"",
    ] {
        assert!(
            recorded.contains(expected),
            "no {expected:?} in:\n{recorded}"
        );
    }
}

#[test]
fn failed_calls_and_quoting_servers_leave_no_secret_in_tracing() {
    const CLIENT_SECRET: &str = "Cs-Trace-71";
    const REFRESH: &str = "Rt-Trace-72";
    const ACCESS: &str = "At-Trace-73";
    const WORLDLINE_SECRET: &str = "Wl-Trace-74";
    let recorder = TracingRecorder::default();
    let mock = MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        "trace-client",
    )
    .client_secret(ClientSecret::new(CLIENT_SECRET))
    .retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    })
    .build()
    .unwrap();
    let worldline = WorldlineClient::builder(
        BaseUrl::parse(&mock.worldline_base_url()).unwrap(),
        obauth_mock::WORLDLINE_REALM,
        "trace-client",
        WorldlineAuth::ClientSecret(ClientSecret::new(WORLDLINE_SECRET)),
    )
    .build()
    .unwrap();
    tracing::subscriber::with_default(recorder.clone(), || {
        for fault in [Fault::EchoRequest, Fault::EchoRequestPage] {
            mock.inject(None, 7, fault);
            assert!(
                client
                    .client_credentials(Scopes::from([Scope::Payments]))
                    .is_err()
            );
            assert!(client.refresh(RefreshToken::new(REFRESH)).is_err());
            assert!(
                client
                    .create_reauth_link(ReauthLink::new(
                        RefreshToken::new(REFRESH),
                        "https://app.example/cb"
                    ))
                    .is_err()
            );
            assert!(client.create_debug_id(AccessToken::new(ACCESS)).is_err());
            assert!(client.delete_credential(AccessToken::new(ACCESS)).is_err());
            assert!(
                worldline
                    .token(Scopes::from([worldline::Scope::Vop]))
                    .is_err()
            );
        }
        // A retried failure (503, then the echo) and a refused user refresh.
        mock.inject(
            Some(Endpoint::TrueLayerToken),
            1,
            Fault::Status {
                status: 503,
                retry_after: None,
            },
        );
        assert!(
            client
                .client_credentials(Scopes::from([Scope::Payments]))
                .is_err()
        );
        let user = UserTokens::new(
            &client,
            "bob",
            RefreshToken::new(REFRESH),
            Arc::new(MemoryStore::new()),
        );
        assert!(user.unwrap().access_token().is_err());
    });
    let recorded = recorder.text();
    assert_no_secret(
        &recorded,
        &[CLIENT_SECRET, REFRESH, ACCESS, WORLDLINE_SECRET],
    );
    for expected in [
        "outcome=\"api\"",
        "error_kind=",
        "obauth: retrying",
        "operation=\"worldline.token.client_credentials\"",
        "server=\"worldline\"",
        "obauth: token manager: fetch failed",
    ] {
        assert!(
            recorded.contains(expected),
            "no {expected:?} in:\n{recorded}"
        );
    }
}
