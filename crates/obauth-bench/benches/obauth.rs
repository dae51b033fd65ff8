//! obauth against the best a user could write instead, as ratios from one run.
//! `cargo xtask bench` runs this and writes docs/benchmarks.md; `-- --test` is a smoke run.

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use obauth_async::core::retry::RetryPolicy;
use obauth_async::core::truelayer::{Environment, TrueLayerConfig};
use obauth_async::core::worldline::assertion::{
    AssertionConfig, RsaBackend, RsaKeySigner, SigningCertificate,
};
use obauth_async::core::{BaseUrl, Operation, OsRandom, RequestContext};
use obauth_async::types::truelayer::Scope;
use obauth_async::types::{AuthorizationCode, ClientSecret, CodeVerifier, Scopes};
use obauth_bench::{TOKEN_JSON, requests, start_token_server};

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

/// A cached `TokenSource` on the bench server (whose answer is a token to any path), and
/// that token as the hand-written side would hold it.
fn bench_source(
    base: &str,
    runtime: &tokio::runtime::Runtime,
) -> (obauth_async::TokenSource, String) {
    let client = obauth_async::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    let source = obauth_async::TokenSource::truelayer(client, Scopes::from([Scope::Payments]));
    let token = runtime.block_on(source.access_token()).unwrap();
    (source, format!("Bearer {}", token.expose_secret()))
}

/// Rows 11a–11c: a request to another API through each bearer middleware, against the
/// same request with the header set by hand, on the same client.
fn middleware(base: &str) -> Vec<Pair> {
    use obauth_async::bearer::{BearerLayer, BearerMiddleware};
    use tower::{Layer, Service};

    let url = format!("{base}/api/payments");
    let runtime = std::rc::Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let (source, header) = bench_source(base, &runtime);
    let reqwest_client = reqwest::Client::new();

    // 11a: reqwest-middleware.
    let with_mw = reqwest_middleware::ClientBuilder::new(reqwest_client.clone())
        .with(BearerMiddleware::new(source.clone()))
        .build();
    let plain = reqwest_middleware::ClientBuilder::new(reqwest_client.clone()).build();
    let (rt_a, rt_b, url_a, url_b, header_a) = (
        std::rc::Rc::clone(&runtime),
        std::rc::Rc::clone(&runtime),
        url.clone(),
        url.clone(),
        header.clone(),
    );
    let reqwest_pair = Pair {
        group: "middleware_reqwest",
        obauth: Box::new(move || {
            black_box(rt_a.block_on(async {
                let response = with_mw.post(&url_a).body("amount=1").send().await.unwrap();
                response.bytes().await.unwrap()
            }));
        }),
        reference: Box::new(move || {
            black_box(rt_b.block_on(async {
                let response = plain
                    .post(&url_b)
                    .header("authorization", &header_a)
                    .body("amount=1")
                    .send()
                    .await
                    .unwrap();
                response.bytes().await.unwrap()
            }));
        }),
        block: 50,
    };

    // 11b: tower, over a service that sends with reqwest.
    let inner = ReqwestService(reqwest_client);
    let layered = std::cell::RefCell::new(BearerLayer::new(source).layer(inner.clone()));
    let bare = std::cell::RefCell::new(inner);
    let (rt_a, rt_b, url_a, url_b, header_b) = (
        std::rc::Rc::clone(&runtime),
        runtime,
        url.clone(),
        url,
        header,
    );
    let tower_pair = Pair {
        group: "middleware_tower",
        obauth: Box::new(move || {
            let request = http::Request::post(&url_a)
                .body(bytes::Bytes::from_static(b"amount=1"))
                .unwrap();
            let future = layered.borrow_mut().call(request);
            black_box(rt_a.block_on(future).unwrap());
        }),
        reference: Box::new(move || {
            let request = http::Request::post(&url_b)
                .header("authorization", &header_b)
                .body(bytes::Bytes::from_static(b"amount=1"))
                .unwrap();
            let future = bare.borrow_mut().call(request);
            black_box(rt_b.block_on(future).unwrap());
        }),
        block: 50,
    };
    vec![reqwest_pair, tower_pair, ureq_middleware(base)]
}

