//! Tests of the TPE sampler: the split, the MOTPE weights and the HSSP by
//! hand, the Parzen estimator and split against Optuna 4.5 itself (with
//! `$SNAC_PYTHON`), reproducibility, and search quality against random.

use super::*;
use crate::search::Direction::{Maximize as Max, Minimize as Min};
use crate::search::pareto::{hypervolume_2d, pareto_front};
use crate::search::random::RandomSampler;
use crate::trial::CONSTRAINTS_KEY;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

fn trial(number: u64, values: &[f64]) -> FrozenTrial {
    FrozenTrial {
        id: number as i64,
        number,
        state: TrialState::Complete,
        params: BTreeMap::new(),
        values: Some(values.to_vec()),
        user_attrs: BTreeMap::new(),
        system_attrs: BTreeMap::new(),
        datetime_start: None,
        datetime_complete: None,
    }
}

fn numbers(trials: &[&FrozenTrial]) -> Vec<u64> {
    trials.iter().map(|t| t.number).collect()
}

/// Losses (min, min) A(1,5) B(2,2) C(5,1) | D(2,6) E(3,3) F(6,2) | G(4,4)
/// H(7,7), given as (accuracy = −loss₀, maximised; BOPs = loss₁).
fn known_set() -> Vec<FrozenTrial> {
    let losses = [[1.0, 5.0], [2.0, 2.0], [5.0, 1.0], [2.0, 6.0], [3.0, 3.0], [6.0, 2.0], [4.0, 4.0], [7.0, 7.0]];
    losses.iter().enumerate().map(|(i, l)| trial(i as u64, &[-l[0], l[1]])).collect()
}

#[test]
fn gamma_and_default_weights() {
    assert_eq!([0, 1, 9, 10, 11, 100, 250, 251, 1000].map(default_gamma), [0, 1, 1, 1, 2, 10, 25, 25, 25]);
    assert_eq!(default_weights(3), vec![1.0; 3]);
    let w = default_weights(27);
    assert_eq!(w.len(), 27);
    assert!((w[0] - 1.0 / 27.0).abs() < 1e-15 && w[1] == 1.0 && w[26] == 1.0);
    let w = default_weights(26);
    assert!((w[0] - 1.0 / 26.0).abs() < 1e-15 && w[1..].iter().all(|&x| x == 1.0));
}

#[test]
fn split_of_a_known_multi_objective_set() {
    let set = known_set();
    let refs: Vec<&FrozenTrial> = set.iter().collect();
    // Five good trials: the whole first front (A, B, C), then two of D, E, F
    // by hypervolume against (6.6, 6.6): E adds 3.6², then D and F add 0.6
    // each and the lexicographically first, D, wins the tie.
    let (below, above) = split_trials(&refs, 5, &[Max, Min], false);
    assert_eq!(numbers(&below), vec![0, 1, 2, 3, 4]);
    assert_eq!(numbers(&above), vec![5, 6, 7]);
    // Whole fronts only: three.
    let (below, _) = split_trials(&refs, 3, &[Max, Min], false);
    assert_eq!(numbers(&below), vec![0, 1, 2]);
    // Hypervolume weights within {A..E}: reference (5.5, 6.6); the front's
    // contributions A 1.6, B 9.0, C 0.5; D and E are off the front.
    let (below, _) = split_trials(&refs, 5, &[Max, Min], false);
    let w = weights_below(&below, &[Max, Min], false);
    let expected = [1.6 / 9.0, 1.0, 0.5 / 9.0, EPS, EPS];
    for (got, want) in w.iter().zip(expected) {
        assert!((got - want).abs() < 1e-12, "{w:?}");
    }
}

#[test]
fn split_puts_infeasible_and_pruned_trials_last() {
    let mut set = known_set();
    // B violates a constraint by 2, G by 0.5; H has no constraint values.
    for (t, c) in set.iter_mut().zip([-1.0, 2.0, 0.0, -1.0, -1.0, -1.0, 0.5, f64::NAN]) {
        if !c.is_nan() {
            t.system_attrs.insert(CONSTRAINTS_KEY.to_string(), json!([c]));
        }
    }
    set[5].state = TrialState::Pruned;
    set[5].values = None;
    let refs: Vec<&FrozenTrial> = set.iter().collect();
    // Feasible complete: A C D E (fronts {A, C, E}, {D}), then pruned F,
    // then G (0.5) before B (2) before H (no values: infinite).
    let (below, _) = split_trials(&refs, 4, &[Max, Min], true);
    assert_eq!(numbers(&below), vec![0, 2, 3, 4]);
    let (below, _) = split_trials(&refs, 6, &[Max, Min], true);
    assert_eq!(numbers(&below), vec![0, 2, 3, 4, 5, 6]);
    let (below, above) = split_trials(&refs, 7, &[Max, Min], true);
    assert_eq!((numbers(&below), numbers(&above)), (vec![0, 1, 2, 3, 4, 5, 6], vec![7]));
    // Infeasible good trials weigh 1e-12.
    let w = weights_below(&below, &[Max, Min], true);
    assert_eq!(w[1], EPS);
    assert_eq!(w[5], EPS, "a pruned trial has no values to weigh");
    assert!(w[0] > 0.01 && w[2] > 0.01 && w[4] > 0.01);
}

