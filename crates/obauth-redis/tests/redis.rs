//! Both faces of the Redis store against a real `redis-server` of the test's own: the store
//! contract (versions, conflicts, leases), sealing, the password kept out of sight, and
//! what a dead, paused or restarted server does to a call.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use obauth_core::StoreErrorKind;
use obauth_core::store::{
    AsyncTokenStore, Cas, Expect, Lease, LeaseHolder, SealingKey, StoreKey, Stored, TokenRecord,
    TokenStore,
};
use obauth_core::{OsRandom, StoreError};
use obauth_redis::{AsyncRedisStore, RedisStore};
use obauth_test_peers::RedisServer;
use obauth_types::{AccessToken, RefreshToken};

fn key(name: &str) -> StoreKey {
    StoreKey::client_credentials("https://auth.example/connect/token", "client", "post", name)
}

fn record(access: &str, refresh: &str) -> TokenRecord {
    TokenRecord {
        access_token: Some(AccessToken::new(access)),
        obtained_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        expires_in: 3600,
        refresh_token: Some(RefreshToken::new(refresh)),
    }
}

/// The async face seen through the sync trait, so that one contract checks both.
struct Blocked {
    store: AsyncRedisStore,
    runtime: tokio::runtime::Runtime,
}

impl Blocked {
    fn new(store: AsyncRedisStore) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self { store, runtime }
    }
}

impl TokenStore for Blocked {
    fn load(&self, key: &StoreKey) -> Result<Option<Stored>, StoreError> {
        self.runtime.block_on(self.store.load(key))
    }
    fn compare_and_swap(
        &self,
        key: &StoreKey,
        expect: Expect,
        record: &TokenRecord,
    ) -> Result<Cas, StoreError> {
        self.runtime
            .block_on(self.store.compare_and_swap(key, expect, record))
    }
    fn try_lease(
        &self,
        key: &StoreKey,
        holder: &LeaseHolder,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Lease, StoreError> {
        self.runtime
            .block_on(self.store.try_lease(key, holder, ttl, now))
    }
    fn release(&self, key: &StoreKey, holder: &LeaseHolder) -> Result<(), StoreError> {
        self.runtime.block_on(self.store.release(key, holder))
    }
}

/// One store of each face on `url`.
fn both(url: &str) -> Vec<(&'static str, Box<dyn TokenStore>)> {
    vec![
        ("blocking", Box::new(RedisStore::open(url).unwrap())),
        (
            "async",
            Box::new(Blocked::new(AsyncRedisStore::open(url).unwrap())),
        ),
    ]
}

fn contract(name: &str, store: &dyn TokenStore, other: &dyn TokenStore) {
    let key = key(name);
    assert_eq!(store.load(&key).unwrap(), None, "{name}");
    let first = record("a1", "r1");
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Absent, &first)
            .unwrap(),
        Cas::Written(1),
        "{name}"
    );
    // The other face (another replica) reads what this one wrote.
    let stored = other.load(&key).unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.record, first);
    // A writer that expected nothing, or an old version, gets what is there instead.
    let second = record("a2", "r2");
    assert_eq!(
        other
            .compare_and_swap(&key, Expect::Absent, &second)
            .unwrap(),
        Cas::Conflict(Some(Stored {
            version: 1,
            record: first.clone()
        }))
    );
    assert_eq!(
        other
            .compare_and_swap(&key, Expect::Version(1), &second)
            .unwrap(),
        Cas::Written(2)
    );
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Version(1), &record("stale", "stale"))
            .unwrap(),
        Cas::Conflict(Some(Stored {
            version: 2,
            record: second.clone()
        })),
        "{name}: a stale writer must not overwrite a newer record"
    );
    assert_eq!(
        store
            .compare_and_swap(&key, Expect::Any, &record("a3", "r3"))
            .unwrap(),
        Cas::Written(3)
    );
    assert_eq!(
        store
            .compare_and_swap(
                &StoreKey::client_credentials("x", "y", "z", name),
                Expect::Version(4),
                &first
            )
            .unwrap(),
        Cas::Conflict(None)
    );

    // Leases: one holder at a time, renewable by its holder, given back only by it.
    let (a, b) = (
        LeaseHolder::random(&mut OsRandom).unwrap(),
        LeaseHolder::random(&mut OsRandom).unwrap(),
    );
    let now = SystemTime::now();
    let ttl = Duration::from_secs(30);
    assert_eq!(store.try_lease(&key, &a, ttl, now).unwrap(), Lease::Granted);
    match other.try_lease(&key, &b, ttl, now).unwrap() {
        Lease::Held { until } => {
            assert!(
                until > now + Duration::from_secs(25) && until <= now + ttl,
                "{name}"
            );
        }
        Lease::Granted => panic!("{name}: two holders"),
    }
    assert_eq!(store.try_lease(&key, &a, ttl, now).unwrap(), Lease::Granted);
    other.release(&key, &b).unwrap();
    assert!(matches!(
        other.try_lease(&key, &b, ttl, now).unwrap(),
        Lease::Held { .. }
    ));
    store.release(&key, &a).unwrap();
    assert_eq!(other.try_lease(&key, &b, ttl, now).unwrap(), Lease::Granted);
    // A lease runs out in Redis's clock, whatever the holder does.
    let short = LeaseHolder::random(&mut OsRandom).unwrap();
    let brief = self::key(&format!("{name}-brief"));
    assert_eq!(
        store
            .try_lease(&brief, &short, Duration::from_millis(150), now)
            .unwrap(),
        Lease::Granted
    );
    assert!(matches!(
        other.try_lease(&brief, &b, ttl, now).unwrap(),
        Lease::Held { .. }
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        other.try_lease(&brief, &b, ttl, now).unwrap(),
        Lease::Granted
    );
}

