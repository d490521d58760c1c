//! Tree-structured Parzen Estimator for several objectives (MOTPE), with the
//! semantics of Optuna 4.5's `TPESampler` (univariate, its default, or
//! multivariate, optionally grouped): after `n_startup_trials` random
//! trials, the finished trials are split into a good ("below") set of
//! `gamma(n) = min(⌈n / 10⌉, 25)` trials and the rest; each parameter (or
//! each joint space) gets one Parzen estimator ([`parzen`]) per set, 24
//! candidates are drawn from the good one, and the candidate with the
//! largest log l(x) − log g(x) wins.
//!
//! The split ([`split_trials`]): feasible COMPLETE trials first, by
//! non-domination rank, the last rank that does not fit whole cut by greedy
//! hypervolume subset selection (HSSP) against the reference point
//! max(1.1·worst, 0.9·worst); then PRUNED trials, then infeasible ones by
//! their total violation. The good trials of several objectives are weighted
//! by their hypervolume contribution within the good set
//! ([`weights_below`], infeasible ones get 1e-12); the others, as with one
//! objective, by Optuna's `default_weights` (older trials ramp down past 25).
//! A study is constrained as soon as one trial carries constraint values
//! (system attribute [`crate::trial::CONSTRAINTS_KEY`]); a trial without
//! them then counts as infinitely infeasible, as in Optuna.
//!
//! Conditional parameters: by default Optuna's independent sampling. Each
//! parameter is sampled by itself over the trials that have it (with the
//! same distribution): a width that exists only with four layers learns
//! from the trials with at least four layers, while the split into good and
//! bad uses every trial. With `multivariate` (Optuna's `multivariate=True`)
//! the parameters of a space are drawn jointly ([`multivariate`], from
//! [`Sampler::sample_relative`]); with `group` too, each group of
//! parameters that occur in exactly the same trials (`num_layers` and layer
//! 0; layer 1; ...) is its own space. `search.sampler: auto` uses both.
//!
//! Parallel workers: instead of Optuna's `constant_liar`, trial n learns
//! from the trials numbered at most n − `lag` and waits ([`Sampler::ready`])
//! until those have finished. With `lag` = 1 this is Optuna's sequential
//! TPE; the binary sets `lag` to the number of workers, so the workers
//! rarely wait, and the trials drawn depend on the seed and that number
//! alone, not on which trial happened to finish first. A running trial's
//! parameters are unknown when the next trial is drawn (they are drawn
//! define-by-run), so a liar could not be reproducible.

pub mod multivariate;
pub mod parzen;

use super::RelativeSample;
use super::pareto::{dominates, hypervolume_losses, non_domination_ranks, trial_violation};
use super::{Sampler, StudyView};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::Result;
use multivariate::{JointParzen, Space, intersection_space, row_of, search_space_groups, value_of};
use parzen::{EPS, ParzenEstimator};
use rand::RngCore;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// TPE sampler. The defaults are Optuna's (`lag` 1: sequential).
#[derive(Clone, Debug, PartialEq)]
pub struct TpeSampler {
    /// Finished (COMPLETE or PRUNED) trials drawn at random before TPE starts.
    pub n_startup_trials: usize,
    /// Candidates drawn from the good trials' estimator per parameter.
    pub n_ei_candidates: usize,
    /// Weight of the prior kernel.
    pub prior_weight: f64,
    /// Trial n learns from trials 0..=n − lag (see the module docs).
    pub lag: usize,
    /// Model the parameters jointly (Optuna's `multivariate`; see
    /// [`multivariate`]).
    pub multivariate: bool,
    /// With `multivariate`: one joint model per group of parameters that
    /// occur together (Optuna's `group`).
    pub group: bool,
}

impl Default for TpeSampler {
    fn default() -> Self {
        TpeSampler {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            lag: 1,
            multivariate: false,
            group: false,
        }
    }
}

