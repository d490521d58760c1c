//! NSGA-II (Deb et al. 2002) as Optuna's `NSGAIISampler` runs it: the first
//! generation is random, every later child comes from parents chosen by binary
//! tournament out of an elite population (non-dominated sort, then crowding
//! distance), by uniform crossover and random-reset mutation.
//!
//! The sampler holds no state: a trial's generation is stored with the trial
//! (system attribute [`GENERATION_KEY`]) and everything else, the parent
//! population included, is recomputed from the study's trials, so any number
//! of workers can share one study.
//!
//! One departure from Optuna, for reproducibility: a trial's generation is
//! its number over the population size, and a trial of generation g waits
//! until generation g − 1 has finished ([`NsgaIISampler::generation_of`],
//! `ready`). The same seed then gives the same trials with any number of
//! workers; the cost is workers idle at the end of each generation, for at
//! most one trial's time.
//!
//! ```
//! use snac_core::search::nsga2::NsgaIISampler;
//! use snac_core::search::{Direction, Sampler, StudyView};
//! use rand::SeedableRng;
//!
//! let sampler = NsgaIISampler { population_size: 8, ..NsgaIISampler::default() };
//! let study = StudyView { directions: &[Direction::Minimize, Direction::Minimize], trials: &[] };
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let relative = sampler.sample_relative(&study, 0, &mut rng).unwrap();
//! // The first trial opens generation 0, which is drawn at random.
//! assert!(relative.params.is_empty());
//! assert_eq!(relative.system_attrs["NSGAIISampler:generation"], 0);
//! ```

use super::pareto::{
    constrained_dominates, crowding_distance_order, dominates, fast_non_dominated_sort, is_evaluated, violations,
};
use super::{RelativeSample, Sampler, StudyView};
use crate::trial::{Direction, Distribution, FrozenTrial, TrialState};
use anyhow::{Result, ensure};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// System attribute holding a trial's generation (Optuna's key, so Optuna can
/// continue a study we started and the other way round).
pub const GENERATION_KEY: &str = "NSGAIISampler:generation";

/// NSGA-II sampler. The defaults are Optuna's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NsgaIISampler {
    /// Completed trials per generation, and the size of the parent population.
    pub population_size: usize,
    /// Probability that a child is a uniform crossover of two parents; else it
    /// copies one parent.
    pub crossover_prob: f64,
    /// In a crossover, the probability of taking a parameter from the first
    /// parent rather than the second.
    pub swapping_prob: f64,
    /// Probability of dropping an inherited parameter so that it is redrawn at
    /// random; `None` means 1 / (number of inherited parameters), Optuna's
    /// default.
    pub mutation_prob: Option<f64>,
    /// Also inherit parameters outside the intersection search space (the
    /// conditional ones of a define-by-run space, e.g. a block's channels that
    /// exist only when the block does) from the parents that have them. Optuna
    /// draws those at random; `false` restores that behaviour.
    pub inherit_conditional: bool,
}

impl Default for NsgaIISampler {
    fn default() -> Self {
        NsgaIISampler {
            population_size: 50,
            crossover_prob: 0.9,
            swapping_prob: 0.5,
            mutation_prob: None,
            inherit_conditional: true,
        }
    }
}

/// The generation stored with a trial, if any.
pub fn trial_generation(trial: &FrozenTrial) -> Option<u64> {
    trial.system_attrs.get(GENERATION_KEY)?.as_u64()
}

/// The search spaces NSGA-II recombines, from the COMPLETE trials.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchSpaces {
    /// Parameters every complete trial has, with one distribution (Optuna's
    /// intersection search space), less single-valued ones: the relative space.
    pub intersection: BTreeMap<String, Distribution>,
    /// Parameters only some complete trials have, each always with the same
    /// distribution, less single-valued ones: conditional parameters.
    pub conditional: BTreeMap<String, Distribution>,
}

