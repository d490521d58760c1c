//! Result files in SNAC-Pack's layout (docs/snac-pack-compat.md §6): the search CSV
//! (appended after every trial), `trial_yamls/trial_{n}_arch.yaml`,
//! `best_model_for_local_search.yaml`, and the Pareto table printed at the end.

use crate::setup::{SearchSetup, slurm_rank};
use crate::trial::TrialResult;
use anyhow::{Context, Result};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Map, Value, json};
use snac_core::config::{Experiment, ModelType, Objective};
use snac_core::search::{FAIL_REASON_KEY, FrozenTrial, TrialState, pareto};
use snac_core::trial_yaml::{ArchitectureYaml, Metadata, TrialYaml};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

pub fn trial_yaml_path(results_dir: &Path, number: u64) -> PathBuf {
    results_dir.join("trial_yamls").join(format!("trial_{number}_arch.yaml"))
}

pub fn trial_weights_path(results_dir: &Path, number: u64) -> PathBuf {
    results_dir.join("trial_weights").join(format!("trial_{number}.json"))
}

pub const BEST_MODEL_FILE: &str = "best_model_for_local_search.yaml";

pub fn csv_name(model_type: ModelType) -> &'static str {
    match model_type {
        ModelType::Mlp => "mlp_search_results.csv",
        ModelType::Block => "block_search_results.csv",
        ModelType::DeepSets => "deepsets_search_results.csv",
    }
}

/// `{csv name}_rank{SLURM_PROCID}.csv` (SNAC-Pack's per-rank files), or
/// `_pid{pid}` outside SLURM.
pub fn rank_csv_path(results_dir: &Path, setup: &SearchSetup) -> PathBuf {
    let name = csv_name(setup.experiment.search.model_type);
    let stem = name.trim_end_matches(".csv");
    let suffix = slurm_rank().map_or_else(|| format!("pid{}", std::process::id()), |r| format!("rank{r}"));
    results_dir.join(format!("{stem}_{suffix}.csv"))
}

/// The trial YAML for a result.
pub fn trial_yaml(number: u64, result: &TrialResult) -> Result<TrialYaml> {
    let extra = Map::from_iter([
        ("params".to_string(), json!(result.params)),
        ("val_loss".to_string(), json!(result.outcome.val_loss)),
    ]);
    Ok(TrialYaml {
        metadata: Metadata {
            trial_id: number,
            global_search_accuracy: result.accuracy,
            global_search_bops: result.bops,
            extra,
        },
        architecture: ArchitectureYaml::from_arch(&result.arch)?,
    })
}

/// The search CSV: one row per finished trial.
pub struct CsvLog {
    path: PathBuf,
    hardware: bool,
    constrained: bool,
    /// k-fold: a column with each fold's accuracy, `;`-separated.
    folds: bool,
    /// Two-state qubit readout: a `readout_fidelity` column.
    readout: bool,
}

impl CsvLog {
    fn header(&self) -> Vec<&'static str> {
        let mut header = vec!["trial", "performance_metric", "bops", "params", "yaml_path"];
        if self.hardware {
            header.extend(["avg_resource", "clock_cycles"]);
        }
        header.extend(["run_timestamp", "state", "duration_s", "seed", "fail_reason"]);
        if self.constrained {
            header.push("feasible");
        }
        if self.folds {
            header.push("fold_accuracies");
        }
        if self.readout {
            header.push("readout_fidelity");
        }
        header
    }

    /// Rewrites the CSV from the storage (so rows lost to a kill come back),
    /// then returns a log that appends.
    pub fn rebuild(results_dir: &Path, setup: &SearchSetup, trials: &[FrozenTrial]) -> Result<CsvLog> {
        Self::rebuild_at(results_dir.join(csv_name(setup.experiment.search.model_type)), setup, trials)
    }

    /// [`rebuild`](Self::rebuild) at another path (a worker's per-rank CSV).
    pub fn rebuild_at(path: PathBuf, setup: &SearchSetup, trials: &[FrozenTrial]) -> Result<CsvLog> {
        Self::write_new(path, &setup.experiment, trials)
    }

    /// Writes the CSV of `trials` for an experiment (no dataset needed).
    pub fn write_new(path: PathBuf, experiment: &Experiment, trials: &[FrozenTrial]) -> Result<CsvLog> {
        let log = CsvLog {
            path,
            hardware: crate::setup::wants_hardware(experiment),
            constrained: !experiment.search.constraints.is_empty(),
            folds: experiment.search.n_folds > 1,
            // Two-state qubit data: trials record their readout fidelity (not with k-fold).
            readout: experiment.dataset.name == snac_core::config::DatasetName::Qubit && experiment.search.n_folds <= 1,
        };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(log.header())?;
        for trial in trials.iter().filter(|t| t.state.is_finished()) {
            writer.write_record(log.row(trial))?;
        }
        snac_core::write_atomic(&log.path, &writer.into_inner()?)?;
        Ok(log)
    }

    fn row(&self, trial: &FrozenTrial) -> Vec<String> {
        let attr = |key: &str| match trial.user_attrs.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let complete = trial.state == TrialState::Complete;
        let metric = |key: &str| if complete { attr(key) } else { String::new() };
        // A pruned trial shows its last accuracy and its BOPs.
        let pruned = trial.state == TrialState::Pruned;
        let reached = |key: &str| if complete || pruned { attr(key) } else { String::new() };
        let mut row = vec![
            trial.number.to_string(),
            reached("performance_metric"),
            reached("bops"),
            metric("params"),
            metric("yaml_path"),
        ];
        if self.hardware {
            row.extend([metric("avg_resource"), metric("clock_cycles")]);
        }
        row.extend([
            trial.datetime_complete.or(trial.datetime_start).map(|t| t.to_rfc3339()).unwrap_or_default(),
            trial.state.name().to_string(),
            trial.duration_s().map(|d| format!("{d:.3}")).unwrap_or_default(),
            attr("seed"),
            if pruned { attr("prune_reason") } else { attr(FAIL_REASON_KEY) },
        ]);
        if self.constrained {
            row.push(metric("feasible"));
        }
        if self.folds {
            row.push(metric("fold_accuracies"));
        }
        if self.readout {
            row.push(metric("readout_fidelity"));
        }
        row
    }

    /// Appends one finished trial.
    pub fn append(&mut self, trial: &FrozenTrial) -> Result<()> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        writer.write_record(self.row(trial))?;
        writer.flush().with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

