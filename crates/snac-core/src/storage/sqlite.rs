//! Stub: replaced by the real backend.
use super::{Storage, StudyInfo};
use crate::search::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::Result;
use serde_json::Value;
use std::time::Duration;

pub struct SqliteStorage;
impl SqliteStorage {
    pub fn open(_path: &std::path::Path) -> Result<Self> {
        todo!()
    }
}
impl Storage for SqliteStorage {
    fn create_or_load_study(&self, _name: &str, _directions: &[Direction]) -> Result<StudyInfo> {
        todo!()
    }
    fn load_study(&self, _name: &str) -> Result<Option<StudyInfo>> {
        todo!()
    }
    fn set_study_user_attr(&self, _study_id: i64, _key: &str, _value: &Value) -> Result<()> {
        todo!()
    }
    fn study_user_attrs(&self, _study_id: i64) -> Result<Vec<(String, Value)>> {
        todo!()
    }
    fn create_trial(&self, _study_id: i64) -> Result<(i64, u64)> {
        todo!()
    }
    fn set_trial_param(&self, _trial_id: i64, _name: &str, _internal: f64, _distribution: &Distribution) -> Result<()> {
        todo!()
    }
    fn set_trial_user_attr(&self, _trial_id: i64, _key: &str, _value: &Value) -> Result<()> {
        todo!()
    }
    fn set_trial_system_attr(&self, _trial_id: i64, _key: &str, _value: &Value) -> Result<()> {
        todo!()
    }
    fn finish_trial(&self, _trial_id: i64, _state: TrialState, _values: Option<&[f64]>) -> Result<bool> {
        todo!()
    }
    fn get_trial(&self, _trial_id: i64) -> Result<FrozenTrial> {
        todo!()
    }
    fn get_all_trials(&self, _study_id: i64) -> Result<Vec<FrozenTrial>> {
        todo!()
    }
    fn record_heartbeat(&self, _trial_id: i64) -> Result<()> {
        todo!()
    }
    fn fail_stale_trials(&self, _study_id: i64, _grace: Duration) -> Result<Vec<u64>> {
        todo!()
    }
}
