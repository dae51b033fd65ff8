//! A minimal HTTP/1.1 client over `std::net` for talking to the mock, and the TrueLayer
//! flows the tests share. No client library: the mock is what is under test.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use obauth_mock::{
    MockServer, TRUELAYER_CLIENT_ID, TRUELAYER_CLIENT_SECRET, TRUELAYER_REDIRECT_URI,
};
use serde_json::{Value, json};

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The status line and headers, as sent.
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Response {
    /// A header's value (name in any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub(crate) fn send(
    mock: &MockServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(mock.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        mock.addr(),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `POST path` with a JSON body.
pub(crate) fn post_json(mock: &MockServer, path: &str, body: &Value) -> Response {
    send(
        mock,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// `POST /connect/token` with a JSON body.
pub(crate) fn token(mock: &MockServer, body: &Value) -> Response {
    post_json(mock, "/connect/token", body)
}

/// The tokens of a 200 token answer: (access token, refresh token).
pub(crate) fn tokens(response: &Response) -> (String, String) {
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Consent on the hosted dialog, then the code exchange: a new connection and a new grant.
pub(crate) fn connect(mock: &MockServer) -> (String, String) {
    let dialog = format!(
        "{}/?response_type=code&client_id={TRUELAYER_CLIENT_ID}&redirect_uri={}&scope=info%20accounts%20offline_access&provider_id=ob-transferwise",
        mock.base_url(),
        TRUELAYER_REDIRECT_URI,
    );
    let back = mock.approve(&dialog).unwrap();
    tokens(&exchange(mock, &code_of(&back)))
}

/// The `code` of a redirect back.
pub(crate) fn code_of(redirect: &str) -> String {
    let (_, query) = redirect.split_once('?').expect("a query");
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code.into_owned())
        .expect("a code")
}

/// Exchanges an authorization code.
pub(crate) fn exchange(mock: &MockServer, code: &str) -> Response {
    token(
        mock,
        &json!({
            "grant_type": "authorization_code",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": TRUELAYER_CLIENT_SECRET,
            "code": code,
            "redirect_uri": TRUELAYER_REDIRECT_URI,
        }),
    )
}

/// Presents a refresh token.
pub(crate) fn refresh(mock: &MockServer, refresh_token: &str) -> Response {
    token(
        mock,
        &json!({
            "grant_type": "refresh_token",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": TRUELAYER_CLIENT_SECRET,
            "refresh_token": refresh_token,
        }),
    )
}

/// `DELETE /api/delete` with the bearer token: revokes the connection if it is accepted.
pub(crate) fn delete_credential(mock: &MockServer, access_token: &str) -> Response {
    send(
        mock,
        "DELETE",
        "/api/delete",
        &[("Authorization", &format!("Bearer {access_token}"))],
        b"",
    )
}

/// `POST /api/debug` with the access token: 200 if the mock accepts it.
pub(crate) fn create_debug_id(mock: &MockServer, access_token: &str) -> Response {
    post_json(mock, "/api/debug", &json!({ "access_token": access_token }))
}

/// Asserts a `400 {"error":"invalid_grant"}`.
pub(crate) fn assert_invalid_grant(response: &Response) {
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.json(), json!({ "error": "invalid_grant" }));
}
