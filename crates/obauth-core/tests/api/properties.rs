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

/// A secret planted in bodies: it must never come back out of an error message.
const PLANTED: &str = "Pl4ntedS3cretTokenValue-abcdefghijklmnop";

fn check<O: Operation>(op: &O, response: &Response<Vec<u8>>)
where
    O::Output: std::fmt::Debug,
{
    match op.parse_response(response) {
        Ok(_) => assert!(response.status().is_success()),
        Err(error) => {
            // Every error renders without the planted secret, and carries a status when it
            // came from the server.
            let shown = error.to_string();
            assert!(!shown.contains(PLANTED), "leaked: {shown}");
            assert!(
                !format!("{error:?}").contains(PLANTED),
                "leaked through Debug"
            );
            if matches!(error, Error::Api(_) | Error::UnexpectedResponse(_)) {
                assert_eq!(error.status(), Some(response.status()));
            }
        }
    }
}

/// Bodies that carry the planted secret in every shape a server might use.
fn planted_body() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("access_token"),
        Just("refresh_token"),
        Just("id_token"),
        Just("client_secret"),
        Just("code"),
    ];
    let prefix = prop_oneof![
        Just(""),
        Just("\u{feff}"),
        Just(")]}',\n"),
        Just("  "),
        Just("<html>")
    ];
    let cut = 0usize..120;
    (key, prefix, cut, 0u8..4).prop_map(|(key, prefix, cut, shape)| {
        let body = match shape {
            0 => format!(r#"{{"{key}":"{PLANTED}","expires_in":"x","token_type":"Bearer"}}"#),
            1 => format!(r#"[{{"nested":{{"{key}":"{PLANTED}"}}}}]"#),
            2 => format!("{key}={PLANTED}&token_type=bearer"),
            _ => format!("error: {key} {PLANTED} rejected"),
        };
        // Truncation anywhere past the secret's start must still not reveal it whole.
        let full = format!("{prefix}{body}");
        let keep = full
            .len()
            .min(full.find(PLANTED).unwrap_or(0) + PLANTED.len() + cut);
        full[..keep].to_owned()
    })
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
        check(&config.delete_debug_id(), &response);
        check(&config.delete_debug_id_with_token(AccessToken::new("a")), &response);
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
    fn planted_secrets_never_reach_error_messages(
        body in planted_body(),
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500), Just(502)],
        content_type in prop_oneof![Just("application/json"), Just("text/html"), Just("text/plain")],
    ) {
        let mut response = Response::new(body.into_bytes());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
        let config = sandbox();
        check(&config.refresh(RefreshToken::new("r")), &response);
        check(&config.create_debug_id(AccessToken::new("a")), &response);
        check(&config.providers(ProvidersQuery::default()), &response);
    }

    #[test]
    fn redirect_parser_survives_any_input(input in "\\PC{0,200}", state in "[a-z]{0,8}") {
        match parse_callback(&input, &state) {
            Ok(callback) => prop_assert!(!callback.code.expose_secret().is_empty()),
            Err(error) => { let _ = error.to_string(); }
        }
    }

    #[test]
    fn redirect_parser_returns_any_code_intact(code in "\\PC{1,40}", state in "\\PC{1,20}", extra in "[a-z_]{0,8}") {
        let encode = |value: &str| -> String {
            form_urlencoded::byte_serialize(value.as_bytes()).collect()
        };
        let input = format!(
            "https://app.example/cb?{extra}=1&code={}&state={}",
            encode(&code),
            encode(&state)
        );
        match parse_callback(&input, &state) {
            Ok(callback) => prop_assert_eq!(callback.code.expose_secret(), code.as_str()),
            // Only a colliding extra parameter name may make it fail.
            Err(error) => prop_assert!(matches!(extra.as_str(), "code" | "state" | "error"), "{error}"),
        }
    }

    #[test]
    fn redirect_parser_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let input = String::from_utf8_lossy(&bytes);
        let _ = parse_callback(&input, "s");
    }
}
