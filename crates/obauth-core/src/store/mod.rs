//! Where token records live: the [`TokenStore`] trait, what it keeps ([`TokenRecord`] under
//! a [`StoreKey`], with a version), the in-memory [`MemoryStore`], and the record
//! [`codec`] (with optional sealing) that durable stores share.
//!
//! A store is consulted by the token managers on a miss, when a token is due, and on the
//! first call in a process, never on the path that serves a fresh token. Writes are
//! compare-and-swap on the version the writer read, so two writers cannot silently
//! overwrite each other; a lease per key lets one process at a time fetch, so that N
//! processes sharing a store make one token request.
//!
//! [`TokenStore`] is synchronous: memory and SQLite answer from the local machine, and the
//! async binding calls a store that [may block](TokenStore::may_block) on tokio's blocking
//! pool, so that a slow disk never stalls the runtime. A store over the network (Redis,
//! PostgreSQL) has an async client of its own: [`AsyncTokenStore`] is the same contract
//! with `async` methods, for the async binding. Both faces are runtime-free here.

pub mod codec;
mod memory;

use std::fmt;
use std::time::{Duration, SystemTime};

use obauth_types::{AccessToken, RefreshToken};

pub use self::codec::SealingKey;
pub use self::memory::MemoryStore;
use crate::error::{InvalidInput, StoreError};
use crate::random::RandomSource;

/// What a record is stored under: derived from the token URL, the client id, the client
/// authentication method and either the scopes (application tokens) or a connection name
/// chosen by the user (user tokens). It never contains a secret, and two clients never
/// share one.
///
/// Its text form ([`StoreKey::as_str`]) is a JSON array of those parts, so that no choice
/// of names can make two keys collide.
///
/// Two keys are equal when their texts are: the previous name a key carries
/// ([`StoreKey::with_previous`]) does not make it another key.
#[derive(Clone)]
pub struct StoreKey {
    text: String,
    connection: Option<String>,
    /// The text an older obauth wrote the same record under (see [`StoreKey::previous`]).
    previous: Option<String>,
}

impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for StoreKey {}

impl std::hash::Hash for StoreKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// The longest connection name accepted, in characters.
pub const MAX_CONNECTION_NAME: usize = 200;

/// The name a user's connection is stored under: any name you choose (a user id,
/// "alice-monzo"), 1 to [`MAX_CONNECTION_NAME`] characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionName(String);

impl ConnectionName {
    /// Checks `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidInput> {
        let name = name.into();
        if name.is_empty()
            || name.chars().count() > MAX_CONNECTION_NAME
            || name.chars().any(char::is_control)
        {
            return Err(InvalidInput::new(
                "connection name",
                "must be 1 to 200 characters, without control characters",
            ));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoreKey {
    /// The key of a client-credentials token.
    pub fn client_credentials(
        token_url: &str,
        client_id: &str,
        auth_method: &str,
        scopes: &str,
    ) -> Self {
        let text = key_text(&(
            "client_credentials",
            token_url,
            client_id,
            auth_method,
            scopes,
        ));
        Self {
            text,
            connection: None,
            previous: None,
        }
    }

    /// The key of a user's connection named `connection`.
    pub fn user(
        token_url: &str,
        client_id: &str,
        auth_method: &str,
        connection: &ConnectionName,
    ) -> Self {
        let text = key_text(&(
            "user",
            token_url,
            client_id,
            auth_method,
            connection.as_str(),
        ));
        Self {
            text,
            connection: Some(connection.as_str().to_owned()),
            previous: None,
        }
    }

    /// The same key, which an older obauth wrote as `previous`: a token manager that finds
    /// nothing under this key looks there once, and moves what it finds here (the record
    /// under `previous` is left as it was, and never read again once moved). This keeps
    /// the connections saved before a key changed reachable.
    pub fn with_previous(mut self, previous: &StoreKey) -> Self {
        self.previous = Some(previous.text.clone());
        self
    }

    /// The key an older obauth stored the same record under, if this key has changed.
    pub fn previous(&self) -> Option<StoreKey> {
        self.previous.as_ref().map(|text| StoreKey {
            text: text.clone(),
            connection: self.connection.clone(),
            previous: None,
        })
    }

    /// The key as text, as stores index it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The connection name, for a user's key.
    pub fn connection(&self) -> Option<&str> {
        self.connection.as_deref()
    }
}

/// The parts as a JSON array (a tuple of strings serializes as one; it cannot fail).
fn key_text(parts: &(&str, &str, &str, &str, &str)) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.text).finish()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a store keeps under a key: the tokens and when they were obtained.
///
/// Times are wall-clock, so that another process (or the same one after a restart or a
/// suspend) can tell how old the access token is. `Debug` shows no token.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    /// The access token; `None` when only a refresh token is known (a connection saved
    /// from a refresh token, or a rotated refresh token that came with an unreadable answer).
    pub access_token: Option<AccessToken>,
    /// When the request that obtained the access token was sent.
    pub obtained_at: SystemTime,
    /// The access token's lifetime in seconds, as the server said.
    pub expires_in: u64,
    /// The refresh token, for a user's connection.
    pub refresh_token: Option<RefreshToken>,
}

