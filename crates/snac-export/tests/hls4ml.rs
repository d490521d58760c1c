//! The export, checked by the real tools: qonnx's executor and hls4ml's C
//! simulation (g++) must reproduce our integer inference bit for bit.
//! Needs a Python with hls4ml, qonnx and onnx: `$SNAC_PYTHON` (.ci/run
//! installs one); skipped with a message otherwise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Aggregation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use snac_core::estimate::{Backend, Board, IoType, Strategy};
use snac_core::quantized::{LayerTypes, QuantTypes, QuantizedModel};
use snac_export::{ExportSettings, export};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<PathBuf> {
    match std::env::var_os("SNAC_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            snac_core::missing_test_dependency("$SNAC_PYTHON (a Python with hls4ml, qonnx and onnx) is not set");
            None
        }
    }
}

fn model(arch: &Arch, types: QuantTypes, seed: u64) -> QuantizedModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params: HashMap<(usize, String), Vec<f32>> = HashMap::new();
    let mut masks: HashMap<usize, Vec<bool>> = HashMap::new();
    for (index, (layer, input, output)) in arch.shapes().unwrap().into_iter().enumerate() {
        let mut add = |name: &str, n: usize, low: f32, high: f32| {
            params.insert((index, name.to_string()), (0..n).map(|_| rng.random_range(low..high)).collect());
        };
        match layer {
            Layer::Dense { units } => {
                // Per element of a set: the kernel is [features, units].
                let fan_in = input.rows_and_features().1;
                let limit = (3.0 / fan_in as f32).sqrt() * 2.0;
                add("kernel", fan_in * units, -limit, limit);
                add("bias", *units, -0.5, 0.5);
                masks.insert(index, (0..fan_in * units).map(|i| i % 3 != 0).collect());
            }
            Layer::Conv2d { filters, kernel, .. } => {
                let fan_in = kernel * kernel * input.rows_and_features().1;
                let limit = (3.0 / fan_in as f32).sqrt() * 2.0;
                add("kernel", fan_in * filters, -limit, limit);
                add("bias", *filters, -0.5, 0.5);
                masks.insert(index, (0..fan_in * filters).map(|i| i % 4 != 1).collect());
            }
            Layer::ConvAttention { hidden, .. } => {
                let channels = input.rows_and_features().1;
                for (name, inputs, outputs) in [
                    ("query", channels, *hidden),
                    ("key", channels, *hidden),
                    ("value", channels, *hidden),
                    ("output", *hidden, channels),
                ] {
                    let limit = (3.0 / inputs as f32).sqrt() * 2.0;
                    add(&format!("{name}_kernel"), inputs * outputs, -limit, limit);
                    add(&format!("{name}_bias"), outputs, -0.5, 0.5);
                }
            }
            Layer::BatchNorm => {
                // Per feature, or per channel of an image.
                let n = output.rows_and_features().1;
                add("gamma", n, 0.5, 2.0);
                add("beta", n, -0.5, 0.5);
                add("moving_mean", n, -1.0, 1.0);
                add("moving_variance", n, 0.2, 3.0);
            }
            _ => {}
        }
    }
    QuantizedModel::build(
        arch,
        &|i: usize, name: &str| params.get(&(i, name.to_string())).cloned(),
        &|i: usize| masks.get(&i).cloned(),
        types,
    )
    .unwrap()
}

fn every_activation() -> Arch {
    Arch::new(
        Shape::Flat(16),
        vec![
            Component::mlp("a", 12, Norm::Batch, Activation::Relu),
            Component::mlp("b", 10, Norm::None, Activation::Tanh),
            Component::mlp("c", 10, Norm::Batch, Activation::Sigmoid),
            Component::mlp("d", 8, Norm::None, Activation::LeakyRelu),
            Component::mlp("e", 8, Norm::None, Activation::Identity),
            Component::output("out", 5, Activation::Softmax),
        ],
    )
}

/// Exports `arch` with random parameters at `<total,int>` and checks
/// `samples` random inputs through `convert.py --verify` (io_parallel, Vitis).
fn verify(arch: &Arch, total: u32, int: u32, samples: usize) {
    verify_with(arch, total, int, samples, IoType::Parallel, Backend::Vitis);
}

