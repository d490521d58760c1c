//! `snac`: hardware-aware neural architecture search for FPGAs. `main` only
//! parses flags, runs the command and turns an error into an exit code.

mod cli;
mod cmd;
mod folds;
mod global_search;
mod heartbeat;
mod local_search;
mod outputs;
mod report;
mod setup;
mod signals;
mod trial;

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