#[test]
fn hypervolume_in_three_objectives() {
    // Two boxes [0,2]×[0,1]×[0,1] and [0,1]×[0,2]×[0,1] within reference 2:
    // 2 + 2 − 1 (overlap) = 3.
    let points = [vec![0.0, 1.0, 1.0], vec![1.0, 0.0, 1.0]];
    assert!((hypervolume_losses(&points, &[2.0, 2.0, 2.0]) - 3.0).abs() < 1e-12);
    // Against the 2-D routine on the third coordinate's unit slab.
    let flat = [vec![1.0, 5.0], vec![2.0, 2.0], vec![5.0, 1.0], vec![3.0, 3.0]];
    let lifted: Vec<Vec<f64>> = flat.iter().map(|p| vec![p[0], p[1], 0.0]).collect();
    let hv2 = hypervolume_2d(&flat, [6.0, 6.0], [Min, Min]);
    assert!((hypervolume_losses(&lifted, &[6.0, 6.0, 1.0]) - hv2).abs() < 1e-12);
    assert!((hypervolume_losses(&flat, &[6.0, 6.0]) - hv2).abs() < 1e-12);
}

#[test]
fn hssp_is_greedy_in_two_and_three_objectives() {
    // In 3-D the exact greedy: first the largest box, then the best addition.
    let pts = vec![vec![1.0, 1.0, 3.0], vec![3.0, 1.0, 1.0], vec![2.0, 2.0, 2.0], vec![1.0, 3.0, 1.0]];
    let reference = [4.0, 4.0, 4.0];
    let first = solve_hssp(&pts, &[10, 11, 12, 13], 1, &reference);
    assert_eq!(first, vec![10], "boxes 9, 9, 8, 9: the lexicographically first of the largest");
    // Then (3,1,1) and (1,3,1) add 6 each, (2,2,2) 4: the tie goes to the
    // lexicographically smaller (1,3,1).
    let gain = |i: usize| hypervolume_losses(&[pts[0].clone(), pts[i].clone()], &reference) - 9.0;
    assert_eq!([gain(1), gain(2), gain(3)], [6.0, 4.0, 6.0]);
    assert_eq!(solve_hssp(&pts, &[10, 11, 12, 13], 2, &reference), vec![10, 13]);
    // Duplicates count once; fewer unique points than asked take duplicates.
    let dup = vec![vec![1.0, 2.0], vec![1.0, 2.0], vec![2.0, 1.0]];
    assert_eq!(solve_hssp(&dup, &[0, 1, 2], 2, &[3.0, 3.0]), vec![0, 2]);
    let same = vec![vec![1.0, 2.0]; 3];
    assert_eq!(solve_hssp(&same, &[5, 6, 7], 2, &[3.0, 3.0]), vec![5, 6]);
}