/// [`verify`] with hls4ml's io type and backend.
fn verify_with(arch: &Arch, total: u32, int: u32, samples: usize, io_type: IoType, backend: Backend) {
    let types = QuantTypes::from_qkeras(total, int).unwrap();
    verify_types(arch, types, &format!("{total}_{int}"), samples, io_type, backend);
}

/// [`verify_with`] with any types (per-layer ones included), `label`
/// naming them in messages.
fn verify_types(arch: &Arch, types: QuantTypes, label: &str, samples: usize, io_type: IoType, backend: Backend) {
    let Some(python) = python() else { return };
    let model = model(arch, types.clone(), 7);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let top = types.input.max_value() as f32;
    let x: Vec<f32> = (0..samples * model.input_features).map(|_| rng.random_range(-top..top)).collect();
    let outputs = samples * model.output_features;
    let dir = tempfile::tempdir().unwrap();
    // SNAC_KEEP_EXPORT=DIR keeps the export for a look.
    let path = match std::env::var_os("SNAC_KEEP_EXPORT") {
        Some(keep) => PathBuf::from(keep).join(format!(
            "{}_{label}_{}_{}",
            arch.input_shape.dims().len(),
            io_type.name(),
            backend.name()
        )),
        None => dir.path().to_path_buf(),
    };
    let settings = ExportSettings {
        board: Board::by_name("zcu102").unwrap(),
        reuse_factor: 1,
        strategy: Strategy::Latency,
        io_type,
        backend,
        clock_period_ns: 5.0,
        hls_output_dir: PathBuf::from("hls_project"),
        project_name: "snac_model".into(),
    };
    export(&model, &x, &settings, &path).unwrap();
    let out = Command::new(&python).arg(path.join("convert.py")).arg("--verify").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{label} {} {}", io_type.name(), backend.name());
    assert!(out.status.success(), "{what}: verification failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    // hls4ml built the project with the exported settings.
    let project = format!("HLS project ({} backend, {}, clock 5.0 ns)", backend.name(), io_type.name());
    assert!(stdout.contains(&project), "{what}: {stdout}");
    let all = format!("{outputs} of {outputs} outputs bit-identical");
    assert!(stdout.contains(&format!("hls4ml C simulation: {all}")), "{stdout}");
    if snac_export::qonnx_is_exact(&model) {
        assert!(stdout.contains(&format!("qonnx executor: {all}")), "{stdout}");
    }
}

/// ReLU only (no BatchNorm, whose 16-bit constants overflow float32 sums), narrow types: qonnx's float32 executor must agree exactly too.
#[test]
fn relu_mlp_is_bit_exact_in_qonnx_and_hls4ml() {
    let arch = Arch::new(
        Shape::Flat(16),
        vec![
            Component::mlp("a", 12, Norm::None, Activation::Relu),
            Component::mlp("b", 8, Norm::None, Activation::Relu),
            Component::output("out", 5, Activation::Softmax),
        ],
    );
    let model = model(&arch, QuantTypes::from_qkeras(8, 3).unwrap(), 11);
    assert!(snac_export::qonnx_is_exact(&model));
    verify(&arch, 8, 3, 200);
}

/// The same MLP (io_parallel) under each backend: the Vivado and Vitis
/// backends share nnet_utils' arithmetic, but each writes its own project.
#[test]
fn mlp_with_every_activation_is_bit_exact_at_8_3_under_vitis() {
    verify_with(&every_activation(), 8, 3, 1000, IoType::Parallel, Backend::Vitis);
}

/// Per-layer precision: each layer's kernel, bias and output on its own
/// width and integer bits (2 to 9 bits), as local search's per-layer
/// search writes them.
fn per_layer_types(arch: &Arch, seed: u64) -> QuantTypes {
    use snac_core::fixed::{FixedPoint, Overflow, Rounding};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut types = QuantTypes::from_qkeras(8, 3).unwrap();
    for index in 0..arch.layers().count() {
        let mut fixed = |integers: std::ops::RangeInclusive<u32>| {
            let integer = rng.random_range(integers);
            let width = rng.random_range(2..=9u32).max(integer + 1);
            Some(FixedPoint::new(width, integer, true, Rounding::HalfEven, Overflow::Saturate).unwrap())
        };
        let layer = LayerTypes { index, weights: fixed(1..=2), biases: fixed(1..=2), result: fixed(2..=4) };
        types = types.with_layer(layer);
    }
    types
}

#[test]
fn per_layer_mlp_is_bit_exact() {
    let arch = every_activation();
    verify_types(&arch, per_layer_types(&arch, 5), "per_layer", 1000, IoType::Parallel, Backend::Vitis);
}

#[test]
fn per_layer_conv_model_is_bit_exact() {
    let arch = stream_model();
    verify_types(&arch, per_layer_types(&arch, 6), "per_layer", 300, IoType::Parallel, Backend::Vivado);
}

#[test]
fn mlp_with_every_activation_is_bit_exact_at_8_3_under_vivado() {
    verify_with(&every_activation(), 8, 3, 1000, IoType::Parallel, Backend::Vivado);
}

#[test]
fn mlp_with_every_activation_is_bit_exact_at_16_6() {
    verify(&every_activation(), 16, 6, 200);
}

/// A conv block (3×3 'valid' Conv2d + BatchNorm + ReLU, 1×1 Conv2d + tanh),
/// Flatten and a Dense head, pruned kernels: hls4ml's Conv2D (io_parallel)
/// after qonnx's channels-last conversion.
fn conv_model() -> Arch {
    Arch::new(
        Shape::Image { height: 6, width: 6, channels: 2 },
        vec![
            Component {
                name: "conv".into(),
                block_type: BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Valid },
                    Layer::BatchNorm,
                    Layer::Act(Activation::Relu),
                    Layer::Conv2d { filters: 3, kernel: 1, padding: Padding::Same },
                    Layer::Act(Activation::Tanh),
                ],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::mlp("head", 8, Norm::None, Activation::Relu),
            Component::output("out", 5, Activation::Softmax),
        ],
    )
}

