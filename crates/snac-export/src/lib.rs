//! snac-export: the hand-off to hls4ml. A [`QuantizedModel`] becomes a
//! directory with
//! - `model.onnx` in QONNX form (Quant nodes with power-of-two scales and
//!   zero-point 0 on the input, weights, biases and every activation;
//!   MatMul/Add, Conv, MaxPool, BatchNormalization, Flatten, Mul and activation
//!   nodes),
//! - `hls4ml_config.json`: the part, reuse factor, strategy, `io_parallel`,
//!   and every layer's precision matching our fixed-point types,
//! - test vectors (`tb_data/tb_input_features.dat`,
//!   `tb_data/tb_output_predictions.dat`) computed by our integer inference,
//! - `convert.py`, which cleans the QONNX, converts it with hls4ml and
//!   writes the HLS project (optionally compiles it and checks it against the
//!   test vectors), and a README.

pub mod onnx;
pub mod qonnx;

use anyhow::{Context, Result};
use serde_json::json;
use snac_core::estimate::{Board, Strategy};
use snac_core::quantized::QuantizedModel;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// hls4ml settings of the export.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    pub board: Board,
    pub reuse_factor: u32,
    pub strategy: Strategy,
    /// Where `convert.py` writes the HLS project (relative to the export dir
    /// unless absolute).
    pub hls_output_dir: PathBuf,
    /// Name of the top-level HLS function.
    pub project_name: String,
}

/// Files written by [`export`].
#[derive(Debug)]
pub struct Exported {
    pub onnx: PathBuf,
    pub config: PathBuf,
    pub script: PathBuf,
    pub inputs: PathBuf,
    pub outputs: PathBuf,
}

/// hls4ml's testbench format: one sample per line, values separated by spaces.
fn tb_lines(values: &[f64], per_line: usize) -> String {
    let mut text = String::new();
    for row in values.chunks_exact(per_line) {
        let line: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        let _ = writeln!(text, "{}", line.join(" "));
    }
    text
}

