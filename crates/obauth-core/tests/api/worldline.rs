//! The Worldline token request with a secret and with an RS256 client assertion,
//! verified by an independent JWT implementation (jsonwebtoken).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use obauth_core::InvalidInput;
use obauth_core::types::worldline::Scope;
use obauth_core::types::{ClientSecret, ErrorCode, Scopes};
use obauth_core::worldline::assertion::{
    AssertionConfig, AssertionSigner, KeyError, MIN_RSA_BITS, RsaBackend, RsaKeySigner,
    SigningCertificate,
};
use obauth_core::worldline::{WorldlineAuth, WorldlineConfig};
use obauth_core::{
    BaseUrl, Error, Operation, OsRandom, Replay, RequestContext, SigningError, USER_AGENT,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::Value;

use super::support::{
    Counter, body_text, build, fixture, header, json, self_signed, test_certificate_pem, test_key,
};

/// The fingerprint `openssl x509 -noout -fingerprint -sha1` printed for the fixture.
const FIXTURE_FINGERPRINT: &str = "498DFDC651C05DC728A5E153FE685D0730E97F69";
const BASE: &str = "https://openbanking.example/auth";

/// The certificate of the test key.
fn certificate() -> SigningCertificate {
    SigningCertificate::from_pem(test_certificate_pem()).unwrap()
}

/// A certificate whose fingerprint `openssl` was asked for (its key is not in the tree).
fn fixture_certificate() -> SigningCertificate {
    SigningCertificate::from_pem(fixture!("certs/worldline-test-signing.crt.pem")).unwrap()
}

fn signer() -> RsaKeySigner {
    let pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    RsaKeySigner::from_pem(&pem, &certificate()).unwrap()
}

fn assertion_config(assertion: AssertionConfig) -> WorldlineConfig {
    WorldlineConfig::new(
        BaseUrl::parse(BASE).unwrap(),
        "example-realm",
        "5734699",
        WorldlineAuth::Assertion(assertion),
    )
    .unwrap()
}

fn form(request: &http::Request<Vec<u8>>) -> Vec<(String, String)> {
    form_pairs(body_text(request))
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.trim()
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(name), decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn decoding_key() -> DecodingKey {
    let key = test_key();
    DecodingKey::from_rsa_components(
        &URL_SAFE_NO_PAD.encode(key.n_bytes()),
        &URL_SAFE_NO_PAD.encode(key.e_bytes()),
    )
    .unwrap()
}

#[test]
fn secret_request_matches_the_spec_example_byte_for_byte() {
    let config = WorldlineConfig::new(
        BaseUrl::parse(BASE).unwrap(),
        "example-realm",
        "Worldline-000021",
        WorldlineAuth::ClientSecret(ClientSecret::new("password123")),
    )
    .unwrap();
    let op = config.token(Scopes::from([Scope::Vop, Scope::Wero]));
    assert_eq!(op.replay(), Replay::Safe);
    let request = build(&op).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.uri(),
        "https://openbanking.example/auth/realms/example-realm/protocol/openid-connect/token"
    );
    assert_eq!(
        header(&request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(header(&request, "accept"), Some("application/json"));
    assert_eq!(header(&request, "user-agent"), Some(USER_AGENT));
    // The fixture was encoded by Python's urllib from the spec's example values.
    assert_eq!(
        body_text(&request),
        fixture!("worldline/token-request-secret.form").trim()
    );
}

#[test]
fn form_values_are_percent_encoded() {
    let config = WorldlineConfig::new(
        BaseUrl::parse("http://127.0.0.1:9999/auth").unwrap(),
        "realm with/slash",
        "id&x=1",
        WorldlineAuth::ClientSecret(ClientSecret::new("p@ss+w%rd ü")),
    )
    .unwrap();
    let request = build(&config.token(Scopes::from([Scope::Vop]))).unwrap();
    assert_eq!(
        request.uri(),
        "http://127.0.0.1:9999/auth/realms/realm%20with%2Fslash/protocol/openid-connect/token"
    );
    assert_eq!(
        body_text(&request),
        "grant_type=client_credentials&scope=VOP&client_id=id%26x%3D1&client_secret=p%40ss%2Bw%25rd+%C3%BC"
    );
    assert_eq!(form(&request)[3].1, "p@ss+w%rd ü");
}

#[test]
fn assertion_request_has_the_spec_shape_and_verifies_independently() {
    let config = assertion_config(AssertionConfig::new(signer()).unwrap());
    let now = SystemTime::now();
    let mut random = OsRandom;
    let op = config.token(Scopes::from([Scope::Vop, Scope::Wero]));
    let request = op
        .build_request(&mut RequestContext::new(now, &mut random))
        .unwrap();
    let pairs = form(&request);
    let names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
    let spec_names: Vec<String> = form_pairs(fixture!("worldline/token-request-assertion.form"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, spec_names);
    assert_eq!(
        pairs[2].1,
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let jwt = &pairs[3].1;

    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(
        header.kid.as_deref(),
        Some(certificate().sha1_fingerprint())
    );
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    let issuer = "https://openbanking.example/auth/realms/example-realm";
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[issuer]);
    validation.set_issuer(&["5734699"]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub", "jti"]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &decoding_key(), &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "5734699");
    assert_eq!(claims["aud"], issuer, "aud is one string, not an array");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(
        iat,
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
    assert_eq!(claims.as_object().unwrap().len(), 6);
}

#[test]
fn each_attempt_signs_a_fresh_jti() {
    let config = assertion_config(AssertionConfig::new(signer()).unwrap());
    let op = config.token(Scopes::from([Scope::Vop]));
    let mut random = OsRandom;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let request = op
            .build_request(&mut RequestContext::new(SystemTime::now(), &mut random))
            .unwrap();
        let jwt = form(&request)[3].1.clone();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()));
    }
}

#[test]
fn audience_lifetime_and_clock_are_inputs() {
    let assertion = AssertionConfig::new(signer())
        .unwrap()
        .with_audience("https://custom.example/aud")
        .with_lifetime(Duration::from_secs(30))
        .unwrap();
    let config = assertion_config(assertion);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_781_615_413);
    let request = config
        .token(Scopes::from([Scope::Vop]))
        .build_request(&mut RequestContext::new(at, &mut Counter(0)))
        .unwrap();
    let jwt = form(&request)[3].1.clone();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.set_audience(&["https://custom.example/aud"]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding_key(), &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["iat"], 1_781_615_413u64);
    assert_eq!(claims["exp"], 1_781_615_443u64);
    // Counter randomness 0..15, base64url: reproducible.
    assert_eq!(
        claims["jti"],
        URL_SAFE_NO_PAD.encode((0u8..16).collect::<Vec<_>>())
    );

    assert!(
        AssertionConfig::new(signer())
            .unwrap()
            .with_lifetime(Duration::ZERO)
            .is_err()
    );
    assert!(
        AssertionConfig::new(signer())
            .unwrap()
            .with_lifetime(Duration::from_secs(3601))
            .is_err()
    );
}

#[test]
fn certificate_fingerprint_matches_openssl_in_pem_and_der() {
    let certificate = fixture_certificate;
    assert_eq!(certificate().sha1_fingerprint(), FIXTURE_FINGERPRINT);
    let der = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/certs/worldline-test-signing.crt.der"
    ));
    assert_eq!(SigningCertificate::from_der(der).unwrap(), certificate());
    // A chain: the first certificate is the signing one.
    let chain = format!(
        "junk before\n{}{}",
        fixture!("certs/worldline-test-signing.crt.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(SigningCertificate::from_pem(&chain).unwrap(), certificate());
    // The spec example's kid has the same form.
    let example = fixture!("worldline/token-request-assertion.form");
    let jwt = form_pairs(example).into_iter().last().unwrap().1;
    let kid = jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap();
    assert_eq!(kid, "B4E11A49EE0D1239E7F784919B91DF577E839385");
    assert!(
        kid.len() == FIXTURE_FINGERPRINT.len()
            && kid
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
}

#[test]
fn keys_in_pkcs1_and_pkcs8_pem_sign_the_same() {
    let cert = certificate();
    let pkcs1 = test_key().to_pkcs1_pem(LineEnding::LF).unwrap();
    let pkcs8 = test_key().to_pkcs8_pem(LineEnding::CRLF).unwrap();
    let a = RsaKeySigner::from_pem(&pkcs1, &cert).unwrap();
    let b = RsaKeySigner::from_pem(&pkcs8, &cert).unwrap();
    // PKCS#1 v1.5 signatures are deterministic.
    assert_eq!(
        a.sign_rs256(b"input").unwrap(),
        b.sign_rs256(b"input").unwrap()
    );
    let der = test_key().to_pkcs8_der().unwrap();
    let c = RsaKeySigner::from_der(der.as_bytes(), &cert).unwrap();
    assert_eq!(
        c.sign_rs256(b"input").unwrap(),
        a.sign_rs256(b"input").unwrap()
    );
    // Key and certificate in one file.
    let bundle = format!("{}\n{}", test_certificate_pem(), &*pkcs1);
    assert!(RsaKeySigner::from_pem(&bundle, &cert).is_ok());
    assert_eq!(
        format!("{a:?}"),
        format!(
            "RsaKeySigner {{ key_id: \"{}\", backend: AwsLcRs, .. }}",
            cert.sha1_fingerprint()
        )
    );
}

#[test]
fn pem_keys_are_read_as_openssl_reads_them() {
    // The same PKCS#8 key rewrapped at 76 columns, on one line (as environment variables
    // and secret stores carry it), and with trailing spaces and CRLFs.
    let pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let wrap = |width: usize, end: &str| {
        let mut out = String::from("-----BEGIN PRIVATE KEY-----");
        out.push_str(end);
        for chunk in body.as_bytes().chunks(width) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push_str(end);
        }
        out.push_str("-----END PRIVATE KEY-----");
        out.push_str(end);
        out
    };
    let reference = signer();
    for variant in [
        wrap(76, "\n"),
        format!("-----BEGIN PRIVATE KEY-----{body}-----END PRIVATE KEY-----"),
        wrap(64, "  \r\n"),
    ] {
        let read = RsaKeySigner::from_pem(&variant, &certificate()).unwrap();
        assert_eq!(read.key_id(), reference.key_id());
        // The same key: the same signature over the same bytes (RS256 is deterministic).
        assert_eq!(
            read.sign_rs256(b"payload").unwrap(),
            reference.sign_rs256(b"payload").unwrap()
        );
    }
    // Headers (an old-style encrypted key) are refused with a reason.
    let headed = pem.replace(
        "-----BEGIN PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n",
    );
    let error = RsaKeySigner::from_pem(&headed, &certificate()).unwrap_err();
    assert!(error.to_string().contains("headers"), "{error}");
}

#[test]
fn bad_keys_and_certificates_are_clear_input_errors() {
    let cert = certificate();
    let cases = [
        ("", "private key"),
        (
            fixture!("certs/worldline-test-signing.crt.pem"),
            "private key",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "private key",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "private key",
        ),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "private key",
        ),
    ];
    for (pem, what) in cases {
        let error = RsaKeySigner::from_pem(pem, &cert).unwrap_err();
        assert!(matches!(error, KeyError::Unreadable(_)), "{pem}: {error:?}");
        assert_eq!(InvalidInput::from(error).what(), what, "{pem}");
    }
    let encrypted = RsaKeySigner::from_pem(cases[4].0, &cert).unwrap_err();
    assert!(encrypted.to_string().contains("encrypted"));

    assert!(SigningCertificate::from_pem("no pem here").is_err());
    // Found by fuzzing: BEGIN and END sharing their dashes made the reader slice backwards
    // and panic. Each is an input error now.
    for glued in [
        "-----BEGIN CERTIFICATE-----END CERTIFICATE-----",
        "-----BEGIN PRIVATE KEY-----END PRIVATE KEY-----",
    ] {
        assert!(SigningCertificate::from_pem(glued).is_err(), "{glued}");
        let error = RsaKeySigner::from_pem(glued, &cert).unwrap_err();
        assert!(
            matches!(error, KeyError::Unreadable(_)),
            "{glued}: {error:?}"
        );
    }
    assert!(SigningCertificate::from_der(&[0x04; 100]).is_err());
    // A SEQUENCE that is not a certificate.
    let mut sequence = vec![0x30, 0x81, 0x80];
    sequence.extend([0x02, 0x01, 0x00].repeat(42));
    sequence.extend([0x05, 0x00]);
    assert!(SigningCertificate::from_der(&sequence).is_err());
    let key_pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    assert!(SigningCertificate::from_pem(&key_pem).is_err());
}

#[test]
fn a_key_with_a_corrupted_private_part_is_refused_or_signs_correctly() {
    // Found by fuzzing: the fuzz seed key in PKCS#1 DER with one byte of its CRT exponent
    // dP changed (offset 889) still parsed in ring, its public half matching the
    // certificate, and then failed every signature. Each backend must refuse it when the
    // signer is made, or sign exactly as the intact key does.
    let certificate = SigningCertificate::from_pem(fixture!("keys/fuzz-rsa2048.crt.pem")).unwrap();
    let intact = fixture!("keys/fuzz-rsa2048.pkcs1.pem");
    let reference = RsaKeySigner::from_pem(intact, &certificate)
        .unwrap()
        .sign_rs256(b"payload")
        .unwrap();
    let body: String = intact.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(der[889], 155, "the fixture key changed; find dP again");
    der[889] = 128;
    let mut refused = Vec::new();
    for backend in RsaBackend::ALL {
        match RsaKeySigner::from_der_using(backend, &der, &certificate) {
            Err(KeyError::Unreadable(input)) => {
                assert_eq!(input.what(), "private key", "{backend}");
                refused.push(backend);
            }
            Err(other) => panic!("{backend}: {other:?}"),
            Ok(signer) => assert_eq!(
                signer.sign_rs256(b"payload").unwrap(),
                reference,
                "{backend} accepted the corrupted key and signs wrongly"
            ),
        }
    }
    assert!(refused.contains(&RsaBackend::Ring), "{refused:?}");
}

#[test]
fn every_backend_signs_the_same_verifiable_assertion() {
    let pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    let backends: Vec<RsaBackend> = RsaBackend::ALL
        .into_iter()
        .filter(|backend| backend.is_available())
        .collect();
    assert_eq!(backends, RsaBackend::ALL, "the tests build every backend");
    assert_eq!(RsaBackend::preferred(), Some(RsaBackend::AwsLcRs));
    let signatures: Vec<Vec<u8>> = backends
        .iter()
        .map(|backend| {
            let signer = RsaKeySigner::from_pem_using(*backend, &pem, &certificate()).unwrap();
            assert_eq!(signer.backend(), *backend);
            let config = assertion_config(AssertionConfig::new(signer).unwrap());
            let request = config
                .token(Scopes::from([Scope::Vop]))
                .build_request(&mut RequestContext::new(SystemTime::now(), &mut OsRandom))
                .unwrap();
            let jwt = form(&request)[3].1.clone();
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_audience(&["https://openbanking.example/auth/realms/example-realm"]);
            jsonwebtoken::decode::<Value>(&jwt, &decoding_key(), &validation)
                .unwrap_or_else(|error| panic!("{backend}: {error}"));
            RsaKeySigner::from_pem_using(*backend, &pem, &certificate())
                .unwrap()
                .sign_rs256(b"the same input")
                .unwrap()
        })
        .collect();
    // RSASSA-PKCS1-v1_5 is deterministic: every backend computes the same bytes.
    assert!(signatures.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_before_any_request() {
    let other_key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let other_certificate = SigningCertificate::from_pem(&self_signed(&other_key)).unwrap();
    let pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    let pkcs1 = test_key().to_pkcs1_pem(LineEnding::LF).unwrap();
    let der = test_key().to_pkcs8_der().unwrap();
    for backend in RsaBackend::ALL {
        for error in [
            RsaKeySigner::from_pem_using(backend, &pem, &other_certificate).unwrap_err(),
            RsaKeySigner::from_pem_using(backend, &pkcs1, &other_certificate).unwrap_err(),
            RsaKeySigner::from_der_using(backend, der.as_bytes(), &other_certificate).unwrap_err(),
            RsaKeySigner::from_pem_using(backend, &pem, &fixture_certificate()).unwrap_err(),
        ] {
            assert_eq!(error, KeyError::DoesNotMatchCertificate, "{backend}");
            assert!(
                error
                    .to_string()
                    .contains("does not belong to the certificate")
            );
        }
        // The certificate's own key is accepted.
        let own = other_key.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(RsaKeySigner::from_pem_using(backend, &own, &other_certificate).is_ok());
    }
    // Through the crate's error: an input error naming the key.
    let error = obauth_core::Error::from(KeyError::DoesNotMatchCertificate);
    assert!(matches!(error, Error::InvalidInput(ref input) if input.what() == "private key"));
}

#[test]
fn short_and_non_rsa_keys_and_certificates_are_refused() {
    // A 1024-bit key: too short, whichever backend (checked before the certificate).
    let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    let small_pem = small.to_pkcs8_pem(LineEnding::LF).unwrap();
    for backend in RsaBackend::ALL {
        let error = RsaKeySigner::from_pem_using(backend, &small_pem, &certificate()).unwrap_err();
        assert_eq!(error, KeyError::TooShort { bits: 1024 }, "{backend}");
        assert!(error.to_string().contains(&MIN_RSA_BITS.to_string()));
    }
    let error = RsaKeySigner::from_pem_with_key_id(&small_pem, "kid").unwrap_err();
    assert_eq!(error, KeyError::TooShort { bits: 1024 });

    // An EC key and its certificate.
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ec_certificate = rcgen::CertificateParams::new(vec!["ec".to_owned()])
        .unwrap()
        .self_signed(&ec)
        .unwrap()
        .pem();
    let ec_certificate = SigningCertificate::from_pem(&ec_certificate).unwrap();
    let error = RsaKeySigner::from_pem(&ec.serialize_pem(), &certificate()).unwrap_err();
    assert!(error.to_string().contains("not an RSA key"), "{error}");
    let pem = test_key().to_pkcs8_pem(LineEnding::LF).unwrap();
    let error = RsaKeySigner::from_pem(&pem, &ec_certificate).unwrap_err();
    assert_eq!(error, KeyError::CertificateNotRsa);

    // A printable, non-empty kid.
    for kid in ["", "  ", "kid\n"] {
        let error = RsaKeySigner::from_pem_with_key_id(&pem, kid).unwrap_err();
        assert_eq!(error, KeyError::InvalidKeyId);
    }
}

#[test]
fn a_custom_signer_is_used_and_its_failure_is_typed() {
    struct Hsm;
    impl AssertionSigner for Hsm {
        fn key_id(&self) -> &str {
            "HSM-KEY-1"
        }
        fn sign_rs256(&self, _input: &[u8]) -> Result<Vec<u8>, SigningError> {
            Err(SigningError::new("HSM unreachable"))
        }
    }
    let config = assertion_config(AssertionConfig::new(Hsm).unwrap());
    struct NoKid;
    impl AssertionSigner for NoKid {
        fn key_id(&self) -> &str {
            " "
        }
        fn sign_rs256(&self, _input: &[u8]) -> Result<Vec<u8>, SigningError> {
            Ok(vec![1])
        }
    }
    assert_eq!(AssertionConfig::new(NoKid).unwrap_err().what(), "key id");
    let error = build(&config.token(Scopes::from([Scope::Vop]))).unwrap_err();
    assert!(matches!(error, Error::Signing(_)));
    assert!(error.to_string().contains("HSM unreachable"));
    assert!(!error.is_retryable());
}

#[test]
fn worldline_responses() {
    let config = assertion_config(AssertionConfig::new(signer()).unwrap());
    let op = config.token(Scopes::from([Scope::Vop]));
    let token = op
        .parse_response(&json(200, fixture!("worldline/token-200.json")))
        .unwrap();
    assert_eq!(token.expires_in, 300);
    for (status, body, code) in [
        (
            400,
            fixture!("worldline/error-400-invalid-scope.json"),
            ErrorCode::InvalidScope,
        ),
        (
            400,
            r#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#,
            ErrorCode::InvalidClient,
        ),
        (
            401,
            r#"{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}"#,
            ErrorCode::InvalidClient,
        ),
    ] {
        let error = op.parse_response(&json(status, body)).unwrap_err();
        assert_eq!(error.api_code(), Some(&code));
        assert!(!error.is_retryable());
    }
    // The error schema requires no field: a body with only a description is still the
    // server's refusal, with an unrecognised (empty) code.
    let error = op
        .parse_response(&json(
            400,
            r#"{"error_description":"Invalid client credentials"}"#,
        ))
        .unwrap_err();
    let code = error.api_code().expect("an API error");
    assert!(!code.is_known() && code.as_str().is_empty());
    assert_eq!(
        error.to_string(),
        "server answered 400 Bad Request: Invalid client credentials"
    );
}

#[test]
fn worldline_config_is_validated() {
    let base = || BaseUrl::parse(BASE).unwrap();
    let secret = || WorldlineAuth::ClientSecret(ClientSecret::new("s"));
    assert_eq!(
        WorldlineConfig::new(base(), "", "id", secret())
            .unwrap_err()
            .what(),
        "realm"
    );
    assert_eq!(
        WorldlineConfig::new(base(), "r", "", secret())
            .unwrap_err()
            .what(),
        "client_id"
    );
    // `..` would send the request to `{base}/protocol/openid-connect/token`.
    for dots in [".", ".."] {
        assert_eq!(
            WorldlineConfig::new(base(), dots, "id", secret())
                .unwrap_err()
                .what(),
            "realm"
        );
    }
    // Dots inside a realm's name are fine; `%2e` is sent encoded, as `%252e`.
    for fine in ["a.b", "...", "%2e"] {
        assert!(
            WorldlineConfig::new(base(), fine, "id", secret()).is_ok(),
            "{fine}"
        );
    }
    let empty = WorldlineAuth::ClientSecret(ClientSecret::new(""));
    assert_eq!(
        WorldlineConfig::new(base(), "r", "id", empty)
            .unwrap_err()
            .what(),
        "client_secret"
    );
    let config = WorldlineConfig::new(base(), "r", "id", secret()).unwrap();
    assert!(!format!("{config:?}").contains("\"s\""));
    assert!(matches!(
        build(&config.token(Scopes::new())),
        Err(Error::InvalidInput(invalid)) if invalid.what() == "scope"
    ));
}
