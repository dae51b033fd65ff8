//! `POST /auth/realms/{realm}/protocol/openid-connect/token`.

use std::borrow::Cow;

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

impl TokenRequest {
    /// The form fields in the spec's order, values not yet encoded.
    pub fn form_fields(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut fields = vec![
            ("grant_type", Cow::Borrowed("client_credentials")),
            ("scope", Cow::Owned(self.scope.to_wire())),
        ];
        match &self.authentication {
            ClientAuthentication::Secret {
                client_id,
                client_secret,
            } => {
                fields.push(("client_id", Cow::Borrowed(client_id.as_str())));
                fields.push((
                    "client_secret",
                    Cow::Borrowed(client_secret.expose_secret()),
                ));
            }
            ClientAuthentication::Assertion { client_assertion } => {
                fields.push((
                    "client_assertion_type",
                    Cow::Borrowed(JWT_BEARER_ASSERTION_TYPE),
                ));
                fields.push((
                    "client_assertion",
                    Cow::Borrowed(client_assertion.expose_secret()),
                ));
            }
        }
        fields
    }

    /// Reads decoded form fields (a server's view, e.g. a mock's). Field order does not
    /// matter; a repeated, missing or unknown field, a `grant_type` other than
    /// `client_credentials`, or both authentication methods at once are refused.
    pub fn from_form_fields<K, V>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, FormError>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut grant_type = None;
        let mut scope = None;
        let mut client_id = None;
        let mut client_secret = None;
        let mut assertion_type = None;
        let mut assertion = None;
        for (name, value) in fields {
            let name = name.as_ref();
            let slot = match name {
                "grant_type" => &mut grant_type,
                "scope" => &mut scope,
                "client_id" => &mut client_id,
                "client_secret" => &mut client_secret,
                "client_assertion_type" => &mut assertion_type,
                "client_assertion" => &mut assertion,
                _ => return Err(FormError::UnknownField(name.to_owned())),
            };
            if slot.replace(value.into()).is_some() {
                return Err(FormError::RepeatedField(name.to_owned()));
            }
        }
        match grant_type.as_deref() {
            Some("client_credentials") => {}
            Some(_) => return Err(FormError::UnsupportedGrantType),
            None => return Err(FormError::MissingField("grant_type")),
        }
        let scope = Scopes::parse(&scope.ok_or(FormError::MissingField("scope"))?);
        let authentication = match (client_secret, assertion) {
            (Some(secret), None) => {
                if assertion_type.is_some() {
                    return Err(FormError::UnknownField("client_assertion_type".to_owned()));
                }
                ClientAuthentication::Secret {
                    client_id: client_id.ok_or(FormError::MissingField("client_id"))?,
                    client_secret: ClientSecret::new(secret),
                }
            }
            (None, Some(jwt)) => {
                if assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION_TYPE) {
                    return Err(FormError::MissingField("client_assertion_type"));
                }
                ClientAuthentication::Assertion {
                    client_assertion: ClientAssertion::new(jwt),
                }
            }
            (Some(_), Some(_)) => return Err(FormError::TwoAuthenticationMethods),
            (None, None) => {
                return Err(FormError::MissingField("client_secret or client_assertion"));
            }
        };
        Ok(TokenRequest {
            scope,
            authentication,
        })
    }
}

/// Why a form body is not a valid token request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormError {
    /// A required field is absent.
    MissingField(&'static str),
    /// A field appears twice (RFC 6749 §3.2).
    RepeatedField(String),
    /// A field the spec does not define.
    UnknownField(String),
    /// `grant_type` is not `client_credentials`.
    UnsupportedGrantType,
    /// Both a client secret and a client assertion.
    TwoAuthenticationMethods,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::MissingField(name) => write!(f, "missing `{name}`"),
            FormError::RepeatedField(name) => write!(f, "`{name}` appears more than once"),
            FormError::UnknownField(name) => write!(f, "unexpected field `{name}`"),
            FormError::UnsupportedGrantType => f.write_str("grant_type must be client_credentials"),
            FormError::TwoAuthenticationMethods => {
                f.write_str("client_secret and client_assertion are mutually exclusive")
            }
        }
    }
}

impl std::error::Error for FormError {}

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
