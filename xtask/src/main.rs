//! Project tasks that are more than one `cargo` call (cargo-xtask convention).
//!
//! `cargo xtask ci` runs what CI runs: format check, clippy with warnings denied on every
//! target, the whole test suite, the docs with warnings denied, the layering checks and
//! `cargo deny check bans licenses sources`.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let task = env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("bench") => bench(env::args().any(|arg| arg == "--smoke")),
        Some("mutants") => mutants(),
        Some("deny") => {
            let args: Vec<String> = env::args().skip(2).collect();
            match args.iter().position(|arg| arg == "--db") {
                Some(at) => match args.get(at + 1) {
                    Some(db) => deny_offline(std::path::Path::new(db)),
                    None => Err("--db takes the path of an advisory-db checkout".to_owned()),
                },
                None => deny(args.iter().any(|arg| arg == "--advisories")),
            }
        }
        Some("fuzz") => fuzz::fuzz(&env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci              fmt check, clippy -D warnings, tests, bench smoke run, docs, layering, cargo deny\n  test            the test suite only\n  bench           run the benchmarks and write docs/benchmarks.md\n  bench --smoke   compile the benchmarks and run each once\n  mutants         cargo-mutants on the token machine, expiry, retry and URL code (installs cargo-mutants if missing; not part of ci)\n  deny            cargo-deny: bans, licenses, sources (installs cargo-deny if missing; part of ci)\n  deny --advisories   the same and the RustSec advisories (needs github.com)\n  deny --db PATH  the advisories against a local checkout of rustsec/advisory-db (no network)\n  fuzz [--time SECS] [--runs N] [TARGET...]   the fuzz targets under libFuzzer (installs cargo-fuzz if missing; not part of ci, whose tests run the same targets on a fixed budget)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result<(), String> {
    run("format", &["fmt", "--all", "--check"], &[])?;
    run(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    test()?;
    bench(true)?;
    run(
        "docs",
        &["doc", "--workspace", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    layering()?;
    deny(false)
}

fn test() -> Result<(), String> {
    servers()?;
    run("tests", &["test", "--workspace", "--locked"], &[])
}

/// The servers the tests start for themselves (each on its own port, in its own directory):
/// installed from Debian's packages when missing and this runs as root, otherwise the exact
/// command to run.
fn servers() -> Result<(), String> {
    // redis-server for the Redis store's tests; PostgreSQL's server for the PostgreSQL
    // store's (Debian keeps initdb out of PATH); Node.js and npm for the oidc-provider peer;
    // Chromium and its chromedriver for the browser test of `obauth truelayer connect`.
    let runs = |binary: &str| {
        Command::new(binary)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    let postgres = || {
        std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
            versions
                .flatten()
                .any(|version| version.path().join("bin/initdb").exists())
        }) || runs("initdb")
    };
    let needed: [(&str, bool); 6] = [
        ("redis-server", runs("redis-server")),
        ("postgresql", postgres()),
        ("nodejs", runs("node")),
        ("npm", runs("npm")),
        (
            "chromium",
            std::path::Path::new("/usr/bin/chromium").exists(),
        ),
        (
            "chromium-driver",
            std::path::Path::new("/usr/bin/chromedriver").exists(),
        ),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, present)| !present)
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !root {
        return Err(format!(
            "the tests need {}: run `sudo apt-get update && sudo {install}`",
            missing.join(", ")
        ));
    }
    println!("==> installing {} for the tests", missing.join(", "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&missing);
    if apt(&args) || (apt(&["update", "-qq"]) && apt(&args)) {
        Ok(())
    } else {
        Err(format!(
            "`{install}` failed: install it by hand and run again"
        ))
    }
}

/// The cargo-deny the project checks with; `cargo xtask deny` installs it when missing.
const CARGO_DENY: &str = "0.19.0";

/// `cargo deny check` against `deny.toml`: bans, licenses and sources, which need only
/// crates.io; with `advisories`, the RustSec database too, which is fetched from GitHub and
/// so is left out where GitHub is unreachable (the CI machine): see docs/security.md.
fn deny(advisories: bool) -> Result<(), String> {
    let version = Command::new(cargo())
        .args(["deny", "--version"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
    if !version.is_some_and(|version| version.contains(CARGO_DENY)) {
        // A debug build: it compiles in half the time, and a check runs in a second either way.
        run(
            "install cargo-deny",
            &[
                "install",
                "--locked",
                "--debug",
                "cargo-deny",
                "--version",
                CARGO_DENY,
            ],
            &[],
        )?;
    }
    let mut checks = vec!["deny", "check", "bans", "licenses", "sources"];
    if advisories {
        checks.push("advisories");
    }
    run("cargo deny", &checks, &[])
}

/// The advisories check against a checkout of the RustSec database at `db` (a snapshot
/// brought by other means where GitHub is unreachable): `deny.toml` with its `db-path`
/// pointed at a folder holding the checkout under the name cargo-deny gives the default
/// database, and no fetch.
fn deny_offline(db: &std::path::Path) -> Result<(), String> {
    deny(false)?;
    let db = db
        .canonicalize()
        .map_err(|error| format!("{}: {error}", db.display()))?;
    if !db.join("crates").is_dir() {
        return Err(format!(
            "{} is not a checkout of rustsec/advisory-db (no crates/ folder)",
            db.display()
        ));
    }
    let work = workspace_root().join("target/advisory-db");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|error| error.to_string())?;
    // The folder cargo-deny clones https://github.com/rustsec/advisory-db into.
    std::os::unix::fs::symlink(&db, work.join("advisory-db-3157b0e258782691"))
        .map_err(|error| error.to_string())?;
    let config = std::fs::read_to_string(workspace_root().join("deny.toml"))
        .map_err(|error| format!("deny.toml: {error}"))?
        .replacen(
            "[advisories]\n",
            &format!("[advisories]\ndb-path = {:?}\n", work.display().to_string()),
            1,
        );
    let config_path = work.join("deny.toml");
    std::fs::write(&config_path, config).map_err(|error| error.to_string())?;
    let config_arg = config_path.display().to_string();
    let commit = Command::new("git")
        .arg("-C")
        .arg(&db)
        .args(["log", "-1", "--format=%H %cs"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("==> advisory database: {} ({commit})", db.display());
    run(
        "cargo deny advisories (offline)",
        &[
            "deny",
            "check",
            "--config",
            &config_arg,
            "--disable-fetch",
            "advisories",
        ],
        &[],
    )
}

/// The types and core crates must stay free of HTTP clients and runtimes, and the
/// blocking binding free of tokio: users choose them for that.
fn layering() -> Result<(), String> {
    // Every feature on: a feature (sqlite, a TLS choice, a cipher) must not bring one in.
    // The Redis store's blocking face alone (what obauth-blocking enables) has no tokio.
    let all: &[&str] = &["--all-features"];
    let redis_blocking: &[&str] = &["--no-default-features", "--features", "blocking,ring,tls"];
    // Default features: the bindings sign with the RSA code their TLS already links, never
    // the `rsa` crate (RUSTSEC-2023-0071, no fixed release).
    let default: &[&str] = &[];
    // Without its `tracing` feature the blocking binding has no `tracing` in its tree
    // (obauth-trace's functions are then empty).
    let untraced: &[&str] = &["--no-default-features", "--features", "rustls"];
    let forbidden: [(&str, &[&str], &[&str]); 9] = [
        ("obauth-types", all, &["reqwest", "ureq", "hyper", "tokio"]),
        ("obauth-core", all, &["reqwest", "ureq", "hyper", "tokio"]),
        ("obauth-sqlite", all, &["reqwest", "ureq", "hyper", "tokio"]),
        ("obauth-trace", all, &["reqwest", "ureq", "hyper", "tokio"]),
        (
            "obauth-redis",
            redis_blocking,
            &["reqwest", "ureq", "hyper", "tokio"],
        ),
        ("obauth-blocking", all, &["tokio"]),
        ("obauth-blocking", untraced, &["tracing"]),
        ("obauth-async", default, &["rsa"]),
        ("obauth-blocking", default, &["rsa"]),
    ];
    for (package, features, banned) in forbidden {
        let output = Command::new(cargo())
            .args(["tree", "--locked", "-p", package])
            .args(features)
            .args(["-e", "normal", "--prefix", "none"])
            .output()
            .map_err(|error| format!("cargo tree could not start: {error}"))?;
        if !output.status.success() {
            return Err(format!("cargo tree -p {package} failed"));
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if banned.contains(&name) {
                return Err(format!(
                    "{package} depends on {name}, which its layer must not"
                ));
            }
        }
    }
    println!(
        "==> layering: types/core/sqlite/redis (blocking)/trace free of HTTP clients and runtimes; blocking free of tokio (all features) and of tracing (without the feature); bindings free of rsa (default features)"
    );
    Ok(())
}

/// The files whose decisions the mutation run covers: the token machine and what it
/// stands on.
const MUTATED: [&str; 5] = [
    "crates/obauth-core/src/manager/**",
    "crates/obauth-core/src/expiry.rs",
    "crates/obauth-core/src/retry.rs",
    "crates/obauth-core/src/url.rs",
    "crates/obauth-core/src/call.rs",
];

/// cargo-mutants over [`MUTATED`], every mutant judged by the whole workspace's tests, in
/// two passes: first each mutant against obauth-core's own tests (seconds each), then the
/// ones those missed or timed out against the whole workspace (`--iterate`): a mutant
/// caught by obauth-core's tests is caught by the workspace's, which include them. Not part
/// of `ci` (tens of minutes on two cores); results in `mutants.out/`, answered in
/// docs/mutants.md. Extra arguments go to both passes (e.g. `-j 2`).
fn mutants() -> Result<(), String> {
    let installed = Command::new(cargo())
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        run(
            "install cargo-mutants",
            &["install", "--locked", "cargo-mutants"],
            &[],
        )?;
    }
    let extra: Vec<String> = env::args().skip(2).collect();
    let pass = |step: &str, tests: &[&str]| {
        let mut args = vec!["mutants", "--package", "obauth-core", "--timeout", "120"];
        for file in MUTATED {
            args.extend(["--file", file]);
        }
        args.extend(["--exclude", "crates/obauth-core/src/manager/tests.rs"]);
        args.extend(tests);
        args.extend(extra.iter().map(String::as_str));
        // cargo-mutants exits non-zero when a mutant survives; the second pass decides.
        let _ = run(step, &args, &[]);
    };
    pass(
        "mutants (obauth-core's tests)",
        &["--test-package", "obauth-core"],
    );
    pass(
        "mutants (the survivors, against the whole workspace)",
        &["--iterate", "--test-workspace=true"],
    );
    let missed = std::fs::read_to_string(workspace_root().join("mutants.out/missed.txt"))
        .unwrap_or_default();
    if missed.trim().is_empty() {
        println!("==> mutants: none survived");
        Ok(())
    } else {
        Err(format!("mutants survived:\n{missed}"))
    }
}

fn run(step: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    println!("==> {step}: cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(cargo())
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .map_err(|error| format!("{step}: cargo could not start: {error}"))?;
    println!("==> {step}: {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs the benchmarks; unless `smoke`, writes docs/benchmarks.md from this one run.
fn bench(smoke: bool) -> Result<(), String> {
    if smoke {
        // Every benchmark once, briefly: run by `cargo test`, which builds them with the
        // features and profile the test step already built everything with (a `cargo
        // bench` of one package would resolve its own features and build most of the
        // tree again). The benchmarks take the absence of `--bench` as a smoke run.
        return run(
            "bench smoke",
            &["test", "--workspace", "--locked", "--benches"],
            &[],
        );
    }
    let root = workspace_root();
    let criterion = root.join("target/criterion");
    let _ = std::fs::remove_dir_all(&criterion);
    run(
        "bench",
        &[
            "bench",
            "--locked",
            "-p",
            "obauth-bench",
            "--bench",
            "obauth",
        ],
        &[],
    )?;
    run(
        "bench (memory)",
        &[
            "bench",
            "--locked",
            "-p",
            "obauth-bench",
            "--bench",
            "memory",
        ],
        &[],
    )?;
    run(
        "bench (stores)",
        &[
            "bench",
            "--locked",
            "-p",
            "obauth-bench",
            "--bench",
            "stores",
        ],
        &[],
    )?;
    let table = bench_report::render(&root)?;
    std::fs::write(root.join("docs/benchmarks.md"), table).map_err(|e| e.to_string())?;
    println!("==> wrote docs/benchmarks.md");
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

mod bench_report;
mod fuzz;
