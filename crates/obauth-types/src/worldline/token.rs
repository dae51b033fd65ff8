//! `POST /auth/realms/{realm}/protocol/openid-connect/token`.

use serde::{Deserialize, Serialize};

use super::Scope;
use crate::{AccessToken, ClientAssertion, ClientSecret, IdToken, RefreshToken, Scopes, TokenType};

/// The value of `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A `client_credentials` token request; `application/x-www-form-urlencoded` on the wire,
/// with `grant_type=client_credentials` first.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The services asked for, space-delimited on the wire.
    pub scope: Scopes<Scope>,
    /// How the client authenticates.
    pub authentication: ClientAuthentication,
}

/// The two ways the spec lets a client authenticate.
#[derive(Clone, Debug)]
pub enum ClientAuthentication {
    /// `client_id` + `client_secret` in the body (spec: `ClientCredentialsRequest`).
    Secret {
        /// The client id from onboarding.
        client_id: String,
        /// The client secret from onboarding.
        client_secret: ClientSecret,
    },
    /// A signed JWT (spec: `ClientJwtRequest`), sent with
    /// `client_assertion_type` = [`JWT_BEARER_ASSERTION_TYPE`].
    Assertion {
        /// The RS256 JWT.
        client_assertion: ClientAssertion,
    },
}

/// A successful token response (spec: `TokenResponse`).
///
/// The spec marks `refresh_expires_in`, `not-before-policy` and `scope` required and forbids
/// other keys; Keycloak versions and standard servers differ, so those three are optional
/// and the keys Keycloak adds when it issues them are modelled. See `docs/spec-notes.md`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token for the Open Banking APIs.
    pub access_token: AccessToken,
    /// Lifetime in seconds (300 on Worldline).
    pub expires_in: u64,
    /// `Bearer`.
    pub token_type: TokenType,
    /// Always 0: Worldline issues no refresh token for initiating parties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<u64>,
    /// Keycloak's not-before policy; 0, valid immediately.
    #[serde(
        rename = "not-before-policy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before_policy: Option<i64>,
    /// The services the token is valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scopes<Scope>>,
    /// Added by Keycloak when a refresh token is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// Added by Keycloak when `openid` is in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdToken>,
    /// Keycloak's session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_state: Option<String>,
}
