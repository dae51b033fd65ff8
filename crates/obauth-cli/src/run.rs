//! Runs one command with obauth-blocking and prints its result.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::retry::RetryPolicy;
use obauth_blocking::core::truelayer::Environment;
use obauth_blocking::core::truelayer::auth_link::{AuthLink, ReauthLink};
use obauth_blocking::core::worldline::WorldlineAuth;
use obauth_blocking::core::worldline::assertion::{
    AssertionConfig, RsaKeySigner, SigningCertificate,
};
use obauth_blocking::core::{BaseUrl, OsRandom};
use obauth_blocking::types::truelayer::auth_link::AuthLinkUser;
use obauth_blocking::types::truelayer::providers::ProvidersQuery;
use obauth_blocking::types::truelayer::{Country, Scope};
use obauth_blocking::types::{AccessToken, ClientSecret, Scopes, worldline};
use obauth_blocking::{
    Error, RedisStore, SealingKey, SqliteStore, Timeouts, TokenSource, TokenStore, TrueLayerClient,
    UserTokens, WorldlineClient,
};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::{
    AccessTokenArgs, Cli, Command, DebugId, Env, Global, Output, Store, Token, TrueLayer, Worldline,
};
use crate::failure::Failure;
use crate::postgres::BlockingPostgres;
use crate::secrets;
use crate::terminal::escaped;

pub(crate) fn run(cli: Cli) -> Result<(), Failure> {
    let global = cli.global;
    let output = global.output;
    match cli.command {
        Command::Demo => crate::demo::run(),
        Command::Mock { port } => mock(port),
        Command::Pkce => {
            let pkce = Pkce::generate(&mut OsRandom).map_err(|e| Failure::from_error(e, output))?;
            print(
                output,
                &json!({
                    "code_verifier": pkce.verifier().expose_secret(),
                    "code_challenge": pkce.challenge(),
                    "code_challenge_method": "S256",
                }),
            );
            Ok(())
        }
        Command::StoreKey => {
            let key = SealingKey::generate(&mut OsRandom)
                .map_err(|error| Failure::from_error(error.into(), output))?;
            say!("{}", &*key.expose_base64());
            Ok(())
        }
        Command::Store(Store::Migrate) => migrate(&global).map_err(|e| e.into_failure(output)),
        Command::Truelayer(command) => {
            truelayer(&global, command).map_err(|e| e.into_failure(output))
        }
        Command::Worldline(command) => {
            worldline(&global, command).map_err(|e| e.into_failure(output))
        }
        Command::Completions { shell } => {
            let mut completions = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "obauth",
                &mut completions,
            );
            say!("{}", String::from_utf8_lossy(&completions).trim_end());
            Ok(())
        }
    }
}

/// A failure before it knows the output mode.
enum Problem {
    Usage(String),
    Call(Error),
    Receive(obauth_blocking::loopback::ReceiveError),
}

impl Problem {
    fn into_failure(self, output: Output) -> Failure {
        match self {
            Problem::Usage(message) => Failure::Usage(message),
            Problem::Call(error) => Failure::from_error(error, output),
            Problem::Receive(error) => Failure::from_receive(error, output),
        }
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Problem::Call(error)
    }
}

impl From<obauth_blocking::core::InvalidInput> for Problem {
    fn from(invalid: obauth_blocking::core::InvalidInput) -> Self {
        Problem::Usage(invalid.to_string())
    }
}

impl From<obauth_blocking::core::worldline::assertion::KeyError> for Problem {
    fn from(error: obauth_blocking::core::worldline::assertion::KeyError) -> Self {
        Problem::Usage(error.to_string())
    }
}

fn timeouts(global: &Global) -> Result<Timeouts, Problem> {
    if !(global.timeout.is_finite() && global.timeout > 0.0 && global.timeout <= 3600.0) {
        return Err(Problem::Usage(
            "--timeout must be a number of seconds between 0 and 3600".into(),
        ));
    }
    let limit = Duration::from_secs_f64(global.timeout);
    Ok(Timeouts {
        connect: limit,
        total: limit,
    })
}

