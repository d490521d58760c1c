//! FPGA resource and latency estimates of an architecture, as hls4ml would
//! build it with `io_parallel`. A [`ResourceEstimator`] turns an [`Arch`], the
//! [`HlsSettings`] and optional per-layer [`LayerInfo`] (bit widths, sparsity)
//! into an [`Estimate`] on a [`Board`].
//!
//! ```
//! use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
//! use snac_core::estimate::{AnalyticalEstimator, Board, HlsSettings, ResourceEstimator};
//! let arch = Arch::new(
//!     Shape::Flat(16),
//!     vec![
//!         Component::mlp("b0", 32, Norm::Batch, Activation::Relu),
//!         Component::output("output", 5, Activation::Softmax),
//!     ],
//! );
//! let board = Board::by_name("pynq-z2").unwrap();
//! let estimate = AnalyticalEstimator::default().estimate(&arch, &HlsSettings::default(), None, &board).unwrap();
//! assert!(estimate.lut > 0.0 && estimate.cycles >= 1.0);
//! ```

pub mod analytical;
mod board;
pub mod calibrate;
pub mod corpus;
pub mod ops;
pub mod rule4ml;

pub use analytical::AnalyticalEstimator;
pub use board::Board;
pub use rule4ml::{Rule4mlEstimator, Rule4mlRow};

use crate::arch::Arch;
use crate::fixed::FixedPoint;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::fmt;

/// hls4ml's implementation strategy for Dense layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weights are constants in the logic; all products of one reuse slot are
    /// computed in parallel (`dense_latency`).
    #[default]
    Latency,
    /// Weights are stored in (block) RAM and read row by row, one row per
    /// reuse cycle (`dense_resource`).
    Resource,
}

impl Strategy {
    /// Every strategy, in the order messages and `--help` list them.
    pub const ALL: [Strategy; 2] = [Strategy::Latency, Strategy::Resource];

    /// `latency` or `resource`, case-insensitively.
    pub fn parse(name: &str) -> Result<Strategy> {
        match name.trim().to_lowercase().as_str() {
            "latency" => Ok(Strategy::Latency),
            "resource" => Ok(Strategy::Resource),
            _ => bail!("unknown strategy '{name}'; accepted: latency, resource"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Latency => "latency",
            Strategy::Resource => "resource",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which estimator turns an architecture into FPGA numbers
/// (`hls_config.estimator`, `snac estimate --estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorKind {
    /// [`AnalyticalEstimator`]: built in, sees per-layer widths and sparsity,
    /// and the more accurate on real synthesis reports, so the default.
    #[default]
    Analytical,
    /// [`Rule4mlEstimator`]: rule4ml 0.2.0's numbers, as SNAC-Pack reports
    /// them; needs a rule4ml install for its weights.
    Rule4ml,
}

impl EstimatorKind {
    pub const ACCEPTED: &'static str = "analytical, rule4ml";
    /// Every kind, in the order of [`EstimatorKind::ACCEPTED`].
    pub const ALL: [EstimatorKind; 2] = [EstimatorKind::Analytical, EstimatorKind::Rule4ml];

    /// `analytical` or `rule4ml`, case-insensitively.
    pub fn parse(name: &str) -> Option<EstimatorKind> {
        match name.trim().to_lowercase().as_str() {
            "analytical" => Some(EstimatorKind::Analytical),
            "rule4ml" => Some(EstimatorKind::Rule4ml),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EstimatorKind::Analytical => "analytical",
            EstimatorKind::Rule4ml => "rule4ml",
        }
    }

    /// The estimator of this kind; `row` is the rule4ml row to report. For
    /// rule4ml this loads its weights (a few ms), so build it once.
    pub fn build(&self, row: &Rule4mlRow) -> Result<Box<dyn ResourceEstimator + Send + Sync>> {
        Ok(match self {
            EstimatorKind::Analytical => Box::new(AnalyticalEstimator::default()),
            EstimatorKind::Rule4ml => Box::new(Rule4mlEstimator::load_default(row)?),
        })
    }
}

impl fmt::Display for EstimatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// hls4ml's `IOType`: how layers pass data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IoType {
    /// `io_parallel`: whole arrays, every element at once.
    #[default]
    #[serde(rename = "io_parallel")]
    Parallel,
    /// `io_stream`: FIFOs between layers, one position (pixel) at a time;
    /// what hls4ml recommends for CNNs.
    #[serde(rename = "io_stream")]
    Stream,
}

impl IoType {
    pub const ACCEPTED: &'static str = "io_parallel, io_stream";
    /// Every io type, in the order of [`IoType::ACCEPTED`].
    pub const ALL: [IoType; 2] = [IoType::Parallel, IoType::Stream];

    /// `io_parallel` or `io_stream` (also `parallel`, `stream`), any case.
    pub fn parse(name: &str) -> Option<IoType> {
        match name.trim().to_lowercase().as_str() {
            "io_parallel" | "parallel" => Some(IoType::Parallel),
            "io_stream" | "stream" => Some(IoType::Stream),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            IoType::Parallel => "io_parallel",
            IoType::Stream => "io_stream",
        }
    }
}

/// Which figures an estimate predicts: the HLS tool's C-synthesis report
/// (`*_csynth.rpt`), or Vivado's post-synthesis utilisation
/// (`vivado_synth.rpt`), which is usually lower in LUTs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    #[default]
    Csynth,
    Synth,
}

impl Report {
    pub const ACCEPTED: &'static str = "csynth, synth";
    /// Every report, in the order of [`Report::ACCEPTED`].
    pub const ALL: [Report; 2] = [Report::Csynth, Report::Synth];

