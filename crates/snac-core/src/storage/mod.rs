//! Where a study lives: the [`Storage`] trait and its backends (in memory, an
//! SQLite file, and a PostgreSQL database, both in Optuna's RDB schema, and a
//! journal file in Optuna's `JournalFileBackend` format). Every backend
//! passes the same conformance suite (`conformance.rs`).
//!
//! A storage is the only shared state of a search: samplers and workers read
//! the study from it, so a killed process loses nothing that was told.

mod cache;
mod common;
mod journal;
mod memory;
mod optuna_json;
mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use journal::{HEARTBEAT_KEY, JournalStorage};
pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

pub use crate::trial::FAIL_REASON_KEY;
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// System attribute (value `true`) of a trial that FAILed because its worker
/// stopped: its heartbeat went stale, or its process was found dead. Such a
/// trial does not count against a trial budget, so another takes its place.
pub const INTERRUPTED_KEY: &str = "snac:interrupted";

/// Study system attribute in which Optuna keeps the objective names (a JSON
/// list of strings, one per direction): `study.metric_names` and
/// optuna-dashboard read it.
pub const METRIC_NAMES_KEY: &str = "study:metric_names";

/// Whether a trial takes a place in a study's `n_trials` budget: every trial
/// except one FAILed as interrupted (RUNNING and WAITING ones count: they
/// hold their place while they run).
pub fn counts_against_budget(trial: &FrozenTrial) -> bool {
    !(trial.state == TrialState::Fail && trial.system_attrs.get(INTERRUPTED_KEY) == Some(&Value::Bool(true)))
}

/// Intermediate values by trial id, then by step.
pub type IntermediateValues = std::collections::BTreeMap<i64, std::collections::BTreeMap<u64, f64>>;

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

    /// Sets a system attribute of the study (Optuna's
    /// `study_system_attributes`, such as [`METRIC_NAMES_KEY`]).
    fn set_study_system_attr(&self, study_id: i64, key: &str, value: &Value) -> Result<()>;
    /// The system attributes of the study, in key order.
    fn study_system_attrs(&self, study_id: i64) -> Result<Vec<(String, Value)>>;

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

    /// Records a RUNNING trial's intermediate value at `step` (an epoch's
    /// validation accuracy), replacing one already there (Optuna's
    /// `set_trial_intermediate_value`; `trial.intermediate_values` in Optuna).
    fn set_trial_intermediate_value(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        let _ = (step, value);
        bail!("this storage cannot record intermediate values (trial id {trial_id})")
    }

    /// [`set_trial_intermediate_value`](Self::set_trial_intermediate_value)
    /// for several steps (a whole training curve), in one transaction where
    /// the backend has them.
    fn set_trial_intermediate_values(&self, trial_id: i64, values: &[(u64, f64)]) -> Result<()> {
        values.iter().try_for_each(|(step, value)| self.set_trial_intermediate_value(trial_id, *step, *value))
    }

    /// Every trial's intermediate values in study `study_id`: trial id →
    /// step → value.
    fn intermediate_values(&self, study_id: i64) -> Result<IntermediateValues> {
        let _ = study_id;
        Ok(IntermediateValues::new())
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

/// The storage URLs [`open`] accepts, for messages.
pub const ACCEPTED_URLS: &str = "memory: (or :memory:), sqlite:///relative/path.db, sqlite:////absolute/path.db, \
     postgresql://user@host[:port]/db (or postgres://), journal:///absolute/path.log, journal://relative/path.log, \
     or a path to an SQLite file such as study.db";

/// Where a storage URL points, as [`parse_url`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageUrl {
    Memory,
    Sqlite(std::path::PathBuf),
    /// The URL as given (libpq reads it).
    Postgres(String),
    /// An Optuna journal file.
    Journal(std::path::PathBuf),
}

