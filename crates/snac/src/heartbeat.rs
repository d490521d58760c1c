//! Keeping a shared study honest: the worker identity stored with each
//! trial, the heartbeat thread that keeps this process's running trials
//! alive, and the check that fails other workers' stale trials.

use crate::setup::{Participation, slurm_rank};
use anyhow::Result;
use serde_json::{Value, json};
use snac_core::search::{Study, Trial, TrialState};
use snac_core::storage::Storage;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// System attribute naming the process that ran a trial (host, pid, and the
/// SLURM rank when there is one).
pub const WORKER_KEY: &str = "snac:worker";

/// Who runs a trial: stored with it, so a stale trial names its worker.
pub fn worker_identity() -> Value {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    json!({"host": host, "pid": std::process::id(), "rank": slurm_rank()})
}

/// The budget is used up. In a shared study, trials still RUNNING elsewhere
/// may yet fail stale and free their place: this fails the stale ones and
/// says whether to wait and ask again.
pub fn others_may_fail(study: &Study, how: &Participation) -> Result<bool> {
    if !how.shared {
        return Ok(false); // the RUNNING trials are this process's own
    }
    // A trial failed here frees a place: ask again at once.
    let failed = study.storage().fail_stale_trials(study.info().id, how.heartbeat_grace)?;
    Ok(!failed.is_empty() || study.trials()?.iter().any(|t| t.state == TrialState::Running))
}

/// The trials this process is running, kept alive by a heartbeat thread.
/// (The study stores the worker's identity with each trial it asks for, and
/// a trial's start counts as its first heartbeat.)
#[derive(Default)]
pub struct Running {
    ids: Mutex<BTreeSet<i64>>,
}

impl Running {
    pub fn start(&self, trial: &Trial) {
        self.ids.lock().unwrap().insert(trial.id);
    }

    pub fn stop(&self, trial_id: i64) {
        self.ids.lock().unwrap().remove(&trial_id);
    }

    /// Records a heartbeat for every running trial each `interval`, until `done`.
    pub fn beat(&self, storage: &dyn Storage, interval: Duration, done: &AtomicBool) {
        let step = Duration::from_millis(20).min(interval);
        let mut since = Duration::ZERO;
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            since += step;
            if since < interval {
                continue;
            }
            since = Duration::ZERO;
            let ids: Vec<i64> = self.ids.lock().unwrap().iter().copied().collect();
            for id in ids {
                if let Err(err) = storage.record_heartbeat(id) {
                    log::warn!("heartbeat of trial id {id} not recorded: {err:#}");
                }
            }
        }
    }
}
