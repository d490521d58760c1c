//! [`Study`]: ask/tell over a [`Storage`] with a [`Sampler`]. The study holds
//! no state of its own beyond handles, so any number of threads (and, with a
//! database storage, processes) can share it.

use super::{Direction, Distribution, FrozenTrial, RelativeSample, Sampler, StudyView, TrialState};
use crate::space::Suggest;
use crate::storage::{Storage, StudyInfo};
use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// User attribute holding why a trial failed.
pub const FAIL_REASON_KEY: &str = "fail_reason";

/// A study: a named set of trials in a storage, searched by one sampler.
#[derive(Clone)]
pub struct Study {
    storage: Arc<dyn Storage>,
    sampler: Arc<dyn Sampler>,
    info: StudyInfo,
    seed: u64,
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
        Ok(Study { storage, sampler, info, seed })
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
        let trials = self.trials()?;
        let mut rng = trial_rng(self.seed, number);
        let view = StudyView { directions: &self.info.directions, trials: &trials };
        let RelativeSample { params, system_attrs } = self.sampler.sample_relative(&view, number, &mut rng)?;
        for (key, value) in &system_attrs {
            self.storage.set_trial_system_attr(id, key, value)?;
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
        }))
    }

    /// Finishes a trial: COMPLETE with its values, or FAIL with the reason.
    /// Non-finite values make the trial FAIL. Returns `false` if the trial was
    /// no longer RUNNING (e.g. it was declared dead meanwhile).
    pub fn tell(&self, trial_id: i64, outcome: std::result::Result<Vec<f64>, String>) -> Result<bool> {
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

/// The RNG of one trial: a function of the study seed and the trial number,
/// so a sequential search is reproducible.
pub fn trial_rng(seed: u64, number: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ number.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// A running trial: answers the search space's `suggest` calls and records
/// every parameter in the storage as it is drawn.
pub struct Trial {
    storage: Arc<dyn Storage>,
    sampler: Arc<dyn Sampler>,
    directions: Vec<Direction>,
    pub id: i64,
    pub number: u64,
    relative: BTreeMap<String, f64>,
    snapshot: Vec<FrozenTrial>,
    rng: ChaCha8Rng,
    params: BTreeMap<String, (Distribution, f64)>,
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

    pub fn set_user_attr(&self, key: &str, value: &Value) -> Result<()> {
        self.storage.set_trial_user_attr(self.id, key, value)
    }

    /// Several user attributes at once (one round trip where the storage can).
    pub fn set_user_attrs(&self, attrs: &[(&str, Value)]) -> Result<()> {
        self.storage.set_trial_user_attrs(self.id, attrs)
    }

    pub fn set_system_attr(&self, key: &str, value: &Value) -> Result<()> {
        self.storage.set_trial_system_attr(self.id, key, value)
    }

    /// Records that this trial's worker is alive.
    pub fn heartbeat(&self) -> Result<()> {
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
        self.storage
            .set_trial_param(self.id, name, value, &distribution)
            .with_context(|| format!("storing parameter '{name}' of trial {}", self.number))?;
        self.params.insert(name.to_string(), (distribution, value));
        Ok(value)
    }
}
