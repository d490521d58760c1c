//! What a database backend remembers of the trials it has read, so that
//! reading a study again (as every `ask` does) costs the trials that may have
//! changed, not the whole study (after Optuna's `_CachedStorage`).
//!
//! A finished trial never changes: every backend refuses to change it. So a
//! study is read again as the trials with an id above the highest one seen,
//! and the ones last seen unfinished. Trial ids of a study grow in the order
//! the trials are committed (they are created under the study's lock, ours
//! and Optuna's), so that finds every new trial. Nothing depends on that
//! alone, though: each read also counts the study's trials, in the same
//! snapshot, and when the count differs from what the cache then holds (a
//! trial it missed, or a deleted study whose id came back), the study is read
//! anew in full.

use crate::trial::FrozenTrial;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The trials of a study with an id above `after` (all when `None`) or in
/// `ids`, and how many trials the study has, from one snapshot.
pub(super) struct Changed {
    pub trials: Vec<FrozenTrial>,
    pub total: u64,
}

/// Trials read so far, per study.
#[derive(Default)]
pub(super) struct TrialCache {
    studies: Mutex<HashMap<i64, Known>>,
}

#[derive(Default)]
struct Known {
    /// Every trial of the study as last read, by id (shared with callers of
    /// `get_all_trials_shared`).
    trials: HashMap<i64, Arc<FrozenTrial>>,
    /// The highest trial id read.
    last_id: Option<i64>,
}

impl Known {
    fn merge(&mut self, trials: Vec<FrozenTrial>) {
        for trial in trials {
            self.last_id = self.last_id.max(Some(trial.id));
            self.trials.insert(trial.id, Arc::new(trial));
        }
    }
}

impl TrialCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Known>> {
        // Every change below is complete before anything can fail.
        self.studies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every trial of the study in number order. `read(after, ids)` reads what
    /// may have changed (see [`Changed`]) and fails for an unknown study; it
    /// runs with the cache locked, so reads of one handle do not interleave.
    pub fn all_trials(
        &self,
        study_id: i64,
        mut read: impl FnMut(Option<i64>, &[i64]) -> Result<Changed>,
    ) -> Result<Vec<Arc<FrozenTrial>>> {
        let mut studies = self.lock();
        let known = studies.entry(study_id).or_default();
        let unfinished: Vec<i64> = known.trials.values().filter(|t| !t.state.is_finished()).map(|t| t.id).collect();
        let changed = match read(known.last_id, &unfinished) {
            Ok(changed) => changed,
            Err(err) => {
                studies.remove(&study_id);
                return Err(err);
            }
        };
        // An unfinished trial that is not read again is gone.
        for id in &unfinished {
            if !changed.trials.iter().any(|t| t.id == *id) {
                known.trials.remove(id);
            }
        }
        known.merge(changed.trials);
        if known.trials.len() as u64 != changed.total {
            *known = Known::default();
            match read(None, &[]) {
                Ok(all) => known.merge(all.trials),
                Err(err) => {
                    studies.remove(&study_id);
                    return Err(err);
                }
            }
        }
        let mut trials: Vec<Arc<FrozenTrial>> = known.trials.values().cloned().collect();
        trials.sort_by_key(|t| (t.number, t.id));
        Ok(trials)
    }

    /// The trial, if it was read finished.
    pub fn finished(&self, trial_id: i64) -> Option<FrozenTrial> {
        let studies = self.lock();
        let trial = studies.values().find_map(|k| k.trials.get(&trial_id))?;
        trial.state.is_finished().then(|| FrozenTrial::clone(trial))
    }

    /// Keeps a trial read on its own (by `get_trial`) once it is finished, if
    /// its study is cached: the next read of the study need not read it again.
    pub fn remember(&self, trial: &FrozenTrial) {
        if !trial.state.is_finished() {
            return;
        }
        let mut studies = self.lock();
        if let Some(cached) = studies.values_mut().find_map(|k| k.trials.get_mut(&trial.id))
            && !cached.state.is_finished()
        {
            *cached = Arc::new(trial.clone());
        }
    }

    /// Forgets a study (it was deleted).
    pub fn forget(&self, study_id: i64) {
        self.lock().remove(&study_id);
    }
}
