//! TrueLayer's Authentication Server, with the semantics the spec and OAuth describe.
//!
//! Refresh tokens belong to grants. Each authorization-code exchange (of a code from an
//! auth link, a reauth link or the hosted dialog, as [`crate::MockServer::approve`] plays
//! them) starts a grant; a refresh that rotates the refresh token stays in it. Presenting a
//! rotated refresh token again is reuse (RFC 9700 §4.14.2): `invalid_grant`, and, with
//! reuse detection on, the whole grant is revoked, its current refresh token and its
//! access tokens with it. The connection (credential) itself stays: reauthentication is
//! how its user gets a fresh grant.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use obauth_types::truelayer::auth_link::{AuthLinkRequest, ReauthLinkRequest};
use obauth_types::truelayer::debug::DebugIdRequest;
use obauth_types::truelayer::providers::{Provider, ProvidersResponse};
use obauth_types::truelayer::token::TokenRequest;
use obauth_types::truelayer::{ResponseMode, Scope};
use obauth_types::{ClientSecret, Scopes};
use sha2::{Digest, Sha256};

use crate::wire::{Answer, Endpoint, Request, random_token, same, shown_name, shown_names};
use crate::{
    TRUELAYER_CLIENT_ID, TRUELAYER_CLIENT_SECRET, TRUELAYER_LOOPBACK_REDIRECT_URIS,
    TRUELAYER_REDIRECT_URI,
};

/// The scopes `client_credentials` may ask for.
const APPLICATION_SCOPES: [&str; 7] = [
    "payments",
    "recurring_payments:sweeping",
    "recurring_payments:commercial",
    "signupplus",
    "verification",
    "payouts",
    "paydirect",
];

struct Client {
    secret: ClientSecret,
    redirect_uris: Vec<String>,
}

/// An authorization in progress: an auth link or dialog, waiting for the user's consent.
#[derive(Clone)]
struct Session {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    form_post: bool,
    provider_id: String,
    /// Set for reauthentication: the connection being renewed.
    credential: Option<String>,
}

/// At most this many consent links are kept open; older ones are forgotten.
const MAX_SESSIONS: usize = 10_000;
/// At most this many bytes of consent sessions (`state` and the like are the caller's):
/// 400 links with a 900 KB `state` must not grow the mock by 360 MB.
const MAX_SESSION_BYTES: usize = 8 * 1024 * 1024;

impl Session {
    /// The bytes the session holds, near enough.
    fn bytes(&self) -> usize {
        self.client_id.len()
            + self.redirect_uri.len()
            + self.scope.len()
            + self.state.as_ref().map_or(0, String::len)
            + self.code_challenge.as_ref().map_or(0, String::len)
            + self.provider_id.len()
            + self.credential.as_ref().map_or(0, String::len)
            + 128
    }
}

struct Code {
    session: Session,
    used: bool,
    /// What the exchange issued, revoked if the code is replayed.
    credential: Option<String>,
}

/// The grant a user token belongs to: one per authorization-code exchange.
type GrantId = u64;

struct Access {
    credential: Option<String>,
    /// `None` for application (`client_credentials`) tokens.
    grant: Option<GrantId>,
    expires_at: Instant,
}

struct Refresh {
    client_id: String,
    credential: String,
    grant: GrantId,
    scope: String,
    used: bool,
}

/// What the refresh-token grant did, for the tests to read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RefreshCounts {
    /// Refreshes answered with new tokens.
    pub(crate) succeeded: usize,
    /// Refreshes answered `invalid_grant`, whatever the reason.
    pub(crate) refused: usize,
    /// Refreshes that presented a rotated (spent) refresh token.
    pub(crate) reuses: usize,
    /// Grants revoked because one of their rotated refresh tokens was presented.
    pub(crate) revoked_grants: usize,
}

struct Credential {
    provider_id: String,
    revoked: bool,
    debug_id: Option<String>,
}

