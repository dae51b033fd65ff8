//! `POST /v1/authuri` (direct bank authentication link) and `POST /v1/reauthuri`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CodeChallengeMethod, ResponseMode, ResponseTypeCode, Scope};
use crate::{RefreshToken, Scopes};

/// The body of `POST /v1/authuri` (spec: `DirectBankAuthLinkRequest`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLinkRequest {
    /// Always `code`.
    pub response_type: ResponseTypeCode,
    /// Your client id.
    pub client_id: String,
    /// A redirect URI allow-listed in TrueLayer Console.
    pub redirect_uri: String,
    /// The data the user is asked to share.
    pub scope: Scopes<Scope>,
    /// Opaque value returned on the redirect; check it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Identifies the consent you captured from the user yourself.
    pub consent_id: String,
    /// The user: a `name` and one of `email` or `phone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<AuthLinkUser>,
    /// The exact copy shown to the user about what their data will be used for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_use_description: Option<String>,
    /// The provider (bank) to link to.
    pub provider_id: String,
    /// PKCE challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// `S256` whenever `code_challenge` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<CodeChallengeMethod>,
    /// `form_post` to receive the code in a POSTed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<ResponseMode>,
    /// Extra inputs a provider's steps require, keyed by the step field's `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_inputs: Option<AuthInputs>,
    /// An id for Auth Journey Analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

/// The user an auth link is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLinkUser {
    /// A unique id for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user's full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The user's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// `auth_inputs`: step field id → the user's value.
///
/// Serialized as one JSON object (`{"branch-name": "…"}`), as the spec's description and
/// TrueLayer's docs show; the schema's "array of objects" is also accepted when reading.
/// See `docs/spec-notes.md`. Its `Debug` shows the field ids only: providers mark some
/// inputs sensitive (passwords).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthInputs(pub BTreeMap<String, String>);

impl std::fmt::Debug for AuthInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, "<redacted>")))
            .finish()
    }
}

impl AuthInputs {
    /// Adds or replaces one input.
    pub fn insert(&mut self, field_id: impl Into<String>, value: impl Into<String>) {
        self.0.insert(field_id.into(), value.into());
    }

    /// Whether there are no inputs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for AuthInputs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Serialize for AuthInputs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AuthInputs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Object(BTreeMap<String, String>),
            Array(Vec<BTreeMap<String, String>>),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Object(map) => AuthInputs(map),
            Wire::Array(items) => AuthInputs(items.into_iter().flatten().collect()),
        })
    }
}

/// The body of `POST /v1/reauthuri` (spec: `ReauthUriRequest`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReauthLinkRequest {
    /// Always `code`.
    pub response_type: ResponseTypeCode,
    /// The refresh token of the connection to re-authenticate.
    pub refresh_token: RefreshToken,
    /// A redirect URI allow-listed in TrueLayer Console.
    pub redirect_uri: String,
    /// Opaque value returned on the redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// PKCE challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// `S256` whenever `code_challenge` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<CodeChallengeMethod>,
    /// `form_post` to receive the code in a POSTed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<ResponseMode>,
}

/// The answer of both link endpoints (spec: `AuthUriResponse`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthLinkResponse {
    /// The link to send the user to.
    pub result: String,
    /// Whether the link was created.
    pub success: bool,
}
