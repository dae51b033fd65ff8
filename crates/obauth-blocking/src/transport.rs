//! Sending requests: the [`HttpTransport`] seam and its ureq implementation.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::Response;
pub use obauth_core::Timeouts;
use obauth_core::client::{Bound, ClientSettings, TransportChoice};
use obauth_core::url::is_loopback_host;
use obauth_core::{
    AttemptTimeout, Error, MAX_RESPONSE_BODY, OutgoingRequest, TimeoutError, TimeoutPhase,
    TransportError, TransportErrorKind,
};
use ureq::config::Config;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Sends one request and reads the whole answer.
///
/// Implement it to bring any HTTP client. An implementation must not follow redirects,
/// must bound the time of a call, must cap the body it reads, and must report failures as
/// [`Error::Transport`] or [`Error::Timeout`] (never as a client-specific type).
///
/// The request comes as an [`OutgoingRequest`], whose `Debug` shows no body and no
/// credentials, so a transport may log what it is handed; take the `http::Request` to send
/// with [`OutgoingRequest::into_inner`] (and don't log that).
pub trait HttpTransport: Send + Sync {
    /// Sends `request`; any status, including 4xx and 5xx, is an `Ok` response.
    fn send(&self, request: OutgoingRequest) -> Result<Response<Vec<u8>>, Error>;
}

/// The default transport: a `ureq::Agent` that treats every status as an answer, never
/// follows redirects, and bounds each call.
///
/// Proxies: requests to other hosts go through the proxy ureq reads from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or the agent's own); requests to a loopback host
/// never do, whatever the agent says (they would carry a plain-text secret to the proxy).
///
/// ureq resolves the host name on every call, and with a resolve timeout it spawns a
/// thread to do so. This transport caches resolved addresses for
/// [`UreqTransport::DNS_TTL`], so the thread (and the lookup) happen only on a miss, while
/// every phase stays bounded: resolution and connection by the connect timeout, the whole
/// call by the total timeout.
#[derive(Debug)]
pub struct UreqTransport {
    agent: ureq::Agent,
    timeouts: Timeouts,
    max_body: usize,
    /// Whether the agent's own settings differ from obauth's, so that each request must
    /// carry them (a per-request configuration clones the agent's whole config).
    configure_each_request: bool,
}

impl UreqTransport {
    /// How long a resolved address is reused.
    pub const DNS_TTL: Duration = Duration::from_secs(60);

    /// A transport with its own agent (connection pool) and `timeouts`.
    pub fn new(timeouts: Timeouts) -> Self {
        Self::with_agent(Self::agent(timeouts), timeouts)
    }

    /// The agent obauth builds: [`UreqTransport::config`] and a resolver that caches
    /// answers for [`UreqTransport::DNS_TTL`]. Share it with your own ureq calls.
    pub fn agent(timeouts: Timeouts) -> ureq::Agent {
        ureq::Agent::with_parts(
            Self::config(timeouts),
            DefaultConnector::new(),
            CachingResolver::default(),
        )
    }

