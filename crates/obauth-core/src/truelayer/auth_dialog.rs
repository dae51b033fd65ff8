//! TrueLayer's hosted auth dialog: the link that starts it, and the redirect that ends it.
//!
//! Not part of the Authentication Server spec, but how users obtain the `code` that
//! [`TrueLayerConfig::exchange_code`] exchanges. The dialog lives at the base URL of the
//! environment (`https://auth.truelayer.com/?response_type=code&…`).

use obauth_types::truelayer::{ResponseMode, Scope};
use obauth_types::{AuthorizationCode, ErrorCode, IdToken, Scopes};
use subtle::ConstantTimeEq;

use super::TrueLayerConfig;
use crate::error::{CallbackError, InvalidInput};
use crate::pkce::Pkce;
use crate::{validate, wire};

/// Parameters obauth sets itself and [`AuthDialog::extra`] refuses.
const RESERVED: [&str; 11] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "response_mode",
    "providers",
    "provider_id",
    "code_challenge",
    "code_challenge_method",
];

/// An auth-dialog link. `state` is required: check it on the way back with
/// [`parse_callback`]; make one with [`crate::random::new_state`].
#[derive(Clone, Debug)]
pub struct AuthDialog {
    redirect_uri: String,
    scopes: Scopes<Scope>,
    state: String,
    nonce: Option<String>,
    providers: Vec<String>,
    provider_id: Option<String>,
    response_mode: Option<ResponseMode>,
    code_challenge: Option<String>,
    extra: Vec<(String, String)>,
}

impl AuthDialog {
    /// A dialog asking for `scopes`, returning to `redirect_uri` with `state`.
    pub fn new(
        redirect_uri: impl Into<String>,
        scopes: Scopes<Scope>,
        state: impl Into<String>,
    ) -> Self {
        Self {
            redirect_uri: redirect_uri.into(),
            scopes,
            state: state.into(),
            nonce: None,
            providers: Vec::new(),
            provider_id: None,
            response_mode: None,
            code_challenge: None,
            extra: Vec::new(),
        }
    }

    /// Sets the OpenID Connect `nonce`.
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Adds to `providers` (e.g. `uk-ob-all`), the providers the dialog offers.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.providers.push(provider.into());
        self
    }

    /// Skips provider selection (`provider_id`); it must also be covered by `providers`.
    pub fn provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// `response_mode=form_post`: the code arrives as a POSTed form.
    pub fn form_post(mut self) -> Self {
        self.response_mode = Some(ResponseMode::FormPost);
        self
    }

    /// Sends the PKCE challenge of `pkce` (method `S256`).
    pub fn pkce(mut self, pkce: &Pkce) -> Self {
        self.code_challenge = Some(pkce.challenge().to_owned());
        self
    }

    /// Adds any other documented dialog parameter (e.g. `language`), percent-encoded.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }
}

impl TrueLayerConfig {
    /// The URL of the hosted auth dialog for `dialog`, every value percent-encoded.
    pub fn auth_dialog_url(&self, dialog: &AuthDialog) -> Result<String, InvalidInput> {
        validate::redirect_uri(&dialog.redirect_uri)?;
        validate::scopes(&dialog.scopes)?;
        validate::required("state", &dialog.state)?;
        if dialog
            .extra
            .iter()
            .any(|(name, _)| name.is_empty() || RESERVED.contains(&name.as_str()))
        {
            return Err(InvalidInput::new(
                "extra parameter",
                "must have a name, and not one obauth sets itself",
            ));
        }
        let mut query = String::with_capacity(256);
        wire::push_query(&mut query, "response_type", "code");
        wire::push_query(&mut query, "client_id", &self.client_id);
        wire::push_query(&mut query, "redirect_uri", &dialog.redirect_uri);
        wire::push_query(&mut query, "scope", &dialog.scopes.to_wire());
        wire::push_query(&mut query, "state", &dialog.state);
        if let Some(nonce) = &dialog.nonce {
            wire::push_query(&mut query, "nonce", nonce);
        }
        if dialog.response_mode == Some(ResponseMode::FormPost) {
            wire::push_query(&mut query, "response_mode", "form_post");
        }
        if !dialog.providers.is_empty() {
            wire::push_query(&mut query, "providers", &dialog.providers.join(" "));
        }
        if let Some(provider_id) = &dialog.provider_id {
            wire::push_query(&mut query, "provider_id", provider_id);
        }
        if let Some(challenge) = &dialog.code_challenge {
            wire::push_query(&mut query, "code_challenge", challenge);
            wire::push_query(&mut query, "code_challenge_method", "S256");
        }
        for (name, value) in &dialog.extra {
            wire::push_query(&mut query, name, value);
        }
        Ok(format!("{}/?{query}", self.base.as_str()))
    }
}

