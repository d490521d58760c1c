//! The training loop: Keras-equivalent Adam, softmax cross-entropy,
//! per-epoch shuffling, EarlyStopping and ReduceLROnPlateau on `val_loss`.
//!
//! Each call runs on one thread of its own (a one-thread rayon pool), so
//! several trials can train side by side; the result is bit-for-bit the same
//! for the same seed.

use crate::engine::{self, Engine};
use crate::layers::{BATCH_NORM_MOMENTUM, softmax_cross_entropy};
use crate::net::{Net, ParamTable};
use crate::prune::Masks;
use crate::quant::QuantSpec;
use crate::weights::{ParamRole, Weights};
use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use snac_core::arch::Arch;
use snac_core::data::Split;
use std::sync::Arc;

/// Samples per inference pass of the hand-written engine.
const ENGINE_EVAL_BATCH: usize = 256;
/// Keras `ReduceLROnPlateau` default `min_delta`.
const LR_PLATEAU_MIN_DELTA: f64 = 1e-4;
/// Keras Adam defaults.
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPSILON: f32 = 1e-7;

/// Hyper-parameters of one training run (docs/snac-pack-compat.md §3 defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// EarlyStopping patience on `val_loss`, in epochs.
    pub early_stopping_patience: usize,
    /// ReduceLROnPlateau patience on `val_loss`, in epochs.
    pub lr_plateau_patience: usize,
    /// ReduceLROnPlateau factor.
    pub lr_factor: f64,
    /// ReduceLROnPlateau floor.
    pub min_lr: f64,
    /// Seeds weight initialisation and shuffling.
    pub seed: u64,
    /// Quantization-aware training at these fixed-point types (see
    /// [`crate::quant`]); validation then uses the quantized forward pass.
    pub quant: Option<QuantSpec>,
    /// Pruning masks, held during training: masked kernel weights are zero
    /// from the start and stay exactly zero (see [`crate::prune`]).
    pub masks: Option<Masks>,
    /// Called after every epoch with its statistics; an error stops the
    /// training with that error (a pruner's "this trial is hopeless").
    pub on_epoch: Option<EpochHook>,
}

/// The function an [`EpochHook`] calls.
pub type EpochFn = dyn Fn(&EpochStats) -> Result<()> + Send + Sync;

/// What [`TrainConfig::on_epoch`] calls.
#[derive(Clone)]
pub struct EpochHook(pub Arc<EpochFn>);

impl std::fmt::Debug for EpochHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochHook")
    }
}

impl PartialEq for EpochHook {
    /// The same hook: two configs that call the same function are equal.
    fn eq(&self, other: &EpochHook) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            learning_rate: 1e-3,
            early_stopping_patience: 5,
            lr_plateau_patience: 2,
            lr_factor: 0.5,
            min_lr: 1e-6,
            seed: 0,
            quant: None,
            masks: None,
            on_epoch: None,
        }
    }
}

/// What one epoch achieved. Epochs count from 1, as Keras prints them.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    /// Sample-weighted mean of the batch losses (batch statistics in BatchNorm).
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// The learning rate used during this epoch.
    pub learning_rate: f64,
}

/// The result of [`train`]: the best epoch's weights and validation scores.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub val_accuracy: f64,
    pub val_loss: f64,
    /// The epoch (from 1) whose weights were restored.
    pub best_epoch: usize,
    pub history: Vec<EpochStats>,
    /// Optimiser steps taken.
    pub steps: usize,
    pub weights: Weights,
}

/// Runs `work` on a fresh one-thread rayon pool, so Flex's kernels stay on it.
fn single_threaded<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().context("could not start a training thread")?;
    pool.install(work)
}

fn check_split(split: &Split, features: usize, num_classes: usize, what: &str) -> Result<()> {
    ensure!(!split.is_empty(), "{what} split is empty");
    ensure!(
        split.x.len() == split.len() * features,
        "{what} split has {} values for {} samples, expected {features} features each",
        split.x.len(),
        split.len()
    );
    if let Some(bad) = split.y.iter().find(|&&y| y as usize >= num_classes) {
        bail!("{what} split has label {bad}, but there are {num_classes} classes");
    }
    Ok(())
}

