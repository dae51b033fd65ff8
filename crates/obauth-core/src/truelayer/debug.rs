//! `POST /api/debug` and `DELETE /api/debug`: debug ids to share with TrueLayer support.
//!
//! The spec gives `DELETE /api/debug` no body, no parameter and `security: []`, and obauth
//! sends it that way ([`TrueLayerConfig::delete_debug_id`]). A server known to want the
//! access token in a body, as `POST` takes it, gets it with
//! [`TrueLayerConfig::delete_debug_id_with_token`]; `docs/spec-notes.md` explains both.

use http::Method;
use obauth_types::AccessToken;
use obauth_types::truelayer::debug::{DebugIdRequest, DebugIdResponse};

use super::TrueLayerConfig;
use crate::error::Error;
use crate::operation::{Operation, Replay, RequestContext};
use crate::{validate, wire};

impl TrueLayerConfig {
    /// Generates a debug id for the credential behind `access_token` (`POST /api/debug`).
    /// TrueLayer rate-limits this: call it only while investigating a problem.
    pub fn create_debug_id(&self, access_token: AccessToken) -> CreateDebugId<'_> {
        CreateDebugId {
            config: self,
            access_token,
        }
    }

    /// `DELETE /api/debug` as the spec describes it: no body, no parameter, no credentials.
    /// A strictly validating server refuses a body on it.
    pub fn delete_debug_id(&self) -> DeleteDebugId<'_> {
        DeleteDebugId {
            config: self,
            access_token: None,
        }
    }

    /// `DELETE /api/debug` with the `POST` body, `{"access_token": …}`, naming whose debug id
    /// to delete: an opt-in for a server known to want it (the spec gives this operation
    /// no body).
    pub fn delete_debug_id_with_token(&self, access_token: AccessToken) -> DeleteDebugId<'_> {
        DeleteDebugId {
            config: self,
            access_token: Some(access_token),
        }
    }

    fn debug_request(
        &self,
        method: Method,
        access_token: &AccessToken,
    ) -> Result<http::Request<Vec<u8>>, Error> {
        validate::required("access_token", access_token.expose_secret())?;
        wire::json_request(
            method,
            self.endpoints.debug.clone(),
            &self.user_agent,
            &DebugIdRequest {
                access_token: access_token.clone(),
            },
        )
    }
}

/// `POST /api/debug`.
#[derive(Debug)]
pub struct CreateDebugId<'a> {
    config: &'a TrueLayerConfig,
    access_token: AccessToken,
}

impl Operation for CreateDebugId<'_> {
    type Output = DebugIdResponse;
    const NAME: &'static str = "truelayer.debug.create";

    fn replay(&self) -> Replay {
        // Each call mints an id and counts against a rate limit.
        Replay::IfNotProcessed
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        self.config.debug_request(Method::POST, &self.access_token)
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<DebugIdResponse, Error> {
        wire::parse_json(response)
    }
}

/// `DELETE /api/debug`, with no body or (opt-in) with the access token in one.
#[derive(Debug)]
pub struct DeleteDebugId<'a> {
    config: &'a TrueLayerConfig,
    access_token: Option<AccessToken>,
}

impl Operation for DeleteDebugId<'_> {
    type Output = DebugIdResponse;
    const NAME: &'static str = "truelayer.debug.delete";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        match &self.access_token {
            Some(access_token) => self.config.debug_request(Method::DELETE, access_token),
            None => Ok(wire::request(
                Method::DELETE,
                self.config.endpoints.debug.clone(),
                &self.config.user_agent,
                None,
                Vec::new(),
            )),
        }
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<DebugIdResponse, Error> {
        wire::parse_json(response)
    }
}
