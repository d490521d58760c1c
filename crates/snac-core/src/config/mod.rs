//! The experiment YAML: SNAC-Pack's tutorial files, checked once into the typed
//! [`Experiment`] that the rest of the program uses.
//!
//! Parsing is two-staged: `parse` reads the YAML into a tree that remembers
//! lines, then `check` walks it and collects every error (file, key path, line,
//! bad value, what would be accepted) before giving up, so `snac validate`
//! reports them all at once.

mod duration;
mod exportable;
mod parse;

pub use duration::{DURATION_FORMS, format_duration, parse_duration};
pub use parse::{
    BLOCK_TYPES, BOARDS, ConfigError, ConfigErrors, DEFAULT_PRECISION_PAIRS, load, load_str, parse_precision,
};

use crate::arch::{Activation, Aggregation, Norm};
use crate::estimate::{Backend, EstimatorKind, IoType, Rule4mlRow};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// A whole experiment, resolved and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Experiment {
    /// The file it came from (for messages and relative paths).
    pub source: PathBuf,
    pub dataset: DatasetConfig,
    pub search: SearchConfig,
    pub search_space: SearchSpaceConfig,
    pub hls: HlsConfig,
    pub local_search: Option<LocalSearchConfig>,
    pub synthesis: Option<SynthesisConfig>,
    pub output: OutputConfig,
    /// Keys present in the file that snac does not use (SNAC-Pack's "dummy"
    /// keys), in file order; reported as notes, never errors.
    pub unused_keys: Vec<UnusedKey>,
}

/// A key of the experiment file that snac does not read. SNAC-Pack's files
/// carry such keys, so it is a note; a misspelt key is one too, with the
/// known key it is likely meant to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnusedKey {
    /// Key path as written: `search.n_trails`.
    pub path: String,
    /// 1-based line of the key.
    pub line: usize,
    /// Why snac does not read it, when there is more to say than that it is
    /// not one of its keys.
    pub detail: Option<String>,
    /// The known key of the same section spelled like it (`n_trials`).
    pub suggestion: Option<String>,
}

impl UnusedKey {
    /// The note printed for it, naming the file and line:
    /// `t1.yaml:5: key 'search.n_trails' is not used by snac (did you mean 'n_trials'?)`.
    pub fn note(&self, file: &std::path::Path) -> String {
        format!("{}:{}: key '{}' is not used by snac{}", file.display(), self.line, self.path, self.remark())
    }

    fn remark(&self) -> String {
        let mut remark = String::new();
        if let Some(detail) = &self.detail {
            remark.push_str(&format!(" ({detail})"));
        }
        if let Some(suggestion) = &self.suggestion {
            remark.push_str(&format!(" (did you mean '{suggestion}'?)"));
        }
        remark
    }
}

impl std::fmt::Display for UnusedKey {
    /// The key path with what there is to say about it:
    /// `search.n_trails (did you mean 'n_trials'?)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.path, self.remark())
    }
}

/// Which data, and how to prepare it (docs/snac-pack-compat.md §1).
#[derive(Clone, Debug, Serialize)]
pub struct DatasetConfig {
    /// `mnist`, `fashion_mnist`, `digits`, `qubit`, `file`.
    pub name: DatasetName,
    /// Images are resized to `resize_val` × `resize_val`; `None` keeps them.
    pub resize_val: Option<usize>,
    /// First N of train and first N of test (used as validation).
    pub subset_size: Option<usize>,
    pub flatten: bool,
    pub one_hot: bool,
    /// Resolved relative to the config file's directory.
    pub data_dir: Option<PathBuf>,
    /// Generic loader (`name: file`): features, or a whole `.npz`/`.csv`
    /// (`.npz` keys `x`/`X` and `y`; `.csv` label in the last column).
    pub train_file: Option<PathBuf>,
    /// Labels as a separate `.npy`, when `train_file` is an `.npy` of features.
    pub train_labels: Option<PathBuf>,
    pub val_file: Option<PathBuf>,
    pub val_labels: Option<PathBuf>,
    /// Fraction of the training data held out as validation when there is no
    /// validation split (generic loader, digits). Default 0.2.
    pub validation_split: f64,
    /// Qubit: start sample and window length; `normalize` z-scores per feature.
    pub start_location: Option<usize>,
    pub window_size: Option<usize>,
    pub normalize: bool,
    pub num_classes: Option<usize>,
    /// `points: P` (or a `*_points` name): every image becomes a set of its
    /// `P` brightest pixels as (x, y, intensity) points (the data loader's `image_to_points`).
    pub points: Option<usize>,
    /// Samples are sets (from `search.model_type: deepsets`): a 3-D array
    /// of a `file` dataset is (N, elements, features), not (N, H, W) images,
    /// and the data must come as sets (or images turned into `points`).
    pub sets: bool,
}

