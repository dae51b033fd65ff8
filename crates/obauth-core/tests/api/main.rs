//! Integration tests of obauth-core: golden wire formats, response parsing, the
//! Worldline assertion, the auth-dialog redirect, and parser robustness.

#![allow(clippy::unwrap_used)]

mod auth_dialog;
mod properties;
mod responses;
mod support;
mod truelayer_requests;
mod worldline;
