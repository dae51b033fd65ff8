//! Every example in the two seed specs parses into the matching type.
//! The fixtures under `fixtures/` are the spec examples written out verbatim.

#![allow(clippy::unwrap_used)]

use obauth_types::truelayer::auth_link::AuthLinkResponse;
use obauth_types::truelayer::debug::DebugIdResponse;
use obauth_types::truelayer::providers::{FieldType, ProvidersResponse};
use obauth_types::truelayer::token::TokenResponse;
use obauth_types::truelayer::{Country, Scope};
use obauth_types::worldline;
use obauth_types::{ErrorCode, ErrorResponse, TokenType};

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/",
            $path
        ))
    };
}

#[test]
fn truelayer_token_example() {
    let token: TokenResponse = serde_json::from_str(fixture!("truelayer/token-200.json")).unwrap();
    assert_eq!(token.expires_in, 3600);
    assert_eq!(token.token_type, TokenType::Bearer);
    assert!(
        token
            .access_token
            .expose_secret()
            .starts_with("eyJhbGciOiJSUzI1NiIs")
    );
    assert_eq!(
        token.refresh_token.unwrap().expose_secret(),
        "DD65D922D17924F5A96E2C9DFA65AC8CD396107FD06A59F40B169E62B738BE5A"
    );
    let scope = token.scope.unwrap();
    assert_eq!(scope.len(), 8);
    assert!(scope.contains(&Scope::OfflineAccess));
    assert!(scope.iter().all(Scope::is_known));
}

#[test]
fn truelayer_error_examples() {
    let cases: [(&str, ErrorCode, Option<&str>, Option<&str>); 6] = [
        (
            fixture!("truelayer/error-400-invalid-grant.json"),
            ErrorCode::InvalidGrant,
            None,
            None,
        ),
        (
            fixture!("truelayer/error-500-internal.json"),
            ErrorCode::InternalServerError,
            Some("Sorry, we are experiencing technical difficulties. Please try again later."),
            None,
        ),
        (
            fixture!("truelayer/error-401-unauthorized.json"),
            ErrorCode::Unauthorized,
            Some("Unauthorized."),
            Some("Invalid token"),
        ),
        (
            fixture!("truelayer/error-401-invalid-refresh-token.json"),
            ErrorCode::InvalidRequest,
            Some("Invalid request"),
            Some("Invalid refresh_token"),
        ),
        (
            fixture!("truelayer/error-401-unauthorized-client.json"),
            ErrorCode::UnauthorizedClient,
            Some(
                "The client credentials you have entered are incorrect. Please check and try again.",
            ),
            None,
        ),
        (
            fixture!("truelayer/error-400-debug-consent.json"),
            ErrorCode::InvalidRequest,
            Some("Invalid request"),
            Some("Consent expired or revoked"),
        ),
    ];
    for (json, code, description, reason) in cases {
        let error: ErrorResponse = serde_json::from_str(json).unwrap();
        assert_eq!(error.error, code, "{json}");
        assert_eq!(error.error_description.as_deref(), description, "{json}");
        assert_eq!(
            error
                .error_details
                .as_ref()
                .and_then(|d| d.reason.as_deref()),
            reason,
            "{json}"
        );
    }
}

#[test]
fn error_details_keep_unknown_keys_and_codes() {
    let error: ErrorResponse = serde_json::from_str(
        r#"{"error":"brand_new","error_details":{"reason":"r","provider_error":{"code":7}}}"#,
    )
    .unwrap();
    assert_eq!(error.error.as_str(), "brand_new");
    assert!(!error.error.is_known());
    let details = error.error_details.unwrap();
    assert_eq!(details.other["provider_error"]["code"], 7);
}

#[test]
fn truelayer_link_and_debug_examples() {
    let link: AuthLinkResponse =
        serde_json::from_str(fixture!("truelayer/authuri-200.json")).unwrap();
    assert!(link.success);
    assert!(
        link.result
            .starts_with("https://verify.monzo.com/open-banking/authorize?")
    );
    let reauth: AuthLinkResponse =
        serde_json::from_str(fixture!("truelayer/reauthuri-200.json")).unwrap();
    assert_eq!(reauth.result, "https://example.com");

    let debug: DebugIdResponse =
        serde_json::from_str(fixture!("truelayer/debug-200.json")).unwrap();
    assert_eq!(debug.provider_id, "ob-monzo");
    assert_eq!(
        debug.credentials_id,
        "SSwF1CgQMLOs0qratFpybzF7uJ3hxwppiw1C4s+rT4I="
    );
    assert!(debug.debug_id.starts_with("ob-monzo|"));
}

