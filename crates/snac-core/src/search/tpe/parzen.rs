//! The Parzen estimator of TPE for one parameter, as Optuna's univariate
//! `_ParzenEstimator` builds it: a mixture of one kernel per observation
//! plus a prior kernel. A categorical kernel puts `prior_weight / K` on every
//! choice plus one on the observed choice (K kernels, rows normalised); a
//! numerical kernel is a normal truncated to the domain (for integers, the
//! probability mass of the value's cell of width `step`) whose width is the
//! larger gap to its sorted neighbours, clipped to `[range / min(100, 1 + K),
//! range]` ("magic clip"); the prior kernel sits at the centre with the
//! whole range as its width. Log floats live in log space.
//!
//! ```
//! use snac_core::search::Distribution;
//! use snac_core::search::tpe::parzen::ParzenEstimator;
//! use serde_json::json;
//!
//! let d = Distribution::Categorical { choices: vec![json!("a"), json!("b"), json!("c")] };
//! // Two observations of choice 0, equal weights, prior weight 1.
//! let pe = ParzenEstimator::new(&[0.0, 0.0], &[1.0, 1.0], &d, 1.0);
//! // Kernels: (1 + 1/3, 1/3, 1/3) / (2) twice and (1/3, 1/3, 1/3); mixture weights 1/3 each.
//! let p0 = (2.0 * (4.0 / 3.0) / 2.0 + 1.0 / 3.0) / 3.0;
//! assert!((pe.log_pdf(0.0) - f64::ln(p0)).abs() < 1e-12);
//! ```

use crate::trial::Distribution;
use rand::{Rng, RngCore};

/// Smallest weight Optuna lets a kernel have.
pub const EPS: f64 = 1e-12;

/// One parameter's mixture: kernel weights (summing to one, the prior's
/// last) and the kernels.
#[derive(Clone, Debug)]
pub struct ParzenEstimator {
    weights: Vec<f64>,
    kernels: Kernels,
    distribution: Distribution,
}

#[derive(Clone, Debug)]
enum Kernels {
    /// Per kernel, a probability per choice.
    Categorical(Vec<Vec<f64>>),
    /// Truncated normals on `[low, high]` of the transformed value; with a
    /// `step`, the mass of `[x − step/2, x + step/2]` within `[low − step/2,
    /// high + step/2]`.
    Numerical { mus: Vec<f64>, sigmas: Vec<f64>, low: f64, high: f64, step: f64 },
}

impl ParzenEstimator {
    /// The estimator of `observations` (internal values of `distribution`)
    /// with their `weights` (one each, not necessarily normalised) and the
    /// prior's weight.
    pub fn new(observations: &[f64], weights: &[f64], distribution: &Distribution, prior_weight: f64) -> Self {
        Self::with_bandwidth(observations, weights, distribution, prior_weight, None)
    }

    /// Like [`new`](Self::new), with the numerical kernels' widths of
    /// Optuna's multivariate TPE when `joint_dims` is `Some(d)` (the number
    /// of parameters modelled together, this one included): every kernel gets
    /// 0.2 · max(n, 1)^(−1/(d + 4)) · range (n observations), clipped as in
    /// the univariate rule; `None` is the univariate rule (neighbour gaps).
    pub fn with_bandwidth(
        observations: &[f64],
        weights: &[f64],
        distribution: &Distribution,
        prior_weight: f64,
        joint_dims: Option<usize>,
    ) -> Self {
        assert_eq!(observations.len(), weights.len(), "one weight per observation");
        let mut mixture: Vec<f64> = weights.to_vec();
        mixture.push(if observations.is_empty() { 1.0 } else { prior_weight });
        let total: f64 = mixture.iter().sum();
        mixture.iter_mut().for_each(|w| *w /= total);
        let kernels = match distribution {
            Distribution::Categorical { choices } => categorical_kernels(observations, choices.len(), prior_weight),
            Distribution::Int { low, high, step } => {
                let step = *step as f64;
                numerical_kernels(observations, *low as f64, *high as f64, step, joint_dims)
            }
            Distribution::Float { low, high, log: false } => {
                numerical_kernels(observations, *low, *high, 0.0, joint_dims)
            }
            Distribution::Float { low, high, log: true } => {
                let logs: Vec<f64> = observations.iter().map(|v| v.ln()).collect();
                numerical_kernels(&logs, low.ln(), high.ln(), 0.0, joint_dims)
            }
        };
        ParzenEstimator { weights: mixture, kernels, distribution: distribution.clone() }
    }

