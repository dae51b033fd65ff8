//! The worker that the process tests start: see `src/bin/token-worker.rs` and
//! `tests/processes.rs`. Nothing to use from here.
#![forbid(unsafe_code)]
