//! End-to-end tests of the real `snac` binary on real (small) data: the
//! embedded digits always, MNIST and SNAC-Pack's tutorial configs from
//! `../shared` when it is there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn snac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snac"))
}

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let dir = if dir.exists() { dir } else { PathBuf::from(std::env::var_os("SNAC_SHARED_DIR")?) };
    dir.join("peer-configs").exists().then_some(dir)
}

fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("snac runs");
    assert!(
        output.status.success(),
        "snac failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut rows = vec![header];
    rows.extend(reader.records().map(|r| r.unwrap().iter().map(String::from).collect()));
    rows
}

/// The `.npz` beside a weights JSON holds every tensor of it, same shape,
/// same values: read back in Rust, and with NumPy when `$SNAC_PYTHON` is set.
fn assert_npz_matches_json(npz: &Path, weights: &serde_json::Value) {
    let mut archive = npyz::npz::NpzArchive::open(npz).unwrap_or_else(|e| panic!("{}: {e}", npz.display()));
    let mut keys = Vec::new();
    for layer in weights["layers"].as_array().unwrap() {
        for tensor in layer["tensors"].as_array().unwrap() {
            let key = format!(
                "layer{}_{}/{}",
                layer["index"],
                layer["kind"].as_str().unwrap(),
                tensor["name"].as_str().unwrap()
            );
            let array = archive.by_name(&key).unwrap().unwrap_or_else(|| panic!("{key} not in {}", npz.display()));
            let shape: Vec<u64> = tensor["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            assert_eq!(array.shape(), &shape[..], "{key}");
            let values: Vec<f32> =
                tensor["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert_eq!(array.into_vec::<f32>().unwrap(), values, "{key}");
            keys.push(key);
        }
    }
    assert!(!keys.is_empty());
    let Ok(python) = std::env::var("SNAC_PYTHON") else {
        snac_core::missing_test_dependency("SNAC_PYTHON is not set (a Python with NumPy to read the .npz weights)");
        return;
    };
    let script = "import sys, numpy\nd = numpy.load(sys.argv[1])\nprint(' '.join(f'{k}:{d[k].dtype}:{d[k].size}' for k in d.files))";
    let out = Command::new(python).args(["-c", script]).arg(npz).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = String::from_utf8_lossy(&out.stdout);
    for key in &keys {
        assert!(seen.contains(&format!("{key}:float32:")), "numpy does not list {key}: {seen}");
    }
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]))
}

/// The embedded example with its `local_search` and `synthesis` sections
/// replaced by `sections` (YAML ending in a newline, or nothing).
fn example_with(sections: &str) -> String {
    let text = include_str!("../../../examples/digits_mlp.yaml");
    let start = text.find("# Local search of the best").expect("the example has a local_search section");
    let end = text.find("output:").expect("the example has an output section");
    format!("{}{sections}{}", &text[..start], &text[end..])
}

#[test]
fn embedded_default_search_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        snac().args(["run", "--trials", "4", "--epochs", "15", "--workers", "2", "--results-dir"]).arg(dir.path()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Pareto set"), "{stdout}");
    // Every stage ran: local search of the best model, then the hls4ml
    // hand-off (no Python needed), and the run ends saying where each
    // output is, the report first.
    let local = dir.path().join("local_search_combined");
    assert_eq!(csv_rows(&local.join("combined_qat_pruning_log.csv")).len(), 1 + 3, "QAT + 2 pruning iterations");
    assert!(local.join("best_model_8b3i.json").exists());
    assert!(dir.path().join("hls4ml_export/model.onnx").exists(), "{stdout}");
    let listed = &stdout[stdout.rfind("outputs:").expect("the outputs are listed")..];
    let first = listed.lines().nth(1).unwrap();
    assert!(first.contains("report.html") && first.contains("open this first"), "{listed}");
    for name in ["mlp_search_results.csv", "combined_qat_pruning_log.csv", "hls4ml_export"] {
        assert!(listed.contains(name), "{name} in {listed}");
    }
    let rows = csv_rows(&dir.path().join("mlp_search_results.csv"));
    assert_eq!(rows.len(), 5, "header + 4 trials: {rows:?}");
    for name in
        ["trial", "performance_metric", "bops", "params", "yaml_path", "run_timestamp", "state", "duration_s", "seed"]
    {
        column(&rows, name);
    }
    let state = column(&rows, "state");
    let accuracy = column(&rows, "performance_metric");
    let mut numbers: Vec<u64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, vec![0, 1, 2, 3]);
    for row in &rows[1..] {
        assert_eq!(row[state], "COMPLETE", "{row:?}");
        let acc: f64 = row[accuracy].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "accuracy {acc}");
        let yaml = Path::new(&row[column(&rows, "yaml_path")]).to_path_buf();
        assert!(yaml.exists(), "{}", yaml.display());
        let arch = snac_core::trial_yaml::read_arch(&yaml).unwrap();
        assert_eq!(arch.input_shape, snac_core::arch::Shape::Flat(64));
    }
    let best = snac_core::trial_yaml::TrialYaml::read(&dir.path().join("best_model_for_local_search.yaml")).unwrap();
    let best_acc = rows[1..].iter().map(|r| r[accuracy].parse::<f64>().unwrap()).fold(0.0, f64::max);
    assert_eq!(best.metadata.global_search_accuracy, best_acc);
    assert!(best_acc > 0.5, "the best of 4 digits MLPs after 15 epochs: {best_acc}");
    assert!(dir.path().join("study.db").exists());

    // The report and plots are written; `snac report` and `snac plot` redo them.
    for file in ["report.html", "plots/pareto_performance_metric_vs_bops.png", "plots/pareto_animation.gif"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    std::fs::remove_file(dir.path().join("report.html")).unwrap();
    run_ok(snac().arg("report").arg(dir.path()));
    let report = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for number in 0..4 {
        assert!(report.contains(&format!("id=\"trial-{number}\"")), "trial {number} in the report");
    }
    let out = dir.path().join("replot");
    let printed = run_ok(snac().arg("plot").arg(dir.path().join("mlp_search_results.csv")).arg("--out").arg(&out));
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("pareto_performance_metric_vs_bops.svg"), "{printed}");
    assert!(out.join("pareto_performance_metric_vs_bops.png").exists());
}

#[test]
fn plot_names_the_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("old_search_results.csv");
    std::fs::write(&csv, "trial,accuracy,bops\n0,0.9,1000\n").unwrap();
    let output = snac().arg("plot").arg(&csv).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("old_search_results.csv") && stderr.contains("'performance_metric'"), "{stderr}");
}

#[test]
fn validate_reports_every_error_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "dataset:\n  name: mnistt\nsearch:\n  model_type: mlp\n  sampler: nsga3\n  objective_names: [performance_metric, bops]\n  maximize_flags: [true]\nsearch_space:\n  act_space: [relu, swish]\n",
    )
    .unwrap();
    let output = snac().arg("validate").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "dataset.name",
        "mnistt",
        ":2",
        "search.sampler",
        "nsga3",
        "auto, tpe, nsga2, random",
        "maximize_flags",
        "swish",
        "bad.yaml",
    ] {
        assert!(stderr.contains(needle), "missing '{needle}' in:\n{stderr}");
    }
}

#[test]
fn validate_accepts_the_tutorial_configs() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared (SNAC-Pack's tutorial configs) is not here");
        return;
    };
    for name in ["t1_config.yaml", "t2_config.yaml", "t3_config.yaml"] {
        let out = run_ok(snac().arg("validate").arg(shared.join("peer-configs").join(name)));
        assert!(!out.stdout.is_empty());
    }
}

