//! The blocking loopback redirect listener on real sockets, without a browser: a request
//! written by hand stands in for the browser's.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use obauth_blocking::core::CallbackError;
use obauth_blocking::core::types::ErrorCode;
use obauth_blocking::loopback::{ReceiveError, RedirectListener};
use obauth_test_peers::loopback_request;

const WAIT: Duration = Duration::from_secs(20);

fn host(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

fn any_port() -> RedirectListener {
    RedirectListener::bind("http://127.0.0.1/callback", "st-1").unwrap()
}

fn get(listener: &RedirectListener, target: &str) -> obauth_test_peers::PageAnswer {
    let addr = listener.local_addrs()[0];
    loopback_request(addr, "GET", target, &host(addr), None).unwrap()
}

#[test]
fn a_callback_ends_the_wait_with_the_code_and_the_browser_gets_a_page() {
    let mut listener = any_port();
    let port = listener.local_addrs()[0].port();
    assert_ne!(port, 0);
    assert_eq!(
        listener.redirect_uri(),
        format!("http://127.0.0.1:{port}/callback")
    );
    let page = get(&listener, "/callback?code=c-1&state=st-1");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("You can close this tab"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("c-1"));
    let callback = listener.wait(WAIT).unwrap();
    assert_eq!(callback.code.expose_secret(), "c-1");
    // Taken once.
    assert!(matches!(
        listener.wait(WAIT),
        Err(ReceiveError::AlreadyTaken)
    ));
}

#[test]
fn a_form_post_callback_is_taken_from_the_posted_form() {
    let mut listener = any_port();
    let addr = listener.local_addrs()[0];
    let page = loopback_request(
        addr,
        "POST",
        "/callback",
        &format!("localhost:{}", addr.port()),
        Some("code=c-form&state=st-1"),
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-form");
}

#[test]
fn a_state_mismatch_is_refused_with_a_page_and_the_wait_goes_on_for_the_real_one() {
    let mut listener = any_port();
    let page = get(&listener, "/callback?code=c-1&state=forged");
    assert_eq!(page.status, 400);
    assert!(page.body.contains("does not match"), "{}", page.body);
    assert!(matches!(
        listener.wait(Duration::from_millis(300)),
        Err(ReceiveError::TimedOut { .. })
    ));
    assert_eq!(listener.refused(), vec![CallbackError::StateMismatch]);
    assert_eq!(
        get(&listener, "/callback?code=c-real&state=st-1").status,
        200
    );
    assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-real");
}

#[test]
fn a_denial_is_the_dialogs_error() {
    let mut listener = any_port();
    let page = get(&listener, "/callback?error=access_denied&state=st-1");
    assert!(page.body.contains("access_denied"), "{}", page.body);
    match listener.wait(WAIT) {
        Err(ReceiveError::Callback(CallbackError::Denied { code, .. })) => {
            assert_eq!(code, ErrorCode::AccessDenied);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_callback_with_neither_code_nor_error_is_a_missing_code() {
    let mut listener = any_port();
    assert_eq!(get(&listener, "/callback?state=st-1").status, 400);
    assert!(matches!(
        listener.wait(WAIT),
        Err(ReceiveError::Callback(CallbackError::MissingParameter(
            "code"
        )))
    ));
}

#[test]
fn a_replayed_callback_and_a_second_callback_after_success_are_refused() {
    let mut listener = any_port();
    assert_eq!(get(&listener, "/callback?code=c-1&state=st-1").status, 200);
    let callback = listener.wait(WAIT).unwrap();
    let replay = get(&listener, "/callback?code=c-1&state=st-1");
    assert_eq!(replay.status, 409);
    assert!(replay.body.contains("already received"), "{}", replay.body);
    let second = get(&listener, "/callback?code=c-2&state=st-1");
    assert_eq!(second.status, 409);
    assert!(
        second.body.contains("not waiting for another"),
        "{}",
        second.body
    );
    // The first outcome stands.
    assert_eq!(callback.code.expose_secret(), "c-1");
}

#[test]
fn the_wait_times_out_and_can_go_on_and_stray_requests_do_not_end_it() {
    let mut listener = any_port();
    let started = Instant::now();
    match listener.wait(Duration::from_millis(200)) {
        Err(error @ ReceiveError::TimedOut { .. }) => {
            assert!(error.to_string().contains("no redirect came back"));
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Silent connections (a browser's speculative ones) and other paths do not block or
    // end the wait.
    let addr = listener.local_addrs()[0];
    let _silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert_eq!(get(&listener, "/favicon.ico").status, 404);
    let foreign = loopback_request(
        addr,
        "GET",
        "/callback?code=c&state=st-1",
        "evil.example",
        None,
    )
    .unwrap();
    assert_eq!(foreign.status, 400);
    assert!(matches!(
        listener.wait(Duration::from_millis(100)),
        Err(ReceiveError::TimedOut { .. })
    ));
    assert_eq!(
        get(&listener, "/callback?code=c-late&state=st-1").status,
        200
    );
    assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-late");
}

#[test]
fn a_port_in_use_is_a_clear_error_naming_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error =
        RedirectListener::bind(&format!("http://127.0.0.1:{port}/callback"), "st-1").unwrap_err();
    assert!(
        matches!(error, ReceiveError::AddressInUse { addr } if addr.port() == port),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("port {port} is already in use")),
        "{error}"
    );
}

#[test]
fn a_redirect_uri_that_is_not_loopback_is_refused_before_binding() {
    let error = RedirectListener::bind("https://app.example/callback", "st-1").unwrap_err();
    assert!(
        matches!(error, ReceiveError::InvalidRedirectUri(_)),
        "{error:?}"
    );
}

#[test]
fn cancelling_ends_the_wait_and_dropping_frees_the_port() {
    let mut listener = any_port();
    let addr = listener.local_addrs()[0];
    let canceller = listener.canceller();
    let cancelling = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        canceller.cancel();
    });
    assert!(matches!(listener.wait(WAIT), Err(ReceiveError::Cancelled)));
    cancelling.join().unwrap();
    drop(listener);
    // The port is free again at once: the same URI binds.
    let again = RedirectListener::bind(
        &format!("http://127.0.0.1:{}/callback", addr.port()),
        "st-2",
    )
    .unwrap();
    assert_eq!(again.local_addrs()[0], addr);
}

#[test]
fn localhost_listens_on_ipv4_and_on_ipv6_where_the_host_has_it() {
    let mut listener = RedirectListener::bind("http://localhost/callback", "st-1").unwrap();
    let addrs = listener.local_addrs();
    assert!(addrs[0].is_ipv4());
    assert!(listener.redirect_uri().starts_with("http://localhost:"));
    let ipv6 = TcpListener::bind("[::1]:0").is_ok();
    assert_eq!(addrs.len(), if ipv6 { 2 } else { 1 });
    if let Some(v6) = addrs.get(1) {
        assert_eq!(v6.port(), addrs[0].port());
        let page = loopback_request(
            *v6,
            "GET",
            "/favicon.ico",
            &format!("[::1]:{}", v6.port()),
            None,
        )
        .unwrap();
        assert_eq!(page.status, 404);
        let host = format!("[::1]:{}", v6.port());
        let page =
            loopback_request(*v6, "GET", "/callback?code=c-v6&state=st-1", &host, None).unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-v6");
    }
}

#[test]
fn localhost_with_ipv6_taken_by_another_program_is_an_error_not_a_half_listener() {
    // A dev server on `[::1]` only would receive the redirect whenever the browser tries
    // `::1` first.
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        return; // no IPv6 on this host: nothing can hold it
    };
    let port = v6.local_addr().unwrap().port();
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        return; // the IPv4 side is taken too: not the case under test
    }
    let error =
        RedirectListener::bind(&format!("http://localhost:{port}/callback"), "st-1").unwrap_err();
    assert!(
        matches!(error, ReceiveError::AddressInUse { addr } if addr.is_ipv6() && addr.port() == port),
        "{error:?}"
    );
}

#[test]
fn a_client_that_trickles_its_request_is_cut_off_at_the_connection_limit() {
    use std::io::{Read as _, Write as _};
    let mut listener = any_port();
    let addr = listener.local_addrs()[0];
    let trickler = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(900)))
            .unwrap();
        let started = Instant::now();
        // A byte a second, never a whole request: cut off after 10 s, not kept for ever.
        for byte in b"GET /callback?code=c&state=st-1 HTTP/1.1\r\nHost: x\r\n"
            .iter()
            .cycle()
        {
            if stream.write_all(&[*byte]).is_err() {
                return started.elapsed();
            }
            let mut buffer = [0u8; 64];
            match stream.read(&mut buffer) {
                Ok(0) => return started.elapsed(),
                Ok(_) => {}
                Err(error)
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        || error.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
        }
        unreachable!()
    });
    let cut_after = trickler.join().unwrap();
    assert!(
        cut_after >= Duration::from_secs(9) && cut_after < Duration::from_secs(20),
        "cut off after {cut_after:?}"
    );
    // The listener still serves the real callback.
    assert_eq!(get(&listener, "/callback?code=c-1&state=st-1").status, 200);
    assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-1");
}

