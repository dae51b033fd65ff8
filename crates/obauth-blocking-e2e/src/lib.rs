//! End-to-end tests of `obauth-blocking` against `obauth-mock`, in `tests/`.
//!
//! They live in their own package so that `obauth-blocking`'s dependency tree, dev
//! dependencies included, holds no tokio: the mock server runs on tokio, the blocking
//! binding never does.
#![forbid(unsafe_code)]
