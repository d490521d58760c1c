//! A [`QuantizedModel`] as a QONNX graph.
//!
//! Every fixed-point type `ap_fixed<W, I>` becomes a `Quant` node with scale
//! `2^−(W−I)`, zero-point 0, bit width `W`, signed, not narrow, rounding
//! `ROUND` (half to even: QKeras' and hls4ml's `AP_RND_CONV`), which hls4ml
//! turns back into exactly that type with `AP_SAT`. The layers:
//!
//! - input: `Quant` with the input type;
//! - Dense: `MatMul(x, Quant(W)) → Add(·, Quant(b))`;
//! - Conv2d: `Conv(x, Quant(W), Quant(b))` in ONNX's NCHW with the kernel as
//!   `[F, C, k, k]`, stride 1, explicit `pads` (Keras' `same` for an even
//!   kernel pads one more after than before, which ONNX and hls4ml both
//!   express); the image input is `[1, H, W, C]` and reaches the first `Conv`
//!   through a `Transpose` (see [`build`]);
//! - Flatten: `Transpose` back to NHWC, `Flatten`, then `Quant` onto the
//!   activation grid unless the tensor is already on it;
//! - BatchNorm: `BatchNormalization` with our folded constants as `scale`
//!   and `B`, mean 0, variance 1, epsilon 0 (so `x·scale + B` exactly), then
//!   `Quant` with the activation type;
//! - activations: `Relu`, `Tanh`, `Sigmoid`, `LeakyRelu` (alpha our
//!   fixed-point slope), then `Quant`; identity is the `Quant` alone; GELU
//!   (`x·σ(x·1.702)`, hls4ml has no GELU) is `Mul(x, Quant(1.702))`,
//!   `Sigmoid` and `Mul(x, ·)`, which hls4ml builds as ApplyAlpha, its
//!   sigmoid table and a Merge multiply, each product exact;
//! - sets (DeepSets): the input `[1, N, F]` is an image `[1, N, 1, F]` (N
//!   rows, one column, F channels), so that everything goes through the
//!   convolution path hls4ml handles; a Dense applied to each element is a
//!   1×1 `Conv` (hls4ml: PointwiseConv2D, the same kernel for every
//!   element); max pooling is `MaxPool` with an `N×1` kernel (hls4ml:
//!   MaxPooling2D); the mean is a depthwise `Conv` (`group` = F) with an
//!   `N×1` kernel whose weights are all our constant `1/N`
//!   ([`snac_core::quantized::mean_factor`]; hls4ml: DepthwiseConv2D), so the
//!   mean is `Σx · 1/N` in an exact accumulator, then `Quant`. Both poolings
//!   are followed by a `Transpose` back to channels last and `Flatten`.
//!   hls4ml 1.3 offers no other route: its ONNX `MatMul` on an `[N, F]` tensor
//!   miscounts the outputs (`n_out = N·units`), and its `GlobalAveragePool` /
//!   `GlobalMaxPool` read NCW shapes but index the data channels last, so
//!   after the Transpose ONNX needs they pool the wrong values.
//!
//! - ConvAttention (rows `[1, H·W, ·]`, channels last):
//!   `Conv` 1×1 for q, k, v (NCHW, each then `Quant`, `Transpose` to NHWC
//!   and `Reshape` to rows), `Einsum("bpc,bqc->bpq")` for the scores (exact
//!   type), `Softmax(axis=-1)`, `Quant`, `Einsum("bpq,bqc->bpc")` (exact),
//!   `Quant`, back to an NCHW image for the output `Conv` 1×1, `Quant`, rows
//!   again, the residual `Add` (exact) with the input rows, `Quant`, and a
//!   `Reshape` to `[1, H, W, C]`. Every `Transpose` meets its inverse after
//!   qonnx's channels-last conversion.
//!
//! ConvAttention and hls4ml 1.3 (paths under `hls4ml/`), what the mapping
//! relies on:
//! - the ONNX frontend has no handler for `Einsum`
//!   (`converters/onnx/*.py`), and its `MatMul` of two activation tensors
//!   stays a `MatMul` layer (`model/layers.py`: "only supported as an
//!   intermediate form that gets converted to a Dense layer"; the only
//!   conversion, `model/optimizer/passes/matmul_const_to_dense.py`, needs a
//!   constant second operand) for which no backend has a template. The
//!   backends do implement `Einsum` (`model/layers.py` `Einsum`,
//!   `backends/vivado/passes/einsum.py`, `templates/vivado/nnet_utils/
//!   nnet_einsum.h`: io_parallel and Latency strategy only; it accumulates
//!   in `accum_t`), which only the Keras v3 frontend creates. `convert.py`
//!   therefore registers an ONNX handler for `Einsum` with hls4ml's public
//!   `register_onnx_layer_handler` (the batch axis dropped from the
//!   equation) and sets the Einsums' `Strategy` to Latency;
//! - `MatMul` with a constant on a `[P, C]` tensor would be wrong: the pass
//!   above sets the Dense's `n_out` to `P·C_out`, which
//!   `multi_dense.py` (`ReplaceMultidimensionalDenseWithConv`) then takes as
//!   the filter count; the projections are therefore 1×1 `Conv`s;
//! - the ONNX `Softmax` handler (`converters/onnx/core.py`
//!   `parse_activation_layer`) keeps only `axis`; without `n_outer` the
//!   softmax would run over all `P·P` scores. hls4ml copies any per-layer
//!   configuration key onto the layer (`model/layers.py` `Layer.__init__`;
//!   keys ending in `_t` become types), so the configuration sets
//!   `n_outer = P`, `n_inner = 1` (`softmax_multidim` in
//!   `nnet_activation.h`), `implementation: stable`, both table sizes
//!   (which also keeps `backends/fpga/passes/fix_softmax_table_size.py` from
//!   resizing them), `exp_table_t`, `inv_table_t`, `inv_inp_t`, `accum_t`,
//!   `inp_norm_t` and `exp_scale` (`backends/vivado/passes/core_templates.py`
//!   `SoftmaxConfigTemplate`). Our softmax (`snac_core::quantized::softmax`)
//!   is `softmax_stable` with exactly those types and tables, so the C
//!   simulation matches our integer inference bit for bit (tests/hls4ml.rs).
//!   qonnx's executor computes a float softmax: it is not compared.
//!
//! The precisions hls4ml cannot read from Quant nodes (accumulators, the
//! outputs of nonlinearities before their Quant, BatchNorm constants, the
//! lookup tables) are listed per node name in [`Graph::precisions`], for the
//! hls4ml configuration.

