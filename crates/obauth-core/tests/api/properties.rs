//! Property tests: every response parser and the redirect parser take any status, headers
//! and bytes without panicking, and always give a typed result.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use obauth_core::truelayer::auth_dialog::parse_callback;
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::truelayer::providers::ProvidersQuery;
use obauth_core::types::{AccessToken, AuthorizationCode, ClientSecret, RefreshToken, Scopes};
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, Error, Operation};
use proptest::prelude::*;

use super::support::sandbox;

fn arbitrary_response() -> impl Strategy<Value = Response<Vec<u8>>> {
    let status = 100u16..1000;
    let content_type = prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("text/html; charset=utf-8".to_owned())),
        Just(Some("application/problem+json".to_owned())),
        "[ -~]{0,40}".prop_map(Some),
    ];
    let extra = proptest::collection::vec(
        (
            prop_oneof![
                Just("retry-after"),
                Just("x-request-id"),
                Just("location"),
                Just("tl-correlation-id"),
                Just("x-other")
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..4,
    );
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        json_like().prop_map(String::into_bytes),
    ];
    (status, content_type, extra, body).prop_map(|(status, content_type, extra, body)| {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert("content-type", value);
        }
        for (name, value) in extra {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                response
                    .headers_mut()
                    .append(HeaderName::from_static(name), value);
            }
        }
        response
    })
}

/// JSON-ish bodies that get past the first byte and exercise the shape checks.
fn json_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("access_token"),
        Just("expires_in"),
        Just("token_type"),
        Just("error"),
        Just("error_details"),
        Just("result"),
        Just("success"),
        Just("scope"),
        Just("provider_id"),
        Just("steps"),
        Just("debug_id"),
    ];
    let value = prop_oneof![
        Just("\"Bearer\"".to_owned()),
        Just("3600".to_owned()),
        Just("-1".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[{\"title\":1}]".to_owned()),
        "\"[ -~]{0,12}\"".prop_map(|s| s.replace('\\', "")),
    ];
    let entries = proptest::collection::vec((key, value), 0..8);
    prop_oneof![
        entries.clone().prop_map(|entries| {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", body.join(","))
        }),
        entries.prop_map(|entries| {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{{\"{k}\":{v}}}"))
                .collect();
            format!("[{}]", body.join(","))
        }),
    ]
}

fn check<O: Operation>(op: &O, response: &Response<Vec<u8>>)
where
    O::Output: std::fmt::Debug,
{
    match op.parse_response(response) {
        Ok(_) => assert!(response.status().is_success()),
        Err(error) => {
            // Every error renders, and carries a status when it came from the server.
            let _ = error.to_string();
            if matches!(error, Error::Api(_) | Error::UnexpectedResponse(_)) {
                assert_eq!(error.status(), Some(response.status()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_parser_survives_any_response(response in arbitrary_response()) {
        let config = sandbox();
        check(&config.exchange_code(AuthorizationCode::new("c"), "https://a/cb", None), &response);
        check(&config.refresh(RefreshToken::new("r")), &response);
        check(&config.client_credentials(Scopes::from([Scope::Payments])), &response);
        check(&config.create_auth_link(AuthLink::new("p", Scopes::from([Scope::Info]), "https://a/cb", "c")), &response);
        check(&config.create_reauth_link(ReauthLink::new(RefreshToken::new("r"), "https://a/cb")), &response);
        check(&config.create_debug_id(AccessToken::new("a")), &response);
        check(&config.delete_debug_id(AccessToken::new("a")), &response);
        check(&config.delete_credential(AccessToken::new("a")), &response);
        check(&config.providers(ProvidersQuery::default()), &response);
        let worldline = WorldlineConfig::new(
            BaseUrl::parse("https://h.example/auth").unwrap(),
            "r",
            "id",
            WorldlineAuth::ClientSecret(ClientSecret::new("s")),
        )
        .unwrap();
        check(&worldline.token(Scopes::from([obauth_core::types::worldline::Scope::Vop])), &response);
    }

    #[test]
    fn redirect_parser_survives_any_input(input in "\\PC{0,200}", state in "[a-z]{0,8}") {
        match parse_callback(&input, &state) {
            Ok(callback) => prop_assert!(!callback.code.expose_secret().is_empty()),
            Err(error) => { let _ = error.to_string(); }
        }
    }

    #[test]
    fn redirect_parser_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let input = String::from_utf8_lossy(&bytes);
        let _ = parse_callback(&input, "s");
    }
}
