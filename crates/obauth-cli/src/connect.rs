//! `obauth truelayer connect`: one command from nothing to a saved connection. PKCE and
//! `state`, the dialog link, the browser, the loopback redirect, the code exchange, the
//! store.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use obauth_blocking::core::OsRandom;
use obauth_blocking::core::pkce::Pkce;
use obauth_blocking::core::random::new_state;
use obauth_blocking::core::truelayer::auth_dialog::AuthDialog;
use obauth_blocking::loopback::{Canceller, ReceiveError, RedirectListener};
use obauth_blocking::types::Scopes;
use obauth_blocking::types::truelayer::token::TokenResponse;
use obauth_blocking::{TrueLayerClient, UserTokens};
use serde_json::json;

use crate::cli::{ConnectArgs, Output};
use crate::terminal::escaped;

/// How often a plain (not a terminal) stderr gets a "still waiting" line.
const PLAIN_STATUS_EVERY: Duration = Duration::from_secs(30);

/// Why `connect` did not connect, before the shared failures of `run`.
pub(crate) enum ConnectError {
    /// Bad usage or local input.
    Usage(String),
    /// The listener or the callback failed.
    Receive(ReceiveError),
    /// The exchange or the store failed.
    Call(obauth_blocking::Error),
}

impl From<obauth_blocking::Error> for ConnectError {
    fn from(error: obauth_blocking::Error) -> Self {
        ConnectError::Call(error)
    }
}

impl From<ReceiveError> for ConnectError {
    fn from(error: ReceiveError) -> Self {
        ConnectError::Receive(error)
    }
}

/// What `connect` needs from `run`: a built client and the store, if any.
pub(crate) struct Connect<'a> {
    pub(crate) client: &'a TrueLayerClient,
    pub(crate) store: Option<std::sync::Arc<dyn obauth_blocking::TokenStore>>,
    pub(crate) output: Output,
    /// Whether the client talks to TrueLayer's sandbox (whose test bank is `uk-cs-mock`).
    pub(crate) sandbox: bool,
}

pub(crate) fn run(connect: Connect<'_>, args: &ConnectArgs) -> Result<(), ConnectError> {
    if !(args.wait.is_finite() && args.wait >= 1.0 && args.wait <= 3600.0) {
        return Err(ConnectError::Usage(
            "--wait must be a number of seconds between 1 and 3600".into(),
        ));
    }
    // Where the tokens go is settled before anyone is sent to a browser.
    let saving = match (&args.connection, &connect.store) {
        (Some(name), Some(store)) => Some((name.clone(), std::sync::Arc::clone(store))),
        (Some(_), None) => {
            return Err(ConnectError::Usage(
                "--connection needs a durable --token-store (sqlite:PATH, redis://… or \
                 postgres://…): the memory store keeps nothing after this command"
                    .into(),
            ));
        }
        (None, _) if args.print_tokens => None,
        (None, _) => {
            return Err(ConnectError::Usage(
                "connect keeps the tokens under --connection NAME in a durable --token-store, \
                 or prints them with --print-tokens: give one"
                    .into(),
            ));
        }
    };
    let scopes = Scopes::parse(&args.scope);
    if saving.is_some() && !args.scope.split_whitespace().any(|s| s == "offline_access") {
        return Err(ConnectError::Usage(
            "--connection saves the connection's refresh token, which only the \
             offline_access scope gives: add it to --scope (or use --print-tokens alone)"
                .into(),
        ));
    }
    let pkce = Pkce::generate(&mut OsRandom)?;
    let state = new_state(&mut OsRandom).map_err(obauth_blocking::Error::from)?;
    let mut listener = RedirectListener::bind(&args.redirect_uri, &state)?;
    let redirect_uri = listener.redirect_uri().to_owned();
    let mut dialog = AuthDialog::new(&redirect_uri, scopes, &state).pkce(&pkce);
    let providers = args.providers.as_deref().unwrap_or(if connect.sandbox {
        // TrueLayer's sandbox bank is `uk-cs-mock`.
        "uk-cs-mock uk-ob-all uk-oauth-all"
    } else {
        "uk-ob-all uk-oauth-all"
    });
    for provider in providers.split_whitespace() {
        dialog = dialog.provider(provider);
    }
    if let Some(provider_id) = &args.provider_id {
        dialog = dialog.provider_id(provider_id);
    }
    if args.response_mode.is_some() {
        dialog = dialog.form_post();
    }
    let link = connect
        .client
        .config()
        .auth_dialog_url(&dialog)
        .map_err(|invalid| ConnectError::Usage(invalid.to_string()))?;

    complain!("obauth: open this link in a browser to connect:");
    complain!("  {}", escaped(&link));
    if !args.no_browser {
        open_browser(&link);
    }
    // Once the redirect has come, Ctrl-C no longer cancels: the exchange and the save finish
    // (within --timeout), so that tokens the server issued are not dropped half-way.
    let waiting = Arc::new(AtomicBool::new(true));
    cancel_on_ctrl_c(listener.canceller(), Arc::clone(&waiting));
    let waited = Duration::from_secs_f64(args.wait);
    let callback = wait(&mut listener, &redirect_uri, waited)?;
    waiting.store(false, Ordering::SeqCst);

    let requested_at = SystemTime::now();
    let response = connect.client.exchange_code(
        callback.code,
        redirect_uri.as_str(),
        Some(pkce.verifier().clone()),
    )?;
    if let Some((name, store)) = &saving {
        UserTokens::from_token_response(
            connect.client,
            name,
            &response,
            requested_at,
            std::sync::Arc::clone(store),
        )?;
    }
    // The landing page was answered before the code came out; the listener can go.
    drop(listener);
    report(
        connect.output,
        saving.as_ref().map(|(name, _)| name.as_str()),
        &response,
        requested_at,
        args.print_tokens,
    );
    Ok(())
}

