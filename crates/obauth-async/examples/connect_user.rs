//! A user's TrueLayer connection, end to end, against the embedded obauth-mock:
//! auth link with PKCE → consent → code exchange → `UserTokens` with a refresh-token store.
//!
//! `cargo run -p obauth-async --example connect_user`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use obauth_async::core::pkce::Pkce;
use obauth_async::core::truelayer::Environment;
use obauth_async::core::truelayer::auth_dialog::parse_callback;
use obauth_async::core::truelayer::auth_link::AuthLink;
use obauth_async::core::{BaseUrl, OsRandom, StoreError, random};
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, RefreshToken, Scopes};
use obauth_async::{Error, RefreshTokenStore, TrueLayerClient, UserTokens};

/// Stands in for your database: rotated refresh tokens must be saved durably.
#[derive(Default)]
struct Database(Mutex<Option<RefreshToken>>);

#[async_trait]
impl RefreshTokenStore for Database {
    async fn save(&self, refresh_token: &RefreshToken) -> Result<(), StoreError> {
        *self.0.lock().unwrap() = Some(refresh_token.clone());
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mock = obauth_mock::MockServer::start();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url())?),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()?;

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

    // 3. Exchange the code; keep the connection in UserTokens.
    let requested_at = std::time::Instant::now();
    let token = client
        .exchange_code(callback.code, redirect, Some(pkce.verifier().clone()))
        .await?;
    let database = Arc::new(Database::default());
    let tokens = UserTokens::from_token_response(client, token, requested_at, database.clone())?;

    // 4. On every API call: a fresh access token, refreshed (and its rotated refresh token
    //    saved to the database first) when due.
    let access = tokens.access_token().await?;
    println!("access token {}…", &access.expose_secret()[..12]);
    Ok(())
}
