//! Rules and conversions that every backend shares, so they behave the same.

use crate::trial::{Direction, Distribution, TrialState};
use anyhow::{Result, bail};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Now, to the microsecond (what a DATETIME column keeps), so that a trial
/// read back from memory and from SQLite compares equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The text SQLAlchemy writes into an SQLite DATETIME column (naive UTC).
pub fn format_datetime(t: &DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Reads a DATETIME column: SQLAlchemy's `YYYY-MM-DD HH:MM:SS.ffffff`, or
/// SQLite's own `CURRENT_TIMESTAMP` (no fraction), or ISO 8601 with a `T`.
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>> {
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(t.and_utc());
        }
    }
    bail!("unreadable datetime '{text}' (expected YYYY-MM-DD HH:MM:SS.ffffff)")
}

pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "MINIMIZE",
        Direction::Maximize => "MAXIMIZE",
    }
}

pub fn parse_direction(name: &str) -> Result<Direction> {
    match name {
        "MINIMIZE" => Ok(Direction::Minimize),
        "MAXIMIZE" => Ok(Direction::Maximize),
        other => bail!("study direction '{other}' is not MINIMIZE or MAXIMIZE"),
    }
}

pub fn directions_text(ds: &[Direction]) -> String {
    format!("[{}]", ds.iter().map(|d| direction_name(*d)).collect::<Vec<_>>().join(", "))
}

/// Checks a new study's directions, and an existing one's against them.
pub fn check_directions(name: &str, existing: Option<&[Direction]>, asked: &[Direction]) -> Result<()> {
    if asked.is_empty() {
        bail!("study '{name}': at least one direction is needed");
    }
    if let Some(existing) = existing
        && existing != asked
    {
        bail!(
            "study '{name}' exists with directions {}, but directions {} were asked for",
            directions_text(existing),
            directions_text(asked)
        );
    }
    Ok(())
}

/// Checks the arguments of `finish_trial` (before the compare-and-set).
pub fn check_finish(trial_id: i64, state: TrialState, values: Option<&[f64]>, n_objectives: usize) -> Result<()> {
    if !state.is_finished() {
        bail!("trial {trial_id}: cannot finish in state {}; use COMPLETE, PRUNED or FAIL", state.name());
    }
    if state == TrialState::Complete && values.is_none() {
        bail!("trial {trial_id}: a COMPLETE trial needs values");
    }
    if let Some(values) = values {
        if values.len() != n_objectives {
            bail!("trial {trial_id}: {} values given, but the study has {n_objectives} objectives", values.len());
        }
        if values.iter().any(|v| v.is_nan()) {
            bail!("trial {trial_id}: value NaN cannot be stored; finish the trial as FAIL instead");
        }
    }
    Ok(())
}

/// Checks that a parameter may be set on a trial in `state`. Setting a name
/// again is allowed only with the same value and distribution.
pub fn check_param(
    trial_id: i64,
    state: TrialState,
    name: &str,
    internal: f64,
    distribution: &Distribution,
    existing: Option<(&Distribution, f64)>,
) -> Result<()> {
    check_updatable(trial_id, state)?;
    if !distribution.contains(internal) {
        bail!("trial {trial_id}: parameter '{name}' = {internal} is outside its distribution {distribution:?}");
    }
    if let Some((d, v)) = existing
        && (d != distribution || v != internal)
    {
        bail!("trial {trial_id}: parameter '{name}' is already set to {v} ({d:?})");
    }
    Ok(())
}

/// Only a RUNNING (or WAITING) trial may change (Optuna's `check_trial_is_updatable`).
pub fn check_updatable(trial_id: i64, state: TrialState) -> Result<()> {
    if state.is_finished() {
        bail!("trial {trial_id} is already finished ({}) and cannot be changed", state.name());
    }
    Ok(())
}

/// The `fail_reason` of a trial failed by [`Storage::fail_stale_trials`](super::Storage::fail_stale_trials).
pub fn stale_reason(grace_s: f64) -> String {
    format!(
        "interrupted: no heartbeat from its worker for more than {grace_s} s (the process died or lost the storage)"
    )
}

pub fn no_study(study_id: i64) -> anyhow::Error {
    anyhow::anyhow!("no study with id {study_id} in this storage")
}

pub fn no_trial(trial_id: i64) -> anyhow::Error {
    anyhow::anyhow!("no trial with id {trial_id} in this storage")
}

/// Tables keyed by `trial_id`, deleted before their trials.
pub(crate) const TRIAL_TABLES: [&str; 6] = [
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_heartbeats",
];

/// Tables keyed by `study_id`, in deletion order (`studies` last).
pub(crate) const STUDY_TABLES: [&str; 5] =
    ["trials", "study_directions", "study_user_attributes", "study_system_attributes", "studies"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_sqlalchemy_format() {
        let t = parse_datetime("2024-03-05 07:08:09.012345").unwrap();
        assert_eq!(format_datetime(&t), "2024-03-05 07:08:09.012345");
        let t = parse_datetime("2024-03-05 07:08:09").unwrap();
        assert_eq!(format_datetime(&t), "2024-03-05 07:08:09.000000");
        assert!(parse_datetime("yesterday").is_err());
        let n = now();
        assert_eq!(parse_datetime(&format_datetime(&n)).unwrap(), n);
    }
}
