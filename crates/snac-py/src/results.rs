//! Reading what runs left behind: a study's trials (as Optuna names their
//! parts, for `trials_dataframe()`), the studies in a storage, and the
//! resource estimate of a model file.

use crate::py_err;
use anyhow::Context;
use clap::Parser;
use pyo3::prelude::*;
use serde_json::{Value, json};
use snac_core::search::FrozenTrial;

/// The names of the studies in the storage at `url`.
#[pyfunction]
pub fn study_names(py: Python<'_>, url: String) -> PyResult<Vec<String>> {
    py.detach(|| {
        let storage = snac_core::storage::open(&url)?;
        Ok(storage.list_studies()?.into_iter().map(|s| s.name).collect())
    })
    .map_err(py_err)
}

/// The trials of study `study` in the storage at `url`, as a JSON list:
/// number, state, values, params (external values), user_attrs,
/// system_attrs, datetime_start, datetime_complete; plus the study's
/// metric names and directions.
#[pyfunction]
pub fn load_trials(py: Python<'_>, url: String, study: String) -> PyResult<String> {
    py.detach(|| {
        let storage = snac_core::storage::open(&url)?;
        let info = storage
            .list_studies()?
            .into_iter()
            .find(|s| s.name == study)
            .with_context(|| format!("{url} has no study '{study}'"))?;
        let trials: Vec<Value> = storage.get_all_trials(info.id)?.iter().map(trial_json).collect();
        let metric_names = storage
            .study_system_attrs(info.id)?
            .into_iter()
            .find(|(k, _)| k == snac_core::storage::METRIC_NAMES_KEY)
            .map(|(_, v)| v)
            .unwrap_or(Value::Null);
        let directions: Vec<String> = info.directions.iter().map(|d| format!("{d:?}").to_uppercase()).collect();
        Ok(json!({"trials": trials, "metric_names": metric_names, "directions": directions}).to_string())
    })
    .map_err(py_err)
}

fn trial_json(trial: &FrozenTrial) -> Value {
    let params: serde_json::Map<String, Value> =
        trial.params.iter().map(|(name, (distribution, v))| (name.clone(), distribution.external(*v))).collect();
    json!({
        "number": trial.number,
        "state": format!("{:?}", trial.state).to_uppercase(),
        "values": trial.values,
        "params": params,
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "datetime_start": trial.datetime_start.map(|t| t.to_rfc3339()),
        "datetime_complete": trial.datetime_complete.map(|t| t.to_rfc3339()),
    })
}

/// `snac estimate MODEL --json` with `flags` (`["--board", "zcu102", ...]`):
/// the estimate as JSON.
#[pyfunction]
pub fn estimate(py: Python<'_>, model: String, flags: Vec<String>) -> PyResult<String> {
    let argv: Vec<String> = ["snac".to_string(), "estimate".to_string(), model].into_iter().chain(flags).collect();
    let cli = snac::cli::Cli::try_parse_from(&argv).map_err(|e| py_err(anyhow::anyhow!("{}", e.render())))?;
    let snac::cli::Command::Estimate(args) = cli.command else { unreachable!("parsed as estimate") };
    py.detach(|| Ok(serde_json::to_string(&snac::cmd::estimate::estimate_for(&args)?)?)).map_err(py_err)
}
