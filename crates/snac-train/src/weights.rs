//! Trained parameters as plain data: one entry per layer of the compute
//! sequence, each a list of named tensors in Keras naming and layout.
//!
//! Dense layers hold `kernel` `[in, out]` and `bias` `[out]`; BatchNorm holds
//! `gamma`, `beta`, `moving_mean`, `moving_variance`; LayerNorm holds `gamma`
//! and `beta`. Weights save to and load from JSON, so a later stage (QAT,
//! export) can restart from them, and also save as `.npz` for NumPy users
//! ([`Weights::save_npz`]).

use anyhow::{Context, Result, ensure};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use snac_core::arch::{Arch, Layer, Shape};
use std::path::Path;

/// Parameter names of a ConvAttention layer: 1×1 projections to `hidden`
/// channels (query, key, value) and back (output), kernels `[in, out]`.
pub const ATTENTION_PARAMS: [&str; 8] = [
    "query_kernel",
    "query_bias",
    "key_kernel",
    "key_bias",
    "value_kernel",
    "value_bias",
    "output_kernel",
    "output_bias",
];

/// What a parameter is to quantization and pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamRole {
    Kernel,
    Bias,
    Other,
}

/// What a parameter called `name` is: `kernel` and `*_kernel` are kernels,
/// `bias` and `*_bias` biases.
pub(crate) fn role_of(name: &str) -> ParamRole {
    if name.ends_with("kernel") {
        ParamRole::Kernel
    } else if name.ends_with("bias") {
        ParamRole::Bias
    } else {
        ParamRole::Other
    }
}

/// One named parameter tensor, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl NamedTensor {
    fn new(name: &str, shape: Vec<usize>, values: Vec<f32>) -> NamedTensor {
        NamedTensor { name: name.to_string(), shape, values }
    }

    /// Whether the optimiser updates this tensor (BatchNorm's moving
    /// statistics are updated by the forward pass instead).
    pub fn is_trainable(&self) -> bool {
        !matches!(self.name.as_str(), "moving_mean" | "moving_variance")
    }
}

/// The parameters of one layer (empty for activations and Flatten).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerWeights {
    /// Position in [`Arch::layers`].
    pub index: usize,
    /// [`Layer::kind`], checked on use.
    pub kind: String,
    pub tensors: Vec<NamedTensor>,
}

impl LayerWeights {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&NamedTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .with_context(|| format!("layer {} ({}) has no tensor '{name}'", self.index, self.kind))
    }

    /// Positions in `tensors` of the layer's prunable kernels, in their
    /// canonical order: `kernel` (Dense, Conv2d), or the four `*_kernel`
    /// projections of ConvAttention in [`ATTENTION_PARAMS`]
    /// order (whatever order a weights file lists them in). A layer's
    /// pruning mask covers them one after another.
    pub fn kernel_positions(&self) -> Vec<usize> {
        let rank = |name: &str| ATTENTION_PARAMS.iter().position(|n| *n == name).unwrap_or(0);
        let mut positions: Vec<usize> =
            (0..self.tensors.len()).filter(|&i| self.tensors[i].name.ends_with("kernel")).collect();
        positions.sort_by_key(|&i| rank(&self.tensors[i].name));
        positions
    }

    /// The layer's prunable kernels ([`LayerWeights::kernel_positions`]).
    pub fn kernels(&self) -> impl Iterator<Item = &NamedTensor> {
        self.kernel_positions().into_iter().map(|i| &self.tensors[i])
    }

    /// Weights in [`LayerWeights::kernels`] together (0: nothing to prune).
    pub fn kernel_len(&self) -> usize {
        self.kernels().map(|k| k.values.len()).sum()
    }
}

/// All parameters of a network, aligned with [`Arch::layers`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub layers: Vec<LayerWeights>,
}

/// A Glorot-uniform kernel (Keras' default): `U(±√(6 / (fan_in + fan_out)))`.
fn glorot(name: &str, shape: Vec<usize>, fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> NamedTensor {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let values = (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-limit..limit)).collect();
    NamedTensor::new(name, shape, values)
}

