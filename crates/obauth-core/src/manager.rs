//! The sans-IO half of the token managers: what a cached token is, what identifies a cache,
//! and what a refresh answer means. The bindings add only the locking and the waiting.

use std::time::Instant;

use obauth_types::{AccessToken, ErrorCode, RefreshToken};

use crate::error::{Error, ReauthenticationRequired};
use crate::expiry::{ExpiryPolicy, Freshness, TokenSchedule};

/// An access token and when it must be refreshed.
#[derive(Clone, Debug)]
pub struct CachedToken {
    access_token: AccessToken,
    schedule: TokenSchedule,
}

impl CachedToken {
    /// A token obtained from a request sent at `requested_at`, valid for `expires_in` seconds.
    pub fn new(
        access_token: AccessToken,
        expires_in: u64,
        requested_at: Instant,
        policy: &ExpiryPolicy,
    ) -> Self {
        Self {
            access_token,
            schedule: policy.schedule_secs(requested_at, expires_in),
        }
    }

    /// The token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// Where it stands at `now`.
    pub fn freshness(&self, now: Instant) -> Freshness {
        self.schedule.freshness(now)
    }

    /// Its schedule.
    pub fn schedule(&self) -> &TokenSchedule {
        &self.schedule
    }
}

/// What identifies a client-credentials token: two sources share a cached token only if
/// they agree on all four parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The scopes, space-delimited, in the order asked.
    pub scopes: String,
    /// `client_secret_post`, `client_secret_json` or `private_key_jwt`.
    pub auth_method: &'static str,
}

/// The refresh token to keep after a refresh: the rotated one if the server sent one,
/// else the one used (servers that do not rotate keep it valid).
pub fn next_refresh_token(
    used: &RefreshToken,
    issued: Option<RefreshToken>,
) -> (RefreshToken, bool) {
    match issued {
        Some(issued) if !issued.is_empty() => {
            let rotated = issued.expose_secret() != used.expose_secret();
            (issued, rotated)
        }
        _ => (used.clone(), false),
    }
}

/// Turns a refused refresh (`invalid_grant`) into [`Error::ReauthenticationRequired`];
/// other errors pass through.
pub fn refresh_error(error: Error, refresh_token: &RefreshToken) -> Error {
    match error {
        Error::Api(api) if api.code == ErrorCode::InvalidGrant => Error::ReauthenticationRequired(
            ReauthenticationRequired::new(refresh_token.clone(), api),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::error::ApiError;

    #[test]
    fn rotation_and_reauthentication() {
        let used = RefreshToken::new("old");
        let (kept, rotated) = next_refresh_token(&used, Some(RefreshToken::new("new")));
        assert_eq!((kept.expose_secret(), rotated), ("new", true));
        let (kept, rotated) = next_refresh_token(&used, None);
        assert_eq!((kept.expose_secret(), rotated), ("old", false));
        let (kept, rotated) = next_refresh_token(&used, Some(RefreshToken::new("")));
        assert_eq!((kept.expose_secret(), rotated), ("old", false));

        let api = |code| {
            Error::Api(Box::new(ApiError {
                status: StatusCode::BAD_REQUEST,
                code,
                description: None,
                details: None,
                trace_id: None,
                retry_after: None,
            }))
        };
        match refresh_error(api(ErrorCode::InvalidGrant), &used) {
            Error::ReauthenticationRequired(reauth) => {
                assert_eq!(reauth.refresh_token().expose_secret(), "old");
                assert!(!reauth.to_string().contains("old"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refresh_error(api(ErrorCode::InvalidClient), &used),
            Error::Api(_)
        ));
    }

    #[test]
    fn cached_token_freshness() {
        let start = Instant::now();
        let token = CachedToken::new(AccessToken::new("a"), 300, start, &ExpiryPolicy::default());
        assert_eq!(token.freshness(start), Freshness::Fresh);
        assert_eq!(
            token.freshness(start + Duration::from_secs(280)),
            Freshness::Expired
        );
    }
}
