//! Requests serialize exactly what the spec allows: no nulls, no extra keys.

#![allow(clippy::unwrap_used)]

use obauth_types::truelayer::auth_link::{AuthInputs, AuthLinkRequest, AuthLinkUser};
use obauth_types::truelayer::token::{AuthorizationCodeRequest, TokenRequest};
use obauth_types::truelayer::{CodeChallengeMethod, ResponseMode, ResponseTypeCode, Scope};
use obauth_types::{AuthorizationCode, ClientSecret, Scopes};

fn link() -> AuthLinkRequest {
    AuthLinkRequest {
        response_type: ResponseTypeCode,
        client_id: "client".into(),
        redirect_uri: "https://example.com/cb".into(),
        scope: Scopes::from([Scope::Info, Scope::Accounts]),
        state: None,
        consent_id: "consent-1".into(),
        user: None,
        data_use_description: None,
        provider_id: "ob-monzo".into(),
        code_challenge: None,
        code_challenge_method: None,
        response_mode: None,
        auth_inputs: None,
        tracking_id: None,
    }
}

#[test]
fn absent_optionals_are_omitted() {
    assert_eq!(
        serde_json::to_string(&link()).unwrap(),
        r#"{"response_type":"code","client_id":"client","redirect_uri":"https://example.com/cb","scope":"info accounts","consent_id":"consent-1","provider_id":"ob-monzo"}"#
    );
}

#[test]
fn every_optional_field_serializes_under_its_spec_name() {
    let mut request = link();
    request.state = Some("s".into());
    request.user = Some(AuthLinkUser {
        name: Some("Alan Turing".into()),
        email: Some("alan@example.com".into()),
        ..AuthLinkUser::default()
    });
    request.data_use_description = Some("d".into());
    request.code_challenge = Some("c".into());
    request.code_challenge_method = Some(CodeChallengeMethod::S256);
    request.response_mode = Some(ResponseMode::FormPost);
    request.auth_inputs = Some(AuthInputs::from_iter([("branch-name", "stet-x")]));
    request.tracking_id = Some("t".into());
    let value = serde_json::to_value(&request).unwrap();
    assert_eq!(
        value["user"],
        serde_json::json!({"name":"Alan Turing","email":"alan@example.com"})
    );
    assert_eq!(value["code_challenge_method"], "S256");
    assert_eq!(value["response_mode"], "form_post");
    assert_eq!(
        value["auth_inputs"],
        serde_json::json!({"branch-name":"stet-x"})
    );
    assert_eq!(value.as_object().unwrap().len(), 14);
    let debug = format!("{request:?}");
    assert!(
        debug.contains("branch-name") && !debug.contains("stet-x"),
        "{debug}"
    );
}

#[test]
fn auth_inputs_read_both_shapes_and_response_type_is_fixed() {
    let mut json = serde_json::to_value(link()).unwrap();
    json["auth_inputs"] = serde_json::json!([{"branch-name": "a"}, {"other": "b"}]);
    let parsed: AuthLinkRequest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(parsed.auth_inputs.unwrap().0.len(), 2);
    json["response_type"] = "token".into();
    assert!(serde_json::from_value::<AuthLinkRequest>(json).is_err());
}

#[test]
fn token_request_puts_grant_type_first_and_drops_absent_verifier() {
    let request = TokenRequest::AuthorizationCode(AuthorizationCodeRequest {
        client_id: "id".into(),
        client_secret: ClientSecret::new("secret"),
        code: AuthorizationCode::new("code"),
        redirect_uri: "https://x/cb".into(),
        code_verifier: None,
    });
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"grant_type":"authorization_code","client_id":"id","client_secret":"secret","code":"code","redirect_uri":"https://x/cb"}"#
    );
    let debug = format!("{request:?}");
    assert!(
        !debug.contains("secret\"") && !debug.contains("\"code\""),
        "{debug}"
    );

    let mut with_verifier = serde_json::to_value(&request).unwrap();
    with_verifier["code_verifier"] = "v".into();
    let TokenRequest::AuthorizationCode(parsed) =
        serde_json::from_value(with_verifier.clone()).unwrap()
    else {
        panic!("wrong grant");
    };
    assert_eq!(
        parsed.code_verifier.map(|v| v.expose_secret().to_owned()),
        Some("v".into())
    );
    with_verifier["extra"] = 1.into();
    assert!(serde_json::from_value::<TokenRequest>(with_verifier).is_err());
}
