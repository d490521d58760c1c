//! Per-layer precision (`local_search.precision: per_layer`): after the
//! uniform precision pairs, a search for one width per tensor that keeps
//! an accuracy (within `local_search.accuracy_tolerance`): the best one of
//! the pair `local_search.reference_bits` names, or by default that of the
//! most accurate pair's QAT model, where the search starts, at the lowest estimated cost
//! (`local_search.precision_objective`: the mean resource fraction by default). The widths found
//! then go through the same QAT and pruning as a pair.
//!
//! What is searched: the input's width, the kernel width of every Dense,
//! Conv2d and attention layer (its bias takes the same width) and the width
//! of every tensor a layer puts on a grid (an activation's, a BatchNorm's,
//! a set pooling's, the logits'). Integer bits are
//! not searched: they come from the observed ranges ([`ranges`]), the
//! largest magnitude of each tensor over the training set (float forward
//! pass of the QAT weights), so nothing overflows there; beyond it values
//! saturate, as `AP_SAT` does in hls4ml. Only the fractional bits shrink.
//!
//! How (chosen by measurement, see the closing note of issue 22 and
//! `docs/per-layer-precision.md`): greedy width reduction by sensitivity,
//! then QAT at the widths found, in rounds.
//! 1. Start from the QAT weights and widths of the `reference_bits` pair,
//!    or without it of the most accurate pair.
//! 2. [`descend`]: lower every width together while the post-training
//!    quantized accuracy stays above the floor; then, one bit at a time,
//!    lower the tensor that saves the most cost per accuracy lost, while the
//!    accuracy stays above the floor. Each step evaluates every tensor once
//!    (the quantized forward pass on the validation split, a model build
//!    and an estimate: milliseconds for an MLP).
//! 3. QAT at the widths found (`qat_epochs`). Accepted when its accuracy
//!    reaches the target and its cost is lower; then another round from
//!    the tuned weights. When QAT cannot reach the target, the widths one
//!    bit wider everywhere are tried, and so on (3 QAT runs a round at
//!    most, 3 rounds).
//!
//! The post-training floor is the target minus the tolerance again: QAT
//! recovers about that much, so the descent may go a little past what
//! post-training quantization alone keeps. Every candidate is a row of
//! `precision_search_log.csv`.

use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use serde::Serialize;
use snac_core::arch::Arch;
use snac_core::config::{LocalSearchConfig, PrecisionObjective};
use snac_core::data::Split;
use snac_core::estimate::{Estimate, HlsSettings, LayerInfo};
use snac_core::fixed::{FixedPoint, Overflow, Rounding};
use snac_core::quantized::{LayerTypes, QLayer, QuantTypes, QuantizedModel};
use snac_train::{QuantSpec, TrainConfig, Weights, evaluate_with, layer_outputs, quantized_model, train_from};
use std::collections::BTreeMap;
use std::path::Path;

/// Where the candidates go, in `local_search_combined/`.
pub const SEARCH_LOG_FILE: &str = "precision_search_log.csv";

/// Rounds of descent and QAT at most.
const MAX_ROUNDS: usize = 3;

/// QAT runs per round at most: the widths found, then one bit wider, and so on.
const QAT_TRIES: usize = 3;

/// Training samples per forward pass when measuring ranges.
const RANGE_CHUNK: usize = 512;

/// What a tensor's width applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The model's input (`index` unused).
    Input,
    /// A layer's kernels (and its bias, at the same width).
    Weights,
    /// The grid a layer puts its output on.
    Result,
}

/// One tensor whose width the search chooses.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Position in [`Arch::layers`].
    pub index: usize,
    pub role: Role,
    /// Integer bits (sign included) from the observed range.
    pub integer: u32,
    /// The bias's integer bits (weights only).
    pub bias_integer: u32,
}

impl Unit {
    /// `in` (the input), `3w` (layer 3's weights) or `4a` (layer 4's output).
    pub fn name(&self) -> String {
        match self.role {
            Role::Input => "in".to_string(),
            Role::Weights => format!("{}w", self.index),
            Role::Result => format!("{}a", self.index),
        }
    }

    /// The narrowest width allowed: `min_bits`, and never below the integer bits.
    fn min_width(&self, min_bits: u32) -> u32 {
        min_bits.max(self.integer)
    }
}

