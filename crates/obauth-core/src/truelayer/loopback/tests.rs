#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::{Request, StatusCode};
use obauth_types::ErrorCode;

use super::*;

const PORT: u16 = 8765;

fn receiver() -> RedirectReceiver {
    let redirect = LoopbackRedirect::parse("http://127.0.0.1:8765/callback").unwrap();
    RedirectReceiver::new(&redirect, PORT, "st-1")
}

fn get(target: &str) -> Request<Vec<u8>> {
    Request::get(target)
        .header("host", format!("127.0.0.1:{PORT}"))
        .body(Vec::new())
        .unwrap()
}

fn post_form(target: &str, body: &str) -> Request<Vec<u8>> {
    Request::post(target)
        .header("host", format!("localhost:{PORT}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn text(reply: &Reply) -> String {
    String::from_utf8(reply.response.body().clone()).unwrap()
}

#[test]
fn loopback_redirect_uris_are_checked_and_keep_their_path_and_query() {
    let redirect = LoopbackRedirect::parse("http://127.0.0.1:8080/cb?tenant=a").unwrap();
    assert_eq!(redirect.port(), Some(8080));
    assert_eq!(redirect.path(), "/cb");
    assert_eq!(
        redirect.listen_addrs(),
        vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        redirect.redirect_uri(8080),
        "http://127.0.0.1:8080/cb?tenant=a"
    );
    // Sent as written, for a server that compares character by character.
    let bare = LoopbackRedirect::parse("http://LocalHost:3000").unwrap();
    assert_eq!(bare.redirect_uri(3000), "http://LocalHost:3000");
    assert_eq!(bare.path(), "/");

    // No port: any free one (RFC 8252 §7.3), and the URI sent names the one bound.
    let any = LoopbackRedirect::parse("http://127.0.0.1/callback").unwrap();
    assert_eq!(any.port(), None);
    assert_eq!(any.listen_addrs()[0].port(), 0);
    assert_eq!(any.redirect_uri(41234), "http://127.0.0.1:41234/callback");

    let localhost = LoopbackRedirect::parse("http://LocalHost:9000/callback").unwrap();
    assert_eq!(
        localhost.listen_addrs(),
        vec![
            "127.0.0.1:9000".parse::<SocketAddr>().unwrap(),
            "[::1]:9000".parse::<SocketAddr>().unwrap()
        ]
    );
    assert_eq!(
        localhost.redirect_uri(9000),
        "http://LocalHost:9000/callback"
    );
    let v6 = LoopbackRedirect::parse("http://[::1]:9000/").unwrap();
    assert_eq!(
        v6.listen_addrs(),
        vec!["[::1]:9000".parse::<SocketAddr>().unwrap()]
    );
    assert!(LoopbackRedirect::parse("http://127.0.0.2:9000/cb").is_ok());
}

#[test]
fn a_redirect_uri_the_receiver_cannot_serve_is_refused_with_the_reason() {
    for (uri, why) in [
        ("https://127.0.0.1:8080/cb", "plain http"),
        (
            "http://example.com:8080/cb",
            "127.0.0.1, [::1] or localhost",
        ),
        ("http://10.0.0.1:8080/cb", "127.0.0.1, [::1] or localhost"),
        ("http://[::2]:8080/cb", "127.0.0.1, [::1] or localhost"),
        ("http://user:pw@127.0.0.1:8080/cb", "user info"),
        ("http://127.0.0.1:8080/cb#frag", "fragment"),
        ("http://127.0.0.1:0/cb", "1-65535"),
        ("http://127.0.0.1:65536/cb", "1-65535"),
        ("http://127.0.0.1:99999/cb", "1-65535"),
        ("http://127.0.0.1:80a/cb", "1-65535"),
        ("http://127.0.0.1:/cb", "1-65535"),
        ("/callback", "plain http"),
        ("not a uri", "not a valid URI"),
    ] {
        let error = LoopbackRedirect::parse(uri).unwrap_err();
        assert_eq!(error.what(), "redirect_uri", "{uri}");
        assert!(error.problem().contains(why), "{uri}: {error}");
    }
}

#[test]
fn the_reader_waits_for_the_whole_request_however_it_is_split() {
    let wire = b"POST /callback HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\n\r\ncode=c-1&state=st-1&x";
    for split in [1, 7, 40, wire.len() - 1] {
        let mut reader = RequestReader::new();
        assert!(reader.push(&wire[..split]).unwrap().is_none(), "{split}");
        assert_eq!(reader.finish(), Err(ReadError::Truncated));
        let request = reader.push(&wire[split..]).unwrap().unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/callback");
        assert_eq!(request.body(), b"code=c-1&state=st-1&x");
    }
    assert_eq!(RequestReader::new().finish(), Ok(()));
}

#[test]
fn the_reader_refuses_what_it_cannot_hold_or_read() {
    let push = |bytes: &[u8]| {
        RequestReader::new()
            .push(bytes)
            .map(|request| request.is_some())
    };
    assert_eq!(push(b"\x16\x03\x01 hello"), Err(ReadError::Malformed));
    assert_eq!(
        push(b"POST /cb HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(ReadError::Chunked)
    );
    assert_eq!(
        push(b"POST /cb HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"),
        Err(ReadError::BodyTooLarge)
    );
    assert_eq!(
        push(b"POST /cb HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Err(ReadError::Malformed)
    );
    assert_eq!(
        push(b"POST /cb HTTP/1.1\r\nContent-Length: nine\r\n\r\n"),
        Err(ReadError::Malformed)
    );
    let mut endless = b"GET /cb HTTP/1.1\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 1));
    assert_eq!(push(&endless), Err(ReadError::HeadTooLarge));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        push(format!("GET /cb HTTP/1.1\r\n{many}\r\n").as_bytes()),
        Err(ReadError::HeadTooLarge)
    );
    for error in [
        ReadError::Malformed,
        ReadError::HeadTooLarge,
        ReadError::BodyTooLarge,
        ReadError::Chunked,
        ReadError::Truncated,
    ] {
        assert!(error.response().status().is_client_error(), "{error}");
    }
}

#[test]
fn a_query_callback_with_the_right_state_ends_the_wait_with_the_code() {
    let mut receiver = receiver();
    assert!(!receiver.is_finished());
    let reply = receiver.respond(&get("/callback?code=c-secret-1&state=st-1&scope=info"));
    assert_eq!(reply.response.status(), StatusCode::OK);
    let Event::Received(Ok(callback)) = &reply.event else {
        panic!("{:?}", reply.event)
    };
    assert_eq!(callback.code.expose_secret(), "c-secret-1");
    assert!(receiver.is_finished());
    let page = text(&reply);
    assert!(page.contains("You can close this tab"), "{page}");
    assert!(
        !page.contains("c-secret-1"),
        "the page shows the code: {page}"
    );
    let headers = reply.response.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
}

#[test]
fn a_form_post_callback_is_read_from_the_posted_form() {
    let mut receiver = receiver();
    let reply = receiver.respond(&post_form("/callback", "code=c-2&state=st-1"));
    let Event::Received(Ok(callback)) = reply.event else {
        panic!("{:?}", reply.event)
    };
    assert_eq!(callback.code.expose_secret(), "c-2");
    // A post that is not a form is not a callback, and the wait goes on.
    let mut receiver = self::receiver();
    let mut json = post_form("/callback", "{}");
    json.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    let reply = receiver.respond(&json);
    assert_eq!(reply.response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(matches!(reply.event, Event::Ignored));
    assert!(!receiver.is_finished());
}

#[test]
fn a_denial_ends_the_wait_with_the_dialogs_error_and_the_page_says_so() {
    let mut receiver = receiver();
    let reply = receiver.respond(&get(
        "/callback?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E%1b[2J&state=st-1",
    ));
    let Event::Received(Err(CallbackError::Denied { code, .. })) = &reply.event else {
        panic!("{:?}", reply.event)
    };
    assert_eq!(*code, ErrorCode::AccessDenied);
    let page = text(&reply);
    assert!(page.contains("access_denied"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "not escaped: {page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains('\u{1b}'), "{page}");
}

#[test]
fn a_wrong_or_missing_state_is_refused_and_the_wait_goes_on_for_the_right_one() {
    let mut receiver = receiver();
    for query in [
        "code=c-1&state=other",
        "code=c-1",
        "",
        "code=c-1&state=",
        "error=access_denied&state=other",
        "code=c-1&state=st-1&state=st-1",
    ] {
        let reply = receiver.respond(&get(&format!("/callback?{query}")));
        assert_eq!(reply.response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(
            matches!(
                reply.event,
                Event::Refused(CallbackError::StateMismatch | CallbackError::DuplicateParameter(_))
            ),
            "{query}: {:?}",
            reply.event
        );
        let page = text(&reply);
        assert!(page.contains("still waiting"), "{query}: {page}");
        assert!(!receiver.is_finished(), "{query} ended the wait");
    }
    assert!(text(&receiver.respond(&get("/callback?state=x"))).contains("does not match"));
    let real = receiver.respond(&get("/callback?code=c-real&state=st-1"));
    let Event::Received(Ok(callback)) = &real.event else {
        panic!("{:?}", real.event)
    };
    assert_eq!(callback.code.expose_secret(), "c-real");
}

#[test]
fn a_question_mark_inside_a_value_is_part_of_the_value() {
    let mut receiver = receiver();
    let reply = receiver.respond(&get(
        "/callback?error=access_denied&error_description=why?&state=st-1",
    ));
    let Event::Received(Err(CallbackError::Denied { description, .. })) = &reply.event else {
        panic!("{:?}", reply.event)
    };
    assert_eq!(description.as_deref(), Some("why?"));
    let mut receiver = self::receiver();
    let reply = receiver.respond(&post_form("/callback", "code=c?1&state=st-1"));
    let Event::Received(Ok(callback)) = &reply.event else {
        panic!("{:?}", reply.event)
    };
    assert_eq!(callback.code.expose_secret(), "c?1");
}

#[test]
fn a_host_without_a_port_is_port_80() {
    let redirect = LoopbackRedirect::parse("http://localhost:80/callback").unwrap();
    let mut receiver = RedirectReceiver::new(&redirect, 80, "st-1");
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let request = Request::get("/favicon.ico")
            .header("host", host)
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            receiver.respond(&request).response.status(),
            StatusCode::NOT_FOUND,
            "{host}"
        );
    }
    let request = Request::get("/callback?code=c&state=st-1")
        .header("host", "[::1]")
        .body(Vec::new())
        .unwrap();
    assert!(matches!(
        receiver.respond(&request).event,
        Event::Received(Ok(_))
    ));
    // On another port, a portless Host is not ours.
    let mut receiver = self::receiver();
    let request = Request::get("/callback?code=c&state=st-1")
        .header("host", "127.0.0.1")
        .body(Vec::new())
        .unwrap();
    assert!(matches!(receiver.respond(&request).event, Event::Ignored));
}

#[test]
fn the_reader_never_shows_what_it_holds() {
    let mut reader = RequestReader::new();
    reader
        .push(b"GET /callback?code=c-secret&state=st-1 HTTP/1.1\r\n")
        .unwrap();
    let shown = format!("{reader:?}");
    assert!(!shown.contains("c-secret"), "{shown}");
    assert!(shown.contains("buffered"), "{shown}");
}

#[test]
fn a_callback_with_neither_code_nor_error_is_a_missing_code() {
    let mut receiver = receiver();
    let reply = receiver.respond(&get("/callback?state=st-1&scope=info"));
    assert!(
        matches!(
            reply.event,
            Event::Received(Err(CallbackError::MissingParameter("code")))
        ),
        "{:?}",
        reply.event
    );
    assert!(text(&reply).contains("missing `code`"));
}

#[test]
fn a_replayed_callback_and_a_second_one_are_refused_and_the_first_outcome_stands() {
    let mut receiver = receiver();
    let first = receiver.respond(&get("/callback?code=c-1&state=st-1"));
    assert!(matches!(first.event, Event::Received(Ok(_))));
    let replay = receiver.respond(&get("/callback?code=c-1&state=st-1"));
    assert_eq!(replay.response.status(), StatusCode::CONFLICT);
    assert!(matches!(
        replay.event,
        Event::Refused(CallbackError::Replayed)
    ));
    assert!(text(&replay).contains("already received"));
    let second = receiver.respond(&get("/callback?code=c-2&state=st-1"));
    assert_eq!(second.response.status(), StatusCode::CONFLICT);
    assert!(matches!(
        second.event,
        Event::Refused(CallbackError::AlreadyFinished)
    ));
    // The same after a failure: a denial is not undone by a later code.
    let mut receiver = self::receiver();
    receiver.respond(&get("/callback?error=access_denied&state=st-1"));
    let late = receiver.respond(&get("/callback?code=c-3&state=st-1"));
    assert!(matches!(
        late.event,
        Event::Refused(CallbackError::AlreadyFinished)
    ));
}

#[test]
fn other_paths_methods_and_hosts_are_answered_without_ending_the_wait() {
    let mut receiver = receiver();
    let favicon = receiver.respond(&get("/favicon.ico"));
    assert_eq!(favicon.response.status(), StatusCode::NOT_FOUND);
    assert!(matches!(favicon.event, Event::Ignored));
    let put = Request::put("/callback?code=c&state=st-1")
        .header("host", format!("127.0.0.1:{PORT}"))
        .body(Vec::new())
        .unwrap();
    let reply = receiver.respond(&put);
    assert_eq!(reply.response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.response.headers()["allow"], "GET, POST");
    for host in [
        Some("evil.example:8765"),
        Some("127.0.0.1:9999"),
        Some("127.0.0.1"),
        None,
    ] {
        let mut request = get("/callback?code=c&state=st-1");
        request.headers_mut().remove("host");
        if let Some(host) = host {
            request
                .headers_mut()
                .insert("host", HeaderValue::from_static(host));
        }
        let reply = receiver.respond(&request);
        assert_eq!(reply.response.status(), StatusCode::BAD_REQUEST, "{host:?}");
        assert!(matches!(reply.event, Event::Ignored), "{host:?}");
    }
    assert!(!receiver.is_finished());
    let ok = receiver.respond(&get("/callback?code=c&state=st-1"));
    assert!(matches!(ok.event, Event::Received(Ok(_))));
}

#[test]
fn an_issuer_when_required_must_match() {
    let redirect = LoopbackRedirect::parse("http://127.0.0.1:8765/callback").unwrap();
    let mut receiver =
        RedirectReceiver::new(&redirect, PORT, "st-1").with_issuer("https://auth.example");
    let reply = receiver.respond(&get(
        "/callback?code=c&state=st-1&iss=https%3A%2F%2Fevil.example",
    ));
    assert!(matches!(
        reply.event,
        Event::Received(Err(CallbackError::IssuerMismatch))
    ));
    assert!(!format!("{receiver:?}").contains("st-1"));
}

#[test]
fn an_encoded_response_reads_back_as_the_same_response() {
    let reply = receiver().respond(&get("/callback?code=c&state=st-1"));
    let bytes = encode_response(&reply.response);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = parsed.parse(&bytes).unwrap() else {
        panic!("partial")
    };
    assert_eq!(parsed.code, Some(200));
    assert_eq!(parsed.reason, Some("OK"));
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name == "content-length")
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .unwrap();
    assert_eq!(length, reply.response.body().len());
    assert_eq!(&bytes[head..], reply.response.body().as_slice());
    assert!(
        parsed
            .headers
            .iter()
            .any(|h| h.name == "connection" && h.value == b"close")
    );
}

#[test]
fn only_the_first_address_or_one_held_by_another_program_is_a_fatal_bind_failure() {
    use std::io::{Error, ErrorKind};
    let in_use = Error::from(ErrorKind::AddrInUse);
    let unavailable = Error::from(ErrorKind::AddrNotAvailable);
    assert!(LoopbackRedirect::bind_failure_is_fatal(0, &unavailable));
    assert!(LoopbackRedirect::bind_failure_is_fatal(0, &in_use));
    assert!(LoopbackRedirect::bind_failure_is_fatal(1, &in_use));
    assert!(!LoopbackRedirect::bind_failure_is_fatal(1, &unavailable));
}

#[test]
fn refusals_made_while_waiting_are_kept_up_to_a_bound() {
    let mut refusals = Refusals::default();
    let mut receiver = receiver();
    for n in 0..(Refusals::MAX + 10) {
        let reply = receiver.respond(&get(&format!("/callback?code=c&state=forged-{n}")));
        refusals.record(&reply.event);
    }
    assert_eq!(refusals.all().len(), Refusals::MAX);
    assert!(
        refusals
            .all()
            .iter()
            .all(|error| *error == CallbackError::StateMismatch)
    );
    // The outcome and what comes after it are not refusals to report.
    let mut refusals = Refusals::default();
    let ok = receiver.respond(&get("/callback?code=c&state=st-1"));
    refusals.record(&ok.event);
    let replay = receiver.respond(&get("/callback?code=c&state=st-1"));
    refusals.record(&replay.event);
    let ignored = receiver.respond(&get("/favicon.ico"));
    refusals.record(&ignored.event);
    assert!(refusals.all().is_empty());
}
