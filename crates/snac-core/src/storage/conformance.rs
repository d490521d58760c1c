//! One conformance suite for every [`Storage`] backend (after Optuna's
//! `testing/storages.py`): each test below is a function of a [`Fixture`],
//! and `suite!` instantiates all of them for every backend, so the backends
//! cannot drift apart.

use super::{JournalStorage, MemoryStorage, PostgresStorage, SqliteStorage, Storage};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use Direction::{Maximize, Minimize};

/// A backend under test.
struct Fixture {
    storage: Arc<dyn Storage>,
    /// Another handle on the same data: a separate connection for databases.
    connect: Box<dyn Fn() -> Arc<dyn Storage>>,
    /// Whether the data outlives the handle (a file): then `restart` drops
    /// every handle and opens the data anew, as a new process would.
    durable: bool,
    _dir: Option<tempfile::TempDir>,
    /// Dropped last: removes a PostgreSQL test schema.
    _schema: Option<Arc<PgSchema>>,
}

/// A PostgreSQL schema of its own for one test (so tests run in parallel on
/// one database), dropped with everything in it at the end.
pub(super) struct PgSchema {
    pub config: ::postgres::Config,
    pub name: String,
}

impl PgSchema {
    /// A new, empty schema in the database of `$SNAC_PG_URL`; `None` (after
    /// `missing_test_dependency`) when the variable is not set.
    pub fn create() -> Option<PgSchema> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let Ok(url) = std::env::var("SNAC_PG_URL") else {
            crate::missing_test_dependency("SNAC_PG_URL is not set (a PostgreSQL database for the storage tests)");
            return None;
        };
        let config: ::postgres::Config = url.parse().unwrap();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        // An identifier we make up, not a value: DDL takes no parameters.
        let name = format!("snac_test_{}_{n}_{nanos}", std::process::id());
        let mut client = config.connect(::postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        Some(PgSchema { config, name })
    }

    /// A new connection whose tables live in this schema.
    pub fn open(&self) -> PostgresStorage {
        let mut config = self.config.clone();
        config.options(&format!("-c search_path={}", self.name));
        PostgresStorage::with_config(config, format!("$SNAC_PG_URL, schema {}", self.name)).unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = self.config.connect(::postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

impl Fixture {
    fn memory() -> Fixture {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let shared = storage.clone();
        Fixture { storage, connect: Box::new(move || shared.clone()), durable: false, _dir: None, _schema: None }
    }

    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("study.db");
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&path).unwrap());
        let connect = Box::new(move || Arc::new(SqliteStorage::open(&path).unwrap()) as Arc<dyn Storage>);
        Fixture { storage, connect, durable: true, _dir: Some(dir), _schema: None }
    }