/// Issue 6: `snac data mnist-points` on the embedded digits (and real MNIST
/// when ../shared is here), read back by a DeepSets config.
#[test]
fn mnist_points_files_feed_a_deepsets_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points");
    let output =
        run_ok(snac().args(["data", "mnist-points", "--source", "digits", "--points", "16", "--out"]).arg(&out));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1438 train and 359 test sets of 16") && stdout.contains("model_type: deepsets"),
        "{stdout}"
    );
    let (dims, x) = snac_core::data::read_npy_f32(&out.join("x_train.npy")).unwrap();
    assert_eq!(dims, [1438, 16, 3]);
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(snac_core::data::read_npy_f32(&out.join("y_test.npy")).unwrap().0, [359]);
    // The snippet it prints is a valid dataset section for a DeepSets search.
    let snippet = &stdout[stdout.find("dataset:").unwrap()..];
    let config = dir.path().join("deepsets.yaml");
    std::fs::write(&config, format!("{snippet}\n  n_trials: 2\n")).unwrap();
    let resolved = String::from_utf8_lossy(&run_ok(snac().arg("validate").arg(&config)).stdout).to_string();
    assert!(resolved.contains("model_type: deepsets") && resolved.contains("sets: true"), "{resolved}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deepsets_points.yaml");
    run_ok(snac().arg("validate").arg(example));
    // Sources that are not images are refused.
    let output = snac().args(["data", "mnist-points", "--source", "qubit", "--out"]).arg(&out).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'qubit'") && stderr.contains("[possible values: mnist, fashion_mnist, digits]"),
        "{stderr}"
    );
    let Some(shared) = shared_dir() else {
        eprintln!("skipped (MNIST part): ../shared is not here");
        return;
    };
    let mnist = dir.path().join("mnist");
    run_ok(
        snac()
            .args(["data", "mnist-points", "--subset", "200", "--out"])
            .arg(&mnist)
            .env("SNAC_DATA_DIR", shared.join("data")),
    );
    assert_eq!(snac_core::data::read_npy_f32(&mnist.join("x_test.npy")).unwrap().0, [200, 32, 3]);
}

#[test]
fn failed_trials_are_recorded_and_the_search_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nan.yaml");
    // A step size beyond f32's range turns the weights infinite or NaN after
    // the first step, so the loss becomes NaN whatever the architecture
    // (1e30 can leave a saturated net finite, at chance: a completed trial).
    std::fs::write(
        &config,
        format!(
            "{}\n",
            include_str!("../../../examples/digits_mlp.yaml")
                .replace("  seed: 42", "  seed: 42\n  learning_rate: 1.0e300")
        ),
    )
    .unwrap();
    let output = snac()
        .arg("run")
        .arg(&config)
        .args(["--trials", "3", "--epochs", "2", "--results-dir"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let rows = csv_rows(&dir.path().join("r/mlp_search_results.csv"));
    assert_eq!(rows.len(), 4, "{rows:?}\n{}", String::from_utf8_lossy(&output.stderr));
    let state = column(&rows, "state");
    let reason = column(&rows, "fail_reason");
    for row in &rows[1..] {
        assert_eq!(row[state], "FAIL", "{row:?}");
        assert!(row[reason].to_lowercase().contains("nan") || row[reason].contains("inf"), "{row:?}");
    }
    assert!(!output.status.success(), "a search with no completed trial exits non-zero");
}

#[test]
fn resume_after_kill_loses_no_completed_trial() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r");
    let csv = results.join("mlp_search_results.csv");
    let mut child = snac()
        .args(["run", "--trials", "20", "--epochs", "10", "--workers", "1", "--results-dir"])
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        // Count whole lines only: the run may be appending a row right now.
        let done = std::fs::read_to_string(&csv).map(|s| s.matches('\n').count().saturating_sub(1)).unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "finished before the kill; make the run longer");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = csv_rows(&csv);
    let accuracy = column(&before, "performance_metric");
    let out = run_ok(
        snac().args(["run", "--trials", "20", "--epochs", "10", "--workers", "2", "--results-dir"]).arg(&results),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming"), "{stderr}");
    let after = csv_rows(&csv);
    let state = column(&after, "state");
    for row in &before[1..] {
        let again = after[1..].iter().find(|r| r[0] == row[0]).expect("completed trial kept");
        assert_eq!(again[accuracy], row[accuracy]);
    }
    let counted = after[1..]
        .iter()
        .filter(|r| {
            r[state] == "COMPLETE"
                || (r[state] == "FAIL" && !r[column(&after, "fail_reason")].starts_with("interrupted"))
        })
        .count();
    assert_eq!(counted, 20, "{after:?}");
}

#[test]
fn tutorial_1_runs_on_mnist() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared (MNIST and tutorial configs) is not here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        snac()
            .env("SNAC_DATA_DIR", shared.join("data"))
            .arg("run")
            .arg(shared.join("peer-configs/t1_config.yaml"))
            .arg("--results-dir")
            .arg(dir.path()),
    );
    let _ = out;
    let rows = csv_rows(&dir.path().join("mlp_search_results.csv"));
    assert_eq!(rows.len(), 4, "t1 has n_trials 3");
    let (resource, cycles) = (column(&rows, "avg_resource"), column(&rows, "clock_cycles"));
    for row in &rows[1..] {
        let avg: f64 = row[resource].parse().unwrap_or_else(|_| panic!("avg_resource in {row:?}"));
        let cycles: f64 = row[cycles].parse().unwrap();
        assert!(avg > 0.0 && cycles >= 0.0, "{row:?}");
    }
    // T1 runs the local search after the global one.
    assert!(dir.path().join("local_search_combined/combined_qat_pruning_log.csv").exists());
    let accuracy = column(&rows, "performance_metric");
    assert!(rows[1..].iter().any(|r| r[accuracy].parse::<f64>().unwrap() > 0.5), "{rows:?}");
    // The report and the plots of every stage (4 objectives: 6 pairs and a 3-D view).
    let mut files = vec![
        "report.html".to_string(),
        "plots/pareto_3d.png".into(),
        "plots/local_accuracy_vs_effective_bops.png".into(),
        "plots/local_accuracy_vs_sparsity.svg".into(),
        "plots/training_curves_best.png".into(),
        "plots/pareto_animation.gif".into(),
    ];
    let objectives = ["performance_metric", "bops", "avg_resource", "clock_cycles"];
    for (i, x) in objectives.iter().enumerate() {
        for y in &objectives[..i] {
            files.extend(["png", "svg"].map(|ext| format!("plots/pareto_{y}_vs_{x}.{ext}")));
        }
    }
    for file in files {
        let size = std::fs::metadata(dir.path().join(&file)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{file}: {size} bytes");
    }
    let report = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(report.contains("id=\"local-table\""), "the report shows the local search");
}