    /// The mixture weights, the prior's last.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The kernels' centres and widths (numerical parameters, transformed
    /// space), the prior's last.
    pub fn mus_sigmas(&self) -> Option<(&[f64], &[f64])> {
        match &self.kernels {
            Kernels::Numerical { mus, sigmas, .. } => Some((mus, sigmas)),
            Kernels::Categorical(_) => None,
        }
    }

    fn is_log(&self) -> bool {
        matches!(self.distribution, Distribution::Float { log: true, .. })
    }

    /// Draws one internal value: a kernel by weight, then a value from it.
    pub fn sample(&self, rng: &mut dyn RngCore) -> f64 {
        let k = pick(&self.weights, rng.random::<f64>());
        self.sample_kernel(k, rng)
    }

    /// Draws one internal value from kernel `k` (the prior's is the last).
    pub fn sample_kernel(&self, k: usize, rng: &mut dyn RngCore) -> f64 {
        match &self.kernels {
            Kernels::Categorical(rows) => pick(&rows[k], rng.random::<f64>()) as f64,
            Kernels::Numerical { mus, sigmas, low, high, step } => {
                let x = truncated_normal(mus[k], sigmas[k], low - step / 2.0, high + step / 2.0, rng);
                match &self.distribution {
                    Distribution::Int { .. } => (low + ((x - low) / step).round_ties_even() * step).clamp(*low, *high),
                    Distribution::Float { low, high, .. } if self.is_log() => x.exp().clamp(*low, *high),
                    _ => x.clamp(*low, *high),
                }
            }
        }
    }

    /// Log density (log probability for categoricals and integers) of an
    /// internal value under the mixture.
    pub fn log_pdf(&self, value: f64) -> f64 {
        let terms: Vec<f64> = self.kernel_log_pdfs(value).iter().zip(&self.weights).map(|(l, w)| l + w.ln()).collect();
        log_sum_exp(&terms)
    }

