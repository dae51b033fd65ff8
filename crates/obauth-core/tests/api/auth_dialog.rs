//! The hosted auth-dialog link and the redirect back.

use obauth_core::CallbackError;
use obauth_core::pkce::Pkce;
use obauth_core::truelayer::auth_dialog::{AuthDialog, parse_callback, parse_callback_with_issuer};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::{CodeVerifier, ErrorCode, Scopes};

use super::support::{local, sandbox};

#[test]
fn dialog_url_is_percent_encoded_in_a_stable_order() {
    let pkce = Pkce::from_verifier(CodeVerifier::new(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ))
    .unwrap();
    let dialog = AuthDialog::new(
        "https://app.example/cb?x=1",
        Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]),
        "st/ate+1",
    )
    .nonce("n0nce")
    .form_post()
    .provider("uk-ob-all")
    .provider("uk-oauth-all")
    .provider_id("ob-monzo")
    .pkce(&pkce)
    .extra("language", "en");
    assert_eq!(
        sandbox().auth_dialog_url(&dialog).unwrap(),
        concat!(
            "https://auth.truelayer-sandbox.com/?response_type=code&client_id=sandbox-client",
            "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1",
            "&scope=info%20accounts%20offline_access&state=st%2Fate%2B1&nonce=n0nce",
            "&response_mode=form_post&providers=uk-ob-all%20uk-oauth-all&provider_id=ob-monzo",
            "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            "&language=en"
        )
    );
    let minimal = AuthDialog::new("https://a/cb", Scopes::from([Scope::Info]), "s");
    assert_eq!(
        local().auth_dialog_url(&minimal).unwrap(),
        "http://127.0.0.1:8080/?response_type=code&client_id=local-client&redirect_uri=https%3A%2F%2Fa%2Fcb&scope=info&state=s"
    );
}

#[test]
fn dialog_input_is_checked() {
    let config = sandbox();
    let scopes = Scopes::from([Scope::Info]);
    assert!(
        config
            .auth_dialog_url(&AuthDialog::new("https://a/cb", scopes.clone(), ""))
            .is_err()
    );
    assert!(
        config
            .auth_dialog_url(&AuthDialog::new("https://a/cb", Scopes::new(), "s"))
            .is_err()
    );
    let reserved = AuthDialog::new("https://a/cb", scopes, "s").extra("client_id", "evil");
    assert_eq!(
        config.auth_dialog_url(&reserved).unwrap_err().what(),
        "extra parameter"
    );
}

#[test]
fn callback_yields_the_code_from_a_url_a_query_or_a_form_body() {
    for input in [
        "https://app.example/cb?code=abc%2B1&state=xyz&scope=info+accounts#frag",
        "?code=abc%2B1&state=xyz&scope=info%20accounts",
        "code=abc%2B1&scope=info+accounts&state=xyz",
    ] {
        let callback = parse_callback(input, "xyz").unwrap();
        assert_eq!(callback.code.expose_secret(), "abc+1", "{input}");
        assert_eq!(
            callback.scope.unwrap(),
            Scopes::from([Scope::Info, Scope::Accounts])
        );
    }
    let with_iss = parse_callback(
        "code=c&state=s&iss=https%3A%2F%2Fauth.truelayer.com&id_token=eyJ",
        "s",
    )
    .unwrap();
    assert_eq!(
        with_iss.issuer.as_deref(),
        Some("https://auth.truelayer.com")
    );
    assert_eq!(with_iss.id_token.unwrap().expose_secret(), "eyJ");
    assert!(
        parse_callback_with_issuer(
            "code=c&state=s&iss=https%3A%2F%2Fauth.truelayer.com",
            "s",
            "https://auth.truelayer.com"
        )
        .is_ok()
    );
    assert_eq!(
        parse_callback_with_issuer(
            "code=c&state=s&iss=https%3A%2F%2Fevil.example",
            "s",
            "https://auth.truelayer.com"
        )
        .unwrap_err(),
        CallbackError::IssuerMismatch
    );
}

#[test]
fn callback_errors_are_typed() {
    assert_eq!(
        parse_callback("code=c&state=other", "mine").unwrap_err(),
        CallbackError::StateMismatch
    );
    assert_eq!(
        parse_callback("code=c", "mine").unwrap_err(),
        CallbackError::StateMismatch
    );
    assert_eq!(
        parse_callback("code=c&state=", "").unwrap_err(),
        CallbackError::StateMismatch
    );
    assert_eq!(
        parse_callback("state=s", "s").unwrap_err(),
        CallbackError::MissingParameter("code")
    );
    assert_eq!(
        parse_callback("code=&state=s", "s").unwrap_err(),
        CallbackError::MissingParameter("code")
    );
    assert_eq!(
        parse_callback("code=a&code=b&state=s", "s").unwrap_err(),
        CallbackError::DuplicateParameter("code".into())
    );
    assert_eq!(
        parse_callback(
            "error=access_denied&error_description=User+cancelled&state=s",
            "s"
        )
        .unwrap_err(),
        CallbackError::Denied {
            code: ErrorCode::AccessDenied,
            description: Some("User cancelled".into())
        }
    );
    // A forged error redirect is a state mismatch first.
    assert_eq!(
        parse_callback("error=access_denied&state=x", "s").unwrap_err(),
        CallbackError::StateMismatch
    );
    let shown = parse_callback("code=secret-code&state=x", "s")
        .unwrap_err()
        .to_string();
    assert!(!shown.contains("secret-code"));
}
