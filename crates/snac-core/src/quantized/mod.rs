//! A quantized model fully defined in fixed point, and its integer inference.
//!
//! [`QuantizedModel`] is what local search hands on: the architecture, one
//! fixed-point type per tensor, and every parameter as an integer code. Its
//! semantics follow hls4ml's `io_parallel` layers (its `io_stream` layers
//! compute the same), so that a later export can be checked bit for bit
//! against hls4ml's C simulation in either:
//!
//! - the input is quantized to the input type (QKeras rounding: half to even,
//!   saturating);
//! - Dense: `acc = Σ x·w + b` in an accumulator wide enough that it can never
//!   overflow (chosen from the actual weights and the input range, see
//!   [`accumulator_type`]); the Dense result is the exact accumulator;
//! - BatchNorm (inference mode) is folded into a per-feature `x·scale + shift`
//!   with fixed-point `scale` and `shift` ([`fold_batch_norm`]), its output
//!   quantized to the activation type;
//! - activations quantize their output to the activation type; `tanh` and
//!   `sigmoid` are hls4ml's 1024-entry lookup tables ([`ActivationTable`]);
//!   Leaky ReLU multiplies by its slope as a fixed-point constant; GELU is
//!   `x·σ(x·1.702)`: the exact product with the constant ([`gelu_scale`]),
//!   the sigmoid table, the exact product with `x`, then quantized;
//! - a set mean is the exact sum times the constant `1/N` on 18 bits
//!   ([`mean_factor`]), then quantized (hls4ml computes it so in the export);
//! - a final softmax is left out (hls4ml users read the arg-max; the output
//!   is the quantized logits).
//!
//! [`QuantizedModel::forward_int`] runs this with integer arithmetic only
//! (`i64` codes and shifts). [`QuantizedModel::forward_float`] is the same
//! model as a fake-quantized `f64` forward pass (float arithmetic, then
//! rounding onto each grid); both must agree bit for bit, which holds while
//! every accumulator fits in 53 bits ([`QuantizedModel::build`] checks it).
//!
//! Where things are: the model types live here; [`build`](QuantizedModel::build)
//! (quantizing a trained arch, one function per layer kind) in `build.rs`;
//! integer and float inference in `forward.rs`; the `tanh` / `sigmoid`
//! tables in `tables.rs`; the attention softmax in `softmax.rs`; reading a
//! model file in `io.rs` and checking it in `validate.rs`; what the hls4ml
//! hand-off can export in `exportable.rs`.

mod build;
pub mod exportable;
mod forward;
mod io;
pub mod softmax;
mod tables;
mod validate;

#[cfg(test)]
mod tests;

pub use build::{
    accumulator_type, fitted_type, fold_batch_norm, gelu_scale, leaky_slope, mean_accumulator, mean_factor,
};
pub use forward::requantize;
pub use tables::ActivationTable;
pub use validate::MAX_VALUES;

use crate::arch::{Activation, Aggregation, Arch, ConvGeometry};
use crate::fixed::FixedPoint;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Format tag written into every model file.
pub const FORMAT: &str = "snac-quantized-model/1";

/// Entries of hls4ml's `tanh` and `sigmoid` tables (`table_size`).
pub const TABLE_SIZE: usize = 1024;

/// BatchNorm epsilon (Keras' default, as the trainer uses).
pub const BATCH_NORM_EPSILON: f64 = 1e-3;

/// Largest accumulator for which the `f64` forward pass is exact.
const MAX_EXACT_BITS: u32 = 53;

/// The fixed-point types a model is quantized with: one type per role for
/// the whole model (SNAC-Pack's precision pairs use one QKeras type for all
/// of them), and per-layer exceptions ([`LayerTypes`], per-layer precision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantTypes {
    pub input: FixedPoint,
    pub weights: FixedPoint,
    pub biases: FixedPoint,
    pub activations: FixedPoint,
    /// Layers whose types differ from the ones above, by arch index (at most
    /// one entry per layer); empty for a uniform model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerTypes>,
}

/// The types of one arch layer where they differ from the model-wide
/// [`QuantTypes`]: a Dense, Conv2d or attention layer's kernels and biases,
/// and the type a layer puts its output on (an activation's, a BatchNorm's,
/// the logits', an attention's or a set pooling's result). `None` keeps the
/// model-wide type. A BatchNorm's folded constants take `max(16, weights)`
/// bits of its `weights` width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerTypes {
    /// Position in [`Arch::layers`].
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<FixedPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biases: Option<FixedPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<FixedPoint>,
}

