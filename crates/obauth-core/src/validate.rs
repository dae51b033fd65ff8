//! Checks on caller input that every operation shares.

use obauth_types::Scopes;

use crate::error::InvalidInput;

/// A required text input must not be empty or blank.
pub(crate) fn required(what: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.trim().is_empty() {
        Err(InvalidInput::new(what, "must not be empty"))
    } else {
        Ok(())
    }
}

/// A scope list must be non-empty and each scope an RFC 6749 §3.3 `scope-token`
/// (printable ASCII except space, `"` and `\`), or the joined list would change meaning.
pub(crate) fn scopes<S: AsRef<str>>(scopes: &Scopes<S>) -> Result<(), InvalidInput> {
    if scopes.is_empty() {
        return Err(InvalidInput::new("scope", "at least one scope is required"));
    }
    for scope in scopes {
        let scope = scope.as_ref();
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(InvalidInput::new(
                "scope",
                "each scope must be printable ASCII without spaces, quotes or backslashes",
            ));
        }
    }
    Ok(())
}

/// A redirect URI must be an absolute URI (RFC 3986 `scheme ":" …`, custom app schemes
/// included) without spaces or control characters; the server compares it to its allow-list.
pub(crate) fn redirect_uri(value: &str) -> Result<(), InvalidInput> {
    required("redirect_uri", value)?;
    let scheme = value.split(':').next().unwrap_or_default();
    let scheme_ok = value.contains(':')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if scheme_ok && !value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "redirect_uri",
            "must be an absolute URI, exactly as allow-listed in the console",
        ))
    }
}

#[cfg(test)]
mod tests {
    use obauth_types::truelayer::Scope;

    use super::*;

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(
            scopes(&Scopes::from([
                Scope::Info,
                Scope::RecurringPaymentsSweeping
            ]))
            .is_ok()
        );
        assert!(scopes(&Scopes::<Scope>::new()).is_err());
        for bad in ["a b", "", "quo\"te", "back\\slash", "tab\t", "é"] {
            assert!(
                scopes(&Scopes::from([Scope::from(bad)])).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn redirect_uris_must_be_absolute() {
        assert!(redirect_uri("https://example.com/cb").is_ok());
        assert!(redirect_uri("com.example.app:/cb").is_ok());
        assert!(redirect_uri("https://example.com/a b").is_err());
        assert!(redirect_uri("1http://x").is_err());
        assert!(redirect_uri("/cb").is_err());
        assert!(redirect_uri(" ").is_err());
    }
}
