//! obauth's Worldline client against a real, OpenID-certified authorization server
//! (oidc-provider) configured as a Keycloak realm: secret and RS256 assertion, through
//! both bindings, and the refusals with the server's own error codes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use obauth_async::core::worldline::WorldlineAuth;
use obauth_async::core::worldline::assertion::{
    AssertionConfig, AssertionSigner, RsaKeySigner, SigningCertificate,
};
use obauth_async::core::{BaseUrl, SigningError};
use obauth_async::types::worldline::Scope;
use obauth_async::types::{ClientSecret, ErrorCode, Scopes};
use obauth_mock::SigningIdentity;
use obauth_test_peers::{FORBIDDEN_SCOPE, JWT_CLIENT, OidcProvider, REALM, SECRET, SECRET_CLIENT};

fn peer() -> OidcProvider {
    OidcProvider::start().unwrap()
}

fn vop_wero() -> Scopes<Scope> {
    Scopes::from([Scope::Vop, Scope::Wero])
}

fn assertion(peer: &OidcProvider, private_key_pem: &str) -> AssertionConfig {
    let certificate = SigningCertificate::from_pem(&peer.identity.certificate_pem).unwrap();
    assert_eq!(certificate.sha1_fingerprint(), peer.kid);
    AssertionConfig::new(RsaKeySigner::from_pem(private_key_pem, &certificate).unwrap()).unwrap()
}

fn async_client(
    peer: &OidcProvider,
    client_id: &str,
    auth: WorldlineAuth,
) -> obauth_async::WorldlineClient {
    obauth_async::WorldlineClient::builder(
        BaseUrl::parse(&peer.base_url).unwrap(),
        REALM,
        client_id,
        auth,
    )
    .build()
    .unwrap()
}

fn blocking_client(
    peer: &OidcProvider,
    client_id: &str,
    auth: WorldlineAuth,
) -> obauth_blocking::WorldlineClient {
    obauth_blocking::WorldlineClient::builder(
        BaseUrl::parse(&peer.base_url).unwrap(),
        REALM,
        client_id,
        auth,
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn async_secret_token_scope_and_cache() {
    let peer = peer();
    let client = async_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new(SECRET)),
    );
    let token = client.token(vop_wero()).await.unwrap();
    assert_eq!(token.scope.unwrap().to_wire(), "VOP WERO");
    assert!(token.expires_in > 0);
    // oidc-provider issues a new token per request: the same string twice proves the cache.
    let source = obauth_async::TokenSource::worldline(client, vop_wero());
    let first = source.access_token().await.unwrap();
    let second = source.access_token().await.unwrap();
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_ne!(first.expose_secret(), token.access_token.expose_secret());
}

#[test]
fn blocking_secret_token_scope_and_cache() {
    let peer = peer();
    let client = blocking_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new(SECRET)),
    );
    let token = client.token(vop_wero()).unwrap();
    assert_eq!(token.scope.unwrap().to_wire(), "VOP WERO");
    let source = obauth_blocking::TokenSource::worldline(client, vop_wero());
    assert_eq!(
        source.access_token().unwrap().expose_secret(),
        source.access_token().unwrap().expose_secret()
    );
}

#[tokio::test]
async fn async_assertion_twice_in_a_row() {
    let peer = peer();
    let auth = WorldlineAuth::Assertion(assertion(&peer, &peer.identity.private_key_pem));
    let client = async_client(&peer, JWT_CLIENT, auth);
    let a = client.token(vop_wero()).await.unwrap();
    let b = client.token(vop_wero()).await.unwrap();
    assert_ne!(
        a.access_token.expose_secret(),
        b.access_token.expose_secret()
    );
}

#[test]
fn blocking_assertion_twice_in_a_row() {
    let peer = peer();
    let auth = WorldlineAuth::Assertion(assertion(&peer, &peer.identity.private_key_pem));
    let client = blocking_client(&peer, JWT_CLIENT, auth);
    client.token(Scopes::from([Scope::Vop])).unwrap();
    client.token(Scopes::from([Scope::Vop])).unwrap();
}

/// Asserts an `invalid_client`-style refusal: the server's code and status, no secret.
fn refused(error: obauth_async::Error, code: ErrorCode, secret: &str) {
    assert_eq!(error.api_code(), Some(&code), "{error:?}");
    assert!(
        error.status().is_some_and(|s| s.is_client_error()),
        "{error:?}"
    );
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(secret), "{shown}");
}