#[test]
fn local_search_quantizes_and_prunes_to_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("local.yaml");
    let text = example_with(
        "local_search:\n  qat_epochs: 4\n  pruning_iterations: 3\n  pruning_epochs: 3\n  pruning_rate: 0.8\n  precision_pairs:\n    - {total_bits: 16, int_bits: 6}\n    - {total_bits: 8, int_bits: 3}\n",
    );
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("run").arg(&config).args(["--trials", "3", "--epochs", "15", "--results-dir"]).arg(&results));
    let rows = csv_rows(&results.join("local_search_combined/combined_qat_pruning_log.csv"));
    for name in [
        "Precision",
        "TotalBits",
        "IntBits",
        "Iteration",
        "Sparsity",
        "Accuracy",
        "EffectiveBOPs",
        "nonzero_weights",
        "bops_effective",
    ] {
        column(&rows, name);
    }
    assert_eq!(rows.len(), 1 + 2 * 4, "2 precisions × (QAT + 3 pruning iterations): {rows:?}");
    let (bits, iteration, sparsity, accuracy) =
        (column(&rows, "TotalBits"), column(&rows, "Iteration"), column(&rows, "Sparsity"), column(&rows, "Accuracy"));
    for row in &rows[1..] {
        let i: i32 = row[iteration].parse().unwrap();
        let target = 1.0 - 0.8f64.powi(i);
        let got: f64 = row[sparsity].parse().unwrap();
        assert!((got - target).abs() < 0.02, "iteration {i}: sparsity {got}, target {target}");
        let acc: f64 = row[accuracy].parse().unwrap();
        assert!(acc > 0.5, "{row:?}");
    }
    for total in ["16", "8"] {
        assert!(rows[1..].iter().any(|r| r[bits] == total));
    }
    for name in ["best_model_16b6i.json", "best_model_8b3i.json"] {
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(results.join("local_search_combined").join(name)).unwrap()).unwrap();
        assert!(model["architecture"]["components"].is_array() && model["weights"].is_object(), "{name}");
        assert_eq!(model["quantized_model"]["format"], "snac-quantized-model/1", "{name}");
        assert_npz_matches_json(
            &results.join("local_search_combined").join(name).with_extension("npz"),
            &model["weights"],
        );
    }
    let trial_json = results.join("trial_weights/trial_0.json");
    let trial_weights: serde_json::Value = serde_json::from_slice(&std::fs::read(&trial_json).unwrap()).unwrap();
    assert_npz_matches_json(&trial_json.with_extension("npz"), &trial_weights);

    // `snac predict` runs the integer model: on the validation split its
    // arg-max accuracy is the one recorded in the model file.
    let experiment = snac_core::config::load(&config).unwrap();
    let data = snac_core::data::load(&experiment.dataset).unwrap();
    let features = data.val.x.len() / data.val.len();
    let x = dir.path().join("val_x.npy");
    let values: Vec<f64> = data.val.x.iter().map(|&v| v as f64).collect();
    snac_core::data::write_npy_f64(&x, &[data.val.len(), features], &values).unwrap();
    let model_file = results.join("local_search_combined/best_model_8b3i.json");
    let out = dir.path().join("out.npy");
    run_ok(snac().arg("predict").arg(&model_file).arg(&x).arg("--out").arg(&out));
    let (dims, outputs) = snac_core::data::read_npy_f32(&out).unwrap();
    assert_eq!(dims, [data.val.len(), 10]);
    let correct = outputs
        .chunks_exact(10)
        .zip(&data.val.y)
        .filter(|(row, label)| {
            let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            best == **label as usize
        })
        .count();
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(&model_file).unwrap()).unwrap();
    let recorded = model["integer_accuracy"].as_f64().unwrap();
    assert_eq!(correct as f64 / data.val.len() as f64, recorded);
    // The printed form: arg-max, tab, outputs; one line per sample.
    let printed = run_ok(snac().arg("predict").arg(&model_file).arg(&x));
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(stdout.lines().count(), data.val.len());
    // A wrong shape is named with what would fit.
    snac_core::data::write_npy_f64(&x, &[2, 3], &[0.0; 6]).unwrap();
    let bad = snac().arg("predict").arg(&model_file).arg(&x).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("val_x.npy") && stderr.contains("[2, 3]"), "{stderr}");
}

#[test]
fn a_sequential_search_is_reproducible_from_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let results = dir.path().join(name);
        run_ok(
            snac()
                .args(["search", "--trials", "10", "--epochs", "4", "--workers", "1", "--seed", seed, "--results-dir"])
                .arg(&results),
        );
        let rows = csv_rows(&results.join("mlp_search_results.csv"));
        let keep = ["trial", "performance_metric", "bops", "params", "seed"].map(|c| column(&rows, c));
        rows[1..].iter().map(|r| keep.iter().map(|&i| r[i].clone()).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let first = run("a", "7");
    assert_eq!(first.len(), 10);
    assert_eq!(first, run("b", "7"), "same seed, same trials");
    assert_ne!(first, run("c", "8"), "another seed, other trials");
}

#[test]
fn estimate_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(snac().args(["search", "--trials", "1", "--epochs", "1", "--results-dir"]).arg(dir.path()));
    let arch = dir.path().join("best_model_for_local_search.yaml");
    let out = run_ok(snac().arg("estimate").arg(&arch).args([
        "--board",
        "pynq-z2",
        "--precision",
        "ap_fixed<6,2>",
        "--reuse",
        "2",
        "--json",
    ]));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["avg_resource", "bram", "bram_pct", "cycles", "dsp", "dsp_pct", "ff", "ff_pct", "interval", "lut", "lut_pct"]
    );
    assert_eq!(value["interval"], 2.0);
    let bad = snac().arg("estimate").arg(&arch).args(["--board", "zcu999"]).output().unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("zcu999") && stderr.contains("pynq-z2"), "{stderr}");
}

#[test]
fn estimate_with_rule4ml_gives_its_numbers_or_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(snac().args(["search", "--trials", "1", "--epochs", "1", "--results-dir"]).arg(dir.path()));
    let arch = dir.path().join("best_model_for_local_search.yaml");

    let missing = dir.path().join("no-rule4ml-here");
    let output = snac()
        .arg("estimate")
        .arg(&arch)
        .args(["--estimator", "rule4ml"])
        .env("SNAC_RULE4ML_DIR", &missing)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-rule4ml-here") && stderr.contains("pip install --no-deps rule4ml==0.2.0"), "{stderr}");

    let estimator = match snac_core::estimate::Rule4mlEstimator::load_default(&Default::default()) {
        Ok(estimator) => estimator,
        Err(error) => return snac_core::missing_test_dependency(&format!("{error:#}")),
    };
    let out =
        run_ok(snac().arg("estimate").arg(&arch).args(["--estimator", "rule4ml", "--board", "pynq-z2", "--json"]));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let board = snac_core::estimate::Board::by_name("pynq-z2").unwrap();
    let model = snac_core::trial_yaml::read_arch(&arch).unwrap();
    let expected = snac_core::estimate::ResourceEstimator::estimate(
        &estimator,
        &model,
        &snac_core::estimate::HlsSettings::default(),
        None,
        &board,
    )
    .unwrap();
    // serde_json's default float parsing may differ in the last bit.
    let expected = serde_json::to_value(expected).unwrap();
    for (key, number) in expected.as_object().unwrap() {
        let (got, want) = (value[key].as_f64().unwrap(), number.as_f64().unwrap());
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{key}: {got} vs {want}");
    }
}

#[test]
fn resource_budgets_mark_infeasible_trials_and_pick_a_feasible_best() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("budget.yaml");
    let text = include_str!("../../../examples/digits_mlp.yaml")
        .replace("  seed: 42", "  seed: 42\n  constraints: {params: 3000, lut_pct: 1000}");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("search").arg(&config).args(["--trials", "8", "--epochs", "5", "--results-dir"]).arg(&results));
    let rows = csv_rows(&results.join("mlp_search_results.csv"));
    let (feasible, params, accuracy) =
        (column(&rows, "feasible"), column(&rows, "params"), column(&rows, "performance_metric"));
    for row in &rows[1..] {
        let small = row[params].parse::<usize>().unwrap() <= 3000;
        assert_eq!(row[feasible], small.to_string(), "{row:?}");
    }
    let best = snac_core::trial_yaml::TrialYaml::read(&results.join("best_model_for_local_search.yaml")).unwrap();
    let best_row = rows[1..].iter().find(|r| r[0] == best.metadata.trial_id.to_string()).unwrap();
    if rows[1..].iter().any(|r| r[feasible] == "true") {
        assert_eq!(best_row[feasible], "true");
        let best_feasible = rows[1..]
            .iter()
            .filter(|r| r[feasible] == "true")
            .map(|r| r[accuracy].parse::<f64>().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(best_row[accuracy].parse::<f64>().unwrap(), best_feasible);
    }

    std::fs::write(
        &config,
        include_str!("../../../examples/digits_mlp.yaml")
            .replace("  seed: 42", "  seed: 42\n  constraints: {luts: 10}"),
    )
    .unwrap();
    let output = snac().arg("validate").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("search.constraints.luts") && stderr.contains("lut_pct"), "{stderr}");
}

