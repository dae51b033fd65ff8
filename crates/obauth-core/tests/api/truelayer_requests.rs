//! Golden wire format of every TrueLayer request: method, URL, headers, exact body.

use obauth_core::pkce::Pkce;
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::types::truelayer::auth_link::AuthLinkUser;
use obauth_core::types::truelayer::providers::ProvidersQuery;
use obauth_core::types::truelayer::{Country, Scope};
use obauth_core::types::{AccessToken, AuthorizationCode, CodeVerifier, RefreshToken, Scopes};
use obauth_core::{Error, Operation, Replay, USER_AGENT};

use super::support::{body_text, build, header, local, sandbox};

fn assert_common_headers(request: &http::Request<Vec<u8>>, content_type: Option<&str>) {
    assert_eq!(header(request, "accept"), Some("application/json"));
    assert_eq!(header(request, "user-agent"), Some(USER_AGENT));
    assert_eq!(header(request, "content-type"), content_type);
}

#[test]
fn exchange_code_with_and_without_pkce() {
    let config = sandbox();
    let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    let op = config.exchange_code(
        AuthorizationCode::new("the-code"),
        "https://app.example/callback",
        Some(verifier),
    );
    assert_eq!(op.replay(), Replay::Never);
    let request = build(&op).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/connect/token"
    );
    assert_common_headers(&request, Some("application/json"));
    assert_eq!(header(&request, "authorization"), None);
    assert_eq!(
        body_text(&request),
        r#"{"grant_type":"authorization_code","client_id":"sandbox-client","client_secret":"s3cr3t-value","code":"the-code","redirect_uri":"https://app.example/callback","code_verifier":"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}"#
    );

    let without = config.exchange_code(AuthorizationCode::new("c"), "https://app.example/cb", None);
    assert!(!body_text(&build(&without).unwrap()).contains("code_verifier"));
}

#[test]
fn refresh_and_client_credentials() {
    let config = sandbox();
    let refresh = config.refresh(RefreshToken::new("rt-1"));
    assert_eq!(refresh.replay(), Replay::IfNotProcessed);
    let request = build(&refresh).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/connect/token"
    );
    assert_common_headers(&request, Some("application/json"));
    assert_eq!(
        body_text(&request),
        r#"{"grant_type":"refresh_token","client_id":"sandbox-client","client_secret":"s3cr3t-value","refresh_token":"rt-1"}"#
    );

    let scopes = Scopes::from([Scope::Payments, Scope::RecurringPaymentsSweeping]);
    let credentials = config.client_credentials(scopes);
    assert_eq!(credentials.replay(), Replay::Safe);
    let request = build(&credentials).unwrap();
    assert_eq!(
        body_text(&request),
        r#"{"grant_type":"client_credentials","client_id":"sandbox-client","client_secret":"s3cr3t-value","scope":"payments recurring_payments:sweeping"}"#
    );
}

#[test]
fn production_and_custom_hosts() {
    let production = TrueLayerConfig::new(Environment::Production, "id")
        .unwrap()
        .with_client_secret("x".into());
    let request = build(&production.refresh(RefreshToken::new("r"))).unwrap();
    assert_eq!(request.uri(), "https://auth.truelayer.com/connect/token");
    let request = build(&local().refresh(RefreshToken::new("r"))).unwrap();
    assert_eq!(request.uri(), "http://127.0.0.1:8080/connect/token");
}