/// A conditional toy space shaped like ours: 1–4 layers (int), a width
/// (categorical of 6) and an activation (categorical of 3) per layer.
/// Objectives: accuracy-like (maximise) and cost (minimise).
fn toy_space(s: &mut dyn FnMut(&str, Distribution) -> f64) -> Vec<f64> {
    let widths = [8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    let n = s("n_layers", Distribution::Int { low: 1, high: 4, step: 1 }) as usize;
    let (mut capacity, mut cost, mut previous) = (0.0, 0.0, 64.0);
    for i in 0..n {
        let w =
            widths[s(&format!("width_{i}"), Distribution::Categorical { choices: (0..6).map(|c| json!(c)).collect() })
                as usize];
        let act = s(&format!("act_{i}"), Distribution::Categorical { choices: vec![json!(0), json!(1), json!(2)] });
        // Activation 1 is the good one; depth helps up to three layers.
        capacity += (w as f64).ln() * if act == 1.0 { 1.0 } else { 0.6 } * if i < 3 { 1.0 } else { 0.3 };
        cost += previous * w;
        previous = w;
    }
    vec![1.0 - (-capacity / 8.0).exp(), cost + previous * 10.0]
}

/// Runs a study of `n` trials over the toy space, trial by trial as a
/// single worker would, with the trial RNG of the real study.
fn run_toy(sampler: &dyn Sampler, n: u64, seed: u64) -> Vec<FrozenTrial> {
    let directions = [Max, Min];
    let mut trials: Vec<Arc<FrozenTrial>> = Vec::new();
    for number in 0..n {
        let mut rng = crate::search::trial_rng(seed, number);
        let view = StudyView { directions: &directions, trials: &trials };
        assert!(sampler.ready(&view, number));
        let relative = sampler.sample_relative(&view, number, &mut rng).unwrap().params;
        let mut params = BTreeMap::new();
        let values = toy_space(&mut |name, d| {
            let v = match relative.get(name) {
                Some(&v) if d.contains(v) => v,
                _ => sampler.sample_independent(&view, number, name, &d, &mut rng).unwrap(),
            };
            assert!(d.contains(v), "{v} outside {d:?}");
            params.insert(name.to_string(), (d, v));
            v
        });
        let mut t = trial(number, &values);
        t.params = params;
        trials.push(Arc::new(t));
    }
    trials.iter().map(|t| (**t).clone()).collect()
}

fn toy_hypervolume(trials: &[FrozenTrial]) -> f64 {
    let front: Vec<&[f64]> = pareto_front(trials, &[Max, Min]).iter().map(|t| t.values.as_deref().unwrap()).collect();
    hypervolume_2d(&front, [0.0, 200_000.0], [Max, Min])
}

#[test]
fn sampling_is_reproducible_and_seeded() {
    let tpe = TpeSampler::default();
    let params = |trials: &[FrozenTrial]| trials.iter().map(|t| t.params.clone()).collect::<Vec<_>>();
    let a = run_toy(&tpe, 30, 7);
    assert_eq!(params(&a), params(&run_toy(&tpe, 30, 7)));
    assert_ne!(params(&a), params(&run_toy(&tpe, 30, 8)));
    // Conditional parameters exist only with their layer.
    for t in &a {
        let n = t.param("n_layers").unwrap() as usize;
        assert_eq!(t.params.len(), 1 + 2 * n);
    }
}

#[test]
fn lag_decides_what_a_trial_sees_and_waits_for() {
    let tpe = TpeSampler { lag: 3, n_startup_trials: 2, ..TpeSampler::default() };
    let mut trials: Vec<Arc<FrozenTrial>> = known_set().into_iter().map(Arc::new).collect();
    let directions = [Max, Min];
    // Trial 5 running: trial 8 (sees ≤ 5) waits, trial 7 (sees ≤ 4) does not.
    Arc::make_mut(&mut trials[5]).state = TrialState::Running;
    let view = StudyView { directions: &directions, trials: &trials };
    assert!(!tpe.ready(&view, 8));
    assert!(tpe.ready(&view, 7));
    assert_eq!(numbers(&tpe.visible(&view, 7)), vec![0, 1, 2, 3, 4]);
    assert_eq!(numbers(&tpe.visible(&view, 1)), Vec::<u64>::new());
    // Lag 1 is Optuna's sequential TPE: everything finished before.
    let sequential = TpeSampler::default();
    assert!(!sequential.ready(&view, 8));
    assert_eq!(numbers(&sequential.visible(&view, 8)), vec![0, 1, 2, 3, 4, 6, 7]);
    // Trials running ahead of the lag do not change the draw: the same
    // trial with later trials finished, running or absent draws alike.
    let d = Distribution::Int { low: 1, high: 9, step: 1 };
    for t in trials.iter_mut() {
        let value = (t.number + 1) as f64;
        Arc::make_mut(t).params.insert("x".into(), (d.clone(), value));
    }
    let draw = |trials: &[Arc<FrozenTrial>]| {
        let view = StudyView { directions: &directions, trials };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        (0..20).map(|_| tpe.sample_independent(&view, 7, "x", &d, &mut rng).unwrap()).collect::<Vec<_>>()
    };
    let full = draw(&trials);
    assert_eq!(full, draw(&trials[..5]));
    Arc::make_mut(&mut trials[6]).state = TrialState::Running;
    assert_eq!(full, draw(&trials));
}

/// On the toy problem TPE finds a better front than random search with the
/// same budget, on every seed.
#[test]
fn beats_random_search_on_a_toy_problem() {
    let tpe = TpeSampler::default();
    let (mut wins, mut total_tpe, mut total_random) = (0, 0.0, 0.0);
    for seed in 1..=6 {
        let hv_tpe = toy_hypervolume(&run_toy(&tpe, 60, seed));
        let hv_random = toy_hypervolume(&run_toy(&RandomSampler, 60, seed));
        eprintln!("seed {seed}: TPE {hv_tpe:.0}, random {hv_random:.0}");
        wins += usize::from(hv_tpe > hv_random);
        total_tpe += hv_tpe;
        total_random += hv_random;
    }
    assert!(wins >= 5, "TPE beat random on only {wins} of 6 seeds");
    assert!(total_tpe > 1.02 * total_random, "TPE {total_tpe} vs random {total_random}");
}

/// The Parzen densities and the split, computed by Optuna 4.5 itself.
const OPTUNA_SCRIPT: &str = r#"
import json, numpy as np, optuna
from optuna.distributions import CategoricalDistribution, IntDistribution, FloatDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe import sampler as s
p = _ParzenEstimatorParameters(prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False,
    weights=s.default_weights, multivariate=False, categorical_distance_func={})
def pdf(dist, obs, xs, w=None):
    pe = _ParzenEstimator({"x": np.array(obs, dtype=float)}, {"x": dist}, p,
                          None if w is None else np.array(w, dtype=float))
    return pe.log_pdf({"x": np.array(xs, dtype=float)}).tolist()
out = {
  "cat": pdf(CategoricalDistribution([8, 16, 32, 64]), [1, 1, 3, 0], [0, 1, 2, 3], [1, 2, 1, 0.5]),
  "cat_empty": pdf(CategoricalDistribution(["a", "b", "c"]), [], [0, 1, 2]),
  "int": pdf(IntDistribution(1, 9), [2, 7, 7, 9, 4], list(range(1, 10))),
  "int_step": pdf(IntDistribution(0, 12, step=2), [0, 4, 12, 10], [0, 2, 4, 6, 8, 10, 12], [1, 0.5, 2, 1]),
  "int_many": pdf(IntDistribution(1, 40), [3 * i % 37 + 1 for i in range(30)], [1, 5, 20, 40]),
  "float_log": pdf(FloatDistribution(1e-3, 1.0, log=True), [0.01, 0.5, 0.002], [0.001, 0.003, 0.1, 1.0]),
  "float": pdf(FloatDistribution(-1.0, 2.0), [0.5, -0.9], [-1.0, 0.0, 1.9]),
}
pm = _ParzenEstimatorParameters(prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False,
    weights=s.default_weights, multivariate=True, categorical_distance_func={})
space = {"a": CategoricalDistribution([8, 16, 32]), "n": IntDistribution(1, 5),
         "f": FloatDistribution(1e-3, 1.0, log=True), "u": FloatDistribution(-1.0, 2.0)}
obs = {"a": [0, 2, 2, 1], "n": [1, 4, 5, 2], "f": [0.01, 0.5, 0.002, 0.1], "u": [0.5, -0.9, 1.5, 0.0]}
xs = {"a": [0, 1, 2, 2], "n": [1, 3, 5, 4], "f": [0.001, 0.02, 0.3, 1.0], "u": [-1.0, 0.0, 1.9, 0.4]}
arr = lambda d: {k: np.array(v, dtype=float) for k, v in d.items()}
out["joint"] = _ParzenEstimator(arr(obs), space, pm, np.array([1, 0.5, 2, 1.0])).log_pdf(arr(xs)).tolist()
one = {"n": space["n"]}
out["joint_int"] = _ParzenEstimator({"n": np.array([2.0, 3.0])}, one, pm, None).log_pdf({"n": np.arange(1.0, 6.0)}).tolist()
from optuna.search_space.group_decomposed import _SearchSpaceGroup
c2, c3 = CategoricalDistribution([8, 16]), CategoricalDistribution([8, 16, 32])
n3, fixed = IntDistribution(1, 3), CategoricalDistribution(["relu"])
group = _SearchSpaceGroup()
for dists in [{"n": n3, "w0": c2, "f": fixed}, {"n": n3, "w0": c2, "w1": c2}, {"n": n3, "w0": c2, "w1": c2},
              {"n": n3, "w0": c3, "a1": c2}, {"b": c2}]:
    group.add_distributions(dists)
spaces = [sorted(k for k, d in sp.items() if not d.single()) for sp in group.search_spaces]
out["groups"] = [sp for sp in spaces if sp]
losses = json.loads(SET)
for name, dirs in [("split2", ["maximize", "minimize"]), ("split3", ["minimize"] * 3)]:
    study = optuna.create_study(directions=dirs)
    vals = losses[name]
    trials = [optuna.trial.create_trial(values=v, params={}, distributions={}) for v in vals]
    for i, t in enumerate(trials):
        t.number = i
    res = {}
    for n_below in range(len(vals) + 1):
        below, _ = s._split_complete_trials_multi_objective(trials, study, n_below)
        res[n_below] = sorted(t.number for t in below)
        if len(below) > 1:
            w = s._calculate_weights_below_for_multi_objective(study, sorted(below, key=lambda t: t.number), None)
            res[f"w{n_below}"] = w.tolist()
    out[name] = res
print(json.dumps(out))
"#;

fn optuna_sets() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let two: Vec<Vec<f64>> = known_set().iter().map(|t| t.values.clone().unwrap()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    use rand::Rng;
    // 3 objectives on a grid, so duplicates and ties occur.
    let three: Vec<Vec<f64>> = (0..14).map(|_| (0..3).map(|_| rng.random_range(0..5) as f64).collect()).collect();
    (two, three)
}

#[test]
fn matches_optuna() {
    let Some(python) = std::env::var_os("SNAC_PYTHON") else {
        crate::missing_test_dependency("SNAC_PYTHON (a Python with optuna 4.5) is not set");
        return;
    };
    let (two, three) = optuna_sets();
    let set = json!({"split2": two, "split3": three}).to_string();
    let script = format!("SET = {set:?}\n{OPTUNA_SCRIPT}");
    let output = std::process::Command::new(python).arg("-c").arg(script).output().expect("running $SNAC_PYTHON");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let optuna: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ours = |d: Distribution, obs: &[f64], xs: &[f64], w: Option<&[f64]>| -> Vec<f64> {
        let weights = w.map_or_else(|| default_weights(obs.len()), <[f64]>::to_vec);
        let pe = ParzenEstimator::new(obs, &weights, &d, 1.0);
        xs.iter().map(|&x| pe.log_pdf(x)).collect()
    };
    let cat = |n: usize| Distribution::Categorical { choices: (0..n).map(|c| json!(c)).collect() };
    let many: Vec<f64> = (0..30).map(|i| (3 * i % 37 + 1) as f64).collect();
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("cat", ours(cat(4), &[1.0, 1.0, 3.0, 0.0], &[0.0, 1.0, 2.0, 3.0], Some(&[1.0, 2.0, 1.0, 0.5]))),
        ("cat_empty", ours(cat(3), &[], &[0.0, 1.0, 2.0], None)),
        (
            "int",
            ours(
                Distribution::Int { low: 1, high: 9, step: 1 },
                &[2.0, 7.0, 7.0, 9.0, 4.0],
                &(1..10).map(f64::from).collect::<Vec<_>>(),
                None,
            ),
        ),
        (
            "int_step",
            ours(
                Distribution::Int { low: 0, high: 12, step: 2 },
                &[0.0, 4.0, 12.0, 10.0],
                &[0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0],
                Some(&[1.0, 0.5, 2.0, 1.0]),
            ),
        ),
        ("int_many", ours(Distribution::Int { low: 1, high: 40, step: 1 }, &many, &[1.0, 5.0, 20.0, 40.0], None)),
        (
            "float_log",
            ours(
                Distribution::Float { low: 1e-3, high: 1.0, log: true },
                &[0.01, 0.5, 0.002],
                &[0.001, 0.003, 0.1, 1.0],
                None,
            ),
        ),
        (
            "float",
            ours(Distribution::Float { low: -1.0, high: 2.0, log: false }, &[0.5, -0.9], &[-1.0, 0.0, 1.9], None),
        ),
    ];
    for (name, got) in cases {
        let want: Vec<f64> = serde_json::from_value(optuna[name].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9 * (1.0 + w.abs()), "{name}: ours {got:?}, Optuna {want:?}");
        }
    }
    matches_optuna_multivariate(&optuna);
    for (name, values, directions) in [("split2", two, vec![Max, Min]), ("split3", three, vec![Min, Min, Min])] {
        let trials: Vec<FrozenTrial> = values.iter().enumerate().map(|(i, v)| trial(i as u64, v)).collect();
        let refs: Vec<&FrozenTrial> = trials.iter().collect();
        for n_below in 0..=trials.len() {
            let (below, _) = split_trials(&refs, n_below, &directions, false);
            let want: Vec<u64> = serde_json::from_value(optuna[name][n_below.to_string()].clone()).unwrap();
            assert_eq!(numbers(&below), want, "{name} with {n_below} below");
            if let Some(w) = optuna[name].get(format!("w{n_below}")) {
                let want: Vec<f64> = serde_json::from_value(w.clone()).unwrap();
                let got = weights_below(&below, &directions, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-9, "{name} weights with {n_below} below: ours {got:?}, Optuna {want:?}");
                }
            }
        }
    }
}

