//! The local search (docs/snac-pack-compat.md §5): for each precision pair, QAT warm-up
//! from the trained global-search weights, the lottery-ticket checkpoint, then
//! iterative magnitude pruning to sparsity `1 − rate^i` with rewinding. Writes
//! `local_search_combined/combined_qat_pruning_log.csv` and one model file per
//! precision, `best_model_{bits}b{int}i.json`. With `precision: per_layer`,
//! the per-layer widths found after the pairs ([`crate::precision_search`])
//! go through the same QAT and pruning as one more precision, `per-layer`
//! (`best_model_per_layer.json`).

use crate::precision_search::{self, estimate_model, model_bops};
use crate::setup::SearchSetup;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use snac_core::arch::Arch;
use snac_core::config::{LocalSearchConfig, LocalSearchMode, PrecisionMode, PrecisionPair};
use snac_core::cost::{self, GLOBAL_SEARCH_BITS};
use snac_core::data::Split;
use snac_core::estimate::{Estimate, HlsSettings, LayerInfo};
use snac_core::quantized::QuantizedModel;
use snac_core::trial_yaml::{ArchitectureYaml, TrialYaml};
use snac_train::{Masks, QuantSpec, TrainConfig, Weights, magnitude_masks, quantized_model, train, train_from};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the local search writes.
pub const LOCAL_DIR: &str = "local_search_combined";
pub const LOG_FILE: &str = "combined_qat_pruning_log.csv";

/// One row of the log.
#[derive(Clone, Debug, Serialize)]
pub struct LogRow {
    #[serde(rename = "Precision")]
    pub precision: String,
    #[serde(rename = "TotalBits")]
    pub total_bits: u32,
    #[serde(rename = "IntBits")]
    pub int_bits: u32,
    #[serde(rename = "Iteration")]
    pub iteration: usize,
    #[serde(rename = "Sparsity")]
    pub sparsity: f64,
    #[serde(rename = "Accuracy")]
    pub accuracy: f64,
    /// SNAC-Pack's formula: baseline BOPs · (total_bits/32)² · (1 − sparsity).
    #[serde(rename = "EffectiveBOPs")]
    pub effective_bops: f64,
    pub target_sparsity: f64,
    pub nonzero_weights: usize,
    /// Per-layer count with the real bit widths and the nonzero weights.
    pub bops_effective: f64,
    /// FPGA estimate with the real widths and nonzero weights (empty when
    /// the estimator cannot handle the model).
    pub avg_resource: Option<f64>,
    pub clock_cycles: Option<f64>,
    pub lut: Option<f64>,
    pub ff: Option<f64>,
    pub dsp: Option<f64>,
    pub bram: Option<f64>,
    /// k-fold: each fold's accuracy, `;`-separated (Accuracy is their mean).
    pub fold_accuracies: Option<String>,
    /// Per-layer precision: each layer's widths (`index:w<kernel>/a<output>`).
    pub layer_widths: Option<String>,
}

/// A model handed on from local search: architecture, types, weights, masks.
#[derive(Serialize)]
struct ModelFile<'a> {
    architecture: ArchitectureYaml,
    precision: PrecisionPair,
    /// `uniform` or `per_layer` (the types per layer are in `quantized_model.types.layers`).
    precision_mode: &'static str,
    weight_type: String,
    activation_type: String,
    accuracy: f64,
    sparsity: f64,
    iteration: usize,
    weights: &'a Weights,
    masks: Option<&'a Masks>,
    /// Validation accuracy of the integer model (`snac predict` runs it).
    integer_accuracy: Option<f64>,
    /// The model in fixed point: types, integer codes, masks.
    quantized_model: Option<QuantizedModel>,
    /// Why there is no integer model, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    quantized_model_error: Option<String>,
}

/// Per-layer bit operations with real widths and nonzero weights
/// ([`snac_core::cost::effective_bops`]): a Conv2d weight counts once per
/// output position, a Dense weight on a set once per element.
pub fn bops_effective(arch: &Arch, weights: &Weights, weight_bits: f64, activation_bits: f64) -> f64 {
    snac_core::cost::effective_bops(arch, &weights.kernel_nonzeros(), weight_bits, activation_bits).unwrap_or(f64::NAN)
}

fn nonzero_kernel_weights(weights: &Weights) -> usize {
    weights.kernel_nonzeros().into_iter().flatten().sum()
}

