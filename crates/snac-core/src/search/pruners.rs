//! Stopping hopeless trials early (multi-fidelity), with Optuna's pruners:
//! after each epoch a trial reports its validation accuracy (an
//! intermediate value, stored as Optuna stores them) and a [`Pruner`] says
//! whether to stop it. A stopped trial is PRUNED, with its last accuracy.
//!
//! Optuna's pruners compare a trial with every other trial, which is right
//! for one objective. Here accuracy is one objective of several: a small
//! network that is only moderately accurate may be on the Pareto front, and
//! comparing it with large ones would throw it away. So a trial is compared
//! only with its **cost peers**: trials whose BOPs are within a factor
//! [`BOPS_BAND`] of its own (BOPs are known before training). Within that
//! band the rules are Optuna's:
//!
//! - `median` (`MedianPruner`, its defaults: 5 startup trials, no warm-up,
//!   1 trial at least): prune when the trial's best accuracy so far is below
//!   the median of its completed peers' accuracies at the same epoch.
//! - `successive_halving` (`SuccessiveHalvingPruner`: minimum resource 1
//!   epoch, reduction factor 4, minimum early-stopping rate 0): at epochs
//!   1, 4, 16, … (the rungs) a trial goes on only if its accuracy is in the
//!   top quarter of its peers that reached the rung, recorded in Optuna's
//!   `completed_rung_{i}` system attributes.
//! - `hyperband` (`HyperbandPruner`: minimum resource 1, maximum the epochs,
//!   reduction factor 3): several successive-halving brackets of different
//!   aggressiveness; a trial's bracket comes from a CRC-32 of the study name
//!   and its number, weighted by each bracket's budget, as in Optuna, and it
//!   competes only within its bracket.

use super::{FrozenTrial, TrialState};
use crate::config::PrunerKind;
use crate::storage::IntermediateValues;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Two trials are cost peers when their BOPs differ by at most this factor.
pub const BOPS_BAND: f64 = 2.0;

/// The user attribute holding a trial's BOPs (set before training).
pub const BOPS_ATTR: &str = "bops";

impl PrunerKind {
    /// The pruner, for trials of `max_epochs` epochs; `None` for `none`.
    pub fn build(&self, max_epochs: u64) -> Option<Arc<dyn Pruner>> {
        match self {
            PrunerKind::None => None,
            PrunerKind::Median => Some(Arc::new(MedianPruner::default())),
            PrunerKind::SuccessiveHalving => Some(Arc::new(SuccessiveHalving::default())),
            PrunerKind::Hyperband => Some(Arc::new(Hyperband::new(1, max_epochs.max(1), 3))),
        }
    }
}

/// What a pruner sees at one epoch of one trial.
pub struct PruneInput<'a> {
    pub study_name: &'a str,
    /// The trial being trained (RUNNING), with its attributes as stored.
    pub trial: &'a FrozenTrial,
    /// Its BOPs.
    pub bops: f64,
    /// The epoch just finished (from 1) and its accuracy.
    pub step: u64,
    pub value: f64,
    /// Every trial of the study and their intermediate values by trial id.
    pub trials: &'a [Arc<FrozenTrial>],
    pub curves: &'a IntermediateValues,
}

/// A decision to stop: why, in words, and system attributes to store with
/// the trial (successive halving's rungs).
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub prune: Option<String>,
    pub system_attrs: Vec<(String, f64)>,
}

/// Decides, after each epoch, whether a trial goes on.
pub trait Pruner: Send + Sync {
    fn judge(&self, input: &PruneInput) -> Verdict;
}

impl PruneInput<'_> {
    /// The other trials within [`BOPS_BAND`] of this one's BOPs.
    fn peers(&self) -> impl Iterator<Item = &FrozenTrial> {
        self.trials.iter().map(|t| t.as_ref()).filter(move |t| {
            t.number != self.trial.number
                && t.user_attrs.get(BOPS_ATTR).and_then(|b| b.as_f64()).is_some_and(|b| {
                    b > 0.0 && self.bops > 0.0 && (b / self.bops).log2().abs() <= BOPS_BAND.log2() + 1e-12
                })
        })
    }

    /// This trial's curve so far (this step included).
    fn own_curve(&self) -> BTreeMap<u64, f64> {
        let mut curve = self.curves.get(&self.trial.id).cloned().unwrap_or_default();
        curve.insert(self.step, self.value);
        curve
    }
}

