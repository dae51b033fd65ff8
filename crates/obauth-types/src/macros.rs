//! Declarative helpers for the crate's repetitive type shapes.

use std::fmt;

/// A value the server sent that this version of obauth does not know.
///
/// Kept verbatim so that a new scope, country or error code never fails a response;
/// it can only be made by parsing, so a known value is never hidden inside it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unrecognized(pub(crate) Box<str>);

impl Unrecognized {
    /// The value as the server sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Unrecognized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Defines an "open" enum: known wire values as variants plus `Other(Unrecognized)`,
/// with `as_str`, `From<&str>`, `FromStr`, `Display` and string serde.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident, case_insensitive { $($body:tt)+ }
    ) => {
        open_enum!(@define case_insensitive $(#[$meta])* $name { $($body)+ });
    };
    (
        $(#[$meta:meta])*
        $name:ident { $($body:tt)+ }
    ) => {
        open_enum!(@define exact $(#[$meta])* $name { $($body)+ });
    };
    (
        @define $cmp:ident
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of obauth does not know, kept as sent.
            Other($crate::macros::Unrecognized),
        }

        impl $name {
            /// Every value this version knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(other) => other.as_str(),
                }
            }

            /// Whether this is a value this version of obauth knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }

            /// Reads a wire value; unknown values become [`Self::Other`].
            pub fn parse(value: &str) -> Self {
                $( if open_enum!(@eq $cmp value, $wire) { return $name::$variant; } )+
                $name::Other($crate::macros::Unrecognized(value.into()))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ok(Self::parse(value))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$name, E> {
                        Ok($name::parse(value))
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
    (@eq case_insensitive $value:expr, $wire:literal) => { $value.eq_ignore_ascii_case($wire) };
    (@eq exact $value:expr, $wire:literal) => { $value == $wire };
}

/// Defines a secret-bearing string newtype: redacted `Debug`, no `Display`, explicit
/// `expose_secret()`, zeroized on drop, transparent serde.
macro_rules! secret_string {
    ($( $(#[$meta:meta])* $name:ident; )+) => {$(
        $(#[$meta])*
        ///
        /// Its `Debug` output is redacted and it has no `Display`: read the value with
        /// [`expose_secret`](Self::expose_secret), which makes every use visible in review.
        /// The memory is zeroed when the value is dropped.
        #[derive(Clone)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self($crate::macros::into_exact(value.into()))
            }

            /// The secret value. Never log it.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }

            /// Whether the value is empty (servers never issue empty secrets).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(Box::from(value))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // `str` is zeroed in one bulk write (`zeroize` wipes a `String` byte by
                // byte, ~150 ns per KB on every token read); a `Box<str>` has no spare
                // capacity that could hold a stale copy.
                zeroize::Zeroize::zeroize(&mut *self.0);
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }
    )+};
}

/// `value` as a `Box<str>` of exactly its length. When `value` has spare capacity, the
/// bytes are copied into an exact allocation and the original buffer, spare capacity
/// included, is zeroed before it is freed (shrinking in place could leave a copy behind).
pub(crate) fn into_exact(mut value: String) -> Box<str> {
    if value.len() == value.capacity() {
        return value.into_boxed_str();
    }
    let exact = Box::from(value.as_str());
    zeroize::Zeroize::zeroize(&mut value);
    exact
}
