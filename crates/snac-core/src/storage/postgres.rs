//! A study in a PostgreSQL database, in Optuna's RDB schema (Alembic head
//! `v3.2.0.a`, the same tables as the SQLite backend, with PostgreSQL's native
//! enum types as SQLAlchemy creates them), so that many workers on many nodes
//! share one study and `optuna.load_study(storage="postgresql://...")` reads it.
//!
//! Every operation is one transaction on one connection (behind a mutex; a
//! lost connection is re-opened on the next call). Trial numbers stay unique
//! because a new trial is created while holding a row lock on its study
//! (`SELECT ... FOR UPDATE`), as Optuna's RDB storage does; transactions that
//! PostgreSQL aborts for a deadlock, a serialization conflict or a racing
//! insert of the same key are retried. Values only ever travel as statement
//! parameters; the SQL text holds nothing but our own table and column names.
//!
//! Round trips are what a trial costs on a network, so the common case of
//! each operation is one statement (one round trip): a trial's params or
//! attributes in one batch, its end with its values, a study read that
//! fetches only the trials that may have changed (see `cache.rs`); creating
//! a trial takes four (begin, lock, insert, commit). Anything unusual (a
//! repeated parameter, a finished trial) falls back to a checked transaction
//! that explains it.
//!
//! Heartbeats are written with the database server's clock (UTC), and stale
//! trials are judged by that clock too, so nodes with skewed clocks agree.

use super::cache::{Changed, TrialCache};
use super::common::{
    self, ALEMBIC_HEAD, LIBRARY_VERSION, SCHEMA_VERSION, no_study, no_trial, parse_state, stored_to_value,
    value_to_stored,
};
use super::optuna_json::parse_json_lenient;
use super::{FAIL_REASON_KEY, INTERRUPTED_KEY, IntermediateValues, Storage, StudyInfo};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement, Transaction};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const SCHEMA_SQL: &str = include_str!("postgres_schema.sql");
/// Key of the advisory lock that serialises schema creation, so that workers
/// starting together on an empty database create it once.
const SCHEMA_LOCK_KEY: i64 = 0x736e_6163_7363_6865; // "snacsche"
/// How often a transaction aborted by a conflict is tried again.
const RETRIES: usize = 20;
/// Connect timeout when the URL sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates a trial of study $1 with the next number while fewer than $3
/// trials count against the budget (always when $3 is NULL), started at $4,
/// with its first heartbeat; returns its id and number. Runs under the
/// study's row lock (see `create_trial_within`).
const CREATE_TRIAL_SQL: &str = "WITH c AS (SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE NOT (t.state = 'FAIL' \
     AND EXISTS (SELECT 1 FROM trial_system_attributes a WHERE a.trial_id = t.trial_id AND a.key = $2 \
     AND a.value_json = 'true'))) AS counted FROM trials t WHERE t.study_id = $1), \
     new AS (INSERT INTO trials (number, study_id, state, datetime_start) \
     SELECT c.n::integer, $1, 'RUNNING', $4 FROM c WHERE $3::bigint IS NULL OR c.counted < $3 \
     RETURNING trial_id, number), \
     beat AS (INSERT INTO trial_heartbeats (trial_id, heartbeat) \
     SELECT trial_id, clock_timestamp() AT TIME ZONE 'UTC' FROM new) \
     SELECT trial_id, number FROM new";

/// An Optuna-compatible PostgreSQL storage: one connection, opened from a
/// `postgresql://user[:password]@host[:port]/database` URL.
pub struct PostgresStorage {
    conn: Mutex<Option<Conn>>,
    /// The trials read so far: `get_all_trials` reads only those that may
    /// have changed since, as Optuna's `_CachedStorage` does.
    cache: TrialCache,
    config: Config,
    /// The URL without its password, for messages.
    shown: String,
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// One transaction with the connection's statement cache.
struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl Tx<'_> {
    fn prepare(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.tx.prepare(sql).with_context(|| format!("preparing `{sql}`"))?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.prepare(sql)?;
        Ok(self.tx.query(&stmt, params)?)
    }

    fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let stmt = self.prepare(sql)?;
        Ok(self.tx.query_opt(&stmt, params)?)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.prepare(sql)?;
        Ok(self.tx.execute(&stmt, params)?)
    }
}

/// The URL with its password (in the user info or a `password=` parameter)
/// replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
        if let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = url[start..at].find(':').map(|i| start + i)
        {
            out = format!("{}***{}", &url[..colon + 1], &url[at..]);
        }
    }
    if let Some(i) = out.find("password=") {
        let end = out[i..].find('&').map_or(out.len(), |j| i + j);
        out = format!("{}password=***{}", &out[..i], &out[end..]);
    }
    out
}