/// Retries when a pause fits in the --timeout the attempts share; none when it does not.
fn retry_policy(global: &Global) -> RetryPolicy {
    let policy = RetryPolicy::default();
    if policy.base_delay.as_secs_f64() < global.timeout {
        policy
    } else {
        RetryPolicy::never()
    }
}

fn read_local(path: &std::path::Path, flag: &str) -> Result<Zeroizing<String>, Problem> {
    secrets::read_local(path, flag).map_err(Problem::Usage)
}

fn client_secret(global: &Global) -> Result<Option<ClientSecret>, Problem> {
    secrets::resolve(
        secrets::CLIENT_SECRET,
        global.client_secret.clone(),
        global.client_secret_file.as_deref(),
    )
    .map_err(Problem::Usage)
}

/// The user's access token a command needs, however it was given.
fn access_token(args: AccessTokenArgs) -> Result<AccessToken, Problem> {
    secrets::require(
        secrets::ACCESS_TOKEN,
        args.access_token,
        args.access_token_file.as_deref(),
    )
    .map_err(Problem::Usage)
}

fn require_client_id(global: &Global) -> Result<String, Problem> {
    global
        .client_id
        .clone()
        .ok_or_else(|| Problem::Usage("--client-id (or OBAUTH_CLIENT_ID) is required".into()))
}

fn truelayer_client(global: &Global, client_id: String) -> Result<TrueLayerClient, Problem> {
    let environment = match (&global.base_url, global.env) {
        (Some(url), _) => Environment::Custom(BaseUrl::parse(url)?),
        (None, Env::Sandbox) => Environment::Sandbox,
        (None, Env::Production) => Environment::Production,
    };
    let mut builder = TrueLayerClient::builder(environment, client_id)
        .timeouts(timeouts(global)?)
        .retry_policy(retry_policy(global));
    if let Some(secret) = client_secret(global)? {
        builder = builder.client_secret(secret);
    }
    Ok(builder.build()?)
}

