//! The state a journal describes, rebuilt by replaying its lines under
//! Optuna's rules (`JournalStorageReplayResult` in optuna 4.5), so that every
//! process, ours or Optuna's, that has read the same lines holds the same
//! studies and trials.
//!
//! The rules that keep several writers apart: study and trial ids are handed
//! out in log order (a study's id is the count of `CREATE_STUDY` lines that
//! made a study before it, a trial's the count of trials made before it,
//! deleted studies' included); a `CREATE_STUDY` of a name in use is ignored;
//! a change to a trial that does not exist or is finished is ignored; a
//! trial's change to RUNNING is ignored when it is RUNNING already (the first
//! worker to pop a WAITING trial wins); a parameter whose distribution is
//! incompatible with the one the study's first trial with that name has is
//! ignored. Optuna raises for its own ignored lines; we check before we
//! write (under the lock), so ours are never ignored.

use super::super::StudyInfo;
use super::super::common::{no_study, no_trial};
use super::ops::{self, Op};
use crate::trial::{Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Trial system attribute in which snac keeps a trial's last heartbeat
/// (Optuna's journal has no heartbeat table): an RFC 3339 time in UTC. It is
/// kept apart from the trial's other system attributes.
pub const HEARTBEAT_KEY: &str = "snac:heartbeat";

/// Every study and trial the lines read so far describe.
#[derive(Default)]
pub struct Replay {
    studies: BTreeMap<i64, StudyRec>,
    /// Deleted studies' trial ids: Optuna still checks a parameter of their
    /// trials against them.
    deleted: BTreeMap<i64, Vec<i64>>,
    next_study_id: i64,
    /// Indexed by trial id; trials of deleted studies stay (ids go on).
    trials: Vec<TrialRec>,
}

pub struct StudyRec {
    pub info: StudyInfo,
    pub user_attrs: BTreeMap<String, Value>,
    pub system_attrs: BTreeMap<String, Value>,
    /// Trial ids in number order.
    pub trial_ids: Vec<i64>,
}

pub struct TrialRec {
    pub study_id: i64,
    pub trial: Arc<FrozenTrial>,
    pub heartbeat: Option<DateTime<Utc>>,
    /// Intermediate values by step.
    pub intermediate: BTreeMap<u64, f64>,
    /// Optuna's compatibility class of each parameter's distribution.
    compat: BTreeMap<String, ops::Compat>,
}

impl Replay {
    /// Applies one line; `file` and `line` are for messages.
    pub fn apply_line(&mut self, file: &Path, line: u64, text: &str) -> Result<()> {
        let op = ops::parse_line(text).with_context(|| {
            format!(
                "journal storage '{}', line {line}: unreadable entry {}; each line must be one JSON object as \
                 Optuna's JournalFileBackend writes it",
                file.display(),
                text.trim_end()
            )
        })?;
        self.apply(op).with_context(|| format!("journal storage '{}', line {line}", file.display()))
    }

    fn apply(&mut self, op: Op) -> Result<()> {
        match op {
            Op::CreateStudy { name, directions } => {
                if !self.studies.values().any(|s| s.info.name == name) {
                    let id = self.next_study_id;
                    self.next_study_id += 1;
                    let info = StudyInfo { id, name, directions };
                    let rec = StudyRec {
                        info,
                        user_attrs: BTreeMap::new(),
                        system_attrs: BTreeMap::new(),
                        trial_ids: vec![],
                    };
                    self.studies.insert(id, rec);
                }
            }
            Op::DeleteStudy { study_id } => {
                if let Some(s) = self.studies.remove(&study_id) {
                    self.deleted.insert(study_id, s.trial_ids);
                }
            }
            Op::SetStudyAttr { study_id, system, key, value } => {
                if let Some(s) = self.studies.get_mut(&study_id) {
                    let attrs = if system { &mut s.system_attrs } else { &mut s.user_attrs };
                    attrs.insert(key, value);
                }
            }
            Op::CreateTrial(t) => self.create_trial(t),
            Op::SetParam { trial_id, name, internal, distribution, compat } => {
                self.set_param(trial_id, name, internal, distribution, compat)
            }
            Op::SetStateValues { trial_id, state, values, datetime_start, datetime_complete } => {
                let Some(rec) = self.updatable(trial_id) else { return Ok(()) };
                if state == TrialState::Running && rec.trial.state == TrialState::Running {
                    return Ok(()); // another worker popped it first
                }
                let t = Arc::make_mut(&mut rec.trial);
                if state == TrialState::Running {
                    t.datetime_start = Some(datetime_start.context("a change to RUNNING without datetime_start")?);
                }
                if state.is_finished() {
                    t.datetime_complete =
                        Some(datetime_complete.context("a change to a finished state without datetime_complete")?);
                }
                t.state = state;
                if values.is_some() {
                    t.values = values;
                }
            }
            Op::SetTrialAttr { trial_id, system, key, value } => {
                let Some(rec) = self.updatable(trial_id) else { return Ok(()) };
                if system && key == HEARTBEAT_KEY {
                    rec.heartbeat =
                        value.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.to_utc());
                } else {
                    let t = Arc::make_mut(&mut rec.trial);
                    let attrs = if system { &mut t.system_attrs } else { &mut t.user_attrs };
                    attrs.insert(key, value);
                }
            }
            // Optuna ignores a value for a trial that is not updatable.
            Op::SetIntermediate { trial_id, step, value } => {
                let Some(rec) = self.updatable(trial_id) else { return Ok(()) };
                rec.intermediate.insert(step, value);
            }
        }
        Ok(())
    }

    fn create_trial(&mut self, t: ops::NewTrial) {
        let Some(study) = self.studies.get_mut(&t.study_id) else { return };
        let id = self.trials.len() as i64;
        let mut system_attrs = t.system_attrs;
        let heartbeat = system_attrs
            .remove(HEARTBEAT_KEY)
            .and_then(|v| v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.to_utc()));
        let trial = FrozenTrial {
            id,
            number: study.trial_ids.len() as u64,
            state: t.state,
            params: t.params.iter().map(|(name, (d, v, _))| (name.clone(), (d.clone(), *v))).collect(),
            values: t.values,
            user_attrs: t.user_attrs,
            system_attrs,
            datetime_start: t.datetime_start,
            datetime_complete: t.datetime_complete,
        };
        study.trial_ids.push(id);
        let compat = t.params.into_iter().map(|(name, (_, _, c))| (name, c)).collect();
        let intermediate = BTreeMap::new();
        self.trials.push(TrialRec { study_id: t.study_id, trial: Arc::new(trial), heartbeat, intermediate, compat });
    }

    fn set_param(&mut self, trial_id: i64, name: String, internal: f64, d: Distribution, compat: ops::Compat) {
        if self.updatable(trial_id).is_none() {
            return;
        }
        let study_id = self.trials[trial_id as usize].study_id;
        if self.first_compat(study_id, &name).is_some_and(|first| *first != compat) {
            return; // Optuna's check_distribution_compatibility failed
        }
        let rec = &mut self.trials[trial_id as usize];
        Arc::make_mut(&mut rec.trial).params.insert(name.clone(), (d, internal));
        rec.compat.insert(name, compat);
    }

    /// The trial, if it exists and is not finished (Optuna's
    /// `_trial_exists_and_updatable`: its study may have been deleted).
    fn updatable(&mut self, trial_id: i64) -> Option<&mut TrialRec> {
        let rec = usize::try_from(trial_id).ok().and_then(|i| self.trials.get_mut(i))?;
        (!rec.trial.state.is_finished()).then_some(rec)
    }

    /// The distribution class of parameter `name` in the study's first trial
    /// (in number order) that has it: Optuna checks a new one against it.
    pub fn first_compat(&self, study_id: i64, name: &str) -> Option<&ops::Compat> {
        let ids = self.studies.get(&study_id).map(|s| &s.trial_ids).or_else(|| self.deleted.get(&study_id))?;
        ids.iter().find_map(|id| self.trials[*id as usize].compat.get(name))
    }

    pub fn study(&self, study_id: i64) -> Result<&StudyRec> {
        self.studies.get(&study_id).ok_or_else(|| no_study(study_id))
    }

    pub fn studies(&self) -> impl Iterator<Item = &StudyRec> {
        self.studies.values()
    }

    pub fn study_named(&self, name: &str) -> Option<&StudyRec> {
        self.studies.values().find(|s| s.info.name == name)
    }

    /// A trial of a study that exists.
    pub fn trial(&self, trial_id: i64) -> Result<&TrialRec> {
        let rec = usize::try_from(trial_id).ok().and_then(|i| self.trials.get(i)).ok_or_else(|| no_trial(trial_id))?;
        if !self.studies.contains_key(&rec.study_id) {
            bail!(no_trial(trial_id));
        }
        Ok(rec)
    }

    pub fn trials_of(&self, study_id: i64) -> Result<Vec<&TrialRec>> {
        Ok(self.study(study_id)?.trial_ids.iter().map(|id| &self.trials[*id as usize]).collect())
    }

    /// The id the next study will get.
    pub fn next_study_id(&self) -> i64 {
        self.next_study_id
    }

    /// The id the next trial will get.
    pub fn next_trial_id(&self) -> i64 {
        self.trials.len() as i64
    }
}