pub(crate) struct TrueLayerState {
    base: String,
    clients: HashMap<String, Client>,
    sessions: HashMap<String, Session>,
    /// Consent links in the order they were issued, oldest first (some already used).
    session_order: VecDeque<String>,
    /// The bytes the open consent sessions hold.
    session_bytes: usize,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    credentials: HashMap<String, Credential>,
    /// The credential whose debug id was created last: what a `DELETE /api/debug` with no
    /// body (as the spec describes it) deletes.
    last_debug: Option<String>,
    providers: Vec<Provider>,
    pub(crate) token_lifetime: Duration,
    /// The id the next grant gets.
    next_grant: GrantId,
    /// Grants revoked by reuse detection; their refresh tokens stay known (a reauth link
    /// may still name one) but no longer refresh.
    revoked_grants: HashSet<GrantId>,
    /// Whether presenting a rotated refresh token revokes its grant (RFC 9700 §4.14.2).
    pub(crate) reuse_detection: bool,
    pub(crate) refresh_counts: RefreshCounts,
}

impl TrueLayerState {
    pub(crate) fn new(base: String) -> Self {
        let ProvidersResponse(providers) =
            serde_json::from_str(include_str!("providers.json")).unwrap_or_default();
        let mut state = Self {
            base,
            clients: HashMap::new(),
            sessions: HashMap::new(),
            session_order: VecDeque::new(),
            session_bytes: 0,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            credentials: HashMap::new(),
            last_debug: None,
            providers,
            token_lifetime: Duration::from_secs(3600),
            next_grant: 1,
            revoked_grants: HashSet::new(),
            reuse_detection: true,
            refresh_counts: RefreshCounts::default(),
        };
        let mut redirect_uris = vec![TRUELAYER_REDIRECT_URI];
        redirect_uris.extend(TRUELAYER_LOOPBACK_REDIRECT_URIS);
        state.register_client(TRUELAYER_CLIENT_ID, TRUELAYER_CLIENT_SECRET, &redirect_uris);
        state
    }

    pub(crate) fn register_client(
        &mut self,
        client_id: &str,
        secret: &str,
        redirect_uris: &[&str],
    ) {
        self.clients.insert(
            client_id.to_owned(),
            Client {
                secret: ClientSecret::new(secret),
                redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
            },
        );
    }

    pub(crate) fn handle(&mut self, request: &Request) -> Answer {
        match request.endpoint {
            Endpoint::TrueLayerToken => self.token(&request.body),
            Endpoint::AuthLink => self.auth_link(&request.body),
            Endpoint::ReauthLink => self.reauth_link(&request.body),
            Endpoint::CreateDebugId => self.debug(&request.body, true),
            Endpoint::DeleteDebugId => self.debug(&request.body, false),
            Endpoint::DeleteCredential => self.delete(request),
            Endpoint::Providers => self.providers(&request.query),
            Endpoint::Consent => self.consent(request),
            _ => Answer::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        }
    }

