//! A fleet of replicas sharing one Redis: several processes, each with fifty tasks asking
//! for the same application token at once, against the embedded obauth-mock. The lease in
//! Redis lets one process fetch while the others wait and adopt its token: one token
//! request reaches the mock for the whole fleet.
//!
//! `cargo run -p obauth-async --features redis --example redis_fleet` starts a
//! `redis-server` of its own (on a free loopback port, in a temporary directory), or uses
//! `REDIS_URL` if it is set.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::process::{Command, Stdio};

use obauth_async::core::BaseUrl;
use obauth_async::core::truelayer::Environment;
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{ClientSecret, Scopes};
use obauth_async::{Error, RedisStore, TokenSource, TrueLayerClient};
use obauth_mock::{Endpoint, MockServer};

const PROCESSES: usize = 6;
const TASKS: usize = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, redis, base] = args.as_slice()
        && flag == "--replica"
    {
        return Ok(replica(redis, base)?);
    }
    let own_server;
    let redis = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            own_server = obauth_test_peers::RedisServer::start()?;
            own_server.url()
        }
    };
    let mock = MockServer::start();
    let exe = std::env::current_exe()?;
    let replicas: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--replica", &redis, &mock.base_url()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut tokens = Vec::new();
    for replica in replicas {
        let output = replica.wait_with_output()?;
        if !output.status.success() {
            return Err(format!("a replica failed: {}", output.status).into());
        }
        tokens.extend(String::from_utf8(output.stdout)?.lines().map(str::to_owned));
    }
    tokens.sort();
    tokens.dedup();
    println!(
        "{PROCESSES} processes × {TASKS} tasks on one Redis: {} token request(s) reached the mock, \
         {} distinct token(s) served",
        mock.requests(Endpoint::TrueLayerToken),
        tokens.len()
    );
    Ok(())
}

/// One replica: fifty tasks ask at once; prints the start of each token it was served.
fn replica(redis: &str, base: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(base)?),
            obauth_mock::TRUELAYER_CLIENT_ID,
        )
        .client_secret(ClientSecret::new(obauth_mock::TRUELAYER_CLIENT_SECRET))
        .build()?;
        let tokens = TokenSource::truelayer(client, Scopes::from([Scope::Payments]))
            .with_store(RedisStore::open(redis)?);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let tokens = tokens.clone();
            tasks.spawn(async move { tokens.access_token().await });
        }
        while let Some(joined) = tasks.join_next().await {
            let token = joined.unwrap()?;
            println!(
                "{}",
                &token.expose_secret()[..16.min(token.expose_secret().len())]
            );
        }
        Ok(())
    })
}