#[tokio::test]
async fn async_refusals_carry_the_servers_codes() {
    let peer = peer();
    let wrong = async_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new("wrong-s3cret")),
    );
    refused(
        wrong.token(vop_wero()).await.unwrap_err(),
        ErrorCode::InvalidClient,
        "wrong-s3cret",
    );

    let good = async_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new(SECRET)),
    );
    let error = good
        .token(Scopes::from([Scope::from(FORBIDDEN_SCOPE)]))
        .await
        .unwrap_err();
    refused(error, ErrorCode::InvalidScope, SECRET);

    // A key the server does not know under the registered kid (forced past obauth's own
    // check, which refuses it against the certificate): the signature fails.
    let stranger = SigningIdentity::generate().unwrap();
    let forced = RsaKeySigner::from_pem_with_key_id(&stranger.private_key_pem, &peer.kid).unwrap();
    let auth = WorldlineAuth::Assertion(AssertionConfig::new(forced).unwrap());
    let error = async_client(&peer, JWT_CLIENT, auth)
        .token(vop_wero())
        .await
        .unwrap_err();
    refused(error, ErrorCode::InvalidClient, &peer.kid);

    let wrong_aud = assertion(&peer, &peer.identity.private_key_pem)
        .with_audience("https://elsewhere.example/");
    let error = async_client(&peer, JWT_CLIENT, WorldlineAuth::Assertion(wrong_aud))
        .token(vop_wero())
        .await
        .unwrap_err();
    refused(error, ErrorCode::InvalidClient, "eyJ");
}

#[test]
fn blocking_refusals_carry_the_servers_codes() {
    let peer = peer();
    let wrong = blocking_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new("wrong-s3cret")),
    );
    refused(
        wrong.token(vop_wero()).unwrap_err(),
        ErrorCode::InvalidClient,
        "wrong-s3cret",
    );
    let good = blocking_client(
        &peer,
        SECRET_CLIENT,
        WorldlineAuth::ClientSecret(ClientSecret::new(SECRET)),
    );
    refused(
        good.token(Scopes::from([Scope::from(FORBIDDEN_SCOPE)]))
            .unwrap_err(),
        ErrorCode::InvalidScope,
        SECRET,
    );
    let wrong_aud = assertion(&peer, &peer.identity.private_key_pem)
        .with_audience("https://elsewhere.example/");
    refused(
        blocking_client(&peer, JWT_CLIENT, WorldlineAuth::Assertion(wrong_aud))
            .token(vop_wero())
            .unwrap_err(),
        ErrorCode::InvalidClient,
        "eyJ",
    );
}

/// Signs with the right key but announces the kid in lower case.
struct LowercaseKid {
    inner: RsaKeySigner,
    kid: String,
}

impl AssertionSigner for LowercaseKid {
    fn key_id(&self) -> &str {
        &self.kid
    }
    fn sign_rs256(&self, input: &[u8]) -> Result<Vec<u8>, SigningError> {
        self.inner.sign_rs256(input)
    }
}

#[tokio::test]
async fn what_the_peer_accepts_for_audience_and_kid() {
    let peer = peer();
    let certificate = SigningCertificate::from_pem(&peer.identity.certificate_pem).unwrap();
    let signer = || RsaKeySigner::from_pem(&peer.identity.private_key_pem, &certificate).unwrap();
    // The token endpoint URL is an accepted audience too.
    let token_url = format!(
        "{}/realms/{REALM}/protocol/openid-connect/token",
        peer.base_url
    );
    let by_endpoint = AssertionConfig::new(signer())
        .unwrap()
        .with_audience(token_url);
    async_client(&peer, JWT_CLIENT, WorldlineAuth::Assertion(by_endpoint))
        .token(vop_wero())
        .await
        .unwrap();
    // The issuer, obauth's default, spelled out.
    let by_issuer = AssertionConfig::new(signer())
        .unwrap()
        .with_audience(peer.issuer.clone());
    async_client(&peer, JWT_CLIENT, WorldlineAuth::Assertion(by_issuer))
        .token(vop_wero())
        .await
        .unwrap();
    // The kid is matched exactly: lower case is another key id.
    let lower = LowercaseKid {
        inner: signer(),
        kid: peer.kid.to_lowercase(),
    };
    let error = async_client(
        &peer,
        JWT_CLIENT,
        WorldlineAuth::Assertion(AssertionConfig::from_arc(Arc::new(lower)).unwrap()),
    )
    .token(vop_wero())
    .await
    .unwrap_err();
    assert_eq!(error.api_code(), Some(&ErrorCode::InvalidClient));
}
