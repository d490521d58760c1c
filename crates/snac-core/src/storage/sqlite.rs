//! A study in an SQLite file, in Optuna's RDB schema (Alembic head
//! `v3.2.0.a`), so that Python's `optuna.load_study(storage="sqlite:///x.db",
//! study_name=...)` and optuna-dashboard read what we write, and we read what
//! they write.
//!
//! The file is opened in WAL mode with a 30 s busy timeout. Every write is one
//! `BEGIN IMMEDIATE` transaction, so several threads and several processes on
//! one machine may share a file (trial numbers stay unique); SQLite on a
//! network file system is not safe for that.
//!
//! Datetimes are written as SQLAlchemy writes them, `YYYY-MM-DD HH:MM:SS.ffffff`,
//! in UTC (Optuna ≥ 5 also stores UTC; Optuna 4 stored local time, which is
//! the same on a machine that runs in UTC).

use super::common::{self, no_study, no_trial};
use super::optuna_json::parse_json_lenient;
use super::{Storage, StudyInfo};
use crate::search::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Alembic revision of the schema we write and accept.
pub const ALEMBIC_HEAD: &str = "v3.2.0.a";
/// Optuna's `SCHEMA_VERSION` (frozen since Alembic took over).
pub const SCHEMA_VERSION: i64 = 12;
/// Written to `version_info.library_version` in new files: the Optuna release
/// whose schema this is.
pub const LIBRARY_VERSION: &str = "4.5.0";
/// How long a write waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA_SQL: &str = include_str!("optuna_schema.sql");
const TABLES: [&str; 13] = [
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

/// An Optuna-compatible SQLite storage. One connection behind a mutex; open
/// several (in several processes) on one file to write from many places.
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStorage {
    /// Opens the file, creating it with Optuna's schema if it is new or empty.
    /// An existing file must already hold that schema at revision
    /// [`ALEMBIC_HEAD`]; any other SQLite file is refused with its name.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let conn = Connection::open(path).with_context(|| format!("cannot open SQLite file '{shown}'"))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .with_context(|| format!("'{shown}' is not an SQLite database (or cannot be read)"))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            bail!("'{shown}': cannot switch to WAL mode (journal mode stays '{mode}')");
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let storage = SqliteStorage { conn: Mutex::new(conn), path: path.to_path_buf() };
        storage.write(init_schema).with_context(|| format!("'{shown}' is not a usable Optuna storage"))?;
        Ok(storage)
    }

    /// The file this storage lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction (the write lock is taken
    /// up front, so two writers never deadlock on a lock upgrade).
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("'{}': cannot begin a write", self.path.display()))?;
        let out = f(&tx)?;
        tx.commit().with_context(|| format!("'{}': cannot commit", self.path.display()))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Creates the schema in an empty database, or checks an existing one.
fn init_schema(tx: &Transaction) -> Result<()> {
    let mut stmt = tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let tables: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    drop(stmt);
    if tables.is_empty() {
        tx.execute_batch(SCHEMA_SQL)?;
        tx.execute(
            "INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, ?1, ?2)",
            params![SCHEMA_VERSION, LIBRARY_VERSION],
        )?;
        tx.execute("INSERT INTO alembic_version (version_num) VALUES (?1)", [ALEMBIC_HEAD])?;
        return Ok(());
    }
    let missing: Vec<&str> = TABLES.iter().copied().filter(|t| !tables.iter().any(|have| have == t)).collect();
    if !missing.is_empty() {
        bail!("it is an SQLite database but not an Optuna storage (missing tables: {})", missing.join(", "));
    }
    let revisions: Vec<String> =
        tx.prepare("SELECT version_num FROM alembic_version")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if revisions != [ALEMBIC_HEAD] {
        bail!(
            "Optuna schema revision {:?}, but only {ALEMBIC_HEAD} is supported \
             (an older file can be upgraded with `optuna storage upgrade --storage sqlite:///FILE`)",
            revisions
        );
    }
    let schema: Option<i64> =
        tx.query_row("SELECT schema_version FROM version_info", [], |r| r.get(0)).optional()?.flatten();
    if schema != Some(SCHEMA_VERSION) {
        bail!("Optuna schema_version {schema:?}, expected {SCHEMA_VERSION}");
    }
    Ok(())
}

