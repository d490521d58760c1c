//! Building a [`QuantizedModel`] from a trained [`Arch`] and its weights:
//! a short dispatch over the arch's layers calls one function per layer
//! kind, which turns the float parameters into codes and picks each
//! tensor's fixed-point type.

use super::{
    ActivationTable, BATCH_NORM_EPSILON, Codes, FORMAT, MAX_EXACT_BITS, MaskLookup, ParamLookup, Projection, QLayer,
    QuantTypes, QuantizedModel, softmax,
};
use crate::arch::{Activation, Aggregation, Arch, ConvGeometry, Layer, Shape};
use crate::fixed::{FixedPoint, Overflow, Rounding};
use anyhow::{Context, Result, bail, ensure};

/// A fixed-point type just wide enough for `values` at `width` bits:
/// integer bits (with sign) to hold the largest magnitude, the rest
/// fractional; QKeras rounding (half to even, saturating).
pub fn fitted_type(values: &[f64], width: u32) -> Result<FixedPoint> {
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // Integer bits so that |v| < 2^(integer − 1); at least 1 (the sign).
    let integer = if largest > 0.0 { (largest.log2().floor() as i32 + 2).max(1) as u32 } else { 1 };
    FixedPoint::new(width, integer, true, Rounding::HalfEven, Overflow::Saturate)
}

/// BatchNorm in inference mode as `x·scale + shift`:
/// `scale = γ/√(σ² + ε)`, `shift = β − μ·scale`, each on a type fitted to its
/// values with `max(16, width)` bits. The trainer's quantized evaluation uses
/// the same function, so both see the same constants.
pub fn fold_batch_norm(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    width: u32,
) -> Result<(Codes, Codes)> {
    let n = gamma.len();
    ensure!(
        beta.len() == n && mean.len() == n && variance.len() == n,
        "BatchNorm parameters have different lengths ({n}, {}, {}, {})",
        beta.len(),
        mean.len(),
        variance.len()
    );
    let scale: Vec<f64> =
        gamma.iter().zip(variance).map(|(&g, &v)| g as f64 / (v as f64 + BATCH_NORM_EPSILON).sqrt()).collect();
    let scale_type = fitted_type(&scale, width.max(16))?;
    let scale = Codes::quantize(scale_type, scale);
    // The shift uses the quantized scale, so that x·scale + shift is centred.
    let shift: Vec<f64> =
        beta.iter().zip(mean).zip(scale.values()).map(|((&b, &m), s)| b as f64 - m as f64 * s).collect();
    let shift_type = fitted_type(&shift, width.max(16))?;
    Ok((scale, Codes::quantize(shift_type, shift)))
}

/// Leaky ReLU's slope as a fixed-point constant (16 fractional bits).
pub fn leaky_slope() -> Codes {
    let fixed = FixedPoint::new(18, 2, true, Rounding::HalfEven, Overflow::Saturate).expect("valid type");
    Codes::quantize(fixed, [Activation::LEAKY_SLOPE as f64])
}

/// GELU's constant [`Activation::GELU_SCALE`] (1.702) on 18 bits
/// (`ap_fixed<18,2>`, 16 fractional bits): GELU is `x·σ(x·scale)` with
/// hls4ml's sigmoid table.
pub fn gelu_scale() -> Codes {
    let fixed = FixedPoint::new(18, 2, true, Rounding::HalfEven, Overflow::Saturate).expect("valid type");
    Codes::quantize(fixed, [Activation::GELU_SCALE])
}

/// The constant `1/elements` by which a set mean multiplies its sum: 18 bits
/// fitted to the value (17 fractional bits from two elements on; exact for a
/// power of two). The export computes the mean as hls4ml's depthwise
/// convolution with this constant as every weight, so our integer mean is
/// `Σx · factor` too (not a division; hls4ml's own GlobalAveragePool cannot
/// be reached from ONNX for set data, see snac-export's `qonnx.rs`).
pub fn mean_factor(elements: usize) -> Codes {
    let value = 1.0 / elements.max(1) as f64;
    Codes::quantize(fitted_type(&[value], 18).expect("18 bits is a valid width"), [value])
}