fn truelayer(global: &Global, command: TrueLayer) -> Result<(), Problem> {
    let output = global.output;
    match command {
        TrueLayer::Connect(args) => {
            let client = truelayer_client(global, require_client_id(global)?)?;
            if !client.config().has_client_secret() {
                return Err(Problem::Usage(
                    "a client secret is required: --client-secret, OBAUTH_CLIENT_SECRET or --client-secret-file".into(),
                ));
            }
            let connect = crate::connect::Connect {
                client: &client,
                store: token_store(global)?,
                output,
                sandbox: global.base_url.is_none() && global.env == Env::Sandbox,
            };
            crate::connect::run(connect, &args).map_err(|error| match error {
                crate::connect::ConnectError::Usage(message) => Problem::Usage(message),
                crate::connect::ConnectError::Receive(error) => Problem::Receive(error),
                crate::connect::ConnectError::Call(error) => Problem::Call(error),
            })?;
        }
        TrueLayer::Token(token) => {
            let client = truelayer_client(global, require_client_id(global)?)?;
            if !client.config().has_client_secret() {
                return Err(Problem::Usage(
                    "a client secret is required: --client-secret, OBAUTH_CLIENT_SECRET or --client-secret-file".into(),
                ));
            }
            let store = token_store(global)?;
            let response = match (token, store) {
                (Token::ClientCredentials { scope }, Some(store)) => {
                    let source =
                        TokenSource::truelayer(client, Scopes::parse(&scope)).with_store(store);
                    let access = source.access_token()?;
                    managed_token(None, &access, source.remaining())
                }
                (Token::ClientCredentials { scope }, None) => {
                    to_json(&client.client_credentials(Scopes::parse(&scope))?)
                }
                (
                    Token::Exchange {
                        code,
                        code_file,
                        redirect_uri,
                        code_verifier,
                        code_verifier_file,
                        save_as,
                    },
                    store,
                ) => {
                    let code = secrets::require(secrets::CODE, code, code_file.as_deref())
                        .map_err(Problem::Usage)?;
                    let code_verifier = secrets::resolve(
                        secrets::CODE_VERIFIER,
                        code_verifier,
                        code_verifier_file.as_deref(),
                    )
                    .map_err(Problem::Usage)?;
                    let requested_at = SystemTime::now();
                    let response = client.exchange_code(code, redirect_uri, code_verifier)?;
                    match save_as {
                        None => to_json(&response),
                        Some(name) => {
                            let store = store.ok_or_else(needs_a_store)?;
                            UserTokens::from_token_response(
                                &client,
                                &name,
                                &response,
                                requested_at,
                                store,
                            )?;
                            let mut shown = to_json(&response);
                            // The refresh token is in the store; it is not printed.
                            if let Some(map) = shown.as_object_mut() {
                                map.remove("refresh_token");
                                map.insert("connection".into(), name.into());
                            }
                            shown
                        }
                    }
                }
                (
                    Token::Refresh {
                        connection: Some(name),
                        ..
                    },
                    store,
                ) => {
                    let store = store.ok_or_else(needs_a_store)?;
                    let tokens = UserTokens::open(&client, &name, store)?;
                    let access = tokens.refresh_now()?;
                    managed_token(Some(&name), &access, tokens.remaining())
                }
                (
                    Token::Refresh {
                        refresh_token,
                        refresh_token_file,
                        connection: None,
                    },
                    _,
                ) => {
                    let refresh_token = secrets::resolve(
                        secrets::REFRESH_TOKEN,
                        refresh_token,
                        refresh_token_file.as_deref(),
                    )
                    .map_err(Problem::Usage)?
                    .ok_or_else(|| {
                        Problem::Usage(format!(
                            "token refresh needs --connection NAME or {}",
                            secrets::REFRESH_TOKEN.ways()
                        ))
                    })?;
                    to_json(&client.refresh(refresh_token)?)
                }
            };
            print(output, &response);
        }
        TrueLayer::AuthLink(args) => {
            let client = truelayer_client(global, require_client_id(global)?)?;
            let mut link = AuthLink::new(
                &args.provider_id,
                Scopes::parse(&args.scope),
                &args.redirect_uri,
                &args.consent_id,
            );
            if let Some(state) = &args.state {
                link = link.state(state);
            }
            if args.user_id.is_some()
                || args.user_name.is_some()
                || args.user_email.is_some()
                || args.user_phone.is_some()
            {
                link = link.user(AuthLinkUser {
                    id: args.user_id,
                    name: args.user_name,
                    email: args.user_email,
                    phone: args.user_phone,
                });
            }
            if args.response_mode.is_some() {
                link = link.form_post();
            }
            if let Some(tracking_id) = &args.tracking_id {
                link = link.tracking_id(tracking_id);
            }
            for input in &args.auth_inputs {
                let (key, value) = input
                    .split_once('=')
                    .filter(|(key, _)| !key.is_empty())
                    .ok_or_else(|| {
                        // Not echoed: an auth input may be a password.
                        Problem::Usage(
                            "--auth-input must be KEY=VALUE with a non-empty KEY".to_owned(),
                        )
                    })?;
                link = link.auth_input(key, value);
            }
            let pkce = args
                .pkce
                .then(|| Pkce::generate(&mut OsRandom))
                .transpose()?;
            if let Some(pkce) = &pkce {
                link = link.pkce(pkce);
            }
            let url = client.create_auth_link(link)?;
            print_link(output, &url, pkce.as_ref());
        }
        TrueLayer::ReauthLink {
            refresh_token,
            refresh_token_file,
            redirect_uri,
            state,
            pkce,
        } => {
            let refresh_token = secrets::require(
                secrets::REFRESH_TOKEN,
                refresh_token,
                refresh_token_file.as_deref(),
            )
            .map_err(Problem::Usage)?;
            let client = truelayer_client(global, require_client_id(global)?)?;
            let mut link = ReauthLink::new(refresh_token, redirect_uri);
            if let Some(state) = &state {
                link = link.state(state);
            }
            let pkce = pkce.then(|| Pkce::generate(&mut OsRandom)).transpose()?;
            if let Some(pkce) = &pkce {
                link = link.pkce(pkce);
            }
            let url = client.create_reauth_link(link)?;
            print_link(output, &url, pkce.as_ref());
        }
        TrueLayer::Providers {
            filter_client_id,
            scopes,
            countries,
        } => {
            // The providers list needs no credentials; the client id only names the caller.
            let client_id = global
                .client_id
                .clone()
                .unwrap_or_else(|| "obauth-cli".into());
            let client = truelayer_client(global, client_id)?;
            let query = ProvidersQuery {
                client_id: filter_client_id,
                scopes: scopes
                    .as_deref()
                    .map(Scopes::<Scope>::parse)
                    .unwrap_or_default(),
                countries: countries
                    .as_deref()
                    .map(|c| c.split_whitespace().map(Country::parse).collect())
                    .unwrap_or_default(),
            };
            let providers = client.providers(query)?;
            match output {
                Output::Json => print(output, &to_json(&providers)),
                Output::Text => {
                    for provider in &providers {
                        say!(
                            "{:<28} {:<3} {:<28} {}",
                            escaped(provider.provider_id.as_str()),
                            escaped(provider.country.as_ref()),
                            escaped(&provider.display_name),
                            escaped(&provider.scopes.to_string())
                        );
                    }
                }
            }
        }
        TrueLayer::DebugId(command) => {
            let client = truelayer_client(
                global,
                global
                    .client_id
                    .clone()
                    .unwrap_or_else(|| "obauth-cli".into()),
            )?;
            let response = match command {
                DebugId::Create { access_token: args } => {
                    client.create_debug_id(access_token(args)?)?
                }
                DebugId::Delete { access_token: args } => {
                    let token = secrets::resolve(
                        secrets::ACCESS_TOKEN,
                        args.access_token,
                        args.access_token_file.as_deref(),
                    )
                    .map_err(Problem::Usage)?;
                    match token {
                        None => client.delete_debug_id()?,
                        Some(token) => client.delete_debug_id_with_token(token)?,
                    }
                }
            };
            print(output, &to_json(&response));
        }
        TrueLayer::DeleteCredential { access_token: args } => {
            let access_token = access_token(args)?;
            let client = truelayer_client(
                global,
                global
                    .client_id
                    .clone()
                    .unwrap_or_else(|| "obauth-cli".into()),
            )?;
            client.delete_credential(access_token)?;
            // The API answers with no body: an empty object in JSON, a line for people.
            match output {
                Output::Json => print(output, &json!({})),
                Output::Text => say!("connection deleted"),
            }
        }
    }
    Ok(())
}

