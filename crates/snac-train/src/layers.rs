//! The tensor math of each supported layer kind, as free functions on burn
//! tensors, with Keras semantics (epsilons, biased variances, Glorot init).
//!
//! They are dtype-agnostic (f32 for training, f64 in the gradient checks) and
//! differentiable through burn's autodiff when their inputs are tracked.
//!
//! A batch always travels as a matrix `[batch · rows, features]`: a vector
//! is one row, an image `height · width` rows of channels (channels last,
//! row-major, as Keras), a set one row per element. So Dense, BatchNorm,
//! LayerNorm and activations apply per position or element unchanged
//! (BatchNorm's statistics then run over batch and positions, as Keras'
//! over all axes but the last), and Flatten is a reshape.

use crate::fastmath::{self, Pointwise};
use crate::quant::fake_quantize;
pub use crate::weights::ATTENTION_PARAMS;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor, TensorData, activation};
pub use snac_core::arch::ConvGeometry;
use snac_core::arch::{Activation, Aggregation};
use snac_core::fixed::FixedPoint;
use snac_core::quantized::softmax::{attention_scale, softmax_values};
use snac_core::quantized::{ActivationTable, gelu_scale, leaky_slope, mean_factor};

/// Keras `BatchNormalization` default epsilon.
pub const BATCH_NORM_EPSILON: f64 = 1e-3;
/// Keras `BatchNormalization` default momentum of the moving statistics.
pub const BATCH_NORM_MOMENTUM: f32 = 0.99;
/// Keras `LayerNormalization` default epsilon.
pub const LAYER_NORM_EPSILON: f64 = 1e-3;

/// `x · kernel + bias`, kernel `[in, out]` (Keras layout), bias `[1, out]`.
pub fn dense(x: Tensor<2>, kernel: Tensor<2>, bias: Tensor<2>) -> Tensor<2> {
    x.matmul(kernel) + bias
}

/// `(x − mean) / sqrt(var + ε) · gamma + beta`, with `mean` and `var`
/// broadcast along the batch (BatchNorm) or feature (LayerNorm) axis.
fn normalize(
    x: Tensor<2>,
    mean: Tensor<2>,
    variance: Tensor<2>,
    gamma: Tensor<2>,
    beta: Tensor<2>,
    epsilon: f64,
) -> Tensor<2> {
    let inverse_std = variance.add_scalar(epsilon).sqrt().recip();
    (x - mean) * inverse_std * gamma + beta
}

/// BatchNorm in training mode: normalises with the batch's own mean and
/// biased variance (as Keras for non-fused, flat inputs). Returns the output
/// and the batch mean and variance (each `[1, features]`) for the moving
/// statistics.
pub fn batch_norm_train(x: Tensor<2>, gamma: Tensor<2>, beta: Tensor<2>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let (variance, mean) = x.clone().var_mean_bias(0);
    let out = normalize(x, mean.clone(), variance.clone(), gamma, beta, BATCH_NORM_EPSILON);
    (out, mean, variance)
}

/// BatchNorm in inference mode, with the moving statistics.
pub fn batch_norm_eval(
    x: Tensor<2>,
    gamma: Tensor<2>,
    beta: Tensor<2>,
    moving_mean: Tensor<2>,
    moving_variance: Tensor<2>,
) -> Tensor<2> {
    normalize(x, moving_mean, moving_variance, gamma, beta, BATCH_NORM_EPSILON)
}

/// LayerNorm over the features of each sample, gamma and beta `[1, features]`.
pub fn layer_norm(x: Tensor<2>, gamma: Tensor<2>, beta: Tensor<2>) -> Tensor<2> {
    let (variance, mean) = x.clone().var_mean_bias(1);
    normalize(x, mean, variance, gamma, beta, LAYER_NORM_EPSILON)
}