impl PostgresStorage {
    /// Connects to the database of a `postgresql://` (or `postgres://`, or
    /// SQLAlchemy's `postgresql+driver://`) URL and creates Optuna's schema if
    /// the current schema has no tables, or checks the existing one.
    pub fn open(url: &str) -> Result<Self> {
        let shown = redact(url);
        let libpq_url = match url.split_once("://") {
            Some((scheme, rest)) if scheme.starts_with("postgres") => format!("postgresql://{rest}"),
            _ => bail!("storage URL '{shown}' is not a PostgreSQL URL (postgresql://user@host[:port]/database)"),
        };
        let config = Config::from_str(&libpq_url).with_context(|| {
            format!("storage URL '{shown}' is not a valid PostgreSQL URL (postgresql://user[:password]@host[:port]/database)")
        })?;
        Self::with_config(config, shown)
    }

    /// Connects with a ready [`Config`]; `shown` names the database in messages.
    pub fn with_config(mut config: Config, shown: String) -> Result<Self> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("snac");
        }
        let storage = PostgresStorage { conn: Mutex::new(None), cache: TrialCache::default(), config, shown };
        storage.write(init_schema).with_context(|| format!("'{}' is not a usable Optuna storage", storage.shown))?;
        Ok(storage)
    }

    fn connect(&self) -> Result<Conn> {
        let mut client = self.config.connect(NoTls).with_context(|| {
            format!(
                "cannot connect to PostgreSQL at '{}': is the server running, reachable from this machine, \
                 and does it accept this user and database?",
                self.shown
            )
        })?;
        // Our statements are prepared once per connection and look rows up
        // by key: one generic plan serves every execution, where PostgreSQL
        // would otherwise plan the larger reads anew each time (a fifth of a
        // millisecond for a study read). This session's setting only; a
        // server before PostgreSQL 12 lacks it and plans as it always did.
        let _ = client.batch_execute("SET plan_cache_mode = force_generic_plan");
        Ok(Conn { client, statements: HashMap::new() })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Option<Conn>>> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = Some(self.connect()?);
        }
        Ok(guard)
    }

    /// Runs one statement outside a transaction (one round trip with a cached
    /// statement, one snapshot) and returns its rows.
    fn query_one_statement(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.one_statement(sql, |client, stmt| client.query(stmt, params))
    }

    /// Runs one statement outside a transaction (one round trip with a cached
    /// statement); returns the number of rows it changed.
    fn execute_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.one_statement(sql, |client, stmt| client.execute(stmt, params))
    }

    /// `run` with `sql` prepared once per connection; a lost connection is
    /// named in the error.
    fn one_statement<T>(
        &self,
        sql: &str,
        run: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut guard = self.lock()?;
        let conn = guard.as_mut().expect("lock() connects");
        let stmt = match conn.statements.get(sql) {
            Some(stmt) => stmt.clone(),
            None => {
                let stmt = conn.client.prepare(sql).with_context(|| format!("preparing `{sql}`"))?;
                conn.statements.insert(sql.to_string(), stmt.clone());
                stmt
            }
        };
        run(&mut conn.client, &stmt).map_err(|e| {
            let lost = conn.client.is_closed();
            let err = anyhow::Error::from(e);
            if lost { err.context(format!("lost the connection to PostgreSQL at '{}'", self.shown)) } else { err }
        })
    }

    /// Sets attributes of a trial in one statement when the trial is RUNNING
    /// or WAITING (the keys deduplicated, a later value winning, as when
    /// written one by one); `false` when it is not (or does not exist), for
    /// the caller's checked path to explain. The trial's row is share-locked,
    /// so a concurrent `finish_trial` or `fail_stale_trials` comes either
    /// before (and nothing is written) or after: a finished trial never
    /// changes once read.
    fn set_trial_attrs_fast(&self, table: &str, trial_id: i64, attrs: &[(&str, Value)]) -> Result<bool> {
        let Ok(id) = i32::try_from(trial_id) else { return Ok(false) };
        let mut keys: Vec<&str> = Vec::with_capacity(attrs.len());
        let mut values: Vec<String> = Vec::with_capacity(attrs.len());
        for (key, value) in attrs {
            let json = serde_json::to_string(value)?;
            match keys.iter().position(|k| k == key) {
                Some(at) => values[at] = json,
                None => {
                    keys.push(key);
                    values.push(json);
                }
            }
        }
        let sql = format!(
            "INSERT INTO {table} (trial_id, key, value_json) \
             SELECT t.trial_id, a.key, a.value_json FROM trials t, unnest($2::text[], $3::text[]) AS a(key, value_json) \
             WHERE t.trial_id = $1 AND t.state IN ('RUNNING', 'WAITING') FOR SHARE OF t \
             ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json"
        );
        Ok(self.execute_one(&sql, &[&id, &keys, &values])? == keys.len() as u64)
    }

    /// The checked path of one attribute: explains why it cannot be set.
    fn set_trial_attr_checked(&self, table: &str, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            let (id, _, state) = trial_state(tx, trial_id, true)?;
            common::check_updatable(trial_id, state)?;
            set_attr(tx, table, "trial_id", id, key, value)
        })
    }

    /// Attributes of a trial: one statement, or one by one on the checked path.
    fn set_trial_attrs(&self, table: &str, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        if attrs.is_empty() || self.set_trial_attrs_fast(table, trial_id, attrs)? {
            return Ok(());
        }
        for (key, value) in attrs {
            self.set_trial_attr_checked(table, trial_id, key, value)?;
        }
        Ok(())
    }

    /// The checked path of one parameter: sets it, or explains why not (a
    /// name already set is accepted again with the same value and
    /// distribution).
    fn set_trial_param_checked(
        &self,
        trial_id: i64,
        name: &str,
        internal: f64,
        distribution: &Distribution,
    ) -> Result<()> {
        self.write(|tx| {
            let (id, _, state) = trial_state(tx, trial_id, true)?;
            let existing = tx.query_opt(
                "SELECT param_value, distribution_json FROM trial_params WHERE trial_id = $1 AND param_name = $2",
                &[&id, &name],
            )?;
            let existing = existing
                .map(|r| {
                    let json: String = r.get::<_, Option<String>>(1).unwrap_or_default();
                    let value: Option<f64> = r.get(0);
                    Ok::<_, anyhow::Error>((Distribution::from_optuna_json(&json)?, value.unwrap_or(f64::NAN)))
                })
                .transpose()?;
            common::check_param(trial_id, state, name, internal, distribution, existing.as_ref().map(|(d, v)| (d, *v)))?;
            if existing.is_none() {
                tx.execute(
                    "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES ($1, $2, $3, $4)",
                    &[&id, &name, &internal, &distribution.to_optuna_json()],
                )?;
            }
            Ok(())
        })
    }

    /// Sets an attribute of a study in `table` (user or system attributes).
    fn set_study_attr(&self, table: &str, study_id: i64, key: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            let id = check_study(tx, study_id, false)?;
            set_attr(tx, table, "study_id", id, key, value)
        })
    }

    /// The attributes of a study in `table`, in key order.
    fn study_attrs(&self, table: &str, study_id: i64) -> Result<Vec<(String, Value)>> {
        self.write(|tx| {
            let id = check_study(tx, study_id, false)?;
            let rows =
                tx.query(&format!("SELECT key, value_json FROM {table} WHERE study_id = $1 ORDER BY key"), &[&id])?;
            rows.iter()
                .map(|r| {
                    let k: String = r.get::<_, Option<String>>(0).unwrap_or_default();
                    let json: String = r.get::<_, Option<String>>(1).unwrap_or_default();
                    let v = parse_json_lenient(&json).with_context(|| format!("study attribute '{k}': {json}"))?;
                    Ok((k, v))
                })
                .collect()
        })
    }

    /// Runs `f` in one READ COMMITTED transaction and commits it; a
    /// transaction aborted by a deadlock, a serialization failure or a unique
    /// key that another transaction inserted meanwhile is run again.
    fn write<T>(&self, mut f: impl FnMut(&mut Tx) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut guard = self.lock()?;
            let conn = guard.as_mut().expect("lock() connects");
            let result = (|| {
                let tx = conn.client.transaction();
                let tx = tx.with_context(|| format!("'{}': cannot begin", self.shown))?;
                let mut tx = Tx { tx, statements: &mut conn.statements };
                let out = f(&mut tx)?;
                tx.tx.commit().with_context(|| format!("'{}': cannot commit", self.shown))?;
                Ok(out)
            })();
            match result {
                Err(err) if attempt < RETRIES && is_retryable(&err) => {
                    drop(guard);
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(1 << attempt.min(6)));
                }
                Err(err) if conn.client.is_closed() => {
                    return Err(err.context(format!("lost the connection to PostgreSQL at '{}'", self.shown)));
                }
                other => return other,
            }
        }
    }
}