impl SearchSpaces {
    pub fn of<T: Borrow<FrozenTrial>>(trials: &[T]) -> SearchSpaces {
        // name -> (distribution if it never changed, number of trials with it)
        let mut seen: BTreeMap<&str, (Option<&Distribution>, usize)> = BTreeMap::new();
        let mut n_complete = 0;
        for trial in trials.iter().map(T::borrow).filter(|t| t.state == TrialState::Complete) {
            n_complete += 1;
            for (name, (distribution, _)) in &trial.params {
                let entry = seen.entry(name).or_insert((Some(distribution), 0));
                if entry.0 != Some(distribution) {
                    entry.0 = None;
                }
                entry.1 += 1;
            }
        }
        let mut spaces = SearchSpaces::default();
        for (name, (distribution, count)) in seen {
            let Some(distribution) = distribution.filter(|d| !d.is_single()) else { continue };
            let space = if count == n_complete { &mut spaces.intersection } else { &mut spaces.conditional };
            space.insert(name.to_string(), distribution.clone());
        }
        spaces
    }
}

/// Dominance inside one population: constrained when any member carries
/// constraint values (Optuna's `_is_constrained_optimization`).
struct Ranking<'a> {
    values: Vec<&'a [f64]>,
    violations: Option<Vec<f64>>,
    directions: &'a [Direction],
}

impl<'a> Ranking<'a> {
    fn new(population: &[&'a FrozenTrial], directions: &'a [Direction]) -> Self {
        Ranking {
            values: population.iter().map(|t| t.values.as_deref().unwrap_or_default()).collect(),
            violations: violations(population.iter().copied()),
            directions,
        }
    }

    fn dominates(&self, a: usize, b: usize) -> bool {
        match &self.violations {
            None => dominates(self.values[a], self.values[b], self.directions),
            Some(v) => constrained_dominates(self.values[a], v[a], self.values[b], v[b], self.directions),
        }
    }
}

impl NsgaIISampler {
    /// Checks the settings (Optuna's constructor checks).
    pub fn validate(&self) -> Result<()> {
        ensure!(self.population_size >= 2, "NSGA-II population_size must be at least 2, got {}", self.population_size);
        for (name, p) in [
            ("crossover_prob", Some(self.crossover_prob)),
            ("swapping_prob", Some(self.swapping_prob)),
            ("mutation_prob", self.mutation_prob),
        ] {
            if let Some(p) = p {
                ensure!((0.0..=1.0).contains(&p), "NSGA-II {name} must be within [0, 1], got {p}");
            }
        }
        Ok(())
    }

    /// Generation of trial `number`: `number / population_size`, the
    /// trial's place in the study. Optuna counts COMPLETE trials instead,
    /// which makes a trial's generation depend on which trials happened to
    /// finish first when several run at once. By place, a failed trial keeps
    /// its slot (parents come from the evaluated trials), and with
    /// [`Sampler::ready`] the same seed gives the same trials whatever the
    /// number of workers.
    pub fn generation_of(&self, number: u64) -> u64 {
        number / self.population_size.max(1) as u64
    }

