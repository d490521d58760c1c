//! An experiment's stages in order, as one call: the global search, then
//! (when the config has `local_search`) QAT and pruning of the best model
//! and the hls4ml hand-off. The `snac run`/`search`/`worker` commands and the
//! Python package both run experiments through [`run`], so they cannot
//! drift apart; only what they print around it differs.

use crate::deadline::Deadline;
use crate::global_search::{self, SearchSummary};
use crate::local_search::LogRow;
use crate::setup::{Participation, SearchSetup};
use anyhow::Result;
use snac_core::config::{DEFAULT_PRECISION_PAIRS, LocalSearchConfig, PrecisionPair};
use std::path::{Path, PathBuf};

/// Which stages to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stages {
    /// The global search only (`snac search`, `snac worker`).
    Search,
    /// Every stage the config asks for (`snac run`).
    All,
}

/// What a run left behind.
pub struct RunOutcome {
    pub results_dir: PathBuf,
    /// The study's storage URL (the results dir's `study.db` by default)
    /// and name, for Optuna and `snac results`.
    pub storage_url: String,
    pub study_name: String,
    pub search: SearchSummary,
    /// The local search's log, when it ran.
    pub local: Option<Vec<LogRow>>,
    /// The hls4ml hand-off folder of the `synthesis:` precision, when one
    /// was written.
    pub export_dir: Option<PathBuf>,
    /// The hand-off folder of every local-search model that exports.
    pub exports: Vec<PathBuf>,
    /// The time budget (`--timeout`) ran out before `n_trials`.
    pub timed_out: bool,
}

impl RunOutcome {
    /// Completed global-search trials.
    pub fn completed(&self) -> usize {
        crate::outputs::completed(&self.search.trials).count()
    }
}

/// The storage URL a run of `setup` uses: the config's, else SQLite in the
/// results dir.
pub fn storage_url(setup: &SearchSetup, results_dir: &Path) -> String {
    match &setup.experiment.search.storage {
        Some(url) => url.clone(),
        None => {
            let db = std::path::absolute(results_dir.join("study.db")).unwrap_or_else(|_| results_dir.join("study.db"));
            // SQLAlchemy's absolute form, `sqlite:////abs/path.db`, as Optuna reads it.
            format!("sqlite:///{}", db.display())
        }
    }
}

/// Runs the stages of `setup`'s experiment. Stops after the global search
/// when it was interrupted or no trial completed.
pub fn run(setup: &SearchSetup, stages: Stages, how: &Participation) -> Result<RunOutcome> {
    let results_dir = setup.experiment.output.results_dir.clone();
    let search = &setup.experiment.search;
    log::info!(
        "global search: {} trials of {} epochs on {} ({} train / {} validation samples, input {}), results in {}",
        search.n_trials,
        search.epochs,
        setup.dataset.name,
        setup.dataset.train.len(),
        setup.dataset.val.len(),
        setup.dataset.sample_shape,
        results_dir.display()
    );
    let (study_name, url) = (crate::setup::study_name(search).to_string(), storage_url(setup, &results_dir));
    log::debug!("study '{study_name}' in {url}");
    let deadline = Deadline::start(search.timeout, search.timeout_hard);
    let summary = global_search::run(setup, &results_dir, how)?;
    let timed_out = deadline.is_some_and(Deadline::finish);
    crate::report::after_stage(setup, &results_dir);
    let mut outcome = RunOutcome {
        storage_url: url,
        study_name,
        results_dir,
        search: summary,
        local: None,
        export_dir: None,
        exports: Vec::new(),
        timed_out,
    };
    let complete = outcome.completed();
    if outcome.search.interrupted || (complete == 0 && !outcome.search.trials.is_empty()) {
        if timed_out && stages == Stages::All && setup.experiment.local_search.is_some() {
            log::info!("local search skipped: it starts once the global search has all {} trials", search.n_trials);
        }
        return Ok(outcome);
    }
    if stages == Stages::All && setup.experiment.local_search.is_some() {
        outcome.local = Some(local(setup, &outcome.results_dir, None)?);
        let handoff = crate::handoff::export_after_run(setup, &outcome.results_dir)?;
        outcome.export_dir = handoff.synthesis;
        outcome.exports = handoff.models;
    }
    Ok(outcome)
}

/// The config's local search, or SNAC-Pack's defaults when it has none.
fn local_config(setup: &SearchSetup) -> LocalSearchConfig {
    setup.experiment.local_search.clone().unwrap_or_else(|| {
        LocalSearchConfig::with_pairs(
            DEFAULT_PRECISION_PAIRS
                .iter()
                .map(|&(total_bits, int_bits)| PrecisionPair { total_bits, int_bits })
                .collect(),
        )
    })
}

/// Runs the local search from `arch_file` or the results dir's best model.
pub fn local(setup: &SearchSetup, results_dir: &Path, arch_file: Option<&Path>) -> Result<Vec<LogRow>> {
    let local = local_config(setup);
    let (arch, weights_path, source) = crate::local_search::starting_point(results_dir, arch_file)?;
    let weights = match &weights_path {
        Some(path) => Some(snac_train::Weights::load(path)?),
        None => None,
    };
    log::info!(
        "local search ({:?}) of {} from {}: {} precision pair(s), {} pruning iteration(s) at rate {}",
        local.mode,
        arch.summary(),
        source.display(),
        local.precision_pairs.len(),
        local.pruning_iterations,
        local.pruning_rate
    );
    let rows = crate::local_search::run(setup, &local, &arch, weights, results_dir, local.mode)?;
    crate::report::after_stage(setup, results_dir);
    Ok(rows)
}