fn accuracy(trial: &FrozenTrial) -> f64 {
    trial.user_attrs.get("performance_metric").and_then(|v| v.as_f64()).unwrap_or(f64::NEG_INFINITY)
}

fn bops(trial: &FrozenTrial) -> f64 {
    trial.user_attrs.get("bops").and_then(|v| v.as_f64()).unwrap_or(f64::INFINITY)
}

/// Completed trials only.
pub fn completed(trials: &[FrozenTrial]) -> impl Iterator<Item = &FrozenTrial> {
    trials.iter().filter(|t| t.state == TrialState::Complete)
}

/// The completed trial with the highest accuracy (fewer BOPs breaks ties), as
/// SNAC-Pack picks the model for local search.
pub fn best_by_accuracy(trials: &[FrozenTrial]) -> Option<FrozenTrial> {
    // With resource budgets, only feasible trials qualify (if there are any).
    let feasible = |t: &&FrozenTrial| t.user_attrs.get("feasible").and_then(|v| v.as_bool()).unwrap_or(true);
    let pool: Vec<&FrozenTrial> = if completed(trials).any(|t| feasible(&t)) {
        completed(trials).filter(feasible).collect()
    } else {
        completed(trials).collect()
    };
    pool.into_iter().max_by(|a, b| accuracy(a).total_cmp(&accuracy(b)).then(bops(b).total_cmp(&bops(a)))).cloned()
}

/// The trial YAML of a completed trial, rebuilt from what the storage keeps
/// (`snac results`); `None` for a trial without a stored architecture.
pub fn stored_trial_yaml(trial: &FrozenTrial) -> Result<Option<TrialYaml>> {
    let Some(architecture) = trial.user_attrs.get("architecture").cloned() else { return Ok(None) };
    let architecture: ArchitectureYaml =
        serde_json::from_value(architecture).with_context(|| format!("trial {}: stored architecture", trial.number))?;
    let extra = Map::from_iter(
        ["params", "val_loss"].map(|k| (k.to_string(), trial.user_attrs.get(k).cloned().unwrap_or(Value::Null))),
    );
    Ok(Some(TrialYaml {
        metadata: Metadata {
            trial_id: trial.number,
            global_search_accuracy: accuracy(trial),
            global_search_bops: bops(trial),
            extra,
        },
        architecture,
    }))
}

/// Writes `best_model_for_local_search.yaml` from the best trial.
pub fn write_best_model(results_dir: &Path, best: &FrozenTrial) -> Result<()> {
    let architecture: ArchitectureYaml = serde_json::from_value(
        best.user_attrs.get("architecture").cloned().context("best trial has no stored architecture")?,
    )?;
    let extra = Map::from_iter([
        ("params".to_string(), best.user_attrs.get("params").cloned().unwrap_or(Value::Null)),
        ("source_yaml".to_string(), best.user_attrs.get("yaml_path").cloned().unwrap_or(Value::Null)),
        ("weights".to_string(), json!(trial_weights_path(results_dir, best.number).to_string_lossy())),
    ]);
    let yaml = TrialYaml {
        metadata: Metadata {
            trial_id: best.number,
            global_search_accuracy: accuracy(best),
            global_search_bops: bops(best),
            extra,
        },
        architecture,
    };
    yaml.write(&results_dir.join(BEST_MODEL_FILE))
}

/// The Pareto set as a table, best accuracy first.
pub fn pareto_table(setup: &SearchSetup, trials: &[FrozenTrial]) -> Table {
    let mut front: Vec<&FrozenTrial> = pareto::pareto_front(trials, &setup.directions());
    front.sort_by(|a, b| accuracy(b).total_cmp(&accuracy(a)));
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["trial".to_string()];
    header.extend(setup.objectives.iter().map(|(o, _)| o.name().to_string()));
    if !setup.objectives.iter().any(|(o, _)| *o == Objective::Params) {
        header.push("params".into());
    }
    header.push("architecture".into());
    table.set_header(header);
    for trial in front {
        let mut row = vec![trial.number.to_string()];
        for (i, (objective, _)) in setup.objectives.iter().enumerate() {
            let value = trial.values.as_ref().and_then(|v| v.get(i)).copied().unwrap_or(f64::NAN);
            row.push(match objective {
                Objective::PerformanceMetric => format!("{value:.4}"),
                Objective::AvgResource => format!("{value:.3} %"),
                Objective::ClockCycles => format!("{value:.0}"),
                Objective::Bops | Objective::Params => format!("{value:.4e}"),
            });
        }
        if !setup.objectives.iter().any(|(o, _)| *o == Objective::Params) {
            row.push(trial.user_attrs.get("params").map(|v| v.to_string()).unwrap_or_default());
        }
        row.push(trial.user_attrs.get("arch").and_then(|v| v.as_str()).unwrap_or("").to_string());
        table.add_row(row);
    }
    table
}
