//! A hand-written forward and backward pass for the layers that dominate
//! the searches (Dense, Conv2d, BatchNorm, pointwise activations, Flatten,
//! Aggregate, the fake quantizers and softmax cross-entropy), in `f32` on
//! plain buffers with [`gemm`] for every matrix product.
//!
//! Why: profiling burn's autodiff on a tutorial-2 conv net showed the GEMM
//! microkernels at 11 % of the time; the rest went to NCHW↔NHWC copies,
//! page faults of fresh temporaries and generic reductions. Here the batch
//! stays in the trainer's `[batch·rows, features]` layout (channels last,
//! so im2col copies whole channel runs), each layer allocates only what it returns,
//! and the gradients are the textbook ones.
//!
//! It computes exactly what [`crate::net::Net::forward`] computes (same
//! semantics, same quantization points); `tests::engine_matches_burn` checks
//! values and gradients against burn's autodiff for every layer kind, and
//! the burn path stays the reference in `f64` for bit-exactness. LayerNorm,
//! which it does not cover, makes the trainer use burn.
//!
//! Layout: this file compiles a [`Net`] into [`Op`]s (deciding, per layer
//! kind, whether the engine covers it) and dispatches; each layer kind's
//! forward and backward pass is in a file of its own (`dense`, `conv`,
//! `conv_attention`, `norm`, `activation`, `aggregate`), on the helpers of
//! `linalg` and `pool`. A training forward pass leaves one [`Saved`] per
//! layer, which carries its kind, so the backward pass is one exhaustive
//! match.

mod activation;
mod aggregate;
mod conv;
mod conv_attention;
mod dense;
mod linalg;
mod norm;
mod pool;
#[cfg(test)]
mod tests;

use crate::fastmath;
use crate::net::{Net, NetLayer, ParamTable};
use crate::quant::QuantSpec;
use conv_attention::AttentionSaved;
use snac_core::arch::{Activation, Aggregation, ConvGeometry};

/// `(moving mean index, moving variance index, batch mean, batch variance)`
/// of one BatchNorm layer in a training forward pass.
type BatchStats = (usize, usize, Vec<f32>, Vec<f32>);

/// One layer as the engine computes it: a [`NetLayer`] of a kind the
/// engine covers, with the same parameter indices. A kind it does not cover
/// has no `Op`, so the passes below match exactly the kinds they compute.
#[derive(Clone, Debug)]
enum Op {
    Dense { kernel: usize, bias: usize },
    Conv2d { kernel: usize, bias: usize, geometry: ConvGeometry },
    ConvAttention { params: [usize; 8], positions: usize, scale: bool },
    BatchNorm { gamma: usize, beta: usize, moving_mean: usize, moving_variance: usize },
    Act(Activation),
    Flatten,
    Aggregate { elements: usize, mode: Aggregation },
}

impl Op {
    /// `layer` as the engine computes it, or `None` for a kind it does not
    /// cover (the trainer then uses burn for the whole network).
    fn of(layer: &NetLayer) -> Option<Op> {
        Some(match *layer {
            NetLayer::Dense { kernel, bias } => Op::Dense { kernel, bias },
            NetLayer::Conv2d { kernel, bias, geometry } => Op::Conv2d { kernel, bias, geometry },
            NetLayer::ConvAttention { params, positions, scale } => Op::ConvAttention { params, positions, scale },
            NetLayer::BatchNorm { gamma, beta, moving_mean, moving_variance } => {
                Op::BatchNorm { gamma, beta, moving_mean, moving_variance }
            }
            NetLayer::LayerNorm { .. } => return None,
            NetLayer::Act(act) => Op::Act(act),
            NetLayer::Flatten { .. } => Op::Flatten,
            NetLayer::Aggregate { elements, mode } => Op::Aggregate { elements, mode },
        })
    }

    /// Whether the output is an accumulator (kept exact under QAT, not put
    /// on the activation grid unless it is the logits), as in
    /// [`Net::forward`].
    fn is_accumulator(&self) -> bool {
        match self {
            Op::Dense { .. } | Op::Conv2d { .. } => true,
            Op::ConvAttention { .. } | Op::BatchNorm { .. } | Op::Act(_) | Op::Flatten | Op::Aggregate { .. } => false,
        }
    }

