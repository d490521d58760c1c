//! The per-trial architecture YAML in SNAC-Pack's BlockBased schema
//! (docs/snac-pack-compat.md §6): `metadata` plus `architecture { model_type:
//! BlockBased, input_shape, output_dim, components: [{block_type, name, params}] }`.
//! Written from the IR and read back into it; the round trip is exact.
//!
//! DeepSets models (a set input and an `Aggregate` component) are written
//! with `model_type: DeepSets` and `input_kind: set`, so that their
//! `input_shape: [elements, features]` is not read as a `[height, width]`
//! image; a hand-written file is read as a set when it has an `Aggregate`
//! component or says `model_type: DeepSets`.

use crate::arch::{Activation, Aggregation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::Path;

/// A whole trial file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialYaml {
    pub metadata: Metadata,
    pub architecture: ArchitectureYaml,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub trial_id: u64,
    pub global_search_accuracy: f64,
    pub global_search_bops: f64,
    /// Other objectives and facts (params, avg_resource, seed, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchitectureYaml {
    /// `BlockBased` (SNAC-Pack's), or `DeepSets` for set models.
    pub model_type: String,
    /// SNAC-Pack's dimensions: `[features]`, `[height, width(, channels)]`,
    /// or `[elements, features]` of a set.
    pub input_shape: Vec<usize>,
    /// `set` when the input is a set (written only then; SNAC-Pack's files
    /// have no such key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_kind: Option<String>,
    pub output_dim: usize,
    pub components: Vec<ComponentYaml>,
}

/// `architecture.model_type` of set models.
pub const DEEPSETS_MODEL_TYPE: &str = "DeepSets";
/// `architecture.input_kind` of a set input.
pub const SET_INPUT_KIND: &str = "set";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentYaml {
    pub block_type: String,
    pub name: String,
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// A main layer with its optional norm and activation.
struct Unit<'a> {
    main: &'a Layer,
    norm: Norm,
    act: Activation,
}

fn units(component: &Component) -> Result<Vec<Unit<'_>>> {
    let mut out = Vec::new();
    let mut layers = component.layers.iter().peekable();
    while let Some(main) = layers.next() {
        let norm = match layers.peek() {
            Some(Layer::BatchNorm) => Norm::Batch,
            Some(Layer::LayerNorm) => Norm::Layer,
            Some(
                Layer::Dense { .. }
                | Layer::Conv2d { .. }
                | Layer::ConvAttention { .. }
                | Layer::Act(_)
                | Layer::Flatten
                | Layer::Aggregate(_),
            )
            | None => Norm::None,
        };
        if norm != Norm::None {
            layers.next();
        }
        let act = match layers.next() {
            Some(Layer::Act(act)) => *act,
            other @ (Some(
                Layer::Dense { .. }
                | Layer::Conv2d { .. }
                | Layer::ConvAttention { .. }
                | Layer::BatchNorm
                | Layer::LayerNorm
                | Layer::Flatten
                | Layer::Aggregate(_),
            )
            | None) => {
                bail!("component '{}': expected an activation after {}, found {other:?}", component.name, main.kind())
            }
        };
        out.push(Unit { main, norm, act });
    }
    Ok(out)
}

fn norm_json(norm: Norm) -> Value {
    norm.name().map(Value::from).unwrap_or(Value::Null)
}

