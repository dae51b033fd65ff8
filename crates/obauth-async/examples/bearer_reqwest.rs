//! Calling another API with obauth's tokens through reqwest-middleware: the middleware sets
//! `Authorization: Bearer …`, and when the API says the token is invalid (here: revoked),
//! fetches a fresh one and sends the request once more.
//!
//! `cargo run -p obauth-async --features reqwest-middleware --example bearer_reqwest`
//! runs against the embedded obauth-mock and a small protected API on loopback.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;

use obauth_async::bearer::BearerMiddleware;
use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{TokenSource, TrueLayerClient};
use obauth_mock::{Endpoint, MockServer};
use obauth_test_peers::ProtectedResource;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(payments.clone()))
        .build();

    let answer = http
        .post(api.url("/payments"))
        .body("amount=100")
        .send()
        .await?;
    println!("first payment: {}", answer.status());

    // The API revokes the token (a key rotation, an expiry the client did not see).
    let token = payments.access_token().await?;
    mock.revoke_access_token(token.expose_secret());
    let answer = http
        .post(api.url("/payments"))
        .body("amount=200")
        .send()
        .await?;
    println!(
        "after revocation: {} ({} token requests, {} API requests)",
        answer.status(),
        mock.requests(Endpoint::TrueLayerToken),
        api.requests()
    );
    Ok(())
}