use crate::onnx::{self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use anyhow::{Result, bail};
use prost::Message;
use serde_json::{Map, Value, json};
use snac_core::arch::{Activation, Aggregation, Layer, Shape};
use snac_core::fixed::{FixedPoint, Overflow, Rounding};
use snac_core::quantized::softmax::{self, SoftmaxTypes};
use snac_core::quantized::{ActivationTable, Codes, Projection, QLayer, QuantizedModel, mean_accumulator, mean_factor};

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

/// The graph as it is built, and where the data stands between two layers.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    precisions: Map<String, Value>,
    /// The name of the tensor the next layer reads.
    x: String,
    /// That tensor's layout.
    layout: Layout,
    /// That tensor's fixed-point type.
    current: FixedPoint,
}

/// `ap_fixed<W,I>` as hls4ml writes it (rounding and saturation only when
/// not the defaults).
fn hls_type(fixed: &FixedPoint) -> String {
    fixed.to_string()
}

impl Builder {
    /// `Reshape(x)` to `shape` (an int64 initializer `{name}_shape`).
    fn reshape(&mut self, name: &str, x: &str, shape: &[usize], output: &str) -> String {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.initializers.push(onnx::int64_tensor(&format!("{name}_shape"), &dims));
        self.node("Reshape", name, &[x, &format!("{name}_shape")], output, vec![]);
        output.to_string()
    }

    fn transpose(&mut self, name: &str, x: &str, perm: &[i64], output: &str) -> String {
        self.node("Transpose", name, &[x], output, vec![AttributeProto::ints("perm", perm)]);
        output.to_string()
    }

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

/// What the export covers, for the errors on the layers it refuses.
const COVERED: &str = "the export covers Dense (also per set element), Conv2d, ConvAttention, BatchNorm, Flatten, \
                       set pooling (mean, max) and pointwise activations; `search_space.exportable_only: true` keeps \
                       a search to the architectures it can hand to hls4ml";

/// A stride-1, ungrouped `Conv`'s attributes: kernel `[h, w]` and pads
/// `[top, left, bottom, right]`.
fn conv_attributes(kernel: [usize; 2], pads: [usize; 4]) -> Vec<AttributeProto> {
    let ints = |v: &[usize]| v.iter().map(|&n| n as i64).collect::<Vec<i64>>();
    vec![
        AttributeProto::ints("kernel_shape", &ints(&kernel)),
        AttributeProto::ints("pads", &ints(&pads)),
        AttributeProto::ints("strides", &[1, 1]),
        AttributeProto::ints("dilations", &[1, 1]),
        AttributeProto::int("group", 1),
    ]
}

/// The layout of the tensor between two layers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// `[1, features]`.
    Flat,
    /// `[1, H, W, C]`: an image input, as our test vectors hold it.
    Nhwc { height: usize, width: usize, channels: usize },
    /// `[1, C, H, W]`: ONNX's layout for `Conv` and `BatchNormalization`.
    Nchw { height: usize, width: usize, channels: usize },
}

impl Builder {
    /// `x` in NCHW (a `Transpose` when it is NHWC).
    fn transpose_to_nchw(&mut self, x: String, layout: Layout, index: usize) -> (String, Layout) {
        match layout {
            Layout::Nhwc { height, width, channels } => {
                let out = format!("nchw{index}");
                self.node(
                    "Transpose",
                    &format!("to_nchw{index}"),
                    &[&x],
                    &out,
                    vec![AttributeProto::ints("perm", &[0, 3, 1, 2])],
                );
                (out, Layout::Nchw { height, width, channels })
            }
            other @ (Layout::Flat | Layout::Nchw { .. }) => (x, other),
        }
    }
}

