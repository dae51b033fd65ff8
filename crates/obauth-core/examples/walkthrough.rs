//! A tour of the sans-IO core: builds the request of every operation and parses a
//! canned answer for each, without any network. Run it with
//! `cargo run -p obauth-core --example walkthrough`.
//!
//! The bindings (`obauth-async`, `obauth-blocking`) do exactly this with a real transport
//! in the middle.

#![allow(clippy::print_stdout)]

use std::time::SystemTime;

use http::Response;
use obauth_core::pkce::Pkce;
use obauth_core::truelayer::auth_dialog::{AuthDialog, parse_callback};
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::truelayer::providers::ProvidersQuery;
use obauth_core::types::worldline::Scope as WorldlineScope;
use obauth_core::types::{AccessToken, ClientSecret, RefreshToken, Scopes};
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, Error, Operation, OsRandom, RequestContext, random};

fn main() -> Result<(), Error> {
    let truelayer = TrueLayerConfig::new(Environment::Sandbox, "sandbox-demo")?
        .with_client_secret(ClientSecret::new("demo-secret"));
    let mut random = OsRandom;

    // 1. The hosted auth dialog, with PKCE and state.
    let pkce = Pkce::generate(&mut random)?;
    let state = random::new_state(&mut random)?;
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let dialog =
        AuthDialog::new("https://app.example/callback", scopes.clone(), &state).pkce(&pkce);
    println!("auth dialog   {}", truelayer.auth_dialog_url(&dialog)?);
    let callback = parse_callback(
        &format!("https://app.example/callback?code=demo-code&state={state}"),
        &state,
    )?;
    println!("callback      code received, state checked");

    // 2. Every TrueLayer operation: request out, canned answer in.
    let token_json = r#"{"access_token":"at","expires_in":3600,"token_type":"Bearer","refresh_token":"rt","scope":"info accounts offline_access"}"#;
    let exchange = truelayer.exchange_code(
        callback.code,
        "https://app.example/callback",
        Some(pkce.verifier().clone()),
    );
    step(&exchange, token_json, |token| {
        format!("expires in {}s", token.expires_in)
    })?;
    step(
        &truelayer.refresh(RefreshToken::new("rt")),
        token_json,
        |token| format!("rotated refresh token: {}", token.refresh_token.is_some()),
    )?;
    step(
        &truelayer.client_credentials(Scopes::from([Scope::Payments])),
        r#"{"access_token":"app","expires_in":3600,"token_type":"Bearer","scope":"payments"}"#,
        |token| {
            format!(
                "scope {}",
                token
                    .scope
                    .as_ref()
                    .map(|s| s.to_wire())
                    .unwrap_or_default()
            )
        },
    )?;
    let link = AuthLink::new(
        "ob-monzo",
        scopes,
        "https://app.example/callback",
        "consent-1",
    )
    .state(&state);
    step(
        &truelayer.create_auth_link(link),
        r#"{"result":"https://bank.example/authorize?x=1","success":true}"#,
        |url| url.clone(),
    )?;
    step(
        &truelayer.create_reauth_link(ReauthLink::new(
            RefreshToken::new("rt"),
            "https://app.example/callback",
        )),
        r#"{"result":"https://bank.example/reauth","success":true}"#,
        |url| url.clone(),
    )?;
    let debug_json = r#"{"credentials_id":"c","debug_id":"ob-monzo|abc","provider_id":"ob-monzo"}"#;
    step(
        &truelayer.create_debug_id(AccessToken::new("at")),
        debug_json,
        |id| id.debug_id.clone(),
    )?;
    step(&truelayer.delete_debug_id(), debug_json, |id| {
        id.debug_id.clone()
    })?;
    step(
        &truelayer.delete_credential(AccessToken::new("at")),
        "",
        |()| "deleted".to_owned(),
    )?;
    step(
        &truelayer.providers(ProvidersQuery::default()),
        r#"[{"provider_id":"mock","display_name":"Mock","country":"uk","logo_url":"https://x/l.svg","scopes":["info"]}]"#,
        |providers| format!("{} provider(s)", providers.len()),
    )?;

    // 3. Worldline with a client secret (an RS256 assertion works the same way).
    let worldline = WorldlineConfig::new(
        BaseUrl::parse("https://openbanking.example/auth")?,
        "demo-realm",
        "Worldline-000021",
        WorldlineAuth::ClientSecret(ClientSecret::new("demo-secret")),
    )?;
    step(
        &worldline.token(Scopes::from([WorldlineScope::Vop, WorldlineScope::Wero])),
        r#"{"access_token":"wl","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"VOP WERO"}"#,
        |token| format!("expires in {}s", token.expires_in),
    )?;

    // 4. An error answer is typed.
    let answer = answer(400, r#"{"error":"invalid_grant"}"#);
    if let Err(error) = truelayer
        .refresh(RefreshToken::new("spent"))
        .parse_response(&answer)
    {
        println!("error         {error}");
    }
    Ok(())
}

fn step<O: Operation>(
    op: &O,
    body: &str,
    describe: impl Fn(&O::Output) -> String,
) -> Result<(), Error> {
    let request = op.build_request(&mut RequestContext::new(SystemTime::now(), &mut OsRandom))?;
    let output = op.parse_response(&answer(200, body))?;
    println!(
        "{:<38} {:<6} {:<62} -> {}",
        O::NAME,
        request.method().as_str(),
        request.uri().to_string(),
        describe(&output)
    );
    Ok(())
}

fn answer(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}