#[test]
fn both_faces_keep_the_store_contract_and_share_the_keys() {
    let server = RedisServer::start().unwrap();
    let stores = both(&server.url());
    let (blocking, asynchronous) = (&*stores[0].1, &*stores[1].1);
    contract("blocking-first", blocking, asynchronous);
    contract("async-first", asynchronous, blocking);
}

#[test]
fn concurrent_writers_never_lose_an_update() {
    let server = RedisServer::start().unwrap();
    let store = Arc::new(RedisStore::open(&server.url()).unwrap());
    let key = key("counter");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, key) = (Arc::clone(&store), key.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    loop {
                        let current = store.load(&key).unwrap();
                        let count = current
                            .as_ref()
                            .map_or(0, |stored| stored.record.expires_in);
                        let mut next = record("a", "r");
                        next.expires_in = count + 1;
                        let expect = Expect::after(current.map(|stored| stored.version));
                        if let Cas::Written(_) =
                            store.compare_and_swap(&key, expect, &next).unwrap()
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let last = store.load(&key).unwrap().unwrap();
    assert_eq!(last.record.expires_in, 200);
    assert_eq!(last.version, 200);
}

#[test]
fn sealed_records_hide_the_tokens_and_refuse_the_wrong_key() {
    let server = RedisServer::start().unwrap();
    let sealing = SealingKey::generate(&mut OsRandom).unwrap();
    let sealed = RedisStore::open_sealed(&server.url(), sealing.clone()).unwrap();
    let key = key("sealed");
    let secret = record("access-MARKER-1", "refresh-MARKER-2");
    sealed
        .compare_and_swap(&key, Expect::Absent, &secret)
        .unwrap();
    // What Redis holds, read raw: no token in clear.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    let mut everything = Vec::new();
    for name in &keys {
        if name.contains(":record:") {
            let value: Vec<Vec<u8>> = redis::cmd("HVALS").arg(name).query(&mut raw).unwrap();
            everything.extend(value.concat());
        }
    }
    assert!(!everything.is_empty());
    assert!(!String::from_utf8_lossy(&everything).contains("MARKER"));
    // The async face with the same key reads it; the wrong key or none is a typed error.
    let same = Blocked::new(AsyncRedisStore::open_sealed(&server.url(), sealing).unwrap());
    assert_eq!(same.load(&key).unwrap().unwrap().record, secret);
    let wrong =
        RedisStore::open_sealed(&server.url(), SealingKey::generate(&mut OsRandom).unwrap())
            .unwrap();
    assert_eq!(wrong.load(&key).unwrap_err().kind(), StoreErrorKind::Sealed);
    let none = RedisStore::open(&server.url()).unwrap();
    assert_eq!(none.load(&key).unwrap_err().kind(), StoreErrorKind::Sealed);
    // Debug of a store shows no token and no key.
    assert!(!format!("{sealed:?}").contains("MARKER"));
}

#[test]
fn the_password_stays_out_of_debug_and_errors() {
    let server = RedisServer::start().unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("pw-MARKER-3")
        .query(&mut raw)
        .unwrap();
    let good = format!("redis://:pw-MARKER-3@127.0.0.1:{}/0", server.port());
    let bad = format!("redis://:wrong-MARKER-4@127.0.0.1:{}/0", server.port());
    for (face, store) in both(&good) {
        store
            .compare_and_swap(&key(face), Expect::Any, &record("a", "r"))
            .unwrap();
    }
    for (face, store) in both(&bad) {
        let error = store.load(&key(face)).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("MARKER"), "{face}: {shown}");
        }
    }
    let blocking = RedisStore::open(&good).unwrap();
    let asynchronous = AsyncRedisStore::open(&good).unwrap();
    assert!(!format!("{blocking:?}{asynchronous:?}").contains("MARKER"));
    assert!(format!("{blocking:?}").contains(&format!("127.0.0.1:{}", server.port())));
    assert!(format!("{blocking:?}").starts_with("RedisStore"));
    assert!(format!("{asynchronous:?}").starts_with("AsyncRedisStore"));
}

