//! A hand-written forward and backward pass for the layers that dominate
//! the searches (Dense, Conv2d, BatchNorm, pointwise activations, Flatten,
//! Aggregate, the fake quantizers and softmax cross-entropy), in `f32` on
//! plain buffers with [`gemm`] for every matrix product.
//!
//! Why: profiling burn's autodiff on a tutorial-2 conv net showed the GEMM
//! microkernels at 11 % of the time; the rest went to NCHW↔NHWC copies,
//! page faults of fresh temporaries and generic reductions. Here the batch
//! stays in the trainer's `[batch·rows, features]` layout (channels last,
//! so im2col copies whole channel runs), each layer allocates only what it returns,
//! and the gradients are the textbook ones.
//!
//! It computes exactly what [`crate::net::Net::forward`] computes (same
//! semantics, same quantization points); `tests::engine_matches_burn` checks
//! values and gradients against burn's autodiff for every layer kind, and
//! the burn path stays the reference in `f64` for bit-exactness. LayerNorm,
//! which it does not cover, makes the trainer use burn.

use crate::layers::{BATCH_NORM_EPSILON, ConvGeometry};
use crate::net::{Net, NetLayer, ParamTable};
use crate::quant::QuantSpec;
use snac_core::arch::{Activation, Aggregation};
use snac_core::quantized::softmax::{SCALE_FRAC, attention_scale, softmax_values};
use snac_core::quantized::{ActivationTable, fold_batch_norm, leaky_slope};

