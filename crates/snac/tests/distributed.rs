//! Distributed search with real processes and real databases: several `snac
//! worker` processes share one study (SQLite and an Optuna journal file
//! always, PostgreSQL from `$SNAC_PG_URL`), a worker killed with SIGKILL
//! mid-trial, and `snac results` writing the outputs from the database. Trials are tiny (the embedded digits
//! example, 2 epochs), so each test takes seconds.

use serde_json::{Value, json};
use snac_core::search::{FrozenTrial, TrialState};
use snac_core::storage::{self, INTERRUPTED_KEY, Storage, counts_against_budget};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn snac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snac"))
}

/// A study name no other test (or earlier run on the same database) uses.
fn unique_study(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn pg_url() -> Option<String> {
    let url = std::env::var("SNAC_PG_URL").ok();
    if url.is_none() {
        snac_core::missing_test_dependency("SNAC_PG_URL is not set (a PostgreSQL database for the worker tests)");
    }
    url
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:///{}", dir.join("study.db").display())
}

fn journal_url(dir: &Path) -> String {
    format!("journal://{}", dir.join("study.log").display())
}

/// Starts `snac worker` on the embedded digits example.
fn spawn_worker(url: &str, study: &str, results: &Path, trials: usize, rank: usize, extra: &[&str]) -> Child {
    snac()
        .args(["worker", "--storage", url, "--study", study, "--epochs", "2", "--workers", "1", "--seed", "7"])
        .args(["--trials", &trials.to_string(), "--results-dir"])
        .arg(results)
        .args(extra)
        .env("SLURM_PROCID", rank.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("snac worker starts")
}

fn wait_ok(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a worker failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn study_trials(storage: &Arc<dyn Storage>, study: &str) -> Vec<FrozenTrial> {
    let info = storage.load_study(study).unwrap().expect("the workers created the study");
    storage.get_all_trials(info.id).unwrap()
}

fn rank_of(trial: &FrozenTrial) -> Option<u64> {
    trial.system_attrs.get("snac:worker")?.get("rank")?.as_str()?.parse().ok()
}

/// Checks a finished study: exactly `n_trials` counted trials, numbers unique
/// and dense, every COMPLETE trial with its values, YAML, and a row in the
/// CSV of the rank that ran it (and in no other).
fn check_finished_study(trials: &[FrozenTrial], n_trials: usize, results: &Path, ranks: usize) {
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..trials.len() as u64).collect::<Vec<_>>(), "numbers unique and dense");
    assert_eq!(trials.iter().filter(|t| counts_against_budget(t)).count(), n_trials, "exactly n_trials");
    assert!(trials.iter().all(|t| t.state.is_finished()), "nothing left RUNNING");
    let complete: Vec<&FrozenTrial> = trials.iter().filter(|t| t.state == TrialState::Complete).collect();
    assert!(!complete.is_empty());
    let mut csv_rows: BTreeMap<u64, usize> = BTreeMap::new();
    for rank in 0..ranks {
        let path = results.join(format!("mlp_search_results_rank{rank}.csv"));
        let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for row in reader.records() {
            let number: u64 = row.unwrap()[0].parse().unwrap();
            let t = &trials[number as usize];
            assert_eq!(rank_of(t), Some(rank as u64), "trial {number} is in the CSV of the rank that ran it");
            *csv_rows.entry(number).or_default() += 1;
        }
    }
    for t in &complete {
        assert_eq!(t.values.as_ref().map(Vec::len), Some(2), "trial {} keeps its values", t.number);
        assert!(results.join(format!("trial_yamls/trial_{}_arch.yaml", t.number)).exists());
        assert_eq!(csv_rows.get(&t.number), Some(&1), "trial {} has one CSV row", t.number);
    }
    let ran: BTreeSet<u64> = trials.iter().filter_map(rank_of).collect();
    assert!(ran.len() > 1, "several workers ran trials: {ran:?}");
}

fn workers_share_a_study(url: &str, processes: usize, n_trials: usize) {
    let dir = tempfile::tempdir().unwrap();
    let study = unique_study("workers");
    let results = dir.path().join("results");
    let started = Instant::now();
    let children: Vec<Child> =
        (0..processes).map(|rank| spawn_worker(url, &study, &results, n_trials, rank, &[])).collect();
    children.into_iter().for_each(wait_ok);
    eprintln!("{processes} workers, {n_trials} trials: {:.1} s", started.elapsed().as_secs_f64());
    let storage = storage::open(url).unwrap();
    let trials = study_trials(&storage, &study);
    assert_eq!(trials.len(), n_trials, "no trial failed or was interrupted, so no replacements");
    check_finished_study(&trials, n_trials, &results, processes);

    // `snac results` writes the outputs from the database alone.
    let out = dir.path().join("merged");
    let status = snac()
        .args(["results", "--storage", url, "--study", &study, "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut reader = csv::Reader::from_path(out.join("mlp_search_results.csv")).unwrap();
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert_eq!(rows.len(), n_trials);
    for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
        assert!(out.join(format!("trial_yamls/trial_{}_arch.yaml", t.number)).exists());
        let row = rows.iter().find(|r| r[0] == t.number.to_string()).unwrap();
        assert_eq!(row[1].parse::<f64>().unwrap(), t.user_attrs["performance_metric"].as_f64().unwrap());
    }
    assert!(out.join("best_model_for_local_search.yaml").exists());
    let e = snac().args(["results", "--storage", url, "--study", "no-such-study", "--out"]).arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("no-such-study") && stderr.contains(&study), "{stderr}");
}

#[test]
fn four_workers_on_sqlite_finish_exactly_n_trials() {
    let dir = tempfile::tempdir().unwrap();
    workers_share_a_study(&sqlite_url(dir.path()), 4, 12);
}

#[test]
fn eight_workers_on_a_journal_finish_exactly_n_trials() {
    let dir = tempfile::tempdir().unwrap();
    workers_share_a_study(&journal_url(dir.path()), 8, 16);
    assert!(!dir.path().join("study.log.lock").exists(), "every worker released the journal's lock");
}

#[test]
fn eight_workers_on_postgres_finish_exactly_n_trials() {
    let Some(url) = pg_url() else { return };
    workers_share_a_study(&url, 8, 24);
}

/// A worker killed with SIGKILL in the middle of a trial: the trial becomes
/// FAIL (interrupted) once its heartbeat is older than the grace period, a
/// replacement runs, the study completes with exactly n_trials, and every
/// trial completed before the kill is still there, unchanged.
fn killed_worker(url: &str) {
    const N_TRIALS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let study = unique_study("kill");
    let results = dir.path().join("results");
    let beat = ["--heartbeat-interval", "0.1", "--heartbeat-grace", "3"];
    let mut victim = spawn_worker(url, &study, &results, N_TRIALS, 0, &beat);
    let others: Vec<Child> = (1..3).map(|rank| spawn_worker(url, &study, &results, N_TRIALS, rank, &beat)).collect();

    // Wait until the victim is in the middle of a trial, then kill it.
    let storage = storage::open(url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim_pid = json!(victim.id());
    loop {
        if Instant::now() > deadline {
            let _ = victim.kill();
            let _ = victim.wait();
            panic!("the victim never ran a trial");
        }
        if let Some(info) = storage.load_study(&study).unwrap() {
            let trials = storage.get_all_trials(info.id).unwrap();
            let running = trials.iter().find(|t| {
                t.state == TrialState::Running
                    && t.system_attrs.get("snac:worker").and_then(|w| w.get("pid")) == Some(&victim_pid)
            });
            if running.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    victim.kill().unwrap(); // SIGKILL, in the middle of a trial
    victim.wait().unwrap();
    // The victim is dead: its trial still RUNNING is the one it was killed in.
    let before = study_trials(&storage, &study);
    let killed = before
        .iter()
        .find(|t| {
            t.state == TrialState::Running
                && t.system_attrs.get("snac:worker").and_then(|w| w.get("pid")) == Some(&victim_pid)
        })
        .expect("the victim was killed in the middle of a trial (not between two)")
        .number;
    others.into_iter().for_each(wait_ok);

    let trials = study_trials(&storage, &study);
    let t = &trials[killed as usize];
    assert_eq!(t.state, TrialState::Fail, "the killed worker's trial");
    assert_eq!(t.system_attrs.get(INTERRUPTED_KEY), Some(&Value::Bool(true)));
    assert!(t.user_attrs["fail_reason"].as_str().unwrap().contains("heartbeat"));
    let counted = trials.iter().filter(|t| counts_against_budget(t)).count();
    assert_eq!(counted, N_TRIALS, "the study completes with exactly n_trials");
    let states: Vec<_> =
        trials.iter().map(|t| (t.number, t.state, t.system_attrs.get("snac:worker").cloned())).collect();
    assert!(trials.iter().all(|t| t.state.is_finished()), "killed {killed}, victim {victim_pid}: {states:?}");
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..trials.len() as u64).collect::<Vec<_>>());
    for old in before.iter().filter(|t| t.state == TrialState::Complete) {
        let now = &trials[old.number as usize];
        assert_eq!((now.state, &now.values, &now.params), (old.state, &old.values, &old.params), "{}", old.number);
    }
}

#[test]
fn killed_worker_on_sqlite_its_trial_fails_and_the_study_completes() {
    let dir = tempfile::tempdir().unwrap();
    killed_worker(&sqlite_url(dir.path()));
}

#[test]
fn killed_worker_on_a_journal_its_trial_fails_and_the_study_completes() {
    let dir = tempfile::tempdir().unwrap();
    killed_worker(&journal_url(dir.path()));
}

#[test]
fn killed_worker_on_postgres_its_trial_fails_and_the_study_completes() {
    let Some(url) = pg_url() else { return };
    killed_worker(&url);
}

#[test]
fn worker_errors_name_what_is_wrong() {
    let out = snac().args(["worker", "--trials", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--storage") && stderr.contains("postgresql://"), "{stderr}");
    let out = snac()
        .args(["worker", "--storage", "postgresql://snac:secret@127.0.0.1:1/nas", "--trials", "1", "--results-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL at 'postgresql://snac:***@127.0.0.1:1/nas'"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}