/// Reads a storage URL without touching anything: `memory:` (or `:memory:`,
/// `memory`), `sqlite:///path.db` (SQLAlchemy's form, as Optuna takes it),
/// `postgresql://user@host/db` (or `postgres://`, `postgresql+driver://`),
/// `journal://` then a file path (`journal:///abs/study.log` is the absolute
/// `/abs/study.log`, `journal://study.log` the relative `study.log`; Optuna
/// has no URL for a journal, so this follows the path as written), or a plain
/// file path (SQLite). Anything else, such as an empty string,
/// `memory:xyz` or a path whose first part has a `:` (a mistyped URL), is an
/// error naming the value and the accepted forms.
pub fn parse_url(url: &str) -> Result<StorageUrl> {
    let shown = postgres::redact(url);
    if url == "memory:" || url == ":memory:" || url == "memory" {
        return Ok(StorageUrl::Memory);
    }
    if url.trim().is_empty() {
        bail!("storage URL '{url}' is empty; accepted: {ACCEPTED_URLS}");
    }
    if url.starts_with("memory:") || url.starts_with(":memory:") {
        bail!(
            "storage URL '{shown}': an in-memory storage is written memory: with nothing after it; accepted: {ACCEPTED_URLS}"
        );
    }
    // SQLAlchemy's spelling, as Optuna takes it: `sqlite:///x.db` is the
    // relative path `x.db`, `sqlite:////abs/x.db` the absolute `/abs/x.db`.
    if let Some(path) = url.strip_prefix("sqlite:///") {
        if path.is_empty() {
            bail!(
                "storage URL '{shown}' names no file; write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            );
        }
        return Ok(StorageUrl::Sqlite(path.into()));
    }
    if url.starts_with("sqlite:") {
        bail!("storage URL '{shown}': write sqlite:///relative/path.db or sqlite:////absolute/path.db");
    }
    if let Some(path) = url.strip_prefix("journal://") {
        if path.is_empty() || path == "/" {
            bail!("storage URL '{shown}' names no journal file; accepted: {ACCEPTED_URLS}");
        }
        return Ok(StorageUrl::Journal(path.into()));
    }
    if url.starts_with("journal:") {
        bail!("storage URL '{shown}': a journal is written journal:// then its path; accepted: {ACCEPTED_URLS}");
    }
    // SQLAlchemy names a driver after a `+` (`postgresql+psycopg2://`); we
    // have one driver, so any is accepted.
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.split('+').next().unwrap_or(scheme));
    if let Some("postgres" | "postgresql") = scheme {
        return Ok(StorageUrl::Postgres(url.to_string()));
    }
    if url.contains("://") {
        bail!("storage URL '{shown}' has an unknown scheme; accepted: {ACCEPTED_URLS}");
    }
    // A plain path, unless it reads as a mistyped URL: it starts with ':'
    // (`:::`), or names a scheme before a ':' (`postgres:host/db`).
    // `run:1/study.db` stays a path.
    let first = url.split('/').next().unwrap_or("");
    if let Some((scheme, _)) = first.split_once(':') {
        const SCHEMES: [&str; 11] = [
            "postgres",
            "postgresql",
            "sqlite",
            "sqlite3",
            "memory",
            "mysql",
            "redis",
            "journal",
            "file",
            "http",
            "https",
        ];
        let base = scheme.split('+').next().unwrap_or(scheme).to_ascii_lowercase();
        if scheme.is_empty() || SCHEMES.contains(&base.as_str()) {
            bail!(
                "storage URL '{shown}' is neither a URL nor a plain file path (the ':' in '{first}' reads as a \
                 mistyped URL; for a file of that name write ./{url}); accepted: {ACCEPTED_URLS}"
            );
        }
    }
    Ok(StorageUrl::Sqlite(url.into()))
}

