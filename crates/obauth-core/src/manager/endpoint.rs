//! What a token manager fetches from: the endpoint, the grant, and the answer it needs.

use obauth_types::{AccessToken, RefreshToken, Scopes, truelayer, worldline};
use serde::Deserialize;

use crate::error::{Error, InvalidInput};
use crate::operation::{Operation, Replay, RequestContext};
use crate::store::{ConnectionName, StoreKey};
use crate::truelayer::TrueLayerConfig;
use crate::truelayer::token::{ClientCredentials, RefreshAccessToken};
use crate::worldline::WorldlineConfig;
use crate::worldline::token::RequestToken;

/// The token a manager keeps, and where it comes from.
#[derive(Clone, Debug)]
pub enum TokenEndpoint {
    /// A TrueLayer application token: `client_credentials` for these scopes.
    TrueLayer {
        /// The client's settings.
        config: TrueLayerConfig,
        /// The scopes asked for.
        scopes: Scopes<truelayer::Scope>,
    },
    /// A Worldline token for these scopes, with the client's secret or assertion.
    Worldline {
        /// The client's settings.
        config: WorldlineConfig,
        /// The scopes asked for.
        scopes: Scopes<worldline::Scope>,
    },
    /// A TrueLayer user's connection, kept fresh with its refresh token.
    TrueLayerUser {
        /// The client's settings.
        config: TrueLayerConfig,
        /// The name the connection is stored under.
        connection: ConnectionName,
    },
}

/// Whether a manager keeps an application token or a user's tokens: it decides what may
/// be done when the store fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Client credentials: any process may ask for a new one, so a failing store only costs
    /// the sharing.
    Application,
    /// A user's connection: its refresh token rotates and lives in the store, so nothing is
    /// refreshed without the store.
    User,
}

/// What to ask the token endpoint for.
#[derive(Clone, Debug)]
pub enum Grant {
    /// `client_credentials`.
    ClientCredentials,
    /// `refresh_token` with this token.
    Refresh(RefreshToken),
}

/// A token the server issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The access token.
    pub access_token: AccessToken,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token, if one came with it.
    pub refresh_token: Option<RefreshToken>,
}

/// A successful answer of the token endpoint, as the token machine needs it.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A token.
    Issued(Issued),
    /// A 2xx answer to a refresh whose access token could not be read, but whose rotated
    /// refresh token could: the old one is spent, so this one must be kept, and the call
    /// still fails with `error`.
    Rotated {
        /// The rotated refresh token.
        refresh_token: RefreshToken,
        /// Why the rest of the answer was refused.
        error: Error,
    },
}

/// How TrueLayer clients authenticate, as store keys name it: `client_id` and
/// `client_secret` in the JSON body of `POST /connect/token`.
pub const TRUELAYER_AUTH_METHOD: &str = "client_secret_json";

/// The name obauth 0.1 gave [`TRUELAYER_AUTH_METHOD`] in store keys (the secret never
/// travelled as the form parameter that `client_secret_post` means).
const TRUELAYER_AUTH_METHOD_BEFORE: &str = "client_secret_post";

impl TokenEndpoint {
    /// The store key of this token (never a secret).
    ///
    /// TrueLayer's keys name its client authentication [`TRUELAYER_AUTH_METHOD`]; obauth
    /// 0.1 named it `client_secret_post`, and a key still finds the records written under
    /// that name ([`StoreKey::previous`]).
    pub fn key(&self) -> StoreKey {
        match self {
            TokenEndpoint::TrueLayer { config, scopes } => {
                let key = |method| {
                    StoreKey::client_credentials(
                        &config.token_url().to_string(),
                        config.client_id(),
                        method,
                        &scopes.to_wire(),
                    )
                };
                key(TRUELAYER_AUTH_METHOD).with_previous(&key(TRUELAYER_AUTH_METHOD_BEFORE))
            }
            TokenEndpoint::Worldline { config, scopes } => StoreKey::client_credentials(
                &config.token_url().to_string(),
                config.client_id(),
                config.auth_method(),
                &scopes.to_wire(),
            ),
            TokenEndpoint::TrueLayerUser { config, connection } => {
                let key = |method| {
                    StoreKey::user(
                        &config.token_url().to_string(),
                        config.client_id(),
                        method,
                        connection,
                    )
                };
                key(TRUELAYER_AUTH_METHOD).with_previous(&key(TRUELAYER_AUTH_METHOD_BEFORE))
            }
        }
    }

