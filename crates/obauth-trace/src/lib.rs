//! The `tracing` spans and events of obauth's bindings, written once for `obauth-async`
//! and `obauth-blocking` (their feature `tracing`, on by default, turns on this crate's).
//! For the bindings, not for applications: an application reads what is emitted with any
//! `tracing` subscriber, and this page is the reference of its names and fields. Not a
//! subscriber, not an exporter (see the guide for OpenTelemetry), and `obauth-types` and
//! `obauth-core` stay free of `tracing`.
//!
//! Nothing here ever records a secret: the fields are names, numbers, statuses and the
//! server's own request id, and error messages are obauth's (scrubbed of every secret the
//! request carried).
//!
//! # Calls
//! The span `obauth.call` (level INFO) has the fields `operation` (e.g.
//! `truelayer.token.client_credentials`), `server` (`truelayer` or `worldline`), and, as
//! they become known, `attempts`, `status` (the last HTTP status), `server_trace_id`,
//! `elapsed_ms` and `outcome` (`ok` or the error's kind). Each attempt is a DEBUG event;
//! a retry's pause is a DEBUG event; the end of the call is a DEBUG event with the error's
//! message when it failed.
//!
//! # Token managers
//! A fresh token served from memory is a TRACE event (`decision = "hit"`); the other
//! decisions (`serve`, `wait`, `fetch`, `refresh early`) and each step of a fetch (store
//! read and write, lease asked, waited on and released, the token request's grant type)
//! are DEBUG events with the field `store_key`; what a fetch noticed (a store outage, once,
//! and its end) is a WARN or INFO event.
//!
//! Without the feature `tracing` every function here is empty and compiles away.

use std::time::{Duration, Instant};

use obauth_core::{Error, Operation};

/// The span of one call (a disabled span without the feature).
#[cfg(feature = "tracing")]
pub fn call_span<O: Operation>(op: &O) -> CallSpan {
    let name = op.name();
    tracing::info_span!(
        "obauth.call",
        operation = name,
        server = name.split('.').next().unwrap_or_default(),
        attempts = tracing::field::Empty,
        status = tracing::field::Empty,
        server_trace_id = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// The span of one call (a disabled span without the feature).
#[cfg(not(feature = "tracing"))]
pub fn call_span<O: Operation>(_: &O) -> CallSpan {
    CallSpan
}

/// Stands in for `tracing::Span` without the feature.
#[cfg(not(feature = "tracing"))]
#[derive(Clone, Debug)]
pub struct CallSpan;

#[cfg(not(feature = "tracing"))]
impl CallSpan {
    /// Does nothing, like entering a disabled span.
    pub fn enter(&self) -> Entered {
        Entered
    }
}

/// Stands in for `tracing`'s entered-span guard without the feature.
#[cfg(not(feature = "tracing"))]
#[derive(Debug)]
pub struct Entered;

/// The span type of [`call_span`], with or without the feature.
#[cfg(feature = "tracing")]
pub type CallSpan = tracing::Span;

/// `future` inside `span`: each of its polls enters the span (the future as it is, without
/// the feature).
#[cfg(feature = "tracing")]
pub fn instrument<F: std::future::Future>(
    future: F,
    span: &CallSpan,
) -> impl std::future::Future<Output = F::Output> {
    use tracing::Instrument as _;
    future.instrument(span.clone())
}

/// `future` inside `span`: each of its polls enters the span (the future as it is, without
/// the feature).
#[cfg(not(feature = "tracing"))]
pub fn instrument<F: std::future::Future>(
    future: F,
    _: &CallSpan,
) -> impl std::future::Future<Output = F::Output> {
    future
}

#[cfg(feature = "tracing")]
fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the last attempt saw, for the span's fields at the end (nothing is read when no
/// one listens).
#[derive(Default)]
pub struct Seen {
    #[cfg(feature = "tracing")]
    status: Option<u16>,
    #[cfg(feature = "tracing")]
    trace_id: Option<String>,
}

/// Records an attempt's outcome as an event, and notes its status and the server's
/// request id for the span.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn attempt<B>(
    span: &CallSpan,
    seen: &mut Seen,
    attempt: u32,
    outcome: &Result<http::Response<B>, Error>,
    started: Instant,
) {
    #[cfg(feature = "tracing")]
    {
        // Nobody listens (no subscriber, or one below INFO): not even the trace id is read.
        if span.is_disabled() {
            return;
        }
        match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                seen.status = Some(status);
                seen.trace_id = obauth_core::server_trace_id(response.headers());
                tracing::debug!(
                    attempt,
                    status,
                    server_trace_id = seen.trace_id.as_deref(),
                    elapsed_ms = millis(started),
                    "obauth: attempt answered"
                );
            }
            Err(error) => {
                seen.status = None;
                tracing::debug!(
                    attempt,
                    error_kind = error.kind_name(),
                    elapsed_ms = millis(started),
                    "obauth: attempt failed: {error}"
                );
            }
        }
    }
}

