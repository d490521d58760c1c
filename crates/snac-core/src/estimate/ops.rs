//! The hardware an hls4ml project instantiates, layer by layer: what the
//! analytical estimator prices. [`lower`] turns an [`Arch`] into [`Op`]s;
//! the calibration corpus builds them from its own layer lists
//! (`corpus.rs`), which also have pooling and strides. Keeping the estimator
//! on ops, not on the IR, is what lets it be validated on real synthesis
//! reports of models our search space cannot express.

use super::{HlsSettings, LayerInfo};
use crate::arch::{Activation, Aggregation, Arch, Layer, Shape};
use anyhow::{Result, ensure};

/// How a layer's accumulator type is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    /// Wide enough never to overflow: input + weight bits + ⌈log2 n_in⌉, as
    /// snac's export writes it (and hls4ml 1.x's `auto` infers).
    Exact,
    /// A fixed width: hls4ml's default `accum_t` is the model precision.
    Width(u32),
}

/// One Dense layer, convolution or pointwise layer: `n_out` sums of `n_in`
/// products by constant weights, computed for `positions` output positions
/// one after another (a Conv2d's pixels, a set's elements; 1 for a Dense on
/// a vector).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseOp {
    pub n_in: usize,
    pub n_out: usize,
    pub positions: usize,
    /// Nonzero weights, of `n_in · n_out`.
    pub nonzero: usize,
    pub weight_bits: u32,
    pub input_bits: u32,
    pub accum_bits: u32,
    pub result_bits: u32,
    /// For a convolution: (kernel height, input width, input channels), what
    /// the streaming line buffer holds.
    pub window: Option<(usize, usize, usize)>,
    /// This layer's own reuse factor, when it is not the model's.
    pub reuse: Option<usize>,
}

impl DenseOp {
    /// A layer of `n_in · n_out` weights (`nonzero` of them kept) at
    /// `weight_bits` on `input_bits` inputs, summed in `accum`'s width; no
    /// convolution window, the model's reuse factor.
    pub fn new(
        (n_in, n_out, positions): (usize, usize, usize),
        nonzero: usize,
        (weight_bits, input_bits, result_bits): (u32, u32, u32),
        accum: Accum,
    ) -> DenseOp {
        DenseOp {
            n_in,
            n_out,
            positions,
            nonzero,
            weight_bits,
            input_bits,
            accum_bits: accum.bits(input_bits, weight_bits, n_in),
            result_bits,
            window: None,
            reuse: None,
        }
    }
}

/// Activation functions by how hls4ml builds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    /// Nothing: a wire.
    Identity,
    /// A sign-bit multiplexer.
    Relu,
    /// A constant multiply and a multiplexer.
    LeakyRelu,
    /// A 1024-entry look-up table (tanh, sigmoid, ELU, GELU).
    Table,
}

impl ActKind {
    fn of(activation: Activation) -> ActKind {
        match activation {
            Activation::Identity => ActKind::Identity,
            Activation::Relu => ActKind::Relu,
            Activation::LeakyRelu => ActKind::LeakyRelu,
            Activation::Tanh | Activation::Sigmoid | Activation::Gelu => ActKind::Table,
            Activation::Softmax => unreachable!("softmax is its own op"),
        }
    }
}

/// One piece of an hls4ml design.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// The model's input, `features` values of `bits` bits: io_parallel
    /// registers it at the top level (a purely combinational hls4ml
    /// design reports exactly these FFs plus two of control).
    Input {
        features: usize,
        bits: u32,
    },
    Dense(DenseOp),
    /// Products of two variables (attention's scores and weighted sums):
    /// `sums` sums of `terms` products of `bits × bits`, per position.
    VarProducts {
        sums: usize,
        terms: usize,
        bits: u32,
        accum_bits: u32,
        positions: usize,
    },
    Act {
        kind: ActKind,
        features: usize,
        bits: u32,
        positions: usize,
    },
    /// An unfolded BatchNorm: one multiply and one add per feature.
    BatchNorm {
        features: usize,
        bits: u32,
        positions: usize,
    },
    /// LayerNorm: mean and variance trees, an inverse-square-root table, two
    /// multiplies per feature.
    LayerNorm {
        features: usize,
        bits: u32,
        positions: usize,
    },
    /// Softmax over `features`, `rows` times: exp tables, a sum, an inverse
    /// table, one multiply per feature.
    Softmax {
        features: usize,
        bits: u32,
        rows: usize,
    },
    /// Max or average pooling: `channels` reductions of `window` values, for
    /// `positions` output positions; `input_width`, the row a streaming
    /// pooling buffers.
    Pool {
        max: bool,
        window: usize,
        channels: usize,
        bits: u32,
        positions: usize,
        row: usize,
    },
    /// A residual addition of `features` values, `positions` times.
    Add {
        features: usize,
        bits: u32,
        positions: usize,
    },
}