/// Integer bits (sign included) so that `largest` does not overflow.
fn integer_bits(largest: f64) -> u32 {
    if largest > 0.0 { (largest.log2().floor() as i32 + 2).max(1) as u32 } else { 1 }
}

/// The types of `base` with each unit at its width (`widths[i]` for `units[i]`).
pub fn spec_of(base: &QuantTypes, units: &[Unit], widths: &[u32]) -> Result<QuantTypes> {
    let mut spec = QuantTypes { layers: Vec::new(), ..base.clone() };
    for (unit, &width) in units.iter().zip(widths) {
        let fixed = |integer: u32| {
            FixedPoint::new(width.max(integer), integer, true, Rounding::HalfEven, Overflow::Saturate)
                .with_context(|| format!("tensor {}: {width} bits with {integer} integer bits", unit.name()))
        };
        let mut layer = spec.layer(unit.index).copied().unwrap_or_else(|| LayerTypes::new(unit.index));
        match unit.role {
            Role::Input => {
                spec.input = fixed(unit.integer)?;
                continue;
            }
            Role::Weights => {
                layer.weights = Some(fixed(unit.integer)?);
                layer.biases = Some(fixed(unit.bias_integer)?);
            }
            Role::Result => layer.result = Some(fixed(unit.integer)?),
        }
        spec = spec.with_layer(layer);
    }
    Ok(spec)
}

/// The tensors of `model` whose widths are searched, with integer bits from
/// `largest` (per arch layer: largest |output| on the training set; the
/// input's under [`INPUT`]) and the weights themselves.
pub fn units(model: &QuantizedModel, weights: &Weights, largest: &BTreeMap<usize, f64>) -> Vec<Unit> {
    let largest_of = |index: usize, bias: bool| {
        let layer = weights.layers.get(index);
        let values = layer.into_iter().flat_map(|l| &l.tensors).filter(|t| {
            let is_bias = t.name.ends_with("bias");
            let is_kernel = t.name.ends_with("kernel");
            if bias { is_bias } else { is_kernel }
        });
        values.flat_map(|t| &t.values).fold(0.0f64, |m, v| m.max(v.abs() as f64))
    };
    let input = integer_bits(largest.get(&INPUT).copied().unwrap_or(0.0));
    let mut units = vec![Unit { index: 0, role: Role::Input, integer: input, bias_integer: 0 }];
    for layer in &model.layers {
        let index = layer.arch_index();
        let weighted = matches!(layer, QLayer::Dense { .. } | QLayer::Conv2d { .. } | QLayer::ConvAttention { .. });
        if weighted {
            let (integer, bias_integer) =
                (integer_bits(largest_of(index, false)), integer_bits(largest_of(index, true)));
            units.push(Unit { index, role: Role::Weights, integer, bias_integer });
        }
        let has_result = matches!(
            layer,
            QLayer::ConvAttention { .. }
                | QLayer::Aggregate { .. }
                | QLayer::BatchNorm { .. }
                | QLayer::Activation { .. }
        );
        if has_result {
            let integer = integer_bits(largest.get(&index).copied().unwrap_or(0.0));
            units.push(Unit { index, role: Role::Result, integer, bias_integer: 0 });
        }
    }
    units
}

/// Where [`ranges`] puts the input's largest magnitude.
pub const INPUT: usize = usize::MAX;

/// The largest |output| of every layer over `split` (float forward pass,
/// inference mode), by arch index, and the input's under [`INPUT`].
pub fn ranges(arch: &Arch, weights: &Weights, split: &Split) -> Result<BTreeMap<usize, f64>> {
    let features = arch.input_shape.numel();
    let mut largest = BTreeMap::new();
    largest.insert(INPUT, split.x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)));
    for chunk in split.x.chunks(RANGE_CHUNK * features) {
        for output in layer_outputs(arch, weights, chunk, None)? {
            let m = output.values.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
            let entry = largest.entry(output.index).or_insert(0.0f64);
            *entry = entry.max(m);
        }
    }
    Ok(largest)
}

/// What [`descend`] asks of a candidate (the tensor lowered, `None`: all of
/// them): its accuracy and cost, `None` when the candidate is not possible
/// (e.g. its model cannot be built).
pub type Evaluate<'a> = dyn FnMut(&[u32], Option<usize>) -> Result<Option<(f64, f64)>> + 'a;