/// A Conv2d kernel `[k, k, C, F]` (ours, row-major) as ONNX's `[F, C, k, k]`.
fn onnx_conv_kernel(values: &[f64], k: usize, channels: usize, filters: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for dy in 0..k {
        for dx in 0..k {
            for c in 0..channels {
                for f in 0..filters {
                    out[((f * channels + c) * k + dy) * k + dx] =
                        values[((dy * k + dx) * channels + c) * filters + f] as f32;
                }
            }
        }
    }
    out
}

/// The QONNX graph of `model`.
///
/// Images: the graph input is `[1, H, W, C]` (channels last, as our test
/// vectors and `forward_int`); a `Transpose` turns it into ONNX's NCHW before
/// the first `Conv`, and another turns it back before `Flatten`, so the
/// flattened order is ours (row, column, channel). qonnx's
/// `ConvertToChannelsLastAndClean` (run by `convert.py`) cancels these
/// against the transposes it puts around each `Conv` and `BatchNormalization`,
/// leaving a channels-last graph without any `Transpose` for hls4ml.
pub fn build(model: &QuantizedModel) -> Result<Graph> {
    let (input_dims, layout) = match model.arch.input_shape {
        Shape::Image { height, width, channels } => {
            (vec![1, height, width, channels], Layout::Nhwc { height, width, channels })
        }
        // A set is an image of N rows, one column and F channels.
        Shape::Set { elements, features } => {
            (vec![1, elements, 1, features], Layout::Nhwc { height: elements, width: 1, channels: features })
        }
        Shape::Flat(_) => (vec![1, model.input_features], Layout::Flat),
    };
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
        precisions: Map::new(),
        x: String::new(),
        layout,
        current: model.types.input,
    };
    b.x = b.quant("quant_input", INPUT, &model.types.input, "x_in")?;
    let count = model.layers.len();
    let arch_layers: Vec<&Layer> = model.arch.layers().collect();
    // The bias of the Dense just before, while the next layer may fold it.
    let mut previous_bias: Option<&Codes> = None;
    for (position, layer) in model.layers.iter().enumerate() {
        let last = position + 1 == count;
        // A Dense on a set (per element) becomes a Conv, which keeps its own bias.
        let flat = b.layout == Layout::Flat;
        b.layer(layer, &arch_layers, previous_bias, last)?;
        previous_bias = match layer {
            QLayer::Dense { bias, .. } if flat => Some(bias),
            QLayer::Dense { .. }
            | QLayer::Conv2d { .. }
            | QLayer::ConvAttention { .. }
            | QLayer::Aggregate { .. }
            | QLayer::BatchNorm { .. }
            | QLayer::Activation { .. } => None,
        };
    }
    if count == 0 {
        bail!("the model has no layers to export");
    }
    if b.layout != Layout::Flat {
        bail!(
            "the model ends on an image ({:?}); the export expects a Flatten and a Dense head after the \
             convolutions",
            b.layout
        );
    }
    Ok(b.finish(model, &input_dims))
}

/// The name of a layer's output tensor: the graph output for the last layer.
fn output(last: bool, name: String) -> String {
    if last { OUTPUT.to_string() } else { name }
}

impl Builder {
    /// Adds the nodes of one layer: refuses the kinds hls4ml has no layer
    /// for, and hands every other kind to its own function.
    fn layer(
        &mut self,
        layer: &QLayer,
        arch_layers: &[&Layer],
        previous_bias: Option<&Codes>,
        last: bool,
    ) -> Result<()> {
        match layer {
            QLayer::ConvAttention { .. } => self.attention(layer, last),
            QLayer::Aggregate { .. } => self.aggregate(layer, last),
            QLayer::Dense { .. } if self.layout != Layout::Flat => self.dense_per_element(layer, last),
            QLayer::Conv2d { .. } => self.conv2d(layer, last),
            QLayer::Dense { .. } => self.dense(layer, last),
            QLayer::BatchNorm { index, scale, shift, result } => {
                self.batch_norm(*index, scale, shift, result, previous_bias, last)
            }
            QLayer::Activation { index, function: Activation::Identity, result, .. }
                if matches!(arch_layers.get(*index), Some(Layer::Flatten)) =>
            {
                self.flatten(*index, result, last)
            }
            QLayer::Activation { .. } => self.activation(layer, last),
        }
    }

