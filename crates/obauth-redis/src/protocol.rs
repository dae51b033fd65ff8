//! What both faces send and how they read the answers: the key layout, the scripts, the
//! settings, and Redis errors as store errors.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use obauth_core::OsRandom;
use obauth_core::store::codec;
use obauth_core::store::{Cas, Expect, Lease, SealingKey, StoreKey, Stored, TokenRecord};
use obauth_core::{StoreError, StoreErrorKind};
use redis::{RedisError, Script};
use zeroize::Zeroizing;

use crate::{DEFAULT_PREFIX, DEFAULT_TIMEOUT, MAX_TIMEOUT};

/// Writes the record if its version meets the expectation, in one step.
///
/// KEYS[1]: the record hash. ARGV[1]: `any`, `absent` or `version`; ARGV[2]: the expected
/// version; ARGV[3]: the encoded record. Answers `{1, new version, ""}` when written,
/// `{0, current version or 0, current record or ""}` when not.
pub(crate) static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], 'v')
local holds
if ARGV[1] == 'any' then
  holds = true
elseif ARGV[1] == 'absent' then
  holds = (current == false)
else
  holds = (current ~= false and current == ARGV[2])
end
if not holds then
  if current == false then
    return {0, 0, ''}
  end
  return {0, tonumber(current), redis.call('HGET', KEYS[1], 'r')}
end
local version = 1
if current ~= false then
  version = tonumber(current) + 1
end
redis.call('HSET', KEYS[1], 'v', version, 'r', ARGV[3])
return {1, version, ''}
"#,
    )
});

/// Takes or renews the lease.
///
/// KEYS[1]: the lease key. ARGV[1]: the holder id; ARGV[2]: the time to live in
/// milliseconds. Answers -1 when the caller holds the lease now, otherwise the other
/// holder's milliseconds left (Redis's clock). Another holder's lease that has lost its
/// expiry (a `PERSIST`, a `RESTORE` without a time to live: `PTTL` answers -1, which would
/// read as granted) is given the caller's time to live, so that it still ends.
pub(crate) static TRY_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
return left
"#,
    )
});

/// Gives the lease back if the caller holds it. KEYS[1]: the lease key; ARGV[1]: the holder
/// id. Answers 1 if it was given back.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// Where a store connects, what it names its keys, how long it waits, how it seals.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) client: redis::Client,
    /// The URL as given, password and all: only to build the client again.
    url: Zeroizing<String>,
    /// The URL without its password, for `Debug` and errors.
    pub(crate) shown: String,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) sealing: Option<SealingKey>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug("Settings", f)
    }
}

impl Settings {
    /// `Debug` of a store named `name`: where, how, never a token or the password.
    pub(crate) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("sealed", &self.sealing.is_some())
            .finish()
    }
}

impl Settings {
    pub(crate) fn new(url: &str, sealing: Option<SealingKey>) -> Result<Self, StoreError> {
        let shown = obauth_core::store::url_without_password(url);
        let client = client(url, &shown, None)?;
        Ok(Self {
            client,
            url: Zeroizing::new(url.to_owned()),
            shown,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            sealing,
        })
    }

    /// Trusts `pem` (one or more certificates) for `rediss://` instead of the platform's
    /// root certificates.
    pub(crate) fn set_root_certificate(&mut self, pem: &[u8]) -> Result<(), StoreError> {
        self.client = client(&self.url, &self.shown, Some(pem))?;
        Ok(())
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) -> Result<(), StoreError> {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the Redis timeout must be above zero and at most 60 s",
            ));
        }
        self.timeout = timeout;
        Ok(())
    }

    pub(crate) fn set_prefix(&mut self, prefix: &str) -> Result<(), StoreError> {
        if prefix.is_empty() || prefix.len() > 100 || prefix.chars().any(char::is_control) {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "the Redis key prefix must be 1 to 100 bytes, without control characters",
            ));
        }
        prefix.clone_into(&mut self.prefix);
        Ok(())
    }

    /// The hash that holds `key`'s record.
    pub(crate) fn record_key(&self, key: &StoreKey) -> String {
        format!("{}:record:{}", self.prefix, key.as_str())
    }

    /// The key that holds `key`'s lease.
    pub(crate) fn lease_key(&self, key: &StoreKey) -> String {
        format!("{}:lease:{}", self.prefix, key.as_str())
    }

    pub(crate) fn encode(
        &self,
        key: &StoreKey,
        record: &TokenRecord,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        codec::encode(record, key, self.sealing.as_ref(), &mut OsRandom)
    }

    /// A record read back: `version` and `bytes` as `HMGET v r` or the script answered.
    pub(crate) fn stored(
        &self,
        key: &StoreKey,
        version: Option<u64>,
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<Stored>, StoreError> {
        // The bytes may hold tokens: wiped once decoded.
        let bytes = bytes.map(Zeroizing::new);
        match (version, bytes) {
            (None, None) => Ok(None),
            (Some(version), Some(bytes)) if version > 0 => Ok(Some(Stored {
                version,
                record: codec::decode(&bytes, key, self.sealing.as_ref())?,
            })),
            _ => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "the record of {key} in Redis at {} is incomplete (a version without a \
                     record, or the reverse): it was not written by obauth",
                    self.shown
                ),
            )),
        }
    }

    /// The compare-and-swap script's answer.
    pub(crate) fn cas_answer(
        &self,
        key: &StoreKey,
        (written, version, bytes): (i64, u64, Vec<u8>),
    ) -> Result<Cas, StoreError> {
        if written == 1 {
            return Ok(Cas::Written(version));
        }
        let bytes = Zeroizing::new(bytes);
        if version == 0 {
            return Ok(Cas::Conflict(None));
        }
        Ok(Cas::Conflict(self.stored(
            key,
            Some(version),
            Some(bytes.to_vec()),
        )?))
    }

    /// A Redis failure as a store error: unreachable, timed out or disconnected is
    /// [`StoreErrorKind::Unavailable`]. The URL is shown without its password.
    pub(crate) fn failure(&self, doing: &str, error: &RedisError) -> StoreError {
        let kind = if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
        {
            StoreErrorKind::Unavailable
        } else {
            StoreErrorKind::Other
        };
        StoreError::new(
            kind,
            format!(
                "Redis at {} failed to {doing}: {}",
                self.shown,
                describe(error)
            ),
        )
    }

    pub(crate) fn timed_out(&self, doing: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Unavailable,
            format!(
                "Redis at {} did not {doing} within {} ms",
                self.shown,
                self.timeout.as_millis()
            ),
        )
    }
}