/// The finished trials split into good and bad, with the good ones' MOTPE
/// weights (several objectives) by trial.
struct Split<'a> {
    below: Vec<&'a FrozenTrial>,
    above: Vec<&'a FrozenTrial>,
    /// One per `below` trial with several objectives, else `None`.
    below_weights: Option<Vec<f64>>,
}

impl<'a> Split<'a> {
    fn of(visible: &[&'a FrozenTrial], directions: &[Direction]) -> Split<'a> {
        let constrained = visible.iter().any(|t| t.constraints().is_some());
        let (below, above) = split_trials(visible, default_gamma(visible.len()), directions, constrained);
        let below_weights = (directions.len() > 1).then(|| weights_below(&below, directions, constrained));
        Split { below, above, below_weights }
    }

    /// The weights of the good trials for which `has` holds (MOTPE's, or
    /// Optuna's `default_weights` of their number).
    fn weights_where(&self, has: impl Fn(&FrozenTrial) -> bool) -> Vec<f64> {
        match &self.below_weights {
            Some(all) => self.below.iter().zip(all).filter(|(t, _)| has(t)).map(|(_, w)| *w).collect(),
            None => default_weights(self.below.iter().filter(|t| has(t)).count()),
        }
    }
}

/// Optuna's `default_gamma`: the number of good trials among `n`.
pub fn default_gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Optuna's `default_weights`: equal weights for fewer than 25 trials, else
/// a ramp from 1/n up to 1 over the oldest n − 25 and 1 for the newest 25.
pub fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp_len = n - 25;
    let mut weights: Vec<f64> = (0..ramp_len)
        .map(|i| {
            let start = 1.0 / n as f64;
            if ramp_len == 1 { start } else { start + (1.0 - start) * i as f64 / (ramp_len - 1) as f64 }
        })
        .collect();
    weights.extend(std::iter::repeat_n(1.0, 25));
    weights
}

/// Objective values as losses (smaller is better).
fn losses(trial: &FrozenTrial, directions: &[Direction]) -> Vec<f64> {
    let values = trial.values.as_deref().unwrap_or_default();
    values
        .iter()
        .zip(directions)
        .map(|(v, d)| match d {
            Direction::Minimize => *v,
            Direction::Maximize => -*v,
        })
        .collect()
}

/// Optuna's reference point for a set of losses: max(1.1·worst, 0.9·worst)
/// per objective, 1e-12 where that is 0.
pub fn reference_point<V: AsRef<[f64]>>(losses: &[V]) -> Vec<f64> {
    let d = losses.first().map_or(0, |l| l.as_ref().len());
    (0..d)
        .map(|j| {
            let worst = losses.iter().map(|l| l.as_ref()[j]).fold(f64::NEG_INFINITY, f64::max);
            let r = f64::max(1.1 * worst, 0.9 * worst);
            if r == 0.0 { EPS } else { r }
        })
        .collect()
}

fn lex_cmp(a: &[f64], b: &[f64]) -> Ordering {
    a.iter().zip(b).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
}

/// Greedy hypervolume subset selection (Optuna's `_solve_hssp`): picks
/// `subset_size` of `indices` (with their `losses`) that add the most
/// hypervolume one after the other; duplicates count once, ties go to the
/// lexicographically smallest loss vector.
pub fn solve_hssp(losses: &[Vec<f64>], indices: &[usize], subset_size: usize, reference: &[f64]) -> Vec<usize> {
    if subset_size >= indices.len() {
        return indices.to_vec();
    }
    let mut order: Vec<usize> = (0..losses.len()).collect();
    order.sort_by(|&i, &j| lex_cmp(&losses[i], &losses[j]).then(i.cmp(&j)));
    order.dedup_by(|b, a| lex_cmp(&losses[*a], &losses[*b]).is_eq());
    if order.len() < subset_size {
        let mut chosen = vec![false; losses.len()];
        order.iter().for_each(|&i| chosen[i] = true);
        let extra: Vec<usize> = (0..losses.len()).filter(|&i| !chosen[i]).take(subset_size - order.len()).collect();
        extra.into_iter().for_each(|i| chosen[i] = true);
        return (0..losses.len()).filter(|&i| chosen[i]).map(|i| indices[i]).collect();
    }
    if !reference.iter().all(|r| r.is_finite()) || order.len() == subset_size {
        return order[..subset_size].iter().map(|&i| indices[i]).collect();
    }
    let picked = if reference.len() == 2 {
        hssp_2d(losses, order, subset_size, reference)
    } else {
        hssp_greedy(losses, order, subset_size, reference)
    };
    picked.into_iter().map(|i| indices[i]).collect()
}

/// The 2-D greedy selection on unique, lexicographically sorted points: a
/// point's contribution is the box between it and the diagonal corner its
/// selected neighbours leave.
fn hssp_2d(losses: &[Vec<f64>], mut remaining: Vec<usize>, subset_size: usize, reference: &[f64]) -> Vec<usize> {
    let mut corners: Vec<[f64; 2]> = vec![[reference[0], reference[1]]; remaining.len()];
    let mut selected = Vec::with_capacity(subset_size);
    for _ in 0..subset_size {
        let contribution =
            |k: usize| (corners[k][0] - losses[remaining[k]][0]) * (corners[k][1] - losses[remaining[k]][1]);
        let best = argmax((0..remaining.len()).map(contribution));
        let chosen = remaining.remove(best);
        corners.remove(best);
        selected.push(chosen);
        let p = &losses[chosen];
        corners[..best].iter_mut().for_each(|c| c[0] = c[0].min(p[0]));
        corners[best..].iter_mut().for_each(|c| c[1] = c[1].min(p[1]));
    }
    selected
}

/// Exact greedy selection in any dimension.
fn hssp_greedy(losses: &[Vec<f64>], mut remaining: Vec<usize>, subset_size: usize, reference: &[f64]) -> Vec<usize> {
    let mut selected: Vec<usize> = Vec::with_capacity(subset_size);
    let mut volume = 0.0;
    for _ in 0..subset_size {
        let gains: Vec<f64> = remaining
            .iter()
            .map(|&i| {
                let set: Vec<&[f64]> =
                    selected.iter().chain(std::iter::once(&i)).map(|&k| losses[k].as_slice()).collect();
                hypervolume_losses(&set, reference) - volume
            })
            .collect();
        let best = argmax(gains.iter().copied());
        volume += gains[best];
        selected.push(remaining.remove(best));
    }
    selected
}

/// Index of the first maximum (numpy's `argmax`).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 || (i == 0 && v.is_nan()) {
            best = (i, v);
        }
    }
    best.0
}

