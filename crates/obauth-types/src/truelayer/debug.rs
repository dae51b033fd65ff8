//! `POST /api/debug` and `DELETE /api/debug`: debug ids for TrueLayer support.

use serde::{Deserialize, Serialize};

use crate::AccessToken;

/// The body of `POST /api/debug` (spec: `DebugIdRequest`); obauth sends the same body with
/// `DELETE /api/debug` only when asked to (see `docs/spec-notes.md`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugIdRequest {
    /// The access token of the data access attempt to debug.
    pub access_token: AccessToken,
}

/// The answer of both debug endpoints (spec: `DebugIdResponse`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugIdResponse {
    /// The credential behind the access token.
    pub credentials_id: String,
    /// The id to share with TrueLayer support (after `DELETE`: the id now invalid).
    pub debug_id: String,
    /// The provider of the credential.
    pub provider_id: String,
}
