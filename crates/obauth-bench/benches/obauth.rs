//! obauth against the best a user could write instead, as ratios from one run.
//! `cargo xtask bench` runs this and writes docs/benchmarks.md; `-- --test` is a smoke run.

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::truelayer::{Environment, TrueLayerConfig};
use obauth_async::core::worldline::assertion::{AssertionConfig, RsaKeySigner, SigningCertificate};
use obauth_async::core::{BaseUrl, Operation, OsRandom, RequestContext};
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, Scopes};
use obauth_bench::{TOKEN_JSON, requests, start_token_server};
use rsa::signature::Signer;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn token_response() -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(TOKEN_JSON.as_bytes().to_vec())
        .unwrap()
}

/// A comparison: obauth's side and the reference's, run by criterion and by the paired
/// measurement alike.
struct Pair {
    group: &'static str,
    obauth: Box<dyn Fn()>,
    reference: Box<dyn Fn()>,
    /// Iterations per timed block in the paired measurement.
    block: u32,
}

/// Row 1: build a code exchange and parse a fixed answer, against oauth2-rs 5.
fn build_parse() -> Pair {
    let config = TrueLayerConfig::new(
        Environment::Custom(BaseUrl::parse("http://127.0.0.1:1").unwrap()),
        "client-id",
    )
    .unwrap()
    .with_client_secret(ClientSecret::new("client-secret"));
    let obauth = move || {
        let op = config.exchange_code(
            AuthorizationCode::new("the-code"),
            "https://app.example/cb",
            Some(CodeVerifier::new(VERIFIER)),
        );
        let request = op
            .build_request(&mut RequestContext::new(
                SystemTime::UNIX_EPOCH,
                &mut OsRandom,
            ))
            .unwrap();
        black_box(&request);
        black_box(op.parse_response(&token_response()).unwrap());
    };

    use oauth2::basic::BasicClient;
    use oauth2::{AuthUrl, ClientId, PkceCodeVerifier, RedirectUrl, TokenUrl};
    let client = BasicClient::new(ClientId::new("client-id".into()))
        .set_client_secret(oauth2::ClientSecret::new("client-secret".into()))
        .set_auth_uri(AuthUrl::new("http://127.0.0.1:1/".into()).unwrap())
        .set_token_uri(TokenUrl::new("http://127.0.0.1:1/connect/token".into()).unwrap())
        .set_redirect_uri(RedirectUrl::new("https://app.example/cb".into()).unwrap());
    let reference = move || {
        let http = |request: oauth2::HttpRequest| -> Result<oauth2::HttpResponse, std::io::Error> {
            black_box(&request);
            Ok(token_response())
        };
        black_box(
            client
                .exchange_code(oauth2::AuthorizationCode::new("the-code".into()))
                .set_pkce_verifier(PkceCodeVerifier::new(VERIFIER.into()))
                .request(&http)
                .unwrap(),
        );
    };
    Pair {
        group: "build_parse",
        obauth: Box::new(obauth),
        reference: Box::new(reference),
        block: 2_000,
    }
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct HandToken {
    access_token: String,
    expires_in: u64,
    token_type: String,
    scope: Option<String>,
}

fn hand_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "grant_type": "client_credentials",
        "client_id": "client-id",
        "client_secret": "client-secret",
        "scope": "payments",
    }))
    .unwrap()
}

const USER_AGENT: &str = obauth_async::core::USER_AGENT;

/// Row 2: client credentials on loopback, obauth-async against raw reqwest.
fn async_e2e(base: &str) -> Pair {
    let url = format!("{base}/connect/token");
    let runtime = std::rc::Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let reqwest_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let obauth = obauth_async::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .retry_policy(RetryPolicy::never())
    .reqwest_client(reqwest_client.clone())
    .build()
    .unwrap();
    let scopes = Scopes::from([Scope::Payments]);
    let rt = std::rc::Rc::clone(&runtime);
    Pair {
        group: "e2e_async",
        obauth: Box::new(move || {
            black_box(
                rt.block_on(obauth.client_credentials(scopes.clone()))
                    .unwrap(),
            );
        }),
        reference: Box::new(move || {
            black_box(runtime.block_on(async {
                let response = reqwest_client
                    .post(&url)
                    .header("accept", "application/json")
                    .header("content-type", "application/json")
                    .header("user-agent", USER_AGENT)
                    .body(hand_body())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let bytes = response.bytes().await.unwrap();
                serde_json::from_slice::<HandToken>(&bytes).unwrap()
            }));
        }),
        block: 50,
    }
}

