//! `search_space.exportable_only: true`: the search space without the
//! choices the hls4ml export refuses ([`crate::quantized::exportable`]).

use super::{ModelType, SearchSpaceConfig};
use crate::arch::Activation;
use crate::quantized::exportable::{Feature, refusal};

/// Drops the refused choices from `space` (act_space, norm_space,
/// block_types) for a `model_type` search. Returns what was dropped, one
/// `choice (why)` each, or an error when a list the search needs is left
/// empty or a fixed choice (the output activation, DeepSets) is refused.
pub fn restrict(space: &mut SearchSpaceConfig, model_type: ModelType) -> Result<Vec<String>, String> {
    let mut dropped = Vec::new();
    let mut drop = |feature: Feature| match refusal(feature) {
        Some(why) => {
            let entry = format!("{} ({why})", feature.describe());
            if !dropped.contains(&entry) {
                dropped.push(entry);
            }
            false
        }
        None => true,
    };
    space.act_space.retain(|act| drop(Feature::Activation(*act)));
    space.norm_space.retain(|norm| drop(Feature::Norm(*norm)));
    space.block_types.retain(|block| block != "ConvAttn" || drop(Feature::ConvAttention));
    let empty = |list: &str, what: &str| {
        format!(
            "leaves search_space.{list} empty: every {what} in it cannot be exported ({}); add one the export \
             supports or set exportable_only: false",
            dropped.join("; ")
        )
    };
    if space.act_space.is_empty() {
        return Err(empty("act_space", "activation"));
    }
    if space.norm_space.is_empty() {
        return Err(empty("norm_space", "norm"));
    }
    if model_type == ModelType::Block && space.block_types.is_empty() {
        return Err(empty("block_types", "block type"));
    }
    let output = Feature::Activation(space.output_activation);
    if space.output_activation != Activation::Softmax
        && let Some(why) = refusal(output)
    {
        return Err(format!(
            "but search_space.output_activation is {}, which cannot be exported: {why}",
            output.describe()
        ));
    }
    if model_type == ModelType::DeepSets
        && let Some(why) = refusal(Feature::SetLayers)
    {
        return Err(format!("but search.model_type is deepsets, which cannot be exported: {why}"));
    }
    Ok(dropped)
}
