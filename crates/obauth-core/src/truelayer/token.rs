//! `POST /connect/token` (three grants) and `DELETE /api/delete`.

use http::Method;
use obauth_types::truelayer::Scope;
use obauth_types::truelayer::token::{
    AuthorizationCodeRequest, ClientCredentialsRequest, RefreshTokenRequest, TokenRequest,
    TokenResponse,
};
use obauth_types::{AccessToken, AuthorizationCode, CodeVerifier, RefreshToken, Scopes};

use super::TrueLayerConfig;
use crate::error::Error;
use crate::operation::{Operation, Replay, RequestContext};
use crate::{pkce, validate, wire};

impl TrueLayerConfig {
    /// Exchanges the authorization code from the redirect for tokens. Pass the PKCE
    /// verifier if the auth link carried a challenge. Never retried: the code is single-use.
    pub fn exchange_code(
        &self,
        code: AuthorizationCode,
        redirect_uri: impl Into<String>,
        code_verifier: Option<CodeVerifier>,
    ) -> ExchangeCode<'_> {
        // The body is built once here, moving the inputs in, not cloned on every attempt.
        let body = self.client_secret().cloned().map(|client_secret| {
            TokenRequest::AuthorizationCode(AuthorizationCodeRequest {
                client_id: self.client_id.clone(),
                client_secret,
                code,
                redirect_uri: redirect_uri.into(),
                code_verifier,
            })
        });
        ExchangeCode { config: self, body }
    }

    /// Trades a refresh token for a new access token and (TrueLayer rotates them) a new
    /// refresh token, which replaces the old one at once.
    pub fn refresh(&self, refresh_token: RefreshToken) -> RefreshAccessToken<'_> {
        RefreshAccessToken {
            config: self,
            refresh_token,
        }
    }

    /// Obtains an application token for the Payments or Verification APIs.
    pub fn client_credentials(&self, scopes: Scopes<Scope>) -> ClientCredentials<'_> {
        ClientCredentials {
            config: self,
            scopes,
        }
    }

    /// Deletes the connection (credential) behind a user's access token.
    pub fn delete_credential(&self, access_token: AccessToken) -> DeleteCredential<'_> {
        DeleteCredential {
            config: self,
            access_token,
        }
    }

    fn token_request(&self, body: &TokenRequest) -> Result<http::Request<Vec<u8>>, Error> {
        wire::json_request(
            Method::POST,
            self.endpoints.token.clone(),
            &self.user_agent,
            body,
        )
    }
}

fn parse_token<B: AsRef<[u8]>>(response: &http::Response<B>) -> Result<TokenResponse, Error> {
    wire::parse_token(response, |token: &TokenResponse| {
        (&token.access_token, &token.token_type)
    })
}

/// `POST /connect/token` with `grant_type=authorization_code`.
#[derive(Debug)]
pub struct ExchangeCode<'a> {
    config: &'a TrueLayerConfig,
    /// The request body, or why it could not be made (no client secret).
    body: Result<TokenRequest, Error>,
}

impl Operation for ExchangeCode<'_> {
    type Output = TokenResponse;
    const NAME: &'static str = "truelayer.token.exchange_code";

    fn replay(&self) -> Replay {
        Replay::Never
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        let body = self.body.as_ref().map_err(Clone::clone)?;
        if let TokenRequest::AuthorizationCode(exchange) = body {
            validate::required("code", exchange.code.expose_secret())?;
            validate::redirect_uri(&exchange.redirect_uri)?;
            if let Some(verifier) = &exchange.code_verifier {
                pkce::validate_verifier(verifier)?;
            }
        }
        self.config.token_request(body)
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<TokenResponse, Error> {
        parse_token(response)
    }
}

/// `POST /connect/token` with `grant_type=refresh_token`.
#[derive(Debug)]
pub struct RefreshAccessToken<'a> {
    config: &'a TrueLayerConfig,
    refresh_token: RefreshToken,
}

impl Operation for RefreshAccessToken<'_> {
    type Output = TokenResponse;
    const NAME: &'static str = "truelayer.token.refresh";

    fn replay(&self) -> Replay {
        Replay::IfNotProcessed
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        validate::required("refresh_token", self.refresh_token.expose_secret())?;
        self.config
            .token_request(&TokenRequest::RefreshToken(RefreshTokenRequest {
                client_id: self.config.client_id.clone(),
                client_secret: self.config.client_secret()?.clone(),
                refresh_token: self.refresh_token.clone(),
            }))
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<TokenResponse, Error> {
        parse_token(response)
    }
}

/// `POST /connect/token` with `grant_type=client_credentials`.
#[derive(Debug)]
pub struct ClientCredentials<'a> {
    config: &'a TrueLayerConfig,
    scopes: Scopes<Scope>,
}

impl ClientCredentials<'_> {
    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes<Scope> {
        &self.scopes
    }
}

impl Operation for ClientCredentials<'_> {
    type Output = TokenResponse;
    const NAME: &'static str = "truelayer.token.client_credentials";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        validate::scopes(&self.scopes)?;
        self.config
            .token_request(&TokenRequest::ClientCredentials(ClientCredentialsRequest {
                client_id: self.config.client_id.clone(),
                client_secret: self.config.client_secret()?.clone(),
                scope: self.scopes.clone(),
            }))
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<TokenResponse, Error> {
        parse_token(response)
    }
}

/// `DELETE /api/delete` with the access token as bearer; the answer has no body.
#[derive(Debug)]
pub struct DeleteCredential<'a> {
    config: &'a TrueLayerConfig,
    access_token: AccessToken,
}

impl Operation for DeleteCredential<'_> {
    type Output = ();
    const NAME: &'static str = "truelayer.token.delete_credential";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        validate::required("access_token", self.access_token.expose_secret())?;
        let mut request = wire::request(
            Method::DELETE,
            self.config.endpoints.delete.clone(),
            &self.config.user_agent,
            None,
            Vec::new(),
        );
        wire::set_bearer(&mut request, self.access_token.expose_secret())?;
        Ok(request)
    }

    fn parse_response<B: AsRef<[u8]>>(&self, response: &http::Response<B>) -> Result<(), Error> {
        wire::parse_empty(response)
    }
}
