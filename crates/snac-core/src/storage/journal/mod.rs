//! A study in Optuna's journal file (`JournalStorage` over
//! `JournalFileBackend`, optuna 4.5): an append-only log of operations, one
//! JSON line each, that Python Optuna and optuna-dashboard read and continue,
//! and that several processes on several nodes append to under Optuna's lock
//! file. Each handle replays the log into memory (`replay.rs`, Optuna's
//! rules), reading only the lines added since its last read (`file.rs`).
//!
//! Every change is checked against the state replayed under the lock and
//! written while still holding it, so our lines are never ones Optuna's
//! replay would ignore, and a check-then-write (the trial budget, the
//! compare-and-set of `finish_trial`, failing stale trials) is atomic across
//! processes. Heartbeats, which Optuna's journal lacks, are a trial system
//! attribute ([`HEARTBEAT_KEY`]) hidden from the trials we return.

mod file;
mod ops;
mod replay;

pub use replay::HEARTBEAT_KEY;

use super::common::{self, no_trial};
use super::{FAIL_REASON_KEY, INTERRUPTED_KEY, IntermediateValues, Storage, StudyInfo};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Result, bail};
use file::LogFile;
use ops::Compat;
use replay::Replay;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A journal file shared by any number of processes (ours and Optuna's).
pub struct JournalStorage {
    inner: Mutex<Inner>,
    /// Written with every line, as Optuna does (a uuid, `-`, the process id).
    worker_id: String,
}

struct Inner {
    file: LogFile,
    replay: Replay,
}

impl Inner {
    /// Applies the lines appended since the last read. A line that cannot
    /// be applied is not consumed: every later call reports it again.
    fn sync(&mut self) -> Result<()> {
        for line in self.file.read_new()? {
            self.replay.apply_line(self.file.path(), line.number, &line.text)?;
            self.file.consumed(&line);
        }
        Ok(())
    }
}

/// A random version-4 uuid, as text.
pub(super) fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let variant = ["8", "9", "a", "b"][usize::from(b[8] >> 6)];
    format!("{}-{}-4{}-{variant}{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

impl JournalStorage {
    /// Opens the journal at `path` (created empty if missing) and replays it.
    pub fn open(path: &Path) -> Result<JournalStorage> {
        let mut inner = Inner { file: LogFile::open(path)?, replay: Replay::default() };
        inner.sync()?;
        let worker_id = format!("{}-{}", random_uuid(), std::process::id());
        Ok(JournalStorage { inner: Mutex::new(inner), worker_id })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // `sync` leaves the replay consistent at every line boundary.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state after the lines appended so far.
    fn read<R>(&self, f: impl FnOnce(&Replay) -> Result<R>) -> Result<R> {
        let mut inner = self.lock();
        inner.sync()?;
        f(&inner.replay)
    }

    /// Under the journal's lock: brings the state up to date, lets `f` check
    /// it and say which lines to append, appends them and applies them.
    fn write<R>(&self, f: impl FnOnce(&Replay, &str) -> Result<(Vec<String>, R)>) -> Result<R> {
        let mut inner = self.lock();
        let guard = inner.file.lock()?;
        inner.sync()?;
        let (lines, result) = f(&inner.replay, &self.worker_id)?;
        if !lines.is_empty() {
            inner.file.cut_torn_tail(&guard)?;
            inner.file.append(&guard, &(lines.join("\n") + "\n"))?;
            inner.sync()?;
        }
        drop(guard);
        Ok(result)
    }

    fn set_trial_attrs(&self, trial_id: i64, system: bool, attrs: &[(&str, Value)]) -> Result<()> {
        self.write(|r, worker| {
            let rec = r.trial(trial_id)?;
            common::check_updatable(trial_id, rec.trial.state)?;
            Ok((attrs.iter().map(|(k, v)| ops::trial_attr_line(worker, trial_id, system, k, v)).collect(), ()))
        })
    }

    fn set_study_attr(&self, study_id: i64, system: bool, key: &str, value: &Value) -> Result<()> {
        self.write(|r, worker| {
            r.study(study_id)?;
            Ok((vec![ops::study_attr_line(worker, study_id, system, key, value)], ()))
        })
    }
}

impl Storage for JournalStorage {
    fn create_or_load_study(&self, name: &str, directions: &[Direction]) -> Result<StudyInfo> {
        self.write(|r, worker| {
            let existing = r.study_named(name).map(|s| s.info.clone());
            common::check_directions(name, existing.as_ref().map(|i| i.directions.as_slice()), directions)?;
            Ok(match existing {
                Some(info) => (vec![], info),
                None => {
                    let info =
                        StudyInfo { id: r.next_study_id(), name: name.to_string(), directions: directions.to_vec() };
                    (vec![ops::create_study_line(worker, name, directions)], info)
                }
            })
        })
    }

    fn load_study(&self, name: &str) -> Result<Option<StudyInfo>> {
        self.read(|r| Ok(r.study_named(name).map(|s| s.info.clone())))
    }

    fn list_studies(&self) -> Result<Vec<StudyInfo>> {
        self.read(|r| Ok(r.studies().map(|s| s.info.clone()).collect()))
    }

    fn delete_study(&self, study_id: i64) -> Result<()> {
        self.write(|r, worker| {
            r.study(study_id)?;
            Ok((vec![ops::delete_study_line(worker, study_id)], ()))
        })
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_study_attr(study_id, false, key, value)
    }

    fn study_user_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.read(|r| Ok(r.study(study_id)?.user_attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }

    fn set_study_system_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_study_attr(study_id, true, key, value)
    }

    fn study_system_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.read(|r| Ok(r.study(study_id)?.system_attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }

    fn create_trial_within(&self, study_id: i64, budget: Option<usize>) -> Result<Option<(i64, u64)>> {
        self.write(|r, worker| {
            let trials = r.trials_of(study_id)?;
            if let Some(budget) = budget
                && trials.iter().filter(|t| super::counts_against_budget(&t.trial)).count() >= budget
            {
                return Ok((vec![], None));
            }
            let created = (r.next_trial_id(), trials.len() as u64);
            Ok((vec![ops::create_trial_line(worker, study_id, &common::now())], Some(created)))
        })
    }

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()> {
        self.set_trial_params(trial_id, &[(name, internal, distribution)])
    }

    fn set_trial_params(&self, trial_id: i64, params: &[(&str, f64, &Distribution)]) -> Result<()> {
        self.write(|r, worker| {
            let rec = r.trial(trial_id)?;
            let mut batch: BTreeMap<&str, (&Distribution, f64)> = BTreeMap::new();
            let mut lines = vec![];
            for (name, internal, d) in params {
                let existing = rec.trial.params.get(*name).map(|(d, v)| (d, *v)).or(batch.get(name).copied());
                common::check_param(trial_id, rec.trial.state, name, *internal, d, existing)?;
                let json = d.to_optuna_json();
                if let Some(first) = r.first_compat(rec.study_id, name)
                    && *first != Compat::of_json(&json)?
                {
                    bail!(
                        "trial {trial_id}: parameter '{name}' with distribution {json} is not compatible with \
                         the one of the study's first trial that has it; Optuna's journal accepts the same kind \
                         only (same class and log flag, same choices for a categorical)"
                    );
                }
                batch.insert(name, (d, *internal));
                lines.push(ops::param_line(worker, trial_id, name, *internal, d));
            }
            Ok((lines, ()))
        })
    }

    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_attrs(trial_id, false, &[(key, value.clone())])
    }

    fn set_trial_user_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs(trial_id, false, attrs)
    }

    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_attrs(trial_id, true, &[(key, value.clone())])
    }

    fn set_trial_system_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs(trial_id, true, attrs)
    }

    fn set_trial_intermediate_value(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        self.set_trial_intermediate_values(trial_id, &[(step, value)])
    }

    fn set_trial_intermediate_values(&self, trial_id: i64, values: &[(u64, f64)]) -> Result<()> {
        self.write(|r, worker| {
            common::check_updatable(trial_id, r.trial(trial_id)?.trial.state)?;
            Ok((values.iter().map(|(step, v)| ops::intermediate_line(worker, trial_id, *step, *v)).collect(), ()))
        })
    }

    fn intermediate_values(&self, study_id: i64) -> Result<IntermediateValues> {
        self.read(|r| {
            let trials = r.trials_of(study_id)?;
            Ok(trials
                .iter()
                .filter(|t| !t.intermediate.is_empty())
                .map(|t| (t.trial.id, t.intermediate.clone()))
                .collect())
        })
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool> {
        self.write(|r, worker| {
            let rec = r.trial(trial_id)?;
            common::check_finish(trial_id, state, values, r.study(rec.study_id)?.info.directions.len())?;
            if rec.trial.state != TrialState::Running {
                return Ok((vec![], false));
            }
            Ok((vec![ops::state_values_line(worker, trial_id, state, values, &common::now())], true))
        })
    }

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial> {
        self.read(|r| Ok(FrozenTrial::clone(&r.trial(trial_id)?.trial)))
    }

    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>> {
        self.read(|r| Ok(r.trials_of(study_id)?.iter().map(|t| FrozenTrial::clone(&t.trial)).collect()))
    }

    fn get_all_trials_shared(&self, study_id: i64) -> Result<Vec<Arc<FrozenTrial>>> {
        self.read(|r| Ok(r.trials_of(study_id)?.iter().map(|t| t.trial.clone()).collect()))
    }

    /// One line per heartbeat; none for a trial that has finished meanwhile.
    fn record_heartbeat(&self, trial_id: i64) -> Result<()> {
        self.write(|r, worker| {
            if r.trial(trial_id).map_err(|_| no_trial(trial_id))?.trial.state.is_finished() {
                return Ok((vec![], ()));
            }
            let now = Value::from(common::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            Ok((vec![ops::trial_attr_line(worker, trial_id, true, HEARTBEAT_KEY, &now)], ()))
        })
    }

    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>> {
        let now = common::now();
        let reason = Value::from(common::stale_reason(grace.as_secs_f64()));
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let stale = |rec: &replay::TrialRec| {
            let last = rec.heartbeat.or(rec.trial.datetime_start);
            rec.trial.state == TrialState::Running && last.is_none_or(|last| now - last > grace)
        };
        // Workers waiting for others' trials call this often: the lock only
        // when there is something to fail.
        if !self.read(|r| Ok(r.trials_of(study_id)?.into_iter().any(stale)))? {
            return Ok(vec![]);
        }
        self.write(|r, worker| {
            let (mut lines, mut failed) = (vec![], vec![]);
            for rec in r.trials_of(study_id)? {
                if stale(rec) {
                    let id = rec.trial.id;
                    lines.push(ops::trial_attr_line(worker, id, true, INTERRUPTED_KEY, &Value::Bool(true)));
                    lines.push(ops::trial_attr_line(worker, id, false, FAIL_REASON_KEY, &reason));
                    lines.push(ops::state_values_line(worker, id, TrialState::Fail, None, &now));
                    failed.push(rec.trial.number);
                }
            }
            Ok((lines, failed))
        })
    }
}

#[cfg(test)]
mod tests;
