//! Building the sampler a config names: [`SamplerKind::build`] turns the
//! `search.sampler` setting into the [`Sampler`] a study asks.

use super::Sampler;
use super::nsga2::NsgaIISampler;
use super::random::RandomSampler;
use crate::config::SamplerKind;
use std::sync::Arc;

impl SamplerKind {
    /// The sampler of this kind; `population_size` is NSGA-II's generation
    /// size (`search.population_size`), unused by the random sampler.
    pub fn build(&self, population_size: usize) -> Arc<dyn Sampler> {
        match self {
            SamplerKind::Random => Arc::new(RandomSampler),
            SamplerKind::Nsga2 => Arc::new(NsgaIISampler { population_size, ..Default::default() }),
        }
    }
}