/// The FPGA estimate of a (quantized, pruned) model: the real bit widths
/// and nonzero weights of every layer with weights, and its bit operations
/// counted the same way. A quantized model is built for it, so weights that
/// round to zero count as zero (HLS drops those products).
fn estimate(
    setup: &SearchSetup,
    arch: &Arch,
    weights: &Weights,
    quant: Option<&QuantSpec>,
) -> (Option<Estimate>, Option<f64>) {
    if let Some(model) = quant.and_then(|q| quantized_model(arch, weights, None, q).ok()) {
        return (estimate_model(setup, &model), Some(model_bops(&model)));
    }
    let hardware = &setup.hardware;
    let settings =
        HlsSettings { precision: quant.map_or(hardware.settings.precision, |q| q.weights), ..hardware.settings };
    let bits = settings.precision.width;
    let layers: Vec<LayerInfo> = weights
        .kernel_nonzeros()
        .into_iter()
        .flatten()
        .map(|nonzero| LayerInfo { weight_bits: bits, activation_bits: bits, nonzero_weights: Some(nonzero) })
        .collect();
    (hardware.estimator.estimate(arch, &settings, Some(&layers), &hardware.board).ok(), None)
}

/// The architecture and, when they exist, its trained weights.
pub fn starting_point(results_dir: &Path, arch_file: Option<&Path>) -> Result<(Arch, Option<PathBuf>, PathBuf)> {
    let path = arch_file.map(Path::to_path_buf).unwrap_or_else(|| results_dir.join(crate::outputs::BEST_MODEL_FILE));
    if !path.exists() {
        bail!(
            "{} does not exist: run the global search first (`snac search CONFIG`) or pass --arch FILE",
            path.display()
        );
    }
    let yaml = TrialYaml::read(&path)?;
    let arch = yaml.architecture.to_arch().with_context(|| format!("in {}", path.display()))?;
    let weights = yaml
        .metadata
        .extra
        .get("weights")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .or_else(|| Some(crate::outputs::trial_weights_path(results_dir, yaml.metadata.trial_id)))
        .filter(|p| p.exists());
    Ok((arch, weights, path))
}