impl LayerTypes {
    /// No exception yet for layer `index`.
    pub fn new(index: usize) -> LayerTypes {
        LayerTypes { index, weights: None, biases: None, result: None }
    }
}

impl QuantTypes {
    /// QKeras `quantized_bits(total_bits, int_bits)` everywhere.
    pub fn from_qkeras(total_bits: u32, int_bits: u32) -> Result<QuantTypes> {
        let fixed = FixedPoint::from_qkeras(total_bits, int_bits)?;
        Ok(QuantTypes::uniform(fixed))
    }

    /// `fixed` for every role and layer.
    pub fn uniform(fixed: FixedPoint) -> QuantTypes {
        QuantTypes { input: fixed, weights: fixed, biases: fixed, activations: fixed, layers: Vec::new() }
    }

    /// Layer `index`'s exceptions, if it has any.
    pub fn layer(&self, index: usize) -> Option<&LayerTypes> {
        self.layers.iter().find(|l| l.index == index)
    }

    /// The kernel type of layer `index`.
    pub fn weights_at(&self, index: usize) -> FixedPoint {
        self.layer(index).and_then(|l| l.weights).unwrap_or(self.weights)
    }

    /// The bias type of layer `index`.
    pub fn biases_at(&self, index: usize) -> FixedPoint {
        self.layer(index).and_then(|l| l.biases).unwrap_or(self.biases)
    }

    /// The type layer `index` puts its output on.
    pub fn result_at(&self, index: usize) -> FixedPoint {
        self.layer(index).and_then(|l| l.result).unwrap_or(self.activations)
    }

    /// These types with layer `index`'s exceptions replaced by `types`.
    pub fn with_layer(mut self, types: LayerTypes) -> QuantTypes {
        self.layers.retain(|l| l.index != types.index);
        self.layers.push(types);
        self.layers.sort_by_key(|l| l.index);
        self
    }