    fn journal() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("study.log");
        let storage: Arc<dyn Storage> = Arc::new(JournalStorage::open(&path).unwrap());
        let connect = Box::new(move || Arc::new(JournalStorage::open(&path).unwrap()) as Arc<dyn Storage>);
        Fixture { storage, connect, durable: true, _dir: Some(dir), _schema: None }
    }

    fn postgres() -> Option<Fixture> {
        let schema = Arc::new(PgSchema::create()?);
        let storage: Arc<dyn Storage> = Arc::new(schema.open());
        let shared = schema.clone();
        let connect = Box::new(move || Arc::new(shared.open()) as Arc<dyn Storage>);
        Some(Fixture { storage, connect, durable: true, _dir: None, _schema: Some(schema) })
    }

    /// A "process restart": for a file, every connection is closed and the
    /// file opened again.
    fn restart(&mut self) {
        if self.durable {
            self.storage = Arc::new(MemoryStorage::new()); // drops the old connection
            self.storage = (self.connect)();
        }
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $test() { super::$test(super::Fixture::memory()) } )*
        }
        mod sqlite {
            $( #[test] fn $test() { super::$test(super::Fixture::sqlite()) } )*
        }
        mod journal {
            $( #[test] fn $test() { super::$test(super::Fixture::journal()) } )*
        }
        mod postgres {
            $( #[test] fn $test() { if let Some(f) = super::Fixture::postgres() { super::$test(f) } } )*
        }
    };
}

suite!(
    study_create_and_load,
    study_direction_mismatch,
    study_user_attrs,
    study_system_attrs,
    intermediate_values_round_trip,
    list_and_delete_studies,
    trial_numbers_per_study,
    new_trial_is_running,
    params_round_trip,
    param_checks,
    params_in_one_batch,
    attrs_round_trip,
    attrs_in_one_batch,
    values_round_trip_with_infinities,
    finish_checks_its_arguments,
    finish_is_compare_and_set,
    finished_trial_is_frozen,
    heartbeats_and_stale_trials,
    unknown_ids_are_errors,
    concurrent_trial_creation,
    budget_is_study_wide_and_exact,
    restart_keeps_everything,
    reads_follow_other_writers,
    reads_follow_a_deleted_study,
);

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

fn categorical() -> Distribution {
    Distribution::Categorical { choices: vec![Value::Null, json!("relu"), json!(8), json!("tanh"), json!(0.5)] }
}

fn study_create_and_load(f: Fixture) {
    let s = &f.storage;
    assert_eq!(s.load_study("a").unwrap(), None);
    let a = s.create_or_load_study("a", &[Minimize, Maximize]).unwrap();
    assert_eq!((a.name.as_str(), a.directions.as_slice()), ("a", [Minimize, Maximize].as_slice()));
    assert_eq!(s.create_or_load_study("a", &[Minimize, Maximize]).unwrap(), a);
    assert_eq!(s.load_study("a").unwrap(), Some(a.clone()));
    let b = s.create_or_load_study("b", &[Maximize]).unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!((*f.connect)().load_study("b").unwrap(), Some(b));
    assert!(err_text(s.create_or_load_study("c", &[])).contains("direction"));
    assert_eq!(s.load_study("c").unwrap(), None);
}

fn study_direction_mismatch(f: Fixture) {
    let s = &f.storage;
    s.create_or_load_study("nas", &[Minimize, Maximize]).unwrap();
    let e = err_text(s.create_or_load_study("nas", &[Maximize]));
    assert!(e.contains("'nas'") && e.contains("[MINIMIZE, MAXIMIZE]") && e.contains("[MAXIMIZE]"), "{e}");
    let e = err_text(s.create_or_load_study("nas", &[Maximize, Minimize]));
    assert!(e.contains("[MINIMIZE, MAXIMIZE]") && e.contains("[MAXIMIZE, MINIMIZE]"), "{e}");
    assert_eq!(s.load_study("nas").unwrap().unwrap().directions, [Minimize, Maximize]);
}

fn study_user_attrs(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let other = s.create_or_load_study("b", &[Minimize]).unwrap();
    assert!(s.study_user_attrs(st.id).unwrap().is_empty());
    s.set_study_user_attr(st.id, "z", &json!({"yaml": "cfg.yml", "n": [1, 2]})).unwrap();
    s.set_study_user_attr(st.id, "a", &json!("first")).unwrap();
    s.set_study_user_attr(st.id, "a", &json!(null)).unwrap();
    s.set_study_user_attr(other.id, "a", &json!(7)).unwrap();
    assert_eq!(
        s.study_user_attrs(st.id).unwrap(),
        vec![("a".to_string(), json!(null)), ("z".to_string(), json!({"yaml": "cfg.yml", "n": [1, 2]}))]
    );
    assert_eq!(s.study_user_attrs(other.id).unwrap(), vec![("a".to_string(), json!(7))]);
}

/// System attributes are kept apart from the user attributes, in the table
/// Optuna reads them from (`study:metric_names` names the objectives).
fn study_system_attrs(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Maximize, Minimize]).unwrap();
    let other = s.create_or_load_study("b", &[Minimize]).unwrap();
    assert!(s.study_system_attrs(st.id).unwrap().is_empty());
    let names = json!(["performance_metric", "bops"]);
    s.set_study_system_attr(st.id, super::METRIC_NAMES_KEY, &json!(["x", "y"])).unwrap();
    s.set_study_system_attr(st.id, super::METRIC_NAMES_KEY, &names).unwrap();
    s.set_study_system_attr(st.id, "a", &json!({"nested": [1.5, null, "ü"]})).unwrap();
    s.set_study_system_attr(other.id, "a", &json!(7)).unwrap();
    s.set_study_user_attr(st.id, "u", &json!("user")).unwrap();
    assert_eq!(
        s.study_system_attrs(st.id).unwrap(),
        vec![
            ("a".to_string(), json!({"nested": [1.5, null, "ü"]})),
            (super::METRIC_NAMES_KEY.to_string(), names.clone()),
        ]
    );
    assert_eq!(s.study_system_attrs(other.id).unwrap(), vec![("a".to_string(), json!(7))]);
    assert_eq!(s.study_user_attrs(st.id).unwrap(), vec![("u".to_string(), json!("user"))]);
    assert_eq!((*f.connect)().study_system_attrs(st.id).unwrap().len(), 2, "seen by another connection");
    let bad = other.id + 1000;
    assert!(err_text(s.set_study_system_attr(bad, "k", &json!(1))).contains(&bad.to_string()));
    assert!(s.study_system_attrs(bad).is_err());
    // Deleting the study deletes its system attributes.
    s.delete_study(st.id).unwrap();
    let again = s.create_or_load_study("a", &[Minimize]).unwrap();
    assert!(s.study_system_attrs(again.id).unwrap().is_empty());
}

fn intermediate_values_round_trip(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Maximize, Minimize]).unwrap();
    let other = s.create_or_load_study("b", &[Maximize]).unwrap();
    let (t0, _) = s.create_trial(st.id).unwrap();
    let (t1, _) = s.create_trial(st.id).unwrap();
    let (elsewhere, _) = s.create_trial(other.id).unwrap();
    assert!(s.intermediate_values(st.id).unwrap().is_empty());
    s.set_trial_intermediate_value(t0, 1, 0.5).unwrap();
    s.set_trial_intermediate_value(t0, 2, 0.25).unwrap();
    s.set_trial_intermediate_value(t0, 2, 0.75).unwrap(); // replaces
    s.set_trial_intermediate_value(t1, 1, f64::NAN).unwrap();
    s.set_trial_intermediate_value(t1, 3, f64::NEG_INFINITY).unwrap();
    s.set_trial_intermediate_value(elsewhere, 1, 9.0).unwrap();
    let values = (*f.connect)().intermediate_values(st.id).unwrap();
    assert_eq!(values.len(), 2, "only this study's trials: {values:?}");
    assert_eq!(values[&t0].iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), vec![(1, 0.5), (2, 0.75)]);
    assert!(values[&t1][&1].is_nan());
    assert_eq!(values[&t1][&3], f64::NEG_INFINITY);
    // A finished trial's curve is frozen, as in Optuna.
    assert!(s.finish_trial(t0, TrialState::Pruned, None).unwrap());
    assert!(err_text(s.set_trial_intermediate_value(t0, 3, 0.9)).contains(&t0.to_string()));
    assert_eq!(s.intermediate_values(st.id).unwrap()[&t0].len(), 2);
    let bad = elsewhere + 1000;
    assert!(err_text(s.set_trial_intermediate_value(bad, 1, 0.1)).contains(&bad.to_string()));
}