    pub fn parse(name: &str) -> Option<Report> {
        match name.trim().to_lowercase().as_str() {
            "csynth" | "c-synthesis" | "hls" => Some(Report::Csynth),
            "synth" | "vivado_synth" | "post-synthesis" => Some(Report::Synth),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Report::Csynth => "csynth",
            Report::Synth => "synth",
        }
    }
}

/// hls4ml's backend, which decides the HLS tool: Vivado HLS or Vitis HLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    Vivado,
    /// hls4ml 1.x's recommended backend, and what `snac export` writes.
    #[default]
    Vitis,
}

impl Backend {
    pub const ACCEPTED: &'static str = "Vivado, Vitis";
    /// Every backend, in the order of [`Backend::ACCEPTED`].
    pub const ALL: [Backend; 2] = [Backend::Vivado, Backend::Vitis];

    pub fn parse(name: &str) -> Option<Backend> {
        match name.trim().to_lowercase().as_str() {
            "vivado" | "vivado_hls" | "vivadoaccelerator" => Some(Backend::Vivado),
            "vitis" | "vitis_hls" => Some(Backend::Vitis),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Vivado => "Vivado",
            Backend::Vitis => "Vitis",
        }
    }

    /// The share of the clock period hls4ml's backend keeps free of logic
    /// (its default clock uncertainty: 12.5 % for Vivado, 27 % for Vitis).
    pub fn clock_uncertainty(&self) -> f64 {
        match self {
            Backend::Vivado => 0.125,
            Backend::Vitis => 0.27,
        }
    }
}

/// hls4ml's default clock period: 5 ns (200 MHz).
pub const DEFAULT_CLOCK_PERIOD_NS: f64 = 5.0;

/// The model-wide hls4ml settings (`hls_config` of the experiment YAML).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HlsSettings {
    /// The default type of weights, biases and activations.
    pub precision: FixedPoint,
    /// How many times each multiplier is reused per inference; 1 is fully
    /// parallel.
    pub reuse_factor: usize,
    pub strategy: Strategy,
    /// The target clock period (hls4ml's `ClockPeriod`), in ns.
    pub clock_period_ns: f64,
    pub io_type: IoType,
    pub backend: Backend,
}