/// Runs the local search for `arch`, starting from `weights` (trained first
/// when `None`).
pub fn run(
    setup: &SearchSetup,
    local: &LocalSearchConfig,
    arch: &Arch,
    weights: Option<Weights>,
    results_dir: &Path,
    mode: LocalSearchMode,
) -> Result<Vec<LogRow>> {
    let data = &setup.dataset;
    let seed = setup.experiment.search.seed;
    let base = setup.train_config(seed);
    let float_weights = match weights {
        Some(w) => w,
        None => {
            log::info!("local search: no trained weights for the best architecture; training it first");
            train(arch, &data.train, &data.val, data.num_classes, &base)?.weights
        }
    };
    let baseline_bops = cost::bops(arch, setup.formula, GLOBAL_SEARCH_BITS)?;
    let dir = results_dir.join(LOCAL_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fold_starts = fold_starts(setup, arch, &base, float_weights)?;
    let pairs: Vec<Option<PrecisionPair>> = match mode {
        LocalSearchMode::PruneOnly => vec![None],
        LocalSearchMode::Combined | LocalSearchMode::QatOnly => {
            local.precision_pairs.iter().copied().map(Some).collect()
        }
    };
    let log_path = dir.join(LOG_FILE);
    let search = LocalRun { setup, local, arch, mode, base, baseline_bops, dir, fold_starts };
    let precisions = pairs.into_iter().map(Precision::new).collect::<Result<Vec<_>>>()?;
    let outcomes = run_pairs(setup, &precisions, &log_path, |precision| search.run_pair(precision, None))?;
    let mut rows: Vec<LogRow> = outcomes.iter().flat_map(|o| o.rows.clone()).collect();
    if local.precision == PrecisionMode::PerLayer {
        if mode == LocalSearchMode::PruneOnly {
            log::warn!("local_search.precision per_layer: skipped, since mode prune_only trains no fixed-point model");
        } else {
            rows.extend(search.per_layer(&precisions, &outcomes)?);
            write_log(&log_path, &rows)?;
        }
    }
    Ok(rows)
}

/// The weights each pipeline starts from. With k-fold, each fold starts
/// from weights trained on that fold only, so no fold has seen its
/// validation samples.
fn fold_starts(setup: &SearchSetup, arch: &Arch, base: &TrainConfig, float_weights: Weights) -> Result<Vec<Weights>> {
    let classes = setup.dataset.num_classes;
    Ok(match &setup.folds {
        Some(folds) => folds
            .iter()
            .enumerate()
            .map(|(fold, (t, v))| {
                anyhow::Ok(
                    train(arch, t, v, classes, base).with_context(|| format!("fold {fold}: float training"))?.weights,
                )
            })
            .collect::<Result<_>>()?,
        None => vec![float_weights],
    })
}

/// Runs `run_pair` for every precision. Precisions are independent: they
/// run side by side, one per worker (training is single-threaded), and the
/// log is rewritten in order as each finishes.
fn run_pairs(
    setup: &SearchSetup,
    precisions: &[Precision],
    log_path: &Path,
    run_pair: impl Fn(&Precision) -> Result<PairOutcome> + Sync,
) -> Result<Vec<PairOutcome>> {
    let workers = setup
        .experiment
        .search
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, precisions.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<PairOutcome>>> =
        std::sync::Mutex::new((0..precisions.len()).map(|_| None).collect());
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(precision) = precisions.get(index) else { return Ok(()) };
                        let outcome = run_pair(precision)?;
                        let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                        done[index] = Some(outcome);
                        let so_far: Vec<LogRow> = done.iter().flatten().flat_map(|o| o.rows.clone()).collect();
                        write_log(log_path, &so_far)?;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("a local-search worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect())
}

/// What one precision's QAT and pruning give: its log rows, and the first
/// pipeline's QAT weights (where a per-layer search starts).
struct PairOutcome {
    rows: Vec<LogRow>,
    checkpoint: Weights,
}

/// What every precision pair of one local search shares.
struct LocalRun<'a> {
    setup: &'a SearchSetup,
    local: &'a LocalSearchConfig,
    arch: &'a Arch,
    mode: LocalSearchMode,
    base: TrainConfig,
    baseline_bops: f64,
    /// `local_search_combined/`, where the model files go.
    dir: PathBuf,
    /// Each pipeline's starting weights (one per fold with k-fold).
    fold_starts: Vec<Weights>,
}

/// One precision pair, the float model of `prune_only`, or the per-layer
/// types, as the local search trains, labels and files it.
struct Precision {
    /// The pair, for the model file (`None`: float or per-layer).
    pair: Option<PrecisionPair>,
    quant: Option<QuantSpec>,
    /// Total and integer bits in the log (per-layer: the widest kernel, 0).
    total_bits: u32,
    int_bits: u32,
    /// Width for SNAC-Pack's effective-BOPs formula.
    bits: f64,
    label: String,
    /// The model file's name in `local_search_combined/`.
    file: String,
}

/// The label of the per-layer precision in the log.
pub const PER_LAYER_LABEL: &str = "per-layer";

/// The per-layer model's file.
pub const PER_LAYER_FILE: &str = "best_model_per_layer.json";

impl Precision {
    fn new(pair: Option<PrecisionPair>) -> Result<Precision> {
        let quant = pair
            .map(|p| {
                QuantSpec::from_qkeras(p.total_bits, p.int_bits).with_context(|| {
                    format!("local_search.precision_pairs: {{total_bits: {}, int_bits: {}}}", p.total_bits, p.int_bits)
                })
            })
            .transpose()?;
        Ok(Precision {
            pair,
            quant,
            total_bits: pair.map_or(32, |p| p.total_bits),
            int_bits: pair.map_or(0, |p| p.int_bits),
            bits: pair.map_or(GLOBAL_SEARCH_BITS, |p| p.total_bits as f64),
            label: pair.map_or("float".to_string(), |p| format!("<{},{}>", p.total_bits, p.int_bits)),
            file: match pair {
                Some(p) => format!("best_model_{}b{}i.json", p.total_bits, p.int_bits),
                None => "best_model_float_pruned.json".to_string(),
            },
        })
    }

    /// The per-layer types `spec`; `bits`: the uniform width with the same
    /// bit operations (for SNAC-Pack's effective-BOPs formula).
    fn per_layer(spec: QuantSpec, bits: f64) -> Precision {
        let widest = spec.layers.iter().filter_map(|l| l.weights).map(|w| w.width).max().unwrap_or(spec.weights.width);
        Precision {
            pair: None,
            quant: Some(spec),
            total_bits: widest,
            int_bits: 0,
            bits,
            label: PER_LAYER_LABEL.to_string(),
            file: PER_LAYER_FILE.to_string(),
        }
    }
}

impl LocalRun<'_> {
    /// QAT and pruning at one precision on every fold; writes its model
    /// file and returns its log rows. `first_start` replaces the first
    /// pipeline's QAT warm-up (the per-layer search's tuned weights and
    /// their accuracy).
    fn run_pair(&self, precision: &Precision, first_start: Option<(&Weights, f64)>) -> Result<PairOutcome> {
        let started = Instant::now();
        let data = &self.setup.dataset;
        // One pipeline per fold (or on the train/validation split): each
        // yields (iteration, target sparsity, accuracy, weights, masks).
        let splits: Vec<(&Split, &Split)> = match &self.setup.folds {
            Some(folds) => folds.iter().map(|(t, v)| (t, v)).collect(),
            None => vec![(&data.train, &data.val)],
        };
        let quant = &precision.quant;
        let config = |epochs: usize, masks: Option<Masks>| TrainConfig {
            epochs,
            quant: quant.clone(),
            masks,
            ..self.base.clone()
        };
        let mut runs = Vec::with_capacity(splits.len());
        for (fold, (split, start)) in splits.iter().zip(&self.fold_starts).enumerate() {
            let start = match first_start.filter(|_| fold == 0) {
                Some((weights, accuracy)) => Start::Trained(weights.clone(), accuracy),
                None => Start::Float(start.clone()),
            };
            runs.push(pipeline(self.arch, self.local, self.mode, start, *split, data.num_classes, &config)?);
        }
        let (rows, (accuracy, position)) = self.fold_rows(precision, &runs);
        // The model file: at the best iteration, the fold that did best.
        let (chosen_fold, chosen) =
            runs.iter()
                .map(|r| &r[position])
                .enumerate()
                .fold(None::<(usize, &Step)>, |b, (f, s)| {
                    if b.is_none_or(|(_, b)| s.accuracy > b.accuracy) { Some((f, s)) } else { b }
                })
                .expect("at least one fold");
        let holdout = splits[chosen_fold].1;
        let label = &precision.label;
        let iteration = chosen.iteration;
        self.write_model(precision, chosen, accuracy, holdout)?;
        log::info!(
            "local search {label}: QAT {:.4}, best {accuracy:.4} at iteration {iteration} (sparsity {:.3}) in {:.1} s",
            rows.iter().rev().find(|r| &r.precision == label && r.iteration == 0).map_or(f64::NAN, |r| r.accuracy),
            chosen.weights.sparsity(),
            started.elapsed().as_secs_f64()
        );
        Ok(PairOutcome { rows, checkpoint: runs[0][0].weights.clone() })
    }

    /// `precision: per_layer`: searches per-layer widths ([`precision_search`])
    /// from the QAT weights of the `reference_bits` pair, keeping its best
    /// accuracy within the tolerance, or without it from the most accurate
    /// pair, keeping its own; writes the candidates' log, and runs QAT and
    /// pruning at the widths found. Returns their log rows.
    fn per_layer(&self, precisions: &[Precision], outcomes: &[PairOutcome]) -> Result<Vec<LogRow>> {
        let started = Instant::now();
        let best = |o: &PairOutcome| o.rows.iter().map(|r| r.accuracy).fold(f64::NEG_INFINITY, f64::max);
        let pairs = || precisions.iter().zip(outcomes).filter(|(p, _)| p.quant.is_some());
        let (start, reference) = match self.local.reference_bits {
            Some(bits) => {
                let Some(pair) = pairs().find(|(p, _)| p.total_bits == bits) else {
                    anyhow::bail!("local_search.reference_bits: no precision pair has total_bits {bits}");
                };
                (pair, Some(best(pair.1)))
            }
            // The most accurate pair; on a tie the narrower one.
            None => {
                let most_accurate = pairs()
                    .max_by(|(pa, a), (pb, b)| best(a).total_cmp(&best(b)).then(pb.total_bits.cmp(&pa.total_bits)));
                let Some(pair) = most_accurate else {
                    anyhow::bail!("local_search.precision per_layer needs at least one precision pair");
                };
                (pair, None)
            }
        };
        let (precision, outcome) = start;
        log::info!(
            "per-layer precision: from {} (best accuracy {:.4}), keeping {} within {}",
            precision.label,
            best(outcome),
            reference.map_or("its QAT accuracy".to_string(), |r| format!("{r:.4}")),
            self.local.accuracy_tolerance
        );
        let data = &self.setup.dataset;
        let split = match &self.setup.folds {
            Some(folds) => (&folds[0].0, &folds[0].1),
            None => (&data.train, &data.val),
        };
        let search = precision_search::Search {
            setup: self.setup,
            local: self.local,
            arch: self.arch,
            base: &self.base,
            split,
            start_spec: precision.quant.as_ref().expect("filtered above"),
            start_weights: &outcome.checkpoint,
            reference,
        };
        let found = search.run()?;
        precision_search::write_log(&self.dir, &found.candidates)?;
        log::info!(
            "per-layer precision: {} ({} candidates, accuracy {:.4}) in {:.1} s",
            found.spec.widths_summary(),
            found.candidates.len(),
            found.accuracy,
            started.elapsed().as_secs_f64()
        );
        let model = quantized_model(self.arch, &found.weights, None, &found.spec)?;
        let per_layer = Precision::per_layer(found.spec, precision_search::mean_width_product(&model).sqrt());
        Ok(self.run_pair(&per_layer, Some((&found.weights, found.accuracy)))?.rows)
    }

    /// The log rows of one precision: the mean accuracy over folds per
    /// iteration, the weight statistics of the first fold (the targets are
    /// the same for all); with the best mean accuracy and its position.
    fn fold_rows(&self, precision: &Precision, runs: &[Vec<Step>]) -> (Vec<LogRow>, (f64, usize)) {
        let folds = runs.len();
        let mut rows = Vec::new();
        let mut best: Option<(f64, usize)> = None;
        for (position, step) in runs[0].iter().enumerate() {
            let accuracies: Vec<f64> = runs.iter().map(|r| r[position].accuracy).collect();
            let mean = accuracies.iter().sum::<f64>() / folds as f64;
            let mut log_row = self.row(precision, step.iteration, step.target, mean, &step.weights);
            if folds > 1 {
                let joined: Vec<String> = accuracies.iter().map(|a| format!("{a:.6}")).collect();
                log_row.fold_accuracies = Some(joined.join(";"));
            }
            rows.push(log_row);
            if best.is_none_or(|(b, _)| mean > b) {
                best = Some((mean, position));
            }
        }
        (rows, best.expect("the QAT step is always there"))
    }

    /// One row of the log.
    fn row(&self, precision: &Precision, iteration: usize, target: f64, accuracy: f64, weights: &Weights) -> LogRow {
        let Precision { quant, bits, label, .. } = precision;
        let (arch, bits) = (self.arch, *bits);
        let sparsity = weights.sparsity();
        let (estimate, model_bops) = estimate(self.setup, arch, weights, quant.as_ref());
        let per_layer = quant.as_ref().filter(|q| !q.layers.is_empty());
        LogRow {
            precision: label.clone(),
            total_bits: precision.total_bits,
            int_bits: precision.int_bits,
            iteration,
            sparsity,
            accuracy,
            effective_bops: self.baseline_bops * (bits / GLOBAL_SEARCH_BITS).powi(2) * (1.0 - sparsity),
            target_sparsity: target,
            nonzero_weights: nonzero_kernel_weights(weights),
            bops_effective: model_bops.unwrap_or_else(|| bops_effective(arch, weights, bits, bits)),
            avg_resource: estimate.map(|e| e.avg_resource),
            clock_cycles: estimate.map(|e| e.cycles),
            lut: estimate.map(|e| e.lut),
            ff: estimate.map(|e| e.ff),
            dsp: estimate.map(|e| e.dsp),
            bram: estimate.map(|e| e.bram),
            fold_accuracies: None,
            layer_widths: per_layer.map(QuantSpec::widths_summary),
        }
    }

    /// Writes the model file of one precision (`best_model_{bits}b{int}i.json`)
    /// from the chosen step, with its integer model checked on `holdout`.
    fn write_model(&self, precision: &Precision, chosen: &Step, accuracy: f64, holdout: &Split) -> Result<()> {
        let Precision { pair, quant, label, file: name, .. } = precision;
        let (weights, masks, iteration) = (&chosen.weights, &chosen.masks, chosen.iteration);
        let fixed = quant.as_ref().map(|q| q.weights.to_string()).unwrap_or_else(|| "float".into());
        // The integer model, checked on the validation split: its accuracy
        // is what the hardware will do.
        let (quantized_model, quantized_model_error, integer_accuracy) = match quant {
            Some(spec) => match quantized_model(self.arch, weights, masks.as_ref(), spec) {
                Ok(model) => {
                    let accuracy = model.accuracy(&holdout.x, &holdout.y)?;
                    (Some(model), None, Some(accuracy))
                }
                Err(e) => {
                    log::warn!("local search {label}: no integer model: {e:#}");
                    (None, Some(format!("{e:#}")), None)
                }
            },
            None => (None, Some("float model (prune_only): no fixed-point types".to_string()), None),
        };
        let file = ModelFile {
            architecture: ArchitectureYaml::from_arch(self.arch)?,
            precision: pair.unwrap_or(PrecisionPair { total_bits: precision.total_bits, int_bits: precision.int_bits }),
            precision_mode: if quant.as_ref().is_some_and(|q| !q.layers.is_empty()) { "per_layer" } else { "uniform" },
            weight_type: fixed.clone(),
            activation_type: fixed,
            accuracy,
            sparsity: weights.sparsity(),
            iteration,
            weights,
            masks: masks.as_ref(),
            integer_accuracy,
            quantized_model,
            quantized_model_error,
        };
        // The same weights for NumPy users (`numpy.load`), beside the JSON.
        weights.save_npz(&self.dir.join(name).with_extension("npz"))?;
        snac_core::write_atomic(&self.dir.join(name), &serde_json::to_vec(&file)?)
    }
}

