//! Building the sampler a config names: [`SamplerChoice::of`] resolves the
//! `search.sampler` setting (`auto` included) into a concrete sampler with
//! its settings and the reason for the choice, and
//! [`SamplerChoice::build`] turns that into the [`Sampler`] a study asks.
//!
//! `auto` (the default): TPE up to [`AUTO_TPE_MAX_TRIALS`] trials, where a
//! model of the finished trials finds good architectures in few trials and
//! NSGA-II with Optuna's population of 50 would still be in its random
//! first generations; NSGA-II beyond, with a population of a tenth of the
//! budget (20 to 100) unless `search.population_size` is set, so it runs
//! ten generations. `auto`'s TPE is multivariate with groups (Optuna's
//! `multivariate=True, group=True`; [`super::tpe::multivariate`]): a
//! layer's or block's parameters are modelled together. On the T2-like
//! space it reached NSGA-II's 50-trial hypervolume on 4 seeds of 5 (the
//! univariate TPE on 1); on tutorial 1 the two are alike. `tpe` keeps
//! Optuna's default, univariate; `search.tpe_multivariate` overrides both.
//! Smaller NSGA-II populations at small budgets (10 or 16 at 50 trials) did
//! worse than TPE on tutorial 1. `snac bench search` measures the choice.
//!
//! ```
//! use snac_core::config::SamplerKind;
//! use snac_core::search::samplers::SamplerChoice;
//!
//! let small = SamplerChoice::resolve(SamplerKind::Auto, 50, None, 10, None);
//! assert_eq!((small.kind, small.tpe_multivariate), (SamplerKind::Tpe, true));
//! let large = SamplerChoice::resolve(SamplerKind::Auto, 2000, None, 10, None);
//! assert_eq!((large.kind, large.population_size), (SamplerKind::Nsga2, 100));
//! ```

use super::Sampler;
use super::nsga2::NsgaIISampler;
use super::random::RandomSampler;
use super::tpe::TpeSampler;
use crate::config::{SamplerKind, SearchConfig};
use std::sync::Arc;

/// The largest budget for which `auto` picks TPE.
pub const AUTO_TPE_MAX_TRIALS: usize = 300;

/// A resolved sampler setting: never [`SamplerKind::Auto`].
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerChoice {
    pub kind: SamplerKind,
    /// NSGA-II's population (unused by the others).
    pub population_size: usize,
    /// TPE's random trials at the start (unused by the others).
    pub n_startup_trials: usize,
    /// TPE models the parameters that occur together jointly (unused by
    /// the others).
    pub tpe_multivariate: bool,
    /// Why this sampler: for the log.
    pub why: String,
}

impl SamplerChoice {
    /// The choice for a `search:` section.
    pub fn of(search: &SearchConfig) -> SamplerChoice {
        let population = search.population_size_given.then_some(search.population_size);
        Self::resolve(search.sampler, search.n_trials, population, search.n_startup_trials, search.tpe_multivariate)
    }

    /// The choice for `kind` with a budget of `n_trials`, an explicit NSGA-II
    /// population if one was given (else Optuna's 50, or sized to the
    /// budget by `auto`), TPE's startup trials and `search.tpe_multivariate`
    /// if given (else yes for `auto`, no for `tpe`).
    pub fn resolve(
        kind: SamplerKind,
        n_trials: usize,
        population: Option<usize>,
        n_startup_trials: usize,
        tpe_multivariate: Option<bool>,
    ) -> SamplerChoice {
        let multivariate = tpe_multivariate.unwrap_or(kind == SamplerKind::Auto);
        let choice = |kind, population_size, why: String| SamplerChoice {
            kind,
            population_size,
            n_startup_trials,
            tpe_multivariate: multivariate && kind == SamplerKind::Tpe,
            why,
        };
        let model = if multivariate { "one joint model per group of parameters" } else { "one model per parameter" };
        match kind {
            SamplerKind::Auto if n_trials <= AUTO_TPE_MAX_TRIALS => choice(
                SamplerKind::Tpe,
                population.unwrap_or(50),
                format!(
                    "search.sampler auto: TPE for a budget of {n_trials} trials (≤ {AUTO_TPE_MAX_TRIALS}; \
                     {n_startup_trials} random trials, then {model}, learnt from the finished trials)"
                ),
            ),
            SamplerKind::Auto => {
                let (size, how) = match population {
                    Some(p) => (p, "search.population_size"),
                    None => ((n_trials / 10).clamp(20, 100), "a tenth of the budget, 20 to 100"),
                };
                choice(
                    SamplerKind::Nsga2,
                    size,
                    format!(
                        "search.sampler auto: NSGA-II for a budget of {n_trials} trials (> {AUTO_TPE_MAX_TRIALS}), \
                         population {size} ({how})"
                    ),
                )
            }
            SamplerKind::Tpe => {
                let how = if multivariate { "multivariate, grouped" } else { "univariate" };
                choice(kind, population.unwrap_or(50), format!("search.sampler tpe ({how})"))
            }
            SamplerKind::Nsga2 => {
                let size = population.unwrap_or(50);
                choice(kind, size, format!("search.sampler nsga2, population {size}"))
            }
            SamplerKind::Random => choice(kind, population.unwrap_or(50), "search.sampler random".to_string()),
        }
    }