/// The exact accumulator of a set mean, `Σx · factor` over `elements`
/// values of type `input` (as [`accumulator_type`] for a Dense whose weights
/// are all [`mean_factor`]).
pub fn mean_accumulator(input: FixedPoint, elements: usize) -> Result<FixedPoint> {
    let factor = mean_factor(elements);
    let kernel = Codes::quantize(factor.fixed, vec![factor.values()[0]; elements]);
    let bias = Codes::quantize(factor.fixed, [0.0]);
    accumulator_type(input, &kernel, &bias, elements)
}

/// The accumulator of a Dense layer: fractional bits of `input × kernel`
/// (and at least the bias'), integer bits for the largest possible
/// `Σ|w|·max|x| + |b|` over the outputs. Never overflows.
pub fn accumulator_type(input: FixedPoint, kernel: &Codes, bias: &Codes, inputs: usize) -> Result<FixedPoint> {
    let frac = (input.fractional_bits() + kernel.fixed.fractional_bits()).max(bias.fixed.fractional_bits());
    let largest_input = input.min_code().unsigned_abs().max(input.max_code().unsigned_abs()) as u128;
    let outputs = bias.codes.len();
    let mut bound: u128 = 0;
    for j in 0..outputs {
        let weights: u128 = (0..inputs).map(|i| kernel.codes[i * outputs + j].unsigned_abs() as u128).sum();
        let weighted = (weights * largest_input) << (frac - input.fractional_bits() - kernel.fixed.fractional_bits());
        let b = (bias.codes[j].unsigned_abs() as u128) << (frac - bias.fixed.fractional_bits());
        bound = bound.max(weighted + b);
    }
    // Codes in [−bound, bound] need ceil(log2(bound + 1)) bits plus the sign.
    let width = (128 - bound.leading_zeros()) + 1;
    let integer = width as i32 - frac;
    ensure!(
        width <= 62,
        "a Dense accumulator would need {width} bits (more than the 62 supported); use fewer integer bits"
    );
    // Sums smaller than 1/2 (a kernel column that quantized to zeros) need
    // no integer bits: the type keeps all `frac` fractional bits (integer
    // bits cannot go below 0 here), so the products are never shifted right.
    let width = if integer < 0 { u32::try_from(frac).unwrap_or(0).max(width) } else { width };
    let integer = u32::try_from(integer.max(0)).unwrap_or(0);
    // A width below the integer bits would mean negative fractional bits:
    // keep the type well formed by widening.
    let width = width.max(integer).max(1);
    FixedPoint::new(width, integer, true, Rounding::Truncate, Overflow::Wrap)
}

impl QLayer {
    /// An identity activation: puts layer `index`'s output on `result`'s grid.
    fn on_grid(index: usize, result: FixedPoint) -> QLayer {
        QLayer::Activation { index, function: Activation::Identity, result, slope: None, table: None }
    }
}

