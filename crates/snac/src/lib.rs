//! `snac` as a library: every stage of an experiment (global search, local
//! search, export, report) behind the command line, so the Python package
//! (`crates/snac-py`) drives the same code the `snac` binary does.
//! [`main_with_args`] is the whole command line; `main.rs` only calls it.

pub mod choices;
pub mod cli;
pub mod cmd;
pub mod deadline;
pub mod folds;
pub mod global_search;
pub mod handoff;
pub mod heartbeat;
pub mod local_search;
pub mod outputs;
pub mod precision_search;
pub mod pruning;
pub mod report;
pub mod setup;
pub mod signals;
pub mod stages;
pub mod trial;
pub mod ui;

use clap::Parser;
use std::ffi::OsString;
use std::process::ExitCode;

/// Runs the command line `args` (the program name first) and returns the
/// exit code `snac` exits with: parsing, the command, and its errors.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are "errors" that print and exit 0.
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    ui::init_logging(ui::level_from_flags(cli.verbose, cli.quiet));
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) if snac_core::interrupt::is_interrupted(&err) => {
            eprintln!("error: {err:#}");
            eprintln!("stopped; to resume, run the same command again: {}", signals::resume_command());
            ExitCode::from(signals::INTERRUPTED_EXIT)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The number an [`ExitCode`] exits the process with (`ExitCode` does not
/// say; it only compares), for callers that must return it as a number.
pub fn exit_status(code: ExitCode) -> u8 {
    (0..=u8::MAX).find(|&n| ExitCode::from(n) == code).unwrap_or(1)
}
