//! Error answers name fields but never show a value of the request (issue 14): the
//! Worldline form errors, the TrueLayer JSON errors, the refused scopes.

#![allow(clippy::unwrap_used)]

mod support;

use obauth_mock::{
    MockServer, TRUELAYER_CLIENT_ID, TRUELAYER_CLIENT_SECRET, TRUELAYER_REDIRECT_URI,
    WORLDLINE_CLIENT_ID, WORLDLINE_CLIENT_SECRET, WORLDLINE_REALM,
};
use serde_json::json;
use support::{Response, post_json, send, token};

/// A value no answer may contain.
const SECRET: &str = "S3cr3tValue-0f-a-field";

fn worldline(mock: &MockServer, form: &str) -> Response {
    send(
        mock,
        "POST",
        &format!("/auth/realms/{WORLDLINE_REALM}/protocol/openid-connect/token"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

fn base_form() -> String {
    format!(
        "grant_type=client_credentials&scope=VOP&client_id={WORLDLINE_CLIENT_ID}&client_secret={WORLDLINE_CLIENT_SECRET}"
    )
}

/// A 400 whose body never contains any of `hidden`, with its `error_description`.
fn refused(response: &Response, error: &str, hidden: &[&str]) -> String {
    assert_eq!(response.status, 400, "{}", response.body);
    for hidden in hidden {
        assert!(
            !response.body.contains(hidden),
            "{hidden:?} echoed: {}",
            response.body
        );
    }
    let body = response.json();
    assert_eq!(body["error"], error, "{}", response.body);
    // TrueLayer says why in `error_details.reason`, Worldline in `error_description`.
    body["error_details"]["reason"]
        .as_str()
        .or(body["error_description"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_mock_takes_its_own_form() {
    let mock = MockServer::start();
    let answer = worldline(&mock, &base_form());
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn form_errors_name_the_field_and_never_show_a_value() {
    let mock = MockServer::start();
    let form = base_form();

    // An unknown field with a plain name: named, its value not shown.
    let answer = worldline(&mock, &format!("{form}&extra_field={SECRET}"));
    let why = refused(&answer, "invalid_request", &[SECRET]);
    assert_eq!(why, "unexpected field `extra_field`");

    // A repeated field: named, neither value shown.
    let answer = worldline(&mock, &format!("{form}&client_secret={SECRET}"));
    let why = refused(
        &answer,
        "invalid_request",
        &[SECRET, WORLDLINE_CLIENT_SECRET],
    );
    assert_eq!(why, "`client_secret` appears more than once");
    let answer = worldline(&mock, &format!("{form}&scope={SECRET}"));
    let why = refused(&answer, "invalid_request", &[SECRET]);
    assert_eq!(why, "`scope` appears more than once");

    // A secret with an unencoded `&`: its tail becomes a field name, which is not shown.
    let answer = worldline(
        &mock,
        "grant_type=client_credentials&scope=VOP&client_id=c&client_secret=p4ss&w0rd/with+plus=x",
    );
    let why = refused(&answer, "invalid_request", &["w0rd", "plus", "p4ss"]);
    assert_eq!(why, "unexpected field (a name of 14 bytes, not shown)");

    // A whole token as a name (a body of one bare value): too long to show.
    let token_like = "tl-rt-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let answer = worldline(&mock, &format!("{token_like}&{form}"));
    let why = refused(&answer, "invalid_request", &[token_like, "AAAAAAAAAA"]);
    assert!(why.starts_with("unexpected field (a name of"), "{why}");

    // A name with markup or quotes: not shown.
    let answer = worldline(&mock, &format!("{form}&%3Cscript%3E%22x={SECRET}"));
    let why = refused(&answer, "invalid_request", &[SECRET, "<script"]);
    assert_eq!(why, "unexpected field (a name of 10 bytes, not shown)");

    // Missing fields and a wrong grant type: named, no value.
    let answer = worldline(&mock, "scope=VOP&client_id=c&client_secret=x");
    assert_eq!(
        refused(&answer, "invalid_request", &[]),
        "missing `grant_type`"
    );
    let answer = worldline(
        &mock,
        &format!("grant_type={SECRET}&scope=VOP&client_id=c&client_secret=x"),
    );
    refused(&answer, "unsupported_grant_type", &[SECRET]);
}

#[test]
fn refused_scopes_are_named_only_when_plain() {
    let mock = MockServer::start();
    let answer = worldline(
        &mock,
        &format!(
            "grant_type=client_credentials&scope=VOP+IDEAL+{SECRET}%21&client_id={WORLDLINE_CLIENT_ID}&client_secret={WORLDLINE_CLIENT_SECRET}"
        ),
    );
    let why = refused(&answer, "invalid_scope", &[SECRET]);
    assert_eq!(why, "Invalid scopes: IDEAL (1 not shown)");

    let answer = token(
        &mock,
        &json!({
            "grant_type": "client_credentials",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": TRUELAYER_CLIENT_SECRET,
            "scope": format!("payments {SECRET}/x"),
        }),
    );
    let why = refused(&answer, "invalid_scope", &[SECRET]);
    assert_eq!(why, "Invalid scopes: payments (1 not shown)");
}

#[test]
fn json_errors_name_the_field_and_never_show_a_value() {
    let mock = MockServer::start();
    let refresh = |extra: serde_json::Value| {
        let mut body = json!({
            "grant_type": "refresh_token",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": TRUELAYER_CLIENT_SECRET,
            "refresh_token": "tl-rt-x",
        });
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        token(&mock, &body)
    };

    // An unknown field: named, its value not shown.
    let why = refused(
        &refresh(json!({ "extra_field": SECRET })),
        "invalid_request",
        &[SECRET],
    );
    assert_eq!(
        why,
        "malformed token request: unexpected field `extra_field`"
    );
    // An unknown field whose name is not plain: not shown.
    let why = refused(
        &refresh(json!({ (format!("{SECRET} x")): 1 })),
        "invalid_request",
        &[SECRET],
    );
    assert!(why.contains("unexpected field (a name of"), "{why}");
    // A value of the wrong type (serde would quote it): not shown.
    let why = refused(
        &refresh(json!({ "client_id": 987_654_321 })),
        "invalid_request",
        &["987654321", TRUELAYER_CLIENT_SECRET],
    );
    assert!(why.contains("the value is not shown"), "{why}");
    // A grant type the endpoint does not know (serde would quote the variant).
    let why = refused(
        &refresh(json!({ "grant_type": SECRET })),
        "invalid_request",
        &[SECRET, TRUELAYER_CLIENT_SECRET],
    );
    assert!(why.contains("the value is not shown"), "{why}");
    // A missing field: named.
    let why = refused(
        &token(
            &mock,
            &json!({ "grant_type": "refresh_token", "client_id": TRUELAYER_CLIENT_ID, "client_secret": SECRET }),
        ),
        "invalid_request",
        &[SECRET],
    );
    assert_eq!(why, "malformed token request: missing `refresh_token`");
    // A repeated field (JSON allows writing one): named, neither value shown.
    let body = format!(
        r#"{{"grant_type":"refresh_token","client_id":"{TRUELAYER_CLIENT_ID}","client_secret":"{SECRET}","client_secret":"{SECRET}2","refresh_token":"r"}}"#
    );
    let answer = send(
        &mock,
        "POST",
        "/connect/token",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let why = refused(&answer, "invalid_request", &[SECRET]);
    assert_eq!(
        why,
        "malformed token request: `client_secret` appears more than once"
    );
    // Not JSON at all: where, not what.
    let answer = send(&mock, "POST", "/connect/token", &[], SECRET.as_bytes());
    let why = refused(&answer, "invalid_request", &[SECRET]);
    assert!(
        why.starts_with("malformed token request: not JSON"),
        "{why}"
    );

    // An auth link whose `response_type` is not `code` (serde would quote it), and one
    // whose `auth_inputs` (user passwords) are not strings.
    let link = json!({
        "response_type": SECRET,
        "client_id": TRUELAYER_CLIENT_ID,
        "redirect_uri": TRUELAYER_REDIRECT_URI,
        "scope": "info",
        "consent_id": "c",
        "provider_id": "ob-transferwise",
    });
    let why = refused(
        &post_json(&mock, "/v1/authuri", &link),
        "invalid_request",
        &[SECRET],
    );
    assert!(why.contains("the value is not shown"), "{why}");
    let mut link = link;
    link["response_type"] = "code".into();
    link["auth_inputs"] = json!({ "password": [SECRET] });
    refused(
        &post_json(&mock, "/v1/authuri", &link),
        "invalid_request",
        &[SECRET],
    );
    let answer = post_json(
        &mock,
        "/v1/reauthuri",
        &json!({ "response_type": "code", "refresh_token": 5, "redirect_uri": SECRET }),
    );
    refused(&answer, "invalid_request", &[SECRET]);
    let answer = post_json(&mock, "/api/debug", &json!({ "access_token": [SECRET] }));
    refused(&answer, "invalid_request", &[SECRET]);
}