    /// Log density of an internal value under each kernel alone (mixture
    /// weights left out), the prior's last.
    pub fn kernel_log_pdfs(&self, value: f64) -> Vec<f64> {
        match &self.kernels {
            Kernels::Categorical(rows) => {
                let i = value as usize;
                rows.iter().map(|row| row[i].ln()).collect()
            }
            Kernels::Numerical { mus, sigmas, low, high, step } => {
                let x = if self.is_log() { value.ln() } else { value };
                mus.iter()
                    .zip(sigmas)
                    .map(|(&mu, &sigma)| {
                        let (lo, hi) = ((low - step / 2.0 - mu) / sigma, (high + step / 2.0 - mu) / sigma);
                        if *step > 0.0 {
                            let (a, b) = ((x - step / 2.0 - mu) / sigma, (x + step / 2.0 - mu) / sigma);
                            log_gauss_mass(a, b) - log_gauss_mass(lo, hi)
                        } else {
                            let z = (x - mu) / sigma;
                            -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln() - sigma.ln() - log_gauss_mass(lo, hi)
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Index `i` of the first cumulative probability that reaches `u` (the
/// last where rounding leaves the total short of one).
fn pick(probabilities: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    for (i, p) in probabilities.iter().enumerate() {
        cumulative += p;
        if cumulative >= u && *p > 0.0 {
            return i;
        }
    }
    probabilities.iter().rposition(|p| *p > 0.0).unwrap_or(0)
}

pub(super) fn log_sum_exp(terms: &[f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

fn categorical_kernels(observations: &[f64], n_choices: usize, prior_weight: f64) -> Kernels {
    if observations.is_empty() {
        return Kernels::Categorical(vec![vec![1.0 / n_choices as f64; n_choices]]);
    }
    let n_kernels = observations.len() + 1;
    let mut rows = vec![vec![prior_weight / n_kernels as f64; n_choices]; n_kernels];
    for (row, &observed) in rows.iter_mut().zip(observations) {
        row[observed as usize] += 1.0;
    }
    for row in &mut rows {
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|p| *p /= sum);
        }
    }
    Kernels::Categorical(rows)
}

/// Centres and widths of the numerical kernels (Optuna's univariate rule
/// without `consider_endpoints`, or its multivariate one with `joint_dims`;
/// with the magic clip).
fn numerical_kernels(observations: &[f64], low: f64, high: f64, step: f64, joint_dims: Option<usize>) -> Kernels {
    let n = observations.len();
    let range = high - low + step;
    let min_sigma = range / f64::min(100.0, 1.0 + (n + 1) as f64);
    let mut mus = observations.to_vec();
    mus.push(0.5 * (low + high));
    let mut sigmas = match joint_dims {
        Some(d) => vec![0.2 * (n.max(1) as f64).powf(-1.0 / (d as f64 + 4.0)) * range; n],
        None => neighbour_gaps(observations, low, high, step),
    };
    sigmas.iter_mut().for_each(|s| *s = s.clamp(min_sigma, range));
    sigmas.push(range);
    Kernels::Numerical { mus, sigmas, low, high, step }
}

/// The univariate widths: each observation's larger gap to its sorted
/// neighbours (the prior's centre and the domain's ends included), the
/// outermost ones their inner gap.
fn neighbour_gaps(observations: &[f64], low: f64, high: f64, step: f64) -> Vec<f64> {
    let n = observations.len();
    let prior_mu = 0.5 * (low + high);
    let mut with_prior: Vec<f64> = observations.to_vec();
    with_prior.push(prior_mu);
    // Ties keep their order (Optuna's argsort is not stable; a tie only
    // swaps widths between equal centres).
    let mut order: Vec<usize> = (0..with_prior.len()).collect();
    order.sort_by(|&i, &j| with_prior[i].total_cmp(&with_prior[j]));
    let mut ends = Vec::with_capacity(with_prior.len() + 2);
    ends.push(low - step / 2.0);
    ends.extend(order.iter().map(|&i| with_prior[i]));
    ends.push(high + step / 2.0);
    let m = with_prior.len();
    let mut sorted_sigmas: Vec<f64> = (1..=m).map(|i| (ends[i] - ends[i - 1]).max(ends[i + 1] - ends[i])).collect();
    if ends.len() >= 4 {
        sorted_sigmas[0] = ends[2] - ends[1];
        sorted_sigmas[m - 1] = ends[m] - ends[m - 1];
    }
    let mut sigmas = vec![0.0; m];
    for (rank, &i) in order.iter().enumerate() {
        sigmas[i] = sorted_sigmas[rank];
    }
    sigmas.truncate(n);
    sigmas
}

/// A normal draw by Box–Muller.
fn standard_normal(rng: &mut dyn RngCore) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A draw of N(mu, sigma²) restricted to `[lo, hi]`, by rejection: the
/// kernels' centres lie in the domain and their widths are at most the
/// domain's, so at least about a fifth of draws land inside.
fn truncated_normal(mu: f64, sigma: f64, lo: f64, hi: f64, rng: &mut dyn RngCore) -> f64 {
    for _ in 0..10_000 {
        let x = mu + sigma * standard_normal(rng);
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    mu.clamp(lo, hi)
}

/// log Φ(x), accurate in the far left tail too.
pub fn log_ndtr(x: f64) -> f64 {
    if x > 6.0 {
        // Φ(x) = 1 − Φ(−x), Φ(−x) tiny.
        return -0.5 * libm::erfc(x / std::f64::consts::SQRT_2);
    }
    if x > -20.0 {
        return (0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)).ln();
    }
    // Asymptotic series of the Mills ratio.
    let x2 = x * x;
    let series = 1.0 - 1.0 / x2 + 3.0 / (x2 * x2) - 15.0 / (x2 * x2 * x2) + 105.0 / (x2 * x2 * x2 * x2);
    -0.5 * x2 - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + series.ln()
}

/// log(Φ(b) − Φ(a)) for a ≤ b, computed on the side where it is accurate.
pub fn log_gauss_mass(a: f64, b: f64) -> f64 {
    let log_diff = |log_big: f64, log_small: f64| log_big + (-(log_small - log_big).exp()).ln_1p();
    if a > 0.0 {
        log_diff(log_ndtr(-a), log_ndtr(-b))
    } else if b < 0.0 {
        log_diff(log_ndtr(b), log_ndtr(a))
    } else {
        let ndtr = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        (-ndtr(a) - ndtr(-b)).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn gauss_mass_matches_known_values() {
        // Φ(1) − Φ(−1) = 0.6826894921370859
        assert!(close(log_gauss_mass(-1.0, 1.0), 0.682_689_492_137_085_9_f64.ln(), 1e-14));
        // Φ(3) − Φ(2) = 0.021400233916549105
        assert!(close(log_gauss_mass(2.0, 3.0), 0.021_400_233_916_549_105_f64.ln(), 1e-13));
        assert!(close(log_gauss_mass(-3.0, -2.0), 0.021_400_233_916_549_105_f64.ln(), 1e-13));
        // Far tail: log Φ(−40) ≈ −804.6084420137538.
        assert!(close(log_ndtr(-40.0), -804.608_442_013_753_8, 1e-12));
        assert!(log_gauss_mass(40.0, 41.0).is_finite());
    }

    #[test]
    fn categorical_density_by_hand() {
        let d = Distribution::Categorical { choices: vec![json!(8), json!(16), json!(32), json!(64)] };
        // Observations 1, 1, 3 with weights 1, 2, 1; prior weight 1.
        let pe = ParzenEstimator::new(&[1.0, 1.0, 3.0], &[1.0, 2.0, 1.0], &d, 1.0);
        // Mixture weights (1, 2, 1, 1) / 5; each kernel row: 1/4 everywhere
        // plus 1 at the observation, over a total of 2.
        let w = [0.2, 0.4, 0.2, 0.2];
        let row = |observed: Option<usize>, c: usize| (0.25 + if observed == Some(c) { 1.0 } else { 0.0 }) / 2.0;
        let obs = [Some(1), Some(1), Some(3), None];
        let prior_row = |c: usize| if obs[3].is_none() { 0.25 } else { row(None, c) };
        for c in 0..4 {
            let p: f64 = (0..3).map(|k| w[k] * row(obs[k], c)).sum::<f64>() + w[3] * prior_row(c);
            assert!(close(pe.log_pdf(c as f64), p.ln(), 1e-12), "choice {c}");
        }
        let total: f64 = (0..4).map(|c| pe.log_pdf(c as f64).exp()).sum();
        assert!(close(total, 1.0, 1e-12));
    }

    #[test]
    fn int_kernels_by_hand() {
        // Integers 1..=5: observations 2 and 4 give, with the prior at 3,
        // sorted centres (2, 3, 4) between ends 0.5 and 5.5: widths
        // max(1.5, 1) = 1.5 and max(1, 1.5) = 1.5, but the first and last take
        // their inner gap (1) as consider_endpoints is off; the clip is
        // [5 / min(100, 4), 5] = [1.25, 5].
        let d = Distribution::Int { low: 1, high: 5, step: 1 };
        let pe = ParzenEstimator::new(&[4.0, 2.0], &[1.0, 1.0], &d, 1.0);
        let (mus, sigmas) = pe.mus_sigmas().unwrap();
        assert_eq!(mus, &[4.0, 2.0, 3.0]);
        assert_eq!(sigmas, &[1.25, 1.25, 5.0]);
        // The probabilities of the five values sum to one.
        let total: f64 = (1..=5).map(|v| pe.log_pdf(v as f64).exp()).sum();
        assert!(close(total, 1.0, 1e-12), "{total}");
        // The mass of 4 under kernel 0 by hand: Φ((4.5−4)/1.25) − Φ((3.5−4)/1.25)
        // over Φ((5.5−4)/1.25) − Φ((0.5−4)/1.25).
        let phi = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        let kernel = |v: f64, mu: f64, s: f64| {
            (phi((v + 0.5 - mu) / s) - phi((v - 0.5 - mu) / s)) / (phi((5.5 - mu) / s) - phi((0.5 - mu) / s))
        };
        let p4 = (kernel(4.0, 4.0, 1.25) + kernel(4.0, 2.0, 1.25) + kernel(4.0, 3.0, 5.0)) / 3.0;
        assert!(close(pe.log_pdf(4.0), p4.ln(), 1e-12));
    }

    #[test]
    fn samples_stay_legal_and_follow_the_density() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let cases = [
            Distribution::Int { low: 2, high: 20, step: 3 },
            Distribution::Float { low: 1e-4, high: 1e-1, log: true },
            Distribution::Float { low: -1.0, high: 1.0, log: false },
            Distribution::Categorical { choices: vec![json!(1), json!(2), json!(3)] },
        ];
        for d in &cases {
            let obs: Vec<f64> = (0..5).map(|_| d.sample(&mut rng)).collect();
            let pe = ParzenEstimator::new(&obs, &[1.0; 5], d, 1.0);
            for _ in 0..500 {
                let v = pe.sample(&mut rng);
                assert!(d.contains(v), "{v} outside {d:?}");
                assert!(pe.log_pdf(v).is_finite());
            }
        }
        // Empirical frequencies of a categorical match its density.
        let d = &cases[3];
        let pe = ParzenEstimator::new(&[2.0, 2.0, 0.0], &[1.0; 3], d, 1.0);
        let mut counts = [0usize; 3];
        let n = 40_000;
        for _ in 0..n {
            counts[pe.sample(&mut rng) as usize] += 1;
        }
        for (c, count) in counts.iter().enumerate() {
            let expected = pe.log_pdf(c as f64).exp();
            assert!((*count as f64 / n as f64 - expected).abs() < 0.01, "choice {c}: {count} vs {expected}");
        }
    }
}