    /// The best `population_size` of `population`: whole fronts of the
    /// (constrained) non-dominated sort while they fit, then the most isolated
    /// members of the first front that does not fit.
    pub fn select_elite<'a>(&self, population: &[&'a FrozenTrial], directions: &[Direction]) -> Vec<&'a FrozenTrial> {
        let ranking = Ranking::new(population, directions);
        let fronts = fast_non_dominated_sort(&ranking.values, ranking.violations.as_deref(), directions);
        let mut elite = Vec::with_capacity(self.population_size);
        for front in fronts {
            if elite.len() + front.len() < self.population_size {
                elite.extend(front.iter().map(|&i| population[i]));
            } else {
                let front_values: Vec<&[f64]> = front.iter().map(|&i| ranking.values[i]).collect();
                let n = self.population_size - elite.len();
                elite.extend(crowding_distance_order(&front_values)[..n].iter().map(|&k| population[front[k]]));
                break;
            }
        }
        elite
    }

    /// Parent population of `generation` (empty for generation 0): the elite
    /// of the previous generation's COMPLETE trials together with the previous
    /// parent population, applied generation after generation from the start.
    pub fn parent_population<'a>(&self, study: &StudyView<'a>, generation: u64) -> Vec<&'a FrozenTrial> {
        let mut by_generation: BTreeMap<u64, Vec<&'a FrozenTrial>> = BTreeMap::new();
        for trial in study.trials.iter().map(|t| &**t).filter(|t| is_evaluated(t, study.directions)) {
            if let Some(g) = trial_generation(trial) {
                by_generation.entry(g).or_default().push(trial);
            }
        }
        // Past the last stored generation nothing would change any more.
        let last = by_generation.keys().next_back().map_or(0, |g| g + 1).min(generation);
        let mut parents: Vec<&'a FrozenTrial> = Vec::new();
        for g in 1..=last {
            let mut population = by_generation.remove(&(g - 1)).unwrap_or_default();
            population.extend(parents);
            parents = self.select_elite(&population, study.directions);
        }
        parents
    }

    /// Binary tournament among `candidates` (indices into the ranking): the
    /// first of two random picks if it dominates the second, else the second.
    fn tournament(ranking: &Ranking<'_>, candidates: &[usize], rng: &mut dyn RngCore) -> usize {
        let first = candidates[rng.random_range(0..candidates.len())];
        let second = candidates[rng.random_range(0..candidates.len())];
        if ranking.dominates(first, second) { first } else { second }
    }

    /// One child: crossover (or a copy of a random parent), then mutation.
    fn make_child(
        &self,
        parents: &[&FrozenTrial],
        spaces: &SearchSpaces,
        directions: &[Direction],
        rng: &mut dyn RngCore,
    ) -> BTreeMap<String, f64> {
        let mut child = BTreeMap::new();
        let conditional = |parent: &FrozenTrial| -> Vec<(String, f64)> {
            if !self.inherit_conditional {
                return Vec::new();
            }
            (parent.params.iter())
                .filter(|(name, (d, v))| spaces.conditional.get(*name) == Some(d) && d.contains(*v))
                .map(|(name, (_, v))| (name.clone(), *v))
                .collect()
        };
        if rng.random::<f64>() < self.crossover_prob {
            let ranking = Ranking::new(parents, directions);
            let everyone: Vec<usize> = (0..parents.len()).collect();
            let first = Self::tournament(&ranking, &everyone, rng);
            let others: Vec<usize> = everyone.iter().copied().filter(|&i| i != first).collect();
            let second = if others.is_empty() { first } else { Self::tournament(&ranking, &others, rng) };
            let (first, second) = (parents[first], parents[second]);
            for name in spaces.intersection.keys() {
                let from = if rng.random::<f64>() < self.swapping_prob { first } else { second };
                if let Some(value) = from.param(name) {
                    child.insert(name.clone(), value);
                }
            }
            // Conditional parameters: uniform crossover where both parents
            // have one, else inherited from the parent that has it.
            let (from_first, mut from_second): (BTreeMap<_, _>, BTreeMap<_, _>) =
                (conditional(first).into_iter().collect(), conditional(second).into_iter().collect());
            for (name, value) in from_first {
                let value = match from_second.remove(&name) {
                    Some(other) if rng.random::<f64>() >= self.swapping_prob => other,
                    _ => value,
                };
                child.insert(name, value);
            }
            child.extend(from_second);
        } else {
            let parent = parents[rng.random_range(0..parents.len())];
            for name in spaces.intersection.keys() {
                if let Some(value) = parent.param(name) {
                    child.insert(name.clone(), value);
                }
            }
            child.extend(conditional(parent));
        }
        let mutation_prob = self.mutation_prob.unwrap_or(1.0 / child.len().max(1) as f64);
        child.retain(|_, _| rng.random::<f64>() >= mutation_prob);
        child
    }
}

impl Sampler for NsgaIISampler {
    /// A trial of generation g > 0 waits until every trial of the earlier
    /// generations has finished: its parents are chosen from them.
    fn ready(&self, study: &StudyView<'_>, trial_number: u64) -> bool {
        let first = self.generation_of(trial_number) * self.population_size as u64;
        study.trials.iter().all(|t| t.number >= first || t.state.is_finished())
    }