/// The joint densities and groups against Optuna's (see [`OPTUNA_SCRIPT`]).
fn matches_optuna_multivariate(optuna: &serde_json::Value) {
    let close = |name: &str, got: &[f64]| {
        let want: Vec<f64> = serde_json::from_value(optuna[name].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9 * (1.0 + w.abs()), "{name}: ours {got:?}, Optuna {want:?}");
        }
    };
    let cat = |n: usize| Distribution::Categorical { choices: (0..n).map(|c| json!(c)).collect() };
    let (a, n) = (cat(3), Distribution::Int { low: 1, high: 5, step: 1 });
    let f = Distribution::Float { low: 1e-3, high: 1.0, log: true };
    let u = Distribution::Float { low: -1.0, high: 2.0, log: false };
    let rows = |cols: [[f64; 4]; 4]| (0..4).map(|i| cols.iter().map(|c| c[i]).collect()).collect::<Vec<Vec<f64>>>();
    let obs = rows([[0.0, 2.0, 2.0, 1.0], [1.0, 4.0, 5.0, 2.0], [0.01, 0.5, 0.002, 0.1], [0.5, -0.9, 1.5, 0.0]]);
    let xs = rows([[0.0, 1.0, 2.0, 2.0], [1.0, 3.0, 5.0, 4.0], [0.001, 0.02, 0.3, 1.0], [-1.0, 0.0, 1.9, 0.4]]);
    let pe = multivariate::JointParzen::new(&obs, &[1.0, 0.5, 2.0, 1.0], &[&a, &n, &f, &u], 1.0);
    close("joint", &xs.iter().map(|x| pe.log_pdf(x)).collect::<Vec<_>>());
    let pe = multivariate::JointParzen::new(&[vec![2.0], vec![3.0]], &default_weights(2), &[&n], 1.0);
    close("joint_int", &(1..=5).map(|v| pe.log_pdf(&[f64::from(v)])).collect::<Vec<_>>());
    let (c2, c3) = (cat(2), cat(3));
    let (n3, fixed) = (Distribution::Int { low: 1, high: 3, step: 1 }, cat(1));
    let sets: [&[(&str, &Distribution)]; 5] = [
        &[("n", &n3), ("w0", &c2), ("f", &fixed)],
        &[("n", &n3), ("w0", &c2), ("w1", &c2)],
        &[("n", &n3), ("w0", &c2), ("w1", &c2)],
        &[("n", &n3), ("w0", &c3), ("a1", &c2)],
        &[("b", &c2)],
    ];
    let trials: Vec<FrozenTrial> = sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            with_params(i as u64, &[0.0], &set.iter().map(|(k, d)| (*k, (*d).clone(), 0.0)).collect::<Vec<_>>())
        })
        .collect();
    let refs: Vec<&FrozenTrial> = trials.iter().collect();
    let groups = multivariate::search_space_groups(&refs);
    let ours: Vec<Vec<&str>> = groups.iter().map(names).collect();
    let want: Vec<Vec<String>> = serde_json::from_value(optuna["groups"].clone()).unwrap();
    assert_eq!(ours, want, "search space groups");
}