/// Trains `arch` from fresh weights and returns the best epoch's weights.
pub fn train(
    arch: &Arch,
    train: &Split,
    val: &Split,
    num_classes: usize,
    config: &TrainConfig,
) -> Result<TrainOutcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let weights = Weights::init(arch, &mut rng)?;
    train_from(arch, weights, train, val, num_classes, config)
}

/// Trains `arch` starting from `weights`.
pub fn train_from(
    arch: &Arch,
    mut weights: Weights,
    train: &Split,
    val: &Split,
    num_classes: usize,
    config: &TrainConfig,
) -> Result<TrainOutcome> {
    if let Some(masks) = &config.masks {
        masks.apply(&mut weights).context("the pruning masks do not fit the weights")?;
    }
    if let Some(spec) = &config.quant {
        for (name, fixed) in spec.named() {
            fixed.validate().with_context(|| format!("the QAT types: {name}"))?;
        }
    }
    let (net, table) = Net::build(arch, &weights)?;
    ensure!(
        net.output_features == num_classes,
        "the network outputs {} values but there are {num_classes} classes",
        net.output_features
    );
    check_split(train, net.input_features, num_classes, "training")?;
    check_split(val, net.input_features, num_classes, "validation")?;
    ensure!(config.epochs > 0, "epochs must be positive");
    ensure!(config.batch_size > 0, "batch size must be positive");
    ensure!(config.learning_rate > 0.0, "learning rate must be positive");
    single_threaded(|| Trainer::new(net, table, num_classes, config).run(train, val))
}

/// Loss and accuracy of `weights` on `split`, in inference mode.
pub fn evaluate(arch: &Arch, weights: &Weights, split: &Split) -> Result<(f64, f64)> {
    evaluate_with(arch, weights, split, None)
}

/// Loss and accuracy of `weights` on `split`, in inference mode, with the
/// quantized forward pass of QAT when `quant` is given (the same as
/// validation during training with that [`TrainConfig::quant`]).
pub fn evaluate_with(arch: &Arch, weights: &Weights, split: &Split, quant: Option<&QuantSpec>) -> Result<(f64, f64)> {
    let (net, table) = Net::build(arch, weights)?;
    check_split(split, net.input_features, net.output_features, "evaluation")?;
    single_threaded(|| Ok(evaluate_net(&net, &table, split, quant)))
}

/// The output of one layer in [`layer_outputs`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOutput {
    /// Position in [`Arch::layers`].
    pub index: usize,
    /// [`snac_core::arch::Layer::kind`].
    pub kind: String,
    /// `[samples, features]`, row-major.
    pub values: Vec<f32>,
}

/// Every layer's output for the samples in `x` (row-major, `input_features`
/// values each), in inference mode, quantized as in QAT when `quant` is
/// given. Flatten and a final softmax are left out, so the last entry holds
/// the logits. For checking a quantized model layer by layer.
pub fn layer_outputs(arch: &Arch, weights: &Weights, x: &[f32], quant: Option<&QuantSpec>) -> Result<Vec<LayerOutput>> {
    let (net, table) = build_for_samples(arch, weights, x)?;
    let features = net.input_features;
    let kinds: Vec<&'static str> = arch.layers().map(|l| l.kind()).collect();
    single_threaded(|| {
        let device = Device::flex();
        let params: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&device, quant))).collect();
        let input = Tensor::from_data(TensorData::new(x.to_vec(), [x.len() / features, features]), &device);
        let mut trace = Vec::new();
        net.forward(input, &params, false, &mut Vec::new(), quant, Some(&mut trace));
        Ok(trace
            .into_iter()
            .zip(&net.arch_indices)
            .map(|(output, &index)| LayerOutput {
                index,
                kind: kinds[index].to_string(),
                values: output.into_data().try_into_vec::<f32>().expect("f32 outputs"),
            })
            .collect())
    })
}