fn is_retryable(err: &anyhow::Error) -> bool {
    err.chain().filter_map(|e| e.downcast_ref::<postgres::Error>()).filter_map(|e| e.code()).any(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::UNIQUE_VIOLATION
    })
}

/// Creates the schema in a database (schema) without tables, or checks an
/// existing one.
fn init_schema(tx: &mut Tx) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])?;
    let tables: Vec<String> = tx
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if tables.is_empty() {
        tx.tx.batch_execute(SCHEMA_SQL)?;
        tx.execute(
            "INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, $1, $2)",
            &[&(SCHEMA_VERSION as i32), &LIBRARY_VERSION],
        )?;
        tx.execute("INSERT INTO alembic_version (version_num) VALUES ($1)", &[&ALEMBIC_HEAD])?;
        return Ok(());
    }
    let missing = common::missing_tables(&tables);
    if !missing.is_empty() {
        bail!("the database has tables but is not an Optuna storage (missing tables: {})", missing.join(", "));
    }
    let revisions: Vec<String> =
        tx.query("SELECT version_num::text FROM alembic_version", &[])?.iter().map(|r| r.get(0)).collect();
    if revisions != [ALEMBIC_HEAD] {
        bail!(
            "Optuna schema revision {revisions:?}, but only {ALEMBIC_HEAD} is supported \
             (an older database can be upgraded with `optuna storage upgrade --storage URL`)"
        );
    }
    let schema: Option<i32> = tx.query_opt("SELECT schema_version FROM version_info", &[])?.and_then(|r| r.get(0));
    if schema != Some(SCHEMA_VERSION as i32) {
        bail!("Optuna schema_version {schema:?}, expected {SCHEMA_VERSION}");
    }
    Ok(())
}

