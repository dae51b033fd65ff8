//! The mock's shared state and its faults: the composition of the TrueLayer and
//! Worldline handlers behind one dispatch, with the request counts and injected faults.

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};

use crate::truelayer::TrueLayerState;
use crate::wire::{Answer, Endpoint, Request};
use crate::worldline::WorldlineState;

/// A misbehaviour to inject instead of the real answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an OAuth error body (`rate_limited` for 429,
    /// `temporarily_unavailable` for 503, `server_error` otherwise), with
    /// `Retry-After: seconds` if given.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally (longer than the client's timeout to time out).
    Delay(Duration),
    /// A complete `200` answer whose JSON body is cut short (`{"access_token":"…`).
    MalformedBody,
    /// The real answer's headers and half its body, then the connection closes.
    TruncatedBody,
    /// An HTML error page with this status, as a proxy or gateway sends.
    HtmlPage(u16),
    /// Close the connection without answering.
    CloseConnection,
    /// A `200` JSON answer of exactly this many bytes (at least 14), sent with a
    /// `Content-Length` (to exercise body caps).
    OversizedBody(usize),
    /// A hostile or careless server that quotes the request back: a `400` error whose
    /// `error_description`, `error_details.reason` and `error_details.request` repeat the
    /// request body and its `Authorization` header verbatim (to test that a client keeps
    /// its own secrets out of its errors).
    EchoRequest,
    /// The same as an HTML page with status `502`, as a gateway's error page might.
    EchoRequestPage,
    /// Exactly this answer, whatever was asked: a hostile or broken server (an HTML page
    /// under `200`, JSON missing fields, invalid UTF-8, a redirect with its `Location`).
    Raw {
        /// The HTTP status.
        status: u16,
        /// Headers, in order (`Content-Length` is set by the mock).
        headers: Vec<(String, String)>,
        /// The body, byte for byte.
        body: Vec<u8>,
    },
    /// The real answer's headers at once, then its body one byte per `interval` (a
    /// slowloris server: only a total timeout ends it).
    Trickle(Duration),
}

/// How the HTTP layer delivers an answer.
pub(crate) enum Delivery {
    Whole(Answer),
    Truncated(Answer),
    Trickled(Answer, Duration),
    Close,
    Delayed(Duration),
}

pub(crate) struct State {
    pub(crate) truelayer: TrueLayerState,
    pub(crate) worldline: WorldlineState,
    pub(crate) faults: Vec<(Option<Endpoint>, usize, Fault)>,
    pub(crate) counts: HashMap<Endpoint, usize>,
    /// How long a connection may take to send a request's headers (or stay idle between
    /// requests) before the mock closes it.
    pub(crate) header_read_timeout: Duration,
}

impl State {
    pub(crate) fn new(base: String) -> Self {
        Self {
            truelayer: TrueLayerState::new(base.clone()),
            worldline: WorldlineState::new(format!("{base}/auth")),
            faults: Vec::new(),
            header_read_timeout: Duration::from_secs(20),
            counts: HashMap::new(),
        }
    }

    /// Counts the request and takes the fault aimed at it, if any.
    pub(crate) fn arrive(&mut self, endpoint: Endpoint) -> Option<Fault> {
        *self.counts.entry(endpoint).or_insert(0) += 1;
        let index = self.faults.iter().position(|(target, times, _)| {
            *times > 0 && target.is_none_or(|target| target == endpoint)
        })?;
        let entry = &mut self.faults[index];
        entry.1 -= 1;
        let fault = entry.2.clone();
        if entry.1 == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

    pub(crate) fn handle(&mut self, request: &Request) -> Answer {
        match request.endpoint {
            Endpoint::WorldlineToken => self.worldline.token(request),
            Endpoint::Unknown => {
                Answer::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            }
            _ => self.truelayer.handle(request),
        }
    }
}

/// Turns a fault into what to deliver; `real` computes the real answer when needed.
pub(crate) fn deliver(fault: Fault, request: &Request, real: impl FnOnce() -> Answer) -> Delivery {
    let echo = || {
        let authorization = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        format!(
            "{} {}; authorization: {authorization}",
            request.path,
            String::from_utf8_lossy(&request.body)
        )
    };
    match fault {
        Fault::Raw {
            status,
            headers,
            body,
        } => {
            let mut answer = Answer::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                "application/json",
                body,
            );
            answer.headers.remove(http::header::CONTENT_TYPE);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    http::header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    answer.headers.append(name, value);
                }
            }
            Delivery::Whole(answer)
        }
        Fault::Trickle(interval) => Delivery::Trickled(real(), interval),
        Fault::EchoRequest => {
            let echo = echo();
            Delivery::Whole(Answer::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({
                    "error": "invalid_request",
                    "error_description": format!("could not process {echo}"),
                    "error_details": { "reason": echo, "request": { "echo": [echo] } },
                }),
            ))
        }
        Fault::EchoRequestPage => Delivery::Whole(Answer::new(
            StatusCode::BAD_GATEWAY,
            "text/html",
            format!("<html><body><h1>502</h1><pre>{}</pre></body></html>", echo()).into_bytes(),
        )),
        Fault::Status {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                429 => "rate_limited",
                503 => "temporarily_unavailable",
                _ => "server_error",
            };
            let mut answer = Answer::error(status, code, "injected by obauth-mock");
            if let Some(seconds) = retry_after {
                answer = answer.header(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Delivery::Whole(answer)
        }
        Fault::Delay(delay) => Delivery::Delayed(delay),
        Fault::MalformedBody => Delivery::Whole(Answer::new(
            StatusCode::OK,
            "application/json",
            br#"{"access_token":"mock-malformed","expires_in":36"#.to_vec(),
        )),
        Fault::TruncatedBody => Delivery::Truncated(real()),
        Fault::HtmlPage(status) => Delivery::Whole(Answer::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "text/html",
            format!("<html><head><title>{status} Error</title></head><body><h1>{status}</h1><p>upstream unavailable</p></body></html>")
                .into_bytes(),
        )),
        Fault::CloseConnection => Delivery::Close,
        Fault::OversizedBody(bytes) => {
            // `{"padding":""}` is 14 bytes.
            let padding = "x".repeat(bytes.saturating_sub(14));
            Delivery::Whole(Answer::json(StatusCode::OK, &serde_json::json!({ "padding": padding })))
        }
    }
}
