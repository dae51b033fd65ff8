//! The consent page a person sees in a browser: the hosted dialog's URL (or a link the mock
//! issued) shows the request with Allow and Deny; the decision goes back to the redirect
//! URI, as a redirect or, for `form_post`, an auto-submitting form.

#![allow(clippy::unwrap_used)]

mod support;

use obauth_mock::{MockServer, TRUELAYER_CLIENT_ID, TRUELAYER_CLIENT_SECRET};
use serde_json::json;
use support::{Response, send, token};

fn dialog_path(redirect_uri: &str, extra: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", TRUELAYER_CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "info accounts offline_access")
        .append_pair("state", "st-<1>")
        .append_pair("provider_id", "ob-mock")
        .finish();
    format!("/?{query}{extra}")
}

/// The form's target, read from the page as a browser would.
fn form_action(page: &Response) -> String {
    let start = page.body.find("action=\"").unwrap() + "action=\"".len();
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].to_owned()
}

fn decide(mock: &MockServer, page: &Response, decision: &str) -> Response {
    send(
        mock,
        "POST",
        &form_action(page),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("decision={decision}").as_bytes(),
    )
}

fn params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[test]
fn the_dialog_shows_a_consent_page_with_allow_and_deny_and_no_script() {
    let mock = MockServer::start();
    let page = send(
        &mock,
        "GET",
        &dialog_path("http://127.0.0.1:41000/callback", ""),
        &[],
        b"",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="allow""#), "{}", page.body);
    assert!(page.body.contains(r#"id="deny""#), "{}", page.body);
    assert!(page.body.contains("<li>accounts</li>"), "{}", page.body);
    assert!(page.body.contains("ob-mock"), "{}", page.body);
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(form_action(&page).starts_with("/mock/consent/"));
    // Showing the page decides nothing: no code yet, and the page can be shown again.
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 0);
    let again = send(&mock, "GET", &form_action(&page), &[], b"");
    assert_eq!(again.status, 200);
}

#[test]
fn allow_redirects_with_a_code_that_exchanges_and_the_state_unchanged() {
    let mock = MockServer::start();
    let redirect_uri = "http://127.0.0.1:41001/callback";
    let page = send(&mock, "GET", &dialog_path(redirect_uri, ""), &[], b"");
    let answer = decide(&mock, &page, "allow");
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.header("location").unwrap();
    assert!(location.starts_with(redirect_uri), "{location}");
    let params = params(location);
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("state").as_deref(), Some("st-<1>"));
    let code = get("code").unwrap();
    let exchanged = token(
        &mock,
        &json!({
            "grant_type": "authorization_code",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": TRUELAYER_CLIENT_SECRET,
            "redirect_uri": redirect_uri,
            "code": code,
        }),
    );
    assert_eq!(exchanged.status, 200, "{}", exchanged.body);
    // The decision is taken once.
    assert_eq!(decide(&mock, &page, "allow").status, 400);
}

#[test]
fn deny_redirects_with_access_denied_and_no_code() {
    let mock = MockServer::start();
    let page = send(
        &mock,
        "GET",
        &dialog_path("http://localhost:41002/callback", ""),
        &[],
        b"",
    );
    let answer = decide(&mock, &page, "deny");
    assert_eq!(answer.status, 303);
    let params = params(answer.header("location").unwrap());
    assert!(
        params.contains(&("error".into(), "access_denied".into())),
        "{params:?}"
    );
    assert!(params.contains(&("state".into(), "st-<1>".into())));
    assert!(!params.iter().any(|(name, _)| name == "code"));
}

#[test]
fn form_post_gives_an_auto_submitting_form_to_the_redirect_uri() {
    let mock = MockServer::start();
    let redirect_uri = "http://127.0.0.1:41003/callback";
    let page = send(
        &mock,
        "GET",
        &dialog_path(redirect_uri, "&response_mode=form_post"),
        &[],
        b"",
    );
    let answer = decide(&mock, &page, "allow");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .contains(&format!(r#"<form method="post" action="{redirect_uri}">"#)),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("document.forms[0].submit()"));
    assert!(answer.body.contains(r#"name="code""#));
    assert!(
        answer.body.contains(r#"name="state" value="st-&lt;1&gt;""#),
        "{}",
        answer.body
    );
}

#[test]
fn loopback_redirect_uris_match_on_any_port_but_not_another_path_or_host() {
    let mock = MockServer::start();
    for ok in [
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/callback",
        "http://localhost:8080/callback",
        "http://[::1]:8080/callback",
    ] {
        let page = send(&mock, "GET", &dialog_path(ok, ""), &[], b"");
        assert_eq!(page.status, 200, "{ok}: {}", page.body);
    }
    for refused in [
        "http://127.0.0.1:8080/other",
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.2:8080/callback",
        "https://127.0.0.1:8080/callback",
        "http://127.0.0.1:8080/callback/x",
    ] {
        let page = send(&mock, "GET", &dialog_path(refused, ""), &[], b"");
        assert_eq!(page.status, 400, "{refused}");
        assert!(
            page.body.contains("not registered"),
            "{refused}: {}",
            page.body
        );
    }
}

#[test]
fn a_decision_that_is_neither_allow_nor_deny_is_refused_and_decides_nothing() {
    let mock = MockServer::start();
    let page = send(
        &mock,
        "GET",
        &dialog_path("http://127.0.0.1:41004/callback", ""),
        &[],
        b"",
    );
    assert_eq!(decide(&mock, &page, "maybe").status, 400);
    assert_eq!(decide(&mock, &page, "allow").status, 303);
}