    fn token(&mut self, body: &[u8]) -> Answer {
        let request: TokenRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => return invalid_request(&describe_json_error("token request", &error)),
        };
        let (client_id, secret) = match &request {
            TokenRequest::AuthorizationCode(r) => (&r.client_id, &r.client_secret),
            TokenRequest::RefreshToken(r) => (&r.client_id, &r.client_secret),
            TokenRequest::ClientCredentials(r) => (&r.client_id, &r.client_secret),
        };
        let authenticated = self
            .clients
            .get(client_id)
            .is_some_and(|client| same(client.secret.expose_secret(), secret.expose_secret()));
        if !authenticated {
            return Answer::json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({
                    "error": "unauthorized_client",
                    "error_description": "The client credentials you have entered are incorrect. Please check and try again.",
                    "error_details": {},
                }),
            );
        }
        match request {
            TokenRequest::AuthorizationCode(r) => {
                let Some(code) = self.codes.get_mut(r.code.expose_secret()) else {
                    return invalid_grant();
                };
                if code.used {
                    // RFC 6749 §4.1.2: a replayed code revokes what it issued.
                    if let Some(credential) = code.credential.clone() {
                        self.revoke(&credential);
                    }
                    return invalid_grant();
                }
                let session = code.session.clone();
                let verifier_ok = match (&session.code_challenge, &r.code_verifier) {
                    (None, None) => true,
                    (Some(challenge), Some(verifier)) => same(
                        challenge,
                        &URL_SAFE_NO_PAD
                            .encode(Sha256::digest(verifier.expose_secret().as_bytes())),
                    ),
                    _ => false,
                };
                if session.client_id != r.client_id
                    || session.redirect_uri != r.redirect_uri
                    || !verifier_ok
                {
                    return invalid_grant();
                }
                code.used = true;
                let credential = session
                    .credential
                    .clone()
                    .unwrap_or_else(|| random_token("cred-"));
                code.credential = Some(credential.clone());
                self.credentials
                    .entry(credential.clone())
                    .or_insert(Credential {
                        provider_id: session.provider_id.clone(),
                        revoked: false,
                        debug_id: None,
                    });
                let grant = self.next_grant;
                self.next_grant += 1;
                self.issue(&r.client_id, Some((&credential, grant)), &session.scope)
            }
            TokenRequest::RefreshToken(r) => {
                self.refresh(&r.client_id, r.refresh_token.expose_secret())
            }
            TokenRequest::ClientCredentials(r) => {
                let scope = r.scope.to_wire();
                if r.scope.is_empty()
                    || r.scope
                        .iter()
                        .any(|s| !APPLICATION_SCOPES.contains(&s.as_str()))
                {
                    return Answer::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        &format!(
                            "Invalid scopes: {}",
                            shown_names(scope.split(' ').filter(|s| !s.is_empty()))
                        ),
                    );
                }
                self.issue(&r.client_id, None, &scope)
            }
        }
    }

    /// The refresh-token grant, for an authenticated `client_id`.
    fn refresh(&mut self, client_id: &str, refresh_token: &str) -> Answer {
        let Some(refresh) = self.refresh.get(refresh_token) else {
            return self.refuse_refresh();
        };
        if refresh.client_id != client_id {
            return self.refuse_refresh();
        }
        let grant = refresh.grant;
        if refresh.used {
            // RFC 9700 §4.14.2: the server cannot tell the legitimate client from an
            // attacker, so it revokes the grant, whoever holds its current token.
            self.refresh_counts.reuses += 1;
            if self.reuse_detection {
                self.revoke_grant(grant);
            }
            return self.refuse_refresh();
        }
        let connection_revoked = self
            .credentials
            .get(&refresh.credential)
            .is_none_or(|c| c.revoked);
        if connection_revoked || self.revoked_grants.contains(&grant) {
            return self.refuse_refresh();
        }
        let (credential, scope) = (refresh.credential.clone(), refresh.scope.clone());
        if let Some(refresh) = self.refresh.get_mut(refresh_token) {
            refresh.used = true;
        }
        self.refresh_counts.succeeded += 1;
        self.issue(client_id, Some((&credential, grant)), &scope)
    }

    fn refuse_refresh(&mut self) -> Answer {
        self.refresh_counts.refused += 1;
        invalid_grant()
    }

    /// Whether `token` is an access token this server issued that has not expired or been
    /// revoked.
    pub(crate) fn access_token_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|access| access.expires_at > Instant::now())
    }

    /// Forgets one access token, as a server that revoked it would.
    pub(crate) fn revoke_access_token(&mut self, token: &str) -> bool {
        self.access.remove(token).is_some()
    }

    /// Revokes a grant: its refresh tokens stop refreshing, its access tokens are dropped.
    fn revoke_grant(&mut self, grant: GrantId) {
        if self.revoked_grants.insert(grant) {
            self.refresh_counts.revoked_grants += 1;
        }
        self.access.retain(|_, access| access.grant != Some(grant));
    }

    /// Issues an access token, and a rotating refresh token for a connection with
    /// `offline_access`; `user` is the connection and the grant for a user token.
    fn issue(&mut self, client_id: &str, user: Option<(&str, GrantId)>, scope: &str) -> Answer {
        let access_token = random_token("tl-at-");
        self.access.insert(
            access_token.clone(),
            Access {
                credential: user.map(|(credential, _)| credential.to_owned()),
                grant: user.map(|(_, grant)| grant),
                expires_at: Instant::now() + self.token_lifetime,
            },
        );
        let mut body = serde_json::json!({
            "access_token": access_token,
            "expires_in": self.token_lifetime.as_secs(),
            "token_type": "Bearer",
            "scope": scope,
        });
        let offline = scope.split(' ').any(|s| s == "offline_access");
        if let (Some((credential, grant)), true) = (user, offline) {
            let refresh_token = random_token("tl-rt-");
            self.refresh.insert(
                refresh_token.clone(),
                Refresh {
                    client_id: client_id.to_owned(),
                    credential: credential.to_owned(),
                    grant,
                    scope: scope.to_owned(),
                    used: false,
                },
            );
            body["refresh_token"] = refresh_token.into();
        }
        Answer::json(StatusCode::OK, &body)
    }

    fn revoke(&mut self, credential: &str) {
        if let Some(entry) = self.credentials.get_mut(credential) {
            entry.revoked = true;
        }
        self.access
            .retain(|_, access| access.credential.as_deref() != Some(credential));
        self.refresh
            .retain(|_, refresh| refresh.credential != credential);
    }

    fn auth_link(&mut self, body: &[u8]) -> Answer {
        let request: AuthLinkRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => {
                return invalid_request(&describe_json_error("auth link request", &error));
            }
        };
        if let Some(why) = self.check_redirect(&request.client_id, &request.redirect_uri) {
            return Answer::error(StatusCode::UNAUTHORIZED, "unauthorized_client", why);
        }
        if !self
            .providers
            .iter()
            .any(|p| p.provider_id == request.provider_id)
        {
            return invalid_request("unknown provider_id");
        }
        if request.code_challenge.is_some() != request.code_challenge_method.is_some() {
            return invalid_request("code_challenge and code_challenge_method (S256) go together");
        }
        let session = Session {
            client_id: request.client_id,
            redirect_uri: request.redirect_uri,
            scope: request.scope.to_wire(),
            state: request.state,
            code_challenge: request.code_challenge,
            form_post: request.response_mode == Some(ResponseMode::FormPost),
            provider_id: request.provider_id,
            credential: None,
        };
        self.link(session)
    }

    fn reauth_link(&mut self, body: &[u8]) -> Answer {
        let request: ReauthLinkRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(error) => return invalid_request(&describe_json_error("reauth request", &error)),
        };
        // Any refresh token of a live connection, spent or not: reauthentication is for
        // connections whose tokens no longer refresh.
        let found = self
            .refresh
            .get(request.refresh_token.expose_secret())
            .and_then(|refresh| {
                let credential = self.credentials.get(&refresh.credential)?;
                (!credential.revoked).then(|| {
                    (
                        refresh.client_id.clone(),
                        refresh.credential.clone(),
                        refresh.scope.clone(),
                        credential.provider_id.clone(),
                    )
                })
            });
        let Some((client_id, credential, scope, provider_id)) = found else {
            return Answer::error_with_reason(
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "Invalid request",
                "Invalid refresh_token",
            );
        };
        if let Some(why) = self.check_redirect(&client_id, &request.redirect_uri) {
            return Answer::error(StatusCode::UNAUTHORIZED, "unauthorized_client", why);
        }
        let session = Session {
            client_id,
            redirect_uri: request.redirect_uri,
            scope,
            state: request.state,
            code_challenge: request.code_challenge,
            form_post: request.response_mode == Some(ResponseMode::FormPost),
            provider_id,
            credential: Some(credential),
        };
        self.link(session)
    }

    fn check_redirect(&self, client_id: &str, redirect_uri: &str) -> Option<&'static str> {
        match self.clients.get(client_id) {
            None => Some("unknown client_id"),
            Some(client)
                if !client
                    .redirect_uris
                    .iter()
                    .any(|uri| redirect_matches(uri, redirect_uri)) =>
            {
                Some("redirect_uri is not registered for this client")
            }
            Some(_) => None,
        }
    }

    pub(crate) fn open_consents(&self) -> (usize, usize) {
        (self.sessions.len(), self.session_bytes)
    }

    fn link(&mut self, session: Session) -> Answer {
        let id = self.open_session(session);
        Answer::json(
            StatusCode::OK,
            &serde_json::json!({ "result": format!("{}/mock/consent/{id}", self.base), "success": true }),
        )
    }

    /// Keeps `session` for its consent page; the id names it in the page's URL.
    fn open_session(&mut self, session: Session) -> String {
        let id = random_token("");
        self.session_bytes += session.bytes();
        self.sessions.insert(id.clone(), session);
        self.session_order.push_back(id.clone());
        // Bounded, whatever callers send: the oldest unused links go first.
        while self.sessions.len() > MAX_SESSIONS || self.session_bytes > MAX_SESSION_BYTES {
            let Some(oldest) = self.session_order.pop_front() else {
                break;
            };
            if let Some(gone) = self.sessions.remove(&oldest) {
                self.session_bytes -= gone.bytes();
            }
        }
        id
    }

    /// The consent page a person sees: `GET` on the hosted dialog's URL or on a link the
    /// mock issued shows the request and an Allow and a Deny button (a plain form, no
    /// script); the form posts the decision back, and the answer goes to the redirect URI
    /// with a code or `error=access_denied` (`303`, or an auto-submitting form for
    /// `form_post`).
    fn consent(&mut self, request: &Request) -> Answer {
        if request.method == http::Method::POST {
            let decision = form_urlencoded::parse(&request.body)
                .find(|(name, _)| name == "decision")
                .map(|(_, value)| value.into_owned());
            let error = match decision.as_deref() {
                Some("allow") => None,
                Some("deny") => Some("access_denied"),
                _ => {
                    return consent_page_answer(
                        StatusCode::BAD_REQUEST,
                        "Consent",
                        "<p>The decision must be allow or deny.</p>",
                    );
                }
            };
            let link = format!("{}{}", self.base, request.path);
            return match self.approve_to(&link, error) {
                Ok((back, None)) => Answer::redirect(StatusCode::SEE_OTHER, &back),
                Ok((form, Some(redirect_uri))) => Answer::new(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    auto_post_form(&redirect_uri, &form).into_bytes(),
                ),
                Err(why) => consent_page_answer(
                    StatusCode::BAD_REQUEST,
                    "Consent",
                    &format!("<p>{}</p>", escape(&why)),
                ),
            };
        }
        let (id, session) = if request.path == "/" {
            match self.dialog_session(&request.query) {
                Ok(session) => (self.open_session(session.clone()), session),
                Err(why) => {
                    return consent_page_answer(
                        StatusCode::BAD_REQUEST,
                        "Consent",
                        &format!("<p>{}</p>", escape(&why)),
                    );
                }
            }
        } else {
            let id = request.path.trim_start_matches("/mock/consent/").to_owned();
            match self.sessions.get(&id) {
                Some(session) => (id, session.clone()),
                None => {
                    return consent_page_answer(
                        StatusCode::BAD_REQUEST,
                        "Consent",
                        "<p>unknown, used or expired consent link</p>",
                    );
                }
            }
        };
        let scopes: String = session
            .scope
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(|scope| format!("<li>{}</li>", escape(scope)))
            .collect();
        let body = format!(
            "<p>Mock bank <strong id=\"provider\">{provider}</strong></p>\
             <p><strong id=\"client\">{client}</strong> asks to access:</p><ul id=\"scopes\">{scopes}</ul>\
             <p>You will return to <code id=\"redirect\">{redirect}</code>.</p>\
             <form method=\"post\" action=\"/mock/consent/{id}\">\
             <button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button></form>",
            provider = escape(&session.provider_id),
            client = escape(&session.client_id),
            redirect = escape(&session.redirect_uri),
        );
        consent_page_answer(StatusCode::OK, "Consent", &body)
    }

    /// Consent (or refusal, with `error`) on a link the mock issued, or on a hosted-dialog
    /// URL: the redirect back, or the `form_post` body.
    pub(crate) fn approve(&mut self, link: &str, error: Option<&str>) -> Result<String, String> {
        self.approve_to(link, error).map(|(answer, _)| answer)
    }

    /// The same, with the redirect URI a `form_post` body is to be posted to.
    fn approve_to(
        &mut self,
        link: &str,
        error: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        let rest = link
            .strip_prefix(&self.base)
            .ok_or_else(|| "not a link of this mock".to_owned())?;
        let session = if let Some(id) = rest.strip_prefix("/mock/consent/") {
            let id = id.split(['?', '#']).next().unwrap_or_default();
            let session = self
                .sessions
                .remove(id)
                .ok_or_else(|| "unknown, used or expired consent link".to_owned())?;
            self.session_bytes -= session.bytes();
            session
        } else if let Some(query) = rest.strip_prefix("/?") {
            self.dialog_session(query)?
        } else {
            return Err("not a consent link or an auth dialog URL".to_owned());
        };
        let mut params = form_urlencoded::Serializer::new(String::new());
        match error {
            Some(error) => {
                params.append_pair("error", error);
            }
            None => {
                let code = random_token("tl-code-");
                params.append_pair("code", &code);
                params.append_pair("scope", &session.scope);
                self.codes.insert(
                    code,
                    Code {
                        // `state` went back with the redirect; the code does not need it.
                        session: Session {
                            state: None,
                            ..session.clone()
                        },
                        used: false,
                        credential: None,
                    },
                );
            }
        }
        if let Some(state) = &session.state {
            params.append_pair("state", state);
        }
        let params = params.finish();
        if session.form_post {
            Ok((params, Some(session.redirect_uri)))
        } else {
            let separator = if session.redirect_uri.contains('?') {
                '&'
            } else {
                '?'
            };
            Ok((format!("{}{separator}{params}", session.redirect_uri), None))
        }
    }

    fn dialog_session(&self, query: &str) -> Result<Session, String> {
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| params.get(name).cloned();
        if get("response_type").as_deref() != Some("code") {
            return Err("response_type must be code".to_owned());
        }
        let client_id = get("client_id").ok_or("missing client_id")?;
        let redirect_uri = get("redirect_uri").ok_or("missing redirect_uri")?;
        if let Some(why) = self.check_redirect(&client_id, &redirect_uri) {
            return Err(why.to_owned());
        }
        if get("code_challenge").is_some()
            && get("code_challenge_method").as_deref() != Some("S256")
        {
            return Err("code_challenge_method must be S256".to_owned());
        }
        Ok(Session {
            client_id,
            redirect_uri,
            scope: get("scope").ok_or("missing scope")?,
            state: get("state"),
            code_challenge: get("code_challenge"),
            form_post: get("response_mode").as_deref() == Some("form_post"),
            provider_id: get("provider_id").unwrap_or_else(|| "mock".to_owned()),
            credential: None,
        })
    }

    /// The live connection behind a user access token.
    fn connection(&self, access_token: &str) -> Option<String> {
        let access = self.access.get(access_token)?;
        let credential = access.credential.clone()?;
        let live = access.expires_at > Instant::now()
            && self
                .credentials
                .get(&credential)
                .is_some_and(|c| !c.revoked);
        live.then_some(credential)
    }

    fn debug(&mut self, body: &[u8], create: bool) -> Answer {
        // The spec's DELETE has no body: it deletes the debug id created last. With the
        // POST's body (an opt-in of obauth's), the one of that token's credential.
        let credential_id = if !create && body.trim_ascii().is_empty() {
            match self.last_debug.clone() {
                Some(credential_id) => credential_id,
                None => {
                    return Answer::error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no debug id to delete",
                    );
                }
            }
        } else {
            let request: DebugIdRequest = match serde_json::from_slice(body) {
                Ok(request) => request,
                Err(error) => {
                    return invalid_request(&describe_json_error("debug request", &error));
                }
            };
            match self.connection(request.access_token.expose_secret()) {
                Some(credential_id) => credential_id,
                None => return unauthorized(),
            }
        };
        let Some(credential) = self.credentials.get_mut(&credential_id) else {
            return unauthorized();
        };
        let debug_id = if create {
            let id = format!("{}|{}", credential.provider_id, random_token(""));
            credential.debug_id = Some(id.clone());
            self.last_debug = Some(credential_id.clone());
            id
        } else {
            if self.last_debug.as_ref() == Some(&credential_id) {
                self.last_debug = None;
            }
            match credential.debug_id.take() {
                Some(id) => id,
                None => {
                    return Answer::error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no debug id for this credential",
                    );
                }
            }
        };
        Answer::json(
            StatusCode::OK,
            &serde_json::json!({
                "credentials_id": credential_id,
                "debug_id": debug_id,
                "provider_id": credential.provider_id,
            }),
        )
    }

    fn delete(&mut self, request: &Request) -> Answer {
        let token = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match token.and_then(|token| self.connection(token)) {
            Some(credential) => {
                self.revoke(&credential);
                Answer::empty(StatusCode::OK)
            }
            None => unauthorized(),
        }
    }

    fn providers(&self, query: &str) -> Answer {
        let mut client_id = None;
        let mut scopes = Vec::new();
        let mut countries = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "clientId" => client_id = Some(value.into_owned()),
                "scopes" => scopes.extend(
                    value
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "country" => countries.extend(
                    value
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        if client_id
            .as_ref()
            .is_some_and(|id| !self.clients.contains_key(id))
        {
            return Answer::json(StatusCode::OK, &serde_json::json!([]));
        }
        let wanted: Scopes<Scope> = scopes.iter().map(|s| Scope::parse(s)).collect();
        let matching: Vec<&Provider> = self
            .providers
            .iter()
            .filter(|p| wanted.iter().all(|scope| p.scopes.contains(scope)))
            .filter(|p| countries.is_empty() || countries.iter().any(|c| c == p.country.as_str()))
            .collect();
        match serde_json::to_value(matching) {
            Ok(value) => Answer::json(StatusCode::OK, &value),
            Err(_) => Answer::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "serialization",
            ),
        }
    }
}