    fn sample_relative(
        &self,
        study: &StudyView<'_>,
        trial_number: u64,
        rng: &mut dyn RngCore,
    ) -> Result<RelativeSample> {
        self.validate()?;
        let stored = study.trials.iter().find(|t| t.number == trial_number).and_then(|t| trial_generation(t));
        let generation = stored.unwrap_or_else(|| self.generation_of(trial_number));
        let mut sample = RelativeSample::default();
        sample.system_attrs.insert(GENERATION_KEY.to_string(), json!(generation));
        if generation == 0 {
            return Ok(sample);
        }
        let parents = self.parent_population(study, generation);
        if parents.is_empty() {
            return Ok(sample);
        }
        let spaces = SearchSpaces::of(study.trials);
        sample.params = self.make_child(&parents, &spaces, study.directions, rng);
        Ok(sample)
    }

    // First generation, mutated parameters and parameters no parent has are
    // drawn at random by the trait's default `sample_independent`.

    fn name(&self) -> &'static str {
        "NSGAIISampler"
    }
}

#[cfg(test)]
mod tests {
    use super::super::pareto::{hypervolume_2d, pareto_front};
    use super::super::random::RandomSampler;
    use super::*;
    use Direction::Minimize as Min;
    use TrialState::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    const MIN2: [Direction; 2] = [Min, Min];

    fn categorical(n: usize) -> Distribution {
        Distribution::Categorical { choices: (0..n).map(|i| json!(i)).collect() }
    }

    fn trial(number: u64, state: TrialState, generation: Option<u64>, values: &[f64]) -> FrozenTrial {
        let mut system_attrs = BTreeMap::new();
        if let Some(g) = generation {
            system_attrs.insert(GENERATION_KEY.to_string(), json!(g));
        }
        FrozenTrial {
            id: number as i64 + 100,
            number,
            state,
            params: BTreeMap::new(),
            values: (state == Complete).then(|| values.to_vec()),
            user_attrs: BTreeMap::new(),
            system_attrs,
            datetime_start: None,
            datetime_complete: None,
        }
    }

    fn with_params(mut trial: FrozenTrial, params: &[(&str, Distribution, f64)]) -> FrozenTrial {
        for (name, d, v) in params {
            trial.params.insert(name.to_string(), (d.clone(), *v));
        }
        trial
    }

    /// Trials as a study hands them to a sampler.
    fn shared(trials: &[FrozenTrial]) -> Vec<Arc<FrozenTrial>> {
        trials.iter().cloned().map(Arc::new).collect()
    }

    fn numbers(trials: &[&FrozenTrial]) -> Vec<u64> {
        trials.iter().map(|t| t.number).collect()
    }

    fn pop4() -> NsgaIISampler {
        NsgaIISampler { population_size: 4, ..NsgaIISampler::default() }
    }

