//! Multi-objective search in Optuna's shape: a [`Study`] hands out trials with
//! `ask`, takes results with `tell`, and keeps everything in a [`Storage`];
//! a [`Sampler`] decides the parameters.
//!
//! Parameters are define-by-run: the search space ([`crate::space`]) asks for
//! them one at a time through [`Trial::suggest`], so a block's parameters exist
//! only when the block does. As in Optuna, a sampler may fix some parameters
//! up front (`sample_relative`, e.g. NSGA-II crossover) and draws the rest one
//! by one (`sample_independent`).

pub mod nsga2;
pub mod pareto;
pub mod random;
pub mod samplers;
mod study;

pub use study::{FAIL_REASON_KEY, Study, Trial, trial_rng};

use anyhow::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a parameter's values come from. The internal representation of a
/// value is an `f64`: the index for a categorical, the number otherwise
/// (Optuna's convention, so storages can share its schema).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Distribution {
    /// One of `choices` (ints, strings or null), stored as the index.
    Categorical { choices: Vec<Value> },
    /// An integer in `[low, high]`, inclusive, on a grid of `step`.
    Int { low: i64, high: i64, step: i64 },
    /// A float in `[low, high]`.
    Float { low: f64, high: f64, log: bool },
}

impl Distribution {
    /// Is `internal` a legal value of this distribution?
    pub fn contains(&self, internal: f64) -> bool {
        match self {
            Distribution::Categorical { choices } => {
                internal >= 0.0 && (internal as usize) < choices.len() && internal.fract() == 0.0
            }
            Distribution::Int { low, high, step } => {
                let v = internal as i64;
                internal.fract() == 0.0 && v >= *low && v <= *high && (v - low) % step == 0
            }
            Distribution::Float { low, high, .. } => internal >= *low && internal <= *high,
        }
    }

    /// Draws a value uniformly (log-uniformly for log floats).
    pub fn sample(&self, rng: &mut dyn RngCore) -> f64 {
        use rand::Rng;
        match self {
            Distribution::Categorical { choices } => rng.random_range(0..choices.len()) as f64,
            Distribution::Int { low, high, step } => {
                let n = (high - low) / step;
                (low + step * rng.random_range(0..=n)) as f64
            }
            Distribution::Float { low, high, log: false } => rng.random_range(*low..=*high),
            Distribution::Float { low, high, log: true } => rng.random_range(low.ln()..=high.ln()).exp(),
        }
    }

    /// Single-valued distributions need no sampling and do not take part in
    /// crossover (Optuna's `single()`).
    pub fn is_single(&self) -> bool {
        match self {
            Distribution::Categorical { choices } => choices.len() == 1,
            Distribution::Int { low, high, .. } => low == high,
            Distribution::Float { low, high, .. } => low == high,
        }
    }

    /// The external value (the choice itself for categoricals).
    pub fn external(&self, internal: f64) -> Value {
        match self {
            Distribution::Categorical { choices } => choices.get(internal as usize).cloned().unwrap_or(Value::Null),
            Distribution::Int { .. } => Value::from(internal as i64),
            Distribution::Float { .. } => Value::from(internal),
        }
    }
}

/// Life cycle of a trial; the names and codes are Optuna's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrialState {
    Running,
    Complete,
    Pruned,
    Fail,
    Waiting,
}

impl TrialState {
    pub fn name(&self) -> &'static str {
        match self {
            TrialState::Running => "RUNNING",
            TrialState::Complete => "COMPLETE",
            TrialState::Pruned => "PRUNED",
            TrialState::Fail => "FAIL",
            TrialState::Waiting => "WAITING",
        }
    }

    pub fn parse(name: &str) -> Option<TrialState> {
        Some(match name {
            "RUNNING" => TrialState::Running,
            "COMPLETE" => TrialState::Complete,
            "PRUNED" => TrialState::Pruned,
            "FAIL" => TrialState::Fail,
            "WAITING" => TrialState::Waiting,
            _ => return None,
        })
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, TrialState::Complete | TrialState::Pruned | TrialState::Fail)
    }
}

/// Direction of one objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    pub fn from_maximize(maximize: bool) -> Direction {
        if maximize { Direction::Maximize } else { Direction::Minimize }
    }
}