/// Greedy width reduction (see the module docs): from `widths` with
/// `current` (accuracy, cost), while the accuracy stays ≥ `floor`. Lowers
/// all widths together first; then one tensor at a time, each time the one
/// with the largest cost saved per accuracy lost (a loss below 0.1 point
/// counts as 0.1 point, so among harmless steps the largest saving wins).
/// A step that would break the floor or raise the cost (a narrower product
/// can leave DSPs for more LUTs) is not taken, and that tensor stays.
///
/// Lazy greedy: each tensor keeps the score it had when last evaluated;
/// the best one is re-evaluated and taken if it still beats every other
/// tensor's last score. Scores mostly fall as the others narrow, so this
/// picks about what the full greedy would, with a few evaluations per step
/// instead of one per tensor.
/// Returns the final widths and their (accuracy, cost).
pub fn descend(
    mut widths: Vec<u32>,
    min: &[u32],
    floor: f64,
    mut current: (f64, f64),
    eval: &mut Evaluate<'_>,
) -> Result<(Vec<u32>, (f64, f64))> {
    loop {
        if !widths.iter().zip(min).any(|(w, m)| w > m) {
            break;
        }
        let lower: Vec<u32> = widths.iter().zip(min).map(|(&w, &m)| if w > m { w - 1 } else { w }).collect();
        match eval(&lower, None)? {
            Some(result) if result.0 >= floor => (widths, current) = (lower, result),
            _ => break,
        }
    }
    // Each tensor's last score (`None`: it stays at its width).
    let mut scores: Vec<Option<f64>> = vec![Some(f64::INFINITY); widths.len()];
    loop {
        let mut order: Vec<usize> = (0..widths.len()).filter(|&u| scores[u].is_some() && widths[u] > min[u]).collect();
        if order.is_empty() {
            break;
        }
        let last = |u: usize| scores[u].unwrap_or(f64::NEG_INFINITY);
        order.sort_by(|&a, &b| last(b).total_cmp(&last(a)).then(a.cmp(&b)));
        let unit = order[0];
        let mut candidate = widths.clone();
        candidate[unit] -= 1;
        match eval(&candidate, Some(unit))? {
            Some((accuracy, cost)) if accuracy >= floor && cost <= current.1 => {
                let score = (current.1 - cost) / (current.0 - accuracy).max(0.001);
                let runner_up = order.get(1).map_or(f64::NEG_INFINITY, |&u| last(u));
                scores[unit] = Some(score);
                if score >= runner_up {
                    widths = candidate;
                    current = (accuracy, cost);
                }
            }
            _ => scores[unit] = None,
        }
    }
    Ok((widths, current))
}

/// One candidate of the search, a row of `precision_search_log.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateRow {
    pub round: usize,
    /// `ptq` (post-training quantization of the round's weights) or `qat`.
    pub phase: &'static str,
    /// The tensor lowered by a bit (`3w`, `4a`), `all`, or `start`.
    pub changed: String,
    /// Each layer's widths, `index:w<kernel bits>/a<output bits>`.
    pub widths: String,
    pub accuracy: f64,
    /// Per-layer bit operations with the real widths and nonzero weights.
    pub bops_effective: f64,
    pub lut: Option<f64>,
    pub ff: Option<f64>,
    pub dsp: Option<f64>,
    pub bram: Option<f64>,
    pub avg_resource: Option<f64>,
    pub clock_cycles: Option<f64>,
    /// The objective the search minimises.
    pub cost: f64,
}

/// The FPGA estimate of a quantized model with its real per-layer widths
/// and nonzero weights; the activation layers take its widest result type.
pub fn estimate_model(setup: &SearchSetup, model: &QuantizedModel) -> Option<Estimate> {
    let hardware = &setup.hardware;
    let widest = model
        .layers
        .iter()
        .filter_map(|l| match l {
            QLayer::Activation { result, .. }
            | QLayer::BatchNorm { result, .. }
            | QLayer::Aggregate { result, .. }
            | QLayer::ConvAttention { result, .. } => Some(*result),
            QLayer::Dense { .. } | QLayer::Conv2d { .. } => None,
        })
        .max_by_key(|f| f.width)
        .unwrap_or(model.types.activations);
    let settings = HlsSettings { precision: widest, ..hardware.settings };
    let layers = LayerInfo::of_model(model);
    hardware.estimator.estimate(&model.arch, &settings, Some(&layers), &hardware.board).ok()
}