/// Our ids are `i64`; Optuna's keys are PostgreSQL `integer`s. An id out of
/// that range names no row.
fn key(id: i64, missing: fn(i64) -> anyhow::Error) -> Result<i32> {
    i32::try_from(id).map_err(|_| missing(id))
}

fn load_directions(tx: &mut Tx, study_id: i32) -> Result<Vec<Direction>> {
    tx.query("SELECT direction::text FROM study_directions WHERE study_id = $1 ORDER BY objective", &[&study_id])?
        .iter()
        .map(|r| common::parse_direction(r.get(0)))
        .collect()
}

fn check_study(tx: &mut Tx, study_id: i64, lock: bool) -> Result<i32> {
    let key = key(study_id, no_study)?;
    let sql = if lock {
        "SELECT study_id FROM studies WHERE study_id = $1 FOR UPDATE"
    } else {
        "SELECT study_id FROM studies WHERE study_id = $1"
    };
    tx.query_opt(sql, &[&key])?.map(|_| key).ok_or_else(|| no_study(study_id))
}

/// (study_id, state) of a trial; `lock` takes its row lock until commit.
fn trial_state(tx: &mut Tx, trial_id: i64, lock: bool) -> Result<(i32, i32, TrialState)> {
    let key = key(trial_id, no_trial)?;
    let sql = if lock {
        "SELECT study_id, state::text FROM trials WHERE trial_id = $1 FOR UPDATE"
    } else {
        "SELECT study_id, state::text FROM trials WHERE trial_id = $1"
    };
    let row = tx.query_opt(sql, &[&key])?.ok_or_else(|| no_trial(trial_id))?;
    let study: Option<i32> = row.get(0);
    Ok((key, study.unwrap_or_default(), parse_state(row.get(1))?))
}

/// Upserts a key of one of the four `*_attributes` tables.
fn set_attr(tx: &mut Tx, table: &str, owner: &str, owner_id: i32, key: &str, value: &Value) -> Result<()> {
    let json = serde_json::to_string(value)?;
    tx.execute(
        &format!(
            "INSERT INTO {table} ({owner}, key, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT ({owner}, key) DO UPDATE SET value_json = excluded.value_json"
        ),
        &[&owner_id, &key, &json],
    )?;
    Ok(())
}

/// The columns of [`parse_trial_row`]: a trial (table alias `t`) with its
/// params, values and attributes as arrays, so that one statement (one round
/// trip, one snapshot) reads whole trials.
fn trial_columns() -> String {
    let detail = |expr: &str, table: &str, order: &str| {
        format!("ARRAY(SELECT {expr} FROM {table} x WHERE x.trial_id = t.trial_id ORDER BY {order})")
    };
    let columns = [
        detail("x.param_name", "trial_params", "x.param_id"),
        detail("x.param_value", "trial_params", "x.param_id"),
        detail("x.distribution_json", "trial_params", "x.param_id"),
        detail("x.objective", "trial_values", "x.objective"),
        detail("x.value", "trial_values", "x.objective"),
        detail("x.value_type::text", "trial_values", "x.objective"),
        detail("x.key", "trial_user_attributes", "x.key"),
        detail("x.value_json", "trial_user_attributes", "x.key"),
        detail("x.key", "trial_system_attributes", "x.key"),
        detail("x.value_json", "trial_system_attributes", "x.key"),
    ];
    format!("t.trial_id, t.number, t.state::text, t.datetime_start, t.datetime_complete, {}", columns.join(", "))
}

