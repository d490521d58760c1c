//! Uniform random search: every parameter is drawn independently from its
//! distribution. It is NSGA-II's first generation and the baseline to beat.

use super::Sampler;

/// Draws every parameter uniformly (log-uniformly for log floats); looks at
/// nothing in the study.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSampler;

/// Both sampling methods keep the trait's defaults: nothing fixed up front,
/// every parameter drawn uniformly.
impl Sampler for RandomSampler {
    fn name(&self) -> &'static str {
        "RandomSampler"
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Distribution, StudyView};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    #[test]
    fn draws_legal_values_reproducibly() {
        let study = StudyView { directions: &[], trials: &[] };
        let distributions = [
            Distribution::Categorical { choices: vec![json!(8), json!(16), json!(32)] },
            Distribution::Int { low: 2, high: 20, step: 3 },
            Distribution::Float { low: 1e-4, high: 1e-1, log: true },
            Distribution::Float { low: -1.0, high: 1.0, log: false },
        ];
        let draw = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut values = Vec::new();
            for _ in 0..50 {
                for d in &distributions {
                    let v = RandomSampler.sample_independent(&study, 0, "p", d, &mut rng).unwrap();
                    assert!(d.contains(v), "{v} not in {d:?}");
                    values.push(v);
                }
            }
            values
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let relative = RandomSampler.sample_relative(&study, 0, &mut rng).unwrap();
        assert!(relative.params.is_empty() && relative.system_attrs.is_empty());
    }
}