fn zeros(name: &str, n: usize) -> NamedTensor {
    NamedTensor::new(name, vec![n], vec![0.0; n])
}

/// Features of a normalisation layer's input: the last axis.
fn feature_count(shape: Shape) -> usize {
    shape.rows_and_features().1
}

impl Weights {
    /// Fresh Keras-style initial weights: Glorot-uniform kernels, zero biases,
    /// gamma 1, beta 0, moving mean 0 and moving variance 1.
    pub fn init(arch: &Arch, rng: &mut ChaCha8Rng) -> Result<Weights> {
        let mut layers = Vec::new();
        for (index, (layer, input, _)) in arch.shapes()?.into_iter().enumerate() {
            let tensors = match *layer {
                Layer::Dense { units } => {
                    // On a set, the same Dense layer applies to every element.
                    let fan_in = input.rows_and_features().1;
                    vec![glorot("kernel", vec![fan_in, units], fan_in, units, rng), zeros("bias", units)]
                }
                Layer::Conv2d { filters, kernel, .. } => {
                    let channels = input.rows_and_features().1;
                    let area = kernel * kernel;
                    let shape = vec![kernel, kernel, channels, filters];
                    vec![glorot("kernel", shape, area * channels, area * filters, rng), zeros("bias", filters)]
                }
                Layer::ConvAttention { hidden, .. } => {
                    let channels = input.rows_and_features().1;
                    let mut tensors = Vec::new();
                    for (name, from, to) in
                        [("query", channels, hidden), ("key", channels, hidden), ("value", channels, hidden)]
                            .into_iter()
                            .chain([("output", hidden, channels)])
                    {
                        tensors.push(glorot(&format!("{name}_kernel"), vec![from, to], from, to, rng));
                        tensors.push(zeros(&format!("{name}_bias"), to));
                    }
                    tensors
                }
                Layer::BatchNorm => {
                    let n = feature_count(input);
                    vec![
                        NamedTensor::new("gamma", vec![n], vec![1.0; n]),
                        NamedTensor::new("beta", vec![n], vec![0.0; n]),
                        NamedTensor::new("moving_mean", vec![n], vec![0.0; n]),
                        NamedTensor::new("moving_variance", vec![n], vec![1.0; n]),
                    ]
                }
                Layer::LayerNorm => {
                    let n = feature_count(input);
                    vec![
                        NamedTensor::new("gamma", vec![n], vec![1.0; n]),
                        NamedTensor::new("beta", vec![n], vec![0.0; n]),
                    ]
                }
                Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_) => Vec::new(),
            };
            layers.push(LayerWeights { index, kind: layer.kind().to_string(), tensors });
        }
        Ok(Weights { layers })
    }

    /// Checks that these weights fit `arch`: same layers, same tensor shapes.
    pub fn check_fits(&self, arch: &Arch) -> Result<()> {
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let expected = Weights::init(arch, &mut rng)?;
        ensure!(
            self.layers.len() == expected.layers.len(),
            "weights have {} layers, the architecture {}",
            self.layers.len(),
            expected.layers.len()
        );
        for (have, want) in self.layers.iter().zip(&expected.layers) {
            ensure!(
                have.kind == want.kind,
                "weights layer {} is {}, the architecture's is {}",
                want.index,
                have.kind,
                want.kind
            );
            for tensor in &want.tensors {
                let found = have.get(&tensor.name)?;
                ensure!(
                    found.shape == tensor.shape && found.values.len() == tensor.values.len(),
                    "layer {} ({}) tensor '{}' has shape {:?} ({} values), expected {:?}",
                    want.index,
                    want.kind,
                    tensor.name,
                    found.shape,
                    found.values.len(),
                    tensor.shape
                );
            }
        }
        Ok(())
    }

    /// Writes the weights as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).context("serialising weights")?;
        snac_core::write_atomic(path, &bytes).with_context(|| format!("could not write weights to {}", path.display()))
    }

    /// The `.npz` key of a layer's tensor: `layer{index}_{kind}/{name}`, e.g.
    /// `layer0_Dense/kernel`, so `numpy.load` lists them in layer order.
    pub fn npz_key(layer: &LayerWeights, tensor: &NamedTensor) -> String {
        format!("layer{}_{}/{}", layer.index, layer.kind, tensor.name)
    }

    /// Writes the weights as a NumPy `.npz` archive (`numpy.load(path)`):
    /// one float32 array per tensor, in its Keras shape, keyed by
    /// [`Weights::npz_key`]. Layers without parameters have no entry.
    pub fn save_npz(&self, path: &Path) -> Result<()> {
        use npyz::WriterBuilder;
        let mut buffer = std::io::Cursor::new(Vec::new());
        {
            let mut npz = npyz::npz::NpzWriter::new(&mut buffer);
            for layer in &self.layers {
                for tensor in &layer.tensors {
                    let key = Weights::npz_key(layer, tensor);
                    let shape: Vec<u64> = tensor.shape.iter().map(|&d| d as u64).collect();
                    let options = zip::write::FileOptions::default();
                    let mut writer = npz
                        .array::<f32>(&key, options)
                        .and_then(|a| a.default_dtype().shape(&shape).begin_nd())
                        .with_context(|| format!("writing {key} to {}", path.display()))?;
                    writer.extend(tensor.values.iter().copied())?;
                    writer.finish()?;
                }
            }
        }
        snac_core::write_atomic(path, buffer.get_ref())
            .with_context(|| format!("could not write weights to {}", path.display()))
    }

    /// Reads weights written by [`Weights::save`].
    pub fn load(path: &Path) -> Result<Weights> {
        let file = std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        serde_json::from_reader(std::io::BufReader::new(file))
            .with_context(|| format!("could not read weights from {}", path.display()))
    }

    /// Total number of scalars, trainable or not.
    pub fn scalar_count(&self) -> usize {
        self.layers.iter().flat_map(|l| &l.tensors).map(|t| t.values.len()).sum()
    }

    /// For each layer, the number of nonzero kernel weights (`None` for
    /// layers without a kernel).
    pub fn kernel_nonzeros(&self) -> Vec<Option<usize>> {
        self.layers
            .iter()
            .map(|layer| {
                (layer.kernel_len() > 0).then(|| layer.kernels().flat_map(|k| &k.values).filter(|v| **v != 0.0).count())
            })
            .collect()
    }

    /// The fraction of kernel weights that are zero, over all kernels
    /// together (0 when there are none). Biases do not count.
    pub fn sparsity(&self) -> f64 {
        let total: usize = self.layers.iter().map(|l| l.kernel_len()).sum();
        let nonzero: usize = self.kernel_nonzeros().into_iter().flatten().sum();
        if total == 0 { 0.0 } else { (total - nonzero) as f64 / total as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use snac_core::arch::{Activation, Component, Norm};

    /// The `.npz` file holds every tensor under its key, with its shape and
    /// values, as NumPy reads it (the archive read back with npyz).
    #[test]
    fn npz_holds_every_tensor_with_its_shape() {
        let arch = Arch::new(
            Shape::Flat(6),
            vec![
                Component::mlp("b0", 5, Norm::Batch, Activation::Relu),
                Component::output("head", 3, Activation::Softmax),
            ],
        );
        let weights = Weights::init(&arch, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.npz");
        weights.save_npz(&path).unwrap();
        let mut archive = npyz::npz::NpzArchive::open(&path).unwrap();
        let mut count = 0;
        for layer in &weights.layers {
            for tensor in &layer.tensors {
                let key = Weights::npz_key(layer, tensor);
                let array = archive.by_name(&key).unwrap().unwrap_or_else(|| panic!("{key} missing"));
                let shape: Vec<usize> = array.shape().iter().map(|&d| d as usize).collect();
                assert_eq!(shape, tensor.shape, "{key}");
                assert_eq!(array.into_vec::<f32>().unwrap(), tensor.values, "{key}");
                count += 1;
            }
        }
        assert_eq!(count, 8, "two Dense kernels and biases, BatchNorm's four tensors");
        assert_eq!(archive.array_names().count(), count);
    }
}
