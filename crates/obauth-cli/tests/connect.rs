//! `obauth truelayer connect` without a browser: the mock's consent simulation plays the
//! person, a request written by hand plays the browser's redirect.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::{TempDir, obauth, start_connect};
use obauth_mock::MockServer;
use obauth_test_peers::loopback_request;

const SCOPE: &str = "info accounts offline_access";

fn connect_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "--scope",
        SCOPE,
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--provider-id",
        "ob-mock",
        "--wait",
        "30",
    ];
    args.extend_from_slice(extra);
    args
}

/// Follows a redirect back as the browser would: the request goes to the listener.
fn browser_follows(redirect: &str) -> obauth_test_peers::PageAnswer {
    let rest = redirect.strip_prefix("http://").unwrap();
    let (authority, target) = rest.split_at(rest.find('/').unwrap());
    let addr: SocketAddr = authority.parse().unwrap();
    loopback_request(addr, "GET", target, authority, None).unwrap()
}

#[test]
fn connect_saves_a_working_connection_and_prints_no_secret() {
    let dir = TempDir::new("ok");
    let mock = MockServer::start();
    // -vv: the exchange's span and events reach stderr too, and must show no secret.
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--connection", "alice", "-vv"]),
    );
    assert!(
        connecting.link.contains("code_challenge="),
        "{}",
        connecting.link
    );
    assert!(connecting.link.contains("provider_id=ob-mock"));
    let back = mock.approve(&connecting.link).unwrap();
    assert!(back.starts_with(&connecting.redirect_uri), "{back}");
    let page = browser_follows(&back);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You can close this tab"));
    let ended = connecting.finish();
    assert!(ended.status.success(), "{}\n{}", ended.stdout, ended.stderr);
    assert!(
        ended.stdout.contains("connected: alice"),
        "{}",
        ended.stdout
    );
    assert!(
        ended.stdout.contains("refresh token: saved"),
        "{}",
        ended.stdout
    );
    assert!(
        ended.stdout.contains("access token expires:"),
        "{}",
        ended.stdout
    );
    assert!(
        ended.stderr.contains("obauth.call{operation="),
        "{}",
        ended.stderr
    );
    for text in [&ended.stdout, &ended.stderr] {
        assert!(
            !text.contains("tl-at-") && !text.contains("tl-rt-"),
            "{text}"
        );
        assert!(
            !text.contains(obauth_mock::TRUELAYER_CLIENT_SECRET),
            "{text}"
        );
        assert!(!text.contains("tl-code-"), "{text}");
    }
    // The saved connection works: a refresh by name.
    let refreshed = obauth(
        &mock,
        &dir.store(),
        &[
            "truelayer",
            "token",
            "refresh",
            "--connection",
            "alice",
            "--output",
            "json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        refreshed.status.success(),
        "{}",
        String::from_utf8_lossy(&refreshed.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&refreshed.stdout).unwrap();
    assert!(mock.access_token_valid(json["access_token"].as_str().unwrap()));
    assert_eq!(mock.successful_refreshes(), 1);
}

#[test]
fn print_tokens_prints_them_and_json_output_is_one_document() {
    let dir = TempDir::new("print");
    let mock = MockServer::start();
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--print-tokens", "--output", "json"]),
    );
    browser_follows(&mock.approve(&connecting.link).unwrap());
    let ended = connecting.finish();
    assert!(ended.status.success(), "{}", ended.stderr);
    let json: serde_json::Value = serde_json::from_str(&ended.stdout).unwrap();
    assert!(mock.access_token_valid(json["access_token"].as_str().unwrap()));
    assert!(
        json["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("tl-rt-")
    );
    assert_eq!(json["refresh_token_saved"], false);
    assert_eq!(json["scope"], SCOPE);
    assert!(json["expires_in"].as_u64().unwrap() > 0);
}

#[test]
fn form_post_is_received_as_a_posted_form() {
    let dir = TempDir::new("form");
    let mock = MockServer::start();
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--connection", "bob", "--response-mode", "form_post"]),
    );
    assert!(connecting.link.contains("response_mode=form_post"));
    let form = mock.approve(&connecting.link).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", connecting.port()).parse().unwrap();
    let page = loopback_request(addr, "POST", "/callback", &addr.to_string(), Some(&form)).unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let ended = connecting.finish();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(ended.stdout.contains("connected: bob"));
}

#[test]
fn a_denial_is_exit_1_with_the_dialogs_error() {
    let dir = TempDir::new("deny");
    let mock = MockServer::start();
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--connection", "carol", "--output", "json"]),
    );
    let page = browser_follows(&mock.deny(&connecting.link).unwrap());
    assert!(page.body.contains("access_denied"), "{}", page.body);
    let ended = connecting.finish();
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("nothing was connected: authorization failed: access_denied"),
        "{}",
        ended.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&ended.stdout).unwrap();
    assert_eq!(json["error"], "access_denied");
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 0);
}

