//! The results people look at, written during and after a run: `report.html`
//! after every trial (throttled so it never costs a search more than ~2 % of
//! its time), and the plots and GIF in `plots/` after each stage.

use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use snac_core::search::Study;
use snac_core::storage::METRIC_NAMES_KEY;
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

/// Records the objectives with the study, so `snac report` can name them,
/// and as Optuna's metric names (see [`record_metric_names`]).
pub fn record_objectives(setup: &SearchSetup, study: &Study) -> Result<()> {
    let objectives = objectives(setup);
    study.storage().set_study_user_attr(study.info().id, OBJECTIVES_ATTR, &json!(objectives))?;
    let names: Vec<&str> = objectives.iter().map(|o| o.name.as_str()).collect();
    if let Some(kept) = record_metric_names(study, &names)? {
        log::warn!(
            "study '{}' already names its objectives {kept} (Optuna's {METRIC_NAMES_KEY}); kept them \
             rather than {}",
            study.info().name,
            json!(names)
        );
    }
    Ok(())
}

/// Names the objectives in Optuna's `study:metric_names` system attribute,
/// which `study.metric_names` and optuna-dashboard read. A study that
/// already has other names (given in Optuna, say) keeps them: they are the
/// user's, and the directions already match. Returns those kept names.
pub fn record_metric_names(study: &Study, names: &[&str]) -> Result<Option<Value>> {
    let storage = study.storage();
    let id = study.info().id;
    let wanted = json!(names);
    let existing = storage.study_system_attrs(id)?.into_iter().find(|(key, _)| key == METRIC_NAMES_KEY);
    match existing {
        Some((_, value)) if value == wanted => Ok(None),
        Some((_, value)) if !value.is_null() => Ok(Some(value)),
        _ => {
            storage.set_study_system_attr(id, METRIC_NAMES_KEY, &wanted)?;
            Ok(None)
        }
    }
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
    let name = crate::setup::study_name(search).to_string();
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
        Ok(files) => log::info!(
            "report: {} and {} plot files in {} ({:.1} s)",
            results_dir.join(REPORT_FILE).display(),
            files.len(),
            results_dir.join(PLOTS_DIR).display(),
            started.elapsed().as_secs_f64()
        ),
        Err(err) => log::warn!("could not write the report and plots: {err:#}"),
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
                log::warn!("could not update {}: {err:#}", self.path.display());
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

#[cfg(test)]
mod tests {
    use super::*;
    use snac_core::search::Direction;
    use snac_core::search::random::RandomSampler;
    use snac_core::storage::{MemoryStorage, Storage};
    use std::sync::Arc;

    fn metric_names(study: &Study) -> Option<Value> {
        let attrs = study.storage().study_system_attrs(study.info().id).unwrap();
        attrs.into_iter().find(|(key, _)| key == METRIC_NAMES_KEY).map(|(_, value)| value)
    }

    #[test]
    fn metric_names_are_recorded_once_and_never_replaced() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let directions = [Direction::Maximize, Direction::Minimize];
        let open = || Study::create_or_load(storage.clone(), "s", &directions, Arc::new(RandomSampler), 0).unwrap();
        let study = open();
        assert_eq!(record_metric_names(&study, &["performance_metric", "bops"]).unwrap(), None);
        assert_eq!(metric_names(&study), Some(json!(["performance_metric", "bops"])));
        // Resuming with the same names changes nothing.
        assert_eq!(record_metric_names(&open(), &["performance_metric", "bops"]).unwrap(), None);
        // Names given elsewhere (in Optuna) are kept, and returned.
        study.storage().set_study_system_attr(study.info().id, METRIC_NAMES_KEY, &json!(["acc", "cost"])).unwrap();
        assert_eq!(
            record_metric_names(&open(), &["performance_metric", "bops"]).unwrap(),
            Some(json!(["acc", "cost"]))
        );
        assert_eq!(metric_names(&study), Some(json!(["acc", "cost"])));
        // A null (Optuna's "no names") is replaced.
        study.storage().set_study_system_attr(study.info().id, METRIC_NAMES_KEY, &Value::Null).unwrap();
        assert_eq!(record_metric_names(&study, &["performance_metric", "bops"]).unwrap(), None);
        assert_eq!(metric_names(&study), Some(json!(["performance_metric", "bops"])));
    }
}