    /// Runs a study by hand: ask the sampler, complete every parameter of
    /// `space` (relative values when legal, else independent draws), evaluate.
    fn run_study(
        sampler: &dyn Sampler,
        space: &[(String, Distribution)],
        objective: impl Fn(&BTreeMap<String, f64>) -> Vec<f64>,
        n_trials: u64,
        seed: u64,
    ) -> Vec<FrozenTrial> {
        let mut trials: Vec<FrozenTrial> = Vec::new();
        for number in 0..n_trials {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ number);
            let shared = shared(&trials);
            let view = StudyView { directions: &MIN2, trials: &shared };
            let relative = sampler.sample_relative(&view, number, &mut rng).unwrap();
            let mut params = BTreeMap::new();
            for (name, d) in space {
                let value = match relative.params.get(name) {
                    Some(&v) if d.contains(v) => v,
                    _ => sampler.sample_independent(&view, number, name, d, &mut rng).unwrap(),
                };
                params.insert(name.clone(), (d.clone(), value));
            }
            let plain: BTreeMap<String, f64> = params.iter().map(|(k, (_, v))| (k.clone(), *v)).collect();
            let mut t = trial(number, Complete, None, &objective(&plain));
            t.params = params;
            t.system_attrs = relative.system_attrs.into_iter().collect();
            trials.push(t);
        }
        trials
    }

    #[test]
    fn validates_settings() {
        assert!(NsgaIISampler::default().validate().is_ok());
        assert!(NsgaIISampler { population_size: 1, ..pop4() }.validate().is_err());
        assert!(NsgaIISampler { crossover_prob: 1.5, ..pop4() }.validate().is_err());
        assert!(NsgaIISampler { swapping_prob: -0.1, ..pop4() }.validate().is_err());
        assert!(NsgaIISampler { mutation_prob: Some(f64::NAN), ..pop4() }.validate().is_err());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let bad = NsgaIISampler { population_size: 0, ..pop4() };
        assert!(bad.sample_relative(&StudyView { directions: &MIN2, trials: &[] }, 0, &mut rng).is_err());
        let parsed: NsgaIISampler = serde_json::from_value(json!({"population_size": 8})).unwrap();
        assert_eq!(parsed, NsgaIISampler { population_size: 8, ..NsgaIISampler::default() });
    }

    #[test]
    fn generation_bookkeeping() {
        let sampler = pop4();
        let v = [1.0, 1.0];
        assert_eq!((0..9).map(|n| sampler.generation_of(n)).collect::<Vec<_>>(), [0, 0, 0, 0, 1, 1, 1, 1, 2]);
        // Generation 0 is ready at once; generation 1 only when every trial
        // of generation 0 has finished, whatever its state.
        let mut trials: Vec<FrozenTrial> = Vec::new();
        for (n, state) in [Complete, Running, Fail, Pruned].into_iter().enumerate() {
            trials.push(trial(n as u64, state, Some(0), &v));
        }
        let ready =
            |trials: &[FrozenTrial], n| sampler.ready(&StudyView { directions: &MIN2, trials: &shared(trials) }, n);
        assert!(ready(&trials, 3));
        assert!(!ready(&trials, 4), "trial 1 of generation 0 still runs");
        assert!(!ready(&trials, 9), "a later generation waits too");
        trials[1].state = Complete;
        assert!(ready(&trials, 4));
        // A running trial of generation 1 holds back generation 2 only.
        trials.push(trial(4, Running, Some(1), &v));
        assert!(ready(&trials, 7));
        assert!(!ready(&trials, 8));

        // sample_relative stores the generation with the trial ...
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let view = StudyView { directions: &MIN2, trials: &shared(&trials) };
        let sample = sampler.sample_relative(&view, 9, &mut rng).unwrap();
        assert_eq!(sample.system_attrs[GENERATION_KEY], json!(2));
        // ... and keeps one that a trial already carries (re-asked trial).
        trials.push(trial(9, Running, Some(1), &v));
        let view = StudyView { directions: &MIN2, trials: &shared(&trials) };
        let sample = sampler.sample_relative(&view, 9, &mut rng).unwrap();
        assert_eq!(sample.system_attrs[GENERATION_KEY], json!(1));
    }

    /// Minimize both. Generation 0: t0..t3; generation 1: t4..t7.
    fn two_generations() -> Vec<FrozenTrial> {
        let points: [(f64, f64); 8] =
            [(0.0, 12.0), (4.0, 4.0), (10.0, 0.0), (8.0, 8.0), (7.0, 1.0), (2.0, 9.0), (3.0, 11.0), (9.0, 9.0)];
        (points.iter().enumerate()).map(|(n, &(a, b))| trial(n as u64, Complete, Some(n as u64 / 4), &[a, b])).collect()
    }

    #[test]
    fn parent_population_is_the_elite() {
        let sampler = pop4();
        let mut trials = two_generations();
        trials.push(trial(8, Fail, Some(1), &[]));
        let trials = shared(&trials);
        let view = StudyView { directions: &MIN2, trials: &trials };
        assert!(sampler.parent_population(&view, 0).is_empty());
        // Generation 1's parents: all of generation 0 (it has exactly 4).
        let mut parents = numbers(&sampler.parent_population(&view, 1));
        parents.sort();
        assert_eq!(parents, vec![0, 1, 2, 3]);
        // Generation 2: elite of t4..t7 together with t0..t3. Front 0 is
        // t0 (0,12) t1 (4,4) t2 (10,0) t4 (7,1) t5 (2,9): five for four places.
        // Crowding, objective 0 (range 10): t5 (4-0)/10, t1 (7-2)/10, t4 (10-4)/10;
        // objective 1 (range 12): t4 (4-0)/12, t1 (9-1)/12, t5 (12-4)/12.
        // t1 = 1.167, t5 = 1.067, t4 = 0.933 (dropped); t0 and t2 are extremes (inf).
        let parents = numbers(&sampler.parent_population(&view, 2));
        assert_eq!(parents.len(), 4);
        assert_eq!(parents[..2].iter().collect::<BTreeSet<_>>(), [0, 2].iter().collect());
        assert_eq!(&parents[2..], &[1, 5]);
        // Generation 3 does not exist yet: the parents stay those of 2.
        let later = numbers(&sampler.parent_population(&view, 7));
        assert_eq!(later.iter().collect::<BTreeSet<_>>(), parents.iter().collect());
    }

    #[test]
    fn elite_fills_whole_fronts_first() {
        let sampler = NsgaIISampler { population_size: 3, ..pop4() };
        // Front 0: a (1,1); front 1: d (2.5,2.5) b (2,3) c (3,2); front 2: e (5,5).
        let trials: Vec<FrozenTrial> = [(1.0, 1.0), (2.5, 2.5), (2.0, 3.0), (3.0, 2.0), (5.0, 5.0)]
            .iter()
            .enumerate()
            .map(|(n, &(a, b))| trial(n as u64, Complete, Some(0), &[a, b]))
            .collect();
        let refs: Vec<&FrozenTrial> = trials.iter().collect();
        // a, then the two extremes of front 1 (b, c); d sits in the middle.
        let mut elite = numbers(&sampler.select_elite(&refs, &MIN2));
        elite.sort();
        assert_eq!(elite, vec![0, 2, 3]);
    }

    #[test]
    fn elite_uses_constrained_domination() {
        let sampler = NsgaIISampler { population_size: 2, ..pop4() };
        let constrained = |n: u64, values: [f64; 2], constraint: Option<f64>| {
            let mut t = trial(n, Complete, Some(0), &values);
            if let Some(c) = constraint {
                t.system_attrs.insert(super::super::CONSTRAINTS_KEY.to_string(), json!([c, -1.0]));
            }
            t
        };
        let trials = [
            constrained(0, [0.0, 0.0], Some(3.0)),    // best values, most violated
            constrained(1, [9.0, 9.0], Some(0.0)),    // feasible
            constrained(2, [1.0, 1.0], Some(0.5)),    // infeasible, small violation
            constrained(3, [0.0, 0.0], None),         // no constraint values
            constrained(4, [10.0, 10.0], Some(-2.0)), // feasible, dominated by 1
        ];
        let refs: Vec<&FrozenTrial> = trials.iter().collect();
        let mut elite = numbers(&sampler.select_elite(&refs, &MIN2));
        elite.sort();
        assert_eq!(elite, vec![1, 4]);
        let sampler = NsgaIISampler { population_size: 3, ..pop4() };
        assert_eq!(numbers(&sampler.select_elite(&refs, &MIN2))[2], 2);
    }

    #[test]
    fn search_spaces_follow_the_complete_trials() {
        let d = categorical(5);
        let trials = vec![
            with_params(
                trial(0, Complete, Some(0), &[0.0, 0.0]),
                &[("a", d.clone(), 1.0), ("b", d.clone(), 2.0), ("c", d.clone(), 3.0), ("one", categorical(1), 0.0)],
            ),
            with_params(
                trial(1, Complete, Some(0), &[0.0, 0.0]),
                &[("a", d.clone(), 1.0), ("b", categorical(3), 2.0), ("one", categorical(1), 0.0)],
            ),
            // A failed trial's params do not shape the space.
            with_params(trial(2, Fail, Some(0), &[]), &[("z", d.clone(), 0.0)]),
        ];
        let spaces = SearchSpaces::of(&trials);
        assert_eq!(spaces.intersection.keys().collect::<Vec<_>>(), vec!["a"]);
        // "b" changed its distribution, "one" is single-valued.
        assert_eq!(spaces.conditional.keys().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(SearchSpaces::of::<FrozenTrial>(&[]), SearchSpaces::default());
    }

    /// Generation 0 of four trials with distinct values per trial: trial k has
    /// p_j = 10 k + j, so every value names the trial it came from.
    fn distinct_generation(n_params: usize) -> (Vec<FrozenTrial>, Distribution) {
        let d = Distribution::Int { low: 0, high: 100, step: 1 };
        let trials = (0..4u64)
            .map(|k| {
                let params: Vec<(String, Distribution, f64)> =
                    (0..n_params).map(|j| (format!("p{j}"), d.clone(), (10 * k + j as u64) as f64)).collect();
                let params: Vec<(&str, Distribution, f64)> =
                    params.iter().map(|(n, d, v)| (n.as_str(), d.clone(), *v)).collect();
                with_params(trial(k, Complete, Some(0), &[k as f64, 3.0 - k as f64]), &params)
            })
            .collect();
        (trials, d)
    }

    fn child_of(sampler: &NsgaIISampler, trials: &[FrozenTrial], seed: u64) -> BTreeMap<String, f64> {
        let view = StudyView { directions: &MIN2, trials: &shared(trials) };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sample = sampler.sample_relative(&view, trials.len() as u64, &mut rng).unwrap();
        assert_eq!(sample.system_attrs[GENERATION_KEY], json!(1));
        sample.params
    }

    #[test]
    fn children_inherit_parent_values_except_mutated_ones() {
        let (trials, _) = distinct_generation(6);
        let no_mutation = NsgaIISampler { mutation_prob: Some(0.0), crossover_prob: 1.0, ..pop4() };
        let mut mixed = 0;
        for seed in 0..200 {
            let child = child_of(&no_mutation, &trials, seed);
            assert_eq!(child.len(), 6, "nothing mutated");
            // Each p_j = 10 k + j comes from a parent k, and at most two parents contribute.
            let mut sources = BTreeSet::new();
            for (j, (name, v)) in child.iter().enumerate() {
                assert_eq!(name, &format!("p{j}"));
                assert_eq!(*v as u64 % 10, j as u64);
                sources.insert(*v as u64 / 10);
            }
            assert!(sources.len() <= 2 && sources.iter().all(|k| *k < 4));
            mixed += (sources.len() == 2) as usize;
        }
        assert!(mixed > 100, "uniform crossover mixes two parents most of the time ({mixed}/200)");

        // Default mutation: 1/6 of the parameters are dropped, so redrawn.
        let default = NsgaIISampler { crossover_prob: 1.0, ..pop4() };
        let kept: usize = (0..300).map(|seed| child_of(&default, &trials, seed).len()).sum();
        let dropped = 1.0 - kept as f64 / (300.0 * 6.0);
        assert!((dropped - 1.0 / 6.0).abs() < 0.04, "mutation rate {dropped}");
        // Every parameter mutated: nothing is inherited.
        let all = NsgaIISampler { mutation_prob: Some(1.0), ..pop4() };
        assert!(child_of(&all, &trials, 3).is_empty());
    }

    #[test]
    fn without_crossover_and_mutation_a_child_copies_a_parent() {
        let (trials, _) = distinct_generation(5);
        let copier = NsgaIISampler { crossover_prob: 0.0, mutation_prob: Some(0.0), ..pop4() };
        let mut copied = BTreeSet::new();
        for seed in 0..50 {
            let child = child_of(&copier, &trials, seed);
            let parent = trials.iter().find(|t| t.param("p0") == child.get("p0").copied()).unwrap();
            let parent_params: BTreeMap<String, f64> =
                parent.params.iter().map(|(k, (_, v))| (k.clone(), *v)).collect();
            assert_eq!(child, parent_params);
            copied.insert(parent.number);
        }
        assert_eq!(copied.len(), 4, "the copied parent is drawn at random");
    }

    #[test]
    fn conditional_parameters_are_inherited_from_the_parent_that_has_them() {
        let (mut trials, d) = distinct_generation(2);
        // Trials 0 and 1 have a conditional "c" (same distribution); trial 2 has
        // "x" with a distribution that changes between trials 2 and 3.
        trials[0].params.insert("c".into(), (d.clone(), 50.0));
        trials[1].params.insert("c".into(), (d.clone(), 51.0));
        trials[2].params.insert("x".into(), (categorical(3), 1.0));
        trials[3].params.insert("x".into(), (categorical(4), 1.0));
        let copier = NsgaIISampler { crossover_prob: 0.0, mutation_prob: Some(0.0), ..pop4() };
        let mut seen_c = BTreeSet::new();
        for seed in 0..60 {
            let child = child_of(&copier, &trials, seed);
            assert!(!child.contains_key("x"));
            let parent = child["p0"] as u64 / 10;
            if parent < 2 {
                assert_eq!(child["c"], 50.0 + parent as f64);
                seen_c.insert(parent);
            } else {
                assert!(!child.contains_key("c"));
            }
        }
        assert_eq!(seen_c.len(), 2);
        // Optuna's behaviour: conditional parameters are left to random draws.
        let optuna = NsgaIISampler { inherit_conditional: false, ..copier };
        assert!((0..60).all(|seed| !child_of(&optuna, &trials, seed).contains_key("c")));
    }

    #[test]
    fn sampling_is_reproducible() {
        let (mut trials, _) = distinct_generation(8);
        let sampler = pop4();
        let children = |trials: &[FrozenTrial]| (0..20).map(|s| child_of(&sampler, trials, s)).collect::<Vec<_>>();
        let first = children(&trials);
        assert_eq!(first, children(&trials));
        assert!(first.windows(2).any(|w| w[0] != w[1]), "different seeds give different children");
        // The sampler keeps no state: a study with the trials in a different
        // storage order but the same numbers gives the same children.
        trials.reverse();
        trials.sort_by_key(|t| t.number);
        assert_eq!(first, children(&trials));
    }

    /// Toy problem: eight categorical genes x_i in 0..=20, minimize
    /// f1 = Σ x_i and f2 = Σ (x_i - 10)². The Pareto set spreads a total of
    /// at most 80 evenly over the genes, which random draws rarely do.
    #[test]
    fn beats_random_search_on_a_toy_problem() {
        let space: Vec<(String, Distribution)> = (0..8).map(|i| (format!("x{i}"), categorical(21))).collect();
        let objective = |p: &BTreeMap<String, f64>| {
            vec![p.values().sum::<f64>(), p.values().map(|x| (x - 10.0) * (x - 10.0)).sum::<f64>()]
        };
        let reference = [161.0, 801.0];
        let hypervolume = |trials: &[FrozenTrial]| {
            let front: Vec<&[f64]> = pareto_front(trials, &MIN2).iter().map(|t| t.values.as_deref().unwrap()).collect();
            hypervolume_2d(&front, reference, MIN2)
        };
        let (generations, population_size) = (10, 20);
        let budget = generations * population_size;
        let nsga2 = NsgaIISampler { population_size: population_size as usize, ..NsgaIISampler::default() };
        for seed in 1..=5 {
            let evolved = run_study(&nsga2, &space, objective, budget, seed);
            let random = run_study(&RandomSampler, &space, objective, budget, seed);
            assert_eq!(evolved.iter().filter_map(trial_generation).max(), Some(generations - 1));
            // NSGA-II's result: the elite population after the last generation.
            let evolved_shared = shared(&evolved);
            let view = StudyView { directions: &MIN2, trials: &evolved_shared };
            let survivors: Vec<FrozenTrial> =
                nsga2.parent_population(&view, generations).into_iter().cloned().collect();
            assert_eq!(survivors.len(), population_size as usize);
            let (hv_evolved, hv_survivors, hv_random) =
                (hypervolume(&evolved), hypervolume(&survivors), hypervolume(&random));
            eprintln!("seed {seed}: NSGA-II {hv_evolved:.0} (survivors {hv_survivors:.0}), random {hv_random:.0}");
            assert!(hv_evolved > 1.03 * hv_random, "seed {seed}: NSGA-II {hv_evolved} vs random {hv_random}");
            assert!(hv_survivors > hv_random, "seed {seed}: survivors {hv_survivors} vs random {hv_random}");
        }
    }
}
