//! The PostgreSQL harness: a cluster of the test's own, password-protected on loopback,
//! that keeps every acknowledged commit through SIGKILL and restart, and leaves nothing
//! behind when dropped.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use obauth_test_peers::{POSTGRES_DATABASE, POSTGRES_USER, PostgresServer};

fn accepts_tcp(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The uid a process runs as, from `/proc/PID/status`.
fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_killed_server_keeps_its_committed_rows() {
    let mut server = PostgresServer::start().unwrap();
    server
        .psql("CREATE TABLE tokens (id int PRIMARY KEY, value text NOT NULL)")
        .unwrap();
    server
        .psql("INSERT INTO tokens VALUES (1, 'committed')")
        .unwrap();
    let (port, url, first) = (server.port(), server.url(), server.pid().unwrap());

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(!accepts_tcp(port), "the port still accepts after kill");
    assert!(!std::path::Path::new(&format!("/proc/{first}")).exists());

    server.restart().unwrap();
    assert_eq!((server.port(), server.url()), (port, url));
    assert_ne!(server.pid(), Some(first));
    assert!(server.log().contains("database system was interrupted"));
    assert_eq!(
        server
            .psql("SELECT value FROM tokens WHERE id = 1")
            .unwrap(),
        "committed"
    );
}

#[test]
fn every_acknowledged_commit_survives_a_kill_in_the_middle_of_writes() {
    let mut server = PostgresServer::start().unwrap();
    server
        .psql("CREATE TABLE writes (id int PRIMARY KEY)")
        .unwrap();
    const TOTAL: u32 = 100_000;
    // One transaction a statement; psql prints an id once the server reported the commit.
    let mut writer = server
        .psql_command()
        .args(["--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    std::thread::spawn(move || {
        for id in 1..=TOTAL {
            // Fails once psql gives up: the server is gone.
            if writeln!(stdin, "INSERT INTO writes VALUES ({id}) RETURNING id;").is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut acknowledged: Vec<u32> = Vec::new();
    while acknowledged.len() < 50 {
        acknowledged.push(lines.next().unwrap().unwrap().parse().unwrap());
    }
    server.kill();
    acknowledged.extend(lines.map(|line| line.unwrap().parse::<u32>().unwrap()));
    assert!(
        !writer.wait().unwrap().success(),
        "psql did not notice the kill"
    );
    assert!((acknowledged.len() as u32) < TOTAL, "killed too late");

    server.restart().unwrap();
    let stored: Vec<u32> = server
        .psql("SELECT id FROM writes ORDER BY id")
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let missing: Vec<&u32> = acknowledged
        .iter()
        .filter(|id| stored.binary_search(id).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[test]
fn a_stopped_server_restarts_with_its_rows() {
    let mut server = PostgresServer::start().unwrap();
    server
        .psql("CREATE TABLE t AS SELECT 42 AS answer")
        .unwrap();
    server.stop().unwrap();
    assert_eq!(server.pid(), None);
    assert!(!accepts_tcp(server.port()));
    assert!(server.log().contains("database system is shut down"));
    server.restart().unwrap();
    assert_eq!(server.psql("SELECT answer FROM t").unwrap(), "42");
}

#[test]
fn the_wrong_password_is_refused_and_the_right_one_never_is_an_argument() {
    let server = PostgresServer::start().unwrap();
    let url = server.url();
    assert_eq!(
        url,
        format!(
            "postgres://{POSTGRES_USER}:{}@127.0.0.1:{}/{POSTGRES_DATABASE}",
            server.password(),
            server.port()
        )
    );

    let right = server.psql_command();
    assert!(
        right
            .get_args()
            .all(|arg| !arg.to_string_lossy().contains(server.password()))
    );
    assert_eq!(server.psql("SELECT current_user").unwrap(), POSTGRES_USER);

    let output = server
        .psql_command()
        .env("PGPASSWORD", "not-the-password")
        .args(["--command", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );

    let output = server
        .psql_command()
        .env_remove("PGPASSWORD")
        .args(["--command", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "no password, yet let in");
}

#[test]
fn the_server_is_loopback_only_durable_and_unprivileged() {
    let server = PostgresServer::start().unwrap();
    let show = |setting: &str| server.psql(&format!("SHOW {setting}")).unwrap();
    assert_eq!(show("listen_addresses"), "127.0.0.1");
    assert_eq!(show("port"), server.port().to_string());
    assert_eq!(show("fsync"), "on");
    assert_eq!(show("synchronous_commit"), "on");
    // Quoted when the path holds a space or a comma.
    assert_eq!(
        show("unix_socket_directories").trim_matches('"'),
        server.dir().display().to_string()
    );
    assert!(
        server
            .dir()
            .join(format!(".s.PGSQL.{}", server.port()))
            .exists()
    );
    assert_ne!(server.port(), 5432);
    assert!(server.is_ready());

    // As root, the cluster belongs to, and runs as, someone else.
    let owner = std::fs::metadata(server.dir()).unwrap().uid();
    let me = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(process_uid(server.pid().unwrap()), owner);
    assert_ne!(owner, 0, "postgres runs as root");
    if me != 0 {
        assert_eq!(owner, me);
    }
}

#[test]
fn two_servers_run_side_by_side() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(PostgresServer::start);
        let b = scope.spawn(PostgresServer::start);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.password(), b.password());
    a.psql("CREATE TABLE only_in_a ()").unwrap();
    assert_eq!(
        b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'")
            .unwrap(),
        "0"
    );
}

#[test]
fn dropping_the_server_removes_it_all() {
    let server = PostgresServer::start().unwrap();
    let (dir, port, pid) = (
        server.dir().to_path_buf(),
        server.port(),
        server.pid().unwrap(),
    );
    assert!(dir.join("data/PG_VERSION").exists());
    drop(server);
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(!accepts_tcp(port));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_restart_on_a_taken_port_fails_with_the_log() {
    let mut server = PostgresServer::start().unwrap();
    server.kill();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    let error = server.restart().unwrap_err();
    assert!(error.contains("Address already in use"), "{error}");
    assert_eq!(server.pid(), None);
}
