//! A dispersive-readout simulator: single-shot I/Q traces of a transmon read
//! through a resonator, calibrated to the QICK traces of SNAC-Pack's tutorial 3
//! (see `../shared/data/SOURCES.md`), for users without the real data.
//!
//! The model, per shot: the qubit is prepared in the labelled state (or, with a
//! small preparation error, in the other one); after a cable delay the
//! resonator field rings up towards the state's steady-state I/Q point,
//! spiralling at the state's dispersive detuning (±χ) with time constant
//! `ring_up_ns` (2/κ); an excited qubit decays to ground at a time drawn from
//! an exponential with mean T1, after which the field relaxes to the ground
//! point the same way. Each quadrature gets Gaussian noise with the measured
//! per-sample std and lag-1 / lag-2 correlations: a fast AR(2) process fitted
//! by Yule–Walker plus a slow Ornstein–Uhlenbeck component (amplifier drift),
//! whose share is fitted to the real accuracy-versus-window curve. Values are
//! rounded to ADC integers.
//!
//! ```
//! use snac_core::data::{QubitSimParams, simulate_qubit};
//! let params = QubitSimParams { samples: 50, ..QubitSimParams::default() };
//! let (x, y) = simulate_qubit(&params, 10, 7);
//! assert_eq!((x.len(), y.len()), (10 * 2 * 50, 10));
//! ```

use super::files::write_npy;
use super::qubit::QUBIT_FILES;
use anyhow::{Context, Result, ensure};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Physical parameters; the defaults are the QICK/ZCU216 calibration. As YAML
/// (`snac data simulate-qubit --params FILE`), every key is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QubitSimParams {
    /// I/Q samples per trace (770 in the QICK set).
    pub samples: usize,
    /// Sampling period (≈2.6 ns: 2000 ns in 770 samples).
    pub sample_ns: f64,
    /// Per-sample noise standard deviation of I and of Q, ADC units (≈780).
    pub noise_std: f64,
    /// Noise autocorrelation at lags 1 and 2 (0.31 and −0.22 measured).
    pub noise_lag1: f64,
    pub noise_lag2: f64,
    /// Share of the noise variance in a slow component (an Ornstein–Uhlenbeck
    /// process with correlation time `slow_noise_ns`), part of the lag
    /// correlations above. It sets how much longer windows gain, and is
    /// fitted to the real accuracy-versus-window curve.
    pub slow_noise_fraction: f64,
    pub slow_noise_ns: f64,
    /// Steady-state (I, Q) of the ground and the excited state, ADC units
    /// (measured means over samples 100–500: (−12, 144) and (138, −86)).
    pub ground_iq: [f64; 2],
    pub excited_iq: [f64; 2],
    /// Time before the readout pulse reaches the ADC.
    pub delay_ns: f64,
    /// Resonator ring-up time constant 2/κ.
    pub ring_up_ns: f64,
    /// Dispersive shift χ/2π: the field spirals at +χ (ground) or −χ (excited).
    pub chi_mhz: f64,
    /// Energy relaxation time T1 of the excited state.
    pub t1_us: f64,
    /// Probability that a shot labelled ground starts excited (thermal population).
    pub ground_prep_error: f64,
    /// Probability that a shot labelled excited starts in ground (π-pulse error).
    pub excited_prep_error: f64,
}

impl Default for QubitSimParams {
    fn default() -> QubitSimParams {
        QubitSimParams {
            samples: 770,
            sample_ns: 2.6,
            noise_std: 780.0,
            noise_lag1: 0.31,
            noise_lag2: -0.22,
            slow_noise_fraction: 0.045,
            slow_noise_ns: 52.0,
            ground_iq: [-12.0, 144.0],
            excited_iq: [138.0, -86.0],
            delay_ns: 100.0,
            ring_up_ns: 60.0,
            chi_mhz: 1.0,
            t1_us: 25.0,
            ground_prep_error: 0.02,
            excited_prep_error: 0.02,
        }
    }
}

impl QubitSimParams {
    /// Reads parameters from a YAML file (keys as the field names, all optional).
    pub fn from_yaml_file(file: &Path) -> Result<QubitSimParams> {
        let text = std::fs::read_to_string(file).with_context(|| format!("could not read {}", file.display()))?;
        let params: QubitSimParams = serde_saphyr::from_str(&text).with_context(|| {
            format!(
                "{}: not a qubit simulator parameter file (keys: samples, sample_ns, noise_std, noise_lag1, \
                 noise_lag2, slow_noise_fraction, slow_noise_ns, ground_iq, excited_iq, delay_ns, ring_up_ns, \
                 chi_mhz, t1_us, ground_prep_error, excited_prep_error)",
                file.display()
            )
        })?;
        params.check().with_context(|| file.display().to_string())?;
        Ok(params)
    }