impl Op {
    /// Output positions the op computes one after another.
    pub fn positions(&self) -> usize {
        match *self {
            Op::Dense(DenseOp { positions, .. })
            | Op::VarProducts { positions, .. }
            | Op::Act { positions, .. }
            | Op::BatchNorm { positions, .. }
            | Op::LayerNorm { positions, .. }
            | Op::Pool { positions, .. }
            | Op::Add { positions, .. } => positions,
            Op::Softmax { rows, .. } => rows,
            Op::Input { .. } => 1,
        }
    }
}

/// ⌈log2 n⌉ for n ≥ 1 (0 for n ≤ 1).
pub fn ceil_log2(n: usize) -> u32 {
    if n <= 1 { 0 } else { usize::BITS - (n - 1).leading_zeros() }
}

impl Accum {
    /// The accumulator width of a sum of `n_in` products of `input_bits ×
    /// weight_bits`.
    pub fn bits(self, input_bits: u32, weight_bits: u32, n_in: usize) -> u32 {
        match self {
            Accum::Exact => input_bits + weight_bits + ceil_log2(n_in),
            Accum::Width(width) => width,
        }
    }
}

/// The ops of `arch` as snac's export hands it to hls4ml: the model
/// precision everywhere, exact accumulators, BatchNorm after a Dense or
/// Conv2d folded into it. `layer_info`, when given, has one entry per layer
/// with weights (Dense, Conv2d, ConvAttention), in order.
pub fn lower(arch: &Arch, settings: &HlsSettings, layer_info: Option<&[LayerInfo]>) -> Result<Vec<Op>> {
    let shapes = arch.shapes()?;
    let weighted = shapes.iter().filter(|(layer, _, _)| has_weights(layer)).count();
    if let Some(info) = layer_info {
        ensure!(
            info.len() == weighted,
            "layer info has {} entries but the architecture has {weighted} layers with weights (Dense, Conv2d, \
             ConvAttention; one entry each)",
            info.len()
        );
    }
    let bits = settings.precision.width;
    let input_bits = layer_info.and_then(|info| info.first()).map_or(bits, |info| info.activation_bits);
    let mut ops = vec![Op::Input { features: arch.input_shape.numel(), bits: input_bits }];
    let mut weighted_index = 0;
    let mut previous: Option<&Layer> = None;
    for (position, (layer, input, output)) in shapes.iter().enumerate() {
        // The next layer with weights: its widths and nonzero weights, of `all`.
        let mut weights = |all: usize| {
            let info = layer_info.map(|info| info[weighted_index]);
            weighted_index += 1;
            layer_weights(position, layer, info, bits, all)
        };
        let (rows, features) = output.rows_and_features();
        match layer {
            Layer::Dense { units } => {
                let (rows, n_in) = input.rows_and_features();
                let (weight_bits, input_bits, nonzero) = weights(n_in * units)?;
                let widths = (weight_bits, input_bits, bits);
                ops.push(Op::Dense(DenseOp::new((n_in, *units, rows), nonzero, widths, Accum::Exact)));
            }
            Layer::Conv2d { filters, kernel, .. } => {
                let Shape::Image { width, channels, .. } = *input else { unreachable!("checked by shapes()") };
                let n_in = kernel * kernel * channels;
                let (weight_bits, input_bits, nonzero) = weights(n_in * filters)?;
                let widths = (weight_bits, input_bits, bits);
                let window = Some((*kernel, width, channels));
                let conv = DenseOp::new((n_in, *filters, rows), nonzero, widths, Accum::Exact);
                ops.push(Op::Dense(DenseOp { window, ..conv }));
            }
            Layer::ConvAttention { hidden, .. } => {
                let (seq, channels) = input.rows_and_features();
                let counts = weights(4 * channels * hidden)?;
                attention_ops((seq, channels, *hidden), counts, bits, &mut ops);
            }
            // hls4ml folds a BatchNorm that follows a Dense or Conv2d into
            // its weights and bias (`FuseBatchNormalization`): it costs nothing.
            Layer::BatchNorm if matches!(previous, Some(Layer::Dense { .. } | Layer::Conv2d { .. })) => {}
            Layer::BatchNorm => ops.push(Op::BatchNorm { features, bits, positions: rows }),
            Layer::LayerNorm => ops.push(Op::LayerNorm { features, bits, positions: rows }),
            Layer::Act(Activation::Softmax) => ops.push(Op::Softmax { features, bits, rows }),
            Layer::Act(
                kind @ (Activation::Relu
                | Activation::LeakyRelu
                | Activation::Gelu
                | Activation::Tanh
                | Activation::Sigmoid
                | Activation::Identity),
            ) => ops.push(Op::Act { kind: ActKind::of(*kind), features, bits, positions: rows }),
            Layer::Flatten => {}
            Layer::Aggregate(aggregation) => {
                let (elements, features) = input.rows_and_features();
                ops.push(Op::Pool {
                    max: *aggregation == Aggregation::Max,
                    window: elements,
                    channels: features,
                    bits,
                    positions: 1,
                    row: 1,
                });
            }
        }
        previous = Some(layer);
    }
    Ok(ops)
}

