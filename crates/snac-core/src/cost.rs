//! Costs of an architecture: bit operations (BOPs) as SNAC-Pack counts them
//! (REFERENCE.md §4, kept for comparability of the `bops` column) and
//! multiply-accumulate counts per layer.

use crate::arch::{Arch, Layer, Shape};
use anyhow::Result;

/// Which of SNAC-Pack's two BOPs formulas applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BopsFormula {
    /// `model_type: mlp`: Dense `n_in·n_out·(b² + 2b) + n_out·log2(n_in)·b`.
    Mlp,
    /// `model_type: block`: Dense `n_in·n_out·b²`, Conv `c_out·s_out²·c_in·k²·b²`,
    /// ConvAttn `3·c·h·seq·b² + seq²·h·b² + h·c·seq·b²`.
    Block,
}

/// Bit width SNAC-Pack assumes during global search.
pub const GLOBAL_SEARCH_BITS: f64 = 32.0;

/// BOPs of one layer with input shape `input` and output shape `output`.
pub fn layer_bops(layer: &Layer, input: Shape, output: Shape, formula: BopsFormula, bits: f64) -> f64 {
    let b2 = bits * bits;
    match (layer, formula) {
        // A Dense layer on a set applies to each of its elements.
        (Layer::Dense { units }, BopsFormula::Mlp) => {
            let (rows, n_in) = input.rows_and_features();
            let n_out = *units as f64;
            let n_in = n_in as f64;
            rows as f64 * (n_in * n_out * (b2 + 2.0 * bits) + n_out * n_in.log2() * bits)
        }
        (Layer::Dense { units }, BopsFormula::Block) => {
            let (rows, n_in) = input.rows_and_features();
            (rows * n_in * units) as f64 * b2
        }
        (Layer::Conv2d { filters, kernel, .. }, _) => {
            let (Shape::Image { channels, .. }, Shape::Image { height, width, .. }) = (input, output) else {
                return 0.0;
            };
            (*filters * height * width * channels * kernel * kernel) as f64 * b2
        }
        (Layer::ConvAttention { hidden, .. }, _) => {
            let Shape::Image { height, width, channels } = input else { return 0.0 };
            let (c, h, seq) = (channels as f64, *hidden as f64, (height * width) as f64);
            3.0 * c * h * seq * b2 + seq * seq * h * b2 + h * c * seq * b2
        }
        _ => 0.0,
    }
}

/// Total BOPs of an architecture.
pub fn bops(arch: &Arch, formula: BopsFormula, bits: f64) -> Result<f64> {
    Ok(arch.shapes()?.iter().map(|(layer, input, output)| layer_bops(layer, *input, *output, formula, bits)).sum())
}

/// Multiply-accumulates of one forward pass of one sample.
pub fn macs(arch: &Arch) -> Result<u64> {
    let mut total = 0u64;
    for (layer, input, output) in arch.shapes()? {
        total += match (layer, input, output) {
            (Layer::Dense { units }, input, _) => {
                let (rows, n_in) = input.rows_and_features();
                (rows * n_in * units) as u64
            }
            (Layer::Conv2d { kernel, .. }, Shape::Image { channels, .. }, output) => {
                (output.numel() * kernel * kernel * channels) as u64
            }
            (Layer::ConvAttention { hidden, .. }, Shape::Image { height, width, channels }, _) => {
                let seq = height * width;
                (4 * seq * channels * hidden + 2 * seq * seq * hidden) as u64
            }
            _ => 0,
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Activation, Component, Norm, Padding};

    #[test]
    fn mlp_formula_by_hand() {
        // 64 -> 32 -> 10: two Dense layers.
        let arch = Arch::new(
            Shape::Flat(64),
            vec![
                Component::mlp("b0", 32, Norm::Batch, Activation::Relu),
                Component::output("output", 10, Activation::Softmax),
            ],
        );
        let b = 32.0;
        let first = 64.0 * 32.0 * (b * b + 2.0 * b) + 32.0 * 6.0 * b;
        let second = 32.0 * 10.0 * (b * b + 2.0 * b) + 10.0 * 5.0 * b;
        assert_eq!(bops(&arch, BopsFormula::Mlp, b).unwrap(), first + second);
        assert_eq!(bops(&arch, BopsFormula::Block, b).unwrap(), (64.0 * 32.0 + 32.0 * 10.0) * b * b);
        assert_eq!(macs(&arch).unwrap(), 64 * 32 + 32 * 10);
    }

    #[test]
    fn conv_and_attention_by_hand() {
        let image = Shape::Image { height: 8, width: 8, channels: 2 };
        let conv = Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Valid };
        let out = conv.output_shape(image).unwrap();
        // c_out · s_out² · c_in · k² · b², s_out = 6
        assert_eq!(layer_bops(&conv, image, out, BopsFormula::Block, 2.0), (4 * 36 * 2 * 9 * 4) as f64);
        let attn = Layer::ConvAttention { hidden: 3, scale: false };
        let (c, h, seq) = (2.0, 3.0, 64.0);
        let expected = (3.0 * c * h * seq + seq * seq * h + h * c * seq) * 4.0;
        assert_eq!(layer_bops(&attn, image, image, BopsFormula::Block, 2.0), expected);
    }
}