fn component_params(component: &Component) -> Result<Map<String, Value>> {
    let value = match component.block_type {
        BlockType::Flatten => json!({}),
        BlockType::Mlp | BlockType::Output => {
            let units = units(component)?;
            let [Unit { main: Layer::Dense { units }, norm, act }] = units.as_slice() else {
                bail!("component '{}' is not Dense [+ norm] + activation", component.name);
            };
            json!({"units": units, "activation": act.name(), "norm": norm_json(*norm)})
        }
        BlockType::Conv => {
            let units = units(component)?;
            let mut channels = Vec::new();
            let mut kernels = Vec::new();
            let mut paddings = Vec::new();
            for unit in &units {
                let Layer::Conv2d { filters, kernel, padding } = unit.main else {
                    bail!("Conv component '{}' holds a {} layer", component.name, unit.main.kind());
                };
                channels.push(json!(filters));
                kernels.push(json!(kernel));
                paddings.push(json!(if *padding == Padding::Valid { "valid" } else { "same" }));
            }
            json!({
                "channels": channels,
                "kernels": kernels,
                "activations": units.iter().map(|u| u.act.name()).collect::<Vec<_>>(),
                "norms": units.iter().map(|u| norm_json(u.norm)).collect::<Vec<_>>(),
                "padding": paddings,
            })
        }
        BlockType::ConvAttn => {
            let units = units(component)?;
            let [Unit { main: Layer::ConvAttention { hidden, scale }, norm: Norm::None, act }] = units.as_slice()
            else {
                bail!("ConvAttn component '{}' is not ConvAttention + activation", component.name);
            };
            json!({"hidden_channels": hidden, "activation": act.name(), "attention_scale": scale})
        }
        BlockType::Aggregate => {
            let [Layer::Aggregate(aggregation)] = component.layers[..] else {
                bail!("Aggregate component '{}' is not one Aggregate layer", component.name);
            };
            json!({"aggregation": aggregation.name()})
        }
    };
    let Value::Object(map) = value else { unreachable!("params are built as objects") };
    Ok(map)
}

impl ArchitectureYaml {
    pub fn from_arch(arch: &Arch) -> Result<ArchitectureYaml> {
        let output_dim = arch.output_shape()?.numel();
        let components = arch
            .components
            .iter()
            .map(|c| {
                Ok(ComponentYaml {
                    block_type: c.block_type.name().to_string(),
                    name: c.name.clone(),
                    params: component_params(c)?,
                })
            })
            .collect::<Result<_>>()?;
        let pools = arch.layers().any(|layer| matches!(layer, Layer::Aggregate(_)));
        let set_input = matches!(arch.input_shape, Shape::Set { .. });
        Ok(ArchitectureYaml {
            model_type: if pools { DEEPSETS_MODEL_TYPE } else { "BlockBased" }.into(),
            input_shape: arch.input_shape.dims(),
            input_kind: set_input.then(|| SET_INPUT_KIND.to_string()),
            output_dim,
            components,
        })
    }

    /// The input shape: a set when `input_kind` says so, or (files without
    /// it) when the model pools a set; otherwise SNAC-Pack's reading of the
    /// dimensions.
    fn input_shape(&self) -> Result<Shape> {
        let set = match self.input_kind.as_deref() {
            Some(kind) if kind.eq_ignore_ascii_case(SET_INPUT_KIND) => true,
            Some(kind) if ["vector", "flat", "image"].iter().any(|k| kind.eq_ignore_ascii_case(k)) => false,
            Some(kind) => bail!("architecture.input_kind: '{kind}' is not known; accepted: set, vector, image"),
            None => {
                self.model_type.eq_ignore_ascii_case(DEEPSETS_MODEL_TYPE)
                    || self.components.iter().any(|c| BlockType::parse(&c.block_type) == Some(BlockType::Aggregate))
            }
        };
        if !set {
            return Shape::from_dims(&self.input_shape).context("architecture.input_shape");
        }
        match self.input_shape[..] {
            [elements, features] if elements > 0 && features > 0 => Ok(Shape::Set { elements, features }),
            _ => bail!(
                "architecture.input_shape: {:?} is not a set's [elements, features] with positive sizes",
                self.input_shape
            ),
        }
    }

    /// Reads the architecture back into the IR, naming the component and key
    /// of anything malformed.
    pub fn to_arch(&self) -> Result<Arch> {
        let input_shape = self.input_shape()?;
        let components = self
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| c.to_component().with_context(|| format!("architecture.components[{i}] ('{}')", c.name)))
            .collect::<Result<Vec<_>>>()?;
        let arch = Arch::new(input_shape, components);
        arch.validate()?;
        let out = arch.output_shape()?.numel();
        if out != self.output_dim {
            bail!("architecture.output_dim is {} but the components produce {out}", self.output_dim);
        }
        Ok(arch)
    }
}