impl Default for HlsSettings {
    /// `ap_fixed<8,3>`, reuse factor 1, Latency (SNAC-Pack's defaults), 5 ns,
    /// io_parallel and the Vitis backend (hls4ml's).
    fn default() -> HlsSettings {
        HlsSettings {
            precision: FixedPoint::ap_fixed(8, 3).expect("ap_fixed<8,3> is valid"),
            reuse_factor: 1,
            strategy: Strategy::Latency,
            clock_period_ns: DEFAULT_CLOCK_PERIOD_NS,
            io_type: IoType::Parallel,
            backend: Backend::Vitis,
        }
    }
}

impl HlsSettings {
    /// Why these settings cannot be estimated, if they cannot.
    pub fn check(&self) -> Result<()> {
        if self.reuse_factor == 0 {
            bail!("reuse factor must be at least 1, got 0");
        }
        if !(self.clock_period_ns.is_finite() && (0.5..=1000.0).contains(&self.clock_period_ns)) {
            bail!("clock period must be from 0.5 to 1000 ns, got {}", self.clock_period_ns);
        }
        Ok(())
    }
}

/// What the model-wide settings do not say about one layer with weights
/// (Dense, Conv2d, ConvAttention): its real bit widths and, for a pruned
/// model, how many weights are not zero. One per such layer, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Width of the layer's weights.
    pub weight_bits: u32,
    /// Width of the activations the layer reads (its input).
    pub activation_bits: u32,
    /// Weights that are not zero; `None` for a dense layer.
    pub nonzero_weights: Option<usize>,
}

impl LayerInfo {
    /// One entry per layer with weights of a quantized model: its real weight
    /// and activation widths and nonzero weights.
    pub fn of_model(model: &crate::quantized::QuantizedModel) -> Vec<LayerInfo> {
        model
            .kernel_layers()
            .into_iter()
            .map(|k| LayerInfo {
                weight_bits: k.weight_bits,
                activation_bits: k.input_bits,
                nonzero_weights: Some(k.nonzero),
            })
            .collect()
    }
}

/// Resource and latency estimate of a whole network on one board.
///
/// Counts are `f64` because estimators predict them; `bram` counts 18 Kbit
/// blocks. `avg_resource` is the mean of the four percentages, SNAC-Pack's
/// hardware objective. `cycles` is the latency of one inference and `interval`
/// the initiation interval, both in clock cycles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub lut: f64,
    pub ff: f64,
    pub dsp: f64,
    pub bram: f64,
    pub lut_pct: f64,
    pub ff_pct: f64,
    pub dsp_pct: f64,
    pub bram_pct: f64,
    pub avg_resource: f64,
    pub cycles: f64,
    pub interval: f64,
}

impl Estimate {
    /// Fills in the percentages of `board` and their mean from counts.
    pub fn from_counts(lut: f64, ff: f64, dsp: f64, bram: f64, cycles: f64, interval: f64, board: &Board) -> Estimate {
        let pct = |count: f64, total: u64| 100.0 * count / total as f64;
        let (lut_pct, ff_pct, dsp_pct, bram_pct) =
            (pct(lut, board.lut), pct(ff, board.ff), pct(dsp, board.dsp), pct(bram, board.bram));
        Estimate {
            lut,
            ff,
            dsp,
            bram,
            lut_pct,
            ff_pct,
            dsp_pct,
            bram_pct,
            avg_resource: (lut_pct + ff_pct + dsp_pct + bram_pct) / 4.0,
            cycles,
            interval,
        }
    }

    /// The resources of which the estimate needs more than the board has,
    /// with the percentage: empty when the model fits.
    pub fn overfull(&self) -> Vec<(&'static str, f64)> {
        [("LUT", self.lut_pct), ("FF", self.ff_pct), ("DSP", self.dsp_pct), ("BRAM", self.bram_pct)]
            .into_iter()
            .filter(|(_, pct)| *pct > 100.0)
            .collect()
    }
}

/// Something that predicts what an architecture costs on an FPGA.
pub trait ResourceEstimator {
    /// A short name for configs and messages (`analytical`, `rule4ml`).
    fn name(&self) -> &'static str;

