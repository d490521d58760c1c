//! A study in an SQLite file, in Optuna's RDB schema (Alembic head
//! `v3.2.0.a`), so that Python's `optuna.load_study(storage="sqlite:///x.db",
//! study_name=...)` and optuna-dashboard read what we write, and we read what
//! they write.
//!
//! The file is opened in WAL mode (`synchronous = NORMAL`) with a 30 s busy timeout. Every write is one
//! `BEGIN IMMEDIATE` transaction, so several threads and several processes on
//! one machine may share a file (trial numbers stay unique); SQLite on a
//! network file system is not safe for that.
//!
//! Datetimes are written as SQLAlchemy writes them, `YYYY-MM-DD HH:MM:SS.ffffff`,
//! in UTC (Optuna ≥ 5 also stores UTC; Optuna 4 stored local time, which is
//! the same on a machine that runs in UTC).

use super::cache::{Changed, TrialCache};
use super::common::{
    self, ALEMBIC_HEAD, LIBRARY_VERSION, SCHEMA_VERSION, no_study, no_trial, parse_state, stored_to_value,
    value_to_stored,
};
use super::optuna_json::parse_json_lenient;
use super::{IntermediateValues, Storage, StudyInfo};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, ToSql, Transaction, TransactionBehavior, params};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a write waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA_SQL: &str = include_str!("optuna_schema.sql");
/// How many trials of study ?1 count against a budget: all but the FAILed
/// ones marked with system attribute ?2 ([`super::INTERRUPTED_KEY`]).
const COUNTED_TRIALS_SQL: &str = "SELECT COUNT(*) FROM trials t WHERE t.study_id = ?1 AND NOT (t.state = 'FAIL' \
     AND EXISTS (SELECT 1 FROM trial_system_attributes a WHERE a.trial_id = t.trial_id AND a.\"key\" = ?2 \
     AND a.value_json = 'true'))";

/// An Optuna-compatible SQLite storage. One connection behind a mutex; open
/// several (in several processes) on one file to write from many places.
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The trials read so far: `get_all_trials` reads only those that may
    /// have changed since.
    cache: TrialCache,
}

impl SqliteStorage {
    /// Opens the file, creating it with Optuna's schema if it is new or empty.
    /// An existing file must already hold that schema at revision
    /// [`ALEMBIC_HEAD`]; any other SQLite file is refused with its name.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        check_location(path)?;
        let conn = Connection::open(path).with_context(|| format!("cannot open SQLite file '{shown}'"))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode =
            switch_to_wal(&conn).with_context(|| format!("'{shown}' is not an SQLite database (or cannot be read)"))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            bail!("'{shown}': cannot switch to WAL mode (journal mode stays '{mode}')");
        }
        // In WAL mode, NORMAL syncs at checkpoints instead of every commit: a
        // killed process still loses nothing it committed (only a power loss
        // can drop the last commits), and a commit costs no fsync.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Room for every statement we run, so that none is prepared twice.
        conn.set_prepared_statement_cache_capacity(64);
        let storage = SqliteStorage { conn: Mutex::new(conn), path: path.to_path_buf(), cache: TrialCache::default() };
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

    /// Attributes of a trial in one transaction (a later duplicate key wins).
    fn set_trial_attrs(&self, table: &str, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            common::check_updatable(trial_id, trial_state(tx, trial_id)?.1)?;
            for (key, value) in attrs {
                set_attr(tx, table, "trial_id", trial_id, key, value)?;
            }
            Ok(())
        })
    }

    /// Sets an attribute of a study in `table` (user or system attributes).
    fn set_study_attr(&self, table: &str, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            set_attr(tx, table, "study_id", study_id, key, value)
        })
    }

    /// The attributes of a study in `table`, in key order.
    fn study_attrs(&self, table: &str, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.read(|tx| {
            check_study(tx, study_id)?;
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT \"key\", value_json FROM {table} WHERE study_id = ?1 ORDER BY \"key\""
            ))?;
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

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Checks, before SQLite does with vaguer words, that `path` is not a
/// directory and that its directory exists and is writable (SQLite creates
/// the file there, and in WAL mode its `-wal` and `-shm` files).
fn check_location(path: &Path) -> Result<()> {
    let shown = path.display();
    ensure!(!path.as_os_str().is_empty(), "the SQLite storage path is empty; give a file such as study.db");
    ensure!(
        !path.is_dir(),
        "SQLite storage '{shown}' is a directory; give a file in it, such as {}",
        path.join("study.db").display()
    );
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    ensure!(dir.is_dir(), "SQLite storage '{shown}': directory '{}' does not exist; create it first", dir.display());
    if let Err(e) = tempfile::tempfile_in(dir) {
        bail!(
            "SQLite storage '{shown}': directory '{}' is not writable ({e}); SQLite needs to create the \
             file and its -wal and -shm files there. Choose a writable directory",
            dir.display()
        );
    }
    Ok(())
}

/// Sets WAL journal mode. Switching needs an exclusive lock, and SQLite
/// answers `SQLITE_BUSY` at once (without the busy handler) when another
/// connection opening the same new file holds a lock, so this retries until
/// [`BUSY_TIMEOUT`].
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
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
    let missing = common::missing_tables(&tables);
    if !missing.is_empty() {
        bail!("it is an SQLite database but not an Optuna storage (missing tables: {})", missing.join(", "));
    }
    let revisions: Vec<String> = tx
        .prepare("SELECT version_num FROM alembic_version")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
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
    let mut stmt =
        tx.prepare_cached("SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective")?;
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

fn parse_time(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| common::parse_datetime(&t)).transpose()
}