#[test]
fn truelayer_providers_example_reads_as_sent() {
    let ProvidersResponse(providers) =
        serde_json::from_str(fixture!("truelayer/providers-200.json")).unwrap();
    assert_eq!(providers.len(), 4);
    let ids: Vec<_> = providers.iter().map(|p| p.provider_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "mock",
            "ob-transferwise",
            "ob-lloyds-business",
            "stet-credit-agricole"
        ]
    );
    assert_eq!(providers[0].country, Country::Uk);
    assert_eq!(providers[2].scopes.len(), 8);
    assert_eq!(
        providers[0]
            .availability
            .as_ref()
            .unwrap()
            .recommended_status
            .as_deref(),
        Some("healthy")
    );

    let agricole = &providers[3];
    assert_eq!(agricole.country, Country::Fr);
    assert_eq!(agricole.display_name, "Crédit Agricole");
    assert_eq!(agricole.steps.len(), 1);
    let step = &agricole.steps[0];
    assert_eq!(step.title.as_deref(), Some("OAuthRedirect"));
    let field = &step.fields[0];
    assert_eq!(field.kind, FieldType::SingleChoice);
    assert_eq!(field.id, "branch-name");
    assert!(field.mandatory);
    assert_eq!(field.values.len(), 8);
    assert_eq!(
        field.values[2].value.as_deref(),
        Some("stet-credit-agricole-alpes-provence")
    );
}

#[test]
fn one_incomplete_entry_does_not_fail_the_whole_providers_list() {
    // Real-shaped: a choice without a display name, another without a value, and an
    // availability without `recommended_status`, next to a complete provider.
    let ProvidersResponse(providers) = serde_json::from_str(
        r#"[
          {"provider_id":"ob-monzo","display_name":"Monzo","country":"uk","logo_url":"https://x/monzo.svg",
           "scopes":["info"],"availability":{"updated_at":"2026-11-30T10:00:00Z"}},
          {"provider_id":"stet-x","display_name":"X","country":"fr","logo_url":"https://x/x.svg",
           "scopes":["info"],
           "steps":[{"title":"Branch","fields":[{"type":"SingleChoiceField","id":"branch","display_name":"Branch","help_text":"Pick one",
             "mandatory":true,"values":[{"value":"b-1"},{"display_name":"Only a name"},
             {"value":"b-3","display_name":"Three"}]}]}]}
        ]"#,
    )
    .unwrap();
    assert_eq!(providers.len(), 2);
    let availability = providers[0].availability.as_ref().unwrap();
    assert_eq!(availability.recommended_status, None);
    assert_eq!(
        availability.updated_at.as_deref(),
        Some("2026-11-30T10:00:00Z")
    );
    let choices = &providers[1].steps[0].fields[0].values;
    assert_eq!(choices[0].value.as_deref(), Some("b-1"));
    assert_eq!(choices[0].display_name, None);
    assert_eq!(choices[1].value, None);
    assert_eq!(choices[1].display_name.as_deref(), Some("Only a name"));
    assert_eq!(choices[2].display_name.as_deref(), Some("Three"));
}

