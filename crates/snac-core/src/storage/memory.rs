//! A storage in this process's memory, behind one mutex: for tests and for
//! searches that need not survive the process.

use super::common::{self, no_study, no_trial};
use super::{IntermediateValues, Storage, StudyInfo};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Thread-safe in-memory storage. Ids start at 1, as in SQLite.
#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    studies: BTreeMap<i64, StudyRec>,
    trials: BTreeMap<i64, TrialRec>,
    last_study_id: i64,
    last_trial_id: i64,
    /// Intermediate values by study, trial id and step.
    intermediate: BTreeMap<i64, IntermediateValues>,
}

struct StudyRec {
    info: StudyInfo,
    user_attrs: BTreeMap<String, Value>,
    system_attrs: BTreeMap<String, Value>,
    /// Trial ids in number order.
    trial_ids: Vec<i64>,
}

struct TrialRec {
    study_id: i64,
    /// Shared with the callers of `get_all_trials_shared`; a change copies
    /// it first if it is shared.
    trial: Arc<FrozenTrial>,
    heartbeat: Option<DateTime<Utc>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data
        // (every method checks before it changes anything).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn study(&self, study_id: i64) -> Result<&StudyRec> {
        self.studies.get(&study_id).ok_or_else(|| no_study(study_id))
    }

    fn trial_mut(&mut self, trial_id: i64) -> Result<&mut TrialRec> {
        self.trials.get_mut(&trial_id).ok_or_else(|| no_trial(trial_id))
    }
}

impl Storage for MemoryStorage {
    fn create_or_load_study(&self, name: &str, directions: &[Direction]) -> Result<StudyInfo> {
        let mut inner = self.lock();
        let existing = inner.studies.values().find(|s| s.info.name == name).map(|s| s.info.clone());
        common::check_directions(name, existing.as_ref().map(|i| i.directions.as_slice()), directions)?;
        if let Some(info) = existing {
            return Ok(info);
        }
        inner.last_study_id += 1;
        let info = StudyInfo { id: inner.last_study_id, name: name.to_string(), directions: directions.to_vec() };
        inner.studies.insert(
            info.id,
            StudyRec {
                info: info.clone(),
                user_attrs: BTreeMap::new(),
                system_attrs: BTreeMap::new(),
                trial_ids: vec![],
            },
        );
        Ok(info)
    }

    fn load_study(&self, name: &str) -> Result<Option<StudyInfo>> {
        Ok(self.lock().studies.values().find(|s| s.info.name == name).map(|s| s.info.clone()))
    }

    fn list_studies(&self) -> Result<Vec<StudyInfo>> {
        Ok(self.lock().studies.values().map(|s| s.info.clone()).collect())
    }