#[test]
fn a_flood_of_forged_redirects_is_recorded_up_to_a_bound_and_ends_nothing() {
    let mut listener = any_port();
    for n in 0..80 {
        let page = get(&listener, &format!("/callback?code=c-{n}&state=forged-{n}"));
        assert_eq!(page.status, 400);
    }
    assert_eq!(listener.refused().len(), 64);
    assert_eq!(
        get(&listener, "/callback?code=c-real&state=st-1").status,
        200
    );
    assert_eq!(listener.wait(WAIT).unwrap().code.expose_secret(), "c-real");
}

#[test]
fn a_cancel_before_the_wait_ends_the_next_wait() {
    let mut listener = any_port();
    listener.canceller().cancel();
    assert!(matches!(listener.wait(WAIT), Err(ReceiveError::Cancelled)));
}

#[test]
fn connections_beyond_the_limit_wait_to_be_accepted_and_are_then_served() {
    // 32 silent connections hold every slot; the callback after them is neither reset nor
    // refused: it waits to be accepted, and is served once they hang up (after 2 s).
    let mut listener = any_port();
    let addr = listener.local_addrs()[0];
    let silent: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let hang_up = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(silent);
    });
    let started = Instant::now();
    let page = get(&listener, "/callback?code=c-queued&state=st-1");
    hang_up.join().unwrap();
    assert_eq!(page.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "served before a slot was free: {:?}",
        started.elapsed()
    );
    assert_eq!(
        listener.wait(WAIT).unwrap().code.expose_secret(),
        "c-queued"
    );
}
