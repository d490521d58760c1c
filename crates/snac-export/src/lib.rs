//! snac-export: the hand-off to hls4ml. A [`QuantizedModel`] becomes a
//! directory with
//! - `model.onnx` in QONNX form (Quant nodes with power-of-two scales and
//!   zero-point 0 on the input, weights, biases and every activation;
//!   MatMul/Add, Conv, MaxPool, Einsum, Softmax, BatchNormalization, Flatten,
//!   Mul and activation nodes),
//! - `hls4ml_config.json`: the part, reuse factor, strategy, io type
//!   (`io_parallel` or `io_stream`), backend (Vivado or Vitis), clock period,
//!   and every layer's precision matching our fixed-point types,
//! - test vectors (`tb_data/tb_input_features.dat`,
//!   `tb_data/tb_output_predictions.dat`) computed by our integer inference,
//! - `convert.py`, which cleans the QONNX, converts it with hls4ml and
//!   writes the HLS project (optionally compiles it and checks it against the
//!   test vectors), and a README.
//!
//! ## io_stream
//!
//! Every model the search can build (Dense, Conv2d, BatchNorm, activations,
//! Flatten; our architectures have no pooling layer) exports in
//! `io_stream` too, with the same precisions and test vectors: hls4ml's
//! streaming layers compute what its parallel ones do (the same dense kernel
//! for Dense and Conv2D, the same BatchNorm product, the same tanh/sigmoid
//! table indexing), so our integer inference is the reference for both.
//! What changes is the plumbing, all hls4ml's own passes: each tensor is a
//! FIFO of words, one word per position holding its last axis (all channels
//! of a pixel; all features of a flat tensor, in one word); 'same' padding
//! becomes a `ZeroPadding2D` layer before the Conv2D (input precision, so
//! exact); Flatten is an in-place view of the conv stream (no FIFO of its
//! own). FIFO depths are left to hls4ml's default
//! (`StreamVariableConverter` in `hls4ml/backends/fpga/fpga_types.py`):
//! depth = the tensor's size over its last axis, i.e. H·W for an H×W×C image
//! and 1 for a flat tensor, enough for a whole tensor so no layer stalls.
//! hls4ml can shrink them afterwards from a co-simulation (its
//! `vivado:`/`vitis:fifo_depth_optimization` flow); the export does not.

pub mod onnx;
pub mod qonnx;

