//! What obauth-async tells `tracing`: the call span (carried across `.await` with
//! `Instrument`), the token managers' decisions, and never a secret, on success and when a
//! server quotes the request back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use obauth_async::core::BaseUrl;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{AccessToken, ClientSecret, RefreshToken, Scopes};
use obauth_async::{MemoryStore, TokenSource, TrueLayerClient, UserTokens};
use obauth_mock::{Fault, MockServer};
use obauth_test_peers::TracingRecorder;

#[test]
fn async_calls_are_traced_in_their_span_without_a_secret() {
    const CLIENT_SECRET: &str = "Cs-Async-81";
    const REFRESH: &str = "Rt-Async-82";
    const ACCESS: &str = "At-Async-83";
    let recorder = TracingRecorder::default();
    let mock = MockServer::start();
    let good = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    let quoted = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        "trace-client",
    )
    .client_secret(ClientSecret::new(CLIENT_SECRET))
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    // One thread: the fetch tasks the managers spawn run where the subscriber is installed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issued = tracing::subscriber::with_default(recorder.clone(), || {
        runtime.block_on(async {
            let source = TokenSource::truelayer(good.clone(), Scopes::from([Scope::Payments]));
            let issued = source.access_token().await.unwrap();
            // Served from memory: a TRACE `hit`.
            let again = source.access_token().await.unwrap();
            assert_eq!(again.expose_secret(), issued.expose_secret());
            for fault in [Fault::EchoRequest, Fault::EchoRequestPage] {
                mock.inject(None, 4, fault);
                assert!(
                    quoted
                        .client_credentials(Scopes::from([Scope::Payments]))
                        .await
                        .is_err()
                );
                assert!(quoted.refresh(RefreshToken::new(REFRESH)).await.is_err());
                assert!(
                    quoted
                        .create_debug_id(AccessToken::new(ACCESS))
                        .await
                        .is_err()
                );
                assert!(
                    quoted
                        .delete_credential(AccessToken::new(ACCESS))
                        .await
                        .is_err()
                );
            }
            let user = UserTokens::new(
                &quoted,
                "bob",
                RefreshToken::new(REFRESH),
                Arc::new(MemoryStore::new()),
            )
            .unwrap();
            assert!(user.access_token().await.is_err());
            issued
        })
    });
    let recorded = recorder.text();
    for secret in [
        CLIENT_SECRET,
        REFRESH,
        ACCESS,
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        issued.expose_secret(),
    ] {
        assert!(
            !recorded.contains(secret),
            "{secret:?} reached tracing:\n{recorded}"
        );
    }
    for expected in [
        "span obauth.call operation=\"truelayer.token.client_credentials\" server=\"truelayer\"",
        "operation=\"truelayer.token.refresh\"",
        "operation=\"truelayer.debug.create\"",
        "record outcome=\"ok\"",
        "outcome=\"api\"",
        "decision=\"fetch\"",
        "decision=\"hit\"",
        "grant=\"client_credentials\"",
        "token manager: fetch failed",
    ] {
        assert!(
            recorded.contains(expected),
            "no {expected:?} in:\n{recorded}"
        );
    }
}
