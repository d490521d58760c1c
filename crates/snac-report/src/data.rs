//! What the plots and the report show, read from one of three sources: a
//! study in its storage (our `study.db`, the richest: architectures, training
//! curves, estimates), our search CSV, or SNAC-Pack's own
//! `*_search_results.csv`. Everything downstream sees only [`Results`].

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use snac_core::search::{Direction, FAIL_REASON_KEY, FrozenTrial, TrialState};
use snac_core::storage::{self, Storage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Study user attribute where `snac` records its objectives, in value order:
/// `[{"name": "performance_metric", "maximize": true}, ...]`.
pub const OBJECTIVES_ATTR: &str = "snac:objectives";

/// The metrics a trial can carry, with the direction in which each is better.
/// The names are the CSV columns of SNAC-Pack and of `snac`.
pub const KNOWN_METRICS: [(&str, bool); 5] = [
    ("performance_metric", true),
    ("bops", false),
    ("params", false),
    ("avg_resource", false),
    ("clock_cycles", false),
];

/// Whether a larger value of a known metric is better (accuracy); `None` for
/// an unknown name.
pub fn metric_maximize(name: &str) -> Option<bool> {
    KNOWN_METRICS.iter().find(|(known, _)| *known == name).map(|(_, maximize)| *maximize)
}

/// One objective of the study.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Objective {
    pub name: String,
    pub maximize: bool,
}

impl Objective {
    pub fn direction(&self) -> Direction {
        Direction::from_maximize(self.maximize)
    }
}

/// One epoch of a training curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Epoch {
    pub epoch: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
}

/// One trial, as the plots and the report need it.
#[derive(Clone, Debug, Serialize)]
pub struct TrialRecord {
    pub number: u64,
    /// `COMPLETE`, `FAIL`, `RUNNING`, ...
    pub state: String,
    /// Metric name → value, for every known metric the trial has.
    pub metrics: BTreeMap<String, f64>,
    /// `None` without resource budgets.
    pub feasible: Option<bool>,
    /// One-line architecture summary (`Dense(64)→ReLU→...`).
    pub arch: Option<String>,
    /// The architecture as in the trial YAML.
    pub architecture: Option<Value>,
    /// Search-space parameters as sampled (external values).
    pub params: BTreeMap<String, String>,
    pub duration_s: Option<f64>,
    pub fail_reason: Option<String>,
    #[serde(skip)]
    pub history: Vec<Epoch>,
    /// The FPGA estimate stored with the trial, if any (`lut`, `ff`, ...).
    #[serde(skip)]
    pub estimate: Option<BTreeMap<String, f64>>,
}

impl TrialRecord {
    pub fn is_complete(&self) -> bool {
        self.state == TrialState::Complete.name()
    }

    /// Complete and not marked infeasible.
    pub fn is_feasible(&self) -> bool {
        self.feasible != Some(false)
    }

    /// The value of a metric (NaN when the trial lacks it).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(f64::NAN)
    }
}

/// One row of the local-search log (`combined_qat_pruning_log.csv`).
#[derive(Clone, Debug, Serialize)]
pub struct LocalRow {
    pub precision: String,
    pub iteration: Option<u64>,
    pub sparsity: f64,
    pub accuracy: f64,
    pub effective_bops: f64,
    /// Further numeric columns (`bops_effective`, `lut`, ...), by name.
    pub extra: BTreeMap<String, f64>,
}

/// Everything a report or a plot set is made from.
#[derive(Clone, Debug)]
pub struct Results {
    /// Study name, or the CSV's file name.
    pub name: String,
    /// Where it was read from, for the report's summary.
    pub source: String,
    pub objectives: Vec<Objective>,
    /// Every trial, in number order.
    pub trials: Vec<TrialRecord>,
    pub local: Vec<LocalRow>,
}

impl Results {
    /// Completed trials (the only ones any plot shows).
    pub fn complete(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials.iter().filter(|t| t.is_complete())
    }

    /// The completed trial with the best `performance_metric` (fewer BOPs
    /// break ties), feasible ones first: the model local search starts from.
    pub fn best(&self) -> Option<&TrialRecord> {
        let any_feasible = self.complete().any(|t| t.is_feasible());
        let key = |t: &TrialRecord| {
            let accuracy = t.metric("performance_metric");
            (if accuracy.is_nan() { f64::NEG_INFINITY } else { accuracy }, -t.metric("bops"))
        };
        self.complete()
            .filter(|t| !any_feasible || t.is_feasible())
            .max_by(|a, b| key(a).0.total_cmp(&key(b).0).then(key(a).1.total_cmp(&key(b).1)))
    }

