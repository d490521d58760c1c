//! A [`QuantizedModel`] as a QONNX graph.
//!
//! Every fixed-point type `ap_fixed<W, I>` becomes a `Quant` node with scale
//! `2^−(W−I)`, zero-point 0, bit width `W`, signed, not narrow, rounding
//! `ROUND` (half to even: QKeras' and hls4ml's `AP_RND_CONV`), which hls4ml
//! turns back into exactly that type with `AP_SAT`. The layers:
//!
//! - input: `Quant` with the input type;
//! - Dense: `MatMul(x, Quant(W)) → Add(·, Quant(b))`;
//! - BatchNorm: `BatchNormalization` with our folded constants as `scale`
//!   and `B`, mean 0, variance 1, epsilon 0 (so `x·scale + B` exactly), then
//!   `Quant` with the activation type;
//! - activations: `Relu`, `Tanh`, `Sigmoid`, `LeakyRelu` (alpha our
//!   fixed-point slope), then `Quant`; identity is the `Quant` alone.
//!
//! The precisions hls4ml cannot read from Quant nodes (accumulators, the
//! outputs of nonlinearities before their Quant, BatchNorm constants, the
//! lookup tables) are listed per node name in [`Graph::precisions`], for the
//! hls4ml configuration.

use crate::onnx::{self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use anyhow::{Result, bail};
use prost::Message;
use serde_json::{Map, Value, json};
use snac_core::arch::Activation;
use snac_core::fixed::{FixedPoint, Overflow, Rounding};
use snac_core::quantized::{Codes, QLayer, QuantizedModel};

/// QONNX's custom-op domain.
pub const QONNX_DOMAIN: &str = "qonnx.custom_op.general";
pub const INPUT: &str = "global_in";
pub const OUTPUT: &str = "global_out";

/// The graph and the precisions for hls4ml's configuration.
pub struct Graph {
    pub model: ModelProto,
    /// Per ONNX node name: `{"result": "ap_fixed<…>", "accum": …, …}`.
    pub precisions: Map<String, Value>,
}

impl Graph {
    pub fn model_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }
}

struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    precisions: Map<String, Value>,
}

/// `ap_fixed<W,I>` as hls4ml writes it (rounding and saturation only when
/// not the defaults).
fn hls_type(fixed: &FixedPoint) -> String {
    fixed.to_string()
}

impl Builder {
    fn constant(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> String {
        self.initializers.push(onnx::float_tensor(name, shape, values));
        name.to_string()
    }

    fn node(&mut self, op: &str, name: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            domain: if op == "Quant" { QONNX_DOMAIN.to_string() } else { String::new() },
            attribute: attributes,
        });
    }

    /// `Quant(input)` onto `fixed`; returns the output name.
    fn quant(&mut self, name: &str, input: &str, fixed: &FixedPoint, output: &str) -> Result<String> {
        if !fixed.signed || fixed.rounding != Rounding::HalfEven || fixed.overflow != Overflow::Saturate {
            bail!(
                "{name}: type {fixed} has no QONNX Quant form here (only signed types with round-half-to-even \
                 and saturation, as QKeras' quantized_bits)"
            );
        }
        let scale = self.constant(&format!("{name}_scale"), &[], vec![fixed.step() as f32]);
        let zero = self.constant(&format!("{name}_zeropt"), &[], vec![0.0]);
        let bits = self.constant(&format!("{name}_bitwidth"), &[], vec![fixed.width as f32]);
        self.node(
            "Quant",
            name,
            &[input, &scale, &zero, &bits],
            output,
            vec![
                AttributeProto::int("signed", 1),
                AttributeProto::int("narrow", 0),
                AttributeProto::string("rounding_mode", "ROUND"),
            ],
        );
        Ok(output.to_string())
    }

    fn precision(&mut self, name: &str, entries: Value) {
        self.precisions.insert(name.to_string(), entries);
    }
}

/// A type that holds `bias·scale + shift` exactly for every feature.
fn exact_folded_bias(bias: &Codes, scale: &Codes, shift: &Codes) -> Result<FixedPoint> {
    let frac = (bias.fixed.fractional_bits() + scale.fixed.fractional_bits()).max(shift.fixed.fractional_bits());
    let largest = bias
        .values()
        .iter()
        .zip(scale.values())
        .zip(shift.values())
        .fold(0.0f64, |m, ((b, s), t)| m.max((b * s + t).abs()));
    let integer = if largest > 0.0 { (largest.log2().floor() as i32 + 2).max(1) } else { 1 };
    let width = (integer + frac).max(1) as u32;
    FixedPoint::new(width, integer.max(0) as u32, true, Rounding::Truncate, Overflow::Wrap)
}

