//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use obauth_blocking::types::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken,
};

/// TrueLayer and Worldline auth servers from the command line.
#[derive(Debug, Parser)]
#[command(name = "obauth", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Which TrueLayer environment.
    #[arg(long, global = true, value_enum, default_value_t = Env::Sandbox)]
    pub(crate) env: Env,
    /// The API's server URL; wins over --env. TrueLayer: the origin
    /// (http://127.0.0.1:PORT for a local server). Worldline: the URL ending in /auth.
    #[arg(long, global = true)]
    pub(crate) base_url: Option<String>,
    /// The client id.
    #[arg(long, global = true, env = "OBAUTH_CLIENT_ID")]
    pub(crate) client_id: Option<String>,
    /// The client secret. Prefer OBAUTH_CLIENT_SECRET or --client-secret-file: the command
    /// line can be read by every user of the host.
    #[arg(
        long,
        global = true,
        env = "OBAUTH_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "SECRET"
    )]
    pub(crate) client_secret: Option<ClientSecret>,
    /// A file holding the client secret, `-` for standard input (wins over --client-secret
    /// and the environment).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Say what obauth does, on stderr: -v each call (operation, attempts, status, time,
    /// the server's request id, outcome), -vv also each attempt and the token managers'
    /// decisions. Never a secret.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// The whole call's timeout, in seconds: failed calls that are safe to repeat are
    /// retried (up to 3 attempts in all) only within it.
    #[arg(long, global = true, default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// `text` for people, `json` for scripts (exactly the parsed response on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Where tokens are kept between runs: `memory` (nothing written anywhere),
    /// `sqlite:PATH` (a file shared by every process of this host, created mode 0600) or
    /// `redis://[user:password@]host[:port][/db]` / `rediss://…` (shared by every host
    /// that reaches that Redis) or `postgres://user:password@host/db` (after `obauth store
    /// migrate`); give a password through OBAUTH_TOKEN_STORE, not here.
    /// Records are sealed with the key in OBAUTH_TOKEN_STORE_KEY or --token-store-key-file
    /// (32 bytes, base64; `obauth store-key` makes one).
    #[arg(
        long,
        global = true,
        env = "OBAUTH_TOKEN_STORE",
        hide_env_values = true,
        default_value = "memory",
        value_name = "STORE"
    )]
    pub(crate) token_store: StoreSpec,
    /// A file holding the token store's sealing key (wins over OBAUTH_TOKEN_STORE_KEY).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) token_store_key_file: Option<PathBuf>,
    /// The table of a `postgres://` token store, `SCHEMA.TABLE` (default
    /// `public.obauth_tokens`).
    #[arg(
        long,
        global = true,
        env = "OBAUTH_TOKEN_STORE_TABLE",
        value_name = "SCHEMA.TABLE"
    )]
    pub(crate) token_store_table: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Store {
    /// Create or upgrade the table of a `postgres://` token store (run it once, at deploy
    /// time: the store never migrates on its own). SQLite migrates its file on open; Redis
    /// needs nothing.
    Migrate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Env {
    Sandbox,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// A tour of every operation on the embedded mock server (no network, no credentials).
    Demo,
    /// Run obauth-mock in the foreground; prints its base URL and test credentials.
    Mock {
        /// The port (default: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// A fresh PKCE code_verifier / code_challenge pair.
    Pkce,
    /// A fresh random key for sealing the token store, base64 on stdout (keep it in a file
    /// or a secret manager; pass it with --token-store-key-file or OBAUTH_TOKEN_STORE_KEY).
    StoreKey,
    /// The token store itself.
    #[command(subcommand)]
    Store(Store),
    /// TrueLayer's Authentication Server.
    #[command(subcommand)]
    Truelayer(TrueLayer),
    /// Worldline Open Banking's token endpoint.
    #[command(subcommand)]
    Worldline(Worldline),
    /// Print shell completions for obauth (see the README for where to put them).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TrueLayer {
    /// POST /connect/token.
    #[command(subcommand)]
    Token(Token),
    /// Connect a bank account: opens the auth dialog in a browser, receives the redirect on
    /// a loopback address, exchanges the code and saves the tokens under --connection.
    Connect(Box<ConnectArgs>),
    /// POST /v1/authuri: a direct bank authentication link.
    AuthLink(Box<AuthLinkArgs>),
    /// POST /v1/reauthuri: a reauthentication link.
    ReauthLink {
        /// The refresh token of the connection (prefer OBAUTH_REFRESH_TOKEN or
        /// --refresh-token-file).
        #[arg(
            long,
            env = "OBAUTH_REFRESH_TOKEN",
            hide_env_values = true,
            allow_hyphen_values = true,
            value_name = "TOKEN"
        )]
        refresh_token: Option<RefreshToken>,
        /// A file holding the refresh token, `-` for standard input.
        #[arg(long, value_name = "PATH")]
        refresh_token_file: Option<PathBuf>,
        /// The redirect URI allow-listed in TrueLayer Console.
        #[arg(long)]
        redirect_uri: String,
        /// An opaque value returned on the redirect.
        #[arg(long)]
        state: Option<String>,
        /// Generate a PKCE pair, send the challenge, print the verifier.
        #[arg(long)]
        pkce: bool,
    },
    /// GET /api/providers.
    Providers {
        /// Only providers enabled for this client id.
        #[arg(long)]
        filter_client_id: Option<String>,
        /// Only providers with all these scopes (space-separated).
        #[arg(long)]
        scopes: Option<String>,
        /// Only providers in these countries (space-separated, e.g. "uk fr").
        #[arg(long)]
        countries: Option<String>,
    },
    /// POST and DELETE /api/debug.
    #[command(subcommand)]
    DebugId(DebugId),
    /// DELETE /api/delete: delete the connection behind an access token.
    DeleteCredential {
        #[command(flatten)]
        access_token: AccessTokenArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Token {
    /// An application token (Payments, Verification APIs). With a durable --token-store, a
    /// token still fresh from an earlier run is served from the store, and `expires_in` is
    /// what it has left.
    ClientCredentials {
        /// Space-separated scopes, e.g. "payments".
        #[arg(long)]
        scope: String,
    },
    /// Exchange the authorization code from the redirect.
    Exchange {
        /// The code (prefer OBAUTH_CODE or --code-file).
        #[arg(
            long,
            env = "OBAUTH_CODE",
            hide_env_values = true,
            allow_hyphen_values = true,
            value_name = "CODE"
        )]
        code: Option<AuthorizationCode>,
        /// A file holding the code, `-` for standard input.
        #[arg(long, value_name = "PATH")]
        code_file: Option<PathBuf>,
        /// The redirect URI the link used.
        #[arg(long)]
        redirect_uri: String,
        /// The PKCE verifier, if the link carried a challenge (prefer OBAUTH_CODE_VERIFIER
        /// or --code-verifier-file).
        #[arg(
            long,
            env = "OBAUTH_CODE_VERIFIER",
            hide_env_values = true,
            allow_hyphen_values = true,
            value_name = "VERIFIER"
        )]
        code_verifier: Option<CodeVerifier>,
        /// A file holding the PKCE verifier, `-` for standard input.
        #[arg(long, value_name = "PATH")]
        code_verifier_file: Option<PathBuf>,
        /// Save the connection's tokens in the --token-store under this name (replacing an
        /// earlier connection of that name); the refresh token is then not printed.
        #[arg(long, value_name = "NAME")]
        save_as: Option<String>,
    },
    /// Refresh an access token: of a connection saved in the --token-store (whose rotated
    /// refresh token is written back before the access token is printed), or from a refresh
    /// token (the refresh token rotates: keep the new one).
    Refresh {
        /// The refresh token (prefer OBAUTH_REFRESH_TOKEN or --refresh-token-file).
        #[arg(
            long,
            env = "OBAUTH_REFRESH_TOKEN",
            hide_env_values = true,
            allow_hyphen_values = true,
            value_name = "TOKEN"
        )]
        refresh_token: Option<RefreshToken>,
        /// A file holding the refresh token, `-` for standard input.
        #[arg(long, value_name = "PATH", conflicts_with = "connection")]
        refresh_token_file: Option<PathBuf>,
        /// The name a connection was saved under with `token exchange --save-as` (wins over
        /// OBAUTH_REFRESH_TOKEN; not with --refresh-token).
        #[arg(long, value_name = "NAME")]
        connection: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Space-separated scopes, e.g. "info accounts offline_access" (offline_access for a
    /// refresh token).
    #[arg(long)]
    pub(crate) scope: String,
    /// The loopback redirect URI allow-listed in TrueLayer Console, e.g.
    /// http://localhost:3000/callback; without a port, any free one (for servers that
    /// allow it, as RFC 8252 asks).
    #[arg(long)]
    pub(crate) redirect_uri: String,
    /// Skip the dialog's provider selection: this provider (e.g. ob-monzo).
    #[arg(long)]
    pub(crate) provider_id: Option<String>,
    /// The providers the dialog offers (space-separated; default: "uk-cs-mock uk-ob-all
    /// uk-oauth-all" on the sandbox, "uk-ob-all uk-oauth-all" elsewhere).
    #[arg(long)]
    pub(crate) providers: Option<String>,
    /// Save the connection's tokens in the --token-store under this name (replacing an
    /// earlier connection of that name); refresh later with `token refresh --connection`.
    #[arg(long, value_name = "NAME")]
    pub(crate) connection: Option<String>,
    /// Print the access and refresh tokens (not printed otherwise).
    #[arg(long)]
    pub(crate) print_tokens: bool,
    /// Do not open a browser: print the link and wait.
    #[arg(long)]
    pub(crate) no_browser: bool,
    /// How long to wait for the redirect, in seconds.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub(crate) wait: f64,
    /// `form_post` to receive the code as a POSTed form.
    #[arg(long, value_parser = ["form_post"])]
    pub(crate) response_mode: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AuthLinkArgs {
    /// The provider to link to.
    #[arg(long)]
    pub(crate) provider_id: String,
    /// Space-separated scopes, e.g. "info accounts offline_access".
    #[arg(long)]
    pub(crate) scope: String,
    /// The redirect URI allow-listed in TrueLayer Console.
    #[arg(long)]
    pub(crate) redirect_uri: String,
    /// The id of the consent you captured.
    #[arg(long)]
    pub(crate) consent_id: String,
    /// An opaque value returned on the redirect.
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// The user's id.
    #[arg(long)]
    pub(crate) user_id: Option<String>,
    /// The user's full name.
    #[arg(long)]
    pub(crate) user_name: Option<String>,
    /// The user's email.
    #[arg(long)]
    pub(crate) user_email: Option<String>,
    /// The user's phone.
    #[arg(long)]
    pub(crate) user_phone: Option<String>,
    /// Generate a PKCE pair, send the challenge, print the verifier.
    #[arg(long)]
    pub(crate) pkce: bool,
    /// `form_post` to receive the code as a POSTed form.
    #[arg(long, value_parser = ["form_post"])]
    pub(crate) response_mode: Option<String>,
    /// An Auth Journey Analytics tracking id.
    #[arg(long)]
    pub(crate) tracking_id: Option<String>,
    /// A provider input, KEY=VALUE (repeatable).
    #[arg(long = "auth-input", value_name = "KEY=VALUE")]
    pub(crate) auth_inputs: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DebugId {
    /// POST /api/debug.
    Create {
        #[command(flatten)]
        access_token: AccessTokenArgs,
    },
    /// DELETE /api/debug: with no body, as the spec describes it; with an access token
    /// (optional), that token in the body as create sends it, for a server that wants it
    /// (see docs/spec-notes.md).
    Delete {
        #[command(flatten)]
        access_token: AccessTokenArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Worldline {
    /// POST /auth/realms/{realm}/protocol/openid-connect/token (client_credentials).
    Token {
        /// The realm from onboarding.
        #[arg(long)]
        realm: String,
        /// Space-separated services, e.g. "VOP WERO".
        #[arg(long)]
        scope: String,
        /// A PEM private key (PKCS#1 or PKCS#8) to sign a client assertion with (instead of
        /// a client secret).
        #[arg(long, requires = "certificate")]
        private_key: Option<PathBuf>,
        /// The PEM certificate registered with Worldline (its SHA-1 fingerprint is the kid).
        #[arg(long, requires = "private_key")]
        certificate: Option<PathBuf>,
        /// The assertion audience (default: {base}/realms/{realm}).
        #[arg(long, requires = "private_key")]
        audience: Option<String>,
    },
}

/// A user's access token: on the command line, in OBAUTH_ACCESS_TOKEN, or in a file.
#[derive(Debug, Args)]
pub(crate) struct AccessTokenArgs {
    /// The user's access token (prefer OBAUTH_ACCESS_TOKEN or --access-token-file).
    #[arg(
        long,
        env = "OBAUTH_ACCESS_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) access_token: Option<AccessToken>,
    /// A file holding the access token, `-` for standard input.
    #[arg(long, value_name = "PATH")]
    pub(crate) access_token_file: Option<PathBuf>,
}

/// A `--token-store` value as typed. It may hold a database password, so its `Debug`
/// shows the URL with the password masked.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoreSpec(String);

impl StoreSpec {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for StoreSpec {
    fn from(spec: String) -> Self {
        Self(spec)
    }
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.contains("://") {
            obauth_blocking::core::store::url_without_password(&self.0)
        } else {
            // `memory` or `sqlite:PATH`: nothing secret.
            self.0.clone()
        };
        f.debug_tuple("StoreSpec").field(&shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::Cli;
    use crate::secrets::argv_warnings;

    /// Every command line that takes a secret, each secret a unique marker.
    fn command_lines() -> Vec<Vec<&'static str>> {
        let global = [
            "obauth",
            "--client-secret",
            "MARKER-client-secret",
            "--token-store",
            "redis://user:MARKER-store-password@127.0.0.1:1/0",
        ];
        let commands: [&[&str]; 7] = [
            &[
                "truelayer",
                "token",
                "exchange",
                "--code",
                "-MARKER-code",
                "--code-verifier",
                "MARKER-verifier",
                "--redirect-uri",
                "https://app.example/cb",
            ],
            &[
                "truelayer",
                "token",
                "refresh",
                "--refresh-token",
                "MARKER-refresh",
            ],
            &[
                "truelayer",
                "reauth-link",
                "--refresh-token",
                "MARKER-refresh",
                "--redirect-uri",
                "https://app.example/cb",
            ],
            &[
                "truelayer",
                "delete-credential",
                "--access-token",
                "MARKER-access",
            ],
            &[
                "truelayer",
                "debug-id",
                "create",
                "--access-token",
                "MARKER-access",
            ],
            &[
                "truelayer",
                "debug-id",
                "delete",
                "--access-token",
                "MARKER-access",
            ],
            &["worldline", "token", "--realm", "r", "--scope", "VOP"],
        ];
        commands
            .iter()
            .map(|command| global.iter().chain(command.iter()).copied().collect())
            .collect()
    }

    #[test]
    fn a_parsed_command_line_shows_no_secret_in_debug() {
        for line in command_lines() {
            let matches = Cli::command().try_get_matches_from(&line).unwrap();
            let cli = Cli::from_arg_matches(&matches).unwrap();
            let shown = format!("{cli:?}");
            assert!(
                !shown.contains("MARKER"),
                "{line:?} shows a secret: {shown}"
            );
            // The values did arrive, redacted: the test is not vacuous.
            assert!(shown.contains("redacted"), "{shown}");
            assert!(shown.contains("redis://user:***@127.0.0.1:1/0"), "{shown}");
        }
    }

    #[test]
    fn each_secret_given_on_argv_gets_one_warning_naming_the_safer_ways() {
        let lines = command_lines();
        let warnings =
            |line: &[&str]| argv_warnings(&Cli::command().try_get_matches_from(line).unwrap());
        let exchange = warnings(&lines[0]);
        assert_eq!(exchange.len(), 3, "{exchange:?}");
        assert!(exchange[0].contains("--client-secret on the command line"));
        assert!(exchange[1].contains("--code on the command line"));
        assert!(exchange[1].contains("OBAUTH_CODE or --code-file"));
        assert!(exchange[2].contains("--code-verifier on the command line"));
        assert!(exchange.iter().all(|w| !w.contains("MARKER")));
        let delete = warnings(&lines[3]);
        assert_eq!(delete.len(), 2);
        assert!(delete[1].contains("--access-token on the command line"));
        // Files are not warned about.
        let quiet = warnings(&[
            "obauth",
            "--client-secret-file",
            "-",
            "truelayer",
            "token",
            "refresh",
            "--refresh-token-file",
            "/tmp/x",
        ]);
        assert!(quiet.is_empty(), "{quiet:?}");
    }
}