/// The mean product of weight and input widths over a model's
/// multiplications (each layer weighted by its multiplications): what a
/// uniform width would need to cost the same bit operations, squared.
pub fn mean_width_product(model: &QuantizedModel) -> f64 {
    let ones = snac_core::cost::effective_bops(&model.arch, &[], 1.0, 1.0).unwrap_or(f64::NAN);
    bops_at_widths(model, false) / ones
}

/// Bit operations of a quantized model with its real widths and nonzero weights.
pub fn model_bops(model: &QuantizedModel) -> f64 {
    bops_at_widths(model, true)
}

/// Bit operations at the model's real widths, of its nonzero weights
/// (`nonzero`) or of all of them.
fn bops_at_widths(model: &QuantizedModel, nonzero: bool) -> f64 {
    let kernels = model.kernel_layers();
    let mut counts = vec![None; model.arch.layers().count()];
    if nonzero {
        for k in &kernels {
            counts[k.index] = Some(k.nonzero);
        }
    }
    let widths = |index: usize| {
        kernels.iter().find(|k| k.index == index).map_or((0.0, 0.0), |k| (k.weight_bits as f64, k.input_bits as f64))
    };
    snac_core::cost::effective_bops_per_layer(&model.arch, &counts, &widths).unwrap_or(f64::NAN)
}

/// The search's result: the types found, the QAT weights at them, and every candidate.
pub struct Found {
    pub spec: QuantSpec,
    pub weights: Weights,
    pub accuracy: f64,
    pub candidates: Vec<CandidateRow>,
}

/// Everything one search reads.
pub struct Search<'a> {
    pub setup: &'a SearchSetup,
    pub local: &'a LocalSearchConfig,
    pub arch: &'a Arch,
    pub base: &'a TrainConfig,
    /// (train, validation).
    pub split: (&'a Split, &'a Split),
    /// Where the search starts: a pair's types and QAT weights.
    pub start_spec: &'a QuantSpec,
    pub start_weights: &'a Weights,
    /// The accuracy to keep (`local_search.reference_bits`' pair's best);
    /// `None`: the start's own.
    pub reference: Option<f64>,
}