/// A client for `url`, trusting `root` for TLS if given.
fn client(url: &str, shown: &str, root: Option<&[u8]>) -> Result<redis::Client, StoreError> {
    let invalid = || {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "the Redis URL {shown} is not valid: expected \
                 redis://[user[:password]@]host[:port][/db] or rediss://…"
            ),
        )
    };
    let tls = url.starts_with("rediss://");
    if !tls && !url.starts_with("redis://") {
        return Err(invalid());
    }
    if tls {
        return tls_client(url, root, invalid);
    }
    if root.is_some() {
        return Err(StoreError::new(
            StoreErrorKind::Other,
            format!("a root certificate was given for {shown}, which is not rediss:// (TLS)"),
        ));
    }
    // redis's own parse errors may quote the URL, password and all: not passed on.
    redis::Client::open(url).map_err(|_| invalid())
}

#[cfg(feature = "tls")]
fn tls_client(
    url: &str,
    root: Option<&[u8]>,
    invalid: impl Fn() -> StoreError,
) -> Result<redis::Client, StoreError> {
    ensure_crypto_provider();
    // redis's own parse errors may quote the URL, password and all: not passed on.
    let plain = redis::Client::open(url).map_err(|_| invalid())?;
    let Some(pem) = root else {
        return Ok(plain);
    };
    // The URL parsed: what fails now is the certificate.
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        },
    )
    .map_err(|_| {
        StoreError::new(
            StoreErrorKind::Other,
            "the root certificate for Redis is not a PEM certificate",
        )
    })
}

#[cfg(not(feature = "tls"))]
fn tls_client(
    _: &str,
    _: Option<&[u8]>,
    _: impl Fn() -> StoreError,
) -> Result<redis::Client, StoreError> {
    Err(StoreError::new(
        StoreErrorKind::Other,
        "rediss:// (TLS) needs the `tls` feature of obauth-redis",
    ))
}

/// rustls needs a process-wide crypto provider when more than one is compiled in (ring
/// from one crate, aws-lc-rs from another): install the one obauth uses if nobody has.
#[cfg(feature = "tls")]
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return;
    }
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    compile_error!("the `tls` feature of obauth-redis needs `ring` or `aws-lc-rs`");
    // Another thread may install one in between: either is fine.
    let _ = provider.install_default();
}

/// The arguments of [`COMPARE_AND_SWAP`] for `expect`.
pub(crate) fn expectation(expect: Expect) -> (&'static str, u64) {
    match expect {
        Expect::Any => ("any", 0),
        Expect::Absent => ("absent", 0),
        Expect::Version(version) => ("version", version),
    }
}

/// The lease script's answer, read at `now`.
pub(crate) fn lease_answer(left_ms: i64, now: SystemTime) -> Lease {
    match u64::try_from(left_ms) {
        // -1 (ours now); -2 (expired between the GET and the PTTL) cannot happen inside a
        // script, but reads as "try again soon" rather than as granted.
        Err(_) if left_ms == -1 => Lease::Granted,
        Err(_) => Lease::Held { until: now },
        Ok(left) => Lease::Held {
            until: now.checked_add(Duration::from_millis(left)).unwrap_or(now),
        },
    }
}

/// The lease's time to live in whole milliseconds, at least 1.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// What went wrong, in a line: redis's kind and detail, which name no argument.
fn describe(error: &RedisError) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_an_error_that_does_not_quote_the_password() {
        for url in [
            "http://:hunter2@h:1",
            "redis://:hunter2@h:notaport",
            "hunter2",
        ] {
            let error = Settings::new(url, None).unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{error}");
            assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        }
        let settings = Settings::new("redis://:hunter2@127.0.0.1:1", None).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn bounds() {
        let mut settings = Settings::new("redis://127.0.0.1:1", None).unwrap();
        assert!(settings.set_timeout(Duration::ZERO).is_err());
        assert!(
            settings
                .set_timeout(MAX_TIMEOUT + Duration::from_millis(1))
                .is_err()
        );
        assert!(settings.set_timeout(MAX_TIMEOUT).is_ok());
        assert!(settings.set_prefix("").is_err());
        assert!(settings.set_prefix("a\nb").is_err());
        assert!(settings.set_prefix("svc").is_ok());
        let key = StoreKey::client_credentials("u", "c", "m", "s");
        assert!(settings.record_key(&key).starts_with("svc:record:"));
        assert!(settings.lease_key(&key).starts_with("svc:lease:"));
        assert_ne!(settings.record_key(&key), settings.lease_key(&key));
    }

    #[test]
    fn lease_answers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(lease_answer(-1, now), Lease::Granted);
        assert_eq!(lease_answer(-2, now), Lease::Held { until: now });
        assert_eq!(
            lease_answer(1500, now),
            Lease::Held {
                until: now + Duration::from_millis(1500)
            }
        );
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(2500)), 2500);
    }
}
