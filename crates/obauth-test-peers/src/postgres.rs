//! [`PostgresServer`]: a PostgreSQL cluster of the test's own, made with `initdb` in a
//! temporary directory and served on `127.0.0.1` with an ephemeral port.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser of every [`PostgresServer`], who logs in with [`PostgresServer::password`].
pub const POSTGRES_USER: &str = "obauth";
/// The database of every [`PostgresServer`] (`initdb`'s `postgres`, renamed), owned by
/// [`POSTGRES_USER`].
pub const POSTGRES_DATABASE: &str = "obauth";

/// What `PostgresServer::start` says when the machine has no PostgreSQL server.
const NO_POSTGRES: &str = "postgresql is not installed: `apt-get install postgresql` \
                           (the README's test command installs it when run as root)";

/// How long a start (or crash recovery) may take before it is called a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server of the test's own: a fresh cluster (`initdb`) in a temporary
/// directory, listening on `127.0.0.1` with an ephemeral port and with its Unix socket in
/// that directory only; removed when dropped, also when a test fails.
///
/// Loopback connections authenticate with SCRAM-SHA-256 as [`POSTGRES_USER`] and a random
/// [`password`](Self::password); [`url`](Self::url) carries both. `fsync` is on, so every
/// commit the server acknowledged survives [`kill`](Self::kill) and
/// [`restart`](Self::restart) (crash recovery replays the WAL).
///
/// PostgreSQL refuses to run as root: when the tests do, `initdb` and the server run as the
/// `postgres` system user (or `nobody`), who owns the directory.
pub struct PostgresServer {
    /// The postmaster, which leads a process group of its own (its backends).
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
    /// The unprivileged `(uid, gid)` the cluster runs as when the tests run as root.
    run_as: Option<(u32, u32)>,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("pid", &self.pid())
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

/// The newest PostgreSQL server binaries: Debian's `/usr/lib/postgresql/<major>/bin`, else
/// the directory of the `initdb` on `PATH` (symbolic links resolved).
fn bin_dir() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let complete = |bin: &Path| bin.join("initdb").is_file() && bin.join("postgres").is_file();
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
                    .ok()?;
                let bin = entry.path().join("bin");
                complete(&bin).then_some((version, bin))
            })
            .max();
        if let Some((_, bin)) = newest {
            return Ok(bin);
        }
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter_map(|dir| dir.join("initdb").canonicalize().ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .find(|bin| complete(bin))
            .ok_or_else(|| NO_POSTGRES.to_owned())
    })
    .clone()
}

/// The `(uid, gid)` of the first of `names` the system knows.
fn system_user(names: &[&str]) -> Result<(u32, u32), String> {
    for name in names {
        let Ok(output) = Command::new("getent").args(["passwd", name]).output() else {
            continue;
        };
        let line = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = line.trim().split(':').collect();
        if let (true, Some(uid), Some(gid)) =
            (output.status.success(), fields.get(2), fields.get(3))
            && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
        {
            return Ok((uid, gid));
        }
    }
    Err(format!(
        "PostgreSQL cannot run as root and none of the users {names:?} exists to run it"
    ))
}

/// A fresh random password (hexadecimal, so that it needs no escaping in a URL).
fn random_password() -> Result<String, String> {
    let mut bytes = [0; 16];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes.iter().fold(String::from("pg-"), |mut hex, byte| {
        hex.push_str(&format!("{byte:02x}"));
        hex
    }))
}

/// Sends `signal` (a name such as `KILL`) to `target` (a pid, or `-pgid` for a process
/// group) with the `kill` command: the crate forbids the unsafe `libc::kill`.
fn signal(target: &str, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("kill could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s {signal} {target}: {status}"))
    }
}

/// Whether a live (not zombie) process is left in process group `pgid`. Without `/proc`,
/// says no.
fn group_alive(pgid: u32) -> bool {
    let pgid = pgid.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …: comm may hold anything, so from the last ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1);
        pgrp == Some(&pgid) && !matches!(state, Some("Z" | "X"))
    })
}

