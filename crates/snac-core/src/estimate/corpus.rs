//! The calibration corpus: real hls4ml synthesis results, each with its
//! model, settings and source (`testdata/corpus/*.json`, format in
//! `testdata/corpus/SCHEMA.md`). It is embedded, so `snac estimate
//! --validate` and `--calibrate` work from any install.

use super::ops::{Accum, ActKind, DenseOp, Op};
use super::{Backend, Board, HlsSettings, IoType, Report, Strategy};
use crate::arch::{Activation, Arch, BlockType, Component, Layer, Shape};
use crate::fixed::FixedPoint;
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

/// Every corpus file: its name and text.
pub const FILES: &[(&str, &str)] = &[
    ("github_Alezander9_ML_FPGAonPixel.json", include_str!("testdata/corpus/github_Alezander9_ML_FPGAonPixel.json")),
    (
        "github_ArgyKokk_hls4ml_MLP_estimator.json",
        include_str!("testdata/corpus/github_ArgyKokk_hls4ml_MLP_estimator.json"),
    ),
    ("github_Brainz22_L1JetTagger.json", include_str!("testdata/corpus/github_Brainz22_L1JetTagger.json")),
    (
        "github_CestMerNeil_FPGA_Accelerator4NN_Inference.json",
        include_str!("testdata/corpus/github_CestMerNeil_FPGA_Accelerator4NN_Inference.json"),
    ),
    (
        "github_SpAllen0726_HG-DREAM-Pulse-Detection-Project.json",
        include_str!("testdata/corpus/github_SpAllen0726_HG-DREAM-Pulse-Detection-Project.json"),
    ),
    ("github_Thifjj_Iris_hls4ml_pynqZ2.json", include_str!("testdata/corpus/github_Thifjj_Iris_hls4ml_pynqZ2.json")),
    (
        "github_abdennour-GUESSOUM_Lenet5-hls4ml.json",
        include_str!("testdata/corpus/github_abdennour-GUESSOUM_Lenet5-hls4ml.json"),
    ),
    (
        "github_alex-yang-upenn_vitis_accel_backend_test.json",
        include_str!("testdata/corpus/github_alex-yang-upenn_vitis_accel_backend_test.json"),
    ),
    (
        "github_mgrailoo_HLS4ML_CPP_HDL_MNIST_.json",
        include_str!("testdata/corpus/github_mgrailoo_HLS4ML_CPP_HDL_MNIST_.json"),
    ),
    (
        "github_mgrailoo_HLS4ML_Poisioned_CPP_HDL_8b_SVHN.json",
        include_str!("testdata/corpus/github_mgrailoo_HLS4ML_Poisioned_CPP_HDL_8b_SVHN.json"),
    ),
    (
        "github_mgrailoo_HLS4ML_Poisioned_CPP_HDL_9b_FashionMNIST.json",
        include_str!("testdata/corpus/github_mgrailoo_HLS4ML_Poisioned_CPP_HDL_9b_FashionMNIST.json"),
    ),
    (
        "github_nicologhielmetti_hls4ml-pynq.json",
        include_str!("testdata/corpus/github_nicologhielmetti_hls4ml-pynq.json"),
    ),
    (
        "github_taitashaw_hls4ml-fpga-classifier.json",
        include_str!("testdata/corpus/github_taitashaw_hls4ml-fpga-classifier.json"),
    ),
    ("hls4ml_baselines.json", include_str!("testdata/corpus/hls4ml_baselines.json")),
    ("paper_hls4ml2021.json", include_str!("testdata/corpus/paper_hls4ml2021.json")),
];

/// Synthesis figures as a report gives them; a missing one is `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct Figures {
    pub lut: Option<f64>,
    pub ff: Option<f64>,
    pub dsp: Option<f64>,
    pub bram: Option<f64>,
    pub latency: Option<f64>,
    pub interval: Option<f64>,
}