impl PartialEq for TokenRecord {
    fn eq(&self, other: &Self) -> bool {
        fn same<T>(a: &Option<T>, b: &Option<T>, secret: fn(&T) -> &str) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => secret(a) == secret(b),
                (None, None) => true,
                _ => false,
            }
        }
        same(
            &self.access_token,
            &other.access_token,
            AccessToken::expose_secret,
        ) && self.obtained_at == other.obtained_at
            && self.expires_in == other.expires_in
            && same(
                &self.refresh_token,
                &other.refresh_token,
                RefreshToken::expose_secret,
            )
    }
}

impl Eq for TokenRecord {}

/// A record with the version the store gave it: every write makes a new version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its version: 1 for the first write, one more for each write after.
    pub version: u64,
    /// The record.
    pub record: TokenRecord,
}

/// What a write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No record: the key is new.
    Absent,
    /// The record at this version.
    Version(u64),
    /// Whatever is there (saving a new connection over an old one).
    Any,
}

impl Expect {
    /// Whether a store holding `current` (a version, or none) meets this expectation.
    pub fn holds(self, current: Option<u64>) -> bool {
        match (self, current) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Version(expected), Some(current)) => expected == current,
            _ => false,
        }
    }

    /// The expectation of a writer that last read `version`.
    pub fn after(version: Option<u64>) -> Self {
        version.map_or(Expect::Absent, Expect::Version)
    }
}

/// The answer to a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cas {
    /// Written, as this version.
    Written(u64),
    /// Not written: another writer got there first; this is what is stored now.
    Conflict(Option<Stored>),
}

/// Who holds a lease: a random id per token manager, so that a process never mistakes
/// another's lease for its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseHolder([u8; 16]);

impl LeaseHolder {
    /// A fresh random holder id.
    pub fn random(random: &mut dyn RandomSource) -> Result<Self, crate::error::RandomnessError> {
        let mut id = [0; 16];
        random.fill(&mut id)?;
        Ok(Self(id))
    }

    /// A random holder id or, should the random source fail, one unique on this host: the
    /// process id and a counter of this process's holders. Never fails.
    pub fn generate(random: &mut dyn RandomSource) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self::random(random).unwrap_or_else(|_| {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&std::process::id().to_be_bytes());
            let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            id[4..12].copy_from_slice(&count.to_be_bytes());
            Self(id)
        })
    }

    /// A holder id unique among all processes sharing a store, without a system call: a
    /// random 8-byte prefix drawn once per process (the process id and time, should the
    /// random source fail) and a counter of this process's holders. What token managers
    /// use: a fresh process's first read makes one.
    pub fn unique() -> Self {
        static PREFIX: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let mut prefix = [0; 8];
            if crate::random::OsRandom.fill(&mut prefix).is_err() {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.subsec_nanos());
                prefix[..4].copy_from_slice(&std::process::id().to_be_bytes());
                prefix[4..].copy_from_slice(&nanos.to_be_bytes());
            }
            prefix
        });
        let mut id = [0; 16];
        id[..8].copy_from_slice(prefix);
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id[8..].copy_from_slice(&count.to_be_bytes());
        Self(id)
    }

    /// The id as 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Reads [`LeaseHolder::to_hex`]'s form back.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut id = [0; 16];
        for (byte, pair) in id.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(id))
    }
}

impl fmt::Debug for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseHolder({})", self.to_hex())
    }
}

/// The answer to a lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease until the time it asked for.
    Granted,
    /// Another holder has it until `until` (wall clock).
    Held {
        /// When that lease runs out, unless released or renewed first.
        until: SystemTime,
    },
}