impl DatasetConfig {
    /// A dataset with every option at its default (flattened, one-hot,
    /// 20 % held out where there is no validation split).
    pub fn new(name: DatasetName) -> DatasetConfig {
        DatasetConfig {
            name,
            resize_val: None,
            subset_size: None,
            flatten: true,
            one_hot: true,
            data_dir: None,
            train_file: None,
            train_labels: None,
            val_file: None,
            val_labels: None,
            validation_split: 0.2,
            start_location: None,
            window_size: None,
            normalize: false,
            num_classes: None,
            points: None,
            sets: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    Mnist,
    FashionMnist,
    /// UCI 8×8 handwritten digits, embedded in the binary.
    Digits,
    Qubit,
    /// `.npy` / `.npz` / `.csv` files given by `train_file` (and `val_file`).
    File,
}

impl DatasetName {
    /// Every dataset, in the order of [`DatasetName::ACCEPTED`].
    pub const ALL: [DatasetName; 5] =
        [DatasetName::Mnist, DatasetName::FashionMnist, DatasetName::Digits, DatasetName::Qubit, DatasetName::File];
    /// The datasets `snac data fetch` downloads.
    pub const DOWNLOADABLE: [DatasetName; 2] = [DatasetName::Mnist, DatasetName::FashionMnist];

    pub fn parse(name: &str) -> Option<DatasetName> {
        Some(match name.to_lowercase().replace('-', "_").as_str() {
            "mnist" => DatasetName::Mnist,
            "fashion_mnist" | "fashionmnist" => DatasetName::FashionMnist,
            "digits" | "uci_digits" => DatasetName::Digits,
            "qubit" => DatasetName::Qubit,
            "file" | "npy" | "npz" | "csv" => DatasetName::File,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion_mnist",
            DatasetName::Digits => "digits",
            DatasetName::Qubit => "qubit",
            DatasetName::File => "file",
        }
    }

    pub const ACCEPTED: &'static str = "mnist, fashion_mnist, digits, qubit, file, \
                                        mnist_points, fashion_mnist_points, digits_points";

    /// Whether the samples are images (so `points` can turn them into sets).
    /// `file` data may be either; the loader checks.
    pub fn is_images(&self) -> bool {
        matches!(self, DatasetName::Mnist | DatasetName::FashionMnist | DatasetName::Digits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Mlp,
    Block,
    /// Permutation-invariant set model: phi (per element), aggregation, rho.
    #[serde(rename = "deepsets")]
    DeepSets,
}

impl ModelType {
    pub fn parse(name: &str) -> Option<ModelType> {
        Some(match name.to_lowercase().replace(['_', '-'], "").as_str() {
            "mlp" => ModelType::Mlp,
            "block" => ModelType::Block,
            "deepsets" | "deepset" => ModelType::DeepSets,
            _ => return None,
        })
    }

    /// As written in configs and in `{name}_search_results.csv`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelType::Mlp => "mlp",
            ModelType::Block => "block",
            ModelType::DeepSets => "deepsets",
        }
    }

    pub const ACCEPTED: &'static str = "mlp, block, deepsets";
}

/// A search objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Validation accuracy.
    PerformanceMetric,
    /// Bit operations (docs/snac-pack-compat.md §4).
    Bops,
    /// Mean of LUT %, FF %, BRAM %, DSP % (hardware estimate).
    AvgResource,
    /// Latency in clock cycles (hardware estimate).
    ClockCycles,
    /// Trainable parameters.
    Params,
}

impl Objective {
    pub fn parse(name: &str) -> Option<Objective> {
        Some(match name.to_lowercase().as_str() {
            "performance_metric" | "accuracy" => Objective::PerformanceMetric,
            "bops" => Objective::Bops,
            "avg_resource" => Objective::AvgResource,
            "clock_cycles" => Objective::ClockCycles,
            "params" => Objective::Params,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::PerformanceMetric => "performance_metric",
            Objective::Bops => "bops",
            Objective::AvgResource => "avg_resource",
            Objective::ClockCycles => "clock_cycles",
            Objective::Params => "params",
        }
    }

    /// Needs an FPGA resource estimator.
    pub fn is_hardware(&self) -> bool {
        matches!(self, Objective::AvgResource | Objective::ClockCycles)
    }

    pub const ACCEPTED: &'static str = "performance_metric, bops, avg_resource, clock_cycles, params";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Chosen from the budget when the search starts (`search::samplers`).
    Auto,
    Tpe,
    Random,
    Nsga2,
}

impl SamplerKind {
    pub fn parse(name: &str) -> Option<SamplerKind> {
        Some(match name.to_lowercase().replace(['-', '_'], "").as_str() {
            "auto" => SamplerKind::Auto,
            "tpe" | "motpe" => SamplerKind::Tpe,
            "random" => SamplerKind::Random,
            "nsga2" | "nsgaii" => SamplerKind::Nsga2,
            _ => return None,
        })
    }
    pub const ACCEPTED: &'static str = "auto, tpe, nsga2, random";
}

/// The `search.pruner` setting: which pruner stops hopeless trials
/// (`crate::search::pruners`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrunerKind {
    None,
    Median,
    SuccessiveHalving,
    Hyperband,
}

impl PrunerKind {
    pub const ACCEPTED: &'static str = "none, median, successive_halving, hyperband";

    pub fn parse(name: &str) -> Option<PrunerKind> {
        Some(match name.to_lowercase().replace('-', "_").as_str() {
            "none" | "nop" | "null" => PrunerKind::None,
            "median" => PrunerKind::Median,
            "successive_halving" | "successivehalving" | "sha" | "asha" => PrunerKind::SuccessiveHalving,
            "hyperband" => PrunerKind::Hyperband,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            PrunerKind::None => "none",
            PrunerKind::Median => "median",
            PrunerKind::SuccessiveHalving => "successive_halving",
            PrunerKind::Hyperband => "hyperband",
        }
    }
}

/// The `search:` section.
#[derive(Clone, Debug, Serialize)]
pub struct SearchConfig {
    pub model_type: ModelType,
    pub n_trials: usize,
    pub epochs: usize,
    pub n_folds: usize,
    pub use_hardware_metrics: bool,
    /// Objectives with their directions (`true` = maximise).
    #[serde(serialize_with = "objectives_as_map")]
    pub objectives: Vec<(Objective, bool)>,
    /// Our extensions.
    pub seed: u64,
    /// `auto` (the default) picks TPE or NSGA-II from the budget.
    pub sampler: SamplerKind,
    /// Stops hopeless trials after an epoch (`none` by default).
    pub pruner: PrunerKind,
    /// NSGA-II population; Optuna's default 50.
    pub population_size: usize,
    /// Whether the config set `population_size` (`auto` sizes it otherwise).
    pub population_size_given: bool,
    /// TPE's random trials before it models anything; Optuna's default 10.
    pub n_startup_trials: usize,
    /// `search.tpe_multivariate`: TPE models the parameters that occur
    /// together jointly (Optuna's `multivariate=True, group=True`). Unset:
    /// yes for `auto`, no for `tpe` (Optuna's default).
    pub tpe_multivariate: Option<bool>,
    /// Parallel trials; `None` = number of cores.
    pub workers: Option<usize>,
    /// Storage URL; `None` = SQLite file `study.db` in the results dir.
    pub storage: Option<String>,
    pub study_name: Option<String>,
    /// Training recipe (docs/snac-pack-compat.md §3); patience defaults depend on the mode.
    pub batch_size: usize,
    pub learning_rate: f64,
    pub early_stopping_patience: usize,
    /// MLP mode: number of hidden layers, inclusive range.
    pub min_layers: usize,
    pub max_layers: usize,
    /// Resource budgets (`search.constraints`): each metric's upper bound.
    /// NSGA-II uses constrained domination; infeasible trials are kept and
    /// marked.
    pub constraints: Vec<(ConstraintMetric, f64)>,
    /// Time budget of the global search (`search.timeout`, `--timeout`):
    /// after it no new trial starts; running ones finish.
    #[serde(serialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// Hard limit (`search.timeout_hard`, `--timeout-hard`), from the start
    /// like `timeout`: trials still running are cancelled and recorded as
    /// FAIL with reason "timeout" (not counted against `n_trials`).
    #[serde(serialize_with = "optional_duration")]
    pub timeout_hard: Option<Duration>,
}

/// A metric that `search.constraints` can bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintMetric {
    Lut,
    Ff,
    Dsp,
    Bram,
    LutPct,
    FfPct,
    DspPct,
    BramPct,
    AvgResource,
    ClockCycles,
    Interval,
    Bops,
    Params,
}

impl ConstraintMetric {
    pub const ALL: [ConstraintMetric; 13] = [
        ConstraintMetric::Lut,
        ConstraintMetric::Ff,
        ConstraintMetric::Dsp,
        ConstraintMetric::Bram,
        ConstraintMetric::LutPct,
        ConstraintMetric::FfPct,
        ConstraintMetric::DspPct,
        ConstraintMetric::BramPct,
        ConstraintMetric::AvgResource,
        ConstraintMetric::ClockCycles,
        ConstraintMetric::Interval,
        ConstraintMetric::Bops,
        ConstraintMetric::Params,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ConstraintMetric::Lut => "lut",
            ConstraintMetric::Ff => "ff",
            ConstraintMetric::Dsp => "dsp",
            ConstraintMetric::Bram => "bram",
            ConstraintMetric::LutPct => "lut_pct",
            ConstraintMetric::FfPct => "ff_pct",
            ConstraintMetric::DspPct => "dsp_pct",
            ConstraintMetric::BramPct => "bram_pct",
            ConstraintMetric::AvgResource => "avg_resource",
            ConstraintMetric::ClockCycles => "clock_cycles",
            ConstraintMetric::Interval => "interval",
            ConstraintMetric::Bops => "bops",
            ConstraintMetric::Params => "params",
        }
    }

    /// Needs an FPGA estimate.
    pub fn is_hardware(&self) -> bool {
        !matches!(self, ConstraintMetric::Bops | ConstraintMetric::Params)
    }

    pub const ACCEPTED: &'static str =
        "lut, ff, dsp, bram, lut_pct, ff_pct, dsp_pct, bram_pct, avg_resource, clock_cycles, interval, bops, params";
}

/// The `search_space:` section.
#[derive(Clone, Debug, Serialize)]
pub struct SearchSpaceConfig {
    pub mlp_width_space: Vec<usize>,
    pub act_space: Vec<Activation>,
    pub norm_space: Vec<Norm>,
    pub block_types: Vec<String>,
    pub num_blocks: usize,
    pub initial_img_size: Option<usize>,
    pub output_dim: Option<usize>,
    pub output_activation: Activation,
    pub channel_space: Vec<usize>,
    pub kernel_space: Vec<usize>,
    pub conv_attn_hidden_channel_space: Vec<usize>,
    /// Scale attention scores by 1/√d (off in SNAC-Pack).
    pub attention_scale: bool,
    /// DeepSets: widths of the per-element phi layers and of the rho layers
    /// after the aggregation (both default to `mlp_width_space`).
    pub phi_width_space: Vec<usize>,
    pub rho_width_space: Vec<usize>,
    /// DeepSets: how many phi and rho layers, inclusive ranges.
    pub phi_layers: LayerRange,
    pub rho_layers: LayerRange,
    /// DeepSets: the pooling choices.
    pub aggregation_space: Vec<Aggregation>,
    /// `exportable_only: true`: the choices the hls4ml export refuses were
    /// dropped from the lists above (see `quantized::exportable`).
    pub exportable_only: bool,
    /// What `exportable_only` dropped, `choice (why)` each, for the log.
    #[serde(skip)]
    pub dropped_for_export: Vec<String>,
}

/// An inclusive range of layer counts (`[min, max]`, or one number for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRange {
    pub min: usize,
    pub max: usize,
}

