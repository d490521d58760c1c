//! A network compiled from an [`Arch`] for burn: the layer sequence with
//! indices into a flat parameter table, and the forward pass in training or
//! inference mode.
//!
//! Parameters live on the host as `f32` vectors ([`ParamTable`]); each training
//! step turns them into burn tensors, so the optimiser and the BatchNorm moving
//! statistics are plain loops over slices.

use crate::layers::{self, ConvGeometry};
use crate::quant::{QuantSpec, QuantizeParam, fake_quantize};
use crate::weights::{ATTENTION_PARAMS, LayerWeights, NamedTensor, ParamRole, Weights, role_of};
use anyhow::{Result, bail, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use snac_core::arch::{Activation, Aggregation, Arch, Layer, Shape};
use snac_core::quantized::fold_batch_norm;

/// One layer of the compiled network; numbers index [`ParamTable::params`].
/// The batch travels as `[batch · rows, features]` (see [`crate::layers`]).
#[derive(Clone, Debug)]
pub(crate) enum NetLayer {
    Dense {
        kernel: usize,
        bias: usize,
    },
    Conv2d {
        kernel: usize,
        bias: usize,
        geometry: ConvGeometry,
    },
    ConvAttention {
        params: [usize; 8],
        positions: usize,
        scale: bool,
    },
    BatchNorm {
        gamma: usize,
        beta: usize,
        moving_mean: usize,
        moving_variance: usize,
    },
    LayerNorm {
        gamma: usize,
        beta: usize,
    },
    Act(Activation),
    /// `rows` positions per sample become one row.
    Flatten {
        rows: usize,
    },
    Aggregate {
        elements: usize,
        mode: Aggregation,
    },
}

impl NetLayer {
    /// Whether the output is an accumulator (kept exact, not put on the
    /// activation grid unless it is the logits).
    fn is_accumulator(&self) -> bool {
        match self {
            NetLayer::Dense { .. } | NetLayer::Conv2d { .. } => true,
            NetLayer::ConvAttention { .. }
            | NetLayer::BatchNorm { .. }
            | NetLayer::LayerNorm { .. }
            | NetLayer::Act(_)
            | NetLayer::Flatten { .. }
            | NetLayer::Aggregate { .. } => false,
        }
    }
}

/// One parameter tensor on the host, shaped 2-D for burn (`[n]` becomes `[1, n]`).
#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub layer: usize,
    pub name: String,
    /// The shape as stored in [`Weights`].
    pub shape: Vec<usize>,
    pub rows: usize,
    pub cols: usize,
    pub trainable: bool,
    pub role: ParamRole,
    pub values: Vec<f32>,
}

impl Param {
    /// The values as a tensor on `device`; Dense kernels and biases put on
    /// their grid when `quant` is given. The optimiser keeps the float
    /// values, and the gradient with respect to the quantized tensor is the
    /// straight-through gradient of the float ones.
    pub fn tensor(&self, device: &Device, quant: Option<&QuantSpec>) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.forward_values(quant), [self.rows, self.cols]), device)
    }

    /// The values the forward pass uses: kernels and biases on their grids
    /// under `quant`, everything else as stored.
    pub fn forward_values(&self, quant: Option<&QuantSpec>) -> Vec<f32> {
        let mut values = self.values.clone();
        if let Some(spec) = quant {
            spec.quantize_param(self.layer, self.role, &mut values);
        }
        values
    }
}

/// The parameters of a network, flat, with the layer kinds to rebuild [`Weights`].
#[derive(Clone, Debug)]
pub(crate) struct ParamTable {
    pub params: Vec<Param>,
    layer_kinds: Vec<String>,
}

impl ParamTable {
    pub fn to_weights(&self) -> Weights {
        let mut layers: Vec<LayerWeights> = self
            .layer_kinds
            .iter()
            .enumerate()
            .map(|(index, kind)| LayerWeights { index, kind: kind.clone(), tensors: Vec::new() })
            .collect();
        for param in &self.params {
            layers[param.layer].tensors.push(NamedTensor {
                name: param.name.clone(),
                shape: param.shape.clone(),
                values: param.values.clone(),
            });
        }
        Weights { layers }
    }
}

/// The compiled layer sequence. A trailing softmax is left out: the network
/// outputs logits and the loss applies the softmax.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    pub layers: Vec<NetLayer>,
    /// For each of `layers`, its position in [`Arch::layers`].
    pub arch_indices: Vec<usize>,
    pub input_features: usize,
    /// The input's layout: rows per sample and features per row.
    pub input_rows: usize,
    pub input_cols: usize,
    pub output_features: usize,
    /// Samples per forward pass in evaluation, so that no intermediate
    /// tensor grows much past 2^22 values.
    pub eval_batch: usize,
}

