//! Shared by the integration tests: the UCI digits data and MLP builder.
#![allow(dead_code)]

use snac_core::arch::{Activation, Aggregation, Arch, Component, Layer, Norm, Padding, Shape};
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

/// The digits as images: a Conv block, a ConvAttn block and the head.
pub fn conv_attention_net(scale: bool) -> Arch {
    let image = Shape::Image { height: 8, width: 8, channels: 1 };
    Arch::new(
        image,
        vec![
            Component {
                name: "b0".into(),
                block_type: snac_core::arch::BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 8, kernel: 3, padding: Padding::Valid },
                    Layer::BatchNorm,
                    Layer::Act(Activation::Relu),
                    Layer::Conv2d { filters: 8, kernel: 1, padding: Padding::Same },
                    Layer::Act(Activation::Relu),
                ],
            },
            Component {
                name: "b1".into(),
                block_type: snac_core::arch::BlockType::ConvAttn,
                layers: vec![Layer::ConvAttention { hidden: 4, scale }, Layer::Act(Activation::Relu)],
            },
            Component {
                name: "flatten".into(),
                block_type: snac_core::arch::BlockType::Flatten,
                layers: vec![Layer::Flatten],
            },
            Component::mlp("head", 32, Norm::None, Activation::Relu),
            Component::output("output", 10, Activation::Softmax),
        ],
    )
}

/// Each digit as a set of its 64 pixels, (x, y, intensity) per element.
pub fn as_point_sets(split: &Split) -> Split {
    let mut x = Vec::with_capacity(split.x.len() * 3);
    for image in split.x.chunks_exact(64) {
        for (i, &v) in image.iter().enumerate() {
            x.extend([(i % 8) as f32 / 7.0, (i / 8) as f32 / 7.0, v]);
        }
    }
    Split { x, y: split.y.clone() }
}

/// phi (two per-element layers), a pooling, rho and the output.
pub fn deepsets_net(mode: Aggregation) -> Arch {
    Arch::new(
        Shape::Set { elements: 64, features: 3 },
        vec![
            Component::mlp("phi_0", 32, Norm::Batch, Activation::Relu),
            Component::mlp("phi_1", 32, Norm::None, Activation::Relu),
            Component {
                name: "aggregate".into(),
                block_type: snac_core::arch::BlockType::Flatten,
                layers: vec![Layer::Aggregate(mode)],
            },
            Component::mlp("rho_0", 32, Norm::None, Activation::Relu),
            Component::output("output", 10, Activation::Softmax),
        ],
    )
}
