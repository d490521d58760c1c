//! Interop with Python Optuna (the venv of `.ci/setup.d/20-python-optuna.sh`,
//! found through `$SNAC_PYTHON`): Optuna loads studies that `snac` wrote, on
//! SQLite, on PostgreSQL and in a journal file, and sees the same params,
//! values, states and Pareto set, and names the objectives as `snac` does
//! (`study.metric_names`, which optuna-dashboard shows); Optuna adds a trial
//! to a journal `snac` wrote; `snac` continues a study that Optuna created.

use serde_json::Value;
use snac_core::search::{FrozenTrial, TrialState, pareto};
use snac_core::storage;
use std::path::Path;
use std::process::{Command, Stdio};

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/optuna_study.py");

fn python() -> Option<String> {
    let python = std::env::var("SNAC_PYTHON").ok();
    if python.is_none() {
        snac_core::missing_test_dependency("SNAC_PYTHON is not set (a Python with optuna for the interop tests)");
    }
    python
}

fn unique_study(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn optuna(python: &str, action: &str, url: &str, study: &str) -> Value {
    let out = Command::new(python).args([HELPER, action, url, study]).output().expect("python runs");
    assert!(out.status.success(), "optuna {action} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

/// Runs `snac search`; returns what it wrote to stderr.
fn snac_search(url: &str, study: &str, trials: usize, results: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_snac"))
        .args(["search", "--storage", url, "--study", study, "--epochs", "2", "--workers", "2", "--seed", "3"])
        .args(["--trials", &trials.to_string(), "--results-dir"])
        .arg(results)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "snac search failed:\n{stderr}");
    stderr
}

fn read(url: &str, study: &str) -> (Vec<snac_core::search::Direction>, Vec<FrozenTrial>) {
    let s = storage::open(url).unwrap();
    let info = s.load_study(study).unwrap().unwrap();
    let trials = s.get_all_trials(info.id).unwrap();
    (info.directions, trials)
}

/// A value as the helper prints it (infinities as strings).
fn json_value(v: f64) -> Value {
    if v.is_infinite() { Value::from(if v > 0.0 { "inf" } else { "-inf" }) } else { Value::from(v) }
}

/// The objectives of `snac search` without a config: the CSV's column names.
const OBJECTIVE_NAMES: [&str; 2] = ["performance_metric", "bops"];

/// What Optuna sees equals what we stored, trial by trial.
fn assert_same_study(seen: &Value, directions: &[snac_core::search::Direction], trials: &[FrozenTrial]) {
    let names: Vec<String> = directions.iter().map(|d| format!("{d:?}").to_uppercase()).collect();
    assert_eq!(seen["directions"], serde_json::json!(names));
    let seen_trials = seen["trials"].as_array().unwrap();
    assert_eq!(seen_trials.len(), trials.len());
    for (o, t) in seen_trials.iter().zip(trials) {
        assert_eq!(o["number"], Value::from(t.number));
        assert_eq!(o["state"], Value::from(t.state.name()), "trial {}", t.number);
        let params: serde_json::Map<String, Value> =
            t.params.iter().map(|(name, (dist, internal))| (name.clone(), dist.external(*internal))).collect();
        assert_eq!(o["params"], Value::Object(params), "trial {} params", t.number);
        let values = t.values.as_ref().map(|v| v.iter().map(|x| json_value(*x)).collect::<Vec<_>>());
        assert_eq!(o["values"], serde_json::json!(values), "trial {} values", t.number);
        let mut keys: Vec<&String> = t.user_attrs.keys().collect();
        keys.sort();
        assert_eq!(o["user_attrs"], serde_json::json!(keys), "trial {} user attrs", t.number);
    }
    let mut front: Vec<u64> = pareto::pareto_front(trials, directions).iter().map(|t| t.number).collect();
    front.sort();
    assert!(!front.is_empty());
    assert_eq!(seen["pareto"], serde_json::json!(front), "Pareto set");
}

fn optuna_reads_what_snac_wrote(url: &str) {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let study = unique_study("written-by-snac");
    snac_search(url, &study, 6, dir.path());
    let (directions, trials) = read(url, &study);
    assert!(trials.iter().any(|t| t.state == TrialState::Complete));
    let seen = optuna(&python, "dump", url, &study);
    assert_same_study(&seen, &directions, &trials);
    assert_eq!(seen["metric_names"], serde_json::json!(OBJECTIVE_NAMES), "study.metric_names");
}

#[test]
fn optuna_reads_a_sqlite_study_written_by_snac() {
    let dir = tempfile::tempdir().unwrap();
    optuna_reads_what_snac_wrote(&format!("sqlite:///{}", dir.path().join("s.db").display()));
}

#[test]
fn optuna_reads_a_postgres_study_written_by_snac() {
    let Ok(url) = std::env::var("SNAC_PG_URL") else {
        snac_core::missing_test_dependency("SNAC_PG_URL is not set (a PostgreSQL database for the interop tests)");
        return;
    };
    optuna_reads_what_snac_wrote(&url);
}

#[test]
fn optuna_reads_and_continues_a_journal_written_by_snac() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("journal://{}", dir.path().join("s.log").display());
    let study = unique_study("journal-by-snac");
    snac_search(&url, &study, 6, dir.path());
    let (directions, trials) = read(&url, &study);
    assert!(trials.iter().any(|t| t.state == TrialState::Complete));
    let seen = optuna(&python, "dump", &url, &study);
    assert_same_study(&seen, &directions, &trials);
    assert_eq!(seen["metric_names"], serde_json::json!(OBJECTIVE_NAMES), "study.metric_names");

    // Optuna's own worker adds a trial to the file; snac reads it back.
    let added = optuna(&python, "add", &url, &study);
    assert_eq!(added["number"], Value::from(6));
    let (_, trials) = read(&url, &study);
    assert_eq!(trials.len(), 7);
    let t = &trials[6];
    assert_eq!((t.number, t.state, t.values.clone()), (6, TrialState::Complete, Some(vec![0.25, 0.25])));
    assert_eq!(t.user_attrs["added_by"], Value::from("optuna"));
    let params: serde_json::Map<String, Value> =
        t.params.iter().map(|(name, (dist, internal))| (name.clone(), dist.external(*internal))).collect();
    assert_eq!(Value::Object(params), added["params"], "the params Optuna sampled");

    // snac goes on after Optuna's trial, and Optuna reads it all.
    snac_search(&url, &study, 9, dir.path());
    let (directions, trials) = read(&url, &study);
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), (0..9).collect::<Vec<_>>());
    assert!(trials.iter().all(|t| t.state.is_finished()));
    assert_same_study(&optuna(&python, "dump", &url, &study), &directions, &trials);
}