/// Records a retry's pause.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn retry(pause: Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
        "obauth: retrying"
    );
}

/// Records the end of a call.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn done<T>(
    span: &CallSpan,
    seen: &Seen,
    attempts: u32,
    result: &Result<T, Error>,
    started: Instant,
) {
    #[cfg(feature = "tracing")]
    {
        if span.is_disabled() {
            return;
        }
        let elapsed_ms = millis(started);
        span.record("attempts", attempts);
        if let Some(status) = seen.status {
            span.record("status", status);
        }
        if let Some(trace_id) = &seen.trace_id {
            span.record("server_trace_id", trace_id.as_str());
        }
        span.record("elapsed_ms", elapsed_ms);
        match result {
            Ok(_) => {
                span.record("outcome", "ok");
                tracing::debug!(elapsed_ms, "obauth: call succeeded");
            }
            Err(error) => {
                span.record("outcome", error.kind_name());
                tracing::debug!(
                    elapsed_ms,
                    error_kind = error.kind_name(),
                    "obauth: call failed: {error}"
                );
            }
        }
    }
}

/// A fresh token served from memory: the hot path, so a TRACE event, which costs a load of
/// the global level filter when no subscriber asks for TRACE.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[inline]
pub fn hit(key: &obauth_core::store::StoreKey) {
    #[cfg(feature = "tracing")]
    tracing::trace!(store_key = %key, decision = "hit", "obauth: token manager: hit");
}

/// A token manager's decision on a call that found no fresh token in memory: `serve`
/// (another caller just refreshed it), `wait` (on another caller's fetch), `fetch` (this
/// caller leads one) or `refresh early` (a valid token is served while one fetch replaces
/// it). A fresh token served from memory is [`hit`].
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn decision(key: &obauth_core::store::StoreKey, decision: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(store_key = %key, decision, "obauth: token manager: {decision}");
}

/// What a token manager's fetch does next: the store reads and writes, the lease, the
/// token request (its grant type, never the token), the wait on another holder.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn action(key: &obauth_core::store::StoreKey, action: &obauth_core::manager::Action) {
    #[cfg(feature = "tracing")]
    {
        use obauth_core::manager::{Action, Grant};
        match action {
            Action::Load => tracing::debug!(store_key = %key, "obauth: token manager: store read"),
            Action::LoadPrevious(previous) => tracing::debug!(
                store_key = %key,
                previous_key = %previous,
                "obauth: token manager: store read under the key's previous name"
            ),
            Action::Lease { ttl, .. } => tracing::debug!(
                store_key = %key,
                ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                "obauth: token manager: lease asked"
            ),
            Action::Sleep(pause) => tracing::debug!(
                store_key = %key,
                pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                "obauth: token manager: lease held elsewhere, waiting"
            ),
            Action::Send { grant, .. } => tracing::debug!(
                store_key = %key,
                grant = match grant {
                    Grant::ClientCredentials => "client_credentials",
                    Grant::Refresh(_) => "refresh_token",
                },
                "obauth: token manager: token request"
            ),
            Action::Persist { expect, .. } => tracing::debug!(
                store_key = %key,
                expect = ?expect,
                "obauth: token manager: store write"
            ),
            Action::Release { .. } => {
                tracing::debug!(store_key = %key, "obauth: token manager: lease released")
            }
            Action::Done(Ok(_)) => {
                tracing::debug!(store_key = %key, "obauth: token manager: fetch done")
            }
            Action::Done(Err(error)) => tracing::debug!(
                store_key = %key,
                error_kind = error.kind_name(),
                "obauth: token manager: fetch failed: {error}"
            ),
        }
    }
}

/// Tells the log what a token manager's fetch noticed (see
/// [`Notice`](obauth_core::manager::Notice)): a WARN or an INFO event.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub fn notice(key: &obauth_core::store::StoreKey, notice: obauth_core::manager::Notice) {
    #[cfg(feature = "tracing")]
    if notice.is_warning() {
        tracing::warn!(store_key = %key, "{notice}");
    } else {
        tracing::info!(store_key = %key, "{notice}");
    }
}
