//! What a hostile or broken token server sends instead of a token, and what obauth must
//! make of it: the table both bindings' end-to-end suites run their clients through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use obauth_core::error::UnexpectedKind;
use obauth_core::{Error, TransportErrorKind};
use obauth_mock::Fault;

/// A hostile answer: its name, the fault that sends it, and what the error must be.
pub type Hostile = (&'static str, Fault, fn(&Error) -> bool);

/// What a hostile or broken server sends instead of a token, and what obauth must make of it.
pub fn hostile_answers(redirect_target: &str) -> Vec<Hostile> {
    use obauth_mock::Fault::Raw;
    let json = |body: &str| Raw {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    let unexpected = |error: &Error| matches!(error, Error::UnexpectedResponse(_));
    vec![
        (
            "an HTML page under 200",
            Raw {
                status: 200,
                headers: vec![("content-type".into(), "text/html".into())],
                body: b"<html><body>Welcome!</body></html>".to_vec(),
            },
            unexpected,
        ),
        (
            "JSON missing access_token",
            json(r#"{"token_type":"Bearer","expires_in":3600}"#),
            unexpected,
        ),
        (
            "expires_in negative",
            json(r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#),
            unexpected,
        ),
        (
            "expires_in huge",
            json(r#"{"access_token":"a","token_type":"Bearer","expires_in":18446744073709551616}"#),
            unexpected,
        ),
        (
            "expires_in a word",
            json(r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#),
            unexpected,
        ),
        (
            "invalid UTF-8",
            Raw {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body:
                    b"{\"access_token\":\"\xff\xfe\",\"token_type\":\"Bearer\",\"expires_in\":3600}"
                        .to_vec(),
            },
            unexpected,
        ),
        (
            "JSON nested 100,000 deep",
            json(&"[".repeat(100_000)),
            unexpected,
        ),
        (
            "a gzip body (compression is off: not inflated)",
            Raw {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("content-encoding".into(), "gzip".into()),
                ],
                body: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xed, 0xc1, 1, 1, 0, 0],
            },
            unexpected,
        ),
        (
            "a 50 MB body",
            Fault::OversizedBody(50 * 1024 * 1024),
            |error| matches!(error, Error::Transport(t) if t.kind() == TransportErrorKind::BodyTooLarge),
        ),
        (
            "a truncated body",
            Fault::TruncatedBody,
            |error| matches!(error, Error::Transport(t) if t.kind() == TransportErrorKind::Io),
        ),
        (
            "a redirect",
            Raw {
                status: 307,
                headers: vec![(
                    "location".into(),
                    format!("{redirect_target}/connect/token"),
                )],
                body: Vec::new(),
            },
            |error| {
                matches!(error, Error::UnexpectedResponse(u)
                    if u.kind == UnexpectedKind::Redirect)
            },
        ),
        (
            "a slowloris body, a byte a second",
            Fault::Trickle(Duration::from_secs(1)),
            |error| matches!(error, Error::Timeout(_)),
        ),
    ]
}

/// A listener that counts the connections it is offered (and answers none).
pub fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("the listener's address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}"), connections)
}