fn list_and_delete_studies(f: Fixture) {
    let s = &f.storage;
    let a = s.create_or_load_study("a", &[Minimize]).unwrap();
    let b = s.create_or_load_study("b", &[Maximize, Minimize]).unwrap();
    assert_eq!(s.list_studies().unwrap(), vec![a.clone(), b.clone()]);
    let (t, _) = s.create_trial(a.id).unwrap();
    s.set_trial_param(t, "x", 1.0, &Distribution::Int { low: 0, high: 3, step: 1 }).unwrap();
    s.set_trial_user_attr(t, "u", &json!(1)).unwrap();
    s.set_trial_system_attr(t, "s", &json!(2)).unwrap();
    s.record_heartbeat(t).unwrap();
    s.finish_trial(t, TrialState::Complete, Some(&[1.0])).unwrap();
    s.set_study_user_attr(a.id, "k", &json!("v")).unwrap();
    s.create_trial(b.id).unwrap();

    s.delete_study(a.id).unwrap();
    assert_eq!(s.list_studies().unwrap(), vec![b.clone()]);
    assert_eq!(s.load_study("a").unwrap(), None);
    assert!(s.get_trial(t).is_err());
    assert!(s.get_all_trials(a.id).is_err());
    assert!(s.delete_study(a.id).is_err());
    assert_eq!(s.get_all_trials(b.id).unwrap().len(), 1);
    // The name is free again, and numbering starts anew.
    let a2 = s.create_or_load_study("a", &[Maximize]).unwrap();
    assert_eq!(s.create_trial(a2.id).unwrap().1, 0);
    assert!(s.study_user_attrs(a2.id).unwrap().is_empty());
}

fn trial_numbers_per_study(f: Fixture) {
    let s = &f.storage;
    let a = s.create_or_load_study("a", &[Minimize]).unwrap();
    let b = s.create_or_load_study("b", &[Minimize]).unwrap();
    let mut ids = BTreeSet::new();
    for i in 0..4u64 {
        let (id_a, n_a) = s.create_trial(a.id).unwrap();
        assert_eq!(n_a, 2 * i);
        let (id_a2, n_a2) = s.create_trial(a.id).unwrap();
        assert_eq!(n_a2, 2 * i + 1);
        let (id_b, n_b) = s.create_trial(b.id).unwrap();
        assert_eq!(n_b, i);
        assert!(ids.insert(id_a) && ids.insert(id_a2) && ids.insert(id_b), "trial ids are unique");
    }
    let trials = s.get_all_trials(a.id).unwrap();
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    for t in &trials {
        assert_eq!(&s.get_trial(t.id).unwrap(), t);
    }
    assert_eq!(s.get_all_trials(b.id).unwrap().len(), 4);
}

fn new_trial_is_running(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let (id, number) = s.create_trial(st.id).unwrap();
    let after = chrono::Utc::now() + chrono::Duration::milliseconds(1);
    let t = s.get_trial(id).unwrap();
    assert_eq!((t.id, t.number, t.state), (id, number, TrialState::Running));
    assert!(t.params.is_empty() && t.user_attrs.is_empty() && t.system_attrs.is_empty());
    assert_eq!((t.values, t.datetime_complete), (None, None));
    let start = t.datetime_start.expect("a running trial has a start");
    assert!(before <= start && start <= after, "{before} <= {start} <= {after}");
}

fn params_round_trip(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    let int = Distribution::Int { low: 2, high: 10, step: 2 };
    let lr = Distribution::Float { low: 1e-5, high: 0.1, log: true };
    let x = Distribution::Float { low: -1.0, high: 1.0, log: false };
    let params = [
        ("act_null", categorical(), 0.0),
        ("act_str", categorical(), 1.0),
        ("act_last", categorical(), 4.0),
        ("units", int.clone(), 8.0),
        ("lr", lr.clone(), 0.0031622776601683794),
        ("x", x.clone(), -0.1 - 0.2),
    ];
    for (name, d, v) in &params {
        s.set_trial_param(id, name, *v, d).unwrap();
    }
    // Setting the same value again is harmless.
    s.set_trial_param(id, "units", 8.0, &int).unwrap();
    let t = s.get_trial(id).unwrap();
    assert_eq!(t.params.len(), params.len());
    for (name, d, v) in &params {
        assert_eq!(t.params[*name], (d.clone(), *v), "{name}");
        assert_eq!(t.param(name), Some(*v));
    }
    assert_eq!(t.params["act_null"].0.external(t.params["act_null"].1), Value::Null);
    assert_eq!(t.params["act_str"].0.external(t.params["act_str"].1), json!("relu"));
    assert_eq!(s.get_all_trials(st.id).unwrap(), vec![t]);
}