/// `search.n_folds: 3`: every trial trains on three stratified folds; its
/// objective is the mean accuracy, and the folds' accuracies are in the
/// CSVs of both stages.
#[test]
fn k_fold_cross_validation_in_both_stages() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kfold.yaml");
    let text = example_with(
        "local_search:\n  qat_epochs: 2\n  pruning_iterations: 1\n  pruning_epochs: 2\n  pruning_rate: 0.8\n  precision_pairs:\n    - {total_bits: 8, int_bits: 3}\n",
    )
    .replace("  epochs: 20\n", "  epochs: 6\n  n_folds: 3\n");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--results-dir"]).arg(&results));
    let check = |rows: &[Vec<String>], accuracy_column: &str| {
        let (folds, accuracy) = (column(rows, "fold_accuracies"), column(rows, accuracy_column));
        for row in &rows[1..] {
            let values: Vec<f64> = row[folds].split(';').map(|v| v.parse().unwrap()).collect();
            assert_eq!(values.len(), 3, "{row:?}");
            let mean = values.iter().sum::<f64>() / 3.0;
            let reported: f64 = row[accuracy].parse().unwrap();
            assert!((mean - reported).abs() < 1e-5, "mean {mean} vs {reported}: {row:?}");
            assert!(values.iter().any(|&v| v != values[0]), "three different folds: {row:?}");
        }
    };
    let search = csv_rows(&results.join("mlp_search_results.csv"));
    assert_eq!(search.len(), 3);
    check(&search, "performance_metric");
    let local = csv_rows(&results.join("local_search_combined/combined_qat_pruning_log.csv"));
    assert_eq!(local.len(), 3, "QAT + 1 pruning iteration");
    check(&local, "Accuracy");

    // One worker leaves cores idle, so a trial trains its folds side by side
    // there; two workers keep them busy, so folds run one after another.
    // The folds' accuracies are the same either way.
    let search_only = dir.path().join("kfold_search.yaml");
    let text = example_with("").replace("  epochs: 20\n", "  epochs: 3\n  n_folds: 3\n");
    std::fs::write(&search_only, text).unwrap();
    let fold_accuracies = |workers: &str| {
        let results = dir.path().join(format!("w{workers}"));
        run_ok(
            snac()
                .arg("run")
                .arg(&search_only)
                .args(["--trials", "2", "--workers", workers, "--results-dir"])
                .arg(&results),
        );
        let rows = csv_rows(&results.join("mlp_search_results.csv"));
        let (trial, folds) = (column(&rows, "trial"), column(&rows, "fold_accuracies"));
        let mut by_trial: Vec<(String, String)> =
            rows[1..].iter().map(|r| (r[trial].clone(), r[folds].clone())).collect();
        by_trial.sort();
        by_trial
    };
    let one = fold_accuracies("1");
    assert!(one.len() == 2 && one.iter().all(|(_, folds)| folds.split(';').count() == 3), "{one:?}");
    assert_eq!(one, fold_accuracies("2"));
}

fn local_config(dir: &Path, act_space: &str, synthesis: bool) -> PathBuf {
    let config = dir.join("export.yaml");
    let mut extra = "local_search:\n  qat_epochs: 2\n  pruning_iterations: 1\n  pruning_epochs: 1\n  pruning_rate: 0.8\n  precision_pairs:\n    - {total_bits: 8, int_bits: 3}\n".to_string();
    if synthesis {
        extra.push_str(&format!(
            "synthesis:\n  total_bits: 8\n  int_bits: 3\n  hls_output_dir: {}\n",
            dir.join("hls").display()
        ));
    }
    let text =
        example_with(&extra).replace("  act_space: [relu, tanh, sigmoid]\n", &format!("  act_space: {act_space}\n"));
    std::fs::write(&config, text).unwrap();
    config
}