    /// `in8 0:w6 1:a5 …`: the input's width and each per-layer entry's
    /// kernel (`w`) and output (`a`) widths, by arch index.
    pub fn widths_summary(&self) -> String {
        let input = format!("in{}", self.input.width);
        std::iter::once(input)
            .chain(self.layers.iter().map(|l| {
                let mut parts = Vec::new();
                if let Some(w) = l.weights {
                    parts.push(format!("w{}", w.width));
                }
                if let Some(r) = l.result {
                    parts.push(format!("a{}", r.width));
                }
                format!("{}:{}", l.index, parts.join("/"))
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The types in one line: the model-wide ones, and the per-layer
    /// widths when there are any.
    pub fn describe(&self) -> String {
        let uniform = format!(
            "input {}, weights {}, biases {}, activations {}",
            self.input, self.weights, self.biases, self.activations
        );
        if self.layers.is_empty() {
            uniform
        } else {
            format!("{uniform}; per layer (kernel w / output a bits): {}", self.widths_summary())
        }
    }

    /// Every distinct type these use, with its key path (for checks).
    pub fn named(&self) -> Vec<(String, FixedPoint)> {
        let mut named = vec![
            ("types.input".to_string(), self.input),
            ("types.weights".to_string(), self.weights),
            ("types.biases".to_string(), self.biases),
            ("types.activations".to_string(), self.activations),
        ];
        for (i, layer) in self.layers.iter().enumerate() {
            for (role, fixed) in [("weights", layer.weights), ("biases", layer.biases), ("result", layer.result)] {
                if let Some(fixed) = fixed {
                    named.push((format!("types.layers[{i}].{role}"), fixed));
                }
            }
        }
        named
    }
}

/// A tensor of fixed-point codes: value = code · 2^−fractional_bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Codes {
    #[serde(rename = "type")]
    pub fixed: FixedPoint,
    /// The codes. Integer inference keeps a narrow copy of a kernel's codes
    /// after its first use: change them before running the model, not after.
    pub codes: Vec<i64>,
    #[serde(skip)]
    narrow: NarrowKernel,
}

/// A kernel's codes as `i32` with the largest `Σ_i |w_i|` over its outputs,
/// built on first use by integer inference (`None`: they do not fit).
#[derive(Clone, Debug, Default)]
struct NarrowKernel(std::sync::OnceLock<Option<(Vec<i32>, u128)>>);

impl PartialEq for NarrowKernel {
    /// A cache of the codes: equal codes are equal tensors.
    fn eq(&self, _: &NarrowKernel) -> bool {
        true
    }
}

impl Codes {
    fn quantize(fixed: FixedPoint, values: impl IntoIterator<Item = f64>) -> Codes {
        Codes { fixed, codes: fixed.to_codes(values), narrow: NarrowKernel::default() }
    }

    /// The codes as an `i32` kernel of `outputs` columns, and the largest sum
    /// of absolute codes in a column; `None` when a code needs more bits.
    fn narrow_kernel(&self, outputs: usize) -> Option<&(Vec<i32>, u128)> {
        self.narrow
            .0
            .get_or_init(|| {
                let narrow: Vec<i32> = self.codes.iter().map(|&c| i32::try_from(c).ok()).collect::<Option<_>>()?;
                let mut column_sums = vec![0u128; outputs];
                for row in self.codes.chunks_exact(outputs.max(1)) {
                    for (s, w) in column_sums.iter_mut().zip(row) {
                        *s += w.unsigned_abs() as u128;
                    }
                }
                Some((narrow, column_sums.into_iter().max().unwrap_or(0)))
            })
            .as_ref()
    }

    /// The real values.
    pub fn values(&self) -> Vec<f64> {
        self.codes.iter().map(|&c| self.fixed.from_code(c)).collect()
    }
}

/// One layer of a quantized model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// A model holds a few dozen layers at most: boxing the attention's
// projections would only complicate matching.
#[allow(clippy::large_enum_variant)]
pub enum QLayer {
    /// `acc[j] = Σ_i x[i]·kernel[i, j] + bias[j]`, kernel row-major `[inputs, outputs]`,
    /// applied to each of `rows` rows (the elements of a set; 1 for a vector).
    Dense {
        /// Position in [`Arch::layers`].
        index: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        rows: usize,
        inputs: usize,
        outputs: usize,
        kernel: Codes,
        bias: Codes,
        /// Pruning mask (`false` = pruned, its code is 0); empty when unpruned.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mask: Vec<bool>,
        /// The accumulator, which is also the result type: exact, never overflows.
        accumulator: FixedPoint,
    },
    /// 2-D convolution, stride 1, channels last; kernel `[k, k, C, F]`
    /// row-major; zero padding `(before, after)` for rows and columns.
    Conv2d {
        index: usize,
        height: usize,
        width: usize,
        channels: usize,
        kernel_size: usize,
        filters: usize,
        out_height: usize,
        out_width: usize,
        padding: [(usize, usize); 2],
        kernel: Codes,
        bias: Codes,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mask: Vec<bool>,
        /// The exact accumulator, also the result type.
        accumulator: FixedPoint,
    },
    /// Convolutional self-attention over `positions` (see
    /// [`softmax`] for the softmax): q, k, v, the attended values and the
    /// output projection are quantized to `result`; then the input is added
    /// and the sum quantized to `result`.
    ConvAttention {
        index: usize,
        positions: usize,
        channels: usize,
        hidden: usize,
        query: Projection,
        key: Projection,
        value: Projection,
        output: Projection,
        /// The `1/√hidden` code ([`softmax::SCALE_FRAC`] fractional bits), if scaled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<i64>,
        result: FixedPoint,
    },
    /// Mean or maximum of each feature over the `elements` of a set, onto
    /// `result`; the mean is the sum times the fixed-point constant
    /// [`mean_factor`] (hls4ml's arithmetic in the export), rounded half to even.
    Aggregate { index: usize, elements: usize, features: usize, mode: Aggregation, result: FixedPoint },
    /// Inference-mode BatchNorm: `x·scale + shift` per feature, then quantized.
    BatchNorm { index: usize, scale: Codes, shift: Codes, result: FixedPoint },
    /// A pointwise activation, its output quantized to `result`.
    Activation {
        index: usize,
        function: Activation,
        result: FixedPoint,
        /// Leaky ReLU's slope, or GELU's scale 1.702, as a fixed-point constant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slope: Option<Codes>,
        /// `tanh` / `sigmoid` lookup table (GELU: the sigmoid's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table: Option<ActivationTable>,
    },
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// A 1×1 projection of a [`QLayer::ConvAttention`]: kernel `[in, out]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub kernel: Codes,
    pub bias: Codes,
    pub accumulator: FixedPoint,
}

impl QLayer {
    /// The position in [`Arch::layers`] this layer comes from.
    pub fn arch_index(&self) -> usize {
        match self {
            QLayer::Dense { index, .. }
            | QLayer::Conv2d { index, .. }
            | QLayer::ConvAttention { index, .. }
            | QLayer::Aggregate { index, .. }
            | QLayer::BatchNorm { index, .. }
            | QLayer::Activation { index, .. } => *index,
        }
    }

    /// A short name for messages, e.g. `Dense (layer 0)`.
    pub fn describe(&self) -> String {
        match self {
            QLayer::Dense { index, .. } => format!("Dense (layer {index})"),
            QLayer::Conv2d { index, .. } => format!("Conv2d (layer {index})"),
            QLayer::ConvAttention { index, .. } => format!("ConvAttention (layer {index})"),
            QLayer::Aggregate { index, mode, .. } => format!("Aggregate {} (layer {index})", mode.name()),
            QLayer::BatchNorm { index, .. } => format!("BatchNorm (layer {index})"),
            QLayer::Activation { index, function, .. } => format!("{function:?} (layer {index})"),
        }
    }

    /// The geometry a Conv2d layer stores; `None` for the other kinds.
    fn conv_geometry(&self) -> Option<ConvGeometry> {
        match self {
            QLayer::Conv2d {
                height, width, channels, kernel_size, filters, out_height, out_width, padding, ..
            } => Some(ConvGeometry {
                height: *height,
                width: *width,
                channels: *channels,
                kernel: *kernel_size,
                filters: *filters,
                out_height: *out_height,
                out_width: *out_width,
                padding: *padding,
            }),
            QLayer::Dense { .. }
            | QLayer::ConvAttention { .. }
            | QLayer::Aggregate { .. }
            | QLayer::BatchNorm { .. }
            | QLayer::Activation { .. } => None,
        }
    }
}

/// A model fully defined in fixed point (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedModel {
    pub format: String,
    pub arch: Arch,
    pub types: QuantTypes,
    pub input_features: usize,
    pub output_features: usize,
    pub layers: Vec<QLayer>,
}

/// A layer with kernels, as [`QuantizedModel::kernel_layers`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayer {
    /// Position in [`Arch::layers`].
    pub index: usize,
    /// The kernel's width (an attention's query kernel's).
    pub weight_bits: u32,
    /// The width of the tensor flowing in.
    pub input_bits: u32,
    /// Nonzero kernel codes (an attention's four kernels together).
    pub nonzero: usize,
}

impl QuantizedModel {
    /// The Dense, Conv2d and ConvAttention layers in order, with their real
    /// widths: what the estimator and the bit-operation count need.
    pub fn kernel_layers(&self) -> Vec<KernelLayer> {
        let nonzero = |codes: &[i64]| codes.iter().filter(|c| **c != 0).count();
        let mut current = self.types.input;
        let mut kernels = Vec::new();
        for layer in &self.layers {
            let input_bits = current.width;
            current = match layer {
                QLayer::Dense { index, kernel, accumulator, .. }
                | QLayer::Conv2d { index, kernel, accumulator, .. } => {
                    let weight_bits = kernel.fixed.width;
                    kernels.push(KernelLayer {
                        index: *index,
                        weight_bits,
                        input_bits,
                        nonzero: nonzero(&kernel.codes),
                    });
                    *accumulator
                }
                QLayer::ConvAttention { index, query, key, value, output, result, .. } => {
                    let nonzero = [query, key, value, output].iter().map(|p| nonzero(&p.kernel.codes)).sum();
                    let weight_bits = query.kernel.fixed.width;
                    kernels.push(KernelLayer { index: *index, weight_bits, input_bits, nonzero });
                    *result
                }
                QLayer::Aggregate { result, .. }
                | QLayer::BatchNorm { result, .. }
                | QLayer::Activation { result, .. } => *result,
            };
        }
        kernels
    }
}

/// The parameters of layer `index` called `name` (Keras names: `kernel`,
/// `bias`, `gamma`, `beta`, `moving_mean`, `moving_variance`).
pub type ParamLookup<'a> = dyn Fn(usize, &str) -> Option<Vec<f32>> + 'a;

/// The mask of Dense layer `index`, if it is pruned.
pub type MaskLookup<'a> = dyn Fn(usize) -> Option<Vec<bool>> + 'a;