fn param_checks(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    let int = Distribution::Int { low: 0, high: 4, step: 2 };
    assert!(err_text(s.set_trial_param(id, "n", 3.0, &int)).contains("'n'"));
    assert!(s.set_trial_param(id, "c", 5.0, &categorical()).is_err());
    assert!(s.set_trial_param(id, "f", 2.0, &Distribution::Float { low: 0.0, high: 1.0, log: false }).is_err());
    s.set_trial_param(id, "n", 2.0, &int).unwrap();
    let e = err_text(s.set_trial_param(id, "n", 4.0, &int));
    assert!(e.contains("already set"), "{e}");
    assert!(s.set_trial_param(id, "n", 2.0, &Distribution::Int { low: 0, high: 6, step: 2 }).is_err());
    let t = s.get_trial(id).unwrap();
    assert_eq!(t.params.len(), 1);
    assert_eq!(t.param("n"), Some(2.0));
}

fn params_in_one_batch(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    let int = Distribution::Int { low: 0, high: 8, step: 2 };
    let lr = Distribution::Float { low: 1e-4, high: 0.1, log: true };
    let cat = categorical();
    s.set_trial_param(id, "before", 2.0, &int).unwrap();
    let batch = [("units", 4.0, &int), ("lr", 0.01, &lr), ("act", 3.0, &cat), ("before", 2.0, &int)];
    s.set_trial_params(id, &batch).unwrap();
    s.set_trial_params(id, &[]).unwrap();
    let t = s.get_trial(id).unwrap();
    assert_eq!(t.params.len(), 4);
    for (name, value, distribution) in batch {
        assert_eq!(t.params[name], (distribution.clone(), value), "{name}");
    }
    // The checks of one parameter hold in a batch too, and the error names it.
    let e = err_text(s.set_trial_params(id, &[("fresh", 2.0, &int), ("units", 6.0, &int)]));
    assert!(e.contains("'units'") && e.contains("already set"), "{e}");
    let e = err_text(s.set_trial_params(id, &[("odd", 3.0, &int)]));
    assert!(e.contains("'odd'"), "{e}");
    let e = err_text(s.set_trial_params(id, &[("twice", 2.0, &int), ("twice", 4.0, &int)]));
    assert!(e.contains("'twice'") && e.contains("already set"), "{e}");
    let t = s.get_trial(id).unwrap();
    assert_eq!((t.param("units"), t.param("odd")), (Some(4.0), None));
    // A finished trial takes no parameters.
    s.finish_trial(id, TrialState::Complete, Some(&[1.0])).unwrap();
    let e = err_text(s.set_trial_params(id, &[("late", 2.0, &int)]));
    assert!(e.contains("finished"), "{e}");
    assert_eq!(s.get_trial(id).unwrap().param("late"), None);
    assert!(s.set_trial_params(id + 1000, &[("n", 2.0, &int)]).is_err());
}

fn attrs_round_trip(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    let nested = json!({"arch": {"blocks": [{"units": 32, "act": "relu"}, null]}, "ok": true, "x": -1.5e-7});
    s.set_trial_user_attr(id, "model", &nested).unwrap();
    s.set_trial_user_attr(id, "bops", &json!(1.0)).unwrap();
    s.set_trial_user_attr(id, "bops", &json!(12345.25)).unwrap();
    s.set_trial_user_attr(id, "note", &json!("ünïcode \"quoted\"\n")).unwrap();
    s.set_trial_system_attr(id, "NSGAIISampler:generation", &json!(3)).unwrap();
    s.set_trial_system_attr(id, "constraints", &json!([0.5, -1.0])).unwrap();
    let t = s.get_trial(id).unwrap();
    assert_eq!(t.user_attrs.len(), 3);
    assert_eq!(t.user_attrs["model"], nested);
    assert_eq!(t.user_attrs["bops"], json!(12345.25));
    assert_eq!(t.user_attrs["note"], json!("ünïcode \"quoted\"\n"));
    assert_eq!(t.system_attrs["NSGAIISampler:generation"], json!(3));
    assert_eq!(t.constraints(), Some(vec![0.5, -1.0]));
    assert_eq!(t.violation(), 0.5);
    assert_eq!(s.get_all_trials(st.id).unwrap(), vec![t]);
}