/// Why a JSON body is refused, for `error_details.reason`: it names a field serde names
/// (unknown, repeated or missing), shown only if it is a plain name, and never shows a
/// value. serde's own messages quote values (`invalid value: string "…"`, `unknown variant
/// `…``), and a value may be a secret: a client secret, an `auth_inputs` password.
fn describe_json_error(what: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| shown_name(name))
    };
    if let Some(name) = named("unknown field `") {
        return format!("malformed {what}: unexpected field {name}");
    }
    if let Some(name) = named("duplicate field `") {
        return format!("malformed {what}: {name} appears more than once");
    }
    if let Some(name) = named("missing field `") {
        return format!("malformed {what}: missing {name}");
    }
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        serde_json::error::Category::Syntax => {
            format!("malformed {what}: not JSON (line {line}, column {column})")
        }
        serde_json::error::Category::Eof => format!("malformed {what}: the JSON ends early"),
        serde_json::error::Category::Data => format!(
            "malformed {what}: a value of the wrong type or not allowed (line {line}, column {column}; the value is not shown)"
        ),
        serde_json::error::Category::Io => format!("malformed {what}"),
    }
}

fn invalid_request(why: &str) -> Answer {
    Answer::error_with_reason(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid request",
        why,
    )
}

fn invalid_grant() -> Answer {
    Answer::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": "invalid_grant" }),
    )
}