    /// Which kind of token this is.
    pub fn kind(&self) -> TokenKind {
        match self {
            TokenEndpoint::TrueLayerUser { .. } => TokenKind::User,
            _ => TokenKind::Application,
        }
    }

    /// The request for `grant`. A grant this endpoint does not take (a refresh of an
    /// application token, client credentials for a user) is an invalid input.
    pub fn request(&self, grant: &Grant) -> Result<TokenRequest<'_>, Error> {
        let inner = match (self, grant) {
            (TokenEndpoint::TrueLayer { config, scopes }, Grant::ClientCredentials) => {
                Inner::TrueLayer(config.client_credentials(scopes.clone()))
            }
            (TokenEndpoint::Worldline { config, scopes }, Grant::ClientCredentials) => {
                Inner::Worldline(config.token(scopes.clone()))
            }
            (TokenEndpoint::TrueLayerUser { config, .. }, Grant::Refresh(refresh_token)) => {
                Inner::Refresh(config.refresh(refresh_token.clone()))
            }
            _ => {
                return Err(Error::InvalidInput(InvalidInput::new(
                    "grant",
                    "does not fit this token endpoint",
                )));
            }
        };
        Ok(TokenRequest { inner })
    }
}

/// One token request of a manager: an [`Operation`] whose output is an [`Answer`].
#[derive(Debug)]
pub struct TokenRequest<'a> {
    inner: Inner<'a>,
}