fn attrs_in_one_batch(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    s.set_trial_user_attr(id, "kept", &json!("before")).unwrap();
    s.set_trial_user_attr(id, "replaced", &json!(1)).unwrap();
    let batch = [
        ("replaced", json!(2)),
        ("new", json!({"nested": [1, 2]})),
        ("twice", json!("first")),
        ("twice", json!("last")),
    ];
    s.set_trial_user_attrs(id, &batch).unwrap();
    let t = s.get_trial(id).unwrap();
    assert_eq!(t.user_attrs.len(), 4);
    assert_eq!(t.user_attrs["kept"], json!("before"));
    assert_eq!(t.user_attrs["replaced"], json!(2));
    assert_eq!(t.user_attrs["new"], json!({"nested": [1, 2]}));
    assert_eq!(t.user_attrs["twice"], json!("last"), "a later duplicate wins");
    // System attributes alike.
    s.set_trial_system_attr(id, "kept", &json!(0)).unwrap();
    s.set_trial_system_attrs(id, &[("generation", json!(1)), ("worker", json!({"pid": 7})), ("generation", json!(2))])
        .unwrap();
    s.set_trial_system_attrs(id, &[]).unwrap();
    let t = s.get_trial(id).unwrap();
    let system: Vec<(&str, &Value)> = t.system_attrs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(system, [("generation", &json!(2)), ("kept", &json!(0)), ("worker", &json!({"pid": 7}))]);
    assert_eq!(t.user_attrs.len(), 4, "user attributes untouched");
    // A finished trial is frozen for batches too, and the error says so.
    s.finish_trial(id, TrialState::Complete, Some(&[1.0])).unwrap();
    let e = err_text(s.set_trial_user_attrs(id, &[("late", json!(1))]));
    assert!(e.contains("finished"), "{e}");
    let e = err_text(s.set_trial_system_attrs(id, &[("late", json!(1))]));
    assert!(e.contains("finished"), "{e}");
    let t = s.get_trial(id).unwrap();
    assert!(!t.user_attrs.contains_key("late") && !t.system_attrs.contains_key("late"));
    assert!(s.set_trial_system_attrs(id + 1000, &[("k", json!(1))]).is_err());
}

fn values_round_trip_with_infinities(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Maximize, Minimize, Minimize]).unwrap();
    let mut expect = vec![];
    for (state, values) in [
        (TrialState::Complete, Some(vec![0.875, 1.25e9, -3.0])),
        (TrialState::Complete, Some(vec![f64::INFINITY, f64::NEG_INFINITY, 0.0])),
        (TrialState::Pruned, Some(vec![0.1, 2.0, f64::INFINITY])),
        (TrialState::Pruned, None),
        (TrialState::Fail, None),
    ] {
        let (id, _) = s.create_trial(st.id).unwrap();
        assert!(s.finish_trial(id, state, values.as_deref()).unwrap());
        expect.push((id, state, values));
    }
    let trials = s.get_all_trials(st.id).unwrap();
    for (t, (id, state, values)) in trials.iter().zip(&expect) {
        assert_eq!((t.id, t.state, &t.values), (*id, *state, values));
        assert!(t.datetime_complete.is_some() && t.datetime_complete >= t.datetime_start);
        assert_eq!(&s.get_trial(*id).unwrap(), t);
    }
}

fn finish_checks_its_arguments(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize, Maximize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    assert!(err_text(s.finish_trial(id, TrialState::Complete, Some(&[1.0]))).contains("2 objectives"));
    assert!(err_text(s.finish_trial(id, TrialState::Complete, Some(&[1.0, f64::NAN]))).contains("NaN"));
    assert!(err_text(s.finish_trial(id, TrialState::Complete, None)).contains("needs values"));
    assert!(s.finish_trial(id, TrialState::Running, Some(&[1.0, 2.0])).is_err());
    assert!(s.finish_trial(id, TrialState::Waiting, None).is_err());
    let t = s.get_trial(id).unwrap();
    assert_eq!((t.state, t.values, t.datetime_complete), (TrialState::Running, None, None));
}

fn finish_is_compare_and_set(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    assert!(s.finish_trial(id, TrialState::Complete, Some(&[1.5])).unwrap());
    let done = s.get_trial(id).unwrap();
    // A second worker (or a late one, after its trial was failed) loses.
    assert!(!s.finish_trial(id, TrialState::Complete, Some(&[9.0])).unwrap());
    assert!(!(*f.connect)().finish_trial(id, TrialState::Fail, None).unwrap());
    assert!(!s.finish_trial(id, TrialState::Pruned, None).unwrap());
    assert_eq!(s.get_trial(id).unwrap(), done);
    assert_eq!(done.values, Some(vec![1.5]));

    // Racing workers: exactly one wins.
    let (id, _) = s.create_trial(st.id).unwrap();
    let wins: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let s = (*f.connect)();
                scope.spawn(move || s.finish_trial(id, TrialState::Complete, Some(&[i as f64])).unwrap() as usize)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(s.get_trial(id).unwrap().values.unwrap().len(), 1);
}

fn finished_trial_is_frozen(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    s.set_trial_param(id, "n", 1.0, &Distribution::Int { low: 0, high: 3, step: 1 }).unwrap();
    s.finish_trial(id, TrialState::Fail, None).unwrap();
    let frozen = s.get_trial(id).unwrap();
    assert!(
        err_text(s.set_trial_param(id, "m", 1.0, &Distribution::Int { low: 0, high: 3, step: 1 })).contains("finished")
    );
    assert!(s.set_trial_user_attr(id, "u", &json!(1)).is_err());
    assert!(s.set_trial_system_attr(id, "s", &json!(1)).is_err());
    assert_eq!(s.get_trial(id).unwrap(), frozen);
}

