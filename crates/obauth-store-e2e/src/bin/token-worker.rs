//! A process that asks a token manager backed by SQLite or Redis for tokens, as a service
//! replica would, for the process tests. Arguments, all `--name value` except the flags:
//!
//! * `--binding async|blocking`, `--store PATH|redis://…|postgres://…` (the async binding
//!   uses the async Redis store; PostgreSQL is async only), `--base URL` (the mock's
//!   TrueLayer origin)
//! * `--mode app` (client credentials, `payments`) or `--mode user --connection NAME`
//! * `--callers N` concurrent callers (default 1), `--deadline-ms`, `--lease-poll-ms`
//! * `--refresh`: a forced refresh (`refresh_now`) instead of `access_token`
//! * `--repeat N`: each caller asks N times in a row (default 1); `--every-ms M`: with a
//!   pause of M ms between
//! * `--hang-after-persist`: after the store has written a record holding a refresh token,
//!   print `persisted` and hang, so that a test can kill the process right there
//! * `--pause-before-persist MS`: before each write, print `persisting` and wait MS ms, so
//!   that a test can stop the process (SIGSTOP) just before it writes
//! * `--churn N`: instead, write N records in a row (for crash tests)
//!
//! Prints `ok TOKEN` or `err KIND MESSAGE` per caller and exits 0 if every caller got a
//! token, 1 otherwise, 2 on bad arguments.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use obauth_async::RedisStore as AsyncRedisStore;
use obauth_blocking::core::manager::ManagerOptions;
use obauth_blocking::core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord, TokenStore,
};
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::{BaseUrl, StoreError};
use obauth_blocking::types::{AccessToken, ClientSecret, Scopes, truelayer::Scope};
use obauth_blocking::{Error, RedisStore, SqliteStore};

/// A store with the hooks that stop the process around a write.
struct Hooked<S> {
    inner: S,
    hang_after_persist: bool,
    pause_before_persist: Option<Duration>,
}

impl<S> Hooked<S> {
    fn before(&self) {
        if let Some(pause) = self.pause_before_persist {
            println!("persisting");
            let _ = std::io::stdout().flush();
            std::thread::sleep(pause);
        }
    }

    fn after(&self, record: &TokenRecord, written: &Cas) {
        if self.hang_after_persist
            && record.refresh_token.is_some()
            && matches!(written, Cas::Written(_))
        {
            println!("persisted");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: AsyncTokenStore> AsyncTokenStore for Hooked<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.before();
        let written = self.inner.compare_and_swap(key, expect, record).await?;
        self.after(record, &written);
        Ok(written)
    }

    async fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.inner.try_lease(key, holder, ttl, now).await
    }

    async fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.inner.release(key, holder).await
    }
}