    fn delete_study(&self, study_id: i64) -> Result<()> {
        let mut inner = self.lock();
        let study = inner.studies.remove(&study_id).ok_or_else(|| no_study(study_id))?;
        for id in study.trial_ids {
            inner.trials.remove(&id);
        }
        inner.intermediate.remove(&study_id);
        Ok(())
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        let mut inner = self.lock();
        let study = inner.studies.get_mut(&study_id).ok_or_else(|| no_study(study_id))?;
        study.user_attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn study_user_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        let inner = self.lock();
        Ok(inner.study(study_id)?.user_attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn set_study_system_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        let mut inner = self.lock();
        let study = inner.studies.get_mut(&study_id).ok_or_else(|| no_study(study_id))?;
        study.system_attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn study_system_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        let inner = self.lock();
        Ok(inner.study(study_id)?.system_attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn create_trial_within(&self, study_id: i64, budget: Option<usize>) -> Result<Option<(i64, u64)>> {
        let mut inner = self.lock();
        let study = inner.study(study_id)?;
        let number = study.trial_ids.len() as u64;
        if let Some(budget) = budget {
            let counted =
                study.trial_ids.iter().filter(|id| super::counts_against_budget(&inner.trials[id].trial)).count();
            if counted >= budget {
                return Ok(None);
            }
        }
        inner.last_trial_id += 1;
        let id = inner.last_trial_id;
        let trial = FrozenTrial {
            id,
            number,
            state: TrialState::Running,
            params: BTreeMap::new(),
            values: None,
            user_attrs: BTreeMap::new(),
            system_attrs: BTreeMap::new(),
            datetime_start: Some(common::now()),
            datetime_complete: None,
        };
        inner.trials.insert(id, TrialRec { study_id, trial: Arc::new(trial), heartbeat: None });
        inner.studies.get_mut(&study_id).expect("checked above").trial_ids.push(id);
        Ok(Some((id, number)))
    }

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()> {
        let mut inner = self.lock();
        let t = &mut inner.trial_mut(trial_id)?.trial;
        let existing = t.params.get(name).map(|(d, v)| (d, *v));
        common::check_param(trial_id, t.state, name, internal, distribution, existing)?;
        Arc::make_mut(t).params.insert(name.to_string(), (distribution.clone(), internal));
        Ok(())
    }

    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        let mut inner = self.lock();
        let t = &mut inner.trial_mut(trial_id)?.trial;
        common::check_updatable(trial_id, t.state)?;
        Arc::make_mut(t).user_attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        let mut inner = self.lock();
        let t = &mut inner.trial_mut(trial_id)?.trial;
        common::check_updatable(trial_id, t.state)?;
        Arc::make_mut(t).system_attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn set_trial_intermediate_value(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        let mut inner = self.lock();
        let entry = inner.trial_mut(trial_id)?;
        common::check_updatable(trial_id, entry.trial.state)?;
        let study_id = entry.study_id;
        inner.intermediate.entry(study_id).or_default().entry(trial_id).or_default().insert(step, value);
        Ok(())
    }

    fn intermediate_values(&self, study_id: i64) -> Result<IntermediateValues> {
        let inner = self.lock();
        inner.study(study_id)?;
        Ok(inner.intermediate.get(&study_id).cloned().unwrap_or_default())
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool> {
        let mut inner = self.lock();
        let study_id = inner.trial_mut(trial_id)?.study_id;
        let n_objectives = inner.study(study_id)?.info.directions.len();
        common::check_finish(trial_id, state, values, n_objectives)?;
        let t = &mut inner.trial_mut(trial_id)?.trial;
        if t.state != TrialState::Running {
            return Ok(false);
        }
        let t = Arc::make_mut(t);
        t.state = state;
        if let Some(values) = values {
            t.values = Some(values.to_vec());
        }
        t.datetime_complete = Some(common::now());
        Ok(true)
    }

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial> {
        let mut inner = self.lock();
        Ok(FrozenTrial::clone(&inner.trial_mut(trial_id)?.trial))
    }

    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>> {
        let inner = self.lock();
        let study = inner.study(study_id)?;
        Ok(study.trial_ids.iter().map(|id| FrozenTrial::clone(&inner.trials[id].trial)).collect())
    }

    fn get_all_trials_shared(&self, study_id: i64) -> Result<Vec<Arc<FrozenTrial>>> {
        let inner = self.lock();
        let study = inner.study(study_id)?;
        Ok(study.trial_ids.iter().map(|id| inner.trials[id].trial.clone()).collect())
    }

    fn record_heartbeat(&self, trial_id: i64) -> Result<()> {
        let mut inner = self.lock();
        inner.trial_mut(trial_id)?.heartbeat = Some(common::now());
        Ok(())
    }

    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>> {
        let mut inner = self.lock();
        let ids = inner.study(study_id)?.trial_ids.clone();
        let now = common::now();
        let grace_s = grace.as_secs_f64();
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut failed = vec![];
        for id in ids {
            let rec = inner.trials.get_mut(&id).expect("a study's trials exist");
            let last = rec.heartbeat.or(rec.trial.datetime_start);
            let stale = last.is_none_or(|last| now - last > grace);
            if rec.trial.state == TrialState::Running && stale {
                let trial = Arc::make_mut(&mut rec.trial);
                trial.state = TrialState::Fail;
                trial.datetime_complete = Some(now);
                trial.system_attrs.insert(super::INTERRUPTED_KEY.into(), Value::Bool(true));
                trial.user_attrs.insert(super::FAIL_REASON_KEY.into(), Value::from(common::stale_reason(grace_s)));
                failed.push(trial.number);
            }
        }
        Ok(failed)
    }
}