/// One trial by id ($1).
fn trial_sql() -> String {
    format!("SELECT {} FROM trials t WHERE t.trial_id = $1", trial_columns())
}

/// What may have changed in study $1: its trials with an id above $2 or in
/// the array $3, after the study's trial count, in number order. The study's
/// row comes even without such trials (NULL trial columns), and none comes
/// for an unknown study.
fn changed_trials_sql() -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM trials c WHERE c.study_id = $1), {} \
         FROM studies s LEFT JOIN trials t ON t.study_id = s.study_id AND (t.trial_id > $2 OR t.trial_id = ANY($3)) \
         WHERE s.study_id = $1 ORDER BY t.number, t.trial_id",
        trial_columns()
    )
}

/// A trial from the columns of [`trial_columns`], starting at `at`; `None`
/// when its id is NULL (no trial).
fn parse_trial_row(r: &Row, at: usize) -> Result<Option<FrozenTrial>> {
    let Some(id) = r.get::<_, Option<i32>>(at) else { return Ok(None) };
    let number: Option<i32> = r.get(at + 1);
    let number = number.with_context(|| format!("trial {id} has no number"))?;
    let start: Option<NaiveDateTime> = r.get(at + 3);
    let complete: Option<NaiveDateTime> = r.get(at + 4);
    let mut trial = FrozenTrial {
        id: id.into(),
        number: u64::try_from(number).with_context(|| format!("trial {id} has number {number}"))?,
        state: parse_state(r.get(at + 2))?,
        params: BTreeMap::new(),
        values: None,
        user_attrs: BTreeMap::new(),
        system_attrs: BTreeMap::new(),
        datetime_start: start.map(|t| t.and_utc()),
        datetime_complete: complete.map(|t| t.and_utc()),
    };
    let names: Vec<Option<String>> = r.get(at + 5);
    let param_values: Vec<Option<f64>> = r.get(at + 6);
    let distributions: Vec<Option<String>> = r.get(at + 7);
    for ((name, value), json) in names.into_iter().zip(param_values).zip(distributions) {
        let name = name.unwrap_or_default();
        let json = json.unwrap_or_default();
        let dist = Distribution::from_optuna_json(&json).with_context(|| format!("trial {id}, parameter '{name}'"))?;
        let value = value.with_context(|| format!("trial {id}, parameter '{name}' is NULL"))?;
        trial.params.insert(name, (dist, value));
    }
    let objectives: Vec<i32> = r.get(at + 8);
    let values: Vec<Option<f64>> = r.get(at + 9);
    let kinds: Vec<String> = r.get(at + 10);
    for ((objective, value), kind) in objectives.into_iter().zip(values).zip(kinds) {
        let value = stored_to_value(value, &kind).with_context(|| format!("trial {id}, objective {objective}"))?;
        common::push_value(&mut trial, objective.into(), value)?;
    }
    for (column, user) in [(at + 11, true), (at + 13, false)] {
        let keys: Vec<Option<String>> = r.get(column);
        let jsons: Vec<Option<String>> = r.get(column + 1);
        for (key, json) in keys.into_iter().zip(jsons) {
            let (key, json) = (key.unwrap_or_default(), json.unwrap_or_default());
            let value = parse_json_lenient(&json).with_context(|| format!("trial {id}, attribute '{key}': {json}"))?;
            if user { &mut trial.user_attrs } else { &mut trial.system_attrs }.insert(key, value);
        }
    }
    Ok(Some(trial))
}

impl Storage for PostgresStorage {
    fn create_or_load_study(&self, name: &str, directions: &[Direction]) -> Result<StudyInfo> {
        self.write(|tx| {
            if let Some(row) = tx.query_opt("SELECT study_id FROM studies WHERE study_name = $1", &[&name])? {
                let id: i32 = row.get(0);
                let existing = load_directions(tx, id)?;
                common::check_directions(name, Some(&existing), directions)?;
                return Ok(StudyInfo { id: id.into(), name: name.to_string(), directions: existing });
            }
            common::check_directions(name, None, directions)?;
            // A racing worker that inserts the same name first makes this a
            // unique violation: `write` runs the transaction again, which then
            // loads the study.
            let id: i32 =
                tx.query("INSERT INTO studies (study_name) VALUES ($1) RETURNING study_id", &[&name])?[0].get(0);
            for (objective, d) in directions.iter().enumerate() {
                tx.execute(
                    "INSERT INTO study_directions (direction, study_id, objective) VALUES ($1::text::studydirection, $2, $3)",
                    &[&common::direction_name(*d), &id, &(objective as i32)],
                )?;
            }
            Ok(StudyInfo { id: id.into(), name: name.to_string(), directions: directions.to_vec() })
        })
    }