fn unauthorized() -> Answer {
    Answer::error_with_reason(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized.",
        "Invalid token",
    )
}

/// A page that posts `body`'s fields to `action` (the redirect URI) as soon as it loads.
fn auto_post_form(action: &str, body: &str) -> String {
    let inputs: String = form_urlencoded::parse(body.as_bytes())
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                escape(&name),
                escape(&value)
            )
        })
        .collect();
    format!(
        "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
        escape(action)
    )
}

/// Whether `requested` is the registered redirect URI: the same text, or, for a loopback
/// URI registered without a port, the same with any port (RFC 8252 §7.3).
fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|origin| {
            let Some(path) = registered.strip_prefix(origin) else {
                return false;
            };
            let Some(rest) = requested
                .strip_prefix(origin)
                .and_then(|rest| rest.strip_prefix(':'))
            else {
                return false;
            };
            let (port, requested_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            path.starts_with('/')
                && requested_path == path
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|port| port != 0)
        })
}

/// A page of the mock's consent flow: plain HTML, nothing loaded from elsewhere.
fn consent_page_answer(status: StatusCode, title: &str, body: &str) -> Answer {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>obauth-mock: {title}</title></head>\n<body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    );
    Answer::new(status, "text/html; charset=utf-8", page.into_bytes()).header(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