fn heartbeats_and_stale_trials(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let other = s.create_or_load_study("b", &[Minimize]).unwrap();
    let grace = Duration::from_millis(500);
    let (alive, n_alive) = s.create_trial(st.id).unwrap(); // beats
    let (dead, n_dead) = s.create_trial(st.id).unwrap(); // never beats
    let (beat_once, n_beat_once) = s.create_trial(st.id).unwrap(); // beats, then stops
    let (done, _) = s.create_trial(st.id).unwrap(); // finished: never failed
    let (elsewhere, _) = s.create_trial(other.id).unwrap(); // another study
    s.finish_trial(done, TrialState::Complete, Some(&[1.0])).unwrap();
    s.record_heartbeat(beat_once).unwrap();
    s.record_heartbeat(alive).unwrap();
    assert_eq!(s.fail_stale_trials(st.id, grace).unwrap(), Vec::<u64>::new());

    thread::sleep(Duration::from_millis(300));
    s.record_heartbeat(alive).unwrap();
    s.record_heartbeat(beat_once).unwrap(); // a late beat moves its deadline
    thread::sleep(Duration::from_millis(300));
    s.record_heartbeat(alive).unwrap();
    // `dead` started ≥ 600 ms ago; `beat_once` last beat ~300 ms ago.
    assert_eq!(s.fail_stale_trials(st.id, grace).unwrap(), vec![n_dead]);

    thread::sleep(Duration::from_millis(300));
    s.record_heartbeat(alive).unwrap();
    assert_eq!(s.fail_stale_trials(st.id, grace).unwrap(), vec![n_beat_once]);
    assert_eq!(s.fail_stale_trials(st.id, grace).unwrap(), Vec::<u64>::new());

    let trials = s.get_all_trials(st.id).unwrap();
    let state = |id| trials.iter().find(|t| t.id == id).unwrap().clone();
    assert_eq!(state(alive).state, TrialState::Running);
    assert_eq!(state(done).state, TrialState::Complete);
    for id in [dead, beat_once] {
        let t = state(id);
        assert_eq!((t.state, t.values.clone()), (TrialState::Fail, None));
        assert!(t.datetime_complete.is_some());
        assert_eq!(t.system_attrs[super::INTERRUPTED_KEY], json!(true));
        assert!(t.user_attrs[super::FAIL_REASON_KEY].as_str().unwrap().contains("heartbeat"));
        assert!(!super::counts_against_budget(&t));
        // The dead worker comes back: its result is refused.
        assert!(!s.finish_trial(id, TrialState::Complete, Some(&[0.0])).unwrap());
    }
    assert_eq!(s.get_trial(elsewhere).unwrap().state, TrialState::Running);
    assert_eq!(s.fail_stale_trials(other.id, grace).unwrap(), vec![0]);
    assert_eq!(s.fail_stale_trials(st.id, Duration::ZERO).unwrap(), vec![n_alive]);
}

fn unknown_ids_are_errors(f: Fixture) {
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let (t, _) = s.create_trial(st.id).unwrap();
    let (bad_study, bad_trial) = (st.id + 1000, t + 1000);
    assert!(err_text(s.create_trial(bad_study)).contains(&bad_study.to_string()));
    assert!(s.set_study_user_attr(bad_study, "k", &json!(1)).is_err());
    assert!(s.study_user_attrs(bad_study).is_err());
    assert!(s.get_all_trials(bad_study).is_err());
    assert!(s.get_all_trials_shared(bad_study).is_err());
    assert!(s.fail_stale_trials(bad_study, Duration::ZERO).is_err());
    assert!(err_text(s.get_trial(bad_trial)).contains(&bad_trial.to_string()));
    assert!(s.set_trial_param(bad_trial, "n", 0.0, &categorical()).is_err());
    assert!(s.set_trial_user_attr(bad_trial, "k", &json!(1)).is_err());
    assert!(s.set_trial_system_attr(bad_trial, "k", &json!(1)).is_err());
    assert!(s.finish_trial(bad_trial, TrialState::Fail, None).is_err());
    assert!(s.record_heartbeat(bad_trial).is_err());
}