    /// Conv2d: `Conv(x, Quant(W), Quant(b))` in NCHW.
    fn conv2d(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::Conv2d {
            index,
            height,
            width,
            channels,
            kernel_size: k,
            filters,
            out_height,
            out_width,
            padding,
            kernel,
            bias,
            accumulator,
            ..
        } = layer
        else {
            unreachable!("conv2d is only called with a Conv2d layer")
        };
        let x = std::mem::take(&mut self.x);
        let (input, nchw) = self.transpose_to_nchw(x, self.layout, *index);
        if nchw != (Layout::Nchw { height: *height, width: *width, channels: *channels }) {
            bail!("{}: expects a {height}×{width}×{channels} image, gets {nchw:?}", layer.describe());
        }
        let w_values = onnx_conv_kernel(&kernel.values(), *k, *channels, *filters);
        let w = self.constant(&format!("conv{index}_W"), &[*filters, *channels, *k, *k], w_values);
        let wq = self.quant(&format!("quant_conv{index}_W"), &w, &kernel.fixed, &format!("conv{index}_Wq"))?;
        let bv: Vec<f32> = bias.values().iter().map(|&v| v as f32).collect();
        let bb = self.constant(&format!("conv{index}_b"), &[*filters], bv);
        let bq = self.quant(&format!("quant_conv{index}_b"), &bb, &bias.fixed, &format!("conv{index}_bq"))?;
        let [(top, bottom), (left, right)] = *padding;
        let conv_out = output(last, format!("conv{index}_out"));
        self.node(
            "Conv",
            &format!("conv{index}"),
            &[&input, &wq, &bq],
            &conv_out,
            conv_attributes([*k, *k], [top, left, bottom, right]),
        );
        self.precision(
            &format!("conv{index}"),
            json!({"accum": hls_type(accumulator), "result": hls_type(accumulator)}),
        );
        self.x = conv_out;
        self.current = *accumulator;
        self.layout = Layout::Nchw { height: *out_height, width: *out_width, channels: *filters };
        Ok(())
    }

    /// ConvAttention (see the module docs): 1×1 `Conv`s for q, k, v and the
    /// output projection, `Einsum` for the scores and the weighted sum,
    /// `Softmax` over the last axis configured as our softmax, the residual
    /// `Add`; each result onto the activation grid with a `Quant`. The rows
    /// `[1, H·W, ·]` are channels last; the output is `[1, H, W, C]`.
    fn attention(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::ConvAttention { index, positions, channels, hidden, query, key, value, output: out, scale, result } =
            layer
        else {
            unreachable!("attention is only called with a ConvAttention layer")
        };
        let (index, positions, channels, hidden) = (*index, *positions, *channels, *hidden);
        let (height, width) = match self.layout {
            Layout::Nhwc { height, width, channels: c } | Layout::Nchw { height, width, channels: c }
                if c == channels && height * width == positions =>
            {
                (height, width)
            }
            other => {
                bail!("{}: expects an image of {positions} positions × {channels}, gets {other:?}", layer.describe())
            }
        };
        let name = |part: &str| format!("att{index}_{part}");
        let x = std::mem::take(&mut self.x);
        let input_type = self.current;
        // The input as rows for the residual, and in NCHW for the projections.
        let x_rows = match self.layout {
            Layout::Nhwc { .. } => self.reshape(&name("x_rows"), &x, &[1, positions, channels], &name("x_rows")),
            _ => {
                let nhwc = self.transpose(&name("x_nhwc"), &x, &[0, 2, 3, 1], &name("x_nhwc"));
                self.reshape(&name("x_rows"), &nhwc, &[1, positions, channels], &name("x_rows"))
            }
        };
        let (x_nchw, _) = self.transpose_to_nchw(x, self.layout, index);
        let signed = |width: u32, integer: u32| FixedPoint::ap_fixed(width, integer);
        // A 1×1 Conv projection onto the activation grid, as rows [1, H·W, out].
        let project = |b: &mut Builder, part: &str, input: &str, p: &Projection, inputs: usize, outputs: usize| {
            let kernel = p.kernel.values();
            let w: Vec<f32> = (0..outputs)
                .flat_map(|f| (0..inputs).map(move |c| (f, c)))
                .map(|(f, c)| kernel[c * outputs + f] as f32)
                .collect();
            let conv = name(part);
            let w = b.constant(&format!("{conv}_W"), &[outputs, inputs, 1, 1], w);
            let wq = b.quant(&format!("quant_{conv}_W"), &w, &p.kernel.fixed, &format!("{conv}_Wq"))?;
            let bias: Vec<f32> = p.bias.values().iter().map(|&v| v as f32).collect();
            let bb = b.constant(&format!("{conv}_b"), &[outputs], bias);
            let bq = b.quant(&format!("quant_{conv}_b"), &bb, &p.bias.fixed, &format!("{conv}_bq"))?;
            b.node("Conv", &conv, &[input, &wq, &bq], &format!("{conv}_out"), conv_attributes([1, 1], [0; 4]));
            b.precision(&conv, json!({"accum": hls_type(&p.accumulator), "result": hls_type(&p.accumulator)}));
            let q = b.quant(&format!("quant_{conv}"), &format!("{conv}_out"), result, &format!("{conv}_q"))?;
            let nhwc = b.transpose(&format!("{conv}_nhwc"), &q, &[0, 2, 3, 1], &format!("{conv}_nhwc"));
            Ok::<_, anyhow::Error>(b.reshape(
                &format!("{conv}_rows"),
                &nhwc,
                &[1, positions, outputs],
                &format!("{conv}_rows"),
            ))
        };
        let q = project(self, "q", &x_nchw, query, channels, hidden)?;
        let k = project(self, "k", &x_nchw, key, channels, hidden)?;
        let v = project(self, "v", &x_nchw, value, channels, hidden)?;
        // Scores: exact sums of `hidden` products of two activation codes.
        let log2 = |n: usize| n.max(1).next_power_of_two().trailing_zeros();
        let (aw, ai) = (result.width, result.integer);
        let scores_type = signed(2 * aw + log2(hidden), 2 * ai + log2(hidden))?;
        let scores = name("scores");
        self.node("Einsum", &scores, &[&q, &k], &scores, vec![AttributeProto::string("equation", "bpc,bqc->bpq")]);
        self.precision(
            &scores,
            json!({"accum": hls_type(&scores_type), "result": hls_type(&scores_type), "config": {"Strategy": "Latency"}}),
        );
        let weights = self.attention_softmax(&name("softmax"), &scores, positions, result, *scale, &name("weights"))?;
        // The weighted sum of the values: exact, then onto the grid.
        let attended_type = signed(2 * aw + log2(positions), 2 * ai + log2(positions))?;
        let attend = name("attend");
        self.node(
            "Einsum",
            &attend,
            &[&weights, &v],
            &attend,
            vec![AttributeProto::string("equation", "bpq,bqc->bpc")],
        );
        self.precision(
            &attend,
            json!({"accum": hls_type(&attended_type), "result": hls_type(&attended_type), "config": {"Strategy": "Latency"}}),
        );
        let attended = self.quant(&format!("quant_{attend}"), &attend, result, &name("attended"))?;
        let image =
            self.reshape(&name("attended_image"), &attended, &[1, height, width, hidden], &name("attended_image"));
        let nchw = self.transpose(&name("attended_nchw"), &image, &[0, 3, 1, 2], &name("attended_nchw"));
        let o = project(self, "o", &nchw, out, hidden, channels)?;
        // Residual: exact sum, then onto the grid.
        let frac = input_type.fractional_bits().max(result.fractional_bits());
        let integer = input_type.integer.max(ai) + 1;
        let sum_type = signed((integer as i32 + frac) as u32, integer)?;
        let residual = name("residual");
        self.node("Add", &residual, &[&x_rows, &o], &format!("{residual}_out"), vec![]);
        self.precision(&residual, json!({"result": hls_type(&sum_type)}));
        let summed = self.quant(&format!("quant_{residual}"), &format!("{residual}_out"), result, &name("sum"))?;
        self.x = self.reshape(&name("output"), &summed, &[1, height, width, channels], &output(last, name("output")));
        self.current = *result;
        self.layout = Layout::Nhwc { height, width, channels };
        Ok(())
    }

