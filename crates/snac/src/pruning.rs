//! Pruning in a running search (`search.pruner`): after every epoch a trial
//! stores its validation accuracy as an intermediate value (Optuna's
//! `trial.intermediate_values`, so the dashboard draws the curves) and asks
//! the pruner (`snac_core::search::pruners`) whether to go on. A pruned trial
//! ends with [`TrialPruned`], and the search records it as PRUNED with its
//! last accuracy. With k-fold, the first fold's curve is the trial's: when
//! it is pruned, the other folds stop too.

use crate::setup::SearchSetup;
use anyhow::Result;
use serde_json::json;
use snac_core::search::pruners::{PruneInput, Pruner};
use snac_core::storage::Storage;
use snac_train::{EpochHook, EpochStats};
use std::sync::{Arc, Mutex};

/// A trial stopped by the pruner, after `epoch` epochs.
#[derive(Clone, Debug)]
pub struct TrialPruned {
    pub epoch: u64,
    pub accuracy: f64,
    pub reason: String,
}

impl std::fmt::Display for TrialPruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for TrialPruned {}

/// The [`TrialPruned`] in `err`'s chain, if it is one.
pub fn pruned(err: &anyhow::Error) -> Option<&TrialPruned> {
    err.chain().find_map(|e| e.downcast_ref::<TrialPruned>())
}

/// What a search's trials need to ask the pruner.
#[derive(Clone)]
pub struct Pruning {
    storage: Arc<dyn Storage>,
    study_id: i64,
    study_name: String,
    pruner: Arc<dyn Pruner>,
}

impl Pruning {
    /// The pruning of `setup`'s search in this study, or `None` without a pruner.
    pub fn of(setup: &SearchSetup, study: &snac_core::search::Study) -> Option<Pruning> {
        let pruner = setup.experiment.search.pruner.build(setup.experiment.search.epochs as u64)?;
        Some(Pruning {
            storage: study.storage().clone(),
            study_id: study.info().id,
            study_name: study.info().name.clone(),
            pruner,
        })
    }

    /// The epoch hook of trial `trial_id`, whose architecture costs `bops`.
    pub fn hook(&self, trial_id: i64, bops: f64) -> EpochHook {
        let this = self.clone();
        EpochHook(Arc::new(move |stats: &EpochStats| this.after_epoch(trial_id, bops, stats)))
    }

    fn after_epoch(&self, trial_id: i64, bops: f64, stats: &EpochStats) -> Result<()> {
        let (step, value) = (stats.epoch as u64, stats.val_accuracy);
        self.storage.set_trial_intermediate_value(trial_id, step, value)?;
        let trials = self.storage.get_all_trials_shared(self.study_id)?;
        let curves = self.storage.intermediate_values(self.study_id)?;
        let Some(trial) = trials.iter().find(|t| t.id == trial_id) else { return Ok(()) };
        let input =
            PruneInput { study_name: &self.study_name, trial, bops, step, value, trials: &trials, curves: &curves };
        let verdict = self.pruner.judge(&input);
        if !verdict.system_attrs.is_empty() {
            let attrs: Vec<(&str, serde_json::Value)> =
                verdict.system_attrs.iter().map(|(k, v)| (k.as_str(), json!(v))).collect();
            self.storage.set_trial_system_attrs(trial_id, &attrs)?;
        }
        match verdict.prune {
            Some(reason) => Err(TrialPruned { epoch: step, accuracy: value, reason }.into()),
            None => Ok(()),
        }
    }
}

/// For k-fold: the first fold's hook (which reports and asks the pruner)
/// and the hook of the other folds (which stop once the first is pruned).
pub fn fold_hooks(hook: &EpochHook) -> (EpochHook, EpochHook) {
    let verdict: Arc<Mutex<Option<TrialPruned>>> = Arc::default();
    let (first, seen) = (hook.clone(), verdict.clone());
    let lead = EpochHook(Arc::new(move |stats: &EpochStats| {
        let outcome = (first.0)(stats);
        if let Some(p) = outcome.as_ref().err().and_then(pruned) {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }
        outcome
    }));
    let follow =
        EpochHook(Arc::new(move |_: &EpochStats| match verdict.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(p) => Err(p.into()),
            None => Ok(()),
        }));
    (lead, follow)
}
