//! Vectorised `tanh` and `sigmoid` with their derivatives, for f32 slices.
//!
//! Burn's Flex backend evaluates these with scalar libm calls, which profiling
//! showed to be a third of an MLP trial's time (glibc's `tanhf`/`expm1f`/`expf`,
//! one element at a time). Here they are computed from one branch-free `exp`
//! (Cephes' polynomial, ~1 ulp) that the compiler vectorises; the x86-64 build
//! picks AVX2 at run time. No implicit FMA contraction is used, so every path
//! gives the same bits and training stays deterministic across machines
//! (explicit `mul_add`s are exactly rounded everywhere). The float softmax
//! of attention (S² values a sample) uses a cheaper `exp` to about 6e-6
//! relative error.

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
    // max/min rather than clamp: NaN becomes -87 here (and NaN again below),
    // so that `n` is always in range and converts without a check.
    #[allow(clippy::manual_clamp)] // clamp keeps NaN, which is the point here
    let xc = x.max(-87.0).min(88.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    // SAFETY: `xc` is within [-87, 88], so `n` is an integer within
    // [-125, 127]. (`as i32` would saturate, which does not vectorise.)
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let value = p * f32::from_bits(((n + 127) as u32) << 23);
    if x.is_nan() { x } else { value }
}

/// `2^t` to about 6e-6 relative error, for the float softmax of attention
/// (S² values a sample), about a third of the work of [`exp`]: the fraction
/// on [-½, ½] through a degree-5 polynomial in fused multiply-adds
/// (Estrin's scheme, for a short dependency chain), the integer part
/// rounded by adding and subtracting 1.5·2²³. `t` below -126 counts as
/// -126; NaN stays NaN. `t` must not exceed 127: every caller passes a
/// softmax argument, `x − max(x)` ≤ 0 up to rounding (an upper clamp cost
/// 8 % of a softmax). Callers compile it with FMA (without, `mul_add` is a
/// correct but slow library call).
#[inline(always)]
pub(crate) fn exp2_fast(t: f32) -> f32 {
    /// Adding it rounds a float of magnitude below 2²² to an integer, which
    /// is then the low bits of the sum's representation.
    const ROUNDER: f32 = 12_582_912.0;
    // One `max` that keeps NaN (the comparison is false for it), which then
    // runs through to the result.
    let tc = if t < -126.0 { -126.0 } else { t };
    let rounded = tc + ROUNDER;
    let f = tc - (rounded - ROUNDER);
    let f2 = f * f;
    let low = std::f32::consts::LN_2.mul_add(f, 1.0);
    let middle = 5.550_411e-2f32.mul_add(f, 0.240_226_5);
    let high = 1.333_355_8e-3f32.mul_add(f, 9.618_129e-3);
    let p = high.mul_add(f2, middle).mul_add(f2, low);
    // `rounded`'s bits are 0x4B40_0000 + n for the integer n in [-126, 127];
    // shifted by 23, 0x4B40_0000 drops out and n + 127 lands in the
    // exponent: 2ⁿ.
    p * f32::from_bits(rounded.to_bits().wrapping_add(127) << 23)
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

/// `exp` of every value, in place (~1 ulp; NaN stays NaN, and arguments
/// beyond ±87 saturate).
pub fn exp_slice(x: &mut [f32]) {
    #[inline(always)]
    fn kernel(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = exp(*v);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn kernel_avx2(x: &mut [f32]) {
        kernel(x)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { kernel_avx2(x) };
        return;
    }
    kernel(x)
}

/// Softmax cross-entropy of each row of `logits` (`classes` wide) against
/// its label: the per-row losses' sum, and the softmax written into `probs`.
pub fn cross_entropy_rows(logits: &[f32], classes: usize, labels: &[u32], probs: &mut Vec<f32>) -> f64 {
    probs.clear();
    probs.extend_from_slice(logits);
    let mut maxima = Vec::with_capacity(labels.len());
    for row in probs.chunks_exact_mut(classes) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.iter_mut().for_each(|v| *v -= max);
        maxima.push(max);
    }
    exp_slice(probs);
    let mut loss = 0.0f64;
    for (((row, logit_row), &label), max) in
        probs.chunks_exact_mut(classes).zip(logits.chunks_exact(classes)).zip(labels).zip(maxima)
    {
        let sum: f64 = row.iter().map(|&e| e as f64).sum();
        loss += sum.ln() - (logit_row[label as usize] - max) as f64;
        row.iter_mut().for_each(|e| *e = (*e as f64 / sum) as f32);
    }
    loss
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

/// Three passes a row: the maximum; `exp` with the sum in eight lanes; the
/// division, or, with `inverses`, each row's `1/Σ` written there instead
/// (the exponentials stay unnormalised). `exp(factor·(x − max))` is
/// `2^(x·c − max·c)` with `c = factor·log₂e`, one fused multiply-add (its
/// value for the maximum itself is within rounding of 0).
#[inline(always)]
fn softmax_kernel(x: &mut [f32], cols: usize, factor: f32, mut inverses: Option<&mut [f32]>) {
    let c = factor * std::f32::consts::LOG2_E;
    for (r, row) in x.chunks_exact_mut(cols).enumerate() {
        let shift = lanes_reduce(row, f32::NEG_INFINITY, |m, v| if v > m { v } else { m }) * c;
        let mut lanes = [0.0f32; 8];
        let mut chunks = row.chunks_exact_mut(8);
        for chunk in &mut chunks {
            for i in 0..8 {
                chunk[i] = exp2_fast(chunk[i].mul_add(c, -shift));
                lanes[i] += chunk[i];
            }
        }
        let rest = chunks.into_remainder();
        for v in rest.iter_mut() {
            *v = exp2_fast(v.mul_add(c, -shift));
        }
        let total = lanes.iter().chain(rest.iter()).fold(0.0, |a, &v| a + v);
        let inverse = 1.0 / total;
        match inverses.as_deref_mut() {
            Some(inverses) => inverses[r] = inverse,
            None => row.iter_mut().for_each(|v| *v *= inverse),
        }
    }
}

/// `Σ a_i·b_i` in eight lanes (so that it vectorises).
#[inline(always)]
pub(crate) fn dot_kernel(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// `out (cols×rows) = mᵀ` for `m (rows×cols)`, both row-major.
#[inline(always)]
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    for (r, row) in m.chunks_exact(cols).enumerate().take(rows) {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
}

/// `C (s×h) = M (s×s) · N (s×h)`, or `Mᵀ · N` with `m_t`, for a thin `h`:
/// row by row over `M` with `N`'s columns (or `C`'s) in L1, instead of a
/// general product that packs all of `M` to use each value `h` times.
/// `scratch` holds a transposed `h×s` matrix.
pub fn thin_product(s: usize, h: usize, m: &[f32], m_t: bool, n: &[f32], c: &mut [f32], scratch: &mut Vec<f32>) {
    #[inline(always)]
    fn kernel(s: usize, h: usize, m: &[f32], m_t: bool, n: &[f32], c: &mut [f32], t: &mut Vec<f32>) {
        t.clear();
        t.resize(h * s, 0.0);
        if m_t {
            // Cᵀ[d, :] += N[i, d] · M[i, :]
            for (i, row) in m.chunks_exact(s).enumerate().take(s) {
                for d in 0..h {
                    let a = n[i * h + d];
                    for (ti, &mi) in t[d * s..(d + 1) * s].iter_mut().zip(row) {
                        *ti += a * mi;
                    }
                }
            }
            transpose(t, h, s, c);
        } else {
            transpose(n, s, h, t);
            for (i, row) in m.chunks_exact(s).enumerate().take(s) {
                for d in 0..h {
                    c[i * h + d] = dot_kernel(row, &t[d * s..(d + 1) * s]);
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn kernel_avx2(s: usize, h: usize, m: &[f32], m_t: bool, n: &[f32], c: &mut [f32], t: &mut Vec<f32>) {
        kernel(s, h, m, m_t, n, c, t)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { kernel_avx2(s, h, m, m_t, n, c, scratch) };
        return;
    }
    kernel(s, h, m, m_t, n, c, scratch)
}

/// The softmax's backward pass on every row (`cols` values): with `p` the
/// softmax and `d` the gradient of its output, `d ← p ⊙ (d − Σ d ⊙ p) · factor`.
///
/// `dots`, when given, are the rows' `Σ d ⊙ p` already known (attention
/// has them from its h-wide outputs), which saves a pass over each row.
/// `scales`, when given, multiply each row's `p` (unnormalised exponentials
/// times their `1/Σ` are the softmax); they need `dots`.
pub fn softmax_backward_rows(
    d: &mut [f32],
    p: &[f32],
    cols: usize,
    factor: f32,
    dots: Option<&[f32]>,
    scales: Option<&[f32]>,
) {
    assert!(scales.is_none() || dots.is_some(), "row scales need the rows' dot products");
    #[inline(always)]
    fn kernel(d: &mut [f32], p: &[f32], cols: usize, factor: f32, dots: Option<&[f32]>, scales: Option<&[f32]>) {
        for (row, (dr, pr)) in d.chunks_exact_mut(cols).zip(p.chunks_exact(cols)).enumerate() {
            let dot = match dots {
                Some(dots) => dots[row],
                None => dot_kernel(dr, pr),
            };
            let factor = scales.map_or(factor, |s| factor * s[row]);
            for (di, &pi) in dr.iter_mut().zip(pr) {
                *di = pi * (*di - dot) * factor;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn kernel_avx2(d: &mut [f32], p: &[f32], cols: usize, factor: f32, dots: Option<&[f32]>, scales: Option<&[f32]>) {
        kernel(d, p, cols, factor, dots, scales)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { kernel_avx2(d, p, cols, factor, dots, scales) };
        return;
    }
    kernel(d, p, cols, factor, dots, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(x: &mut [f32], cols: usize, factor: f32, inverses: Option<&mut [f32]>) {
    softmax_kernel(x, cols, factor, inverses)
}

/// Softmax of every row (`cols` values) of `x · factor`, in place; `factor`
/// must be positive. With `inverses` (a value per row), the rows are left
/// as the shifted exponentials and each row's `1/Σ` is written there, for
/// callers that fold the normalisation into what they compute next.
pub fn softmax_rows(x: &mut [f32], cols: usize, factor: f32, inverses: Option<&mut [f32]>) {
    assert!(factor > 0.0, "softmax factor {factor} is not positive");
    if let Some(inverses) = &inverses {
        assert_eq!(inverses.len() * cols, x.len(), "one inverse per row");
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { softmax_avx2(x, cols, factor, inverses) };
        return;
    }
    softmax_kernel(x, cols, factor, inverses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_match_the_definition() {
        for cols in [8, 12] {
            let mut x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.37 - 2.0).collect();
            let original = x.clone();
            softmax_rows(&mut x, cols, 0.5, None);
            for (row, got) in original.chunks(cols).zip(x.chunks(cols)) {
                let z: f64 = row.iter().map(|&v| (v as f64 * 0.5).exp()).sum();
                for (&v, &g) in row.iter().zip(got) {
                    assert!(((v as f64 * 0.5).exp() / z - g as f64).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn softmax_backward_matches_the_definition() {
        let p: Vec<f32> = (0..22).map(|i| ((i * 5) % 7) as f32 * 0.05 + 0.01).collect();
        let d: Vec<f32> = (0..22).map(|i| ((i * 3) % 5) as f32 * 0.3 - 0.6).collect();
        let mut got = d.clone();
        softmax_backward_rows(&mut got, &p, 11, 0.25, None, None);
        for ((dr, pr), gr) in d.chunks(11).zip(p.chunks(11)).zip(got.chunks(11)) {
            let dot: f64 = dr.iter().zip(pr).map(|(&a, &b)| a as f64 * b as f64).sum();
            for ((&di, &pi), &g) in dr.iter().zip(pr).zip(gr) {
                let expected = pi as f64 * (di as f64 - dot) * 0.25;
                assert!((g as f64 - expected).abs() < 1e-6, "{g} vs {expected}");
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
    fn thin_products_match_the_definition() {
        let (s, h) = (19, 3);
        let m: Vec<f32> = (0..s * s).map(|i| ((i * 7) % 23) as f32 * 0.1 - 1.0).collect();
        let n: Vec<f32> = (0..s * h).map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0).collect();
        let mut scratch = Vec::new();
        for m_t in [false, true] {
            let mut c = vec![f32::NAN; s * h];
            thin_product(s, h, &m, m_t, &n, &mut c, &mut scratch);
            for i in 0..s {
                for d in 0..h {
                    let expected: f64 = (0..s)
                        .map(|j| {
                            let mij = if m_t { m[j * s + i] } else { m[i * s + j] };
                            mij as f64 * n[j * h + d] as f64
                        })
                        .sum();
                    assert!((c[i * h + d] as f64 - expected).abs() < 1e-4, "m_t {m_t}: C[{i},{d}]");
                }
            }
        }
    }

    #[test]
    fn cross_entropy_matches_the_definition() {
        let logits: Vec<f32> = (0..30).map(|i| ((i * 7) % 13) as f32 * 0.9 - 4.0).collect();
        let labels = [2u32, 0, 9];
        let mut probs = Vec::new();
        let loss = cross_entropy_rows(&logits, 10, &labels, &mut probs);
        let mut expected = 0.0f64;
        for ((row, &label), p) in logits.chunks(10).zip(&labels).zip(probs.chunks(10)) {
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            expected += z.ln() - row[label as usize] as f64;
            for (&v, &pi) in row.iter().zip(p) {
                assert!(((v as f64).exp() / z - pi as f64).abs() < 1e-6);
            }
        }
        assert!((loss - expected).abs() < 1e-5 * expected.abs(), "{loss} vs {expected}");
    }

    #[test]
    fn exp_keeps_nan_and_saturates() {
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
        assert_eq!(exp(f32::INFINITY), exp(88.0));
        let mut values = [0.0f32; 3];
        let mut slopes = [0.0f32; 3];
        evaluate(Pointwise::Tanh, &[f32::NAN, 1.0, f32::NAN], &mut values, &mut slopes);
        assert!(values[0].is_nan() && values[2].is_nan() && values[1] > 0.76);
    }

    #[test]
    fn softmax_exp_is_accurate_enough() {
        let mut worst = 0.0f64;
        for i in -1260..=1270 {
            let t = i as f32 * 0.1;
            let exact = 2f64.powf(t as f64);
            worst = worst.max(((exp2_fast(t) as f64 - exact) / exact).abs());
        }
        assert!(worst < 1e-5, "relative error {worst}");
        assert!(exp2_fast(f32::NAN).is_nan());
        assert_eq!(exp2_fast(-1000.0), exp2_fast(-126.0));
        assert_eq!(exp2_fast(f32::NEG_INFINITY), exp2_fast(-126.0));
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