fn get<'a>(params: &'a Map<String, Value>, key: &str) -> Result<&'a Value> {
    params.get(key).with_context(|| format!("params.{key} is missing"))
}

fn get_usize(value: &Value, key: &str) -> Result<usize> {
    value
        .as_u64()
        .filter(|v| *v > 0)
        .map(|v| v as usize)
        .with_context(|| format!("params.{key} = {value}: expected a positive integer"))
}

fn get_act(value: &Value, key: &str) -> Result<Activation> {
    value
        .as_str()
        .and_then(Activation::parse)
        .with_context(|| format!("params.{key} = {value}: expected one of {}", Activation::ACCEPTED))
}

fn get_norm(value: Option<&Value>, key: &str) -> Result<Norm> {
    match value {
        None | Some(Value::Null) => Ok(Norm::None),
        Some(Value::String(s)) => {
            Norm::parse(s).with_context(|| format!("params.{key} = {s}: expected one of {}", Norm::ACCEPTED))
        }
        Some(other) => bail!("params.{key} = {other}: expected one of {}", Norm::ACCEPTED),
    }
}

fn get_list<'a>(params: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
    get(params, key)?.as_array().with_context(|| format!("params.{key}: expected a list"))
}

impl ComponentYaml {
    fn to_component(&self) -> Result<Component> {
        let block_type = BlockType::parse(&self.block_type).with_context(|| {
            format!(
                "block_type '{}' is unknown; accepted: MLP, Conv, ConvAttn, Flatten, Aggregate, Output",
                self.block_type
            )
        })?;
        let p = &self.params;
        let layers = match block_type {
            BlockType::Flatten => vec![Layer::Flatten],
            BlockType::Mlp | BlockType::Output => {
                let mut layers = vec![Layer::Dense { units: get_usize(get(p, "units")?, "units")? }];
                layers.extend(get_norm(p.get("norm"), "norm")?.layer());
                layers.push(Layer::Act(get_act(get(p, "activation")?, "activation")?));
                layers
            }
            BlockType::Conv => {
                let channels = get_list(p, "channels")?;
                let kernels = get_list(p, "kernels")?;
                let acts = get_list(p, "activations")?;
                let norms = p.get("norms").and_then(|v| v.as_array());
                if kernels.len() != channels.len() || acts.len() != channels.len() {
                    bail!("params.channels, kernels and activations must have the same length");
                }
                let mut layers = Vec::new();
                for i in 0..channels.len() {
                    let kernel = get_usize(&kernels[i], &format!("kernels[{i}]"))?;
                    let padding = match p.get("padding").and_then(|v| v.get(i)).and_then(|v| v.as_str()) {
                        Some("valid") => Padding::Valid,
                        Some("same") => Padding::Same,
                        Some(other) => bail!("params.padding[{i}] = {other}: expected valid or same"),
                        None if kernel > 1 => Padding::Valid,
                        None => Padding::Same,
                    };
                    layers.push(Layer::Conv2d {
                        filters: get_usize(&channels[i], &format!("channels[{i}]"))?,
                        kernel,
                        padding,
                    });
                    layers.extend(get_norm(norms.and_then(|n| n.get(i)), &format!("norms[{i}]"))?.layer());
                    layers.push(Layer::Act(get_act(&acts[i], &format!("activations[{i}]"))?));
                }
                layers
            }
            BlockType::ConvAttn => vec![
                Layer::ConvAttention {
                    hidden: get_usize(get(p, "hidden_channels")?, "hidden_channels")?,
                    scale: p.get("attention_scale").and_then(|v| v.as_bool()).unwrap_or(false),
                },
                Layer::Act(get_act(get(p, "activation")?, "activation")?),
            ],
            BlockType::Aggregate => {
                let value = get(p, "aggregation")?;
                let aggregation = value.as_str().and_then(Aggregation::parse).with_context(|| {
                    format!("params.aggregation = {value}: expected one of {}", Aggregation::ACCEPTED)
                })?;
                vec![Layer::Aggregate(aggregation)]
            }
        };
        Ok(Component { name: self.name.clone(), block_type, layers })
    }
}