/// Opens a storage from a URL read by [`parse_url`]. An SQLite file is
/// created, with Optuna's schema, if it does not exist; so is a journal file
/// (empty).
pub fn open(url: &str) -> Result<Arc<dyn Storage>> {
    Ok(match parse_url(url)? {
        StorageUrl::Memory => Arc::new(MemoryStorage::new()),
        StorageUrl::Sqlite(path) => {
            Arc::new(SqliteStorage::open(&path).with_context(|| format!("opening storage '{url}'"))?)
        }
        StorageUrl::Postgres(url) => Arc::new(PostgresStorage::open(&url)?),
        StorageUrl::Journal(path) => {
            Arc::new(JournalStorage::open(&path).with_context(|| format!("opening storage '{url}'"))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(url: &str) -> String {
        format!("{:#}", open(url).err().unwrap())
    }

    #[test]
    fn urls_are_read_or_refused_with_the_accepted_forms() {
        assert_eq!(parse_url("memory:").unwrap(), StorageUrl::Memory);
        assert_eq!(parse_url(":memory:").unwrap(), StorageUrl::Memory);
        assert_eq!(parse_url("sqlite:///a/b.db").unwrap(), StorageUrl::Sqlite("a/b.db".into()));
        assert_eq!(parse_url("sqlite:////abs/b.db").unwrap(), StorageUrl::Sqlite("/abs/b.db".into()));
        assert_eq!(parse_url("results/study.db").unwrap(), StorageUrl::Sqlite("results/study.db".into()));
        assert_eq!(parse_url("./odd:name.db").unwrap(), StorageUrl::Sqlite("./odd:name.db".into()));
        assert_eq!(parse_url("/tmp/a:b.db").unwrap(), StorageUrl::Sqlite("/tmp/a:b.db".into()));
        assert_eq!(parse_url("run:1/study.db").unwrap(), StorageUrl::Sqlite("run:1/study.db".into()));
        assert!(matches!(parse_url("postgresql+psycopg2://u@h/db").unwrap(), StorageUrl::Postgres(_)));
        assert_eq!(parse_url("journal:///abs/s.log").unwrap(), StorageUrl::Journal("/abs/s.log".into()));
        assert_eq!(parse_url("journal://runs/s.log").unwrap(), StorageUrl::Journal("runs/s.log".into()));
        for (url, says) in [
            ("", "storage URL '' is empty"),
            ("  ", "is empty"),
            ("memory:xyz", "storage URL 'memory:xyz': an in-memory storage is written memory:"),
            (":memory:x", "in-memory"),
            (":::", "storage URL ':::' is neither a URL nor a plain file path"),
            ("postgres:host/db", "the ':' in 'postgres:host' reads as a mistyped URL"),
            ("Memory:/x", "reads as a mistyped URL"),
            (":memory", "reads as a mistyped URL"),
            ("sqlite:///", "names no file"),
            ("sqlite://x.db", "write sqlite:///relative/path.db"),
            ("mysql://u:secret@h/db", "storage URL 'mysql://u:***@h/db' has an unknown scheme"),
            ("redis://h", "unknown scheme; accepted: memory:"),
            ("journal://", "storage URL 'journal://' names no journal file"),
            ("journal:///", "names no journal file"),
            ("journal:/x.log", "a journal is written journal:// then its path"),
        ] {
            let e = err(url);
            assert!(e.contains(says), "{url:?}: {e}");
            assert!(e.contains("sqlite:///"), "{url:?} does not list the accepted forms: {e}");
            assert!(!e.contains("accepted:") || e.contains("journal:///absolute/path.log"), "{url:?}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn sqlite_locations_are_checked_before_sqlite_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let e = err(path);
        assert!(e.contains(&format!("SQLite storage '{path}' is a directory")) && e.contains("study.db"), "{e}");
        let e = err(&format!("{path}/missing/study.db"));
        assert!(e.contains(&format!("directory '{path}/missing' does not exist")), "{e}");
        let e = err(&format!("sqlite:///{path}/missing/study.db"));
        assert!(e.contains("does not exist"), "{e}");
        // A read-only directory (root writes anyway: then there is nothing to see).
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let db = ro.join("study.db");
        if tempfile::tempfile_in(&ro).is_ok() {
            eprintln!("skipped the read-only directory check: this user writes anywhere");
        } else {
            let e = err(db.to_str().unwrap());
            assert!(e.contains(&format!("directory '{}' is not writable", ro.display())), "{e}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(open(db.to_str().unwrap()).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any string is read or refused, never a panic; a refusal names the accepted forms.
        #[test]
        fn any_url_parses_or_is_refused(url in "\\PC{0,40}") {
            match parse_url(&url) {
                Ok(_) => {}
                Err(e) => prop_assert!(format!("{e:#}").contains("sqlite:///"), "{e:#}"),
            }
            let _ = redact_url(&url);
        }

        /// URL-like strings: schemes, colons, slashes and `@` mixed.
        #[test]
        fn url_like_strings_never_panic(url in "(memory|sqlite|postgres|postgresql|:|/|@|\\+|x|\\.){0,12}") {
            let _ = parse_url(&url);
            let _ = redact_url(&url);
            if let Ok(StorageUrl::Postgres(u)) = parse_url(&url) {
                // The connection string is checked before any connection.
                let _ = u.parse::<::postgres::Config>();
            }
        }
    }
}
