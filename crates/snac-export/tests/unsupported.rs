//! The layers once refused by the export: ConvAttention and DeepSets now
//! build checked graphs, and io_stream still refuses them (checked in
//! io_parallel only), naming the layer. LayerNorm, which has no fixed-point
//! form, is refused before the export (`tests/cli.rs`).

use snac_core::arch::{Activation, Aggregation, Arch, BlockType, Component, Layer, Norm, Shape};
use snac_core::estimate::IoType;
use snac_core::quantized::{QuantTypes, QuantizedModel};

/// `arch` with every parameter a small deterministic value.
fn model(arch: &Arch) -> QuantizedModel {
    let shapes = arch.shapes().unwrap();
    let sizes = |index: usize, name: &str| -> Option<usize> {
        let (layer, input, output) = &shapes[index];
        let features = input.rows_and_features().1;
        Some(match (layer, name) {
            (Layer::Dense { units }, "kernel") => features * units,
            (Layer::Dense { units }, "bias") => *units,
            (Layer::ConvAttention { hidden, .. }, "output_kernel") => hidden * features,
            (Layer::ConvAttention { .. }, "output_bias") => features,
            (Layer::ConvAttention { hidden, .. }, n) if n.ends_with("_kernel") => features * hidden,
            (Layer::ConvAttention { hidden, .. }, n) if n.ends_with("_bias") => *hidden,
            (Layer::BatchNorm, _) => output.rows_and_features().1,
            _ => return None,
        })
    };
    let params = |index: usize, name: &str| {
        let n = sizes(index, name)?;
        let base = if name == "moving_variance" { 1.0 } else { 0.0 };
        Some((0..n).map(|i| base + ((i as f32 + 1.0) * 0.37) % 1.0 - 0.5).collect())
    };
    QuantizedModel::build(arch, &params, &|_| None, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap()
}

#[test]
fn conv_attention_builds_a_checked_graph() {
    let arch = Arch::new(
        Shape::Image { height: 3, width: 3, channels: 2 },
        vec![
            Component {
                name: "attn".into(),
                block_type: BlockType::ConvAttn,
                layers: vec![Layer::ConvAttention { hidden: 2, scale: true }, Layer::Act(Activation::Relu)],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::output("out", 2, Activation::Softmax),
        ],
    );
    let graph = snac_export::qonnx::build(&model(&arch)).unwrap();
    snac_export::onnx::check(&graph.model).unwrap();
    let ops: Vec<&str> = graph.model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
    for op in ["Conv", "Einsum", "Softmax", "Reshape", "Add"] {
        assert!(ops.contains(&op), "{ops:?}");
    }
    // The softmax is configured as ours: one row per position.
    let softmax = &graph.precisions["att0_softmax"]["config"];
    assert_eq!((softmax["n_outer"].as_u64(), softmax["implementation"].as_str()), (Some(9), Some("stable")));
    assert_eq!(softmax["exp_scale"].as_f64(), Some(2896.0 / 4096.0));
    // io_stream takes only the layers checked in it: hls4ml's Einsum is
    // io_parallel only.
    let message = format!("{:#}", snac_export::check_io_type(&model(&arch), IoType::Stream).unwrap_err());
    assert!(
        message.contains("ConvAttention (layer 0)") && message.contains("io_stream") && message.contains("io_parallel"),
        "{message}"
    );
    snac_export::check_io_type(&model(&arch), IoType::Parallel).unwrap();
}

/// DeepSets are no longer refused: a Dense per element becomes a 1×1
/// `Conv`, max pooling a `MaxPool` and the mean a depthwise `Conv` with the
/// weights 1/N (`tests/hls4ml.rs` checks them against hls4ml).
#[test]
fn deep_sets_are_exported() {
    for (mode, pool_op) in [(Aggregation::Mean, "Conv"), (Aggregation::Max, "MaxPool")] {
        let arch = Arch::new(
            Shape::Set { elements: 4, features: 3 },
            vec![
                Component::mlp("phi", 5, Norm::None, Activation::Relu),
                Component { name: "pool".into(), block_type: BlockType::Mlp, layers: vec![Layer::Aggregate(mode)] },
                Component::output("out", 2, Activation::Softmax),
            ],
        );
        let graph = snac_export::qonnx::build(&model(&arch)).unwrap();
        snac_export::onnx::check(&graph.model).unwrap();
        let nodes = &graph.model.graph.as_ref().unwrap().node;
        let op = |name: &str| nodes.iter().find(|n| n.name == name).map(|n| n.op_type.clone());
        assert_eq!(op("dense0").as_deref(), Some("Conv"), "{mode:?}");
        assert_eq!(op("pool2").as_deref(), Some(pool_op), "{mode:?}");
        assert_eq!(op("dense3").as_deref(), Some("MatMul"), "{mode:?}");
        // Checked against hls4ml in io_parallel only.
        let message = format!("{:#}", snac_export::check_io_type(&model(&arch), IoType::Stream).unwrap_err());
        assert!(message.contains("io_stream") && message.contains("io_parallel"), "{message}");
    }
}

/// Per-layer types export to io_parallel (checked bit-exact in
/// tests/hls4ml.rs) but io_stream refuses them, saying why: hls4ml's
/// io_stream C simulation gave a BatchNorm's output the next layer's type.
#[test]
fn io_stream_refuses_per_layer_types() {
    let arch = Arch::new(
        Shape::Flat(6),
        vec![Component::mlp("a", 4, Norm::Batch, Activation::Relu), Component::output("out", 3, Activation::Softmax)],
    );
    let mut per_layer = model(&arch);
    let mut relu = snac_core::quantized::LayerTypes::new(2);
    relu.result = Some(snac_core::fixed::FixedPoint::from_qkeras(6, 1).unwrap());
    per_layer.types = per_layer.types.clone().with_layer(relu);
    let message = format!("{:#}", snac_export::check_io_type(&per_layer, IoType::Stream).unwrap_err());
    assert!(message.contains("per-layer precision") && message.contains("io_parallel"), "{message}");
    snac_export::check_io_type(&per_layer, IoType::Parallel).unwrap();
    snac_export::check_io_type(&model(&arch), IoType::Stream).unwrap();
}
