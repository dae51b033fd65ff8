//! The response targets: each input is an HTTP answer, given to every operation that could
//! receive it through [`Call`], which parses it, scrubs the request's secrets from the
//! error, and decides on a retry.
//!
//! Input format (so that seeds stay readable and the fuzzer can reach the headers):
//!
//! ```text
//! 400
//! content-type: application/json
//! retry-after: 3
//!
//! {"error":"invalid_grant"}
//! ```
//!
//! A first line that is not a status code makes the whole input a `200` JSON body.
//!
//! An input goes to one operation of the target, chosen by its length.
//!
//! Invariants, for every operation and answer: no panic; an error's `Display` and `Debug`
//! never hold a secret the request carried (client secret, code, verifier, tokens, auth
//! inputs, the assertion); a retry waits less than the call's budget; an auth link that
//! parses is `https` (or `http` on loopback).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use obauth_core::expiry::Now;
use obauth_core::retry::RetryPolicy;
use obauth_core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::truelayer::providers::ProvidersQuery;
use obauth_core::types::worldline::Scope as WorldlineScope;
use obauth_core::types::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken, Scopes,
};
use obauth_core::worldline::assertion::{AssertionConfig, AssertionSigner};
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, Call, Operation, SigningError, Step};

use crate::seeds::Counter;

/// The secrets every request of these targets carries, as unique markers. Shorter than the
/// 24 characters that generic redaction catches, so only the exact scrub can hide them.
pub(crate) const CLIENT_SECRET: &str = "Fz-Secret-11.x";
pub(crate) const CODE: &str = "Fz-Code-22.x";
pub(crate) const VERIFIER: &str = "Fz-Verifier-33.abcdefghijklmnopqrstuvwxyz0123";
pub(crate) const REFRESH_TOKEN: &str = "Fz-Refresh-44.x";
pub(crate) const ACCESS_TOKEN: &str = "Fz-Access-55.x";
pub(crate) const AUTH_INPUT: &str = "Fz-Input-66.x";
pub(crate) const WORLDLINE_SECRET: &str = "Fz-Worldline-77.x";
const SIGNATURE: &[u8] = b"Fz-Signature-88.x";

/// The answer an input describes.
pub(crate) fn response(data: &[u8]) -> http::Response<&[u8]> {
    let fallback = || {
        let mut response = http::Response::new(data);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    };
    let Some(line_end) = data.iter().position(|&b| b == b'\n') else {
        return fallback();
    };
    let Some(status) = std::str::from_utf8(&data[..line_end])
        .ok()
        .and_then(|line| line.trim().parse::<u16>().ok())
        .and_then(|code| http::StatusCode::from_u16(code).ok())
    else {
        return fallback();
    };
    let mut rest = &data[line_end + 1..];
    let mut builder = http::Response::builder().status(status);
    loop {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = http::HeaderName::from_bytes(&line[..colon]);
            let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (name, value) {
                builder = builder.header(name, value);
            }
        }
    }
    builder.body(rest).unwrap_or_else(|_| fallback())
}

/// A signer that costs nothing, so that the assertion path runs at fuzzing speed.
struct MarkerSigner;

impl AssertionSigner for MarkerSigner {
    fn key_id(&self) -> &str {
        "FZKID"
    }

    fn sign_rs256(&self, _signing_input: &[u8]) -> Result<Vec<u8>, SigningError> {
        Ok(SIGNATURE.to_vec())
    }
}

const BUDGET: Duration = Duration::from_secs(30);

/// The time every request of the targets is built at.
fn now() -> Now {
    Now {
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        mono: Instant::now(),
    }
}