#[test]
fn providers_schema_shape_is_also_read() {
    // The schema: one object, `scopes` a string, steps as flat fields.
    let ProvidersResponse(providers) = serde_json::from_str(
        r#"{"provider_id":"x","display_name":"X","logo_url":"u","country":"de","scopes":"info",
            "steps":[{"type":"FreeTextField","id":"iban","display_name":"IBAN","help_text":"h",
                      "mandatory":false,"is_sensitive":false,"validations":["^DE"],
                      "allowed_characters":"alphanumeric"}]}"#,
    )
    .unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(
        providers[0].scopes.iter().collect::<Vec<_>>(),
        [&Scope::Info]
    );
    assert_eq!(providers[0].steps[0].title, None);
    assert_eq!(providers[0].steps[0].fields[0].kind, FieldType::FreeText);
    assert!(serde_json::from_str::<ProvidersResponse>(r#"[{"steps":[1]}]"#).is_err());
}

#[test]
fn worldline_examples() {
    let token: worldline::token::TokenResponse =
        serde_json::from_str(fixture!("worldline/token-200.json")).unwrap();
    assert_eq!(token.expires_in, 300);
    assert_eq!(token.refresh_expires_in, Some(0));
    assert_eq!(token.not_before_policy, Some(0));
    assert_eq!(
        token.scope.unwrap().iter().collect::<Vec<_>>(),
        [&worldline::Scope::Vop, &worldline::Scope::Wero]
    );

    let error: ErrorResponse =
        serde_json::from_str(fixture!("worldline/error-400-invalid-scope.json")).unwrap();
    assert_eq!(error.error, ErrorCode::InvalidScope);
    assert_eq!(
        error.error_description.as_deref(),
        Some("Invalid scopes: IDEAL")
    );
    let error: ErrorResponse = serde_json::from_str(r#"{"error":"invalid_client"}"#).unwrap();
    assert_eq!(error.error, ErrorCode::InvalidClient);
}

#[test]
fn keycloak_extras_and_lowercase_bearer_are_read() {
    let token: worldline::token::TokenResponse = serde_json::from_str(
        r#"{"access_token":"a","expires_in":300,"refresh_expires_in":1800,"token_type":"bearer",
            "not-before-policy":0,"scope":"VOP","refresh_token":"r","id_token":"i",
            "session_state":"s","upgraded":true}"#,
    )
    .unwrap();
    assert_eq!(token.token_type, TokenType::Bearer);
    assert_eq!(token.refresh_token.unwrap().expose_secret(), "r");
    assert_eq!(token.id_token.unwrap().expose_secret(), "i");
    assert_eq!(token.session_state.as_deref(), Some("s"));

    let odd: worldline::token::TokenResponse =
        serde_json::from_str(r#"{"access_token":"a","expires_in":1,"token_type":"MAC"}"#).unwrap();
    assert_eq!(odd.token_type.as_str(), "MAC");
    assert!(!odd.token_type.is_known());
    assert!(odd.refresh_expires_in.is_none() && odd.scope.is_none());
}

fn form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.trim().as_bytes())
        .into_owned()
        .collect()
}

#[test]
fn worldline_request_examples_parse_and_round_trip() {
    use worldline::token::{ClientAuthentication, TokenRequest};

    let secret =
        TokenRequest::from_form_fields(form(fixture!("worldline/token-request-secret.form")))
            .unwrap();
    assert_eq!(secret.scope.to_wire(), "VOP WERO");
    let ClientAuthentication::Secret {
        client_id,
        client_secret,
    } = &secret.authentication
    else {
        panic!("expected the secret form");
    };
    assert_eq!(client_id, "Worldline-000021");
    assert_eq!(client_secret.expose_secret(), "password123");
    let names: Vec<_> = secret
        .form_fields()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["grant_type", "scope", "client_id", "client_secret"]);

    let jwt =
        TokenRequest::from_form_fields(form(fixture!("worldline/token-request-assertion.form")))
            .unwrap();
    let ClientAuthentication::Assertion { client_assertion } = &jwt.authentication else {
        panic!("expected the assertion form");
    };
    assert!(
        client_assertion
            .expose_secret()
            .starts_with("eyJhbGciOiJSUzI1NiIsImtpZCI6IkI0RTEx")
    );
    let fields = jwt.form_fields();
    assert_eq!(fields[2].1, worldline::token::JWT_BEARER_ASSERTION_TYPE);
    assert!(!format!("{jwt:?}").contains("eyJhbGci"));
}

#[test]
fn worldline_request_forms_are_checked() {
    use worldline::token::{FormError, TokenRequest};

    let parse = |body: &str| TokenRequest::from_form_fields(form(body)).map(|_| ());
    assert_eq!(
        parse("scope=VOP&client_id=a&client_secret=b"),
        Err(FormError::MissingField("grant_type"))
    );
    assert_eq!(
        parse("grant_type=password&scope=VOP&client_id=a&client_secret=b"),
        Err(FormError::UnsupportedGrantType)
    );
    assert_eq!(
        parse("grant_type=client_credentials&scope=VOP&scope=WERO&client_id=a&client_secret=b"),
        Err(FormError::RepeatedField("scope".into()))
    );
    assert_eq!(
        parse(
            "grant_type=client_credentials&scope=VOP&client_id=a&client_secret=b&client_assertion=x"
        ),
        Err(FormError::TwoAuthenticationMethods)
    );
    assert_eq!(
        parse("grant_type=client_credentials&scope=VOP&client_assertion=x"),
        Err(FormError::MissingField("client_assertion_type"))
    );
    assert_eq!(
        parse("grant_type=client_credentials&scope=VOP&client_id=a&client_secret=b&extra=1"),
        Err(FormError::UnknownField("extra".into()))
    );
}
