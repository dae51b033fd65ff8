//! The async (tokio + reqwest) binding of obauth.
//!
//! This crate is a placeholder while the foundation lands: it will hold `TrueLayerClient`,
//! `WorldlineClient` and the token managers, each a thin loop that hands
//! [`obauth_core`]'s `http::Request`s to reqwest and its responses back to the core.
//! It will hold no request or response logic of its own.
//!
//! Until then, drive [`obauth_core`] with any HTTP client: see its crate documentation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use obauth_core as core;
pub use obauth_types as types;