/// Splits COMPLETE trials of several objectives into `n_below` good ones and
/// the rest (Optuna's `_split_complete_trials_multi_objective`), each in the
/// order given.
fn split_complete_multi<'a>(
    trials: &[&'a FrozenTrial],
    n_below: usize,
    directions: &[Direction],
) -> (Vec<&'a FrozenTrial>, Vec<&'a FrozenTrial>) {
    let n_below = n_below.min(trials.len());
    if n_below == 0 || n_below == trials.len() {
        return if n_below == 0 { (Vec::new(), trials.to_vec()) } else { (trials.to_vec(), Vec::new()) };
    }
    let all_losses: Vec<Vec<f64>> = trials.iter().map(|t| losses(t, directions)).collect();
    let min = vec![Direction::Minimize; directions.len()];
    let ranks = non_domination_ranks(&all_losses, None, &min);
    let max_rank = ranks.iter().copied().max().unwrap_or(0);
    let mut count = 0;
    let mut whole_ranks = 0; // ranks 0..whole_ranks fit entirely
    for r in 0..=max_rank {
        count += ranks.iter().filter(|&&x| x == r).count();
        if count > n_below {
            break;
        }
        whole_ranks = r + 1;
    }
    let mut below: Vec<bool> = ranks.iter().map(|&r| r < whole_ranks).collect();
    let taken = below.iter().filter(|&&b| b).count();
    if taken < n_below {
        let group: Vec<usize> = (0..trials.len()).filter(|&i| ranks[i] == whole_ranks).collect();
        let group_losses: Vec<Vec<f64>> = group.iter().map(|&i| all_losses[i].clone()).collect();
        let reference = reference_point(&group_losses);
        for i in solve_hssp(&group_losses, &group, n_below - taken, &reference) {
            below[i] = true;
        }
    }
    let (good, bad): (Vec<_>, Vec<_>) = trials.iter().zip(&below).partition(|(_, b)| **b);
    (good.into_iter().map(|(t, _)| *t).collect(), bad.into_iter().map(|(t, _)| *t).collect())
}