impl TrialYaml {
    pub fn to_yaml(&self) -> Result<String> {
        serde_saphyr::to_string(self).context("serialising trial YAML")
    }

    pub fn from_yaml(text: &str) -> Result<TrialYaml> {
        Ok(serde_saphyr::from_str(text)?)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::write_atomic(path, self.to_yaml()?.as_bytes())
    }

    pub fn read(path: &Path) -> Result<TrialYaml> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        TrialYaml::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Reads just the architecture of a YAML file: a trial YAML, or any file
/// with an `architecture:` block (no `metadata` needed), or the block's
/// content itself at the top level.
pub fn read_arch(path: &Path) -> Result<Arch> {
    #[derive(Deserialize)]
    struct ArchitectureOnly {
        architecture: ArchitectureYaml,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let architecture = match serde_saphyr::from_str::<ArchitectureOnly>(&text) {
        Ok(file) => file.architecture,
        Err(nested) => serde_saphyr::from_str::<ArchitectureYaml>(&text).map_err(|_| {
            anyhow::anyhow!(
                "parsing {}: {nested}; expected an `architecture:` block with model_type, input_shape, output_dim \
                 and components (as in trial_yamls/trial_N_arch.yaml)",
                path.display()
            )
        })?,
    };
    architecture.to_arch().with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelType;
    use crate::space::{SpaceSpec, Suggest, decode};
    use crate::trial::Distribution;
    use rand::SeedableRng;

    struct RandomSource(rand_chacha::ChaCha8Rng);
    impl Suggest for RandomSource {
        fn suggest(&mut self, _name: &str, distribution: Distribution) -> Result<f64> {
            Ok(distribution.sample(&mut self.0))
        }
    }

    fn round_trip(arch: &Arch) {
        let file = TrialYaml {
            metadata: Metadata {
                trial_id: 7,
                global_search_accuracy: 0.9375,
                global_search_bops: 123456.0,
                extra: Map::from_iter([("params".to_string(), json!(42))]),
            },
            architecture: ArchitectureYaml::from_arch(arch).unwrap(),
        };
        let text = file.to_yaml().unwrap();
        let back = TrialYaml::from_yaml(&text).unwrap();
        assert_eq!(back, file, "{text}");
        assert_eq!(&back.architecture.to_arch().unwrap(), arch, "{text}");
    }

    #[test]
    fn round_trip_every_block_kind() {
        let mut space = crate::space::tests::space(&["Conv", "ConvAttn", "MLP", "None"]);
        space.norm_space = vec![Norm::None, Norm::Batch, Norm::Layer];
        space.act_space = vec![Activation::Relu, Activation::LeakyRelu, Activation::Gelu, Activation::Identity];
        for (model_type, input_shape) in
            [(ModelType::Block, Shape::Image { height: 8, width: 8, channels: 1 }), (ModelType::Mlp, Shape::Flat(64))]
        {
            let spec = SpaceSpec {
                model_type,
                space: space.clone(),
                input_shape,
                output_dim: 10,
                min_layers: 2,
                max_layers: 5,
            };
            for seed in 0..30 {
                let arch = decode(&spec, &mut RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed))).unwrap();
                round_trip(&arch);
            }
        }
    }

    #[test]
    fn round_trip_deepsets() {
        let mut space = crate::space::tests::space(&["MLP"]);
        space.norm_space = vec![Norm::None, Norm::Batch, Norm::Layer];
        let deepsets = crate::space::tests::deepsets_spec(space.clone());
        // Also an MLP on flattened sets: a set input without pooling.
        let mlp = SpaceSpec { model_type: ModelType::Mlp, ..deepsets.clone() };
        for spec in [deepsets, mlp] {
            for seed in 0..30 {
                let arch = decode(&spec, &mut RandomSource(rand_chacha::ChaCha8Rng::seed_from_u64(seed))).unwrap();
                assert_eq!(arch.input_shape, Shape::Set { elements: 16, features: 3 });
                round_trip(&arch);
                let yaml = ArchitectureYaml::from_arch(&arch).unwrap();
                assert_eq!(yaml.input_kind.as_deref(), Some("set"));
                let pools = spec.model_type == ModelType::DeepSets;
                assert_eq!(yaml.model_type, if pools { "DeepSets" } else { "BlockBased" });
            }
        }
    }

