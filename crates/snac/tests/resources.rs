//! A trial too big for the memory a trial may use fails with its reason,
//! and the search goes on (instead of an allocation failure aborting it).

use std::process::Command;

#[test]
fn an_oversized_trial_fails_and_the_search_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snac"))
        .args(["run", "--trials", "3", "--epochs", "1", "--workers", "1", "--results-dir"])
        .arg(dir.path())
        // 10 kB: every digits MLP needs more.
        .env("SNAC_TRIAL_MEMORY_GB", "0.00001")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "no trial completed: {stderr}");
    let csv = std::fs::read_to_string(dir.path().join("mlp_search_results.csv")).unwrap();
    let failed: Vec<&str> = csv.lines().filter(|l| l.contains(",FAIL,")).collect();
    assert_eq!(failed.len(), 3, "all three trials ran and failed: {csv}");
    for line in failed {
        assert!(line.contains("needs about") && line.contains("SNAC_TRIAL_MEMORY_GB"), "{line}");
    }
}