/// Splits finished trials into the `n_below` good ones and the rest (Optuna's
/// `_split_trials`): feasible COMPLETE trials first (by value for one
/// objective, by [`split_complete_multi`] for several), then PRUNED ones,
/// then infeasible ones by total violation. Both sets come back in trial
/// number order. With `constrained`, a trial is infeasible when its
/// violation ([`trial_violation`]) is positive.
pub fn split_trials<'a>(
    trials: &[&'a FrozenTrial],
    n_below: usize,
    directions: &[Direction],
    constrained: bool,
) -> (Vec<&'a FrozenTrial>, Vec<&'a FrozenTrial>) {
    let mut complete = Vec::new();
    let mut pruned = Vec::new();
    let mut infeasible = Vec::new();
    for &trial in trials {
        if constrained && trial_violation(trial) > 0.0 {
            infeasible.push(trial);
        } else if trial.state == TrialState::Complete {
            complete.push(trial);
        } else if trial.state == TrialState::Pruned {
            pruned.push(trial);
        }
    }
    let (mut below, mut above) = if directions.len() > 1 {
        split_complete_multi(&complete, n_below, directions)
    } else {
        let mut sorted = complete.clone();
        sorted.sort_by(|a, b| {
            let (x, y) = (losses(a, directions), losses(b, directions));
            x.first().unwrap_or(&f64::NAN).total_cmp(y.first().unwrap_or(&f64::NAN))
        });
        let cut = n_below.min(sorted.len());
        let above = sorted.split_off(cut);
        (sorted, above)
    };
    let mut n_left = n_below.saturating_sub(below.len());
    // Without intermediate values every pruned trial scores alike: they keep
    // their order (Optuna's score (1, 0.0) for all of them).
    let cut = n_left.min(pruned.len());
    below.extend(&pruned[..cut]);
    above.extend(&pruned[cut..]);
    n_left = n_left.saturating_sub(cut);
    infeasible.sort_by(|a, b| trial_violation(a).total_cmp(&trial_violation(b)));
    let cut = n_left.min(infeasible.len());
    below.extend(&infeasible[..cut]);
    above.extend(&infeasible[cut..]);
    below.sort_by_key(|t| t.number);
    above.sort_by_key(|t| t.number);
    (below, above)
}