/// The network's outputs (logits) for the samples in `x`, computed in `f64`
/// in inference mode, with the quantized forward pass of QAT when `quant`
/// is given. In `f64` every sum of fixed-point products is exact, so with
/// `quant` this equals the integer model
/// ([`snac_core::quantized::QuantizedModel`]) bit for bit.
pub fn outputs_f64(arch: &Arch, weights: &Weights, x: &[f32], quant: Option<&QuantSpec>) -> Result<Vec<f64>> {
    let (net, table) = build_for_samples(arch, weights, x)?;
    let features = net.input_features;
    single_threaded(|| {
        let device = Device::flex();
        let to_f64 = |t: Tensor<2>| {
            let dims = t.dims();
            let values: Vec<f64> = t.into_data().convert::<f64>().try_into_vec::<f64>().expect("float data");
            Tensor::<2>::from_data(TensorData::new(values, dims), (&device, DType::F64))
        };
        let params: Vec<_> = table.params.iter().map(|p| Some(to_f64(p.tensor(&device, quant)))).collect();
        let input: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let input = Tensor::from_data(TensorData::new(input, [x.len() / features, features]), (&device, DType::F64));
        let out = net.forward(input, &params, false, &mut Vec::new(), quant, None);
        Ok(out.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 outputs"))
    })
}

/// The network of `arch` with `weights`, after checking that `x` holds
/// whole samples of its input.
fn build_for_samples(arch: &Arch, weights: &Weights, x: &[f32]) -> Result<(Net, ParamTable)> {
    let (net, table) = Net::build(arch, weights)?;
    let features = net.input_features;
    ensure!(
        !x.is_empty() && x.len().is_multiple_of(features),
        "{} input values are not a whole number of samples of {features} features",
        x.len()
    );
    Ok((net, table))
}

/// Inference over `split` in large batches; mean cross-entropy and accuracy.
fn evaluate_net(net: &Net, table: &ParamTable, split: &Split, quant: Option<&QuantSpec>) -> (f64, f64) {
    if let Some(mut engine) = Engine::new(net) {
        let params = engine::parameter_values(table, quant);
        let (features, classes) = (net.input_features, net.output_features);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        // Batches of at most 256 (1024 measured slower on the T1 MLP).
        let eval_batch = net.eval_batch.min(ENGINE_EVAL_BATCH);
        let mut probs = Vec::new();
        for start in (0..split.len()).step_by(eval_batch) {
            let end = (start + eval_batch).min(split.len());
            let x = split.x[start * features..end * features].to_vec();
            let logits = engine.infer(&params, x, end - start, quant);
            let (loss, hits) = loss_and_hits(&logits, classes, &split.y[start..end], &mut probs);
            loss_sum += loss;
            correct += hits;
        }
        return (loss_sum / split.len() as f64, correct as f64 / split.len() as f64);
    }
    let device = Device::flex();
    let params: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&device, quant))).collect();
    let features = net.input_features;
    let classes = net.output_features;
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let mut unused = Vec::new();
    let mut probs = Vec::new();
    for start in (0..split.len()).step_by(net.eval_batch) {
        let end = (start + net.eval_batch).min(split.len());
        let x = Tensor::from_data(
            TensorData::new(split.x[start * features..end * features].to_vec(), [end - start, features]),
            &device,
        );
        let logits = net.forward(x, &params, false, &mut unused, quant, None).into_data();
        let logits = logits.as_slice::<f32>().expect("f32 logits");
        let (loss, hits) = loss_and_hits(logits, classes, &split.y[start..end], &mut probs);
        loss_sum += loss;
        correct += hits;
    }
    (loss_sum / split.len() as f64, correct as f64 / split.len() as f64)
}

/// The index of the first maximum of `row`.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Summed cross-entropy of a batch of logits against `labels`, and how many
/// arg-maxes are right. `probs` is scratch for the softmax.
fn loss_and_hits(logits: &[f32], classes: usize, labels: &[u32], probs: &mut Vec<f32>) -> (f64, usize) {
    let loss = crate::fastmath::cross_entropy_rows(logits, classes, labels, probs);
    let hits = logits.chunks_exact(classes).zip(labels).filter(|(row, label)| argmax(row) == **label as usize).count();
    (loss, hits)
}