impl Figures {
    /// The figure named `key` (`lut`, `ff`, `dsp`, `bram`, `latency`).
    pub fn get(&self, key: &str) -> Option<f64> {
        match key {
            "lut" => self.lut,
            "ff" => self.ff,
            "dsp" => self.dsp,
            "bram" => self.bram,
            "latency" => self.latency,
            "interval" => self.interval,
            _ => None,
        }
    }
}

/// One synthesised design as the corpus records it.
#[derive(Clone, Debug, Deserialize)]
pub struct Design {
    pub id: String,
    pub source: String,
    pub source_group: String,
    pub input: Vec<usize>,
    pub layers: Vec<Value>,
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default)]
    pub weight_bits: Option<u32>,
    #[serde(default)]
    pub input_bits: Option<u32>,
    #[serde(default)]
    pub result_bits: Option<u32>,
    #[serde(default)]
    pub accum_bits: Option<u32>,
    #[serde(default)]
    pub reuse_factor: Option<usize>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub io_type: Option<String>,
    #[serde(default)]
    pub part: Option<String>,
    #[serde(default)]
    pub clock_ns: Option<f64>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub sparsity: Option<f64>,
    /// `fabric` when the HLS build forced multipliers into LUTs.
    #[serde(default)]
    pub mult_impl: Option<String>,
    #[serde(default)]
    pub csynth: Option<Figures>,
    #[serde(default)]
    pub synth: Option<Figures>,
    /// The corpus file it came from.
    #[serde(skip)]
    pub file: String,
}

#[derive(Deserialize)]
struct CorpusFile {
    designs: Vec<Design>,
}

/// Every design of the embedded corpus, in file order.
pub fn designs() -> Result<Vec<Design>> {
    let mut all = Vec::new();
    for (name, text) in FILES {
        let file: CorpusFile = serde_json::from_str(text).with_context(|| format!("corpus file {name}"))?;
        for mut design in file.designs {
            design.file = name.to_string();
            all.push(design);
        }
    }
    Ok(all)
}

impl Design {
    /// The figures of `report`, when the source has them.
    pub fn figures(&self, report: Report) -> Option<&Figures> {
        match report {
            Report::Csynth => self.csynth.as_ref(),
            Report::Synth => self.synth.as_ref(),
        }
    }

    /// The model precision's width and integer bits; without a `precision`
    /// the widths the source gives (`result_bits`, then `weight_bits`).
    fn precision(&self) -> Result<FixedPoint> {
        if let Some(text) = &self.precision {
            return text.parse::<FixedPoint>().with_context(|| format!("precision '{text}'"));
        }
        let width = self.result_bits.or(self.weight_bits).context("no precision, result_bits or weight_bits")?;
        FixedPoint::ap_fixed(width, width.min(6))
    }

    /// The hls4ml settings the design was built with (hls4ml's defaults for
    /// what the source does not say: reuse 1, Latency, io_parallel, 5 ns).
    pub fn settings(&self) -> Result<HlsSettings> {
        let strategy = match &self.strategy {
            Some(name) => Strategy::parse(name)?,
            None => Strategy::Latency,
        };
        let io_type = match &self.io_type {
            Some(name) => IoType::parse(name).with_context(|| format!("io_type '{name}'"))?,
            None => IoType::Parallel,
        };
        let settings = HlsSettings {
            precision: self.precision()?,
            reuse_factor: self.reuse_factor.unwrap_or(1).max(1),
            strategy,
            clock_period_ns: self.clock_ns.unwrap_or(super::DEFAULT_CLOCK_PERIOD_NS),
            io_type,
            // The tool the report names: Vitis HLS, or Vivado HLS (the
            // only tool before 2020, so also when a source does not say).
            backend: if self.tool.as_deref().is_some_and(|t| t.to_lowercase().contains("vitis")) {
                Backend::Vitis
            } else {
                Backend::Vivado
            },
        };
        settings.check()?;
        Ok(settings)
    }

