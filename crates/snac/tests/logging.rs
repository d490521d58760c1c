//! What a run prints where nobody watches a terminal (a SLURM job's log, a
//! pipe): one line per finished or failed trial, a summary line, warnings
//! with their prefix, and `-q`/`-v`/`SNAC_LOG` choosing how much.

use std::process::{Command, Output};

fn search(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_snac"));
    cmd.args(extra)
        .args(["search", "--trials", "3", "--epochs", "1", "--workers", "1", "--results-dir"])
        .arg(dir)
        .env_remove("SNAC_LOG")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("snac runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_batch_log_gets_one_line_per_trial_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = search(dir.path(), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for number in 0..3 {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("trial {number} COMPLETE in ")))
            .unwrap_or_else(|| panic!("no line for trial {number} in:\n{stderr}"));
        assert!(line.contains(" on ") && line.contains("performance_metric=") && line.contains("bops="), "{line}");
    }
    assert!(stderr.lines().any(|l| l.starts_with("progress: 3/3 trials (0 failed), best acc ")), "{stderr}");
    // The embedded example's 3 trials are fewer than two NSGA-II generations.
    assert!(stderr.lines().any(|l| l.starts_with("warning: 3 trials is less than two generations")), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no terminal escapes in a log:\n{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Pareto set (3 completed trials)"));
}

#[test]
fn quiet_keeps_warnings_and_snac_log_sets_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = search(dir.path(), &["-q"], &[]);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("global search:") && !stderr.contains("COMPLETE"), "info lines under -q:\n{stderr}");
    assert!(stderr.contains("warning: "), "warnings stay under -q:\n{stderr}");
    assert!(String::from_utf8_lossy(&quiet.stdout).contains("Pareto set"), "results still go to stdout");
    let dir = tempfile::tempdir().unwrap();
    let errors_only = search(dir.path(), &[], &[("SNAC_LOG", "error")]);
    let stderr = String::from_utf8_lossy(&errors_only.stderr);
    assert!(!stderr.contains("warning: ") && !stderr.contains("global search:"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let verbose = search(dir.path(), &["-v"], &[("SNAC_LOG", "error")]);
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert!(stderr.contains("global search:") && stderr.contains("debug: "), "-v wins over SNAC_LOG:\n{stderr}");
}