impl QuantizedModel {
    /// Quantizes a trained `arch`: parameters from `params`, masks from
    /// `masks`, types from `types`. Fails, naming the layer, for layers with
    /// no fixed-point form here (LayerNorm) or a softmax that is not last.
    pub fn build(arch: &Arch, params: &ParamLookup, masks: &MaskLookup, types: QuantTypes) -> Result<QuantizedModel> {
        let shapes = arch.shapes()?;
        let input_features = arch.input_shape.numel();
        let last = shapes.len().saturating_sub(1);
        let mut layers = Vec::new();
        // The type of the tensor flowing between layers.
        let mut current = types.input;
        for (index, (layer, input, output)) in shapes.iter().enumerate() {
            let step = Step { index, input: *input, output: *output, current, types: &types, params, masks };
            let out = &mut layers;
            current = match layer {
                Layer::Dense { units } => {
                    // Logits: a last Dense (or one before the final softmax) is quantized.
                    let softmax_next = index + 1 == last && matches!(shapes[last].0, Layer::Act(Activation::Softmax));
                    step.dense(*units, index == last || softmax_next, out)?
                }
                Layer::Conv2d { .. } => step.conv2d(layer, out)?,
                Layer::ConvAttention { hidden, scale } => step.conv_attention(*hidden, *scale, out)?,
                Layer::Aggregate(mode) => step.aggregate(*mode, out)?,
                Layer::Flatten => step.flatten(out),
                Layer::BatchNorm => step.batch_norm(out)?,
                Layer::Act(function) => step.activation(*function, index == last, out)?,
                Layer::LayerNorm => bail!(
                    "layer {index} (LayerNorm) has no fixed-point implementation; quantized models support Dense, \
                     Conv2d, ConvAttention, BatchNorm, Flatten, Aggregate and pointwise activations"
                ),
            };
        }
        let output_features = arch.output_shape()?.numel();
        let model = QuantizedModel {
            format: FORMAT.to_string(),
            arch: arch.clone(),
            types,
            input_features,
            output_features,
            layers,
        };
        // What is written must read back: the same checks as a model file.
        model.validate().context("the quantized model fails the checks of a model file")?;
        Ok(model)
    }
}

/// One arch layer being quantized: where it sits, what flows into it, and
/// where its parameters come from. Each layer kind's function pushes the
/// model layers it becomes and returns the type of its output.
struct Step<'a> {
    index: usize,
    input: Shape,
    output: Shape,
    /// The type of the tensor flowing in.
    current: FixedPoint,
    types: &'a QuantTypes,
    params: &'a ParamLookup<'a>,
    masks: &'a MaskLookup<'a>,
}