impl Net {
    /// Compiles `arch` with `weights` (which must fit it), or says which layer
    /// is not supported.
    pub fn build(arch: &Arch, weights: &Weights) -> Result<(Net, ParamTable)> {
        let shapes = arch.shapes()?;
        ensure!(!shapes.is_empty(), "architecture has no layers");
        let output_shape = arch.output_shape()?;
        let Shape::Flat(output_features) = output_shape else {
            bail!("the network's output is {output_shape}; it must be a vector (end with Flatten, Aggregate or Dense)")
        };
        let input_features = arch.input_shape.numel();
        let (input_rows, input_cols) = arch.input_shape.rows_and_features();
        weights.check_fits(arch)?;
        let mut widest = input_features;

        let mut params = Vec::new();
        let mut layers = Vec::new();
        let mut arch_indices = Vec::new();
        let last = shapes.len() - 1;
        for (index, (layer, input, output)) in shapes.iter().enumerate() {
            widest = widest.max(output.numel());
            let lw = &weights.layers[index];
            let mut add = |name: &str, role: ParamRole| -> Result<usize> {
                let tensor = lw.get(name)?;
                // Kernels of any rank are matrices `[product of the rest, last]`.
                let (rows, cols) = match tensor.shape[..] {
                    [] => bail!("layer {index} tensor '{name}' is a scalar; expected 1-D or more"),
                    [n] => (1, n),
                    [ref rest @ .., last] => (rest.iter().product(), last),
                };
                params.push(Param {
                    layer: index,
                    name: name.to_string(),
                    shape: tensor.shape.clone(),
                    rows,
                    cols,
                    trainable: tensor.is_trainable(),
                    role,
                    values: tensor.values.clone(),
                });
                Ok(params.len() - 1)
            };
            let other = ParamRole::Other;
            let net_layer = match layer {
                Layer::Dense { .. } => {
                    NetLayer::Dense { kernel: add("kernel", ParamRole::Kernel)?, bias: add("bias", ParamRole::Bias)? }
                }
                Layer::Conv2d { .. } => {
                    let geometry = ConvGeometry::of(layer, *input)
                        .ok_or_else(|| anyhow::anyhow!("layer {index} (Conv2d) needs an image input, got {input}"))?;
                    NetLayer::Conv2d {
                        kernel: add("kernel", ParamRole::Kernel)?,
                        bias: add("bias", ParamRole::Bias)?,
                        geometry,
                    }
                }
                Layer::ConvAttention { scale, .. } => {
                    let mut params = [0; 8];
                    for (slot, name) in params.iter_mut().zip(ATTENTION_PARAMS) {
                        *slot = add(name, role_of(name))?;
                    }
                    let positions = input.rows_and_features().0;
                    // The scores are positions × positions per sample.
                    widest = widest.max(positions * positions);
                    NetLayer::ConvAttention { params, positions, scale: *scale }
                }
                Layer::BatchNorm => NetLayer::BatchNorm {
                    gamma: add("gamma", other)?,
                    beta: add("beta", other)?,
                    moving_mean: add("moving_mean", other)?,
                    moving_variance: add("moving_variance", other)?,
                },
                Layer::LayerNorm => NetLayer::LayerNorm { gamma: add("gamma", other)?, beta: add("beta", other)? },
                Layer::Act(Activation::Softmax) if index == last => continue,
                Layer::Act(Activation::Softmax) => {
                    bail!("layer {index}: softmax may only be the last layer")
                }
                Layer::Act(act) => NetLayer::Act(*act),
                Layer::Flatten if input.rows_and_features().0 == 1 => continue,
                Layer::Flatten => NetLayer::Flatten { rows: input.rows_and_features().0 },
                Layer::Aggregate(mode) => {
                    let Shape::Set { elements, .. } = input else {
                        bail!("layer {index} (Aggregate) needs a set input, got {input}")
                    };
                    NetLayer::Aggregate { elements: *elements, mode: *mode }
                }
            };
            layers.push(net_layer);
            arch_indices.push(index);
        }
        let layer_kinds = shapes.iter().map(|(layer, ..)| layer.kind().to_string()).collect();
        let eval_batch = ((1usize << 22) / widest.max(1)).clamp(16, 2048);
        let net = Net { layers, arch_indices, input_features, input_rows, input_cols, output_features, eval_batch };
        Ok((net, ParamTable { params, layer_kinds }))
    }

