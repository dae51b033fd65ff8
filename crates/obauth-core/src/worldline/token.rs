//! `POST {base}/realms/{realm}/protocol/openid-connect/token`, `client_credentials`.

use http::Method;
use obauth_types::Scopes;
use obauth_types::worldline::Scope;
use obauth_types::worldline::token::{ClientAuthentication, TokenRequest, TokenResponse};

use super::{WorldlineAuth, WorldlineConfig};
use crate::error::Error;
use crate::operation::{Operation, Replay, RequestContext};
use crate::{validate, wire};

impl WorldlineConfig {
    /// Requests an access token for `scopes` (e.g. `VOP WERO`).
    pub fn token(&self, scopes: Scopes<Scope>) -> RequestToken<'_> {
        RequestToken {
            config: self,
            scopes,
        }
    }
}

/// The Worldline token request: `application/x-www-form-urlencoded`, with the client
/// secret or a freshly signed client assertion.
#[derive(Debug)]
pub struct RequestToken<'a> {
    config: &'a WorldlineConfig,
    scopes: Scopes<Scope>,
}

impl RequestToken<'_> {
    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes<Scope> {
        &self.scopes
    }
}

impl Operation for RequestToken<'_> {
    type Output = TokenResponse;
    const NAME: &'static str = "worldline.token.client_credentials";

    fn replay(&self) -> Replay {
        // Each attempt signs a new assertion with a new jti.
        Replay::Safe
    }

    fn build_request(&self, cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        validate::scopes(&self.scopes)?;
        let config = self.config;
        let authentication = match &config.auth {
            WorldlineAuth::ClientSecret(secret) => ClientAuthentication::Secret {
                client_id: config.client_id.clone(),
                client_secret: secret.clone(),
            },
            WorldlineAuth::Assertion(assertion) => ClientAuthentication::Assertion {
                client_assertion: assertion.sign(
                    &config.client_id,
                    &config.issuer,
                    cx.now,
                    cx.random,
                )?,
            },
        };
        let body = TokenRequest {
            scope: self.scopes.clone(),
            authentication,
        };
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(1024));
        for (name, value) in body.form_fields() {
            form.append_pair(name, &value);
        }
        Ok(wire::request(
            Method::POST,
            config.token_url.clone(),
            config.user_agent(),
            Some(wire::FORM),
            form.finish().into_bytes(),
        ))
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<TokenResponse, Error> {
        wire::parse_token(response, |token: &TokenResponse| {
            (&token.access_token, &token.token_type)
        })
    }
}
