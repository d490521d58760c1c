//! `snac local`: the local search stage on its own.

use crate::cli::LocalArgs;
use crate::local_search::{self, LogRow};
use crate::setup::SearchSetup;
use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use snac_core::config::{DEFAULT_PRECISION_PAIRS, LocalSearchConfig, LocalSearchMode, PrecisionPair};
use std::path::Path;
use std::process::ExitCode;

pub fn local(args: &LocalArgs) -> Result<ExitCode> {
    let experiment = super::load_experiment(&args.run)?;
    let results_dir = experiment.output.results_dir.clone();
    let setup = SearchSetup::prepare(experiment)?;
    run_local(&setup, &results_dir, args.arch.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// The config's local search, or SNAC-Pack's defaults when it has none.
fn local_config(setup: &SearchSetup) -> LocalSearchConfig {
    setup.experiment.local_search.clone().unwrap_or_else(|| LocalSearchConfig {
        qat_epochs: 2,
        pruning_iterations: 5,
        pruning_epochs: 2,
        pruning_rate: 0.8,
        precision_pairs: DEFAULT_PRECISION_PAIRS
            .iter()
            .map(|&(total_bits, int_bits)| PrecisionPair { total_bits, int_bits })
            .collect(),
        mode: LocalSearchMode::Combined,
    })
}

/// Runs the local search from `arch_file` or the results dir's best model,
/// and prints its log as a table.
pub fn run_local(setup: &SearchSetup, results_dir: &Path, arch_file: Option<&Path>) -> Result<Vec<LogRow>> {
    let local = local_config(setup);
    let (arch, weights_path, source) = local_search::starting_point(results_dir, arch_file)?;
    let weights = match &weights_path {
        Some(path) => Some(snac_train::Weights::load(path)?),
        None => None,
    };
    eprintln!(
        "local search ({:?}) of {} from {}: {} precision pair(s), {} pruning iteration(s) at rate {}",
        local.mode,
        arch.summary(),
        source.display(),
        local.precision_pairs.len(),
        local.pruning_iterations,
        local.pruning_rate
    );
    let rows = local_search::run(setup, &local, &arch, weights, results_dir, local.mode)?;
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "precision",
        "iteration",
        "target sparsity",
        "sparsity",
        "accuracy",
        "nonzero weights",
        "effective BOPs",
    ]);
    for row in &rows {
        table.add_row([
            row.precision.clone(),
            row.iteration.to_string(),
            format!("{:.3}", row.target_sparsity),
            format!("{:.3}", row.sparsity),
            format!("{:.4}", row.accuracy),
            row.nonzero_weights.to_string(),
            format!("{:.4e}", row.effective_bops),
        ]);
    }
    println!("{table}");
    println!("local search log: {}", results_dir.join(local_search::LOCAL_DIR).join(local_search::LOG_FILE).display());
    crate::report::after_stage(setup, results_dir);
    Ok(rows)
}
