//! Storage overhead per trial: the storage calls one `snac` trial makes
//! (create within the budget, read the study for the sampler, the sampler's
//! and the worker's system attributes, the sampled params, the seed and
//! result attributes, a heartbeat, finish, read back), timed without any
//! training, on SQLite and, when `$SNAC_PG_URL` is set, on PostgreSQL.
//!
//! `cargo bench -p snac-core --bench storage_overhead [-- TRIALS]`; with
//! `BENCH_MEMORY=1` the in-memory storage runs first, as a floor without
//! round trips.

use serde_json::json;
use snac_core::search::{Direction, Distribution, TrialState};
use snac_core::storage::{self, Storage};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Time spent per storage method, summed over the run.
type Calls = BTreeMap<&'static str, (usize, f64)>;

fn timed<T>(calls: &mut Calls, name: &'static str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let entry = calls.entry(name).or_default();
    entry.0 += 1;
    entry.1 += start.elapsed().as_secs_f64() * 1e3;
    out
}

/// The calls of one trial, as `Study::ask_within` and
/// `global_search::run_one` make them.
fn one_trial(s: &dyn Storage, study: i64, budget: usize, c: &mut Calls) {
    let (id, number) =
        timed(c, "create_trial_within", || s.create_trial_within(study, Some(budget)).unwrap().expect("budget"));
    timed(c, "get_all_trials_shared", || s.get_all_trials_shared(study).unwrap()); // the sampler's view
    // The sampler's generation and the worker's identity, in one batch.
    let system =
        [("NSGAIISampler:generation", json!(0)), ("snac:worker", json!({"host": "bench", "pid": 1, "rank": null}))];
    timed(c, "set_trial_system_attrs", || s.set_trial_system_attrs(id, &system).unwrap());
    // The parameters the space drew, stored in one batch before the trial's
    // first attribute.
    let width = Distribution::Categorical { choices: [8, 16, 32, 64, 128].map(|w| json!(w)).to_vec() };
    let act = Distribution::Categorical { choices: vec![json!("relu"), json!("tanh"), json!("sigmoid")] };
    let layers = Distribution::Int { low: 1, high: 4, step: 1 };
    let names: Vec<(String, String)> = (0..3).map(|l| (format!("width_{l}"), format!("act_{l}"))).collect();
    let mut params = vec![("num_layers", 3.0, &layers)];
    for (layer, (w, a)) in names.iter().enumerate() {
        params.push((w, (number % 5) as f64, &width));
        params.push((a, (layer % 3) as f64, &act));
    }
    timed(c, "set_trial_params", || s.set_trial_params(id, &params).unwrap());
    let seed_arch = [("seed", json!(number as f64 * 0.5)), ("arch", json!("32-relu_10"))];
    timed(c, "set_trial_user_attrs (2)", || s.set_trial_user_attrs(id, &seed_arch).unwrap());
    // The result, in one batch as `record_result` writes it.
    let history: Vec<_> = (0..20).map(|e| json!({"epoch": e, "train_loss": 0.5, "val_accuracy": 0.9})).collect();
    let mut result: Vec<(&str, serde_json::Value)> =
        ["performance_metric", "bops", "params", "val_loss", "best_epoch", "steps"]
            .into_iter()
            .map(|k| (k, json!(number as f64 * 0.5)))
            .collect();
    result.push(("history", json!(history)));
    result.push(("architecture", json!({"components": [{"units": 32}, {"units": 10}]})));
    result.push(("yaml_path", json!("trial_yamls/trial_0_arch.yaml")));
    timed(c, "set_trial_user_attrs (9)", || s.set_trial_user_attrs(id, &result).unwrap());
    // One beat of the heartbeat thread (its first is the trial's creation).
    timed(c, "record_heartbeat", || s.record_heartbeat(id).unwrap());
    let values = [0.9, 1e5 + number as f64];
    assert!(timed(c, "finish_trial", || s.finish_trial(id, TrialState::Complete, Some(&values)).unwrap()));
    timed(c, "get_trial", || s.get_trial(id).unwrap()); // the CSV row
}

fn bench(label: &str, s: Arc<dyn Storage>, trials: usize) {
    let name = format!("bench-{}-{}", std::process::id(), trials);
    let study = s.create_or_load_study(&name, &[Direction::Maximize, Direction::Minimize]).unwrap().id;
    let mut times = Vec::with_capacity(trials);
    let mut calls = Calls::new();
    for _ in 0..trials {
        let start = Instant::now();
        one_trial(s.as_ref(), study, trials, &mut calls);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mean = times.iter().sum::<f64>() / trials as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let first = times[..10.min(trials)].iter().sum::<f64>() / 10.min(trials) as f64;
    let last = times[trials - 10.min(trials)..].iter().sum::<f64>() / 10.min(trials) as f64;
    println!(
        "{label:<11} {trials} trials: {mean:.2} ms/trial mean, median {:.2}, p95 {:.2}; first 10 {first:.2}, last 10 {last:.2}",
        sorted[trials / 2],
        sorted[trials * 95 / 100],
    );
    for (name, (n, ms)) in &calls {
        println!("    {name:<22} {:>3} calls/trial, {:.3} ms/call", n / trials, ms / *n as f64);
    }
    s.delete_study(study).unwrap();
}

fn main() {
    let trials: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    if std::env::var("BENCH_MEMORY").is_ok() {
        bench("memory", storage::open("memory:").unwrap(), trials);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    bench("SQLite", storage::open(&format!("sqlite:///{}", path.display())).unwrap(), trials);
    match std::env::var("SNAC_PG_URL") {
        Ok(url) => bench("PostgreSQL", storage::open(&url).unwrap(), trials),
        Err(_) => println!("PostgreSQL: skipped (set SNAC_PG_URL)"),
    }
}
