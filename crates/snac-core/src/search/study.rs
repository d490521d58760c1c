//! [`Study`]: ask/tell over a [`Storage`] with a [`Sampler`]. The study holds
//! no state of its own beyond handles and the numbers of the trials it asked
//! for, so any number of threads (and, with a database storage, processes)
//! can share it.

use super::{RelativeSample, Sampler, StudyView};
use crate::space::Suggest;
use crate::storage::{Storage, StudyInfo};
use crate::trial::{Direction, Distribution, FAIL_REASON_KEY, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A study: a named set of trials in a storage, searched by one sampler.
#[derive(Clone)]
pub struct Study {
    storage: Arc<dyn Storage>,
    sampler: Arc<dyn Sampler>,
    info: StudyInfo,
    seed: u64,
    /// System attributes of every trial this handle asks for.
    trial_system_attrs: Vec<(String, Value)>,
    /// In a study shared between processes: a RUNNING trial without a
    /// heartbeat for this long is failed while [`ask`](Self::ask) waits on it.
    stale_grace: Option<Duration>,
    /// Numbers of the trials this handle (and its clones: one process)
    /// asked for, for samplers that wait only for their own process's
    /// trials ([`Sampler::waits_for_other_processes`]).
    own: Arc<Mutex<HashSet<u64>>>,
}

impl Study {
    /// Opens the study of that name, creating it if needed.
    pub fn create_or_load(
        storage: Arc<dyn Storage>,
        name: &str,
        directions: &[Direction],
        sampler: Arc<dyn Sampler>,
        seed: u64,
    ) -> Result<Study> {
        let info = storage.create_or_load_study(name, directions)?;
        Ok(Study {
            storage,
            sampler,
            info,
            seed,
            trial_system_attrs: Vec::new(),
            stale_grace: None,
            own: Arc::default(),
        })
    }

    /// Stores these system attributes with every trial this handle asks for
    /// (e.g. which worker runs it), in one batch with the sampler's.
    pub fn with_trial_system_attrs(mut self, attrs: impl IntoIterator<Item = (String, Value)>) -> Study {
        self.trial_system_attrs.extend(attrs);
        self
    }

    /// Shared between processes: while a new trial waits for the trials
    /// its sampler depends on, those without a heartbeat for `grace` are
    /// failed (their process died), so the wait ends.
    pub fn with_stale_grace(mut self, grace: Duration) -> Study {
        self.stale_grace = Some(grace);
        self
    }

    pub fn info(&self) -> &StudyInfo {
        &self.info
    }

    pub fn directions(&self) -> &[Direction] {
        &self.info.directions
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Every trial so far, in number order.
    pub fn trials(&self) -> Result<Vec<FrozenTrial>> {
        self.storage.get_all_trials(self.info.id)
    }

    /// Number of finished (COMPLETE, PRUNED or FAIL) trials.
    pub fn finished_count(&self) -> Result<usize> {
        Ok(self.trials()?.iter().filter(|t| t.state.is_finished()).count())
    }

    /// Starts a new trial: creates it RUNNING in the storage and lets the
    /// sampler fix what it wants up front.
    pub fn ask(&self) -> Result<Trial> {
        self.ask_within(None)?.context("a trial without a budget was refused")
    }

    /// Like [`ask`](Self::ask), but only while fewer than `budget` trials of
    /// the study count against it (see
    /// [`counts_against_budget`](crate::storage::counts_against_budget));
    /// `None` when the budget is used up, by any worker of the study.
    pub fn ask_within(&self, budget: Option<usize>) -> Result<Option<Trial>> {
        let Some((id, number)) = self.storage.create_trial_within(self.info.id, budget)? else {
            return Ok(None);
        };
        self.own.lock().unwrap_or_else(|p| p.into_inner()).insert(number);
        // The sampler may depend on trials still running (NSGA-II on the
        // previous generation): wait for them, so that the trials drawn do
        // not depend on which worker finished first. The new trial's
        // heartbeat shows it is alive meanwhile.
        let mut waited = 0u32;
        let trials = loop {
            let trials = self.storage.get_all_trials_shared(self.info.id)?;
            let ready = if self.sampler.waits_for_other_processes() {
                self.sampler.ready(&StudyView { directions: &self.info.directions, trials: &trials }, number)
            } else {
                // Another process's trials still running are left out.
                let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
                let mine: Vec<Arc<FrozenTrial>> = trials
                    .iter()
                    .filter(|t| t.state != TrialState::Running || own.contains(&t.number))
                    .cloned()
                    .collect();
                drop(own);
                self.sampler.ready(&StudyView { directions: &self.info.directions, trials: &mine }, number)
            };
            if ready {
                break trials;
            }
            if crate::interrupt::stop_requested() {
                self.storage.set_trial_system_attr(id, crate::storage::INTERRUPTED_KEY, &Value::Bool(true))?;
                self.storage.set_trial_user_attr(
                    id,
                    FAIL_REASON_KEY,
                    &Value::from(crate::interrupt::Interrupted.to_string()),
                )?;
                self.storage.finish_trial(id, TrialState::Fail, None)?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
            waited += 1;
            if waited.is_multiple_of(50) {
                self.storage.record_heartbeat(id)?;
                if let Some(grace) = self.stale_grace {
                    self.storage.fail_stale_trials(self.info.id, grace)?;
                }
            }
        };
        let mut rng = trial_rng(self.seed, number);
        let view = StudyView { directions: &self.info.directions, trials: &trials };
        let RelativeSample { params, system_attrs } = self.sampler.sample_relative(&view, number, &mut rng)?;
        // The sampler's system attributes and this handle's, in one batch.
        let fixed = self.trial_system_attrs.iter().map(|(k, v)| (k, v));
        let attrs: Vec<(&str, Value)> =
            system_attrs.iter().chain(fixed).map(|(k, v)| (k.as_str(), v.clone())).collect();
        if !attrs.is_empty() {
            self.storage.set_trial_system_attrs(id, &attrs)?;
        }
        Ok(Some(Trial {
            storage: self.storage.clone(),
            sampler: self.sampler.clone(),
            directions: self.info.directions.clone(),
            id,
            number,
            relative: params,
            snapshot: trials,
            rng,
            params: BTreeMap::new(),
            unstored: Mutex::new(Vec::new()),
        }))
    }

    /// Finishes a trial (its parameters stored first): COMPLETE with its
    /// values, or FAIL with the reason. Non-finite values make the trial FAIL.
    /// Returns `false` if the trial was no longer RUNNING (e.g. it was
    /// declared dead meanwhile).
    pub fn tell(&self, trial: &Trial, outcome: std::result::Result<Vec<f64>, String>) -> Result<bool> {
        trial.store_params()?;
        let trial_id = trial.id;
        match outcome {
            Ok(values) if values.len() != self.info.directions.len() => {
                bail!("trial {trial_id} got {} values for {} objectives", values.len(), self.info.directions.len())
            }
            Ok(values) if values.iter().any(|v| v.is_nan()) => {
                self.storage.set_trial_user_attr(
                    trial_id,
                    FAIL_REASON_KEY,
                    &Value::from(format!("objective values {values:?} contain NaN")),
                )?;
                self.storage.finish_trial(trial_id, TrialState::Fail, None)
            }
            Ok(values) => self.storage.finish_trial(trial_id, TrialState::Complete, Some(&values)),
            Err(reason) => {
                self.storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, &Value::from(reason))?;
                self.storage.finish_trial(trial_id, TrialState::Fail, None)
            }
        }
    }
}

impl Study {
    /// Finishes `trial` as PRUNED (stopped early by a pruner; no values, as
    /// Optuna stores a pruned trial of a multi-objective study). Returns
    /// `false` if it was no longer RUNNING.
    pub fn tell_pruned(&self, trial: &Trial) -> Result<bool> {
        trial.store_params()?;
        self.storage.finish_trial(trial.id, TrialState::Pruned, None)
    }
}

/// The RNG of one trial: a function of the study seed and the trial number,
/// so a sequential search is reproducible.
pub fn trial_rng(seed: u64, number: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ number.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// A running trial: answers the search space's `suggest` calls and records
/// the parameters in the storage, in one batch: before anything else of the
/// trial is written (an attribute, a heartbeat, its end), or on
/// [`store_params`](Self::store_params).
pub struct Trial {
    storage: Arc<dyn Storage>,
    sampler: Arc<dyn Sampler>,
    directions: Vec<Direction>,
    pub id: i64,
    pub number: u64,
    relative: BTreeMap<String, f64>,
    snapshot: Vec<Arc<FrozenTrial>>,
    rng: ChaCha8Rng,
    params: BTreeMap<String, (Distribution, f64)>,
    /// Parameters drawn but not yet in the storage, in order.
    unstored: Mutex<Vec<String>>,
}

impl Trial {
    /// Parameters drawn so far (internal values).
    pub fn params(&self) -> &BTreeMap<String, (Distribution, f64)> {
        &self.params
    }

    /// A seed for this trial's training, derived from the study seed.
    pub fn training_seed(&self) -> u64 {
        use rand::RngCore;
        trial_rng(0x5eed, self.number).next_u64() ^ self.number
    }

    /// Stores the parameters drawn since the last time, in one batch.
    pub fn store_params(&self) -> Result<()> {
        let mut unstored = self.unstored.lock().unwrap_or_else(|e| e.into_inner());
        if unstored.is_empty() {
            return Ok(());
        }
        let batch: Vec<(&str, f64, &Distribution)> = unstored
            .iter()
            .map(|name| {
                let (distribution, value) = &self.params[name];
                (name.as_str(), *value, distribution)
            })
            .collect();
        self.storage
            .set_trial_params(self.id, &batch)
            .with_context(|| format!("storing the parameters of trial {}", self.number))?;
        unstored.clear();
        Ok(())
    }

    pub fn set_user_attr(&self, key: &str, value: &Value) -> Result<()> {
        self.store_params()?;
        self.storage.set_trial_user_attr(self.id, key, value)
    }

    /// Several user attributes at once (one round trip where the storage can).
    pub fn set_user_attrs(&self, attrs: &[(&str, Value)]) -> Result<()> {
        self.store_params()?;
        self.storage.set_trial_user_attrs(self.id, attrs)
    }

    pub fn set_system_attr(&self, key: &str, value: &Value) -> Result<()> {
        self.store_params()?;
        self.storage.set_trial_system_attr(self.id, key, value)
    }

    /// Records that this trial's worker is alive.
    pub fn heartbeat(&self) -> Result<()> {
        self.store_params()?;
        self.storage.record_heartbeat(self.id)
    }
}

impl Suggest for Trial {
    fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<f64> {
        if let Some((previous, value)) = self.params.get(name) {
            if *previous != distribution {
                bail!("parameter '{name}' was asked twice with different distributions");
            }
            return Ok(*value);
        }
        let value = match self.relative.get(name) {
            Some(v) if distribution.contains(*v) => *v,
            _ if distribution.is_single() => distribution.sample(&mut self.rng),
            _ => {
                let view = StudyView { directions: &self.directions, trials: &self.snapshot };
                self.sampler.sample_independent(&view, self.number, name, &distribution, &mut self.rng)?
            }
        };
        if !distribution.contains(value) {
            bail!("sampler {} gave {value} for '{name}', outside {distribution:?}", self.sampler.name());
        }
        self.params.insert(name.to_string(), (distribution, value));
        self.unstored.get_mut().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        Ok(value)
    }
}