#[derive(Debug)]
enum Inner<'a> {
    TrueLayer(ClientCredentials<'a>),
    Worldline(RequestToken<'a>),
    Refresh(RefreshAccessToken<'a>),
}

/// The one field a refresh answer must not lose, read on its own when the rest is refused.
#[derive(Deserialize)]
struct RefreshTokenOnly {
    refresh_token: Option<RefreshToken>,
}

impl Operation for TokenRequest<'_> {
    type Output = Answer;
    const NAME: &'static str = "token";

    fn name(&self) -> &'static str {
        match &self.inner {
            Inner::TrueLayer(_) => ClientCredentials::NAME,
            Inner::Worldline(_) => RequestToken::NAME,
            Inner::Refresh(_) => RefreshAccessToken::NAME,
        }
    }

    fn replay(&self) -> Replay {
        match &self.inner {
            Inner::TrueLayer(op) => op.replay(),
            Inner::Worldline(op) => op.replay(),
            Inner::Refresh(op) => op.replay(),
        }
    }

    fn build_request(&self, cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        match &self.inner {
            Inner::TrueLayer(op) => op.build_request(cx),
            Inner::Worldline(op) => op.build_request(cx),
            Inner::Refresh(op) => op.build_request(cx),
        }
    }

    fn error_in_output(output: &mut Answer) -> Option<&mut Error> {
        match output {
            Answer::Rotated { error, .. } => Some(error),
            Answer::Issued(_) => None,
        }
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<Answer, Error> {
        let issued = |access_token, expires_in, refresh_token| {
            Answer::Issued(Issued {
                access_token,
                expires_in,
                refresh_token,
            })
        };
        match &self.inner {
            Inner::TrueLayer(op) => op
                .parse_response(response)
                .map(|t| issued(t.access_token, t.expires_in, t.refresh_token)),
            Inner::Worldline(op) => op
                .parse_response(response)
                .map(|t| issued(t.access_token, t.expires_in, None)),
            Inner::Refresh(op) => match op.parse_response(response) {
                Ok(t) => Ok(issued(t.access_token, t.expires_in, t.refresh_token)),
                Err(error) if response.status().is_success() => {
                    // The server took the old refresh token: if a new one can be read,
                    // it must be kept even though the rest of the answer is refused.
                    let body = crate::redact::without_bom(response.body().as_ref());
                    match serde_json::from_slice::<RefreshTokenOnly>(body) {
                        Ok(RefreshTokenOnly {
                            refresh_token: Some(refresh_token),
                        }) if !refresh_token.is_empty() => Ok(Answer::Rotated {
                            refresh_token,
                            error,
                        }),
                        _ => Err(error),
                    }
                }
                Err(error) => Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Response, StatusCode};
    use obauth_types::truelayer::Scope;

    use super::*;
    use crate::BaseUrl;
    use crate::error::UnexpectedKind;
    use crate::truelayer::Environment;
    use crate::worldline::WorldlineAuth;

    fn truelayer() -> TrueLayerConfig {
        TrueLayerConfig::new(Environment::Sandbox, "client")
            .unwrap()
            .with_client_secret("secret".into())
    }

    fn answer(status: u16, body: &str) -> Response<Vec<u8>> {
        let mut response = Response::new(body.as_bytes().to_vec());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    }

    fn user() -> TokenEndpoint {
        TokenEndpoint::TrueLayerUser {
            config: truelayer(),
            connection: ConnectionName::new("alice").unwrap(),
        }
    }

    #[test]
    fn keys_and_kinds() {
        let app = TokenEndpoint::TrueLayer {
            config: truelayer(),
            scopes: Scopes::from([Scope::Payments]),
        };
        assert_eq!(app.kind(), TokenKind::Application);
        assert_eq!(
            app.key().as_str(),
            r#"["client_credentials","https://auth.truelayer-sandbox.com/connect/token","client","client_secret_json","payments"]"#
        );
        // Records that obauth 0.1 wrote under `client_secret_post` stay reachable.
        assert_eq!(
            app.key().previous().unwrap().as_str(),
            r#"["client_credentials","https://auth.truelayer-sandbox.com/connect/token","client","client_secret_post","payments"]"#
        );
        assert_eq!(user().kind(), TokenKind::User);
        assert_eq!(user().key().connection(), Some("alice"));
        assert_eq!(user().key().previous().unwrap().connection(), Some("alice"));
        assert!(
            user()
                .key()
                .previous()
                .unwrap()
                .as_str()
                .contains(r#""client_secret_post","alice"]"#)
        );
        let worldline = TokenEndpoint::Worldline {
            config: WorldlineConfig::new(
                BaseUrl::parse("https://wl.example/auth").unwrap(),
                "realm",
                "client",
                WorldlineAuth::ClientSecret("s".into()),
            )
            .unwrap(),
            scopes: Scopes::from([worldline::Scope::Vop]),
        };
        assert_eq!(worldline.kind(), TokenKind::Application);
        assert!(
            worldline
                .key()
                .as_str()
                .contains("/realms/realm/protocol/openid-connect/token")
        );
    }

    #[test]
    fn grants_must_fit_the_endpoint() {
        assert!(user().request(&Grant::ClientCredentials).is_err());
        let app = TokenEndpoint::TrueLayer {
            config: truelayer(),
            scopes: Scopes::from([Scope::Payments]),
        };
        assert!(
            app.request(&Grant::Refresh(RefreshToken::new("r")))
                .is_err()
        );
        let endpoint = user();
        let request = endpoint
            .request(&Grant::Refresh(RefreshToken::new("r")))
            .unwrap();
        assert_eq!(request.replay(), Replay::IfNotProcessed);
        assert_eq!(
            app.request(&Grant::ClientCredentials).unwrap().replay(),
            Replay::Safe
        );
        let worldline = TokenEndpoint::Worldline {
            config: WorldlineConfig::new(
                BaseUrl::parse("https://wl.example/auth").unwrap(),
                "realm",
                "client",
                WorldlineAuth::ClientSecret("s".into()),
            )
            .unwrap(),
            scopes: Scopes::from([worldline::Scope::Vop]),
        };
        let request = worldline.request(&Grant::ClientCredentials).unwrap();
        assert_eq!(request.replay(), Replay::Safe);
        let built = request
            .build_request(&mut RequestContext::new(
                std::time::SystemTime::UNIX_EPOCH,
                &mut crate::random::OsRandom,
            ))
            .unwrap();
        assert!(
            built
                .uri()
                .path()
                .ends_with("/realms/realm/protocol/openid-connect/token")
        );
        assert!(
            worldline
                .request(&Grant::Refresh(RefreshToken::new("r")))
                .is_err()
        );
    }

    #[test]
    fn a_rotated_answers_error_is_scrubbed_of_the_requests_secrets() {
        use crate::call::{Call, Step};
        use crate::expiry::Now;
        use crate::retry::RetryPolicy;

        let config = TrueLayerConfig::new(Environment::Sandbox, "client")
            .unwrap()
            .with_client_secret("Argv-Secret-77".into());
        let endpoint = TokenEndpoint::TrueLayerUser {
            config,
            connection: ConnectionName::new("alice").unwrap(),
        };
        let request = endpoint
            .request(&Grant::Refresh(RefreshToken::new("Old-Refresh-9")))
            .unwrap();
        let mut call = Call::new(&request, RetryPolicy::never());
        call.request(Now::system(), &mut crate::random::OsRandom)
            .unwrap();
        // A 2xx that quotes the request back where a number belongs: serde's message
        // would carry the quoted text.
        let body = r#"{"access_token":"a","expires_in":"client_secret=Argv-Secret-77 refresh_token=Old-Refresh-9","token_type":"Bearer","refresh_token":"r2"}"#;
        match call.outcome(
            Ok(answer(200, body)),
            Now::system(),
            &mut crate::random::OsRandom,
        ) {
            Step::Done(Ok(Answer::Rotated {
                refresh_token,
                error,
            })) => {
                assert_eq!(refresh_token.expose_secret(), "r2");
                let shown = format!("{error} {error:?}");
                assert!(!shown.contains("Argv-Secret-77"), "{shown}");
                assert!(!shown.contains("Old-Refresh-9"), "{shown}");
                assert!(shown.contains("<redacted>"), "{shown}");
            }
            Step::Done(other) => panic!("{other:?}"),
            Step::Retry(_) => panic!("a 2xx is not retried"),
        }
    }

    #[test]
    fn a_refresh_answer_keeps_its_rotated_token_even_when_the_rest_is_refused() {
        let endpoint = user();
        let request = endpoint
            .request(&Grant::Refresh(RefreshToken::new("r")))
            .unwrap();
        match request.parse_response(&answer(
            200,
            r#"{"access_token":"a","expires_in":60,"token_type":"Bearer","refresh_token":"r2"}"#,
        )) {
            Ok(Answer::Issued(issued)) => {
                assert_eq!(issued.access_token.expose_secret(), "a");
                assert_eq!(issued.expires_in, 60);
                assert_eq!(issued.refresh_token.unwrap().expose_secret(), "r2");
            }
            other => panic!("{other:?}"),
        }
        for body in [
            r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r2"}"#,
            r#"{"access_token":"a","expires_in":"soon","token_type":"Bearer","refresh_token":"r2"}"#,
            r#"{"access_token":"a","expires_in":1.5,"token_type":"Bearer","refresh_token":"r2"}"#,
            "\u{feff}{\"refresh_token\":\"r2\"}",
        ] {
            match request.parse_response(&answer(200, body)) {
                Ok(Answer::Rotated {
                    refresh_token,
                    error,
                }) => {
                    assert_eq!(refresh_token.expose_secret(), "r2");
                    assert!(matches!(error, Error::UnexpectedResponse(_)), "{error:?}");
                    assert!(!error.to_string().contains("r2"), "{error}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // Nothing to keep: the error as it was.
        for body in [
            r#"{"expires_in":"soon"}"#,
            r#"{"refresh_token":""}"#,
            "<html>",
        ] {
            assert!(
                request.parse_response(&answer(200, body)).is_err(),
                "{body}"
            );
        }
        // An error status is an error, whatever its body holds.
        match request.parse_response(&answer(
            400,
            r#"{"error":"invalid_grant","refresh_token":"r2"}"#,
        )) {
            Err(Error::Api(api)) => assert_eq!(api.code, obauth_types::ErrorCode::InvalidGrant),
            other => panic!("{other:?}"),
        }
        // A client-credentials answer never salvages anything.
        let app = TokenEndpoint::TrueLayer {
            config: truelayer(),
            scopes: Scopes::from([Scope::Payments]),
        };
        let request = app.request(&Grant::ClientCredentials).unwrap();
        match request.parse_response(&answer(200, r#"{"refresh_token":"r2"}"#)) {
            Err(Error::UnexpectedResponse(unexpected)) => {
                assert!(matches!(unexpected.kind, UnexpectedKind::WrongShape(_)))
            }
            other => panic!("{other:?}"),
        }
    }
}