#[test]
fn conv_model_is_bit_exact_at_8_3() {
    verify(&conv_model(), 8, 3, 1000);
}

#[test]
fn conv_model_is_bit_exact_at_16_6() {
    verify(&conv_model(), 16, 6, 1000);
}

/// Every layer in io_stream, where hls4ml passes a stream of pixels (all
/// channels of one position at a time): a 3×3 'valid' Conv2d + BatchNorm +
/// ReLU, a 2×2 'same' Conv2d (asymmetric padding, which hls4ml's io_stream
/// does with a ZeroPadding2D layer) + tanh, Flatten (in place on the
/// stream), a Dense + BatchNorm + sigmoid, a Dense + leaky ReLU and the
/// Dense output.
fn stream_model() -> Arch {
    Arch::new(
        Shape::Image { height: 6, width: 6, channels: 2 },
        vec![
            Component {
                name: "conv".into(),
                block_type: BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Valid },
                    Layer::BatchNorm,
                    Layer::Act(Activation::Relu),
                    Layer::Conv2d { filters: 3, kernel: 2, padding: Padding::Same },
                    Layer::Act(Activation::Tanh),
                ],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::mlp("head", 8, Norm::Batch, Activation::Sigmoid),
            Component::mlp("tail", 6, Norm::None, Activation::LeakyRelu),
            Component::output("out", 5, Activation::Softmax),
        ],
    )
}

#[test]
fn conv_model_streams_bit_exact_at_8_3() {
    verify_with(&stream_model(), 8, 3, 1000, IoType::Stream, Backend::Vitis);
}

/// Keras' 'same' padding for an even kernel is asymmetric (one more row and
/// column after than before); ONNX's `pads` and hls4ml's
/// `pad_top`/`pad_bottom` express it. A linear activation on an image (a
/// lone Quant), ReLU, narrow types: qonnx's float32 executor (onnxruntime's
/// Conv) must agree exactly too.
#[test]
fn even_kernel_same_padding_is_bit_exact_in_qonnx_and_hls4ml() {
    let arch = Arch::new(
        Shape::Image { height: 5, width: 4, channels: 3 },
        vec![
            Component {
                name: "conv".into(),
                block_type: BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 3, kernel: 2, padding: Padding::Same },
                    Layer::Act(Activation::Relu),
                    Layer::Conv2d { filters: 2, kernel: 4, padding: Padding::Same },
                    Layer::Act(Activation::Identity),
                ],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::output("out", 4, Activation::Softmax),
        ],
    );
    let model = model(&arch, QuantTypes::from_qkeras(8, 3).unwrap(), 7);
    assert!(snac_export::qonnx_is_exact(&model));
    verify(&arch, 8, 3, 250);
}