    /// Metric names that completed trials carry, objectives first: the axes
    /// the report offers.
    pub fn axes(&self) -> Vec<String> {
        let mut axes: Vec<String> = self.objectives.iter().map(|o| o.name.clone()).collect();
        for (name, _) in KNOWN_METRICS {
            if !axes.iter().any(|a| a == name) && self.complete().any(|t| t.metrics.contains_key(name)) {
                axes.push(name.to_string());
            }
        }
        axes
    }

    /// Does a larger value of this axis mean better?
    pub fn maximize(&self, axis: &str) -> bool {
        self.objectives
            .iter()
            .find(|o| o.name == axis)
            .map(|o| o.maximize)
            .or_else(|| metric_maximize(axis))
            .unwrap_or(false)
    }
}

/// Builds [`Results`] from a study's trials. `objectives` are in value order;
/// `local` is the local-search log, if any.
pub fn from_trials(name: &str, source: &str, objectives: Vec<Objective>, trials: &[FrozenTrial]) -> Results {
    let records = trials.iter().map(|t| record_from_trial(t, &objectives)).collect();
    Results { name: name.to_string(), source: source.to_string(), objectives, trials: records, local: Vec::new() }
}

fn record_from_trial(trial: &FrozenTrial, objectives: &[Objective]) -> TrialRecord {
    let attrs = &trial.user_attrs;
    let mut metrics = BTreeMap::new();
    if trial.state == TrialState::Complete {
        for (name, _) in KNOWN_METRICS {
            if let Some(value) = attrs.get(name).and_then(Value::as_f64) {
                metrics.insert(name.to_string(), value);
            }
        }
        // The study's values are the truth for its objectives.
        for (objective, value) in objectives.iter().zip(trial.values.iter().flatten()) {
            metrics.insert(objective.name.clone(), *value);
        }
    }
    let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let history = attrs
        .get("history")
        .and_then(Value::as_array)
        .map(|epochs| {
            epochs
                .iter()
                .map(|e| Epoch {
                    epoch: number(e, "epoch"),
                    train_loss: number(e, "train_loss"),
                    train_accuracy: number(e, "train_accuracy"),
                    val_loss: number(e, "val_loss"),
                    val_accuracy: number(e, "val_accuracy"),
                })
                .collect()
        })
        .unwrap_or_default();
    let estimate = attrs.get("estimate").and_then(Value::as_object).map(|object| {
        object.iter().filter_map(|(key, value)| Some((key.clone(), value.as_f64()?))).collect::<BTreeMap<_, _>>()
    });
    TrialRecord {
        number: trial.number,
        state: trial.state.name().to_string(),
        metrics,
        feasible: attrs.get("feasible").and_then(Value::as_bool),
        arch: attrs.get("arch").and_then(Value::as_str).map(str::to_string),
        architecture: attrs.get("architecture").cloned(),
        params: trial
            .params
            .iter()
            .map(|(name, (distribution, internal))| {
                let external = distribution.external(*internal);
                (name.clone(), external.as_str().map(str::to_string).unwrap_or_else(|| external.to_string()))
            })
            .collect(),
        duration_s: trial.duration_s(),
        fail_reason: attrs.get(FAIL_REASON_KEY).and_then(Value::as_str).map(str::to_string),
        history,
        estimate,
    }
}

/// The objectives recorded with a study, or, for a study written before they
/// were recorded, the known metrics whose stored values equal the trials'
/// objective values (`objective_{i}` where none does).
pub fn study_objectives(
    storage: &dyn Storage,
    study_id: i64,
    directions: &[Direction],
    trials: &[FrozenTrial],
) -> Vec<Objective> {
    let recorded = storage.study_user_attrs(study_id).ok().and_then(|attrs| {
        let (_, value) = attrs.into_iter().find(|(key, _)| key == OBJECTIVES_ATTR)?;
        serde_json::from_value::<Vec<(String, bool)>>(value.clone()).ok().or_else(|| {
            value
                .as_array()?
                .iter()
                .map(|o| Some((o.get("name")?.as_str()?.to_string(), o.get("maximize")?.as_bool()?)))
                .collect()
        })
    });
    if let Some(objectives) = recorded.filter(|o| o.len() == directions.len()) {
        return objectives.into_iter().map(|(name, maximize)| Objective { name, maximize }).collect();
    }
    let sample = trials.iter().find(|t| t.state == TrialState::Complete && t.values.is_some());
    directions
        .iter()
        .enumerate()
        .map(|(i, direction)| {
            let value = sample.and_then(|t| t.values.as_ref()?.get(i).copied());
            let name = value
                .and_then(|v| {
                    KNOWN_METRICS.iter().find(|(name, maximize)| {
                        *maximize == (*direction == Direction::Maximize)
                            && sample.and_then(|t| t.user_attrs.get(*name)?.as_f64()) == Some(v)
                    })
                })
                .map(|(name, _)| name.to_string())
                .unwrap_or_else(|| format!("objective_{i}"));
            Objective { name, maximize: *direction == Direction::Maximize }
        })
        .collect()
}