/// Many workers, each with its own connection (for a file: as separate
/// processes would be), create, fill and finish trials at once.
fn concurrent_trial_creation(f: Fixture) {
    const WORKERS: usize = 6;
    const PER_WORKER: usize = 15;
    let st = f.storage.create_or_load_study("a", &[Minimize]).unwrap();
    let int = Distribution::Int { low: 0, high: 1000, step: 1 };
    let mut seen: Vec<(i64, u64, usize)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let s = (*f.connect)();
                let int = int.clone();
                scope.spawn(move || {
                    let mut mine = vec![];
                    for _ in 0..PER_WORKER {
                        let (id, number) = s.create_trial(st.id).unwrap();
                        s.set_trial_param(id, "worker", w as f64, &int).unwrap();
                        s.record_heartbeat(id).unwrap();
                        assert!(s.finish_trial(id, TrialState::Complete, Some(&[number as f64])).unwrap());
                        mine.push((id, number, w));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    seen.sort_by_key(|x| x.1);
    let numbers: Vec<u64> = seen.iter().map(|x| x.1).collect();
    assert_eq!(numbers, (0..(WORKERS * PER_WORKER) as u64).collect::<Vec<_>>(), "numbers unique and dense");
    let trials = f.storage.get_all_trials(st.id).unwrap();
    assert_eq!(trials.len(), WORKERS * PER_WORKER, "nothing lost");
    for (t, (id, number, w)) in trials.iter().zip(&seen) {
        assert_eq!((t.id, t.number, t.state), (*id, *number, TrialState::Complete));
        assert_eq!(t.values, Some(vec![*number as f64]));
        assert_eq!(t.param("worker"), Some(*w as f64));
    }
}

/// Workers with their own connections draw trials within one budget: the
/// study ends with exactly that many counted trials; an interrupted trial
/// frees its place.
fn budget_is_study_wide_and_exact(f: Fixture) {
    const WORKERS: usize = 6;
    const BUDGET: usize = 25;
    let s = &f.storage;
    let st = s.create_or_load_study("a", &[Minimize]).unwrap();
    let other = s.create_or_load_study("b", &[Minimize]).unwrap();
    s.create_trial(other.id).unwrap(); // another study's trials do not count
    let dead = s.create_trial_within(st.id, Some(BUDGET)).unwrap().unwrap().0;
    let (failed, _) = s.create_trial(st.id).unwrap();
    s.finish_trial(failed, TrialState::Fail, None).unwrap(); // an ordinary FAIL counts
    thread::sleep(Duration::from_millis(20));
    assert_eq!(s.fail_stale_trials(st.id, Duration::from_millis(10)).unwrap(), [0]); // `dead` frees its place
    let mine: Vec<usize> = thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|_| {
                let s = (*f.connect)();
                scope.spawn(move || {
                    let mut n = 0;
                    while let Some((id, number)) = s.create_trial_within(st.id, Some(BUDGET)).unwrap() {
                        assert!(s.finish_trial(id, TrialState::Complete, Some(&[number as f64])).unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(mine.iter().sum::<usize>(), BUDGET - 1, "{mine:?}");
    let trials = s.get_all_trials(st.id).unwrap();
    assert_eq!(trials.len(), BUDGET + 1);
    assert_eq!(trials.iter().filter(|t| super::counts_against_budget(t)).count(), BUDGET);
    assert!(!super::counts_against_budget(&s.get_trial(dead).unwrap()));
    assert_eq!(s.create_trial_within(st.id, Some(BUDGET)).unwrap(), None);
    assert!(s.create_trial_within(st.id, Some(BUDGET + 1)).unwrap().is_some());
    assert!(err_text(s.create_trial_within(st.id + 1000, Some(1))).contains(&(st.id + 1000).to_string()));
}

fn restart_keeps_everything(mut f: Fixture) {
    let st = f.storage.create_or_load_study("nas", &[Maximize, Minimize]).unwrap();
    f.storage.set_study_user_attr(st.id, "config", &json!({"epochs": 3})).unwrap();
    f.storage.set_study_system_attr(st.id, super::METRIC_NAMES_KEY, &json!(["acc", "bops"])).unwrap();
    let s = f.storage.clone();
    let mk = |state: TrialState, values: Option<&[f64]>| {
        let (id, n) = s.create_trial(st.id).unwrap();
        s.set_trial_param(id, "act", n as f64 % 5.0, &categorical()).unwrap();
        s.set_trial_param(id, "lr", 1e-3, &Distribution::Float { low: 1e-4, high: 1e-1, log: true }).unwrap();
        s.set_trial_user_attr(id, "n", &json!(n)).unwrap();
        s.set_trial_system_attr(id, "NSGAIISampler:generation", &json!(0)).unwrap();
        s.record_heartbeat(id).unwrap();
        if state.is_finished() {
            s.finish_trial(id, state, values).unwrap();
        }
    };
    mk(TrialState::Complete, Some(&[0.5, f64::INFINITY]));
    mk(TrialState::Fail, None);
    mk(TrialState::Pruned, None);
    mk(TrialState::Running, None);
    drop(s);
    let before: Vec<FrozenTrial> = f.storage.get_all_trials(st.id).unwrap();
    let attrs = f.storage.study_user_attrs(st.id).unwrap();

    f.restart();
    let s = &f.storage;
    assert_eq!(s.load_study("nas").unwrap(), Some(st.clone()));
    assert_eq!(s.study_user_attrs(st.id).unwrap(), attrs);
    assert_eq!(s.study_system_attrs(st.id).unwrap(), [(super::METRIC_NAMES_KEY.to_string(), json!(["acc", "bops"]))]);
    assert_eq!(s.get_all_trials(st.id).unwrap(), before);
    // The search goes on where it stopped: numbers continue, the running
    // trial can still be finished once.
    assert_eq!(s.create_trial(st.id).unwrap().1, 4);
    assert!(s.finish_trial(before[3].id, TrialState::Complete, Some(&[1.0, 2.0])).unwrap());
    assert!(!s.finish_trial(before[0].id, TrialState::Complete, Some(&[1.0, 2.0])).unwrap());
}

#[test]
fn open_understands_optunas_urls() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("a.db");
    // SQLAlchemy: three slashes, then the path; an absolute path brings a fourth.
    let s = super::open(&format!("sqlite:///{}", abs.display())).unwrap();
    s.create_or_load_study("x", &[Minimize]).unwrap();
    assert!(abs.exists());
    let plain = dir.path().join("b.db");
    super::open(plain.to_str().unwrap()).unwrap();
    assert!(plain.exists());
    assert!(super::open("memory:").unwrap().list_studies().unwrap().is_empty());
    let log = dir.path().join("c.log");
    super::open(&format!("journal://{}", log.display())).unwrap().create_or_load_study("x", &[Minimize]).unwrap();
    assert!(std::fs::read_to_string(&log).unwrap().starts_with(r#"{"op_code":0,"#), "an Optuna journal");
    for bad in ["sqlite://host/x.db", "postgresql://u@127.0.0.1:1/db", "redis://x"] {
        assert!(format!("{:#}", super::open(bad).err().unwrap()).contains(bad), "{bad}");
    }
}

/// A handle that has read a study sees, on its next read, everything that
/// other handles (other processes) did to it meanwhile: new trials, changes
/// to unfinished ones, finished and failed ones.
fn reads_follow_other_writers(f: Fixture) {
    let reader = &f.storage;
    let writer = (*f.connect)();
    let st = writer.create_or_load_study("a", &[Minimize, Maximize]).unwrap();
    let int = Distribution::Int { low: 0, high: 9, step: 1 };
    let same = |step: &str| {
        let seen = reader.get_all_trials(st.id).unwrap();
        let fresh = (*f.connect)().get_all_trials(st.id).unwrap();
        assert_eq!(seen, fresh, "after {step}");
        let shared = reader.get_all_trials_shared(st.id).unwrap();
        assert!(shared.iter().map(|t| &**t).eq(fresh.iter()), "shared, after {step}");
        for t in &fresh {
            assert_eq!(&reader.get_trial(t.id).unwrap(), t, "after {step}");
        }
        seen
    };
    assert!(same("nothing").is_empty());
    let (a, _) = writer.create_trial(st.id).unwrap();
    let (b, _) = writer.create_trial(st.id).unwrap();
    same("two new trials");
    writer.set_trial_params(a, &[("x", 1.0, &int), ("y", 2.0, &int)]).unwrap();
    writer.set_trial_user_attrs(b, &[("note", json!("b"))]).unwrap();
    writer.set_trial_system_attrs(a, &[("worker", json!(1))]).unwrap();
    same("params and attributes");
    assert!(writer.finish_trial(a, TrialState::Complete, Some(&[0.5, 2.0])).unwrap());
    let (c, _) = writer.create_trial(st.id).unwrap();
    let trials = same("a finished, c new");
    assert_eq!(
        trials.iter().map(|t| (t.id, t.state)).collect::<Vec<_>>(),
        [(a, TrialState::Complete), (b, TrialState::Running), (c, TrialState::Running)]
    );
    // The reader finishes one itself; the writer fails the others as stale.
    assert!(reader.finish_trial(c, TrialState::Pruned, None).unwrap());
    same("c pruned by the reader");
    thread::sleep(Duration::from_millis(20));
    assert_eq!(writer.fail_stale_trials(st.id, Duration::from_millis(10)).unwrap(), [1]);
    let trials = same("b failed as stale");
    assert_eq!(trials[1].user_attrs["note"], json!("b"));
    assert_eq!(trials[1].system_attrs[super::INTERRUPTED_KEY], json!(true));
    // Many more, from several writers at once.
    thread::scope(|scope| {
        for _ in 0..3 {
            let s = (*f.connect)();
            scope.spawn(move || {
                for n in 0..5 {
                    let (id, _) = s.create_trial(st.id).unwrap();
                    if n % 2 == 0 {
                        s.finish_trial(id, TrialState::Complete, Some(&[n as f64, 1.0])).unwrap();
                    }
                }
            });
        }
        for _ in 0..5 {
            reader.get_all_trials(st.id).unwrap();
        }
    });
    let trials = same("three writers");
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), (0..18).collect::<Vec<_>>());
}

/// A study deleted by another handle is gone for a reader that had read it,
/// and a new study (which may get the old id) shows only its own trials.
fn reads_follow_a_deleted_study(f: Fixture) {
    let reader = &f.storage;
    let writer = (*f.connect)();
    let st = writer.create_or_load_study("a", &[Minimize]).unwrap();
    for n in 0..3 {
        let (id, _) = writer.create_trial(st.id).unwrap();
        writer.finish_trial(id, TrialState::Complete, Some(&[n as f64])).unwrap();
    }
    assert_eq!(reader.get_all_trials(st.id).unwrap().len(), 3);
    writer.delete_study(st.id).unwrap();
    assert!(reader.get_all_trials(st.id).is_err());
    assert_eq!(
        reader.get_all_trials(st.id).unwrap_err().to_string(),
        writer.get_all_trials(st.id).unwrap_err().to_string()
    );
    // Read again, then deleted and made anew behind the reader's back.
    let st = writer.create_or_load_study("b", &[Minimize]).unwrap();
    for n in 0..3 {
        let (id, _) = writer.create_trial(st.id).unwrap();
        writer.finish_trial(id, TrialState::Complete, Some(&[n as f64])).unwrap();
    }
    assert_eq!(reader.get_all_trials(st.id).unwrap().len(), 3);
    writer.delete_study(st.id).unwrap();
    let again = writer.create_or_load_study("b", &[Minimize]).unwrap();
    let (id, _) = writer.create_trial(again.id).unwrap();
    writer.finish_trial(id, TrialState::Complete, Some(&[9.0])).unwrap();
    let trials = reader.get_all_trials(again.id).unwrap();
    assert_eq!(trials.iter().map(|t| (t.id, t.values.clone())).collect::<Vec<_>>(), [(id, Some(vec![9.0]))]);
}
