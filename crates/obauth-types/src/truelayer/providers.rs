//! `GET /api/providers`: the query filters and the provider list.
//!
//! The spec's schema and its example disagree; obauth reads what the server sends (the
//! example's shape) and also the schema's. See `docs/spec-notes.md`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Country, Scope};
use crate::Scopes;

/// Filters for `GET /api/providers`; an empty query lists every provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvidersQuery {
    /// Only providers enabled for this client id (`clientId`).
    pub client_id: Option<String>,
    /// Only providers supporting all of these scopes (`scopes`, space-delimited).
    pub scopes: Scopes<Scope>,
    /// Only providers in these countries (`country`, space-delimited).
    pub countries: Vec<Country>,
}

/// One provider (bank).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// Unique TrueLayer provider id, e.g. `ob-monzo`.
    pub provider_id: String,
    /// Human-friendly name.
    pub display_name: String,
    /// URL of the provider's logo.
    pub logo_url: String,
    /// Country of the provider.
    pub country: Country,
    /// Scopes the provider supports (an array on the wire; a string is also read).
    pub scopes: Scopes<Scope>,
    /// Extra inputs the provider needs from the user before authentication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ProviderStep>,
    /// Health as TrueLayer sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<ProviderAvailability>,
}

/// A step of extra user input: a title and its fields.
///
/// The spec's schema makes each step a single field; the example (and the live API) nests
/// fields under `title`/`fields`. Both are read; a flat field becomes a step without title.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderStep {
    /// The step's title, e.g. `OAuthRedirect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The inputs to collect.
    pub fields: Vec<AuthInputField>,
}

impl<'de> Deserialize<'de> for ProviderStep {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Nested {
                #[serde(default)]
                title: Option<String>,
                fields: Vec<AuthInputField>,
            },
            Flat(AuthInputField),
        }
        match Wire::deserialize(deserializer) {
            Ok(Wire::Nested { title, fields }) => Ok(ProviderStep { title, fields }),
            Ok(Wire::Flat(field)) => Ok(ProviderStep {
                title: None,
                fields: vec![field],
            }),
            Err(_) => Err(serde::de::Error::custom(
                "a provider step must be {title, fields} or a single input field",
            )),
        }
    }
}

open_enum! {
    /// The kind of an input field.
    FieldType {
        /// Choose one of `values`.
        SingleChoice = "SingleChoiceField",
        /// Free text, checked by `validations`.
        FreeText = "FreeTextField",
    }
}

/// One input field of a provider step (spec: `AuthInputStep`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthInputField {
    /// Single choice or free input.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The key to use in `auth_inputs`.
    pub id: String,
    /// Friendly name.
    pub display_name: String,
    /// Help text for the user.
    pub help_text: String,
    /// Whether the input is required.
    pub mandatory: bool,
    /// For free input: whether the value is sensitive (a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_sensitive: Option<bool>,
    /// For single choice: the choices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<FieldChoice>,
    /// For free input: validation rules (regular expressions), kept as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<serde_json::Value>,
    /// For free input: allowed character ranges (`alphanumeric`, `numeric`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_characters: Option<String>,
}

/// One choice of a single-choice field. The spec requires neither field: a choice a server
/// sends without one is kept, not a reason to refuse the whole list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChoice {
    /// The value to send in `auth_inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A provider's availability, present in live payloads though not in the schema (so no
/// field of it is required).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAvailability {
    /// TrueLayer's recommendation, e.g. `healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_status: Option<String>,
    /// When the status was computed (RFC 3339), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The providers list: a JSON array on the wire; a single object (the schema's shape) is
/// read as a list of one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ProvidersResponse(pub Vec<Provider>);

impl<'de> Deserialize<'de> for ProvidersResponse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ProvidersResponse;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of providers")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(ProvidersResponse)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Provider::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|provider| ProvidersResponse(vec![provider]))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
