//! Where a study lives: the [`Storage`] trait and its backends (in memory, and
//! an SQLite file in Optuna's RDB schema). Every backend passes the same
//! conformance suite (`conformance.rs`).
//!
//! A storage is the only shared state of a search: samplers and workers read
//! the study from it, so a killed process loses nothing that was told.

mod common;
mod memory;
mod optuna_json;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use memory::MemoryStorage;
pub use sqlite::SqliteStorage;

use crate::search::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    fn create_trial(&self, study_id: i64) -> Result<(i64, u64)>;

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()>;
    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()>;
    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()>;

    /// Moves a RUNNING trial to a finished state with its values. Returns
    /// `false` (and changes nothing) if the trial was no longer RUNNING: the
    /// compare-and-set that keeps a stale worker from overwriting a result.
    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool>;

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial>;

    /// Every trial of the study in number order.
    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>>;

    /// Records that the worker running this trial is alive.
    fn record_heartbeat(&self, trial_id: i64) -> Result<()>;

    /// Marks RUNNING trials whose last heartbeat (or start, if none) is older
    /// than `grace` as FAIL; returns their numbers.
    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>>;
}

/// Opens a storage from a URL: `memory:` (or `:memory:`), `sqlite:///path.db`
/// (SQLAlchemy's form, as Optuna takes it), or a plain file path (SQLite).
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
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("storage URL '{url}': PostgreSQL is not supported yet; use sqlite:///path.db or memory:");
    }
    if url.contains("://") {
        bail!("storage URL '{url}' has an unknown scheme; accepted: memory:, sqlite:///path.db, or a file path");
    }
    Ok(Arc::new(SqliteStorage::open(Path::new(url)).with_context(|| format!("opening storage '{url}'"))?))
}