    /// This layer's forward pass on `x` in place; in training, what its
    /// backward pass needs (BatchNorm's batch statistics go to `batch_stats`).
    fn forward(
        &self,
        x: &mut Vec<f32>,
        pass: &Pass,
        pool: &mut Vec<Vec<f32>>,
        batch_stats: &mut Vec<BatchStats>,
    ) -> Option<Saved> {
        let Pass { params, batch, training, quant, conv_chunk_floats, index } = *pass;
        // This layer's output type under QAT, and its BatchNorm constants' width.
        let result = quant.map(|spec| spec.result_at(index));
        match *self {
            Op::Dense { kernel, bias } => {
                let input = dense::forward(x, &params[kernel], &params[bias]);
                training.then_some(Saved::Dense { kernel, bias, input })
            }
            Op::Conv2d { kernel, bias, geometry } => {
                let input = conv::forward(x, &params[kernel], &params[bias], &geometry, batch, conv_chunk_floats);
                training.then_some(Saved::Conv2d { kernel, bias, geometry, input })
            }
            Op::ConvAttention { params: indices, positions, scale } => {
                let p = indices.map(|i| params[i].as_slice());
                let (out, saved) =
                    conv_attention::forward(std::mem::take(x), p, positions, scale, result.as_ref(), training, pool);
                *x = out;
                saved.map(|saved| Saved::ConvAttention { params: indices, positions, saved })
            }
            Op::BatchNorm { gamma, beta, moving_mean, moving_variance } if training => {
                let stats = norm::train_forward(x, &params[gamma], &params[beta]);
                batch_stats.push((moving_mean, moving_variance, stats.mean, stats.variance));
                Some(Saved::BatchNorm { gamma, beta, normalized: stats.normalized, inverse_std: stats.inverse_std })
            }
            Op::BatchNorm { gamma, beta, moving_mean, moving_variance } => {
                let parameters = [gamma, beta, moving_mean, moving_variance].map(|i| params[i].as_slice());
                norm::eval_forward(x, parameters, quant.map(|spec| spec.weights_at(index).width));
                None
            }
            Op::Act(act) => activation::forward(x, act, training, quant.is_some()).map(|slopes| Saved::Act { slopes }),
            Op::Flatten => training.then_some(Saved::Flatten),
            Op::Aggregate { elements, mode } => {
                let winners = aggregate::forward(x, batch, elements, mode);
                training.then_some(Saved::Aggregate { elements, mode, winners })
            }
        }
    }
}

/// What every layer's forward pass reads besides its input.
#[derive(Clone, Copy)]
struct Pass<'a> {
    params: &'a [Vec<f32>],
    batch: usize,
    /// Training mode: batch statistics, and what backward needs saved.
    training: bool,
    quant: Option<&'a QuantSpec>,
    conv_chunk_floats: usize,
    /// The layer's position in the arch (its types under per-layer precision).
    index: usize,
}

/// What the backward pass needs from one layer's training forward pass: the
/// layer's kind and parameter indices, and the values its gradients are
/// computed from.
enum Saved {
    /// The layer's input.
    Dense {
        kernel: usize,
        bias: usize,
        input: Vec<f32>,
    },
    /// The layer's input.
    Conv2d {
        kernel: usize,
        bias: usize,
        geometry: ConvGeometry,
        input: Vec<f32>,
    },
    /// Projections, scores and softmax (see [`AttentionSaved`]).
    ConvAttention {
        params: [usize; 8],
        positions: usize,
        saved: Box<AttentionSaved>,
    },
    /// Training mode: normalised input and 1/σ per feature.
    BatchNorm {
        gamma: usize,
        beta: usize,
        normalized: Vec<f32>,
        inverse_std: Vec<f32>,
    },
    /// Pointwise activation: the derivative at each input.
    Act {
        slopes: Vec<f32>,
    },
    Flatten,
    /// Max pooling: the winning row of each output (empty for the mean).
    Aggregate {
        elements: usize,
        mode: Aggregation,
        winners: Vec<usize>,
    },
}

impl Saved {
    /// This layer's backward pass from the gradient of its output: its
    /// parameter gradients into `pass`, returns the gradient of its input
    /// (which the `first` layer may leave empty: it is never used).
    fn backward(self, grad: Vec<f32>, first: bool, pass: &mut Backprop) -> Vec<f32> {
        match self {
            Saved::Dense { kernel, bias, input } => dense::backward(grad, &input, kernel, bias, first, pass),
            Saved::Conv2d { kernel, bias, geometry, input } => {
                conv::backward(grad, &input, kernel, bias, &geometry, first, pass)
            }
            Saved::ConvAttention { params, positions, saved } => {
                conv_attention::backward(grad, saved, &params, positions, pass)
            }
            Saved::BatchNorm { gamma, beta, normalized, inverse_std } => {
                norm::backward(grad, &normalized, &inverse_std, gamma, beta, pass)
            }
            Saved::Act { slopes } => activation::backward(grad, &slopes),
            Saved::Flatten => grad,
            Saved::Aggregate { elements, mode, winners } => {
                aggregate::backward(grad, pass.batch, elements, mode, &winners)
            }
        }
    }
}

/// What every layer's backward pass shares: the parameters, their
/// gradients (`None` until computed), and the engine's settings and buffers.
struct Backprop<'a> {
    params: &'a [Vec<f32>],
    gradients: Vec<Option<Vec<f32>>>,
    batch: usize,
    conv_chunk_floats: usize,
    pool: &'a mut Vec<Vec<f32>>,
}

