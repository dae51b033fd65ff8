//! Secret inputs: each from the command line, the environment, a file or standard input,
//! held in `obauth-types`' redacted newtypes from the moment clap parses them.
//!
//! A value on the command line is readable by every user of the host (`ps`,
//! `/proc/PID/cmdline`): it still works, with a warning on stderr.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ArgMatches;
use clap::parser::ValueSource;
use obauth_blocking::types::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken,
};
use zeroize::Zeroizing;

/// The largest file (or standard input) obauth reads a secret, key or certificate from.
pub(crate) const MAX_LOCAL_FILE: u64 = 64 * 1024;

/// A secret input of the CLI: its argument id, flag, file flag and environment variable.
#[derive(Clone, Copy)]
pub(crate) struct SecretInput {
    id: &'static str,
    flag: &'static str,
    file_flag: &'static str,
    env: &'static str,
}

pub(crate) const CLIENT_SECRET: SecretInput = SecretInput {
    id: "client_secret",
    flag: "--client-secret",
    file_flag: "--client-secret-file",
    env: "OBAUTH_CLIENT_SECRET",
};
pub(crate) const CODE: SecretInput = SecretInput {
    id: "code",
    flag: "--code",
    file_flag: "--code-file",
    env: "OBAUTH_CODE",
};
pub(crate) const CODE_VERIFIER: SecretInput = SecretInput {
    id: "code_verifier",
    flag: "--code-verifier",
    file_flag: "--code-verifier-file",
    env: "OBAUTH_CODE_VERIFIER",
};
pub(crate) const REFRESH_TOKEN: SecretInput = SecretInput {
    id: "refresh_token",
    flag: "--refresh-token",
    file_flag: "--refresh-token-file",
    env: "OBAUTH_REFRESH_TOKEN",
};
pub(crate) const ACCESS_TOKEN: SecretInput = SecretInput {
    id: "access_token",
    flag: "--access-token",
    file_flag: "--access-token-file",
    env: "OBAUTH_ACCESS_TOKEN",
};

const ALL: [SecretInput; 5] = [
    CLIENT_SECRET,
    CODE,
    CODE_VERIFIER,
    REFRESH_TOKEN,
    ACCESS_TOKEN,
];

impl SecretInput {
    /// How a person names every way to give this secret, for "is required" messages.
    pub(crate) fn ways(self) -> String {
        format!(
            "{} (or {}, or {} PATH; - reads standard input)",
            self.flag, self.env, self.file_flag
        )
    }
}

/// The secret newtypes the CLI holds; their `Debug` is `[redacted]`.
pub(crate) trait Secret: From<String> {
    fn expose(&self) -> &str;
}

macro_rules! secret {
    ($($name:ty),*) => {$(
        impl Secret for $name {
            fn expose(&self) -> &str {
                self.expose_secret()
            }
        }
    )*};
}
secret!(
    AccessToken,
    AuthorizationCode,
    ClientSecret,
    CodeVerifier,
    RefreshToken
);

/// The secret from `file` (which wins) or from `value` (the command line or the
/// environment): `None` when neither is given; a blank secret is a usage error naming
/// where it came from.
pub(crate) fn resolve<T: Secret>(
    input: SecretInput,
    value: Option<T>,
    file: Option<&Path>,
) -> Result<Option<T>, String> {
    let (secret, source) = match (file, value) {
        (Some(path), _) => {
            let text = read_local(path, input.file_flag)?;
            // One final newline (`\n` or `\r\n`) is how files end, not part of the secret.
            let secret = text
                .strip_suffix('\n')
                .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
                .unwrap_or(&text);
            (T::from(secret.to_owned()), input.file_flag.to_owned())
        }
        (None, Some(value)) => (value, format!("{} (or {})", input.flag, input.env)),
        (None, None) => return Ok(None),
    };
    if secret.expose().trim().is_empty() {
        return Err(format!("{source} is empty or blank"));
    }
    Ok(Some(secret))
}

/// The same for a secret the command cannot do without.
pub(crate) fn require<T: Secret>(
    input: SecretInput,
    value: Option<T>,
    file: Option<&Path>,
) -> Result<T, String> {
    resolve(input, value, file)?.ok_or_else(|| format!("{} is required", input.ways()))
}

/// Set once standard input has been read for a secret: it can hold only one.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// A small local file (a secret, a key, a certificate) named by `flag`, or standard input
/// for `-`: a regular file (a FIFO nobody writes to would hang, a device like /dev/zero
/// never ends) of at most [`MAX_LOCAL_FILE`] bytes of UTF-8 text. Wiped from memory when
/// dropped.
pub(crate) fn read_local(path: &Path, flag: &str) -> Result<Zeroizing<String>, String> {
    let problem = |why: &dyn std::fmt::Display| format!("{flag} {}: {why}", path.display());
    let mut bytes = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(problem(
                &"standard input is already read for another secret; give this one another way",
            ));
        }
        std::io::stdin()
            .lock()
            .take(MAX_LOCAL_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| problem(&error))?;
    } else {
        let metadata = std::fs::metadata(path).map_err(|error| problem(&error))?;
        if !metadata.is_file() {
            return Err(problem(&"is not a regular file"));
        }
        std::fs::File::open(path)
            .map_err(|error| problem(&error))?
            .take(MAX_LOCAL_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| problem(&error))?;
    }
    if bytes.len() as u64 > MAX_LOCAL_FILE {
        return Err(problem(&format_args!(
            "is larger than {} KiB",
            MAX_LOCAL_FILE / 1024
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| problem(&"is not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The warnings for secrets given on the command line, one per flag, in a fixed order.
pub(crate) fn argv_warnings(matches: &ArgMatches) -> Vec<String> {
    let mut found = BTreeSet::new();
    collect(matches, &mut found);
    ALL.iter()
        .filter(|input| found.contains(input.id))
        .map(|input| {
            format!(
                "obauth: warning: {} on the command line can be read by every user of this host \
                 (ps, /proc/PID/cmdline); use {} or {} PATH (- reads standard input)",
                input.flag, input.env, input.file_flag
            )
        })
        .collect()
}

/// A refresh token typed on the command line next to `--connection`: which one was meant
/// is unclear. (The same token in OBAUTH_REFRESH_TOKEN is simply not used: a variable
/// exported for other runs must not stop `--connection` from working, which is why this is
/// not clap's `conflicts_with`, which counts the environment too.)
pub(crate) fn argv_conflict(matches: &ArgMatches) -> Option<String> {
    if matches.try_contains_id("connection").unwrap_or(false)
        && matches.try_contains_id(REFRESH_TOKEN.id).unwrap_or(false)
        && matches.value_source(REFRESH_TOKEN.id) == Some(ValueSource::CommandLine)
    {
        return Some("--refresh-token cannot be used with --connection".into());
    }
    matches.subcommand().and_then(|(_, sub)| argv_conflict(sub))
}

fn collect(matches: &ArgMatches, found: &mut BTreeSet<&'static str>) {
    for input in ALL {
        if matches.try_contains_id(input.id).unwrap_or(false)
            && matches.value_source(input.id) == Some(ValueSource::CommandLine)
        {
            found.insert(input.id);
        }
    }
    if let Some((_, sub)) = matches.subcommand() {
        collect(sub, found);
    }
}
