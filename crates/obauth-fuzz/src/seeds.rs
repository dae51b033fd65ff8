//! The seed inputs of every target: the specs' examples as `fixtures/` holds them, the
//! test keys of `fixtures/keys/`, and hand-written corners (echoed secrets, redirects,
//! `Retry-After`, odd URLs).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use obauth_core::RandomSource;
use obauth_core::error::RandomnessError;
use obauth_core::store::{ConnectionName, SealingKey, StoreKey, TokenRecord, codec};
use obauth_core::types::{AccessToken, RefreshToken};

use crate::responses::{
    ACCESS_TOKEN, AUTH_INPUT, CLIENT_SECRET, CODE, REFRESH_TOKEN, VERIFIER, WORLDLINE_SECRET,
    worldline_assertion,
};

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/",
            $path
        ))
    };
}

/// The certificate of the seed key (`fixtures/keys/fuzz-rsa2048.crt.pem`).
pub(crate) const SEED_CERTIFICATE: &str = fixture!("keys/fuzz-rsa2048.crt.pem");

/// The seed key (`fixtures/keys/fuzz-rsa2048.pkcs8.pem`), a public test key.
pub(crate) const SEED_KEY: &str = fixture!("keys/fuzz-rsa2048.pkcs8.pem");

/// Deterministic bytes, for sealing seeds and for requests.
pub(crate) struct Counter(pub(crate) u8);

impl RandomSource for Counter {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomnessError> {
        for byte in dest {
            self.0 = self.0.wrapping_add(37);
            *byte = self.0;
        }
        Ok(())
    }
}

/// A `status\nheaders\n\nbody` input.
fn answer(status: u16, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("{status}\n");
    for header in headers {
        out.push_str(header);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(body);
    out.into_bytes()
}

const JSON: &str = "content-type: application/json";

/// Each seed padded with 0 to `count - 1` trailing spaces: the response targets give an
/// input to one of `count` operations by its length, and every seed should reach each.
fn for_each_operation(seeds: Vec<Vec<u8>>, count: usize) -> Vec<Vec<u8>> {
    seeds
        .into_iter()
        .flat_map(|seed| {
            (0..count).map(move |pad| {
                let mut padded = seed.clone();
                padded.resize(seed.len() + pad, b' ');
                padded
            })
        })
        .collect()
}

/// Answers that every response target gets: errors, echoes of each secret, odd framing.
fn common_answers(secrets: &[&str]) -> Vec<Vec<u8>> {
    let mut seeds = vec![
        answer(
            400,
            &[JSON],
            fixture!("truelayer/error-400-invalid-grant.json"),
        ),
        answer(
            401,
            &[JSON],
            fixture!("truelayer/error-401-unauthorized.json"),
        ),
        answer(
            401,
            &[JSON],
            fixture!("truelayer/error-401-unauthorized-client.json"),
        ),
        answer(
            401,
            &[JSON],
            fixture!("truelayer/error-401-invalid-refresh-token.json"),
        ),
        answer(500, &[JSON], fixture!("truelayer/error-500-internal.json")),
        answer(
            400,
            &[JSON],
            fixture!("worldline/error-400-invalid-scope.json"),
        ),
        answer(429, &[JSON, "retry-after: 7"], r#"{"error":"slow_down"}"#),
        answer(
            503,
            &["retry-after: Wed, 21 Oct 2015 07:28:00 GMT"],
            "<html>maintenance</html>",
        ),
        answer(503, &["retry-after: 18446744073709551616"], ""),
        answer(
            200,
            &["content-type: text/html"],
            "<html><body>Hello</body></html>",
        ),
        answer(200, &[JSON], r#"{"error":"invalid_client"}"#),
        answer(
            302,
            &["location: https://elsewhere.example/steal?code=x"],
            "",
        ),
        answer(204, &[], ""),
        answer(200, &[JSON], "\u{feff}{}"),
        answer(
            400,
            &[JSON, "x-request-id: req-123", "tl-correlation-id: corr-9"],
            r#"{"error":"invalid_request","error_description":"bad","error_details":{"reason":"x","extra":[1,{"a":"b"}]}}"#,
        ),
        answer(200, &[JSON], &"[".repeat(200)),
    ];
    for secret in secrets {
        let json = format!(
            r#"{{"error":"invalid_request","error_description":"you sent {secret} and client_secret={secret}","error_details":{{"{secret}":"{secret}"}}}}"#
        );
        seeds.push(answer(400, &[JSON], &json));
        seeds.push(answer(200, &[JSON], &json));
        seeds.push(answer(
            502,
            &[
                "content-type: text/html",
                &format!("x-request-id: {secret}"),
            ],
            &format!("<pre>body was: client_secret={secret}&code={secret}</pre>"),
        ));
        seeds.push(answer(
            302,
            &[&format!("location: https://x.example/{secret}")],
            "",
        ));
    }
    seeds
}

const TRUELAYER_SECRETS: [&str; 6] = [
    CLIENT_SECRET,
    CODE,
    VERIFIER,
    REFRESH_TOKEN,
    ACCESS_TOKEN,
    AUTH_INPUT,
];

pub(crate) fn truelayer_token() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        answer(200, &[JSON], fixture!("truelayer/token-200.json")),
        fixture!("truelayer/token-200.json").as_bytes().to_vec(),
        answer(
            200,
            &[JSON],
            r#"{"access_token":"a","expires_in":-1,"token_type":"bearer"}"#,
        ),
        answer(
            200,
            &[JSON],
            r#"{"access_token":"a","expires_in":"3600","token_type":"Bearer","scope":["info"]}"#,
        ),
        answer(
            200,
            &[JSON],
            r#"{"access_token":"a","expires_in":1e400,"token_type":"MAC"}"#,
        ),
    ];
    seeds.extend(common_answers(&TRUELAYER_SECRETS));
    for_each_operation(seeds, 4)
}

pub(crate) fn truelayer_links() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        answer(200, &[JSON], fixture!("truelayer/authuri-200.json")),
        answer(200, &[JSON], fixture!("truelayer/reauthuri-200.json")),
        answer(200, &[JSON], fixture!("truelayer/debug-200.json")),
        answer(
            400,
            &[JSON],
            fixture!("truelayer/error-400-debug-consent.json"),
        ),
        answer(
            200,
            &[JSON],
            r#"{"success":true,"result":"javascript:alert(1)"}"#,
        ),
        answer(
            200,
            &[JSON],
            r#"{"success":true,"result":"http://127.0.0.1:1/dialog"}"#,
        ),
        answer(
            200,
            &[JSON],
            r#"{"success":true,"result":"https://auth.example/\u001b]8;;https://evil/\u0007x"}"#,
        ),
        answer(200, &[JSON], r#"{"success":false,"result":null}"#),
    ];
    seeds.extend(common_answers(&TRUELAYER_SECRETS));
    for_each_operation(seeds, 5)
}