/// A pointwise activation. `Softmax` is applied here only for callers that
/// want probabilities; training fuses it into [`softmax_cross_entropy`].
pub fn activation(x: Tensor<2>, act: Activation) -> Tensor<2> {
    match act {
        Activation::Relu => activation::relu(x),
        Activation::LeakyRelu => activation::leaky_relu(x, Activation::LEAKY_SLOPE as f64),
        // The sigmoid form x·σ(1.702·x), as the integer model and hls4ml.
        Activation::Gelu => x.clone() * activation::sigmoid(x.mul_scalar(Activation::GELU_SCALE)),
        Activation::Tanh => pointwise(x, Pointwise::Tanh),
        Activation::Sigmoid => pointwise(x, Pointwise::Sigmoid),
        Activation::Identity => x,
        Activation::Softmax => activation::softmax(x, 1),
    }
}

/// A pointwise activation as the quantized model computes it: `tanh` and
/// `sigmoid` take their values from hls4ml's lookup tables
/// ([`ActivationTable`]) with the real function's gradient, GELU is
/// `x·σ(x·scale)` with the fixed-point scale and the sigmoid table (with the
/// gradient of `x·σ(1.702·x)`), and Leaky ReLU multiplies by its fixed-point
/// slope. Others as [`activation`].
pub fn activation_quantized(x: Tensor<2>, act: Activation) -> Tensor<2> {
    match act {
        Activation::Tanh | Activation::Sigmoid => {
            let (table, entries) = ActivationTable::cached(act).expect("tanh and sigmoid have tables");
            let kind = if act == Activation::Tanh { Pointwise::Tanh } else { Pointwise::Sigmoid };
            pointwise_with(x, kind, Some(&|v: f64| entries[table.index_of_value(v)]))
        }
        Activation::LeakyRelu => activation::leaky_relu(x, leaky_slope().values()[0]),
        Activation::Gelu => gelu_quantized(x),
        other => activation(x, other),
    }
}

/// GELU's sigmoid form `x·σ(1.702·x)` and its derivative
/// `σ + 1.702·x·σ·(1 − σ)`.
pub(crate) fn gelu_sigmoid(x: f64) -> (f64, f64) {
    let a = Activation::GELU_SCALE;
    let s = 1.0 / (1.0 + (-a * x).exp());
    (x * s, s + a * x * s * (1.0 - s))
}

/// GELU as the integer model computes it, before the output is quantized:
/// `x · table(x·scale)` with the fixed-point scale ([`gelu_scale`]) and
/// hls4ml's sigmoid table (both products are exact in `f64`). `x` is on a
/// fixed-point grid here.
pub(crate) fn gelu_table_value(x: f64) -> f64 {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let scale = *SCALE.get_or_init(|| gelu_scale().values()[0]);
    let (table, entries) = ActivationTable::cached(Activation::Sigmoid).expect("sigmoid has a table");
    x * entries[table.index_of_value(x * scale)]
}

/// [`gelu_table_value`] attached to the autodiff graph with the derivative
/// of the smooth [`gelu_sigmoid`] (a straight-through estimate, as the
/// tables of tanh and sigmoid).
fn gelu_quantized(x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let shape = x.dims();
    let dtype = x.dtype();
    let xs: Vec<f64> = x.clone().into_data().convert::<f64>().try_into_vec::<f64>().expect("float tensor data");
    let values: Vec<f64> = xs.iter().map(|&v| gelu_table_value(v)).collect();
    let slopes: Vec<f64> = xs.iter().map(|&v| gelu_sigmoid(v).1).collect();
    let tensor = |data: Vec<f64>| {
        let data = if dtype == DType::F32 {
            TensorData::new(data.into_iter().map(|v| v as f32).collect::<Vec<f32>>(), shape)
        } else {
            TensorData::new(data, shape)
        };
        Tensor::<2>::from_data(data, (&device, dtype))
    };
    let values = tensor(values);
    if !x.is_autodiff() {
        return values;
    }
    values + (x.clone() - x.detach()) * tensor(slopes)
}

