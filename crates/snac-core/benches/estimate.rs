//! Time per FPGA estimate, for each estimator: `cargo bench -p snac-core
//! --bench estimate`. rule4ml's row needs its weights (a rule4ml install or
//! `$SNAC_RULE4ML_DIR`); without them it is reported as skipped.
//!
//! The comparison is rule4ml in Python as SNAC-Pack calls it: 2.5–8 s per
//! trial (it predicts 24 rows, re-parsing the Keras model 144 times), of which
//! snac needs one row.

use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::estimate::{AnalyticalEstimator, Board, HlsSettings, ResourceEstimator, Rule4mlEstimator, Rule4mlRow};
use std::hint::black_box;
use std::time::Instant;

/// SNAC-Pack's per-trial rule4ml time, in seconds (docs/snac-pack-compat.md §7).
const RULE4ML_PYTHON_S: (f64, f64) = (2.5, 8.0);

/// rule4ml's reference nets (`../shared/reference-data/rule4ml`): ReLU
/// hidden layers, softmax output.
fn nets() -> Vec<(&'static str, Arch)> {
    let net = |name: &'static str, widths: &[usize], norm: Norm| {
        let (&outputs, hidden) = widths[1..].split_last().unwrap();
        let mut components: Vec<Component> = hidden
            .iter()
            .enumerate()
            .map(|(i, &w)| Component::mlp(&format!("b{i}"), w, norm, Activation::Relu))
            .collect();
        components.push(Component::output("output", outputs, Activation::Softmax));
        (name, Arch::new(Shape::Flat(widths[0]), components))
    };
    vec![
        net("mlp_64_32_10", &[64, 32, 10], Norm::None),
        net("mlp_64_128_64_32_10", &[64, 128, 64, 32, 10], Norm::None),
        net("jet_16_64_32_32_5 (batchnorm)", &[16, 64, 32, 32, 5], Norm::Batch),
        net("qubit_800_16_8_2", &[800, 16, 8, 2], Norm::None),
    ]
}

/// Mean seconds per call of `estimator` on `arch`.
fn time(estimator: &dyn ResourceEstimator, arch: &Arch, board: &Board) -> f64 {
    let settings = HlsSettings::default();
    estimator.estimate(arch, &settings, None, board).expect("estimate");
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < 100 || start.elapsed().as_secs_f64() < 0.5 {
        black_box(estimator.estimate(black_box(arch), &settings, None, board).expect("estimate"));
        calls += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(calls)
}

fn main() {
    let board = Board::by_name("zcu102").expect("board");
    let nets = nets();
    let start = Instant::now();
    let rule4ml = Rule4mlEstimator::load_default(&Rule4mlRow::default());
    let load_s = start.elapsed().as_secs_f64();
    let analytical = AnalyticalEstimator::default();
    let mut estimators: Vec<&dyn ResourceEstimator> = vec![&analytical];
    match &rule4ml {
        Ok(estimator) => {
            println!("rule4ml weights loaded from {} in {:.1} ms", estimator.weights_dir.display(), load_s * 1e3);
            estimators.push(estimator);
        }
        Err(error) => println!("rule4ml skipped: {error:#}"),
    }
    println!("{:<32} {:>12} {:>12} {:>24}", "net", "estimator", "µs per call", "rule4ml Python / this");
    for (name, arch) in &nets {
        for estimator in &estimators {
            let seconds = time(*estimator, arch, &board);
            println!(
                "{name:<32} {:>12} {:>12.1} {:>11.0}× – {:.0}×",
                estimator.name(),
                seconds * 1e6,
                RULE4ML_PYTHON_S.0 / seconds,
                RULE4ML_PYTHON_S.1 / seconds
            );
        }
    }
}
