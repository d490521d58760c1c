//! Convolutional self-attention in the engine
//! ([`crate::layers::conv_attention`]): the 1×1 projections with gemm, and
//! the scores, softmax and weighted sums either row by row
//! ([`crate::attention`], float heads up to its width) or with each
//! sample's S×S matrices (wider heads, and the fixed-point softmax of QAT).

use super::Backprop;
use super::linalg::{column_sums, matmul, rows_of, scale_rows};
use super::pool::{give_back, take_buffer};
use crate::attention::{self, FUSED_MAX_HIDDEN, Scratch};
use crate::fastmath;
use snac_core::fixed::FixedPoint;
use snac_core::quantized::softmax::{SCALE_FRAC, attention_scale, softmax_values};

/// What the attention's backward pass needs.
pub(super) struct AttentionSaved {
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

/// One attention layer's sizes: `rows` (`batch · s`) of the batch, `s`
/// positions per sample and `h` hidden channels.
#[derive(Clone, Copy)]
struct Sizes {
    rows: usize,
    batch: usize,
    s: usize,
    h: usize,
}

/// How the scores are scaled: the fixed-point code of `1/√h` (`None`:
/// unscaled) and its value.
#[derive(Clone, Copy)]
struct ScoreScale {
    code: Option<i64>,
    factor: f32,
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
        fastmath::thin_product(s, h, m, m_t, n, c, scratch);
    } else {
        matmul(s, h, s, m, m_t, n, false, c, false);
    }
}