/// `tanh` or `sigmoid` computed outside the autodiff graph (vectorised in f32,
/// see [`crate::fastmath`]) and attached to it with the derivative as a
/// constant: `f(x) + (x − detach(x)) · f'(x)` has the value `f(x)` exactly and
/// the gradient `f'(x)`.
fn pointwise(x: Tensor<2>, kind: Pointwise) -> Tensor<2> {
    pointwise_with(x, kind, None)
}

/// [`pointwise`], with the values (not the slopes) taken from `value` when given.
fn pointwise_with(x: Tensor<2>, kind: Pointwise, value: Option<&dyn Fn(f64) -> f64>) -> Tensor<2> {
    let device = x.device();
    let shape = x.dims();
    let dtype = x.dtype();
    let data = x.clone().into_data();
    let (values, slopes) = if dtype == DType::F32 {
        let xs: &[f32] = data.as_slice().expect("f32 tensor data");
        let mut values = vec![0.0f32; xs.len()];
        let mut slopes = vec![0.0f32; xs.len()];
        fastmath::evaluate(kind, xs, &mut values, &mut slopes);
        if let Some(value) = value {
            for (v, &x) in values.iter_mut().zip(xs) {
                *v = value(x as f64) as f32;
            }
        }
        (TensorData::new(values, shape), TensorData::new(slopes, shape))
    } else {
        let xs: Vec<f64> = data.convert::<f64>().try_into_vec::<f64>().expect("float tensor data");
        let (values, slopes): (Vec<f64>, Vec<f64>) = xs
            .iter()
            .map(|&x| {
                let (v, slope) = match kind {
                    Pointwise::Tanh => (x.tanh(), 1.0 - x.tanh() * x.tanh()),
                    Pointwise::Sigmoid => {
                        let s = 1.0 / (1.0 + (-x).exp());
                        (s, s * (1.0 - s))
                    }
                };
                (value.map_or(v, |f| f(x)), slope)
            })
            .unzip();
        (TensorData::new(values, shape), TensorData::new(slopes, shape))
    };
    let values = Tensor::from_data(values, (&device, dtype));
    if !x.is_autodiff() {
        return values;
    }
    let slopes = Tensor::from_data(slopes, (&device, dtype));
    values + (x.clone() - x.detach()) * slopes
}

/// 2-D convolution, stride 1: `x` `[batch·H·W, C]` to `[batch·H'·W', F]`;
/// `kernel` `[k·k·C, F]` (Keras' `[k, k, C, F]`, row-major), `bias` `[1, F]`.
pub fn conv2d(x: Tensor<2>, kernel: Tensor<2>, bias: Tensor<2>, g: &ConvGeometry) -> Tensor<2> {
    let batch = x.dims()[0] / (g.height * g.width);
    let images = x.reshape([batch, g.height, g.width, g.channels]).permute([0, 3, 1, 2]);
    let weight = kernel.reshape([g.kernel, g.kernel, g.channels, g.filters]).permute([3, 2, 0, 1]);
    let options = ConvOptions { stride: [1, 1], padding: g.padding, dilation: [1, 1], groups: 1 };
    let out = module::conv2d(images, weight, Some(bias.reshape([g.filters])), options);
    out.permute([0, 2, 3, 1]).reshape([batch * g.out_height * g.out_width, g.filters])
}

/// The parameters of a ConvAttention layer, in [`ATTENTION_PARAMS`] order.
pub type AttentionParams = [Tensor<2>; 8];

