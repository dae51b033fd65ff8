//! Cached application tokens with the blocking client, against a running obauth-mock:
//!
//! ```sh
//! cargo run -p obauth-cli -- mock --port 7878 &
//! cargo run -p obauth-blocking --example blocking_tokens -- http://127.0.0.1:7878
//! ```
//!
//! (The mock runs in its own process: it is built on tokio, which this crate keeps out of
//! its dependency tree, dev-dependencies included.)

#![allow(clippy::print_stdout, clippy::print_stderr)]

use obauth_blocking::core::BaseUrl;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::worldline::WorldlineAuth;
use obauth_blocking::types::{ClientSecret, Scopes, truelayer, worldline};
use obauth_blocking::{Error, TokenSource, TrueLayerClient, WorldlineClient};

fn main() -> Result<(), Error> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:7878".to_owned());

    let truelayer =
        TrueLayerClient::builder(Environment::Custom(BaseUrl::parse(&base)?), "mock-client")
            .client_secret(ClientSecret::new("mock-secret"))
            .build()?;
    let payments = TokenSource::truelayer(truelayer, Scopes::from([truelayer::Scope::Payments]));

    let worldline = WorldlineClient::builder(
        BaseUrl::parse(&format!("{base}/auth"))?,
        "mock-realm",
        "Worldline-000021",
        WorldlineAuth::ClientSecret(ClientSecret::new("password123")),
    )
    .build()?;
    let vop = TokenSource::worldline(worldline, Scopes::from([worldline::Scope::Vop]));

    // Call these before every API request: cached while fresh, fetched once when due.
    for _ in 0..3 {
        let tl = payments.access_token()?;
        let wl = vop.access_token()?;
        println!(
            "truelayer {}…  worldline {}…",
            &tl.expose_secret()[..10],
            &wl.expose_secret()[..10]
        );
    }
    Ok(())
}