/// Two processes sharing one study (two `Study` handles on one storage):
/// TPE waits for its own process's trials within the lag, never for the
/// other's, so a fleet of `snac worker`s runs side by side rather than in
/// turns. NSGA-II still waits for the whole previous generation.
#[test]
fn tpe_never_waits_for_another_process_trials() {
    use crate::search::Study;
    use crate::search::nsga2::NsgaIISampler;
    use crate::storage::MemoryStorage;
    use std::sync::mpsc;
    use std::time::Duration;

    let storage: Arc<dyn crate::storage::Storage> = Arc::new(MemoryStorage::new());
    let directions = [Max, Min];
    let tpe: Arc<dyn Sampler> = Arc::new(TpeSampler { lag: 1, ..TpeSampler::default() });
    let open = |sampler: &Arc<dyn Sampler>| {
        Study::create_or_load(storage.clone(), "fleet", &directions, sampler.clone(), 1).unwrap()
    };
    // Asks in another thread: `None` when it is still waiting after 2 s.
    let ask_soon = |study: Study| {
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(study.ask().map(|t| t.number));
        });
        receive.recv_timeout(Duration::from_secs(2)).ok().map(Result::unwrap)
    };
    let (a, b) = (open(&tpe), open(&tpe));
    let first = a.ask().unwrap();
    assert_eq!(first.number, 0);
    // Process b: trial 1 would wait for trial 0 if it were its own.
    assert_eq!(ask_soon(b.clone()), Some(1), "process b waited for process a's running trial");
    // Process a: its own trial 0 is still running, so trial 2 (lag 1) waits.
    assert_eq!(ask_soon(a.clone()), None, "process a did not wait for its own running trial");
    // Finishing trial 0 lets that waiting ask go on (and its thread end).
    a.tell(&first, Ok(vec![0.5, 10.0])).unwrap();

    // NSGA-II (population 2): generation 1 waits for generation 0, whoever runs it.
    let storage2: Arc<dyn crate::storage::Storage> = Arc::new(MemoryStorage::new());
    let nsga: Arc<dyn Sampler> = Arc::new(NsgaIISampler { population_size: 2, ..Default::default() });
    let open2 = || Study::create_or_load(storage2.clone(), "fleet", &directions, nsga.clone(), 1).unwrap();
    let (c, d) = (open2(), open2());
    let g0 = [c.ask().unwrap(), c.ask().unwrap()];
    assert_eq!(ask_soon(d), None, "NSGA-II sampled generation 1 before generation 0 finished");
    for t in &g0 {
        c.tell(t, Ok(vec![0.5, 10.0])).unwrap();
    }
}

