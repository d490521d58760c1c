//! Vectorised `tanh` and `sigmoid` with their derivatives, for f32 slices.
//!
//! Burn's Flex backend evaluates these with scalar libm calls, which profiling
//! showed to be a third of an MLP trial's time (glibc's `tanhf`/`expm1f`/`expf`,
//! one element at a time). Here they are computed from one branch-free `exp`
//! (Cephes' polynomial, ~1 ulp) that the compiler vectorises; the x86-64 build
//! picks AVX2 at run time. No FMA contraction is used, so every path gives the
//! same bits and training stays deterministic across machines.

/// Which function to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pointwise {
    Tanh,
    Sigmoid,
}

#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn kernel(kind: Pointwise, xs: &[f32], values: &mut [f32], slopes: &mut [f32]) {
    let n = xs.len().min(values.len()).min(slopes.len());
    let (xs, values, slopes) = (&xs[..n], &mut values[..n], &mut slopes[..n]);
    match kind {
        Pointwise::Tanh => {
            for i in 0..n {
                let t = 1.0 - 2.0 / (exp(2.0 * xs[i]) + 1.0);
                values[i] = t;
                slopes[i] = 1.0 - t * t;
            }
        }
        Pointwise::Sigmoid => {
            for i in 0..n {
                let s = 1.0 / (1.0 + exp(-xs[i]));
                values[i] = s;
                slopes[i] = s * (1.0 - s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn kernel_avx2(kind: Pointwise, xs: &[f32], values: &mut [f32], slopes: &mut [f32]) {
    kernel(kind, xs, values, slopes)
}

/// Writes `f(x)` into `values` and `f'(x)` into `slopes`.
pub fn evaluate(kind: Pointwise, xs: &[f32], values: &mut [f32], slopes: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { kernel_avx2(kind, xs, values, slopes) };
        return;
    }
    kernel(kind, xs, values, slopes)
}

/// Eight running lanes, so that reductions vectorise (a single float
/// accumulator has to keep its order and stays scalar).
#[inline(always)]
fn lanes_reduce(row: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..8 {
            lanes[i] = f(lanes[i], chunk[i]);
        }
    }
    let mut total = init;
    for &v in lanes.iter().chain(rest) {
        total = f(total, v);
    }
    total
}

#[inline(always)]
fn softmax_kernel(x: &mut [f32], cols: usize, factor: f32) {
    for row in x.chunks_exact_mut(cols) {
        for v in row.iter_mut() {
            *v *= factor;
        }
        let max = lanes_reduce(row, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inverse = 1.0 / lanes_reduce(row, 0.0, |a, v| a + v);
        for v in row.iter_mut() {
            *v *= inverse;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_avx2(x: &mut [f32], cols: usize, factor: f32) {
    softmax_kernel(x, cols, factor)
}

/// Softmax of every row (`cols` values) of `x · factor`, in place.
pub fn softmax_rows(x: &mut [f32], cols: usize, factor: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { softmax_avx2(x, cols, factor) };
        return;
    }
    softmax_kernel(x, cols, factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_match_the_definition() {
        let mut x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.37 - 2.0).collect();
        let original = x.clone();
        softmax_rows(&mut x, 8, 0.5);
        for (row, got) in original.chunks(8).zip(x.chunks(8)) {
            let z: f64 = row.iter().map(|&v| (v as f64 * 0.5).exp()).sum();
            for (&v, &g) in row.iter().zip(got) {
                assert!(((v as f64 * 0.5).exp() / z - g as f64).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn matches_libm() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).chain([-100.0, -50.0, 50.0, 100.0, 0.0]).collect();
        let mut values = vec![0.0; xs.len()];
        let mut slopes = vec![0.0; xs.len()];
        for kind in [Pointwise::Tanh, Pointwise::Sigmoid] {
            evaluate(kind, &xs, &mut values, &mut slopes);
            let mut generic_values = vec![0.0; xs.len()];
            let mut generic_slopes = vec![0.0; xs.len()];
            kernel(kind, &xs, &mut generic_values, &mut generic_slopes);
            assert_eq!(values, generic_values, "the vectorised and plain paths give the same bits");
            for (i, &x) in xs.iter().enumerate() {
                let x = x as f64;
                let (f, g) = match kind {
                    Pointwise::Tanh => (x.tanh(), 1.0 - x.tanh().powi(2)),
                    Pointwise::Sigmoid => {
                        let s = 1.0 / (1.0 + (-x).exp());
                        (s, s * (1.0 - s))
                    }
                };
                assert!((values[i] as f64 - f).abs() < 2e-7, "{kind:?}({x}) = {} vs {f}", values[i]);
                assert!((slopes[i] as f64 - g).abs() < 4e-7, "{kind:?}'({x}) = {} vs {g}", slopes[i]);
            }
        }
    }

    #[test]
    fn exp_is_accurate() {
        for i in -870..=880 {
            let x = i as f32 * 0.1;
            let relative = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            assert!(relative < 3e-7, "exp({x}): relative error {relative}");
        }
    }
}
