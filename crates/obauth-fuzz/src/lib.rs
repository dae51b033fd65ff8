//! The fuzz targets of obauth: every parser that reads bytes from the network or from a
//! user, each as a function of one byte string that panics only when an invariant breaks.
//!
//! Two drivers run them. `fuzz/` (cargo-fuzz, outside the workspace) runs each target
//! coverage-guided with libFuzzer (`cargo xtask fuzz`), starting from [`Target::seeds`].
//! This crate's own test runs every target on a fixed budget in `cargo xtask ci`: the
//! seeds, the crashes kept under `fuzz/regressions/`, and a deterministic stream of
//! mutations of the seeds ([`mutate`]). Both drivers call the same functions, so a crash
//! found by one is reproduced by the other.
//!
//! A target checks more than "no panic": a secret of the request never reaches the text of
//! an error, a parsed value survives a round trip, and so on; see each target's doc.
//!
//! This crate is not published and nothing depends on it but its two drivers.

pub mod mutate;
mod responses;
mod seeds;
mod text;

/// One fuzz target: a name (the cargo-fuzz target's and the corpus folder's) and the
/// function that checks one input.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name, as `cargo xtask fuzz NAME` and `fuzz/fuzz_targets/NAME.rs` spell it.
    pub name: &'static str,
    /// What it parses.
    pub about: &'static str,
    /// Runs one input. Returns normally for any input; panics when an invariant breaks.
    pub run: fn(&[u8]),
    seeds: fn() -> Vec<Vec<u8>>,
}

impl Target {
    /// The seed inputs: the specs' examples (`fixtures/`) and hand-written edge cases.
    pub fn seeds(&self) -> Vec<Vec<u8>> {
        (self.seeds)()
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub static TARGETS: [Target; 9] = [
    Target {
        name: "truelayer_token",
        about: "TrueLayer /connect/token and /api/delete answers and error bodies",
        run: responses::truelayer_token,
        seeds: seeds::truelayer_token,
    },
    Target {
        name: "truelayer_links",
        about: "TrueLayer /v1/authuri, /v1/reauthuri and /api/debug answers and error bodies",
        run: responses::truelayer_links,
        seeds: seeds::truelayer_links,
    },
    Target {
        name: "providers",
        about: "TrueLayer /api/providers answers and error bodies",
        run: responses::providers,
        seeds: seeds::providers,
    },
    Target {
        name: "worldline_token",
        about: "Worldline token answers and error bodies, with a client secret and an assertion",
        run: responses::worldline_token,
        seeds: seeds::worldline_token,
    },
    Target {
        name: "auth_callback",
        about: "the auth dialog's redirect: a URL, its query, or a form_post body",
        run: text::auth_callback,
        seeds: seeds::auth_callback,
    },
    Target {
        name: "keys_and_certificates",
        about: "PEM and DER private keys (every backend) and X.509 certificates",
        run: text::keys_and_certificates,
        seeds: seeds::keys_and_certificates,
    },
    Target {
        name: "urls_and_realms",
        about: "base URLs, Worldline realm names and TrueLayer client settings",
        run: text::urls_and_realms,
        seeds: seeds::urls_and_realms,
    },
    Target {
        name: "scopes",
        about: "space-delimited scope strings of both servers",
        run: text::scopes,
        seeds: seeds::scopes,
    },
    Target {
        name: "store_record",
        about: "token records read back from a store, plain and sealed",
        run: text::store_record,
        seeds: seeds::store_record,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}

/// Runs the target called `name` on `data`: what each `fuzz/fuzz_targets/NAME.rs` does.
///
/// # Panics
///
/// When `name` is not a target, and when the input breaks one of the target's invariants.
pub fn run(name: &str, data: &[u8]) {
    match target(name) {
        Some(target) => (target.run)(data),
        None => panic!("no fuzz target is called {name:?}"),
    }
}