/// Optuna's `MedianPruner`, over cost peers.
pub struct MedianPruner {
    pub n_startup_trials: usize,
    pub n_warmup_steps: u64,
    pub n_min_trials: usize,
}

impl Default for MedianPruner {
    fn default() -> MedianPruner {
        MedianPruner { n_startup_trials: 5, n_warmup_steps: 0, n_min_trials: 1 }
    }
}

impl Pruner for MedianPruner {
    fn judge(&self, input: &PruneInput) -> Verdict {
        let completed: Vec<&FrozenTrial> = input.peers().filter(|t| t.state == TrialState::Complete).collect();
        if completed.len() < self.n_startup_trials || input.step <= self.n_warmup_steps {
            return Verdict::default();
        }
        let best = input.own_curve().values().copied().filter(|v| !v.is_nan()).fold(f64::NEG_INFINITY, f64::max);
        let mut at_step: Vec<f64> = completed
            .iter()
            .filter_map(|t| input.curves.get(&t.id)?.get(&input.step).copied())
            .filter(|v| !v.is_nan())
            .collect();
        if at_step.len() < self.n_min_trials {
            return Verdict::default();
        }
        let median = median(&mut at_step);
        let prune = (best < median).then(|| {
            format!(
                "pruned at epoch {}: best accuracy {best:.4} is below the median {median:.4} of {} completed trials \
                 within {BOPS_BAND}x its BOPs (median pruner)",
                input.step,
                at_step.len()
            )
        });
        Verdict { prune, system_attrs: vec![] }
    }
}

/// The median as numpy computes it (the mean of the middle two when even).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// Optuna's `SuccessiveHalvingPruner`, over cost peers (and, in a
/// Hyperband bracket, only the bracket's trials).
pub struct SuccessiveHalving {
    pub min_resource: u64,
    pub reduction_factor: u64,
    pub min_early_stopping_rate: u32,
}

impl Default for SuccessiveHalving {
    fn default() -> SuccessiveHalving {
        SuccessiveHalving { min_resource: 1, reduction_factor: 4, min_early_stopping_rate: 0 }
    }
}

/// Optuna's system attribute for a trial's value at rung `rung`.
pub fn rung_key(rung: u32) -> String {
    format!("completed_rung_{rung}")
}

impl SuccessiveHalving {
    fn judge_among(&self, input: &PruneInput, competitors: &[&FrozenTrial]) -> Verdict {
        let mut verdict = Verdict::default();
        // Rungs this trial has passed already.
        let mut rung = (0..).take_while(|r| input.trial.system_attrs.contains_key(&rung_key(*r))).count() as u32;
        loop {
            let exponent = self.min_early_stopping_rate + rung;
            let promotion_step = self.min_resource.saturating_mul(self.reduction_factor.saturating_pow(exponent));
            if input.step < promotion_step {
                return verdict;
            }
            if input.value.is_nan() {
                verdict.prune = Some(format!("pruned at epoch {}: accuracy is NaN", input.step));
                return verdict;
            }
            let key = rung_key(rung);
            verdict.system_attrs.push((key.clone(), input.value));
            let mut competing: Vec<f64> = competitors
                .iter()
                .filter_map(|t| t.system_attrs.get(&key).and_then(|v| v.as_f64()))
                .chain([input.value])
                .collect();
            if !promotable(input.value, &mut competing, self.reduction_factor) {
                verdict.prune = Some(format!(
                    "pruned at epoch {} (rung {rung}): accuracy {:.4} is not in the top 1/{} of the {} trials \
                     within {BOPS_BAND}x its BOPs that reached this rung (successive halving)",
                    input.step,
                    input.value,
                    self.reduction_factor,
                    competing.len()
                ));
                return verdict;
            }
            rung += 1;
        }
    }
}