pub(crate) fn providers() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        answer(200, &[JSON], fixture!("truelayer/providers-200.json")),
        answer(
            200,
            &[JSON],
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../obauth-mock/src/providers.json"
            )),
        ),
        answer(200, &[JSON], "[]"),
        answer(
            200,
            &[JSON],
            r#"[{"provider_id":"p","display_name":"P","logo_url":"u","country":"uk","scopes":"info accounts","steps":[{"title":"t","fields":[{"type":"choice","options":[{}]}]}],"availability":{}}]"#,
        ),
    ];
    seeds.extend(common_answers(&TRUELAYER_SECRETS));
    seeds
}

pub(crate) fn worldline_token() -> Vec<Vec<u8>> {
    let assertion = worldline_assertion();
    let mut seeds = vec![
        answer(200, &[JSON], fixture!("worldline/token-200.json")),
        answer(
            200,
            &[JSON],
            r#"{"access_token":"a","expires_in":300,"token_type":"Bearer","not-before-policy":0,"scope":"VOP"}"#,
        ),
        answer(401, &[JSON], r#"{"error":"unauthorized_client"}"#),
        answer(400, &[JSON], r#"{"error_description":"no code"}"#),
    ];
    seeds.extend(common_answers(&[WORLDLINE_SECRET, &assertion]));
    for_each_operation(seeds, 2)
}

pub(crate) fn auth_callback() -> Vec<Vec<u8>> {
    [
        "st-1\nhttps://client.example/callback?code=abc&state=st-1",
        "st-1\nhttps://client.example/callback?code=abc&state=st-1&scope=info%20accounts#frag",
        "st-1\ncode=abc&state=st-1&id_token=eyJ.e30.sig&scope=info+accounts",
        "st-1\n?error=access_denied&error_description=User+said+no&state=st-1",
        "st-1\nerror=provider_error&state=st-1",
        "st-1\ncode=abc&state=st-1&iss=https%3A%2F%2Fauth.truelayer.com",
        "st-1\ncode=abc&code=def&state=st-1",
        "st-1\ncode=&state=st-1",
        "st-1\nstate=st-2&code=abc",
        "\ncode=abc&state=",
        "st%1\ncode=a%zz&state=st%251",
    ]
    .iter()
    .map(|seed| seed.as_bytes().to_vec())
    .collect()
}

/// The DER inside the first PEM block of `pem`.
fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_default()
}

pub(crate) fn keys_and_certificates() -> Vec<Vec<u8>> {
    let pems = [
        SEED_KEY,
        fixture!("keys/fuzz-rsa2048.pkcs1.pem"),
        fixture!("keys/fuzz-rsa2048.crt.pem"),
        fixture!("keys/fuzz-rsa1024.pkcs8.pem"),
        fixture!("keys/fuzz-ec-p256.pkcs8.pem"),
        fixture!("certs/worldline-test-signing.crt.pem"),
    ];
    let mut seeds: Vec<Vec<u8>> = pems.iter().map(|pem| pem.as_bytes().to_vec()).collect();
    seeds.extend(pems.iter().map(|pem| der_of(pem)));
    // The same key on one line, as an environment variable hands it over.
    let one_line: String = pems[0].lines().collect();
    seeds.push(one_line.into_bytes());
    seeds.push(b"-----BEGIN CERTIFICATE-----END CERTIFICATE-----".to_vec());
    seeds.push(
        b"-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PRIVATE KEY-----\n"
            .to_vec(),
    );
    seeds
}

pub(crate) fn urls_and_realms() -> Vec<Vec<u8>> {
    [
        "https://auth.truelayer.com\nrealm\nclient",
        "https://auth.truelayer-sandbox.com/\nmy realm\nsandbox-client",
        "https://api.worldline.example:443/auth\nowner/x\nc",
        "http://127.0.0.1:8080/auth\n..\nc",
        "http://[::1]:99999/x\nr\nc",
        "http://localhost\n%2F\nc",
        "https://user:pw@host/path?q=1#f\nr\nc",
        "http://example.com\nr\nc",
        "HTTPS://HOST.EXAMPLE:0443/A/B/\nr?x#y\nc",
    ]
    .iter()
    .map(|seed| seed.as_bytes().to_vec())
    .collect()
}

pub(crate) fn scopes() -> Vec<Vec<u8>> {
    [
        "info accounts balance cards transactions direct_debits standing_orders offline_access",
        "  VOP\tAIS\r\n PIS ",
        "",
        "payments\u{a0}signup+",
        "openid\u{2003}profile",
    ]
    .iter()
    .map(|seed| seed.as_bytes().to_vec())
    .collect()
}

/// The key the store seeds are written under.
pub(crate) fn store_key() -> StoreKey {
    StoreKey::user(
        "https://auth.truelayer.com/connect/token",
        "fuzz-client",
        "client_secret",
        &ConnectionName::new("fuzz").expect("a valid name"),
    )
}

/// The sealing key of the sealed seeds.
pub(crate) fn sealing_key() -> SealingKey {
    SealingKey::new([7; 32])
}

pub(crate) fn store_record() -> Vec<Vec<u8>> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let records = [
        TokenRecord {
            access_token: Some(AccessToken::new("access-1")),
            obtained_at: at,
            expires_in: 3600,
            refresh_token: Some(RefreshToken::new("refresh-1")),
        },
        TokenRecord {
            access_token: None,
            obtained_at: SystemTime::UNIX_EPOCH,
            expires_in: 0,
            refresh_token: Some(RefreshToken::new("r\"\\\u{1}é")),
        },
    ];
    let key = store_key();
    let sealing = sealing_key();
    let mut seeds = Vec::new();
    for record in &records {
        for sealing in [None, Some(&sealing)] {
            if let Ok(bytes) = codec::encode(record, &key, sealing, &mut Counter(3)) {
                seeds.push(bytes.to_vec());
            }
        }
    }
    seeds.push(br#"{"format":2}"#.to_vec());
    seeds.push(br#"{"format":1,"obtained_at_ms":18446744073709551615,"expires_in":1}"#.to_vec());
    seeds
}