#[test]
fn auth_link_minimal_and_full() {
    let config = sandbox();
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let minimal = AuthLink::new(
        "ob-monzo",
        scopes.clone(),
        "https://app.example/cb",
        "consent-42",
    );
    let request = build(&config.create_auth_link(minimal)).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/v1/authuri"
    );
    assert_common_headers(&request, Some("application/json"));
    assert_eq!(
        body_text(&request),
        r#"{"response_type":"code","client_id":"sandbox-client","redirect_uri":"https://app.example/cb","scope":"info accounts offline_access","consent_id":"consent-42","provider_id":"ob-monzo"}"#
    );
    assert!(!body_text(&request).contains("secret"));

    let pkce = Pkce::from_verifier(CodeVerifier::new(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ))
    .unwrap();
    let full = AuthLink::new(
        "stet-credit-agricole",
        scopes,
        "https://app.example/cb",
        "consent-42",
    )
    .state("st")
    .user(AuthLinkUser {
        id: Some("u-1".into()),
        name: Some("Alan Turing".into()),
        email: None,
        phone: Some("+44777777777".into()),
    })
    .data_use_description("Budgeting")
    .pkce(&pkce)
    .form_post()
    .auth_input("branch-name", "stet-credit-agricole-alpes-provence")
    .tracking_id("trk");
    let request = build(&config.create_auth_link(full)).unwrap();
    assert_eq!(
        body_text(&request),
        concat!(
            r#"{"response_type":"code","client_id":"sandbox-client","redirect_uri":"https://app.example/cb","#,
            r#""scope":"info accounts offline_access","state":"st","consent_id":"consent-42","#,
            r#""user":{"id":"u-1","name":"Alan Turing","phone":"+44777777777"},"#,
            r#""data_use_description":"Budgeting","provider_id":"stet-credit-agricole","#,
            r#""code_challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM","code_challenge_method":"S256","#,
            r#""response_mode":"form_post","auth_inputs":{"branch-name":"stet-credit-agricole-alpes-provence"},"#,
            r#""tracking_id":"trk"}"#
        )
    );
}

