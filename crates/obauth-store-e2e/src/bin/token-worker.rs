//! A process that asks a SQLite-backed token manager for tokens, as a service replica
//! would, for the process tests. Arguments, all `--name value` except the flags:
//!
//! * `--binding async|blocking`, `--store PATH`, `--base URL` (the mock's TrueLayer origin)
//! * `--mode app` (client credentials, `payments`) or `--mode user --connection NAME`
//! * `--callers N` concurrent callers (default 1), `--deadline-ms`, `--lease-poll-ms`
//! * `--refresh`: a forced refresh (`refresh_now`) instead of `access_token`
//! * `--hang-after-persist`: after the store has written a record holding a refresh token,
//!   print `persisted` and hang, so that a test can kill the process right there
//! * `--churn N`: instead, write N records in a row (for crash tests)
//!
//! Prints `ok TOKEN` or `err KIND MESSAGE` per caller and exits 0 if every caller got a
//! token, 1 otherwise, 2 on bad arguments.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use obauth_blocking::core::manager::ManagerOptions;
use obauth_blocking::core::store::{
    Cas, Expect, Lease, LeaseHolder, StoreKey, Stored, TokenRecord, TokenStore,
};
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::{BaseUrl, StoreError};
use obauth_blocking::types::{AccessToken, ClientSecret, Scopes, truelayer::Scope};
use obauth_blocking::{Error, SqliteStore};

/// SQLite, with the hook that stops the process right after a refresh token was written.
struct Hooked {
    inner: SqliteStore,
    hang_after_persist: bool,
}

impl TokenStore for Hooked {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.inner.load(key)
    }

    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        let written = self.inner.compare_and_swap(key, expect, record)?;
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
    let store = Arc::new(Hooked {
        inner: SqliteStore::open(args.get("store")?).map_err(|error| error.to_string())?,
        hang_after_persist: args.flag("hang-after-persist"),
    });
    if let Some(count) = args.0.get("churn") {
        return churn(&store.inner, count.parse().map_err(|_| "--churn")?);
    }
    let options = ManagerOptions {
        deadline: Duration::from_millis(args.number("deadline-ms", 20_000)?),
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
    let refresh = args.flag("refresh");
    let results = match args.get("binding")? {
        "blocking" => blocking(base, store, options, user, refresh, callers)?,
        "async" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?
            .block_on(asynchronous(base, store, options, user, refresh, callers))?,
        other => return Err(format!("--binding {other}")),
    };
    Ok(report(&results))
}

fn blocking(
    base: BaseUrl,
    store: Arc<Hooked>,
    options: ManagerOptions,
    user: Option<String>,
    refresh: bool,
    callers: usize,
) -> Result<Vec<Result<AccessToken, Error>>, String> {
    use obauth_blocking::{TokenSource, TrueLayerClient, UserTokens};
    let client = TrueLayerClient::builder(Environment::Custom(base), "mock-client")
        .client_secret(ClientSecret::new("mock-secret"))
        .build()
        .map_err(|error| error.to_string())?;
    let call: Box<dyn Fn() -> Result<AccessToken, Error> + Sync> = match user {
        None => {
            let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
                .with_store(store)
                .with_options(options)
                .map_err(|error| error.to_string())?;
            Box::new(move || source.access_token())
        }
        Some(name) => {
            let tokens = UserTokens::open(&client, &name, store)
                .and_then(|tokens| tokens.with_options(options))
                .map_err(|error| error.to_string())?;
            Box::new(move || {
                if refresh {
                    tokens.refresh_now()
                } else {
                    tokens.access_token()
                }
            })
        }
    };
    let barrier = std::sync::Barrier::new(callers);
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = (0..callers)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| Err(panicked())))
            .collect()
    }))
}

async fn asynchronous(
    base: BaseUrl,
    store: Arc<Hooked>,
    options: ManagerOptions,
    user: Option<String>,
    refresh: bool,
    callers: usize,
) -> Result<Vec<Result<AccessToken, Error>>, String> {
    use obauth_async::{TokenSource, TrueLayerClient, UserTokens};
    let client = TrueLayerClient::builder(Environment::Custom(base), "mock-client")
        .client_secret(ClientSecret::new("mock-secret"))
        .build()
        .map_err(|error| error.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    match user {
        None => {
            let source = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
                .with_store(store)
                .with_options(options)
                .map_err(|error| error.to_string())?;
            for _ in 0..callers {
                let source = source.clone();
                tasks.spawn(async move { source.access_token().await });
            }
        }
        Some(name) => {
            let tokens = UserTokens::open(&client, &name, store)
                .and_then(|tokens| tokens.with_options(options))
                .map_err(|error| error.to_string())?;
            for _ in 0..callers {
                let tokens = tokens.clone();
                tasks.spawn(async move {
                    if refresh {
                        tokens.refresh_now().await
                    } else {
                        tokens.access_token().await
                    }
                });
            }
        }
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.unwrap_or_else(|_| Err(panicked())));
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
