//! The heap one token manager holds with its token, beyond the client it shares, measured
//! by a counting global allocator (in its own binary: counting every allocation through
//! shared atomics would distort the timing benchmarks). Written to
//! target/obauth-bench/memory.json.

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use obauth_blocking::core::BaseUrl;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::types::truelayer::Scope;
use obauth_blocking::types::{ClientSecret, Scopes};
use obauth_blocking::{TokenSource, TrueLayerClient};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let addr = obauth_bench::start_token_server();
    let client = TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(&format!("http://{addr}")).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .build()
    .unwrap();
    // Warm the connection pool and the resolver cache: they belong to the client.
    client
        .client_credentials(Scopes::from([Scope::Payments]))
        .unwrap();

    let managers = 100;
    let region = Region::new(GLOBAL);
    let sources: Vec<TokenSource> = (0..managers)
        .map(|_| {
            let source = TokenSource::truelayer(client.clone(), Scopes::from([Scope::Payments]));
            source.access_token().unwrap();
            source
        })
        .collect();
    let stats = region.change();
    let held = (stats.bytes_allocated as i64 - stats.bytes_deallocated as i64) / managers;
    drop(sources);
    let value = serde_json::json!({ "token_source_heap_bytes": held });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/obauth-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("memory.json"), value.to_string()).unwrap();
    println!("memory: {value}");
}
