//! `obauth`: TrueLayer and Worldline auth servers from the command line, plus the embedded
//! mock server and a demo of every operation on it.
//!
//! Exit codes: 0 success; 1 the server answered with an API error; 2 bad usage or bad
//! local input; 3 transport failure, timeout or unexpected response; 4 the output could
//! not be written.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that never panics: if stdout cannot be written (closed, full), the program
/// says so on stderr and ends with exit code 4. An answer that was not delivered (a rotated
/// refresh token, say) must not look like a success.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            crate::output_lost(&error);
        }
    }};
}

/// `eprintln!` that never panics: with stderr closed the message is lost, nothing more.
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod cli;
mod connect;
mod demo;
mod failure;
mod postgres;
mod run;
mod secrets;
mod terminal;

use std::process::ExitCode;

/// Ends the program when its output could not be written.
fn output_lost(error: &std::io::Error) -> ! {
    complain!(
        "obauth: the output could not be written ({error}): nothing was delivered; a refresh \
         token rotated by this command is lost unless a --token-store kept it"
    );
    std::process::exit(4)
}

use clap::{CommandFactory, FromArgMatches};

/// `-v`: the calls' spans as they close (with their fields); `-vv`: every DEBUG event too.
/// Lines go to stderr; a write that fails is dropped (stderr closed), never a panic.
fn verbose(level: u8) {
    use tracing_subscriber::fmt::format::FmtSpan;
    let max = match level {
        0 => return,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_writer(Stderr)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// stderr for the subscriber: writes that fail are dropped.
struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = QuietStderr;

    fn make_writer(&'a self) -> Self::Writer {
        QuietStderr
    }
}

/// One line's writer on stderr that reports success whatever happens.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().lock().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Some(conflict) = secrets::argv_conflict(&matches) {
        cli::Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, conflict)
            .exit();
    }
    for warning in secrets::argv_warnings(&matches) {
        complain!("{warning}");
    }
    verbose(cli.global.verbose);
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.exit_code())
        }
    }
}
