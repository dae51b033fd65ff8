//! Why a command failed: the `Failure` every command returns, with the exit code and the
//! message (and, for an API error under `--output json`, the error object) it reports.
//! Shared by `run` and `demo`; it imports neither.

use obauth_blocking::Error;
use obauth_blocking::core::{CallbackError, StoreErrorKind};
use obauth_blocking::loopback::ReceiveError;
use serde_json::json;

use crate::cli::Output;
use crate::terminal::escaped;

/// Why a command failed, and so its exit code.
pub(crate) enum Failure {
    /// Bad usage or local input: exit 2.
    Usage(String),
    /// The server said no: exit 1.
    Api { error: Error, json: bool },
    /// Transport, timeout or an unexpected answer: exit 3.
    Other(Error),
    /// A run that did not succeed for another reason (a demo step): exit 3.
    Failed(String),
    /// `connect` did not get a code: the dialog's refusal (exit 1), a port in use or a
    /// redirect URI that is not loopback (2), a redirect without a code or none in time
    /// (3), Ctrl-C (130).
    Receive { error: ReceiveError, json: bool },
}

impl Failure {
    pub(crate) fn from_receive(error: ReceiveError, output: Output) -> Self {
        Failure::Receive {
            error,
            json: output == Output::Json,
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Api { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::Other(_) | Failure::Failed(_) => 3,
            Failure::Receive { error, .. } => match error {
                ReceiveError::Callback(CallbackError::Denied { .. }) => 1,
                ReceiveError::InvalidRedirectUri(_)
                | ReceiveError::AddressInUse { .. }
                | ReceiveError::Bind { .. } => 2,
                ReceiveError::Cancelled => 130,
                _ => 3,
            },
        }
    }

    pub(crate) fn report(&self) {
        match self {
            // Messages may quote the server (already folded by the core) or a local path:
            // shown, never obeyed, by the terminal.
            Failure::Usage(message) => complain!("obauth: {}", escaped(message)),
            Failure::Api { error, json } => {
                complain!("obauth: {}", escaped(&error.to_string()));
                if *json {
                    say!("{}", error_json(error));
                }
            }
            Failure::Other(error) => complain!("obauth: {}", escaped(&error.to_string())),
            Failure::Failed(message) => complain!("obauth: {}", escaped(message)),
            Failure::Receive { error, json } => {
                match error {
                    ReceiveError::Cancelled => complain!(
                        "obauth: cancelled: nothing was connected, and the port is free again"
                    ),
                    error => complain!(
                        "obauth: nothing was connected: {}",
                        escaped(&error.to_string())
                    ),
                }
                if *json {
                    say!("{}", receive_error_json(error));
                }
            }
        }
    }

    pub(crate) fn from_error(error: Error, output: Output) -> Self {
        match error {
            Error::Api(_) | Error::ReauthenticationRequired(_) => Failure::Api {
                error,
                json: output == Output::Json,
            },
            Error::InvalidInput(invalid) => Failure::Usage(invalid.to_string()),
            Error::Callback(callback) => Failure::Usage(callback.to_string()),
            // A store that holds no such connection, or that this key does not open, or that
            // is not a token store: the local input is wrong, not the network.
            Error::Store(store)
                if matches!(
                    store.kind(),
                    StoreErrorKind::NotFound | StoreErrorKind::Sealed | StoreErrorKind::Corrupt
                ) =>
            {
                Failure::Usage(store.to_string())
            }
            other => Failure::Other(other),
        }
    }
}

/// The error object `--output json` prints when `connect` got no code: the dialog's error
/// as it sent it, or what went wrong locally.
fn receive_error_json(error: &ReceiveError) -> serde_json::Value {
    match error {
        ReceiveError::Callback(CallbackError::Denied { code, description }) => {
            let mut value = json!({ "error": code.as_str() });
            if let Some(description) = description {
                value["error_description"] = description.as_str().into();
            }
            value
        }
        other => {
            let kind = match other {
                ReceiveError::InvalidRedirectUri(_) => "invalid_redirect_uri",
                ReceiveError::AddressInUse { .. } => "address_in_use",
                ReceiveError::Bind { .. } => "bind_failed",
                ReceiveError::TimedOut { .. } => "timed_out",
                ReceiveError::Cancelled => "cancelled",
                ReceiveError::Callback(_) => "invalid_callback",
                _ => "receive_failed",
            };
            json!({ "error": kind, "error_description": other.to_string() })
        }
    }
}

/// The error object `--output json` prints for an API error.
fn error_json(error: &Error) -> serde_json::Value {
    let api = match error {
        Error::Api(api) => api,
        Error::ReauthenticationRequired(reauth) => reauth.cause(),
        _ => return json!({ "error": "unknown", "error_description": error.to_string() }),
    };
    let mut value = json!({ "error": api.code.as_str(), "status": api.status.as_u16() });
    if let Some(trace_id) = &api.trace_id {
        value["trace_id"] = trace_id.as_str().into();
    }
    if let Some(description) = &api.description {
        value["error_description"] = description.as_str().into();
    }
    if let Some(details) = &api.details {
        value["error_details"] = serde_json::to_value(details).unwrap_or_default();
    }
    value
}