    /// A board with the part's totals: rule4ml's boards by part, any other
    /// part as a custom board (percentages are not used in validation).
    pub fn board(&self) -> Board {
        self.part.as_deref().and_then(Board::by_part).unwrap_or_else(|| {
            Board::custom(self.part.as_deref().unwrap_or("unknown"), 1_000_000, 2_000_000, 5_000, 5_000)
                .expect("positive totals")
        })
    }

    /// The design's ops: its layers at its precisions, hls4ml's default
    /// accumulator (the model precision) unless the source gives one.
    pub fn ops(&self) -> Result<Vec<Op>> {
        self.build_ops().with_context(|| format!("corpus design '{}' ({})", self.id, self.file))
    }

    /// Whether the build forced multipliers into LUT fabric (`config_op mul
    /// -impl fabric`).
    pub fn fabric_multipliers(&self) -> bool {
        self.mult_impl.as_deref() == Some("fabric")
    }

    /// A model of two or more Dense layers and nothing but activations,
    /// BatchNorm and softmax: where adder trees decide the cost.
    pub fn is_multi_layer_mlp(&self) -> bool {
        let kinds: Vec<&str> = self.layers.iter().filter_map(|l| l["type"].as_str()).collect();
        self.input.len() == 1
            && kinds.iter().filter(|k| **k == "dense").count() >= 2
            && kinds.iter().all(|k| {
                matches!(
                    *k,
                    "dense"
                        | "batchnorm"
                        | "relu"
                        | "leaky_relu"
                        | "linear"
                        | "tanh"
                        | "sigmoid"
                        | "softmax"
                        | "dropout"
                )
            })
    }

    /// The design as an [`Arch`], when it is an MLP on a vector (what
    /// rule4ml can predict); `None` otherwise.
    pub fn to_arch(&self) -> Option<Arch> {
        let [features] = self.input[..] else { return None };
        let mut layers = Vec::new();
        for layer in &self.layers {
            layers.push(match layer["type"].as_str()? {
                "dense" => Layer::Dense { units: layer.get("units")?.as_u64()? as usize },
                "batchnorm" => Layer::BatchNorm,
                "relu" => Layer::Act(Activation::Relu),
                "leaky_relu" => Layer::Act(Activation::LeakyRelu),
                "tanh" => Layer::Act(Activation::Tanh),
                "sigmoid" => Layer::Act(Activation::Sigmoid),
                "softmax" => Layer::Act(Activation::Softmax),
                "linear" => Layer::Act(Activation::Identity),
                _ => return None,
            });
        }
        let component = Component { name: "mlp".into(), block_type: BlockType::Mlp, layers };
        let arch = Arch::new(Shape::Flat(features), vec![component]);
        arch.shapes().ok()?;
        Some(arch)
    }