/// MOTPE's weights of the good trials (Optuna's
/// `_calculate_weights_below_for_multi_objective`): each feasible trial's
/// hypervolume contribution within the feasible good set (reference point
/// from that set), over the largest, at least 1e-12; infeasible trials
/// 1e-12; all 1 when at most one is feasible. A good PRUNED trial (no
/// values; Optuna's multi-objective TPE has no rule for them, as Optuna
/// cannot prune such studies) weighs 1e-12 like an infeasible one.
pub fn weights_below(below: &[&FrozenTrial], directions: &[Direction], constrained: bool) -> Vec<f64> {
    let evaluated = |t: &FrozenTrial| t.state == TrialState::Complete && t.values.is_some();
    let feasible: Vec<bool> =
        below.iter().map(|t| evaluated(t) && (!constrained || trial_violation(t) <= 0.0)).collect();
    let mut weights: Vec<f64> = feasible.iter().map(|&f| if f { 1.0 } else { EPS }).collect();
    let feasible_losses: Vec<Vec<f64>> =
        below.iter().zip(&feasible).filter(|(_, f)| **f).map(|(t, _)| losses(t, directions)).collect();
    if feasible_losses.len() <= 1 {
        return weights;
    }
    let reference = reference_point(&feasible_losses);
    let min = vec![Direction::Minimize; directions.len()];
    let on_front: Vec<bool> = (0..feasible_losses.len())
        .map(|i| !feasible_losses.iter().any(|other| dominates(other, &feasible_losses[i], &min)))
        .collect();
    let front: Vec<&[f64]> =
        feasible_losses.iter().zip(&on_front).filter(|(_, f)| **f).map(|(l, _)| l.as_slice()).collect();
    let volume = hypervolume_losses(&front, &reference);
    if volume.is_infinite() {
        return weights;
    }
    let mut contributions = vec![0.0; feasible_losses.len()];
    let mut k = 0;
    for (i, &on) in on_front.iter().enumerate() {
        if on {
            let others: Vec<&[f64]> = front.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, l)| *l).collect();
            contributions[i] = volume - hypervolume_losses(&others, &reference);
            k += 1;
        }
    }
    let largest = contributions.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(EPS);
    let mut c = contributions.iter();
    for (w, &f) in weights.iter_mut().zip(&feasible) {
        if f {
            *w = (c.next().copied().unwrap_or(0.0) / largest).max(EPS);
        }
    }
    weights
}

impl TpeSampler {
    /// The trials trial `trial_number` learns from: finished COMPLETE (with
    /// a value per objective) or PRUNED trials numbered at most
    /// `trial_number − lag`.
    fn visible<'a>(&self, study: &StudyView<'a>, trial_number: u64) -> Vec<&'a FrozenTrial> {
        let lag = self.lag.max(1) as u64;
        study
            .trials
            .iter()
            .map(|t| &**t)
            .filter(|t| t.number + lag <= trial_number)
            .filter(|t| match t.state {
                TrialState::Complete => t.values.as_ref().is_some_and(|v| v.len() == study.directions.len()),
                TrialState::Pruned => true,
                TrialState::Running | TrialState::Fail | TrialState::Waiting => false,
            })
            .collect()
    }

    /// The good and bad estimators of one parameter, from `visible`.
    pub fn estimators(
        &self,
        visible: &[&FrozenTrial],
        directions: &[Direction],
        name: &str,
        distribution: &Distribution,
    ) -> (ParzenEstimator, ParzenEstimator) {
        let split = Split::of(visible, directions);
        self.estimators_of(&split, name, distribution)
    }

    fn estimators_of(
        &self,
        split: &Split<'_>,
        name: &str,
        distribution: &Distribution,
    ) -> (ParzenEstimator, ParzenEstimator) {
        let below_weights = split.weights_where(|t| value_of(t, name, distribution).is_some());
        let below_values: Vec<f64> = split.below.iter().filter_map(|t| value_of(t, name, distribution)).collect();
        let above_values: Vec<f64> = split.above.iter().filter_map(|t| value_of(t, name, distribution)).collect();
        let above_weights = default_weights(above_values.len());
        // Optuna's multivariate sampler draws the parameters outside its
        // joint space with the multivariate widths too (d = 1).
        let dims = self.multivariate.then_some(1);
        let build = |values: &[f64], weights: &[f64]| {
            ParzenEstimator::with_bandwidth(values, weights, distribution, self.prior_weight, dims)
        };
        (build(&below_values, &below_weights), build(&above_values, &above_weights))
    }

    /// The good and bad joint estimators of `space`, from the trials that
    /// have all of its parameters.
    pub fn joint_estimators(
        &self,
        visible: &[&FrozenTrial],
        directions: &[Direction],
        space: &Space,
    ) -> (JointParzen, JointParzen) {
        self.joint_estimators_of(&Split::of(visible, directions), space)
    }

    fn joint_estimators_of(&self, split: &Split<'_>, space: &Space) -> (JointParzen, JointParzen) {
        let distributions: Vec<&Distribution> = space.values().collect();
        let below_weights = split.weights_where(|t| row_of(t, space).is_some());
        let below_rows: Vec<Vec<f64>> = split.below.iter().filter_map(|t| row_of(t, space)).collect();
        let above_rows: Vec<Vec<f64>> = split.above.iter().filter_map(|t| row_of(t, space)).collect();
        let above_weights = default_weights(above_rows.len());
        (
            JointParzen::new(&below_rows, &below_weights, &distributions, self.prior_weight),
            JointParzen::new(&above_rows, &above_weights, &distributions, self.prior_weight),
        )
    }

    /// The spaces sampled jointly: the groups, or the intersection.
    pub fn relative_spaces(&self, visible: &[&FrozenTrial]) -> Vec<Space> {
        if self.group { search_space_groups(visible) } else { vec![intersection_space(visible)] }
    }
}