/// The weight and activation widths and the nonzero weights (of `all`) of
/// layer `position`: its `info` when given, else the model's `bits` and
/// every weight.
fn layer_weights(
    position: usize,
    layer: &Layer,
    info: Option<LayerInfo>,
    bits: u32,
    all: usize,
) -> Result<(u32, u32, usize)> {
    let (weight_bits, input_bits) = info.map_or((bits, bits), |info| (info.weight_bits, info.activation_bits));
    ensure!(
        weight_bits >= 1 && input_bits >= 1,
        "layer {position} ({}): weight and activation widths must be at least 1 bit, got {weight_bits} and \
         {input_bits}",
        layer.kind()
    );
    let nonzero = info.and_then(|info| info.nonzero_weights).unwrap_or(all);
    ensure!(
        nonzero <= all,
        "layer {position} ({}): {nonzero} nonzero weights is more than its {all} weights",
        layer.kind()
    );
    Ok((weight_bits, input_bits, nonzero))
}

/// A ConvAttention over `seq` positions: three 1×1 projections, the
/// scores, their softmax, the weighted sum, the output projection and the
/// residual addition.
fn attention_ops(
    (seq, channels, hidden): (usize, usize, usize),
    (weight_bits, input_bits, nonzero): (u32, u32, usize),
    bits: u32,
    ops: &mut Vec<Op>,
) {
    // The four 1×1 projections share the nonzero count evenly.
    let projection = |n_in: usize, n_out: usize| {
        let kept = nonzero.div_ceil(4).min(n_in * n_out);
        Op::Dense(DenseOp::new((n_in, n_out, seq), kept, (weight_bits, input_bits, bits), Accum::Exact))
    };
    for _ in 0..3 {
        ops.push(projection(channels, hidden));
    }
    // Scores: seq sums of `hidden` products per query position.
    let score_accum = Accum::Exact.bits(bits, bits, hidden);
    ops.push(Op::VarProducts { sums: seq, terms: hidden, bits, accum_bits: score_accum, positions: seq });
    ops.push(Op::Softmax { features: seq, bits, rows: seq });
    let value_accum = Accum::Exact.bits(bits, bits, seq);
    ops.push(Op::VarProducts { sums: hidden, terms: seq, bits, accum_bits: value_accum, positions: seq });
    ops.push(projection(hidden, channels));
    ops.push(Op::Add { features: channels, bits, positions: seq });
}

/// Whether `layer` has weights, and so an entry in the layer info.
fn has_weights(layer: &Layer) -> bool {
    match layer {
        Layer::Dense { .. } | Layer::Conv2d { .. } | Layer::ConvAttention { .. } => true,
        Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_) => false,
    }
}
