//! The targets whose input is text or bytes from a user, a browser or a store rather than
//! an HTTP answer.

use obauth_core::store::{TokenRecord, codec};
use obauth_core::truelayer::auth_dialog::{AuthorizationCallback, parse_callback};
use obauth_core::truelayer::{Environment, TrueLayerConfig};
use obauth_core::types::truelayer::Scope;
use obauth_core::types::worldline::Scope as WorldlineScope;
use obauth_core::types::{ClientSecret, Scopes};
use obauth_core::worldline::assertion::{
    AssertionSigner, RsaBackend, RsaKeySigner, SigningCertificate,
};
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{BaseUrl, CallbackError};
use std::sync::OnceLock;

use crate::seeds;

/// Splits an input into its first line and the rest (the whole input when there is no
/// line break).
fn first_line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or(("", text))
}

/// `auth_callback`: the first line is the `state` the client expects, the rest the
/// redirect (a URL, a query string or a `form_post` body).
///
/// Invariants: a callback accepted under one `state` is refused under any other; its code
/// is never empty and reads back the same when sent again as a plain query.
pub(crate) fn auth_callback(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (state, redirect) = first_line(&text);
    let Ok(callback) = parse_callback(redirect, state) else {
        return;
    };
    assert!(!state.is_empty(), "a callback accepted with an empty state");
    let other = format!("{state}x");
    assert!(
        matches!(
            parse_callback(redirect, &other),
            Err(CallbackError::StateMismatch)
        ),
        "a callback accepted under two states"
    );
    let code = callback.code.expose_secret();
    assert!(!code.is_empty(), "an empty code accepted");
    let again = query(code, state);
    let reread: AuthorizationCallback =
        parse_callback(&again, state).expect("a callback that obauth itself wrote");
    assert_eq!(reread.code.expose_secret(), code);
}

fn query(code: &str, state: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .append_pair("state", state)
        .finish()
}

/// The certificate of the seed key, which a key must match to be accepted.
fn seed_certificate() -> &'static SigningCertificate {
    static CERTIFICATE: OnceLock<SigningCertificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        SigningCertificate::from_pem(seeds::SEED_CERTIFICATE).expect("the seed certificate")
    })
}

/// `keys_and_certificates`: the input read as a PEM text and as DER bytes, as a
/// certificate and as a private key in every backend.
///
/// Invariants: a certificate that parses has a 40-digit upper-case hex fingerprint; a key
/// that is accepted signs, with a signature of at least 2048 bits.
pub(crate) fn keys_and_certificates(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for certificate in [
        SigningCertificate::from_pem(&text),
        SigningCertificate::from_der(data),
    ]
    .into_iter()
    .flatten()
    {
        let fingerprint = certificate.sha1_fingerprint();
        assert!(
            fingerprint.len() == 40
                && fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
            "a fingerprint that is not SHA-1 hex: {fingerprint}"
        );
    }
    let certificate = seed_certificate();
    for backend in RsaBackend::ALL {
        for signer in [
            RsaKeySigner::from_pem_using(backend, &text, certificate),
            RsaKeySigner::from_der_using(backend, data, certificate),
        ]
        .into_iter()
        .flatten()
        {
            check_signer(&signer, true);
        }
    }
    if let Ok(signer) = RsaKeySigner::from_pem_with_key_id(&text, "fuzz-kid") {
        check_signer(&signer, false);
    }
}

const SIGNED: &[u8] = b"header.payload";

/// The seed key's signature of [`SIGNED`]: RSASSA-PKCS1-v1_5 is deterministic, so a key
/// accepted for the seed certificate must give these very bytes.
fn reference_signature() -> &'static [u8] {
    static SIGNATURE: OnceLock<Vec<u8>> = OnceLock::new();
    SIGNATURE.get_or_init(|| {
        RsaKeySigner::from_pem_using(RsaBackend::Ring, seeds::SEED_KEY, seed_certificate())
            .expect("the seed key")
            .sign_rs256(SIGNED)
            .expect("the seed key signs")
    })
}

