//! The same seed gives the same trials, whatever the number of workers and
//! whichever trial finishes first (NSGA-II waits for a generation before it
//! breeds the next one).

use std::path::Path;
use std::process::Command;

/// The CSV without the columns that are times.
fn trials_csv(dir: &Path, workers: &str) -> Vec<String> {
    let results = dir.join(format!("w{workers}-{}", dir.read_dir().unwrap().count()));
    let out = Command::new(env!("CARGO_BIN_EXE_snac"))
        .args(["search", "--trials", "40", "--seed", "9", "--workers", workers, "--results-dir"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(results.join("mlp_search_results.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let keep: Vec<usize> =
        (0..header.len()).filter(|&i| !["run_timestamp", "duration_s", "yaml_path"].contains(&&*header[i])).collect();
    let rows: Vec<String> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            keep.iter().map(|&i| r[i].to_string()).collect::<Vec<_>>().join(",")
        })
        .collect();
    assert_eq!(rows.len(), 40);
    rows
}

#[test]
fn same_seed_same_trials_with_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let first = trials_csv(dir.path(), "2");
    // Population 8 over 40 trials: five generations, four of them bred.
    assert_eq!(trials_csv(dir.path(), "2"), first, "two runs with 2 workers differ");
    assert_eq!(trials_csv(dir.path(), "1"), first, "1 worker differs from 2");
}