/// `C (m×n) = A (m×k) · B (k×n)` (or `C +=` when `accumulate`), row-major;
/// `a_t`/`b_t` say that A/B are stored transposed (`k×m`, `n×k`).
#[allow(clippy::too_many_arguments)]
fn matmul(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, c: &mut [f32], accumulate: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "matmul: buffers too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above bound every index the strides reach.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Whether the engine covers every layer of `net`.
pub(crate) fn supports(net: &Net) -> bool {
    net.layers.iter().all(|l| !matches!(l, NetLayer::LayerNorm { .. }))
}

/// What the backward pass needs from one layer's forward pass.
enum Saved {
    /// The layer's input (Dense, Conv2d).
    Input(Vec<f32>),
    /// BatchNorm in training mode: normalised input and 1/σ per feature.
    Norm {
        normalized: Vec<f32>,
        inverse_std: Vec<f32>,
    },
    /// Pointwise activation: the derivative at each input.
    Slopes(Vec<f32>),
    /// Max pooling: the winning row of each output.
    Argmax(Vec<usize>),
    Attention(Box<AttentionSaved>),
    Nothing,
}

/// What the attention's backward pass needs.
struct AttentionSaved {
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// The float softmax (its gradient is the one used) and the weights
    /// actually applied: the fixed-point softmax under QAT, else empty
    /// (the float softmax is applied).
    soft: Vec<f32>,
    weights: Vec<f32>,
    attended: Vec<f32>,
    /// On the row-wise path ([`crate::attention`]), each score row's softmax
    /// shift; `soft` and `weights` are then empty.
    shifts: Vec<f32>,
    /// Without QAT on the gemm path, `soft` holds each row's exponentials
    /// unnormalised and these are their `1/Σ`; else empty.
    inverses: Vec<f32>,
    factor: f32,
}

/// Convolutional self-attention forward ([`crate::layers::conv_attention`]).
#[allow(clippy::too_many_arguments)]
fn attention_forward(
    x: Vec<f32>,
    p: [&[f32]; 8],
    positions: usize,
    scale: bool,
    quant: Option<&QuantSpec>,
    training: bool,
    pool: &mut Vec<Vec<f32>>,
) -> (Vec<f32>, Saved) {
    let [wq, bq, wk, bk, wv, bv, wo, bo] = p;
    let (hidden, channels) = (bq.len(), bo.len());
    let rows = x.len() / channels;
    let batch = rows / positions;
    let on_grid = |values: &mut Vec<f32>| {
        if let Some(spec) = quant {
            spec.activations.quantize_slice(values);
        }
    };
    // q, k, v, attended and (in backward) their gradients come from the
    // pool: fresh megabytes every step cost page faults.
    let mut project = |w: &[f32], b: &[f32]| {
        let mut y = take_buffer(pool, rows * hidden);
        for row in y.chunks_exact_mut(hidden) {
            row.copy_from_slice(b);
        }
        matmul(rows, hidden, channels, &x, false, w, false, &mut y, true);
        on_grid(&mut y);
        y
    };
    let (q, k, v) = (project(wq, bq), project(wk, bk), project(wv, bv));
    let scale_code = scale.then(|| attention_scale(hidden));
    let factor = scale_code.map_or(1.0, |c| c as f32 / (1u64 << SCALE_FRAC) as f32);
    let (s, h) = (positions, hidden);
    // Every span of it is written below.
    let mut attended = take_buffer(pool, rows * h);
    let (soft, weights, shifts, inverses) = if quant.is_none() && h <= crate::attention::FUSED_MAX_HIDDEN {
        let mut shifts = vec![0.0f32; rows];
        let mut scratch = crate::attention::Scratch::default();
        for b in 0..batch {
            let span = b * s * h..(b + 1) * s * h;
            crate::attention::forward(
                s,
                h,
                &q[span.clone()],
                &k[span.clone()],
                &v[span.clone()],
                factor,
                &mut attended[span],
                &mut shifts[b * s..(b + 1) * s],
                &mut scratch,
            );
        }
        (Vec::new(), Vec::new(), shifts, Vec::new())
    } else {
        // Training keeps every sample's S×S matrices (in buffers reused from
        // step to step); inference needs one sample's at a time.
        let square_len = if training { batch * s * s } else { s * s };
        let mut soft = take_buffer(pool, square_len);
        let mut weights = if quant.is_some() { take_buffer(pool, square_len) } else { Vec::new() };
        let mut scores = if quant.is_some() { vec![0.0f32; s * s] } else { Vec::new() };
        // Without QAT the softmax is left unnormalised: its 1/Σ scales the h
        // outputs of each row here, and the rows of dA and dz in the backward
        // pass, instead of the S values of each row.
        let mut inverses = if quant.is_none() { vec![0.0f32; rows] } else { Vec::new() };
        let mut thin = Vec::new();
        for b in 0..batch {
            let (qb, kb, vb) =
                (&q[b * s * h..(b + 1) * s * h], &k[b * s * h..(b + 1) * s * h], &v[b * s * h..(b + 1) * s * h]);
            let square = if training { b * s * s..(b + 1) * s * s } else { 0..s * s };
            let soft_b = &mut soft[square.clone()];
            if quant.is_some() {
                matmul(s, s, h, qb, false, kb, true, &mut scores, false);
                soft_b.copy_from_slice(&scores);
            } else {
                matmul(s, s, h, qb, false, kb, true, soft_b, false);
            }
            let inverses_b = (!inverses.is_empty()).then(|| &mut inverses[b * s..(b + 1) * s]);
            crate::fastmath::softmax_rows(soft_b, s, factor, inverses_b);
            let applied = match quant {
                Some(spec) => {
                    let frac = 2 * spec.activations.fractional_bits();
                    let weights_b = &mut weights[square];
                    for (row, out) in scores.chunks_exact(s).zip(weights_b.chunks_exact_mut(s)) {
                        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                        for (o, v) in out.iter_mut().zip(softmax_values(&row, frac, scale_code, &spec.activations)) {
                            *o = v as f32;
                        }
                    }
                    &*weights_b
                }
                None => &*soft_b,
            };
            let attended_b = &mut attended[b * s * h..(b + 1) * s * h];
            square_times_thin(s, h, applied, false, vb, attended_b, &mut thin);
            if !inverses.is_empty() {
                scale_rows(attended_b, h, &inverses[b * s..(b + 1) * s]);
            }
        }
        (soft, weights, Vec::new(), inverses)
    };
    // The output projection and the residual.
    on_grid(&mut attended);
    let mut out = rows_of(bo, rows);
    matmul(rows, channels, h, &attended, false, wo, false, &mut out, true);
    on_grid(&mut out);
    for (o, &xi) in out.iter_mut().zip(&x) {
        *o += xi;
    }
    let saved = if training {
        Saved::Attention(Box::new(AttentionSaved { x, q, k, v, soft, weights, attended, shifts, inverses, factor }))
    } else {
        give_back(pool, [soft, weights, q, k, v, attended]);
        Saved::Nothing
    };
    (out, saved)
}

/// Multiplies each `width`-wide row of `x` by its scale.
fn scale_rows(x: &mut [f32], width: usize, scales: &[f32]) {
    for (row, &scale) in x.chunks_exact_mut(width).zip(scales) {
        row.iter_mut().for_each(|v| *v *= scale);
    }
}

/// Under QAT (the row-wise [`crate::attention`] covers float attention up
/// to [`crate::attention::FUSED_MAX_HIDDEN`]), attention with at most this
/// many hidden channels takes its four products with an S×S matrix and a
/// thin S×h one ([`crate::fastmath::thin_product`]) row by row; wider ones
/// use gemm (measured: faster at 8 and 16, slower at 4).
const THIN_ATTENTION_MAX_HIDDEN: usize = 4;
const _: () = assert!(THIN_ATTENTION_MAX_HIDDEN < 5, "engine_matches_burn covers both paths with hidden 2, 3 and 5");

/// `C (s×h) = M (s×s, or Mᵀ with `m_t`) · N (s×h)`: row by row for a thin
/// `h` (up to [`THIN_ATTENTION_MAX_HIDDEN`]), else with gemm.
fn square_times_thin(s: usize, h: usize, m: &[f32], m_t: bool, n: &[f32], c: &mut [f32], scratch: &mut Vec<f32>) {
    if h <= THIN_ATTENTION_MAX_HIDDEN {
        crate::fastmath::thin_product(s, h, m, m_t, n, c, scratch);
    } else {
        matmul(s, h, s, m, m_t, n, false, c, false);
    }
}

/// A buffer of `len` values from `pool` (contents unspecified: the caller
/// writes every value), or a new one. Reusing them spares the page faults of
/// fresh multi-megabyte allocations at every step.
fn take_buffer(pool: &mut Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    // The smallest that fits, so that small requests leave the large
    // buffers to the large ones; else the largest, to grow.
    let fitting = (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
    let buffer = fitting.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
    let mut buffer = buffer.map_or_else(Vec::new, |i| pool.swap_remove(i));
    buffer.resize(len, 0.0);
    buffer
}

/// Returns buffers to `pool` for [`take_buffer`].
fn give_back(pool: &mut Vec<Vec<f32>>, buffers: impl IntoIterator<Item = Vec<f32>>) {
    pool.extend(buffers.into_iter().filter(|b| b.capacity() > 0));
}

/// The attention's backward pass: parameter gradients into `gradients`
/// (in [`crate::layers::ATTENTION_PARAMS`] order at `indices`), returns dx.
fn attention_backward(
    grad: Vec<f32>,
    saved: &AttentionSaved,
    p: [&[f32]; 8],
    indices: &[usize; 8],
    positions: usize,
    gradients: &mut [Option<Vec<f32>>],
    pool: &mut Vec<Vec<f32>>,
) -> Vec<f32> {
    let [wq, _, wk, _, wv, _, wo, _] = p;
    let (hidden, channels) = (p[1].len(), p[7].len());
    let rows = saved.x.len() / channels;
    let batch = rows / positions;
    let (s, h) = (positions, hidden);
    // Output projection; the residual passes `grad` straight to x.
    let mut dwo = vec![0.0f32; h * channels];
    matmul(h, channels, rows, &saved.attended, true, &grad, false, &mut dwo, false);
    gradients[indices[6]] = Some(dwo);
    gradients[indices[7]] = Some(column_sums(&grad, channels));
    // Each of these is written whole below (products without accumulation,
    // or every sample's span).
    let mut dattended = take_buffer(pool, rows * h);
    matmul(rows, h, channels, &grad, false, wo, true, &mut dattended, false);
    let mut dq = take_buffer(pool, rows * h);
    let mut dk = take_buffer(pool, rows * h);
    let mut dv = take_buffer(pool, rows * h);
    let mut dweights = Vec::new();
    if !saved.shifts.is_empty() {
        let mut scratch = crate::attention::Scratch::default();
        for b in 0..batch {
            let span = b * s * h..(b + 1) * s * h;
            crate::attention::backward(
                s,
                h,
                (&saved.q[span.clone()], &saved.k[span.clone()], &saved.v[span.clone()]),
                &saved.attended[span.clone()],
                &saved.shifts[b * s..(b + 1) * s],
                &dattended[span.clone()],
                saved.factor,
                (&mut dq[span.clone()], &mut dk[span.clone()], &mut dv[span]),
                &mut scratch,
            );
        }
    } else {
        dweights = take_buffer(pool, s * s);
        let (mut thin, mut scaled) = (Vec::new(), Vec::new());
        for b in 0..batch {
            let span = b * s * h..(b + 1) * s * h;
            let square = b * s * s..(b + 1) * s * s;
            let da = &dattended[span.clone()];
            // attended = weights · v
            matmul(s, s, h, da, false, &saved.v[span.clone()], true, &mut dweights, false);
            let inverses = (!saved.inverses.is_empty()).then(|| &saved.inverses[b * s..(b + 1) * s]);
            let applied = if saved.weights.is_empty() { &saved.soft } else { &saved.weights };
            // dv = Pᵀ·dA; with P = diag(1/Σ)·E kept as E: Eᵀ·(diag(1/Σ)·dA).
            let da_for_dv = match inverses {
                Some(inverses) => {
                    scaled.clear();
                    scaled.extend_from_slice(da);
                    scale_rows(&mut scaled, h, inverses);
                    &scaled[..]
                }
                None => da,
            };
            square_times_thin(s, h, &applied[square.clone()], true, da_for_dv, &mut dv[span.clone()], &mut thin);
            // Through the float softmax: dz = P ⊙ (dP − Σ dP ⊙ P), times the scale.
            // Without QAT the applied weights are the softmax P, so each row's
            // Σ_j dP_ij·P_ij = dA_i·(P·V)_i = dA_i·attended_i: h products, not S.
            let dots: Option<Vec<f32>> = saved.weights.is_empty().then(|| {
                da.chunks_exact(h)
                    .zip(saved.attended[span.clone()].chunks_exact(h))
                    .map(|(g, a)| g.iter().zip(a).map(|(x, y)| x * y).sum())
                    .collect()
            });
            crate::fastmath::softmax_backward_rows(
                &mut dweights,
                &saved.soft[square.clone()],
                s,
                saved.factor,
                dots.as_deref(),
                inverses,
            );
            // scores = q · kᵀ
            let (k, q) = (&saved.k[span.clone()], &saved.q[span.clone()]);
            square_times_thin(s, h, &dweights, false, k, &mut dq[span.clone()], &mut thin);
            square_times_thin(s, h, &dweights, true, q, &mut dk[span], &mut thin);
        }
    }
    let mut dx = grad;
    for (slot, (w, d)) in [(0, (wq, &dq)), (2, (wk, &dk)), (4, (wv, &dv))] {
        let mut dw = vec![0.0f32; channels * h];
        matmul(channels, h, rows, &saved.x, true, d, false, &mut dw, false);
        gradients[indices[slot]] = Some(dw);
        gradients[indices[slot + 1]] = Some(column_sums(d, h));
        matmul(rows, channels, h, d, false, w, true, &mut dx, true);
    }
    give_back(pool, [dattended, dq, dk, dv, dweights]);
    dx
}

/// The engine: what the last training forward pass saved for its backward
/// pass, how large a convolution's im2col chunks are, and reusable buffers.
pub(crate) struct Engine {
    saved: Vec<Saved>,
    conv_chunk_floats: usize,
    /// Attention's S×S buffers, kept between steps.
    pool: Vec<Vec<f32>>,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine { saved: Vec::new(), conv_chunk_floats: CONV_CHUNK_FLOATS, pool: Vec::new() }
    }
}

/// The result of a training forward and backward pass.
pub(crate) struct StepResult {
    pub logits: Vec<f32>,
    pub loss: f64,
    /// Per parameter, its gradient (`None` when not trainable).
    pub gradients: Vec<Option<Vec<f32>>>,
    /// `(moving mean index, moving variance index, batch mean, batch variance)`.
    pub batch_stats: Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
}

/// The parameter values as the forward pass uses them (on their grids under QAT).
pub(crate) fn parameter_values(table: &ParamTable, quant: Option<&QuantSpec>) -> Vec<Vec<f32>> {
    table.params.iter().map(|p| p.forward_values(quant)).collect()
}

/// Floats of im2col matrix per chunk of a convolution: 256 KiB, a quarter
/// of this class of core's L2, so the matrix, its gradient and the outputs
/// stay in cache between im2col and the products.
const CONV_CHUNK_FLOATS: usize = 1 << 16;

/// Output positions per image, patch length, and input length per image.
fn conv_sizes(g: &ConvGeometry) -> (usize, usize, usize) {
    let positions = g.out_height * g.out_width;
    (positions, g.kernel * g.kernel * g.channels, g.height * g.width * g.channels)
}

/// `(first sample, samples)` of each chunk of a batch for a convolution.
fn conv_chunks(g: &ConvGeometry, batch: usize, floats: usize) -> impl Iterator<Item = (usize, usize)> {
    let (positions, k, _) = conv_sizes(g);
    let per_chunk = (floats / (positions * k).max(1)).max(1);
    (0..batch).step_by(per_chunk).map(move |start| (start, per_chunk.min(batch - start)))
}

fn im2col(x: &[f32], batch: usize, g: &ConvGeometry, col: &mut Vec<f32>) {
    let (positions, k, image_len) = conv_sizes(g);
    let block_len = positions * k;
    col.clear();
    col.resize(batch * block_len, 0.0);
    for (image, block) in x.chunks_exact(image_len).zip(col.chunks_exact_mut(block_len)) {
        g.patch_runs(|to, from, len| block[to..to + len].copy_from_slice(&image[from..from + len]));
    }
}

/// The transpose of [`im2col`]: every patch value added back to its pixel.
fn col2im(col: &[f32], batch: usize, g: &ConvGeometry, dx: &mut [f32]) {
    let (positions, k, image_len) = conv_sizes(g);
    let block_len = positions * k;
    dx.fill(0.0);
    for (image, block) in dx.chunks_exact_mut(image_len).zip(col.chunks_exact(block_len)).take(batch) {
        g.patch_runs(|from, to, len| {
            for (d, s) in image[to..to + len].iter_mut().zip(&block[from..from + len]) {
                *d += s;
            }
        });
    }
}

/// GELU (exact, erf form) and its derivative.
fn gelu(x: f32) -> (f32, f32) {
    let x = x as f64;
    let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    ((x * cdf) as f32, (cdf + x * pdf) as f32)
}

/// A pointwise activation on `x` in place; returns the derivatives.
fn activate(x: &mut [f32], act: Activation, quant: bool) -> Vec<f32> {
    let mut slopes = vec![0.0f32; x.len()];
    match act {
        Activation::Relu => {
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                *s = (*v > 0.0) as u8 as f32;
                *v = v.max(0.0);
            }
        }
        Activation::LeakyRelu => {
            let slope = if quant { leaky_slope().values()[0] as f32 } else { Activation::LEAKY_SLOPE };
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                // At 0 the slope is 1, as burn's `x < 0` mask has it.
                *s = if *v >= 0.0 { 1.0 } else { slope };
                *v *= *s;
            }
        }
        Activation::Identity | Activation::Softmax => slopes.fill(1.0),
        Activation::Gelu => {
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                (*v, *s) = gelu(*v);
            }
        }
        Activation::Tanh | Activation::Sigmoid => {
            let kind = if act == Activation::Tanh {
                crate::fastmath::Pointwise::Tanh
            } else {
                crate::fastmath::Pointwise::Sigmoid
            };
            let mut values = vec![0.0f32; x.len()];
            crate::fastmath::evaluate(kind, x, &mut values, &mut slopes);
            if quant {
                let (table, entries) = ActivationTable::cached(act).expect("tanh and sigmoid have tables");
                for (v, &input) in values.iter_mut().zip(x.iter()) {
                    *v = entries[table.index_of_value(input as f64)] as f32;
                }
            }
            x.copy_from_slice(&values);
        }
    }
    slopes
}

