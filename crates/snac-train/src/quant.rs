//! Quantization-aware training: which fixed-point types a network's weights,
//! biases and activations take ([`QuantSpec`]), and the fake quantizer that
//! rounds a tensor onto a grid in the forward pass while passing the
//! gradient straight through ([`fake_quantize`]).
//!
//! Where the trainer quantizes, when `TrainConfig::quant` is set:
//! - Dense kernels and biases, in every forward pass (the optimiser keeps
//!   float "shadow" weights and receives the straight-through gradient);
//! - the output of every activation layer (ReLU and identity included), of
//!   every BatchNorm and LayerNorm, and the logits (the final softmax stays
//!   fused in the loss), all with the activation type;
//! - the input, with the input type.
//!
//! In training mode BatchNorm uses batch statistics in float and its output
//! is put on the activation grid. In inference mode (validation, evaluation)
//! it is folded into `x·scale + shift` with fixed-point constants
//! ([`snac_core::quantized::fold_batch_norm`]). In both modes `tanh` and
//! `sigmoid` take their values from hls4ml's lookup tables (the gradient
//! stays the real function's) and Leaky ReLU's slope is its fixed-point
//! constant. So in inference mode the
//! quantized forward pass computes exactly what the integer model
//! ([`snac_core::quantized::QuantizedModel`]) computes, up to float rounding
//! in `f32` (none in `f64`).

use crate::prune::Masks;
use crate::weights::{ParamRole, Weights, role_of};
use anyhow::Result;
use burn::tensor::{DType, Tensor, TensorData};
use snac_core::fixed::FixedPoint;
use snac_core::quantized::QuantizedModel;

/// The fixed-point types of a quantized network: input, weights, biases,
/// activations (the same struct as the integer model's, so training and
/// deployment cannot disagree on them).
pub use snac_core::quantized::QuantTypes as QuantSpec;

/// `weights` with every kernel and bias (Dense, Conv2d, attention projections) on its grid: the values the
/// quantized forward pass uses (the trainer keeps float shadow weights).
/// Other tensors are unchanged.
pub fn quantize_weights(spec: &QuantSpec, weights: &Weights) -> Weights {
    let mut quantized = weights.clone();
    for layer in &mut quantized.layers {
        for tensor in &mut layer.tensors {
            spec.quantize_param(layer.index, role_of(&tensor.name), &mut tensor.values);
        }
    }
    quantized
}

/// The integer model of trained `weights` (with their pruning `masks`) at
/// `spec`: what local search hands on and `snac predict` runs.
pub fn quantized_model(
    arch: &snac_core::arch::Arch,
    weights: &Weights,
    masks: Option<&Masks>,
    spec: &QuantSpec,
) -> Result<QuantizedModel> {
    weights.check_fits(arch)?;
    let params =
        |index: usize, name: &str| weights.layers.get(index).and_then(|l| l.get(name).ok()).map(|t| t.values.clone());
    let masks = |index: usize| masks.and_then(|m| m.layers.get(index).cloned().flatten());
    QuantizedModel::build(arch, &params, &masks, spec.clone())
}

/// Puts a parameter of arch layer `layer` on the grid its role takes there:
/// kernels on the layer's weight type, biases on its bias type, others
/// unchanged.
pub(crate) trait QuantizeParam {
    fn quantize_param(&self, layer: usize, role: ParamRole, values: &mut [f32]);
}

impl QuantizeParam for QuantSpec {
    fn quantize_param(&self, layer: usize, role: ParamRole, values: &mut [f32]) {
        match role {
            ParamRole::Kernel => self.weights_at(layer).quantize_slice(values),
            ParamRole::Bias => self.biases_at(layer).quantize_slice(values),
            ParamRole::Other => {}
        }
    }
}

/// `x` rounded onto the grid of `fixed`, with the gradient of the identity
/// (the straight-through estimator). Written `q(x) + (x − detach(x))` rather
/// than `x + detach(q(x) − x)`: both have the gradient 1, but only the first
/// has exactly the value `q(x)` in floating point.
///
/// `q` is computed on the raw data outside the autodiff graph, as in
/// the `layers` module's pointwise activations. Works in f32 and f64.
pub fn fake_quantize(x: Tensor<2>, fixed: &FixedPoint) -> Tensor<2> {
    let device = x.device();
    let shape = x.dims();
    let dtype = x.dtype();
    let data = x.clone().into_data();
    let quantized = if dtype == DType::F32 {
        let mut values = data.try_into_vec::<f32>().expect("f32 tensor data");
        fixed.quantize_slice(&mut values);
        TensorData::new(values, shape)
    } else {
        let values: Vec<f64> = data.convert::<f64>().try_into_vec::<f64>().expect("float tensor data");
        TensorData::new(values.into_iter().map(|v| fixed.quantize(v)).collect::<Vec<f64>>(), shape)
    };
    let quantized = Tensor::from_data(quantized, (&device, dtype));
    if !x.is_autodiff() {
        return quantized;
    }
    quantized + (x.clone() - x.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn tensor(values: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), (device, DType::F64))
    }

    #[test]
    fn value_is_the_quantized_one_and_gradient_is_the_identity() {
        let fixed = FixedPoint::from_qkeras(4, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Values on both sides of the range, so saturation is exercised too:
        // the gradient is not clipped there either (QKeras' quantized_bits).
        let x: Vec<f64> = (0..24).map(|_| rng.random_range(-4.0..4.0)).collect();
        let weights: Vec<f64> = (0..24).map(|_| rng.random_range(-1.0..1.0)).collect();
        let device = Device::flex().autodiff();
        let input = tensor(&x, [4, 6], &device).require_grad();
        let output = fake_quantize(input.clone(), &fixed);
        let values = output.clone().inner().into_data().try_to_vec::<f64>().unwrap();
        let expected: Vec<f64> = x.iter().map(|&v| fixed.quantize(v)).collect();
        assert_eq!(values, expected);
        let grads = (output * tensor(&weights, [4, 6], &device)).sum().backward();
        let gradient = input.grad(&grads).unwrap().into_data().try_to_vec::<f64>().unwrap();
        assert_eq!(gradient, weights, "the straight-through gradient is exactly the upstream one");
    }

    #[test]
    fn f32_values_without_autodiff() {
        let fixed = FixedPoint::from_qkeras(8, 3).unwrap();
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.03125f32, 0.09375, 1.3, -100.0], [2, 2]), &device);
        let values = fake_quantize(x, &fixed).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values, vec![0.0, 0.125, 1.3125, -8.0]);
    }

    #[test]
    fn f32_autodiff_values_are_exact() {
        let fixed = FixedPoint::from_qkeras(6, 2).unwrap();
        let device = Device::flex().autodiff();
        let raw = vec![1000.0f32, -1000.0, 0.1, 3.9, -0.0625, 1e-9];
        let x = Tensor::<2>::from_data(TensorData::new(raw.clone(), [2, 3]), &device).require_grad();
        let values = fake_quantize(x, &fixed).inner().into_data().try_to_vec::<f32>().unwrap();
        let expected: Vec<f32> = raw.iter().map(|&v| fixed.quantize(v as f64) as f32).collect();
        assert_eq!(values, expected);
    }
}