    /// The agent settings obauth uses: statuses are answers, no redirects, bounded calls.
    /// Use them to build your own `ureq::Agent` for [`UreqTransport::with_agent`].
    pub fn config(timeouts: Timeouts) -> Config {
        Config::builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .save_redirect_history(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_resolve(Some(timeouts.connect))
            .timeout_global(Some(timeouts.total))
            .build()
    }

    /// A transport over your own agent (its pool, proxy, TLS and resolver). obauth sets
    /// `http_status_as_error(false)`, `max_redirects(0)` and its timeouts on each of its
    /// requests, whatever the agent's defaults; [`UreqTransport::config`] gives an agent the
    /// same settings.
    pub fn with_agent(agent: ureq::Agent, timeouts: Timeouts) -> Self {
        let config = agent.config();
        let agent_timeouts = config.timeouts();
        let configure_each_request = config.http_status_as_error()
            || config.max_redirects() != 0
            || agent_timeouts.connect != Some(timeouts.connect)
            || agent_timeouts.global != Some(timeouts.total);
        Self {
            agent,
            timeouts,
            max_body: MAX_RESPONSE_BODY,
            configure_each_request,
        }
    }

    /// Replaces the response body cap (default [`MAX_RESPONSE_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// `total`: the attempt's total time, less than the transport's own when a token
    /// manager's deadline cut it.
    fn error(&self, error: ureq::Error, total: Duration) -> Error {
        use ureq::Error as U;
        let (kind, message) = match error {
            U::Timeout(timeout) => {
                let (phase, after) = match timeout {
                    ureq::Timeout::Resolve | ureq::Timeout::Connect
                        if total >= self.timeouts.connect =>
                    {
                        (TimeoutPhase::Connect, self.timeouts.connect)
                    }
                    _ if total < self.timeouts.total => (TimeoutPhase::Deadline, total),
                    _ => (TimeoutPhase::Total, self.timeouts.total),
                };
                return Error::Timeout(TimeoutError { phase, after });
            }
            U::HostNotFound | U::ConnectionFailed => {
                (TransportErrorKind::Connect, "could not connect")
            }
            U::BodyExceedsLimit(_) => {
                return Error::Transport(TransportError::new(
                    TransportErrorKind::BodyTooLarge,
                    format!("the response body exceeds {} bytes", self.max_body),
                ));
            }
            U::TooManyRedirects | U::RedirectFailed => (
                TransportErrorKind::RedirectFollowed,
                "the HTTP client tried to follow a redirect",
            ),
            U::Http(_) | U::BadUri(_) => {
                (TransportErrorKind::Request, "the request could not be sent")
            }
            U::Tls(_) | U::TlsRequired => (TransportErrorKind::Connect, "TLS failed"),
            U::Io(ref io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                        | std::io::ErrorKind::AddrNotAvailable
                ) =>
            {
                (TransportErrorKind::Connect, "could not connect")
            }
            U::StatusCode(_) => (TransportErrorKind::Request, "the agent refused a status"),
            _ => (TransportErrorKind::Io, "the connection failed"),
        };
        Error::Transport(TransportError::with_source(kind, message, error))
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new(Timeouts::default())
    }
}

impl HttpTransport for UreqTransport {
    fn send(&self, request: OutgoingRequest) -> Result<Response<Vec<u8>>, Error> {
        let request = request.into_inner();
        // ureq adds the timeouts to `Instant`s, which panics on overflow: refuse them here
        // too, for transports built directly rather than through a client builder.
        self.timeouts.check()?;
        // A token manager's deadline may leave this attempt less than the usual total.
        let total = match request.extensions().get::<AttemptTimeout>() {
            Some(cap) => self.timeouts.total.min(cap.0),
            None => self.timeouts.total,
        };
        // A loopback target never goes through a proxy: the request would carry a
        // plain-text secret to it.
        let bypass_proxy = self.agent.config().proxy().is_some()
            && request.uri().host().is_some_and(is_loopback_host);
        // Whatever agent we were given, these settings hold for obauth's requests.
        let response =
            if self.configure_each_request || total < self.timeouts.total || bypass_proxy {
                let mut configured = self
                    .agent
                    .configure_request(request)
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .timeout_connect(Some(self.timeouts.connect.min(total)))
                    .timeout_global(Some(total));
                if bypass_proxy {
                    configured = configured.proxy(None);
                }
                let request = configured.build();
                self.agent.run(request)
            } else {
                self.agent.run(request)
            }
            .map_err(|error| self.error(error, total))?;
        let (parts, mut body) = response.into_parts();
        let body = body
            .with_config()
            .limit(self.max_body as u64)
            .read_to_vec()
            .map_err(|error| self.error(error, total))?;
        Ok(Response::from_parts(parts, body))
    }
}

/// ureq's resolver, with answers kept for [`UreqTransport::DNS_TTL`], and `localhost` the
/// loopback addresses without a lookup.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // `http://localhost` is allowed because it is loopback: it must not be whatever a
        // resolver says (RFC 6761 §6.3).
        if uri
            .host()
            .is_some_and(|host| host.eq_ignore_ascii_case("localhost"))
        {
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let mut addrs = self.empty();
            addrs.push(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            addrs.push(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
            return Ok(addrs);
        }
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let now = Instant::now();
        if let Some((addrs, at)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && now.duration_since(*at) < UreqTransport::DNS_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(key, (addrs.clone(), now));
        Ok(addrs)
    }
}

/// What a client builder was given to send with.
pub(crate) type Choice = TransportChoice<dyn HttpTransport, ureq::Agent>;

/// Binds a client's checked settings to its transport: the caller's own, a ureq transport
/// over the caller's agent, or obauth's default.
pub(crate) fn bind<C>(
    choice: Choice,
    settings: (C, ClientSettings),
) -> Result<Bound<C, dyn HttpTransport>, Error> {
    choice.bind(settings, |agent, timeouts| {
        Ok(match agent {
            Some(agent) => Arc::new(UreqTransport::with_agent(agent, timeouts)),
            None => Arc::new(UreqTransport::new(timeouts)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_the_loopback_addresses_without_a_lookup() {
        let resolver = CachingResolver::default();
        let config = UreqTransport::config(Timeouts::default());
        for (url, port) in [
            ("http://localhost:4321/auth", 4321),
            ("http://LocalHost/auth", 80),
            ("https://localhost/", 443),
        ] {
            let uri: http::Uri = url.parse().unwrap();
            let addrs = resolver
                .resolve(&uri, &config, NextTimeout::default())
                .unwrap();
            assert_eq!(
                addrs.iter().copied().collect::<Vec<_>>(),
                [
                    SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                ],
                "{url}"
            );
        }
        // Nothing was looked up, so nothing was cached.
        assert!(resolver.cache.lock().unwrap().is_empty());
    }
}
