//! Every fuzz target on a fixed budget, as part of `cargo xtask ci`: its seeds, the crashes
//! kept under `fuzz/regressions/<target>/`, and a deterministic stream of mutants of the
//! seeds. `OBAUTH_FUZZ_CASES` sets the number of mutants per target (default 5,000).
//!
//! A failure names the target and the input (as escaped bytes) that broke it; save the
//! input under `fuzz/regressions/<target>/` to keep it as a regression.

use std::path::PathBuf;

use obauth_fuzz::mutate::{Rng, mutate};
use obauth_fuzz::{TARGETS, Target, target};

const DEFAULT_CASES: usize = 5_000;

fn cases() -> usize {
    std::env::var("OBAUTH_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn regressions(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target.name);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable regression input");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Runs `input`, turning a panic into a report that shows the input.
fn run_one(target: &Target, input: &[u8], what: &str) {
    let outcome = std::panic::catch_unwind(|| (target.run)(input));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!(
            "{} failed on {what}: {message}\ninput: \"{}\"",
            target.name,
            input.escape_ascii()
        );
    }
}

fn run(name: &str) {
    let target = target(name).expect("a known target");
    let seeds = target.seeds();
    assert!(!seeds.is_empty(), "{name} has no seeds");
    for (index, seed) in seeds.iter().enumerate() {
        run_one(target, seed, &format!("seed {index}"));
    }
    for (path, input) in regressions(target) {
        run_one(target, &input, &path.display().to_string());
    }
    // One stream per target, so that adding a target changes no other target's inputs.
    let mut rng = Rng::new(name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    }));
    for case in 0..cases() {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(seed, &seeds, &mut rng);
        run_one(target, &input, &format!("mutant {case}"));
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test_here() {
            let tested = [$(stringify!($name)),*];
            for target in &TARGETS {
                assert!(tested.contains(&target.name), "{} is not run here", target.name);
            }
        }
    };
}

targets!(
    truelayer_token,
    truelayer_links,
    providers,
    worldline_token,
    auth_callback,
    keys_and_certificates,
    urls_and_realms,
    scopes,
    store_record,
);