/// Adam as Keras (TF ≥ 2.11) applies it: ε is added to `sqrt(v)` before the
/// bias-corrected step size.
struct Adam {
    first_moments: Vec<Vec<f32>>,
    second_moments: Vec<Vec<f32>>,
    iterations: u64,
}

impl Adam {
    fn new(table: &ParamTable) -> Adam {
        let zeros: Vec<Vec<f32>> =
            table.params.iter().map(|p| if p.trainable { vec![0.0; p.values.len()] } else { Vec::new() }).collect();
        Adam { first_moments: zeros.clone(), second_moments: zeros, iterations: 0 }
    }

    /// `gradients[i]` is `None` for parameters that are not trained.
    /// `masks` are `(parameter index, pruned positions)`: the pruned values
    /// and their moments are set to zero after the update.
    fn step(
        &mut self,
        table: &mut ParamTable,
        gradients: &[Option<Vec<f32>>],
        learning_rate: f64,
        masks: &[(usize, Vec<usize>)],
    ) {
        self.iterations += 1;
        let t = self.iterations as f64;
        let alpha = (learning_rate * (1.0 - ADAM_BETA2.powf(t)).sqrt() / (1.0 - ADAM_BETA1.powf(t))) as f32;
        let (one_minus_beta1, one_minus_beta2) = ((1.0 - ADAM_BETA1) as f32, (1.0 - ADAM_BETA2) as f32);
        for (i, gradient) in gradients.iter().enumerate() {
            let Some(gradient) = gradient else { continue };
            let values = &mut table.params[i].values;
            let (m, v) = (&mut self.first_moments[i], &mut self.second_moments[i]);
            adam_update(values, gradient, m, v, [alpha, one_minus_beta1, one_minus_beta2]);
        }
        for (i, pruned) in masks {
            let (values, m, v) =
                (&mut table.params[*i].values, &mut self.first_moments[*i], &mut self.second_moments[*i]);
            for &j in pruned {
                values[j] = 0.0;
                m[j] = 0.0;
                v[j] = 0.0;
            }
        }
    }
}

/// One Adam update of `values` in place; AVX2 where the CPU has it (the same
/// operations, eight lanes at a time, no FMA contraction: same bits).
fn adam_update(values: &mut [f32], gradient: &[f32], m: &mut [f32], v: &mut [f32], constants: [f32; 3]) {
    #[inline(always)]
    fn update(values: &mut [f32], gradient: &[f32], m: &mut [f32], v: &mut [f32], [alpha, b1, b2]: [f32; 3]) {
        for (((x, &g), m), v) in values.iter_mut().zip(gradient).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m += (g - *m) * b1;
            *v += (g * g - *v) * b2;
            *x -= *m * alpha / (v.sqrt() + ADAM_EPSILON);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn update_avx2(values: &mut [f32], gradient: &[f32], m: &mut [f32], v: &mut [f32], constants: [f32; 3]) {
        update(values, gradient, m, v, constants)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { update_avx2(values, gradient, m, v, constants) };
        return;
    }
    update(values, gradient, m, v, constants)
}

/// Keras `EarlyStopping(monitor="val_loss", restore_best_weights=True)` and
/// `ReduceLROnPlateau(monitor="val_loss", min_delta=1e-4)` bookkeeping.
struct Callbacks {
    best_loss: f64,
    best_epoch: usize,
    early_stop_wait: usize,
    plateau_best: f64,
    plateau_wait: usize,
}

struct Trainer<'a> {
    net: Net,
    table: ParamTable,
    classes: usize,
    config: &'a TrainConfig,
    adam: Adam,
    /// The pruned positions by parameter index (kernels only).
    masks: Vec<(usize, Vec<usize>)>,
    device: Device,
    /// The hand-written pass, when it covers every layer (else burn's autodiff).
    engine: Option<Engine>,
}

