//! `snac bench`: times trials with tutorial 1's setup (MNIST resized to 8×8,
//! subset 10000, 2 epochs, architectures drawn from T1's search space), the
//! figure SNAC-Pack's 4.16 s median trial is compared with; or whole trials
//! (every fold) of a config's own search, e.g. tutorial 2's.

use crate::cli::BenchArgs;
use crate::folds::FoldsOutcome;
use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use snac_core::arch::{Arch, BlockType, Component, Layer, Shape};
use snac_core::config::{self, LocalSearchConfig, PrecisionMode};
use snac_core::search::Distribution;
use snac_core::space::{self, Suggest};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

/// Tutorial 1's data and training settings with its search space.
pub(super) const T1_BENCH: &str = "dataset:
  name: mnist
  resize_val: 8
  subset_size: 10000
  flatten: true
  one_hot: true
search:
  model_type: mlp
  n_trials: 20
  epochs: 2
search_space:
  mlp_width_space: [8, 16, 32, 64, 128]
  act_space: [relu, tanh, sigmoid]
  norm_space: [null, batch]
  output_dim: 10
  output_activation: softmax
local_search:
  qat_epochs: 2
  pruning_iterations: 5
  pruning_epochs: 2
  pruning_rate: 0.8
  precision_pairs:
    - {total_bits: 16, int_bits: 6}
    - {total_bits: 8, int_bits: 3}
    - {total_bits: 6, int_bits: 2}
    - {total_bits: 4, int_bits: 1}
";

struct Draw(rand_chacha::ChaCha8Rng);

impl Suggest for Draw {
    fn suggest(&mut self, _name: &str, distribution: Distribution) -> Result<f64> {
        Ok(distribution.sample(&mut self.0))
    }
}

/// The architectures of `--archs FILE` (layer lists, as `--save-archs`
/// writes them) on the config's input shape, each checked to fit it.
fn load_archs(path: &Path, input_shape: Shape) -> Result<Vec<Arch>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lists: Vec<Vec<Layer>> = serde_json::from_str(&text).with_context(|| {
        format!("{}: expected a JSON list of layer lists, as `snac bench --save-archs` writes", path.display())
    })?;
    anyhow::ensure!(!lists.is_empty(), "{}: the list of architectures is empty", path.display());
    lists
        .into_iter()
        .enumerate()
        .map(|(i, layers)| {
            let arch =
                Arch::new(input_shape, vec![Component { name: "layers".into(), block_type: BlockType::Mlp, layers }]);
            arch.shapes().with_context(|| {
                format!("{}: architecture {i} does not fit the config's input shape {input_shape}", path.display())
            })?;
            Ok(arch)
        })
        .collect()
}

pub fn bench(args: &BenchArgs) -> Result<ExitCode> {
    let experiment = match &args.config {
        Some(path) => config::load(path)?,
        None => config::load_str(T1_BENCH, Path::new("<tutorial 1 benchmark>"))?,
    };
    let started = Instant::now();
    let mut setup = SearchSetup::prepare(experiment).context(
        "the benchmark needs MNIST: set SNAC_DATA_DIR (e.g. SNAC_DATA_DIR=../shared/data) or run `snac data fetch mnist`",
    )?;
    let load_s = started.elapsed().as_secs_f64();
    let archs = match &args.archs {
        Some(path) => load_archs(path, setup.spec.input_shape)?,
        None => {
            let mut draw = Draw(rand::SeedableRng::seed_from_u64(args.seed));
            (0..args.trials).map(|_| space::decode(&setup.spec, &mut draw)).collect::<Result<Vec<_>>>()?
        }
    };
    println!(
        "benchmark: {} architectures, {} epochs, {} train / {} validation samples, {} worker(s); data loaded in {load_s:.2} s",
        archs.len(),
        setup.experiment.search.epochs,
        setup.dataset.train.len(),
        setup.dataset.val.len(),
        args.workers
    );
    if let Some(path) = &args.save_archs {
        let layers: Vec<Vec<&snac_core::arch::Layer>> = archs.iter().map(|a| a.layers().collect()).collect();
        std::fs::write(path, serde_json::to_string_pretty(&layers)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("architectures written to {} (for tools/keras_trial.py)", path.display());
    }
    let (results, wall_s) = time_trials(&setup, &archs, args.workers);
    print_trials(&setup, &archs, &results, wall_s, args.config.is_none())?;
    time_estimates(&setup, &archs)?;
    // (Only for the default setup: a config's own local search can take hours.)
    let local = setup.experiment.local_search.clone().filter(|_| args.config.is_none());
    if let (Some(local), Some((0, _, Ok(outcome)))) = (local, results.first()) {
        time_local_search(&mut setup, &local, &archs[0], &outcome.kept.weights, args.workers)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One timed trial: the architecture's index, its wall time in seconds and
/// its outcome.
type Timed = (usize, f64, Result<FoldsOutcome>);

/// Trains every architecture as a whole trial (every fold with k-fold) on
/// `workers` threads; returns the trials in architecture order and the wall
/// time in seconds.
fn time_trials(setup: &SearchSetup, archs: &[Arch], workers: usize) -> (Vec<Timed>, f64) {
    let results = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let wall = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                let _core = crate::folds::CoreClaim::this_thread();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(arch) = archs.get(i) else { break };
                    let t = Instant::now();
                    // A whole trial: every fold with k-fold.
                    let outcome = setup.train_folds(arch, &setup.train_config(i as u64));
                    let seconds = t.elapsed().as_secs_f64();
                    results.lock().unwrap().push((i, seconds, outcome));
                }
            });
        }
    });
    let wall_s = wall.elapsed().as_secs_f64();
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    (results, wall_s)
}