/// `local_search.precision: per_layer`: after the uniform pairs, a search
/// for per-layer widths logs every candidate, the widths found go through
/// QAT and pruning as the `per-layer` precision, its model holds one type
/// per layer, the hand-off exports it, and hls4ml's C simulation matches it
/// bit for bit.
#[test]
fn per_layer_precision_search_logs_exports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("per_layer.yaml");
    let text = example_with(
        "local_search:\n  precision: per_layer\n  qat_epochs: 3\n  pruning_iterations: 1\n  pruning_epochs: 2\n  pruning_rate: 0.8\n  precision_pairs:\n    - {total_bits: 8, int_bits: 3}\n    - {total_bits: 6, int_bits: 2}\n",
    );
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "15", "--results-dir"]).arg(&results));
    let local = results.join("local_search_combined");

    // Every candidate: the start, post-training steps, QAT rounds.
    let candidates = csv_rows(&local.join("precision_search_log.csv"));
    let (changed, phase, widths, accuracy, lut) = (
        column(&candidates, "changed"),
        column(&candidates, "phase"),
        column(&candidates, "widths"),
        column(&candidates, "accuracy"),
        column(&candidates, "lut"),
    );
    assert_eq!(candidates[1][changed], "start");
    assert!(candidates.len() > 5, "{} candidates", candidates.len() - 1);
    assert!(candidates[1..].iter().any(|r| r[phase] == "qat"), "no QAT round: {candidates:?}");
    for row in &candidates[1..] {
        let a: f64 = row[accuracy].parse().unwrap();
        assert!((0.0..=1.0).contains(&a) && !row[widths].is_empty(), "{row:?}");
        assert!(row[lut].parse::<f64>().unwrap() > 0.0, "{row:?}");
    }

    // The per-layer precision in the log, with its widths.
    let rows = csv_rows(&local.join("combined_qat_pruning_log.csv"));
    let (precision, layer_widths) = (column(&rows, "Precision"), column(&rows, "layer_widths"));
    let per_layer: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[precision] == "per-layer").collect();
    assert_eq!(per_layer.len(), 2, "QAT and one pruning iteration: {rows:?}");
    assert!(per_layer.iter().all(|r| r[layer_widths].contains(":w")), "{per_layer:?}");
    assert!(rows[1..].iter().filter(|r| r[precision] != "per-layer").all(|r| r[layer_widths].is_empty()));

    // The model file: one type per layer, none wider than the start's 8 bits.
    let model_file = local.join("best_model_per_layer.json");
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(&model_file).unwrap()).unwrap();
    assert_eq!(model["precision_mode"], "per_layer");
    let layers = model["quantized_model"]["types"]["layers"].as_array().expect("per-layer types");
    assert!(!layers.is_empty());
    for layer in layers {
        for role in ["weights", "biases", "result"] {
            if let Some(width) = layer[role]["width"].as_u64() {
                let integer = layer[role]["integer"].as_u64().unwrap();
                assert!(width <= 8 || width == integer, "{layer}");
            }
        }
    }
    assert!(model["integer_accuracy"].as_f64().unwrap() > 0.3, "{}", model["integer_accuracy"]);
    // The hand-off exported it; the report plots accuracy against LUTs.
    assert!(local.join("best_model_per_layer_hls4ml/model.onnx").exists());
    let report = std::fs::read_to_string(results.join("report.html")).unwrap();
    assert!(report.contains("accuracy vs estimated LUTs"), "no LUT plot in the report");

    if std::env::var_os("SNAC_PYTHON").is_none() {
        snac_core::missing_test_dependency("$SNAC_PYTHON (a Python with hls4ml, qonnx and onnx) is not set");
        return;
    }
    let verified = dir.path().join("verified");
    let out = run_ok(snac().arg("export").arg(&model_file).arg("--out").arg(&verified).args([
        "--verify",
        "--samples",
        "300",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hls4ml C simulation: 3000 of 3000 outputs bit-identical"), "{stdout}");
}

/// `snac run` ends with the hand-off for the `synthesis:` precision, with
/// `hls_config`'s io type, backend and clock period; `snac export` takes
/// them as flags, and `--verify` checks it with hls4ml's C simulation.
#[test]
fn run_hands_off_to_hls4ml_and_export_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path(), "[relu, tanh, sigmoid]", true);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("hls_config:\n"));
    let hls = "hls_config:\n  io_type: io_stream\n  backend: Vivado\n  clock_period: 4\n";
    std::fs::write(&config, text.replacen("hls_config:\n", hls, 1)).unwrap();
    let results = dir.path().join("r");
    let out =
        run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "5", "--results-dir"]).arg(&results));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hls4ml hand-off"));
    let export = results.join("hls4ml_export");
    for file in [
        "model.onnx",
        "hls4ml_config.json",
        "convert.py",
        "README.md",
        "tb_data/tb_input_features.dat",
        "tb_data/tb_output_predictions.dat",
    ] {
        assert!(export.join(file).metadata().unwrap().len() > 0, "{file}");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("hls4ml_config.json")).unwrap()).unwrap();
    assert_eq!(config["part"], "xczu9eg-ffvb1156-2-e");
    assert_eq!((config["io_type"].as_str(), config["backend"].as_str()), (Some("io_stream"), Some("Vivado")));
    assert_eq!(config["clock_period_ns"], 4.0);
    assert_eq!(config["output_dir"].as_str().unwrap(), dir.path().join("hls").to_str().unwrap());
    assert_eq!(std::fs::read_to_string(export.join("tb_data/tb_output_predictions.dat")).unwrap().lines().count(), 100);

    // `snac export`'s flags; without them io_parallel, Vitis, 5 ns.
    let model = results.join("local_search_combined/best_model_8b3i.json");
    let config_of = |args: &[&str]| -> serde_json::Value {
        let out = dir.path().join("flags");
        run_ok(snac().arg("export").arg(&model).arg("--out").arg(&out).args(args));
        serde_json::from_slice(&std::fs::read(out.join("hls4ml_config.json")).unwrap()).unwrap()
    };
    let config = config_of(&["--io-type", "io_stream", "--backend", "Vivado", "--clock-ns", "3.5"]);
    assert_eq!((config["io_type"].as_str(), config["backend"].as_str()), (Some("io_stream"), Some("Vivado")));
    assert_eq!(config["clock_period_ns"], 3.5);
    let config = config_of(&[]);
    assert_eq!((config["io_type"].as_str(), config["backend"].as_str()), (Some("io_parallel"), Some("Vitis")));
    assert_eq!(config["clock_period_ns"], 5.0);

    if std::env::var_os("SNAC_PYTHON").is_none() {
        snac_core::missing_test_dependency("$SNAC_PYTHON (a Python with hls4ml, qonnx and onnx) is not set");
        return;
    }
    let verified = dir.path().join("verified");
    let out =
        run_ok(snac().arg("export").arg(&model).arg("--out").arg(&verified).args(["--verify", "--samples", "300"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hls4ml C simulation: 3000 of 3000 outputs bit-identical"), "{stdout}");
}

/// `snac run` hands off every local-search model it can, each to a folder
/// beside its model file; one it cannot gets one line saying why and no
/// folder.
#[test]
fn run_exports_every_local_model_and_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path(), "[relu, tanh]", false);
    let pairs = "    - {total_bits: 8, int_bits: 3}\n";
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(pairs, &format!("{pairs}    - {{total_bits: 6, int_bits: 2}}\n"));
    std::fs::write(&config, &text).unwrap();
    let results = dir.path().join("r");
    let out =
        run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "3", "--results-dir"]).arg(&results));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 of 2 local-search models exported"), "{stderr}");
    let local = results.join("local_search_combined");
    for stem in ["best_model_8b3i", "best_model_6b2i"] {
        let export = local.join(format!("{stem}_hls4ml"));
        assert!(export.join("model.onnx").exists() && export.join("convert.py").exists(), "{stem}");
        let settings: serde_json::Value =
            serde_json::from_slice(&std::fs::read(export.join("hls4ml_config.json")).unwrap()).unwrap();
        assert_eq!(settings["output_dir"], "hls_project", "{stem}: the HLS project goes inside its own folder");
    }
    assert!(!results.join("hls4ml_export").exists(), "no synthesis: section, so no hls4ml_export");

    // Pruning alone leaves a float model: no hand-off, one line saying why.
    let float = dir.path().join("float.yaml");
    std::fs::write(&float, text.replace("  precision_pairs:", "  mode: prune_only\n  precision_pairs:")).unwrap();
    let results = dir.path().join("f");
    let out =
        run_ok(snac().arg("run").arg(&float).args(["--trials", "1", "--epochs", "2", "--results-dir"]).arg(&results));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refusals: Vec<&str> = stderr.lines().filter(|l| l.contains("no hls4ml hand-off for")).collect();
    assert_eq!(refusals.len(), 1, "{stderr}");
    assert!(
        refusals[0].contains("best_model_float_pruned.json") && refusals[0].contains("no fixed-point form"),
        "{stderr}"
    );
    assert!(!results.join("local_search_combined/best_model_float_pruned_hls4ml").exists());
}

/// A model with a layer that has no fixed-point form cannot be exported,
/// and the error names the layer.
#[test]
fn export_of_an_unsupported_layer_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path(), "[relu]", false);
    // LayerNorm has no fixed-point form (GELU, once refused, is exported).
    let text =
        std::fs::read_to_string(&config).unwrap().replace("  norm_space: [null, batch]\n", "  norm_space: [layer]\n");
    assert!(text.contains("norm_space: [layer]"));
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("run").arg(&config).args(["--trials", "1", "--epochs", "2", "--results-dir"]).arg(&results));
    let model = results.join("local_search_combined/best_model_8b3i.json");
    let out = snac().arg("export").arg(&model).arg("--out").arg(dir.path().join("x")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("LayerNorm") && stderr.contains("best_model_8b3i.json"),
        "{stderr}"
    );
}