    fn load_study(&self, name: &str) -> Result<Option<StudyInfo>> {
        self.write(|tx| {
            let Some(row) = tx.query_opt("SELECT study_id FROM studies WHERE study_name = $1", &[&name])? else {
                return Ok(None);
            };
            let id: i32 = row.get(0);
            Ok(Some(StudyInfo { id: id.into(), name: name.to_string(), directions: load_directions(tx, id)? }))
        })
    }

    fn list_studies(&self) -> Result<Vec<StudyInfo>> {
        self.write(|tx| {
            let rows = tx.query("SELECT study_id, study_name FROM studies ORDER BY study_id", &[])?;
            rows.iter()
                .map(|r| {
                    let id: i32 = r.get(0);
                    Ok(StudyInfo { id: id.into(), name: r.get(1), directions: load_directions(tx, id)? })
                })
                .collect()
        })
    }

    fn delete_study(&self, study_id: i64) -> Result<()> {
        self.write(|tx| {
            let id = check_study(tx, study_id, true)?;
            for table in common::TRIAL_TABLES {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE trial_id IN (SELECT trial_id FROM trials WHERE study_id = $1)"),
                    &[&id],
                )?;
            }
            for table in common::STUDY_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE study_id = $1"), &[&id])?;
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
        let budget = budget.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let start = common::now().naive_utc();
        self.write(|tx| {
            // The study's row lock serialises trial creation in the study:
            // the next statement (a snapshot taken after the lock is granted)
            // sees every trial committed before.
            let id = check_study(tx, study_id, true)?;
            // Count, check the budget and insert in one statement, with the
            // first heartbeat (by the server's clock, as all heartbeats).
            let row = tx.query_opt(CREATE_TRIAL_SQL, &[&id, &INTERRUPTED_KEY, &budget, &start])?;
            Ok(row.map(|r| (i64::from(r.get::<_, i32>(0)), r.get::<_, i32>(1) as u64)))
        })
    }

    fn set_trial_param(&self, trial_id: i64, name: &str, internal: f64, distribution: &Distribution) -> Result<()> {
        self.set_trial_params(trial_id, &[(name, internal, distribution)])
    }

    fn set_trial_params(&self, trial_id: i64, params: &[(&str, f64, &Distribution)]) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        // One statement for the common case: new names with legal values on
        // a running trial (share-locked, as in `set_trial_attrs_fast`).
        // Anything else (a repeated name, a finished trial, a bad value)
        // takes the checked path below, one by one, which explains it.
        if let Ok(id) = i32::try_from(trial_id)
            && params.iter().all(|(_, internal, distribution)| distribution.contains(*internal))
        {
            let names: Vec<&str> = params.iter().map(|p| p.0).collect();
            let values: Vec<f64> = params.iter().map(|p| p.1).collect();
            let distributions: Vec<String> = params.iter().map(|p| p.2.to_optuna_json()).collect();
            let inserted = self.execute_one(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                 SELECT t.trial_id, p.name, p.value, p.distribution FROM trials t, \
                 unnest($2::text[], $3::float8[], $4::text[]) WITH ORDINALITY AS p(name, value, distribution, n) \
                 WHERE t.trial_id = $1 AND t.state IN ('RUNNING', 'WAITING') ORDER BY p.n FOR SHARE OF t \
                 ON CONFLICT (trial_id, param_name) DO NOTHING",
                &[&id, &names, &values, &distributions],
            )?;
            if inserted == params.len() as u64 {
                return Ok(());
            }
        }
        for (name, internal, distribution) in params {
            self.set_trial_param_checked(trial_id, name, *internal, distribution)?;
        }
        Ok(())
    }

