//! A user's TrueLayer connection, end to end, against the embedded obauth-mock:
//! auth link with PKCE → consent → code exchange → `UserTokens` kept in a token store.
//!
//! `cargo run -p obauth-async --example connect_user`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::SystemTime;

use obauth_async::core::pkce::Pkce;
use obauth_async::core::truelayer::Environment;
use obauth_async::core::truelayer::auth_dialog::parse_callback;
use obauth_async::core::truelayer::auth_link::AuthLink;
use obauth_async::core::{BaseUrl, OsRandom, random};
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{Error, MemoryStore, TokenStore, TrueLayerClient, UserTokens};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mock = obauth_mock::MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url())?),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()?;

    // Stands in for your database: the connection's tokens, above all its rotating refresh
    // token, must outlive the process. A `MemoryStore` does not; in production use a durable
    // store (obauth-sqlite's `SqliteStore`, or your own `TokenStore` over your database).
    let database: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());

    // 1. Send the user to the bank, with PKCE and a state you check on the way back.
    let pkce = Pkce::generate(&mut OsRandom)?;
    let state = random::new_state(&mut OsRandom)?;
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let redirect = obauth_mock::TRUELAYER_REDIRECT_URI;
    let link = client
        .create_auth_link(
            AuthLink::new("ob-transferwise", scopes, redirect, "consent-42")
                .state(&state)
                .pkce(&pkce),
        )
        .await?;
    println!("send the user to {link}");

    // 2. The user consents (the mock plays the bank) and comes back to your redirect URI.
    let back = mock.approve(&link).unwrap();
    let callback = parse_callback(&back, &state)?;

    // 3. Exchange the code (noting when the request was sent: the token's age counts from
    //    there), and keep the connection under a name of your choosing. The tokens are in
    //    the store when `from_token_response` returns.
    let requested_at = SystemTime::now();
    let token = client
        .exchange_code(callback.code, redirect, Some(pkce.verifier().clone()))
        .await?;
    let tokens = UserTokens::from_token_response(
        &client,
        "alice",
        &token,
        requested_at,
        Arc::clone(&database),
    )
    .await?;

    // 4. On every API call: a fresh access token, refreshed when due (and its rotated
    //    refresh token written to the store before you get the new access token).
    let access = tokens.access_token().await?;
    println!("access token {}…", &access.expose_secret()[..12]);

    // 5. Later (another request handler, or after a restart with a durable store): open the
    //    connection by its name; the first call reads it from the store.
    let reopened = UserTokens::open(&client, "alice", database)?;
    let again = reopened.access_token().await?;
    assert_eq!(again.expose_secret(), access.expose_secret());
    Ok(())
}
