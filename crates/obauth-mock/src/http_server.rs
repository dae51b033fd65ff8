//! The HTTP/1.1 layer: accepts connections, reads requests, applies faults, writes answers.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::state::{Delivery, State, deliver};
use crate::wire::{Answer, Endpoint, Request};

/// The largest request body the mock reads.
const MAX_REQUEST: usize = 1024 * 1024;

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let header_read_timeout = state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .header_read_timeout;
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(Arc::clone(&state), request));
                    // A client that never finishes its headers is dropped, so a slow
                    // or idle connection cannot hold a task (and a socket) forever.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Closing the connection without an answer is an error from the service.
#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by fault injection")
    }
}

impl std::error::Error for Hangup {}

async fn respond(
    state: Arc<Mutex<State>>,
    request: http::Request<Incoming>,
) -> Result<http::Response<MockBody>, Hangup> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_REQUEST)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return Ok(to_response(Answer::error(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request body too large",
            )));
        }
    };
    let request = Request {
        endpoint: Endpoint::of(&parts.method, parts.uri.path()),
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let fault = lock().arrive(request.endpoint);
    let delivery = match fault {
        None => Delivery::Whole(lock().handle(&request)),
        Some(fault) => deliver(fault, &request, || lock().handle(&request)),
    };
    match delivery {
        Delivery::Whole(answer) => Ok(to_response(answer)),
        Delivery::Delayed(delay) => {
            tokio::time::sleep(delay).await;
            Ok(to_response(lock().handle(&request)))
        }
        Delivery::Close => Err(Hangup),
        Delivery::Trickled(answer, interval) => {
            let body = Bytes::from(answer.body);
            let mut response = to_response(Answer {
                status: answer.status,
                headers: answer.headers,
                body: Vec::new(),
            });
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
            *response.body_mut() = MockBody::Trickle {
                rest: body,
                interval,
                sleep: None,
            };
            Ok(response)
        }
        Delivery::Truncated(answer) => {
            // Announce the whole length, send half, then drop the connection.
            let full = answer.body.len().max(2);
            let mut half = answer.body;
            half.truncate(full / 2);
            if half.is_empty() {
                half.push(b'{');
            }
            let mut response = to_response(Answer {
                status: answer.status,
                headers: answer.headers,
                body: Vec::new(),
            });
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(full as u64));
            *response.body_mut() = MockBody::Truncated(Some(Bytes::from(half)));
            Ok(response)
        }
    }
}

fn to_response(answer: Answer) -> http::Response<MockBody> {
    let mut response = http::Response::new(MockBody::Full(Some(Bytes::from(answer.body))));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    response
}

/// A whole body, one that breaks off (some bytes, then the connection drops), or one sent a
/// byte at a time.
pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Truncated(Option<Bytes>),
    Trickle {
        rest: Bytes,
        interval: std::time::Duration,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            MockBody::Trickle {
                rest,
                interval,
                sleep,
            } => {
                if rest.is_empty() {
                    return Poll::Ready(None);
                }
                let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(*interval)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *sleep = None;
                Poll::Ready(Some(Ok(Frame::data(rest.split_to(1)))))
            }
            MockBody::Full(chunk) => Poll::Ready(
                chunk
                    .take()
                    .filter(|c| !c.is_empty())
                    .map(|c| Ok(Frame::data(c))),
            ),
            MockBody::Truncated(chunk) => match chunk.take() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Poll::Ready(Some(Err(Box::new(Hangup)))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(None) => true,
            MockBody::Trickle { rest, .. } => rest.is_empty(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(chunk)) => SizeHint::with_exact(chunk.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Truncated(_) => SizeHint::default(),
            MockBody::Trickle { rest, .. } => SizeHint::with_exact(rest.len() as u64),
        }
    }
}