    /// The sampler. `workers` trials run side by side: TPE's trial n then
    /// learns from trials 0..=n − workers (see [`super::tpe`]).
    pub fn build(&self, workers: usize) -> Arc<dyn Sampler> {
        match self.kind {
            SamplerKind::Random => Arc::new(RandomSampler),
            SamplerKind::Nsga2 => {
                Arc::new(NsgaIISampler { population_size: self.population_size, ..Default::default() })
            }
            SamplerKind::Tpe | SamplerKind::Auto => Arc::new(TpeSampler {
                n_startup_trials: self.n_startup_trials,
                lag: workers.max(1),
                multivariate: self.tpe_multivariate,
                group: self.tpe_multivariate,
                ..TpeSampler::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_by_budget() {
        let pick = |n, population| SamplerChoice::resolve(SamplerKind::Auto, n, population, 10, None);
        assert_eq!((pick(10, None).kind, pick(10, None).tpe_multivariate), (SamplerKind::Tpe, true));
        assert_eq!(pick(AUTO_TPE_MAX_TRIALS, None).kind, SamplerKind::Tpe);
        assert!(pick(50, None).why.contains("one joint model per group"), "{}", pick(50, None).why);
        let large = pick(AUTO_TPE_MAX_TRIALS + 1, None);
        assert_eq!((large.kind, large.population_size), (SamplerKind::Nsga2, 30));
        assert_eq!(pick(5000, None).population_size, 100);
        assert_eq!(pick(5000, Some(64)).population_size, 64);
        assert!(large.why.contains("NSGA-II") && large.why.contains("population 30"), "{}", large.why);
        assert!(!large.tpe_multivariate);
        // Explicit kinds stay as given; `tpe` is univariate (Optuna's default).
        for kind in [SamplerKind::Tpe, SamplerKind::Nsga2, SamplerKind::Random] {
            let choice = SamplerChoice::resolve(kind, 10_000, None, 10, None);
            assert_eq!((choice.kind, choice.tpe_multivariate), (kind, false));
        }
        assert_eq!(SamplerChoice::resolve(SamplerKind::Nsga2, 10, None, 10, None).population_size, 50);
        // search.tpe_multivariate decides for both.
        let tpe = |kind, given| SamplerChoice::resolve(kind, 50, None, 10, Some(given));
        assert!(tpe(SamplerKind::Tpe, true).tpe_multivariate && !tpe(SamplerKind::Auto, false).tpe_multivariate);
        assert!(tpe(SamplerKind::Tpe, true).why.contains("multivariate"));
        assert!(tpe(SamplerKind::Auto, false).why.contains("one model per parameter"));
    }

    #[test]
    fn builds_the_named_sampler() {
        let build = |kind| SamplerChoice::resolve(kind, 100, Some(8), 5, None).build(4).name();
        assert_eq!(build(SamplerKind::Tpe), "TPESampler");
        assert_eq!(build(SamplerKind::Auto), "TPESampler");
        assert_eq!(build(SamplerKind::Nsga2), "NSGAIISampler");
        assert_eq!(build(SamplerKind::Random), "RandomSampler");
    }
}
