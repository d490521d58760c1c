//! `snac run` and `snac search`: the stages of an experiment
//! ([`crate::stages`]), with the Pareto set and where the outputs are
//! printed around them.

use crate::cli::RunArgs;
use crate::outputs;
use crate::setup::{Participation, SearchSetup};
use crate::stages::{self, Stages};
use anyhow::Result;
use std::process::ExitCode;

/// Runs the global search (and, with `all_stages`, every later stage that
/// exists).
pub fn run(args: &RunArgs, all_stages: bool) -> Result<ExitCode> {
    run_as(args, all_stages, None)
}

/// [`run`], as a `snac worker` of a shared study when `worker` is given.
pub fn run_as(args: &RunArgs, all_stages: bool, worker: Option<Participation>) -> Result<ExitCode> {
    let experiment = super::load_experiment(args)?;
    if args.config.is_none() {
        log::info!("no config given: running the embedded digits example (see `snac example-config`)");
    }
    for key in &experiment.unused_keys {
        log::info!("note: {}: key '{key}' is not used by snac", experiment.source.display());
    }
    let setup = SearchSetup::prepare(experiment)?;
    let how = worker.unwrap_or_else(|| Participation::for_run(&setup));
    let stages = if all_stages { Stages::All } else { Stages::Search };
    let outcome = stages::run(&setup, stages, &how)?;
    let results_dir = &outcome.results_dir;
    let summary = &outcome.search;
    let complete = outcome.completed();
    println!("Pareto set ({complete} completed trials):");
    println!("{}", outputs::pareto_table(&setup, &summary.trials));
    let csv = if how.worker {
        outputs::rank_csv_path(results_dir, &setup)
    } else {
        results_dir.join(outputs::csv_name(setup.experiment.search.model_type))
    };
    println!("results: {}", csv.display());
    if summary.best.is_some() {
        println!("best model: {}", results_dir.join(outputs::BEST_MODEL_FILE).display());
    }
    if summary.interrupted {
        let kept = summary.trials.iter().filter(|t| snac_core::storage::counts_against_budget(t)).count();
        log::warn!(
            "stopped by a signal: the {kept} finished trials are kept in {}; interrupted trials do not count \
             and are drawn again. To resume, run the same command again:\n  {}",
            results_dir.display(),
            crate::signals::resume_command()
        );
        return Ok(ExitCode::from(crate::signals::INTERRUPTED_EXIT));
    }
    if complete == 0 && !summary.trials.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if let Some(rows) = &outcome.local {
        super::local::print_log(rows, results_dir);
    }
    if let Some(dir) = &outcome.export_dir {
        println!("hls4ml hand-off: {} (python {}/convert.py writes the HLS project)", dir.display(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
