//! `snac run` and `snac search`: the stages of an experiment
//! ([`crate::stages`]), with the Pareto set and where the outputs are
//! printed around them.

use crate::cli::RunArgs;
use crate::outputs;
use crate::setup::{Participation, SearchSetup};
use crate::stages::{self, Stages};
use anyhow::Result;
use std::path::{Path, PathBuf};
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
        log::info!("note: {}", key.note(&experiment.source));
    }
    let setup = SearchSetup::prepare(experiment)?;
    let how = worker.unwrap_or_else(|| Participation::for_run(&setup));
    let stages = if all_stages { Stages::All } else { Stages::Search };
    let outcome = stages::run(&setup, stages, &how)?;
    let results_dir = &outcome.results_dir;
    let summary = &outcome.search;
    let search = &setup.experiment.search;
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
    let kept = summary.trials.iter().filter(|t| snac_core::storage::counts_against_budget(t)).count();
    if summary.interrupted && outcome.timed_out {
        log::warn!(
            "time budget ran out ({}): {kept} of {} trials finished and are kept in {}; trials cancelled at the \
             hard limit do not count and are drawn again. To continue the search, run the same command again:\n  {}",
            budget_text(search),
            search.n_trials,
            results_dir.display(),
            crate::signals::resume_command()
        );
        print_outputs(results_dir, &csv);
        return Ok(ExitCode::SUCCESS);
    }
    if summary.interrupted {
        log::warn!(
            "stopped by a signal: the {kept} finished trials are kept in {}; interrupted trials do not count \
             and are drawn again. To resume, run the same command again:\n  {}",
            results_dir.display(),
            crate::signals::resume_command()
        );
        return Ok(ExitCode::from(crate::signals::INTERRUPTED_EXIT));
    }
    // The budget ran out as the last trials finished: the search is whole,
    // and later stages run as usual.
    snac_core::interrupt::clear_timeout();
    if complete == 0 && !summary.trials.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if let Some(rows) = &outcome.local {
        super::local::print_log(rows, results_dir);
    }
    if let Some(dir) = &outcome.export_dir {
        println!("hls4ml hand-off: {} (python {}/convert.py writes the HLS project)", dir.display(), dir.display());
    }
    print_outputs(results_dir, &csv);
    Ok(ExitCode::SUCCESS)
}

/// The time budget as configured, for messages: `--timeout 2m` or the key.
fn budget_text(search: &snac_core::config::SearchConfig) -> String {
    let show = |d: Option<std::time::Duration>| d.map(snac_core::config::format_duration);
    match (show(search.timeout), show(search.timeout_hard)) {
        (Some(soft), Some(hard)) => format!("timeout {soft}, hard limit {hard}"),
        (Some(soft), None) => format!("timeout {soft}"),
        (None, Some(hard)) => format!("hard limit {hard}"),
        (None, None) => "timeout".to_string(),
    }
}

/// Ends a run with where each output is, the report first.
fn print_outputs(results_dir: &Path, csv: &Path) {
    let local = crate::local_search::LOCAL_DIR;
    let entries: [(PathBuf, &str); 7] = [
        (results_dir.join("report.html"), "open this first: the search, the best model, the local search"),
        (csv.to_path_buf(), "one row per trial"),
        (results_dir.join(outputs::BEST_MODEL_FILE), "the most accurate architecture"),
        (results_dir.join(local).join(crate::local_search::LOG_FILE), "QAT and pruning, per precision"),
        (results_dir.join(local), "the quantized models (best_model_*.json) and their hls4ml hand-offs (*_hls4ml/)"),
        (results_dir.join("hls4ml_export"), "QONNX and hls4ml config; its convert.py builds the HLS project"),
        (results_dir.join("plots"), "Pareto fronts and training curves (PNG, SVG)"),
    ];
    let present: Vec<_> = entries.iter().filter(|(path, _)| path.exists()).collect();
    let width = present.iter().map(|(path, _)| path.display().to_string().chars().count()).max().unwrap_or(0);
    println!("outputs:");
    for (path, what) in present {
        println!("  {:<width$}  {what}", path.display().to_string());
    }
}
