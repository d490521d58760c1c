//! Aggregate (set pooling) in the engine: the mean or the maximum over each
//! sample's elements, and the gradient back to them.

use snac_core::arch::Aggregation;
use snac_core::quantized::mean_factor;

/// Pools `x` (`batch` sets of `elements` rows) in place to one row per set;
/// for the maximum, returns the winning position of each output (else
/// nothing: the mean's gradient needs none).
pub(super) fn forward(x: &mut Vec<f32>, batch: usize, elements: usize, mode: Aggregation) -> Vec<usize> {
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
                // Times the integer model's 1/N constant (exact in f32).
                let factor = mean_factor(elements).values()[0] as f32;
                pooled.iter_mut().for_each(|p| *p *= factor);
            }
            Aggregation::Max => {
                for f in 0..features {
                    let (best, value) = (0..elements)
                        .map(|e| (e, set[e * features + f]))
                        .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
                    pooled[f] = value;
                    winners.push((b * elements + best) * features + f);
                }
            }
        }
    }
    *x = out;
    winners
}

/// The input gradient of `batch` pooled rows `grad`: spread evenly over the
/// elements (mean), or to each output's `winners` position (maximum).
pub(super) fn backward(
    grad: Vec<f32>,
    batch: usize,
    elements: usize,
    mode: Aggregation,
    winners: &[usize],
) -> Vec<f32> {
    let features = grad.len() / batch;
    let mut dx = vec![0.0f32; batch * elements * features];
    match mode {
        Aggregation::Mean => {
            let factor = mean_factor(elements).values()[0] as f32;
            for (b, set) in dx.chunks_exact_mut(elements * features).enumerate() {
                for row in set.chunks_exact_mut(features) {
                    for (d, &g) in row.iter_mut().zip(&grad[b * features..(b + 1) * features]) {
                        *d = g * factor;
                    }
                }
            }
        }
        Aggregation::Max => {
            for (&w, &g) in winners.iter().zip(&grad) {
                dx[w] += g;
            }
        }
    }
    dx
}