    fn build_ops(&self) -> Result<Vec<Op>> {
        let width = self.precision()?.width;
        let weight_bits = self.weight_bits.unwrap_or(width);
        let input_bits = self.input_bits.or(self.result_bits).unwrap_or(width);
        let result_bits = self.result_bits.unwrap_or(width);
        let accum = Accum::Width(self.accum_bits.unwrap_or(width.max(result_bits)));
        let shape = match self.input[..] {
            [features] => (1, features, None, None),
            [elements, features] => (elements, features, None, None),
            [height, width, channels] => (height * width, channels, Some(height), Some(width)),
            _ => {
                bail!("input {:?}: expected [features], [elements, features] or [height, width, channels]", self.input)
            }
        };
        let density = 1.0 - self.sparsity.unwrap_or(0.0).clamp(0.0, 1.0);
        let mut ops = vec![Op::Input { features: self.input.iter().product(), bits: input_bits }];
        let mut flow = Flow { shape, bits: input_bits };
        let mut previous_weighted = false;
        for (index, layer) in self.layers.iter().enumerate() {
            let kind = layer["type"].as_str().with_context(|| format!("layers[{index}] has no type"))?;
            let spec = LayerSpec {
                index,
                kind,
                layer,
                weight_bits: layer.get("weight_bits").and_then(Value::as_u64).map_or(weight_bits, |b| b as u32),
                result_bits: layer.get("result_bits").and_then(Value::as_u64).map_or(result_bits, |b| b as u32),
                reuse: layer.get("reuse_factor").and_then(Value::as_u64).map(|r| r.max(1) as usize),
                accum,
                density,
            };
            let (positions, features, _, _) = flow.shape;
            let bits = flow.bits;
            let weighted = matches!(kind, "dense" | "conv2d" | "conv1d");
            match kind {
                "dense" => spec.dense(&mut flow, &mut ops)?,
                "conv2d" | "conv1d" => spec.conv(&mut flow, &mut ops)?,
                "batchnorm" if previous_weighted => {}
                "batchnorm" => ops.push(Op::BatchNorm { features, bits, positions }),
                "layernorm" => ops.push(Op::LayerNorm { features, bits, positions }),
                "relu" | "leaky_relu" | "linear" | "tanh" | "sigmoid" | "elu" | "gelu" | "selu" | "hard_tanh" => {
                    spec.activation(&mut flow, &mut ops)
                }
                "upsample1d" | "upsample2d" => spec.upsample(&mut flow, &mut ops)?,
                "softmax" => ops.push(Op::Softmax { features, bits, rows: positions }),
                "maxpool2d" | "avgpool2d" | "maxpool1d" | "avgpool1d" => spec.pool(&mut flow, &mut ops)?,
                "global_avgpool" | "global_maxpool" => {
                    ops.push(Op::Pool {
                        max: kind == "global_maxpool",
                        window: positions,
                        channels: features,
                        bits,
                        positions: 1,
                        row: 1,
                    });
                    flow.shape = (1, features, None, None);
                }
                "flatten" => flow.shape = (1, positions * features, None, None),
                "add" => ops.push(Op::Add { features, bits, positions }),
                "dropout" => {}
                other => bail!("layers[{index}]: unknown layer type '{other}'"),
            }
            previous_weighted = weighted || (previous_weighted && kind == "batchnorm");
        }
        Ok(ops)
    }
}

/// The tensor between corpus layers: (positions, features, image height,
/// image width) and the width of its values.
struct Flow {
    shape: (usize, usize, Option<usize>, Option<usize>),
    bits: u32,
}

/// One corpus layer as [`Design::build_ops`] reads it: its JSON and type,
/// the widths and reuse factor it sets over the design's, and the design's
/// accumulator and weight density. One method per layer type with weights
/// or a shape of its own.
struct LayerSpec<'a> {
    index: usize,
    kind: &'a str,
    layer: &'a Value,
    weight_bits: u32,
    result_bits: u32,
    reuse: Option<usize>,
    accum: Accum,
    density: f64,
}