/// Row 3: client credentials on loopback, obauth-blocking against raw ureq, same agent.
fn blocking_e2e(base: &str) -> Pair {
    let url = format!("{base}/connect/token");
    let timeouts = obauth_blocking::Timeouts {
        connect: Duration::from_secs(10),
        total: Duration::from_secs(30),
    };
    let agent = obauth_blocking::UreqTransport::agent(timeouts);
    let blocking = obauth_blocking::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .retry_policy(RetryPolicy::never())
    .timeouts(timeouts)
    .agent(agent.clone())
    .build()
    .unwrap();
    let scopes = Scopes::from([Scope::Payments]);
    Pair {
        group: "e2e_blocking",
        obauth: Box::new(move || {
            black_box(blocking.client_credentials(scopes.clone()).unwrap());
        }),
        reference: Box::new(move || {
            let mut response = agent
                .post(&url)
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .header("user-agent", USER_AGENT)
                .send(&hand_body()[..])
                .unwrap();
            assert!(response.status().is_success());
            let bytes = response.body_mut().read_to_vec().unwrap();
            black_box(serde_json::from_slice::<HandToken>(&bytes).unwrap());
        }),
        block: 50,
    }
}

/// Row 5: a Worldline client assertion against a bare RS256 signature, same backend.
fn assertion() -> Pair {
    let identity = obauth_mock::SigningIdentity::generate().unwrap();
    let certificate = SigningCertificate::from_pem(&identity.certificate_pem).unwrap();
    let config = AssertionConfig::new(
        RsaKeySigner::from_pem(&identity.private_key_pem, &certificate).unwrap(),
    )
    .unwrap();
    let audience = "https://openbanking.example/auth/realms/realm";
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(
        rsa::PrivateKey::from_pkcs8_pem(&identity.private_key_pem).unwrap(),
    );
    // The same length as an assertion's signing input.
    let input = vec![b'a'; 420];
    Pair {
        group: "assertion",
        obauth: Box::new(move || {
            black_box(
                config
                    .sign("client-id", audience, SystemTime::now(), &mut OsRandom)
                    .unwrap(),
            );
        }),
        reference: Box::new(move || {
            black_box(key.sign(black_box(&input)));
        }),
        block: 5,
    }
}

fn criterion_pair(c: &mut Criterion, pair: &Pair) {
    let mut group = c.benchmark_group(pair.group);
    group.bench_function("obauth", |b| b.iter(|| (pair.obauth)()));
    group.bench_function("reference", |b| b.iter(|| (pair.reference)()));
    group.finish();
}

/// Alternates blocks of obauth's side and the reference's, so that slow drifts of a shared
/// machine hit both alike; returns the medians per iteration and the median of the
/// per-round ratios.
fn paired(pair: &Pair, rounds: usize) -> serde_json::Value {
    let time = |f: &dyn Fn(), n: u32| {
        let began = Instant::now();
        for _ in 0..n {
            f();
        }
        began.elapsed() / n
    };
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Swap the order every round so neither side always runs first.
        let (a, b) = if round % 2 == 0 {
            let a = time(&*pair.obauth, pair.block);
            (a, time(&*pair.reference, pair.block))
        } else {
            let b = time(&*pair.reference, pair.block);
            (time(&*pair.obauth, pair.block), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        ours.push(a);
        theirs.push(b);
    }
    ratios.sort_by(f64::total_cmp);
    serde_json::json!({
        "obauth_ns": median(ours.into_iter()).as_nanos() as u64,
        "reference_ns": median(theirs.into_iter()).as_nanos() as u64,
        "ratio": ratios[ratios.len() / 2],
    })
}

/// Polls a future that is expected to be ready at once (a fresh cached token).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a fresh cached read should not wait"),
    }
}