impl<'a> Trainer<'a> {
    fn new(net: Net, table: ParamTable, classes: usize, config: &'a TrainConfig) -> Trainer<'a> {
        let adam = Adam::new(&table);
        let masks = match &config.masks {
            None => Vec::new(),
            // A layer's mask covers its kernels one after another, in the
            // table's order (which is `LayerWeights::kernel_positions`'s).
            Some(masks) => {
                let mut offsets = vec![0usize; masks.layers.len()];
                table
                    .params
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.role == ParamRole::Kernel)
                    .filter_map(|(i, p)| {
                        let keep = masks.layers[p.layer].as_ref()?;
                        let start = offsets[p.layer];
                        offsets[p.layer] += p.values.len();
                        let keep = &keep[start..start + p.values.len()];
                        Some((i, keep.iter().enumerate().filter(|(_, keep)| !**keep).map(|(j, _)| j).collect()))
                    })
                    .collect()
            }
        };
        let engine = Engine::new(&net);
        Trainer { net, table, classes, config, adam, masks, device: Device::flex().autodiff(), engine }
    }

    fn run(mut self, train: &Split, val: &Split) -> Result<TrainOutcome> {
        let config = self.config;
        // Shuffling draws from its own stream, independent of initialisation.
        let mut shuffle_rng = ChaCha8Rng::seed_from_u64(config.seed);
        shuffle_rng.set_stream(1);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut learning_rate = config.learning_rate;
        let mut history = Vec::new();
        let mut best = self.table.clone();
        let mut callbacks = Callbacks {
            best_loss: f64::INFINITY,
            best_epoch: 0,
            early_stop_wait: 0,
            plateau_best: f64::INFINITY,
            plateau_wait: 0,
        };
        for epoch in 1..=config.epochs {
            order.shuffle(&mut shuffle_rng);
            let (mut loss_sum, mut correct) = (0.0f64, 0usize);
            for batch in order.chunks(config.batch_size) {
                snac_core::interrupt::check()?;
                let (loss, hits) = self
                    .step(train, batch, learning_rate)
                    .map_err(|e| anyhow::anyhow!("{e} at epoch {epoch} (step {})", self.adam.iterations))?;
                loss_sum += loss * batch.len() as f64;
                correct += hits;
            }
            let (val_loss, val_accuracy) = evaluate_net(&self.net, &self.table, val, config.quant.as_ref());
            if !val_loss.is_finite() {
                bail!("validation loss became {} at epoch {epoch}", non_finite_name(val_loss));
            }
            history.push(EpochStats {
                epoch,
                train_loss: loss_sum / train.len() as f64,
                train_accuracy: correct as f64 / train.len() as f64,
                val_loss,
                val_accuracy,
                learning_rate,
            });
            if let (Some(hook), Some(stats)) = (&config.on_epoch, history.last()) {
                (hook.0)(stats)?;
            }

            // EarlyStopping (min_delta 0): strictly better is an improvement.
            if val_loss < callbacks.best_loss {
                callbacks.best_loss = val_loss;
                callbacks.best_epoch = epoch;
                callbacks.early_stop_wait = 0;
                best.clone_from(&self.table);
            } else {
                callbacks.early_stop_wait += 1;
            }
            let stop = callbacks.early_stop_wait >= config.early_stopping_patience.max(1) && epoch > 1;

            // ReduceLROnPlateau (cooldown 0).
            if val_loss < callbacks.plateau_best - LR_PLATEAU_MIN_DELTA {
                callbacks.plateau_best = val_loss;
                callbacks.plateau_wait = 0;
            } else {
                callbacks.plateau_wait += 1;
                if callbacks.plateau_wait >= config.lr_plateau_patience && learning_rate > config.min_lr {
                    learning_rate = (learning_rate * config.lr_factor).max(config.min_lr);
                    callbacks.plateau_wait = 0;
                }
            }
            if stop {
                break;
            }
        }
        let best_stats = history[callbacks.best_epoch - 1].clone();
        Ok(TrainOutcome {
            val_accuracy: best_stats.val_accuracy,
            val_loss: best_stats.val_loss,
            best_epoch: callbacks.best_epoch,
            history,
            steps: self.adam.iterations as usize,
            weights: best.to_weights(),
        })
    }

