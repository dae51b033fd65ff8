//! The mock under abuse (issue 14): what callers send cannot grow it without bound or hold
//! its connections open, and its `form_post` page posts to the redirect URI.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use obauth_mock::{MockServer, TRUELAYER_CLIENT_ID, TRUELAYER_REDIRECT_URI};
use serde_json::json;
use support::{post_json, send};

fn link_body(state: &str, form_post: bool) -> serde_json::Value {
    let mut link = json!({
        "response_type": "code",
        "client_id": TRUELAYER_CLIENT_ID,
        "redirect_uri": TRUELAYER_REDIRECT_URI,
        "scope": "info",
        "consent_id": "c",
        "provider_id": "ob-transferwise",
        "state": state,
    });
    if form_post {
        link["response_mode"] = "form_post".into();
    }
    link
}

#[test]
fn a_connection_that_never_finishes_its_headers_is_closed() {
    let mock = MockServer::start();
    mock.set_header_read_timeout(Duration::from_secs(1));
    let mut stream = TcpStream::connect(mock.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /connect/token HTTP/1.1\r\nHost: mock\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0; 256];
    // The mock ends the connection (an empty read, or a reset) instead of waiting.
    let ended = match stream.read(&mut buffer) {
        Ok(_) => true,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(ended, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    // The mock still serves others.
    let answer = send(&mock, "GET", "/api/providers", &[], b"");
    assert_eq!(answer.status, 200);
}

#[test]
fn consent_links_are_bounded_in_number_and_bytes_oldest_forgotten_first() {
    let mock = MockServer::start();
    let huge_state = "s".repeat(900 * 1024);
    let mut links = Vec::new();
    for _ in 0..20 {
        let answer = post_json(&mock, "/v1/authuri", &link_body(&huge_state, false));
        assert_eq!(answer.status, 200, "{}", answer.body);
        links.push(answer.json()["result"].as_str().unwrap().to_owned());
    }
    let (open, bytes) = mock.open_consents();
    assert!(bytes <= 8 * 1024 * 1024, "{bytes} bytes held");
    assert!(open < 20, "{open} links held");
    assert!(mock.approve(&links[0]).unwrap_err().contains("expired"));
    assert!(mock.approve(links.last().unwrap()).is_ok());
    // Used links are let go, with their bytes.
    let (after, after_bytes) = mock.open_consents();
    assert_eq!(after, open - 1);
    assert!(after_bytes < bytes);
}

#[test]
fn the_form_post_page_posts_to_the_redirect_uri() {
    let mock = MockServer::start();
    let answer = post_json(&mock, "/v1/authuri", &link_body("st-1", true));
    let link = answer.json()["result"].as_str().unwrap().to_owned();
    let path = link.strip_prefix(&mock.base_url()).unwrap();
    let consent = send(&mock, "GET", path, &[], b"");
    assert_eq!(consent.status, 200);
    let page = send(
        &mock,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"decision=allow",
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!(
            r#"<form method="post" action="{TRUELAYER_REDIRECT_URI}">"#
        )),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"name="state" value="st-1""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"name="code""#), "{}", page.body);
}