    /// The attention's softmax over the last axis: hls4ml's `stable`
    /// softmax configured with our softmax's tables and types (softmax.rs),
    /// one row per position, then onto the activation grid as `out`.
    fn attention_softmax(
        &mut self,
        node: &str,
        scores: &str,
        positions: usize,
        result: &FixedPoint,
        scale: Option<i64>,
        out: &str,
    ) -> Result<String> {
        let types = SoftmaxTypes::new(positions, 2 * result.fractional_bits());
        self.node("Softmax", node, &[scores], &format!("{node}_out"), vec![AttributeProto::int("axis", -1)]);
        self.precision(
            node,
            json!({
                "result": hls_type(&types.product),
                "config": {
                    "implementation": "stable",
                    "n_outer": positions,
                    "n_inner": 1,
                    "exp_table_size": types.exp_table_size,
                    "inv_table_size": types.inv_table_size,
                    "exp_table_t": hls_type(&types.exp_table),
                    "inv_table_t": hls_type(&types.inv_table),
                    "inv_inp_t": hls_type(&types.accum),
                    "accum_t": hls_type(&types.accum),
                    "inp_norm_t": hls_type(&types.norm),
                    "exp_scale": softmax::hls4ml_exp_scale(scale),
                },
            }),
        );
        self.quant(&format!("quant_{node}"), &format!("{node}_out"), result, out)
    }

