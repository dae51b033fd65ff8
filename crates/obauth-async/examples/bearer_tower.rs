//! obauth's tokens on a tower stack: `BearerLayer` wraps any `Service<http::Request<B>>`
//! (a hyper-util client, a tonic channel, a tower-http stack). Here the inner service sends
//! with reqwest, so that the example needs nothing else.
//!
//! `cargo run -p obauth-async --features tower --example bearer_tower` runs against the
//! embedded obauth-mock and a small protected API on loopback.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use obauth_async::bearer::BearerLayer;
use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{TokenSource, TrueLayerClient};
use obauth_mock::MockServer;
use obauth_test_peers::ProtectedResource;
use tower::{Layer, Service};

/// `http::Request<Bytes>` in, `http::Response<Bytes>` out, sent by reqwest.
#[derive(Clone)]
struct Reqwest(reqwest::Client);

impl Service<http::Request<Bytes>> for Reqwest {
    type Response = http::Response<Bytes>;
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            Ok(out.body(response.bytes().await?).unwrap())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mock = Arc::new(MockServer::start());
    let checker = Arc::clone(&mock);
    let api = ProtectedResource::start(move |token| checker.access_token_valid(token));
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url())?),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()?;
    let payments = TokenSource::truelayer(client, Scopes::from([Scope::Payments]));

    let mut service = BearerLayer::new(payments).layer(Reqwest(reqwest::Client::new()));
    let request = http::Request::post(api.url("/payments")).body(Bytes::from("amount=100"))?;
    let answer = service.call(request).await?;
    println!("{} {:?}", answer.status(), answer.body());
    Ok(())
}
