//! The search space: turns a trial's parameters into an [`Arch`].
//!
//! Parameters are asked for define-by-run through [`Suggest`], so a block's
//! parameters exist only when the block does, with SNAC-Pack's names (`b0`,
//! `b0_Conv_channels_0`, `b1_MLP_units`, `MLP_Head_width_0`, ...;
//! docs/snac-pack-compat.md §2), and in the same style for DeepSets
//! (`num_phi_layers`, `phi_width_0`, `aggregation`, `num_rho_layers`,
//! `rho_width_0`, ...). Categorical choices are stored as indices into the
//! config's lists.
//! Unlike the original's MLP mode, the space is the config's and the decoded
//! architecture is exactly the one trained and recorded.

use crate::arch::{Activation, Aggregation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use crate::config::{LayerRange, ModelType, SearchSpaceConfig};
use crate::trial::Distribution;
use anyhow::{Result, bail};
use serde_json::Value;

/// Source of parameter values (a trial, or a fixed map for replay).
pub trait Suggest {
    /// Returns the internal value of `name` drawn from `distribution`.
    fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<f64>;
}

/// Everything [`decode`] needs besides the parameters.
#[derive(Clone, Debug)]
pub struct SpaceSpec {
    pub model_type: ModelType,
    pub space: SearchSpaceConfig,
    /// Shape of one input sample.
    pub input_shape: Shape,
    pub output_dim: usize,
    /// MLP mode: hidden layers, inclusive.
    pub min_layers: usize,
    pub max_layers: usize,
}

fn pick<T: Clone>(src: &mut dyn Suggest, name: &str, choices: &[T], to_json: impl Fn(&T) -> Value) -> Result<T> {
    if choices.is_empty() {
        bail!("parameter '{name}' has no choices");
    }
    let distribution = Distribution::Categorical { choices: choices.iter().map(to_json).collect() };
    let index = src.suggest(name, distribution)?;
    choices.get(index as usize).cloned().ok_or_else(|| anyhow::anyhow!("'{name}': choice index {index} out of range"))
}

fn pick_width(src: &mut dyn Suggest, name: &str, widths: &[usize]) -> Result<usize> {
    pick(src, name, widths, |w| Value::from(*w))
}

fn pick_act(src: &mut dyn Suggest, name: &str, acts: &[Activation]) -> Result<Activation> {
    pick(src, name, acts, |a| Value::from(a.name()))
}

fn pick_norm(src: &mut dyn Suggest, name: &str, norms: &[Norm]) -> Result<Norm> {
    pick(src, name, norms, |n| n.name().map(Value::from).unwrap_or(Value::Null))
}

fn pick_count(src: &mut dyn Suggest, name: &str, range: LayerRange) -> Result<usize> {
    let distribution = Distribution::Int { low: range.min as i64, high: range.max as i64, step: 1 };
    Ok(src.suggest(name, distribution)? as usize)
}

/// `prefix_{i}` components of Dense [+ norm] + activation, `count` drawn from
/// `range`: the phi (per element) and rho (after pooling) stacks of DeepSets.
fn dense_stack(
    src: &mut dyn Suggest,
    prefix: &str,
    range: LayerRange,
    widths: &[usize],
    space: &SearchSpaceConfig,
) -> Result<Vec<Component>> {
    let count = pick_count(src, &format!("num_{prefix}_layers"), range)?;
    (0..count)
        .map(|i| {
            let units = pick_width(src, &format!("{prefix}_width_{i}"), widths)?;
            let act = pick_act(src, &format!("{prefix}_act_{i}"), &space.act_space)?;
            let norm = pick_norm(src, &format!("{prefix}_norm_{i}"), &space.norm_space)?;
            Ok(Component::mlp(&format!("{prefix}_{i}"), units, norm, act))
        })
        .collect()
}

/// Decodes one architecture from the parameters `src` provides.
pub fn decode(spec: &SpaceSpec, src: &mut dyn Suggest) -> Result<Arch> {
    let space = &spec.space;
    let mut components = Vec::new();
    let mut shape = spec.input_shape;
    // MLP and block models see images and sets as one vector.
    let flatten = |components: &mut Vec<Component>, shape: &mut Shape| {
        if matches!(shape, Shape::Image { .. } | Shape::Set { .. }) {
            components.push(Component {
                name: "flatten".into(),
                block_type: BlockType::Flatten,
                layers: vec![Layer::Flatten],
            });
            *shape = Shape::Flat(shape.numel());
        }
    };
    match spec.model_type {
        ModelType::Mlp => {
            flatten(&mut components, &mut shape);
            let n_layers = src.suggest(
                "num_layers",
                Distribution::Int { low: spec.min_layers as i64, high: spec.max_layers as i64, step: 1 },
            )? as usize;
            for i in 0..n_layers {
                let units = pick_width(src, &format!("mlp_width_{i}"), &space.mlp_width_space)?;
                let act = pick_act(src, &format!("mlp_act_{i}"), &space.act_space)?;
                let norm = pick_norm(src, &format!("mlp_norm_{i}"), &space.norm_space)?;
                components.push(Component::mlp(&format!("layer_{i}"), units, norm, act));
            }
        }
        ModelType::Block => {
            for i in 0..space.num_blocks {
                let block = pick(src, &format!("b{i}"), &space.block_types, |b| Value::from(b.as_str()))?;
                let name = format!("b{i}");
                match block.as_str() {
                    "Conv" => {
                        let Shape::Image { height, .. } = shape else { continue };
                        let component = conv_block(src, space, i, name, height)?;
                        for layer in &component.layers {
                            shape = layer.output_shape(shape)?;
                        }
                        components.push(component);
                    }
                    "ConvAttn" => {
                        if !matches!(shape, Shape::Image { .. }) {
                            continue;
                        }
                        let hidden =
                            pick_width(src, &format!("b{i}_ConvAttn_hidden"), &space.conv_attn_hidden_channel_space)?;
                        let act = pick_act(src, &format!("b{i}_ConvAttn_act"), &space.act_space)?;
                        components.push(Component {
                            name,
                            block_type: BlockType::ConvAttn,
                            layers: vec![
                                Layer::ConvAttention { hidden, scale: space.attention_scale },
                                Layer::Act(act),
                            ],
                        });
                    }
                    "MLP" => {
                        flatten(&mut components, &mut shape);
                        let units = pick_width(src, &format!("b{i}_MLP_units"), &space.mlp_width_space)?;
                        let act = pick_act(src, &format!("b{i}_MLP_act"), &space.act_space)?;
                        let norm = pick_norm(src, &format!("b{i}_MLP_norm"), &space.norm_space)?;
                        components.push(Component::mlp(&name, units, norm, act));
                        shape = Shape::Flat(units);
                    }
                    "None" => {}
                    other => bail!("unknown block type '{other}'; accepted: Conv, ConvAttn, MLP, None"),
                }
            }
            flatten(&mut components, &mut shape);
            for j in 0..2 {
                let units = pick_width(src, &format!("MLP_Head_width_{j}"), &space.mlp_width_space)?;
                let act = pick_act(src, &format!("MLP_Head_act_{j}"), &space.act_space)?;
                components.push(Component::mlp(&format!("MLP_Head_{j}"), units, Norm::None, act));
            }
        }
        ModelType::DeepSets => {
            let Shape::Set { .. } = shape else {
                bail!(
                    "search.model_type: deepsets needs samples that are sets (N, elements, features), \
                     but the data's samples are {shape}"
                );
            };
            components.extend(dense_stack(src, "phi", space.phi_layers, &space.phi_width_space, space)?);
            let aggregation = pick(src, "aggregation", &space.aggregation_space, |a| Value::from(a.name()))?;
            components.push(aggregate(aggregation));
            components.extend(dense_stack(src, "rho", space.rho_layers, &space.rho_width_space, space)?);
        }
    }
    components.push(Component::output("output", spec.output_dim, space.output_activation));
    let arch = Arch::new(spec.input_shape, components);
    arch.validate()?;
    Ok(arch)
}

/// Block `b{i}` of a block model when it is a Conv block on an image of
/// `height` rows: two Conv2d [+ norm] + activation layers.
fn conv_block(
    src: &mut dyn Suggest,
    space: &SearchSpaceConfig,
    i: usize,
    name: String,
    height: usize,
) -> Result<Component> {
    let mut layers = Vec::new();
    let mut params = Vec::new();
    for j in 0..2 {
        let channels = pick_width(src, &format!("b{i}_Conv_channels_{j}"), &space.channel_space)?;
        let kernel = pick_width(src, &format!("b{i}_Conv_kernels_{j}"), &space.kernel_space)?;
        let act = pick_act(src, &format!("b{i}_Conv_act_{j}"), &space.act_space)?;
        let norm = pick_norm(src, &format!("b{i}_Conv_norm_{j}"), &space.norm_space)?;
        params.push((channels, kernel, act, norm));
    }
    // SNAC-Pack: if the image would shrink to nothing, all kernels become 1.
    let shrink: usize = params.iter().map(|p| p.1 - 1).sum();
    let all_ones = height <= shrink;
    for (channels, kernel, act, norm) in params {
        let kernel = if all_ones { 1 } else { kernel };
        let padding = if kernel > 1 { Padding::Valid } else { Padding::Same };
        layers.push(Layer::Conv2d { filters: channels, kernel, padding });
        layers.extend(norm.layer());
        layers.push(Layer::Act(act));
    }
    Ok(Component { name, block_type: BlockType::Conv, layers })
}

/// The DeepSets pooling component.
fn aggregate(aggregation: Aggregation) -> Component {
    Component {
        name: "aggregate".into(),
        block_type: BlockType::Aggregate,
        layers: vec![Layer::Aggregate(aggregation)],
    }
}

/// Replays fixed parameters (by name → internal value); errors on a missing one.
pub struct FixedParams<'a>(pub &'a std::collections::BTreeMap<String, f64>);

