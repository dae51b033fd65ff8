//! Serde models of the two APIs obauth speaks:
//! TrueLayer's Authentication Server and Worldline Open Banking's Keycloak token endpoint.
//!
//! This crate is only data: request and response shapes, the closed sets the specs name
//! (scopes, countries, error codes, grant types) as open enums, and secret-bearing newtypes
//! whose `Debug` is redacted. It has no HTTP client, no runtime, no I/O and no validation
//! beyond what a type can say, so any service can reuse it on its own.
//!
//! It is not for building or sending requests: `obauth-core` turns these models into
//! `http::Request`s and parses `http::Response`s into them, and `obauth-async` /
//! `obauth-blocking` send them.
//!
//! Responses are tolerant (unknown fields are ignored, unknown enum values are kept as
//! [`Unrecognized`]); requests serialize exactly the keys the specs allow. Where the specs
//! and real payloads disagree, real payloads win; `docs/spec-notes.md` lists each case.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod macros;
pub mod error;
pub mod scope;
pub mod secret;
pub mod truelayer;
pub mod worldline;

pub use error::{ErrorCode, ErrorDetails, ErrorResponse};
pub use macros::Unrecognized;
pub use scope::Scopes;
pub use secret::{
    AccessToken, AuthorizationCode, ClientAssertion, ClientSecret, CodeVerifier, IdToken,
    RefreshToken,
};

open_enum! {
    /// An OAuth 2.0 token type (RFC 6749 §7.1). Read case-insensitively: servers send
    /// `Bearer`, `bearer` or `BEARER`.
    TokenType, case_insensitive {
        /// `Bearer` (RFC 6750).
        Bearer = "Bearer",
    }
}

open_enum! {
    /// An OAuth 2.0 grant type.
    GrantType {
        /// `authorization_code` (RFC 6749 §4.1).
        AuthorizationCode = "authorization_code",
        /// `refresh_token` (RFC 6749 §6).
        RefreshToken = "refresh_token",
        /// `client_credentials` (RFC 6749 §4.4).
        ClientCredentials = "client_credentials",
    }
}
