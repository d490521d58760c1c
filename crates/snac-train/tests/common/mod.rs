//! Shared by the integration tests: the UCI digits data and MLP builder.
#![allow(dead_code)]

use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::config::{DatasetConfig, DatasetName};
use snac_core::data::Split;

/// The UCI digits 8×8 embedded in snac-core (1797 samples, pixels scaled
/// to 0..1), 80 % for training and 20 % held out. Always `Some`; an
/// `Option` so tests read as when the data may be missing.
pub fn digits() -> Option<(Split, Split)> {
    let data = snac_core::data::load(&DatasetConfig::new(DatasetName::Digits)).expect("embedded digits");
    Some((data.train, data.val))
}

pub fn mlp(inputs: usize, hidden: &[usize], norm: Norm, act: Activation, classes: usize) -> Arch {
    let mut components: Vec<Component> =
        hidden.iter().enumerate().map(|(i, &units)| Component::mlp(&format!("b{i}"), units, norm, act)).collect();
    components.push(Component::output("output", classes, Activation::Softmax));
    Arch::new(Shape::Flat(inputs), components)
}
