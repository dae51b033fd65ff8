//! The bearer-token middleware of obauth-async (reqwest-middleware and tower) against
//! obauth-mock and a protected API on loopback that accepts only the mock's current tokens.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use obauth_async::bearer::{BearerLayer, BearerMiddleware};
use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{AccessToken, ClientSecret, Scopes};
use obauth_async::{TokenSource, TrueLayerClient};
use obauth_mock::{Endpoint, MockServer};
use obauth_test_peers::ProtectedResource;
use tower::{Layer, Service};

fn payments(mock: &MockServer) -> TokenSource {
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap();
    TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
}

fn setup() -> (Arc<MockServer>, ProtectedResource) {
    let mock = Arc::new(MockServer::start());
    let checker = Arc::clone(&mock);
    let api = ProtectedResource::start(move |token| checker.access_token_valid(token));
    (mock, api)
}

fn client(source: TokenSource) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_sets_the_header_and_replaces_a_revoked_token_once() {
    let (mock, api) = setup();
    let source = payments(&mock);
    let http = client(source.clone());
    let response = http.post(api.url("/pay")).body("one").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "one");
    let first = source.access_token().await.unwrap();
    assert_eq!(
        api.seen()[0].authorization,
        Some(format!("Bearer {}", first.expose_secret()))
    );
    assert!(mock.revoke_access_token(first.expose_secret()));

    let response = http.post(api.url("/pay")).body("two").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "two");
    let second = source.access_token().await.unwrap();
    assert_ne!(second.expose_secret(), first.expose_secret());
    let seen = api.seen();
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(
        seen[2].authorization,
        Some(format!("Bearer {}", second.expose_secret()))
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_retries_once_never_on_403_and_leaves_own_credentials() {
    let mock = Arc::new(MockServer::start());
    let refusing = ProtectedResource::start(|_| false);
    let http = client(payments(&mock));
    let response = http
        .post(refusing.url("/pay"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(refusing.requests(), 2);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // Both refused tokens were invalidated: the next request fetches a third. A 403 does
    // not invalidate it: the one after reuses it.
    for sent in [3, 4] {
        let response = http
            .post(refusing.url("/forbidden"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(refusing.requests(), sent);
        assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);
    }

    let own = http
        .get(refusing.url("/pay"))
        .header("authorization", "Basic c2VjcmV0")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 401);
    assert_eq!(
        refusing.seen()[4].authorization.as_deref(),
        Some("Basic c2VjcmV0")
    );
    // Our own credentials' 401 is not ours to judge: no token request, no retry.
    assert_eq!(refusing.requests(), 5);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);
}

/// A token provider of the application's own: serves "stale" until it is told that one
/// was refused, then "good", and notes what it was told.
#[derive(Default)]
struct OwnSource {
    refused: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl obauth_async::bearer::BearerSource for OwnSource {
    async fn bearer_token(&self) -> Result<AccessToken, obauth_async::Error> {
        let refused = self.refused.lock().unwrap();
        Ok(AccessToken::new(if refused.is_empty() {
            "stale"
        } else {
            "good"
        }))
    }

    fn refused(&self, token: &AccessToken) {
        self.refused
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_of_your_own_is_told_the_exact_token_refused() {
    let api = ProtectedResource::start(|token| token == "good");
    let source = Arc::new(OwnSource::default());
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(Arc::clone(&source)))
        .build();
    let response = http.post(api.url("/pay")).body("x").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(*source.refused.lock().unwrap(), ["stale"]);
    let sent: Vec<_> = api.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        sent,
        [
            Some("Bearer stale".to_owned()),
            Some("Bearer good".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_managers_header_is_its_token_marked_sensitive_and_follows_invalidation() {
    let (mock, _api) = setup();
    let source = payments(&mock);
    let header = source.authorization_header().await.unwrap();
    let token = source.access_token().await.unwrap();
    assert_eq!(header, format!("Bearer {}", token.expose_secret()).as_str());
    assert!(header.is_sensitive());
    assert!(!format!("{header:?}").contains(token.expose_secret()));
    source.invalidate(&token);
    let fresh = source.authorization_header().await.unwrap();
    assert_ne!(fresh, header);
    assert_eq!(
        fresh,
        format!(
            "Bearer {}",
            source.access_token().await.unwrap().expose_secret()
        )
        .as_str()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_requests_through_reqwest_middleware_make_one_token_request() {
    let (mock, api) = setup();
    let http = client(payments(&mock));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (http, url) = (http.clone(), api.url("/pay"));
            tokio::spawn(async move {
                http.post(url)
                    .body("x")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    assert_eq!(api.requests(), 1000);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

/// An API as a tower service: `200` for the mock's live tokens, `401 invalid_token`
/// otherwise; it counts calls and keeps the bodies it read.
#[derive(Clone)]
struct Api {
    mock: Arc<MockServer>,
    calls: Arc<AtomicUsize>,
}

impl<B> Service<http::Request<B>> for Api
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mock = Arc::clone(&self.mock);
        Box::pin(async move {
            let valid = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|token| mock.access_token_valid(token));
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let response = if valid {
                http::Response::new(String::from_utf8_lossy(&body).into_owned())
            } else {
                http::Response::builder()
                    .status(401)
                    .header("www-authenticate", r#"Bearer error="invalid_token""#)
                    .body(String::new())
                    .unwrap()
            };
            Ok(response)
        })
    }
}

#[tokio::test]
async fn the_tower_layer_replaces_a_revoked_token_once_and_never_replays_a_stream() {
    let mock = Arc::new(MockServer::start());
    let source = payments(&mock);
    let calls = Arc::new(AtomicUsize::new(0));
    let api = Api {
        mock: Arc::clone(&mock),
        calls: Arc::clone(&calls),
    };
    let mut service = BearerLayer::new(source.clone()).layer(api);
    let full = |text: &'static str| {
        http::Request::post("http://api.example/pay")
            .body(http_body_util::Full::new(Bytes::from_static(
                text.as_bytes(),
            )))
            .unwrap()
    };
    let ok = service.call(full("one")).await.unwrap();
    assert_eq!(
        (ok.status(), ok.body().as_str()),
        (http::StatusCode::OK, "one")
    );
    let first = source.access_token().await.unwrap();
    assert!(mock.revoke_access_token(first.expose_secret()));

    // A body that can be sent again: one retry with a fresh token.
    let again = service.call(full("two")).await.unwrap();
    assert_eq!(
        (again.status(), again.body().as_str()),
        (http::StatusCode::OK, "two")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    // A stream: the 401 comes back as it is, and the token is still replaced for later.
    let second = source.access_token().await.unwrap();
    assert!(mock.revoke_access_token(second.expose_secret()));
    let stream = http::Request::post("http://api.example/pay")
        .body(
            http_body_util::Full::new(Bytes::from_static(b"three"))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap();
    let refused = service.call(stream).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let later = service.call(full("four")).await.unwrap();
    assert_eq!(later.status(), 200);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 3);
}