impl Engine {
    /// The forward pass to logits (`[batch, classes]`), in training mode
    /// (batch statistics, with what backward needs saved) or inference mode.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        net: &Net,
        params: &[Vec<f32>],
        mut x: Vec<f32>,
        batch: usize,
        training: bool,
        quant: Option<&QuantSpec>,
        batch_stats: &mut Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
    ) -> Vec<f32> {
        self.saved.clear();
        if let Some(spec) = quant {
            spec.input.quantize_slice(&mut x);
        }
        let last = net.layers.len().saturating_sub(1);
        for (position, layer) in net.layers.iter().enumerate() {
            let saved = match layer {
                NetLayer::Dense { kernel, bias } => {
                    let outputs = params[*bias].len();
                    let inputs = params[*kernel].len() / outputs;
                    let rows = x.len() / inputs;
                    let mut y = rows_of(&params[*bias], rows);
                    matmul(rows, outputs, inputs, &x, false, &params[*kernel], false, &mut y, true);
                    let input = std::mem::replace(&mut x, y);
                    if training { Saved::Input(input) } else { Saved::Nothing }
                }
                NetLayer::Conv2d { kernel, bias, geometry: g } => {
                    let (positions, k, image_len) = conv_sizes(g);
                    let mut y = rows_of(&params[*bias], batch * positions);
                    let mut col = Vec::new();
                    for (start, n) in conv_chunks(g, batch, self.conv_chunk_floats) {
                        im2col(&x[start * image_len..(start + n) * image_len], n, g, &mut col);
                        let out = &mut y[start * positions * g.filters..];
                        matmul(n * positions, g.filters, k, &col, false, &params[*kernel], false, out, true);
                    }
                    let input = std::mem::replace(&mut x, y);
                    if training { Saved::Input(input) } else { Saved::Nothing }
                }
                NetLayer::BatchNorm { gamma, beta, moving_mean, moving_variance } => {
                    let features = params[*gamma].len();
                    let rows = x.len() / features;
                    if training {
                        let mut mean = vec![0.0f64; features];
                        let mut var = vec![0.0f64; features];
                        for row in x.chunks_exact(features) {
                            for (m, &v) in mean.iter_mut().zip(row) {
                                *m += v as f64;
                            }
                        }
                        mean.iter_mut().for_each(|m| *m /= rows as f64);
                        for row in x.chunks_exact(features) {
                            for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                                *s += (v as f64 - m) * (v as f64 - m);
                            }
                        }
                        var.iter_mut().for_each(|s| *s /= rows as f64);
                        let inverse_std: Vec<f32> =
                            var.iter().map(|&v| (1.0 / (v + BATCH_NORM_EPSILON).sqrt()) as f32).collect();
                        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
                        let (gamma, beta) = (&params[*gamma][..features], &params[*beta][..features]);
                        let mut normalized = x.clone();
                        for (row, out) in normalized.chunks_exact_mut(features).zip(x.chunks_exact_mut(features)) {
                            let columns = row.iter_mut().zip(out.iter_mut()).zip(&mean32).zip(&inverse_std);
                            for ((((n, o), &m), &s), (&g, &b)) in columns.zip(gamma.iter().zip(beta)) {
                                *n = (*n - m) * s;
                                *o = *n * g + b;
                            }
                        }
                        batch_stats.push((
                            *moving_mean,
                            *moving_variance,
                            mean32,
                            var.iter().map(|&v| v as f32).collect(),
                        ));
                        Saved::Norm { normalized, inverse_std }
                    } else {
                        let (scale, shift): (Vec<f32>, Vec<f32>) = match quant {
                            Some(spec) => {
                                let (s, t) = fold_batch_norm(
                                    &params[*gamma],
                                    &params[*beta],
                                    &params[*moving_mean],
                                    &params[*moving_variance],
                                    spec.weights.width,
                                )
                                .expect("BatchNorm parameters of one layer have one length");
                                (
                                    s.values().iter().map(|&v| v as f32).collect(),
                                    t.values().iter().map(|&v| v as f32).collect(),
                                )
                            }
                            None => (0..features)
                                .map(|f| {
                                    let inv =
                                        1.0 / (params[*moving_variance][f] as f64 + BATCH_NORM_EPSILON).sqrt() as f32;
                                    let s = params[*gamma][f] * inv;
                                    (s, params[*beta][f] - params[*moving_mean][f] * s)
                                })
                                .unzip(),
                        };
                        for row in x.chunks_exact_mut(features) {
                            for ((v, &s), &t) in row.iter_mut().zip(&scale).zip(&shift) {
                                *v = *v * s + t;
                            }
                        }
                        Saved::Nothing
                    }
                }
                NetLayer::Act(act) => {
                    // Inference needs no slopes: ReLU, the commonest, then skips them.
                    if !training && *act == Activation::Relu {
                        x.iter_mut().for_each(|v| *v = v.max(0.0));
                        Saved::Nothing
                    } else {
                        let slopes = activate(&mut x, *act, quant.is_some());
                        if training { Saved::Slopes(slopes) } else { Saved::Nothing }
                    }
                }
                NetLayer::Flatten { .. } => Saved::Nothing,
                NetLayer::Aggregate { elements, mode } => {
                    let features = x.len() / (batch * elements);
                    let mut out = vec![0.0f32; batch * features];
                    let mut winners = Vec::new();
                    for (b, set) in x.chunks_exact(elements * features).enumerate() {
                        let pooled = &mut out[b * features..(b + 1) * features];
                        match mode {
                            Aggregation::Mean => {
                                for row in set.chunks_exact(features) {
                                    for (p, &v) in pooled.iter_mut().zip(row) {
                                        *p += v;
                                    }
                                }
                                pooled.iter_mut().for_each(|p| *p /= *elements as f32);
                            }
                            Aggregation::Max => {
                                for f in 0..features {
                                    let (best, value) = (0..*elements)
                                        .map(|e| (e, set[e * features + f]))
                                        .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
                                    pooled[f] = value;
                                    winners.push((b * elements + best) * features + f);
                                }
                            }
                        }
                    }
                    x = out;
                    if *mode == Aggregation::Max && training { Saved::Argmax(winners) } else { Saved::Nothing }
                }
                NetLayer::ConvAttention { params: indices, positions, scale } => {
                    let p = indices.map(|i| params[i].as_slice());
                    let (out, saved) = attention_forward(
                        std::mem::take(&mut x),
                        p,
                        *positions,
                        *scale,
                        quant,
                        training,
                        &mut self.pool,
                    );
                    x = out;
                    saved
                }
                NetLayer::LayerNorm { .. } => unreachable!("the engine is only used when it supports every layer"),
            };
            if let Some(spec) = quant
                && (!layer_is_accumulator(layer) || position == last)
            {
                spec.activations.quantize_slice(&mut x);
            }
            self.saved.push(saved);
        }
        if net.layers.is_empty()
            && let Some(spec) = quant
        {
            spec.activations.quantize_slice(&mut x);
        }
        x
    }

    /// Logits in inference mode.
    pub fn infer(
        &mut self,
        net: &Net,
        params: &[Vec<f32>],
        x: Vec<f32>,
        batch: usize,
        quant: Option<&QuantSpec>,
    ) -> Vec<f32> {
        self.forward(net, params, x, batch, false, quant, &mut Vec::new())
    }

    /// One training forward and backward pass on `x` (`batch` samples)
    /// against `labels`: logits, mean cross-entropy, gradients.
    pub fn step(
        &mut self,
        net: &Net,
        table: &ParamTable,
        params: &[Vec<f32>],
        x: Vec<f32>,
        labels: &[u32],
        quant: Option<&QuantSpec>,
    ) -> StepResult {
        let batch = labels.len();
        let mut batch_stats = Vec::new();
        let logits = self.forward(net, params, x, batch, true, quant, &mut batch_stats);
        let classes = logits.len() / batch;
        // Softmax cross-entropy and its gradient (softmax − one-hot) / batch.
        let mut grad = Vec::new();
        let loss = crate::fastmath::cross_entropy_rows(&logits, classes, labels, &mut grad);
        for (g, &label) in grad.chunks_exact_mut(classes).zip(labels) {
            g.iter_mut().for_each(|gi| *gi /= batch as f32);
            g[label as usize] -= 1.0 / batch as f32;
        }
        let mut gradients: Vec<Option<Vec<f32>>> = vec![None; params.len()];
        for (position, (layer, saved)) in net.layers.iter().zip(std::mem::take(&mut self.saved)).enumerate().rev() {
            // The input's own gradient is never used: the first layer skips it.
            let first = position == 0;
            grad = match (layer, saved) {
                (NetLayer::Dense { kernel, bias }, Saved::Input(input)) => {
                    let outputs = params[*bias].len();
                    let inputs = params[*kernel].len() / outputs;
                    let rows = input.len() / inputs;
                    let mut dw = vec![0.0f32; inputs * outputs];
                    matmul(inputs, outputs, rows, &input, true, &grad, false, &mut dw, false);
                    gradients[*kernel] = Some(dw);
                    gradients[*bias] = Some(column_sums(&grad, outputs));
                    if first {
                        Vec::new()
                    } else {
                        let mut dx = vec![0.0f32; rows * inputs];
                        matmul(rows, inputs, outputs, &grad, false, &params[*kernel], true, &mut dx, false);
                        dx
                    }
                }
                (NetLayer::Conv2d { kernel, bias, geometry: g }, Saved::Input(input)) => {
                    // The im2col matrix is rebuilt chunk by chunk, in cache,
                    // rather than kept from the forward pass.
                    let (positions, k, image_len) = conv_sizes(g);
                    let out_len = positions * g.filters;
                    let mut dw = vec![0.0f32; k * g.filters];
                    let mut dx = if first { Vec::new() } else { vec![0.0f32; batch * image_len] };
                    let (mut col, mut dcol) = (Vec::new(), Vec::new());
                    for (start, n) in conv_chunks(g, batch, self.conv_chunk_floats) {
                        let rows = n * positions;
                        let grad = &grad[start * out_len..(start + n) * out_len];
                        im2col(&input[start * image_len..(start + n) * image_len], n, g, &mut col);
                        matmul(k, g.filters, rows, &col, true, grad, false, &mut dw, start > 0);
                        if !first {
                            dcol.resize(rows * k, 0.0);
                            matmul(rows, k, g.filters, grad, false, &params[*kernel], true, &mut dcol, false);
                            col2im(&dcol, n, g, &mut dx[start * image_len..(start + n) * image_len]);
                        }
                    }
                    gradients[*kernel] = Some(dw);
                    gradients[*bias] = Some(column_sums(&grad, g.filters));
                    dx
                }
                (NetLayer::BatchNorm { gamma, beta, .. }, Saved::Norm { normalized, inverse_std }) => {
                    let features = inverse_std.len();
                    let rows = (normalized.len() / features) as f32;
                    let mut dgamma = vec![0.0f32; features];
                    let mut dbeta = vec![0.0f32; features];
                    for (g, n) in grad.chunks_exact(features).zip(normalized.chunks_exact(features)) {
                        for (((dg, db), &g), &n) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(g).zip(n) {
                            *dg += g * n;
                            *db += g;
                        }
                    }
                    let scales: Vec<f32> =
                        params[*gamma].iter().zip(&inverse_std).map(|(&g, &s)| g * s / rows).collect();
                    for (g, n) in grad.chunks_exact_mut(features).zip(normalized.chunks_exact(features)) {
                        let columns = g.iter_mut().zip(n).zip(&scales).zip(dbeta.iter().zip(&dgamma));
                        for (((g, &n), &scale), (&db, &dg)) in columns {
                            *g = scale * (rows * *g - db - n * dg);
                        }
                    }
                    gradients[*gamma] = Some(dgamma);
                    gradients[*beta] = Some(dbeta);
                    grad
                }
                (NetLayer::Act(_), Saved::Slopes(slopes)) => {
                    grad.iter_mut().zip(&slopes).for_each(|(g, s)| *g *= s);
                    grad
                }
                (NetLayer::ConvAttention { params: indices, positions, .. }, Saved::Attention(saved)) => {
                    let p = indices.map(|i| params[i].as_slice());
                    let dx = attention_backward(grad, &saved, p, indices, *positions, &mut gradients, &mut self.pool);
                    let AttentionSaved { soft, weights, q, k, v, attended, .. } = *saved;
                    give_back(&mut self.pool, [soft, weights, q, k, v, attended]);
                    dx
                }
                (NetLayer::Flatten { .. }, _) => grad,
                (NetLayer::Aggregate { elements, mode: Aggregation::Mean }, _) => {
                    let features = grad.len() / batch;
                    let mut dx = vec![0.0f32; batch * elements * features];
                    for (b, set) in dx.chunks_exact_mut(elements * features).enumerate() {
                        for row in set.chunks_exact_mut(features) {
                            for (d, &g) in row.iter_mut().zip(&grad[b * features..(b + 1) * features]) {
                                *d = g / *elements as f32;
                            }
                        }
                    }
                    dx
                }
                (NetLayer::Aggregate { elements, mode: Aggregation::Max }, Saved::Argmax(winners)) => {
                    let features = grad.len() / batch;
                    let mut dx = vec![0.0f32; batch * elements * features];
                    for (&w, &g) in winners.iter().zip(&grad) {
                        dx[w] += g;
                    }
                    dx
                }
                _ => unreachable!("every layer saved what its backward pass needs"),
            };
        }
        for (gradient, param) in gradients.iter_mut().zip(&table.params) {
            if !param.trainable {
                *gradient = None;
            }
        }
        StepResult { logits, loss: loss / batch as f64, gradients, batch_stats }
    }
}

