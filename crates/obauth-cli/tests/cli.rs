//! Drives the built `obauth` binary against obauth-mock: every command, the exit codes
//! 1, 2 and 3, and the JSON output.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

use common::TempDir;
use obauth_mock::{MockServer, SigningIdentity};
use serde_json::Value;

const REDIRECT: &str = obauth_mock::TRUELAYER_REDIRECT_URI;

fn obauth(args: &[&str]) -> Output {
    obauth_env(args, &[])
}

/// Runs `obauth` with only the given `OBAUTH_*` variables set.
fn obauth_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_obauth"));
    command
        .args(args)
        .env_remove("OBAUTH_CLIENT_ID")
        .env_remove("OBAUTH_CLIENT_SECRET")
        .env_remove("OBAUTH_TOKEN_STORE")
        .env_remove("OBAUTH_TOKEN_STORE_KEY");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// `obauth --base-url MOCK --client-id … --client-secret … ARGS`.
fn tl(mock: &MockServer, args: &[&str]) -> Output {
    let base = mock.base_url();
    let mut all = vec![
        "--base-url",
        base.as_str(),
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        "truelayer",
    ];
    all.extend_from_slice(args);
    obauth(&all)
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("obauth-cli-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn demo_runs_every_step_and_exits_zero() {
    let output = obauth(&["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    assert!(stdout.contains("steps passed, 0 failed"), "{stdout}");
    assert!(
        stdout.contains("token store (SQLite): two sources  1 token request(s) between them"),
        "{stdout}"
    );
    assert!(stdout.contains("[async   ] truelayer.token.exchange_code"));
    assert!(stdout.contains("[blocking] worldline.token (RS256 assertion)"));
    for binding in ["async   ", "blocking"] {
        let step = format!(
            "[{binding}] truelayer connect (loopback redirect) code received on http://127.0.0.1:"
        );
        assert!(stdout.contains(&step), "{stdout}");
    }
    assert!(stdout.contains("(page: Signed in)"), "{stdout}");
    // Tokens are shortened: ten characters, then an ellipsis.
    for prefix in ["tl-at-", "tl-rt-", "wl-at-"] {
        for (at, _) in stdout.match_indices(prefix) {
            let shown: String = stdout[at..].chars().take(11).collect();
            assert!(shown.ends_with('…'), "a full token was printed: {shown}");
        }
    }
}

#[test]
fn pkce_prints_a_valid_pair() {
    let value = json(&obauth(&["--output", "json", "pkce"]));
    let verifier = value["code_verifier"].as_str().unwrap();
    assert_eq!(verifier.len(), 43);
    assert_eq!(value["code_challenge_method"], "S256");
    let challenge =
        obauth_async::core::pkce::s256_challenge(&obauth_async::types::CodeVerifier::new(verifier));
    assert_eq!(value["code_challenge"], challenge.as_str());
    let text = String::from_utf8(obauth(&["pkce"]).stdout).unwrap();
    assert!(
        text.lines().any(|line| line.starts_with("code_verifier: ")),
        "{text}"
    );
}

#[test]
fn a_whole_truelayer_connection_from_the_command_line() {
    let mock = MockServer::start();
    let link = json(&tl(
        &mock,
        &[
            "auth-link",
            "--provider-id",
            "stet-credit-agricole",
            "--scope",
            "info accounts offline_access",
            "--redirect-uri",
            REDIRECT,
            "--consent-id",
            "c-1",
            "--state",
            "st",
            "--pkce",
            "--user-name",
            "Alan Turing",
            "--user-email",
            "alan@example.com",
            "--auth-input",
            "branch-name=stet-banque-chalus",
            "--tracking-id",
            "t-1",
            "--output",
            "json",
        ],
    ));
    let verifier = link["code_verifier"].as_str().unwrap().to_owned();
    assert_eq!(link["success"], true);
    let back = mock.approve(link["result"].as_str().unwrap()).unwrap();
    let code = obauth_mock_code(&back);

    let token = json(&tl(
        &mock,
        &[
            "token",
            "exchange",
            "--code",
            &code,
            "--redirect-uri",
            REDIRECT,
            "--code-verifier",
            &verifier,
            "--output",
            "json",
        ],
    ));
    assert_eq!(token["token_type"], "Bearer");
    let access = token["access_token"].as_str().unwrap().to_owned();
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();

    let debug = json(&tl(
        &mock,
        &[
            "debug-id",
            "create",
            "--access-token",
            &access,
            "--output",
            "json",
        ],
    ));
    assert_eq!(debug["provider_id"], "stet-credit-agricole");
    // As the spec describes it: no token, no body.
    let deleted = json(&tl(&mock, &["debug-id", "delete", "--output", "json"]));
    assert_eq!(deleted["debug_id"], debug["debug_id"]);
    // With the opt-in token body.
    let debug = json(&tl(
        &mock,
        &[
            "debug-id",
            "create",
            "--access-token",
            &access,
            "--output",
            "json",
        ],
    ));
    let deleted = json(&tl(
        &mock,
        &[
            "debug-id",
            "delete",
            "--access-token",
            &access,
            "--output",
            "json",
        ],
    ));
    assert_eq!(deleted["debug_id"], debug["debug_id"]);

    let refreshed = json(&tl(
        &mock,
        &[
            "token",
            "refresh",
            "--refresh-token",
            &refresh,
            "--output",
            "json",
        ],
    ));
    let rotated = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, refresh);
    let reauth = tl(
        &mock,
        &[
            "reauth-link",
            "--refresh-token",
            &rotated,
            "--redirect-uri",
            REDIRECT,
            "--pkce",
        ],
    );
    let text = String::from_utf8(reauth.stdout).unwrap();
    assert!(text.starts_with("link: http://127.0.0.1:"), "{text}");
    assert!(text.contains("code_verifier: "));

    let live = refreshed["access_token"].as_str().unwrap();
    let deleted = json(&tl(
        &mock,
        &[
            "delete-credential",
            "--access-token",
            live,
            "--output",
            "json",
        ],
    ));
    assert_eq!(deleted, serde_json::json!({}));
    let gone = tl(&mock, &["debug-id", "create", "--access-token", live]);
    assert_eq!(gone.status.code(), Some(1), "the connection is deleted");
}

/// The code from a redirect URL.
fn obauth_mock_code(redirect: &str) -> String {
    let query = redirect.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .unwrap()
        .to_owned()
}

#[test]
fn client_credentials_and_providers() {
    let mock = MockServer::start();
    let token = json(&tl(
        &mock,
        &[
            "token",
            "client-credentials",
            "--scope",
            "payments",
            "--output",
            "json",
        ],
    ));
    assert_eq!(token["scope"], "payments");
    assert!(token.get("refresh_token").is_none());

    let base = mock.base_url();
    let providers = obauth(&[
        "--base-url",
        &base,
        "--output",
        "json",
        "truelayer",
        "providers",
        "--scopes",
        "info cards",
        "--countries",
        "uk",
    ]);
    let ids: Vec<String> = json(&providers)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["mock", "ob-lloyds-business"]);
    let text = String::from_utf8(
        obauth(&[
            "--base-url",
            &base,
            "truelayer",
            "providers",
            "--countries",
            "fr",
        ])
        .stdout,
    )
    .unwrap();
    assert!(text.starts_with("stet-credit-agricole"), "{text}");
}

#[test]
fn worldline_with_a_secret_and_with_an_assertion() {
    let mock = MockServer::start();
    let base = mock.worldline_base_url();
    let token = json(&obauth(&[
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::WORLDLINE_CLIENT_ID,
        "--client-secret",
        obauth_mock::WORLDLINE_CLIENT_SECRET,
        "--output",
        "json",
        "worldline",
        "token",
        "--realm",
        obauth_mock::WORLDLINE_REALM,
        "--scope",
        "VOP WERO",
    ]));
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["scope"], "VOP WERO");

    let identity = SigningIdentity::generate().unwrap();
    mock.register_worldline_assertion_client("jwt", "5734699", &identity.certificate_pem, &["VOP"])
        .unwrap();
    let key = temp_file("key.pem", &identity.private_key_pem);
    let cert = temp_file("cert.pem", &identity.certificate_pem);
    let output = obauth(&[
        "--base-url",
        &base,
        "--client-id",
        "5734699",
        "--output",
        "json",
        "worldline",
        "token",
        "--realm",
        "jwt",
        "--scope",
        "VOP",
        "--private-key",
        key.to_str().unwrap(),
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    assert!(
        json(&output)["access_token"]
            .as_str()
            .unwrap()
            .starts_with("wl-at-")
    );
    // A key that is not the certificate's is refused before any request, as a usage error.
    let other = SigningIdentity::generate().unwrap();
    let other_key = temp_file("other-key.pem", &other.private_key_pem);
    let before = mock.requests(obauth_mock::Endpoint::WorldlineToken);
    let mismatch = obauth(&[
        "--base-url",
        &base,
        "--client-id",
        "5734699",
        "worldline",
        "token",
        "--realm",
        "jwt",
        "--scope",
        "VOP",
        "--private-key",
        other_key.to_str().unwrap(),
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(mismatch.status.code(), Some(2), "{}", stderr(&mismatch));
    assert!(
        stderr(&mismatch).contains("does not belong to the certificate"),
        "{}",
        stderr(&mismatch)
    );
    assert_eq!(mock.requests(obauth_mock::Endpoint::WorldlineToken), before);
    let _ = std::fs::remove_file(other_key);
    // The secret can come from a file too.
    let secret = temp_file(
        "secret",
        &format!("{}\n", obauth_mock::WORLDLINE_CLIENT_SECRET),
    );
    let output = obauth(&[
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::WORLDLINE_CLIENT_ID,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "worldline",
        "token",
        "--realm",
        obauth_mock::WORLDLINE_REALM,
        "--scope",
        "VOP",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    for path in [key, cert, secret] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn exit_1_for_api_errors_with_the_error_object_in_json() {
    let mock = MockServer::start();
    let base = mock.base_url();
    let output = obauth(&[
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        "sup3r-s3cret-wrong",
        "--output",
        "json",
        "truelayer",
        "token",
        "client-credentials",
        "--scope",
        "payments",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"], "unauthorized_client");
    assert_eq!(error["status"], 401);
    let message = stderr(&output);
    assert!(
        message.contains("unauthorized_client") && message.contains("401"),
        "{message}"
    );
    assert!(!message.contains("sup3r-s3cret-wrong"));

    let spent = tl(
        &mock,
        &["token", "refresh", "--refresh-token", "not-a-token"],
    );
    assert_eq!(spent.status.code(), Some(1));
    assert!(stderr(&spent).contains("invalid_grant"));
    assert!(
        spent.stdout.is_empty(),
        "text mode prints errors on stderr only"
    );
}

#[test]
fn exit_2_for_bad_usage_and_bad_local_input() {
    let mock = MockServer::start();
    let wl = mock.worldline_base_url();
    let missing_key = std::env::temp_dir().join("obauth-no-such-key.pem");
    let bad_cert = temp_file(
        "bad-cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let identity = SigningIdentity::generate().unwrap();
    let key = temp_file("key-for-bad-cert.pem", &identity.private_key_pem);
    let good_cert = temp_file("good-cert.pem", &identity.certificate_pem);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "truelayer",
                "token",
                "client-credentials",
                "--scope",
                "payments",
            ],
            "--client-id",
        ),
        (
            vec![
                "--client-id",
                "x",
                "truelayer",
                "token",
                "client-credentials",
                "--scope",
                "payments",
            ],
            "client secret",
        ),
        (
            vec![
                "--base-url",
                "http://example.com",
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "truelayer",
                "token",
                "refresh",
                "--refresh-token",
                "r",
            ],
            "loopback",
        ),
        (
            vec![
                "--client-id",
                "x",
                "worldline",
                "token",
                "--realm",
                "r",
                "--scope",
                "VOP",
                "--client-secret",
                "s",
            ],
            "--base-url",
        ),
        (
            vec![
                "--base-url",
                &wl,
                "--client-id",
                "x",
                "worldline",
                "token",
                "--realm",
                "r",
                "--scope",
                "VOP",
                "--private-key",
                missing_key.to_str().unwrap(),
                "--certificate",
                good_cert.to_str().unwrap(),
            ],
            "--private-key ",
        ),
        (
            vec![
                "--base-url",
                &wl,
                "--client-id",
                "x",
                "worldline",
                "token",
                "--realm",
                "r",
                "--scope",
                "VOP",
                "--private-key",
                key.to_str().unwrap(),
                "--certificate",
                bad_cert.to_str().unwrap(),
            ],
            "certificate",
        ),
        (
            vec![
                "--client-id",
                "x",
                "truelayer",
                "auth-link",
                "--provider-id",
                "p",
                "--scope",
                "info",
                "--redirect-uri",
                REDIRECT,
                "--consent-id",
                "c",
                "--auth-input",
                "novalue",
            ],
            "KEY=VALUE",
        ),
        (
            vec![
                "--client-id",
                "x",
                "--timeout",
                "0",
                "truelayer",
                "providers",
            ],
            "--timeout",
        ),
        (vec!["truelayer", "no-such-command"], "unrecognized"),
    ];
    for (args, hint) in cases {
        let output = obauth(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(hint),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    for path in [bad_cert, key, good_cert] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn exit_3_for_transport_failures_and_unexpected_answers() {
    let output = obauth(&[
        "--base-url",
        "http://127.0.0.1:1",
        "--timeout",
        "2",
        "truelayer",
        "providers",
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("connect"), "{}", stderr(&output));

    let mock = MockServer::start();
    mock.inject(None, 5, obauth_mock::Fault::HtmlPage(502));
    let output = tl(&mock, &["providers"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("502"), "{}", stderr(&output));
}

#[test]
fn worldline_token_against_the_real_oidc_provider_peer() {
    use obauth_test_peers::{JWT_CLIENT, OidcProvider, REALM, SECRET, SECRET_CLIENT};
    let peer = OidcProvider::start().unwrap();
    let token = json(&obauth(&[
        "--base-url",
        &peer.base_url,
        "--client-id",
        SECRET_CLIENT,
        "--client-secret",
        SECRET,
        "--output",
        "json",
        "worldline",
        "token",
        "--realm",
        REALM,
        "--scope",
        "VOP WERO",
    ]));
    assert_eq!(token["scope"], "VOP WERO");
    assert_eq!(token["token_type"], "Bearer");

    let key = temp_file("peer-key.pem", &peer.identity.private_key_pem);
    let cert = temp_file("peer-cert.pem", &peer.identity.certificate_pem);
    let output = obauth(&[
        "--base-url",
        &peer.base_url,
        "--client-id",
        JWT_CLIENT,
        "--output",
        "json",
        "worldline",
        "token",
        "--realm",
        REALM,
        "--scope",
        "VOP",
        "--private-key",
        key.to_str().unwrap(),
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    assert!(json(&output)["access_token"].is_string());

    let refused = obauth(&[
        "--base-url",
        &peer.base_url,
        "--client-id",
        SECRET_CLIENT,
        "--client-secret",
        "not-it",
        "worldline",
        "token",
        "--realm",
        REALM,
        "--scope",
        "VOP",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("invalid_client"),
        "{}",
        stderr(&refused)
    );
    for path in [key, cert] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn environment_variables_and_precedence() {
    let mock = MockServer::start();
    let base = mock.base_url();
    // Credentials from the environment.
    let vars = [
        ("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID),
        ("OBAUTH_CLIENT_SECRET", obauth_mock::TRUELAYER_CLIENT_SECRET),
    ];
    let token = json(&obauth_env(
        &[
            "--base-url",
            &base,
            "--output",
            "json",
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ],
        &vars,
    ));
    assert_eq!(token["token_type"], "Bearer");
    // --base-url wins over --env production.
    let output = obauth_env(
        &[
            "--env",
            "production",
            "--base-url",
            &base,
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ],
        &vars,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // A secret file wins over a wrong secret in the environment.
    let file = temp_file("env-secret", obauth_mock::TRUELAYER_CLIENT_SECRET);
    let output = obauth_env(
        &[
            "--base-url",
            &base,
            "--client-secret-file",
            file.to_str().unwrap(),
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ],
        &[
            ("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID),
            ("OBAUTH_CLIENT_SECRET", "wrong"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // A private key works with a secret lying around in the environment.
    let identity = SigningIdentity::generate().unwrap();
    mock.register_worldline_assertion_client("jwt", "5734699", &identity.certificate_pem, &["VOP"])
        .unwrap();
    let key = temp_file("env-key.pem", &identity.private_key_pem);
    let cert = temp_file("env-cert.pem", &identity.certificate_pem);
    let output = obauth_env(
        &[
            "--base-url",
            &mock.worldline_base_url(),
            "--client-id",
            "5734699",
            "worldline",
            "token",
            "--realm",
            "jwt",
            "--scope",
            "VOP",
            "--private-key",
            key.to_str().unwrap(),
            "--certificate",
            cert.to_str().unwrap(),
        ],
        &[("OBAUTH_CLIENT_SECRET", "irrelevant")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    for path in [file, key, cert] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn a_malformed_auth_input_is_not_echoed() {
    // Auth inputs can be passwords: the usage error names the flag, not the value.
    let output = obauth(&[
        "--client-id",
        "x",
        "truelayer",
        "auth-link",
        "--provider-id",
        "p",
        "--scope",
        "info",
        "--redirect-uri",
        REDIRECT,
        "--auth-input",
        "=hunter2-password",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let shown = format!(
        "{}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(shown.contains("--auth-input"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A fresh directory for one test, removed when dropped.
/// `tl` with a token store and extra environment variables.
fn tl_stored(mock: &MockServer, store: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let base = mock.base_url();
    let mut all = vec![
        "--base-url",
        base.as_str(),
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        "--token-store",
        store,
        "truelayer",
    ];
    all.extend_from_slice(args);
    obauth_env(&all, vars)
}

const CREDENTIALS: [&str; 6] = [
    "token",
    "client-credentials",
    "--scope",
    "payments",
    "--output",
    "json",
];

#[test]
fn client_credentials_with_a_sqlite_store_are_asked_for_once_across_runs() {
    use std::os::unix::fs::PermissionsExt;
    let mock = MockServer::start();
    let dir = TempDir::new("cc");
    let first = json(&tl_stored(&mock, &dir.store(), &[], &CREDENTIALS));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = json(&tl_stored(&mock, &dir.store(), &[], &CREDENTIALS));
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(second["token_type"], "Bearer");
    // The second run shows what the cached token has left.
    let (before, after) = (
        first["expires_in"].as_u64().unwrap(),
        second["expires_in"].as_u64().unwrap(),
    );
    assert!(after < before && before <= 3600, "{before} then {after}");
    let mode = std::fs::metadata(dir.0.join("tokens.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Without a key the record is plain: the token is in the file.
    let token = first["access_token"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&dir.db()).contains(token));
    // The text output says how long it has left.
    let text = tl_stored(
        &mock,
        &dir.store(),
        &[],
        &["token", "client-credentials", "--scope", "payments"],
    );
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("expires_in: "), "{text}");
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
}

#[test]
fn a_sealed_store_hides_its_tokens_and_refuses_other_keys() {
    let mock = MockServer::start();
    let dir = TempDir::new("sealed");
    let key = String::from_utf8(obauth(&["store-key"]).stdout).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 44, "{key}");
    let other = String::from_utf8(obauth(&["store-key"]).stdout).unwrap();
    assert_ne!(key, other.trim());

    let token = json(&tl_stored(
        &mock,
        &dir.store(),
        &[("OBAUTH_TOKEN_STORE_KEY", key)],
        &CREDENTIALS,
    ));
    let access = token["access_token"].as_str().unwrap();
    assert!(!String::from_utf8_lossy(&dir.db()).contains(access));

    for vars in [vec![("OBAUTH_TOKEN_STORE_KEY", other.trim())], vec![]] {
        let refused = tl_stored(&mock, &dir.store(), &vars, &CREDENTIALS);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains("sealed"), "{}", stderr(&refused));
        assert!(!stderr(&refused).contains(key));
    }
    // The key from a file opens it, and the cached token is served without a request.
    let key_file = temp_file("store-key", &format!("{key}\n"));
    let base = mock.base_url();
    let again = json(&obauth(&[
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        "--token-store",
        &dir.store(),
        "--token-store-key-file",
        key_file.to_str().unwrap(),
        "truelayer",
        "token",
        "client-credentials",
        "--scope",
        "payments",
        "--output",
        "json",
    ]));
    assert_eq!(again["access_token"], token["access_token"]);
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn a_saved_connection_is_refreshed_by_name_and_keeps_its_rotated_token() {
    let mock = MockServer::start();
    let dir = TempDir::new("connection");
    let store = dir.store();
    let link = json(&tl(
        &mock,
        &[
            "auth-link",
            "--provider-id",
            "ob-transferwise",
            "--scope",
            "info accounts offline_access",
            "--redirect-uri",
            REDIRECT,
            "--consent-id",
            "c-1",
            "--pkce",
            "--output",
            "json",
        ],
    ));
    let back = mock.approve(link["result"].as_str().unwrap()).unwrap();
    let saved = json(&tl_stored(
        &mock,
        &store,
        &[],
        &[
            "token",
            "exchange",
            "--code",
            &obauth_mock_code(&back),
            "--redirect-uri",
            REDIRECT,
            "--code-verifier",
            link["code_verifier"].as_str().unwrap(),
            "--save-as",
            "alice",
            "--output",
            "json",
        ],
    ));
    assert_eq!(saved["connection"], "alice");
    assert!(saved.get("refresh_token").is_none(), "{saved}");

    let mut seen = vec![saved["access_token"].as_str().unwrap().to_owned()];
    // Each refresh spends the stored refresh token and must have written the rotated one,
    // or the next would be refused (the mock answers a spent token with invalid_grant).
    for _ in 0..2 {
        let refreshed = json(&tl_stored(
            &mock,
            &store,
            &[],
            &[
                "token",
                "refresh",
                "--connection",
                "alice",
                "--output",
                "json",
            ],
        ));
        assert_eq!(refreshed["connection"], "alice");
        let access = refreshed["access_token"].as_str().unwrap().to_owned();
        assert!(!seen.contains(&access));
        let debug = tl(&mock, &["debug-id", "create", "--access-token", &access]);
        assert!(debug.status.success(), "{}", stderr(&debug));
        seen.push(access);
    }
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 3);
}

#[test]
fn client_credentials_with_a_redis_store_are_shared_and_its_password_kept_quiet() {
    let redis = obauth_test_peers::RedisServer::start().unwrap();
    let mock = MockServer::start();
    let first = json(&tl_stored(&mock, &redis.url(), &[], &CREDENTIALS));
    let second = json(&tl_stored(&mock, &redis.url(), &[], &CREDENTIALS));
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);

    // A password on the command line works, and is warned about without being shown.
    let status = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "CONFIG",
            "SET",
            "requirepass",
            "hunter2",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let with_password = format!("redis://:hunter2@127.0.0.1:{}/0", redis.port());
    let output = tl_stored(&mock, &with_password, &[], &CREDENTIALS);
    assert_eq!(json(&output)["access_token"], first["access_token"]);
    let text = stderr(&output);
    assert!(text.contains("password on the command line"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Through the environment: no warning.
    let output = obauth_env(
        &[
            "--base-url",
            &mock.base_url(),
            "--client-id",
            obauth_mock::TRUELAYER_CLIENT_ID,
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ],
        &[
            ("OBAUTH_TOKEN_STORE", &with_password),
            ("OBAUTH_CLIENT_SECRET", obauth_mock::TRUELAYER_CLIENT_SECRET),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
    // --help does not show the variable's value.
    let help = obauth_env(&["--help"], &[("OBAUTH_TOKEN_STORE", &with_password)]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));

    // The wrong password: a store error naming the server, not the password.
    let wrong = format!("redis://:hunter3@127.0.0.1:{}/0", redis.port());
    let output = tl_stored(&mock, &wrong, &[], &CREDENTIALS);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("127.0.0.1:{}", redis.port())),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("hunter3"), "{}", stderr(&output));
    // Nobody there: an application token is fetched all the same.
    let before = mock.requests(obauth_mock::Endpoint::TrueLayerToken);
    let output = tl_stored(&mock, "redis://127.0.0.1:1/0", &[], &CREDENTIALS);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        mock.requests(obauth_mock::Endpoint::TrueLayerToken),
        before + 1
    );
}

#[test]
fn a_postgres_store_is_migrated_on_request_then_shares_tokens() {
    let server = obauth_test_peers::PostgresServer::start().unwrap();
    let mock = MockServer::start();
    let url = server.url();
    let vars = [
        ("OBAUTH_TOKEN_STORE", url.as_str()),
        ("OBAUTH_TOKEN_STORE_TABLE", "tokens.cli"),
    ];
    let base = mock.base_url();
    let credentials = |vars: &[(&str, &str)]| {
        let mut args = vec![
            "--base-url",
            base.as_str(),
            "--client-id",
            obauth_mock::TRUELAYER_CLIENT_ID,
            "--client-secret",
            obauth_mock::TRUELAYER_CLIENT_SECRET,
            "truelayer",
        ];
        args.extend(CREDENTIALS);
        obauth_env(&args, vars)
    };
    // Not migrated: the error says what to do, and nothing is created.
    let output = credentials(&vars);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("obauth store migrate"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains(server.password()),
        "{}",
        stderr(&output)
    );
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 0);
    let migrated = obauth_env(&["store", "migrate", "--output", "json"], &vars);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert_eq!(json(&migrated)["migrated"], "\"tokens\".\"cli\"");
    assert_eq!(json(&migrated)["schema_version"], 1);
    let first = json(&credentials(&vars));
    let second = json(&credentials(&vars));
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
    let rows = server.psql("SELECT count(*) FROM tokens.cli").unwrap();
    assert_eq!(rows.trim(), "1");
    // Migrating a store that is not PostgreSQL is a usage error.
    let output = obauth_env(&["store", "migrate"], &[("OBAUTH_TOKEN_STORE", "memory")]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn token_store_mistakes_are_usage_errors() {
    let mock = MockServer::start();
    let dir = TempDir::new("mistakes");
    let secretish = "mysql://:hunter2@127.0.0.1:1/0";
    let output = tl_stored(&mock, secretish, &[], &CREDENTIALS);
    assert_eq!(output.status.code(), Some(2));
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));

    let output = tl_stored(
        &mock,
        "memory",
        &[],
        &["token", "refresh", "--connection", "bob"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("durable"), "{}", stderr(&output));

    let output = tl_stored(
        &mock,
        &dir.store(),
        &[],
        &["token", "refresh", "--connection", "nobody"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no refresh token is stored"),
        "{}",
        stderr(&output)
    );

    let output = tl_stored(
        &mock,
        "memory",
        &[("OBAUTH_TOKEN_STORE_KEY", "c2hvcnQ=")],
        &CREDENTIALS,
    );
    assert_eq!(output.status.code(), Some(2));
    let output = tl_stored(
        &mock,
        &dir.store(),
        &[("OBAUTH_TOKEN_STORE_KEY", "not a key")],
        &CREDENTIALS,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(!stderr(&output).contains("not a key"));
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 0);
}

#[test]
fn loopback_calls_never_go_through_a_proxy() {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A "proxy" that counts who connects and answers nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_obauth"));
        command.args(args);
        for name in [
            "OBAUTH_CLIENT_ID",
            "OBAUTH_CLIENT_SECRET",
            "OBAUTH_TOKEN_STORE",
            "OBAUTH_TOKEN_STORE_KEY",
            "NO_PROXY",
            "no_proxy",
        ] {
            command.env_remove(name);
        }
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env(name, &proxy);
        }
        command.output().unwrap()
    };
    let mock = MockServer::start();
    // The blocking binding (ureq): a token from the mock on 127.0.0.1.
    let base = mock.base_url();
    let token = run(&[
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        "truelayer",
        "token",
        "client-credentials",
        "--scope",
        "payments",
        "--output",
        "json",
    ]);
    assert!(token.status.success(), "{}", stderr(&token));
    // Both bindings (the demo runs the async one too) against its own mock.
    let demo = run(&["demo"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stdout)
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a request went to the proxy"
    );
}

#[test]
fn secret_files_are_bounded_regular_files_and_blank_secrets_are_refused() {
    let mock = MockServer::start();
    let base = mock.base_url();
    let with_secret_file = |path: &str| {
        obauth(&[
            "--base-url",
            &base,
            "--client-id",
            obauth_mock::TRUELAYER_CLIENT_ID,
            "--client-secret-file",
            path,
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ])
    };
    // An endless device is refused at once, not read until memory runs out.
    let endless = with_secret_file("/dev/zero");
    assert_eq!(endless.status.code(), Some(2), "{}", stderr(&endless));
    assert!(stderr(&endless).contains("--client-secret-file /dev/zero"));
    // A FIFO nobody writes to would hang the read: refused without opening it.
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("secret.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let hanging = with_secret_file(fifo.to_str().unwrap());
    assert_eq!(hanging.status.code(), Some(2));
    assert!(
        stderr(&hanging).contains("not a regular file"),
        "{}",
        stderr(&hanging)
    );
    // Larger than 64 KiB.
    let big = temp_file("big-secret", &"s".repeat(64 * 1024 + 1));
    let refused = with_secret_file(big.to_str().unwrap());
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("64 KiB"), "{}", stderr(&refused));
    // One final CRLF is dropped: the secret works.
    let crlf = temp_file(
        "crlf-secret",
        &format!("{}\r\n", obauth_mock::TRUELAYER_CLIENT_SECRET),
    );
    let fine = with_secret_file(crlf.to_str().unwrap());
    assert!(fine.status.success(), "{}", stderr(&fine));
    // Blank: refused before any request, naming where it came from.
    let blank = temp_file("blank-secret", " \n");
    let refused = with_secret_file(blank.to_str().unwrap());
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--client-secret-file is empty or blank"));
    let from_env = obauth_env(
        &[
            "--base-url",
            &base,
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ],
        &[
            ("OBAUTH_CLIENT_ID", obauth_mock::TRUELAYER_CLIENT_ID),
            ("OBAUTH_CLIENT_SECRET", ""),
        ],
    );
    assert_eq!(from_env.status.code(), Some(2), "{}", stderr(&from_env));
    assert!(
        stderr(&from_env).contains("OBAUTH_CLIENT_SECRET"),
        "{}",
        stderr(&from_env)
    );
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 1);
    for file in [big, crlf, blank] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn an_answer_that_cannot_be_written_is_a_failure_and_a_closed_stderr_no_panic() {
    use std::process::Stdio;
    let mock = MockServer::start();
    let base = mock.base_url();
    let token_args = [
        "--base-url",
        &base,
        "--client-id",
        obauth_mock::TRUELAYER_CLIENT_ID,
        "--client-secret",
        obauth_mock::TRUELAYER_CLIENT_SECRET,
        "truelayer",
        "token",
        "client-credentials",
        "--scope",
        "payments",
    ];
    // stdout full: not a silent success.
    let full = Command::new(env!("CARGO_BIN_EXE_obauth"))
        .args(token_args)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(4), "{}", stderr(&full));
    assert!(
        stderr(&full).contains("could not be written"),
        "{}",
        stderr(&full)
    );
    // stderr closed (its reader gone before the program starts) while reporting a usage
    // error: exit 2, not a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_obauth"))
        .args([
            "--base-url",
            "http://127.0.0.1:99999",
            "truelayer",
            "providers",
        ])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

/// A secret input of the CLI: its flag, its file flag and its variable.
#[derive(Clone, Copy)]
struct SecretFlag {
    flag: &'static str,
    file_flag: &'static str,
    env: &'static str,
}

const CLIENT_SECRET: SecretFlag = SecretFlag {
    flag: "--client-secret",
    file_flag: "--client-secret-file",
    env: "OBAUTH_CLIENT_SECRET",
};
const CODE: SecretFlag = SecretFlag {
    flag: "--code",
    file_flag: "--code-file",
    env: "OBAUTH_CODE",
};
const VERIFIER: SecretFlag = SecretFlag {
    flag: "--code-verifier",
    file_flag: "--code-verifier-file",
    env: "OBAUTH_CODE_VERIFIER",
};
const REFRESH: SecretFlag = SecretFlag {
    flag: "--refresh-token",
    file_flag: "--refresh-token-file",
    env: "OBAUTH_REFRESH_TOKEN",
};
const ACCESS: SecretFlag = SecretFlag {
    flag: "--access-token",
    file_flag: "--access-token-file",
    env: "OBAUTH_ACCESS_TOKEN",
};

/// A subcommand's words and the secrets it takes.
type Subcommand<'a> = (&'a [&'a str], Vec<(SecretFlag, &'a str)>);

/// How a run is given its secrets.
#[derive(Clone, Copy, Debug)]
enum Way {
    Argv,
    Env,
    /// Each in a file, the first one through standard input (`-`).
    Files,
}

/// `obauth --base-url BASE --client-id ID [secrets] COMMAND…`, each secret given `way`.
fn run_with_secrets(
    way: Way,
    base: &str,
    client_id: &str,
    global: &[&str],
    command: &[&str],
    secrets: &[(SecretFlag, &str)],
    dir: &std::path::Path,
) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut args: Vec<String> = ["--base-url", base, "--client-id", client_id]
        .iter()
        .chain(global)
        .map(|s| s.to_string())
        .collect();
    let mut vars = Vec::new();
    let mut stdin = None;
    let mut command_args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    for (index, (input, value)) in secrets.iter().enumerate() {
        // The client secret is a global flag; the rest belong to the subcommand.
        let target = if input.flag == CLIENT_SECRET.flag {
            &mut args
        } else {
            &mut command_args
        };
        match way {
            Way::Argv => target.extend([input.flag.to_owned(), value.to_string()]),
            Way::Env => vars.push((input.env, value.to_string())),
            Way::Files if index == 0 => {
                target.extend([input.file_flag.to_owned(), "-".to_owned()]);
                stdin = Some(format!("{value}\n"));
            }
            Way::Files => {
                let path = dir.join(input.env);
                std::fs::write(&path, format!("{value}\r\n")).unwrap();
                target.extend([input.file_flag.to_owned(), path.display().to_string()]);
            }
        }
    }
    args.extend(command_args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_obauth"));
    child
        .args(&args)
        .env_remove("OBAUTH_CLIENT_ID")
        .env_remove("OBAUTH_CLIENT_SECRET")
        .env_remove("OBAUTH_TOKEN_STORE")
        .env_remove("OBAUTH_TOKEN_STORE_KEY")
        .env_remove("OBAUTH_CODE")
        .env_remove("OBAUTH_CODE_VERIFIER")
        .env_remove("OBAUTH_REFRESH_TOKEN")
        .env_remove("OBAUTH_ACCESS_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        child.env(name, value);
    }
    let mut child = child.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // A child that ends before reading its input is judged by its output below.
        let _ = pipe.write_all(text.as_bytes());
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// The output holds none of `secrets` and no panic; returns stdout and stderr together.
fn assert_quiet(output: &Output, secrets: &[&str], context: &str) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        output.status.code(),
        Some(101),
        "{context} panicked: {text}"
    );
    assert!(!text.contains("panicked"), "{context}: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{context} printed {secret}: {text}");
    }
    text
}

#[test]
fn marker_secrets_never_reach_the_output_of_any_subcommand_on_any_path() {
    const CS: &str = "MkClientSecret-1";
    const CODE_MARK: &str = "MkCode-2";
    const VERIFIER_MARK: &str = "MkVerifier-3aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const REFRESH_MARK: &str = "MkRefresh-4";
    const ACCESS_MARK: &str = "MkAccess-5";
    let markers = [CS, CODE_MARK, VERIFIER_MARK, REFRESH_MARK, ACCESS_MARK];
    let dir = TempDir::new("markers");
    let echo = MockServer::start();
    echo.inject(None, 100_000, obauth_mock::Fault::EchoRequest);
    let echo_page = MockServer::start();
    echo_page.inject(None, 100_000, obauth_mock::Fault::EchoRequestPage);
    let plain = MockServer::start();
    let commands: [Subcommand; 9] = [
        (
            &[
                "truelayer",
                "token",
                "client-credentials",
                "--scope",
                "payments",
            ],
            vec![(CLIENT_SECRET, CS)],
        ),
        (
            &["truelayer", "token", "exchange", "--redirect-uri", REDIRECT],
            vec![
                (CODE, CODE_MARK),
                (CLIENT_SECRET, CS),
                (VERIFIER, VERIFIER_MARK),
            ],
        ),
        (
            &["truelayer", "token", "refresh"],
            vec![(REFRESH, REFRESH_MARK), (CLIENT_SECRET, CS)],
        ),
        (
            &["truelayer", "reauth-link", "--redirect-uri", REDIRECT],
            vec![(REFRESH, REFRESH_MARK), (CLIENT_SECRET, CS)],
        ),
        (
            &[
                "truelayer",
                "auth-link",
                "--provider-id",
                "mock",
                "--scope",
                "info",
                "--redirect-uri",
                REDIRECT,
                "--consent-id",
                "c-1",
            ],
            vec![(CLIENT_SECRET, CS)],
        ),
        (
            &["truelayer", "debug-id", "create"],
            vec![(ACCESS, ACCESS_MARK), (CLIENT_SECRET, CS)],
        ),
        (
            &["truelayer", "debug-id", "delete"],
            vec![(ACCESS, ACCESS_MARK), (CLIENT_SECRET, CS)],
        ),
        (
            &["truelayer", "delete-credential"],
            vec![(ACCESS, ACCESS_MARK), (CLIENT_SECRET, CS)],
        ),
        (
            &[
                "worldline",
                "token",
                "--realm",
                obauth_mock::WORLDLINE_REALM,
                "--scope",
                "VOP",
            ],
            vec![(CLIENT_SECRET, CS)],
        ),
    ];
    // Each command in a thread of its own: most of a run is spent waiting for a retry.
    let redacted_echoes = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for (index, (command, secrets)) in commands.iter().enumerate() {
            let (echo, echo_page, plain, redacted_echoes) =
                (&echo, &echo_page, &plain, &redacted_echoes);
            let files = dir.0.join(index.to_string());
            std::fs::create_dir_all(&files).unwrap();
            scope.spawn(move || {
                let dir = files.as_path();
                let worldline = command[0] == "worldline";
                let base = |mock: &MockServer| {
                    if worldline {
                        mock.worldline_base_url()
                    } else {
                        mock.base_url()
                    }
                };
                let bases = [
                    ("an echoing server", base(echo)),
                    ("an echoing gateway page", base(echo_page)),
                    ("the mock", base(plain)),
                    ("a closed port", "http://127.0.0.1:1/auth".to_owned()),
                ];
                for way in [Way::Argv, Way::Env, Way::Files] {
                    for (server, url) in &bases {
                        for output_mode in ["text", "json"] {
                            let context =
                                format!("{command:?} {way:?} against {server}, {output_mode}");
                            let output = run_with_secrets(
                                way,
                                url,
                                "marker-client",
                                // -vv: every span and event of the bindings too.
                                &["--output", output_mode, "--timeout", "5", "-vv"],
                                command,
                                secrets,
                                dir,
                            );
                            let text = assert_quiet(&output, &markers, &context);
                            assert!(
                                matches!(output.status.code(), Some(1 | 3)),
                                "{context}: {text}"
                            );
                            if *server != "a closed port" {
                                // Not vacuous: the call's span reached stderr.
                                assert!(
                                    text.contains("obauth.call{operation="),
                                    "{context}: {text}"
                                );
                            }
                            if server.starts_with("an echoing") && text.contains("<redacted>") {
                                redacted_echoes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            if matches!(way, Way::Argv) {
                                assert!(text.contains("on the command line"), "{context}: {text}");
                            } else {
                                assert!(!text.contains("on the command line"), "{context}: {text}");
                            }
                        }
                    }
                    // A usage error after the secrets were read.
                    let output = run_with_secrets(
                        way,
                        &base(plain),
                        "marker-client",
                        &["--timeout", "0"],
                        command,
                        secrets,
                        dir,
                    );
                    let context = format!("{command:?} {way:?} with a bad --timeout");
                    assert_quiet(&output, &markers, &context);
                    assert_eq!(output.status.code(), Some(2), "{context}");
                }
            });
        }
    });
    let redacted_echoes = redacted_echoes.into_inner();
    // Not vacuous: the echoing servers quoted the secrets, and what reached the terminal
    // shows where they were cut out.
    assert!(redacted_echoes >= 9 * 3 * 2, "{redacted_echoes}");

    // Success, with the client's secret a marker and each input token checked by value.
    plain.register_truelayer_client("marker-client", CS, &[REDIRECT]);
    plain.register_worldline_secret_client(
        obauth_mock::WORLDLINE_REALM,
        "marker-client",
        CS,
        &["VOP"],
    );
    for way in [Way::Argv, Way::Env, Way::Files] {
        let context = format!("client credentials {way:?}");
        let output = run_with_secrets(
            way,
            &plain.base_url(),
            "marker-client",
            &[],
            &[
                "truelayer",
                "token",
                "client-credentials",
                "--scope",
                "payments",
            ],
            &[(CLIENT_SECRET, CS)],
            &dir.0,
        );
        assert_quiet(&output, &[CS], &context);
        assert!(output.status.success(), "{context}: {}", stderr(&output));
        let output = run_with_secrets(
            way,
            &plain.worldline_base_url(),
            "marker-client",
            &[],
            &[
                "worldline",
                "token",
                "--realm",
                obauth_mock::WORLDLINE_REALM,
                "--scope",
                "VOP",
            ],
            &[(CLIENT_SECRET, CS)],
            &dir.0,
        );
        assert_quiet(&output, &[CS], &context);
        assert!(output.status.success(), "{context}: {}", stderr(&output));

        // A whole connection: the code, the spent refresh token and the access token given
        // to delete-credential never come back out.
        let link = json(&run_with_secrets(
            way,
            &plain.base_url(),
            "marker-client",
            &["--output", "json"],
            &[
                "truelayer",
                "auth-link",
                "--provider-id",
                "mock",
                "--scope",
                "info offline_access",
                "--redirect-uri",
                REDIRECT,
                "--consent-id",
                "c-1",
                "--pkce",
            ],
            &[(CLIENT_SECRET, CS)],
            &dir.0,
        ));
        let verifier = link["code_verifier"].as_str().unwrap().to_owned();
        let code = obauth_mock_code(&plain.approve(link["result"].as_str().unwrap()).unwrap());
        let exchanged = run_with_secrets(
            way,
            &plain.base_url(),
            "marker-client",
            &["--output", "json"],
            &["truelayer", "token", "exchange", "--redirect-uri", REDIRECT],
            &[(CODE, &code), (VERIFIER, &verifier), (CLIENT_SECRET, CS)],
            &dir.0,
        );
        assert_quiet(&exchanged, &[CS, &code, &verifier], &context);
        let tokens = json(&exchanged);
        let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
        let refreshed = run_with_secrets(
            way,
            &plain.base_url(),
            "marker-client",
            &["--output", "json"],
            &["truelayer", "token", "refresh"],
            &[(REFRESH, &refresh_token), (CLIENT_SECRET, CS)],
            &dir.0,
        );
        assert_quiet(&refreshed, &[CS, &refresh_token], &context);
        let access_token = json(&refreshed)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let deleted = run_with_secrets(
            way,
            &plain.base_url(),
            "marker-client",
            &[],
            &["truelayer", "delete-credential"],
            &[(ACCESS, &access_token)],
            &dir.0,
        );
        assert_quiet(&deleted, &[CS, &access_token], &context);
        assert!(deleted.status.success(), "{context}: {}", stderr(&deleted));
    }
}

/// A server that answers every request with `200` and `body`, for as long as the test runs.
fn fixed_answer_server(body: String) -> String {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn server_text_is_shown_escaped_and_links_that_are_not_web_addresses_refused() {
    let secret = temp_file("escape-secret", "s3cret\n");
    let secret = secret.to_str().unwrap();
    let token = |token_type: &str| {
        let base = fixed_answer_server(
            serde_json::json!({
                "access_token": "at-\u{1b}[2J\u{1b}]0;pwned\u{7}",
                "token_type": token_type,
                "expires_in": 3600,
                "scope": "pay\u{1b}[8mments",
            })
            .to_string(),
        );
        obauth(&[
            "--base-url",
            &base,
            "--client-id",
            "c",
            "--client-secret-file",
            secret,
            "truelayer",
            "token",
            "client-credentials",
            "--scope",
            "payments",
        ])
    };
    let output = token("Bearer");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(
        text.contains("at-\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"),
        "{text}"
    );
    assert!(text.contains("scope: pay\\u{1b}[8mments"), "{text}");
    // A token_type forging a second line is refused, and the message says so on one line.
    let output = token("Bearer\r\nforged: yes");
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(!stderr(&output).contains('\r'), "{:?}", stderr(&output));

    let providers = serde_json::json!([{
        "provider_id": "ob-\u{1b}[31mred",
        "display_name": "Bank\u{202e}gnp.exe",
        "country": "uk",
        "scopes": ["info"],
        "logo_url": "https://x/l.svg",
        "icon_url": "https://x/i.svg",
        "release_stage": "general_availability",
    }])
    .to_string();
    let base = fixed_answer_server(providers);
    let output = obauth(&["--base-url", &base, "truelayer", "providers"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("ob-\\u{1b}[31mred") && text.contains("Bank\\u{202e}gnp.exe"),
        "{text}"
    );

    for link in [
        "javascript:alert(1)",
        "\u{1b}]8;;https://evil.example\u{7}https://auth.truelayer.com\u{1b}]8;;\u{7}",
        "http://evil.example/login",
    ] {
        let base =
            fixed_answer_server(serde_json::json!({ "result": link, "success": true }).to_string());
        let output = obauth(&[
            "--base-url",
            &base,
            "--client-id",
            "c",
            "--client-secret-file",
            secret,
            "truelayer",
            "auth-link",
            "--provider-id",
            "p",
            "--scope",
            "info",
            "--redirect-uri",
            REDIRECT,
            "--consent-id",
            "c-1",
        ]);
        assert_eq!(output.status.code(), Some(3), "{link}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("not an https URL"),
            "{}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
        assert!(!stderr(&output).contains('\u{1b}'));
    }
}

#[test]
fn hostile_answers_end_the_command_with_exit_3_in_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let faults = [
        obauth_mock::Fault::Raw {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html>hello</html>".to_vec(),
        },
        obauth_mock::Fault::Raw {
            status: 307,
            headers: vec![("location".into(), format!("{target}/connect/token"))],
            body: Vec::new(),
        },
        obauth_mock::Fault::OversizedBody(50 * 1024 * 1024),
        obauth_mock::Fault::Trickle(std::time::Duration::from_secs(1)),
    ];
    for fault in faults {
        let name = format!("{fault:?}").chars().take(40).collect::<String>();
        let mock = MockServer::start();
        mock.inject(Some(obauth_mock::Endpoint::TrueLayerToken), 3, fault);
        let started = std::time::Instant::now();
        let output = tl(
            &mock,
            &[
                "token",
                "client-credentials",
                "--scope",
                "payments",
                "--timeout",
                "2",
            ],
        );
        assert_eq!(output.status.code(), Some(3), "{name}: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "{name}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_quiet(&output, &[obauth_mock::TRUELAYER_CLIENT_SECRET], &name);
    }
    assert!(
        listener.accept().is_err(),
        "the redirect target was contacted"
    );
}

#[test]
fn a_timeout_too_short_for_a_retry_pause_means_no_retries_not_an_error() {
    let mock = MockServer::start();
    let output = tl(
        &mock,
        &[
            "token",
            "client-credentials",
            "--scope",
            "payments",
            "--timeout",
            "0.2",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // With no room for a pause, a failure is not retried.
    mock.inject(
        Some(obauth_mock::Endpoint::TrueLayerToken),
        1,
        obauth_mock::Fault::Status {
            status: 503,
            retry_after: None,
        },
    );
    let output = tl(
        &mock,
        &[
            "token",
            "client-credentials",
            "--scope",
            "payments",
            "--timeout",
            "0.2",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 2);
}

#[test]
fn standard_input_holds_one_secret_per_run() {
    use std::io::Write as _;
    use std::process::Stdio;
    let mock = MockServer::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_obauth"))
        .args([
            "--base-url",
            &mock.base_url(),
            "--client-id",
            obauth_mock::TRUELAYER_CLIENT_ID,
            "--client-secret-file",
            "-",
            "truelayer",
            "token",
            "exchange",
            "--redirect-uri",
            REDIRECT,
            "--code-file",
            "-",
        ])
        .env_remove("OBAUTH_CLIENT_SECRET")
        .env_remove("OBAUTH_CODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", obauth_mock::TRUELAYER_CLIENT_SECRET).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("standard input is already read"),
        "{}",
        stderr(&output)
    );
    assert_eq!(mock.requests(obauth_mock::Endpoint::TrueLayerToken), 0);
}
