//! Refresh-token reuse detection (RFC 9700 §4.14.2): a rotated refresh token presented
//! again revokes its grant; the switch that turns it off; the refresh counters.

#![allow(clippy::unwrap_used)]

mod support;

use obauth_mock::{Endpoint, MockServer, TRUELAYER_CLIENT_ID, TRUELAYER_REDIRECT_URI};
use serde_json::json;
use support::{
    assert_invalid_grant, code_of, connect, create_debug_id, delete_credential, exchange,
    post_json, refresh, token, tokens,
};

/// Reauthenticates the connection a refresh token belongs to: a new grant.
fn reauthenticate(mock: &MockServer, refresh_token: &str) -> (String, String) {
    let link = post_json(
        mock,
        "/v1/reauthuri",
        &json!({
            "response_type": "code",
            "refresh_token": refresh_token,
            "redirect_uri": TRUELAYER_REDIRECT_URI,
        }),
    );
    assert_eq!(link.status, 200, "{}", link.body);
    let link = link.json()["result"].as_str().unwrap().to_owned();
    let back = mock.approve(&link).unwrap();
    tokens(&exchange(mock, &code_of(&back)))
}

fn counts(mock: &MockServer) -> [usize; 4] {
    [
        mock.successful_refreshes(),
        mock.refused_refreshes(),
        mock.refresh_token_reuses(),
        mock.revoked_grants(),
    ]
}

#[test]
fn a_reused_refresh_token_revokes_the_whole_grant() {
    let mock = MockServer::start();
    let (first_access, first_refresh) = connect(&mock);
    let (second_access, second_refresh) = tokens(&refresh(&mock, &first_refresh));
    assert_ne!(second_refresh, first_refresh);
    // Another connection, another grant.
    let (other_access, other_refresh) = connect(&mock);
    assert_eq!(create_debug_id(&mock, &second_access).status, 200);
    assert_eq!(counts(&mock), [1, 0, 0, 0]);

    // The spent token comes back: refused, and the grant is revoked.
    assert_invalid_grant(&refresh(&mock, &first_refresh));
    assert_eq!(counts(&mock), [1, 1, 1, 1]);

    // The grant's current refresh token no longer refreshes...
    assert_invalid_grant(&refresh(&mock, &second_refresh));
    // ...and its access tokens, old and new, are refused where access tokens are checked.
    for access in [&first_access, &second_access] {
        assert_eq!(create_debug_id(&mock, access).status, 401);
        assert_eq!(delete_credential(&mock, access).status, 401);
    }
    assert_eq!(counts(&mock), [1, 2, 1, 1]);

    // The spent token again: another detection, the same grant (revoked once).
    assert_invalid_grant(&refresh(&mock, &first_refresh));
    assert_eq!(counts(&mock), [1, 3, 2, 1]);

    // The other grant is untouched.
    assert_eq!(create_debug_id(&mock, &other_access).status, 200);
    let (other_access, _) = tokens(&refresh(&mock, &other_refresh));
    assert_eq!(create_debug_id(&mock, &other_access).status, 200);
    assert_eq!(counts(&mock), [2, 3, 2, 1]);
}

#[test]
fn the_connection_survives_and_reauthentication_starts_a_fresh_grant() {
    let mock = MockServer::start();
    let (_, first_refresh) = connect(&mock);
    let (_, current_refresh) = tokens(&refresh(&mock, &first_refresh));
    assert_invalid_grant(&refresh(&mock, &first_refresh));
    assert_invalid_grant(&refresh(&mock, &current_refresh));

    // The user reauthenticates the connection: a new grant that refreshes.
    let (access, renewed_refresh) = reauthenticate(&mock, &current_refresh);
    assert_eq!(create_debug_id(&mock, &access).status, 200);
    let (access, next_refresh) = tokens(&refresh(&mock, &renewed_refresh));
    assert_eq!(create_debug_id(&mock, &access).status, 200);

    // A grant is not the connection: reuse in the new grant revokes it, not the old one
    // again (already revoked), and not a sibling grant of the same connection.
    let (sibling_access, sibling_refresh) = reauthenticate(&mock, &next_refresh);
    assert_invalid_grant(&refresh(&mock, &renewed_refresh));
    assert_eq!(mock.revoked_grants(), 2);
    assert_invalid_grant(&refresh(&mock, &next_refresh));
    assert_eq!(create_debug_id(&mock, &access).status, 401);
    assert_eq!(create_debug_id(&mock, &sibling_access).status, 200);
    let (sibling_access, _) = tokens(&refresh(&mock, &sibling_refresh));
    assert_eq!(create_debug_id(&mock, &sibling_access).status, 200);
}

