//! Sending requests: the [`HttpTransport`] seam and its reqwest implementation.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
pub use obauth_core::Timeouts;
use obauth_core::client::{Bound, ClientSettings, TransportChoice};
use obauth_core::url::is_loopback_host;
use obauth_core::{
    AttemptTimeout, Error, MAX_RESPONSE_BODY, OutgoingRequest, TimeoutError, TimeoutPhase,
    TransportError, TransportErrorKind,
};

/// Sends one request and reads the whole answer.
///
/// Implement it to bring any HTTP client. An implementation must not follow redirects,
/// must bound the time of a call, must cap the body it reads, and must report failures as
/// [`Error::Transport`] or [`Error::Timeout`] (never as a client-specific type).
///
/// The request comes as an [`OutgoingRequest`], whose `Debug` shows no body and no
/// credentials, so a transport may log what it is handed; take the `http::Request` to send
/// with [`OutgoingRequest::into_inner`] (and don't log that).
#[async_trait]
pub trait HttpTransport: Send + Sync {
    /// Sends `request`; any status, including 4xx and 5xx, is an `Ok` response.
    async fn send(&self, request: OutgoingRequest) -> Result<Response<Vec<u8>>, Error>;
}

/// The default transport: a `reqwest::Client` that never follows redirects.
///
/// Proxies: requests to other hosts go through the proxies reqwest reads from
/// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`; requests to a loopback host
/// never do (they would carry a plain-text secret to the proxy), when the transport built
/// its client itself. With your own client, build it with `no_proxy()` for loopback use.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    /// For loopback targets, when this transport built `client`: the same settings
    /// without any proxy, built on first use.
    direct: Option<Arc<OnceLock<reqwest::Client>>>,
    timeouts: Timeouts,
    max_body: usize,
}

fn client_builder(timeouts: Timeouts) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        // `http://localhost` is allowed because it is loopback: it must not be whatever a
        // resolver says (RFC 6761 §6.3). The URL's port is kept.
        .resolve_to_addrs("localhost", &LOCALHOST)
}

/// Where `localhost` goes: the loopback addresses, never a lookup.
const LOCALHOST: [std::net::SocketAddr; 2] = [
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 0),
];

fn built(client: reqwest::Result<reqwest::Client>) -> Result<reqwest::Client, Error> {
    client.map_err(|error| {
        Error::Transport(TransportError::with_source(
            TransportErrorKind::Request,
            "the HTTP client could not be built",
            error.without_url(),
        ))
    })
}

impl ReqwestTransport {
    /// A transport with its own connection pool, no redirects, and `timeouts`.
    pub fn new(timeouts: Timeouts) -> Result<Self, Error> {
        let client = built(client_builder(timeouts).build())?;
        Ok(Self {
            direct: Some(Arc::new(OnceLock::new())),
            ..Self::with_client(client, timeouts)
        })
    }

    /// The client for `uri`: without proxies for a loopback host, if this transport owns
    /// its client.
    fn client_for(&self, uri: &http::Uri) -> Result<&reqwest::Client, Error> {
        match &self.direct {
            Some(direct) if uri.host().is_some_and(is_loopback_host) => {
                if let Some(client) = direct.get() {
                    return Ok(client);
                }
                let client = built(client_builder(self.timeouts).no_proxy().build())?;
                Ok(direct.get_or_init(|| client))
            }
            _ => Ok(&self.client),
        }
    }

    /// A transport over your own `reqwest::Client` (its pool, proxy and TLS settings).
    ///
    /// The total timeout is set on every request. Build the client with
    /// `redirect(Policy::none())`: a client that follows a redirect has re-sent the request
    /// (and its body, which may hold a secret) before obauth can notice; obauth then fails
    /// the call with [`TransportErrorKind::RedirectFollowed`].
    pub fn with_client(client: reqwest::Client, timeouts: Timeouts) -> Self {
        Self {
            client,
            direct: None,
            timeouts,
            max_body: MAX_RESPONSE_BODY,
        }
    }

    /// Replaces the response body cap (default [`MAX_RESPONSE_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// `cap`: the attempt's time as a token manager's deadline cut it, if it did.
    fn error(&self, error: reqwest::Error, cap: Option<Duration>) -> Error {
        let error = error.without_url();
        if error.is_timeout() {
            let (phase, after) = match cap {
                _ if error.is_connect() => (TimeoutPhase::Connect, self.timeouts.connect),
                Some(cap) if cap < self.timeouts.total => (TimeoutPhase::Deadline, cap),
                _ => (TimeoutPhase::Total, self.timeouts.total),
            };
            return Error::Timeout(TimeoutError { phase, after });
        }
        let (kind, message) = if error.is_connect() {
            (TransportErrorKind::Connect, "could not connect")
        } else if error.is_builder() {
            (TransportErrorKind::Request, "the request could not be sent")
        } else {
            (TransportErrorKind::Io, "the connection failed")
        };
        Error::Transport(TransportError::with_source(kind, message, error))
    }
}

#[async_trait]
impl HttpTransport for ReqwestTransport {
    async fn send(&self, request: OutgoingRequest) -> Result<Response<Vec<u8>>, Error> {
        let request = request.into_inner();
        self.timeouts.check()?;
        // A token manager's deadline may leave this attempt less than the usual total.
        let cap = request
            .extensions()
            .get::<AttemptTimeout>()
            .map(|cap| cap.0);
        let client = self.client_for(request.uri())?;
        let mut request =
            reqwest::Request::try_from(request).map_err(|error| self.error(error, cap))?;
        // Compared with the URL reqwest answers for, as reqwest parsed it (host lowercased,
        // path normalised): any difference means it followed a redirect.
        let sent = request.url().clone();
        *request.timeout_mut() = Some(self.timeouts.total.min(cap.unwrap_or(Duration::MAX)));
        let mut response = client
            .execute(request)
            .await
            .map_err(|error| self.error(error, cap))?;
        if *response.url() != sent {
            return Err(Error::Transport(TransportError::new(
                TransportErrorKind::RedirectFollowed,
                "the HTTP client followed a redirect; build it with redirect(Policy::none())",
            )));
        }
        let too_large = || {
            Error::Transport(TransportError::new(
                TransportErrorKind::BodyTooLarge,
                format!("the response body exceeds {} bytes", self.max_body),
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.max_body as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(
            response
                .content_length()
                .map_or(1024, |length| length as usize),
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.error(error, cap))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = Response::new(body);
        *out.status_mut() = response.status();
        *out.version_mut() = response.version();
        *out.headers_mut() = std::mem::take(response.headers_mut());
        Ok(out)
    }
}

/// What a client builder was given to send with.
pub(crate) type Choice = TransportChoice<dyn HttpTransport, reqwest::Client>;

/// Binds a client's checked settings to its transport: the caller's own, a reqwest
/// transport over the caller's `reqwest::Client`, or obauth's default.
pub(crate) fn bind<C>(
    choice: Choice,
    settings: (C, ClientSettings),
) -> Result<Bound<C, dyn HttpTransport>, Error> {
    choice.bind(settings, |client, timeouts| {
        Ok(match client {
            Some(client) => Arc::new(ReqwestTransport::with_client(client, timeouts)),
            None => Arc::new(ReqwestTransport::new(timeouts)?),
        })
    })
}