    /// One optimiser step on the samples `batch`; the batch loss and the
    /// number of correct predictions.
    fn step(&mut self, train: &Split, batch: &[usize], learning_rate: f64) -> Result<(f64, usize)> {
        let (features, classes, rows) = (self.net.input_features, self.classes, batch.len());
        let mut x = Vec::with_capacity(rows * features);
        let mut one_hot = vec![0.0f32; rows * classes];
        for (row, &sample) in batch.iter().enumerate() {
            x.extend_from_slice(&train.x[sample * features..(sample + 1) * features]);
            one_hot[row * classes + train.y[sample] as usize] = 1.0;
        }
        if let Some(engine) = &mut self.engine {
            let quant = self.config.quant.as_ref();
            let params = engine::parameter_values(&self.table, quant);
            let labels: Vec<u32> = batch.iter().map(|&sample| train.y[sample]).collect();
            let result = engine.step(&self.table, &params, x, &labels, quant);
            if !result.loss.is_finite() {
                bail!("loss became {}", non_finite_name(result.loss));
            }
            let hits = result
                .logits
                .chunks_exact(classes)
                .zip(&labels)
                .filter(|(row, label)| argmax(row) == **label as usize)
                .count();
            self.adam.step(&mut self.table, &result.gradients, learning_rate, &self.masks);
            self.update_moving_statistics(result.batch_stats);
            return Ok((result.loss, hits));
        }
        let device = &self.device;
        let x = Tensor::from_data(TensorData::new(x, [rows, features]), device);
        let one_hot = Tensor::from_data(TensorData::new(one_hot, [rows, classes]), device);
        let quant = self.config.quant.as_ref();
        let params: Vec<Option<Tensor<2>>> =
            self.table.params.iter().map(|p| p.trainable.then(|| p.tensor(device, quant).require_grad())).collect();

        let mut batch_stats = Vec::new();
        let logits = self.net.forward(x, &params, true, &mut batch_stats, quant, None);
        let loss = softmax_cross_entropy(logits.clone(), one_hot);
        let loss_value = loss.clone().inner().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            bail!("loss became {}", non_finite_name(loss_value));
        }
        let logits = logits.inner().into_data();
        let hits = logits
            .as_slice::<f32>()
            .expect("f32 logits")
            .chunks_exact(classes)
            .zip(batch)
            .filter(|(row, sample)| argmax(row) == train.y[**sample] as usize)
            .count();

        let mut grads = loss.backward();
        let gradients: Vec<Option<Vec<f32>>> = params
            .iter()
            .map(|p| {
                p.as_ref()
                    .and_then(|p| p.grad_remove(&mut grads))
                    .map(|g| g.into_data().try_into_vec::<f32>().expect("f32 gradient"))
            })
            .collect();
        self.adam.step(&mut self.table, &gradients, learning_rate, &self.masks);
        let host = |t: Tensor<2>| t.inner().into_data().try_into_vec::<f32>().expect("f32 statistics");
        let batch_stats = batch_stats.into_iter().map(|(m, v, mean, var)| (m, v, host(mean), host(var))).collect();
        self.update_moving_statistics(batch_stats);
        Ok((loss_value, hits))
    }

    /// Keras' moving averages of BatchNorm's batch mean and variance.
    fn update_moving_statistics(&mut self, batch_stats: Vec<(usize, usize, Vec<f32>, Vec<f32>)>) {
        let keep = BATCH_NORM_MOMENTUM;
        for (mean_index, variance_index, mean, variance) in batch_stats {
            for (index, stat) in [(mean_index, mean), (variance_index, variance)] {
                for (moving, &batch_value) in self.table.params[index].values.iter_mut().zip(&stat) {
                    *moving = *moving * keep + batch_value * (1.0 - keep);
                }
            }
        }
    }
}

fn non_finite_name(value: f64) -> &'static str {
    if value.is_nan() { "NaN" } else { "infinite" }
}