/// Waits for the redirect, showing what it waits for: a live line on a terminal, plain
/// lines otherwise.
fn wait(
    listener: &mut RedirectListener,
    redirect_uri: &str,
    waited: Duration,
) -> Result<obauth_blocking::core::truelayer::auth_dialog::AuthorizationCallback, ReceiveError> {
    let live = std::io::stderr().is_terminal();
    let deadline = Instant::now() + waited;
    let mut next_plain = Instant::now();
    let mut refusals_shown = 0;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(ReceiveError::TimedOut { waited });
        }
        let shown = format!(
            "waiting for the redirect on {redirect_uri}: {} left; Ctrl-C cancels",
            minutes(left)
        );
        if live {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{shown}");
            let _ = stderr.flush();
        } else if Instant::now() >= next_plain {
            complain!("obauth: {shown}");
            next_plain = Instant::now() + PLAIN_STATUS_EVERY;
        }
        let outcome = listener.wait(left.min(Duration::from_secs(1)));
        let refused = listener.refused();
        for refused in refused.iter().skip(refusals_shown) {
            if live {
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            }
            // Escaped like every message that may quote a request.
            complain!(
                "obauth: refused a redirect that is not this sign-in's ({}); still waiting",
                escaped(&refused.to_string())
            );
        }
        refusals_shown = refused.len();
        match outcome {
            Err(ReceiveError::TimedOut { .. }) => {}
            outcome => break outcome,
        }
    };
    if live {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
    outcome
}

/// `4:05`, or `59s` under a minute.
fn minutes(left: Duration) -> String {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

/// While waiting, Ctrl-C ends the wait (and the listener with it, freeing the port)
/// instead of killing the process mid-way. Once the redirect has come, the exchange and
/// the save are let finish (they end within --timeout): a first Ctrl-C says so, a second
/// one abandons them. Installed once per process; if it cannot be, Ctrl-C ends the program
/// as usual, and the port is freed with it.
fn cancel_on_ctrl_c(canceller: Canceller, waiting: Arc<AtomicBool>) {
    let pressed = AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if waiting.load(Ordering::SeqCst) {
            canceller.cancel();
        } else if pressed.swap(true, Ordering::SeqCst) {
            complain!("obauth: abandoned: the code may have been spent without saving tokens");
            std::process::exit(130);
        } else {
            complain!(
                "obauth: saving the connection the bank just granted (Ctrl-C again abandons it)"
            );
        }
    });
}

