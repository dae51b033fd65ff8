//! A cached application token (client credentials) shared by concurrent tasks, against the
//! embedded obauth-mock: one token request serves them all.
//!
//! `cargo run -p obauth-async --example application_token`

#![allow(clippy::print_stdout)]

use obauth_async::core::BaseUrl;
use obauth_async::core::worldline::WorldlineAuth;
use obauth_async::types::worldline::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{Error, TokenSource, WorldlineClient};
use obauth_mock::Endpoint;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mock = obauth_mock::MockServer::start();
    let client = WorldlineClient::builder(
        BaseUrl::parse(&mock.worldline_base_url())?,
        obauth_mock::WORLDLINE_REALM,
        obauth_mock::WORLDLINE_CLIENT_ID,
        WorldlineAuth::ClientSecret(ClientSecret::new(obauth_mock::WORLDLINE_CLIENT_SECRET)),
    )
    .build()?;
    let tokens = TokenSource::worldline(client, Scopes::from([Scope::Vop, Scope::Wero]));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let tokens = tokens.clone();
        tasks.spawn(async move { tokens.access_token().await });
    }
    while let Some(result) = tasks.join_next().await {
        let _bearer = result.map_err(|_| {
            Error::InvalidInput(obauth_async::core::InvalidInput::new("task", "panicked"))
        })??;
    }
    println!(
        "100 callers, {} token request(s)",
        mock.requests(Endpoint::WorldlineToken)
    );
    Ok(())
}