#[test]
fn a_redirect_with_another_state_is_refused_and_the_real_one_still_connects() {
    let dir = TempDir::new("state");
    let mock = MockServer::start();
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--connection", "dave"]),
    );
    let forged = format!(
        "{}?code=tl-code-forged&state=forged",
        connecting.redirect_uri
    );
    let page = browser_follows(&forged);
    assert_eq!(page.status, 400);
    assert!(page.body.contains("does not match"));
    assert!(page.body.contains("still waiting"));
    // The person's own redirect, after the forged one, still connects.
    assert_eq!(
        browser_follows(&mock.approve(&connecting.link).unwrap()).status,
        200
    );
    let ended = connecting.finish();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        ended.stderr.contains(
            "refused a redirect that is not this sign-in's (authorization redirect: state is \
             missing or does not match); still waiting"
        ),
        "{}",
        ended.stderr
    );
    assert!(!ended.stderr.contains("tl-code-forged"), "{}", ended.stderr);
    assert!(ended.stdout.contains("connected: dave"), "{}", ended.stdout);
    // Only the real code was exchanged.
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
}

#[test]
fn a_callback_with_the_right_state_and_no_code_is_exit_3() {
    let dir = TempDir::new("nocode");
    let mock = MockServer::start();
    let connecting = start_connect(
        &mock,
        &dir.store(),
        &connect_args(&["--connection", "ned", "--output", "json"]),
    );
    let back = mock.approve(&connecting.link).unwrap();
    let state = back
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let page = browser_follows(&format!("{}?state={state}", connecting.redirect_uri));
    assert_eq!(page.status, 400);
    let ended = connecting.finish();
    assert_eq!(ended.status.code(), Some(3), "{}", ended.stderr);
    assert!(ended.stderr.contains("missing `code`"), "{}", ended.stderr);
    let json: serde_json::Value = serde_json::from_str(&ended.stdout).unwrap();
    assert_eq!(json["error"], "invalid_callback");
}

