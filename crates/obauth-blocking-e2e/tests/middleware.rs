//! The bearer-token middleware of obauth-blocking against obauth-mock and a protected API
//! on loopback that accepts only the mock's current tokens.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use obauth_blocking::bearer::{BearerAgent, BearerMiddleware};
use obauth_blocking::core::bearer::{BearerPolicy, RetryOn};
use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_dialog::parse_callback;
use obauth_blocking::core::truelayer::auth_link::AuthLink;
use obauth_blocking::core::{BaseUrl, OsRandom, random};
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{AccessToken, ClientSecret, Scopes};
use obauth_blocking::{MemoryStore, TokenSource, TrueLayerClient, UserTokens};
use obauth_mock::{Endpoint, MockServer};
use obauth_test_peers::ProtectedResource;
use ureq::{Agent, SendBody};

fn truelayer(mock: &MockServer) -> TrueLayerClient {
    TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&mock.base_url()).unwrap()),
        obauth_mock::TRUELAYER_CLIENT_ID,
    )
    .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
    .build()
    .unwrap()
}

/// A mock and an API that takes only the mock's live tokens.
fn setup() -> (Arc<MockServer>, ProtectedResource) {
    let mock = Arc::new(MockServer::start());
    let checker = Arc::clone(&mock);
    let api = ProtectedResource::start(move |token| checker.access_token_valid(token));
    (mock, api)
}

fn payments(mock: &MockServer) -> TokenSource {
    TokenSource::truelayer(truelayer(mock), Scopes::from([Scope::Payments]))
}

