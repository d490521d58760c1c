//! Golden files for the export: a fixed small model's QONNX graph (as a
//! readable listing, decoded back from the written bytes) and its hls4ml
//! configuration. `SNAC_UPDATE_GOLDEN=1` rewrites them after a deliberate
//! change; review the diff.

use prost::Message;
use snac_core::arch::{Activation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use snac_core::estimate::{Backend, Board, IoType, Strategy};
use snac_core::quantized::{QuantTypes, QuantizedModel};
use snac_export::onnx::ModelProto;
use snac_export::{ExportSettings, export};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn fixed_model() -> QuantizedModel {
    let arch = Arch::new(
        Shape::Flat(3),
        vec![Component::mlp("h", 2, Norm::Batch, Activation::Tanh), Component::output("out", 2, Activation::Softmax)],
    );
    // Deterministic parameters: small fractions, no RNG.
    let params = |index: usize, name: &str| -> Option<Vec<f32>> {
        let n = match (index, name) {
            (0, "kernel") => 6,
            (3, "kernel") => 4,
            (1, _) | (_, "bias") => 2,
            _ => return None,
        };
        Some((0..n).map(|i| ((i as f32 + 1.0) * 0.37 + index as f32 * 0.11) % 1.5 - 0.6).collect())
    };
    let params = |index: usize, name: &str| match (index, name) {
        (1, "moving_variance") => Some(vec![0.5, 2.0]),
        _ => params(index, name),
    };
    QuantizedModel::build(&arch, &params, &|_| None, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap()
}

/// A 3×3×1 image, a 2×2 'same' Conv2d (padding 0 before, 1 after) with
/// BatchNorm and ReLU, Flatten, Dense head.
fn fixed_conv_model() -> QuantizedModel {
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
            Component::output("out", 2, Activation::Softmax),
        ],
    );
    let params = |index: usize, name: &str| -> Option<Vec<f32>> {
        let n = match (index, name) {
            (0, "kernel") => 8,
            (4, "kernel") => 36,
            (1, "moving_variance") => return Some(vec![0.5, 2.0]),
            (1, _) | (_, "bias") => 2,
            _ => return None,
        };
        Some((0..n).map(|i| ((i as f32 + 1.0) * 0.37 + index as f32 * 0.11) % 1.5 - 0.6).collect())
    };
    QuantizedModel::build(&arch, &params, &|_| None, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap()
}

fn listing(model: &ModelProto) -> String {
    let mut text = String::new();
    let graph = model.graph.as_ref().unwrap();
    let opsets: Vec<String> = model.opset_import.iter().map(|o| format!("{}:{}", o.domain, o.version)).collect();
    writeln!(text, "ir_version {} opsets {}", model.ir_version, opsets.join(" ")).unwrap();
    let dims = |value: &snac_export::onnx::ValueInfoProto| -> Vec<i64> {
        let shape = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
        shape.map(|s| s.dim.iter().map(|d| d.dim_value).collect()).unwrap_or_default()
    };
    for value in &graph.input {
        writeln!(text, "input {} {:?}", value.name, dims(value)).unwrap();
    }
    for value in &graph.output {
        writeln!(text, "output {} {:?}", value.name, dims(value)).unwrap();
    }
    for tensor in &graph.initializer {
        writeln!(text, "initializer {} {:?} {:?}", tensor.name, tensor.dims, tensor.float_data).unwrap();
    }
    for node in &graph.node {
        let attributes: Vec<String> = node
            .attribute
            .iter()
            .map(|a| match a.r#type {
                1 => format!("{}={:?}", a.name, a.f),
                2 => format!("{}={:?}", a.name, a.i),
                7 => format!("{}={:?}", a.name, a.ints),
                _ => format!("{}={}", a.name, String::from_utf8_lossy(&a.s)),
            })
            .collect();
        writeln!(
            text,
            "node {} {}{} ({}) -> {} [{}]",
            node.name,
            if node.domain.is_empty() { String::new() } else { format!("{}.", node.domain) },
            node.op_type,
            node.input.join(", "),
            node.output.join(", "),
            attributes.join(", ")
        )
        .unwrap();
    }
    text
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("SNAC_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with SNAC_UPDATE_GOLDEN=1 to create it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (SNAC_UPDATE_GOLDEN=1 rewrites it after a deliberate change)",
        path.display()
    );
}

fn settings(io_type: IoType, backend: Backend, clock_period_ns: f64) -> ExportSettings {
    ExportSettings {
        board: Board::by_name("pynq-z2").unwrap(),
        reuse_factor: 2,
        strategy: Strategy::Resource,
        io_type,
        backend,
        clock_period_ns,
        hls_output_dir: PathBuf::from("hls_project"),
        project_name: "snac_model".into(),
    }
}

/// Exports `model` and compares its graph listing, configuration and
/// expected outputs with `tests/golden/{prefix}*`.
fn check_export(model: &QuantizedModel, x: &[f32], prefix: &str, settings: &ExportSettings) {
    let dir = tempfile::tempdir().unwrap();
    export(model, x, settings, dir.path()).unwrap();
    let bytes = std::fs::read(dir.path().join("model.onnx")).unwrap();
    let decoded = ModelProto::decode(bytes.as_slice()).unwrap();
    check(&format!("{prefix}model.onnx.txt"), &listing(&decoded));
    check(
        &format!("{prefix}hls4ml_config.json"),
        &std::fs::read_to_string(dir.path().join("hls4ml_config.json")).unwrap(),
    );
    check(
        &format!("{prefix}tb_output_predictions.dat"),
        &std::fs::read_to_string(dir.path().join("tb_data/tb_output_predictions.dat")).unwrap(),
    );
}

#[test]
fn export_matches_the_golden_files() {
    let settings = settings(IoType::Parallel, Backend::Vitis, 5.0);
    check_export(&fixed_model(), &[0.5, -1.25, 3.0, 0.1, 0.2, -0.3], "", &settings);
}

#[test]
fn conv_export_matches_the_golden_files() {
    let x: Vec<f32> = (0..18).map(|i| (i as f32 * 0.7) % 3.0 - 1.4).collect();
    // The conv model streams, under Vivado, at another clock.
    check_export(&fixed_conv_model(), &x, "conv_", &settings(IoType::Stream, Backend::Vivado, 4.0));
}