/// Tutorial 3 from the README on simulated traces: `snac data simulate-qubit`,
/// then our tutorial config (global search with hardware metrics, local
/// search, hls4ml hand-off), with the readout fidelity next to accuracy.
#[test]
fn tutorial_3_runs_on_simulated_qubit_traces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("qubit");
    let out = run_ok(
        snac()
            .args(["data", "simulate-qubit", "--out"])
            .arg(&data)
            .args(["--n", "2400", "--n-test", "400", "--seed", "3", "--t1-us", "30"]),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0528_X_train_0_770.npy"));
    let recorded = std::fs::read_to_string(data.join("simulation.yaml")).unwrap();
    assert!(recorded.contains("seed 3") && recorded.contains("t1_us: 30"), "{recorded}");
    let text = include_str!("../../../examples/tutorial_3_qubit/config.yaml")
        .replace("data_dir: ../../data/qubit", &format!("data_dir: {}", data.display()))
        .replace("subset_size: 10000", "subset_size: 2000");
    let config = dir.path().join("t3.yaml");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    let out =
        run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "3", "--results-dir"]).arg(&results));
    let stdout = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2000 train / 400 validation samples, input (800)"), "{stdout}");
    let rows = csv_rows(&results.join("block_search_results.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let (accuracy, fidelity) = (column(&rows, "performance_metric"), column(&rows, "readout_fidelity"));
    column(&rows, "avg_resource");
    for row in &rows[1..] {
        let (accuracy, fidelity): (f64, f64) = (row[accuracy].parse().unwrap(), row[fidelity].parse().unwrap());
        // The simulated test split is exactly balanced, so F = 1 − P(e|g) − P(g|e) = 2·accuracy − 1.
        assert!((fidelity - (2.0 * accuracy - 1.0)).abs() < 1e-6, "{row:?}");
    }
    let best = rows[1..].iter().map(|r| r[accuracy].parse::<f64>().unwrap()).fold(0.0, f64::max);
    assert!(best > 0.85, "a 400-sample window separates the states: {rows:?}");
    assert!(results.join("local_search_combined/combined_qat_pruning_log.csv").exists());
    assert!(results.join("hls4ml_export").is_dir());

    // SNAC-Pack's own t3_config, its data_dir missing, finds the traces through $SNAC_DATA_DIR/qubit.
    let Some(shared) = shared_dir() else {
        eprintln!("skipped the t3_config part: ../shared (SNAC-Pack's tutorial configs) is not here");
        return;
    };
    let results = dir.path().join("t3");
    let out = run_ok(
        snac()
            .env("SNAC_DATA_DIR", dir.path())
            .arg("search")
            .arg(shared.join("peer-configs/t3_config.yaml"))
            .args(["--trials", "1", "--epochs", "1", "--results-dir"])
            .arg(&results),
    );
    let stdout = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1000 train / 400 validation samples, input (800)"), "{stdout}");
    assert_eq!(csv_rows(&results.join("block_search_results.csv")).len(), 2);
}

/// The T3 pipeline on real traces recorded on the RFSoC board (mock readout
/// waveforms, 6200 × 100 I/Q samples, ../shared only: no licence, never copied).
#[test]
fn tutorial_3_pipeline_on_real_board_traces() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared (real qubit readout traces) is not here");
        return;
    };
    let traces = shared.join("data/qubit_readout");
    let (x, y) = (traces.join("malab_mock_w100_s285_X.npy"), traces.join("malab_mock_w100_s285_y.npy"));
    if !x.is_file() || !y.is_file() {
        eprintln!("skipped: {} is not here", x.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../../examples/tutorial_3_qubit/config.yaml")
        .replace("data_dir: ../../data/qubit", &format!("train_file: {}\n  train_labels: {}", x.display(), y.display()))
        .replace("start_location: 100", "start_location: 0")
        .replace("window_size: 400", "window_size: 100")
        .replace("subset_size: 10000", "subset_size: 2000");
    let config = dir.path().join("t3_real.yaml");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    let out =
        run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "3", "--results-dir"]).arg(&results));
    let stdout = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // 20 % of the 6200 traces held out per state, 2000 of the rest drawn at random.
    assert!(stdout.contains("2000 train / 1240 validation samples, input (200)"), "{stdout}");
    let rows = csv_rows(&results.join("block_search_results.csv"));
    let (accuracy, fidelity) = (column(&rows, "performance_metric"), column(&rows, "readout_fidelity"));
    let best = rows[1..].iter().map(|r| r[accuracy].parse::<f64>().unwrap()).fold(0.0, f64::max);
    let best_fidelity = rows[1..].iter().map(|r| r[fidelity].parse::<f64>().unwrap()).fold(-1.0, f64::max);
    // The board's NN classified these mock traces 100 % correctly.
    assert!(best > 0.97 && best_fidelity > 0.94, "accuracy {best}, fidelity {best_fidelity}: {rows:?}");
    assert!(results.join("local_search_combined/combined_qat_pruning_log.csv").exists());
}

/// Issue 6: a search with `block_types: [ConvAttn]` builds, trains and
/// records attention blocks, and local search quantizes them into an integer
/// model whose accuracy is recorded.
#[test]
fn attention_blocks_are_searched_trained_and_quantized() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("attn.yaml");
    let text = include_str!("../../../examples/digits_blocks.yaml")
        .replace("block_types: [Conv, ConvAttn, MLP, None]", "block_types: [ConvAttn]")
        .replace("num_blocks: 3", "num_blocks: 1")
        .replace("pruning_iterations: 2", "pruning_iterations: 1")
        .replace("    - {total_bits: 16, int_bits: 6}\n", "");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    run_ok(snac().arg("run").arg(&config).args(["--trials", "2", "--epochs", "2", "--results-dir"]).arg(&results));
    let rows = csv_rows(&results.join("block_search_results.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let state = column(&rows, "state");
    for row in &rows[1..] {
        assert_eq!(row[state], "COMPLETE", "{row:?}");
        let trial = &row[0];
        let yaml = std::fs::read_to_string(results.join(format!("trial_yamls/trial_{trial}_arch.yaml"))).unwrap();
        assert!(yaml.contains("block_type: ConvAttn") && yaml.contains("hidden_channels"), "{yaml}");
    }
    let model: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("local_search_combined/best_model_8b3i.json")).unwrap(),
    )
    .unwrap();
    let kinds: Vec<&str> =
        model["quantized_model"]["layers"].as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"conv_attention"), "{kinds:?}");
    let accuracy = model["integer_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.2, "integer model accuracy {accuracy}");
}

/// `snac bench CONFIG` times whole k-fold trials of the config's own search,
/// reports their speed per core, and writes the drawn architectures.
#[test]
fn bench_times_whole_trials_of_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.yaml");
    let text =
        include_str!("../../../examples/digits_mlp.yaml").replace("  epochs: 20\n", "  epochs: 2\n  n_folds: 3\n");
    std::fs::write(&config, text).unwrap();
    let archs = dir.path().join("archs.json");
    let out = run_ok(snac().arg("bench").arg(&config).args(["--trials", "2", "--save-archs"]).arg(&archs));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("% of peak)").count(), 2, "{stdout}");
    assert!(!stdout.contains("local search"), "no local search for a config's own bench: {stdout}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&archs).unwrap()).unwrap();
    let saved = saved.as_array().unwrap();
    assert_eq!(saved.len(), 2);
    for layers in saved {
        let layers = layers.as_array().unwrap();
        assert!(layers.iter().any(|l| l.get("Dense").is_some()), "{layers:?}");
        assert_eq!(layers.last().unwrap(), &serde_json::json!({"Act": "softmax"}));
    }
    // `--archs` times the saved architectures again: same layers, same
    // seeds, so the same accuracies.
    let again = run_ok(snac().arg("bench").arg(&config).arg("--archs").arg(&archs));
    let again = String::from_utf8_lossy(&again.stdout);
    let trials = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("% of peak)"))
            .map(|l| {
                let acc = l.split("acc ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
                let summary = l.split("% of peak)").nth(1).unwrap().trim().to_string();
                format!("{acc} {summary}")
            })
            .collect()
    };
    assert_eq!(trials(&stdout), trials(&again), "{stdout}\n{again}");
    // A list that does not fit the config's input is refused, naming the file.
    std::fs::write(&archs, r#"[[{"Conv2d": {"filters": 4, "kernel": 3, "padding": "valid"}}]]"#).unwrap();
    let out = snac().arg("bench").arg(&config).arg("--archs").arg(&archs).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("archs.json: architecture 0 does not fit"), "{stderr}");
}