/// 11c: ureq, `BearerAgent` against the same agent with the header set by hand.
fn ureq_middleware(base: &str) -> Pair {
    let url = format!("{base}/api/payments");
    let client = obauth_blocking::TrueLayerClient::builder(
        Environment::Custom(BaseUrl::parse(base).unwrap()),
        "client-id",
    )
    .client_secret(ClientSecret::new("client-secret"))
    .retry_policy(RetryPolicy::never())
    .build()
    .unwrap();
    let source = obauth_blocking::TokenSource::truelayer(client, Scopes::from([Scope::Payments]));
    let header = format!("Bearer {}", source.access_token().unwrap().expose_secret());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let bearer = obauth_blocking::bearer::BearerAgent::new(agent.clone(), source);
    let url_b = url.clone();
    Pair {
        group: "middleware_ureq",
        obauth: Box::new(move || {
            let request = http::Request::post(&url).body("amount=1").unwrap();
            let mut response = bearer.run(request).unwrap();
            black_box(response.body_mut().read_to_vec().unwrap());
        }),
        reference: Box::new(move || {
            let request = http::Request::post(&url_b)
                .header("authorization", &header)
                .body("amount=1")
                .unwrap();
            let mut response = agent.run(request).unwrap();
            black_box(response.body_mut().read_to_vec().unwrap());
        }),
        block: 50,
    }
}

/// `http::Request<Bytes>` sent by reqwest, as a tower service (the inner service of 11b).
#[derive(Clone)]
struct ReqwestService(reqwest::Client);

impl tower::Service<http::Request<bytes::Bytes>> for ReqwestService {
    type Response = http::Response<bytes::Bytes>;
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<bytes::Bytes>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let body = response.bytes().await?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            Ok(out)
        })
    }
}

/// Rows 5a–5c: a Worldline client assertion against a bare RS256 signature of an input
/// of the same length, by the same backend, with the key parsed once on both sides.
fn assertions() -> Vec<Pair> {
    let identity = obauth_mock::SigningIdentity::generate().unwrap();
    let certificate = SigningCertificate::from_pem(&identity.certificate_pem).unwrap();
    let pkcs8 = pkcs8_der(&identity.private_key_pem);
    RsaBackend::ALL
        .into_iter()
        .map(|backend| {
            let config = AssertionConfig::new(
                RsaKeySigner::from_pem_using(backend, &identity.private_key_pem, &certificate)
                    .unwrap(),
            )
            .unwrap();
            let audience = "https://openbanking.example/auth/realms/realm";
            // The same length as an assertion's signing input.
            let input = vec![b'a'; 420];
            let bare = bare_signer(backend, &pkcs8);
            Pair {
                group: match backend {
                    RsaBackend::AwsLcRs => "assertion_aws_lc_rs",
                    RsaBackend::Ring => "assertion_ring",
                    _ => "assertion_rsa",
                },
                obauth: Box::new(move || {
                    black_box(
                        config
                            .sign("client-id", audience, SystemTime::now(), &mut OsRandom)
                            .unwrap(),
                    );
                }),
                reference: Box::new(move || {
                    black_box(bare(black_box(&input)));
                }),
                block: 5,
            }
        })
        .collect()
}