#[test]
fn a_rotation_chain_refreshes_many_times() {
    let mock = MockServer::start();
    let (mut access, mut current) = connect(&mock);
    let mut seen = std::collections::HashSet::new();
    seen.insert(current.clone());
    for _ in 0..40 {
        let (next_access, next) = tokens(&refresh(&mock, &current));
        assert!(seen.insert(next.clone()), "a refresh token came back");
        assert_ne!(next_access, access);
        (access, current) = (next_access, next);
    }
    assert_eq!(create_debug_id(&mock, &access).status, 200);
    assert_eq!(counts(&mock), [40, 0, 0, 0]);
    // One exchange and 40 refreshes reached the token endpoint.
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 41);
    // The chain still ends in a live token: it refreshes once more.
    tokens(&refresh(&mock, &current));
    assert_eq!(mock.successful_refreshes(), 41);
}

#[test]
fn with_detection_off_a_spent_token_is_refused_and_nothing_else() {
    let mock = MockServer::start();
    mock.set_refresh_token_reuse_detection(false);
    let (_, first_refresh) = connect(&mock);
    let (second_access, second_refresh) = tokens(&refresh(&mock, &first_refresh));

    assert_invalid_grant(&refresh(&mock, &first_refresh));
    assert_eq!(counts(&mock), [1, 1, 1, 0]);
    // The grant lives on: its access token is accepted, its current token refreshes.
    assert_eq!(create_debug_id(&mock, &second_access).status, 200);
    let (third_access, third_refresh) = tokens(&refresh(&mock, &second_refresh));
    assert_eq!(create_debug_id(&mock, &third_access).status, 200);
    assert_eq!(counts(&mock), [2, 1, 1, 0]);

    // Turned back on, the next reuse revokes the grant.
    mock.set_refresh_token_reuse_detection(true);
    assert_invalid_grant(&refresh(&mock, &second_refresh));
    assert_invalid_grant(&refresh(&mock, &third_refresh));
    assert_eq!(create_debug_id(&mock, &third_access).status, 401);
    assert_eq!(counts(&mock), [2, 3, 2, 1]);
}

#[test]
fn the_counters_count_what_they_say_and_reset() {
    let mock = MockServer::start();
    mock.register_truelayer_client("other-client", "other-secret", &[TRUELAYER_REDIRECT_URI]);
    let (_, current) = connect(&mock);

    // An unknown refresh token: refused, not a reuse.
    assert_invalid_grant(&refresh(&mock, "tl-rt-never-issued"));
    assert_eq!(counts(&mock), [0, 1, 0, 0]);
    // A wrong secret: unauthorized_client, not counted as a refresh at all.
    let wrong_secret = token(
        &mock,
        &json!({
            "grant_type": "refresh_token",
            "client_id": TRUELAYER_CLIENT_ID,
            "client_secret": "not-the-secret",
            "refresh_token": current,
        }),
    );
    assert_eq!(wrong_secret.status, 401, "{}", wrong_secret.body);
    assert_eq!(counts(&mock), [0, 1, 0, 0]);
    // Another client presenting it: refused, the grant not revoked.
    let other_client = token(
        &mock,
        &json!({
            "grant_type": "refresh_token",
            "client_id": "other-client",
            "client_secret": "other-secret",
            "refresh_token": current,
        }),
    );
    assert_invalid_grant(&other_client);
    assert_eq!(counts(&mock), [0, 2, 0, 0]);
    let (_, next) = tokens(&refresh(&mock, &current));
    assert_eq!(counts(&mock), [1, 2, 0, 0]);
    assert_ne!(next, current);

    mock.reset_counts();
    assert_eq!(counts(&mock), [0, 0, 0, 0]);
    assert_eq!(mock.requests(Endpoint::TrueLayerToken), 0);
    // Resetting the counts forgets nothing else: the spent token is still spent.
    assert_invalid_grant(&refresh(&mock, &current));
    assert_eq!(counts(&mock), [0, 1, 1, 1]);
    assert_invalid_grant(&refresh(&mock, &next));
}