    /// The forward pass to logits. `params[i]` is the tensor of parameter `i`
    /// (`None` where that mode does not read it: moving statistics in
    /// training). In training mode BatchNorm uses batch statistics and pushes
    /// `(moving_mean index, moving_variance index, batch mean, batch variance)`
    /// to `batch_stats`.
    ///
    /// With `quant`, the outputs of activations, normalisations and the
    /// logits are fake-quantized to the activation type (the parameter
    /// tensors come quantized from [`Param::tensor`]). With `trace`, each
    /// layer's output (after quantization) is pushed to it.
    pub fn forward(
        &self,
        mut x: Tensor<2>,
        params: &[Option<Tensor<2>>],
        training: bool,
        batch_stats: &mut Vec<(usize, usize, Tensor<2>, Tensor<2>)>,
        quant: Option<&QuantSpec>,
        mut trace: Option<&mut Vec<Tensor<2>>>,
    ) -> Tensor<2> {
        let p = |i: usize| params[i].clone().expect("parameter tensor missing for this mode");
        let last = self.layers.len().saturating_sub(1);
        if self.input_rows > 1 {
            let batch = x.dims()[0];
            x = x.reshape([batch * self.input_rows, self.input_cols]);
        }
        if let Some(spec) = quant {
            x = fake_quantize(x, &spec.input);
        }
        for (position, (layer, &index)) in self.layers.iter().zip(&self.arch_indices).enumerate() {
            x = match *layer {
                NetLayer::Dense { kernel, bias } => layers::dense(x, p(kernel), p(bias)),
                NetLayer::Conv2d { kernel, bias, ref geometry } => layers::conv2d(x, p(kernel), p(bias), geometry),
                NetLayer::ConvAttention { params: ref indices, positions, scale } => {
                    let tensors = indices.map(p);
                    layers::conv_attention(
                        x,
                        tensors,
                        positions,
                        scale,
                        quant.map(|spec| spec.result_at(index)).as_ref(),
                    )
                }
                NetLayer::Flatten { rows } => layers::flatten(x, rows),
                NetLayer::Aggregate { elements, mode } => layers::aggregate(x, elements, mode),
                NetLayer::BatchNorm { gamma, beta, moving_mean, moving_variance } => {
                    if training {
                        let (out, mean, variance) = layers::batch_norm_train(x, p(gamma), p(beta));
                        batch_stats.push((moving_mean, moving_variance, mean, variance));
                        out
                    } else if let Some(spec) = quant {
                        folded_batch_norm(
                            x,
                            [gamma, beta, moving_mean, moving_variance].map(p),
                            spec.weights_at(index).width,
                        )
                    } else {
                        layers::batch_norm_eval(x, p(gamma), p(beta), p(moving_mean), p(moving_variance))
                    }
                }
                NetLayer::LayerNorm { gamma, beta } => layers::layer_norm(x, p(gamma), p(beta)),
                NetLayer::Act(act) if quant.is_some() => layers::activation_quantized(x, act),
                NetLayer::Act(act) => layers::activation(x, act),
            };
            if let Some(spec) = quant {
                // A Dense or Conv2d output is an accumulator, unless it is the logits.
                if !layer.is_accumulator() || position == last {
                    x = fake_quantize(x, &spec.result_at(index));
                }
            }
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(x.clone());
            }
        }
        if self.layers.is_empty()
            && let Some(spec) = quant
        {
            x = fake_quantize(x, &spec.activations);
        }
        x
    }
}

/// Inference-mode BatchNorm as the quantized model computes it:
/// `x·scale + shift` with the fixed-point constants of
/// [`snac_core::quantized::fold_batch_norm`] for the layer's weight width.
fn folded_batch_norm(x: Tensor<2>, [gamma, beta, mean, variance]: [Tensor<2>; 4], width: u32) -> Tensor<2> {
    let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float parameters");
    let (scale, shift) = fold_batch_norm(&host(gamma), &host(beta), &host(mean), &host(variance), width)
        .expect("BatchNorm parameters of one layer have one length");
    let device = x.device();
    let dtype = x.dtype();
    let row = |values: Vec<f64>| {
        let n = values.len();
        Tensor::<2>::from_data(TensorData::new(values, [1, n]), (&device, dtype))
    };
    x * row(scale.values()) + row(shift.values())
}