/// What a successful redirect back from the dialog carries.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthorizationCallback {
    /// The single-use code to exchange.
    pub code: AuthorizationCode,
    /// The scopes granted, if the server says.
    pub scope: Option<Scopes<Scope>>,
    /// `iss` (RFC 9207), if the server sends it.
    pub issuer: Option<String>,
    /// An ID token, when `openid` was asked for with `form_post`.
    pub id_token: Option<IdToken>,
}

/// Reads the redirect back from the dialog: a full redirect URL, its query string, or a
/// `form_post` body. Checks `state` against `expected_state` in constant time, then yields
/// the code or the dialog's error. An `iss` parameter is accepted and returned.
pub fn parse_callback(
    input: &str,
    expected_state: &str,
) -> Result<AuthorizationCallback, CallbackError> {
    parse_callback_checked(input, expected_state, None)
}

/// [`parse_callback`], also requiring `iss`, when present, to equal `expected_issuer`
/// (RFC 9207 mix-up protection). A redirect without `iss` is accepted: TrueLayer does not
/// promise to send one, so its absence proves nothing.
pub fn parse_callback_with_issuer(
    input: &str,
    expected_state: &str,
    expected_issuer: &str,
) -> Result<AuthorizationCallback, CallbackError> {
    parse_callback_checked(input, expected_state, Some(expected_issuer))
}

fn parse_callback_checked(
    input: &str,
    expected_state: &str,
    expected_issuer: Option<&str>,
) -> Result<AuthorizationCallback, CallbackError> {
    let params = CallbackParams::read(input)?;
    let state_matches = match &params.state {
        Some(state) if !expected_state.is_empty() => {
            bool::from(state.as_bytes().ct_eq(expected_state.as_bytes()))
        }
        _ => false,
    };
    if !state_matches {
        return Err(CallbackError::StateMismatch);
    }
    if let (Some(issuer), Some(expected)) = (&params.iss, expected_issuer)
        && issuer != expected
    {
        return Err(CallbackError::IssuerMismatch);
    }
    if let Some(error) = params.error {
        return Err(CallbackError::Denied {
            code: ErrorCode::parse(&error),
            description: params.error_description,
        });
    }
    let code = params
        .code
        .filter(|code| !code.is_empty())
        .ok_or(CallbackError::MissingParameter("code"))?;
    Ok(AuthorizationCallback {
        code: AuthorizationCode::new(code),
        scope: params.scope.map(|scope| Scopes::parse(&scope)),
        issuer: params.iss,
        id_token: params.id_token.map(IdToken::new),
    })
}

#[derive(Default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    scope: Option<String>,
    iss: Option<String>,
    id_token: Option<String>,
}

impl CallbackParams {
    fn read(input: &str) -> Result<Self, CallbackError> {
        let input = input.trim();
        let query = match input.split_once('?') {
            Some((_, query)) => query,
            None => input,
        };
        let query = query.split('#').next().unwrap_or_default();
        let mut params = CallbackParams::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                "scope" => &mut params.scope,
                "iss" => &mut params.iss,
                "id_token" => &mut params.id_token,
                _ => continue,
            };
            if slot.is_some() {
                return Err(CallbackError::DuplicateParameter(name.into_owned()));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }
}