/// Writes the export directory for `model` with test inputs `x` (row-major).
/// The inputs are first put on the input grid, so the file holds exactly
/// the values the hardware sees.
///
/// Everything is computed and checked first (the model with
/// [`QuantizedModel::validate`], the ONNX graph with [`onnx::check`]): on
/// any error nothing is written, and a directory this call created is
/// removed again if a write fails.
pub fn export(model: &QuantizedModel, x: &[f32], settings: &ExportSettings, dir: &Path) -> Result<Exported> {
    model.validate().context("the model to export is invalid")?;
    let graph = qonnx::build(model)?;
    onnx::check(&graph.model).context("the ONNX graph fails its check (nothing written)")?;
    anyhow::ensure!(
        x.len().is_multiple_of(model.input_features),
        "{} test input values are not whole samples of {} features",
        x.len(),
        model.input_features
    );
    let document = json!({
        "part": settings.board.part,
        "board": settings.board.name,
        "clock_period_ns": 10,
        "io_type": "io_parallel",
        "backend": "Vitis",
        "project_name": settings.project_name,
        "output_dir": settings.hls_output_dir,
        "reuse_factor": settings.reuse_factor,
        "strategy": match settings.strategy { Strategy::Latency => "Latency", Strategy::Resource => "Resource" },
        "input_precision": model.types.input.to_string(),
        "layers": graph.precisions,
        "table_size": snac_core::quantized::TABLE_SIZE,
        "table_t": "ap_fixed<18,8>",
        "qonnx_exact": qonnx_is_exact(model),
    });
    let grid: Vec<f32> = x.iter().map(|&v| model.types.input.quantize(v as f64) as f32).collect();
    let outputs = model.predict(&grid)?;
    let grid64: Vec<f64> = grid.iter().map(|&v| v as f64).collect();
    let exported = Exported {
        onnx: dir.join("model.onnx"),
        config: dir.join("hls4ml_config.json"),
        script: dir.join("convert.py"),
        inputs: dir.join("tb_data/tb_input_features.dat"),
        outputs: dir.join("tb_data/tb_output_predictions.dat"),
    };
    let files: [(&Path, Vec<u8>); 6] = [
        (&exported.onnx, graph.model_bytes()),
        (&exported.config, serde_json::to_string_pretty(&document)?.into_bytes()),
        (&exported.inputs, tb_lines(&grid64, model.input_features).into_bytes()),
        (&exported.outputs, tb_lines(&outputs, model.output_features).into_bytes()),
        (&exported.script, CONVERT_PY.as_bytes().to_vec()),
        (&dir.join("README.md"), readme(model, settings).into_bytes()),
    ];
    let created = !dir.exists();
    let written = (|| {
        std::fs::create_dir_all(dir.join("tb_data")).with_context(|| format!("creating {}", dir.display()))?;
        for (path, bytes) in &files {
            snac_core::write_atomic(path, bytes)?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    if let Err(e) = written {
        if created {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    Ok(exported)
}

/// Whether qonnx's executor can reproduce the model exactly: it computes
/// `tanh` and `sigmoid` with the real functions (hls4ml uses tables) and
/// sums in `f32` (exact only up to 24 significant bits; a Conv2d's sums,
/// run by onnxruntime, like a Dense's, and a set mean's).
pub fn qonnx_is_exact(model: &QuantizedModel) -> bool {
    use snac_core::quantized::QLayer;
    let mut width = model.types.input.width;
    for layer in &model.layers {
        match layer {
            QLayer::Dense { accumulator, .. } | QLayer::Conv2d { accumulator, .. } => {
                if accumulator.width > 24 {
                    return false;
                }
                width = accumulator.width;
            }
            QLayer::BatchNorm { scale, shift, result, .. } => {
                if width + scale.fixed.width > 24 || shift.fixed.width > 24 {
                    return false;
                }
                width = result.width;
            }
            QLayer::Activation { table: Some(_), .. } => return false,
            QLayer::Activation { slope: Some(slope), result, .. } => {
                if width + slope.fixed.width > 24 {
                    return false;
                }
                width = result.width;
            }
            QLayer::Activation { result, .. } => width = result.width,
            // The mean sums products with the 18-bit constant 1/N (a
            // depthwise Conv); the maximum (MaxPool) is exact.
            QLayer::Aggregate { elements, mode, result, .. } => {
                let factor = snac_core::quantized::mean_factor(*elements).fixed.width;
                let sum = width + factor + usize::BITS - elements.leading_zeros();
                if *mode == snac_core::arch::Aggregation::Mean && sum > 24 {
                    return false;
                }
                width = result.width;
            }
            QLayer::ConvAttention { .. } => return false,
        }
    }
    true
}

/// The conversion script written into every export directory.
pub const CONVERT_PY: &str = include_str!("convert.py");

fn readme(model: &QuantizedModel, settings: &ExportSettings) -> String {
    format!(
        "# {name}: hand-off to hls4ml

Exported by snac-pack from a quantized, pruned model ({arch}).
Input type {input}, weights {weights}, activations {activations}.

| file | what |
|---|---|
| `model.onnx` | the model in QONNX: Quant nodes (power-of-two scale, zero-point 0) on the input, weights, biases and activations; an image input is `[1, H, W, C]` (channels last, as the test vectors), a set of N elements of F features `[1, N, 1, F]` |
| `hls4ml_config.json` | part `{part}`, reuse factor {reuse}, strategy {strategy:?}, `io_parallel`, and each layer's precision |
| `tb_data/tb_input_features.dat` | test inputs, one sample per line (already on the input grid) |
| `tb_data/tb_output_predictions.dat` | the expected outputs: snac-pack's integer inference, bit-exact |
| `convert.py` | cleans the QONNX, converts it with hls4ml, writes the HLS project |

## Use it without snac-pack

```sh
python3 -m venv venv && venv/bin/pip install hls4ml==1.3.0 qonnx==1.0.0 onnx
venv/bin/python convert.py                 # writes the HLS project to {out}
venv/bin/python convert.py --verify        # also compiles it (g++) and checks the test vectors bit for bit
```

For convolutional models `convert.py` first runs qonnx's channels-last
conversion (`ConvertToChannelsLastAndClean`), which hls4ml's QONNX frontend
needs for `Conv`; it leaves no `Transpose` in the graph.

`--verify` compares hls4ml's C simulation and qonnx's executor with
`tb_output_predictions.dat`; on a mismatch it names the first layer that
differs and exits with status 1. Then synthesise the project in `{out}` with
Vitis HLS as usual (`hls_model.build()` in Python, or `vitis_hls` on the
project's `build_prj.tcl`).

The final softmax is left out: the outputs are the quantized logits (take
the arg-max).
",
        name = settings.project_name,
        arch = model.arch.summary(),
        input = model.types.input,
        weights = model.types.weights,
        activations = model.types.activations,
        part = settings.board.part,
        reuse = settings.reuse_factor,
        strategy = settings.strategy,
        out = settings.hls_output_dir.display(),
    )
}
