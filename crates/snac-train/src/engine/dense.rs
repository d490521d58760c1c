//! Dense layers in the engine: `x·W + b` forward, and the kernel, bias and
//! input gradients backward.

use super::Backprop;
use super::linalg::{column_sums, matmul, rows_of};

/// `x · kernel + bias`, `x` `[rows, inputs]` replaced by `[rows, outputs]`;
/// returns the input, which the backward pass needs.
pub(super) fn forward(x: &mut Vec<f32>, kernel: &[f32], bias: &[f32]) -> Vec<f32> {
    let outputs = bias.len();
    let inputs = kernel.len() / outputs;
    let rows = x.len() / inputs;
    let mut y = rows_of(bias, rows);
    matmul(rows, outputs, inputs, x, false, kernel, false, &mut y, true);
    std::mem::replace(x, y)
}

/// Gradients of the parameters at `kernel` and `bias` into `pass`; returns
/// the input gradient (empty for the first layer, whose is never used).
pub(super) fn backward(
    grad: Vec<f32>,
    input: &[f32],
    kernel: usize,
    bias: usize,
    first: bool,
    pass: &mut Backprop,
) -> Vec<f32> {
    let outputs = pass.params[bias].len();
    let inputs = pass.params[kernel].len() / outputs;
    let rows = input.len() / inputs;
    let mut dw = vec![0.0f32; inputs * outputs];
    matmul(inputs, outputs, rows, input, true, &grad, false, &mut dw, false);
    pass.gradients[kernel] = Some(dw);
    pass.gradients[bias] = Some(column_sums(&grad, outputs));
    if first {
        Vec::new()
    } else {
        let mut dx = vec![0.0f32; rows * inputs];
        matmul(rows, inputs, outputs, &grad, false, &pass.params[kernel], true, &mut dx, false);
        dx
    }
}
