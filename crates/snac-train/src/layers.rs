//! The tensor math of each supported layer kind, as free functions on burn
//! tensors, with Keras semantics (epsilons, biased variances, Glorot init).
//!
//! They are dtype-agnostic (f32 for training, f64 in the gradient checks) and
//! differentiable through burn's autodiff when their inputs are tracked.

use burn::tensor::{Tensor, activation};
use snac_core::arch::Activation;

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
        Activation::Tanh => activation::tanh(x),
        Activation::Sigmoid => activation::sigmoid(x),
        Activation::Identity => x,
        Activation::Softmax => activation::softmax(x, 1),
    }
}

/// Mean softmax cross-entropy of `logits` `[batch, classes]` against one-hot
/// targets of the same shape; a one-element tensor.
pub fn softmax_cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let batch = logits.dims()[0] as f64;
    (activation::log_softmax(logits, 1) * one_hot).sum().div_scalar(-batch)
}