/// Convolutional self-attention forward ([`crate::layers::conv_attention`])
/// of `x` with the parameters `p` (in [`crate::layers::ATTENTION_PARAMS`]
/// order): the output, and in training what the backward pass needs.
pub(super) fn forward(
    x: Vec<f32>,
    p: [&[f32]; 8],
    positions: usize,
    scale: bool,
    quant: Option<&FixedPoint>,
    training: bool,
    pool: &mut Vec<Vec<f32>>,
) -> (Vec<f32>, Option<Box<AttentionSaved>>) {
    let [wq, bq, wk, bk, wv, bv, wo, bo] = p;
    let (hidden, channels) = (bq.len(), bo.len());
    let rows = x.len() / channels;
    let batch = rows / positions;
    let on_grid = |values: &mut Vec<f32>| {
        if let Some(fixed) = quant {
            fixed.quantize_slice(values);
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
    let code = scale.then(|| attention_scale(hidden));
    let factor = code.map_or(1.0, |c| c as f32 / (1u64 << SCALE_FRAC) as f32);
    let sizes = Sizes { rows, batch, s: positions, h: hidden };
    // Every span of it is written below.
    let mut attended = take_buffer(pool, rows * hidden);
    let (soft, weights, shifts, inverses) = if quant.is_none() && hidden <= FUSED_MAX_HIDDEN {
        let shifts = attend_rows(sizes, factor, [&q[..], &k[..], &v[..]], &mut attended);
        (Vec::new(), Vec::new(), shifts, Vec::new())
    } else {
        let score_scale = ScoreScale { code, factor };
        let qkv = [&q[..], &k[..], &v[..]];
        let (soft, weights, inverses) = attend_squares(sizes, score_scale, qkv, quant, training, &mut attended, pool);
        (soft, weights, Vec::new(), inverses)
    };
    // The output projection and the residual.
    on_grid(&mut attended);
    let mut out = rows_of(bo, rows);
    matmul(rows, channels, hidden, &attended, false, wo, false, &mut out, true);
    on_grid(&mut out);
    for (o, &xi) in out.iter_mut().zip(&x) {
        *o += xi;
    }
    let saved = if training {
        Some(Box::new(AttentionSaved { x, q, k, v, soft, weights, attended, shifts, inverses, factor }))
    } else {
        give_back(pool, [soft, weights, q, k, v, attended]);
        None
    };
    (out, saved)
}

/// The float attention of every sample row by row ([`crate::attention`]),
/// into `attended`; returns each score row's softmax shift.
fn attend_rows(sizes: Sizes, factor: f32, [q, k, v]: [&[f32]; 3], attended: &mut [f32]) -> Vec<f32> {
    let Sizes { rows, batch, s, h } = sizes;
    let mut shifts = vec![0.0f32; rows];
    let mut scratch = Scratch::default();
    for b in 0..batch {
        let span = b * s * h..(b + 1) * s * h;
        attention::forward(
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
    shifts
}

/// The attention of every sample through its S×S score matrix, into
/// `attended`: the float softmax, and under QAT the fixed-point one applied.
/// Returns the float softmax (unnormalised without QAT), the applied
/// weights (empty without QAT) and each row's `1/Σ` (empty under QAT).
fn attend_squares(
    sizes: Sizes,
    scale: ScoreScale,
    [q, k, v]: [&[f32]; 3],
    quant: Option<&FixedPoint>,
    training: bool,
    attended: &mut [f32],
    pool: &mut Vec<Vec<f32>>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Sizes { rows, batch, s, h } = sizes;
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
        fastmath::softmax_rows(soft_b, s, scale.factor, inverses_b);
        let applied = match quant {
            Some(spec) => {
                let weights_b = &mut weights[square];
                fixed_softmax(&scores, s, scale.code, spec, weights_b);
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
    (soft, weights, inverses)
}

/// The fixed-point softmax of each `s`-wide row of `scores` into `out`, as
/// the quantized model computes it.
fn fixed_softmax(scores: &[f32], s: usize, code: Option<i64>, result: &FixedPoint, out: &mut [f32]) {
    let frac = 2 * result.fractional_bits();
    for (row, out) in scores.chunks_exact(s).zip(out.chunks_exact_mut(s)) {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        for (o, v) in out.iter_mut().zip(softmax_values(&row, frac, code, result)) {
            *o = v as f32;
        }
    }
}

/// The attention's backward pass: parameter gradients into `pass` (at
/// `indices`, in [`crate::layers::ATTENTION_PARAMS`] order), returns dx.
/// The saved buffers go back to the pool.
pub(super) fn backward(
    grad: Vec<f32>,
    saved: Box<AttentionSaved>,
    indices: &[usize; 8],
    positions: usize,
    pass: &mut Backprop,
) -> Vec<f32> {
    let params = pass.params;
    let p = indices.map(|i| params[i].as_slice());
    let [wq, _, wk, _, wv, _, wo, _] = p;
    let (hidden, channels) = (p[1].len(), p[7].len());
    let rows = saved.x.len() / channels;
    let sizes = Sizes { rows, batch: rows / positions, s: positions, h: hidden };
    let h = hidden;
    // Output projection; the residual passes `grad` straight to x.
    let mut dwo = vec![0.0f32; h * channels];
    matmul(h, channels, rows, &saved.attended, true, &grad, false, &mut dwo, false);
    pass.gradients[indices[6]] = Some(dwo);
    pass.gradients[indices[7]] = Some(column_sums(&grad, channels));
    // Each of these is written whole below (products without accumulation,
    // or every sample's span).
    let mut dattended = take_buffer(pass.pool, rows * h);
    matmul(rows, h, channels, &grad, false, wo, true, &mut dattended, false);
    let mut dq = take_buffer(pass.pool, rows * h);
    let mut dk = take_buffer(pass.pool, rows * h);
    let mut dv = take_buffer(pass.pool, rows * h);
    let mut dweights = Vec::new();
    if !saved.shifts.is_empty() {
        backward_rows(sizes, &saved, &dattended, [&mut dq, &mut dk, &mut dv]);
    } else {
        dweights = take_buffer(pass.pool, sizes.s * sizes.s);
        backward_squares(sizes, &saved, &dattended, [&mut dq, &mut dk, &mut dv], &mut dweights);
    }
    let mut dx = grad;
    for (slot, (w, d)) in [(0, (wq, &dq)), (2, (wk, &dk)), (4, (wv, &dv))] {
        let mut dw = vec![0.0f32; channels * h];
        matmul(channels, h, rows, &saved.x, true, d, false, &mut dw, false);
        pass.gradients[indices[slot]] = Some(dw);
        pass.gradients[indices[slot + 1]] = Some(column_sums(d, h));
        matmul(rows, channels, h, d, false, w, true, &mut dx, true);
    }
    give_back(pass.pool, [dattended, dq, dk, dv, dweights]);
    let AttentionSaved { soft, weights, q, k, v, attended, .. } = *saved;
    give_back(pass.pool, [soft, weights, q, k, v, attended]);
    dx
}

/// dq, dk, dv of every sample row by row ([`crate::attention`]), the
/// softmax recomputed from the saved shifts.
fn backward_rows(sizes: Sizes, saved: &AttentionSaved, dattended: &[f32], [dq, dk, dv]: [&mut [f32]; 3]) {
    let Sizes { batch, s, h, .. } = sizes;
    let mut scratch = Scratch::default();
    for b in 0..batch {
        let span = b * s * h..(b + 1) * s * h;
        attention::backward(
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
}

/// dq, dk, dv of every sample through its saved S×S matrices, with
/// `dweights` (S×S) as scratch.
fn backward_squares(
    sizes: Sizes,
    saved: &AttentionSaved,
    dattended: &[f32],
    [dq, dk, dv]: [&mut [f32]; 3],
    dweights: &mut [f32],
) {
    let Sizes { batch, s, h, .. } = sizes;
    let (mut thin, mut scaled) = (Vec::new(), Vec::new());
    for b in 0..batch {
        let span = b * s * h..(b + 1) * s * h;
        let square = b * s * s..(b + 1) * s * s;
        let da = &dattended[span.clone()];
        // attended = weights · v
        matmul(s, s, h, da, false, &saved.v[span.clone()], true, dweights, false);
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
        fastmath::softmax_backward_rows(
            dweights,
            &saved.soft[square.clone()],
            s,
            saved.factor,
            dots.as_deref(),
            inverses,
        );
        // scores = q · kᵀ
        let (k, q) = (&saved.k[span.clone()], &saved.q[span.clone()]);
        square_times_thin(s, h, dweights, false, k, &mut dq[span.clone()], &mut thin);
        square_times_thin(s, h, dweights, true, q, &mut dk[span], &mut thin);
    }
}