    /// Dense applied to each element of a set (each pixel of an image): a
    /// 1×1 `Conv(x, Quant(W), Quant(b))` in NCHW, the exact accumulator.
    fn dense_per_element(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::Dense { index, inputs, outputs, kernel, bias, accumulator, .. } = layer else {
            unreachable!("dense_per_element is only called with a Dense layer")
        };
        let x = std::mem::take(&mut self.x);
        let (input, nchw) = self.transpose_to_nchw(x, self.layout, *index);
        let Layout::Nchw { height, width, channels } = nchw else {
            bail!("{}: expects a set or an image, gets {nchw:?}", layer.describe())
        };
        if channels != *inputs {
            bail!("{}: expects {inputs} features per element, gets {channels}", layer.describe());
        }
        let w_values = onnx_conv_kernel(&kernel.values(), 1, *inputs, *outputs);
        let w = self.constant(&format!("dense{index}_W"), &[*outputs, *inputs, 1, 1], w_values);
        let wq = self.quant(&format!("quant_dense{index}_W"), &w, &kernel.fixed, &format!("dense{index}_Wq"))?;
        let bv: Vec<f32> = bias.values().iter().map(|&v| v as f32).collect();
        let bb = self.constant(&format!("dense{index}_b"), &[*outputs], bv);
        let bq = self.quant(&format!("quant_dense{index}_b"), &bb, &bias.fixed, &format!("dense{index}_bq"))?;
        let out = output(last, format!("dense{index}_out"));
        self.node("Conv", &format!("dense{index}"), &[&input, &wq, &bq], &out, conv_attributes([1, 1], [0; 4]));
        self.precision(
            &format!("dense{index}"),
            json!({"accum": hls_type(accumulator), "result": hls_type(accumulator)}),
        );
        self.x = out;
        self.current = *accumulator;
        self.layout = Layout::Nchw { height, width, channels: *outputs };
        Ok(())
    }

    /// Pooling over the elements of a set (the N rows of an `N×1` image):
    /// `MaxPool` or the mean as a depthwise `Conv` with the weights `1/N`,
    /// `Quant` onto the result type, then back to channels last and
    /// `Flatten`.
    fn aggregate(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::Aggregate { index, elements, features, mode, result } = layer else {
            unreachable!("aggregate is only called with an Aggregate layer")
        };
        let (index, n, f) = (*index, *elements, *features);
        let x = std::mem::take(&mut self.x);
        let (input, nchw) = self.transpose_to_nchw(x, self.layout, index);
        if nchw != (Layout::Nchw { height: n, width: 1, channels: f }) {
            bail!("{}: expects a set of {n} elements of {f} features, gets {nchw:?}", layer.describe());
        }
        let ints = |v: &[usize]| v.iter().map(|&k| k as i64).collect::<Vec<i64>>();
        let window = vec![
            AttributeProto::ints("kernel_shape", &ints(&[n, 1])),
            AttributeProto::ints("pads", &[0, 0, 0, 0]),
            AttributeProto::ints("strides", &ints(&[n, 1])),
        ];
        let pooled = format!("pool{index}_out");
        let current = self.current;
        match mode {
            Aggregation::Max => {
                let name = format!("pool{index}");
                self.node("MaxPool", &name, &[&input], &pooled, window);
                // The maximum is one of the inputs: the input type holds it.
                self.precision(&name, json!({"accum": hls_type(&current), "result": hls_type(&current)}));
            }
            Aggregation::Mean => {
                let factor = mean_factor(n);
                let accumulator = mean_accumulator(current, n)?;
                let w = self.constant(&format!("pool{index}_W"), &[f, 1, n, 1], vec![factor.values()[0] as f32; f * n]);
                let wq = self.quant(&format!("quant_pool{index}_W"), &w, &factor.fixed, &format!("pool{index}_Wq"))?;
                let name = format!("pool{index}");
                let mut attributes = window;
                attributes.extend([AttributeProto::ints("dilations", &[1, 1]), AttributeProto::int("group", f as i64)]);
                self.node("Conv", &name, &[&input, &wq], &pooled, attributes);
                self.precision(&name, json!({"accum": hls_type(&accumulator), "result": hls_type(&accumulator)}));
            }
        }
        let q = self.quant(&format!("quant_pool{index}"), &pooled, result, &format!("pool{index}_q"))?;
        let nhwc = format!("pool{index}_nhwc");
        self.node(
            "Transpose",
            &format!("pool{index}_to_nhwc"),
            &[&q],
            &nhwc,
            vec![AttributeProto::ints("perm", &[0, 2, 3, 1])],
        );
        let flat = output(last, format!("pool{index}_flat"));
        self.node("Flatten", &format!("pool{index}_flatten"), &[&nhwc], &flat, vec![AttributeProto::int("axis", 1)]);
        self.x = flat;
        self.current = *result;
        self.layout = Layout::Flat;
        Ok(())
    }

    /// Dense on a vector: `MatMul(x, Quant(W)) → Add(·, Quant(b))`.
    fn dense(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::Dense { index, inputs, outputs, kernel, bias, accumulator, .. } = layer else {
            unreachable!("dense is only called with a Dense layer")
        };
        if self.layout != Layout::Flat {
            bail!("{}: its input is an image ({:?}); a Flatten must come first", layer.describe(), self.layout);
        }
        let w_values: Vec<f32> = kernel.values().iter().map(|&v| v as f32).collect();
        let w = self.constant(&format!("dense{index}_W"), &[*inputs, *outputs], w_values);
        let wq = self.quant(&format!("quant_dense{index}_W"), &w, &kernel.fixed, &format!("dense{index}_Wq"))?;
        let bv: Vec<f32> = bias.values().iter().map(|&v| v as f32).collect();
        let bb = self.constant(&format!("dense{index}_b"), &[*outputs], bv);
        let bq = self.quant(&format!("quant_dense{index}_b"), &bb, &bias.fixed, &format!("dense{index}_bq"))?;
        let mm = format!("dense{index}_matmul");
        let x = std::mem::take(&mut self.x);
        self.node("MatMul", &format!("dense{index}"), &[&x, &wq], &mm, vec![]);
        let sum = output(last, format!("dense{index}_out"));
        self.node("Add", &format!("dense{index}_bias"), &[&mm, &bq], &sum, vec![]);
        self.precision(
            &format!("dense{index}"),
            json!({"accum": hls_type(accumulator), "result": hls_type(accumulator)}),
        );
        self.x = sum;
        self.current = *accumulator;
        Ok(())
    }

