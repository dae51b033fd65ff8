//! `POST /v1/authuri` (direct bank authentication link) and `POST /v1/reauthuri`.

use http::Method;
use obauth_types::truelayer::auth_link::{
    AuthInputs, AuthLinkRequest, AuthLinkResponse, AuthLinkUser, ReauthLinkRequest,
};
use obauth_types::truelayer::{CodeChallengeMethod, ResponseMode, ResponseTypeCode, Scope};
use obauth_types::{RefreshToken, Scopes};

use super::TrueLayerConfig;
use crate::error::{Error, InvalidInput, UnexpectedKind};
use crate::operation::{Operation, Replay, RequestContext};
use crate::pkce::Pkce;
use crate::{validate, wire};

/// What a direct bank authentication link is for. Required fields are the arguments of
/// [`AuthLink::new`]; the rest are optional setters.
#[derive(Clone, Debug)]
pub struct AuthLink {
    provider_id: String,
    scopes: Scopes<Scope>,
    redirect_uri: String,
    consent_id: String,
    state: Option<String>,
    user: Option<AuthLinkUser>,
    data_use_description: Option<String>,
    code_challenge: Option<String>,
    response_mode: Option<ResponseMode>,
    auth_inputs: AuthInputs,
    tracking_id: Option<String>,
}

impl AuthLink {
    /// A link to `provider_id` asking for `scopes`, returning to `redirect_uri`, for the
    /// consent you captured as `consent_id`.
    pub fn new(
        provider_id: impl Into<String>,
        scopes: Scopes<Scope>,
        redirect_uri: impl Into<String>,
        consent_id: impl Into<String>,
    ) -> Self {
        Self {
            provider_id: provider_id.into(),
            scopes,
            redirect_uri: redirect_uri.into(),
            consent_id: consent_id.into(),
            state: None,
            user: None,
            data_use_description: None,
            code_challenge: None,
            response_mode: None,
            auth_inputs: AuthInputs::default(),
            tracking_id: None,
        }
    }

    /// Sets `state`; compare it on the redirect (see [`super::auth_dialog::parse_callback`]).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sets the user: a `name` and at least one of `email` or `phone` are required.
    pub fn user(mut self, user: AuthLinkUser) -> Self {
        self.user = Some(user);
        self
    }

    /// Sets the copy shown to the user about how their data is used.
    pub fn data_use_description(mut self, description: impl Into<String>) -> Self {
        self.data_use_description = Some(description.into());
        self
    }

    /// Sends the PKCE challenge of `pkce` (method `S256`); keep its verifier for the exchange.
    pub fn pkce(mut self, pkce: &Pkce) -> Self {
        self.code_challenge = Some(pkce.challenge().to_owned());
        self
    }

    /// Asks for the code to be POSTed to the redirect URI as a form (`response_mode=form_post`).
    pub fn form_post(mut self) -> Self {
        self.response_mode = Some(ResponseMode::FormPost);
        self
    }

    /// Adds an input a provider step requires (`field_id` from the providers list).
    pub fn auth_input(mut self, field_id: impl Into<String>, value: impl Into<String>) -> Self {
        self.auth_inputs.insert(field_id, value);
        self
    }

    /// Sets the Auth Journey Analytics tracking id.
    pub fn tracking_id(mut self, tracking_id: impl Into<String>) -> Self {
        self.tracking_id = Some(tracking_id.into());
        self
    }
}

/// What a reauthentication link is for.
#[derive(Clone, Debug)]
pub struct ReauthLink {
    refresh_token: RefreshToken,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: Option<String>,
    response_mode: Option<ResponseMode>,
}

impl ReauthLink {
    /// A link to reconnect the connection of `refresh_token`, returning to `redirect_uri`.
    pub fn new(refresh_token: RefreshToken, redirect_uri: impl Into<String>) -> Self {
        Self {
            refresh_token,
            redirect_uri: redirect_uri.into(),
            state: None,
            code_challenge: None,
            response_mode: None,
        }
    }

    /// Sets `state`.
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sends the PKCE challenge of `pkce` (method `S256`).
    pub fn pkce(mut self, pkce: &Pkce) -> Self {
        self.code_challenge = Some(pkce.challenge().to_owned());
        self
    }

    /// Asks for `response_mode=form_post`.
    pub fn form_post(mut self) -> Self {
        self.response_mode = Some(ResponseMode::FormPost);
        self
    }
}

impl TrueLayerConfig {
    /// Creates a direct bank authentication link (`POST /v1/authuri`).
    pub fn create_auth_link(&self, link: AuthLink) -> CreateAuthLink<'_> {
        CreateAuthLink { config: self, link }
    }

    /// Creates a reauthentication link (`POST /v1/reauthuri`).
    pub fn create_reauth_link(&self, link: ReauthLink) -> CreateReauthLink<'_> {
        CreateReauthLink { config: self, link }
    }
}

/// `POST /v1/authuri`; yields the link to send the user to.
#[derive(Debug)]
pub struct CreateAuthLink<'a> {
    config: &'a TrueLayerConfig,
    link: AuthLink,
}