impl LayerSpec<'_> {
    /// The layer's number `key`, or `default`.
    fn number(&self, key: &str, default: Option<usize>) -> Result<usize> {
        let (index, kind) = (self.index, self.kind);
        match self.layer.get(key).and_then(Value::as_u64) {
            Some(value) => Ok(value as usize),
            None => default.with_context(|| format!("layers[{index}] ({kind}) has no '{key}'")),
        }
    }

    fn widths(&self, input_bits: u32) -> (u32, u32, u32) {
        (self.weight_bits, input_bits, self.result_bits)
    }

    fn dense(&self, flow: &mut Flow, ops: &mut Vec<Op>) -> Result<()> {
        let (positions, features, _, _) = flow.shape;
        let units = self.number("units", None)?;
        let n_in = features;
        let nonzero = ((n_in * units) as f64 * self.density).round() as usize;
        let dense = DenseOp::new((n_in, units, positions), nonzero, self.widths(flow.bits), self.accum);
        ops.push(Op::Dense(DenseOp { reuse: self.reuse, ..dense }));
        flow.shape = (positions, units, None, None);
        flow.bits = self.result_bits;
        Ok(())
    }

    /// `conv2d` or `conv1d`, with stride and padding.
    fn conv(&self, flow: &mut Flow, ops: &mut Vec<Op>) -> Result<()> {
        let (index, kind) = (self.index, self.kind);
        let (positions, features, height, image_width) = flow.shape;
        let filters = self.number("filters", None)?;
        let kernel = self.number("kernel", None)?;
        let stride = self.number("stride", Some(1))?.max(1);
        let same = self.layer.get("padding").and_then(Value::as_str) == Some("same");
        let (out_h, out_w, n_in, row) = if kind == "conv2d" {
            let (h, w) = (height.context("conv2d needs an image input")?, image_width.unwrap_or(1));
            let out =
                |size: usize| if same { size.div_ceil(stride) } else { (size.saturating_sub(kernel) / stride) + 1 };
            (out(h), out(w), kernel * kernel * features, w)
        } else {
            let length = positions;
            let out = if same { length.div_ceil(stride) } else { length.saturating_sub(kernel) / stride + 1 };
            (out, 1, kernel * features, 1)
        };
        ensure!(out_h >= 1 && out_w >= 1, "layers[{index}]: kernel {kernel} does not fit");
        let nonzero = ((n_in * filters) as f64 * self.density).round() as usize;
        let conv = DenseOp::new((n_in, filters, out_h * out_w), nonzero, self.widths(flow.bits), self.accum);
        let window = Some((if kind == "conv2d" { kernel } else { 1 }, row, features));
        ops.push(Op::Dense(DenseOp { window, reuse: self.reuse, ..conv }));
        flow.shape = (out_h * out_w, filters, Some(out_h), Some(out_w));
        flow.bits = self.result_bits;
        Ok(())
    }

    /// A pointwise activation, by how hls4ml builds it.
    fn activation(&self, flow: &mut Flow, ops: &mut Vec<Op>) {
        let (positions, features, _, _) = flow.shape;
        let kind = match self.kind {
            "relu" => ActKind::Relu,
            // LeakyReLU(alpha = 1) is the identity.
            "leaky_relu" if self.layer.get("alpha").and_then(Value::as_f64) == Some(1.0) => ActKind::Identity,
            "leaky_relu" => ActKind::LeakyRelu,
            "linear" => ActKind::Identity,
            "hard_tanh" => ActKind::Relu,
            _ => ActKind::Table,
        };
        ops.push(Op::Act { kind, features, bits: flow.bits, positions });
        if self.layer.get("result_bits").is_some() {
            flow.bits = self.result_bits;
        }
    }

    /// `upsample1d` or `upsample2d`: a wire that repeats positions.
    fn upsample(&self, flow: &mut Flow, ops: &mut Vec<Op>) -> Result<()> {
        let (positions, features, height, image_width) = flow.shape;
        let size = self.number("size", Some(2))?;
        let positions = positions * if self.kind == "upsample2d" { size * size } else { size };
        ops.push(Op::Act { kind: ActKind::Identity, features, bits: flow.bits, positions });
        flow.shape = (positions, features, height.map(|h| h * size), image_width.map(|w| w * size));
        Ok(())
    }

    /// Max or average pooling in one or two dimensions.
    fn pool(&self, flow: &mut Flow, ops: &mut Vec<Op>) -> Result<()> {
        let (index, kind) = (self.index, self.kind);
        let (positions, features, height, image_width) = flow.shape;
        let pool = self.number("pool", Some(2))?;
        let two_d = kind.ends_with("2d");
        let (h, w) = (height.unwrap_or(positions), image_width.unwrap_or(1));
        let (out_h, out_w) = if two_d { (h / pool, w / pool) } else { (positions / pool, 1) };
        ensure!(out_h >= 1 && out_w >= 1, "layers[{index}]: pool {pool} does not fit");
        ops.push(Op::Pool {
            max: kind.starts_with("max"),
            window: if two_d { pool * pool } else { pool },
            channels: features,
            bits: flow.bits,
            positions: out_h * out_w,
            row: if two_d { w } else { 1 },
        });
        flow.shape = (out_h * out_w, features, Some(out_h), Some(out_w));
        Ok(())
    }
}