    /// BatchNorm: `BatchNormalization` in NCHW with our folded constants,
    /// then `Quant` onto `result`.
    fn batch_norm(
        &mut self,
        index: usize,
        scale: &Codes,
        shift: &Codes,
        result: &FixedPoint,
        previous_bias: Option<&Codes>,
        last: bool,
    ) -> Result<()> {
        // Per channel: ONNX's BatchNormalization wants NCHW.
        let x = std::mem::take(&mut self.x);
        (self.x, self.layout) = self.transpose_to_nchw(x, self.layout, index);
        let n = scale.codes.len();
        let s = self.constant(&format!("bn{index}_scale"), &[n], scale.values().iter().map(|&v| v as f32).collect());
        let t = self.constant(&format!("bn{index}_bias"), &[n], shift.values().iter().map(|&v| v as f32).collect());
        let mean = self.constant(&format!("bn{index}_mean"), &[n], vec![0.0; n]);
        let var = self.constant(&format!("bn{index}_var"), &[n], vec![1.0; n]);
        let raw = format!("bn{index}_out");
        let x = self.x.clone();
        self.node(
            "BatchNormalization",
            &format!("bn{index}"),
            &[&x, &s, &t, &mean, &var],
            &raw,
            vec![AttributeProto::float("epsilon", 0.0)],
        );
        // hls4ml folds the bias of a preceding Dense (MatMul + Add)
        // into the BatchNorm (`b·scale + shift`): give that bias a
        // type holding it exactly. A Conv keeps its own bias.
        let bias_type = match previous_bias {
            Some(dense_bias) => exact_folded_bias(dense_bias, scale, shift)?,
            None => shift.fixed,
        };
        self.precision(&format!("bn{index}"), json!({"scale": hls_type(&scale.fixed), "bias": hls_type(&bias_type)}));
        self.x = self.quant(&format!("quant_bn{index}"), &raw, result, &output(last, format!("bn{index}_q")))?;
        self.current = *result;
        Ok(())
    }

    /// Flatten (an identity activation on a Flatten layer): back to channels
    /// last, `Flatten`, then `Quant` onto the activation grid unless the
    /// tensor is already on it.
    fn flatten(&mut self, index: usize, result: &FixedPoint, last: bool) -> Result<()> {
        // Flatten: back to channels last, so that the order is ours.
        if let Layout::Nchw { height, width, channels } = self.layout {
            let nhwc = format!("nhwc{index}");
            let x = std::mem::take(&mut self.x);
            self.node(
                "Transpose",
                &format!("to_nhwc{index}"),
                &[&x],
                &nhwc,
                vec![AttributeProto::ints("perm", &[0, 2, 3, 1])],
            );
            (self.x, self.layout) = (nhwc, Layout::Nhwc { height, width, channels });
        }
        if self.layout != Layout::Flat {
            let flat = format!("flatten{index}_out");
            let x = std::mem::take(&mut self.x);
            self.node("Flatten", &format!("flatten{index}"), &[&x], &flat, vec![AttributeProto::int("axis", 1)]);
            (self.x, self.layout) = (flat, Layout::Flat);
        }
        // Onto the activation grid; nothing to do when already there.
        if last || self.current != *result {
            let x = std::mem::take(&mut self.x);
            self.x =
                self.quant(&format!("quant_flatten{index}"), &x, result, &output(last, format!("flatten{index}_q")))?;
            self.current = *result;
        }
        Ok(())
    }