impl Sampler for TpeSampler {
    /// With `multivariate`: each joint space's parameters, drawn together
    /// (the best of `n_ei_candidates` joint candidates).
    fn sample_relative(
        &self,
        study: &StudyView<'_>,
        trial_number: u64,
        rng: &mut dyn RngCore,
    ) -> Result<RelativeSample> {
        if !self.multivariate {
            return Ok(RelativeSample::default());
        }
        let visible = self.visible(study, trial_number);
        if visible.len() < self.n_startup_trials || visible.is_empty() {
            return Ok(RelativeSample::default());
        }
        let split = Split::of(&visible, study.directions);
        let mut params = BTreeMap::new();
        for space in self.relative_spaces(&visible).iter().filter(|s| !s.is_empty()) {
            let (below, above) = self.joint_estimators_of(&split, space);
            let candidates: Vec<Vec<f64>> = (0..self.n_ei_candidates.max(1)).map(|_| below.sample(rng)).collect();
            let best = argmax(candidates.iter().map(|x| below.log_pdf(x) - above.log_pdf(x)));
            params.extend(space.keys().cloned().zip(candidates[best].iter().copied()));
        }
        Ok(RelativeSample { params, system_attrs: BTreeMap::new() })
    }

    /// Trial n waits until every trial numbered at most n − lag has finished.
    fn ready(&self, study: &StudyView<'_>, trial_number: u64) -> bool {
        let lag = self.lag.max(1) as u64;
        study.trials.iter().all(|t| t.number + lag > trial_number || t.state.is_finished())
    }

    fn waits_for_other_processes(&self) -> bool {
        false
    }

    fn sample_independent(
        &self,
        study: &StudyView<'_>,
        trial_number: u64,
        name: &str,
        distribution: &Distribution,
        rng: &mut dyn RngCore,
    ) -> Result<f64> {
        let visible = self.visible(study, trial_number);
        if visible.len() < self.n_startup_trials || visible.is_empty() {
            return Ok(distribution.sample(rng));
        }
        let (below, above) = self.estimators_of(&Split::of(&visible, study.directions), name, distribution);
        let candidates: Vec<f64> = (0..self.n_ei_candidates.max(1)).map(|_| below.sample(rng)).collect();
        let scores = candidates.iter().map(|&x| below.log_pdf(x) - above.log_pdf(x));
        Ok(candidates[argmax(scores)])
    }

    fn name(&self) -> &'static str {
        "TPESampler"
    }
}

#[cfg(test)]
mod tests;