/// An agent that hands 4xx answers back as answers.
fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn post(api: &ProtectedResource, path: &str, body: &'static str) -> http::Request<&'static str> {
    http::Request::post(api.url(path)).body(body).unwrap()
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn body(response: http::Response<ureq::Body>) -> String {
    response.into_body().read_to_string().unwrap()
}

#[test]
fn the_header_is_set_and_the_api_accepts_the_token() {
    let (mock, api) = setup();
    let source = payments(&mock);
    let client = BearerAgent::new(agent(), source.clone());
    let response = client.run(post(&api, "/pay", "amount=1")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response), "amount=1");
    let token = source.access_token().unwrap();
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, bearer(token.expose_secret()));
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

/// A token provider of the application's own: serves "stale" until it is told that one
/// was refused, then "good", and notes what it was told.
#[derive(Default)]
struct OwnSource {
    refused: std::sync::Mutex<Vec<String>>,
}

impl obauth_blocking::bearer::BearerSource for OwnSource {
    fn bearer_token(&self) -> Result<AccessToken, obauth_blocking::Error> {
        let refused = self.refused.lock().unwrap();
        Ok(AccessToken::new(if refused.is_empty() {
            "stale"
        } else {
            "good"
        }))
    }

    fn refused(&self, token: &AccessToken) {
        self.refused
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
    }
}

#[test]
fn a_source_of_your_own_is_told_the_exact_token_refused() {
    let api = ProtectedResource::start(|token| token == "good");
    let source = Arc::new(OwnSource::default());
    let http = BearerAgent::new(agent(), Arc::clone(&source));
    let response = http.run(post(&api, "/pay", "x")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(*source.refused.lock().unwrap(), ["stale"]);
    let sent: Vec<_> = api.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(sent, [bearer("stale"), bearer("good")]);
}

#[test]
fn a_managers_header_is_its_token_marked_sensitive_and_follows_invalidation() {
    let (mock, _api) = setup();
    let source = payments(&mock);
    let header = source.authorization_header().unwrap();
    let token = source.access_token().unwrap();
    assert_eq!(
        bearer(token.expose_secret()).unwrap(),
        header.to_str().unwrap()
    );
    assert!(header.is_sensitive());
    assert!(!format!("{header:?}").contains(token.expose_secret()));
    source.invalidate(&token);
    let fresh = source.authorization_header().unwrap();
    assert_ne!(fresh, header);
    let token = source.access_token().unwrap();
    assert_eq!(
        bearer(token.expose_secret()).unwrap(),
        fresh.to_str().unwrap()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn a_token_that_is_no_header_value_is_an_error_never_a_request_without_it() {
    let (mock, api) = setup();
    // A server that issues a token with a control character in it.
    mock.inject(
        Some(Endpoint::TrueLayerToken),
        1,
        obauth_mock::Fault::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"access_token":"bad\u0001token","token_type":"Bearer","expires_in":3600}"#
                .to_vec(),
        },
    );
    let source = payments(&mock);
    match source.authorization_header() {
        Err(obauth_blocking::Error::InvalidInput(_)) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // Cached, and still refused as a header, on the fast path too; the middleware sends
    // nothing.
    assert!(source.access_token().is_ok());
    assert!(source.authorization_header().is_err());
    assert!(
        BearerAgent::new(agent(), source)
            .run(post(&api, "/pay", "x"))
            .is_err()
    );
    assert_eq!(api.requests(), 0);
}

#[test]
fn a_revoked_token_is_replaced_once_and_the_request_sent_again() {
    let (mock, api) = setup();
    let source = payments(&mock);
    let client = BearerAgent::new(agent(), source.clone());
    assert_eq!(client.run(post(&api, "/pay", "one")).unwrap().status(), 200);
    let first = source.access_token().unwrap();
    assert!(mock.revoke_access_token(first.expose_secret()));

    let response = client.run(post(&api, "/pay", "two")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response), "two");
    let second = source.access_token().unwrap();
    assert_ne!(second.expose_secret(), first.expose_secret());
    let seen = api.seen();
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(seen[1].authorization, bearer(first.expose_secret()));
    assert_eq!(seen[2].authorization, bearer(second.expose_secret()));
    assert_eq!(seen[2].body, b"two");
    // One token request for the first token, exactly one more for the refused one.
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn a_users_revoked_token_is_refreshed_with_the_refresh_token_and_retried() {
    let (mock, api) = setup();
    let client = truelayer(&mock);
    let pkce = Pkce::generate(&mut OsRandom).unwrap();
    let state = random::new_state(&mut OsRandom).unwrap();
    let scopes = Scopes::from([Scope::Info, Scope::Accounts, Scope::OfflineAccess]);
    let link = client
        .create_auth_link(
            AuthLink::new(
                "ob-transferwise",
                scopes,
                obauth_mock::TRUELAYER_REDIRECT_URI,
                "consent-1",
            )
            .state(&state)
            .pkce(&pkce),
        )
        .unwrap();
    let callback = parse_callback(&mock.approve(&link).unwrap(), &state).unwrap();
    let requested_at = SystemTime::now();
    let tokens = client
        .exchange_code(
            callback.code,
            obauth_mock::TRUELAYER_REDIRECT_URI,
            Some(pkce.verifier().clone()),
        )
        .unwrap();
    let user = UserTokens::from_token_response(
        &client,
        "alice",
        &tokens,
        requested_at,
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    assert!(mock.revoke_access_token(tokens.access_token.expose_secret()));
    mock.reset_counts();

    let response = BearerAgent::new(agent(), user.clone())
        .run(post(&api, "/accounts", ""))
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.successful_refreshes(), 1);
    let statuses: Vec<u16> = api.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [401, 200]);
}

#[test]
fn never_more_than_one_retry_and_never_on_403() {
    let mock = Arc::new(MockServer::start());
    // An API that refuses every token.
    let api = ProtectedResource::start(|_| false);
    let client = BearerAgent::new(agent(), payments(&mock));
    let response = client.run(post(&api, "/pay", "x")).unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(api.requests(), 2);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);

    let (mock, api) = setup();
    let client = BearerAgent::new(agent(), payments(&mock));
    let response = client.run(post(&api, "/forbidden", "x")).unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(api.requests(), 1);
    // The token was not invalidated: the next request reuses it.
    client.run(post(&api, "/pay", "y")).unwrap();
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

#[test]
fn a_401_without_invalid_token_is_retried_only_when_configured() {
    let mock = Arc::new(MockServer::start());
    // The resource answers a request without a token with a bare challenge; make it see
    // none by sending our own (non-bearer) credentials and replacing them.
    let api = ProtectedResource::start(|_| false);
    let no_challenge = || {
        http::Request::post(api.url("/pay"))
            .header("authorization", "Basic c2VjcmV0")
            .body("x")
            .unwrap()
    };
    // Left alone: our own header is sent and no token is fetched.
    let plain = BearerAgent::new(agent(), payments(&mock));
    assert_eq!(plain.run(no_challenge()).unwrap().status(), 401);
    assert_eq!(
        api.seen()[0].authorization.as_deref(),
        Some("Basic c2VjcmV0")
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
    // Replaced, and any 401 retried once.
    let any = plain.clone().with_policy(BearerPolicy {
        retry_on: RetryOn::Any401,
        replace_authorization: true,
    });
    assert_eq!(any.run(no_challenge()).unwrap().status(), 401);
    assert_eq!(api.requests(), 3);
    assert!(api.seen()[1..].iter().all(|seen| {
        seen.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
    }));
}

#[test]
fn the_middleware_sets_the_header_and_never_replays_a_stream() {
    let (mock, api) = setup();
    let source = payments(&mock);
    let agent: Agent = Agent::config_builder()
        .http_status_as_error(false)
        .middleware(BearerMiddleware::new(source.clone()))
        .build()
        .into();
    let stream = |text: &'static str| SendBody::from_owned_reader(Cursor::new(text.as_bytes()));
    let ok = agent.post(api.url("/pay")).send(stream("first")).unwrap();
    assert_eq!(ok.status(), 200);
    let first = source.access_token().unwrap();
    assert!(mock.revoke_access_token(first.expose_secret()));

    // A stream cannot be sent twice: the 401 comes back as it is, one request.
    let refused = agent.post(api.url("/pay")).send(stream("second")).unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(api.requests(), 2);
    // The refused token was invalidated: the next request has a fresh one.
    let again = agent.post(api.url("/pay")).send(stream("third")).unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(body(again), "third");
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}

#[test]
fn a_thousand_cold_callers_through_the_agent_make_one_token_request() {
    let (mock, api) = setup();
    let client = BearerAgent::new(agent(), payments(&mock));
    let callers = 1000;
    let start = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (client, start, url) = (client.clone(), Arc::clone(&start), api.url("/pay"));
            std::thread::spawn(move || {
                start.wait();
                client
                    .run(http::Request::post(url).body("x").unwrap())
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().unwrap(), 200);
    }
    assert_eq!(api.requests(), callers);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);
}

#[test]
fn an_agent_with_statuses_as_errors_still_gets_its_retry_and_its_errors() {
    // ureq's default: a 4xx is an error. The agent wrapper still reads the 401's challenge
    // (statuses as answers for its own requests) and hands back what the agent would.
    let (mock, api) = setup();
    let source = payments(&mock);
    let client = BearerAgent::new(Agent::new_with_defaults(), source.clone());
    assert!(client.agent().config().http_status_as_error());
    assert_eq!(client.run(post(&api, "/pay", "one")).unwrap().status(), 200);
    assert!(mock.revoke_access_token(source.access_token().unwrap().expose_secret()));
    assert_eq!(client.run(post(&api, "/pay", "two")).unwrap().status(), 200);
    let statuses: Vec<u16> = api.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    match client.run(post(&api, "/forbidden", "three")) {
        Err(ureq::Error::StatusCode(403)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_middleware_on_a_default_agent_counts_a_401_error_only_when_told_to() {
    // ureq's default agent turns a 401 into `Error::StatusCode(401)`, without the
    // challenge: a refusal under `RetryOn::Any401`, not under the default policy.
    let (mock, api) = setup();
    let source = payments(&mock);
    let with = |policy: BearerPolicy| -> Agent {
        Agent::config_builder()
            .middleware(BearerMiddleware::new(source.clone()).with_policy(policy))
            .build()
            .into()
    };
    let default = with(BearerPolicy::default());
    let first = source.access_token().unwrap();
    assert!(mock.revoke_access_token(first.expose_secret()));
    assert!(matches!(
        default.post(api.url("/pay")).send("x"),
        Err(ureq::Error::StatusCode(401))
    ));
    // Not counted: the same (revoked) token is still served.
    assert_eq!(
        source.access_token().unwrap().expose_secret(),
        first.expose_secret()
    );
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 1);

    let any = with(BearerPolicy {
        retry_on: RetryOn::Any401,
        ..BearerPolicy::default()
    });
    assert!(matches!(
        any.post(api.url("/pay")).send("x"),
        Err(ureq::Error::StatusCode(401))
    ));
    // Counted: the next request carries a fresh token and is let in.
    assert_eq!(any.post(api.url("/pay")).send("y").unwrap().status(), 200);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 2);
}