    #[test]
    fn deepsets_layout_and_set_detection() {
        let text = "metadata:\n  trial_id: 3\n  global_search_accuracy: 0.5\n  global_search_bops: 10.0\narchitecture:\n  model_type: DeepSets\n  input_shape: [32, 3]\n  input_kind: set\n  output_dim: 10\n  components:\n  - block_type: MLP\n    name: phi_0\n    params: {units: 16, activation: relu, norm: null}\n  - block_type: Aggregate\n    name: aggregate\n    params: {aggregation: max}\n  - block_type: Output\n    name: output\n    params: {units: 10, activation: softmax}\n";
        let read = |text: &str| TrialYaml::from_yaml(text).unwrap().architecture.to_arch();
        let arch = read(text).unwrap();
        assert_eq!(arch.input_shape, Shape::Set { elements: 32, features: 3 });
        assert_eq!(arch.summary(), "(32 × 3 set) → D16 relu max-pool → D10 softmax");
        assert_eq!(arch.parameter_count().unwrap(), 3 * 16 + 16 + 16 * 10 + 10);
        // Without input_kind, or with BlockBased, the Aggregate component decides.
        for edited in [text.replace("  input_kind: set\n", ""), text.replace("DeepSets", "BlockBased")] {
            assert_eq!(read(&edited).unwrap(), arch, "{edited}");
        }
        // A [h, w] input without any set marker stays an image (SNAC-Pack's files).
        let image = text.replace("  input_kind: set\n", "").replace("DeepSets", "BlockBased");
        let image =
            image.replace("  - block_type: Aggregate\n    name: aggregate\n    params: {aggregation: max}\n", "");
        let err = format!("{:#}", read(&image).unwrap_err());
        assert!(err.contains("(32, 3, 1)") && err.contains("Flatten"), "{err}");
        let err = format!("{:#}", read(&text.replace("aggregation: max", "aggregation: sum")).unwrap_err());
        assert!(err.contains("components[1] ('aggregate')") && err.contains("mean, max"), "{err}");
        let err = format!("{:#}", read(&text.replace("[32, 3]", "[32, 3, 1]")).unwrap_err());
        assert!(err.contains("input_shape") && err.contains("[elements, features]"), "{err}");
        let err = format!("{:#}", read(&text.replace("input_kind: set", "input_kind: graph")).unwrap_err());
        assert!(err.contains("input_kind: 'graph'") && err.contains("set, vector, image"), "{err}");
        // An aggregation before any set layer names the component.
        let err = format!(
            "{:#}",
            read(&text.replace("input_kind: set", "input_kind: vector").replace("[32, 3]", "[96]")).unwrap_err()
        );
        assert!(err.contains("'aggregate'") && err.contains("needs a set"), "{err}");
    }

    #[test]
    fn reads_the_documented_layout() {
        let text = "metadata:\n  trial_id: 2\n  global_search_accuracy: 0.5\n  global_search_bops: 10.0\narchitecture:\n  model_type: BlockBased\n  input_shape: [64]\n  output_dim: 10\n  components:\n  - block_type: MLP\n    name: b0\n    params: {units: 16, activation: ReLU, norm: batch}\n  - block_type: Output\n    name: output\n    params: {units: 10, activation: softmax}\n";
        let arch = TrialYaml::from_yaml(text).unwrap().architecture.to_arch().unwrap();
        assert_eq!(arch.layers().count(), 5);
        assert_eq!(arch.parameter_count().unwrap(), 64 * 16 + 16 + 32 + 16 * 10 + 10);
        let bad = text.replace("units: 16", "units: -3");
        let err = format!("{:#}", TrialYaml::from_yaml(&bad).unwrap().architecture.to_arch().unwrap_err());
        assert!(err.contains("components[0]") && err.contains("units"), "{err}");
    }
}