/// Convolutional self-attention (docs/snac-pack-compat.md §2) over the `positions` of
/// each image: `q, k, v = x·W + b` (1×1 convolutions), `scores = q·kᵀ`
/// (times `1/√hidden` when `scale`), `softmax` over the last axis,
/// `(scores·v)·W_o + b_o`, plus the input (residual). `x` is
/// `[batch·positions, C]`, as is the result.
///
/// With `quant` (the activation type): q, k, v, the attended values and the
/// output projection are put on its grid, and the softmax is the fixed-point
/// one of [`snac_core::quantized::softmax`] (with the float softmax's gradient).
pub fn conv_attention(
    x: Tensor<2>,
    params: AttentionParams,
    positions: usize,
    scale: bool,
    quant: Option<&FixedPoint>,
) -> Tensor<2> {
    let [wq, bq, wk, bk, wv, bv, wo, bo] = params;
    let [rows, _] = x.dims();
    let batch = rows / positions;
    let hidden = wq.dims()[1];
    let on_grid = |t: Tensor<2>| match quant {
        Some(fixed) => fake_quantize(t, fixed),
        None => t,
    };
    let project = |w: Tensor<2>, b: Tensor<2>| on_grid(dense(x.clone(), w, b)).reshape([batch, positions, hidden]);
    let (q, k, v) = (project(wq, bq), project(wk, bk), project(wv, bv));
    let scores = q.matmul(k.swap_dims(1, 2));
    let scale_code = scale.then(|| attention_scale(hidden));
    let scaled = match scale_code {
        Some(code) => {
            scores.clone().mul_scalar(code as f64 / (1u64 << snac_core::quantized::softmax::SCALE_FRAC) as f64)
        }
        None => scores.clone(),
    };
    let float_softmax = activation::softmax(scaled, 2);
    let weights = match quant {
        None => float_softmax,
        Some(fixed) => fixed_softmax(scores, float_softmax, 2 * fixed.fractional_bits(), scale_code, fixed),
    };
    let attended = on_grid(weights.matmul(v).reshape([rows, hidden]));
    on_grid(dense(attended, wo, bo)) + x
}

/// The fixed-point softmax's values with `float`'s gradient.
fn fixed_softmax(scores: Tensor<3>, float: Tensor<3>, frac: i32, scale: Option<i64>, fixed: &FixedPoint) -> Tensor<3> {
    let device = scores.device();
    let dtype = scores.dtype();
    let dims = scores.dims();
    let values: Vec<f64> = scores.into_data().convert::<f64>().try_into_vec::<f64>().expect("float scores");
    let mut out = Vec::with_capacity(values.len());
    for row in values.chunks_exact(dims[2]) {
        out.extend(softmax_values(row, frac, scale, fixed));
    }
    let data = if dtype == DType::F32 {
        TensorData::new(out.into_iter().map(|v| v as f32).collect::<Vec<f32>>(), dims)
    } else {
        TensorData::new(out, dims)
    };
    let values = Tensor::<3>::from_data(data, (&device, dtype));
    if !float.is_autodiff() {
        return values;
    }
    values + (float.clone() - float.detach())
}

/// A set `[batch·elements, F]` pooled to `[batch, F]`: the mean (the sum
/// times the integer model's constant 1/N, [`mean_factor`], as hls4ml
/// computes it; exactly 1/N for a power of two) or the maximum over the
/// elements.
pub fn aggregate(x: Tensor<2>, elements: usize, mode: Aggregation) -> Tensor<2> {
    let [rows, features] = x.dims();
    let batch = rows / elements;
    let sets = x.reshape([batch, elements, features]);
    let pooled = match mode {
        Aggregation::Mean => sets.sum_dim(1).mul_scalar(mean_factor(elements).values()[0]),
        Aggregation::Max => sets.max_dim(1),
    };
    pooled.reshape([batch, features])
}

/// `[batch·rows, F]` to `[batch, rows·F]`: Keras' Flatten of channels-last data.
pub fn flatten(x: Tensor<2>, rows: usize) -> Tensor<2> {
    let [total, features] = x.dims();
    x.reshape([total / rows, rows * features])
}

/// Mean softmax cross-entropy of `logits` `[batch, classes]` against one-hot
/// targets of the same shape; a one-element tensor.
pub fn softmax_cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let batch = logits.dims()[0] as f64;
    (activation::log_softmax(logits, 1) * one_hot).sum().div_scalar(-batch)
}