/// The engine for one network: its layers, what the last training forward
/// pass saved for its backward pass, how large a convolution's im2col
/// chunks are, and reusable buffers.
pub(crate) struct Engine {
    ops: Vec<Op>,
    /// For each of `ops`, its position in the arch.
    arch_indices: Vec<usize>,
    saved: Vec<Saved>,
    conv_chunk_floats: usize,
    /// Attention's S×S buffers, kept between steps.
    pool: Vec<Vec<f32>>,
}

/// The result of a training forward and backward pass.
pub(crate) struct StepResult {
    pub logits: Vec<f32>,
    pub loss: f64,
    /// Per parameter, its gradient (`None` when not trainable).
    pub gradients: Vec<Option<Vec<f32>>>,
    /// `(moving mean index, moving variance index, batch mean, batch variance)`.
    pub batch_stats: Vec<BatchStats>,
}

/// The parameter values as the forward pass uses them (on their grids under QAT).
pub(crate) fn parameter_values(table: &ParamTable, quant: Option<&QuantSpec>) -> Vec<Vec<f32>> {
    table.params.iter().map(|p| p.forward_values(quant)).collect()
}

impl Engine {
    /// The engine for `net`, or `None` when it does not cover every layer.
    pub fn new(net: &Net) -> Option<Engine> {
        let ops = net.layers.iter().map(Op::of).collect::<Option<Vec<Op>>>()?;
        Some(Engine {
            ops,
            arch_indices: net.arch_indices.clone(),
            saved: Vec::new(),
            conv_chunk_floats: conv::CONV_CHUNK_FLOATS,
            pool: Vec::new(),
        })
    }

    /// The forward pass to logits (`[batch, classes]`), in training mode
    /// (batch statistics, with what backward needs saved) or inference mode.
    fn forward(
        &mut self,
        params: &[Vec<f32>],
        mut x: Vec<f32>,
        batch: usize,
        training: bool,
        quant: Option<&QuantSpec>,
        batch_stats: &mut Vec<BatchStats>,
    ) -> Vec<f32> {
        self.saved.clear();
        if let Some(spec) = quant {
            spec.input.quantize_slice(&mut x);
        }
        let last = self.ops.len().saturating_sub(1);
        for (position, (op, &index)) in self.ops.iter().zip(&self.arch_indices).enumerate() {
            let pass = Pass { params, batch, training, quant, conv_chunk_floats: self.conv_chunk_floats, index };
            let saved = op.forward(&mut x, &pass, &mut self.pool, batch_stats);
            if let Some(spec) = quant
                && (!op.is_accumulator() || position == last)
            {
                spec.result_at(index).quantize_slice(&mut x);
            }
            if let Some(saved) = saved {
                self.saved.push(saved);
            }
        }
        if self.ops.is_empty()
            && let Some(spec) = quant
        {
            spec.activations.quantize_slice(&mut x);
        }
        x
    }

    /// Logits in inference mode.
    pub fn infer(&mut self, params: &[Vec<f32>], x: Vec<f32>, batch: usize, quant: Option<&QuantSpec>) -> Vec<f32> {
        self.forward(params, x, batch, false, quant, &mut Vec::new())
    }

    /// One training forward and backward pass on `x` (`batch` samples)
    /// against `labels`: logits, mean cross-entropy, gradients.
    pub fn step(
        &mut self,
        table: &ParamTable,
        params: &[Vec<f32>],
        x: Vec<f32>,
        labels: &[u32],
        quant: Option<&QuantSpec>,
    ) -> StepResult {
        let batch = labels.len();
        let mut batch_stats = Vec::new();
        let logits = self.forward(params, x, batch, true, quant, &mut batch_stats);
        let classes = logits.len() / batch;
        // Softmax cross-entropy and its gradient (softmax − one-hot) / batch.
        let mut grad = Vec::new();
        let loss = fastmath::cross_entropy_rows(&logits, classes, labels, &mut grad);
        for (g, &label) in grad.chunks_exact_mut(classes).zip(labels) {
            g.iter_mut().for_each(|gi| *gi /= batch as f32);
            g[label as usize] -= 1.0 / batch as f32;
        }
        let gradients = vec![None; params.len()];
        let conv_chunk_floats = self.conv_chunk_floats;
        let mut pass = Backprop { params, gradients, batch, conv_chunk_floats, pool: &mut self.pool };
        for (position, saved) in std::mem::take(&mut self.saved).into_iter().enumerate().rev() {
            // The input's own gradient is never used: the first layer skips it.
            grad = saved.backward(grad, position == 0, &mut pass);
        }
        let mut gradients = pass.gradients;
        for (gradient, param) in gradients.iter_mut().zip(&table.params) {
            if !param.trainable {
                *gradient = None;
            }
        }
        StepResult { logits, loss: loss / batch as f64, gradients, batch_stats }
    }
}