#[test]
fn estimate_takes_an_architecture_only_yaml_clock_io_type_and_any_part() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded example's kind of best model, as an architecture alone.
    let arch = dir.path().join("arch.yaml");
    std::fs::write(
        &arch,
        "architecture:\n  model_type: BlockBased\n  input_shape: [64]\n  output_dim: 10\n  components:\n  \
         - block_type: MLP\n    name: b0\n    params: {units: 128, activation: relu, norm: null}\n  \
         - block_type: MLP\n    name: b1\n    params: {units: 32, activation: relu, norm: null}\n  \
         - block_type: Output\n    name: output\n    params: {units: 10, activation: softmax}\n",
    )
    .unwrap();
    let json = |extra: &[&str]| -> serde_json::Value {
        let out = run_ok(snac().arg("estimate").arg(&arch).arg("--json").args(extra));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let default = json(&[]);
    assert!(default["lut"].as_f64().unwrap() > 0.0);
    // A shorter clock period: more pipeline stages.
    let fast = json(&["--clock-ns", "2"]);
    assert!(fast["cycles"].as_f64().unwrap() > default["cycles"].as_f64().unwrap(), "{fast} vs {default}");
    // A part number and a custom part give the same counts, other percentages.
    let vu9p = json(&["--part", "xcvu9p-flga2104-2L-e"]);
    let custom = json(&["--board", "mine:1000:2000:10:10"]);
    assert_eq!(vu9p["lut"], default["lut"]);
    assert!(custom["lut_pct"].as_f64().unwrap() > vu9p["lut_pct"].as_f64().unwrap());
    let stream = json(&["--io-type", "io_stream"]);
    assert!(stream["lut"].as_f64().unwrap() > 0.0);

    // The table says plainly when the model cannot fit.
    let out = run_ok(snac().arg("estimate").arg(&arch).args(["--board", "mine:1000:2000:10:10"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("does NOT fit") && text.contains("LUT"), "{text}");
    let out = run_ok(snac().arg("estimate").arg(&arch).args(["--board", "alveo-u250"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fits the alveo-u250"));

    for (flag, value, accepted) in
        [("--io-type", "io_serial", "io_parallel, io_stream"), ("--report", "place", "csynth, synth")]
    {
        let bad = snac().arg("estimate").arg(&arch).args([flag, value]).output().unwrap();
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains(value) && stderr.contains(accepted), "{stderr}");
    }
}

#[test]
fn estimate_validate_reports_leave_one_source_out_error() {
    let dir = tempfile::tempdir().unwrap();
    let markdown = dir.path().join("accuracy.md");
    let out = run_ok(snac().args(["estimate", "--validate", "--markdown"]).arg(&markdown));
    let text = String::from_utf8_lossy(&out.stdout);
    for needed in ["leave-one-source-out", "| io_parallel |", "| io_stream |", "Resource strategy", "hls4ml-baselines"]
    {
        assert!(text.contains(needed), "{needed} missing from:\n{text}");
    }
    let written = std::fs::read_to_string(&markdown).unwrap();
    assert!(written.starts_with("# Estimator accuracy") && written.contains("| LUT | FF | DSP | BRAM | latency |"));
    let out = run_ok(snac().args(["estimate", "--calibrate"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pub const CSYNTH: Coefficients"));
}

/// The trials of a study in `results/study.db`.
fn stored_trials(results: &Path) -> Vec<snac_core::search::FrozenTrial> {
    let storage = snac_core::storage::open(&results.join("study.db").to_string_lossy()).unwrap();
    let info = storage.load_study("snac").unwrap().expect("the study exists");
    storage.get_all_trials(info.id).unwrap()
}

/// `--timeout`: no trial starts after it, the running one finishes, the run
/// ends as usual (exit 0) but skips the local search, and the same command
/// continues the study.
#[test]
fn a_timeout_ends_the_search_early_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slow.yaml");
    // Trials of a second or so (no early stopping, small batches): 50 of
    // them cannot all finish within the budget.
    let text = include_str!("../../../examples/digits_mlp.yaml")
        .replace("  epochs: 20\n", "  epochs: 40\n  patience: 1000\n  batch_size: 16\n");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    let run = || {
        let mut cmd = snac();
        cmd.arg("run").arg(&config).args(["--trials", "50", "--workers", "1", "--timeout", "1s", "--results-dir"]);
        let out = run_ok(cmd.arg(&results));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run();
    for needle in ["time budget ran out (timeout 1s)", "run the same command again", "local search skipped"] {
        assert!(stderr.contains(needle), "'{needle}' in:\n{stderr}");
    }
    let csv = results.join("mlp_search_results.csv");
    let before = csv_rows(&csv);
    let (state, accuracy) = (column(&before, "state"), column(&before, "performance_metric"));
    assert!(before.len() > 1 && before.len() < 51, "some but not all trials: {before:?}");
    // Running trials finish normally after the budget: none failed.
    assert!(before[1..].iter().all(|r| r[state] == "COMPLETE"), "{before:?}");
    assert!(results.join("best_model_for_local_search.yaml").exists() && results.join("report.html").exists());
    assert!(!results.join("local_search_combined").exists(), "no local search after a timed-out search");

    let stderr = run();
    assert!(stderr.contains("resuming study 'snac'"), "{stderr}");
    let after = csv_rows(&csv);
    assert!(after.len() > before.len() && after.len() < 51, "{} then {} rows", before.len(), after.len());
    for row in &before[1..] {
        let again = after[1..].iter().find(|r| r[0] == row[0]).expect("finished trial kept");
        assert_eq!(again[accuracy], row[accuracy]);
    }
}

/// `--timeout-hard`: trials still running then are cancelled, recorded as
/// FAIL "timeout" and not counted, so a rerun draws their places again.
#[test]
fn a_hard_timeout_fails_running_trials_with_reason_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("endless.yaml");
    let text = example_with("").replace("  epochs: 20\n", "  epochs: 1000000\n  patience: 1000000\n  batch_size: 8\n");
    std::fs::write(&config, text).unwrap();
    let results = dir.path().join("r");
    let out = run_ok(
        snac()
            .arg("search")
            .arg(&config)
            .args(["--trials", "4", "--workers", "2", "--timeout", "1s", "--timeout-hard", "2s", "--results-dir"])
            .arg(&results),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("time budget ran out (timeout 1s, hard limit 2s)"), "{stderr}");
    let trials = stored_trials(&results);
    assert!(!trials.is_empty() && trials.len() <= 2, "{trials:?}");
    for trial in &trials {
        assert_eq!(trial.state, snac_core::search::TrialState::Fail, "{trial:?}");
        assert_eq!(trial.system_attrs.get(snac_core::storage::INTERRUPTED_KEY), Some(&serde_json::json!(true)));
        let reason = trial.user_attrs.get(snac_core::search::FAIL_REASON_KEY).and_then(|v| v.as_str()).unwrap();
        assert!(reason.starts_with("timeout"), "{reason}");
    }
    let rows = csv_rows(&results.join("mlp_search_results.csv"));
    let reason = column(&rows, "fail_reason");
    assert!(rows[1..].iter().all(|r| r[reason].starts_with("timeout")), "{rows:?}");

    // The cancelled trials do not count: a rerun runs all four.
    let out = run_ok(
        snac().arg("search").arg(&config).args(["--trials", "4", "--epochs", "1", "--results-dir"]).arg(&results),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{} interrupted", trials.len())), "{stderr}");
    let complete =
        stored_trials(&results).iter().filter(|t| t.state == snac_core::search::TrialState::Complete).count();
    assert_eq!(complete, 4);
}

#[test]
fn a_bad_timeout_is_named_with_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needles) in [
        (vec!["--timeout", "10min"], vec!["--timeout '10min'", "unit 'min'", "accepted:", "1h30m", "plain seconds"]),
        (vec!["--timeout-hard", "0"], vec!["--timeout-hard '0'", "not positive", "accepted:"]),
        (vec!["--timeout", "2h", "--timeout-hard", "1h"], vec!["hard time limit 1h", "time budget 2h", "accepted:"]),
    ] {
        let out = snac().arg("run").args(&args).arg("--results-dir").arg(dir.path().join("r")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "'{needle}' for {args:?} in:\n{stderr}");
        }
    }
    assert!(!dir.path().join("r").exists(), "nothing ran");
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, example_with("").replace("  seed: 42", "  seed: 42\n  timeout: soon")).unwrap();
    let out = snac().arg("validate").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("bad.yaml:") && stderr.contains("search.timeout: 'soon'"), "{stderr}");
}

/// Several `snac` processes on one node share its cores: a trial's folds
/// spread onto a core only while no process holds that core's lock file,
/// and under SLURM only within the task's share (cpus / tasks per node).
/// The folds' results are the same however many cores they had.
#[test]
fn folds_share_the_cores_with_other_processes_and_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kfold.yaml");
    std::fs::write(&config, example_with("").replace("  epochs: 20\n", "  epochs: 3\n  n_folds: 3\n")).unwrap();
    let locks = dir.path().join("locks");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = |name: &str, slurm: Option<(usize, usize)>| {
        let results = dir.path().join(name);
        let mut cmd = snac();
        cmd.arg("search").arg(&config).args(["--trials", "2", "--workers", "1", "--results-dir"]).arg(&results);
        cmd.env("SNAC_CORE_LOCK_DIR", &locks).env_remove("SLURM_CPUS_ON_NODE").env_remove("SLURM_NTASKS_PER_NODE");
        if let Some((cpus, tasks)) = slurm {
            cmd.env("SLURM_CPUS_ON_NODE", cpus.to_string()).env("SLURM_NTASKS_PER_NODE", tasks.to_string());
        }
        run_ok(&mut cmd);
        let rows = csv_rows(&results.join("mlp_search_results.csv"));
        let (trial, folds) = (column(&rows, "trial"), column(&rows, "fold_accuracies"));
        let mut by_trial: Vec<(String, String)> =
            rows[1..].iter().map(|r| (r[trial].clone(), r[folds].clone())).collect();
        by_trial.sort();
        let used: Vec<usize> =
            stored_trials(&results).iter().map(|t| t.user_attrs["fold_cores"].as_u64().unwrap() as usize).collect();
        (by_trial, used)
    };
    // Alone on the node: the trial takes its core and spreads its folds.
    let (alone, used) = run("alone", None);
    assert!(alone.len() == 2 && alone.iter().all(|(_, f)| f.split(';').count() == 3), "{alone:?}");
    assert_eq!(used, [cores.min(3); 2]);
    // Another process holds every core's lock: one core, the same results.
    let held: Vec<std::fs::File> = (0..cores)
        .map(|core| {
            let file = std::fs::File::create(locks.join(format!("core{core}.lock"))).unwrap();
            file.try_lock().unwrap();
            file
        })
        .collect();
    let (busy, used) = run("busy", None);
    assert_eq!(used, [1, 1]);
    assert_eq!(busy, alone, "the folds' accuracies do not depend on the cores they had");
    drop(held);
    // SLURM: as many tasks as cores on the node leaves one core each, lock
    // files or not; one task has them all.
    let (slurm, used) = run("slurm", Some((cores, cores)));
    assert_eq!((slurm, used), (alone.clone(), vec![1, 1]));
    let (_, used) = run("slurm1", Some((cores, 1)));
    assert_eq!(used, [cores.min(3); 2]);
}

#[test]
fn command_line_definition_is_consistent() {
    // clap's own checks: defaults among the accepted values, no clashing flags.
    use clap::CommandFactory;
    snac::cli::Cli::command().debug_assert();
}

#[test]
fn completions_are_written_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run_ok(snac().args(["completions", shell]));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["snac", "run", "search", "worker", "estimate", "mnist-points", "completions", "board"] {
            assert!(script.contains(word), "{shell} script does not mention {word}");
        }
        // The choices of a choice flag complete too (clap_complete writes
        // them for these shells).
        if ["bash", "zsh", "fish"].contains(&shell) {
            assert!(script.contains("rule4ml") && script.contains("io_stream"), "{shell} script lacks the choices");
        }
    }
    let bad = snac().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("'tcsh'") && stderr.contains("bash") && stderr.contains("zsh"), "{stderr}");
}

