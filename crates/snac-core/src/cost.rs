//! Costs of an architecture: bit operations (BOPs) as SNAC-Pack counts them
//! (docs/snac-pack-compat.md §4, kept for comparability of the `bops`
//! column) and multiply-accumulate counts per layer. Every layer kind states
//! its cost, zero included, so a new kind must decide its own.

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

/// Bytes of memory training `arch` takes, roughly, with `batch` samples a
/// step: the f32 parameters with their gradients and Adam's two moments
/// (4 copies), and per sample every layer's output with its gradient (the
/// forward pass keeps outputs for the backward one), plus an attention
/// layer's position × position scores and their gradient. A size to refuse
/// a trial that cannot fit before it allocates, not a measurement.
pub fn training_memory_bytes(arch: &Arch, batch: usize) -> Result<u128> {
    const F32: u128 = 4;
    let params = arch.parameter_count()? as u128;
    let mut per_sample: u128 = arch.input_shape.numel() as u128;
    for (layer, input, output) in arch.shapes()? {
        per_sample += 2 * output.numel() as u128;
        // What a layer keeps beyond its output: the attention's scores.
        per_sample += match layer {
            Layer::ConvAttention { hidden, .. } => {
                let (positions, _) = input.rows_and_features();
                2 * (positions as u128).pow(2) + 4 * (positions * hidden) as u128
            }
            Layer::Dense { .. }
            | Layer::Conv2d { .. }
            | Layer::BatchNorm
            | Layer::LayerNorm
            | Layer::Act(_)
            | Layer::Flatten
            | Layer::Aggregate(_) => 0,
        };
    }
    Ok(F32 * (4 * params + batch as u128 * per_sample))
}

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
        // SNAC-Pack counts no BOPs for normalisation, activations or reshapes.
        (Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_), _) => 0.0,
    }
}

/// Total BOPs of an architecture.
pub fn bops(arch: &Arch, formula: BopsFormula, bits: f64) -> Result<f64> {
    Ok(arch.shapes()?.iter().map(|(layer, input, output)| layer_bops(layer, *input, *output, formula, bits)).sum())
}

/// Effective bit operations of a quantized, pruned model (HGQ's EBOPs in
/// spirit): every multiplication a forward pass of one sample performs,
/// each costing `weight_bits × activation_bits` (or `activation_bits²` for
/// the attention's activation × activation products). A kernel weight is
/// used once per row of a Dense layer (per element of a set) and once per
/// output position of a Conv2d or a ConvAttention projection; `nonzero[i]`
/// is layer `i`'s count of nonzero kernel weights (all its kernels
/// together; `None`: all of them).
pub fn effective_bops(arch: &Arch, nonzero: &[Option<usize>], weight_bits: f64, activation_bits: f64) -> Result<f64> {
    effective_bops_per_layer(arch, nonzero, &|_| (weight_bits, activation_bits))
}

/// [`effective_bops`] with each layer's own widths: `widths(index)` is arch
/// layer `index`'s (weight bits, input bits), asked for layers with kernels
/// (per-layer precision).
pub fn effective_bops_per_layer(
    arch: &Arch,
    nonzero: &[Option<usize>],
    widths: &dyn Fn(usize) -> (f64, f64),
) -> Result<f64> {
    let mut total = 0.0;
    for (index, (layer, input, output)) in arch.shapes()?.into_iter().enumerate() {
        let kept = |all: usize| nonzero.get(index).copied().flatten().unwrap_or(all) as f64;
        let (weight_bits, activation_bits) = match layer {
            Layer::Dense { .. } | Layer::Conv2d { .. } | Layer::ConvAttention { .. } => widths(index),
            Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_) => (0.0, 0.0),
        };
        let wa = weight_bits * activation_bits;
        total += match (layer, input, output) {
            (Layer::Dense { units }, input, _) => {
                let (rows, n_in) = input.rows_and_features();
                rows as f64 * kept(n_in * units) * wa
            }
            (Layer::Conv2d { kernel, filters, .. }, Shape::Image { channels, .. }, output) => {
                let positions = output.rows_and_features().0 as f64;
                positions * kept(kernel * kernel * channels * filters) * wa
            }
            (Layer::ConvAttention { hidden, .. }, Shape::Image { height, width, channels }, _) => {
                // The four projections' kernels (c·h weights each) count
                // once per position, as a 1×1 convolution's.
                let (seq, h) = ((height * width) as f64, *hidden as f64);
                seq * kept(4 * channels * hidden) * wa + 2.0 * seq * seq * h * activation_bits * activation_bits
            }
            // shapes() gives convolutions only images.
            (Layer::Conv2d { .. } | Layer::ConvAttention { .. }, Shape::Flat(_) | Shape::Set { .. }, _) => 0.0,
            // No multiplications by weights: free here.
            (Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_), _, _) => 0.0,
        };
    }
    Ok(total)
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
            // shapes() gives convolutions only images.
            (Layer::Conv2d { .. } | Layer::ConvAttention { .. }, Shape::Flat(_) | Shape::Set { .. }, _) => 0,
            // Not counted as multiply-accumulates.
            (Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_), _, _) => 0,
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Activation, Component, Norm, Padding};

    #[test]
    fn effective_bops_by_hand() {
        let image = Shape::Image { height: 6, width: 6, channels: 2 };
        let arch = Arch::new(
            image,
            vec![
                crate::arch::Component {
                    name: "b0".into(),
                    block_type: crate::arch::BlockType::Conv,
                    layers: vec![
                        Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Valid },
                        Layer::Act(Activation::Relu),
                        Layer::ConvAttention { hidden: 3, scale: false },
                        Layer::Flatten,
                    ],
                },
                Component::output("output", 10, Activation::Softmax),
            ],
        );
        let (w, a) = (8.0, 6.0);
        // Conv: 4×4 output positions, 3·3·2·4 = 72 weights of which 50 kept.
        let conv = 16.0 * 50.0 * w * a;
        // Attention on 4×4×4: q, k, v, output projections and two 16×16×3 products.
        let attention = 4.0 * 16.0 * 4.0 * 3.0 * w * a + 2.0 * 256.0 * 3.0 * a * a;
        let dense = 64.0 * 10.0 * w * a;
        let nonzero = [Some(50), None, None, None, None, None];
        assert_eq!(effective_bops(&arch, &nonzero, w, a).unwrap(), conv + attention + dense);
        // Pruned projections: 20 of the 4·4·3 = 48 weights kept, each used at 16 positions.
        let pruned = 16.0 * 20.0 * w * a + 2.0 * 256.0 * 3.0 * a * a;
        let nonzero = [Some(50), None, Some(20), None, None, None];
        assert_eq!(effective_bops(&arch, &nonzero, w, a).unwrap(), conv + pruned + dense);
        // A set: the Dense layer runs once per element.
        let set = Arch::new(
            Shape::Set { elements: 5, features: 3 },
            vec![
                Component::mlp("phi", 4, Norm::None, Activation::Relu),
                crate::arch::Component {
                    name: "pool".into(),
                    block_type: crate::arch::BlockType::Flatten,
                    layers: vec![Layer::Aggregate(crate::arch::Aggregation::Mean)],
                },
                Component::output("output", 2, Activation::Softmax),
            ],
        );
        assert_eq!(effective_bops(&set, &[], 1.0, 1.0).unwrap(), (5 * 3 * 4 + 4 * 2) as f64);
        assert_eq!(macs(&set).unwrap(), 5 * 3 * 4 + 4 * 2);
    }

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
