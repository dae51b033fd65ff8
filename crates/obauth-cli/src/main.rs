//! `obauth`: TrueLayer and Worldline auth servers from the command line, plus the embedded
//! mock server and a demo of every operation on it.
//!
//! Exit codes: 0 success; 1 the server answered with an API error; 2 bad usage or bad
//! local input; 3 transport failure, timeout or unexpected response.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that ends the program quietly when stdout is closed (`obauth … | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod cli;
mod demo;
mod failure;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.exit_code())
        }
    }
}