    fn set_trial_user_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_attrs("trial_user_attributes", trial_id, &[(key, value.clone())])
    }

    fn set_trial_user_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs("trial_user_attributes", trial_id, attrs)
    }

    fn set_trial_system_attr(&self, trial_id: i64, key: &str, value: &Value) -> Result<()> {
        self.set_trial_attrs("trial_system_attributes", trial_id, &[(key, value.clone())])
    }

    fn set_trial_system_attrs(&self, trial_id: i64, attrs: &[(&str, Value)]) -> Result<()> {
        self.set_trial_attrs("trial_system_attributes", trial_id, attrs)
    }

    fn set_trial_intermediate_value(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        let (stored, kind) = common::intermediate_to_stored(value);
        let id = i32::try_from(trial_id).with_context(|| format!("trial id {trial_id} is out of range"))?;
        let step = i32::try_from(step).with_context(|| format!("step {step} is out of range"))?;
        let changed = self.execute_one(
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) \
             SELECT t.trial_id, $2, $3, $4::text::trialintermediatevaluetype FROM trials t \
             WHERE t.trial_id = $1 AND t.state IN ('RUNNING', 'WAITING') FOR SHARE OF t \
             ON CONFLICT (trial_id, step) DO UPDATE SET intermediate_value = excluded.intermediate_value, \
             intermediate_value_type = excluded.intermediate_value_type",
            &[&id, &step, &stored, &kind],
        )?;
        if changed == 1 {
            return Ok(());
        }
        // Explain why not: no such trial, or one already finished.
        self.write(|tx| {
            let (_, _, state) = trial_state(tx, trial_id, false)?;
            common::check_updatable(trial_id, state)
        })
    }

    fn intermediate_values(&self, study_id: i64) -> Result<IntermediateValues> {
        let id = i32::try_from(study_id).with_context(|| format!("study id {study_id} is out of range"))?;
        let rows = self.query_one_statement(
            "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type::text \
             FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = $1",
            &[&id],
        )?;
        let mut out = IntermediateValues::new();
        for row in rows {
            let (trial_id, step): (i32, i32) = (row.get(0), row.get(1));
            let value = common::stored_to_intermediate(row.get(2), row.get::<_, &str>(3))?;
            out.entry(trial_id as i64).or_default().insert(step as u64, value);
        }
        Ok(out)
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, values: Option<&[f64]>) -> Result<bool> {
        // One statement for the common case: a RUNNING trial finished with
        // legal arguments (the number of values checked against the study's
        // directions in the statement, everything else here). The UPDATE's
        // row lock and condition make it the compare-and-set. Anything else
        // takes the checked path below, which explains it or answers `false`.
        if let Ok(id) = i32::try_from(trial_id)
            && common::check_finish(trial_id, state, values, values.map_or(0, <[f64]>::len)).is_ok()
        {
            let n_values = values.map(|v| v.len() as i32);
            let (stored, kinds): (Vec<Option<f64>>, Vec<&str>) =
                values.unwrap_or_default().iter().map(|v| value_to_stored(*v)).unzip();
            let finished = self.query_one_statement(
                "WITH done AS (UPDATE trials t SET state = $2::text::trialstate, datetime_complete = $3 \
                 WHERE t.trial_id = $1 AND t.state = 'RUNNING' AND ($4::integer IS NULL \
                 OR $4 = (SELECT COUNT(*) FROM study_directions d WHERE d.study_id = t.study_id)) \
                 RETURNING t.trial_id), \
                 stored AS (INSERT INTO trial_values (trial_id, objective, value, value_type) \
                 SELECT done.trial_id, (v.n - 1)::integer, v.value, v.kind::trialvaluetype \
                 FROM done, unnest($5::float8[], $6::text[]) WITH ORDINALITY AS v(value, kind, n) \
                 ON CONFLICT (trial_id, objective) DO UPDATE SET value = excluded.value, value_type = excluded.value_type) \
                 SELECT trial_id FROM done",
                &[&id, &state.name(), &common::now().naive_utc(), &n_values, &stored, &kinds],
            )?;
            if finished.len() == 1 {
                return Ok(true);
            }
        }
        self.write(|tx| {
            // The row lock makes this a compare-and-set against a concurrent
            // `fail_stale_trials` or another worker.
            let (id, study_id, current) = trial_state(tx, trial_id, true)?;
            let n_objectives = load_directions(tx, study_id)?.len();
            common::check_finish(trial_id, state, values, n_objectives)?;
            if current != TrialState::Running {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE trials SET state = $1::text::trialstate, datetime_complete = $2 \
                 WHERE trial_id = $3 AND state = 'RUNNING'",
                &[&state.name(), &common::now().naive_utc(), &id],
            )?;
            if changed != 1 {
                return Ok(false);
            }
            for (objective, v) in values.unwrap_or_default().iter().enumerate() {
                let (value, kind) = value_to_stored(*v);
                tx.execute(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) \
                     VALUES ($1, $2, $3, $4::text::trialvaluetype) ON CONFLICT (trial_id, objective) \
                     DO UPDATE SET value = excluded.value, value_type = excluded.value_type",
                    &[&id, &(objective as i32), &value, &kind],
                )?;
            }
            Ok(true)
        })
    }

    fn get_trial(&self, trial_id: i64) -> Result<FrozenTrial> {
        if let Some(trial) = self.cache.finished(trial_id) {
            return Ok(trial);
        }
        let id = key(trial_id, no_trial)?;
        let rows = self.query_one_statement(&trial_sql(), &[&id])?;
        let trial = rows.first().map(|r| parse_trial_row(r, 0)).transpose()?.flatten();
        let trial = trial.ok_or_else(|| no_trial(trial_id))?;
        self.cache.remember(&trial);
        Ok(trial)
    }

    fn get_all_trials(&self, study_id: i64) -> Result<Vec<FrozenTrial>> {
        Ok(self.get_all_trials_shared(study_id)?.iter().map(|t| FrozenTrial::clone(t)).collect())
    }

    fn get_all_trials_shared(&self, study_id: i64) -> Result<Vec<Arc<FrozenTrial>>> {
        let id = key(study_id, no_study)?;
        self.cache.all_trials(study_id, |after, ids| {
            // Ids beyond an `integer` name no trial of ours.
            let after: i32 = after.map_or(i32::MIN, |a| i32::try_from(a).unwrap_or(i32::MAX));
            let ids: Vec<i32> = ids.iter().filter_map(|id| i32::try_from(*id).ok()).collect();
            // One statement: what may have changed, and the study's trial count.
            let rows = self.query_one_statement(&changed_trials_sql(), &[&id, &after, &ids])?;
            let first = rows.first().ok_or_else(|| no_study(study_id))?;
            let total: i64 = first.get(0);
            let trials = rows.iter().filter_map(|r| parse_trial_row(r, 1).transpose()).collect::<Result<_>>()?;
            Ok(Changed { trials, total: total as u64 })
        })
    }

    fn record_heartbeat(&self, trial_id: i64) -> Result<()> {
        let id = key(trial_id, no_trial)?;
        let written = self.execute_one(
            "INSERT INTO trial_heartbeats (trial_id, heartbeat) \
             SELECT trial_id, clock_timestamp() AT TIME ZONE 'UTC' FROM trials WHERE trial_id = $1 \
             ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
            &[&id],
        )?;
        if written != 1 {
            return Err(no_trial(trial_id));
        }
        Ok(())
    }

    fn fail_stale_trials(&self, study_id: i64, grace: Duration) -> Result<Vec<u64>> {
        let grace_s = grace.as_secs_f64();
        let reason = Value::from(common::stale_reason(grace_s));
        self.write(|tx| {
            let id = check_study(tx, study_id, false)?;
            // Judged by the server's clock; a trial that never beat is judged
            // by its start. Each row is changed by one transaction only (the
            // `state = 'RUNNING'` condition is re-checked under its lock).
            let rows = tx.query(
                "UPDATE trials t SET state = 'FAIL', datetime_complete = $3 FROM trials s \
                 LEFT JOIN trial_heartbeats h ON h.trial_id = s.trial_id \
                 WHERE t.trial_id = s.trial_id AND s.study_id = $1 AND t.state = 'RUNNING' \
                 AND (COALESCE(h.heartbeat, s.datetime_start) IS NULL \
                      OR COALESCE(h.heartbeat, s.datetime_start) \
                         < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => $2)) \
                 RETURNING t.trial_id, t.number",
                &[&id, &grace_s, &common::now().naive_utc()],
            )?;
            let mut failed: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
            failed.sort();
            for (_, trial) in &failed {
                set_attr(tx, "trial_system_attributes", "trial_id", *trial, INTERRUPTED_KEY, &Value::Bool(true))?;
                set_attr(tx, "trial_user_attributes", "trial_id", *trial, FAIL_REASON_KEY, &reason)?;
            }
            Ok(failed.iter().map(|(number, _)| *number as u64).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("postgresql://snac:s3cret@db.example:5433/nas"), "postgresql://snac:***@db.example:5433/nas");
        assert_eq!(redact("postgresql://snac@db/nas"), "postgresql://snac@db/nas");
        assert_eq!(
            redact("postgres://db/nas?user=u&password=s3cret&sslmode=disable"),
            "postgres://db/nas?user=u&password=***&sslmode=disable"
        );
    }

    #[test]
    fn an_unreachable_server_is_named() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let e = format!("{:#}", PostgresStorage::open("postgresql://snac:pw@127.0.0.1:1/nas").err().unwrap());
        assert!(e.contains("postgresql://snac:***@127.0.0.1:1/nas") && e.contains("cannot connect"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
        let e = format!("{:#}", PostgresStorage::open("postgresql://snac@127.0.0.1:notaport/nas").err().unwrap());
        assert!(e.contains("notaport") && e.contains("not a valid PostgreSQL URL"), "{e}");
    }
}