/// Finite-difference gradient checks, in f64: for each layer function `f`
/// and random `R`, the autodiff gradient of `sum(f(inputs) · R)` with respect
/// to every input must match central differences.
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use snac_core::arch::{Layer, Padding, Shape};

    type Input = (Vec<f64>, [usize; 2]);

    fn tensor(values: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), (device, DType::F64))
    }

    fn values(t: Tensor<2>) -> Vec<f64> {
        t.into_data().try_to_vec::<f64>().unwrap()
    }

    /// Random values whose magnitude lies in `[0.1, 2)`, away from kinks at 0.
    fn random(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Input {
        let v = (0..rows * cols)
            .map(|_| {
                let magnitude = rng.random_range(0.1..2.0);
                if rng.random_bool(0.5) { magnitude } else { -magnitude }
            })
            .collect();
        (v, [rows, cols])
    }

    /// The largest relative mismatch between autodiff and central
    /// differences over all inputs of `f`.
    fn gradient_error(inputs: &[Input], f: impl Fn(&[Tensor<2>]) -> Tensor<2>) -> f64 {
        let plain = Device::flex();
        let autodiff = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let probe = f(&inputs.iter().map(|(v, s)| tensor(v, *s, &plain)).collect::<Vec<_>>());
        let out_shape: [usize; 2] = probe.dims();
        let weights: Vec<f64> = (0..out_shape[0] * out_shape[1]).map(|_| rng.random_range(-1.0..1.0)).collect();
        let objective = |inputs: &[Input]| -> f64 {
            let tensors: Vec<_> = inputs.iter().map(|(v, s)| tensor(v, *s, &plain)).collect();
            values((f(&tensors) * tensor(&weights, out_shape, &plain)).sum().reshape([1, 1]))[0]
        };

        let tracked: Vec<_> = inputs.iter().map(|(v, s)| tensor(v, *s, &autodiff).require_grad()).collect();
        let loss = (f(&tracked) * tensor(&weights, out_shape, &autodiff)).sum();
        let grads = loss.backward();
        let step = 1e-5;
        let mut worst = 0.0f64;
        for (which, input) in tracked.iter().enumerate() {
            let analytic = values(input.grad(&grads).expect("input gets a gradient"));
            for (i, &a) in analytic.iter().enumerate() {
                let mut plus = inputs.to_vec();
                plus[which].0[i] += step;
                let mut minus = inputs.to_vec();
                minus[which].0[i] -= step;
                let numeric = (objective(&plus) - objective(&minus)) / (2.0 * step);
                let error = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1.0);
                worst = worst.max(error);
            }
        }
        worst
    }

    const TOLERANCE: f64 = 1e-6;

    fn assert_gradients(name: &str, inputs: &[Input], f: impl Fn(&[Tensor<2>]) -> Tensor<2>) {
        let error = gradient_error(inputs, f);
        assert!(error < TOLERANCE, "{name}: autodiff and finite differences differ by {error:e}");
    }

    #[test]
    fn dense_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let inputs = [random(5, 4, &mut rng), random(4, 3, &mut rng), random(1, 3, &mut rng)];
        assert_gradients("dense", &inputs, |t| dense(t[0].clone(), t[1].clone(), t[2].clone()));
    }

    #[test]
    fn batch_norm_train_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let inputs = [random(6, 3, &mut rng), random(1, 3, &mut rng), random(1, 3, &mut rng)];
        assert_gradients("batch norm (train)", &inputs, |t| {
            batch_norm_train(t[0].clone(), t[1].clone(), t[2].clone()).0
        });
    }

    #[test]
    fn batch_norm_eval_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (variance, shape) = random(1, 3, &mut rng);
        let variance = (variance.iter().map(|v| v.abs()).collect(), shape);
        let inputs =
            [random(4, 3, &mut rng), random(1, 3, &mut rng), random(1, 3, &mut rng), random(1, 3, &mut rng), variance];
        assert_gradients("batch norm (eval)", &inputs, |t| {
            batch_norm_eval(t[0].clone(), t[1].clone(), t[2].clone(), t[3].clone(), t[4].clone())
        });
    }

    #[test]
    fn layer_norm_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let inputs = [random(3, 5, &mut rng), random(1, 5, &mut rng), random(1, 5, &mut rng)];
        assert_gradients("layer norm", &inputs, |t| layer_norm(t[0].clone(), t[1].clone(), t[2].clone()));
    }

    #[test]
    fn activation_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let inputs = [random(4, 6, &mut rng)];
        for act in Activation::ALL {
            assert_gradients(act.name(), &inputs, |t| activation(t[0].clone(), act));
        }
    }

    #[test]
    fn softmax_cross_entropy_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut one_hot = vec![0.0; 4 * 3];
        for row in 0..4 {
            one_hot[row * 3 + rng.random_range(0..3)] = 1.0;
        }
        let logits = random(4, 3, &mut rng);
        let device = Device::flex();
        // Only the logits are differentiated; the targets are constants.
        assert_gradients("softmax cross-entropy", &[logits], |t| {
            let targets = tensor(&one_hot, [4, 3], &t[0].device());
            softmax_cross_entropy(t[0].clone(), targets).reshape([1, 1])
        });
        // And the value is the textbook one.
        let (values_, shape) = random(4, 3, &mut rng);
        let loss = softmax_cross_entropy(tensor(&values_, shape, &device), tensor(&one_hot, [4, 3], &device));
        let expected: f64 = (0..4)
            .map(|r| {
                let row = &values_[r * 3..r * 3 + 3];
                let label = (0..3).find(|&c| one_hot[r * 3 + c] == 1.0).unwrap();
                row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[label]
            })
            .sum::<f64>()
            / 4.0;
        let got = loss.into_data().try_to_vec::<f64>().unwrap()[0];
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    /// Keras' Conv2D, stride 1, by definition: channels-last input and
    /// `[k, k, C, F]` kernel, zero padding `pad` before (rows and columns).
    fn naive_conv(x: &[f64], kernel: &[f64], bias: &[f64], g: &ConvGeometry, batch: usize) -> Vec<f64> {
        let (k, c, f) = (g.kernel, g.channels, g.filters);
        let mut out = vec![0.0; batch * g.out_height * g.out_width * f];
        for b in 0..batch {
            for oy in 0..g.out_height {
                for ox in 0..g.out_width {
                    for o in 0..f {
                        let mut acc = bias[o];
                        for dy in 0..k {
                            for dx in 0..k {
                                let y = (oy + dy) as isize - g.padding[0].0 as isize;
                                let xx = (ox + dx) as isize - g.padding[1].0 as isize;
                                if y < 0 || xx < 0 || y >= g.height as isize || xx >= g.width as isize {
                                    continue;
                                }
                                for i in 0..c {
                                    let input = x[((b * g.height + y as usize) * g.width + xx as usize) * c + i];
                                    acc += input * kernel[((dy * k + dx) * c + i) * f + o];
                                }
                            }
                        }
                        out[((b * g.out_height + oy) * g.out_width + ox) * f + o] = acc;
                    }
                }
            }
        }
        out
    }

    fn geometry(size: usize, channels: usize, kernel: usize, filters: usize, padding: Padding) -> ConvGeometry {
        let layer = Layer::Conv2d { filters, kernel, padding };
        ConvGeometry::of(&layer, Shape::Image { height: size, width: size + 1, channels }).unwrap()
    }

    #[test]
    fn conv2d_values_are_keras_and_gradients_check() {
        let device = Device::flex();
        for (kernel, padding) in [(3, Padding::Valid), (1, Padding::Same), (3, Padding::Same), (2, Padding::Same)] {
            let mut rng = ChaCha8Rng::seed_from_u64(10 + kernel as u64);
            let g = geometry(4, 2, kernel, 3, padding);
            let batch = 2;
            let x = random(batch * g.height * g.width, g.channels, &mut rng);
            let w = random(kernel * kernel * g.channels, g.filters, &mut rng);
            let b = random(1, g.filters, &mut rng);
            let got =
                values(conv2d(tensor(&x.0, x.1, &device), tensor(&w.0, w.1, &device), tensor(&b.0, b.1, &device), &g));
            let want = naive_conv(&x.0, &w.0, &b.0, &g, batch);
            assert_eq!(got.len(), want.len(), "k{kernel} {padding:?}");
            for (a, e) in got.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "k{kernel} {padding:?}: {a} vs {e}");
            }
            assert_gradients(&format!("conv2d k{kernel} {padding:?}"), &[x, w, b], |t| {
                conv2d(t[0].clone(), t[1].clone(), t[2].clone(), &g)
            });
        }
    }

    /// Self-attention by definition, one sample `[positions, C]` at a time.
    fn naive_attention(x: &[f64], p: &[Vec<f64>], positions: usize, c: usize, h: usize, scale: bool) -> Vec<f64> {
        let project = |rows: &[f64], w: &[f64], b: &[f64], n_in: usize, n_out: usize| -> Vec<f64> {
            rows.chunks(n_in)
                .flat_map(|r| (0..n_out).map(move |o| b[o] + (0..n_in).map(|i| r[i] * w[i * n_out + o]).sum::<f64>()))
                .collect()
        };
        let mut out = Vec::new();
        for sample in x.chunks(positions * c) {
            let q = project(sample, &p[0], &p[1], c, h);
            let k = project(sample, &p[2], &p[3], c, h);
            let v = project(sample, &p[4], &p[5], c, h);
            let mut attended = vec![0.0; positions * h];
            for i in 0..positions {
                let factor = if scale { attention_scale(h) as f64 / 4096.0 } else { 1.0 };
                let scores: Vec<f64> =
                    (0..positions).map(|j| (0..h).map(|d| q[i * h + d] * k[j * h + d]).sum::<f64>() * factor).collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for j in 0..positions {
                    for d in 0..h {
                        attended[i * h + d] += (scores[j] - max).exp() / z * v[j * h + d];
                    }
                }
            }
            let o = project(&attended, &p[6], &p[7], h, c);
            out.extend(o.iter().zip(sample).map(|(a, b)| a + b));
        }
        out
    }

    #[test]
    fn conv_attention_values_and_gradients() {
        let device = Device::flex();
        let (batch, positions, c, h) = (2, 5, 3, 2);
        for scale in [false, true] {
            let mut rng = ChaCha8Rng::seed_from_u64(20);
            // Small values keep the softmax away from saturation, so every
            // input matters to the check.
            let shrink = |(v, s): Input| -> Input { (v.iter().map(|x| x * 0.4).collect(), s) };
            let mut inputs = vec![shrink(random(batch * positions, c, &mut rng))];
            for (from, to) in [(c, h), (c, h), (c, h), (h, c)] {
                inputs.push(shrink(random(from, to, &mut rng)));
                inputs.push(shrink(random(1, to, &mut rng)));
            }
            let params: Vec<Vec<f64>> = inputs[1..].iter().map(|i| i.0.clone()).collect();
            let want = naive_attention(&inputs[0].0, &params, positions, c, h, scale);
            let tensors: Vec<_> = inputs.iter().map(|(v, s)| tensor(v, *s, &device)).collect();
            let p: [Tensor<2>; 8] = std::array::from_fn(|i| tensors[i + 1].clone());
            let got = values(conv_attention(tensors[0].clone(), p, positions, scale, None));
            for (a, e) in got.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "scale {scale}: {a} vs {e}");
            }
            assert_gradients(&format!("conv attention (scale {scale})"), &inputs, |t| {
                let p: [Tensor<2>; 8] = std::array::from_fn(|i| t[i + 1].clone());
                conv_attention(t[0].clone(), p, positions, scale, None)
            });
        }
    }

    #[test]
    fn aggregate_and_flatten_values_and_gradients() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(30);
        let x = random(3 * 4, 2, &mut rng);
        let mean = values(aggregate(tensor(&x.0, x.1, &device), 4, Aggregation::Mean));
        let max = values(aggregate(tensor(&x.0, x.1, &device), 4, Aggregation::Max));
        for set in 0..3 {
            for f in 0..2 {
                let column: Vec<f64> = (0..4).map(|e| x.0[(set * 4 + e) * 2 + f]).collect();
                assert!((mean[set * 2 + f] - column.iter().sum::<f64>() / 4.0).abs() < 1e-15);
                assert_eq!(max[set * 2 + f], column.iter().cloned().fold(f64::MIN, f64::max));
            }
        }
        for mode in [Aggregation::Mean, Aggregation::Max] {
            assert_gradients(mode.name(), std::slice::from_ref(&x), |t| aggregate(t[0].clone(), 4, mode));
        }
        let flat = flatten(tensor(&x.0, x.1, &device), 4);
        assert_eq!(flat.dims(), [3, 8]);
        assert_eq!(values(flat), x.0, "Flatten of channels-last rows keeps the order");
        assert_gradients("flatten", &[x], |t| flatten(t[0].clone(), 4));
    }

    #[test]
    fn the_check_catches_a_wrong_gradient() {
        // `detach` hides one factor from autodiff: the gradient of x·x comes
        // out as x instead of 2x, and the check must notice.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let inputs = [random(3, 3, &mut rng)];
        let error = gradient_error(&inputs, |t| t[0].clone().detach() * t[0].clone());
        assert!(error > 0.1, "a wrong gradient went unnoticed (error {error:e})");
    }

    #[test]
    fn gelu_is_the_sigmoid_form_and_leaky_slope_is_keras() {
        let device = Device::flex();
        let x = tensor(&[-1.5, 0.7], [1, 2], &device);
        let gelu = values(activation(x.clone(), Activation::Gelu));
        // x·σ(1.702·x): σ(-2.553) = 0.0722252, σ(1.1914) = 0.7669914.
        assert!((gelu[0] - -1.5 * 0.072_225_2).abs() < 1e-6, "{gelu:?}");
        assert!((gelu[1] - 0.7 * 0.766_991_4).abs() < 1e-6, "{gelu:?}");
        // Within 0.021 of the exact x·Φ(x) (erf form).
        assert!((gelu[0] - -1.5 * 0.066_807_201).abs() < 0.021, "{gelu:?}");
        let leaky = values(activation(x, Activation::LeakyRelu));
        assert!((leaky[0] - -0.015).abs() < 1e-9 && (leaky[1] - 0.7).abs() < 1e-12, "{leaky:?}");
    }

    /// The quantized GELU's values are the integer model's (the sigmoid
    /// table at `x·scale`, times `x`) and its gradient is the smooth form's.
    #[test]
    fn quantized_gelu_values_and_straight_through_gradient() {
        let device = Device::flex();
        let xs = [-3.0, -1.25, -0.03125, 0.0, 0.5, 2.75];
        let x = tensor(&xs, [1, 6], &device);
        let quantized = values(activation_quantized(x.clone(), Activation::Gelu));
        let smooth = values(activation(x, Activation::Gelu));
        for ((&x, &q), &s) in xs.iter().zip(&quantized).zip(&smooth) {
            assert_eq!(q, gelu_table_value(x), "x = {x}");
            // The table's steps are 1/64 wide in x·1.702.
            assert!((q - s).abs() < 0.02 * x.abs().max(1.0), "x = {x}: table {q}, smooth {s}");
        }
        // The gradient (of the sum of the outputs) is the smooth form's
        // derivative, itself checked against central differences.
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let (input, shape) = random(3, 5, &mut rng);
        let tracked = tensor(&input, shape, &Device::flex().autodiff()).require_grad();
        let grads = activation_quantized(tracked.clone(), Activation::Gelu).sum().backward();
        let grad = values(tracked.grad(&grads).expect("input gets a gradient"));
        for (&v, &g) in input.iter().zip(&grad) {
            let (step, derivative) = (1e-6, gelu_sigmoid(v).1);
            let numeric = (gelu_sigmoid(v + step).0 - gelu_sigmoid(v - step).0) / (2.0 * step);
            assert!((derivative - numeric).abs() < 1e-8, "x = {v}: derivative {derivative}, numeric {numeric}");
            assert!((g - derivative).abs() < 1e-12, "x = {v}: gradient {g}, derivative {derivative}");
        }
    }
}