    /// Errors name the parameter, its value and what is accepted.
    pub fn check(&self) -> Result<()> {
        ensure!(self.samples >= 1, "qubit simulator: samples {} must be at least 1", self.samples);
        for (name, value) in [
            ("sample_ns", self.sample_ns),
            ("noise_std", self.noise_std),
            ("ring_up_ns", self.ring_up_ns),
            ("slow_noise_ns", self.slow_noise_ns),
            ("t1_us", self.t1_us),
        ] {
            ensure!(value.is_finite() && value > 0.0, "qubit simulator: {name} {value} must be a positive number");
        }
        ensure!(
            self.delay_ns.is_finite() && self.delay_ns >= 0.0,
            "qubit simulator: delay_ns {} must be 0 or more",
            self.delay_ns
        );
        ensure!(self.chi_mhz.is_finite(), "qubit simulator: chi_mhz {} must be a number", self.chi_mhz);
        for (name, value) in
            [("ground_prep_error", self.ground_prep_error), ("excited_prep_error", self.excited_prep_error)]
        {
            ensure!((0.0..=1.0).contains(&value), "qubit simulator: {name} {value} must be a probability in [0, 1]");
        }
        let (r1, r2) = self.fast_correlations();
        let (phi1, phi2) = self.ar2();
        ensure!(
            self.slow_noise_fraction < 1.0
                && r1.abs() < 1.0
                && phi2.abs() < 1.0
                && phi1 + phi2 < 1.0
                && phi2 - phi1 < 1.0
                && self.innovation_variance() > 0.0,
            "qubit simulator: noise_lag1 {} and noise_lag2 {} (with slow_noise_fraction {}) are not the correlations \
             of a stationary noise (need |lag1| < 1 and 2·lag1² − 1 < lag2 < 1 for the fast part, here lag1 {r1:.3}, \
             lag2 {r2:.3})",
            self.noise_lag1,
            self.noise_lag2,
            self.slow_noise_fraction
        );
        Ok(())
    }

    /// Per-sample correlation of the slow component.
    fn slow_decay(&self) -> f64 {
        (-self.sample_ns / self.slow_noise_ns).exp()
    }

    /// Lag-1 and lag-2 correlations left for the fast component.
    fn fast_correlations(&self) -> (f64, f64) {
        let (c, r) = (self.slow_noise_fraction, self.slow_decay());
        ((self.noise_lag1 - c * r) / (1.0 - c), (self.noise_lag2 - c * r * r) / (1.0 - c))
    }

    /// AR(2) coefficients of the fast component (Yule–Walker).
    fn ar2(&self) -> (f64, f64) {
        let (r1, r2) = self.fast_correlations();
        let denominator = 1.0 - r1 * r1;
        (r1 * (1.0 - r2) / denominator, (r2 - r1 * r1) / denominator)
    }

