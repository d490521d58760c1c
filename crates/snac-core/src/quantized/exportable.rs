//! What the hls4ml hand-off (`snac-export`) can export, in one list.
//!
//! [`NOT_EXPORTABLE`] names every architecture feature the export refuses,
//! with why. [`exportable`] checks an architecture against it, and
//! `search_space.exportable_only: true` uses it to drop the refused choices
//! from the search space (`config::exportable::restrict`). When the export learns a feature,
//! remove its entry here and nothing else changes.

use crate::arch::{Activation, Arch, Layer, Norm};

/// A feature of an architecture the export may refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// A hidden (or output) activation.
    Activation(Activation),
    /// A norm choice of `norm_space`.
    Norm(Norm),
    /// `ConvAttn` blocks ([`Layer::ConvAttention`]).
    ConvAttention,
    /// DeepSets: Dense per set element and the pooling over a set.
    SetLayers,
}

impl Feature {
    /// How the feature is written in a config.
    pub fn describe(&self) -> String {
        match self {
            Feature::Activation(act) => act.name().to_string(),
            Feature::Norm(norm) => norm.name().unwrap_or("null").to_string(),
            Feature::ConvAttention => "ConvAttn".to_string(),
            Feature::SetLayers => "DeepSets (model_type: deepsets)".to_string(),
        }
    }
}

/// What the export refuses, and why. The one list to change when the export
/// learns a feature.
/// (ConvAttention is exported since hls4ml's Einsum and a configured
/// softmax carry it; see snac-export's `qonnx.rs`.)
pub const NOT_EXPORTABLE: &[(Feature, &str)] =
    &[(Feature::Norm(Norm::Layer), "LayerNorm has no fixed-point form here")];

/// Why the export refuses `feature`; `None` when it exports it.
pub fn refusal(feature: Feature) -> Option<&'static str> {
    NOT_EXPORTABLE.iter().find(|(f, _)| *f == feature).map(|(_, why)| *why)
}

/// The features of one layer the list may refuse.
fn layer_feature(layer: &Layer, last: bool) -> Option<Feature> {
    match layer {
        Layer::ConvAttention { .. } => Some(Feature::ConvAttention),
        Layer::LayerNorm => Some(Feature::Norm(Norm::Layer)),
        Layer::BatchNorm => Some(Feature::Norm(Norm::Batch)),
        Layer::Aggregate(_) => Some(Feature::SetLayers),
        // A final softmax is left out of the exported model.
        Layer::Act(Activation::Softmax) if last => None,
        Layer::Act(act) => Some(Feature::Activation(*act)),
        Layer::Dense { .. } | Layer::Conv2d { .. } | Layer::Flatten => None,
    }
}

/// `Ok` when the export can hand `arch` to hls4ml as far as [`NOT_EXPORTABLE`]
/// knows; otherwise the first refused layer and why.
pub fn exportable(arch: &Arch) -> Result<(), String> {
    let layers: Vec<&Layer> = arch.layers().collect();
    for (index, layer) in layers.iter().enumerate() {
        let Some(feature) = layer_feature(layer, index + 1 == layers.len()) else { continue };
        if let Some(why) = refusal(feature) {
            return Err(format!(
                "layer {index} ({layer:?}) cannot be exported: {why}; `search_space.exportable_only: true` keeps \
                 the search to architectures the export hands to hls4ml"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{BlockType, Component, Shape};

    #[test]
    fn one_list_decides() {
        assert!(refusal(Feature::ConvAttention).is_none());
        assert!(refusal(Feature::Activation(Activation::Gelu)).is_none());
        assert!(refusal(Feature::SetLayers).is_none());
        assert!(refusal(Feature::Norm(Norm::Layer)).is_some());
        assert!(refusal(Feature::Activation(Activation::Relu)).is_none());
        assert!(refusal(Feature::Norm(Norm::Batch)).is_none());
        let attention = |act| {
            Arch::new(
                Shape::Image { height: 4, width: 4, channels: 2 },
                vec![
                    Component {
                        name: "b0".into(),
                        block_type: BlockType::ConvAttn,
                        layers: vec![Layer::ConvAttention { hidden: 4, scale: false }, Layer::Act(act)],
                    },
                    Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
                    Component::output("output", 10, Activation::Softmax),
                ],
            )
        };
        assert_eq!(exportable(&attention(Activation::Relu)), Ok(()));
        assert_eq!(exportable(&attention(Activation::Gelu)), Ok(()));
        let dense = Arch::new(
            Shape::Flat(8),
            vec![
                Component::mlp("layer_0", 4, Norm::Batch, Activation::Tanh),
                Component::output("o", 3, Activation::Softmax),
            ],
        );
        assert_eq!(exportable(&dense), Ok(()));
        let layer_norm = Arch::new(
            Shape::Flat(8),
            vec![
                Component::mlp("layer_0", 4, Norm::Layer, Activation::Tanh),
                Component::output("o", 3, Activation::Softmax),
            ],
        );
        assert!(exportable(&layer_norm).unwrap_err().contains("layer 1 (LayerNorm)"));
    }
}