impl Suggest for FixedParams<'_> {
    fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<f64> {
        match self.0.get(name) {
            Some(v) if distribution.contains(*v) => Ok(*v),
            Some(v) => bail!("parameter '{name}' = {v} is outside {distribution:?}"),
            None => bail!("parameter '{name}' is missing"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;

    struct RandomSource(rand_chacha::ChaCha8Rng, Vec<String>);
    impl Suggest for RandomSource {
        fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<f64> {
            self.1.push(name.to_string());
            Ok(distribution.sample(&mut self.0))
        }
    }

    pub(crate) fn space(block_types: &[&str]) -> SearchSpaceConfig {
        SearchSpaceConfig {
            mlp_width_space: vec![8, 16, 32, 64, 128],
            act_space: vec![Activation::Relu, Activation::Tanh, Activation::Sigmoid],
            norm_space: vec![Norm::None, Norm::Batch],
            block_types: block_types.iter().map(|s| s.to_string()).collect(),
            num_blocks: 4,
            initial_img_size: Some(8),
            output_dim: Some(10),
            output_activation: Activation::Softmax,
            channel_space: vec![4, 8],
            kernel_space: vec![1, 3, 5],
            conv_attn_hidden_channel_space: vec![4],
            attention_scale: false,
            phi_width_space: vec![4, 8, 16],
            rho_width_space: vec![12, 24],
            phi_layers: LayerRange { min: 1, max: 3 },
            rho_layers: LayerRange { min: 0, max: 2 },
            aggregation_space: vec![Aggregation::Mean, Aggregation::Max],
            exportable_only: false,
            dropped_for_export: Vec::new(),
        }
    }

    pub(crate) fn deepsets_spec(space: SearchSpaceConfig) -> SpaceSpec {
        SpaceSpec {
            model_type: ModelType::DeepSets,
            space,
            input_shape: Shape::Set { elements: 16, features: 3 },
            output_dim: 10,
            min_layers: 2,
            max_layers: 5,
        }
    }

    #[test]
    fn deepsets_phi_aggregate_rho() {
        let spec = deepsets_spec(space(&["MLP"]));
        let (mut phi_counts, mut rho_counts, mut aggregations) = (vec![], vec![], vec![]);
        for seed in 0..60 {
            let mut src = RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed), vec![]);
            let arch = decode(&spec, &mut src).unwrap();
            let names: Vec<&str> = arch.components.iter().map(|c| c.name.as_str()).collect();
            let at = names.iter().position(|n| *n == "aggregate").unwrap();
            let (phi, rho) = (&arch.components[..at], &arch.components[at + 1..arch.components.len() - 1]);
            phi_counts.push(phi.len());
            rho_counts.push(rho.len());
            // Names, widths from their own spaces, and the parameters asked for.
            let mut expected = vec!["num_phi_layers".to_string()];
            for (i, c) in phi.iter().enumerate() {
                assert_eq!((c.name.clone(), c.block_type), (format!("phi_{i}"), BlockType::Mlp));
                let Layer::Dense { units } = c.layers[0] else { panic!("{c:?}") };
                assert!(spec.space.phi_width_space.contains(&units));
                expected.extend(["width", "act", "norm"].map(|p| format!("phi_{p}_{i}")));
            }
            expected.extend(["aggregation".to_string(), "num_rho_layers".to_string()]);
            for (i, c) in rho.iter().enumerate() {
                assert_eq!((c.name.clone(), c.block_type), (format!("rho_{i}"), BlockType::Mlp));
                let Layer::Dense { units } = c.layers[0] else { panic!("{c:?}") };
                assert!(spec.space.rho_width_space.contains(&units));
                expected.extend(["width", "act", "norm"].map(|p| format!("rho_{p}_{i}")));
            }
            assert_eq!(src.1, expected);
            let [Layer::Aggregate(aggregation)] = arch.components[at].layers[..] else { panic!() };
            assert_eq!(arch.components[at].block_type, BlockType::Aggregate);
            aggregations.push(aggregation);
            // Shapes: a set through phi, a vector after the pooling.
            let shapes = arch.shapes().unwrap();
            let phi_layers: usize = phi.iter().map(|c| c.layers.len()).sum();
            for (layer, input, output) in &shapes[..phi_layers] {
                assert!(matches!(input, Shape::Set { elements: 16, .. }), "{layer:?}");
                assert!(matches!(output, Shape::Set { elements: 16, .. }), "{layer:?}");
            }
            let (_, pooled_in, pooled) = shapes[phi_layers];
            assert_eq!(pooled, Shape::Flat(pooled_in.rows_and_features().1));
            assert!(
                shapes[phi_layers + 1..].iter().all(|(_, i, o)| matches!((i, o), (Shape::Flat(_), Shape::Flat(_))))
            );
            assert_eq!(arch.output_shape().unwrap(), Shape::Flat(10));
        }
        for (counts, range) in [(phi_counts, 1..=3), (rho_counts, 0..=2)] {
            let seen: std::collections::BTreeSet<usize> = counts.into_iter().collect();
            assert_eq!(seen, range.collect());
        }
        assert!(aggregations.contains(&Aggregation::Mean) && aggregations.contains(&Aggregation::Max));
    }

    #[test]
    fn deepsets_fixed_counts_and_replay() {
        let mut space = space(&["MLP"]);
        space.phi_layers = LayerRange { min: 2, max: 2 };
        space.rho_layers = LayerRange { min: 1, max: 1 };
        space.aggregation_space = vec![Aggregation::Max];
        let spec = deepsets_spec(space);
        let params: std::collections::BTreeMap<String, f64> = [
            ("num_phi_layers", 2.0),
            ("phi_width_0", 2.0),
            ("phi_act_0", 0.0),
            ("phi_norm_0", 1.0),
            ("phi_width_1", 0.0),
            ("phi_act_1", 1.0),
            ("phi_norm_1", 0.0),
            ("aggregation", 0.0),
            ("num_rho_layers", 1.0),
            ("rho_width_0", 1.0),
            ("rho_act_0", 2.0),
            ("rho_norm_0", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let arch = decode(&spec, &mut FixedParams(&params)).unwrap();
        assert_eq!(arch.summary(), "(16 × 3 set) → D16 bn relu → D4 tanh max-pool → D24 sigmoid → D10 softmax");
        // 3·16+16 + 2·16 + 16·4+4 + 4·24+24 + 24·10+10
        assert_eq!(arch.parameter_count().unwrap(), 64 + 32 + 68 + 120 + 250);
        let err = decode(&deepsets_spec(spec.space.clone()), &mut FixedParams(&Default::default())).unwrap_err();
        assert!(err.to_string().contains("'num_phi_layers' is missing"), "{err}");
        // DeepSets needs sets; MLP and block models flatten a set.
        let image = SpaceSpec { input_shape: Shape::Image { height: 4, width: 4, channels: 1 }, ..spec.clone() };
        let err = decode(&image, &mut FixedParams(&params)).unwrap_err().to_string();
        assert!(err.contains("deepsets needs samples that are sets") && err.contains("(4, 4, 1)"), "{err}");
        let mlp = SpaceSpec { model_type: ModelType::Mlp, ..spec };
        let mut src = RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(3), vec![]);
        let arch = decode(&mlp, &mut src).unwrap();
        assert_eq!(arch.components[0].layers, vec![Layer::Flatten]);
        assert_eq!(arch.shapes().unwrap()[0].2, Shape::Flat(48));
    }

    #[test]
    fn mlp_mode_honours_space_and_layer_count() {
        let spec = SpaceSpec {
            model_type: ModelType::Mlp,
            space: space(&["MLP"]),
            input_shape: Shape::Flat(64),
            output_dim: 10,
            min_layers: 2,
            max_layers: 5,
        };
        let mut seen_counts = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let mut src = RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed), vec![]);
            let arch = decode(&spec, &mut src).unwrap();
            let dense: Vec<usize> = arch
                .layers()
                .filter_map(|l| if let Layer::Dense { units } = l { Some(*units) } else { None })
                .collect();
            // every recorded hidden layer is built, plus the output layer
            assert_eq!(dense.len() - 1, arch.components.len() - 1);
            seen_counts.insert(dense.len() - 1);
            assert!(dense[..dense.len() - 1].iter().all(|w| spec.space.mlp_width_space.contains(w)));
            assert_eq!(*dense.last().unwrap(), 10);
            assert_eq!(arch.output_shape().unwrap(), Shape::Flat(10));
        }
        assert_eq!(seen_counts.into_iter().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
    }

    #[test]
    fn block_mode_names_and_skips() {
        let spec = SpaceSpec {
            model_type: ModelType::Block,
            space: space(&["Conv", "ConvAttn", "MLP", "None"]),
            input_shape: Shape::Image { height: 8, width: 8, channels: 1 },
            output_dim: 10,
            min_layers: 2,
            max_layers: 5,
        };
        for seed in 0..60 {
            let mut src = RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed), vec![]);
            let arch = decode(&spec, &mut src).unwrap();
            let names = src.1;
            assert!(names.contains(&"b0".to_string()) && names.contains(&"MLP_Head_width_1".to_string()));
            // no conv block after a flatten
            let mut flat = false;
            for c in &arch.components {
                flat |= c.block_type == BlockType::Flatten;
                if flat {
                    assert!(!matches!(c.block_type, BlockType::Conv | BlockType::ConvAttn), "{}", arch.summary());
                }
            }
        }
    }

    #[test]
    fn exportable_only_search_never_proposes_refused_choices() {
        let yaml = "dataset:\n  name: fashion_mnist\n  flatten: false\nsearch:\n  model_type: block\n\
                    search_space:\n  block_types: [Conv, ConvAttn, MLP, None]\n  act_space: [relu, gelu, leaky_relu]\n  \
                    norm_space: [null, batch, layer]\n  num_blocks: 4\n  kernel_space: [1, 3]\n  channel_space: [4]\n  exportable_only: true\n";
        let experiment = crate::config::load_str(yaml, std::path::Path::new("t2.yaml")).unwrap();
        let spec = SpaceSpec {
            model_type: ModelType::Block,
            space: experiment.search_space,
            input_shape: Shape::Image { height: 8, width: 8, channels: 1 },
            output_dim: 10,
            min_layers: 2,
            max_layers: 5,
        };
        let (mut blocks, mut acts) = (Vec::new(), Vec::new());
        for seed in 0..200 {
            let mut src = RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed), vec![]);
            let arch = decode(&spec, &mut src).unwrap();
            crate::quantized::exportable::exportable(&arch).unwrap_or_else(|e| panic!("{}: {e}", arch.summary()));
            assert!(!arch.layers().any(|l| matches!(l, Layer::LayerNorm)));
            blocks.extend(arch.components.iter().map(|c| c.block_type));
            acts.extend(arch.layers().filter_map(|l| if let Layer::Act(a) = l { Some(*a) } else { None }));
        }
        // The rest of the space is still searched, ConvAttn and GELU (exported) included.
        assert!(acts.contains(&Activation::Gelu), "{acts:?}");
        for block in [BlockType::Conv, BlockType::ConvAttn, BlockType::Mlp] {
            assert!(blocks.contains(&block), "{blocks:?}");
        }
    }

    #[test]
    fn conv_kernels_collapse_when_image_too_small() {
        let mut params = std::collections::BTreeMap::new();
        let spec = SpaceSpec {
            model_type: ModelType::Block,
            space: SearchSpaceConfig { num_blocks: 1, ..space(&["Conv"]) },
            input_shape: Shape::Image { height: 4, width: 4, channels: 1 },
            output_dim: 10,
            min_layers: 2,
            max_layers: 5,
        };
        params.insert("b0".to_string(), 0.0);
        for j in 0..2 {
            params.insert(format!("b0_Conv_channels_{j}"), 0.0);
            params.insert(format!("b0_Conv_kernels_{j}"), 2.0); // kernel 5: 4 - 4 - 4 <= 0
            params.insert(format!("b0_Conv_act_{j}"), 0.0);
            params.insert(format!("b0_Conv_norm_{j}"), 0.0);
            params.insert(format!("MLP_Head_width_{j}"), 0.0);
            params.insert(format!("MLP_Head_act_{j}"), 0.0);
        }
        let arch = decode(&spec, &mut FixedParams(&params)).unwrap();
        let kernels: Vec<usize> = arch
            .layers()
            .filter_map(|l| if let Layer::Conv2d { kernel, .. } = l { Some(*kernel) } else { None })
            .collect();
        assert_eq!(kernels, vec![1, 1]);
        params.remove("b0_Conv_act_1");
        assert!(decode(&spec, &mut FixedParams(&params)).unwrap_err().to_string().contains("b0_Conv_act_1"));
    }
}