    /// Variance of the fast component's driving noise, as a fraction of its variance.
    fn innovation_variance(&self) -> f64 {
        let (r1, r2) = self.fast_correlations();
        let (phi1, phi2) = self.ar2();
        1.0 - phi1 * r1 - phi2 * r2
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Correlated noise of one quadrature for one trace: a fast AR(2) part plus
/// the slow part, both stationary from the first sample.
fn noise(params: &QubitSimParams, rng: &mut ChaCha8Rng, out: &mut [f64]) {
    const BURN_IN: usize = 64;
    let (phi1, phi2) = params.ar2();
    let fast_std = params.noise_std * (1.0 - params.slow_noise_fraction).sqrt();
    let innovation = fast_std * params.innovation_variance().sqrt();
    let (mut previous, mut before) = (0.0, 0.0);
    for i in 0..BURN_IN + out.len() {
        let value = phi1 * previous + phi2 * before + innovation * gaussian(rng);
        before = previous;
        previous = value;
        if i >= BURN_IN {
            out[i - BURN_IN] = value;
        }
    }
    let slow_std = params.noise_std * params.slow_noise_fraction.sqrt();
    if slow_std > 0.0 {
        let r = params.slow_decay();
        let mut slow = slow_std * gaussian(rng);
        for value in out.iter_mut() {
            *value += slow;
            slow = r * slow + slow_std * (1.0 - r * r).sqrt() * gaussian(rng);
        }
    }
}

/// One shot of `label` (0 ground, 1 excited) as interleaved I/Q, appended to `out`.
fn shot(params: &QubitSimParams, label: u8, rng: &mut ChaCha8Rng, out: &mut Vec<f32>) {
    let flipped = rng.random::<f64>() < if label == 0 { params.ground_prep_error } else { params.excited_prep_error };
    let starts_excited = (label == 1) != flipped;
    let decay_ns = if starts_excited { -params.t1_us * 1e3 * (1.0 - rng.random::<f64>()).ln() } else { f64::INFINITY };
    let mut noise_i = vec![0.0; params.samples];
    let mut noise_q = vec![0.0; params.samples];
    noise(params, rng, &mut noise_i);
    noise(params, rng, &mut noise_q);
    // Per-sample relaxation factor exp(−(1/τ ± iχ)·dt) of the field towards its target.
    let damping = (-params.sample_ns / params.ring_up_ns).exp();
    let turn = std::f64::consts::TAU * params.chi_mhz * 1e-3 * params.sample_ns;
    let (mut field_i, mut field_q) = (0.0f64, 0.0f64);
    for n in 0..params.samples {
        let t = n as f64 * params.sample_ns;
        if t >= params.delay_ns {
            let excited = starts_excited && t < decay_ns;
            let [target_i, target_q] = if excited { params.excited_iq } else { params.ground_iq };
            let angle = if excited { -turn } else { turn };
            let (di, dq) = (field_i - target_i, field_q - target_q);
            let (c, s) = (damping * angle.cos(), damping * angle.sin());
            field_i = target_i + di * c - dq * s;
            field_q = target_q + di * s + dq * c;
        }
        out.push((field_i + noise_i[n]).round() as f32);
        out.push((field_q + noise_q[n]).round() as f32);
    }
}

/// `n` shots, half ground and half excited (one more ground when `n` is odd)
/// in random order: traces `(n, 2·samples)` row-major and labels. The same
/// `seed` gives the same traces.
pub fn simulate_qubit(params: &QubitSimParams, n: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    labels.shuffle(&mut rng);
    let mut x = Vec::with_capacity(n * 2 * params.samples);
    for &label in &labels {
        shot(params, label as u8, &mut rng, &mut x);
    }
    (x, labels)
}

/// The parameters of a simulated set, written next to its traces (and
/// readable with `--params`).
pub const PARAMS_FILE: &str = "simulation.yaml";

/// Writes `n_train` and `n_test` simulated shots into `dir` under SNAC-Pack's
/// file names ([`QUBIT_FILES`]): float32 traces `(N, 2·samples)` and int64
/// labels, plus the parameters in [`PARAMS_FILE`]. Returns the four paths.
pub fn write_dataset(
    dir: &Path,
    params: &QubitSimParams,
    n_train: usize,
    n_test: usize,
    seed: u64,
) -> Result<[PathBuf; 4]> {
    params.check()?;
    ensure!(
        n_train >= 2 && n_test >= 2,
        "qubit simulator: need at least 2 train and 2 test shots, got {n_train} and {n_test}"
    );
    let paths = QUBIT_FILES.map(|f| dir.join(f));
    let features = 2 * params.samples;
    // Different streams for train and test, both fixed by `seed`.
    let (x, y) = simulate_qubit(params, n_train, seed);
    write_npy(&paths[0], &[n_train, features], &x)?;
    write_npy(&paths[1], &[n_train], &y)?;
    let (x, y) = simulate_qubit(params, n_test, seed ^ 0x7e57_7e57_7e57_7e57);
    write_npy(&paths[2], &[n_test, features], &x)?;
    write_npy(&paths[3], &[n_test], &y)?;
    let record = format!(
        "# snac data simulate-qubit: {n_train} train and {n_test} test shots, seed {seed}\n{}",
        serde_saphyr::to_string(params).context("serialising the simulator parameters")?
    );
    crate::write_atomic(&dir.join(PARAMS_FILE), record.as_bytes())?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean over shots of class `label` and over samples `[from, to)`, per quadrature.
    fn window_mean(x: &[f32], y: &[i64], samples: usize, label: i64, from: usize, to: usize) -> [f64; 2] {
        let mut sum = [0.0; 2];
        let mut count = 0.0;
        for (row, _) in x.chunks_exact(2 * samples).zip(y).filter(|(_, l)| **l == label) {
            for n in from..to {
                sum[0] += row[2 * n] as f64;
                sum[1] += row[2 * n + 1] as f64;
            }
            count += (to - from) as f64;
        }
        [sum[0] / count, sum[1] / count]
    }

    #[test]
    fn qubit_sim_noise_has_the_measured_std_and_lag_correlations() {
        // No signal: what remains is the noise.
        let params = QubitSimParams { ground_iq: [0.0; 2], excited_iq: [0.0; 2], samples: 400, ..Default::default() };
        let (x, y) = simulate_qubit(&params, 400, 1);
        assert_eq!(y.len(), 400);
        let (mut variance, mut lag1, mut lag2, mut count) = (0.0, 0.0, 0.0, 0.0);
        for row in x.chunks_exact(800) {
            for quadrature in 0..2 {
                let v: Vec<f64> = row.iter().skip(quadrature).step_by(2).map(|&v| v as f64).collect();
                for n in 2..v.len() {
                    variance += v[n] * v[n];
                    lag1 += v[n] * v[n - 1];
                    lag2 += v[n] * v[n - 2];
                    count += 1.0;
                }
            }
        }
        let std = (variance / count).sqrt();
        assert!((std - 780.0).abs() < 8.0, "per-sample noise std {std}, want ≈780");
        assert!((lag1 / variance - 0.31).abs() < 0.01, "lag-1 correlation {}", lag1 / variance);
        assert!((lag2 / variance + 0.22).abs() < 0.01, "lag-2 correlation {}", lag2 / variance);
    }

    #[test]
    fn qubit_sim_state_means_match_the_qick_traces() {
        let params = QubitSimParams::default();
        let (x, y) = simulate_qubit(&params, 1000, 2);
        let ground = window_mean(&x, &y, 770, 0, 100, 500);
        let excited = window_mean(&x, &y, 770, 1, 100, 500);
        // Measured over samples 100–500: g ≈ (−12, 144), e ≈ (138, −86), separation ≈ 275.
        // Statistical error of these means ≈ 780/√(500·400) ≈ 2 ADC units; T1 pulls e towards g a little.
        for (got, want) in ground.iter().zip([-12.0, 144.0]) {
            assert!((got - want).abs() < 15.0, "ground mean {ground:?}");
        }
        for (got, want) in excited.iter().zip([138.0, -86.0]) {
            assert!((got - want).abs() < 20.0, "excited mean {excited:?}");
        }
        let separation = ((ground[0] - excited[0]).powi(2) + (ground[1] - excited[1]).powi(2)).sqrt();
        assert!((245.0..285.0).contains(&separation), "separation {separation}, want ≈275");
        // Before the pulse arrives (100 ns = 38 samples) both states read zero on average.
        let early = window_mean(&x, &y, 770, 1, 0, 30);
        assert!(early[0].abs() < 15.0 && early[1].abs() < 15.0, "{early:?}");
        // Ring-up: the first samples after the delay are far from the steady state.
        let ring = window_mean(&x, &y, 770, 1, 39, 50);
        assert!(ring[0] < 100.0, "excited I during ring-up {ring:?}");
    }

    #[test]
    fn qubit_sim_is_balanced_seeded_and_t1_decays_excited_shots() {
        let params = QubitSimParams { samples: 100, ..Default::default() };
        let (x, y) = simulate_qubit(&params, 101, 9);
        assert_eq!(y.iter().filter(|&&l| l == 1).count(), 50);
        assert_eq!(y.iter().filter(|&&l| l == 0).count(), 51);
        assert!(x.iter().all(|v| v.fract() == 0.0), "ADC integers");
        assert_eq!((x.clone(), y.clone()), simulate_qubit(&params, 101, 9));
        assert_ne!(x, simulate_qubit(&params, 101, 10).0);
        // With a T1 much shorter than the trace, late excited samples sit at the ground point.
        let fast = QubitSimParams { samples: 770, t1_us: 0.1, excited_prep_error: 0.0, ..Default::default() };
        let (x, y) = simulate_qubit(&fast, 400, 4);
        let late = window_mean(&x, &y, 770, 1, 500, 770);
        assert!((late[0] + 12.0).abs() < 15.0 && (late[1] - 144.0).abs() < 15.0, "{late:?}");
        let slow = QubitSimParams { t1_us: 1e6, ..fast };
        let (x, y) = simulate_qubit(&slow, 400, 4);
        let late = window_mean(&x, &y, 770, 1, 500, 770);
        assert!((late[0] - 138.0).abs() < 15.0 && (late[1] + 86.0).abs() < 15.0, "{late:?}");
    }

    #[test]
    fn qubit_sim_writes_snac_pack_file_names_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let params = QubitSimParams { samples: 30, ..Default::default() };
        let paths = write_dataset(dir.path(), &params, 40, 10, 1).unwrap();
        let names: Vec<&str> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, QUBIT_FILES);
        let (dims, _) = crate::data::read_npy_f32(&paths[0]).unwrap();
        assert_eq!(dims, vec![40, 60]);
        let (dims, _) = crate::data::read_npy_f32(&paths[2]).unwrap();
        assert_eq!(dims, vec![10, 60]);
        let (dims, labels) = crate::data::read_npy_f32(&paths[1]).unwrap();
        assert_eq!((dims, labels.iter().filter(|&&l| l == 1.0).count()), (vec![40], 20));
        // The parameters are recorded, and read back the same.
        let recorded = QubitSimParams::from_yaml_file(&dir.path().join(PARAMS_FILE)).unwrap();
        assert_eq!(recorded, params);
        let partial = dir.path().join("partial.yaml");
        std::fs::write(&partial, "t1_us: 12.5\nground_iq: [0, 100]\n").unwrap();
        let read = QubitSimParams::from_yaml_file(&partial).unwrap();
        assert_eq!(read, QubitSimParams { t1_us: 12.5, ground_iq: [0.0, 100.0], ..Default::default() });
        std::fs::write(&partial, "t1: 12.5\n").unwrap();
        let err = format!("{:#}", QubitSimParams::from_yaml_file(&partial).unwrap_err());
        assert!(err.contains("partial.yaml") && err.contains("t1_us") && err.contains("t1"), "{err}");
        std::fs::write(&partial, "ground_prep_error: 1.5\n").unwrap();
        let err = format!("{:#}", QubitSimParams::from_yaml_file(&partial).unwrap_err());
        assert!(err.contains("partial.yaml") && err.contains("ground_prep_error 1.5"), "{err}");
        let bad = QubitSimParams { noise_lag1: 0.9, noise_lag2: -0.5, ..Default::default() };
        let err = write_dataset(dir.path(), &bad, 40, 10, 1).unwrap_err().to_string();
        assert!(err.contains("noise_lag1 0.9") && err.contains("stationary"), "{err}");
        let bad = QubitSimParams { t1_us: 0.0, ..Default::default() };
        let err = write_dataset(dir.path(), &bad, 40, 10, 1).unwrap_err().to_string();
        assert!(err.contains("t1_us 0"), "{err}");
    }