/// Where token records live. Implement it to keep tokens in your own database; obauth
/// ships [`MemoryStore`] and, in `obauth-sqlite`, `SqliteStore`.
///
/// Every method reports failures as a [`StoreError`] of the right
/// [`kind`](crate::error::StoreErrorKind), never by panicking, and returns in bounded time
/// (a store over a network or a file lock has a timeout of its own).
pub trait TokenStore: Send + Sync {
    /// The record under `key`, if any.
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError>;

    /// Writes `record` under `key` if what is stored meets `expect`; otherwise changes
    /// nothing and answers [`Cas::Conflict`] with what is stored.
    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError>;

    /// Takes the lease on `key` for `ttl` from `now` (wall clock), if nobody else holds an
    /// unexpired one. Taking a lease one already holds renews it.
    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError>;

    /// Gives the lease on `key` back, if `holder` holds it.
    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError>;

    /// Whether a call may wait on I/O (a disk, a network): the async binding then runs it
    /// on tokio's blocking pool. `true` unless the store only touches memory.
    fn may_block(&self) -> bool {
        true
    }
}

/// The async face of [`TokenStore`]: the same contract (compare-and-swap writes, leases,
/// typed errors, bounded time), for stores whose client is async (Redis on tokio,
/// PostgreSQL). The async binding awaits these methods in place; a synchronous store is
/// given to it as a [`TokenStore`] instead.
#[async_trait::async_trait]
pub trait AsyncTokenStore: Send + Sync {
    /// The record under `key`, if any.
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError>;

    /// Writes `record` under `key` if what is stored meets `expect`; otherwise changes
    /// nothing and answers [`Cas::Conflict`] with what is stored.
    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError>;

    /// Takes the lease on `key` for `ttl` from `now` (wall clock), if nobody else holds an
    /// unexpired one. Taking a lease one already holds renews it.
    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError>;

    /// Gives the lease on `key` back, if `holder` holds it.
    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<S: AsyncTokenStore + ?Sized> AsyncTokenStore for std::sync::Arc<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        (**self).load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        (**self).compare_and_swap(key, expect, record).await
    }

    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        (**self).try_lease(key, holder, ttl, now).await
    }

    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        (**self).release(key, holder).await
    }
}

/// What a binding's token manager holds to reach its store: a cheap handle (an `Arc`),
/// with a memory store for managers given none.
pub trait StoreHandle: Clone + Send + Sync + 'static {
    /// A fresh [`MemoryStore`] of the manager's own.
    fn memory() -> Self;
}

impl StoreHandle for std::sync::Arc<dyn TokenStore> {
    fn memory() -> Self {
        std::sync::Arc::new(MemoryStore::new())
    }
}

/// A store's URL (`redis://`, `postgres://`) as it may be shown: the password of its
/// user-info replaced by `***` (a lone user-info too, which Redis reads as a password), and
/// so is the value of a `password=` query parameter (PostgreSQL reads one).
///
/// A password with an unencoded `/`, `?` or `#` in it ends the authority early for RFC 3986
/// (`postgres://app:pa/ss@db/app`), but tokio-postgres reads the user-info up to the first
/// `@` all the same: when the authority has no `@`, everything before the first `@` is
/// masked as user-info. That may hide more than a password (an `@` in a path or a query),
/// never less.
pub fn url_without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@').or_else(|| rest.find('@'));
    let (masked_userinfo, rest) = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                // `redis://secret@host`: Redis reads a lone user-info as the password.
                None => "***@".to_owned(),
            };
            (masked, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    format!(
        "{scheme}://{masked_userinfo}{}",
        without_password_parameters(rest)
    )
}

