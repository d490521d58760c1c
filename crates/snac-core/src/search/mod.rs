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
pub mod pruners;
pub mod random;
pub mod samplers;
mod study;
pub mod tpe;

pub use study::{Study, Trial, trial_rng};

/// The trial types, defined in [`crate::trial`] and kept here under their old paths.
pub use crate::trial::{CONSTRAINTS_KEY, Direction, Distribution, FAIL_REASON_KEY, FrozenTrial, TrialState};

use anyhow::Result;
use rand::RngCore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

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

    /// Whether [`ready`](Self::ready) also waits for RUNNING trials that
    /// another [`Study`] handle (another process: `snac worker` on another
    /// node) asked for. NSGA-II does (its parents are a whole generation);
    /// TPE does not: across processes the order trials finish in is timing
    /// anyway, and waiting on another process's trial would make the
    /// workers of a fleet take turns instead of running side by side.
    fn waits_for_other_processes(&self) -> bool {
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