/// Reads a results directory: the study in `study.db` when there is one
/// (`study` picks one of several), else the search CSV; plus the local-search
/// log when it exists.
pub fn load_results_dir(dir: &Path, study: Option<&str>) -> Result<Results> {
    if !dir.is_dir() {
        bail!("{} is not a directory: give the results dir of a run (output.results_dir)", dir.display());
    }
    let db = dir.join("study.db");
    let mut results = if db.exists() {
        load_study(&db, study)?
    } else {
        let csv = find_search_csv(dir)?;
        load_csv(&csv, None)?
    };
    results.local = load_local_log(dir)?;
    Ok(results)
}

/// Reads a study from an SQLite storage file.
pub fn load_study(db: &Path, study: Option<&str>) -> Result<Results> {
    let storage = storage::open(&db.to_string_lossy()).with_context(|| format!("opening {}", db.display()))?;
    let studies = storage.list_studies().with_context(|| format!("listing the studies in {}", db.display()))?;
    let info = match study {
        Some(name) => studies.iter().find(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = studies.iter().map(|s| s.name.as_str()).collect();
            format!("{} has no study '{name}'; it has: {}", db.display(), names.join(", "))
        })?,
        None => match studies.as_slice() {
            [] => bail!("{} holds no study yet", db.display()),
            [only] => only,
            several => several.iter().find(|s| s.name == "snac").with_context(|| {
                let names: Vec<&str> = several.iter().map(|s| s.name.as_str()).collect();
                format!("{} holds several studies ({}); pick one with --study NAME", db.display(), names.join(", "))
            })?,
        },
    };
    let trials = storage.get_all_trials(info.id)?;
    let objectives = study_objectives(storage.as_ref(), info.id, &info.directions, &trials);
    Ok(from_trials(&info.name, &db.display().to_string(), objectives, &trials))
}

/// The search CSV of a results dir (`*_search_results*.csv`).
pub fn find_search_csv(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("_search_results") && n.ends_with(".csv"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => bail!("{} has neither study.db nor a *_search_results.csv: is it a results dir?", dir.display()),
        _ => Ok(found.remove(0)),
    }
}

/// SNAC-Pack's placeholder values for a trial that threw (docs/snac-pack-compat.md §3).
fn is_snac_pack_failure(metrics: &BTreeMap<String, f64>) -> bool {
    metrics.get("performance_metric") == Some(&0.0) && metrics.get("bops").is_some_and(|b| *b >= 1e12)
}

