//! Pointwise activations in the engine: values in place and the derivative
//! at each input, which is all the backward pass needs.

use crate::fastmath::{self, Pointwise};
use crate::layers::{gelu_sigmoid, gelu_table_value};
use snac_core::arch::Activation;
use snac_core::quantized::{ActivationTable, leaky_slope};

/// A pointwise activation on `x` in place; returns the derivatives.
fn activate(x: &mut [f32], act: Activation, quant: bool) -> Vec<f32> {
    let mut slopes = vec![0.0f32; x.len()];
    match act {
        Activation::Relu => {
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                *s = (*v > 0.0) as u8 as f32;
                *v = v.max(0.0);
            }
        }
        Activation::LeakyRelu => {
            let slope = if quant { leaky_slope().values()[0] as f32 } else { Activation::LEAKY_SLOPE };
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                // At 0 the slope is 1, as burn's `x < 0` mask has it.
                *s = if *v >= 0.0 { 1.0 } else { slope };
                *v *= *s;
            }
        }
        Activation::Identity | Activation::Softmax => slopes.fill(1.0),
        // x·σ(1.702·x); under `quant` the values are the integer model's
        // (its scale and the sigmoid table), the slopes the smooth form's.
        Activation::Gelu => {
            for (v, s) in x.iter_mut().zip(&mut slopes) {
                let input = *v as f64;
                let (value, slope) = gelu_sigmoid(input);
                *s = slope as f32;
                *v = if quant { gelu_table_value(input) } else { value } as f32;
            }
        }
        Activation::Tanh | Activation::Sigmoid => {
            let kind = if act == Activation::Tanh { Pointwise::Tanh } else { Pointwise::Sigmoid };
            let mut values = vec![0.0f32; x.len()];
            fastmath::evaluate(kind, x, &mut values, &mut slopes);
            if quant {
                let (table, entries) = ActivationTable::cached(act).expect("tanh and sigmoid have tables");
                for (v, &input) in values.iter_mut().zip(x.iter()) {
                    *v = entries[table.index_of_value(input as f64)] as f32;
                }
            }
            x.copy_from_slice(&values);
        }
    }
    slopes
}

/// `act` on `x` in place (its lookup tables and fixed-point slope under
/// `quant`); in training, returns the derivatives for the backward pass.
pub(super) fn forward(x: &mut [f32], act: Activation, training: bool, quant: bool) -> Option<Vec<f32>> {
    // Inference needs no slopes: ReLU, the commonest, then skips them.
    if !training && act == Activation::Relu {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
        None
    } else {
        let slopes = activate(x, act, quant);
        training.then_some(slopes)
    }
}

/// The input gradient in place of `grad`: times the saved derivatives.
pub(super) fn backward(mut grad: Vec<f32>, slopes: &[f32]) -> Vec<f32> {
    grad.iter_mut().zip(slopes).for_each(|(g, s)| *g *= s);
    grad
}