/// `hls_config:`.
#[derive(Clone, Debug, Serialize)]
pub struct HlsConfig {
    pub board: String,
    /// `ap_fixed<W,I>` as written.
    pub precision: String,
    pub reuse_factor: usize,
    pub strategy: String,
    /// `clock_period` in ns (hls4ml's `ClockPeriod`; default 5).
    pub clock_period: f64,
    /// `io_type: io_parallel | io_stream` (default io_parallel), for the
    /// estimates and the hls4ml hand-off.
    pub io_type: IoType,
    /// `backend: Vivado | Vitis` (default Vitis): the HLS tool, for the
    /// estimates and the hls4ml hand-off.
    pub backend: Backend,
    /// `estimator: analytical | rule4ml` (default analytical).
    pub estimator: EstimatorKind,
    /// `rule4ml: {hls4ml_version, vivado_version}`: which row of rule4ml's
    /// table the rule4ml estimator reports; default SNAC-Pack's, the first
    /// (0.8.1, 2019.1).
    pub rule4ml_row: Rule4mlRow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PrecisionPair {
    pub total_bits: u32,
    pub int_bits: u32,
}

/// `local_search:`.
#[derive(Clone, Debug, Serialize)]
pub struct LocalSearchConfig {
    pub qat_epochs: usize,
    pub pruning_iterations: usize,
    pub pruning_epochs: usize,
    pub pruning_rate: f64,
    pub precision_pairs: Vec<PrecisionPair>,
    /// `combined` (QAT then pruning, the default), `qat_only`, `prune_only`.
    pub mode: LocalSearchMode,
    /// `uniform` (SNAC-Pack's: one type per precision pair, the default) or
    /// `per_layer` (the pairs, then a search for per-layer widths).
    pub precision: PrecisionMode,
    /// `per_layer`: the accuracy (a fraction, 0.005 = half a point) the
    /// per-layer model may lose against the best uniform pair.
    pub accuracy_tolerance: f64,
    /// `per_layer`: what the width search minimises.
    pub precision_objective: PrecisionObjective,
    /// `per_layer`: the narrowest width any tensor may take.
    pub min_bits: u32,
    /// `per_layer`: the precision pair (by `total_bits`) the search starts
    /// from and whose best accuracy the per-layer model must keep; `None`:
    /// the most accurate pair, keeping its QAT accuracy.
    pub reference_bits: Option<u32>,
}

impl LocalSearchConfig {
    /// SNAC-Pack's defaults with these precision pairs (uniform precision).
    pub fn with_pairs(precision_pairs: Vec<PrecisionPair>) -> LocalSearchConfig {
        LocalSearchConfig {
            qat_epochs: 2,
            pruning_iterations: 5,
            pruning_epochs: 2,
            pruning_rate: 0.8,
            precision_pairs,
            mode: LocalSearchMode::Combined,
            precision: PrecisionMode::Uniform,
            accuracy_tolerance: DEFAULT_ACCURACY_TOLERANCE,
            precision_objective: PrecisionObjective::AvgResource,
            min_bits: DEFAULT_MIN_BITS,
            reference_bits: None,
        }
    }
}

/// `local_search.accuracy_tolerance`'s default: half a point.
pub const DEFAULT_ACCURACY_TOLERANCE: f64 = 0.005;

/// `local_search.min_bits`' default.
pub const DEFAULT_MIN_BITS: u32 = 2;

/// `local_search.precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionMode {
    Uniform,
    PerLayer,
}