fn load_directions(tx: &Transaction, study_id: i64) -> Result<Vec<Direction>> {
    let mut stmt = tx.prepare_cached("SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective")?;
    let names: Vec<String> = stmt.query_map([study_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    names.iter().map(|n| common::parse_direction(n)).collect()
}

fn study_info(tx: &Transaction, study_id: i64, name: String) -> Result<StudyInfo> {
    Ok(StudyInfo { id: study_id, name, directions: load_directions(tx, study_id)? })
}

fn check_study(tx: &Transaction, study_id: i64) -> Result<()> {
    let found: Option<i64> =
        tx.query_row("SELECT study_id FROM studies WHERE study_id = ?1", [study_id], |r| r.get(0)).optional()?;
    found.map(|_| ()).ok_or_else(|| no_study(study_id))
}

/// (study_id, state) of a trial.
fn trial_state(tx: &Transaction, trial_id: i64) -> Result<(i64, TrialState)> {
    let row: Option<(i64, String)> = tx
        .query_row("SELECT study_id, state FROM trials WHERE trial_id = ?1", [trial_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (study_id, state) = row.ok_or_else(|| no_trial(trial_id))?;
    Ok((study_id, parse_state(&state)?))
}

fn parse_state(name: &str) -> Result<TrialState> {
    TrialState::parse(name).with_context(|| format!("unknown trial state '{name}'"))
}

fn parse_time(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| common::parse_datetime(&t)).transpose()
}

fn to_json(value: &Value) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Upserts a key of one of the four `*_attributes` tables.
fn set_attr(tx: &Transaction, table: &str, owner: &str, owner_id: i64, key: &str, value: &Value) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO {table} ({owner}, \"key\", value_json) VALUES (?1, ?2, ?3) \
             ON CONFLICT ({owner}, \"key\") DO UPDATE SET value_json = excluded.value_json"
        ),
        params![owner_id, key, to_json(value)?],
    )?;
    Ok(())
}

/// Stored form of an objective value: NULL with the type for infinities.
fn value_to_stored(v: f64) -> (Option<f64>, &'static str) {
    if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(v), "FINITE")
    }
}

fn stored_to_value(value: Option<f64>, kind: &str) -> Result<f64> {
    match (kind, value) {
        ("INF_POS", _) => Ok(f64::INFINITY),
        ("INF_NEG", _) => Ok(f64::NEG_INFINITY),
        ("FINITE", Some(v)) => Ok(v),
        ("FINITE", None) => bail!("a FINITE trial value is NULL"),
        (other, _) => bail!("unknown trial value type '{other}'"),
    }
}

/// Reads the trials selected by `filter` (a condition on table alias `t`
/// with one parameter `?1`), each with its params, values and attributes.
fn load_trials(tx: &Transaction, filter: &str, arg: i64) -> Result<Vec<FrozenTrial>> {
    let mut trials = Vec::new();
    let mut index = HashMap::new();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete \
             FROM trials t WHERE {filter} ORDER BY t.number, t.trial_id"
        ))?;
        let mut rows = stmt.query([arg])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let number: Option<i64> = r.get(1)?;
            let number = number.with_context(|| format!("trial {id} has no number"))?;
            index.insert(id, trials.len());
            trials.push(FrozenTrial {
                id,
                number: u64::try_from(number).with_context(|| format!("trial {id} has number {number}"))?,
                state: parse_state(&r.get::<_, String>(2)?)?,
                params: BTreeMap::new(),
                values: None,
                user_attrs: BTreeMap::new(),
                system_attrs: BTreeMap::new(),
                datetime_start: parse_time(r.get(3)?)?,
                datetime_complete: parse_time(r.get(4)?)?,
            });
        }
    }
    if trials.is_empty() {
        return Ok(trials);
    }
    let join = |cols: &str, table: &str, order: &str| {
        format!("SELECT x.trial_id, {cols} FROM {table} x JOIN trials t ON t.trial_id = x.trial_id WHERE {filter} ORDER BY x.trial_id, {order}")
    };
    {
        let mut stmt = tx.prepare(&join("x.param_name, x.param_value, x.distribution_json", "trial_params", "x.param_id"))?;
        let mut rows = stmt.query([arg])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let name: String = r.get(1)?;
            let value: f64 = r.get(2)?;
            let json: String = r.get(3)?;
            let dist = Distribution::from_optuna_json(&json)
                .with_context(|| format!("trial {id}, parameter '{name}'"))?;
            trials[index[&id]].params.insert(name, (dist, value));
        }
    }
    {
        let mut stmt = tx.prepare(&join("x.objective, x.value, x.value_type", "trial_values", "x.objective"))?;
        let mut rows = stmt.query([arg])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let objective: i64 = r.get(1)?;
            let value = stored_to_value(r.get(2)?, &r.get::<_, String>(3)?)
                .with_context(|| format!("trial {id}, objective {objective}"))?;
            let values = trials[index[&id]].values.get_or_insert_with(Vec::new);
            if objective != values.len() as i64 {
                bail!("trial {id}: objective {objective} stored without the ones before it");
            }
            values.push(value);
        }
    }
    for (table, user) in [("trial_user_attributes", true), ("trial_system_attributes", false)] {
        let mut stmt = tx.prepare(&join("x.\"key\", x.value_json", table, "x.\"key\""))?;
        let mut rows = stmt.query([arg])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let key: String = r.get(1)?;
            let json: String = r.get(2)?;
            let value = parse_json_lenient(&json).with_context(|| format!("trial {id}, attribute '{key}': {json}"))?;
            let t = &mut trials[index[&id]];
            if user { &mut t.user_attrs } else { &mut t.system_attrs }.insert(key, value);
        }
    }
    Ok(trials)
}

