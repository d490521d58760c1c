//! A small study written through the real SQLite storage, with the attributes
//! `snac` stores: 10 completed trials (2 infeasible), one failed, one running,
//! four objectives; plus a local-search log in SNAC-Pack's columns.

use serde_json::json;
use snac_core::search::{Direction, Distribution, FAIL_REASON_KEY, TrialState};
use snac_core::storage::{SqliteStorage, Storage};
use snac_report::data::OBJECTIVES_ATTR;
use std::path::Path;

/// (accuracy, bops, avg_resource, clock_cycles, feasible) of the completed trials.
pub const COMPLETE: [(f64, f64, f64, f64, bool); 10] = [
    (0.80, 1.0e5, 2.0, 20.0, true),
    (0.85, 4.0e5, 3.0, 25.0, true),
    (0.90, 2.0e6, 5.0, 30.0, true),
    (0.70, 5.0e5, 1.0, 40.0, true),
    (0.95, 8.0e6, 9.0, 35.0, true),
    (0.60, 3.0e6, 4.0, 50.0, true),
    (0.88, 9.0e6, 8.0, 60.0, true),
    (0.75, 2.0e5, 6.0, 15.0, true),
    (0.97, 5.0e6, 12.0, 45.0, false),
    (0.50, 5.0e4, 0.5, 10.0, false),
];

pub const OBJECTIVES: [(&str, bool); 4] =
    [("performance_metric", true), ("bops", false), ("avg_resource", false), ("clock_cycles", false)];

/// Writes `dir/study.db` and the local-search log.
pub fn write_study(dir: &Path) {
    let storage = SqliteStorage::open(&dir.join("study.db")).unwrap();
    let directions: Vec<Direction> = OBJECTIVES.iter().map(|(_, max)| Direction::from_maximize(*max)).collect();
    let study = storage.create_or_load_study("snac", &directions).unwrap();
    let objectives: Vec<_> = OBJECTIVES.iter().map(|(name, max)| json!({"name": name, "maximize": max})).collect();
    storage.set_study_user_attr(study.id, OBJECTIVES_ATTR, &json!(objectives)).unwrap();
    let width = Distribution::Categorical { choices: vec![json!(8), json!(16), json!(32)] };
    for (i, &(accuracy, bops, avg, cycles, feasible)) in COMPLETE.iter().enumerate() {
        let (id, _) = storage.create_trial(study.id).unwrap();
        storage.set_trial_param(id, "width_0", (i % 3) as f64, &width).unwrap();
        let attrs = [
            ("performance_metric", json!(accuracy)),
            ("bops", json!(bops)),
            ("params", json!(bops / 1000.0)),
            ("avg_resource", json!(avg)),
            ("clock_cycles", json!(cycles)),
            ("feasible", json!(feasible)),
            ("arch", json!(format!("(64) → D{} relu → D10 softmax", 8 << (i % 3)))),
            (
                "architecture",
                json!({"model_type": "BlockBased", "input_shape": [64], "output_dim": 10, "components": [
                    {"block_type": "MLP", "name": "layer_0", "params": {"units": 8 << (i % 3), "activation": "relu", "norm": null}},
                    {"block_type": "Output", "name": "output", "params": {"units": 10, "activation": "softmax", "norm": null}}]}),
            ),
            (
                "history",
                json!((1..=4).map(|e| json!({"epoch": e, "train_loss": 2.0 / e as f64, "train_accuracy": accuracy * e as f64 / 4.0,
                    "val_loss": 2.2 / e as f64, "val_accuracy": accuracy * (e as f64 / 4.0).sqrt(), "learning_rate": 0.001})).collect::<Vec<_>>()),
            ),
        ];
        for (key, value) in attrs {
            storage.set_trial_user_attr(id, key, &value).unwrap();
        }
        let violation = if feasible { -1.0 } else { 1.0 };
        storage.set_trial_system_attr(id, "constraints", &json!([violation])).unwrap();
        assert!(storage.finish_trial(id, TrialState::Complete, Some(&[accuracy, bops, avg, cycles])).unwrap());
    }
    let (failed, _) = storage.create_trial(study.id).unwrap();
    storage.set_trial_user_attr(failed, FAIL_REASON_KEY, &json!("training diverged: NaN loss")).unwrap();
    assert!(storage.finish_trial(failed, TrialState::Fail, None).unwrap());
    storage.create_trial(study.id).unwrap(); // still running

    let local = dir.join("local_search_combined");
    std::fs::create_dir_all(&local).unwrap();
    let mut log = String::from("Precision,TotalBits,IntBits,Iteration,Sparsity,Accuracy,EffectiveBOPs\n");
    for (p, (bits, int)) in [(16, 6), (8, 3), (4, 1)].into_iter().enumerate() {
        for iteration in 0..4 {
            let sparsity = 1.0 - 0.8f64.powi(iteration);
            let accuracy = 0.95 - 0.02 * iteration as f64 - 0.03 * p as f64;
            let ebops = 8.0e6 * (bits as f64 / 32.0).powi(2) * (1.0 - sparsity);
            log.push_str(&format!("\"<{bits},{int}>\",{bits},{int},{iteration},{sparsity},{accuracy},{ebops}\n"));
        }
    }
    std::fs::write(local.join("combined_qat_pruning_log.csv"), log).unwrap();
}

/// Indices (into `points`) of the 2-D front, by brute force.
#[allow(dead_code)] // used by tests/plots.rs only
pub fn brute_front(points: &[(f64, f64)], max_x: bool, max_y: bool) -> Vec<usize> {
    let better = |a: f64, b: f64, max: bool| if max { a > b } else { a < b };
    let no_worse = |a: f64, b: f64, max: bool| if max { a >= b } else { a <= b };
    (0..points.len())
        .filter(|&i| {
            !(0..points.len()).any(|j| {
                let (p, q) = (points[i], points[j]);
                j != i
                    && no_worse(q.0, p.0, max_x)
                    && no_worse(q.1, p.1, max_y)
                    && (better(q.0, p.0, max_x) || better(q.1, p.1, max_y))
            })
        })
        .collect()
}