/// The QONNX graph of `model`.
pub fn build(model: &QuantizedModel) -> Result<Graph> {
    let mut b = Builder { nodes: Vec::new(), initializers: Vec::new(), precisions: Map::new() };
    let mut x = b.quant("quant_input", INPUT, &model.types.input, "x_in")?;
    let mut current = model.types.input;
    let count = model.layers.len();
    // The bias of the Dense just before, while the next layer may fold it.
    let mut previous_bias: Option<Codes> = None;
    for (position, layer) in model.layers.iter().enumerate() {
        let last = position + 1 == count;
        let dense_bias = match layer {
            QLayer::Dense { bias, .. } => Some(bias.clone()),
            _ => None,
        };
        let out = |s: String| if last { OUTPUT.to_string() } else { s };
        if let QLayer::Dense { rows: 2.., index, .. } = layer {
            bail!("layer {index}: DeepSets models (Dense per set element) are not exported to QONNX yet")
        }
        match layer {
            QLayer::Conv2d { .. } | QLayer::ConvAttention { .. } | QLayer::Aggregate { .. } => bail!(
                "{}: QONNX export covers Dense, BatchNorm and activation layers so far; convolutional, attention \
                 and DeepSets models are not exported yet",
                layer.describe()
            ),
            QLayer::Dense { index, inputs, outputs, kernel, bias, accumulator, .. } => {
                let w_values: Vec<f32> = kernel.values().iter().map(|&v| v as f32).collect();
                let w = b.constant(&format!("dense{index}_W"), &[*inputs, *outputs], w_values);
                let wq = b.quant(&format!("quant_dense{index}_W"), &w, &kernel.fixed, &format!("dense{index}_Wq"))?;
                let bv: Vec<f32> = bias.values().iter().map(|&v| v as f32).collect();
                let bb = b.constant(&format!("dense{index}_b"), &[*outputs], bv);
                let bq = b.quant(&format!("quant_dense{index}_b"), &bb, &bias.fixed, &format!("dense{index}_bq"))?;
                let mm = format!("dense{index}_matmul");
                b.node("MatMul", &format!("dense{index}"), &[&x, &wq], &mm, vec![]);
                let sum = out(format!("dense{index}_out"));
                b.node("Add", &format!("dense{index}_bias"), &[&mm, &bq], &sum, vec![]);
                b.precision(
                    &format!("dense{index}"),
                    json!({"accum": hls_type(accumulator), "result": hls_type(accumulator)}),
                );
                x = sum;
                current = *accumulator;
            }
            QLayer::BatchNorm { index, scale, shift, result } => {
                let n = scale.codes.len();
                let s =
                    b.constant(&format!("bn{index}_scale"), &[n], scale.values().iter().map(|&v| v as f32).collect());
                let t =
                    b.constant(&format!("bn{index}_bias"), &[n], shift.values().iter().map(|&v| v as f32).collect());
                let mean = b.constant(&format!("bn{index}_mean"), &[n], vec![0.0; n]);
                let var = b.constant(&format!("bn{index}_var"), &[n], vec![1.0; n]);
                let raw = format!("bn{index}_out");
                b.node(
                    "BatchNormalization",
                    &format!("bn{index}"),
                    &[&x, &s, &t, &mean, &var],
                    &raw,
                    vec![AttributeProto::float("epsilon", 0.0)],
                );
                // hls4ml folds the preceding Dense's bias into the BatchNorm
                // (`b·scale + shift`): give that bias a type holding it exactly.
                let bias_type = match &previous_bias {
                    Some(dense_bias) => exact_folded_bias(dense_bias, scale, shift)?,
                    None => shift.fixed,
                };
                b.precision(
                    &format!("bn{index}"),
                    json!({"scale": hls_type(&scale.fixed), "bias": hls_type(&bias_type)}),
                );
                x = b.quant(&format!("quant_bn{index}"), &raw, result, &out(format!("bn{index}_q")))?;
                current = *result;
            }
            QLayer::Activation { index, function, result, slope, .. } => {
                let name = format!("act{index}_{}", format!("{function:?}").to_lowercase());
                let raw = format!("{name}_out");
                let applied = match function {
                    Activation::Identity => x.clone(),
                    Activation::Relu => {
                        b.node("Relu", &name, &[&x], &raw, vec![]);
                        b.precision(&name, json!({"result": hls_type(&current)}));
                        raw
                    }
                    Activation::Tanh | Activation::Sigmoid => {
                        let op = if *function == Activation::Tanh { "Tanh" } else { "Sigmoid" };
                        b.node(op, &name, &[&x], &raw, vec![]);
                        b.precision(
                            &name,
                            json!({"result": "ap_fixed<18,8>", "table": "ap_fixed<18,8>", "table_size": 1024}),
                        );
                        raw
                    }
                    Activation::LeakyRelu => {
                        let Some(slope) = slope else { bail!("layer {index}: Leaky ReLU without its slope") };
                        let alpha = slope.values()[0] as f32;
                        b.node("LeakyRelu", &name, &[&x], &raw, vec![AttributeProto::float("alpha", alpha)]);
                        // x·alpha exactly: the input's bits plus the slope's.
                        let exact = FixedPoint::new(
                            (current.width + slope.fixed.width).min(snac_core::fixed::MAX_WIDTH),
                            current.integer + slope.fixed.integer,
                            true,
                            Rounding::Truncate,
                            Overflow::Wrap,
                        )?;
                        b.precision(&name, json!({"result": hls_type(&exact), "param": hls_type(&slope.fixed)}));
                        raw
                    }
                    other => bail!("layer {index}: activation {other:?} cannot be exported"),
                };
                x = b.quant(&format!("quant_{name}"), &applied, result, &out(format!("{name}_q")))?;
                current = *result;
            }
        }
        previous_bias = dense_bias;
    }
    if count == 0 {
        bail!("the model has no layers to export");
    }
    let graph = GraphProto {
        node: b.nodes,
        name: "snac_model".into(),
        initializer: b.initializers,
        input: vec![onnx::float_value(INPUT, &[1, model.input_features])],
        output: vec![onnx::float_value(OUTPUT, &[1, model.output_features])],
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 13 },
            OperatorSetIdProto { domain: QONNX_DOMAIN.into(), version: 1 },
        ],
        producer_name: "snac-pack".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} ({})", model.arch.summary(), model.types.weights),
        graph: Some(graph),
    };
    Ok(Graph { model, precisions: b.precisions })
}
