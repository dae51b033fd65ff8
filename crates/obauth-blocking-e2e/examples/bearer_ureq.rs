//! obauth's tokens on ureq, without an async runtime: `BearerAgent` sets the token on each
//! request and replaces a refused one once; `BearerMiddleware` does the first half in
//! ureq's own middleware slot.
//!
//! `cargo run -p obauth-blocking-e2e --example bearer_ureq` runs against the embedded
//! obauth-mock and a small protected API on loopback (this example crate may hold tokio
//! through the mock; obauth-blocking itself never does).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;

use obauth_blocking::bearer::{BearerAgent, BearerMiddleware};
use obauth_blocking::core::BaseUrl;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{ClientSecret, Scopes};
use obauth_blocking::{TokenSource, TrueLayerClient};
use obauth_mock::{Endpoint, MockServer};
use obauth_test_peers::ProtectedResource;

fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    // Statuses as answers, so that the 401's challenge can be read.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let api_client = BearerAgent::new(agent, payments.clone());
    let answer = api_client.run(http::Request::post(api.url("/payments")).body("amount=100")?)?;
    println!("first payment: {}", answer.status());

    mock.revoke_access_token(payments.access_token()?.expose_secret());
    let answer = api_client.run(http::Request::post(api.url("/payments")).body("amount=200")?)?;
    println!(
        "after revocation: {} ({} token requests)",
        answer.status(),
        mock.requests(Endpoint::TrueLayerToken)
    );

    // The same header from ureq's middleware slot (no second attempt there).
    let with_middleware: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .middleware(BearerMiddleware::new(payments))
        .build()
        .into();
    let answer = with_middleware.get(api.url("/accounts")).call()?;
    println!("through the middleware: {}", answer.status());
    Ok(())
}
