//! `obauth truelayer connect` as a person uses it, in headless Chromium: the CLI prints the
//! link, the browser opens it, a click on Allow (or Deny) on the mock's consent page sends
//! the browser to the CLI's loopback listener, and the CLI saves the connection.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask test` installs them);
//! chromedriver and Chromium run on loopback, on ephemeral ports, with a fresh profile in a
//! temporary directory. Screenshots go to `$CARGO_TARGET_TMPDIR/browser/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, obauth, start_connect};
use fantoccini::{Client, ClientBuilder, Locator};
use obauth_mock::MockServer;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on an ephemeral loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    profile: TempDir,
}

impl Driver {
    fn start() -> Self {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: `cargo xtask test` installs it, or run \
                 `sudo apt-get install -y chromium chromium-driver`"
            );
        }
        let profile = TempDir::new("chromium-profile");
        let mut child = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let _ = sender.send(rest.trim_end_matches('.').trim().to_owned());
                }
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver did not say which port it listens on");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        }
    }

    async fn session(&self) -> Client {
        let profile = format!("--user-data-dir={}", self.profile.0.display());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // As root in a container: no sandbox. The rest keeps Chromium off the
                // network this machine does not have.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=900,700",
                    profile,
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a WebDriver session in headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    assert!(
        png.len() > 2_000,
        "{name}: {} bytes, an empty page?",
        png.len()
    );
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits until the browser is on a page of `prefix` (the redirect listener), 20 s at most.
async fn arrive(browser: &Client, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = browser.current_url().await.unwrap();
        if url.as_str().starts_with(prefix) {
            // The landing page is whole once its message is there.
            if browser.find(Locator::Id("message")).await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the browser stayed on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Runs `connect` with `extra`, opens its link, clicks `button` on the consent page, and
/// returns how the CLI ended with the landing page's heading and message.
async fn click_through(
    browser: &Client,
    mock: &MockServer,
    store: &str,
    extra: &[&str],
    button: &str,
    name: &str,
) -> (common::Ended, String, String, String) {
    let mut args = vec![
        "--scope",
        "info accounts offline_access",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--provider-id",
        "ob-mock",
        "--wait",
        "60",
    ];
    args.extend_from_slice(extra);
    let connecting = start_connect(mock, store, &args);
    browser.goto(&connecting.link).await.unwrap();
    assert_eq!(text(browser, "h1").await, "Consent");
    assert_eq!(text(browser, "#provider").await, "ob-mock");
    screenshot(browser, &format!("{name}-consent")).await;
    browser
        .find(Locator::Id(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(browser, &connecting.redirect_uri).await;
    let landed = browser.current_url().await.unwrap();
    let heading = text(browser, "h1").await;
    let message = text(browser, "#message").await;
    screenshot(browser, &format!("{name}-landing")).await;
    let ended = tokio::task::spawn_blocking(move || connecting.finish())
        .await
        .unwrap();
    (ended, heading, message, landed.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_in_headless_chromium_allow_deny_and_form_post() {
    let driver = Driver::start();
    let browser = driver.session().await;
    let mock = MockServer::start();
    let dir = TempDir::new("browser");
    let store = dir.store();

    // Allow: the CLI saves a connection that works.
    let (ended, heading, message, landed) = click_through(
        &browser,
        &mock,
        &store,
        &["--connection", "alice"],
        "allow",
        "allow",
    )
    .await;
    assert!(ended.status.success(), "{}\n{}", ended.stdout, ended.stderr);
    assert_eq!(heading, "Signed in");
    assert!(message.contains("You can close this tab"), "{message}");
    // response_mode=query: the code came in the address.
    assert!(landed.contains("code="), "{landed}");
    assert!(
        ended.stdout.contains("connected: alice"),
        "{}",
        ended.stdout
    );
    let refreshed = obauth(
        &mock,
        &store,
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
    let token: serde_json::Value = serde_json::from_slice(&refreshed.stdout).unwrap();
    assert!(mock.access_token_valid(token["access_token"].as_str().unwrap()));

    // Deny: the typed error and its exit code; nothing exchanged.
    let exchanges = mock.requests(obauth_mock::Endpoint::TrueLayerToken);
    let (ended, heading, message, _) = click_through(
        &browser,
        &mock,
        &store,
        &["--connection", "bob"],
        "deny",
        "deny",
    )
    .await;
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(ended.stderr.contains("access_denied"), "{}", ended.stderr);
    assert_eq!(heading, "Not connected");
    assert!(message.contains("access_denied"), "{message}");
    assert_eq!(
        mock.requests(obauth_mock::Endpoint::TrueLayerToken),
        exchanges
    );

    // form_post: the mock's auto-submitting form posts the code to the listener.
    let (ended, heading, _, landed) = click_through(
        &browser,
        &mock,
        &store,
        &["--connection", "carol", "--response-mode", "form_post"],
        "allow",
        "form_post",
    )
    .await;
    assert!(ended.status.success(), "{}", ended.stderr);
    assert_eq!(heading, "Signed in");
    assert!(
        ended.stdout.contains("connected: carol"),
        "{}",
        ended.stdout
    );
    // Posted by the mock's form, not redirected: nothing in the address.
    assert!(
        landed.ends_with("/callback") && !landed.contains("code="),
        "{landed}"
    );

    browser.close().await.unwrap();
}