#[test]
fn no_redirect_in_time_is_exit_3_naming_the_wait() {
    let dir = TempDir::new("timeout");
    let mock = MockServer::start();
    let mut args = connect_args(&["--connection", "erin"]);
    let wait = args.iter().position(|arg| *arg == "30").unwrap();
    args[wait] = "1";
    let started = Instant::now();
    let ended = start_connect(&mock, &dir.store(), &args).finish();
    assert_eq!(ended.status.code(), Some(3), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("no redirect came back from the dialog within 1s"),
        "{}",
        ended.stderr
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
}

#[test]
fn a_port_in_use_is_exit_2_naming_the_port_before_any_link() {
    let dir = TempDir::new("port");
    let mock = MockServer::start();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let uri = format!("http://127.0.0.1:{port}/callback");
    let output = obauth(
        &mock,
        &dir.store(),
        &[
            "truelayer",
            "connect",
            "--no-browser",
            "--scope",
            SCOPE,
            "--redirect-uri",
            &uri,
            "--connection",
            "f",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
    assert!(!stderr.contains("open this link"), "{stderr}");
}

#[test]
fn where_the_tokens_go_is_settled_before_the_browser() {
    let mock = MockServer::start();
    for (store, extra, why) in [
        ("memory", vec![], "--connection NAME"),
        ("memory", vec!["--connection", "g"], "durable --token-store"),
    ] {
        let mut args = vec![
            "truelayer",
            "connect",
            "--no-browser",
            "--scope",
            SCOPE,
            "--redirect-uri",
            "http://127.0.0.1/callback",
        ];
        args.extend(extra);
        let output = obauth(&mock, store, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(!stderr.contains("open this link"), "{stderr}");
    }
    let output = obauth(
        &mock,
        "memory",
        &[
            "truelayer",
            "connect",
            "--no-browser",
            "--scope",
            SCOPE,
            "--redirect-uri",
            "https://app.example/cb",
            "--print-tokens",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("plain http://"));
    // A saved connection is its refresh token: without offline_access there is none, and
    // the person would have consented for nothing.
    let dir = TempDir::new("offline");
    let output = obauth(
        &mock,
        &dir.store(),
        &[
            "truelayer",
            "connect",
            "--no-browser",
            "--scope",
            "info accounts",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--connection",
            "i",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("offline_access"), "{stderr}");
    assert!(!stderr.contains("open this link"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_cleanly_and_frees_the_port() {
    let dir = TempDir::new("sigint");
    let mock = MockServer::start();
    let connecting = start_connect(&mock, &dir.store(), &connect_args(&["--connection", "h"]));
    let port = connecting.port();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &connecting.child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let ended = connecting.finish();
    assert_eq!(ended.status.code(), Some(130), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("cancelled: nothing was connected"),
        "{}",
        ended.stderr
    );
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef obauth"),
        ("fish", "complete -c obauth"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_obauth"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(300)]
        );
        assert!(text.contains("connect"), "{shell} completes no `connect`");
    }
}

#[cfg(unix)]
#[test]
fn on_a_terminal_the_wait_is_one_live_line_counting_down() {
    // `script` (util-linux) runs connect on a pseudo-terminal and copies what it shows.
    let dir = TempDir::new("tty");
    let mock = MockServer::start();
    let command = format!(
        "{} --base-url {} --token-store {} truelayer connect --no-browser --scope 'info \
         offline_access' --redirect-uri http://127.0.0.1/callback --connection tty --wait 3",
        env!("CARGO_BIN_EXE_obauth"),
        mock.base_url(),
        dir.store(),
    );
    let output = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID)
        .env("OBAUTH_CLIENT_SECRET", obauth_mock::TRUELAYER_CLIENT_SECRET)
        .env_remove("OBAUTH_TOKEN_STORE")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    // The line is redrawn in place (carriage return, erase line), counting down.
    assert!(
        shown.contains("\r\x1b[2Kwaiting for the redirect on http://127.0.0.1:"),
        "{shown:?}"
    );
    for left in ["3s left; Ctrl-C cancels", "2s left", "1s left"] {
        assert!(shown.contains(left), "{left}: {shown:?}");
    }
    // Not one plain line per tick.
    assert!(
        !shown.contains("obauth: waiting for the redirect"),
        "{shown:?}"
    );
    assert!(
        shown.contains("no redirect came back from the dialog within 3s"),
        "{shown:?}"
    );
}

/// `connect` with `args` as given (no `--no-browser` added), for the browser and
/// environment cases; returns how it ended.
fn connect_plain(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_obauth"));
    command
        .args(args)
        .env_remove("OBAUTH_TOKEN_STORE")
        .env_remove("OBAUTH_TOKEN_STORE_KEY")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER")
        .env("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID)
        .env("OBAUTH_CLIENT_SECRET", obauth_mock::TRUELAYER_CLIENT_SECRET)
        .stdin(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn without_a_display_no_browser_is_started_and_the_link_is_the_way() {
    let mock = MockServer::start();
    let output = connect_plain(
        &[
            "--base-url",
            &mock.base_url(),
            "truelayer",
            "connect",
            "--scope",
            "info",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--print-tokens",
            "--wait",
            "1",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no browser to open here (no display): open the link yourself"),
        "{stderr}"
    );
    assert!(stderr.contains("open this link in a browser"), "{stderr}");
}

#[test]
fn the_providers_offered_follow_the_environment() {
    // No network is needed until the exchange: the link is built, the wait times out.
    let mock = MockServer::start();
    let providers = |global: &[&str]| {
        let mut args: Vec<&str> = global.to_vec();
        args.extend([
            "truelayer",
            "connect",
            "--no-browser",
            "--scope",
            "info",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--print-tokens",
            "--wait",
            "1",
        ]);
        let output = connect_plain(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let link = stderr
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("http"))
            .unwrap_or_else(|| panic!("no link: {stderr}"))
            .to_owned();
        // The link's values are percent-encoded, spaces as %20.
        link.split_once('?')
            .unwrap()
            .1
            .split('&')
            .find_map(|pair| pair.strip_prefix("providers="))
            .map(|value| value.replace("%20", " "))
    };
    assert_eq!(
        providers(&["--env", "sandbox"]).as_deref(),
        Some("uk-cs-mock uk-ob-all uk-oauth-all")
    );
    assert_eq!(
        providers(&["--env", "production"]).as_deref(),
        Some("uk-ob-all uk-oauth-all")
    );
    let base = mock.base_url();
    assert_eq!(
        providers(&["--base-url", &base]).as_deref(),
        Some("uk-ob-all uk-oauth-all")
    );
}

#[cfg(unix)]
#[test]
fn after_the_redirect_a_first_ctrl_c_lets_the_save_finish() {
    let dir = TempDir::new("late-sigint");
    let mock = MockServer::start();
    let connecting = start_connect(&mock, &dir.store(), &connect_args(&["--connection", "pat"]));
    // The exchange takes 2 s: time for a Ctrl-C while the tokens are on their way.
    mock.inject(
        Some(obauth_mock::Endpoint::TrueLayerToken),
        1,
        obauth_mock::Fault::Delay(Duration::from_secs(2)),
    );
    assert_eq!(
        browser_follows(&mock.approve(&connecting.link).unwrap()).status,
        200
    );
    std::thread::sleep(Duration::from_millis(500));
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &connecting.child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let ended = connecting.finish();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("saving the connection the bank just granted (Ctrl-C again abandons it)"),
        "{}",
        ended.stderr
    );
    assert!(ended.stdout.contains("connected: pat"), "{}", ended.stdout);
    // Saved: it refreshes by name.
    let refreshed = obauth(
        &mock,
        &dir.store(),
        &["truelayer", "token", "refresh", "--connection", "pat"],
    )
    .output()
    .unwrap();
    assert!(
        refreshed.status.success(),
        "{}",
        String::from_utf8_lossy(&refreshed.stderr)
    );
}
