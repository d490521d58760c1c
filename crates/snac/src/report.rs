//! The results people look at, written during and after a run: `report.html`
//! after every trial (throttled so it never costs a search more than ~2 % of
//! its time), and the plots and GIF in `plots/` after each stage.

use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use serde_json::json;
use snac_core::search::Study;
use snac_report::data::{self, OBJECTIVES_ATTR, Objective, Results};
use snac_report::html::{self, ReportOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REPORT_FILE: &str = "report.html";
pub const PLOTS_DIR: &str = "plots";

/// A regeneration waits until this many times its own cost has passed since
/// the last one, so the report takes at most 1/50 of a search's time.
const MAX_SHARE: u32 = 50;

/// The study's objectives, as the report names them.
pub fn objectives(setup: &SearchSetup) -> Vec<Objective> {
    setup.objectives.iter().map(|(o, maximize)| Objective { name: o.name().to_string(), maximize: *maximize }).collect()
}

/// Records the objectives with the study, so `snac report` can name them.
pub fn record_objectives(setup: &SearchSetup, study: &Study) -> Result<()> {
    let value = json!(objectives(setup));
    study.storage().set_study_user_attr(study.info().id, OBJECTIVES_ATTR, &value)
}

/// The study as the report sees it, with the local-search log when there is one.
pub fn results(setup: &SearchSetup, study: &Study, results_dir: &Path) -> Result<Results> {
    let trials = study.trials()?;
    let source = match &setup.experiment.search.storage {
        Some(url) => url.clone(),
        None => results_dir.join("study.db").display().to_string(),
    };
    let mut results = data::from_trials(&study.info().name, &source, objectives(setup), &trials);
    results.local = data::load_local_log(results_dir)?;
    Ok(results)
}

/// The study of a run read from its storage (after the search, when no
/// [`Study`] is open), with the local-search log.
pub fn load(setup: &SearchSetup, results_dir: &Path) -> Result<Results> {
    let search = &setup.experiment.search;
    let default_db = results_dir.join("study.db");
    let url = search.storage.clone().unwrap_or_else(|| default_db.to_string_lossy().into_owned());
    let name = search.study_name.clone().unwrap_or_else(|| "snac".to_string());
    // `snac local --arch` may run where no search ran: then only the local
    // search is shown (and no empty study.db is created).
    let trials = if search.storage.is_none() && !default_db.exists() {
        Vec::new()
    } else {
        let storage = snac_core::storage::open(&url)?;
        match storage.load_study(&name)? {
            Some(info) => storage.get_all_trials(info.id)?,
            None => Vec::new(),
        }
    };
    let mut results = data::from_trials(&name, &url, objectives(setup), &trials);
    results.local = data::load_local_log(results_dir)?;
    Ok(results)
}

/// Writes the report, the plots and the animation; returns the plot files.
pub fn write_all(results: &Results, results_dir: &Path) -> Result<Vec<PathBuf>> {
    html::write_report(results, &results_dir.join(REPORT_FILE), &ReportOptions::default())?;
    let plots = snac_report::write_plots(results, &results_dir.join(PLOTS_DIR))
        .with_context(|| format!("writing the plots into {}", results_dir.join(PLOTS_DIR).display()))?;
    Ok(plots.files())
}

/// After a stage: the report and every plot from the storage. A failure is
/// a warning: the stage's results are already safe.
pub fn after_stage(setup: &SearchSetup, results_dir: &Path) {
    let started = Instant::now();
    match load(setup, results_dir).and_then(|results| write_all(&results, results_dir)) {
        Ok(files) => eprintln!(
            "report: {} and {} plot files in {} ({:.1} s)",
            results_dir.join(REPORT_FILE).display(),
            files.len(),
            results_dir.join(PLOTS_DIR).display(),
            started.elapsed().as_secs_f64()
        ),
        Err(err) => eprintln!("warning: could not write the report and plots: {err:#}"),
    }
}

/// Rewrites `report.html` as trials finish.
pub struct LiveReport {
    path: PathBuf,
    state: Mutex<Throttle>,
}

#[derive(Default)]
struct Throttle {
    last: Option<(Instant, Duration)>,
    written: u32,
    total: Duration,
    warned: bool,
}

impl LiveReport {
    pub fn new(results_dir: &Path) -> LiveReport {
        LiveReport { path: results_dir.join(REPORT_FILE), state: Mutex::new(Throttle::default()) }
    }

    /// Called after each trial. Skips when another worker is writing or the
    /// last write was recent (relative to its cost); a failure is reported
    /// once and never stops the search.
    pub fn after_trial(&self, setup: &SearchSetup, study: &Study, results_dir: &Path) {
        let Ok(mut state) = self.state.try_lock() else { return };
        if let Some((at, cost)) = state.last
            && at.elapsed() < cost * MAX_SHARE
        {
            return;
        }
        let started = Instant::now();
        let written = results(setup, study, results_dir)
            .and_then(|r| html::write_report(&r, &self.path, &ReportOptions { running: true }));
        let cost = started.elapsed();
        state.last = Some((Instant::now(), cost));
        match written {
            Ok(()) => {
                state.written += 1;
                state.total += cost;
            }
            Err(err) if !state.warned => {
                state.warned = true;
                eprintln!("warning: could not update {}: {err:#}", self.path.display());
            }
            Err(_) => {}
        }
    }

    /// (times written, mean cost).
    pub fn stats(&self) -> (u32, Duration) {
        let state = self.state.lock().unwrap();
        (state.written, state.total.checked_div(state.written).unwrap_or_default())
    }
}
