//! The export checks its ONNX graph (as `onnx.checker` with shape inference
//! would) and its model before writing, and writes nothing when either fails.

use snac_core::arch::{Activation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use snac_core::estimate::{Backend, Board, IoType, Strategy};
use snac_core::quantized::{QLayer, QuantTypes, QuantizedModel};
use snac_export::onnx::{self, ModelProto};
use snac_export::{ExportSettings, export, qonnx};

fn params(index: usize, name: &str, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 5 + index * 3 + name.len()) % 13) as f32 / 8.0 - 0.7).collect()
}

/// Conv2d, BatchNorm, ReLU, Flatten, Dense, tanh, Dense: every node kind.
fn conv_model() -> QuantizedModel {
    let arch = Arch::new(
        Shape::Image { height: 3, width: 3, channels: 1 },
        vec![
            Component {
                name: "conv".into(),
                block_type: BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 2, kernel: 2, padding: Padding::Same },
                    Layer::BatchNorm,
                    Layer::Act(Activation::Relu),
                ],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::mlp("h", 4, Norm::None, Activation::Tanh),
            Component::output("out", 2, Activation::Softmax),
        ],
    );
    let lookup = |index: usize, name: &str| -> Option<Vec<f32>> {
        let n = match (index, name) {
            (0, "kernel") => 8,
            (0, "bias") | (1, _) => 2,
            (4, "kernel") => 18 * 4,
            (4, "bias") => 4,
            (6, "kernel") => 8,
            (6, "bias") => 2,
            _ => return None,
        };
        let values = params(index, name, n);
        Some(if name == "moving_variance" { values.iter().map(|v| v.abs() + 0.5).collect() } else { values })
    };
    QuantizedModel::build(&arch, &lookup, &|_| None, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap()
}

fn graph() -> ModelProto {
    qonnx::build(&conv_model()).unwrap().model
}

fn check_error(change: impl FnOnce(&mut ModelProto)) -> String {
    let mut model = graph();
    change(&mut model);
    format!("{:#}", onnx::check(&model).expect_err("the changed graph must fail its check"))
}

fn settings() -> ExportSettings {
    ExportSettings {
        board: Board::by_name("pynq-z2").unwrap(),
        reuse_factor: 1,
        strategy: Strategy::Latency,
        io_type: IoType::Parallel,
        backend: Backend::Vitis,
        clock_period_ns: 5.0,
        hls_output_dir: "hls".into(),
        project_name: "snac_model".into(),
    }
}

#[test]
fn the_exported_graph_passes() {
    onnx::check(&graph()).unwrap();
    let ops: Vec<String> = graph().graph.unwrap().node.iter().map(|n| n.op_type.clone()).collect();
    for op in ["Quant", "Conv", "BatchNormalization", "Relu", "Transpose", "Flatten", "MatMul", "Add", "Tanh"] {
        assert!(ops.iter().any(|o| o == op), "{op} not in {ops:?}");
    }
}

#[test]
fn initializers_must_hold_their_shape() {
    let err = check_error(|m| {
        let tensor = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name == "dense4_W").unwrap();
        tensor.float_data.pop();
    });
    assert!(err.contains("dense4_W") && err.contains("71 values") && err.contains("72"), "{err}");
}

#[test]
fn node_shapes_must_fit() {
    let err = check_error(|m| {
        let tensor = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name == "dense4_W").unwrap();
        tensor.dims = vec![12, 6];
    });
    assert!(err.contains("node 'dense4' (MatMul)") && err.contains("[12, 6]") && err.contains("[1, 18]"), "{err}");
    let err = check_error(|m| {
        let tensor = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name == "bn1_scale").unwrap();
        tensor.dims = vec![3];
        tensor.float_data.push(1.0);
    });
    assert!(err.contains("node 'bn1' (BatchNormalization)") && err.contains("bn1_scale"), "{err}");
    let err = check_error(|m| m.graph.as_mut().unwrap().output[0] = onnx::float_value("global_out", &[1, 3]));
    assert!(err.contains("global_out") && err.contains("[1, 2]") && err.contains("[1, 3]"), "{err}");
    let err = check_error(|m| m.graph.as_mut().unwrap().node[5].input[0] = "nowhere".into());
    assert!(err.contains("'nowhere' is not defined"), "{err}");
}

#[test]
fn an_invalid_model_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut model = conv_model();
    let Some(QLayer::Activation { table: Some(table), .. }) =
        model.layers.iter_mut().find(|l| matches!(l, QLayer::Activation { table: Some(_), .. }))
    else {
        panic!("the model has a tanh table")
    };
    table.range = 0;
    let err = format!("{:#}", export(&model, &[0.5; 9], &settings(), &out).unwrap_err());
    assert!(err.contains("table.range: 0"), "{err}");
    assert!(!out.exists());
    // The same model unchanged exports.
    export(&conv_model(), &[0.5; 18], &settings(), &out).unwrap();
    assert!(out.join("tb_data/tb_output_predictions.dat").exists());
}