/// Convolutional self-attention on the input image (NHWC), ReLU, a Dense
/// head: 1×1 Convs, two Einsums, hls4ml's stable softmax configured as ours,
/// the residual Add.
fn attention_model() -> Arch {
    Arch::new(
        Shape::Image { height: 4, width: 4, channels: 2 },
        vec![
            Component {
                name: "b0".into(),
                block_type: BlockType::ConvAttn,
                layers: vec![Layer::ConvAttention { hidden: 3, scale: false }, Layer::Act(Activation::Relu)],
            },
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::output("out", 5, Activation::Softmax),
        ],
    )
}

/// DeepSets: phi (a Dense per element with BatchNorm and ReLU, then one
/// with tanh) on sets of 6 points of 3 features, a pooling over the
/// elements, rho and the output. 6 is not a power of two, so the mean's
/// constant 1/6 is rounded (hls4ml's depthwise Conv and our integer mean
/// multiply by the same 18-bit constant).
fn deepsets(mode: Aggregation) -> Arch {
    Arch::new(
        Shape::Set { elements: 6, features: 3 },
        vec![
            Component::mlp("phi_0", 8, Norm::Batch, Activation::Relu),
            Component::mlp("phi_1", 5, Norm::None, Activation::Tanh),
            Component { name: "pool".into(), block_type: BlockType::Flatten, layers: vec![Layer::Aggregate(mode)] },
            Component::mlp("rho", 8, Norm::None, Activation::Relu),
            Component::output("out", 4, Activation::Softmax),
        ],
    )
}

#[test]
fn attention_model_is_bit_exact_in_hls4ml_at_8_3() {
    verify(&attention_model(), 8, 3, 1000);
}

#[test]
fn attention_model_is_bit_exact_in_hls4ml_at_16_6() {
    verify(&attention_model(), 16, 6, 1000);
}

/// A Conv block, then scaled attention (hls4ml's `exp_scale`) on its NCHW
/// output, tanh, and a second attention block on that.
#[test]
fn conv_then_scaled_attention_is_bit_exact_in_hls4ml() {
    let attention = |name: &str, act| Component {
        name: name.into(),
        block_type: BlockType::ConvAttn,
        layers: vec![Layer::ConvAttention { hidden: 4, scale: true }, Layer::Act(act)],
    };
    let arch = Arch::new(
        Shape::Image { height: 5, width: 5, channels: 1 },
        vec![
            Component {
                name: "b0".into(),
                block_type: BlockType::Conv,
                layers: vec![
                    Layer::Conv2d { filters: 3, kernel: 2, padding: Padding::Valid },
                    Layer::Act(Activation::Relu),
                ],
            },
            attention("b1", Activation::Tanh),
            attention("b2", Activation::Identity),
            Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
            Component::mlp("head", 6, Norm::None, Activation::Relu),
            Component::output("out", 4, Activation::Softmax),
        ],
    );
    verify(&arch, 8, 3, 1000);
}

#[test]
fn deepsets_mean_is_bit_exact_at_8_3() {
    verify(&deepsets(Aggregation::Mean), 8, 3, 1000);
}

#[test]
fn deepsets_max_is_bit_exact_at_8_3() {
    verify(&deepsets(Aggregation::Max), 8, 3, 1000);
}

#[test]
fn deepsets_mean_is_bit_exact_at_16_6() {
    verify(&deepsets(Aggregation::Mean), 16, 6, 1000);
}

/// GELU (`x·σ(x·1.702)`; hls4ml has none) after a Dense accumulator and
/// after BatchNorm: hls4ml's ApplyAlpha, sigmoid table and Merge multiply.
fn gelu_mlp() -> Arch {
    Arch::new(
        Shape::Flat(10),
        vec![
            Component::mlp("a", 12, Norm::None, Activation::Gelu),
            Component::mlp("b", 8, Norm::Batch, Activation::Gelu),
            Component::output("out", 4, Activation::Softmax),
        ],
    )
}

#[test]
fn gelu_mlp_is_bit_exact_at_8_3() {
    verify(&gelu_mlp(), 8, 3, 1000);
}

#[test]
fn gelu_mlp_is_bit_exact_at_16_6() {
    verify(&gelu_mlp(), 16, 6, 1000);
}
