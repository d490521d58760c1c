//! BatchNorm in the engine: batch statistics and their gradient in
//! training, the moving statistics (folded to fixed point under QAT) in
//! inference.

use super::Backprop;
use crate::layers::BATCH_NORM_EPSILON;
use snac_core::quantized::fold_batch_norm;

/// What BatchNorm's training forward pass gives: the normalised input and
/// 1/σ per feature (for the backward pass), and the batch mean and biased
/// variance (for the moving statistics).
pub(super) struct Normalized {
    pub normalized: Vec<f32>,
    pub inverse_std: Vec<f32>,
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

/// Training mode: normalises `x` in place with the batch's own statistics,
/// then scales by `gamma` and shifts by `beta`.
pub(super) fn train_forward(x: &mut [f32], gamma: &[f32], beta: &[f32]) -> Normalized {
    let features = gamma.len();
    let rows = x.len() / features;
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
    let inverse_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v + BATCH_NORM_EPSILON).sqrt()) as f32).collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let (gamma, beta) = (&gamma[..features], &beta[..features]);
    let mut normalized = x.to_vec();
    for (row, out) in normalized.chunks_exact_mut(features).zip(x.chunks_exact_mut(features)) {
        let columns = row.iter_mut().zip(out.iter_mut()).zip(&mean32).zip(&inverse_std);
        for ((((n, o), &m), &s), (&g, &b)) in columns.zip(gamma.iter().zip(beta)) {
            *n = (*n - m) * s;
            *o = *n * g + b;
        }
    }
    Normalized { normalized, inverse_std, mean: mean32, variance: var.iter().map(|&v| v as f32).collect() }
}

/// Inference mode: `x·scale + shift` in place, with the constants from the
/// moving statistics (fixed-point ones of the layer's weight width under
/// QAT, `quant_width`, as the quantized model folds them).
pub(super) fn eval_forward(x: &mut [f32], [gamma, beta, mean, variance]: [&[f32]; 4], quant_width: Option<u32>) {
    let features = gamma.len();
    let (scale, shift): (Vec<f32>, Vec<f32>) = match quant_width {
        Some(width) => {
            let (s, t) = fold_batch_norm(gamma, beta, mean, variance, width)
                .expect("BatchNorm parameters of one layer have one length");
            (s.values().iter().map(|&v| v as f32).collect(), t.values().iter().map(|&v| v as f32).collect())
        }
        None => (0..features)
            .map(|f| {
                let inv = 1.0 / (variance[f] as f64 + BATCH_NORM_EPSILON).sqrt() as f32;
                let s = gamma[f] * inv;
                (s, beta[f] - mean[f] * s)
            })
            .unzip(),
    };
    for row in x.chunks_exact_mut(features) {
        for ((v, &s), &t) in row.iter_mut().zip(&scale).zip(&shift) {
            *v = *v * s + t;
        }
    }
}

/// Gradients of `gamma` and `beta` (parameter indices) into `pass`, and the
/// input gradient in place of `grad`.
pub(super) fn backward(
    mut grad: Vec<f32>,
    normalized: &[f32],
    inverse_std: &[f32],
    gamma: usize,
    beta: usize,
    pass: &mut Backprop,
) -> Vec<f32> {
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
    let scales: Vec<f32> = pass.params[gamma].iter().zip(inverse_std).map(|(&g, &s)| g * s / rows).collect();
    for (g, n) in grad.chunks_exact_mut(features).zip(normalized.chunks_exact(features)) {
        let columns = g.iter_mut().zip(n).zip(&scales).zip(dbeta.iter().zip(&dgamma));
        for (((g, &n), &scale), (&db, &dg)) in columns {
            *g = scale * (rows * *g - db - n * dg);
        }
    }
    pass.gradients[gamma] = Some(dgamma);
    pass.gradients[beta] = Some(dbeta);
    grad
}