fn with_params(number: u64, values: &[f64], params: &[(&str, Distribution, f64)]) -> FrozenTrial {
    let mut t = trial(number, values);
    t.params = params.iter().map(|(n, d, v)| (n.to_string(), (d.clone(), *v))).collect();
    t
}

fn names(space: &multivariate::Space) -> Vec<&str> {
    space.keys().map(String::as_str).collect()
}

/// Groups are the parameters that occur in exactly the same trials; the
/// intersection is what every trial has with one distribution.
#[test]
fn search_space_groups_and_intersection() {
    let n = Distribution::Int { low: 1, high: 3, step: 1 };
    let c = Distribution::Categorical { choices: vec![json!(8), json!(16)] };
    let fixed = Distribution::Categorical { choices: vec![json!("relu")] };
    let c3 = Distribution::Categorical { choices: vec![json!(8), json!(16), json!(32)] };
    let trials = [
        with_params(0, &[0.5, 1.0], &[("n", n.clone(), 1.0), ("w0", c.clone(), 0.0), ("f", fixed.clone(), 0.0)]),
        with_params(1, &[0.5, 1.0], &[("n", n.clone(), 2.0), ("w0", c.clone(), 1.0), ("w1", c.clone(), 0.0)]),
        with_params(2, &[0.5, 1.0], &[("n", n.clone(), 3.0), ("w0", c.clone(), 1.0), ("w1", c.clone(), 1.0)]),
        with_params(3, &[0.5, 1.0], &[("n", n.clone(), 2.0), ("w0", c3.clone(), 2.0), ("a1", c.clone(), 0.0)]),
    ];
    let refs: Vec<&FrozenTrial> = trials.iter().collect();
    let groups = multivariate::search_space_groups(&refs);
    let listed: Vec<Vec<&str>> = groups.iter().map(names).collect();
    // {n, w0} in all four; f only in 0 (single-valued: left out); w1 in 1
    // and 2; a1 only in 3.
    assert_eq!(listed, vec![vec!["n", "w0"], vec!["w1"], vec!["a1"]]);
    assert_eq!(groups[0]["w0"], c, "the first distribution seen");
    // The intersection drops w0, whose distribution changed in trial 3.
    assert_eq!(names(&multivariate::intersection_space(&refs)), vec!["n"]);
    assert_eq!(names(&multivariate::intersection_space(&refs[..3])), vec!["n", "w0"]);
    assert!(multivariate::search_space_groups(&[]).is_empty());
}