#[test]
fn auth_link_input_is_checked() {
    let config = sandbox();
    let scopes = Scopes::from([Scope::Info]);
    let cases = [
        (
            AuthLink::new("", scopes.clone(), "https://a/cb", "c"),
            "provider_id",
        ),
        (
            AuthLink::new("p", Scopes::new(), "https://a/cb", "c"),
            "scope",
        ),
        (
            AuthLink::new("p", scopes.clone(), "not a uri", "c"),
            "redirect_uri",
        ),
        (
            AuthLink::new("p", scopes.clone(), "https://a/cb", " "),
            "consent_id",
        ),
        (
            AuthLink::new("p", scopes.clone(), "https://a/cb", "c").user(AuthLinkUser {
                name: Some("No Contact".into()),
                ..AuthLinkUser::default()
            }),
            "user",
        ),
        (
            AuthLink::new("p", scopes, "https://a/cb", "c").user(AuthLinkUser {
                email: Some("a@b.c".into()),
                ..AuthLinkUser::default()
            }),
            "user",
        ),
    ];
    for (link, what) in cases {
        match build(&config.create_auth_link(link)) {
            Err(Error::InvalidInput(invalid)) => assert_eq!(invalid.what(), what),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn reauth_link() {
    let config = sandbox();
    let minimal = ReauthLink::new(RefreshToken::new("rt"), "https://app.example/cb");
    let request = build(&config.create_reauth_link(minimal)).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/v1/reauthuri"
    );
    assert_common_headers(&request, Some("application/json"));
    assert_eq!(
        body_text(&request),
        r#"{"response_type":"code","refresh_token":"rt","redirect_uri":"https://app.example/cb"}"#
    );
    let pkce = Pkce::from_verifier(CodeVerifier::new(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ))
    .unwrap();
    let full = ReauthLink::new(RefreshToken::new("rt"), "https://app.example/cb")
        .state("s")
        .pkce(&pkce)
        .form_post();
    assert_eq!(
        body_text(&build(&config.create_reauth_link(full)).unwrap()),
        r#"{"response_type":"code","refresh_token":"rt","redirect_uri":"https://app.example/cb","state":"s","code_challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM","code_challenge_method":"S256","response_mode":"form_post"}"#
    );
}

#[test]
fn debug_id_create_and_the_opt_in_delete_send_the_token_in_the_body() {
    let config = sandbox();
    for (op_request, method, replay) in [
        (
            build(&config.create_debug_id(AccessToken::new("at-1"))).unwrap(),
            "POST",
            config.create_debug_id(AccessToken::new("x")).replay(),
        ),
        (
            build(&config.delete_debug_id_with_token(AccessToken::new("at-1"))).unwrap(),
            "DELETE",
            config
                .delete_debug_id_with_token(AccessToken::new("x"))
                .replay(),
        ),
    ] {
        assert_eq!(op_request.method(), method);
        assert_eq!(
            op_request.uri(),
            "https://auth.truelayer-sandbox.com/api/debug"
        );
        assert_common_headers(&op_request, Some("application/json"));
        assert_eq!(body_text(&op_request), r#"{"access_token":"at-1"}"#);
        assert_eq!(header(&op_request, "authorization"), None);
        let expected = if method == "POST" {
            Replay::IfNotProcessed
        } else {
            Replay::Safe
        };
        assert_eq!(replay, expected);
    }
}

#[test]
fn debug_id_delete_sends_what_the_spec_says_no_body_no_credentials() {
    let config = sandbox();
    let request = build(&config.delete_debug_id()).unwrap();
    assert_eq!(request.method(), "DELETE");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/api/debug"
    );
    assert_common_headers(&request, None);
    assert!(request.body().is_empty());
    assert_eq!(header(&request, "authorization"), None);
    assert_eq!(header(&request, "content-type"), None);
    assert_eq!(config.delete_debug_id().replay(), Replay::Safe);
}

#[test]
fn delete_credential_uses_a_sensitive_bearer_header_and_no_body() {
    let config = sandbox();
    let request = build(&config.delete_credential(AccessToken::new("at-9"))).unwrap();
    assert_eq!(request.method(), "DELETE");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/api/delete"
    );
    assert_common_headers(&request, None);
    assert_eq!(header(&request, "authorization"), Some("Bearer at-9"));
    assert!(request.headers()["authorization"].is_sensitive());
    assert!(request.body().is_empty());
    assert!(matches!(
        build(&config.delete_credential(AccessToken::new("bad\ntoken"))),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn providers_filters_are_space_delimited() {
    let config = sandbox();
    let request = build(&config.providers(ProvidersQuery::default())).unwrap();
    assert_eq!(request.method(), "GET");
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/api/providers"
    );
    assert_common_headers(&request, None);
    assert!(request.body().is_empty());

    let query = ProvidersQuery {
        client_id: Some("my client".into()),
        scopes: Scopes::from([Scope::Info, Scope::Accounts]),
        countries: vec![Country::Uk, Country::Fr],
    };
    let request = build(&config.providers(query)).unwrap();
    assert_eq!(
        request.uri(),
        "https://auth.truelayer-sandbox.com/api/providers?clientId=my%20client&scopes=info%20accounts&country=uk%20fr"
    );
}

#[test]
fn token_grants_need_a_secret_and_valid_input() {
    let no_secret = TrueLayerConfig::new(Environment::Sandbox, "id").unwrap();
    let error = build(&no_secret.refresh(RefreshToken::new("r"))).unwrap_err();
    assert!(matches!(&error, Error::InvalidInput(invalid) if invalid.what() == "client_secret"));
    // Providers need no secret.
    assert!(build(&no_secret.providers(ProvidersQuery::default())).is_ok());

    let config = sandbox();
    let bad_verifier = config.exchange_code(
        AuthorizationCode::new("c"),
        "https://a/cb",
        Some(CodeVerifier::new("too-short")),
    );
    assert!(
        matches!(build(&bad_verifier), Err(Error::InvalidInput(i)) if i.what() == "code_verifier")
    );
    let empty_code = config.exchange_code(AuthorizationCode::new(""), "https://a/cb", None);
    assert!(matches!(build(&empty_code), Err(Error::InvalidInput(i)) if i.what() == "code"));
    let bad_scope = config.client_credentials(Scopes::from([Scope::from("two words")]));
    assert!(matches!(build(&bad_scope), Err(Error::InvalidInput(i)) if i.what() == "scope"));
}

#[test]
fn operations_do_not_leak_secrets_through_debug() {
    let config = sandbox();
    let op = config.exchange_code(
        AuthorizationCode::new("code-value"),
        "https://a/cb",
        Some(CodeVerifier::new(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        )),
    );
    let debug = format!("{op:?} {config:?}");
    for secret in ["code-value", "dBjftJeZ4CVP", "s3cr3t-value"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}