/// Runs one attempt of `op` against `answer` and checks the invariants.
fn check<O: Operation>(op: &O, answer: &http::Response<&[u8]>, secrets: &[&str]) {
    let now = now();
    let mut random = Counter(0);
    let mut call = Call::new(op, RetryPolicy::default()).with_budget(now.mono, BUDGET);
    let request = match call.request(now, &mut random) {
        Ok(request) => request,
        Err(error) => panic!("{} could not build its request: {error}", O::NAME),
    };
    // What this request carried is what a server could echo; the assertion is a secret
    // too, and only the request knows it. (The markers need no encoding on the wire.)
    let body = String::from_utf8_lossy(request.body()).into_owned();
    let mut carried: Vec<String> = Vec::new();
    for secret in secrets {
        let in_headers = request.headers().values().any(|value| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            value.contains(secret) || basic_credentials(&value).contains(secret)
        });
        if body.contains(secret) || in_headers {
            carried.push((*secret).to_owned());
        }
    }
    carried.extend(form_value(&body, "client_assertion"));
    let mut answer_copy = http::Response::new(*answer.body());
    *answer_copy.status_mut() = answer.status();
    *answer_copy.headers_mut() = answer.headers().clone();
    match call.outcome(Ok(answer_copy), now, &mut random) {
        Step::Done(Ok(_)) => {}
        Step::Done(Err(error)) => {
            let shown = format!("{error}\n{error:?}");
            for secret in &carried {
                assert!(
                    !shown.contains(secret),
                    "{}: the secret {secret:?} reached the error: {shown}",
                    O::NAME
                );
            }
        }
        Step::Retry(delay) => {
            assert!(
                delay < BUDGET,
                "{}: a retry after {delay:?}, past the call's budget",
                O::NAME
            );
        }
    }
}

/// The decoded `id:secret` of a `Basic` authorization, or nothing.
fn basic_credentials(value: &str) -> String {
    use base64::Engine as _;
    value
        .strip_prefix("Basic ")
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .map(|decoded| String::from_utf8_lossy(&decoded).into_owned())
        .unwrap_or_default()
}

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

fn truelayer() -> TrueLayerConfig {
    let base = BaseUrl::parse("https://auth.truelayer-sandbox.com").expect("a valid base URL");
    TrueLayerConfig::new(Environment::Custom(base), "fuzz-client")
        .expect("a valid client")
        .with_client_secret(ClientSecret::new(CLIENT_SECRET))
}

const TRUELAYER_SECRETS: [&str; 6] = [
    CLIENT_SECRET,
    CODE,
    VERIFIER,
    REFRESH_TOKEN,
    ACCESS_TOKEN,
    AUTH_INPUT,
];

/// Which of `count` operations an input goes to: by its length, so that the fuzzer's
/// insertions and deletions move an answer from one operation to the next, and one input
/// costs one operation.
fn pick(data: &[u8], count: usize) -> usize {
    data.len() % count
}

/// `truelayer_token`: the token grants and `DELETE /api/delete`.
pub(crate) fn truelayer_token(data: &[u8]) {
    let answer = response(data);
    let config = truelayer();
    match pick(data, 4) {
        0 => check(
            &config.exchange_code(
                AuthorizationCode::new(CODE),
                "https://client.example/callback",
                Some(CodeVerifier::new(VERIFIER)),
            ),
            &answer,
            &TRUELAYER_SECRETS,
        ),
        1 => check(
            &config.refresh(RefreshToken::new(REFRESH_TOKEN)),
            &answer,
            &TRUELAYER_SECRETS,
        ),
        2 => check(
            &config.client_credentials(Scopes::from([Scope::from("payments")])),
            &answer,
            &TRUELAYER_SECRETS,
        ),
        _ => check(
            &config.delete_credential(AccessToken::new(ACCESS_TOKEN)),
            &answer,
            &TRUELAYER_SECRETS,
        ),
    }
}

