//! Parsing of every operation's answers: successes, each documented error, and the
//! malformed answers real networks produce.

use std::time::Duration;

use http::StatusCode;
use obauth_core::error::UnexpectedKind;
use obauth_core::retry::{Failure, RetryAfter};
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::truelayer::providers::ProvidersQuery;
use obauth_core::types::{AccessToken, AuthorizationCode, ErrorCode, RefreshToken, Scopes};
use obauth_core::{Error, Operation};

use super::support::{fixture, json, sandbox, with_type};

fn api(error: Error) -> Box<obauth_core::ApiError> {
    match error {
        Error::Api(api) => api,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn unexpected(error: Error) -> Box<obauth_core::UnexpectedResponse> {
    match error {
        Error::UnexpectedResponse(unexpected) => unexpected,
        other => panic!("expected an unexpected response, got {other:?}"),
    }
}

#[test]
fn token_success_from_the_spec_example() {
    let config = sandbox();
    let op = config.exchange_code(AuthorizationCode::new("c"), "https://a/cb", None);
    let token = op
        .parse_response(&json(200, fixture!("truelayer/token-200.json")))
        .unwrap();
    assert_eq!(token.expires_in, 3600);
    assert!(token.refresh_token.is_some());
    // The same parser serves the other grants.
    let refreshed = config
        .refresh(RefreshToken::new("r"))
        .parse_response(&json(200, fixture!("truelayer/token-200.json")))
        .unwrap();
    assert_eq!(refreshed.scope.unwrap().len(), 8);
    let app = config
        .client_credentials(Scopes::from([Scope::Payments]))
        .parse_response(&json(
            200,
            r#"{"access_token":"a","expires_in":3600,"token_type":"Bearer","scope":"payments"}"#,
        ))
        .unwrap();
    assert!(app.refresh_token.is_none());
}

#[test]
fn documented_token_errors_are_typed_by_code() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let cases = [
        (
            400,
            fixture!("truelayer/error-400-invalid-grant.json"),
            ErrorCode::InvalidGrant,
        ),
        (
            401,
            fixture!("truelayer/error-401-invalid-refresh-token.json"),
            ErrorCode::InvalidRequest,
        ),
        (
            401,
            fixture!("truelayer/error-401-unauthorized-client.json"),
            ErrorCode::UnauthorizedClient,
        ),
        // The same code under another status is the same error.
        (
            400,
            fixture!("truelayer/error-401-unauthorized-client.json"),
            ErrorCode::UnauthorizedClient,
        ),
        (
            500,
            fixture!("truelayer/error-500-internal.json"),
            ErrorCode::InternalServerError,
        ),
    ];
    for (status, body, code) in cases {
        let error = op.parse_response(&json(status, body)).unwrap_err();
        assert_eq!(error.status(), Some(StatusCode::from_u16(status).unwrap()));
        assert_eq!(error.api_code(), Some(&code));
        assert_eq!(error.is_retryable(), status == 500, "{body}");
    }
    let error = api(op
        .parse_response(&json(
            401,
            fixture!("truelayer/error-401-invalid-refresh-token.json"),
        ))
        .unwrap_err());
    assert_eq!(error.description.as_deref(), Some("Invalid request"));
    assert_eq!(
        error.details.as_ref().unwrap().reason.as_deref(),
        Some("Invalid refresh_token")
    );
    assert_eq!(
        error.to_string(),
        "server answered 401 Unauthorized: invalid_request: Invalid request (Invalid refresh_token)"
    );
}

#[test]
fn link_debug_delete_and_providers_succeed_on_spec_examples() {
    let config = sandbox();
    let link = config.create_auth_link(AuthLink::new(
        "ob-monzo",
        Scopes::from([Scope::Info]),
        "https://a/cb",
        "c",
    ));
    let url = link
        .parse_response(&json(200, fixture!("truelayer/authuri-200.json")))
        .unwrap();
    assert!(url.starts_with("https://verify.monzo.com/"));
    let reauth = config.create_reauth_link(ReauthLink::new(RefreshToken::new("r"), "https://a/cb"));
    assert_eq!(
        reauth
            .parse_response(&json(200, fixture!("truelayer/reauthuri-200.json")))
            .unwrap(),
        "https://example.com"
    );
    let error = reauth
        .parse_response(&json(
            401,
            fixture!("truelayer/error-401-unauthorized.json"),
        ))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::Unauthorized));
    let not_created = unexpected(
        link.parse_response(&json(200, r#"{"result":"","success":false}"#))
            .unwrap_err(),
    );
    assert_eq!(not_created.kind, UnexpectedKind::LinkNotCreated);
    // A link a person would open must be a web address: https, or http on loopback.
    for hostile in [
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "http://evil.example/login",
        "https://ok.example/\\u001b]8;;https://evil.example\\u0007",
        "https://ok.example/a\\r\\nforged: line",
        "/relative/path",
        "https:///no-host",
        // Found by fuzzing: a port that is not one (a browser refuses the link).
        "http://127.0.0.1:!/dialog",
        "https://auth.example:99999/x",
        // User info: reads as one host, opens another.
        "https://auth.truelayer.com@evil.example/login",
    ] {
        let body = format!(r#"{{"result":"{hostile}","success":true}}"#);
        let refused = unexpected(link.parse_response(&json(200, &body)).unwrap_err());
        assert!(
            matches!(&refused.kind, UnexpectedKind::WrongShape(why) if why.contains("https")),
            "{hostile}: {refused}"
        );
    }
    for fine in [
        "https://auth.example/x?y=1",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "https://auth.example:8443/x",
    ] {
        let body = format!(r#"{{"result":"{fine}","success":true}}"#);
        assert_eq!(link.parse_response(&json(200, &body)).unwrap(), fine);
    }

    let debug = config.create_debug_id(AccessToken::new("a"));
    let id = debug
        .parse_response(&json(200, fixture!("truelayer/debug-200.json")))
        .unwrap();
    assert_eq!(id.provider_id, "ob-monzo");
    let consent = api(debug
        .parse_response(&json(
            400,
            fixture!("truelayer/error-400-debug-consent.json"),
        ))
        .unwrap_err());
    assert_eq!(
        consent.details.unwrap().reason.as_deref(),
        Some("Consent expired or revoked")
    );
    let deleted = config
        .delete_debug_id()
        .parse_response(&json(200, fixture!("truelayer/debug-200.json")))
        .unwrap();
    assert_eq!(deleted.debug_id, id.debug_id);

    let delete = config.delete_credential(AccessToken::new("a"));
    delete.parse_response(&with_type(200, None, "")).unwrap();
    delete.parse_response(&with_type(204, None, "")).unwrap();
    delete
        .parse_response(&with_type(200, Some("text/plain"), "OK"))
        .unwrap();
    assert_eq!(
        delete
            .parse_response(&json(200, r#"{"error":"unauthorized"}"#))
            .unwrap_err()
            .api_code(),
        Some(&ErrorCode::Unauthorized)
    );
    assert_eq!(
        delete
            .parse_response(&json(500, fixture!("truelayer/error-500-internal.json")))
            .unwrap_err()
            .api_code(),
        Some(&ErrorCode::InternalServerError)
    );

    let providers = config
        .providers(ProvidersQuery::default())
        .parse_response(&json(200, fixture!("truelayer/providers-200.json")))
        .unwrap();
    assert_eq!(providers.len(), 4);
}

#[test]
fn malformed_answers_are_unexpected_responses_with_status_and_excerpt() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));

    let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let gateway = unexpected(
        op.parse_response(&with_type(502, Some("text/html"), html))
            .unwrap_err(),
    );
    assert_eq!(gateway.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gateway.kind, UnexpectedKind::NotJson);
    assert_eq!(gateway.content_type.as_deref(), Some("text/html"));
    assert!(gateway.excerpt.contains("502 Bad Gateway"));
    assert!(Error::UnexpectedResponse(gateway).is_retryable());

    // A 200 from a captive proxy: HTML where JSON was promised.
    let proxy = unexpected(
        op.parse_response(&with_type(200, Some("text/html"), html))
            .unwrap_err(),
    );
    assert_eq!(proxy.kind, UnexpectedKind::NotJson);

    let empty = unexpected(op.parse_response(&json(200, "")).unwrap_err());
    assert_eq!(empty.kind, UnexpectedKind::EmptyBody);
    let empty_error = unexpected(op.parse_response(&json(503, " ")).unwrap_err());
    assert_eq!(empty_error.kind, UnexpectedKind::EmptyBody);

    let truncated = unexpected(
        op.parse_response(&json(200, r#"{"access_token":"eyJsecret","expires_in":36"#))
            .unwrap_err(),
    );
    assert_eq!(truncated.kind, UnexpectedKind::NotJson);
    assert!(
        !truncated.excerpt.contains("eyJsecret"),
        "{}",
        truncated.excerpt
    );

    let wrong = unexpected(
        op.parse_response(&json(
            200,
            r#"{"access_token":"eyJsecret","expires_in":"soon","token_type":"Bearer"}"#,
        ))
        .unwrap_err(),
    );
    assert!(matches!(&wrong.kind, UnexpectedKind::WrongShape(why) if why.contains("expected u64")));
    let shown = Error::UnexpectedResponse(wrong).to_string();
    assert!(!shown.contains("eyJsecret"), "{shown}");
    assert!(shown.contains("HTTP 200 OK"), "{shown}");

    let mac = unexpected(
        op.parse_response(&json(
            200,
            r#"{"access_token":"a","expires_in":1,"token_type":"MAC"}"#,
        ))
        .unwrap_err(),
    );
    assert!(matches!(&mac.kind, UnexpectedKind::WrongShape(why) if why.contains("MAC")));
    let blank = unexpected(
        op.parse_response(&json(
            200,
            r#"{"access_token":"","expires_in":1,"token_type":"bearer"}"#,
        ))
        .unwrap_err(),
    );
    assert!(matches!(&blank.kind, UnexpectedKind::WrongShape(_)));

    let not_oauth = unexpected(
        op.parse_response(&json(404, r#"{"message":"no route"}"#))
            .unwrap_err(),
    );
    assert!(matches!(not_oauth.kind, UnexpectedKind::WrongShape(_)));
    assert!(not_oauth.excerpt.contains("no route"));
}

#[test]
fn an_error_body_under_200_is_still_an_api_error() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let error = api(op
        .parse_response(&json(200, r#"{"error":"invalid_grant"}"#))
        .unwrap_err());
    assert_eq!(error.status, StatusCode::OK);
    assert_eq!(error.code, ErrorCode::InvalidGrant);
}

#[test]
fn a_byte_order_mark_is_tolerated() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let body = format!("\u{feff}{}", fixture!("truelayer/token-200.json"));
    assert_eq!(
        op.parse_response(&json(200, &body)).unwrap().expires_in,
        3600
    );
    let error = format!("\u{feff}{}", r#"{"error":"invalid_grant"}"#);
    assert_eq!(
        op.parse_response(&json(400, &error))
            .unwrap_err()
            .api_code(),
        Some(&ErrorCode::InvalidGrant)
    );
}

#[test]
fn error_json_labelled_text_plain_is_read() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let error = op
        .parse_response(&with_type(
            400,
            Some("text/plain"),
            r#"{"error":"invalid_grant"}"#,
        ))
        .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidGrant));
}

#[test]
fn redirects_are_reported_without_the_query() {
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let mut response = with_type(302, None, "");
    response.headers_mut().insert(
        "location",
        "https://elsewhere.example/login?code=leaked"
            .parse()
            .unwrap(),
    );
    let redirect = unexpected(op.parse_response(&response).unwrap_err());
    assert_eq!(redirect.kind, UnexpectedKind::Redirect);
    assert_eq!(
        redirect.excerpt,
        "Location: https://elsewhere.example/login"
    );
}

#[test]
fn trace_ids_and_retry_after_are_kept() {
    let config = sandbox();
    let op = config.client_credentials(Scopes::from([Scope::Payments]));
    let mut throttled = json(
        429,
        r#"{"error":"rate_limited","error_description":"slow down"}"#,
    );
    throttled
        .headers_mut()
        .insert("retry-after", "3".parse().unwrap());
    throttled
        .headers_mut()
        .insert("x-request-id", "req-123".parse().unwrap());
    let error = op.parse_response(&throttled).unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(
        error.retry_after(),
        Some(RetryAfter::Delay(Duration::from_secs(3)))
    );
    assert_eq!(
        Failure::of(&error),
        Failure::Server {
            not_processed: true,
            retry_after: Some(RetryAfter::Delay(Duration::from_secs(3)))
        }
    );
    let api = api(error);
    assert_eq!(api.code.as_str(), "rate_limited");
    assert_eq!(api.trace_id.as_deref(), Some("req-123"));
    assert!(api.to_string().ends_with("[trace id req-123]"));

    let mut preferred = json(500, fixture!("truelayer/error-500-internal.json"));
    preferred
        .headers_mut()
        .insert("x-request-id", "second".parse().unwrap());
    preferred
        .headers_mut()
        .insert("tl-correlation-id", "first".parse().unwrap());
    assert_eq!(
        api_trace(op.parse_response(&preferred).unwrap_err()),
        Some("first".into())
    );
    let final_failure = op
        .parse_response(&json(400, r#"{"error":"invalid_request"}"#))
        .unwrap_err();
    assert_eq!(Failure::of(&final_failure), Failure::Final);
}

fn api_trace(error: Error) -> Option<String> {
    api(error).trace_id
}

#[test]
fn error_messages_never_contain_the_secrets_sent() {
    let config = sandbox();
    let op = config.exchange_code(AuthorizationCode::new("code-123"), "https://a/cb", None);
    let request = super::support::build(&op).unwrap();
    assert!(super::support::body_text(&request).contains("s3cr3t-value"));
    // A server that echoes the request back in an error must not leak it through us.
    let echoed = format!(
        r#"{{"access_token":"tok-secret","refresh_token":"ref-secret","request":{}}}"#,
        super::support::body_text(&request)
    );
    for status in [200, 400, 500] {
        let shown = op
            .parse_response(&json(status, &echoed))
            .unwrap_err()
            .to_string();
        for secret in ["s3cr3t-value", "code-123", "tok-secret", "ref-secret"] {
            assert!(
                !shown.contains(secret),
                "{secret} leaked at {status}: {shown}"
            );
        }
    }
}

#[test]
fn server_texts_in_error_messages_are_one_line_short_and_redacted() {
    let echoed = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    let body = serde_json::json!({
        "error": "invalid_grant",
        "error_description": format!("refresh token {echoed} is\nnot valid{}", " padding".repeat(100)),
        "error_details": {"reason": format!("revoked\r\n{echoed}"), "token": echoed},
    })
    .to_string();
    let config = sandbox();
    let op = config.refresh(RefreshToken::new("r"));
    let error = api(op.parse_response(&json(400, &body)).unwrap_err());
    // The fields keep what the server sent.
    assert!(error.description.as_deref().unwrap().contains(echoed));
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(echoed), "{shown}");
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert!(
            shown.contains("refresh token <redacted> is not valid"),
            "{shown}"
        );
        assert!(shown.contains("revoked <redacted>"), "{shown}");
        assert!(shown.len() < 900, "{} characters: {shown}", shown.len());
    }
    // Debug names the other detail keys, not their values.
    assert!(format!("{error:?}").contains("\"token\""));
}
