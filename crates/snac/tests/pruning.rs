//! `search.pruner` end to end with the real binary: hopeless trials stop
//! early and are PRUNED in the study and the CSV with their last accuracy,
//! every trial's per-epoch curve is stored as Optuna stores intermediate
//! values, and Python Optuna (`$SNAC_PYTHON`) reads both.

use snac_core::search::TrialState;
use std::process::Command;

const CONFIG: &str = "dataset: {name: digits, flatten: true, one_hot: true}
search:
  model_type: mlp
  n_trials: 24
  epochs: 6
  objective_names: [performance_metric, bops]
  maximize_flags: [true, false]
  pruner: PRUNER
  seed: 3
  population_size: 8
search_space:
  mlp_width_space: [8, 16]
  act_space: [relu, tanh, sigmoid]
  norm_space: [null, batch]
  output_dim: 10
  output_activation: softmax
";

fn search(pruner: &str, dir: &std::path::Path) -> String {
    let config = dir.join("c.yaml");
    std::fs::write(&config, CONFIG.replace("PRUNER", pruner)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snac"))
        .args(["search"])
        .arg(&config)
        .args(["--workers", "1", "--results-dir"])
        .arg(dir.join("r"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn the_median_pruner_stops_hopeless_trials_and_optuna_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = search("median", dir.path());
    let db = dir.path().join("r/study.db");
    let storage = snac_core::storage::open(&format!("sqlite:///{}", db.display())).unwrap();
    let study = storage.load_study("snac").unwrap().unwrap();
    let trials = storage.get_all_trials(study.id).unwrap();
    let curves = storage.intermediate_values(study.id).unwrap();
    assert_eq!(trials.len(), 24, "pruned trials count against n_trials, as in Optuna");
    let pruned: Vec<_> = trials.iter().filter(|t| t.state == TrialState::Pruned).collect();
    assert!(!pruned.is_empty(), "sigmoid nets at 6 epochs lag; some must be pruned:\n{stderr}");
    for t in &trials {
        let curve = &curves[&t.id];
        assert_eq!(curve.keys().next(), Some(&1), "trial {} curve starts at epoch 1", t.number);
        if t.state == TrialState::Pruned {
            let last = *curve.values().last().unwrap();
            assert_eq!(t.user_attrs["performance_metric"].as_f64(), Some(last));
            assert!(curve.len() < 6 || t.user_attrs["pruned_at_epoch"] == 6);
            assert!(t.values.is_none());
        }
    }
    // The CSV: PRUNED rows with their last accuracy and the reason.
    let csv = std::fs::read_to_string(dir.path().join("r/mlp_search_results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().filter(|l| l.contains(",PRUNED,")).collect();
    assert_eq!(rows.len(), pruned.len());
    assert!(
        rows.iter()
            .all(|r| r.contains("median pruner") && !r.starts_with(&format!("{},,", r.split(',').next().unwrap())))
    );
    assert!(stderr.contains(" PRUNED in "), "{stderr}");

    let Ok(python) = std::env::var("SNAC_PYTHON") else {
        snac_core::missing_test_dependency("SNAC_PYTHON is not set (a Python with optuna)");
        return;
    };
    let script = format!(
        "import json, optuna\n\
         s = optuna.load_study(study_name='snac', storage='sqlite:///{}')\n\
         print(json.dumps([[t.number, t.state.name, {{str(k): v for k, v in t.intermediate_values.items()}}] for t in s.trials]))",
        db.display()
    );
    let out = Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<(u64, String, std::collections::BTreeMap<String, f64>)> =
        serde_json::from_slice(&out.stdout).unwrap();
    for (number, state, values) in seen {
        let ours = trials.iter().find(|t| t.number == number).unwrap();
        assert_eq!(state, ours.state.name());
        let ours: Vec<(String, f64)> = curves[&ours.id].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(values.into_iter().collect::<Vec<_>>().len(), ours.len(), "trial {number}");
    }
}

#[test]
fn without_a_pruner_every_trial_completes_and_curves_are_stored_too() {
    let dir = tempfile::tempdir().unwrap();
    search("none", dir.path());
    let db = dir.path().join("r/study.db");
    let storage = snac_core::storage::open(&format!("sqlite:///{}", db.display())).unwrap();
    let study = storage.load_study("snac").unwrap().unwrap();
    let trials = storage.get_all_trials(study.id).unwrap();
    assert!(trials.iter().all(|t| t.state == TrialState::Complete));
    let curves = storage.intermediate_values(study.id).unwrap();
    for t in &trials {
        let history = t.user_attrs["history"].as_array().unwrap();
        let stored: Vec<f64> = curves[&t.id].values().copied().collect();
        let trained: Vec<f64> = history.iter().map(|e| e["val_accuracy"].as_f64().unwrap()).collect();
        // (The history went through JSON, whose parser may be an ulp off.)
        assert_eq!(stored.len(), trained.len(), "trial {}", t.number);
        assert!(
            stored.iter().zip(&trained).all(|(a, b)| (a - b).abs() < 1e-12),
            "trial {}: {stored:?} vs {trained:?}",
            t.number
        );
    }
}
