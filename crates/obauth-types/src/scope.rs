//! Space-delimited scope lists (RFC 6749 §3.3).

use std::fmt;
use std::str::FromStr;

/// An ordered list of scopes, on the wire as one space-delimited string.
///
/// `S` is the API's scope type ([`crate::truelayer::Scope`], [`crate::worldline::Scope`]).
/// Order is kept as given; parsing splits on any run of ASCII whitespace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scopes<S>(Vec<S>);

impl<S> Scopes<S> {
    /// An empty list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The scopes, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, S> {
        self.0.iter()
    }

    /// How many scopes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a scope.
    pub fn push(&mut self, scope: S) {
        self.0.push(scope);
    }
}

impl<S: PartialEq> Scopes<S> {
    /// Whether the list holds `scope`.
    pub fn contains(&self, scope: &S) -> bool {
        self.0.contains(scope)
    }
}

impl<S: AsRef<str>> Scopes<S> {
    /// Calls `f` with each scope's wire form and the separators, without allocating.
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                out.write_char(' ')?;
            }
            out.write_str(scope.as_ref())?;
        }
        Ok(())
    }

    /// The scopes joined by single spaces, as sent on the wire.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

impl<S: for<'a> From<&'a str>> Scopes<S> {
    /// Splits a space-delimited string. Never fails: unknown scopes are kept.
    pub fn parse(value: &str) -> Self {
        Self(value.split_ascii_whitespace().map(S::from).collect())
    }
}

impl<S> Default for Scopes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: AsRef<str>> fmt::Debug for Scopes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scopes(\"")?;
        self.write_to(f)?;
        f.write_str("\")")
    }
}

impl<S: AsRef<str>> fmt::Display for Scopes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl<S: for<'a> From<&'a str>> FromStr for Scopes<S> {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(value))
    }
}

impl<S> From<Vec<S>> for Scopes<S> {
    fn from(scopes: Vec<S>) -> Self {
        Self(scopes)
    }
}

impl<S, const N: usize> From<[S; N]> for Scopes<S> {
    fn from(scopes: [S; N]) -> Self {
        Self(scopes.into())
    }
}

impl<S> FromIterator<S> for Scopes<S> {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a, S> IntoIterator for &'a Scopes<S> {
    type Item = &'a S;
    type IntoIter = std::slice::Iter<'a, S>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<S: AsRef<str>> serde::Serialize for Scopes<S> {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, S: for<'a> From<&'a str>> serde::Deserialize<'de> for Scopes<S> {
    /// Reads the RFC 6749 space-delimited string, and also a JSON array of strings,
    /// which some servers (and TrueLayer's providers list) send instead.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<S>(std::marker::PhantomData<S>);
        impl<'de, S: for<'a> From<&'a str>> serde::de::Visitor<'de> for Visitor<S> {
            type Value = Scopes<S>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a space-delimited string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Scopes::parse(value))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    out.extend(item.split_ascii_whitespace().map(S::from));
                }
                Ok(Scopes(out))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use crate::truelayer::Scope;

    use super::*;

    #[test]
    fn round_trips_space_delimited_and_reads_arrays() {
        let scopes: Scopes<Scope> = serde_json::from_str("\"info  accounts\\tnew_scope\"").unwrap();
        assert_eq!(scopes.len(), 3);
        assert_eq!(scopes.iter().next(), Some(&Scope::Info));
        assert!(!scopes.iter().nth(2).unwrap().is_known());
        assert_eq!(
            serde_json::to_string(&scopes).unwrap(),
            "\"info accounts new_scope\""
        );

        let from_array: Scopes<Scope> = serde_json::from_str(r#"["balance","cards"]"#).unwrap();
        assert_eq!(from_array, Scopes::from([Scope::Balance, Scope::Cards]));
        assert!(serde_json::from_str::<Scopes<Scope>>("12").is_err());
    }
}