/// The joint density by hand: two categoricals, and the multivariate
/// kernel width of an integer.
#[test]
fn joint_parzen_by_hand() {
    let a = Distribution::Categorical { choices: vec![json!(0), json!(1)] };
    let b = Distribution::Categorical { choices: vec![json!(0), json!(1), json!(2)] };
    let obs = [vec![0.0, 2.0], vec![1.0, 0.0]];
    let pe = multivariate::JointParzen::new(&obs, &[1.0, 3.0], &[&a, &b], 1.0);
    // Mixture (1, 3, 1) / 5. Kernel rows with prior weight 1 over 3
    // kernels: 1/3 per choice plus 1 at the observation, normalised (the
    // prior's row has no observation).
    let row = |o: Option<usize>, x: usize, n: f64| {
        (1.0 / 3.0 + if o == Some(x) { 1.0 } else { 0.0 }) / (n / 3.0 + if o.is_some() { 1.0 } else { 0.0 })
    };
    let ka = |o: Option<usize>, x: usize| row(o, x, 2.0);
    let kb = |o: Option<usize>, x: usize| row(o, x, 3.0);
    let w = [0.2, 0.6, 0.2];
    let kernels = [(Some(0), Some(2)), (Some(1), Some(0)), (None, None)];
    let mut total = 0.0;
    for x in 0..2 {
        for y in 0..3 {
            let p: f64 = kernels.iter().zip(w).map(|((oa, ob), w)| w * ka(*oa, x) * kb(*ob, y)).sum();
            let got = pe.log_pdf(&[x as f64, y as f64]);
            assert!((got - p.ln()).abs() < 1e-12, "({x}, {y}): {got} vs {}", p.ln());
            total += got.exp();
        }
    }
    assert!((total - 1.0).abs() < 1e-12);
    assert_eq!(pe.weights(), &[0.2, 0.6, 0.2]);
    // An integer of range 1..=10 among 3 parameters, 8 observations: every
    // width 0.2 · 8^(−1/7) · 10 ≈ 1.49, within the clip [10 / min(100, 10), 10].
    let d = Distribution::Int { low: 1, high: 10, step: 1 };
    let values: Vec<f64> = (1..=8).map(f64::from).collect();
    let pe = ParzenEstimator::with_bandwidth(&values, &[1.0; 8], &d, 1.0, Some(3));
    let (_, sigmas) = pe.mus_sigmas().unwrap();
    let want = 0.2 * 8f64.powf(-1.0 / 7.0) * 10.0;
    assert_eq!(sigmas.len(), 9);
    assert!(sigmas[..8].iter().all(|&s| (s - want).abs() < 1e-12) && sigmas[8] == 10.0, "{sigmas:?}");
    // One observation by itself: 0.2 · 10 = 2 is below the clip's 10 / 3.
    let pe = ParzenEstimator::with_bandwidth(&values[..1], &[1.0], &d, 1.0, Some(1));
    let (_, sigmas) = pe.mus_sigmas().unwrap();
    assert!((sigmas[0] - 10.0 / 3.0).abs() < 1e-12, "{sigmas:?}");
}