    /// The estimate of `arch` built with `settings` on `board`. `layer_info`,
    /// when given, has one entry per layer with weights (Dense, Conv2d,
    /// ConvAttention) and overrides the widths of `settings.precision` and
    /// the layer's weight count.
    fn estimate(
        &self,
        arch: &Arch,
        settings: &HlsSettings,
        layer_info: Option<&[LayerInfo]>,
        board: &Board,
    ) -> Result<Estimate>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `ALL` list is what `ACCEPTED` says (the CLI lists `ALL`), and
    /// each name parses back to its own variant.
    #[test]
    fn choice_lists_match_their_accepted_text_and_parse_back() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            accepted: &str,
            name: fn(&T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let names: Vec<&str> = all.iter().map(name).collect();
            assert_eq!(names.join(", "), accepted);
            for value in all {
                assert_eq!(parse(name(value)), Some(*value));
            }
        }
        check(&Strategy::ALL, "latency, resource", Strategy::name, |s| Strategy::parse(s).ok());
        check(&EstimatorKind::ALL, EstimatorKind::ACCEPTED, EstimatorKind::name, EstimatorKind::parse);
        check(&IoType::ALL, IoType::ACCEPTED, IoType::name, IoType::parse);
        check(&Report::ALL, Report::ACCEPTED, Report::name, Report::parse);
        check(&Backend::ALL, Backend::ACCEPTED, Backend::name, Backend::parse);
    }

    #[test]
    fn json_keys_are_exactly_the_cli_keys() {
        let board = Board::by_name("pynq-z2").unwrap();
        let estimate = Estimate::from_counts(532.0, 1064.0, 22.0, 28.0, 7.0, 1.0, &board);
        let value = serde_json::to_value(estimate).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "lut",
            "ff",
            "dsp",
            "bram",
            "lut_pct",
            "ff_pct",
            "dsp_pct",
            "bram_pct",
            "avg_resource",
            "cycles",
            "interval",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn percentages_of_the_board_and_their_mean() {
        let board = Board::by_name("pynq-z2").unwrap();
        // 1 % of every resource of the PYNQ-Z2.
        let estimate = Estimate::from_counts(532.0, 1064.0, 2.2, 2.8, 7.0, 1.0, &board);
        for pct in [estimate.lut_pct, estimate.ff_pct, estimate.dsp_pct, estimate.bram_pct, estimate.avg_resource] {
            assert!((pct - 1.0).abs() < 1e-9, "{estimate:?}");
        }
        let estimate = Estimate::from_counts(53_200.0, 0.0, 0.0, 0.0, 1.0, 1.0, &board);
        assert!((estimate.lut_pct - 100.0).abs() < 1e-9 && (estimate.avg_resource - 25.0).abs() < 1e-9);
    }

    #[test]
    fn estimator_kind_parses_and_builds() {
        assert_eq!(EstimatorKind::parse(" Rule4ML "), Some(EstimatorKind::Rule4ml));
        assert_eq!(EstimatorKind::parse("analytical"), Some(EstimatorKind::Analytical));
        assert_eq!(EstimatorKind::parse("hls4ml"), None);
        assert_eq!(EstimatorKind::default(), EstimatorKind::Analytical);
        let analytical = EstimatorKind::Analytical.build(&Rule4mlRow::default()).unwrap();
        assert_eq!(analytical.name(), "analytical");
    }

    #[test]
    fn strategy_parses_and_defaults() {
        assert_eq!(Strategy::parse("Resource").unwrap(), Strategy::Resource);
        assert_eq!(Strategy::parse("latency").unwrap(), Strategy::Latency);
        assert!(format!("{:#}", Strategy::parse("fast").unwrap_err()).contains("latency, resource"));
        let settings = HlsSettings::default();
        assert_eq!((settings.precision.width, settings.precision.integer), (8, 3));
        assert_eq!((settings.reuse_factor, settings.strategy), (1, Strategy::Latency));
    }
}
