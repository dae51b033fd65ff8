//! The async loopback redirect listener on real sockets, without a browser: a request
//! written by hand stands in for the browser's.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use obauth_async::core::CallbackError;
use obauth_async::core::types::ErrorCode;
use obauth_async::loopback::{ReceiveError, RedirectListener};
use obauth_test_peers::PageAnswer;

const WAIT: Duration = Duration::from_secs(20);

fn host(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

async fn any_port() -> RedirectListener {
    RedirectListener::bind("http://127.0.0.1/callback", "st-1")
        .await
        .unwrap()
}

/// The hand-written request, off the runtime's threads.
async fn loopback_request(
    addr: SocketAddr,
    method: &'static str,
    target: &str,
    host: &str,
    form: Option<&'static str>,
) -> std::io::Result<PageAnswer> {
    let (target, host) = (target.to_owned(), host.to_owned());
    tokio::task::spawn_blocking(move || {
        obauth_test_peers::loopback_request(addr, method, &target, &host, form)
    })
    .await
    .unwrap()
}

async fn get(listener: &RedirectListener, target: &str) -> PageAnswer {
    let addr = listener.local_addrs()[0];
    loopback_request(addr, "GET", target, &host(addr), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_ends_the_wait_with_the_code_and_the_browser_gets_a_page() {
    let mut listener = any_port().await;
    let port = listener.local_addrs()[0].port();
    assert_ne!(port, 0);
    assert_eq!(
        listener.redirect_uri(),
        format!("http://127.0.0.1:{port}/callback")
    );
    let page = get(&listener, "/callback?code=c-1&state=st-1").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("You can close this tab"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("c-1"));
    let callback = listener.wait(WAIT).await.unwrap();
    assert_eq!(callback.code.expose_secret(), "c-1");
    // Taken once.
    assert!(matches!(
        listener.wait(WAIT).await,
        Err(ReceiveError::AlreadyTaken)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_callback_is_taken_from_the_posted_form() {
    let mut listener = any_port().await;
    let addr = listener.local_addrs()[0];
    let page = loopback_request(
        addr,
        "POST",
        "/callback",
        &format!("localhost:{}", addr.port()),
        Some("code=c-form&state=st-1"),
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-form"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_mismatch_is_refused_with_a_page_and_the_wait_goes_on_for_the_real_one() {
    let mut listener = any_port().await;
    let page = get(&listener, "/callback?code=c-1&state=forged").await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("does not match"), "{}", page.body);
    assert!(matches!(
        listener.wait(Duration::from_millis(300)).await,
        Err(ReceiveError::TimedOut { .. })
    ));
    assert_eq!(listener.refused(), vec![CallbackError::StateMismatch]);
    assert_eq!(
        get(&listener, "/callback?code=c-real&state=st-1")
            .await
            .status,
        200
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-real"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_the_dialogs_error() {
    let mut listener = any_port().await;
    let page = get(&listener, "/callback?error=access_denied&state=st-1").await;
    assert!(page.body.contains("access_denied"), "{}", page.body);
    match listener.wait(WAIT).await {
        Err(ReceiveError::Callback(CallbackError::Denied { code, .. })) => {
            assert_eq!(code, ErrorCode::AccessDenied);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_neither_code_nor_error_is_a_missing_code() {
    let mut listener = any_port().await;
    assert_eq!(get(&listener, "/callback?state=st-1").await.status, 400);
    assert!(matches!(
        listener.wait(WAIT).await,
        Err(ReceiveError::Callback(CallbackError::MissingParameter(
            "code"
        )))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_and_a_second_callback_after_success_are_refused() {
    let mut listener = any_port().await;
    assert_eq!(
        get(&listener, "/callback?code=c-1&state=st-1").await.status,
        200
    );
    let callback = listener.wait(WAIT).await.unwrap();
    let replay = get(&listener, "/callback?code=c-1&state=st-1").await;
    assert_eq!(replay.status, 409);
    assert!(replay.body.contains("already received"), "{}", replay.body);
    let second = get(&listener, "/callback?code=c-2&state=st-1").await;
    assert_eq!(second.status, 409);
    assert!(
        second.body.contains("not waiting for another"),
        "{}",
        second.body
    );
    // The first outcome stands.
    assert_eq!(callback.code.expose_secret(), "c-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_times_out_and_can_go_on_and_stray_requests_do_not_end_it() {
    let mut listener = any_port().await;
    let started = Instant::now();
    match listener.wait(Duration::from_millis(200)).await {
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
    assert_eq!(get(&listener, "/favicon.ico").await.status, 404);
    let foreign = loopback_request(
        addr,
        "GET",
        "/callback?code=c&state=st-1",
        "evil.example",
        None,
    )
    .await
    .unwrap();
    assert_eq!(foreign.status, 400);
    assert!(matches!(
        listener.wait(Duration::from_millis(100)).await,
        Err(ReceiveError::TimedOut { .. })
    ));
    assert_eq!(
        get(&listener, "/callback?code=c-late&state=st-1")
            .await
            .status,
        200
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-late"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error_naming_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = RedirectListener::bind(&format!("http://127.0.0.1:{port}/callback"), "st-1")
        .await
        .unwrap_err();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_that_is_not_loopback_is_refused_before_binding() {
    let error = RedirectListener::bind("https://app.example/callback", "st-1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReceiveError::InvalidRedirectUri(_)),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_ends_the_wait_and_dropping_frees_the_port() {
    let mut listener = any_port().await;
    let addr = listener.local_addrs()[0];
    let canceller = listener.canceller();
    let cancelling = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    assert!(matches!(
        listener.wait(WAIT).await,
        Err(ReceiveError::Cancelled)
    ));
    cancelling.await.unwrap();
    drop(listener);
    // The aborted tasks drop their listeners on the runtime's next turns: the same URI
    // binds again within moments.
    let uri = format!("http://127.0.0.1:{}/callback", addr.port());
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match RedirectListener::bind(&uri, "st-2").await {
            Ok(again) => break again,
            Err(ReceiveError::AddressInUse { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert_eq!(again.local_addrs()[0], addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_listens_on_ipv4_and_on_ipv6_where_the_host_has_it() {
    let mut listener = RedirectListener::bind("http://localhost/callback", "st-1")
        .await
        .unwrap();
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
        .await
        .unwrap();
        assert_eq!(page.status, 404);
        let host = format!("[::1]:{}", v6.port());
        let page = loopback_request(*v6, "GET", "/callback?code=c-v6&state=st-1", &host, None)
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(
            listener.wait(WAIT).await.unwrap().code.expose_secret(),
            "c-v6"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_with_ipv6_taken_by_another_program_is_an_error_not_a_half_listener() {
    // A dev server on `[::1]` only would receive the redirect whenever the browser tries
    // `::1` first.
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        return; // no IPv6 on this host: nothing can hold it
    };
    let port = v6.local_addr().unwrap().port();
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        return; // the IPv4 side is taken too: not the case under test
    }
    let error = RedirectListener::bind(&format!("http://localhost:{port}/callback"), "st-1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReceiveError::AddressInUse { addr } if addr.is_ipv6() && addr.port() == port),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_request_is_cut_off_at_the_connection_limit() {
    use std::io::{Read as _, Write as _};
    let mut listener = any_port().await;
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
    let cut_after = tokio::task::spawn_blocking(move || trickler.join().unwrap())
        .await
        .unwrap();
    assert!(
        cut_after >= Duration::from_secs(9) && cut_after < Duration::from_secs(20),
        "cut off after {cut_after:?}"
    );
    // The listener still serves the real callback.
    assert_eq!(
        get(&listener, "/callback?code=c-1&state=st-1").await.status,
        200
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_redirects_is_recorded_up_to_a_bound_and_ends_nothing() {
    let mut listener = any_port().await;
    for n in 0..80 {
        let page = get(&listener, &format!("/callback?code=c-{n}&state=forged-{n}")).await;
        assert_eq!(page.status, 400);
    }
    assert_eq!(listener.refused().len(), 64);
    assert_eq!(
        get(&listener, "/callback?code=c-real&state=st-1")
            .await
            .status,
        200
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-real"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_wait_ends_the_next_wait() {
    let mut listener = any_port().await;
    listener.canceller().cancel();
    assert!(matches!(
        listener.wait(WAIT).await,
        Err(ReceiveError::Cancelled)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_to_be_accepted_and_are_then_served() {
    // 32 silent connections hold every slot; the callback after them is neither reset nor
    // refused: it waits to be accepted, and is served once they hang up (after 2 s).
    let mut listener = any_port().await;
    let addr = listener.local_addrs()[0];
    let silent: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let hang_up = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(silent);
    });
    let started = Instant::now();
    let page = get(&listener, "/callback?code=c-queued&state=st-1").await;
    hang_up.join().unwrap();
    assert_eq!(page.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "served before a slot was free: {:?}",
        started.elapsed()
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_leaves_a_later_callback_to_the_next_wait() {
    let mut listener = any_port().await;
    // The caller stops waiting (its future is dropped by the timeout around it).
    assert!(
        tokio::time::timeout(Duration::from_millis(100), listener.wait(WAIT))
            .await
            .is_err()
    );
    assert_eq!(
        get(&listener, "/callback?code=c-later&state=st-1")
            .await
            .status,
        200
    );
    assert_eq!(
        listener.wait(WAIT).await.unwrap().code.expose_secret(),
        "c-later"
    );
}