fn to_json(value: &Value) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Upserts a key of one of the four `*_attributes` tables.
fn set_attr(tx: &Transaction, table: &str, owner: &str, owner_id: i64, key: &str, value: &Value) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO {table} ({owner}, \"key\", value_json) VALUES (?1, ?2, ?3) \
         ON CONFLICT ({owner}, \"key\") DO UPDATE SET value_json = excluded.value_json"
    ))?
    .execute(params![owner_id, key, to_json(value)?])?;
    Ok(())
}

/// Reads the trials selected by `filter` (a condition on table alias `t`
/// with the parameters `args`), each with its params, values and attributes.
fn load_trials(tx: &Transaction, filter: &str, args: &[&dyn ToSql]) -> Result<Vec<FrozenTrial>> {
    let mut trials = Vec::new();
    let mut index = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete \
             FROM trials t WHERE {filter} ORDER BY t.number, t.trial_id"
        ))?;
        let mut rows = stmt.query(args)?;
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
        format!(
            "SELECT x.trial_id, {cols} FROM {table} x JOIN trials t ON t.trial_id = x.trial_id WHERE {filter} ORDER BY x.trial_id, {order}"
        )
    };
    {
        let mut stmt =
            tx.prepare_cached(&join("x.param_name, x.param_value, x.distribution_json", "trial_params", "x.param_id"))?;
        let mut rows = stmt.query(args)?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let name: String = r.get(1)?;
            let value: f64 = r.get(2)?;
            let json: String = r.get(3)?;
            let dist =
                Distribution::from_optuna_json(&json).with_context(|| format!("trial {id}, parameter '{name}'"))?;
            trials[index[&id]].params.insert(name, (dist, value));
        }
    }
    {
        let mut stmt = tx.prepare_cached(&join("x.objective, x.value, x.value_type", "trial_values", "x.objective"))?;
        let mut rows = stmt.query(args)?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let objective: i64 = r.get(1)?;
            let value = stored_to_value(r.get(2)?, &r.get::<_, String>(3)?)
                .with_context(|| format!("trial {id}, objective {objective}"))?;
            common::push_value(&mut trials[index[&id]], objective, value)?;
        }
    }
    for (table, user) in [("trial_user_attributes", true), ("trial_system_attributes", false)] {
        let mut stmt = tx.prepare_cached(&join("x.\"key\", x.value_json", table, "x.\"key\""))?;
        let mut rows = stmt.query(args)?;
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
            let id: Option<i64> =
                tx.query_row("SELECT study_id FROM studies WHERE study_name = ?1", [name], |r| r.get(0)).optional()?;
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
            let id: Option<i64> =
                tx.query_row("SELECT study_id FROM studies WHERE study_name = ?1", [name], |r| r.get(0)).optional()?;
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
            for table in common::TRIAL_TABLES {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?1)"),
                    [study_id],
                )?;
            }
            for table in common::STUDY_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE study_id = ?1"), [study_id])?;
            }
            Ok(())
        })?;
        self.cache.forget(study_id);
        Ok(())
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_study_attr("study_user_attributes", study_id, key, value)
    }

    fn study_user_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.study_attrs("study_user_attributes", study_id)
    }

    fn set_study_system_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_study_attr("study_system_attributes", study_id, key, value)
    }

    fn study_system_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.study_attrs("study_system_attributes", study_id)
    }

    fn create_trial_within(&self, study_id: i64, budget: Option<usize>) -> Result<Option<(i64, u64)>> {
        self.write(|tx| {
            check_study(tx, study_id)?;
            if let Some(budget) = budget {
                let counted: i64 =
                    tx.query_row(COUNTED_TRIALS_SQL, params![study_id, super::INTERRUPTED_KEY], |r| r.get(0))?;
                if counted as usize >= budget {
                    return Ok(None);
                }
            }
            // Optuna's number: how many trials of the study came before. The
            // IMMEDIATE transaction holds the write lock, so no other
            // connection can add a trial between the count and the insert.
            let number: i64 =
                tx.query_row("SELECT COUNT(*) FROM trials WHERE study_id = ?1", [study_id], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO trials (number, study_id, state, datetime_start) VALUES (?1, ?2, 'RUNNING', ?3)",
                params![number, study_id, common::format_datetime(&common::now())],
            )?;
            Ok(Some((tx.last_insert_rowid(), number as u64)))
        })
    }

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()> {
        self.set_trial_params(trial_id, &[(name, internal, distribution)])
    }

    fn set_trial_params(&self, trial_id: i64, params: &[(&str, f64, &Distribution)]) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        // One transaction. A refused parameter refuses the batch (nothing
        // else of the batch is kept): the others were legal, and the error
        // names it.
        self.write(|tx| {
            let (_, state) = trial_state(tx, trial_id)?;
            for (name, internal, distribution) in params {
                let existing: Option<(f64, String)> = tx
                    .prepare_cached(
                        "SELECT param_value, distribution_json FROM trial_params WHERE trial_id = ?1 AND param_name = ?2",
                    )?
                    .query_row(params![trial_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let existing =
                    existing.map(|(v, json)| Ok::<_, anyhow::Error>((Distribution::from_optuna_json(&json)?, v)));
                let existing = existing.transpose()?;
                let existing = existing.as_ref().map(|(d, v)| (d, *v));
                common::check_param(trial_id, state, name, *internal, distribution, existing)?;
                if existing.is_none() {
                    tx.prepare_cached(
                        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![trial_id, name, internal, distribution.to_optuna_json()])?;
                }
            }
            Ok(())
        })
    }

    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_user_attrs(trial_id, &[(key, value.clone())])
    }

    fn set_trial_user_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs("trial_user_attributes", trial_id, attrs)
    }

    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_system_attrs(trial_id, &[(key, value.clone())])
    }

    fn set_trial_system_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs("trial_system_attributes", trial_id, attrs)
    }

    fn set_trial_intermediate_value(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        self.set_trial_intermediate_values(trial_id, &[(step, value)])
    }

    fn set_trial_intermediate_values(&self, trial_id: i64, values: &[(u64, f64)]) -> Result<()> {
        self.write(|tx| {
            common::check_updatable(trial_id, trial_state(tx, trial_id)?.1)?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (trial_id, step) DO UPDATE SET \
                 intermediate_value = excluded.intermediate_value, \
                 intermediate_value_type = excluded.intermediate_value_type",
            )?;
            for (step, value) in values {
                let (stored, kind) = common::intermediate_to_stored(*value);
                stmt.execute(params![trial_id, *step as i64, stored, kind])?;
            }
            Ok(())
        })
    }

    fn intermediate_values(&self, study_id: i64) -> Result<IntermediateValues> {
        self.read(|tx| {
            check_study(tx, study_id)?;
            let mut stmt = tx.prepare_cached(
                "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type \
                 FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = ?1",
            )?;
            let rows: Vec<(i64, i64, Option<f64>, String)> = stmt
                .query_map([study_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = IntermediateValues::new();
            for (trial_id, step, value, kind) in rows {
                let value = common::stored_to_intermediate(value, &kind)?;
                out.entry(trial_id).or_default().insert(step as u64, value);
            }
            Ok(out)
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
        if let Some(trial) = self.cache.finished(trial_id) {
            return Ok(trial);
        }
        let trial =
            self.read(|tx| load_trials(tx, "t.trial_id = ?1", &[&trial_id])?.pop().ok_or_else(|| no_trial(trial_id)))?;
        self.cache.remember(&trial);
        Ok(trial)
    }

    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>> {
        Ok(self.get_all_trials_shared(study_id)?.iter().map(|t| FrozenTrial::clone(t)).collect())
    }

    fn get_all_trials_shared(&self, study_id: i64) -> Result<Vec<Arc<FrozenTrial>>> {
        self.cache.all_trials(study_id, |after, ids| {
            // The ids travel as one JSON array parameter.
            let ids = serde_json::to_string(ids)?;
            self.read(|tx| {
                check_study(tx, study_id)?;
                let total: i64 =
                    tx.query_row("SELECT COUNT(*) FROM trials WHERE study_id = ?1", [study_id], |r| r.get(0))?;
                // Written so that SQLite finds the trials by key (a range and
                // a list) rather than going through all of the study's.
                let trials = load_trials(
                    tx,
                    "t.trial_id IN (SELECT trial_id FROM trials WHERE trial_id > ?2 \
                     UNION ALL SELECT value FROM json_each(?3)) AND t.study_id = ?1",
                    &[&study_id, &after.unwrap_or(i64::MIN), &ids],
                )?;
                Ok(Changed { trials, total: total as u64 })
            })
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
            let grace_s = grace.as_secs_f64();
            let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            let mut failed = vec![];
            let reason = Value::from(common::stale_reason(grace_s));
            for (id, number, start, heartbeat) in rows {
                let last = parse_time(heartbeat)?.or(parse_time(start)?);
                if last.is_none_or(|last| now - last > grace) {
                    tx.execute(
                        "UPDATE trials SET state = 'FAIL', datetime_complete = ?1 WHERE trial_id = ?2 AND state = 'RUNNING'",
                        params![now_text, id],
                    )?;
                    set_attr(tx, "trial_system_attributes", "trial_id", id, super::INTERRUPTED_KEY, &Value::Bool(true))?;
                    set_attr(tx, "trial_user_attributes", "trial_id", id, super::FAIL_REASON_KEY, &reason)?;
                    failed.push(number as u64);
                }
            }
            Ok(failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::common::TABLES;
    use super::*;
    use serde_json::json;

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        (dir, path)
    }

    fn rows(path: &Path, sql: &str) -> Vec<Vec<String>> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => format!("{v:?}"),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        rusqlite::types::ValueRef::Blob(_) => "BLOB".to_string(),
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[test]
    fn new_file_gets_optunas_schema_and_version_rows() {
        let (_dir, path) = temp_db();
        SqliteStorage::open(&path).unwrap();
        let tables: Vec<String> = rows(&path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let mut want: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(tables, want);
        assert_eq!(rows(&path, "SELECT * FROM alembic_version"), [["v3.2.0.a"]]);
        assert_eq!(rows(&path, "SELECT * FROM version_info"), [["1", "12", LIBRARY_VERSION]]);
        assert_eq!(rows(&path, "PRAGMA journal_mode"), [["wal"]]);
        let indexes =
            rows(&path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%' ORDER BY name");
        assert_eq!(indexes, [["ix_studies_study_name"], ["ix_trials_study_id"]]);
        // Opening again checks and keeps it.
        SqliteStorage::open(&path).unwrap();
        assert_eq!(rows(&path, "SELECT count(*) FROM version_info"), [["1"]]);
    }

    #[test]
    fn rows_are_in_optunas_representation() {
        let (_dir, path) = temp_db();
        let s = SqliteStorage::open(&path).unwrap();
        let st = s.create_or_load_study("nas", &[Direction::Maximize, Direction::Minimize]).unwrap();
        let (id, _) = s.create_trial(st.id).unwrap();
        let cat = Distribution::Categorical { choices: vec![Value::Null, json!("relu"), json!(8)] };
        s.set_trial_param(id, "act", 1.0, &cat).unwrap();
        s.set_trial_param(id, "units", 32.0, &Distribution::Int { low: 8, high: 64, step: 8 }).unwrap();
        s.set_trial_user_attr(id, "bops", &json!({"total": 1.5})).unwrap();
        s.record_heartbeat(id).unwrap();
        s.finish_trial(id, TrialState::Complete, Some(&[0.75, f64::NEG_INFINITY])).unwrap();

        assert_eq!(
            rows(&path, "SELECT direction, objective FROM study_directions ORDER BY objective"),
            [["MAXIMIZE", "0"], ["MINIMIZE", "1"]]
        );
        assert_eq!(
            rows(&path, "SELECT objective, value, value_type FROM trial_values ORDER BY objective"),
            [["0", "0.75", "FINITE"], ["1", "NULL", "INF_NEG"]]
        );
        assert_eq!(
            rows(&path, "SELECT param_name, param_value, distribution_json FROM trial_params ORDER BY param_id"),
            [
                ["act", "1.0", r#"{"name": "CategoricalDistribution", "attributes": {"choices": [null, "relu", 8]}}"#],
                [
                    "units",
                    "32.0",
                    r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 8, "low": 8, "high": 64}}"#
                ],
            ]
        );
        assert_eq!(
            rows(&path, "SELECT \"key\", value_json FROM trial_user_attributes"),
            [["bops", r#"{"total":1.5}"#]]
        );
        let t = &rows(&path, "SELECT number, state, datetime_start, datetime_complete FROM trials")[0];
        assert_eq!(&t[..2], ["0", "COMPLETE"]);
        let heartbeat = rows(&path, "SELECT heartbeat FROM trial_heartbeats")[0][0].clone();
        for datetime in [&t[2], &t[3], &heartbeat] {
            // SQLAlchemy's SQLite DATETIME: "YYYY-MM-DD HH:MM:SS.ffffff".
            assert_eq!(datetime.len(), 26, "{datetime}");
            assert!(NaiveDateTimeCheck::ok(datetime), "{datetime}");
        }
    }

    struct NaiveDateTimeCheck;
    impl NaiveDateTimeCheck {
        fn ok(text: &str) -> bool {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f").is_ok()
        }
    }

    #[test]
    fn reads_a_study_that_optuna_wrote() {
        let (_dir, path) = temp_db();
        Connection::open(&path).unwrap().execute_batch(include_str!("optuna_4_5_fixture.sql")).unwrap();
        let s = SqliteStorage::open(&path).unwrap();
        let st = s.load_study("written-by-optuna").unwrap().unwrap();
        assert_eq!(st.directions, [Direction::Minimize, Direction::Maximize]);
        assert_eq!(s.study_user_attrs(st.id).unwrap(), [("dataset".to_string(), json!({"name": "jets", "n": 3}))]);
        let trials = s.get_all_trials(st.id).unwrap();
        let states: Vec<_> = trials.iter().map(|t| (t.number, t.state)).collect();
        use TrialState::*;
        assert_eq!(states, [(0, Complete), (1, Pruned), (2, Fail), (3, Running)]);
        let t0 = &trials[0];
        assert_eq!(t0.values, Some(vec![0.25, f64::NEG_INFINITY]));
        assert_eq!(t0.params["n_layers"], (Distribution::Int { low: 1, high: 4, step: 1 }, 3.0));
        assert_eq!(t0.params["lr"].0, Distribution::Float { low: 1e-4, high: 0.1, log: true });
        // A stepped float reads as a continuous one (our Distribution has no float step).
        assert_eq!(t0.params["dropout"].0, Distribution::Float { low: 0.0, high: 0.5, log: false });
        let (act, act_value) = &t0.params["act"];
        assert_eq!(act.external(*act_value), json!("relu"));
        assert_eq!(t0.user_attrs["bops"], json!(1234.5));
        assert_eq!(t0.system_attrs["NSGAIISampler:generation"], json!(0));
        assert_eq!(t0.datetime_start.unwrap(), common::parse_datetime("2026-11-28 15:47:39.130638").unwrap());
        assert!(t0.duration_s().unwrap() > 0.0);
        assert_eq!(trials[1].values, None);
        assert_eq!(trials[2].user_attrs["odd"], Value::Null, "Python's NaN reads as null");
        // Python's heartbeat has whole seconds only; the running trial is long stale.
        assert_eq!(s.fail_stale_trials(st.id, Duration::from_secs(1)).unwrap(), [3]);
        // And we go on with the study.
        assert_eq!(s.create_trial(st.id).unwrap().1, 4);
    }

    #[test]
    fn refuses_other_files_naming_them() {
        let (dir, path) = temp_db();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "this is not a database, just some text that is long enough to have a header").unwrap();
        let e = format!("{:#}", SqliteStorage::open(&text).err().unwrap());
        assert!(e.contains("notes.txt") && e.contains("not an SQLite database"), "{e}");

        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE points (x REAL, y REAL)").unwrap();
        let e = format!("{:#}", SqliteStorage::open(&other).err().unwrap());
        assert!(e.contains("other.db") && e.contains("not an Optuna storage") && e.contains("studies"), "{e}");

        SqliteStorage::open(&path).unwrap();
        Connection::open(&path).unwrap().execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'", []).unwrap();
        let e = format!("{:#}", SqliteStorage::open(&path).err().unwrap());
        assert!(e.contains("x.db") && e.contains("v3.0.0.d") && e.contains("optuna storage upgrade"), "{e}");

        let missing = dir.path().join("no/such/dir/x.db");
        let e = format!("{:#}", SqliteStorage::open(&missing).err().unwrap());
        assert!(e.contains("no/such/dir/x.db"), "{e}");
    }

    /// Separate connections opening one new file at once (as processes
    /// starting together do) agree on a single schema, then share the study.
    #[test]
    fn connections_opening_a_new_file_together() {
        let (_dir, path) = temp_db();
        let numbers: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let s = SqliteStorage::open(&path).unwrap();
                        let st = s.create_or_load_study("nas", &[Direction::Minimize]).unwrap();
                        (0..5).map(|_| s.create_trial(st.id).unwrap().1).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut numbers = numbers;
        numbers.sort();
        assert_eq!(numbers, (0..20).collect::<Vec<_>>());
        assert_eq!(rows(&path, "SELECT count(*) FROM studies"), [["1"]]);
        assert_eq!(rows(&path, "SELECT count(*) FROM alembic_version"), [["1"]]);
    }

    /// Writes a study for a check with Python Optuna (not run by default):
    /// `SNAC_OPTUNA_DB=/tmp/x.db cargo test -p snac-core --lib -- --ignored write_study_for_optuna`,
    /// then `optuna.load_study(storage="sqlite:////tmp/x.db", study_name="from-rust")`.
    #[test]
    #[ignore]
    fn write_study_for_optuna() {
        let Ok(path) = std::env::var("SNAC_OPTUNA_DB") else { return };
        let s = SqliteStorage::open(Path::new(&path)).unwrap();
        let st = s.create_or_load_study("from-rust", &[Direction::Maximize, Direction::Minimize]).unwrap();
        s.set_study_user_attr(st.id, "config", &json!({"epochs": 3, "name": "jets"})).unwrap();
        let cat = Distribution::Categorical { choices: vec![Value::Null, json!("relu"), json!(8), json!(0.5)] };
        let units = Distribution::Int { low: 8, high: 64, step: 8 };
        let lr = Distribution::Float { low: 1e-4, high: 0.1, log: true };
        for (state, values) in [
            (TrialState::Complete, Some(vec![0.75, 1200.0])),
            (TrialState::Complete, Some(vec![f64::NEG_INFINITY, f64::INFINITY])),
            (TrialState::Pruned, None),
            (TrialState::Fail, None),
            (TrialState::Running, None),
        ] {
            let (id, n) = s.create_trial(st.id).unwrap();
            s.set_trial_param(id, "act", (n % 4) as f64, &cat).unwrap();
            s.set_trial_param(id, "units", 8.0 * (n + 1) as f64, &units).unwrap();
            s.set_trial_param(id, "lr", 0.001 * (n + 1) as f64, &lr).unwrap();
            s.set_trial_user_attr(id, "bops", &json!(1000 + n)).unwrap();
            s.set_trial_system_attr(id, "NSGAIISampler:generation", &json!(0)).unwrap();
            s.set_trial_system_attr(id, "constraints", &json!([-1.0, 0.5])).unwrap();
            s.record_heartbeat(id).unwrap();
            if state.is_finished() {
                s.finish_trial(id, state, values.as_deref()).unwrap();
            }
        }
    }

    const WORKER_ENV: &str = "SNAC_STORAGE_WORKER_DB";
    const WORKER_TRIALS: u64 = 20;

    /// One worker process of `processes_share_a_file`: this test binary, run
    /// again with the file in `SNAC_STORAGE_WORKER_DB`. Does nothing without it.
    #[test]
    #[ignore]
    fn worker_process() {
        let Ok(path) = std::env::var(WORKER_ENV) else { return };
        let s = SqliteStorage::open(Path::new(&path)).unwrap();
        let st = s.create_or_load_study("shared", &[Direction::Minimize]).unwrap();
        for _ in 0..WORKER_TRIALS {
            let (id, n) = s.create_trial(st.id).unwrap();
            s.set_trial_user_attr(id, "pid", &json!(std::process::id())).unwrap();
            s.record_heartbeat(id).unwrap();
            assert!(s.finish_trial(id, TrialState::Complete, Some(&[n as f64])).unwrap());
        }
    }

    /// Real OS processes (this test binary, re-run as `worker_process`) and
    /// this process write one new file at once: every trial is kept, and the
    /// numbers are unique and dense.
    #[test]
    fn processes_share_a_file() {
        const PROCESSES: usize = 3;
        let (_dir, path) = temp_db();
        let exe = std::env::current_exe().unwrap();
        let name = format!("{}::worker_process", module_path!().split_once("::").unwrap().1);
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--ignored", "--exact", &name, "--test-threads=1"])
                    .env(WORKER_ENV, &path)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // This process writes too, meanwhile.
        let s = SqliteStorage::open(&path).unwrap();
        let st = s.create_or_load_study("shared", &[Direction::Minimize]).unwrap();
        for _ in 0..WORKER_TRIALS {
            let (id, n) = s.create_trial(st.id).unwrap();
            assert!(s.finish_trial(id, TrialState::Complete, Some(&[n as f64])).unwrap());
        }
        for mut child in children {
            assert!(child.wait().unwrap().success(), "a worker process failed");
        }
        let trials = s.get_all_trials(st.id).unwrap();
        let total = (PROCESSES as u64 + 1) * WORKER_TRIALS;
        assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), (0..total).collect::<Vec<_>>());
        assert!(trials.iter().all(|t| t.state == TrialState::Complete && t.values == Some(vec![t.number as f64])));
        let pids: std::collections::BTreeSet<_> =
            trials.iter().filter_map(|t| t.user_attrs.get("pid")?.as_u64()).collect();
        assert_eq!(pids.len(), PROCESSES, "every worker process wrote");
    }
}