impl Storage for SqliteStorage {
    fn create_or_load_study(&self, name: &str, directions: &[Direction]) -> Result<StudyInfo> {
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row("SELECT study_id FROM studies WHERE study_name = ?1", [name], |r| r.get(0))
                .optional()?;
            if let Some(id) = id {
                let info = study_info(tx, id, name.to_string())?;
                common::check_directions(name, Some(&info.directions), directions)?;
                return Ok(info);
            }
            common::check_directions(name, None, directions)?;
            tx.execute("INSERT INTO studies (study_name) VALUES (?1)", [name])?;
            let id = tx.last_insert_rowid();
            for (objective, d) in directions.iter().enumerate() {
                tx.execute(
                    "INSERT INTO study_directions (direction, study_id, objective) VALUES (?1, ?2, ?3)",
                    params![common::direction_name(*d), id, objective as i64],
                )?;
            }
            Ok(StudyInfo { id, name: name.to_string(), directions: directions.to_vec() })
        })
    }

    fn load_study(&self, name: &str) -> Result<Option<StudyInfo>> {
        self.read(|tx| {
            let id: Option<i64> = tx
                .query_row("SELECT study_id FROM studies WHERE study_name = ?1", [name], |r| r.get(0))
                .optional()?;
            id.map(|id| study_info(tx, id, name.to_string())).transpose()
        })
    }

    fn list_studies(&self) -> Result<Vec<StudyInfo>> {
        self.read(|tx| {
            let mut stmt = tx.prepare("SELECT study_id, study_name FROM studies ORDER BY study_id")?;
            let rows: Vec<(i64, String)> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            rows.into_iter().map(|(id, name)| study_info(tx, id, name)).collect()
        })
    }

    fn delete_study(&self, study_id: i64) -> Result<()> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            for table in [
                "trial_params",
                "trial_values",
                "trial_intermediate_values",
                "trial_user_attributes",
                "trial_system_attributes",
                "trial_heartbeats",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?1)"),
                    [study_id],
                )?;
            }
            for table in ["trials", "study_directions", "study_user_attributes", "study_system_attributes", "studies"] {
                tx.execute(&format!("DELETE FROM {table} WHERE study_id = ?1"), [study_id])?;
            }
            Ok(())
        })
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            set_attr(tx, "study_user_attributes", "study_id", study_id, key, value)
        })
    }

    fn study_user_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.read(|tx| {
            check_study(tx, study_id)?;
            let mut stmt =
                tx.prepare("SELECT \"key\", value_json FROM study_user_attributes WHERE study_id = ?1 ORDER BY \"key\"")?;
            let rows: Vec<(String, String)> =
                stmt.query_map([study_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(k, json)| {
                    let v = parse_json_lenient(&json).with_context(|| format!("study attribute '{k}': {json}"))?;
                    Ok((k, v))
                })
                .collect()
        })
    }

    fn create_trial(&self, study_id: i64) -> Result<(i64, u64)> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            // Optuna's number: how many trials of the study came before. The
            // IMMEDIATE transaction holds the write lock, so no other
            // connection can add a trial between the count and the insert.
            let number: i64 = tx.query_row("SELECT COUNT(*) FROM trials WHERE study_id = ?1", [study_id], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO trials (number, study_id, state, datetime_start) VALUES (?1, ?2, 'RUNNING', ?3)",
                params![number, study_id, common::format_datetime(&common::now())],
            )?;
            Ok((tx.last_insert_rowid(), number as u64))
        })
    }

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()> {
        self.write(|tx| {
            let (_, state) = trial_state(tx, trial_id)?;
            let existing: Option<(f64, String)> = tx
                .query_row(
                    "SELECT param_value, distribution_json FROM trial_params WHERE trial_id = ?1 AND param_name = ?2",
                    params![trial_id, name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let existing = existing.map(|(v, json)| Ok::<_, anyhow::Error>((Distribution::from_optuna_json(&json)?, v)));
            let existing = existing.transpose()?;
            common::check_param(trial_id, state, name, internal, distribution, existing.as_ref().map(|(d, v)| (d, *v)))?;
            if existing.is_none() {
                tx.execute(
                    "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?1, ?2, ?3, ?4)",
                    params![trial_id, name, internal, distribution.to_optuna_json()],
                )?;
            }
            Ok(())
        })
    }

    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            common::check_updatable(trial_id, trial_state(tx, trial_id)?.1)?;
            set_attr(tx, "trial_user_attributes", "trial_id", trial_id, key, value)
        })
    }

    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            common::check_updatable(trial_id, trial_state(tx, trial_id)?.1)?;
            set_attr(tx, "trial_system_attributes", "trial_id", trial_id, key, value)
        })
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool> {
        self.write(|tx| {
            let (study_id, current) = trial_state(tx, trial_id)?;
            let n_objectives = load_directions(tx, study_id)?.len();
            common::check_finish(trial_id, state, values, n_objectives)?;
            if current != TrialState::Running {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE trials SET state = ?1, datetime_complete = ?2 WHERE trial_id = ?3 AND state = 'RUNNING'",
                params![state.name(), common::format_datetime(&common::now()), trial_id],
            )?;
            if changed != 1 {
                return Ok(false);
            }
            for (objective, v) in values.unwrap_or_default().iter().enumerate() {
                let (value, kind) = value_to_stored(*v);
                tx.execute(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (trial_id, objective) DO UPDATE SET value = excluded.value, value_type = excluded.value_type",
                    params![trial_id, objective as i64, value, kind],
                )?;
            }
            Ok(true)
        })
    }

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial> {
        self.read(|tx| load_trials(tx, "t.trial_id = ?1", trial_id)?.pop().ok_or_else(|| no_trial(trial_id)))
    }

    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>> {
        self.read(|tx| {
            check_study(tx, study_id)?;
            load_trials(tx, "t.study_id = ?1", study_id)
        })
    }

    fn record_heartbeat(&self, trial_id: i64) -> Result<()> {
        self.write(|tx| {
            trial_state(tx, trial_id)?;
            tx.execute(
                "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?1, ?2) \
                 ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
                params![trial_id, common::format_datetime(&common::now())],
            )?;
            Ok(())
        })
    }

    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            let mut stmt = tx.prepare(
                "SELECT t.trial_id, t.number, t.datetime_start, h.heartbeat FROM trials t \
                 LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id \
                 WHERE t.study_id = ?1 AND t.state = 'RUNNING' ORDER BY t.number",
            )?;
            let rows: Vec<(i64, i64, Option<String>, Option<String>)> = stmt
                .query_map([study_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?;
            drop(stmt);
            let now = common::now();
            let now_text = common::format_datetime(&now);
            let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            let mut failed = vec![];
            for (id, number, start, heartbeat) in rows {
                let last = parse_time(heartbeat)?.or(parse_time(start)?);
                if last.is_none_or(|last| now - last > grace) {
                    tx.execute(
                        "UPDATE trials SET state = 'FAIL', datetime_complete = ?1 WHERE trial_id = ?2 AND state = 'RUNNING'",
                        params![now_text, id],
                    )?;
                    failed.push(number as u64);
                }
            }
            Ok(failed)
        })
    }
}