/// `text` with the value of every `password=` parameter (one that follows a `?` or a `&`)
/// replaced by `***`. A value runs to the next `&` (tokio-postgres knows no fragment, so a
/// `#` is part of it), and a name counts once percent-decoded (`pass%77ord`).
fn without_password_parameters(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['?', '&']) {
        shown.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        let end = rest.find('&').unwrap_or(rest.len());
        match rest[..end].split_once('=') {
            Some((name, _))
                if percent_encoding::percent_decode_str(name)
                    .decode_utf8_lossy()
                    .eq_ignore_ascii_case("password") =>
            {
                shown.push_str(name);
                shown.push_str("=***");
            }
            _ => shown.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    shown.push_str(rest);
    shown
}

impl<S: TokenStore + ?Sized> TokenStore for std::sync::Arc<S> {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        (**self).load(key)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        (**self).compare_and_swap(key, expect, record)
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        (**self).try_lease(key, holder, ttl, now)
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        (**self).release(key, holder)
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_injective_and_hold_no_secret() {
        let a = StoreKey::client_credentials("https://a/token", "id", "client_secret_post", "x y");
        let b = StoreKey::client_credentials("https://a/token", "id", "client_secret_post", "x");
        let c = StoreKey::client_credentials("https://a/token", "id\",\"x", "m", "y");
        assert_ne!(a, b);
        assert_ne!(a.as_str(), c.as_str());
        assert_eq!(
            a.as_str(),
            r#"["client_credentials","https://a/token","id","client_secret_post","x y"]"#
        );
        let alice = ConnectionName::new("alice").unwrap();
        let user = StoreKey::user("https://a/token", "id", "client_secret_post", &alice);
        assert_eq!(user.connection(), Some("alice"));
        assert_ne!(
            user,
            StoreKey::client_credentials("https://a/token", "id", "client_secret_post", "alice")
        );
        for bad in ["", "a\nb", &"x".repeat(MAX_CONNECTION_NAME + 1)] {
            assert!(ConnectionName::new(bad).is_err());
        }
        assert!(ConnectionName::new("é".repeat(MAX_CONNECTION_NAME)).is_ok());
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            url_without_password("redis://:hunter2@h:6379/2"),
            "redis://:***@h:6379/2"
        );
        assert_eq!(
            url_without_password("rediss://app:hunter2@h/0"),
            "rediss://app:***@h/0"
        );
        assert_eq!(url_without_password("redis://hunter2@h"), "redis://***@h");
        assert_eq!(url_without_password("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(url_without_password("hunter2"), "(not a URL)");
        assert_eq!(
            url_without_password("postgres://app@h/db?sslmode=require&PASSWORD=hunter2&x=1"),
            "postgres://***@h/db?sslmode=require&PASSWORD=***&x=1"
        );
        // An @ in the password itself.
        assert_eq!(
            url_without_password("redis://u:p@ss@h:1"),
            "redis://u:***@h:1"
        );
        // A password with what ends an authority in it: masked up to its `@`.
        for (url, shown) in [
            (
                "postgres://app:s3cr/et@db.internal/app",
                "postgres://app:***@db.internal/app",
            ),
            (
                "postgres://app:s3?cr#et@db/app",
                "postgres://app:***@db/app",
            ),
            ("redis://:a/b@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://s/cret@h", "redis://***@h"),
        ] {
            assert_eq!(url_without_password(url), shown, "{url}");
        }
        // An @ only in a query: more is hidden than needed, nothing secret is shown.
        assert_eq!(
            url_without_password("postgres://u@h/db?a=1&password=pw#f&password=x"),
            "postgres://***@h/db?a=1&password=***&password=***"
        );
        // A `#` is part of a value to tokio-postgres, and names are percent-decoded.
        for (url, shown) in [
            (
                "postgres://h/app?password=s3#cret",
                "postgres://h/app?password=***",
            ),
            (
                "postgres://h/app?pass%77ord=secret",
                "postgres://h/app?pass%77ord=***",
            ),
            (
                "postgres://h/app?%70assword=secret&x=1",
                "postgres://h/app?%70assword=***&x=1",
            ),
        ] {
            assert_eq!(url_without_password(url), shown, "{url}");
        }
        assert_eq!(
            url_without_password("postgres://h/db?application_name=me@x&password=pw"),
            "postgres://***@x&password=***"
        );
    }

    /// A memory store behind async methods.
    struct Async(MemoryStore);

    #[async_trait::async_trait]
    impl AsyncTokenStore for Async {
        async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
            self.0.load(key)
        }
        async fn compare_and_swap(
            &self,
            key: &StoreKey,
            expect: Expect,
            record: &TokenRecord,
        ) -> Result<Cas, StoreError> {
            self.0.compare_and_swap(key, expect, record)
        }
        async fn try_lease(
            &self,
            key: &StoreKey,
            holder: &LeaseHolder,
            ttl: Duration,
            now: SystemTime,
        ) -> Result<Lease, StoreError> {
            self.0.try_lease(key, holder, ttl, now)
        }
        async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
            self.0.release(key, holder)
        }
    }

    /// The value of a future that is ready at its first poll (these are: no I/O).
    fn now<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("a memory store waited"),
        }
    }

    #[test]
    fn an_arc_of_an_async_store_is_that_store() {
        let store: std::sync::Arc<dyn AsyncTokenStore> =
            std::sync::Arc::new(Async(MemoryStore::new()));
        let shared = std::sync::Arc::new(store);
        let key = StoreKey::client_credentials("u", "c", "m", "s");
        let record = TokenRecord {
            access_token: Some(AccessToken::new("a")),
            obtained_at: SystemTime::UNIX_EPOCH,
            expires_in: 1,
            refresh_token: None,
        };
        // Through the Arc<Arc<dyn …>> impl: every call reaches the store.
        assert_eq!(
            now(AsyncTokenStore::compare_and_swap(
                &shared,
                &key,
                Expect::Absent,
                &record
            ))
            .unwrap(),
            Cas::Written(1)
        );
        assert_eq!(
            now(AsyncTokenStore::load(&shared, &key))
                .unwrap()
                .unwrap()
                .record,
            record
        );
        let (a, b) = (LeaseHolder::unique(), LeaseHolder::unique());
        let ttl = Duration::from_secs(9);
        assert_eq!(
            now(AsyncTokenStore::try_lease(
                &shared,
                &key,
                &a,
                ttl,
                SystemTime::now()
            ))
            .unwrap(),
            Lease::Granted
        );
        assert!(matches!(
            now(AsyncTokenStore::try_lease(
                &shared,
                &key,
                &b,
                ttl,
                SystemTime::now()
            ))
            .unwrap(),
            Lease::Held { .. }
        ));
        now(AsyncTokenStore::release(&shared, &key, &a)).unwrap();
        assert_eq!(
            now(AsyncTokenStore::try_lease(
                &shared,
                &key,
                &b,
                ttl,
                SystemTime::now()
            ))
            .unwrap(),
            Lease::Granted
        );
    }

    #[test]
    fn expectations() {
        assert!(Expect::Absent.holds(None));
        assert!(!Expect::Absent.holds(Some(1)));
        assert!(Expect::Version(3).holds(Some(3)));
        assert!(!Expect::Version(3).holds(Some(4)));
        assert!(!Expect::Version(3).holds(None));
        assert!(Expect::Any.holds(None) && Expect::Any.holds(Some(9)));
        assert_eq!(Expect::after(None), Expect::Absent);
        assert_eq!(Expect::after(Some(2)), Expect::Version(2));
    }

    #[test]
    fn holders_are_unique_even_without_randomness() {
        struct Broken;
        impl RandomSource for Broken {
            fn fill(&mut self, _: &mut [u8]) -> Result<(), crate::error::RandomnessError> {
                Err(crate::error::RandomnessError { code: None })
            }
        }
        let a = LeaseHolder::generate(&mut Broken);
        let b = LeaseHolder::generate(&mut Broken);
        assert_ne!(a, b);
        assert!(
            a.to_hex()
                .starts_with(&format!("{:08x}", std::process::id()))
        );
        assert_ne!(
            LeaseHolder::generate(&mut crate::random::OsRandom),
            LeaseHolder::generate(&mut crate::random::OsRandom)
        );
    }

    #[test]
    fn unique_holders_share_a_process_prefix_and_never_repeat() {
        let (a, b) = (LeaseHolder::unique(), LeaseHolder::unique());
        assert_ne!(a, b);
        assert_eq!(a.0[..8], b.0[..8]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..1000).map(|_| LeaseHolder::unique()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<LeaseHolder> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_by_key(|holder| holder.0);
        all.dedup();
        assert_eq!(all.len(), 4000);
    }

    #[test]
    fn lease_holders_round_trip_through_hex() {
        let holder = LeaseHolder::random(&mut crate::random::OsRandom).unwrap();
        let hex = holder.to_hex();
        assert_eq!(hex.len(), 32);
        assert_eq!(LeaseHolder::from_hex(&hex), Some(holder));
        assert_eq!(LeaseHolder::from_hex("zz"), None);
        assert_eq!(LeaseHolder::from_hex(&"g".repeat(32)), None);
        assert_eq!(LeaseHolder::from_hex(&"é".repeat(16)), None);
    }
}