#[test]
fn choice_flags_list_their_choices_and_suggest_the_closest() {
    let help = String::from_utf8(run_ok(snac().args(["estimate", "--help"])).stdout).unwrap();
    for choices in [
        "[possible values: latency, resource]",
        "[possible values: analytical, rule4ml]",
        "[possible values: io_parallel, io_stream]",
        "[possible values: csynth, synth]",
        "[possible values: Vivado, Vitis]",
    ] {
        assert!(help.contains(choices), "estimate --help lacks {choices}:\n{help}");
    }
    let help = String::from_utf8(run_ok(snac().args(["data", "fetch", "--help"])).stdout).unwrap();
    assert!(help.contains("[possible values: mnist, fashion_mnist]"), "{help}");
    let help = String::from_utf8(run_ok(snac().args(["export", "--help"])).stdout).unwrap();
    for choices in [
        "[possible values: pynq-z2, zcu102, alveo-u200, alveo-u250]",
        "[possible values: io_parallel, io_stream]",
        "[possible values: Vivado, Vitis]",
    ] {
        assert!(help.contains(choices), "export --help lacks {choices}:\n{help}");
    }

    let cases: [(&[&str], &str, &str); 5] = [
        (&["estimate", "m.yaml", "--strategy", "latncy"], "latncy", "'latency'"),
        (&["estimate", "m.yaml", "--estimator", "rule4m"], "rule4m", "'rule4ml'"),
        (&["data", "fetch", "mnsit"], "mnsit", "'mnist'"),
        (&["export", "m.json", "--out", "x", "--board", "zcu012"], "zcu012", "'zcu102'"),
        (&["plot", "r.csv", "--objectives", "performance_metric,bop"], "bop", "'bops'"),
    ];
    for (args, value, suggestion) in cases {
        let out = snac().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("invalid value '{value}'")), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("a similar value exists: {suggestion}")), "{args:?}: {stderr}");
        assert!(stderr.contains("possible values"), "{args:?}: {stderr}");
    }
    // Aliases and other cases that snac-core reads still work.
    let out =
        snac().args(["estimate", "missing.yaml", "--backend", "vitis_hls", "--io-type", "STREAM"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("invalid value") && stderr.contains("missing.yaml"), "{stderr}");
    // An open choice: a board, a part, or a custom part; a near miss is named.
    let out = snac().args(["estimate", "m.yaml", "--board", "pynq-z1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'pynq-z1'") && stderr.contains("did you mean 'pynq-z2'?"), "{stderr}");
    assert!(stderr.contains("PART:LUT:FF:DSP:BRAM"), "{stderr}");
}

#[test]
fn misspelt_config_keys_and_values_get_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(&path, "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  n_trails: 5\n  dummy: 1\n").unwrap();
    let out = run_ok(snac().arg("validate").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("typo.yaml:4: key 'search.n_trails' is not used by snac (did you mean 'n_trials'?)"),
        "{stderr}"
    );
    assert!(stderr.contains("typo.yaml:5: key 'search.dummy' is not used by snac\n"), "{stderr}");

    std::fs::write(&path, "dataset: {name: digits}\nsearch:\n  model_type: mpl\n").unwrap();
    let out = snac().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "typo.yaml:3: search.model_type: 'mpl' is not a model type (did you mean 'mlp'?); accepted: mlp, block, deepsets"
        ),
        "{stderr}"
    );
}