#[test]
fn a_record_that_obauth_did_not_write_is_corrupt_not_garbage() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::open(&server.url()).unwrap();
    let key = key("planted");
    store
        .compare_and_swap(&key, Expect::Absent, &record("a", "r"))
        .unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let name = format!("obauth:record:{}", key.as_str());
    let _: () = redis::cmd("HSET")
        .arg(&name)
        .arg("r")
        .arg("not json")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        store.load(&key).unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
    let _: () = redis::cmd("HDEL")
        .arg(&name)
        .arg("r")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        store.load(&key).unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
}

#[test]
fn another_holders_lease_without_an_expiry_is_held_and_then_ends() {
    let server = RedisServer::start().unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = key("persisted-lease");
    let lease = format!("obauth:lease:{}", key.as_str());
    // Another holder's lease whose expiry was taken away (PERSIST, a RESTORE without one).
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("some-other-holder")
        .query(&mut raw)
        .unwrap();
    let ttl = Duration::from_millis(300);
    for (name, store) in both(&server.url()) {
        let me = LeaseHolder::random(&mut OsRandom).unwrap();
        let now = SystemTime::now();
        match store.try_lease(&key, &me, ttl, now).unwrap() {
            Lease::Held { until } => assert!(until > now && until <= now + ttl, "{name}"),
            Lease::Granted => panic!("{name}: granted while another holder has it"),
        }
        // It has been given an end, and after it the lease is ours.
        let left: i64 = redis::cmd("PTTL").arg(&lease).query(&mut raw).unwrap();
        assert!(left > 0 && left <= 300, "{name}: {left}");
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            store.try_lease(&key, &me, ttl, now).unwrap(),
            Lease::Granted
        );
        store.release(&key, &me).unwrap();
        let _: () = redis::cmd("SET")
            .arg(&lease)
            .arg("some-other-holder")
            .query(&mut raw)
            .unwrap();
    }
}

