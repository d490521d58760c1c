//! Multivariate TPE (Optuna's `multivariate=True`, optionally `group=True`):
//! the parameters of a search space are modelled together. Each good and
//! bad set gets one Parzen estimator over all of them ([`JointParzen`]): a
//! mixture whose kernel k is the product of the per-parameter kernels of
//! observation k (the same weight for every parameter), plus the product of
//! the prior kernels. Only trials that have every parameter of the space
//! (with the same distribution) are observations; numerical kernels all get
//! the width 0.2 · n^(−1/(d + 4)) · range (d parameters, n observations;
//! see [`ParzenEstimator::with_bandwidth`]). Candidates are drawn jointly
//! from the good estimator and the one with the largest
//! log l(x) − log g(x) wins.
//!
//! The space: with `group`, the parameters are split into groups that
//! always occur together ([`search_space_groups`], Optuna's
//! `_GroupDecomposedSearchSpace`): in an MLP search `num_layers` and layer
//! 0's parameters are one group, layer 1's (present with two layers or
//! more) the next, and so on; each group is sampled jointly by itself.
//! Without `group`, the space is the parameters every trial has
//! ([`intersection_space`], Optuna's `IntersectionSearchSpace`); the others
//! are then drawn one at a time, as Optuna does (with the multivariate
//! width rule, d = 1).
//!
//! ```
//! use snac_core::search::Distribution;
//! use snac_core::search::tpe::multivariate::JointParzen;
//! use serde_json::json;
//!
//! let a = Distribution::Categorical { choices: vec![json!("x"), json!("y")] };
//! let b = Distribution::Categorical { choices: vec![json!(1), json!(2)] };
//! // Two observations, (x, 1) and (y, 2): the joint estimator gives (x, 1)
//! // more mass than (x, 2), which univariate estimators cannot.
//! let pe = JointParzen::new(&[vec![0.0, 0.0], vec![1.0, 1.0]], &[1.0, 1.0], &[&a, &b], 1.0);
//! assert!(pe.log_pdf(&[0.0, 0.0]) > pe.log_pdf(&[0.0, 1.0]));
//! ```

use super::parzen::{ParzenEstimator, log_sum_exp};
use crate::trial::{Distribution, FrozenTrial};
use rand::{Rng, RngCore};
use std::collections::{BTreeMap, BTreeSet};

/// A search space: parameter name → distribution, in name order.
pub type Space = BTreeMap<String, Distribution>;

/// The joint Parzen estimator of several parameters (Optuna's
/// `_ParzenEstimator` over a search space of several parameters).
#[derive(Clone, Debug)]
pub struct JointParzen {
    /// Mixture weights, the prior kernel's last.
    weights: Vec<f64>,
    /// Per parameter, its kernels (their own mixture weights unused).
    params: Vec<ParzenEstimator>,
}

impl JointParzen {
    /// The estimator of `observations` (one row per trial: the internal
    /// values of the `distributions`, in order) with their `weights`.
    pub fn new(observations: &[Vec<f64>], weights: &[f64], distributions: &[&Distribution], prior_weight: f64) -> Self {
        assert_eq!(observations.len(), weights.len(), "one weight per observation");
        let d = distributions.len();
        let params: Vec<ParzenEstimator> = distributions
            .iter()
            .enumerate()
            .map(|(j, dist)| {
                let column: Vec<f64> = observations.iter().map(|row| row[j]).collect();
                ParzenEstimator::with_bandwidth(&column, weights, dist, prior_weight, Some(d))
            })
            .collect();
        let mut mixture: Vec<f64> = weights.to_vec();
        mixture.push(if observations.is_empty() { 1.0 } else { prior_weight });
        let total: f64 = mixture.iter().sum();
        mixture.iter_mut().for_each(|w| *w /= total);
        JointParzen { weights: mixture, params }
    }

    /// The mixture weights, the prior's last.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Draws one point (internal values, in the distributions' order): a
    /// kernel by weight, then every parameter from that kernel.
    pub fn sample(&self, rng: &mut dyn RngCore) -> Vec<f64> {
        let u = rng.random::<f64>();
        let mut cumulative = 0.0;
        let mut k = self.weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
        for (i, w) in self.weights.iter().enumerate() {
            cumulative += w;
            if cumulative >= u && *w > 0.0 {
                k = i;
                break;
            }
        }
        self.params.iter().map(|p| p.sample_kernel(k, rng)).collect()
    }

    /// Log density of a point: log Σ_k w_k Π_j p_kj(x_j).
    pub fn log_pdf(&self, point: &[f64]) -> f64 {
        let mut terms: Vec<f64> = self.weights.iter().map(|w| w.ln()).collect();
        for (p, &x) in self.params.iter().zip(point) {
            for (t, l) in terms.iter_mut().zip(p.kernel_log_pdfs(x)) {
                *t += l;
            }
        }
        log_sum_exp(&terms)
    }
}

/// The value of `name` in `trial` if it has it with `distribution`.
pub fn value_of(trial: &FrozenTrial, name: &str, distribution: &Distribution) -> Option<f64> {
    trial.params.get(name).filter(|(d, _)| d == distribution).map(|(_, v)| *v)
}

/// The row of a trial that has every parameter of `space` (same
/// distribution), else `None`.
pub fn row_of(trial: &FrozenTrial, space: &Space) -> Option<Vec<f64>> {
    space.iter().map(|(name, d)| value_of(trial, name, d)).collect()
}

/// Optuna's `_SearchSpaceGroup`: the parameters of `trials`, split into
/// groups that occur in exactly the same trials (each with the first
/// distribution seen). Single-value distributions are left out (nothing to
/// sample), and so are empty groups.
pub fn search_space_groups(trials: &[&FrozenTrial]) -> Vec<Space> {
    let mut groups: Vec<Space> = Vec::new();
    for trial in trials {
        let mut new_keys: BTreeSet<&String> = trial.params.keys().collect();
        let mut next = Vec::with_capacity(groups.len() * 2 + 1);
        for group in groups {
            let (inside, outside): (Space, Space) = group.into_iter().partition(|(k, _)| trial.params.contains_key(k));
            new_keys.retain(|k| !inside.contains_key(*k));
            next.push(inside);
            next.push(outside);
        }
        next.push(new_keys.into_iter().map(|k| (k.clone(), trial.params[k].0.clone())).collect());
        groups = next.into_iter().filter(|g| !g.is_empty()).collect();
    }
    groups
        .into_iter()
        .map(|g| g.into_iter().filter(|(_, d)| !d.is_single()).collect::<Space>())
        .filter(|g| !g.is_empty())
        .collect()
}

/// Optuna's `IntersectionSearchSpace`: the parameters every trial has, with
/// the same distribution in all of them (single-value ones left out).
pub fn intersection_space(trials: &[&FrozenTrial]) -> Space {
    let Some(first) = trials.first() else { return Space::new() };
    first
        .params
        .iter()
        .filter(|(name, (d, _))| !d.is_single() && trials.iter().all(|t| value_of(t, name, d).is_some()))
        .map(|(name, (d, _))| (name.clone(), d.clone()))
        .collect()
}