/// Optuna's `_is_trial_promotable_to_next_rung`, for a maximised value.
fn promotable(value: f64, competing: &mut [f64], reduction_factor: u64) -> bool {
    let index = (competing.len() / reduction_factor as usize).saturating_sub(1);
    competing.sort_by(|a, b| a.total_cmp(b));
    value >= competing[competing.len() - 1 - index]
}

impl Pruner for SuccessiveHalving {
    fn judge(&self, input: &PruneInput) -> Verdict {
        // Optuna's `min_resource="auto"` waits for a completed trial.
        if !input.trials.iter().any(|t| t.state == TrialState::Complete) {
            return Verdict::default();
        }
        let peers: Vec<&FrozenTrial> = input.peers().collect();
        self.judge_among(input, &peers)
    }
}

/// Optuna's `HyperbandPruner`: successive-halving brackets.
pub struct Hyperband {
    brackets: Vec<SuccessiveHalving>,
    /// Each bracket's share of trials (Optuna's trial allocation budget).
    budgets: Vec<u64>,
}

impl Hyperband {
    pub fn new(min_resource: u64, max_resource: u64, reduction_factor: u64) -> Hyperband {
        let ratio = (max_resource as f64 / min_resource as f64).max(1.0);
        let n = (ratio.ln() / (reduction_factor as f64).ln() + 1e-9).floor() as u32 + 1;
        let brackets: Vec<SuccessiveHalving> =
            (0..n).map(|i| SuccessiveHalving { min_resource, reduction_factor, min_early_stopping_rate: i }).collect();
        let budgets = (0..n)
            .map(|i| {
                let s = n - 1 - i;
                ((n as f64) * (reduction_factor as f64).powi(s as i32) / (s + 1) as f64).ceil() as u64
            })
            .collect();
        Hyperband { brackets, budgets }
    }

    /// The bracket of trial `number` (Optuna's `_get_bracket_id`).
    pub fn bracket_of(&self, study_name: &str, number: u64) -> usize {
        let mut crc = flate2::Crc::new();
        crc.update(format!("{study_name}_{number}").as_bytes());
        let total: u64 = self.budgets.iter().sum();
        let mut n = crc.sum() as u64 % total.max(1);
        for (i, budget) in self.budgets.iter().enumerate() {
            if n < *budget {
                return i;
            }
            n -= budget;
        }
        self.budgets.len() - 1
    }
}