/// Stops a process (SIGSTOP) or lets it go on (SIGCONT).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_dead_or_paused_server_is_unavailable_in_bounded_time_and_a_restart_is_picked_up() {
    let mut server = RedisServer::start_durable().unwrap();
    let timeout = Duration::from_millis(400);
    let blocking = RedisStore::open(&server.url())
        .unwrap()
        .with_timeout(timeout)
        .unwrap();
    let asynchronous = Blocked::new(
        AsyncRedisStore::open(&server.url())
            .unwrap()
            .with_timeout(timeout)
            .unwrap(),
    );
    let stores: [(&str, &dyn TokenStore); 2] = [("blocking", &blocking), ("async", &asynchronous)];
    for (face, store) in stores {
        store
            .compare_and_swap(&key(face), Expect::Absent, &record(face, "r"))
            .unwrap();
    }

    // Paused: a call gives up after the timeout instead of hanging.
    signal(server.pid().unwrap(), "STOP");
    for (face, store) in stores {
        let started = Instant::now();
        let error = store.load(&key(face)).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{face}: {error}");
        assert!(
            started.elapsed() < timeout * 4,
            "{face}: {:?}",
            started.elapsed()
        );
    }
    signal(server.pid().unwrap(), "CONT");

    // Dead: unavailable, quickly.
    server.kill();
    for (face, store) in stores {
        let error = store.load(&key(face)).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{face}: {error}");
    }

    // Back, with its append-only file: both faces reconnect by themselves and find what
    // they wrote.
    server.restart().unwrap();
    for (face, store) in stores {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stored = loop {
            match store.load(&key(face)) {
                Ok(stored) => break stored,
                Err(error) if Instant::now() < deadline => {
                    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{face}: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("{face} did not reconnect: {error}"),
            }
        };
        assert_eq!(stored.unwrap().record, record(face, "r"), "{face}");
    }
}

#[test]
fn rediss_with_a_private_ca_is_verified_and_plain_text_or_another_ca_is_refused() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let server = RedisServer::start_tls(&cert.pem(), &signing_key.serialize_pem()).unwrap();
    let url = server.url();
    assert!(url.starts_with("rediss://"));
    let ca = cert.pem();
    let blocking = RedisStore::open(&url)
        .unwrap()
        .with_root_certificate(ca.as_bytes())
        .unwrap();
    let asynchronous = Blocked::new(
        AsyncRedisStore::open(&url)
            .unwrap()
            .with_root_certificate(ca.as_bytes())
            .unwrap(),
    );
    contract("tls", &blocking, &asynchronous);

    // The platform's roots do not know this certificate; nor does another CA.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let strangers: [(&str, Box<dyn TokenStore>); 3] = [
        ("platform roots", Box::new(RedisStore::open(&url).unwrap())),
        (
            "another CA",
            Box::new(
                RedisStore::open(&url)
                    .unwrap()
                    .with_root_certificate(other.cert.pem().as_bytes())
                    .unwrap(),
            ),
        ),
        (
            "async, another CA",
            Box::new(Blocked::new(
                AsyncRedisStore::open(&url)
                    .unwrap()
                    .with_root_certificate(other.cert.pem().as_bytes())
                    .unwrap(),
            )),
        ),
    ];
    for (what, store) in strangers {
        assert!(store.load(&key("tls")).is_err(), "{what}: connected");
    }
    // Plain text to the TLS port: refused, in bounded time.
    let plain = RedisStore::open(&url.replacen("rediss://", "redis://", 1))
        .unwrap()
        .with_timeout(Duration::from_millis(500))
        .unwrap();
    assert!(plain.load(&key("tls")).is_err());
    // A root certificate is for rediss:// only, and must be one.
    assert!(
        RedisStore::open("redis://127.0.0.1:1")
            .unwrap()
            .with_root_certificate(ca.as_bytes())
            .is_err()
    );
    let garbage = RedisStore::open(&url)
        .unwrap()
        .with_root_certificate(b"not a certificate");
    if let Ok(store) = garbage {
        assert!(store.load(&key("tls")).is_err());
    }
}