impl Search<'_> {
    /// The accuracy and cost of `spec` on `weights`, and its log row.
    fn measure(&self, spec: &QuantSpec, weights: &Weights) -> Result<Option<(f64, CandidateRow)>> {
        let Ok(model) = quantized_model(self.arch, weights, None, spec) else { return Ok(None) };
        // The QAT forward pass in inference mode: the integer model's
        // accuracy (bit for bit up to f32 rounding), several times faster.
        let (_, accuracy) = evaluate_with(self.arch, weights, self.split.1, Some(spec))?;
        let estimate = estimate_model(self.setup, &model);
        let bops = model_bops(&model);
        let cost = match (self.local.precision_objective, estimate) {
            (PrecisionObjective::Lut, Some(e)) => e.lut,
            (PrecisionObjective::AvgResource, Some(e)) => e.avg_resource,
            (PrecisionObjective::Bops, _) | (_, None) => bops,
        };
        let row = CandidateRow {
            round: 0,
            phase: "ptq",
            changed: String::new(),
            widths: spec.widths_summary(),
            accuracy,
            bops_effective: bops,
            lut: estimate.map(|e| e.lut),
            ff: estimate.map(|e| e.ff),
            dsp: estimate.map(|e| e.dsp),
            bram: estimate.map(|e| e.bram),
            avg_resource: estimate.map(|e| e.avg_resource),
            clock_cycles: estimate.map(|e| e.cycles),
            cost,
        };
        Ok(Some((accuracy, row)))
    }

    /// QAT at `spec` from `weights`.
    fn tune(&self, spec: &QuantSpec, weights: &Weights) -> Result<(Weights, f64)> {
        let config =
            TrainConfig { epochs: self.local.qat_epochs.max(1), quant: Some(spec.clone()), ..self.base.clone() };
        let (train, val) = self.split;
        let outcome = train_from(self.arch, weights.clone(), train, val, self.setup.dataset.num_classes, &config)
            .context("per-layer precision: QAT at the widths found")?;
        Ok((outcome.weights, outcome.val_accuracy))
    }

    /// Runs the search (see the module docs).
    pub fn run(&self) -> Result<Found> {
        let (train, _) = self.split;
        let largest = ranges(self.arch, self.start_weights, train)?;
        let start_model = quantized_model(self.arch, self.start_weights, None, self.start_spec)?;
        let units = units(&start_model, self.start_weights, &largest);
        let width = self.start_spec.weights.width.max(self.start_spec.activations.width);
        let min: Vec<u32> = units.iter().map(|u| u.min_width(self.local.min_bits).min(width)).collect();
        let mut candidates = Vec::new();
        let mut widths = vec![width; units.len()];
        let mut spec = spec_of(self.start_spec, &units, &widths)?;
        let mut weights = self.start_weights.clone();
        let Some((mut accuracy, row)) = self.measure(&spec, &weights)? else {
            anyhow::bail!("per-layer precision: the start model ({}) cannot be built", spec.widths_summary());
        };
        // The accuracy to keep is the reference pair's, or the start's (the
        // pair's QAT weights at their widths, the same training as every
        // later candidate).
        let target = self.reference.unwrap_or(accuracy) - self.local.accuracy_tolerance;
        let floor = target - self.local.accuracy_tolerance;
        log::info!("per-layer precision: start accuracy {accuracy:.4}, target {target:.4}, {} tensors", units.len());
        candidates.push(CandidateRow { changed: "start".into(), ..row });
        let mut cost = candidates[0].cost;
        for round in 1..=MAX_ROUNDS {
            let mut eval = |w: &[u32], changed: Option<usize>| -> Result<Option<(f64, f64)>> {
                let candidate = spec_of(self.start_spec, &units, w)?;
                Ok(self.measure(&candidate, &weights)?.map(|(accuracy, row)| {
                    let cost = row.cost;
                    let changed = changed.map_or("all".to_string(), |u| units[u].name());
                    candidates.push(CandidateRow { round, changed, ..row });
                    (accuracy, cost)
                }))
            };
            let (lowered, _) = descend(widths.clone(), &min, floor, (accuracy, cost), &mut eval)?;
            if lowered == widths {
                break;
            }
            let mut accepted = false;
            // The widths found; when QAT cannot keep the target there, one
            // bit wider everywhere, and so on. (Halfway back to wide
            // accepted widths would jump over the point where products
            // move from LUTs to DSPs, and the estimate with it.)
            let mut attempt = lowered;
            for _ in 0..QAT_TRIES {
                if attempt == widths {
                    break;
                }
                let attempt_spec = spec_of(self.start_spec, &units, &attempt)?;
                let (tuned, tuned_accuracy) = self.tune(&attempt_spec, &weights)?;
                let measured = self.measure(&attempt_spec, &tuned)?;
                if let Some((measured, row)) = measured {
                    candidates.push(CandidateRow { round, phase: "qat", changed: "qat".into(), ..row.clone() });
                    log::info!(
                        "per-layer precision round {round}: {} → QAT accuracy {tuned_accuracy:.4} (target {target:.4})",
                        attempt_spec.widths_summary()
                    );
                    if measured >= target && row.cost < cost {
                        (widths, spec, weights, accuracy, cost) = (attempt, attempt_spec, tuned, measured, row.cost);
                        accepted = true;
                        break;
                    }
                }
                // One bit wider everywhere, at most the accepted widths.
                attempt = widths.iter().zip(&attempt).map(|(&accepted, &a)| (a + 1).min(accepted)).collect();
            }
            if !accepted {
                break;
            }
        }
        Ok(Found { spec, weights, accuracy, candidates })
    }
}