fn worldline(global: &Global, command: Worldline) -> Result<(), Problem> {
    let Worldline::Token {
        realm,
        scope,
        private_key,
        certificate,
        audience,
    } = command;
    let base = global.base_url.as_deref().ok_or_else(|| {
        Problem::Usage(
            "Worldline commands need --base-url https://HOST/auth (the spec names no public host)"
                .into(),
        )
    })?;
    let auth = match (private_key, certificate) {
        (Some(key_path), Some(cert_path)) => {
            let certificate =
                SigningCertificate::from_pem(&read_local(&cert_path, "--certificate")?)?;
            let signer =
                RsaKeySigner::from_pem(&read_local(&key_path, "--private-key")?, &certificate)?;
            let mut assertion = AssertionConfig::new(signer)?;
            if let Some(audience) = audience {
                assertion = assertion.with_audience(audience);
            }
            WorldlineAuth::Assertion(assertion)
        }
        _ => WorldlineAuth::ClientSecret(client_secret(global)?.ok_or_else(|| {
            Problem::Usage(
                "authenticate with --client-secret (or OBAUTH_CLIENT_SECRET, --client-secret-file) or --private-key with --certificate".into(),
            )
        })?),
    };
    let client = WorldlineClient::builder(
        BaseUrl::parse(base)?,
        realm,
        require_client_id(global)?,
        auth,
    )
    .timeouts(timeouts(global)?)
    .retry_policy(retry_policy(global))
    .build()?;
    let scopes = Scopes::<worldline::Scope>::parse(&scope);
    let shown = match token_store(global)? {
        Some(store) => {
            let source = TokenSource::worldline(client, scopes).with_store(store);
            let access = source.access_token()?;
            managed_token(None, &access, source.remaining())
        }
        None => to_json(&client.token(scopes)?),
    };
    print(global.output, &shown);
    Ok(())
}