/// Prints each trial's time, accuracy and throughput, then the median trial
/// time and, for the default setup, the comparison with SNAC-Pack's.
fn print_trials(setup: &SearchSetup, archs: &[Arch], results: &[Timed], wall_s: f64, default: bool) -> Result<()> {
    let mut times = Vec::new();
    let mut steps = 0usize;
    let peak = snac_train::peak_gflops();
    let (train_len, val_len) = match &setup.folds {
        Some(f) => (f[0].0.len(), f[0].1.len()),
        None => (setup.dataset.train.len(), setup.dataset.val.len()),
    };
    for (i, seconds, outcome) in results {
        match outcome {
            Ok(folds_outcome) => {
                let (o, fold_accuracies) = (&folds_outcome.kept, &folds_outcome.fold_accuracies);
                // Forward and backward ≈ 3 × 2 FLOP per multiply-accumulate
                // for each trained sample, 2 per validated one; per core, as
                // the folds of a trial may train side by side.
                let macs = snac_core::cost::macs(&archs[*i])? as f64;
                let epochs = folds_outcome.epochs as f64;
                let flop = epochs * macs * (6.0 * train_len as f64 + 2.0 * val_len as f64);
                let gflops = flop / folds_outcome.core_seconds / 1e9;
                let accuracy = match fold_accuracies {
                    Some(a) => a.iter().sum::<f64>() / a.len() as f64,
                    None => o.val_accuracy,
                };
                println!(
                    "  {i:>3}  {:>9.1} ms  acc {accuracy:.4}  epochs {:>3}  {gflops:>6.2} GFLOP/s per core ({:>4.1} % of peak)  {}",
                    seconds * 1000.0,
                    folds_outcome.epochs,
                    100.0 * gflops / peak,
                    archs[*i].summary()
                );
                times.push(*seconds);
                steps += o.steps;
            }
            Err(e) => println!("  {i:>3}  failed: {e:#}"),
        }
    }
    anyhow::ensure!(!times.is_empty(), "every benchmark trial failed");
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    println!(
        "trial time: median {:.1} ms, min {:.1} ms, max {:.1} ms; {:.0} training steps/s per trial thread; {:.2} trials/s overall \
         ({:.2} s of wall time per trial; FMA peak {peak:.1} GFLOP/s per core)",
        median * 1000.0,
        times[0] * 1000.0,
        times[times.len() - 1] * 1000.0,
        steps as f64 / total,
        times.len() as f64 / wall_s,
        wall_s / times.len() as f64
    );
    if default {
        println!("SNAC-Pack's median T1 trial on this machine kind: 4.16 s, so {:.0}× faster", 4.16 / median);
    }
    Ok(())
}

/// Times the FPGA estimates of the same architectures (rule4ml takes 2.5–8 s
/// each), of those the chosen estimator models (rule4ml: MLPs and plain CNNs).
fn time_estimates(setup: &SearchSetup, archs: &[Arch]) -> Result<()> {
    let estimable: Vec<_> = archs.iter().filter(|a| setup.hardware.estimate(a).is_ok()).collect();
    if estimable.is_empty() {
        println!("FPGA estimate ({}): no architecture here it can model", setup.hardware.estimator.name());
    } else {
        let repeats = 200;
        let started = Instant::now();
        for _ in 0..repeats {
            for arch in &estimable {
                std::hint::black_box(setup.hardware.estimate(arch)?);
            }
        }
        let per_estimate = started.elapsed().as_secs_f64() / (repeats * estimable.len()) as f64;
        println!("FPGA estimate ({}): {:.1} µs per architecture", setup.hardware.estimator.name(), per_estimate * 1e6);
    }
    Ok(())
}

/// Local search of the first architecture from its trained weights, as
/// tutorial 1 runs it (4 precisions × (2 QAT + 5 × 2 pruning) epochs), on one
/// worker and on `workers`; SNAC-Pack takes 27 s for it on this machine kind.
fn time_local_search(
    setup: &mut SearchSetup,
    local: &LocalSearchConfig,
    arch: &Arch,
    weights: &snac_train::Weights,
    workers: usize,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("snac-bench-local-{}", std::process::id()));
    let mut timings = Vec::new();
    for pair_workers in [1, workers.max(1)] {
        setup.experiment.search.workers = Some(pair_workers);
        let started = Instant::now();
        let rows = crate::local_search::run(setup, local, arch, Some(weights.clone()), &dir, local.mode)?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "local search ({} rows, {pair_workers} worker(s)): {seconds:.2} s, {:.0}× faster than SNAC-Pack's 27 s",
            rows.len(),
            27.0 / seconds
        );
        timings.push(seconds);
        if workers <= 1 {
            break;
        }
    }
    if let [one, many] = timings[..] {
        println!("local search speed-up from {workers} workers: {:.2}×", one / many);
    }
    // The same with per-layer precision: the pairs, the width search and
    // its QAT + pruning (issue 22's budget: 10 s on tutorial 1).
    let per_layer = LocalSearchConfig { precision: PrecisionMode::PerLayer, ..local.clone() };
    let started = Instant::now();
    let rows = crate::local_search::run(setup, &per_layer, arch, Some(weights.clone()), &dir, local.mode)?;
    let seconds = started.elapsed().as_secs_f64();
    let uniform = timings.last().copied().unwrap_or(f64::NAN);
    println!(
        "local search with per-layer precision ({} rows, {} worker(s)): {seconds:.2} s, {:.2}× the uniform one",
        rows.len(),
        workers.max(1),
        seconds / uniform
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
