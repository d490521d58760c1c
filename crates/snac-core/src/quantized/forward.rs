//! Inference with a [`QuantizedModel`]: [`QuantizedModel::forward_int`]
//! in integer arithmetic only (one function per layer kind, called from a
//! short dispatch), and [`QuantizedModel::forward_float`], the same model as
//! a fake-quantized `f64` pass that must agree with it bit for bit.

use super::{ActivationTable, Codes, Projection, QLayer, QuantizedModel, mean_factor, softmax};
use crate::arch::{Activation, Aggregation, ConvGeometry};
use crate::fixed::{FixedPoint, Overflow, Rounding};
use anyhow::{Result, bail, ensure};

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

/// `rows` rows of `inputs` codes (fractional bits `frac`) times `kernel`
/// plus `bias`, as exact `accumulator` codes.
pub(super) fn affine_codes(
    codes: &[i64],
    frac: i32,
    kernel: &Codes,
    bias: &Codes,
    accumulator: &FixedPoint,
) -> Vec<i64> {
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
pub(super) fn affine_codes_wide(
    codes: &[i64],
    frac: i32,
    kernel: &Codes,
    bias: &Codes,
    accumulator: &FixedPoint,
) -> Vec<i64> {
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
pub(super) struct NarrowProducts<'a> {
    rows: Vec<i32>,
    kernel: &'a [i32],
    outputs: usize,
}

impl<'a> NarrowProducts<'a> {
    pub(super) fn new(codes: &[i64], kernel: &'a Codes, outputs: usize) -> Option<NarrowProducts<'a>> {
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
            let frac = fixed.fractional_bits();
            (codes, fixed) = match layer {
                QLayer::Dense { kernel, bias, accumulator, .. } => {
                    (affine_codes(&codes, frac, kernel, bias, accumulator), *accumulator)
                }
                QLayer::Conv2d { kernel, bias, accumulator, .. } => {
                    let g = layer.conv_geometry().expect("a Conv2d layer has a geometry");
                    (conv2d_codes(&codes, frac, &g, (kernel, bias, accumulator)), *accumulator)
                }
                QLayer::ConvAttention { positions, hidden, query, key, value, output, scale, result, .. } => {
                    let projections = [query, key, value, output];
                    (attention_codes(&codes, frac, (*positions, *hidden), projections, *scale, result), *result)
                }
                QLayer::Aggregate { elements, features, mode, result, .. } => {
                    (aggregate_codes(&codes, frac, (*elements, *features), *mode, result), *result)
                }
                QLayer::BatchNorm { scale, shift, result, .. } => {
                    (batch_norm_codes(&codes, frac, scale, shift, result), *result)
                }
                QLayer::Activation { function, result, slope, table, .. } => {
                    let Some(out) = activation_codes(&codes, frac, *function, table.as_ref(), slope.as_ref(), result)
                    else {
                        bail!("{}: no integer form", layer.describe())
                    };
                    (out, *result)
                }
            };
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
            values = match layer {
                QLayer::Dense { inputs, outputs, kernel, bias, .. } => {
                    dense_values(&values, *inputs, *outputs, kernel, bias)
                }
                QLayer::Conv2d { .. } | QLayer::ConvAttention { .. } | QLayer::Aggregate { .. } => bail!(
                    "{}: forward_float covers Dense models; the trainer's f64 pass (snac_train::outputs_f64) is the \
                     float reference for this layer",
                    layer.describe()
                ),
                QLayer::BatchNorm { scale, shift, result, .. } => {
                    let (s, t) = (scale.values(), shift.values());
                    values
                        .iter()
                        .zip(s.iter().cycle())
                        .zip(t.iter().cycle())
                        .map(|((&x, &s), &t)| result.quantize(x * s + t))
                        .collect()
                }
                QLayer::Activation { function, result, slope, table, .. } => {
                    let Some(out) = activation_values(&values, *function, table.as_ref(), slope.as_ref(), result)
                    else {
                        bail!("{}: no float form", layer.describe())
                    };
                    out
                }
            };
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
}

/// Conv2d: im2col (one row of `k·k·C` codes per output position, zeros
/// outside the image), then the kernel as a Dense layer.
fn conv2d_codes(
    codes: &[i64],
    frac: i32,
    g: &ConvGeometry,
    (kernel, bias, accumulator): (&Codes, &Codes, &FixedPoint),
) -> Vec<i64> {
    let mut patches = vec![0i64; g.out_height * g.out_width * g.kernel * g.kernel * g.channels];
    g.patch_runs(|to, from, len| patches[to..to + len].copy_from_slice(&codes[from..from + len]));
    affine_codes(&patches, frac, kernel, bias, accumulator)
}

/// ConvAttention: q, k, v projected onto `result`'s grid, attention
/// ([`attend`]), the output projection, then the residual sum on the grid.
fn attention_codes(
    codes: &[i64],
    frac: i32,
    (positions, hidden): (usize, usize),
    [query, key, value, output]: [&Projection; 4],
    scale: Option<i64>,
    result: &FixedPoint,
) -> Vec<i64> {
    let on_grid =
        |codes: Vec<i64>, from: i32| -> Vec<i64> { codes.into_iter().map(|c| requantize(c, from, result)).collect() };
    let project = |p: &Projection| {
        on_grid(affine_codes(codes, frac, &p.kernel, &p.bias, &p.accumulator), p.accumulator.fractional_bits())
    };
    let (q, k, v) = (project(query), project(key), project(value));
    let rf = result.fractional_bits();
    let attended = on_grid(attend((&q, &k, &v), (positions, hidden), scale, result), 2 * rf);
    let projected = affine_codes(&attended, rf, &output.kernel, &output.bias, &output.accumulator);
    let projected = on_grid(projected, output.accumulator.fractional_bits());
    // Residual: input plus projection, exact, then onto the grid.
    let sum_frac = frac.max(rf);
    codes
        .iter()
        .zip(&projected)
        .map(|(&x, &o)| requantize((x << (sum_frac - frac)) + (o << (sum_frac - rf)), sum_frac, result))
        .collect()
}

/// Each position's softmax-weighted sum of the values, exact (`2·rf`
/// fractional bits, `rf` those of `result`).
fn attend(
    (q, k, v): (&[i64], &[i64], &[i64]),
    (positions, h): (usize, usize),
    scale: Option<i64>,
    result: &FixedPoint,
) -> Vec<i64> {
    let rf = result.fractional_bits();
    let mut attended = vec![0i64; positions * h];
    for i in 0..positions {
        let scores: Vec<i64> = (0..positions).map(|j| (0..h).map(|d| q[i * h + d] * k[j * h + d]).sum()).collect();
        let weights = softmax::softmax_codes(&scores, 2 * rf, scale, result);
        let row = &mut attended[i * h..(i + 1) * h];
        for (j, &w) in weights.iter().enumerate() {
            for (a, &vj) in row.iter_mut().zip(&v[j * h..(j + 1) * h]) {
                *a += w * vj;
            }
        }
    }
    attended
}

/// Aggregate: each feature's maximum, or its mean over the `elements` of a
/// set: the exact sum times [`mean_factor`], then onto `result` (the
/// model's checks keep the product within 53 bits).
fn aggregate_codes(
    codes: &[i64],
    frac: i32,
    (elements, features): (usize, usize),
    mode: Aggregation,
    result: &FixedPoint,
) -> Vec<i64> {
    let column = |f: usize| (0..elements).map(move |e| e * features + f);
    let factor = mean_factor(elements);
    let product_frac = frac + factor.fixed.fractional_bits();
    (0..features)
        .map(|f| match mode {
            Aggregation::Max => requantize(column(f).map(|i| codes[i]).max().unwrap_or(0), frac, result),
            Aggregation::Mean => {
                let sum: i64 = column(f).map(|i| codes[i]).sum();
                requantize(sum * factor.codes[0], product_frac, result)
            }
        })
        .collect()
}

/// BatchNorm: `x·scale + shift` per feature, exact, then onto `result`.
fn batch_norm_codes(codes: &[i64], frac: i32, scale: &Codes, shift: &Codes, result: &FixedPoint) -> Vec<i64> {
    let product = frac + scale.fixed.fractional_bits();
    let frac = product.max(shift.fixed.fractional_bits());
    let (product_bits, shift_bits) = (frac - product, frac - shift.fixed.fractional_bits());
    codes
        .iter()
        .zip(scale.codes.iter().cycle())
        .zip(shift.codes.iter().cycle())
        .map(|((&x, &s), &t)| requantize(((x * s) << product_bits) + (t << shift_bits), frac, result))
        .collect()
}

/// A pointwise activation onto `result`: a table lookup when the layer has
/// a table (GELU: `x·σ(x·slope)` with the sigmoid table), else ReLU, Leaky
/// ReLU (by its slope) or the identity; `None` for a function with no
/// integer form (tanh, sigmoid or GELU without a table, softmax, Leaky ReLU
/// or GELU without a slope).
fn activation_codes(
    codes: &[i64],
    frac: i32,
    function: Activation,
    table: Option<&ActivationTable>,
    slope: Option<&Codes>,
    result: &FixedPoint,
) -> Option<Vec<i64>> {
    if function == Activation::Gelu {
        // x·σ(x·scale): both products exact, σ from the table.
        let (table, scale) = (table?, slope?);
        let scale_frac = frac + scale.fixed.fractional_bits();
        let product_frac = frac + table.table.fixed.fractional_bits();
        return Some(
            codes
                .iter()
                .map(|&x| {
                    let sigmoid = table.table.codes[table.index(x * scale.codes[0], scale_frac)];
                    requantize(x * sigmoid, product_frac, result)
                })
                .collect(),
        );
    }
    if let Some(table) = table {
        let table_frac = table.table.fixed.fractional_bits();
        return Some(
            codes.iter().map(|&x| requantize(table.table.codes[table.index(x, frac)], table_frac, result)).collect(),
        );
    }
    Some(match function {
        Activation::Relu => codes.iter().map(|&x| requantize(x.max(0), frac, result)).collect(),
        Activation::LeakyRelu => {
            let slope = slope?;
            let sf = slope.fixed.fractional_bits();
            codes
                .iter()
                .map(|&x| {
                    if x > 0 { requantize(x, frac, result) } else { requantize(x * slope.codes[0], frac + sf, result) }
                })
                .collect()
        }
        Activation::Identity => codes.iter().map(|&x| requantize(x, frac, result)).collect(),
        Activation::Tanh | Activation::Sigmoid | Activation::Gelu | Activation::Softmax => return None,
    })
}

/// Dense in `f64`: `rows` rows of `inputs` values times the kernel plus the bias.
fn dense_values(values: &[f64], inputs: usize, outputs: usize, kernel: &Codes, bias: &Codes) -> Vec<f64> {
    let w = kernel.values();
    let b = bias.values();
    let mut out = Vec::with_capacity(values.len() / inputs * outputs);
    for row in values.chunks_exact(inputs) {
        let mut acc = b.clone();
        for (i, &xi) in row.iter().enumerate() {
            for (a, &wij) in acc.iter_mut().zip(&w[i * outputs..(i + 1) * outputs]) {
                *a += xi * wij;
            }
        }
        out.extend(acc);
    }
    out
}

/// [`activation_codes`] in `f64`: the same cases, the same `None`s.
fn activation_values(
    values: &[f64],
    function: Activation,
    table: Option<&ActivationTable>,
    slope: Option<&Codes>,
    result: &FixedPoint,
) -> Option<Vec<f64>> {
    if function == Activation::Gelu {
        let (entries, scale) = (table?.table.values(), slope?.values()[0]);
        let table = table?;
        return Some(values.iter().map(|&x| result.quantize(x * entries[table.index_of_value(x * scale)])).collect());
    }
    if let Some(table) = table {
        let entries = table.table.values();
        return Some(values.iter().map(|&x| result.quantize(entries[table.index_of_value(x)])).collect());
    }
    Some(match function {
        Activation::Relu => values.iter().map(|&x| result.quantize(x.max(0.0))).collect(),
        Activation::LeakyRelu => {
            let a = slope?.values()[0];
            values.iter().map(|&x| result.quantize(if x > 0.0 { x } else { x * a })).collect()
        }
        Activation::Identity => values.iter().map(|&x| result.quantize(x)).collect(),
        Activation::Tanh | Activation::Sigmoid | Activation::Gelu | Activation::Softmax => return None,
    })
}