/// Joint draws follow the joint density.
#[test]
fn joint_samples_follow_the_density() {
    let a = Distribution::Categorical { choices: vec![json!(0), json!(1)] };
    let d = Distribution::Int { low: 0, high: 4, step: 1 };
    let obs = [vec![0.0, 0.0], vec![1.0, 4.0], vec![1.0, 3.0]];
    let pe = multivariate::JointParzen::new(&obs, &[1.0, 2.0, 0.5], &[&a, &d], 1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut counts = [[0usize; 5]; 2];
    let n = 60_000;
    for _ in 0..n {
        let x = pe.sample(&mut rng);
        counts[x[0] as usize][x[1] as usize] += 1;
    }
    for (i, row) in counts.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            let p = pe.log_pdf(&[i as f64, j as f64]).exp();
            assert!((count as f64 / n as f64 - p).abs() < 0.01, "({i}, {j}): {count} vs {p}");
        }
    }
}

/// Two parameters that only pay off together (x = y; one objective): the
/// good trials are the four diagonal pairs, so their marginals are flat,
/// and the bad ones hold x = 0 and y = 1 least often. Univariate TPE then
/// draws x = 0 and y = 1, a miss; the joint model draws diagonal pairs.
#[test]
fn multivariate_learns_what_univariate_cannot() {
    let d = Distribution::Categorical { choices: (0..4).map(|c| json!(c)).collect() };
    let off_diagonal: Vec<(u8, u8)> =
        (0..4).flat_map(|x| (0..4).map(move |y| (x, y))).filter(|(x, y)| x != y).collect();
    let extra = [(1, 0), (2, 0), (3, 0), (1, 2), (1, 3), (2, 3), (3, 2)];
    let pairs: Vec<(u8, u8)> =
        off_diagonal.iter().chain(&off_diagonal).chain(&extra).copied().chain((0..4).map(|i| (i, i))).collect();
    let trials: Vec<Arc<FrozenTrial>> = pairs
        .iter()
        .enumerate()
        .map(|(n, &(x, y))| {
            let (x, y) = (f64::from(x), f64::from(y));
            let value = f64::from(u8::from(x == y)) + 0.001 * n as f64;
            Arc::new(with_params(n as u64, &[value], &[("x", d.clone(), x), ("y", d.clone(), y)]))
        })
        .collect();
    assert_eq!(default_gamma(trials.len()), 4);
    let view = StudyView { directions: &[Max], trials: &trials };
    let next = trials.len() as u64;
    let univariate = TpeSampler::default();
    let joint = TpeSampler { multivariate: true, group: true, ..TpeSampler::default() };
    let (mut hits_uni, mut hits_joint) = (0, 0);
    for seed in 0..200 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let relative = joint.sample_relative(&view, next, &mut rng).unwrap().params;
        hits_joint += usize::from(relative["x"] == relative["y"]);
        let mut draw = |name: &str| univariate.sample_independent(&view, next, name, &d, &mut rng).unwrap();
        hits_uni += usize::from(draw("x") == draw("y"));
    }
    eprintln!("diagonal draws of 200: univariate {hits_uni}, multivariate {hits_joint}");
    assert!(hits_joint > 160 && hits_uni < 40, "multivariate {hits_joint}, univariate {hits_uni}");
}

/// Multivariate TPE (grouped or not) on the conditional toy space: its
/// draws are legal and reproducible, and it beats random search (on 4 of 6
/// seeds and by 2 % in all; univariate TPE does about as well here).
#[test]
fn multivariate_on_a_conditional_space() {
    for group in [false, true] {
        let tpe = TpeSampler { multivariate: true, group, ..TpeSampler::default() };
        let a = run_toy(&tpe, 40, 3);
        let params = |trials: &[FrozenTrial]| trials.iter().map(|t| t.params.clone()).collect::<Vec<_>>();
        assert_eq!(params(&a), params(&run_toy(&tpe, 40, 3)));
        for t in &a {
            assert_eq!(t.params.len(), 1 + 2 * t.param("n_layers").unwrap() as usize);
        }
        let (mut wins, mut total, mut total_random) = (0, 0.0, 0.0);
        for seed in 1..=6 {
            let (hv, hv_random) =
                (toy_hypervolume(&run_toy(&tpe, 60, seed)), toy_hypervolume(&run_toy(&RandomSampler, 60, seed)));
            wins += usize::from(hv > hv_random);
            total += hv;
            total_random += hv_random;
        }
        assert!(wins >= 4 && total > 1.02 * total_random, "group {group}: {wins} wins, {total} vs {total_random}");
    }
}
