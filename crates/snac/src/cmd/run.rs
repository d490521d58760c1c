//! `snac run` and `snac search`: the stages of an experiment.

use crate::cli::RunArgs;
use crate::global_search;
use crate::outputs;
use crate::setup::{Participation, SearchSetup};
use anyhow::Result;
use std::io::IsTerminal;
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
        eprintln!("no config given: running the embedded digits example (see `snac example-config`)");
    }
    for key in &experiment.unused_keys {
        eprintln!("note: {}", key.note(&experiment.source));
    }
    let results_dir = experiment.output.results_dir.clone();
    let setup = SearchSetup::prepare(experiment)?;
    let search = &setup.experiment.search;
    eprintln!(
        "global search: {} trials of {} epochs on {} ({} train / {} validation samples, input {}), results in {}",
        search.n_trials,
        search.epochs,
        setup.dataset.name,
        setup.dataset.train.len(),
        setup.dataset.val.len(),
        setup.dataset.sample_shape,
        results_dir.display()
    );
    let how = worker.unwrap_or_else(|| Participation::for_run(&setup));
    let summary = global_search::run(&setup, &results_dir, std::io::stderr().is_terminal(), &how)?;
    crate::report::after_stage(&setup, &results_dir);
    let complete = outputs::completed(&summary.trials).count();
    println!("Pareto set ({complete} completed trials):");
    println!("{}", outputs::pareto_table(&setup, &summary.trials));
    let csv = if how.worker {
        outputs::rank_csv_path(&results_dir, &setup)
    } else {
        results_dir.join(outputs::csv_name(search.model_type))
    };
    println!("results: {}", csv.display());
    if summary.best.is_some() {
        println!("best model: {}", results_dir.join(outputs::BEST_MODEL_FILE).display());
    }
    if summary.interrupted {
        let kept = summary.trials.iter().filter(|t| snac_core::storage::counts_against_budget(t)).count();
        eprintln!(
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
    if all_stages && setup.experiment.local_search.is_some() {
        super::local::run_local(&setup, &results_dir, None)?;
        super::export::export_after_run(&setup, &results_dir)?;
    }
    Ok(ExitCode::SUCCESS)
}