impl PrecisionMode {
    pub fn parse(name: &str) -> Option<PrecisionMode> {
        Some(match name.to_lowercase().replace(['-', ' '], "_").as_str() {
            "uniform" => PrecisionMode::Uniform,
            "per_layer" | "perlayer" => PrecisionMode::PerLayer,
            _ => return None,
        })
    }
    pub const ACCEPTED: &'static str = "uniform, per_layer";
}

/// `local_search.precision_objective`: what the per-layer width search
/// minimises. `avg_resource` by default: LUTs alone would reward widths
/// whose products move into DSPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionObjective {
    /// The estimated LUTs.
    Lut,
    /// The estimate's mean fraction of the board's LUT, FF, DSP and BRAM.
    AvgResource,
    /// Bit operations with the real widths and nonzero weights.
    Bops,
}

impl PrecisionObjective {
    pub fn parse(name: &str) -> Option<PrecisionObjective> {
        Some(match name.to_lowercase().replace('-', "_").as_str() {
            "lut" | "luts" => PrecisionObjective::Lut,
            "avg_resource" => PrecisionObjective::AvgResource,
            "bops" => PrecisionObjective::Bops,
            _ => return None,
        })
    }
    pub const ACCEPTED: &'static str = "lut, avg_resource, bops";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalSearchMode {
    Combined,
    QatOnly,
    PruneOnly,
}

