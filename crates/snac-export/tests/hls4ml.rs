//! The export, checked by the real tools: qonnx's executor and hls4ml's C
//! simulation (g++) must reproduce our integer inference bit for bit.
//! Needs a Python with hls4ml, qonnx and onnx: `$SNAC_PYTHON` (.ci/run
//! installs one); skipped with a message otherwise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Arch, Component, Layer, Norm, Shape};
use snac_core::estimate::{Board, Strategy};
use snac_core::quantized::{QuantTypes, QuantizedModel};
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
                let limit = (3.0 / input.numel() as f32).sqrt() * 2.0;
                add("kernel", input.numel() * units, -limit, limit);
                add("bias", *units, -0.5, 0.5);
                masks.insert(index, (0..input.numel() * units).map(|i| i % 3 != 0).collect());
            }
            Layer::BatchNorm => {
                let n = output.numel();
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

fn verify(arch: &Arch, total: u32, int: u32) {
    let Some(python) = python() else { return };
    let types = QuantTypes::from_qkeras(total, int).unwrap();
    let model = model(arch, types, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let top = types.input.max_value() as f32;
    let x: Vec<f32> = (0..200 * model.input_features).map(|_| rng.random_range(-top..top)).collect();
    let dir = tempfile::tempdir().unwrap();
    // SNAC_KEEP_EXPORT=DIR keeps the export for a look.
    let path = match std::env::var_os("SNAC_KEEP_EXPORT") {
        Some(keep) => PathBuf::from(keep).join(format!("{total}_{int}")),
        None => dir.path().to_path_buf(),
    };
    let settings = ExportSettings {
        board: Board::by_name("zcu102").unwrap(),
        reuse_factor: 1,
        strategy: Strategy::Latency,
        hls_output_dir: PathBuf::from("hls_project"),
        project_name: "snac_model".into(),
    };
    export(&model, &x, &settings, &path).unwrap();
    let out = Command::new(&python).arg(path.join("convert.py")).arg("--verify").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "<{total},{int}>: verification failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("hls4ml C simulation: 1000 of 1000 outputs bit-identical"), "{stdout}");
    if snac_export::qonnx_is_exact(&model) {
        assert!(stdout.contains("qonnx executor: 1000 of 1000 outputs bit-identical"), "{stdout}");
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
    verify(&arch, 8, 3);
}

#[test]
fn mlp_with_every_activation_is_bit_exact_at_8_3() {
    verify(&every_activation(), 8, 3);
}

#[test]
fn mlp_with_every_activation_is_bit_exact_at_16_6() {
    verify(&every_activation(), 16, 6);
}
