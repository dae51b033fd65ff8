//! The OAuth-style error body both servers send: `error`, `error_description`, and
//! (TrueLayer) `error_details`.

use serde::{Deserialize, Serialize};

open_enum! {
    /// A machine-readable error code.
    ///
    /// The union of TrueLayer's documented codes, Worldline's (`invalid_scope`,
    /// `invalid_client`) and the rest of RFC 6749 §5.2 / §4.1.2.1, which Keycloak also sends.
    ErrorCode {
        /// `invalid_request`: a parameter is missing, repeated or malformed.
        InvalidRequest = "invalid_request",
        /// `invalid_client`: client authentication failed (Worldline, Keycloak).
        InvalidClient = "invalid_client",
        /// `invalid_grant`: the code or refresh token is invalid, expired, revoked or reused.
        InvalidGrant = "invalid_grant",
        /// `unauthorized_client`: the client may not use this grant (TrueLayer: wrong credentials).
        UnauthorizedClient = "unauthorized_client",
        /// `unsupported_grant_type`.
        UnsupportedGrantType = "unsupported_grant_type",
        /// `invalid_scope`: a requested scope is unknown or not allowed.
        InvalidScope = "invalid_scope",
        /// `access_denied`: the user or the server refused.
        AccessDenied = "access_denied",
        /// `unauthorized` (TrueLayer): the bearer token is missing or invalid.
        Unauthorized = "unauthorized",
        /// `not_found` (TrueLayer).
        NotFound = "not_found",
        /// `internal_server_error` (TrueLayer).
        InternalServerError = "internal_server_error",
        /// `server_error` (RFC 6749 §4.1.2.1).
        ServerError = "server_error",
        /// `temporarily_unavailable` (RFC 6749 §4.1.2.1).
        TemporarilyUnavailable = "temporarily_unavailable",
        /// `unsupported_response_type` (RFC 6749 §4.1.2.1).
        UnsupportedResponseType = "unsupported_response_type",
    }
}

/// An error response body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error code. Worldline's error schema requires no field, so a body without one is
    /// read with an empty, unrecognised code ([`ErrorCode::is_known`] is false) rather than
    /// refused.
    #[serde(default = "no_error_code")]
    pub error: ErrorCode,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// More context (TrueLayer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
}

fn no_error_code() -> ErrorCode {
    ErrorCode::parse("")
}

/// TrueLayer's `error_details`: a `reason` and any other keys the server adds, kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// Additional explanation of the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every other key, unchanged.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ErrorResponse {
    /// An error body with only a code.
    pub fn new(error: ErrorCode) -> Self {
        Self {
            error,
            error_description: None,
            error_details: None,
        }
    }
}