/// `obauth store migrate`: creates or upgrades a PostgreSQL store's table.
fn migrate(global: &Global) -> Result<(), Problem> {
    let spec = global.token_store.as_str();
    if !(spec.starts_with("postgres://") || spec.starts_with("postgresql://")) {
        return Err(Problem::Usage(
            "store migrate is for a postgres:// --token-store (OBAUTH_TOKEN_STORE): SQLite \
             migrates its file on open and Redis needs nothing"
                .into(),
        ));
    }
    warn_if_password_on_argv(spec);
    let store = BlockingPostgres::open(spec, global.token_store_table.as_deref(), None)
        .map_err(Error::Store)?;
    let table = store.migrate().map_err(Error::Store)?;
    print(
        global.output,
        &json!({
            "migrated": table,
            "schema_version": obauth_async::PostgresStore::SCHEMA_VERSION,
        }),
    );
    Ok(())
}

/// The token store `--token-store` names: `None` for `memory`, the default.
fn token_store(global: &Global) -> Result<Option<Arc<dyn TokenStore>>, Problem> {
    let key = sealing_key(global)?;
    match global.token_store.as_str() {
        "memory" => match key {
            Some(_) => Err(Problem::Usage(
                "a sealing key was given but --token-store is `memory`: nothing is written to seal"
                    .into(),
            )),
            None => Ok(None),
        },
        spec if spec.starts_with("postgres://") || spec.starts_with("postgresql://") => {
            warn_if_password_on_argv(spec);
            let store = BlockingPostgres::open(spec, global.token_store_table.as_deref(), key)
                .map_err(Error::Store)?;
            Ok(Some(Arc::new(store)))
        }
        spec if spec.starts_with("redis://") || spec.starts_with("rediss://") => {
            warn_if_password_on_argv(spec);
            let store = match key {
                Some(key) => RedisStore::open_sealed(spec, key),
                None => RedisStore::open(spec),
            }
            .map_err(Error::Store)?;
            Ok(Some(Arc::new(store)))
        }
        spec => {
            let path = spec.strip_prefix("sqlite:").filter(|path| !path.is_empty());
            let Some(path) = path else {
                // Not echoed: a store URL may carry a password.
                return Err(Problem::Usage(
                    "--token-store must be `memory`, `sqlite:PATH`, `redis://…` or `postgres://…`"
                        .into(),
                ));
            };
            let store = match key {
                Some(key) => SqliteStore::open_sealed(path, key),
                None => SqliteStore::open(path),
            }
            .map_err(Error::Store)?;
            Ok(Some(Arc::new(store)))
        }
    }
}

/// A Redis URL with a password typed on the command line is visible to every user of the
/// host (`ps`, `/proc/PID/cmdline`): say so, once.
fn warn_if_password_on_argv(url: &str) {
    let has_password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .is_some_and(|authority| authority.contains('@'));
    if has_password && std::env::args().any(|arg| arg.contains(url)) {
        complain!(
            "obauth: warning: the --token-store URL carries a password on the command line, \
             where other users of this host can read it; set OBAUTH_TOKEN_STORE instead"
        );
    }
}

