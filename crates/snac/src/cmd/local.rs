//! `snac local`: the local search stage on its own.

use crate::cli::LocalArgs;
use crate::local_search::{self, LogRow};
use crate::setup::SearchSetup;
use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::path::Path;
use std::process::ExitCode;

pub fn local(args: &LocalArgs) -> Result<ExitCode> {
    let experiment = super::load_experiment(&args.run)?;
    let results_dir = experiment.output.results_dir.clone();
    let setup = SearchSetup::prepare(experiment)?;
    let rows = crate::stages::local(&setup, &results_dir, args.arch.as_deref())?;
    print_log(&rows, &results_dir);
    Ok(ExitCode::SUCCESS)
}

/// Prints the local search's log as a table, and where its CSV is.
pub fn print_log(rows: &[LogRow], results_dir: &Path) {
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
    for row in rows {
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
}
