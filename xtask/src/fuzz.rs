//! `cargo xtask fuzz`: every fuzz target of `fuzz/`, coverage-guided by libFuzzer through
//! cargo-fuzz, one after the other.
//!
//! ```text
//! cargo xtask fuzz [--time SECS] [--runs N] [TARGET…]
//! ```
//!
//! Each target starts from its seeds (written by `obauth-fuzz-seeds`) and the crashes kept
//! under `fuzz/regressions/<target>/`, and keeps its growing corpus in
//! `target/fuzz/corpus/<target>/` between runs. A crash is written to
//! `target/fuzz/artifacts/<target>/`; copy it to `fuzz/regressions/<target>/` to keep it in
//! the fixed-budget tests. The run ends with a table of executions per target (for
//! docs/security.md).
//!
//! cargo-fuzz runs on the stable toolchain with `--sanitizer none`: the code under test is
//! safe Rust (`unsafe_code = "forbid"`), and the C in AWS-LC and ring is their own
//! projects' to fuzz.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{cargo, run, workspace_root};

/// The cargo-fuzz the project fuzzes with; installed when missing.
const CARGO_FUZZ: &str = "0.13.2";

struct Outcome {
    name: String,
    executions: u64,
    per_second: u64,
    seconds: f64,
    corpus: usize,
    crashed: bool,
}

pub(crate) fn fuzz(args: &[String]) -> Result<(), String> {
    let mut time: Option<u64> = None;
    let mut runs: Option<u64> = None;
    let mut names: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            args.next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("{flag} takes a whole number"))
        };
        match arg.as_str() {
            "--time" => time = Some(number("--time")?),
            "--runs" => runs = Some(number("--runs")?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name => names.push(name.to_owned()),
        }
    }
    if time.is_none() && runs.is_none() {
        time = Some(60);
    }

    let installed = Command::new(cargo())
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .is_some_and(|output| String::from_utf8_lossy(&output.stdout).contains(CARGO_FUZZ));
    if !installed {
        run(
            "install cargo-fuzz",
            &["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ],
            &[],
        )?;
    }

    let root = workspace_root();
    let work = root.join("target/fuzz");
    let corpora = work.join("corpus");
    let corpora_arg = corpora.to_string_lossy().into_owned();
    run(
        "fuzz seeds",
        &[
            "run",
            "--locked",
            "--quiet",
            "-p",
            "obauth-fuzz",
            "--bin",
            "obauth-fuzz-seeds",
            "--",
            &corpora_arg,
        ],
        &[],
    )?;
    let known: Vec<String> = std::fs::read_dir(&corpora)
        .map_err(|error| format!("{}: {error}", corpora.display()))?
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    if names.is_empty() {
        names = known.clone();
        names.sort();
    }
    if let Some(unknown) = names.iter().find(|name| !known.contains(name)) {
        return Err(format!(
            "no fuzz target is called {unknown}; there are {}",
            known.join(", ")
        ));
    }

    let build_dir = work.join("build").to_string_lossy().into_owned();
    // Built once up front, so that each target's time is spent fuzzing.
    println!("==> fuzz build: cargo fuzz build --sanitizer none --release");
    let built = Command::new(cargo())
        .current_dir(root.join("fuzz"))
        .args(["fuzz", "build", "--sanitizer", "none", "--release"])
        .args(["--target-dir", &build_dir])
        .status()
        .map_err(|error| format!("cargo fuzz could not start: {error}"))?;
    if !built.success() {
        return Err(format!("cargo fuzz build failed ({built})"));
    }
    let mut outcomes = Vec::new();
    for name in &names {
        outcomes.push(fuzz_one(&root, &work, &build_dir, name, time, runs)?);
    }

    println!("\n| target | executions | exec/s | seconds | corpus | result |");
    println!("|---|---:|---:|---:|---:|---|");
    for outcome in &outcomes {
        println!(
            "| `{}` | {} | {} | {:.0} | {} | {} |",
            outcome.name,
            outcome.executions,
            outcome.per_second,
            outcome.seconds,
            outcome.corpus,
            if outcome.crashed {
                "**crash**"
            } else {
                "no crash"
            }
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| outcome.crashed)
        .map(|outcome| outcome.name.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "crashes in {}: see target/fuzz/artifacts/ and target/fuzz/logs/",
            crashed.join(", ")
        ))
    }
}

fn fuzz_one(
    root: &Path,
    work: &Path,
    build_dir: &str,
    name: &str,
    time: Option<u64>,
    runs: Option<u64>,
) -> Result<Outcome, String> {
    let corpus = work.join("corpus").join(name);
    let artifacts = work.join("artifacts").join(name);
    let logs = work.join("logs");
    for dir in [&artifacts, &logs] {
        std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    }
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|error| format!("{}: {error}", log_path.display()))?;
    let mut command = Command::new(cargo());
    command
        .current_dir(root.join("fuzz"))
        .args(["fuzz", "run", "--sanitizer", "none", "--release"])
        .args(["--target-dir", build_dir])
        .arg(name)
        .arg(&corpus);
    let regressions = root.join("fuzz/regressions").join(name);
    if regressions.is_dir() {
        command.arg(&regressions);
    }
    command.arg("--").args([
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".to_owned(),
        "-rss_limit_mb=2048".to_owned(),
        "-timeout=10".to_owned(),
        "-max_len=65536".to_owned(),
    ]);
    if let Some(time) = time {
        command.arg(format!("-max_total_time={time}"));
    }
    if let Some(runs) = runs {
        command.arg(format!("-runs={runs}"));
    }
    println!(
        "==> fuzz {name}: {} (log: {})",
        match (time, runs) {
            (Some(time), Some(runs)) => format!("{runs} executions or {time}s"),
            (Some(time), None) => format!("{time}s"),
            (None, Some(runs)) => format!("{runs} executions"),
            (None, None) => unreachable!("a default time is set"),
        },
        log_path.display()
    );
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|error| format!("cargo fuzz could not start: {error}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stat = |key: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix(key))
            .filter_map(|value| value.trim().parse::<u64>().ok())
            .next_back()
            .unwrap_or(0)
    };
    let outcome = Outcome {
        name: name.to_owned(),
        executions: stat("stat::number_of_executed_units:"),
        per_second: stat("stat::average_exec_per_sec:"),
        seconds,
        corpus: std::fs::read_dir(&corpus).map_or(0, |dir| dir.count()),
        crashed: !status.success(),
    };
    println!(
        "==> fuzz {name}: {} executions in {seconds:.0}s, {}",
        outcome.executions,
        if outcome.crashed {
            "CRASH (see the log)"
        } else {
            "no crash"
        }
    );
    Ok(outcome)
}