impl LocalSearchMode {
    pub fn parse(name: &str) -> Option<LocalSearchMode> {
        Some(match name.to_lowercase().replace('-', "_").as_str() {
            "combined" => LocalSearchMode::Combined,
            "qat_only" | "qat" => LocalSearchMode::QatOnly,
            "prune_only" | "prune" | "pruning_only" => LocalSearchMode::PruneOnly,
            _ => return None,
        })
    }
    pub const ACCEPTED: &'static str = "combined, qat_only, prune_only";
}

/// `synthesis:`.
#[derive(Clone, Debug, Serialize)]
pub struct SynthesisConfig {
    pub total_bits: u32,
    pub int_bits: u32,
    pub hls_output_dir: PathBuf,
}

/// `output:`.
#[derive(Clone, Debug, Serialize)]
pub struct OutputConfig {
    /// Resolved against the current directory, as SNAC-Pack does.
    pub results_dir: PathBuf,
}

/// Command-line overrides, applied after parsing and checked like the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub results_dir: Option<PathBuf>,
    pub trials: Option<usize>,
    pub epochs: Option<usize>,
    pub seed: Option<u64>,
    pub workers: Option<usize>,
    /// `--timeout` and `--timeout-hard` as written (checked in [`Experiment::apply`]).
    pub timeout: Option<String>,
    pub timeout_hard: Option<String>,
}