impl TokenStore for Hooked<Box<dyn TokenStore>> {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.inner.load(key)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.before();
        let written = self.inner.compare_and_swap(key, expect, record)?;
        self.after(record, &written);
        Ok(written)
    }

    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.inner.try_lease(key, holder, ttl, now)
    }

    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.inner.release(key, holder)
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(name) = args.next() {
            let name = name
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {name}"))?
                .to_owned();
            if matches!(name.as_str(), "refresh" | "hang-after-persist") {
                map.insert(name, String::new());
            } else {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                map.insert(name, value);
            }
        }
        Ok(Self(map))
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.0.get(name).map_or(Ok(default), |value| {
            value.parse().map_err(|_| format!("--{name}"))
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

fn main() {
    let code = match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(message) => {
            eprintln!("token-worker: {message}");
            2
        }
    };
    std::process::exit(code);
}

fn report(results: &[Result<AccessToken, Error>]) -> bool {
    let mut out = std::io::stdout().lock();
    for result in results {
        let _ = match result {
            Ok(token) => writeln!(out, "ok {}", token.expose_secret()),
            Err(Error::Store(error)) => writeln!(out, "err store/{:?} {error}", error.kind()),
            Err(error) => writeln!(out, "err other {error}"),
        };
    }
    results.iter().all(Result::is_ok)
}

fn run() -> Result<bool, String> {
    let args = Args::parse()?;
    let location = args.get("store")?;
    if let Some(count) = args.0.get("churn") {
        let store = SqliteStore::open(location).map_err(|error| error.to_string())?;
        return churn(&store, count.parse().map_err(|_| "--churn")?);
    }
    let hang_after_persist = args.flag("hang-after-persist");
    let pause_before_persist = args
        .0
        .get("pause-before-persist")
        .map(|ms| ms.parse().map(Duration::from_millis))
        .transpose()
        .map_err(|_| "--pause-before-persist")?;
    let redis = location.starts_with("redis://");
    let binding = args.get("binding")?;
    let sync_store = |inner: Box<dyn TokenStore>| -> Arc<dyn TokenStore> {
        Arc::new(Hooked {
            inner,
            hang_after_persist,
            pause_before_persist,
        })
    };
    let open_sync = || -> Result<Arc<dyn TokenStore>, String> {
        Ok(sync_store(if redis {
            Box::new(RedisStore::open(location).map_err(|error| error.to_string())?)
        } else {
            Box::new(SqliteStore::open(location).map_err(|error| error.to_string())?)
        }))
    };
    let options = ManagerOptions {
        deadline: Duration::from_millis(args.number("deadline-ms", 20_000)?),
        // Short by default here: the tests kill lease holders and wait their leases out.
        lease_grace: Duration::from_millis(args.number("lease-grace-ms", 200)?),
        lease_poll: Duration::from_millis(args.number("lease-poll-ms", 25)?),
        ..ManagerOptions::default()
    };
    let base = BaseUrl::parse(args.get("base")?).map_err(|error| error.to_string())?;
    let callers = usize::try_from(args.number("callers", 1)?).map_err(|_| "--callers")?;
    let user = match args.get("mode")? {
        "app" => None,
        "user" => Some(args.get("connection")?.to_owned()),
        other => return Err(format!("--mode {other}")),
    };
    let plan = Plan {
        user,
        refresh: args.flag("refresh"),
        callers,
        repeat: args.number("repeat", 1)?,
        every: Duration::from_millis(args.number("every-ms", 0)?),
    };
    let results = match binding {
        "blocking" => blocking(base, open_sync()?, options, &plan)?,
        "async" => {
            let hooked = |inner: Arc<dyn AsyncTokenStore>| -> obauth_async::Store {
                let hooked: Arc<dyn AsyncTokenStore> = Arc::new(Hooked {
                    inner,
                    hang_after_persist,
                    pause_before_persist,
                });
                hooked.into()
            };
            let store: obauth_async::Store = if redis {
                hooked(Arc::new(
                    AsyncRedisStore::open(location).map_err(|error| error.to_string())?,
                ))
            } else if location.starts_with("postgres://") {
                hooked(Arc::new(
                    obauth_async::PostgresStore::open(location)
                        .map_err(|error| error.to_string())?,
                ))
            } else {
                open_sync()?.into()
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?
                .block_on(asynchronous(base, store, options, &plan))?
        }
        other => return Err(format!("--binding {other}")),
    };
    Ok(report(&results))
}

/// What each caller does.
struct Plan {
    /// A user's connection, or the application token.
    user: Option<String>,
    /// `refresh_now` rather than `access_token`.
    refresh: bool,
    callers: usize,
    /// Calls per caller.
    repeat: u64,
    /// Pause between a caller's calls.
    every: Duration,
}

fn blocking(
    base: BaseUrl,
    store: Arc<dyn TokenStore>,
    options: ManagerOptions,
    plan: &Plan,
) -> Result<Vec<Result<AccessToken, Error>>, String> {
    use obauth_blocking::{TokenSource, TrueLayerClient, UserTokens};
    let client = TrueLayerClient::builder(Environment::Custom(base), "mock-client")
        .client_secret(ClientSecret::new("mock-secret"))
        .build()
        .map_err(|error| error.to_string())?;
    let call: Box<dyn Fn() -> Result<AccessToken, Error> + Sync> = match &plan.user {
        None => {
            let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
                .with_store(store)
                .with_options(options)
                .map_err(|error| error.to_string())?;
            Box::new(move || source.access_token())
        }
        Some(name) => {
            let tokens = UserTokens::open(&client, name, store)
                .and_then(|tokens| tokens.with_options(options))
                .map_err(|error| error.to_string())?;
            let refresh = plan.refresh;
            Box::new(move || {
                if refresh {
                    tokens.refresh_now()
                } else {
                    tokens.access_token()
                }
            })
        }
    };
    let barrier = std::sync::Barrier::new(plan.callers);
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.callers)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let mut results = Vec::new();
                    for n in 0..plan.repeat {
                        if n > 0 {
                            std::thread::sleep(plan.every);
                        }
                        results.push(call());
                    }
                    results
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_else(|_| vec![Err(panicked())]))
            .collect()
    }))
}

async fn asynchronous(
    base: BaseUrl,
    store: obauth_async::Store,
    options: ManagerOptions,
    plan: &Plan,
) -> Result<Vec<Result<AccessToken, Error>>, String> {
    use obauth_async::{TokenSource, TrueLayerClient, UserTokens};
    let client = TrueLayerClient::builder(Environment::Custom(base), "mock-client")
        .client_secret(ClientSecret::new("mock-secret"))
        .build()
        .map_err(|error| error.to_string())?;
    let (source, tokens) = match &plan.user {
        None => {
            let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
                .with_store(store)
                .with_options(options)
                .map_err(|error| error.to_string())?;
            (Some(source), None)
        }
        Some(name) => {
            let tokens = UserTokens::open(&client, name, store)
                .and_then(|tokens| tokens.with_options(options))
                .map_err(|error| error.to_string())?;
            (None, Some(tokens))
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.callers {
        let (source, tokens) = (source.clone(), tokens.clone());
        let (refresh, repeat, every) = (plan.refresh, plan.repeat, plan.every);
        tasks.spawn(async move {
            let mut results = Vec::new();
            for n in 0..repeat {
                if n > 0 {
                    tokio::time::sleep(every).await;
                }
                results.push(match (&source, &tokens) {
                    (Some(source), _) => source.access_token().await,
                    (_, Some(tokens)) if refresh => tokens.refresh_now().await,
                    (_, Some(tokens)) => tokens.access_token().await,
                    (None, None) => Err(panicked()),
                });
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.extend(joined.unwrap_or_else(|_| vec![Err(panicked())]));
    }
    Ok(results)
}

fn panicked() -> Error {
    Error::Store(StoreError::new(
        obauth_blocking::core::StoreErrorKind::Other,
        "a caller panicked",
    ))
}

/// Writes `count` records in a row under one key, each over the last.
fn churn(store: &SqliteStore, count: u64) -> Result<bool, String> {
    let key = StoreKey::client_credentials("churn", "churn", "churn", "churn");
    for n in 0..count {
        let record = TokenRecord {
            access_token: Some(AccessToken::new(format!("churn-{n}-{}", "x".repeat(2000)))),
            obtained_at: SystemTime::now(),
            expires_in: n,
            refresh_token: None,
        };
        store
            .compare_and_swap(&key, Expect::Any, &record)
            .map_err(|error| error.to_string())?;
        println!("wrote {n}");
    }
    Ok(true)
}
