//! A quantized model fully defined in fixed point, and its integer inference.
//!
//! [`QuantizedModel`] is what local search hands on: the architecture, one
//! fixed-point type per tensor, and every parameter as an integer code. Its
//! semantics follow hls4ml's `io_parallel` layers, so that a later export can
//! be checked bit for bit against hls4ml's C simulation:
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
//!   Leaky ReLU multiplies by its slope as a fixed-point constant;
//! - a final softmax is left out (hls4ml users read the arg-max; the output
//!   is the quantized logits).
//!
//! [`QuantizedModel::forward_int`] runs this with integer arithmetic only
//! (`i64` codes and shifts). [`QuantizedModel::forward_float`] is the same
//! model as a fake-quantized `f64` forward pass (float arithmetic, then
//! rounding onto each grid); both must agree bit for bit, which holds while
//! every accumulator fits in 53 bits ([`QuantizedModel::build`] checks it).

use crate::arch::{Activation, Aggregation, Arch, ConvGeometry, Layer, Shape};
use crate::fixed::{FixedPoint, Overflow, Rounding};
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// Format tag written into every model file.
pub const FORMAT: &str = "snac-quantized-model/1";

/// Entries of hls4ml's `tanh` and `sigmoid` tables (`table_size`).
pub const TABLE_SIZE: usize = 1024;

/// BatchNorm epsilon (Keras' default, as the trainer uses).
pub const BATCH_NORM_EPSILON: f64 = 1e-3;

/// Largest accumulator for which the `f64` forward pass is exact.
const MAX_EXACT_BITS: u32 = 53;

/// The fixed-point types a model is quantized with (SNAC-Pack's precision
/// pairs use one QKeras type for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantTypes {
    pub input: FixedPoint,
    pub weights: FixedPoint,
    pub biases: FixedPoint,
    pub activations: FixedPoint,
}

impl QuantTypes {
    /// QKeras `quantized_bits(total_bits, int_bits)` everywhere.
    pub fn from_qkeras(total_bits: u32, int_bits: u32) -> Result<QuantTypes> {
        let fixed = FixedPoint::from_qkeras(total_bits, int_bits)?;
        Ok(QuantTypes { input: fixed, weights: fixed, biases: fixed, activations: fixed })
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

/// A lookup-table activation as hls4ml builds it: `TABLE_SIZE` entries of
/// `table_t = ap_fixed<18,8>` over `[−range, range)`; the input `x` picks
/// entry `trunc(x · TABLE_SIZE / (2·range)) + TABLE_SIZE/2`, clamped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationTable {
    /// Half the input range: 4 for tanh, 8 for sigmoid.
    pub range: u32,
    pub table: Codes,
}

impl ActivationTable {
    /// hls4ml's table for `tanh` or `sigmoid` (None for other functions).
    /// Entry `i` is `f(in_val)` at `in_val = 2·range·(i − N/2)/N` computed in
    /// `float`, converted to `ap_fixed<18,8>` by truncation.
    pub fn hls4ml(function: Activation) -> Option<ActivationTable> {
        let table_type = FixedPoint::ap_fixed(18, 8).expect("valid type");
        let n = TABLE_SIZE as f32;
        let (range, f): (u32, fn(f32) -> f64) = match function {
            // hls4ml: `tanh(in_val)` on a float, which resolves to C's
            // double `tanh`.
            Activation::Tanh => (4, |x| (x as f64).tanh()),
            // hls4ml: `1.0 / (1 + std::exp(-input))` with a float input:
            // `expf`, then a double division.
            Activation::Sigmoid => (8, |x| 1.0 / (1.0f32 + (-x).exp()) as f64),
            _ => return None,
        };
        let values = (0..TABLE_SIZE).map(|i| f(2.0 * range as f32 * (i as f32 - n / 2.0) / n)).collect::<Vec<f64>>();
        Some(ActivationTable { range, table: Codes::quantize(table_type, values) })
    }