impl Experiment {
    /// Applies command-line overrides.
    pub fn apply(&mut self, overrides: &Overrides) -> anyhow::Result<()> {
        if let Some(dir) = &overrides.results_dir {
            // A default `synthesis.hls_output_dir` (inside the results dir) follows it.
            if let Some(synthesis) = &mut self.synthesis
                && synthesis.hls_output_dir == self.output.results_dir.join("hls_project")
            {
                synthesis.hls_output_dir = dir.join("hls_project");
            }
            self.output.results_dir = dir.clone();
        }
        if let Some(n) = overrides.trials {
            anyhow::ensure!(n > 0, "--trials 0: the number of trials must be at least 1");
            self.search.n_trials = n;
        }
        if let Some(n) = overrides.epochs {
            anyhow::ensure!(n > 0, "--epochs 0: the number of epochs must be at least 1");
            self.search.epochs = n;
        }
        if let Some(seed) = overrides.seed {
            self.search.seed = seed;
        }
        if let Some(n) = overrides.workers {
            anyhow::ensure!(n > 0, "--workers 0: at least one worker is needed");
            self.search.workers = Some(n);
        }
        let duration = |flag: &str, text: &str| parse_duration(text).map_err(|e| anyhow::anyhow!("--{flag} {e}"));
        if let Some(text) = &overrides.timeout {
            self.search.timeout = Some(duration("timeout", text)?);
        }
        if let Some(text) = &overrides.timeout_hard {
            self.search.timeout_hard = Some(duration("timeout-hard", text)?);
        }
        if let (Some(soft), Some(hard)) = (self.search.timeout, self.search.timeout_hard) {
            anyhow::ensure!(
                hard >= soft,
                "the hard time limit {} (--timeout-hard or search.timeout_hard) is shorter than the time budget {} \
                 (--timeout or search.timeout); accepted: a hard limit at least as long, both counted from the start",
                format_duration(hard),
                format_duration(soft)
            );
        }
        Ok(())
    }
}

/// Writes an optional duration as `1h30m` (or nothing).
fn optional_duration<S: serde::Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => s.serialize_some(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// Writes objectives as `{performance_metric: maximize, bops: minimize}`.
fn objectives_as_map<S: serde::Serializer>(objectives: &[(Objective, bool)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(objectives.iter().map(|(o, max)| (o.name(), if *max { "maximize" } else { "minimize" })))
}
