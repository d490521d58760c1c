//! Rules and conversions that every backend shares, so they behave the same,
//! and the facts of Optuna's RDB schema that the SQLite and PostgreSQL backends
//! both write.

use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Alembic revision of the schema we write and accept.
pub const ALEMBIC_HEAD: &str = "v3.2.0.a";
/// Optuna's `SCHEMA_VERSION` (frozen since Alembic took over).
pub const SCHEMA_VERSION: i64 = 12;
/// Written to `version_info.library_version` in new files: the Optuna release
/// whose schema this is.
pub const LIBRARY_VERSION: &str = "4.5.0";

/// Every table of Optuna's RDB schema.
pub(crate) const TABLES: [&str; 13] = [
    "studies",
    "version_info",
    "study_directions",
    "study_user_attributes",
    "study_system_attributes",
    "trials",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_heartbeats",
    "alembic_version",
];

/// The tables of [`TABLES`] that are not among `tables`, in schema order.
pub fn missing_tables(tables: &[String]) -> Vec<&'static str> {
    TABLES.iter().copied().filter(|t| !tables.iter().any(|have| have == t)).collect()
}

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

/// A `trials.state` column.
pub fn parse_state(name: &str) -> Result<TrialState> {
    TrialState::parse(name).with_context(|| format!("unknown trial state '{name}'"))
}

/// Stored form of an objective value: NULL with the type for infinities.
pub fn value_to_stored(v: f64) -> (Option<f64>, &'static str) {
    if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(v), "FINITE")
    }
}

/// An objective value from its stored form ([`value_to_stored`]).
pub fn stored_to_value(value: Option<f64>, kind: &str) -> Result<f64> {
    match (kind, value) {
        ("INF_POS", _) => Ok(f64::INFINITY),
        ("INF_NEG", _) => Ok(f64::NEG_INFINITY),
        ("FINITE", Some(v)) => Ok(v),
        ("FINITE", None) => bail!("a FINITE trial value is NULL"),
        (other, _) => bail!("unknown trial value type '{other}'"),
    }
}

/// Appends objective `objective`'s value to a trial read back row by row;
/// the objectives must come in order, without gaps.
pub fn push_value(trial: &mut FrozenTrial, objective: i64, value: f64) -> Result<()> {
    let id = trial.id;
    let values = trial.values.get_or_insert_with(Vec::new);
    if objective != values.len() as i64 {
        bail!("trial {id}: objective {objective} stored without the ones before it");
    }
    values.push(value);
    Ok(())
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

/// Stored form of an intermediate value (Optuna's
/// `trial_intermediate_values`: NULL with the type for NaN and infinities).
pub fn intermediate_to_stored(v: f64) -> (Option<f64>, &'static str) {
    if v.is_nan() { (None, "NAN") } else { value_to_stored(v) }
}

/// An intermediate value from its stored form ([`intermediate_to_stored`]).
pub fn stored_to_intermediate(value: Option<f64>, kind: &str) -> Result<f64> {
    if kind == "NAN" { Ok(f64::NAN) } else { stored_to_value(value, kind) }
}

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
