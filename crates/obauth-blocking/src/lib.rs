//! The blocking (ureq) binding of obauth, with the same API shape as `obauth-async`.
//!
//! This crate is a placeholder while the foundation lands: it will hold `TrueLayerClient`,
//! `WorldlineClient` and the token managers as thin loops around [`obauth_core`], sending
//! with ureq. It never depends on tokio or any async runtime.
//!
//! Until then, drive [`obauth_core`] with any HTTP client: see its crate documentation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use obauth_core as core;
pub use obauth_types as types;