use anyhow::{Context, Result};
use serde_json::json;
use snac_core::estimate::{Backend, Board, IoType, Strategy};
use snac_core::quantized::QuantizedModel;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// hls4ml settings of the export.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    pub board: Board,
    pub reuse_factor: u32,
    pub strategy: Strategy,
    /// hls4ml's `IOType`: `io_parallel` (whole arrays) or `io_stream` (FIFOs
    /// between layers, FIFO depths left to hls4ml's default).
    pub io_type: IoType,
    /// hls4ml's backend: Vivado (Vivado HLS) or Vitis (Vitis HLS).
    pub backend: Backend,
    /// hls4ml's `ClockPeriod` in ns.
    pub clock_period_ns: f64,
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
    check_io_type(model, settings.io_type)?;
    onnx::check(&graph.model).context("the ONNX graph fails its check (nothing written)")?;
    anyhow::ensure!(
        x.len().is_multiple_of(model.input_features),
        "{} test input values are not whole samples of {} features",
        x.len(),
        model.input_features
    );
    anyhow::ensure!(
        settings.clock_period_ns.is_finite() && settings.clock_period_ns > 0.0,
        "the clock period must be a positive number of ns, not {}",
        settings.clock_period_ns
    );
    let document = json!({
        "part": settings.board.part,
        "board": settings.board.name,
        "clock_period_ns": settings.clock_period_ns,
        "io_type": settings.io_type.name(),
        "backend": settings.backend.name(),
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

/// Refuses a layer that has not been checked bit for bit against hls4ml's
/// C simulation in `io_type`. `io_stream` covers what `io_parallel` did when
/// it was added: Dense (of a vector), Conv2d, BatchNorm, the activations and
/// Flatten; a layer added to the export later streams once a test shows it.
pub fn check_io_type(model: &QuantizedModel, io_type: IoType) -> Result<()> {
    use snac_core::quantized::QLayer;
    if io_type == IoType::Parallel {
        return Ok(());
    }
    // Per-layer types failed our io_stream check: hls4ml's C simulation put
    // a Conv2d's BatchNorm output on the next activation's type.
    anyhow::ensure!(
        model.types.layers.is_empty(),
        "per-layer precision (types.layers) is not exact in hls4ml's {}: its C simulation gave a BatchNorm's \
         output the next layer's type; export with io_parallel (checked bit-exact)",
        io_type.name()
    );
    for layer in &model.layers {
        match layer {
            QLayer::Dense { rows: 1, .. } | QLayer::Conv2d { .. } | QLayer::BatchNorm { .. } => {}
            QLayer::Activation { function, .. } if *function != snac_core::arch::Activation::Gelu => {}
            QLayer::Dense { .. }
            | QLayer::ConvAttention { .. }
            | QLayer::Aggregate { .. }
            | QLayer::Activation { .. } => anyhow::bail!(
                "{}: not checked against hls4ml's {} C simulation (it covers Dense, Conv2d, BatchNorm, \
                 activations and Flatten); export with io_parallel",
                layer.describe(),
                io_type.name()
            ),
        }
    }
    Ok(())
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

/// The README's paragraph on `io_stream`.
const STREAM_README: &str = "`io_stream`: layers pass FIFOs of words, one word per position holding
its last axis (all channels of a pixel; a flat tensor is one word). The FIFO
depths are hls4ml's default, the tensor's size over its last axis (H·W for
an H×W×C image, 1 for a flat tensor), which holds a whole tensor; hls4ml's
`vivado:`/`vitis:fifo_depth_optimization` flow can shrink them after a
co-simulation. 'Same' padding becomes a ZeroPadding2D layer before its
Conv2D, and Flatten reads the conv stream in place. The arithmetic, and so
the test vectors, is the same as in `io_parallel`.

";

fn readme(model: &QuantizedModel, settings: &ExportSettings) -> String {
    format!(
        "# {name}: hand-off to hls4ml

Exported by snac-pack from a quantized, pruned model ({arch}).
Types: {types}.

| file | what |
|---|---|
| `model.onnx` | the model in QONNX: Quant nodes (power-of-two scale, zero-point 0) on the input, weights, biases and activations; an image input is `[1, H, W, C]` (channels last, as the test vectors), a set of N elements of F features `[1, N, 1, F]` |
| `hls4ml_config.json` | part `{part}`, reuse factor {reuse}, strategy {strategy:?}, `{io_type}`, backend {backend}, clock {clock} ns, and each layer's precision |
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

Attention blocks (ConvAttn) are 1×1 `Conv`s, two `Einsum`s and a `Softmax`
over the last axis. hls4ml 1.3's ONNX frontend has no `Einsum` handler, so
`convert.py` registers one (`hls4ml.converters.onnx_to_hls.register_onnx_layer_handler`)
that makes hls4ml's own `Einsum` layer (io_parallel, Latency strategy only).
The softmax is hls4ml's `stable` implementation with the table sizes and
types set per layer in `hls4ml_config.json`, which is exactly snac-pack's
fixed-point softmax.

{stream}`--verify` compares hls4ml's C simulation and qonnx's executor with
`tb_output_predictions.dat`; on a mismatch it names the first layer that
differs and exits with status 1. Then synthesise the project in `{out}` with
{tool} as usual (`hls_model.build()` in Python, or `{tool_cmd}` on the
project's `build_prj.tcl`).

The final softmax is left out: the outputs are the quantized logits (take
the arg-max).
",
        name = settings.project_name,
        arch = model.arch.summary(),
        types = model.types.describe(),
        part = settings.board.part,
        reuse = settings.reuse_factor,
        strategy = settings.strategy,
        out = settings.hls_output_dir.display(),
        io_type = settings.io_type.name(),
        backend = settings.backend.name(),
        clock = settings.clock_period_ns,
        stream = match settings.io_type {
            IoType::Parallel => "",
            IoType::Stream => STREAM_README,
        },
        tool = match settings.backend {
            Backend::Vivado => "Vivado HLS",
            Backend::Vitis => "Vitis HLS",
        },
        tool_cmd = match settings.backend {
            Backend::Vivado => "vivado_hls -f",
            Backend::Vitis => "vitis_hls -f",
        },
    )
}