/// Where a pipeline starts.
enum Start {
    /// Weights QAT warms up from.
    Float(Weights),
    /// Weights already trained at the pipeline's types, with their validation accuracy.
    Trained(Weights, f64),
}

/// One step of a local-search pipeline: QAT (iteration 0) or a pruning iteration.
struct Step {
    iteration: usize,
    target: f64,
    accuracy: f64,
    weights: Weights,
    masks: Option<Masks>,
}

/// QAT warm-up (the lottery-ticket checkpoint, iteration 0), then pruning
/// iterations with rewinding, on one train/validation split.
/// `split` is (train, validation). `Start::Trained` weights (already QAT-
/// trained at these types, with their accuracy) are the checkpoint as they are.
fn pipeline(
    arch: &Arch,
    local: &LocalSearchConfig,
    mode: LocalSearchMode,
    start: Start,
    (train_split, val_split): (&Split, &Split),
    classes: usize,
    config: &dyn Fn(usize, Option<Masks>) -> TrainConfig,
) -> Result<Vec<Step>> {
    let (checkpoint, accuracy) = match start {
        Start::Float(weights) => {
            let warm =
                train_from(arch, weights, train_split, val_split, classes, &config(local.qat_epochs.max(1), None))?;
            (warm.weights, warm.val_accuracy)
        }
        Start::Trained(weights, accuracy) => (weights, accuracy),
    };
    let mut steps = vec![Step { iteration: 0, target: 0.0, accuracy, weights: checkpoint.clone(), masks: None }];
    if mode != LocalSearchMode::QatOnly {
        let mut current = checkpoint.clone();
        for iteration in 1..=local.pruning_iterations {
            if snac_core::interrupt::stop_requested() {
                return Err(snac_core::interrupt::Interrupted.into());
            }
            let target = 1.0 - local.pruning_rate.powi(iteration as i32);
            let masks = magnitude_masks(&current, target)?;
            let rewound = current.rewind(&checkpoint, &masks)?;
            let tuned = train_from(
                arch,
                rewound,
                train_split,
                val_split,
                classes,
                &config(local.pruning_epochs, Some(masks.clone())),
            )?;
            current = tuned.weights.clone();
            steps.push(Step {
                iteration,
                target,
                accuracy: tuned.val_accuracy,
                weights: tuned.weights,
                masks: Some(masks),
            });
        }
    }
    Ok(steps)
}

fn write_log(path: &Path, rows: &[LogRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    snac_core::write_atomic(path, &writer.into_inner()?)
}