/// Opens the system browser where there is one to open; otherwise the printed link is
/// the way. A text-mode browser is never started in this terminal: without a display on
/// Linux and the BSDs, only an explicit `BROWSER` is used.
fn open_browser(link: &str) {
    let graphical = cfg!(any(target_os = "macos", target_os = "windows"))
        || ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if !graphical {
        complain!("obauth: no browser to open here (no display): open the link yourself");
        return;
    }
    if let Err(error) = webbrowser::open(link) {
        complain!("obauth: could not open a browser ({error}): open the link yourself");
    }
}

/// When a token asked for at `requested_at` and living `expires_in` seconds expires, as a
/// date; a lifetime too long to show as one (a server's `expires_in` can be anything, and
/// HTTP dates stop at the year 9999) is shown in seconds, never a panic.
fn expiry_text(requested_at: SystemTime, expires_in: u64) -> String {
    const SHOWN_AS_DATE: u64 = 100 * 365 * 24 * 3600;
    requested_at
        .checked_add(Duration::from_secs(expires_in))
        .filter(|_| expires_in <= SHOWN_AS_DATE)
        .map_or_else(|| format!("in {expires_in} s"), httpdate::fmt_http_date)
}

/// What was saved, and when the access token expires; tokens only with --print-tokens.
fn report(
    output: Output,
    connection: Option<&str>,
    response: &TokenResponse,
    requested_at: SystemTime,
    print_tokens: bool,
) {
    let expires_at_text = expiry_text(requested_at, response.expires_in);
    let scope = response.scope.as_ref().map(ToString::to_string);
    match output {
        Output::Json => {
            let mut value = json!({
                "expires_in": response.expires_in,
                "expires_at": expires_at_text,
                "token_type": response.token_type.as_str(),
                "refresh_token_saved": connection.is_some() && response.refresh_token.is_some(),
            });
            if let Some(connection) = connection {
                value["connection"] = connection.into();
            }
            if let Some(scope) = &scope {
                value["scope"] = scope.as_str().into();
            }
            if print_tokens {
                value["access_token"] = response.access_token.expose_secret().into();
                if let Some(refresh) = &response.refresh_token {
                    value["refresh_token"] = refresh.expose_secret().into();
                }
            }
            say!("{value}");
        }
        Output::Text => {
            match connection {
                Some(name) => say!("connected: {}", escaped(name)),
                None => say!("connected (not saved)"),
            }
            if let Some(scope) = &scope {
                say!("scope: {}", escaped(scope));
            }
            let in_text = match response.expires_in {
                seconds @ 0..120 => format!("{seconds} s"),
                seconds => format!("{} min", seconds / 60),
            };
            say!("access token expires: {expires_at_text} (in {in_text})");
            match (&response.refresh_token, connection) {
                (Some(_), Some(_)) => say!("refresh token: saved"),
                (Some(_), None) => {}
                (None, _) => say!("refresh token: none (offline_access not granted)"),
            }
            if print_tokens {
                say!(
                    "access_token: {}",
                    escaped(response.access_token.expose_secret())
                );
                if let Some(refresh) = &response.refresh_token {
                    say!("refresh_token: {}", escaped(refresh.expose_secret()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{expiry_text, minutes};

    #[test]
    fn any_lifetime_a_server_sends_is_shown_without_a_panic() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(expiry_text(at, 3600), "Tue, 14 Nov 2023 23:13:20 GMT");
        assert_eq!(expiry_text(at, u64::MAX), format!("in {} s", u64::MAX));
        assert_eq!(
            expiry_text(at, 200 * 365 * 24 * 3600),
            format!("in {} s", 200u64 * 365 * 24 * 3600)
        );
    }

    #[test]
    fn time_left_reads_as_minutes_and_seconds() {
        assert_eq!(minutes(Duration::from_millis(59_001)), "1:00");
        assert_eq!(minutes(Duration::from_secs(59)), "59s");
        assert_eq!(minutes(Duration::from_secs(245)), "4:05");
    }
}