/// Reads a search CSV: ours (`trial, performance_metric, bops, params,
/// yaml_path, [avg_resource, clock_cycles], run_timestamp, state, ...`) or
/// SNAC-Pack's (`trial, performance_metric, bops, params, yaml_path,
/// [avg_resource, clock_cycles], run_timestamp`). `objectives` names the
/// objective columns; by default `performance_metric`, `bops` and, when the
/// file has them, `avg_resource` and `clock_cycles` (SNAC-Pack's objectives).
pub fn load_csv(path: &Path, objectives: Option<&[String]>) -> Result<Results> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let accepted = "a search CSV (ours or SNAC-Pack's *_search_results.csv) with columns trial, performance_metric, bops[, params, avg_resource, clock_cycles, state, feasible]";
    for required in ["trial", "performance_metric", "bops"] {
        if column(required).is_none() {
            bail!("{}: no column '{required}' (header: {}); expected {accepted}", path.display(), header.join(","));
        }
    }
    let objectives: Vec<Objective> = match objectives {
        Some(names) => names
            .iter()
            .map(|name| {
                if column(name).is_none() {
                    bail!("{}: objective column '{name}' is not in the header ({})", path.display(), header.join(","));
                }
                let maximize = metric_maximize(name).with_context(|| {
                    let known: Vec<&str> = KNOWN_METRICS.iter().map(|(n, _)| *n).collect();
                    format!("objective '{name}': known objectives are {}", known.join(", "))
                })?;
                Ok(Objective { name: name.clone(), maximize })
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut trials = Vec::new();
    for (row_index, row) in reader.records().enumerate() {
        let line = row_index + 2;
        let row = row.with_context(|| format!("{}: line {line}", path.display()))?;
        let field = |name: &str| column(name).and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty());
        let number: u64 = field("trial")
            .with_context(|| format!("{}: line {line}: empty 'trial'", path.display()))?
            .parse()
            .with_context(|| format!("{}: line {line}: column 'trial' is not a trial number", path.display()))?;
        let mut metrics = BTreeMap::new();
        for (name, _) in KNOWN_METRICS {
            if let Some(text) = field(name) {
                let value: f64 = text.parse().with_context(|| {
                    format!("{}: line {line}: column '{name}' holds '{text}', not a number", path.display())
                })?;
                metrics.insert(name.to_string(), value);
            }
        }
        let mut state = match field("state") {
            Some(state) => state.to_string(),
            None if metrics.contains_key("performance_metric") => TrialState::Complete.name().to_string(),
            None => TrialState::Fail.name().to_string(),
        };
        let mut fail_reason = field("fail_reason").map(str::to_string);
        if is_snac_pack_failure(&metrics) {
            state = TrialState::Fail.name().to_string();
            fail_reason = Some("SNAC-Pack's placeholder values for a failed trial (accuracy 0, 1e12 BOPs)".into());
        }
        if state != TrialState::Complete.name() {
            metrics.clear();
        }
        let feasible = match field("feasible") {
            None => None,
            Some(text) => Some(text.parse::<bool>().with_context(|| {
                format!("{}: line {line}: column 'feasible' holds '{text}'; accepted: true, false", path.display())
            })?),
        };
        trials.push(TrialRecord {
            number,
            state,
            metrics,
            feasible,
            arch: None,
            architecture: None,
            params: BTreeMap::new(),
            duration_s: field("duration_s").and_then(|d| d.parse().ok()),
            fail_reason,
            history: Vec::new(),
            estimate: None,
        });
    }
    trials.sort_by_key(|t| t.number);
    let objectives = if objectives.is_empty() {
        ["performance_metric", "bops", "avg_resource", "clock_cycles"]
            .into_iter()
            .filter(|name| {
                trials.iter().any(|t| t.metrics.contains_key(*name)) || ["performance_metric", "bops"].contains(name)
            })
            .map(|name| Objective { name: name.to_string(), maximize: metric_maximize(name).unwrap_or(false) })
            .collect()
    } else {
        objectives
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Results { name, source: path.display().to_string(), objectives, trials, local: Vec::new() })
}

/// Where the local search writes its log, relative to the results dir.
pub const LOCAL_LOG: &str = "local_search_combined/combined_qat_pruning_log.csv";

/// Reads the local-search log of a results dir (empty when there is none).
pub fn load_local_log(dir: &Path) -> Result<Vec<LocalRow>> {
    let path = dir.join(LOCAL_LOG);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_local_log(&path)
}

/// Reads a `combined_qat_pruning_log.csv` (SNAC-Pack's columns `Precision,
/// Sparsity, Accuracy, EffectiveBOPs[, Iteration, ...]`, plus ours).
pub fn read_local_log(path: &Path) -> Result<Vec<LocalRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_string()).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    for required in ["Precision", "Sparsity", "Accuracy", "EffectiveBOPs"] {
        if column(required).is_none() {
            bail!(
                "{}: no column '{required}' (header: {}); a local-search log has Precision, Sparsity, Accuracy, EffectiveBOPs",
                path.display(),
                header.join(",")
            );
        }
    }
    let mut rows = Vec::new();
    for (row_index, record) in reader.records().enumerate() {
        let line = row_index + 2;
        let record = record.with_context(|| format!("{}: line {line}", path.display()))?;
        let text = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let number = |name: &str| -> Result<f64> {
            let value = text(column(name).expect("checked above"));
            value.parse().with_context(|| {
                format!("{}: line {line}: column '{name}' holds '{value}', not a number", path.display())
            })
        };
        let mut extra = BTreeMap::new();
        for (i, name) in header.iter().enumerate() {
            if !["Precision", "Sparsity", "Accuracy", "EffectiveBOPs", "Iteration"].contains(&name.as_str())
                && let Ok(value) = text(i).parse::<f64>()
            {
                extra.insert(name.clone(), value);
            }
        }
        rows.push(LocalRow {
            precision: text(column("Precision").expect("checked above")).to_string(),
            iteration: column("Iteration").and_then(|i| text(i).parse().ok()),
            sparsity: number("Sparsity")?,
            accuracy: number("Accuracy")?,
            effective_bops: number("EffectiveBOPs")?,
            extra,
        });
    }
    Ok(rows)
}