/// Waits at most `timeout` for `child` to exit.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl PostgresServer {
    /// Makes a cluster (`initdb`), starts it and creates the database [`POSTGRES_DATABASE`].
    pub fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "obauth-postgres-{}-{count}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // From here on, dropping `server` removes the directory (and stops the server).
        let mut server = Self {
            child: None,
            bin,
            dir,
            port: 0,
            password: random_password()?,
            run_as: None,
        };
        let dir = server.dir.clone();
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        // Whoever created the directory owns it: root, or the user to run as.
        if std::fs::metadata(&dir).map_err(io)?.uid() == 0 {
            let (uid, gid) = system_user(&["postgres", "nobody"])?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io)?;
            server.run_as = Some((uid, gid));
        }
        server.initdb()?;
        let mut last = String::new();
        // The port is found free, then bound by the postmaster: another process may take
        // it in between, so a few tries.
        for _ in 0..5 {
            server.port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            match server.spawn() {
                Ok(()) => {
                    // Renaming the database initdb made is instant; creating one costs a copy.
                    server.run_psql(
                        "template1",
                        &format!("ALTER DATABASE postgres RENAME TO {POSTGRES_DATABASE}"),
                    )?;
                    return Ok(server);
                }
                Err(error) if error.contains("Address already in use") => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// A command for the server binary `program`, run in the directory as the cluster's
    /// owner, with no `PG*` variables from the environment and English messages.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.dir);
        clear_pg_env(&mut command);
        command.env("LC_ALL", "C").stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // Also drops root's supplementary groups.
            command.gid(gid).uid(uid);
        }
        command
    }

    /// The cluster in `data`: the bootstrap superuser is [`POSTGRES_USER`] with the
    /// password; loopback TCP asks for it (SCRAM), the Unix socket trusts. `--no-sync`:
    /// durability matters from the first start on, which keeps `fsync` on.
    fn initdb(&self) -> Result<(), String> {
        let password_file = self.dir.join("password");
        let io = |e: std::io::Error| format!("{}: {e}", password_file.display());
        std::fs::write(&password_file, format!("{}\n", self.password)).map_err(io)?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).map_err(io)?;
        }
        let output = self
            .command("initdb")
            .arg("--pgdata")
            .arg(self.data())
            .args(["--username", POSTGRES_USER])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"])
            .output();
        let _ = std::fs::remove_file(&password_file);
        let output = output.map_err(|e| format!("initdb could not start: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let reach = match self.run_as {
            Some((uid, _)) => format!(" (uid {uid} must be able to reach it)"),
            None => String::new(),
        };
        Err(format!(
            "initdb failed ({}) in {}{reach}:\n{}{}",
            output.status,
            self.dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Starts the postmaster on `self.port` and waits until it accepts connections.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let io = |e: std::io::Error| format!("{}: {e}", log_path.display());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        let offset = log.metadata().map_err(io)?.len();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-c")
            .arg(format!("port={}", self.port))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                socket_directory(&self.dir)
            ))
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "full_page_writes=on", "-c", "logging_collector=off"])
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            // Its own process group: `kill` takes the backends down with it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("postgres could not start: {e}"))?;
        self.child = Some(child);
        let log_tail = |server: &Self| {
            let log = std::fs::read(server.log_path()).unwrap_or_default();
            let new = log.get(offset as usize..).unwrap_or_default();
            tail(&String::from_utf8_lossy(new), 30)
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.is_ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "postgres exited ({status}) on port {}:\n{}",
                    self.port,
                    log_tail(self)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
        Err(format!(
            "postgres did not accept connections within {} s on port {}:\n{}",
            READY_TIMEOUT.as_secs(),
            self.port,
            log_tail(self)
        ))
    }

    /// Whether the server runs and accepts connections: its `postmaster.pid` names it and
    /// says `ready`, as `pg_ctl` reads it.
    pub fn is_ready(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let lock = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        let lines: Vec<&str> = lock.lines().map(str::trim).collect();
        lines.first() == Some(&pid.to_string().as_str()) && lines.get(7) == Some(&"ready")
    }

    /// `postgres://obauth:PASSWORD@127.0.0.1:PORT/obauth`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{POSTGRES_USER}:{}@127.0.0.1:{}/{POSTGRES_DATABASE}",
            self.password, self.port
        )
    }

    /// The password of [`POSTGRES_USER`], random for each server.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory: the cluster (`data`), the Unix socket, `postgres.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the PostgreSQL binaries in use (`psql` among them).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A `psql` for [`POSTGRES_DATABASE`] over loopback TCP as [`POSTGRES_USER`], the password in
    /// `PGPASSWORD` (never on the command line): unaligned, tuples only, stopping at the
    /// first error, never prompting. Add `-c SQL`; set `PGPASSWORD` to try another password.
    pub fn psql_command(&self) -> Command {
        self.psql_command_in(POSTGRES_DATABASE)
    }

    fn psql_command_in(&self, database: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        clear_pg_env(&mut command);
        command
            .args([
                "--no-psqlrc",
                "--no-align",
                "--tuples-only",
                "--quiet",
                "--no-password",
            ])
            .args(["--set", "ON_ERROR_STOP=1", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--username", POSTGRES_USER, "--dbname", database])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        command
    }

    /// Runs `sql` with [`psql_command`](Self::psql_command) and returns what it printed
    /// (one row a line, columns separated by `|`), or its error.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.run_psql(POSTGRES_DATABASE, sql)
    }

    fn run_psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = self
            .psql_command_in(database)
            .args(["--command", sql])
            .output()
            .map_err(|e| format!("psql could not start: {e}"))?;
        if output.status.success() {
            let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            stdout.truncate(stdout.trim_end_matches('\n').len());
            Ok(stdout)
        } else {
            Err(format!(
                "psql failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Kills the server with SIGKILL, the postmaster and its backends at once: no shutdown
    /// checkpoint. Returns when all of them are gone, so that [`restart`](Self::restart)
    /// finds the shared memory free.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        let _ = signal(&format!("-{pgid}"), "KILL");
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(pgid) && Instant::now() < deadline {
            // A backend the postmaster was forking as the group was signalled can outlive
            // the signal, and would hold the shared memory that a restart needs: signalled
            // again until none is left.
            let _ = signal(&format!("-{pgid}"), "KILL");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are ended, a checkpoint is
    /// written). Kills it if that takes more than 30 s.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        signal(&child.id().to_string(), "INT")?;
        match wait_timeout(child, READY_TIMEOUT) {
            Some(status) if status.success() => {
                let pgid = child.id();
                self.child = None;
                let deadline = Instant::now() + Duration::from_secs(10);
                while group_alive(pgid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            }
            Some(status) => {
                self.kill();
                Err(format!("postgres exited with {status} on a fast shutdown"))
            }
            None => {
                self.kill();
                Err("postgres did not stop within 30 s of a fast shutdown: killed".into())
            }
        }
    }

    /// Starts it again on the same port and cluster (killing it first if it runs): after
    /// [`kill`](Self::kill), crash recovery replays the WAL before it accepts connections.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }
}

/// `dir` as an entry of `unix_socket_directories`: quoted (`"` doubled) when it holds a
/// separator, as PostgreSQL splits that list.
fn socket_directory(dir: &Path) -> String {
    let dir = dir.display().to_string();
    if dir.contains([',', '"']) || dir.contains(char::is_whitespace) {
        format!("\"{}\"", dir.replace('"', "\"\""))
    } else {
        dir
    }
}

/// Removes the `PG*` variables (`PGHOST`, `PGPASSWORD`, …) a command would inherit.
fn clear_pg_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