    /// The table index for input code `code` with `frac` fractional bits:
    /// `trunc(x · N / (2·range)) + N/2`, truncating toward zero as C's
    /// conversion to `int` does, then clamped to the table.
    pub fn index(&self, code: i64, frac: i32) -> usize {
        // N / (2·range) = 2^k.
        let k = (TABLE_SIZE as u32 / (2 * self.range)).trailing_zeros() as i32;
        let shift = frac - k;
        let whole = if shift <= 0 { code << -shift } else { code / (1i64 << shift) };
        (whole + TABLE_SIZE as i64 / 2).clamp(0, TABLE_SIZE as i64 - 1) as usize
    }

    /// The same index from a real value (for the float forward pass). The
    /// scale is a power of two, so `x · scale` is exact, and `as i64`
    /// truncates toward zero (saturating; NaN gives the middle entry).
    #[inline]
    pub fn index_of_value(&self, x: f64) -> usize {
        let scaled = (x * (TABLE_SIZE as f64 / (2.0 * self.range as f64))) as i64;
        scaled.saturating_add(TABLE_SIZE as i64 / 2).clamp(0, TABLE_SIZE as i64 - 1) as usize
    }

    /// hls4ml's table for `tanh` or `sigmoid`, built once, with its entries
    /// as real values.
    pub fn cached(function: Activation) -> Option<&'static (ActivationTable, Vec<f64>)> {
        static TANH: std::sync::OnceLock<(ActivationTable, Vec<f64>)> = std::sync::OnceLock::new();
        static SIGMOID: std::sync::OnceLock<(ActivationTable, Vec<f64>)> = std::sync::OnceLock::new();
        let cell = match function {
            Activation::Tanh => &TANH,
            Activation::Sigmoid => &SIGMOID,
            _ => return None,
        };
        Some(cell.get_or_init(|| {
            let table = ActivationTable::hls4ml(function).expect("tanh and sigmoid have tables");
            let values = table.table.values();
            (table, values)
        }))
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
    /// Mean (rounded half to even) or maximum of each feature over the `elements` of a set.
    Aggregate { index: usize, elements: usize, features: usize, mode: Aggregation, result: FixedPoint },
    /// Inference-mode BatchNorm: `x·scale + shift` per feature, then quantized.
    BatchNorm { index: usize, scale: Codes, shift: Codes, result: FixedPoint },
    /// A pointwise activation, its output quantized to `result`.
    Activation {
        index: usize,
        function: Activation,
        result: FixedPoint,
        /// Leaky ReLU's slope as a fixed-point constant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slope: Option<Codes>,
        /// `tanh` / `sigmoid` lookup table.
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
    /// An identity activation: puts layer `index`'s output on `result`'s grid.
    fn on_grid(index: usize, result: FixedPoint) -> QLayer {
        QLayer::Activation { index, function: Activation::Identity, result, slope: None, table: None }
    }

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

/// The parameters of layer `index` called `name` (Keras names: `kernel`,
/// `bias`, `gamma`, `beta`, `moving_mean`, `moving_variance`).
pub type ParamLookup<'a> = dyn Fn(usize, &str) -> Option<Vec<f32>> + 'a;

/// The mask of Dense layer `index`, if it is pruned.
pub type MaskLookup<'a> = dyn Fn(usize) -> Option<Vec<bool>> + 'a;

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
    let integer = u32::try_from(integer.max(0)).unwrap_or(0);
    // A width below the integer bits would mean negative fractional bits:
    // keep the type well formed by widening.
    let width = width.max(integer).max(1);
    FixedPoint::new(width, integer, true, Rounding::Truncate, Overflow::Wrap)
}

/// Converts a code with `frac` fractional bits to `to`, with its rounding
/// and overflow modes, in integer arithmetic (as an `ap_fixed` assignment).
pub fn requantize(code: i64, frac: i32, to: &FixedPoint) -> i64 {
    let shift = frac - to.fractional_bits();
    let rounded = if shift <= 0 {
        code << (-shift).min(62)
    } else if shift >= 63 {
        // Everything is below the step: the sign decides.
        match to.rounding {
            Rounding::Truncate if code < 0 => -1,
            _ => 0,
        }
    } else {
        let floor = code >> shift;
        let remainder = code - (floor << shift);
        let half = 1i64 << (shift - 1);
        match to.rounding {
            Rounding::Truncate => floor,
            Rounding::HalfUp => floor + (remainder >= half) as i64,
            Rounding::HalfEven => floor + (remainder > half || (remainder == half && floor & 1 == 1)) as i64,
        }
    };
    let (low, high) = (to.min_code(), to.max_code());
    if (low..=high).contains(&rounded) {
        return rounded;
    }
    match to.overflow {
        Overflow::Saturate | Overflow::SaturateSymmetric => rounded.clamp(low, high),
        Overflow::Wrap => {
            let modulus = 1i128 << to.width;
            let wrapped = (rounded as i128).rem_euclid(modulus);
            if to.signed && wrapped > high as i128 { (wrapped - modulus) as i64 } else { wrapped as i64 }
        }
    }
}

/// The codes of a kernel `[inputs, outputs]` (masked entries 0) and its
/// bias, and the accumulator for an input of type `input`.
#[allow(clippy::too_many_arguments)]
fn quantize_kernel(
    index: usize,
    kind: &str,
    kernel: &[f32],
    bias: &[f32],
    mask: &[bool],
    inputs: usize,
    outputs: usize,
    input: FixedPoint,
    types: &QuantTypes,
) -> Result<(Codes, Codes, FixedPoint)> {
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
    let mut kernel = Codes::quantize(types.weights, kernel.iter().map(|&v| v as f64));
    for (code, keep) in kernel.codes.iter_mut().zip(mask) {
        if !keep {
            *code = 0;
        }
    }
    let bias = Codes::quantize(types.biases, bias.iter().map(|&v| v as f64));
    let accumulator = accumulator_type(input, &kernel, &bias, inputs)?;
    ensure!(
        accumulator.width <= MAX_EXACT_BITS,
        "layer {index} ({kind}): the accumulator needs {} bits; at most {MAX_EXACT_BITS} are supported \
         (use narrower types)",
        accumulator.width
    );
    Ok((kernel, bias, accumulator))
}

/// `rows` rows of `inputs` codes (fractional bits `frac`) times `kernel`
/// plus `bias`, as exact `accumulator` codes.
fn affine_codes(codes: &[i64], frac: i32, kernel: &Codes, bias: &Codes, accumulator: &FixedPoint) -> Vec<i64> {
    let outputs = bias.codes.len();
    let inputs = kernel.codes.len() / outputs.max(1);
    let acc_frac = accumulator.fractional_bits();
    let product_shift = acc_frac - frac - kernel.fixed.fractional_bits();
    let bias_shift = acc_frac - bias.fixed.fractional_bits();
    let Some(narrow) = NarrowProducts::new(codes, kernel, outputs) else {
        return affine_codes_wide(codes, frac, kernel, bias, accumulator);
    };
    let mut out = Vec::with_capacity(codes.len() / inputs.max(1) * outputs);
    let mut sums = vec![0i32; outputs];
    for row in narrow.rows.chunks_exact(inputs) {
        narrow.row_sums(row, &mut sums);
        out.extend(sums.iter().zip(&bias.codes).map(|(&a, &b)| ((a as i64) << product_shift) + (b << bias_shift)));
    }
    out
}

/// [`affine_codes`] with `i64` products, whatever the bits.
fn affine_codes_wide(codes: &[i64], frac: i32, kernel: &Codes, bias: &Codes, accumulator: &FixedPoint) -> Vec<i64> {
    let outputs = bias.codes.len();
    let inputs = kernel.codes.len() / outputs.max(1);
    let acc_frac = accumulator.fractional_bits();
    let product_shift = acc_frac - frac - kernel.fixed.fractional_bits();
    let bias_shift = acc_frac - bias.fixed.fractional_bits();
    let mut out = Vec::with_capacity(codes.len() / inputs.max(1) * outputs);
    let mut raw = vec![0i64; outputs];
    for row in codes.chunks_exact(inputs) {
        // Σ x·w in the product's own units, shifted once at the end (a left
        // shift distributes over the sum exactly).
        raw.fill(0);
        for (i, &xi) in row.iter().enumerate() {
            if xi == 0 {
                continue;
            }
            for (a, &w) in raw.iter_mut().zip(&kernel.codes[i * outputs..(i + 1) * outputs]) {
                *a += xi * w;
            }
        }
        out.extend(raw.iter().zip(&bias.codes).map(|(&a, &b)| (a << product_shift) + (b << bias_shift)));
    }
    out
}

/// The products of [`affine_codes`] in `i32`, when no partial sum can leave
/// it: every partial sum of one output is bounded by
/// `max|x| · Σ_i |w_i|`, so with that bound below 2³¹ the `i32` sums are the
/// exact `i64` sums. Eight lanes at a time under AVX2 (`i64` products have no
/// AVX2 multiply).
struct NarrowProducts<'a> {
    rows: Vec<i32>,
    kernel: &'a [i32],
    outputs: usize,
}

impl<'a> NarrowProducts<'a> {
    fn new(codes: &[i64], kernel: &'a Codes, outputs: usize) -> Option<NarrowProducts<'a>> {
        if outputs == 0 {
            return None;
        }
        let (narrow, column_sum) = kernel.narrow_kernel(outputs)?;
        let max_x = codes.iter().map(|c| c.unsigned_abs()).max().unwrap_or(0) as u128;
        if max_x * column_sum >= i32::MAX as u128 {
            return None;
        }
        // max|x| < 2³¹ too, unless every weight is zero (then any code fits
        // the products, but not the cast): check it.
        let rows = codes.iter().map(|&c| i32::try_from(c).ok()).collect::<Option<_>>()?;
        Some(NarrowProducts { rows, kernel: narrow, outputs })
    }

    fn row_sums(&self, row: &[i32], sums: &mut [i32]) {
        #[inline(always)]
        fn sums_of(row: &[i32], kernel: &[i32], outputs: usize, sums: &mut [i32]) {
            sums.fill(0);
            for (&xi, weights) in row.iter().zip(kernel.chunks_exact(outputs)) {
                if xi == 0 {
                    continue;
                }
                for (a, &w) in sums.iter_mut().zip(weights) {
                    *a += xi * w;
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn sums_avx2(row: &[i32], kernel: &[i32], outputs: usize, sums: &mut [i32]) {
            sums_of(row, kernel, outputs, sums)
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { sums_avx2(row, self.kernel, self.outputs, sums) };
            return;
        }
        sums_of(row, self.kernel, self.outputs, sums)
    }
}

impl QuantizedModel {
    /// Quantizes a trained `arch`: parameters from `params`, masks from
    /// `masks`, types from `types`. Fails, naming the layer, for layers with
    /// no fixed-point form here (LayerNorm, GELU, convolutions so far) or a
    /// softmax that is not last.
    pub fn build(arch: &Arch, params: &ParamLookup, masks: &MaskLookup, types: QuantTypes) -> Result<QuantizedModel> {
        let shapes = arch.shapes()?;
        let input_features = arch.input_shape.numel();
        let last = shapes.len().saturating_sub(1);
        let mut layers = Vec::new();
        // The type of the tensor flowing between layers.
        let mut current = types.input;
        let get = |index: usize, name: &str| {
            params(index, name).with_context(|| format!("layer {index} has no parameter '{name}'"))
        };
        for (index, (layer, input, output)) in shapes.iter().enumerate() {
            match layer {
                Layer::Dense { units } => {
                    let (rows, inputs) = input.rows_and_features();
                    let mask = masks(index).unwrap_or_default();
                    let (kernel, bias, accumulator) = quantize_kernel(
                        index,
                        "Dense",
                        &get(index, "kernel")?,
                        &get(index, "bias")?,
                        &mask,
                        inputs,
                        *units,
                        current,
                        &types,
                    )?;
                    layers.push(QLayer::Dense {
                        index,
                        rows,
                        inputs,
                        outputs: *units,
                        kernel,
                        bias,
                        mask,
                        accumulator,
                    });
                    current = accumulator;
                    // Logits: a last Dense (or one before the final softmax) is quantized.
                    let softmax_next = index + 1 == last && matches!(shapes[last].0, Layer::Act(Activation::Softmax));
                    if index == last || softmax_next {
                        layers.push(QLayer::on_grid(index, types.activations));
                        current = types.activations;
                    }
                }
                Layer::Conv2d { .. } => {
                    let g = ConvGeometry::of(layer, *input)
                        .with_context(|| format!("layer {index} (Conv2d) needs an image input, got {input}"))?;
                    let mask = masks(index).unwrap_or_default();
                    let (kernel, bias, accumulator) = quantize_kernel(
                        index,
                        "Conv2d",
                        &get(index, "kernel")?,
                        &get(index, "bias")?,
                        &mask,
                        g.kernel * g.kernel * g.channels,
                        g.filters,
                        current,
                        &types,
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
                    current = accumulator;
                }
                Layer::ConvAttention { hidden, scale } => {
                    let (positions, channels) = input.rows_and_features();
                    let act = types.activations;
                    // The layer's mask covers the four projection kernels
                    // one after another (query, key, value, output).
                    let mask = masks(index).unwrap_or_default();
                    let size = channels * *hidden;
                    ensure!(
                        mask.is_empty() || mask.len() == 4 * size,
                        "layer {index} (ConvAttention): mask has {} entries for 4 × {size} weights",
                        mask.len()
                    );
                    let projection = |slot: usize, name: &str, from: FixedPoint, inputs: usize, outputs: usize| {
                        let part = if mask.is_empty() { &[][..] } else { &mask[slot * size..(slot + 1) * size] };
                        let (kernel, bias, accumulator) = quantize_kernel(
                            index,
                            "ConvAttention",
                            &get(index, &format!("{name}_kernel"))?,
                            &get(index, &format!("{name}_bias"))?,
                            part,
                            inputs,
                            outputs,
                            from,
                            &types,
                        )?;
                        Ok::<_, anyhow::Error>(Projection { kernel, bias, accumulator })
                    };
                    let query = projection(0, "query", current, channels, *hidden)?;
                    let key = projection(1, "key", current, channels, *hidden)?;
                    let value = projection(2, "value", current, channels, *hidden)?;
                    let output = projection(3, "output", act, *hidden, channels)?;
                    // Scores are sums of `hidden` products of two activation codes.
                    let largest = act.min_code().unsigned_abs().max(act.max_code().unsigned_abs()) as u128;
                    let bound = largest * largest * *hidden as u128 * positions as u128;
                    ensure!(
                        bound < 1u128 << MAX_EXACT_BITS,
                        "layer {index} (ConvAttention): its scores need {} bits; at most {MAX_EXACT_BITS} are \
                         supported (use narrower types)",
                        128 - bound.leading_zeros()
                    );
                    let scale = scale.then(|| softmax::attention_scale(*hidden));
                    layers.push(QLayer::ConvAttention {
                        index,
                        positions,
                        channels,
                        hidden: *hidden,
                        query,
                        key,
                        value,
                        output,
                        scale,
                        result: act,
                    });
                    current = act;
                }
                Layer::Aggregate(mode) => {
                    let Shape::Set { elements, features } = *input else {
                        bail!("layer {index} (Aggregate) needs a set input, got {input}")
                    };
                    layers.push(QLayer::Aggregate {
                        index,
                        elements,
                        features,
                        mode: *mode,
                        result: types.activations,
                    });
                    current = types.activations;
                }
                // Flattening an image or set puts it on the activation grid
                // (as the trainer does); a vector passes unchanged.
                Layer::Flatten if input.rows_and_features().0 > 1 => {
                    layers.push(QLayer::on_grid(index, types.activations));
                    current = types.activations;
                }
                Layer::BatchNorm => {
                    let (scale, shift) = fold_batch_norm(
                        &get(index, "gamma")?,
                        &get(index, "beta")?,
                        &get(index, "moving_mean")?,
                        &get(index, "moving_variance")?,
                        types.weights.width,
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
                    layers.push(QLayer::BatchNorm { index, scale, shift, result: types.activations });
                    current = types.activations;
                }
                Layer::Act(Activation::Softmax) if index == last => {}
                Layer::Act(Activation::Softmax) => bail!("layer {index}: softmax may only be the last layer"),
                Layer::Act(Activation::Gelu) => bail!(
                    "layer {index} (GELU) has no fixed-point implementation (hls4ml has none either); \
                     supported activations: ReLU, Leaky ReLU, tanh, sigmoid, identity, a final softmax"
                ),
                Layer::Act(function) => {
                    let slope = (*function == Activation::LeakyRelu).then(leaky_slope);
                    let table = ActivationTable::hls4ml(*function);
                    layers.push(QLayer::Activation {
                        index,
                        function: *function,
                        result: types.activations,
                        slope,
                        table,
                    });
                    current = types.activations;
                }
                Layer::Flatten => {}
                Layer::LayerNorm => bail!(
                    "layer {index} (LayerNorm) has no fixed-point implementation; quantized models support Dense, \
                     Conv2d, ConvAttention, BatchNorm, Flatten, Aggregate and pointwise activations"
                ),
            }
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

    fn check_sample(&self, x: &[f32]) -> Result<()> {
        ensure!(
            x.len() == self.input_features,
            "the model takes {} input features, got {}",
            self.input_features,
            x.len()
        );
        Ok(())
    }

    /// Integer inference on one sample: input quantized to the input type,
    /// then only integer arithmetic. Returns the output codes and their type.
    pub fn forward_int(&self, x: &[f32]) -> Result<(Vec<i64>, FixedPoint)> {
        self.check_sample(x)?;
        let mut codes = self.types.input.to_codes(x.iter().map(|&v| v as f64));
        let mut fixed = self.types.input;
        for layer in &self.layers {
            match layer {
                QLayer::Dense { kernel, bias, accumulator, .. } => {
                    codes = affine_codes(&codes, fixed.fractional_bits(), kernel, bias, accumulator);
                    fixed = *accumulator;
                }
                QLayer::Conv2d {
                    height,
                    width,
                    channels,
                    kernel_size,
                    filters,
                    out_height,
                    out_width,
                    padding,
                    kernel,
                    bias,
                    accumulator,
                    ..
                } => {
                    let g = ConvGeometry {
                        height: *height,
                        width: *width,
                        channels: *channels,
                        kernel: *kernel_size,
                        filters: *filters,
                        out_height: *out_height,
                        out_width: *out_width,
                        padding: *padding,
                    };
                    // im2col: one row of k·k·C codes per output position, zeros outside.
                    let mut patches = vec![0i64; out_height * out_width * kernel_size * kernel_size * channels];
                    g.patch_runs(|to, from, len| patches[to..to + len].copy_from_slice(&codes[from..from + len]));
                    codes = affine_codes(&patches, fixed.fractional_bits(), kernel, bias, accumulator);
                    fixed = *accumulator;
                }
                QLayer::ConvAttention { positions, hidden, query, key, value, output, scale, result, .. } => {
                    let frac = fixed.fractional_bits();
                    let on_grid = |codes: Vec<i64>, from: i32| -> Vec<i64> {
                        codes.into_iter().map(|c| requantize(c, from, result)).collect()
                    };
                    let project = |p: &Projection| {
                        on_grid(
                            affine_codes(&codes, frac, &p.kernel, &p.bias, &p.accumulator),
                            p.accumulator.fractional_bits(),
                        )
                    };
                    let (q, k, v) = (project(query), project(key), project(value));
                    let rf = result.fractional_bits();
                    let h = *hidden;
                    let mut attended = vec![0i64; positions * h];
                    for i in 0..*positions {
                        let scores: Vec<i64> =
                            (0..*positions).map(|j| (0..h).map(|d| q[i * h + d] * k[j * h + d]).sum()).collect();
                        let weights = softmax::softmax_codes(&scores, 2 * rf, *scale, result);
                        let row = &mut attended[i * h..(i + 1) * h];
                        for (j, &w) in weights.iter().enumerate() {
                            for (a, &vj) in row.iter_mut().zip(&v[j * h..(j + 1) * h]) {
                                *a += w * vj;
                            }
                        }
                    }
                    let attended = on_grid(attended, 2 * rf);
                    let projected = affine_codes(&attended, rf, &output.kernel, &output.bias, &output.accumulator);
                    let projected = on_grid(projected, output.accumulator.fractional_bits());
                    // Residual: input plus projection, exact, then onto the grid.
                    let sum_frac = frac.max(rf);
                    codes = codes
                        .iter()
                        .zip(&projected)
                        .map(|(&x, &o)| requantize((x << (sum_frac - frac)) + (o << (sum_frac - rf)), sum_frac, result))
                        .collect();
                    fixed = *result;
                }
                QLayer::Aggregate { elements, features, mode, result, .. } => {
                    let frac = fixed.fractional_bits();
                    let column = |f: usize| (0..*elements).map(move |e| e * features + f);
                    codes = (0..*features)
                        .map(|f| match mode {
                            Aggregation::Max => {
                                requantize(column(f).map(|i| codes[i]).max().unwrap_or(0), frac, result)
                            }
                            Aggregation::Mean => {
                                let sum: i128 = column(f).map(|i| codes[i] as i128).sum();
                                let shift = result.fractional_bits() - frac;
                                let (num, den) = if shift >= 0 {
                                    (sum << shift, *elements as i128)
                                } else {
                                    (sum, (*elements as i128) << -shift)
                                };
                                let code = softmax::divide_half_even(num, den);
                                code.clamp(result.min_code() as i128, result.max_code() as i128) as i64
                            }
                        })
                        .collect();
                    fixed = *result;
                }
                QLayer::BatchNorm { scale, shift, result, .. } => {
                    let product = fixed.fractional_bits() + scale.fixed.fractional_bits();
                    let frac = product.max(shift.fixed.fractional_bits());
                    let (product_bits, shift_bits) = (frac - product, frac - shift.fixed.fractional_bits());
                    codes = codes
                        .iter()
                        .zip(scale.codes.iter().cycle())
                        .zip(shift.codes.iter().cycle())
                        .map(|((&x, &s), &t)| requantize(((x * s) << product_bits) + (t << shift_bits), frac, result))
                        .collect();
                    fixed = *result;
                }
                QLayer::Activation { function, result, slope, table, .. } => {
                    let frac = fixed.fractional_bits();
                    codes = match (function, table, slope) {
                        (_, Some(table), _) => codes
                            .iter()
                            .map(|&x| {
                                let entry = table.table.codes[table.index(x, frac)];
                                requantize(entry, table.table.fixed.fractional_bits(), result)
                            })
                            .collect(),
                        (Activation::Relu, ..) => codes.iter().map(|&x| requantize(x.max(0), frac, result)).collect(),
                        (Activation::LeakyRelu, _, Some(slope)) => {
                            let sf = slope.fixed.fractional_bits();
                            codes
                                .iter()
                                .map(|&x| {
                                    if x > 0 {
                                        requantize(x, frac, result)
                                    } else {
                                        requantize(x * slope.codes[0], frac + sf, result)
                                    }
                                })
                                .collect()
                        }
                        (Activation::Identity, ..) => codes.iter().map(|&x| requantize(x, frac, result)).collect(),
                        _ => bail!("{}: no integer form", layer.describe()),
                    };
                    fixed = *result;
                }
            }
        }
        Ok((codes, fixed))
    }

    /// The same model as a fake-quantized `f64` forward pass: float
    /// arithmetic with each tensor rounded onto its grid. Equal to
    /// [`QuantizedModel::forward_int`]'s values bit for bit.
    pub fn forward_float(&self, x: &[f32]) -> Result<Vec<f64>> {
        self.check_sample(x)?;
        let mut values: Vec<f64> = x.iter().map(|&v| self.types.input.quantize(v as f64)).collect();
        for layer in &self.layers {
            match layer {
                QLayer::Dense { inputs, outputs, kernel, bias, .. } => {
                    let w = kernel.values();
                    let b = bias.values();
                    let mut out = Vec::with_capacity(values.len() / inputs * outputs);
                    for row in values.chunks_exact(*inputs) {
                        let mut acc = b.clone();
                        for (i, &xi) in row.iter().enumerate() {
                            for (a, &wij) in acc.iter_mut().zip(&w[i * outputs..(i + 1) * outputs]) {
                                *a += xi * wij;
                            }
                        }
                        out.extend(acc);
                    }
                    values = out;
                }
                QLayer::Conv2d { .. } | QLayer::ConvAttention { .. } | QLayer::Aggregate { .. } => bail!(
                    "{}: forward_float covers Dense models; the trainer's f64 pass (snac_train::outputs_f64) is the \
                     float reference for this layer",
                    layer.describe()
                ),
                QLayer::BatchNorm { scale, shift, result, .. } => {
                    let (s, t) = (scale.values(), shift.values());
                    values = values
                        .iter()
                        .zip(s.iter().cycle())
                        .zip(t.iter().cycle())
                        .map(|((&x, &s), &t)| result.quantize(x * s + t))
                        .collect();
                }
                QLayer::Activation { function, result, slope, table, .. } => {
                    values = match (function, table, slope) {
                        (_, Some(table), _) => {
                            let entries = table.table.values();
                            values.iter().map(|&x| result.quantize(entries[table.index_of_value(x)])).collect()
                        }
                        (Activation::Relu, ..) => values.iter().map(|&x| result.quantize(x.max(0.0))).collect(),
                        (Activation::LeakyRelu, _, Some(slope)) => {
                            let a = slope.values()[0];
                            values.iter().map(|&x| result.quantize(if x > 0.0 { x } else { x * a })).collect()
                        }
                        (Activation::Identity, ..) => values.iter().map(|&x| result.quantize(x)).collect(),
                        _ => bail!("{}: no float form", layer.describe()),
                    };
                }
            }
        }
        Ok(values)
    }

    /// Integer inference on many samples (row-major); output values.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f64>> {
        ensure!(
            x.len().is_multiple_of(self.input_features),
            "{} input values are not a whole number of samples of {} features",
            x.len(),
            self.input_features
        );
        let mut out = Vec::with_capacity(x.len() / self.input_features * self.output_features);
        for sample in x.chunks_exact(self.input_features) {
            let (codes, fixed) = self.forward_int(sample)?;
            let step = fixed.step();
            out.extend(codes.iter().map(|&c| c as f64 * step));
        }
        Ok(out)
    }

    /// Accuracy of the integer model: arg-max of the outputs against `labels`
    /// (the first maximum wins, as hls4ml's arg-max softmax).
    pub fn accuracy(&self, x: &[f32], labels: &[u32]) -> Result<f64> {
        let outputs = self.predict(x)?;
        ensure!(outputs.len() / self.output_features.max(1) == labels.len(), "inputs and labels differ in count");
        let correct = outputs
            .chunks_exact(self.output_features)
            .zip(labels)
            .filter(|(row, label)| {
                let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                best == **label as usize
            })
            .count();
        Ok(correct as f64 / labels.len().max(1) as f64)
    }

    /// Reads a model file: a bare model, or an object with the model under
    /// `quantized_model` (local search's `best_model_*.json`), checked with
    /// [`QuantizedModel::validate`]. Every error starts with the file's path.
    pub fn read(path: &std::path::Path) -> Result<QuantizedModel> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        QuantizedModel::from_json(&text).with_context(|| format!("{}", path.display()))
    }

    /// [`QuantizedModel::read`] on the text of a file: parses, then
    /// validates. Never panics, whatever the text.
    pub fn from_json(text: &str) -> Result<QuantizedModel> {
        let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
        let model = match value.get("quantized_model") {
            Some(serde_json::Value::Null) => bail!(
                "quantized_model: this model has no fixed-point form ({})",
                value.get("quantized_model_error").and_then(|v| v.as_str()).unwrap_or("reason not recorded")
            ),
            Some(inner) => inner.clone(),
            None => value,
        };
        if let Some(format) = model.get("format").and_then(|f| f.as_str()) {
            ensure!(format == FORMAT, "format: '{format}' is not supported (accepted: '{FORMAT}')");
        }
        let model: QuantizedModel = serde_json::from_value(model)
            .with_context(|| format!("not a quantized model (expected format '{FORMAT}', as local search writes)"))?;
        model.validate().context("invalid quantized model")?;
        Ok(model)
    }
}

pub mod softmax;
mod validate;
pub use validate::MAX_VALUES;

#[cfg(test)]
mod tests;