/// System attribute under which constraint values are kept (as Optuna does): a list of floats,
/// feasible when every value is ≤ 0 (Optuna's `constraints_func` convention).
pub const CONSTRAINTS_KEY: &str = "constraints";

/// A snapshot of one trial as the storage holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrozenTrial {
    /// Storage-wide id.
    pub id: i64,
    /// 0-based number within the study.
    pub number: u64,
    pub state: TrialState,
    /// Internal values with their distributions.
    pub params: BTreeMap<String, (Distribution, f64)>,
    pub values: Option<Vec<f64>>,
    pub user_attrs: BTreeMap<String, Value>,
    pub system_attrs: BTreeMap<String, Value>,
    pub datetime_start: Option<chrono::DateTime<chrono::Utc>>,
    pub datetime_complete: Option<chrono::DateTime<chrono::Utc>>,
}

impl FrozenTrial {
    /// Internal value of a parameter.
    pub fn param(&self, name: &str) -> Option<f64> {
        self.params.get(name).map(|p| p.1)
    }

    /// Constraint values, if the trial has them.
    pub fn constraints(&self) -> Option<Vec<f64>> {
        let list = self.system_attrs.get(CONSTRAINTS_KEY)?.as_array()?;
        list.iter().map(|v| v.as_f64()).collect()
    }

    /// Sum of constraint violations (0 when feasible or unconstrained; a NaN
    /// constraint counts as infinitely violated).
    pub fn violation(&self) -> f64 {
        match self.constraints() {
            None => 0.0,
            Some(c) if c.iter().any(|v| v.is_nan()) => f64::INFINITY,
            Some(c) => c.iter().map(|v| v.max(0.0)).sum(),
        }
    }

    /// Seconds from start to completion.
    pub fn duration_s(&self) -> Option<f64> {
        Some((self.datetime_complete? - self.datetime_start?).num_milliseconds() as f64 / 1000.0)
    }
}

/// What a sampler can see of the study when it decides.
pub struct StudyView<'a> {
    pub directions: &'a [Direction],
    /// Every trial of the study so far, in number order (the storage is the
    /// only state a sampler may depend on, so this is all it sees), shared
    /// with the storage's cache rather than copied.
    pub trials: &'a [Arc<FrozenTrial>],
}

/// Decides parameter values. Implementations keep no per-study state that is
/// not in the storage (or derivable from it), so several workers can share a
/// study. Both methods get a per-trial RNG seeded from the study seed and the
/// trial number, so a search is reproducible.
pub trait Sampler: Send + Sync {
    /// Called once when a trial starts: returns values fixed for this trial
    /// (the whole set or part of it) and system attributes to store with it
    /// (e.g. the NSGA-II generation).
    /// The default fixes nothing.
    fn sample_relative(
        &self,
        study: &StudyView<'_>,
        trial_number: u64,
        rng: &mut dyn RngCore,
    ) -> Result<RelativeSample> {
        let _ = (study, trial_number, rng);
        Ok(RelativeSample::default())
    }

    /// Whether trial `trial_number` can be sampled from `study` as it is: a
    /// sampler that learns from finished trials says no while trials its
    /// choice depends on still run, and [`Study::ask`] waits. This makes the
    /// trials drawn a function of the seed alone, whatever the number of
    /// workers and whichever finishes first. The default is always ready.
    fn ready(&self, study: &StudyView<'_>, trial_number: u64) -> bool {
        let _ = (study, trial_number);
        true
    }

    /// Draws one parameter that `sample_relative` did not fix.
    /// The default draws uniformly from the distribution.
    fn sample_independent(
        &self,
        study: &StudyView<'_>,
        trial_number: u64,
        name: &str,
        distribution: &Distribution,
        rng: &mut dyn RngCore,
    ) -> Result<f64> {
        let _ = (study, trial_number, name);
        Ok(distribution.sample(rng))
    }

    /// A name for logs and the CSV.
    fn name(&self) -> &'static str;
}

/// Values a sampler fixes when a trial starts.
#[derive(Clone, Debug, Default)]
pub struct RelativeSample {
    /// Internal values; a value is used only if the space later asks for this
    /// name with a distribution that contains it.
    pub params: BTreeMap<String, f64>,
    pub system_attrs: BTreeMap<String, Value>,
}