impl Pruner for Hyperband {
    fn judge(&self, input: &PruneInput) -> Verdict {
        let bracket = self.bracket_of(input.study_name, input.trial.number);
        let peers: Vec<&FrozenTrial> =
            input.peers().filter(|t| self.bracket_of(input.study_name, t.number) == bracket).collect();
        self.brackets[bracket].judge_among(input, &peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trial(number: u64, state: TrialState, bops: f64) -> Arc<FrozenTrial> {
        Arc::new(FrozenTrial {
            id: number as i64 + 100,
            number,
            state,
            params: BTreeMap::new(),
            values: None,
            user_attrs: BTreeMap::from([(BOPS_ATTR.to_string(), json!(bops))]),
            system_attrs: BTreeMap::new(),
            datetime_start: None,
            datetime_complete: None,
        })
    }

    /// Completed trials 0..n at `bops`, whose curve at epoch 1 is `values`.
    fn study(values: &[f64], bops: f64) -> (Vec<Arc<FrozenTrial>>, IntermediateValues) {
        let trials: Vec<_> = (0..values.len()).map(|i| trial(i as u64, TrialState::Complete, bops)).collect();
        let curves = trials.iter().zip(values).map(|(t, v)| (t.id, BTreeMap::from([(1, *v)]))).collect();
        (trials, curves)
    }

    fn judge(
        pruner: &dyn Pruner,
        trials: &[Arc<FrozenTrial>],
        curves: &IntermediateValues,
        bops: f64,
        v: f64,
    ) -> Verdict {
        let me = trial(99, TrialState::Running, bops);
        pruner.judge(&PruneInput { study_name: "s", trial: &me, bops, step: 1, value: v, trials, curves })
    }

    #[test]
    fn median_prunes_below_the_median_of_cost_peers_only() {
        let (trials, curves) = study(&[0.5, 0.6, 0.7, 0.8, 0.9], 1000.0);
        let median = MedianPruner::default();
        assert!(judge(&median, &trials, &curves, 1000.0, 0.69).prune.is_some());
        assert!(judge(&median, &trials, &curves, 1000.0, 0.70).prune.is_none(), "at the median goes on");
        // 4x cheaper: no peers, so a moderately accurate cheap trial survives.
        assert!(judge(&median, &trials, &curves, 250.0, 0.1).prune.is_none());
        // Within 2x: a peer.
        assert!(judge(&median, &trials, &curves, 1900.0, 0.1).prune.is_some());
        // Fewer completed peers than the startup count: never.
        let (few, few_curves) = study(&[0.9, 0.9, 0.9, 0.9], 1000.0);
        assert!(judge(&median, &few, &few_curves, 1000.0, 0.1).prune.is_none());
        // An even count takes the mean of the middle two, as numpy.
        let (even, even_curves) = study(&[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 1000.0);
        assert!(judge(&median, &even, &even_curves, 1000.0, 0.749).prune.is_some());
        assert!(judge(&median, &even, &even_curves, 1000.0, 0.75).prune.is_none());
    }

    #[test]
    fn successive_halving_keeps_the_top_quarter_at_a_rung() {
        let sh = SuccessiveHalving::default();
        let mut trials: Vec<Arc<FrozenTrial>> = Vec::new();
        for (i, v) in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7].iter().enumerate() {
            let mut t = (*trial(i as u64, TrialState::Complete, 1000.0)).clone();
            t.system_attrs.insert(rung_key(0), json!(v));
            trials.push(Arc::new(t));
        }
        let curves = IntermediateValues::new();
        // 8 competitors with this one: index 8/4 - 1 = 1, the second best (0.6).
        let verdict = judge(&sh, &trials, &curves, 1000.0, 0.65);
        assert!(verdict.prune.is_none(), "{verdict:?}");
        assert_eq!(verdict.system_attrs, vec![(rung_key(0), 0.65)]);
        assert!(judge(&sh, &trials, &curves, 1000.0, 0.55).prune.is_some());
        // Outside the BOPs band nobody competes: promoted.
        assert!(judge(&sh, &trials, &curves, 10.0, 0.05).prune.is_none());
        // Between rungs (epoch 2 < 4 after passing rung 0) nothing happens.
        let mut me = (*trial(99, TrialState::Running, 1000.0)).clone();
        me.system_attrs.insert(rung_key(0), json!(0.9));
        let input = PruneInput {
            study_name: "s",
            trial: &me,
            bops: 1000.0,
            step: 2,
            value: 0.0,
            trials: &trials,
            curves: &curves,
        };
        assert_eq!(sh.judge(&input), Verdict::default());
    }

    #[test]
    fn hyperband_brackets_follow_optunas_budgets() {
        // 20 epochs, factor 3: brackets with min early-stopping rates 0, 1, 2.
        let hb = Hyperband::new(1, 20, 3);
        assert_eq!(hb.brackets.len(), 3);
        // Optuna: ceil(n · η^s / (s + 1)) for s = n-1-i: 9, 5, 3.
        assert_eq!(hb.budgets, vec![9, 5, 3]);
        let counts = (0..1700).fold([0usize; 3], |mut c, n| {
            c[hb.bracket_of("study", n)] += 1;
            c
        });
        // Shares near 9:5:3 of 1700 (900, 500, 300).
        assert!(counts.iter().zip([900, 500, 300]).all(|(c, e)| (*c as i64 - e).abs() < 80), "{counts:?}");
        assert_eq!(hb.bracket_of("study", 5), hb.bracket_of("study", 5));
    }
}