/// How far the heap is shifted before a measuring thread starts, for thread `thread` of
/// round `round`: the speed of copying the token (the read's biggest part) depends on
/// where the allocator puts the copy, and a new thread would otherwise put it at the same
/// place every round; shifting it spreads the rounds over many placements, so that the
/// medians are not one placement's luck.
fn heap_shift(round: usize, thread: usize) -> usize {
    (round * 7 + thread * 3) % 32 * 112
}

/// Runs `measure` on a new thread whose heap is shifted by `shift` bytes first.
fn on_shifted_thread<R: Send>(shift: usize, measure: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let padding = black_box(vec![0u8; shift]);
                let result = measure();
                drop(padding);
                result
            })
            .join()
            .unwrap()
    })
}

/// Nanoseconds per call of `read`, over `block` calls.
fn per_call(block: u32, read: &dyn Fn()) -> f64 {
    let began = Instant::now();
    for _ in 0..block {
        read();
    }
    began.elapsed().as_secs_f64() * 1e9 / f64::from(block)
}

/// Throughput of `read` on `threads` threads started together and stopped together after
/// `window`: the sum of the threads' calls per second. (Giving each thread a fixed number
/// of calls and timing the slowest would measure the slower thread's placement instead.)
fn throughput(threads: usize, round: usize, window: Duration, read: &(dyn Fn() + Sync)) -> f64 {
    let start = std::sync::Barrier::new(threads + 1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, stop) = (&start, &stop);
                scope.spawn(move || {
                    let padding = black_box(vec![0u8; heap_shift(round, thread)]);
                    start.wait();
                    let began = Instant::now();
                    let mut calls = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for _ in 0..256 {
                            read();
                        }
                        calls += 256;
                    }
                    let rate = calls as f64 / began.elapsed().as_secs_f64();
                    drop(padding);
                    rate
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(window);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    })
}

/// The 2-thread / 1-thread throughput ratio of `read` in `round`, the two orders
/// alternating between rounds; returns (1 thread, 2 threads, ratio).
fn scaling(round: usize, window: Duration, read: &(dyn Fn() + Sync)) -> (f64, f64, f64) {
    let (one, two) = if round.is_multiple_of(2) {
        let one = throughput(1, round, window, read);
        (one, throughput(2, round, window, read))
    } else {
        let two = throughput(2, round, window, read);
        (throughput(1, round, window, read), two)
    };
    (one, two, two / one)
}

fn median_f64(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Row 4: a cached token read, measured by hand so that the blocks alternate like the
/// paired rows. Each round times the blocking and the async read on one thread, then the
/// throughput of one thread and of two; every measuring thread starts with its heap
/// shifted (see [`heap_shift`]). 4c′ runs the same scaling measurement on the read's work
/// done on thread-private data: what this machine gives that work when nothing is shared.
fn cached_read(base: &str, rounds: usize, block: u32, window: Duration) -> serde_json::Value {
    let scopes = Scopes::from([Scope::Payments]);
    let blocking = obauth_blocking::TokenSource::truelayer(
        obauth_blocking::TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(base).unwrap()),
            "client-id",
        )
        .client_secret(ClientSecret::new("client-secret"))
        .build()
        .unwrap(),
        scopes.clone(),
    );
    blocking.access_token().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = obauth_async::TokenSource::truelayer(
        obauth_async::TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(base).unwrap()),
            "client-id",
        )
        .client_secret(ClientSecret::new("client-secret"))
        .build()
        .unwrap(),
        scopes,
    );
    runtime.block_on(source.access_token()).unwrap();

    let read_blocking = || {
        black_box(blocking.access_token().unwrap());
    };
    let read_async = || {
        black_box(ready(source.access_token()).unwrap());
    };
    // The read's own work on thread-private data: a clock read and a copy of a 1 KB
    // token (allocated, copied, wiped and freed), with nothing shared between threads.
    let control = || {
        thread_local! {
            static TOKEN: AccessToken = AccessToken::new("t".repeat(1016));
        }
        black_box(Instant::now());
        TOKEN.with(|token| black_box(token.clone()));
    };
    let (mut sync_reads, mut async_reads) = (Vec::new(), Vec::new());
    let (mut one, mut two, mut ratios, mut control_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        sync_reads.push(on_shifted_thread(heap_shift(round, 0), || {
            per_call(block, &read_blocking)
        }));
        async_reads.push(on_shifted_thread(heap_shift(round, 1), || {
            per_call(block, &read_async)
        }));
        let (a, b, ratio) = scaling(round, window, &read_blocking);
        one.push(a);
        two.push(b);
        ratios.push(ratio);
        control_ratios.push(scaling(round, window, &control).2);
    }
    serde_json::json!({
        "blocking_ns": median_f64(sync_reads),
        "async_ns": median_f64(async_reads),
        "one_thread_per_s": median_f64(one),
        "two_threads_per_s": median_f64(two),
        "scaling": median_f64(ratios),
        "control_scaling": median_f64(control_ratios),
    })
}

