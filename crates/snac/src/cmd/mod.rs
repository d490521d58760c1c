//! One function per subcommand; this file dispatches and loads configs.

mod bench;
mod bench_search;
mod completions;
mod data;
pub mod estimate;
pub mod export;
mod local;
mod plot;
mod predict;
mod report;
mod results;
mod run;
mod validate;
mod worker;

use crate::cli::{Cli, Command, OverrideArgs, RunArgs};
use anyhow::Result;
use snac_core::config::{self, Experiment, Overrides};
use std::path::Path;
use std::process::ExitCode;

/// The embedded default experiment (`examples/digits_mlp.yaml`).
pub const EXAMPLE_CONFIG: &str = include_str!("../../../../examples/digits_mlp.yaml");

pub fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(cli.command, Command::Run(_) | Command::Search(_) | Command::Worker(_) | Command::Local(_)) {
        crate::signals::install()?;
    }
    match cli.command {
        Command::Run(args) => run::run(&args, true),
        Command::Search(args) => run::run(&args, false),
        Command::Worker(args) => worker::worker(&args),
        Command::Results(args) => results::results(&args),
        Command::Local(args) => local::local(&args),
        Command::Estimate(args) => estimate::estimate(&args),
        Command::Predict(args) => predict::predict(&args),
        Command::Export(args) => export::export_command(&args),
        Command::Validate(args) => validate::validate(&args),
        Command::Report(args) => report::report(&args),
        Command::Plot(args) => plot::plot(&args),
        Command::Bench(args) => match &args.command {
            Some(crate::cli::BenchCommand::Search(search)) => bench_search::bench_search(search),
            None => bench::bench(&args),
        },
        Command::Data { command } => data::data(command),
        Command::Completions { shell } => completions::completions(shell),
        Command::ExampleConfig => {
            print!("{EXAMPLE_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn overrides(args: &OverrideArgs) -> Overrides {
    Overrides {
        results_dir: args.results_dir.clone(),
        trials: args.trials,
        epochs: args.epochs,
        seed: args.seed,
        workers: args.workers,
        timeout: args.timeout.clone(),
        timeout_hard: args.timeout_hard.clone(),
    }
}

/// Loads the config (or the embedded example) and applies the overrides.
pub fn load_experiment(args: &RunArgs) -> Result<Experiment> {
    let mut experiment = match &args.config {
        Some(path) => config::load(path)?,
        None => config::load_str(EXAMPLE_CONFIG, Path::new("<embedded examples/digits_mlp.yaml>"))?,
    };
    experiment.apply(&overrides(&args.overrides))?;
    if let Some(url) = &args.overrides.storage {
        experiment.search.storage = Some(url.clone());
    }
    if let Some(name) = &args.overrides.study {
        experiment.search.study_name = Some(name.clone());
    }
    Ok(experiment)
}