impl CreateAuthLink<'_> {
    /// The request body this operation sends, after validation.
    pub fn body(&self) -> Result<AuthLinkRequest, InvalidInput> {
        let link = &self.link;
        validate::required("provider_id", &link.provider_id)?;
        validate::scopes(&link.scopes)?;
        validate::redirect_uri(&link.redirect_uri)?;
        validate::required("consent_id", &link.consent_id)?;
        if let Some(user) = &link.user {
            let name = user.name.as_deref().unwrap_or_default();
            let has_contact = [&user.email, &user.phone]
                .into_iter()
                .any(|value| value.as_deref().is_some_and(|v| !v.trim().is_empty()));
            if name.trim().is_empty() || !has_contact {
                return Err(InvalidInput::new(
                    "user",
                    "needs a name and at least one of email or phone",
                ));
            }
        }
        Ok(AuthLinkRequest {
            response_type: ResponseTypeCode,
            client_id: self.config.client_id.clone(),
            redirect_uri: link.redirect_uri.clone(),
            scope: link.scopes.clone(),
            state: link.state.clone(),
            consent_id: link.consent_id.clone(),
            user: link.user.clone(),
            data_use_description: link.data_use_description.clone(),
            provider_id: link.provider_id.clone(),
            code_challenge: link.code_challenge.clone(),
            code_challenge_method: link
                .code_challenge
                .as_ref()
                .map(|_| CodeChallengeMethod::S256),
            response_mode: link.response_mode,
            auth_inputs: (!link.auth_inputs.is_empty()).then(|| link.auth_inputs.clone()),
            tracking_id: link.tracking_id.clone(),
        })
    }
}

impl Operation for CreateAuthLink<'_> {
    type Output = String;
    const NAME: &'static str = "truelayer.auth_link.create";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        let body = self.body()?;
        wire::json_request(
            Method::POST,
            self.config.endpoints.auth_uri.clone(),
            &self.config.user_agent,
            &body,
        )
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<String, Error> {
        parse_link(response)
    }
}

/// `POST /v1/reauthuri`; yields the link to send the user to.
#[derive(Debug)]
pub struct CreateReauthLink<'a> {
    config: &'a TrueLayerConfig,
    link: ReauthLink,
}

impl Operation for CreateReauthLink<'_> {
    type Output = String;
    const NAME: &'static str = "truelayer.auth_link.create_reauth";

    fn replay(&self) -> Replay {
        Replay::Safe
    }

    fn build_request(&self, _cx: &mut RequestContext<'_>) -> Result<http::Request<Vec<u8>>, Error> {
        let link = &self.link;
        validate::required("refresh_token", link.refresh_token.expose_secret())?;
        validate::redirect_uri(&link.redirect_uri)?;
        let body = ReauthLinkRequest {
            response_type: ResponseTypeCode,
            refresh_token: link.refresh_token.clone(),
            redirect_uri: link.redirect_uri.clone(),
            state: link.state.clone(),
            code_challenge: link.code_challenge.clone(),
            code_challenge_method: link
                .code_challenge
                .as_ref()
                .map(|_| CodeChallengeMethod::S256),
            response_mode: link.response_mode,
        };
        wire::json_request(
            Method::POST,
            self.config.endpoints.reauth_uri.clone(),
            &self.config.user_agent,
            &body,
        )
    }

    fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<String, Error> {
        parse_link(response)
    }
}

fn parse_link<B: AsRef<[u8]>>(response: &http::Response<B>) -> Result<String, Error> {
    let link: AuthLinkResponse = wire::parse_json(response)?;
    if !link.success {
        return Err(wire::unexpected(response, UnexpectedKind::LinkNotCreated));
    }
    if link.result.trim().is_empty() {
        return Err(wire::unexpected(
            response,
            UnexpectedKind::WrongShape("result is empty".to_owned()),
        ));
    }
    if !is_web_link(&link.result) {
        // A person opens this link: `javascript:…`, `data:…`, a plain-text address off
        // this host or text with control characters must not reach a browser or terminal.
        return Err(wire::unexpected(
            response,
            UnexpectedKind::WrongShape(
                "result is not an https URL (http only to a loopback host)".to_owned(),
            ),
        ));
    }
    Ok(link.result)
}

/// An absolute `https://` URL with a host and a valid port if any, or `http://` to a
/// loopback host (a local test server); nothing else a browser could be sent to. User info
/// (`https://auth.truelayer.com@elsewhere/`) is refused: it makes a link read as one host
/// and open another.
fn is_web_link(link: &str) -> bool {
    // http::Uri refuses control characters and spaces.
    let Ok(uri) = link.parse::<http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority() else {
        return false;
    };
    if authority.as_str().contains('@') || crate::url::port_of(authority).is_err() {
        return false;
    }
    let host = authority.host();
    if host.is_empty() {
        return false;
    }
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => crate::url::is_loopback_host(host),
        _ => false,
    }
}