/// Writes the candidates to `dir/precision_search_log.csv`.
pub fn write_log(dir: &Path, rows: &[CandidateRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    snac_core::write_atomic(&dir.join(SEARCH_LOG_FILE), &writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cost of Σ widths and an accuracy that falls as the widths shrink,
    /// more steeply for tensor 0: descent must lower the others first and
    /// stop at the floor.
    #[test]
    fn descent_lowers_the_cheap_tensors_and_keeps_the_floor() {
        let accuracy =
            |w: &[u32]| 1.0 - 0.05 * (8 - w[0]) as f64 - 0.001 * w[1..].iter().map(|&x| 8 - x).sum::<u32>() as f64;
        let cost = |w: &[u32]| w.iter().sum::<u32>() as f64;
        let mut seen = Vec::new();
        let mut eval = |w: &[u32], changed: Option<usize>| -> Result<Option<(f64, f64)>> {
            seen.push(changed);
            Ok(Some((accuracy(w), cost(w))))
        };
        let start = vec![8, 8, 8];
        let floor = 0.9905;
        let (widths, (acc, c)) =
            descend(start.clone(), &[2, 2, 2], floor, (accuracy(&start), cost(&start)), &mut eval).unwrap();
        assert!(acc >= floor, "accuracy {acc} fell below the floor");
        assert_eq!(c, cost(&widths));
        // Tensor 0 costs 5 points a bit: it cannot move without breaking the floor.
        assert_eq!(widths[0], 8);
        // The cheap tensors go down until the floor stops them: 9 bits of 0.1 point each.
        assert_eq!(widths[1] + widths[2], 16 - 9, "widths {widths:?}");
        assert!(seen.contains(&None), "the all-together step was tried first");
        // Lazy greedy: far fewer evaluations than one per tensor per step.
        assert!(seen.len() < 3 * 9, "{} evaluations", seen.len());
    }

    #[test]
    fn descent_respects_the_minimum_widths_and_impossible_candidates() {
        // Tensor 1 cannot be built below 6 bits: None.
        let mut eval = |w: &[u32], _: Option<usize>| -> Result<Option<(f64, f64)>> {
            Ok((w[1] >= 6).then(|| (1.0, w.iter().sum::<u32>() as f64)))
        };
        let (widths, _) = descend(vec![8, 8], &[3, 2], 0.5, (1.0, 16.0), &mut eval).unwrap();
        assert_eq!(widths, vec![3, 6]);
    }

    #[test]
    fn spec_of_sets_each_layer_and_keeps_integer_bits() {
        let base = QuantTypes::from_qkeras(8, 3).unwrap();
        let units = vec![
            Unit { index: 0, role: Role::Weights, integer: 1, bias_integer: 3 },
            Unit { index: 2, role: Role::Result, integer: 4, bias_integer: 0 },
            Unit { index: 3, role: Role::Weights, integer: 2, bias_integer: 1 },
            Unit { index: 3, role: Role::Result, integer: 5, bias_integer: 0 },
        ];
        let spec = spec_of(&base, &units, &[5, 6, 4, 3]).unwrap();
        assert_eq!(spec.weights_at(0).width, 5);
        assert_eq!(spec.weights_at(0).integer, 1);
        assert_eq!((spec.biases_at(0).width, spec.biases_at(0).integer), (5, 3));
        assert_eq!((spec.result_at(2).width, spec.result_at(2).integer), (6, 4));
        assert_eq!(spec.result_at(1), base.activations, "a layer without an entry keeps the model-wide type");
        // 3 bits cannot hold 5 integer bits: the width grows to them.
        assert_eq!((spec.result_at(3).width, spec.result_at(3).integer), (5, 5));
        assert_eq!(spec.weights_at(3).width, 4);
        assert_eq!(spec.widths_summary(), "in8 0:w5 2:a6 3:w4/a5");
        let with_input = [Unit { index: 0, role: Role::Input, integer: 2, bias_integer: 0 }];
        let spec = spec_of(&base, &with_input, &[5]).unwrap();
        assert_eq!((spec.input.width, spec.input.integer), (5, 2));
        assert!(spec.layers.is_empty());
        assert_eq!(spec.result_at(3).overflow, Overflow::Saturate);
    }

    #[test]
    fn integer_bits_cover_the_range_with_the_sign() {
        assert_eq!(integer_bits(0.0), 1);
        assert_eq!(integer_bits(0.4), 1);
        assert_eq!(integer_bits(1.0), 2);
        assert_eq!(integer_bits(3.9), 3);
        assert_eq!(integer_bits(4.0), 4);
    }
}
