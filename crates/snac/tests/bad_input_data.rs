//! Bad data files, storage URLs and output paths through the real `snac`
//! binary: each is a clear error naming the file or value and what would be
//! accepted, never a panic, an abort or a silently wrong model (issue 16).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snac"))
}

/// Runs `snac` expecting a clean failure (exit 1, no panic); returns stderr.
fn run_err(cmd: &mut Command) -> String {
    let output: Output = cmd.output().expect("snac runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "expected a clean error, got {}:\n{stderr}", output.status);
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    stderr
}

/// A `.npy` (version 1.0) written by hand.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A config training on `train` (with `labels` for a `.npy`), results in `dir`.
fn file_config(dir: &Path, train: &Path, labels: Option<&Path>) -> PathBuf {
    let labels = labels.map_or(String::new(), |l| format!("\n  train_labels: {}", l.display()));
    let text =
        format!("dataset:\n  name: file\n  train_file: {}{labels}\nsearch:\n  model_type: mlp\n", train.display());
    let path = dir.join("exp.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_on(dir: &Path, train: &Path, labels: Option<&Path>) -> String {
    let config = file_config(dir, train, labels);
    run_err(snac().arg("run").arg(config).args(["--trials", "1", "--epochs", "1", "--results-dir"]).arg(dir.join("r")))
}

#[test]
fn npy_headers_declaring_absurd_sizes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("y.npy");
    std::fs::write(&labels, npy("<i8", "(4,)", &[0; 32])).unwrap();
    let x = dir.path().join("x.npy");
    // (2^64-1, 16): was a capacity-overflow panic.
    std::fs::write(&x, npy("<f4", "(18446744073709551615, 16)", &[0; 64])).unwrap();
    let e = run_on(dir.path(), &x, Some(&labels));
    assert!(e.contains("x.npy") && e.contains("[18446744073709551615, 16]") && e.contains("64 bytes"), "{e}");
    // 64 TiB declared: was an abort on allocation.
    std::fs::write(&x, npy("<f4", "(1099511627776, 16)", &[0; 64])).unwrap();
    let e = run_on(dir.path(), &x, Some(&labels));
    assert!(
        e.contains("x.npy is truncated") && e.contains("70368744177664 bytes") && e.contains("holds only 64"),
        "{e}"
    );
    // Version 4 does not exist (yet): named with the versions read.
    let mut v4 = npy("<f4", "(4, 4)", &[0; 64]);
    v4[6] = 4;
    std::fs::write(&x, v4).unwrap();
    let e = run_on(dir.path(), &x, Some(&labels));
    assert!(e.contains("x.npy: NPY format version 4.0 is not supported; accepted: 1.0, 2.0 and 3.0"), "{e}");
    // NaN features: named with their index.
    let mut data = vec![0u8; 64];
    data[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&x, npy("<f4", "(4, 4)", &data)).unwrap();
    let e = run_on(dir.path(), &x, Some(&labels));
    assert!(e.contains("x.npy") && e.contains("flat index 5") && e.contains("not finite"), "{e}");
}

#[test]
fn csv_first_row_typos_and_non_finite_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "\u{feff}1,2o,0\n3,4,1\n5,6,0\n7,8,1\n").unwrap();
    let e = run_on(dir.path(), &csv, None);
    assert!(e.contains("d.csv line 1, column 2: \"2o\" is not a number, but column 1 (\"1\") is"), "{e}");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,inf,1\n").unwrap();
    let e = run_on(dir.path(), &csv, None);
    assert!(e.contains("d.csv line 3, column 2: \"inf\" is not a finite number"), "{e}");
}

#[test]
fn storage_urls_are_named_with_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        ("", "storage URL '' is empty"),
        ("memory:xyz", "storage URL 'memory:xyz': an in-memory storage is written memory:"),
        (":::", "storage URL ':::' is neither a URL nor a plain file path"),
    ] {
        let e = run_err(snac().current_dir(dir.path()).args(["results", "--out", "out", "--storage", url]));
        assert!(e.contains(says) && e.contains("sqlite:///relative/path.db"), "{url:?}: {e}");
    }
    // Nothing was created in the current directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let e = run_err(snac().args(["results", "--out"]).arg(dir.path().join("out")).arg("--storage").arg(dir.path()));
    assert!(e.contains("is a directory"), "{e}");
}

#[test]
fn a_failed_report_write_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r");
    let output =
        snac().args(["run", "--trials", "1", "--epochs", "1", "--results-dir"]).arg(&results).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let page = results.join("report.html");
    std::fs::remove_file(&page).ok();
    std::fs::create_dir(&page).unwrap();
    let e = run_err(snac().arg("report").arg(&results));
    assert!(e.contains("report.html: it is a directory"), "{e}");
    let left: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}