    /// Accuracy of a matched filter (mean-difference template, threshold fitted
    /// on training shots) on `samples` I/Q samples from `start`.
    fn matched_filter_accuracy(
        train: &(Vec<f32>, Vec<i64>),
        test: &(Vec<f32>, Vec<i64>),
        start: usize,
        window: usize,
    ) -> f64 {
        let features = 2 * 770;
        let range = 2 * start..2 * (start + window);
        let mut template = vec![0.0f64; range.len()];
        for (row, &label) in train.0.chunks_exact(features).zip(&train.1) {
            let sign = if label == 1 { 1.0 } else { -1.0 };
            for (t, &v) in template.iter_mut().zip(&row[range.clone()]) {
                *t += sign * v as f64;
            }
        }
        let score = |row: &[f32]| template.iter().zip(&row[range.clone()]).map(|(t, &v)| t * v as f64).sum::<f64>();
        let mut scored: Vec<(f64, i64)> =
            train.0.chunks_exact(features).zip(&train.1).map(|(row, &label)| (score(row), label)).collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let excited = scored.iter().filter(|s| s.1 == 1).count();
        let (mut best, mut threshold, mut ground_below, mut excited_below) = (0, 0.0, 0, 0);
        for &(value, label) in &scored {
            if label == 1 {
                excited_below += 1;
            } else {
                ground_below += 1;
            }
            if ground_below + excited - excited_below > best {
                (best, threshold) = (ground_below + excited - excited_below, value);
            }
        }
        let correct = test
            .0
            .chunks_exact(features)
            .zip(&test.1)
            .filter(|(row, label)| (score(row) > threshold) == (**label == 1));
        correct.count() as f64 / test.1.len() as f64
    }

    #[test]
    fn qubit_sim_reproduces_the_real_accuracy_versus_window() {
        let params = QubitSimParams::default();
        let train = simulate_qubit(&params, 3000, 11);
        let test = simulate_qubit(&params, 3000, 12);
        // board_comparison.ipynb on real QICK traces: 0.961, 0.954, 0.929, 0.857.
        for (start, window, real) in [(0, 770, 0.961), (100, 400, 0.954), (100, 200, 0.929), (100, 100, 0.857)] {
            let accuracy = matched_filter_accuracy(&train, &test, start, window);
            assert!((accuracy - real).abs() < 0.025, "window {window} from {start}: {accuracy:.4}, real {real}");
        }
    }
}
