//! Ctrl-C and SIGTERM sent to the real `snac` binary during a search: no
//! trial is left RUNNING, the finished ones are kept, the interrupted ones
//! are recorded with their reason, and a rerun resumes.

use snac_core::search::{FAIL_REASON_KEY, FrozenTrial, TrialState};
use snac_core::storage::{self, INTERRUPTED_KEY};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn snac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snac"))
}

/// The embedded example with trials that never stop on their own (no early
/// stopping, small batches, very many epochs).
fn endless_config(dir: &Path) -> std::path::PathBuf {
    let example = snac().arg("example-config").output().unwrap();
    let text = String::from_utf8(example.stdout).unwrap();
    assert!(text.contains("  epochs: 20\n"), "the example config changed: {text}");
    let text = text.replace("  epochs: 20\n", "  epochs: 1000000\n  patience: 1000000\n  batch_size: 8\n");
    let path = dir.join("endless.yml");
    std::fs::write(&path, text).unwrap();
    path
}

fn trials(results: &Path) -> Vec<FrozenTrial> {
    let db = results.join("study.db");
    if !db.exists() {
        return vec![];
    }
    let storage = storage::open(&db.to_string_lossy()).unwrap();
    let Some(info) = storage.load_study("snac").unwrap() else { return vec![] };
    storage.get_all_trials(info.id).unwrap()
}

/// Starts a 2-worker search and waits until both workers run a trial.
fn start(dir: &Path, grace_s: &str) -> (Child, std::path::PathBuf) {
    let config = endless_config(dir);
    let results = dir.join("results");
    let child = snac()
        .arg("run")
        .arg(&config)
        .args(["--trials", "6", "--workers", "2", "--results-dir"])
        .arg(&results)
        .env("SNAC_STOP_GRACE", grace_s)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while trials(&results).iter().filter(|t| t.state == TrialState::Running).count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "the search never started two trials");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, results)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn finish(child: Child) -> (Output, Duration) {
    let start = Instant::now();
    let output = child.wait_with_output().unwrap();
    (output, start.elapsed())
}

fn assert_stopped_cleanly(output: &Output, results: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("To resume, run the same command again"), "{stderr}");
    let trials = trials(results);
    assert_eq!(trials.len(), 2, "no trial is drawn after the signal: {trials:?}");
    for trial in &trials {
        assert_eq!(trial.state, TrialState::Fail, "trial {} left {:?}", trial.number, trial.state);
        assert_eq!(trial.system_attrs.get(INTERRUPTED_KEY), Some(&serde_json::json!(true)));
        let reason = trial.user_attrs.get(FAIL_REASON_KEY).and_then(|v| v.as_str()).unwrap_or_default();
        assert!(reason.contains("interrupted"), "reason: {reason}");
    }
    // The CSV has both, as failed with their reason.
    let csv = std::fs::read_to_string(results.join("mlp_search_results.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains("FAIL") && l.contains("interrupted")).count(), 2, "{csv}");
}

#[test]
fn sigint_stops_the_search_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (child, results) = start(dir.path(), "0");
    signal(&child, "INT");
    let (output, _) = finish(child);
    assert_stopped_cleanly(&output, &results);

    // The rerun says it resumes, and the interrupted places are drawn again.
    let out = snac()
        .arg("run")
        .arg(dir.path().join("endless.yml"))
        .args(["--trials", "3", "--epochs", "1", "--workers", "1", "--results-dir"])
        .arg(&results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming study 'snac'") && stderr.contains("2 interrupted"), "{stderr}");
    let after = trials(&results);
    assert_eq!(after.iter().filter(|t| t.state == TrialState::Complete).count(), 3, "{after:?}");
}

#[test]
fn sigterm_is_handled_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (child, results) = start(dir.path(), "0");
    signal(&child, "TERM");
    let (output, _) = finish(child);
    assert_stopped_cleanly(&output, &results);
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A grace far longer than the test: only the second signal can end it.
    let (child, _) = start(dir.path(), "600");
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    let (output, waited) = finish(child);
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(waited < Duration::from_secs(60), "it took {waited:?}");
}
