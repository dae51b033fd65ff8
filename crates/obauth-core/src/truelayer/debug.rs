//! `POST /api/debug` and `DELETE /api/debug`: debug ids to share with TrueLayer support.
//!
//! The spec gives `DELETE /api/debug` neither body nor parameter, yet answers with the
//! deleted `debug_id` of a credential. obauth sends the `POST` body (`{"access_token": …}`)
//! with the `DELETE` too, so the server can tell whose debug id to delete;
//! `docs/spec-notes.md` explains the choice.

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

    /// Deletes the debug id of the credential behind `access_token` (`DELETE /api/debug`).
    pub fn delete_debug_id(&self, access_token: AccessToken) -> DeleteDebugId<'_> {
        DeleteDebugId {
            config: self,
            access_token,
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

/// `DELETE /api/debug`.
#[derive(Debug)]
pub struct DeleteDebugId<'a> {
    config: &'a TrueLayerConfig,
    access_token: AccessToken,
}

impl Operation for DeleteDebugId<'_> {
    type Output = DebugIdResponse;
    const NAME: &'static str = "truelayer.debug.delete";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        self.config
            .debug_request(Method::DELETE, &self.access_token)
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<DebugIdResponse, Error> {
        wire::parse_json(response)
    }
}