fn pkcs8_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A bare RS256 signature function: input in, signature out.
type BareSign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// The backend's own RS256 signature, as a user who wrote it by hand would call it.
fn bare_signer(backend: RsaBackend, pkcs8: &[u8]) -> BareSign {
    match backend {
        RsaBackend::AwsLcRs => {
            use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
            let pair = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
            let rng = aws_lc_rs::rand::SystemRandom::new();
            Box::new(move |input| {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .unwrap();
                signature
            })
        }
        RsaBackend::Ring => {
            use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
            let pair = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
            let rng = ring::rand::SystemRandom::new();
            Box::new(move |input| {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .unwrap();
                signature
            })
        }
        _ => {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::signature::{SignatureEncoding, Signer};
            let key = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(
                rsa::PrivateKey::from_pkcs8_der(pkcs8).unwrap(),
            );
            Box::new(move |input| key.sign(input).to_vec())
        }
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
        let (a, b) = if round.is_multiple_of(2) {
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
/// place every round. The shifts step through a 4 KB page in 16-byte steps (the
/// allocator's granularity) in a scattered order, so that the rounds sample placements
/// across the whole page and the medians are not one placement's luck.
fn heap_shift(round: usize, thread: usize) -> usize {
    (round * 97 + thread * 131) % 256 * 16
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

/// Calls per second of `read` on one thread per entry of `threads` (each starting with
/// the heap shift of its entry), released together and told to stop after `window`: all
/// the threads' calls divided by the time from the release to the last thread's stop, so
/// that a thread scheduled late counts against the throughput. (Giving each thread a fixed
/// number of calls and timing the slowest would measure the slower thread's placement
/// instead.) `read` gets the thread's entry.
fn throughput(
    threads: &[usize],
    round: usize,
    window: Duration,
    read: &(dyn Fn(usize) + Sync),
) -> f64 {
    let start = std::sync::Barrier::new(threads.len() + 1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let workers: Vec<_> = threads
            .iter()
            .map(|&thread| {
                let (start, stop) = (&start, &stop);
                scope.spawn(move || {
                    let padding = black_box(vec![0u8; heap_shift(round, thread)]);
                    start.wait();
                    let mut calls = 0u64;
                    loop {
                        for _ in 0..256 {
                            read(thread);
                        }
                        calls += 256;
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                    }
                    let stopped = Instant::now();
                    drop(padding);
                    (calls, stopped)
                })
            })
            .collect();
        start.wait();
        let released = Instant::now();
        std::thread::sleep(window);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (calls, last_stop) = workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .fold((0, released), |(total, last), (calls, stopped)| {
                (total + calls, last.max(stopped))
            });
        calls as f64 / last_stop.duration_since(released).as_secs_f64()
    })
}

/// The 2-thread / 1-thread throughput ratio of `read` in `round`: threads 0 and 1 each
/// alone (their mean is the 1-thread throughput) and then together, with the same heap
/// placements, so that the ratio compares the same work and not two placements' luck; the
/// order alternates between rounds. Returns (1 thread, 2 threads, ratio).
fn scaling(round: usize, window: Duration, read: &(dyn Fn(usize) + Sync)) -> (f64, f64, f64) {
    let alone =
        || (throughput(&[0], round, window, read) + throughput(&[1], round, window, read)) / 2.0;
    let (one, two) = if round.is_multiple_of(2) {
        let one = alone();
        (one, throughput(&[0, 1], round, window, read))
    } else {
        let two = throughput(&[0, 1], round, window, read);
        (alone(), two)
    };
    (one, two, two / one)
}

fn median_f64(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// How row 4 is measured.
struct ReadSettings {
    rounds: usize,
    /// Reads per block for 4a and 4b.
    block: u32,
    /// How long the threads of 4c read.
    window: Duration,
}

fn blocking_source(base: &str) -> obauth_blocking::TokenSource {
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
    source.access_token().unwrap();
    source
}

/// Row 4: a cached token read, measured by hand in rounds: the blocking read, the async
/// read and the blocking reads of a SQLite-backed and a Redis-backed source, each against
/// the floor
/// ([`floor_read`]) on the same thread, then the throughput of one thread and of two, on
/// one shared source (4c) and on a source of each thread's own (4c′, the same code with
/// nothing shared). Every measuring thread starts with its heap shifted (see
/// [`heap_shift`]).
fn cached_read(base: &str, settings: &ReadSettings) -> serde_json::Value {
    let shared = blocking_source(base);
    let own = [blocking_source(base), blocking_source(base)];
    let store_dir = std::env::temp_dir().join(format!("obauth-bench-read-{}", std::process::id()));
    std::fs::create_dir_all(&store_dir).unwrap();
    let sqlite = blocking_source(base).with_store(Arc::new(
        obauth_blocking::SqliteStore::open(store_dir.join("tokens.db")).unwrap(),
    ));
    sqlite.access_token().unwrap();
    let redis_server = obauth_test_peers::RedisServer::start().unwrap();
    let redis = blocking_source(base).with_store(Arc::new(
        obauth_blocking::RedisStore::open(&redis_server.url()).unwrap(),
    ));
    redis.access_token().unwrap();
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
        Scopes::from([Scope::Payments]),
    );
    runtime.block_on(source.access_token()).unwrap();
    let floor = floor_read(shared.access_token().unwrap());

    let read_blocking = || {
        black_box(shared.access_token().unwrap());
    };
    let read_async = || {
        black_box(ready(source.access_token()).unwrap());
    };
    let read_sqlite = || {
        black_box(sqlite.access_token().unwrap());
    };
    let read_redis = || {
        black_box(redis.access_token().unwrap());
    };
    let read_shared = |_thread: usize| {
        black_box(shared.access_token().unwrap());
    };
    let read_own = |thread: usize| {
        black_box(own[thread].access_token().unwrap());
    };
    let reads: [&(dyn Fn() + Sync); 4] = [&read_blocking, &read_async, &read_sqlite, &read_redis];
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut ratios: [Vec<f64>; 4] = Default::default();
    let mut floors = Vec::new();
    let (mut one, mut two, mut scalings, mut control_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let block = settings.block;
    for round in 0..settings.rounds {
        // Each read against the floor on the same thread, with the same heap placement,
        // the two in swapped order every other round.
        for (which, read) in reads.iter().enumerate() {
            let (time, base) = on_shifted_thread(heap_shift(round, which), || {
                if round.is_multiple_of(2) {
                    let time = per_call(block, *read);
                    (time, per_call(block, &floor))
                } else {
                    let base = per_call(block, &floor);
                    (per_call(block, *read), base)
                }
            });
            times[which].push(time);
            ratios[which].push(time / base);
            floors.push(base);
        }
        let ((a, b, ratio), control) = if round.is_multiple_of(2) {
            let measured = scaling(round, settings.window, &read_shared);
            (measured, scaling(round, settings.window, &read_own).2)
        } else {
            let control = scaling(round, settings.window, &read_own).2;
            (scaling(round, settings.window, &read_shared), control)
        };
        one.push(a);
        two.push(b);
        scalings.push(ratio);
        control_ratios.push(control);
    }
    let _ = std::fs::remove_dir_all(&store_dir);
    let [blocking_ns, async_ns, sqlite_ns, redis_ns] = times.map(median_f64);
    let [blocking_ratio, async_ratio, sqlite_ratio, redis_ratio] = ratios.map(median_f64);
    serde_json::json!({
        "rounds": settings.rounds,
        "block": settings.block,
        "window_ms": settings.window.as_millis() as u64,
        "floor_ns": median_f64(floors),
        "blocking_ns": blocking_ns,
        "async_ns": async_ns,
        "sqlite_ns": sqlite_ns,
        "redis_ns": redis_ns,
        "blocking_ratio": blocking_ratio,
        "async_ratio": async_ratio,
        "sqlite_ratio": sqlite_ratio,
        "redis_ratio": redis_ratio,
        "one_thread_per_s": median_f64(one),
        "two_threads_per_s": median_f64(two),
        "scaling": median_f64(scalings),
        "control_scaling": median_f64(control_ratios),
    })
}

/// The least any lock-free cache of a token must do per read, measured in the same run as
/// the reads it is the floor of: an `arc-swap` load, one read of the clock the read path
/// uses (the wall clock) and a copy of a token of the same size.
fn floor_read(token: obauth_async::types::AccessToken) -> impl Fn() + Sync {
    let until = SystemTime::now() + Duration::from_secs(3600);
    let cell = arc_swap::ArcSwapOption::from(Some(Arc::new((token, until))));
    move || {
        let entry = cell.load();
        let now = SystemTime::now();
        if let Some((token, until)) = entry.as_deref()
            && now < *until
        {
            black_box(token.clone());
        }
    }
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
    // A smoke run: `cargo bench -- --test`, or `cargo test --benches` (which, unlike
    // `cargo bench`, does not pass `--bench`).
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench");
    let addr = start_token_server();
    let base = format!("http://{addr}");
    let mut pairs = vec![build_parse(), async_e2e(&base), blocking_e2e(&base)];
    pairs.extend(assertions());
    pairs.extend(middleware(&base));
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for pair in &pairs {
        criterion_pair(&mut criterion, pair);
    }
    criterion.final_summary();

    // 401 rounds: the loopback rows' per-round ratios spread by about ±10% on two shared
    // cores, so the median of 101 moved by ±2-3% between runs, more than the 3% the
    // middleware rows are judged by; four times the rounds halve that.
    let rounds = if smoke { 1 } else { 401 };
    let mut extras = extras(&base, smoke);
    extras["paired_rounds"] = rounds.into();
    extras["cached_read"] = cached_read(
        &base,
        &if smoke {
            ReadSettings {
                rounds: 1,
                block: 100,
                window: Duration::from_millis(1),
            }
        } else {
            // Many short rounds rather than few long ones, so that a burst of load from
            // the host's other tenants lands in a few rounds, not in one side's median.
            ReadSettings {
                rounds: 61,
                block: 200_000,
                window: Duration::from_millis(50),
            }
        },
    );
    for pair in &pairs {
        extras[format!("paired_{}", pair.group)] = paired(pair, rounds);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/obauth-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("extras.json"), extras.to_string()).unwrap();
    println!("extras: {extras}");
}
