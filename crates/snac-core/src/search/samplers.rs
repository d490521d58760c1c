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
//! ten generations. `snac bench search` measures the choice.
//!
//! ```
//! use snac_core::config::SamplerKind;
//! use snac_core::search::samplers::SamplerChoice;
//!
//! let small = SamplerChoice::resolve(SamplerKind::Auto, 50, None, 10);
//! assert_eq!(small.kind, SamplerKind::Tpe);
//! let large = SamplerChoice::resolve(SamplerKind::Auto, 2000, None, 10);
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
    /// Why this sampler: for the log.
    pub why: String,
}

impl SamplerChoice {
    /// The choice for a `search:` section.
    pub fn of(search: &SearchConfig) -> SamplerChoice {
        let population = search.population_size_given.then_some(search.population_size);
        Self::resolve(search.sampler, search.n_trials, population, search.n_startup_trials)
    }

    /// The choice for `kind` with a budget of `n_trials`, an explicit NSGA-II
    /// population if one was given (else Optuna's 50, or sized to the
    /// budget by `auto`) and TPE's startup trials.
    pub fn resolve(
        kind: SamplerKind,
        n_trials: usize,
        population: Option<usize>,
        n_startup_trials: usize,
    ) -> SamplerChoice {
        let choice =
            |kind, population_size, why: String| SamplerChoice { kind, population_size, n_startup_trials, why };
        match kind {
            SamplerKind::Auto if n_trials <= AUTO_TPE_MAX_TRIALS => choice(
                SamplerKind::Tpe,
                population.unwrap_or(50),
                format!(
                    "search.sampler auto: TPE for a budget of {n_trials} trials (≤ {AUTO_TPE_MAX_TRIALS}; \
                     {n_startup_trials} random trials, then a model of the finished ones)"
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
            SamplerKind::Tpe => choice(kind, population.unwrap_or(50), "search.sampler tpe".to_string()),
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
        let pick = |n, population| SamplerChoice::resolve(SamplerKind::Auto, n, population, 10);
        assert_eq!(pick(10, None).kind, SamplerKind::Tpe);
        assert_eq!(pick(AUTO_TPE_MAX_TRIALS, None).kind, SamplerKind::Tpe);
        let large = pick(AUTO_TPE_MAX_TRIALS + 1, None);
        assert_eq!((large.kind, large.population_size), (SamplerKind::Nsga2, 30));
        assert_eq!(pick(5000, None).population_size, 100);
        assert_eq!(pick(5000, Some(64)).population_size, 64);
        assert!(large.why.contains("NSGA-II") && large.why.contains("population 30"), "{}", large.why);
        // Explicit kinds stay as given.
        for kind in [SamplerKind::Tpe, SamplerKind::Nsga2, SamplerKind::Random] {
            assert_eq!(SamplerChoice::resolve(kind, 10_000, None, 10).kind, kind);
        }
        assert_eq!(SamplerChoice::resolve(SamplerKind::Nsga2, 10, None, 10).population_size, 50);
    }

    #[test]
    fn builds_the_named_sampler() {
        let build = |kind| SamplerChoice::resolve(kind, 100, Some(8), 5).build(4).name();
        assert_eq!(build(SamplerKind::Tpe), "TPESampler");
        assert_eq!(build(SamplerKind::Auto), "TPESampler");
        assert_eq!(build(SamplerKind::Nsga2), "NSGAIISampler");
        assert_eq!(build(SamplerKind::Random), "RandomSampler");
    }
}
