//! Base URLs: `https://` anywhere, plain `http://` only on loopback.

use std::fmt;
use std::net::IpAddr;

use http::Uri;
use http::uri::PathAndQuery;

use crate::error::InvalidInput;

/// A validated server base URL: scheme, host, optional port and path prefix, no query,
/// no fragment, no credentials, no trailing slash.
///
/// `https` is required except for loopback hosts (`localhost`, `127.0.0.0/8`, `::1`),
/// where `http` is allowed for local test servers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(pub(crate) String);

impl BaseUrl {
    /// Validates and normalizes `url` (a trailing `/` is dropped).
    pub fn parse(url: &str) -> Result<Self, InvalidInput> {
        const WHAT: &str = "base URL";
        let uri: Uri = url
            .parse()
            .map_err(|_| InvalidInput::new(WHAT, "not an absolute URL"))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| InvalidInput::new(WHAT, "missing scheme (https://…)"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| InvalidInput::new(WHAT, "missing host"))?;
        if authority.as_str().contains('@') {
            return Err(InvalidInput::new(WHAT, "must not contain credentials"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(InvalidInput::new(WHAT, "missing host"));
        }
        match scheme {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => {
                return Err(InvalidInput::new(
                    WHAT,
                    "plain http:// is only allowed for loopback hosts; use https://",
                ));
            }
            _ => return Err(InvalidInput::new(WHAT, "scheme must be https")),
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(InvalidInput::new(WHAT, "must not have a query or fragment"));
        }
        let path = uri.path().trim_end_matches('/');
        if path.split('/').any(is_dot_segment) {
            return Err(InvalidInput::new(
                WHAT,
                "must not contain `.` or `..` path segments",
            ));
        }
        let port = port_of(authority)
            .map_err(|()| InvalidInput::new(WHAT, "the port must be 1 to 65535"))?;
        // A default port written out is dropped, so that the URL obauth puts in an
        // assertion's `aud` is the one the request goes to.
        let port = match (scheme, port) {
            ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
            (_, Some(port)) => format!(":{port}"),
        };
        // Host names are case-insensitive; HTTP clients lowercase them, so the URL obauth
        // builds is the URL they send to.
        let host = host.to_ascii_lowercase();
        Ok(BaseUrl(format!("{scheme}://{host}{port}{path}")))
    }

    /// The URL as a string, without trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the host is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.0
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.host().map(is_loopback))
            .unwrap_or(false)
    }

    /// `self` + `path_and_query` (which starts with `/` and is already encoded).
    pub(crate) fn join(&self, path_and_query: &str) -> Result<Uri, InvalidInput> {
        debug_assert!(path_and_query.starts_with('/'));
        let mut joined = String::with_capacity(self.0.len() + path_and_query.len());
        joined.push_str(&self.0);
        joined.push_str(path_and_query);
        Uri::try_from(joined).map_err(|_| InvalidInput::new("URL", "could not be built"))
    }

    /// `uri` with its query replaced by `query` (already encoded).
    pub(crate) fn with_query(uri: &Uri, query: &str) -> Result<Uri, InvalidInput> {
        let mut parts = uri.clone().into_parts();
        let path_and_query = if query.is_empty() {
            PathAndQuery::try_from(uri.path())
        } else {
            PathAndQuery::try_from(format!("{}?{query}", uri.path()))
        };
        parts.path_and_query =
            Some(path_and_query.map_err(|_| InvalidInput::new("query", "could not be encoded"))?);
        Uri::from_parts(parts).map_err(|_| InvalidInput::new("URL", "could not be built"))
    }
}

/// The port an authority without user info names, if any. A port part must be a port:
/// `http::Uri` accepts `:99999` or `:8080abc` and then reports no port, and a client would
/// send to the scheme's default port instead.
pub(crate) fn port_of(authority: &http::uri::Authority) -> Result<Option<u16>, ()> {
    let host = authority.host();
    match authority.as_str().get(host.len()..).ok_or(())? {
        "" => Ok(None),
        part => part
            .strip_prefix(':')
            .and_then(|digits| digits.parse::<u16>().ok())
            .filter(|port| *port != 0)
            .map(Some)
            .ok_or(()),
    }
}

