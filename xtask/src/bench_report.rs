//! Turns one benchmark run into docs/benchmarks.md: each row obauth's median, the
//! reference's median from the same run, the ratio, the goal and whether it is met.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The first number after `key` (and then `field`) in a small JSON text.
fn number_after(text: &str, key: &str, field: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = &rest[rest.find(field)? + field.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// `field` of the paired measurement `group` (obauth_ns, reference_ns or ratio).
fn paired(root: &Path, group: &str, field: &str) -> Result<f64, String> {
    let path = root.join("target/obauth-bench/extras.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    number_after(
        &text,
        &format!("\"paired_{group}\""),
        &format!("\"{field}\":"),
    )
    .ok_or_else(|| format!("no paired {group}.{field} in {}", path.display()))
}

fn extra(root: &Path, file: &str, key: &str) -> Result<f64, String> {
    let path = root.join("target/obauth-bench").join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    number_after(&text, &format!("\"{key}\""), ":")
        .ok_or_else(|| format!("no {key} in {}", path.display()))
}

fn time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `n` as a whole number with thousands separators: 200000 → "200,000".
fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

struct Row {
    what: String,
    obauth: String,
    reference: String,
    ratio: String,
    goal: &'static str,
    /// `None` for a row with no goal of its own (a control).
    met: Option<bool>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; {rustc}")
}

pub(crate) fn render(root: &Path) -> Result<String, String> {
    let p = |group: &str| -> Result<(f64, f64, f64), String> {
        Ok((
            paired(root, group, "obauth_ns")?,
            paired(root, group, "reference_ns")?,
            paired(root, group, "ratio")?,
        ))
    };
    let (bp_ob, bp_o2, bp_ratio) = p("build_parse")?;
    let (as_ob, as_rq, as_ratio) = p("e2e_async")?;
    let (bl_ob, bl_ur, bl_ratio) = p("e2e_blocking")?;
    let signing = [
        ("aws_lc_rs", "5a", "aws-lc-rs (obauth-async's backend)"),
        ("ring", "5b", "ring (obauth-blocking's backend)"),
        ("rsa", "5c", "rsa (opt-in fallback, not constant-time)"),
    ]
    .into_iter()
    .map(|(group, row, backend)| {
        p(&format!("assertion_{group}")).map(|(ob, bare, ratio)| (row, backend, ob, bare, ratio))
    })
    .collect::<Result<Vec<_>, String>>()?;
    let middleware = [
        (
            "reqwest",
            "11a",
            "reqwest-middleware (obauth-async)",
            "the same ClientWithMiddleware without it",
        ),
        (
            "tower",
            "11b",
            "the tower layer (obauth-async) over a reqwest service",
            "the same service",
        ),
        (
            "ureq",
            "11c",
            "BearerAgent (obauth-blocking)",
            "the same ureq Agent",
        ),
    ]
    .into_iter()
    .map(|(group, row, what, reference)| {
        p(&format!("middleware_{group}"))
            .map(|(ob, bare, ratio)| (row, what, reference, ob, bare, ratio))
    })
    .collect::<Result<Vec<_>, String>>()?;
    let read = |field: &str| -> Result<f64, String> {
        let path = root.join("target/obauth-bench/extras.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        number_after(&text, "\"cached_read\"", &format!("\"{field}\":"))
            .ok_or_else(|| format!("no cached_read.{field} in {}", path.display()))
    };
    let (read_blocking, read_async, read_sqlite, read_redis, floor) = (
        read("blocking_ns")?,
        read("async_ns")?,
        read("sqlite_ns")?,
        read("redis_ns")?,
        read("floor_ns")?,
    );
    let (ratio_blocking, ratio_async, ratio_sqlite, ratio_redis) = (
        read("blocking_ratio")?,
        read("async_ratio")?,
        read("sqlite_ratio")?,
        read("redis_ratio")?,
    );
    let store = |object: &str, field: &str| -> Result<f64, String> {
        let path = root.join("target/obauth-bench/stores.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        number_after(&text, &format!("\"{object}\""), &format!("\"{field}\":"))
            .ok_or_else(|| format!("no {object}.{field} in {}", path.display()))
    };
    let (first_ob, first_bare, first_ratio, first_rounds) = (
        store("first_read", "obauth_ns")?,
        store("first_read", "reference_ns")?,
        store("first_read", "ratio")?,
        store("first_read", "rounds")?,
    );
    let (cold_requests, cold_tokens) = (
        store("cold_start", "requests")?,
        store("cold_start", "distinct_tokens")?,
    );
    let (redis_first_ob, redis_first_bare, redis_first_ratio) = (
        store("redis_first_read", "obauth_ns")?,
        store("redis_first_read", "reference_ns")?,
        store("redis_first_read", "ratio")?,
    );
    let (redis_cold_requests, redis_cold_tokens) = (
        store("redis_cold_start", "requests")?,
        store("redis_cold_start", "distinct_tokens")?,
    );
    let storm = |field: &str| store("refresh_storm", field);
    let (storm_asked, storm_requests, storm_refused, storm_reuses, storm_revoked, storm_seconds) = (
        storm("refreshes_asked")?,
        storm("refresh_requests")?,
        storm("refused")?,
        storm("reuses")?,
        storm("revoked_grants")?,
        storm("seconds")?,
    );
    let (pg_first_ob, pg_first_bare, pg_first_ratio) = (
        store("postgres_first_read", "obauth_ns")?,
        store("postgres_first_read", "reference_ns")?,
        store("postgres_first_read", "ratio")?,
    );
    let pg_storm = |field: &str| store("postgres_storm", field);
    let (pg_asked, pg_requests, pg_refused, pg_reuses, pg_revoked, pg_seconds) = (
        pg_storm("refreshes_asked")?,
        pg_storm("refresh_requests")?,
        pg_storm("refused")?,
        pg_storm("reuses")?,
        pg_storm("revoked_grants")?,
        pg_storm("seconds")?,
    );
    let soak_field = |field: &str| store("soak", field);
    let (soak_seconds, soak_reads, soak_errors, soak_requests, soak_expected) = (
        soak_field("seconds")?,
        soak_field("reads")?,
        soak_field("errors")?,
        soak_field("requests")?,
        soak_field("expected_requests")?,
    );
    let (soak_p50, soak_p99, soak_max, soak_every) = (
        soak_field("p50_ns")?,
        soak_field("p99_ns")?,
        soak_field("max_ns")?,
        soak_field("refresh_every_s")?,
    );
    let (one_thread, two_threads, scaling, ceiling) = (
        read("one_thread_per_s")?,
        read("two_threads_per_s")?,
        read("scaling")?,
        read("control_scaling")?,
    );
    let paired_rounds = extra(root, "extras.json", "paired_rounds")?;
    let (read_rounds, read_block, read_window) =
        (read("rounds")?, read("block")?, read("window_ms")?);
    let one = extra(root, "extras.json", "one_request_ns")?;
    let stampede_async = extra(root, "extras.json", "async_stampede_ns")?;
    let stampede_blocking = extra(root, "extras.json", "blocking_stampede_ns")?;
    let heap = extra(root, "memory.json", "token_source_heap_bytes")?;

    let mut rows = vec![
        Row {
            what: "1. Build + parse a TrueLayer code exchange (vs oauth2-rs 5)".into(),
            obauth: time(bp_ob),
            reference: time(bp_o2),
            ratio: format!("{:.2}× faster", 1.0 / bp_ratio),
            goal: "≥ 1.5× faster",
            met: Some(1.0 / bp_ratio >= 1.5),
        },
        Row {
            what: "2. client_credentials on loopback, obauth-async (vs raw reqwest, same Client)".into(),
            obauth: time(as_ob),
            reference: time(as_rq),
            ratio: format!("{as_ratio:.2}×"),
            goal: "≤ 1.05×",
            met: Some(as_ratio <= 1.05),
        },
        Row {
            what: "3a. client_credentials on loopback, obauth-blocking (vs raw ureq, same Agent)".into(),
            obauth: time(bl_ob),
            reference: time(bl_ur),
            ratio: format!("{bl_ratio:.2}×"),
            goal: "≤ 1.05×",
            met: Some(bl_ratio <= 1.05),
        },
        Row {
            what: "3b. obauth-blocking (vs raw reqwest, per request)".into(),
            obauth: time(bl_ob),
            reference: time(as_rq),
            ratio: format!("{:.2}×", bl_ob / as_rq),
            goal: "≤ 1.5×",
            met: Some(bl_ob / as_rq <= 1.5),
        },
        Row {
            what: "4a. Cached token read, blocking TokenSource (memory store), 1 thread (vs the floor: arc-swap load + clock read + token copy)".into(),
            obauth: time(read_blocking),
            reference: format!("{} floor", time(floor)),
            ratio: format!("{ratio_blocking:.2}×"),
            goal: "≤ 1.3× the floor",
            met: Some(ratio_blocking <= 1.3),
        },
        Row {
            what: "4b. Cached token read, async TokenSource (memory store), 1 thread (vs the floor)".into(),
            obauth: time(read_async),
            reference: format!("{} floor", time(floor)),
            ratio: format!("{ratio_async:.2}×"),
            goal: "≤ 1.3× the floor",
            met: Some(ratio_async <= 1.3),
        },
        Row {
            what: "4d. Cached token read, blocking TokenSource (SQLite store), 1 thread (vs the floor)".into(),
            obauth: time(read_sqlite),
            reference: format!("{} floor", time(floor)),
            ratio: format!("{ratio_sqlite:.2}×"),
            goal: "≤ 1.3× the floor",
            met: Some(ratio_sqlite <= 1.3),
        },
        Row {
            what: "4e. Cached token read, blocking TokenSource (Redis store), 1 thread (vs the floor)".into(),
            obauth: time(read_redis),
            reference: format!("{} floor", time(floor)),
            ratio: format!("{ratio_redis:.2}×"),
            goal: "≤ 1.3× the floor",
            met: Some(ratio_redis <= 1.3),
        },
        Row {
            what: "4c. Cached token read, 2 threads: throughput vs 1 thread".into(),
            obauth: format!("{:.1} M reads/s on 2 threads", two_threads / 1e6),
            reference: format!("{:.1} M reads/s on 1 thread", one_thread / 1e6),
            ratio: format!("{scaling:.2}×"),
            goal: "≥ 1.8×",
            met: Some(scaling >= 1.8),
        },
        Row {
            what: "4c′. Reference for 4c: the same read, each thread on a TokenSource of its own".into(),
            obauth: "—".into(),
            reference: "—".into(),
            ratio: format!("{ceiling:.2}×"),
            goal: "none (what these cores give the read when nothing is shared)",
            met: None,
        },
    ];
    rows.extend(signing.iter().map(|&(row, backend, ob, bare, ratio)| Row {
        what: format!(
            "{row}. Worldline client assertion with {backend} (vs its bare RS256 sign of the same length, key parsed)"
        ),
        obauth: time(ob),
        reference: time(bare),
        ratio: format!("{ratio:.2}×"),
        goal: "≤ 1.2×",
        met: Some(ratio <= 1.2),
    }));
    rows.extend(middleware.iter().map(|&(row, what, reference, ob, bare, ratio)| Row {
        what: format!(
            "{row}. A request to another API on loopback through {what}, token cached (vs {reference} with the header set by hand)"
        ),
        obauth: time(ob),
        reference: time(bare),
        ratio: format!("{ratio:.2}×"),
        goal: "≤ 1.03×",
        met: Some(ratio <= 1.03),
    }));
    rows.extend([
        Row {
            what: "6a. Cold cache, 1,000 async callers: one token request; wall time".into(),
            obauth: time(stampede_async),
            reference: format!("{} one request", time(one)),
            ratio: format!("{:.1}× one request", stampede_async / one),
            goal: "exactly one request (asserted)",
            met: Some(true),
        },
        Row {
            what: "6b. Cold cache, 64 threads (blocking): one token request; wall time".into(),
            obauth: time(stampede_blocking),
            reference: format!("{} one request", time(one)),
            ratio: format!("{:.1}× one request", stampede_blocking / one),
            goal: "exactly one request (asserted)",
            met: Some(true),
        },
        Row {
            what: "7. Heap held per TokenSource with its token (beyond the shared client)".into(),
            obauth: format!("{heap:.0} bytes"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "reported",
            met: Some(true),
        },
        Row {
            what: "8. First access_token() of a process, served from SQLite: open + read + adopt (vs bare rusqlite open, same pragmas, + SELECT of the record)".into(),
            obauth: time(first_ob),
            reference: time(first_bare),
            ratio: format!("{first_ratio:.2}×"),
            goal: "≤ 1.5×",
            met: Some(first_ratio <= 1.5),
        },
        Row {
            what: "9. Cold start, 4 processes × 50 callers on one SQLite file: token requests".into(),
            obauth: format!("{cold_requests:.0} request(s), {cold_tokens:.0} token(s)"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "exactly one request",
            met: Some(cold_requests == 1.0 && cold_tokens == 1.0),
        },
        Row {
            what: "8b. First access_token() of a process, served from Redis: read + adopt (vs a bare HMGET of the record on a redis connection)".into(),
            obauth: time(redis_first_ob),
            reference: time(redis_first_bare),
            ratio: format!("{redis_first_ratio:.2}×"),
            goal: "≤ 1.5×",
            met: Some(redis_first_ratio <= 1.5),
        },
        Row {
            what: "9b. Cold start, 8 processes × 50 callers on one Redis: token requests".into(),
            obauth: format!("{redis_cold_requests:.0} request(s), {redis_cold_tokens:.0} token(s)"),
            reference: "—".into(),
            ratio: "—".into(),
            goal: "exactly one request",
            met: Some(redis_cold_requests == 1.0 && redis_cold_tokens == 1.0),
        },
        Row {
            what: "9c. Refresh storm, 8 processes × 20 refreshes of one connection on Redis, mock with reuse detection: refresh requests".into(),
            obauth: format!(
                "{storm_requests:.0} requests in {storm_seconds:.2} s; {storm_refused:.0} refused, {storm_reuses:.0} reuses, {storm_revoked:.0} grants revoked"
            ),
            reference: format!("{storm_asked:.0} refreshes asked"),
            ratio: "—".into(),
            goal: "requests = refreshes; none refused",
            met: Some(
                storm_requests == storm_asked
                    && storm_refused == 0.0
                    && storm_reuses == 0.0
                    && storm_revoked == 0.0,
            ),
        },
        Row {
            what: "8c. First access_token() of a process, served from PostgreSQL, async: read + adopt (vs a bare prepared SELECT of the record on the same pool)".into(),
            obauth: time(pg_first_ob),
            reference: time(pg_first_bare),
            ratio: format!("{pg_first_ratio:.2}×"),
            goal: "≤ 1.5×",
            met: Some(pg_first_ratio <= 1.5),
        },
        Row {
            what: "9d. Refresh storm, 8 async processes × 20 refreshes of one connection on PostgreSQL, mock with reuse detection: refresh requests".into(),
            obauth: format!(
                "{pg_requests:.0} requests in {pg_seconds:.2} s; {pg_refused:.0} refused, {pg_reuses:.0} reuses, {pg_revoked:.0} grants revoked"
            ),
            reference: format!("{pg_asked:.0} refreshes asked"),
            ratio: "—".into(),
            goal: "requests = refreshes; none refused",
            met: Some(
                pg_requests == pg_asked
                    && pg_refused == 0.0
                    && pg_reuses == 0.0
                    && pg_revoked == 0.0,
            ),
        },
        Row {
            what: "10. Load held: 1,000 async tasks + 2 threads reading through SQLite-backed sources, 2 s tokens".into(),
            obauth: format!(
                "{soak_seconds:.0} s, {:.0} M reads, {soak_errors:.0} errors, {soak_requests:.0} token requests; read p50 {} / p99 {} / max {}",
                soak_reads / 1e6,
                time(soak_p50),
                time(soak_p99),
                time(soak_max)
            ),
            reference: format!("{soak_expected:.0} requests (one per {soak_every:.1} s refresh)"),
            ratio: "—".into(),
            goal: "0 errors; requests = expected ± 1",
            met: Some(soak_errors == 0.0 && (soak_requests - soak_expected).abs() <= 1.0),
        },
    ]);

    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` from one run. Rows 1, 2, 3, 5 and 11 are paired: blocks \
         of obauth and of the reference alternate ({paired_rounds:.0} rounds, order swapped \
         each round) and the ratio is the median of the per-round ratios, so that the drifts \
         of a shared machine hit both sides alike; the times are the medians per call. Row 4 \
         runs {read_rounds:.0} rounds: 4a, 4b, 4d and 4e are blocks of {} reads, each against the \
         floor on the same thread with the same heap placement, in swapped order every other \
         round, the ratio being the median of the per-round ratios; 4c and 4c′ count the reads per second of two \
         threads, each alone and then both together, over {read_window:.0} ms windows with \
         the same heap placements, the scaling being the median of the per-round ratios (so \
         it is not the ratio of the two medians shown). Rows 6 and 7 are measured by hand in the same run; \
         rows 8 to 10 by `benches/stores.rs` in the same run ({first_rounds:.0} paired rounds for 8). Criterion's own \
         reports for the pairs of rows 1, 2, 3, 5 and 11 are under `target/criterion`.\n",
        thousands(read_block)
    );
    let _ = writeln!(out, "Machine: {}.\n", machine());
    let _ = writeln!(
        out,
        "| what | obauth | reference (same run) | ratio | goal | met |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.what,
            row.obauth,
            row.reference,
            row.ratio,
            row.goal,
            match row.met {
                Some(true) => "yes",
                Some(false) => "**missed**",
                None => "—",
            }
        );
    }
    let _ = writeln!(
        out,
        "\nReproduce: `cargo xtask bench` (about 6½ minutes on a fresh clone with 2 cores, the \
         release build and the minute-long soak included). The benchmarks live in \
         `crates/obauth-bench`; oauth2-rs is a dev-dependency there only. `.ci/run` runs them \
         once each in smoke mode (`cargo xtask bench --smoke`).\n"
    );
    let _ = writeln!(out, "## Notes on the rows\n");
    let _ = writeln!(out, "{}", include_str!("bench_notes.md"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(7.0), "7");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(200_000.0), "200,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn numbers_are_read_from_the_right_object() {
        let text = r#"{"cached_read":{"block":200000,"blocking_ns":75.5,"rounds":31},"paired_rounds":101}"#;
        assert_eq!(
            number_after(text, "\"cached_read\"", "\"block\":"),
            Some(200000.0)
        );
        assert_eq!(
            number_after(text, "\"cached_read\"", "\"blocking_ns\":"),
            Some(75.5)
        );
        assert_eq!(
            number_after(text, "\"cached_read\"", "\"rounds\":"),
            Some(31.0)
        );
        assert_eq!(number_after(text, "\"paired_rounds\"", ":"), Some(101.0));
        assert_eq!(number_after(text, "\"missing\"", ":"), None);
    }
}
