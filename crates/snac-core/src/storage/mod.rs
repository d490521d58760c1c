//! Where a study lives: the [`Storage`] trait and its backends (in memory, an
//! SQLite file, and a PostgreSQL database, both in Optuna's RDB schema). Every
//! backend passes the same conformance suite (`conformance.rs`).
//!
//! A storage is the only shared state of a search: samplers and workers read
//! the study from it, so a killed process loses nothing that was told.

mod cache;
mod common;
mod memory;
mod optuna_json;
mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

pub use crate::search::FAIL_REASON_KEY;
use crate::search::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// System attribute (value `true`) of a trial that FAILed because its worker
/// stopped: its heartbeat went stale, or its process was found dead. Such a
/// trial does not count against a trial budget, so another takes its place.
pub const INTERRUPTED_KEY: &str = "snac:interrupted";

/// Whether a trial takes a place in a study's `n_trials` budget: every trial
/// except one FAILed as interrupted (RUNNING and WAITING ones count: they
/// hold their place while they run).
pub fn counts_against_budget(trial: &FrozenTrial) -> bool {
    !(trial.state == TrialState::Fail && trial.system_attrs.get(INTERRUPTED_KEY) == Some(&Value::Bool(true)))
}

/// Identity of a study in a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyInfo {
    pub id: i64,
    pub name: String,
    pub directions: Vec<Direction>,
}

/// The operations a study needs, after Optuna's `BaseStorage`. All methods are
/// safe to call from several threads (and, for database backends, from several
/// processes).
pub trait Storage: Send + Sync {
    /// Creates the study, or returns the existing one of that name. An existing
    /// study with other directions is an error.
    fn create_or_load_study(&self, name: &str, directions: &[Direction]) -> Result<StudyInfo>;

    /// The study of that name, if any.
    fn load_study(&self, name: &str) -> Result<Option<StudyInfo>>;

    /// Every study, in id order.
    fn list_studies(&self) -> Result<Vec<StudyInfo>> {
        bail!("this storage cannot list its studies")
    }

    /// Removes a study with its trials.
    fn delete_study(&self, study_id: i64) -> Result<()> {
        bail!("this storage cannot delete study {study_id}")
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()>;
    fn study_user_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>>;

    /// Creates a RUNNING trial with the next free number; returns (id, number).
    fn create_trial(&self, study_id: i64) -> Result<(i64, u64)> {
        self.create_trial_within(study_id, None)?
            .with_context(|| format!("study {study_id}: the storage refused a trial without a budget"))
    }

    /// Like [`create_trial`](Self::create_trial), but only while fewer than
    /// `budget` trials of the study [count against it](counts_against_budget);
    /// `None` when the budget is used up. The count and the insert are one
    /// atomic step, so workers sharing a study never overshoot it.
    fn create_trial_within(&self, study_id: i64, budget: Option<usize>) -> Result<Option<(i64, u64)>>;

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()>;
    /// Several parameters of one trial, with the checks of
    /// [`set_trial_param`](Self::set_trial_param) as if set one after the
    /// other. When one is refused, the error names it, and which of the
    /// others were stored is unspecified. Backends with round trips override
    /// it to write them at once.
    fn set_trial_params(&self, trial_id: i64, params: &[(&str, f64, &Distribution)]) -> Result<()> {
        for (name, internal, distribution) in params {
            self.set_trial_param(trial_id, name, *internal, distribution)?;
        }
        Ok(())
    }
    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()>;
    /// Several user attributes of one trial, in order (a later duplicate key
    /// wins). Backends with round trips override it to write them at once.
    fn set_trial_user_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        for (key, value) in attrs {
            self.set_trial_user_attr(trial_id, key, value)?;
        }
        Ok(())
    }
    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()>;
    /// Several system attributes of one trial, like
    /// [`set_trial_user_attrs`](Self::set_trial_user_attrs).
    fn set_trial_system_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        for (key, value) in attrs {
            self.set_trial_system_attr(trial_id, key, value)?;
        }
        Ok(())
    }

    /// Moves a RUNNING trial to a finished state with its values. Returns
    /// `false` (and changes nothing) if the trial was no longer RUNNING: the
    /// compare-and-set that keeps a stale worker from overwriting a result.
    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool>;

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial>;

    /// Every trial of the study in number order. The database backends read
    /// a finished trial once and keep it (it cannot change any more), so a
    /// repeated call reads only the new and the unfinished trials.
    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>>;

    /// [`get_all_trials`](Self::get_all_trials), shared instead of copied:
    /// the backends that keep the trials they read hand out their own, so
    /// that reading a large study (as a sampler does before every trial)
    /// does not copy it. The default wraps a copy.
    fn get_all_trials_shared(&self, study_id: i64) -> Result<Vec<Arc<FrozenTrial>>> {
        Ok(self.get_all_trials(study_id)?.into_iter().map(Arc::new).collect())
    }

    /// Records that the worker running this trial is alive.
    fn record_heartbeat(&self, trial_id: i64) -> Result<()>;

    /// Marks RUNNING trials whose last heartbeat (or start, if none) is older
    /// than `grace` as FAIL, with system attribute [`INTERRUPTED_KEY`] and a
    /// `fail_reason` user attribute; returns their numbers.
    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>>;
}

/// A storage URL fit for messages: a PostgreSQL password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    postgres::redact(url)
}

/// Opens a storage from a URL: `memory:` (or `:memory:`), `sqlite:///path.db`
/// (SQLAlchemy's form, as Optuna takes it), `postgresql://user@host/db` (or
/// `postgres://`), or a plain file path (SQLite).
pub fn open(url: &str) -> Result<Arc<dyn Storage>> {
    if url == "memory:" || url == ":memory:" || url == "memory" {
        return Ok(Arc::new(MemoryStorage::new()));
    }
    // SQLAlchemy's spelling, as Optuna takes it: `sqlite:///x.db` is the
    // relative path `x.db`, `sqlite:////abs/x.db` the absolute `/abs/x.db`.
    if let Some(path) = url.strip_prefix("sqlite:///") {
        return Ok(Arc::new(SqliteStorage::open(Path::new(path))?));
    }
    if url.starts_with("sqlite:") {
        bail!("storage URL '{url}': write sqlite:///relative/path.db or sqlite:////absolute/path.db");
    }
    // SQLAlchemy names a driver after a `+` (`postgresql+psycopg2://`); we
    // have one driver, so any is accepted.
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.split('+').next().unwrap_or(scheme));
    if let Some("postgres" | "postgresql") = scheme {
        return Ok(Arc::new(PostgresStorage::open(url)?));
    }
    if url.contains("://") {
        bail!(
            "storage URL '{}' has an unknown scheme; accepted: memory:, sqlite:///path.db, \
             postgresql://user@host/db, or a file path",
            postgres::redact(url)
        );
    }
    Ok(Arc::new(SqliteStorage::open(Path::new(url)).with_context(|| format!("opening storage '{url}'"))?))
}
