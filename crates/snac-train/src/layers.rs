//! The tensor math of each supported layer kind, as free functions on burn
//! tensors, with Keras semantics (epsilons, biased variances, Glorot init).
//!
//! They are dtype-agnostic (f32 for training, f64 in the gradient checks) and
//! differentiable through burn's autodiff when their inputs are tracked.

use crate::fastmath::{self, Pointwise};
use burn::tensor::{DType, Tensor, TensorData, activation};
use snac_core::arch::Activation;
use snac_core::quantized::{ActivationTable, leaky_slope};

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
        Activation::Gelu => activation::gelu(x),
        Activation::Tanh => pointwise(x, Pointwise::Tanh),
        Activation::Sigmoid => pointwise(x, Pointwise::Sigmoid),
        Activation::Identity => x,
        Activation::Softmax => activation::softmax(x, 1),
    }
}

/// A pointwise activation as the quantized model computes it: `tanh` and
/// `sigmoid` take their values from hls4ml's lookup tables
/// ([`ActivationTable`]) with the real function's gradient, and Leaky ReLU
/// multiplies by its fixed-point slope. Others as [`activation`].
pub fn activation_quantized(x: Tensor<2>, act: Activation) -> Tensor<2> {
    match act {
        Activation::Tanh | Activation::Sigmoid => {
            let (table, entries) = ActivationTable::cached(act).expect("tanh and sigmoid have tables");
            let kind = if act == Activation::Tanh { Pointwise::Tanh } else { Pointwise::Sigmoid };
            pointwise_with(x, kind, Some(&|v: f64| entries[table.index_of_value(v)]))
        }
        Activation::LeakyRelu => activation::leaky_relu(x, leaky_slope().values()[0]),
        other => activation(x, other),
    }
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
    fn gelu_is_exact_and_leaky_slope_is_keras() {
        let device = Device::flex();
        let x = tensor(&[-1.5, 0.7], [1, 2], &device);
        let gelu = values(activation(x.clone(), Activation::Gelu));
        // x·Φ(x) with Φ from erf: Φ(-1.5) = 0.0668072, Φ(0.7) = 0.7580363.
        assert!((gelu[0] - -1.5 * 0.066_807_201).abs() < 1e-6, "{gelu:?}");
        assert!((gelu[1] - 0.7 * 0.758_036_348).abs() < 1e-6, "{gelu:?}");
        let leaky = values(activation(x, Activation::LeakyRelu));
        assert!((leaky[0] - -0.015).abs() < 1e-9 && (leaky[1] - 0.7).abs() < 1e-12, "{leaky:?}");
    }
}