#[test]
fn snac_continues_a_study_created_by_optuna() {
    let dir = tempfile::tempdir().unwrap();
    continues_optunas_study(&format!("sqlite:///{}", dir.path().join("s.db").display()), dir.path());
}

#[test]
fn snac_continues_a_journal_created_by_optuna() {
    let dir = tempfile::tempdir().unwrap();
    continues_optunas_study(&format!("journal://{}", dir.path().join("s.log").display()), dir.path());
}

fn continues_optunas_study(url: &str, dir: &Path) {
    let Some(python) = python() else { return };
    let url = url.to_string();
    let study = unique_study("made-by-optuna");
    optuna(&python, "create", &url, &study);
    let (_, before) = read(&url, &study);
    assert_eq!(before.len(), 3);

    // 5 trials in all: Optuna's three (its FAIL counts too) and two of ours.
    snac_search(&url, &study, 5, dir);
    let (directions, trials) = read(&url, &study);
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    for (old, now) in before.iter().zip(&trials) {
        assert_eq!((old.state, &old.params, &old.values), (now.state, &now.params, &now.values));
    }
    for t in &trials[3..] {
        assert!(t.state.is_finished() && t.params.keys().any(|k| k != "x"), "trial {} is snac's", t.number);
    }
    let s = storage::open(&url).unwrap();
    let info = s.load_study(&study).unwrap().unwrap();
    // Optuna's attribute survives (snac adds its own, e.g. `snac:objectives`).
    let attrs = s.study_user_attrs(info.id).unwrap();
    assert!(attrs.contains(&("made_by".to_string(), Value::from("optuna"))), "{attrs:?}");
    // And Optuna reads the continued study, its objectives named by snac.
    let seen = optuna(&python, "dump", &url, &study);
    assert_same_study(&seen, &directions, &trials);
    assert_eq!(seen["metric_names"], serde_json::json!(OBJECTIVE_NAMES), "study.metric_names");
}

#[test]
fn snac_keeps_objective_names_given_in_optuna() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", dir.path().join("s.db").display());
    let study = unique_study("named-by-optuna");
    optuna(&python, "create", &url, &study);
    assert_eq!(optuna(&python, "dump", &url, &study)["metric_names"], Value::Null);
    optuna(&python, "name", &url, &study);
    let stderr = snac_search(&url, &study, 4, dir.path());
    assert!(
        stderr.contains(r#"already names its objectives ["acc","cost"]"#) && stderr.contains("study:metric_names"),
        "{stderr}"
    );
    let seen = optuna(&python, "dump", &url, &study);
    assert_eq!(seen["metric_names"], serde_json::json!(["acc", "cost"]), "the user's names are kept");
    assert_eq!(seen["trials"].as_array().unwrap().len(), 4);
}