fn check_signer(signer: &RsaKeySigner, for_seed_certificate: bool) {
    let signature = signer.sign_rs256(SIGNED).unwrap_or_else(|error| {
        panic!(
            "a key accepted by {} does not sign: {error}",
            signer.backend()
        )
    });
    assert!(
        signature.len() >= 256,
        "a signature of {} bytes from an accepted key",
        signature.len()
    );
    if for_seed_certificate {
        assert_eq!(
            signature,
            reference_signature(),
            "a key accepted for the seed certificate by {} signs wrongly",
            signer.backend()
        );
    }
}

/// `urls_and_realms`: line 1 a base URL, line 2 a realm, line 3 a client id.
///
/// Invariants: a base URL that parses reads back the same, is `https` or loopback `http`,
/// and keeps every endpoint under it; a realm never changes the token URL's path outside
/// its own segment.
pub(crate) fn urls_and_realms(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let url = lines.next().unwrap_or_default();
    let realm = lines.next().unwrap_or("realm");
    let client_id = lines.next().unwrap_or("client");
    let Ok(base) = BaseUrl::parse(url) else {
        return;
    };
    let again = BaseUrl::parse(base.as_str()).expect("a base URL obauth normalised");
    assert_eq!(again, base, "a base URL that changes when read again");
    let lower = base.as_str().to_ascii_lowercase();
    assert!(
        lower.starts_with("https://") || (lower.starts_with("http://") && base.is_loopback()),
        "plain http to a host that is not loopback: {base:?}"
    );
    assert!(
        !base.as_str().ends_with('/') && !base.as_str().contains(['?', '#']),
        "a base URL with a trailing slash, query or fragment: {base:?}"
    );
    let base_path = http::Uri::try_from(base.as_str())
        .expect("a base URL is a URI")
        .path()
        .trim_end_matches('/')
        .to_owned();

    if let Ok(config) = TrueLayerConfig::new(Environment::Custom(base.clone()), client_id) {
        assert_eq!(
            config.token_url().path(),
            format!("{base_path}/connect/token"),
            "the token URL left the base URL"
        );
    }
    let auth = WorldlineAuth::ClientSecret(ClientSecret::new("secret"));
    if let Ok(config) = WorldlineConfig::new(base, realm, client_id, auth) {
        let path = config.token_url().path();
        let segment = path
            .strip_prefix(&format!("{base_path}/realms/"))
            .and_then(|rest| rest.strip_suffix("/protocol/openid-connect/token"))
            .unwrap_or_else(|| panic!("the realm {realm:?} moved the token URL: {path}"));
        assert!(
            !segment.is_empty() && !segment.contains('/') && segment != "." && segment != "..",
            "the realm {realm:?} is not one path segment: {segment:?}"
        );
        assert_eq!(
            percent_decode(segment).as_deref(),
            Some(realm),
            "the realm does not read back from the token URL"
        );
    }
}

fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// `scopes`: a scope string of either server.
///
/// Invariants: no scope is empty or holds white space, and the wire form reads back as the
/// same list.
pub(crate) fn scopes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let truelayer = Scopes::<Scope>::parse(&text);
    for scope in &truelayer {
        let scope = scope.as_ref();
        assert!(!scope.is_empty() && !scope.contains(|c: char| c.is_ascii_whitespace()));
    }
    let wire = truelayer.to_wire();
    assert_eq!(Scopes::<Scope>::parse(&wire).to_wire(), wire);
    assert_eq!(Scopes::<Scope>::parse(&wire).len(), truelayer.len());
    let worldline = Scopes::<WorldlineScope>::parse(&text);
    assert_eq!(
        worldline.to_wire(),
        wire,
        "the two servers split scopes alike"
    );
}

/// `store_record`: bytes a store gave back, read without and with a sealing key.
///
/// Invariants: a record that reads writes back to a record that reads the same.
pub(crate) fn store_record(data: &[u8]) {
    let key = seeds::store_key();
    let sealing = seeds::sealing_key();
    for sealing in [None, Some(&sealing)] {
        let Ok(record) = codec::decode(data, &key, sealing) else {
            continue;
        };
        let mut random = seeds::Counter(1);
        let bytes = codec::encode(&record, &key, sealing, &mut random)
            .expect("a record that was read can be written");
        let again: TokenRecord =
            codec::decode(&bytes, &key, sealing).expect("a record obauth wrote reads back");
        assert_eq!(
            again, record,
            "a record changed on its way through the store"
        );
    }
}
