//! Secret-bearing values: client secrets, tokens, codes, PKCE verifiers, assertions.

secret_string! {
    /// A client secret issued at onboarding (TrueLayer Console, Worldline onboarding).
    ClientSecret;
    /// An OAuth 2.0 access token.
    AccessToken;
    /// An OAuth 2.0 refresh token; TrueLayer rotates it on every refresh.
    RefreshToken;
    /// A single-use authorization code returned to the redirect URI.
    AuthorizationCode;
    /// A PKCE `code_verifier` (RFC 7636 §4.1).
    CodeVerifier;
    /// A signed JWT client assertion (RFC 7523), a bearer credential while it is valid.
    ClientAssertion;
    /// An OpenID Connect ID token, which Keycloak may add to a token response.
    IdToken;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_serde_is_transparent() {
        let token = AccessToken::new("super-secret-value");
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert!(!format!("{:?}", Some(&token)).contains("super-secret"));
        assert_eq!(
            serde_json::to_string(&token).unwrap(),
            "\"super-secret-value\""
        );
        let back: AccessToken = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose_secret(), "abc");
        let escaped: AccessToken = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped.expose_secret(), "a\"b");
    }

    #[test]
    fn values_are_held_at_their_exact_length() {
        // Spare capacity: copied into an exact allocation (made while the original is still
        // alive, so the two addresses must differ), and the original wiped and freed.
        let mut spare = String::with_capacity(64);
        spare.push_str("token-value");
        let original = spare.as_ptr();
        let token = AccessToken::from(spare);
        assert_eq!(token.expose_secret(), "token-value");
        assert_ne!(token.expose_secret().as_ptr(), original);
        assert_eq!(token.clone().expose_secret(), "token-value");

        // No spare capacity: the buffer is kept as it is, without a copy.
        let mut exact = String::with_capacity(5);
        exact.push_str("exact");
        let (original, was_exact) = (exact.as_ptr(), exact.len() == exact.capacity());
        let token = RefreshToken::new(exact);
        assert_eq!(token.expose_secret(), "exact");
        if was_exact {
            assert_eq!(token.expose_secret().as_ptr(), original);
        }
        assert!(ClientSecret::new(String::new()).is_empty());
    }
}