/// The sealing key from --token-store-key-file or OBAUTH_TOKEN_STORE_KEY, if either is set.
fn sealing_key(global: &Global) -> Result<Option<SealingKey>, Problem> {
    let text = match &global.token_store_key_file {
        Some(path) => read_local(path, "--token-store-key-file")?,
        None => match std::env::var("OBAUTH_TOKEN_STORE_KEY") {
            Ok(text) => Zeroizing::new(text),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Problem::Usage(
                    "OBAUTH_TOKEN_STORE_KEY is not valid text".into(),
                ));
            }
        },
    };
    Ok(Some(SealingKey::from_base64(&text)?))
}

fn needs_a_store() -> Problem {
    Problem::Usage(
        "saving a connection needs a durable --token-store (sqlite:PATH or redis://…)".into(),
    )
}

/// A token a manager served: the token, and how long it is still served.
fn managed_token(
    connection: Option<&str>,
    access: &AccessToken,
    remaining: Option<Duration>,
) -> serde_json::Value {
    let mut value = json!({
        "access_token": access.expose_secret(),
        "token_type": "Bearer",
        "expires_in": remaining.unwrap_or_default().as_secs(),
    });
    if let Some(connection) = connection {
        value["connection"] = connection.into();
    }
    value
}

/// The link answer as the API sends it (`result`, `success`), plus the PKCE verifier the
/// user must keep when `--pkce` generated one.
fn print_link(output: Output, url: &str, pkce: Option<&Pkce>) {
    let mut value = json!({ "result": url, "success": true });
    if let Some(pkce) = pkce {
        value["code_verifier"] = pkce.verifier().expose_secret().into();
    }
    match output {
        Output::Json => print(output, &value),
        Output::Text => {
            say!("link: {}", escaped(url));
            if let Some(pkce) = pkce {
                say!(
                    "code_verifier: {} (keep it: the token exchange needs it)",
                    pkce.verifier().expose_secret()
                );
            }
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Text: one `key: value` line per field; JSON: the document on one line.
fn print(output: Output, value: &serde_json::Value) {
    match output {
        Output::Json => say!("{value}"),
        // Server text, shown and not obeyed by the terminal.
        Output::Text => match value.as_object() {
            Some(map) => {
                for (key, item) in map {
                    let key = escaped(key);
                    match item {
                        serde_json::Value::String(text) => say!("{key}: {}", escaped(text)),
                        other => say!("{key}: {}", escaped(&other.to_string())),
                    }
                }
            }
            None => say!("{}", escaped(&value.to_string())),
        },
    }
}

fn mock(port: u16) -> Result<(), Failure> {
    let mock = obauth_mock::MockServer::start_on(port).map_err(|error| {
        Failure::Usage(format!("cannot start the mock on port {port}: {error}"))
    })?;
    say!("obauth-mock listening");
    say!("truelayer base URL:  {}", mock.base_url());
    say!("  client id:         {}", obauth_mock::TRUELAYER_CLIENT_ID);
    say!(
        "  client secret:     {}",
        obauth_mock::TRUELAYER_CLIENT_SECRET
    );
    say!(
        "  redirect URI:      {}",
        obauth_mock::TRUELAYER_REDIRECT_URI
    );
    say!("worldline base URL:  {}", mock.worldline_base_url());
    say!("  realm:             {}", obauth_mock::WORLDLINE_REALM);
    say!("  client id:         {}", obauth_mock::WORLDLINE_CLIENT_ID);
    say!(
        "  client secret:     {}",
        obauth_mock::WORLDLINE_CLIENT_SECRET
    );
    say!(
        "  loopback URIs:     {} (any port)",
        obauth_mock::TRUELAYER_LOOPBACK_REDIRECT_URIS.join(", ")
    );
    say!("consent: open a link the mock returns (or a dialog URL): Allow or Deny");
    loop {
        std::thread::park();
    }
}