/// `rows` copies of `row`, one after another.
fn rows_of(row: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * row.len());
    for _ in 0..rows {
        out.extend_from_slice(row);
    }
    out
}

fn layer_is_accumulator(layer: &NetLayer) -> bool {
    matches!(layer, NetLayer::Dense { .. } | NetLayer::Conv2d { .. })
}

fn column_sums(grad: &[f32], columns: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; columns];
    for row in grad.chunks_exact(columns) {
        for (s, &g) in sums.iter_mut().zip(row) {
            *s += g;
        }
    }
    sums
}

/// The engine against burn's autodiff on the same networks: logits, loss,
/// every parameter gradient and the BatchNorm statistics, in training and
/// inference mode, with and without quantization.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::softmax_cross_entropy;
    use crate::weights::Weights;
    use burn::tensor::{Device, Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use snac_core::arch::{Arch, BlockType, Component, Layer, Norm, Padding, Shape};

    fn nets() -> Vec<(&'static str, Arch)> {
        let conv = |layers: Vec<Layer>| Component { name: "c".into(), block_type: BlockType::Conv, layers };
        let flatten = Component { name: "f".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] };
        let pool =
            |mode| Component { name: "p".into(), block_type: BlockType::Flatten, layers: vec![Layer::Aggregate(mode)] };
        vec![
            (
                "mlp",
                Arch::new(
                    Shape::Flat(12),
                    vec![
                        Component::mlp("a", 10, Norm::Batch, Activation::Relu),
                        Component::mlp("b", 9, Norm::None, Activation::Tanh),
                        Component::mlp("c", 8, Norm::Batch, Activation::Sigmoid),
                        Component::mlp("d", 7, Norm::None, Activation::LeakyRelu),
                        Component::mlp("e", 6, Norm::None, Activation::Gelu),
                        Component::output("o", 4, Activation::Softmax),
                    ],
                ),
            ),
            (
                "conv",
                Arch::new(
                    Shape::Image { height: 7, width: 6, channels: 2 },
                    vec![
                        conv(vec![
                            Layer::Conv2d { filters: 5, kernel: 3, padding: Padding::Valid },
                            Layer::BatchNorm,
                            Layer::Act(Activation::Relu),
                            Layer::ConvAttention { hidden: 3, scale: false },
                            Layer::Act(Activation::Relu),
                            Layer::ConvAttention { hidden: 2, scale: true },
                            // Wider than THIN_ATTENTION_MAX_HIDDEN: gemm's products.
                            Layer::ConvAttention { hidden: 5, scale: true },
                            Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Same },
                            Layer::Act(Activation::Tanh),
                            Layer::Conv2d { filters: 3, kernel: 2, padding: Padding::Same },
                            Layer::Act(Activation::LeakyRelu),
                            Layer::Conv2d { filters: 3, kernel: 1, padding: Padding::Same },
                            Layer::Act(Activation::Relu),
                        ]),
                        flatten,
                        Component::mlp("h", 8, Norm::None, Activation::Relu),
                        Component::output("o", 4, Activation::Softmax),
                    ],
                ),
            ),
            (
                "sets",
                Arch::new(
                    Shape::Set { elements: 5, features: 3 },
                    vec![
                        Component::mlp("phi", 6, Norm::Batch, Activation::Relu),
                        pool(Aggregation::Mean),
                        Component::mlp("rho", 5, Norm::None, Activation::Relu),
                        Component::output("o", 4, Activation::Softmax),
                    ],
                ),
            ),
            (
                "sets max",
                Arch::new(
                    Shape::Set { elements: 5, features: 3 },
                    vec![
                        Component::mlp("phi", 6, Norm::None, Activation::Sigmoid),
                        pool(Aggregation::Max),
                        Component::output("o", 4, Activation::Softmax),
                    ],
                ),
            ),
        ]
    }

    fn close(a: &[f32], b: &[f32], tolerance: f32) -> f64 {
        assert_eq!(a.len(), b.len());
        let good = a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= tolerance * (1.0 + x.abs().max(y.abs()))).count();
        good as f64 / a.len().max(1) as f64
    }

    fn relative_error(a: &[f32], b: &[f32]) -> f64 {
        let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
        let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
        // Plus an absolute floor: a bias before BatchNorm has a zero gradient.
        diff / (norm + 1e-3)
    }

    #[test]
    fn engine_matches_burn() {
        let batch = 16;
        for (name, arch) in nets() {
            for quant in
                [None, Some(QuantSpec::from_qkeras(16, 6).unwrap()), Some(QuantSpec::from_qkeras(8, 3).unwrap())]
            {
                let mut rng = ChaCha8Rng::seed_from_u64(3);
                let mut weights = Weights::init(&arch, &mut rng).unwrap();
                // Non-trivial BatchNorm parameters and statistics.
                for layer in weights.layers.iter_mut().filter(|l| l.kind == "BatchNorm") {
                    for t in &mut layer.tensors {
                        for v in &mut t.values {
                            *v = if t.name == "moving_variance" {
                                rng.random_range(0.5..2.0)
                            } else {
                                rng.random_range(-0.5..1.5)
                            };
                        }
                    }
                }
                let (net, table) = Net::build(&arch, &weights).unwrap();
                assert!(supports(&net));
                let x: Vec<f32> = (0..batch * net.input_features).map(|_| rng.random_range(-2.0..2.0)).collect();
                let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..4)).collect();
                let q = quant.as_ref();
                let label = format!("{name} {:?}", quant.map(|s| s.weights.width));

                // Training mode: burn's autodiff.
                let device = Device::flex().autodiff();
                let tensors: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&device, q).require_grad())).collect();
                let input = Tensor::from_data(TensorData::new(x.clone(), [batch, net.input_features]), &device);
                let mut one_hot = vec![0.0f32; batch * 4];
                for (i, &l) in labels.iter().enumerate() {
                    one_hot[i * 4 + l as usize] = 1.0;
                }
                let mut stats = Vec::new();
                let logits = net.forward(input, &tensors, true, &mut stats, q, None);
                let loss = softmax_cross_entropy(
                    logits.clone(),
                    Tensor::from_data(TensorData::new(one_hot, [batch, 4]), &device),
                );
                let burn_loss = loss.clone().inner().into_scalar::<f32>();
                let burn_logits = logits.inner().into_data().try_into_vec::<f32>().unwrap();
                let mut grads = loss.backward();

                let params = parameter_values(&table, q);
                // Convolutions in one chunk, and one sample per chunk.
                let whole = Engine::default().step(&net, &table, &params, x.clone(), &labels, q);
                let mut chunked = Engine { conv_chunk_floats: 1, ..Engine::default() };
                let result = chunked.step(&net, &table, &params, x.clone(), &labels, q);
                assert_eq!(whole.logits, result.logits, "{label}: chunks change the forward pass");
                for (i, (a, b)) in whole.gradients.iter().zip(&result.gradients).enumerate() {
                    if let (Some(a), Some(b)) = (a, b) {
                        let error = relative_error(a, b);
                        assert!(error < 1e-4, "{label}: chunks change gradient {i} by {error:e}");
                    }
                }
                let share = close(&result.logits, &burn_logits, 1e-4);
                let floor = if quant.is_some() { 0.95 } else { 1.0 };
                assert!(share >= floor, "{label}: only {share} of the training logits agree");
                assert!((result.loss as f32 - burn_loss).abs() < 1e-3 * (1.0 + burn_loss.abs()), "{label}: loss");
                for (i, tensor) in tensors.iter().enumerate() {
                    let expected = tensor
                        .as_ref()
                        .unwrap()
                        .grad_remove(&mut grads)
                        .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
                    let got = result.gradients[i].clone();
                    let (Some(expected), Some(got)) = (expected, got) else {
                        assert!(!table.params[i].trainable, "{label}: parameter {i} has no gradient");
                        continue;
                    };
                    // A flipped rounding in one quantized activation moves many
                    // gradient entries a little: compare whole vectors.
                    let error = relative_error(&got, &expected);
                    let bound = if quant.is_some() { 5e-2 } else { 1e-3 };
                    let name = &table.params[i].name;
                    assert!(error < bound, "{label}: parameter {i} ({name}) gradient differs by {error:e}");
                    assert!(
                        share >= floor,
                        "{label}: parameter {} ({}) gradients agree for only {share}",
                        i,
                        table.params[i].name
                    );
                }
                for ((m, v, mean, var), (bm, bv, bmean, bvar)) in result.batch_stats.iter().zip(stats) {
                    assert_eq!((*m, *v), (bm, bv));
                    let host = |t: Tensor<2>| t.inner().into_data().try_into_vec::<f32>().unwrap();
                    assert!(
                        close(mean, &host(bmean), 1e-4) >= floor && close(var, &host(bvar), 1e-3) >= floor,
                        "{label}: statistics"
                    );
                }

                // Inference mode.
                let plain = Device::flex();
                let tensors: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&plain, q))).collect();
                let input = Tensor::from_data(TensorData::new(x.clone(), [batch, net.input_features]), &plain);
                let expected = net
                    .forward(input, &tensors, false, &mut Vec::new(), q, None)
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap();
                let got = Engine::default().infer(&net, &params, x.clone(), batch, q);
                let chunked = Engine { conv_chunk_floats: 1, ..Engine::default() }.infer(&net, &params, x, batch, q);
                assert_eq!(got, chunked, "{label}: chunks change inference");
                let share = close(&got, &expected, 1e-4);
                assert!(share >= floor, "{label}: only {share} of the inference logits agree");
            }
        }
    }
}
