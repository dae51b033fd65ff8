//! `POST /connect/token`: the three grants and the token response.

use serde::{Deserialize, Serialize};

use super::Scope;
use crate::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken, Scopes, TokenType,
};

/// The body of `POST /connect/token`: one of the spec's three `oneOf` shapes, told apart by
/// `grant_type`, which serializes first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "grant_type", rename_all = "snake_case")]
pub enum TokenRequest {
    /// `authorization_code` (spec: `TokenExchangeRequest`).
    AuthorizationCode(AuthorizationCodeRequest),
    /// `refresh_token` (spec: `TokenRefreshRequest`).
    RefreshToken(RefreshTokenRequest),
    /// `client_credentials` (spec: `ClientCredentialsGrantRequest`).
    ClientCredentials(ClientCredentialsRequest),
}

/// Exchanges an authorization code for tokens, with the PKCE verifier if the auth link
/// carried a challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeRequest {
    /// The client id from TrueLayer Console.
    pub client_id: String,
    /// The client secret from TrueLayer Console.
    pub client_secret: ClientSecret,
    /// The code returned to the redirect URI.
    pub code: AuthorizationCode,
    /// The redirect URI the auth link used, exactly.
    pub redirect_uri: String,
    /// The PKCE verifier; only when the auth link carried a `code_challenge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_verifier: Option<CodeVerifier>,
}

/// Obtains a new access token (and, on TrueLayer, a rotated refresh token).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRequest {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: ClientSecret,
    /// The current refresh token.
    pub refresh_token: RefreshToken,
}

/// Obtains an application token (Payments API v3, Verification API).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsRequest {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: ClientSecret,
    /// The scopes asked for, space-delimited on the wire.
    pub scope: Scopes<Scope>,
}

/// A successful token response (spec: `TokenExchangeResponse`). Unknown fields are ignored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: AccessToken,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// `Bearer`.
    pub token_type: TokenType,
    /// Present when `offline_access` was granted; rotates on every refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// The scopes granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scopes<Scope>>,
}