/// `.` or `..`, also percent-encoded (`%2e`): a path segment that clients and servers
/// resolve away, sending the request somewhere else than the URL reads.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// Whether `host` (as a URL writes it, IPv6 in brackets) is a loopback host: `localhost`,
/// `127.0.0.0/8` or `::1`. The bindings send to such hosts without a proxy.
pub fn is_loopback_host(host: &str) -> bool {
    is_loopback(host)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({:?})", self.0)
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = InvalidInput;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            "https://auth.truelayer.com",
            "https://auth.truelayer.com/",
            "https://host:8443/auth/",
            "http://127.0.0.1:8080",
            "http://127.5.6.7",
            "http://localhost:1234/auth",
            "http://[::1]:9000",
        ] {
            assert!(BaseUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            BaseUrl::parse("https://h.test/auth/").unwrap().as_str(),
            "https://h.test/auth"
        );
        for bad in [
            "http://auth.truelayer.com",
            "http://10.0.0.1",
            "http://localhost.evil.test",
            "ftp://host",
            "https://user:pw@host",
            "https://host/?q=1",
            "https://host/#f",
            "auth.truelayer.com",
            "/auth",
            "",
            "https://",
        ] {
            let error = BaseUrl::parse(bad).unwrap_err();
            assert_eq!(error.what(), "base URL", "{bad}");
        }
        assert!(BaseUrl::parse("http://127.0.0.1:1").unwrap().is_loopback());
        // Plain http elsewhere says why; another scheme says which scheme is wanted.
        let http = BaseUrl::parse("http://example.com").unwrap_err();
        assert!(http.problem().contains("loopback"), "{http}");
        let ftp = BaseUrl::parse("ftp://example.com").unwrap_err();
        assert!(ftp.problem().contains("https"), "{ftp}");
        // Shown as the URL it is.
        let base = BaseUrl::parse("https://Example.com/auth/").unwrap();
        assert_eq!(base.to_string(), "https://example.com/auth");
        assert_eq!(format!("{base:?}"), "BaseUrl(\"https://example.com/auth\")");
        assert!(BaseUrl::parse("http://LocalHost:1").unwrap().is_loopback());
    }

    #[test]
    fn ports_are_ports_and_default_ports_are_dropped() {
        for bad in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:-1",
            "http://127.0.0.1:8080abc",
            "http://[::1]:99999",
            "http://127.0.0.1:0",
            "http://127.0.0.1:",
        ] {
            let error = BaseUrl::parse(bad).map(|url| url.to_string());
            match error {
                Err(error) => assert!(error.problem().contains("port"), "{bad}: {error}"),
                Ok(url) => panic!("{bad} was accepted as {url}"),
            }
        }
        let kept = |url: &str| BaseUrl::parse(url).unwrap().to_string();
        assert_eq!(
            kept("https://Example.com:443/auth"),
            "https://example.com/auth"
        );
        assert_eq!(kept("http://127.0.0.1:80"), "http://127.0.0.1");
        assert_eq!(
            kept("https://example.com:8443/auth"),
            "https://example.com:8443/auth"
        );
        assert_eq!(kept("http://127.0.0.1:65535"), "http://127.0.0.1:65535");
        assert_eq!(kept("http://[::1]:8080/x"), "http://[::1]:8080/x");
        assert_eq!(kept("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }

    #[test]
    fn hosts_are_lowercased_and_dot_segments_refused() {
        assert_eq!(
            BaseUrl::parse("HTTPS://Auth.TrueLayer.COM:8443/Auth/")
                .unwrap()
                .as_str(),
            "https://auth.truelayer.com:8443/Auth"
        );
        for bad in [
            "https://host/a/../b",
            "https://host/./auth",
            "https://host/auth/..",
            "https://host/%2E%2e/auth",
            "https://host/auth/%2e",
        ] {
            let error = BaseUrl::parse(bad).unwrap_err();
            assert!(
                error.to_string().contains("path segments"),
                "{bad}: {error}"
            );
        }
        for fine in [
            "https://host/a.b/c",
            "https://host/.well-known",
            "https://host/..a",
        ] {
            assert!(BaseUrl::parse(fine).is_ok(), "{fine}");
        }
        assert!(!BaseUrl::parse("https://example.com").unwrap().is_loopback());
    }
}