    /// A pointwise activation: its ONNX node (none for identity), then
    /// `Quant` onto `result`.
    fn activation(&mut self, layer: &QLayer, last: bool) -> Result<()> {
        let QLayer::Activation { index, function, result, slope, table } = layer else {
            unreachable!("activation is only called with an Activation layer")
        };
        // GELU reads the sigmoid table.
        let table_of = if *function == Activation::Gelu { Activation::Sigmoid } else { *function };
        check_table(layer, table_of, table.as_ref())?;
        let name = format!("act{index}_{}", format!("{function:?}").to_lowercase());
        let raw = format!("{name}_out");
        let x = std::mem::take(&mut self.x);
        let current = self.current;
        let applied = match function {
            Activation::Identity => x.clone(),
            Activation::Relu => {
                self.node("Relu", &name, &[&x], &raw, vec![]);
                self.precision(&name, json!({"result": hls_type(&current)}));
                raw
            }
            Activation::Tanh | Activation::Sigmoid => {
                let op = if *function == Activation::Tanh { "Tanh" } else { "Sigmoid" };
                self.node(op, &name, &[&x], &raw, vec![]);
                self.precision(
                    &name,
                    json!({"result": "ap_fixed<18,8>", "table": "ap_fixed<18,8>", "table_size": 1024}),
                );
                raw
            }
            Activation::LeakyRelu => {
                let Some(slope) = slope else { bail!("layer {index}: Leaky ReLU without its slope") };
                let alpha = slope.values()[0] as f32;
                self.node("LeakyRelu", &name, &[&x], &raw, vec![AttributeProto::float("alpha", alpha)]);
                // x·alpha exactly: the input's bits plus the slope's.
                let exact = FixedPoint::new(
                    (current.width + slope.fixed.width).min(snac_core::fixed::MAX_WIDTH),
                    current.integer + slope.fixed.integer,
                    true,
                    Rounding::Truncate,
                    Overflow::Wrap,
                )?;
                self.precision(&name, json!({"result": hls_type(&exact), "param": hls_type(&slope.fixed)}));
                raw
            }
            Activation::Gelu => {
                let (Some(scale), Some(table)) = (slope, table) else {
                    bail!("layer {index}: GELU without its scale and sigmoid table")
                };
                self.gelu(&name, &x, &current, scale, table)?
            }
            Activation::Softmax => {
                bail!("layer {index}: a softmax before the last layer cannot be exported; {COVERED}")
            }
        };
        self.x = self.quant(&format!("quant_{name}"), &applied, result, &output(last, format!("{name}_q")))?;
        self.current = *result;
        Ok(())
    }

    /// GELU, `x·σ(x·scale)`: `Mul(x, Quant(scale))` (hls4ml: ApplyAlpha),
    /// `Sigmoid` (hls4ml's table), `Mul` of the two (hls4ml: Merge
    /// multiply), each product in an exact type; returns the product's name.
    fn gelu(
        &mut self,
        name: &str,
        x: &str,
        current: &FixedPoint,
        scale: &Codes,
        table: &ActivationTable,
    ) -> Result<String> {
        let exact = |other: &FixedPoint| {
            FixedPoint::new(
                current.width + other.width,
                current.integer + other.integer,
                true,
                Rounding::Truncate,
                Overflow::Wrap,
            )
        };
        let c = self.constant(&format!("{name}_scale_c"), &[], vec![scale.values()[0] as f32]);
        let cq = self.quant(&format!("quant_{name}_scale_c"), &c, &scale.fixed, &format!("{name}_scale_cq"))?;
        let scaled = format!("{name}_scaled");
        self.node("Mul", &format!("{name}_scale"), &[x, &cq], &scaled, vec![]);
        self.precision(&format!("{name}_scale"), json!({"result": hls_type(&exact(&scale.fixed)?)}));
        let sigmoid = format!("{name}_sigmoid_out");
        self.node("Sigmoid", &format!("{name}_sigmoid"), &[&scaled], &sigmoid, vec![]);
        let table_type = hls_type(&table.table.fixed);
        self.precision(
            &format!("{name}_sigmoid"),
            json!({"result": table_type, "table": table_type, "table_size": table.table.codes.len()}),
        );
        let product = format!("{name}_out");
        self.node("Mul", name, &[x, &sigmoid], &product, vec![]);
        self.precision(name, json!({"result": hls_type(&exact(&table.table.fixed)?)}));
        Ok(product)
    }

    /// The ONNX model around the nodes built.
    fn finish(self, model: &QuantizedModel, input_dims: &[usize]) -> Graph {
        let graph = GraphProto {
            node: self.nodes,
            name: "snac_model".into(),
            initializer: self.initializers,
            input: vec![onnx::float_value(INPUT, input_dims)],
            output: vec![onnx::float_value(OUTPUT, &[1, model.output_features])],
        };
        let proto = ModelProto {
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
        Graph { model: proto, precisions: self.precisions }
    }
}

/// hls4ml builds its own table: the model's must be that one, or the test
/// vectors would not match the hardware.
fn check_table(layer: &QLayer, function: Activation, table: Option<&ActivationTable>) -> Result<()> {
    if let (Some(table), Some((hls4ml, _))) = (table, ActivationTable::cached(function))
        && table != hls4ml
    {
        let what = match table.table.codes.iter().zip(&hls4ml.table.codes).position(|(a, b)| a != b) {
            _ if table.range != hls4ml.range => format!("table.range is {}", table.range),
            _ if table.table.fixed != hls4ml.table.fixed => {
                format!("table.table.type is {}", table.table.fixed)
            }
            Some(i) => format!("table.table.codes[{i}] is {}", table.table.codes[i]),
            None => "table.table.codes differ in length".to_string(),
        };
        bail!(
            "{}: {what}, not hls4ml's {function:?} table (range {}, type {}, as local search writes it); \
             hls4ml computes its own table, so the exported test vectors would not match the hardware",
            layer.describe(),
            hls4ml.range,
            hls4ml.table.fixed
        );
    }
    Ok(())
}