/// Row 6: measured by hand, written to target/obauth-bench/extras.json.
fn extras(base: &str, smoke: bool) -> serde_json::Value {
    let new_async = || {
        obauth_async::TrueLayerClient::builder(
            Environment::Custom(BaseUrl::parse(base).unwrap()),
            "client-id",
        )
        .client_secret(ClientSecret::new("client-secret"))
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = if smoke { 1 } else { 7 };
    let client = new_async();
    let one_request = median((0..if smoke { 3 } else { 51 }).map(|_| {
        let began = Instant::now();
        runtime
            .block_on(client.client_credentials(Scopes::from([Scope::Payments])))
            .unwrap();
        began.elapsed()
    }));
    let async_stampede = median((0..rounds).map(|_| {
        let source =
            obauth_async::TokenSource::truelayer(new_async(), Scopes::from([Scope::Payments]));
        let before = requests();
        let began = Instant::now();
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..1000 {
                let source = source.clone();
                tasks.spawn(async move { source.access_token().await });
            }
            while let Some(result) = tasks.join_next().await {
                result.unwrap().unwrap();
            }
        });
        let elapsed = began.elapsed();
        assert_eq!(
            requests() - before,
            1,
            "1,000 async callers made one request"
        );
        elapsed
    }));
    let blocking_stampede = median((0..rounds).map(|_| {
        let source = obauth_blocking::TokenSource::truelayer(
            obauth_blocking::TrueLayerClient::builder(
                Environment::Custom(BaseUrl::parse(base).unwrap()),
                "client-id",
            )
            .client_secret(ClientSecret::new("client-secret"))
            .build()
            .unwrap(),
            Scopes::from([Scope::Payments]),
        );
        let before = requests();
        let barrier = std::sync::Barrier::new(64);
        let began = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..64 {
                scope.spawn(|| {
                    barrier.wait();
                    source.access_token().unwrap();
                });
            }
        });
        let elapsed = began.elapsed();
        assert_eq!(requests() - before, 1, "64 threads made one request");
        elapsed
    }));

    serde_json::json!({
        "one_request_ns": one_request.as_nanos() as u64,
        "async_stampede_ns": async_stampede.as_nanos() as u64,
        "blocking_stampede_ns": blocking_stampede.as_nanos() as u64,
    })
}

fn median(samples: impl Iterator<Item = Duration>) -> Duration {
    let mut samples: Vec<Duration> = samples.collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let smoke = std::env::args().any(|arg| arg == "--test");
    let addr = start_token_server();
    let base = format!("http://{addr}");
    let pairs = [
        build_parse(),
        async_e2e(&base),
        blocking_e2e(&base),
        assertion(),
    ];
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for pair in &pairs {
        criterion_pair(&mut criterion, pair);
    }
    criterion.final_summary();

    let rounds = if smoke { 1 } else { 101 };
    let mut extras = extras(&base, smoke);
    extras["cached_read"] = if smoke {
        cached_read(&base, 1, 100, Duration::from_millis(1))
    } else {
        cached_read(&base, 31, 200_000, Duration::from_millis(100))
    };
    for pair in &pairs {
        extras[format!("paired_{}", pair.group)] = paired(pair, rounds);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/obauth-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("extras.json"), extras.to_string()).unwrap();
    println!("extras: {extras}");
}