impl Step<'_> {
    /// The parameter `name` of this layer.
    fn get(&self, name: &str) -> Result<Vec<f32>> {
        let index = self.index;
        (self.params)(index, name).with_context(|| format!("layer {index} has no parameter '{name}'"))
    }

    /// The type this layer puts its output on.
    fn result(&self) -> FixedPoint {
        self.types.result_at(self.index)
    }

    /// This layer's pruning mask; empty when it is not pruned.
    fn mask(&self) -> Vec<bool> {
        (self.masks)(self.index).unwrap_or_default()
    }

    /// The codes of a kernel `[inputs, outputs]` (masked entries 0) and its
    /// bias, and the accumulator for an input of type `input`.
    fn quantize_kernel(
        &self,
        kind: &str,
        (kernel, bias): (&[f32], &[f32]),
        mask: &[bool],
        (inputs, outputs): (usize, usize),
        input: FixedPoint,
    ) -> Result<(Codes, Codes, FixedPoint)> {
        let (index, types) = (self.index, self.types);
        ensure!(
            kernel.len() == inputs * outputs && bias.len() == outputs,
            "layer {index} ({kind} {inputs}→{outputs}): kernel has {} values and bias {}",
            kernel.len(),
            bias.len()
        );
        ensure!(
            mask.is_empty() || mask.len() == kernel.len(),
            "layer {index}: mask has {} entries for {} weights",
            mask.len(),
            kernel.len()
        );
        let mut kernel = Codes::quantize(types.weights_at(index), kernel.iter().map(|&v| v as f64));
        for (code, keep) in kernel.codes.iter_mut().zip(mask) {
            if !keep {
                *code = 0;
            }
        }
        let bias = Codes::quantize(types.biases_at(index), bias.iter().map(|&v| v as f64));
        let accumulator = accumulator_type(input, &kernel, &bias, inputs)?;
        ensure!(
            accumulator.width <= MAX_EXACT_BITS,
            "layer {index} ({kind}): the accumulator needs {} bits; at most {MAX_EXACT_BITS} are supported \
             (use narrower types)",
            accumulator.width
        );
        Ok((kernel, bias, accumulator))
    }

    /// Dense: the exact accumulator; `logits` (the last Dense, or the one
    /// before a final softmax) also puts its output on the activation grid.
    fn dense(&self, units: usize, logits: bool, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let index = self.index;
        let (rows, inputs) = self.input.rows_and_features();
        let mask = self.mask();
        let (kernel, bias, accumulator) = self.quantize_kernel(
            "Dense",
            (&self.get("kernel")?, &self.get("bias")?),
            &mask,
            (inputs, units),
            self.current,
        )?;
        layers.push(QLayer::Dense { index, rows, inputs, outputs: units, kernel, bias, mask, accumulator });
        if logits {
            layers.push(QLayer::on_grid(index, self.result()));
            return Ok(self.result());
        }
        Ok(accumulator)
    }

    /// Conv2d: like a Dense over `k·k·C` patches, the exact accumulator.
    fn conv2d(&self, layer: &Layer, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let (index, input) = (self.index, self.input);
        let g = ConvGeometry::of(layer, input)
            .with_context(|| format!("layer {index} (Conv2d) needs an image input, got {input}"))?;
        let mask = self.mask();
        let (kernel, bias, accumulator) = self.quantize_kernel(
            "Conv2d",
            (&self.get("kernel")?, &self.get("bias")?),
            &mask,
            (g.kernel * g.kernel * g.channels, g.filters),
            self.current,
        )?;
        layers.push(QLayer::Conv2d {
            index,
            height: g.height,
            width: g.width,
            channels: g.channels,
            kernel_size: g.kernel,
            filters: g.filters,
            out_height: g.out_height,
            out_width: g.out_width,
            padding: g.padding,
            kernel,
            bias,
            mask,
            accumulator,
        });
        Ok(accumulator)
    }

    /// ConvAttention: four projections, scores that must stay exact in
    /// `f64`, the result on the activation grid.
    fn conv_attention(&self, hidden: usize, scale: bool, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let index = self.index;
        let (positions, channels) = self.input.rows_and_features();
        let act = self.result();
        // The layer's mask covers the four projection kernels
        // one after another (query, key, value, output).
        let mask = self.mask();
        let size = channels * hidden;
        ensure!(
            mask.is_empty() || mask.len() == 4 * size,
            "layer {index} (ConvAttention): mask has {} entries for 4 × {size} weights",
            mask.len()
        );
        let projection = |slot: usize, name: &str, from: FixedPoint, inputs: usize, outputs: usize| {
            let part = if mask.is_empty() { &[][..] } else { &mask[slot * size..(slot + 1) * size] };
            let (kernel, bias, accumulator) = self.quantize_kernel(
                "ConvAttention",
                (&self.get(&format!("{name}_kernel"))?, &self.get(&format!("{name}_bias"))?),
                part,
                (inputs, outputs),
                from,
            )?;
            Ok::<_, anyhow::Error>(Projection { kernel, bias, accumulator })
        };
        let query = projection(0, "query", self.current, channels, hidden)?;
        let key = projection(1, "key", self.current, channels, hidden)?;
        let value = projection(2, "value", self.current, channels, hidden)?;
        let output = projection(3, "output", act, hidden, channels)?;
        // Scores are sums of `hidden` products of two activation codes.
        let largest = act.min_code().unsigned_abs().max(act.max_code().unsigned_abs()) as u128;
        let bound = largest * largest * hidden as u128 * positions as u128;
        ensure!(
            bound < 1u128 << MAX_EXACT_BITS,
            "layer {index} (ConvAttention): its scores need {} bits; at most {MAX_EXACT_BITS} are \
             supported (use narrower types)",
            128 - bound.leading_zeros()
        );
        let scale = scale.then(|| softmax::attention_scale(hidden));
        layers.push(QLayer::ConvAttention {
            index,
            positions,
            channels,
            hidden,
            query,
            key,
            value,
            output,
            scale,
            result: act,
        });
        Ok(act)
    }

    /// Aggregate: the mean (`Σx · 1/N`, see [`mean_factor`]) or maximum
    /// over a set, on the activation grid.
    fn aggregate(&self, mode: Aggregation, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let (index, input) = (self.index, self.input);
        let Shape::Set { elements, features } = input else {
            bail!("layer {index} (Aggregate) needs a set input, got {input}")
        };
        if mode == Aggregation::Mean {
            let accumulator = mean_accumulator(self.current, elements)?;
            ensure!(
                accumulator.width <= MAX_EXACT_BITS,
                "layer {index} (Aggregate mean): its sum times 1/{elements} needs {} bits; at most \
                 {MAX_EXACT_BITS} are supported (use narrower types)",
                accumulator.width
            );
        }
        layers.push(QLayer::Aggregate { index, elements, features, mode, result: self.result() });
        Ok(self.result())
    }

    /// Flatten: flattening an image or set puts it on the activation grid
    /// (as the trainer does); a vector passes unchanged.
    fn flatten(&self, layers: &mut Vec<QLayer>) -> FixedPoint {
        if self.input.rows_and_features().0 > 1 {
            layers.push(QLayer::on_grid(self.index, self.result()));
            return self.result();
        }
        self.current
    }

    /// BatchNorm: folded into `x·scale + shift`, on the activation grid.
    fn batch_norm(&self, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let (index, output, current) = (self.index, self.output, self.current);
        let (scale, shift) = fold_batch_norm(
            &self.get("gamma")?,
            &self.get("beta")?,
            &self.get("moving_mean")?,
            &self.get("moving_variance")?,
            self.types.weights_at(index).width,
        )?;
        ensure!(
            scale.codes.len() == output.rows_and_features().1,
            "layer {index} (BatchNorm): {} features, but the layer sees {}",
            scale.codes.len(),
            output.rows_and_features().1
        );
        let product = current.width + scale.fixed.width;
        ensure!(
            product < MAX_EXACT_BITS,
            "layer {index} (BatchNorm): its input ({current}) times its scale ({}) needs {product} bits; \
             at most {} are supported (use narrower types)",
            scale.fixed,
            MAX_EXACT_BITS - 1
        );
        layers.push(QLayer::BatchNorm { index, scale, shift, result: self.result() });
        Ok(self.result())
    }

    /// A pointwise activation on the activation grid (Leaky ReLU with its
    /// slope, tanh and sigmoid with their tables, GELU as `x·σ(x·1.702)` with
    /// the constant as its slope and the sigmoid table); a final softmax is
    /// left out, any other softmax has no fixed-point form.
    fn activation(&self, function: Activation, last: bool, layers: &mut Vec<QLayer>) -> Result<FixedPoint> {
        let (index, current) = (self.index, self.current);
        match function {
            Activation::Softmax if last => return Ok(self.current),
            Activation::Softmax => bail!("layer {index}: softmax may only be the last layer"),
            Activation::Gelu => {
                let scale = gelu_scale();
                let table = ActivationTable::hls4ml(Activation::Sigmoid).expect("sigmoid has a table");
                // x·scale and x·σ are exact products of the input's codes.
                let product = current.width + scale.fixed.width.max(table.table.fixed.width);
                ensure!(
                    product <= MAX_EXACT_BITS,
                    "layer {index} (GELU): its input ({current}) times its constants needs {product} bits; \
                     at most {MAX_EXACT_BITS} are supported (use narrower types)"
                );
                layers.push(QLayer::Activation {
                    index,
                    function,
                    result: self.result(),
                    slope: Some(scale),
                    table: Some(table),
                });
                return Ok(self.result());
            }
            Activation::Relu
            | Activation::LeakyRelu
            | Activation::Tanh
            | Activation::Sigmoid
            | Activation::Identity => {}
        }
        let slope = (function == Activation::LeakyRelu).then(leaky_slope);
        let table = ActivationTable::hls4ml(function);
        layers.push(QLayer::Activation { index, function, result: self.result(), slope, table });
        Ok(self.result())
    }
}