/// `truelayer_links`: auth and reauth links, debug ids.
pub(crate) fn truelayer_links(data: &[u8]) {
    let answer = response(data);
    let config = truelayer();
    match pick(data, 5) {
        0 => {
            let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
            let link = AuthLink::new(
                "mock",
                scopes,
                "https://client.example/callback",
                "consent-1",
            )
            .state("fuzz-state")
            .auth_input("username", AUTH_INPUT);
            let op = config.create_auth_link(link);
            check(&op, &answer, &TRUELAYER_SECRETS);
            check_link(op.parse_response(&answer));
        }
        1 => {
            let op = config.create_reauth_link(ReauthLink::new(
                RefreshToken::new(REFRESH_TOKEN),
                "https://client.example/callback",
            ));
            check(&op, &answer, &TRUELAYER_SECRETS);
            check_link(op.parse_response(&answer));
        }
        2 => check(
            &config.create_debug_id(AccessToken::new(ACCESS_TOKEN)),
            &answer,
            &TRUELAYER_SECRETS,
        ),
        3 => check(&config.delete_debug_id(), &answer, &TRUELAYER_SECRETS),
        _ => check(
            &config.delete_debug_id_with_token(AccessToken::new(ACCESS_TOKEN)),
            &answer,
            &TRUELAYER_SECRETS,
        ),
    }
}

/// A link obauth hands to a browser is `https`, or `http` on loopback, with a host, no
/// user info and a valid port if any.
fn check_link(link: Result<String, obauth_core::Error>) {
    let Ok(link) = link else { return };
    let uri: http::Uri = link.parse().expect("an accepted link is a URI");
    let authority = uri.authority().expect("an accepted link has a host");
    let host = authority.host();
    assert!(
        !host.is_empty() && !authority.as_str().contains('@'),
        "{link:?}"
    );
    let port = &authority.as_str()[host.len()..];
    assert!(
        port.is_empty()
            || port
                .strip_prefix(':')
                .and_then(|digits| digits.parse::<u16>().ok())
                .is_some_and(|port| port != 0),
        "an accepted link with a bad port: {link:?}"
    );
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => assert!(
            obauth_core::url::is_loopback_host(host),
            "a plain-http link that is not loopback: {link:?}"
        ),
        _ => panic!("a link that is not http(s): {link:?}"),
    }
}

/// `providers`: `GET /api/providers`, with and without filters.
pub(crate) fn providers(data: &[u8]) {
    let answer = response(data);
    let config = truelayer();
    check(
        &config.providers(ProvidersQuery::default()),
        &answer,
        &TRUELAYER_SECRETS,
    );
}

/// `worldline_token`: the token endpoint with a client secret and with an assertion.
pub(crate) fn worldline_token(data: &[u8]) {
    let answer = response(data);
    let base = BaseUrl::parse("https://api.worldline.example/auth").expect("a valid base URL");
    let scopes = || Scopes::from([WorldlineScope::from("VOP")]);
    let secrets = [WORLDLINE_SECRET];
    let with_secret = WorldlineConfig::new(
        base,
        "fuzz-realm",
        "fuzz-client",
        WorldlineAuth::ClientSecret(ClientSecret::new(WORLDLINE_SECRET)),
    )
    .expect("a valid client");
    if pick(data, 2) == 0 {
        check(&with_secret.token(scopes()), &answer, &secrets);
    } else {
        check(&assertion_client().token(scopes()), &answer, &secrets);
    }
}

fn assertion_client() -> WorldlineConfig {
    let base = BaseUrl::parse("https://api.worldline.example/auth").expect("a valid base URL");
    let assertion =
        AssertionConfig::from_arc(Arc::new(MarkerSigner)).expect("a valid assertion signer");
    WorldlineConfig::new(
        base,
        "fuzz-realm",
        "fuzz-client",
        WorldlineAuth::Assertion(assertion),
    )
    .expect("a valid client")
}

/// The assertion the `worldline_token` target's first request carries, for seeds that
/// echo it.
pub(crate) fn worldline_assertion() -> String {
    let client = assertion_client();
    let op = client.token(Scopes::from([WorldlineScope::from("VOP")]));
    let mut call = Call::new(&op, RetryPolicy::default());
    let request = call
        .request(now(), &mut Counter(0))
        .expect("the assertion request builds");
    form_value(&String::from_utf8_lossy(request.body()), "client_assertion").unwrap_or_default()
}
