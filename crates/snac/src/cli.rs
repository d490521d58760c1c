//! Command-line flags (clap). Raw values only; `cmd` turns them into a
//! checked experiment.

use crate::choices;
use clap::{Args, Parser, Subcommand};
use snac_core::config::DatasetName;
use snac_core::estimate::{Backend, Board, EstimatorKind, IoType, Report, Strategy};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "snac", version, about = "Find small, accurate, FPGA-cheap neural networks and hand them to hls4ml")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More messages: -v debug, -vv trace (SNAC_LOG or RUST_LOG=LEVEL also set the level).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Fewer messages: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every stage the config asks for: the global search, then, when
    /// it has `local_search`, QAT and pruning of the best model and the
    /// hls4ml export of the `synthesis` precision. Without CONFIG, runs the
    /// embedded digits example, which has every stage.
    Run(RunArgs),
    /// Run the global architecture search only.
    Search(RunArgs),
    /// One worker of a study shared by many processes (nodes of a SLURM job,
    /// or several on one machine): runs trials until the study as a whole has
    /// `n_trials`. Needs --storage (PostgreSQL for many nodes, SQLite for one).
    Worker(WorkerArgs),
    /// Write the CSV, the trial YAMLs and the best model of a study from its
    /// storage (no merging of per-worker files needed). Needs --storage (or
    /// search.storage in the config).
    Results(ResultsArgs),
    /// Local search only: QAT at each precision pair plus iterative magnitude
    /// pruning with lottery-ticket rewinding, from the results dir's best
    /// global-search architecture and its trained weights (or --arch). Uses
    /// the config's local_search, or SNAC-Pack's defaults without one.
    Local(LocalArgs),
    /// FPGA resources and latency of a model as hls4ml builds it (or, with
    /// --validate, the estimator's measured error on real synthesis reports).
    Estimate(EstimateArgs),
    /// Integer inference of a quantized model (best_model_{bits}b{int}i.json)
    /// on a .npy of samples, exactly as fixed-point hardware computes it.
    Predict(PredictArgs),
    /// Hand-off to hls4ml: QONNX, hls4ml config, test vectors, conversion
    /// script and README for a quantized model; --verify checks hls4ml's C
    /// simulation against our integer inference, bit for bit.
    Export(ExportArgs),
    /// Write RESULTS_DIR/report.html (one self-contained page: summary,
    /// interactive Pareto scatter, best model, local search, every trial).
    Report(ReportArgs),
    /// Plots (PNG and SVG) and the Pareto GIF from a search CSV: ours or
    /// SNAC-Pack's *_search_results.csv.
    Plot(PlotArgs),
    /// Check a config and print the resolved experiment (with a note for each
    /// key snac does not use), or every error with its line; exits 2 on errors.
    Validate(RunArgs),
    /// Time trials: tutorial 1's setup (MNIST 8×8, subset 10000, 2 epochs),
    /// then its FPGA estimates and local search; or whole trials (every
    /// fold) of a config's own search. `snac bench search` compares the
    /// samplers' search quality.
    #[command(args_conflicts_with_subcommands = true)]
    Bench(BenchArgs),
    /// Datasets: download into the cache, simulate qubit readout, turn
    /// images into point sets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Print the embedded example config (a starting point for your own).
    ExampleConfig,
    /// Print a shell completion script for snac's subcommands, flags and
    /// choices.
    ///
    /// Bash: `snac completions bash > ~/.local/share/bash-completion/completions/snac`;
    /// zsh: `snac completions zsh > ~/.zfunc/_snac` (with ~/.zfunc on fpath);
    /// fish: `snac completions fish > ~/.config/fish/completions/snac.fish`.
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Experiment YAML (SNAC-Pack's format). Omit to use the embedded digits example.
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Seconds between heartbeats of the running trials.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub heartbeat_interval: f64,
    /// A RUNNING trial without a heartbeat for this many seconds belongs to a
    /// dead worker: it is FAILed and another trial takes its place.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub heartbeat_grace: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Folder for the CSV, trial_yamls/ and best_model_for_local_search.yaml.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Architecture YAML to start from (default: the results dir's
    /// best_model_for_local_search.yaml).
    #[arg(long, value_name = "FILE")]
    pub arch: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A results dir (output.results_dir of a run).
    pub results_dir: PathBuf,
    /// The study to show, when study.db holds several.
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
    /// Also write the plots and the GIF into RESULTS_DIR/plots.
    #[arg(long)]
    pub plots: bool,
    /// Also save a screenshot of the report as RESULTS_DIR/report.png
    /// (needs Chromium: $SNAC_CHROMIUM or chromium on PATH).
    #[arg(long)]
    pub screenshot: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// Search CSV: ours (mlp_search_results.csv, ...) or SNAC-Pack's.
    pub csv: PathBuf,
    /// Folder for the plots (default: plots/ beside the CSV).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Objective columns, comma-separated (default: performance_metric, bops,
    /// and avg_resource, clock_cycles when the CSV has them).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = choices::metric())]
    pub objectives: Option<Vec<String>>,
}

#[derive(Args, Debug, Clone)]
pub struct EstimateArgs {
    /// The model: an architecture YAML (a trial YAML,
    /// best_model_for_local_search.yaml, or just an `architecture:` block),
    /// or a quantized model (best_model_{bits}b{int}i.json: its real bit
    /// widths and pruned weights are used).
    #[arg(required_unless_present_any = ["validate", "calibrate"])]
    pub model: Option<PathBuf>,
    /// Trial weights (trial_weights/trial_N.json) of the architecture YAML:
    /// their zeros count as pruned.
    #[arg(long, value_name = "JSON")]
    pub weights: Option<PathBuf>,
    /// A board (pynq-z2, zcu102, alveo-u200, alveo-u250), a part number
    /// (xcvu9p-flga2104-2L-e, xcu250-…, xczu7ev-…, xc7a100t-…), or a custom
    /// part as PART:LUT:FF:DSP:BRAM.
    #[arg(long, visible_alias = "part", default_value = "zcu102", value_parser = choices::BoardOrPart, hide_possible_values = true)]
    pub board: Board,
    /// Fixed-point type of weights and activations (a quantized model's own
    /// types take precedence).
    #[arg(long, default_value = "ap_fixed<8,3>")]
    pub precision: String,
    /// hls4ml reuse factor.
    #[arg(long, default_value_t = 1)]
    pub reuse: usize,
    /// hls4ml's strategy for Dense layers.
    #[arg(long, default_value = "latency", value_parser = choices::strategy())]
    pub strategy: Strategy,
    /// Clock period in ns (hls4ml's ClockPeriod).
    #[arg(long, value_name = "NS", default_value_t = snac_core::estimate::DEFAULT_CLOCK_PERIOD_NS)]
    pub clock_ns: f64,
    /// hls4ml's IOType: whole arrays at once, or FIFOs between layers.
    #[arg(long, default_value = "io_parallel", value_parser = choices::io_type())]
    pub io_type: IoType,
    /// hls4ml backend, which decides the HLS tool.
    #[arg(long, default_value = "Vitis", value_parser = choices::backend())]
    pub backend: Backend,
    /// Which figures --json prints and the fit is judged on: csynth (the HLS
    /// report) or synth (Vivado post-synthesis). The table shows both once
    /// the corpus has post-synthesis reports.
    #[arg(long, default_value = "csynth", value_parser = choices::report())]
    pub report: Report,
    /// The built-in analytical estimator, or rule4ml (rule4ml 0.2.0's
    /// numbers, hls4ml 0.8.1 / Vivado 2019.1 row; needs `pip install --no-deps
    /// rule4ml==0.2.0` or $SNAC_RULE4ML_DIR).
    #[arg(long, default_value = "analytical", value_parser = choices::estimator())]
    pub estimator: EstimatorKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure the analytical estimator on the embedded corpus of real
    /// hls4ml synthesis reports, leaving each source out of the fit that
    /// predicts it, against rule4ml where its weights are installed.
    #[arg(long, conflicts_with = "calibrate")]
    pub validate: bool,
    /// With --validate: also write the tables as Markdown to this file.
    #[arg(long, value_name = "FILE", requires = "validate")]
    pub markdown: Option<PathBuf>,
    /// Fit the analytical estimator's prices on the whole corpus and print
    /// them (the shipped ones are this command's output).
    #[arg(long)]
    pub calibrate: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct OverrideArgs {
    /// Write results here instead of `output.results_dir`.
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Number of trials (overrides `search.n_trials`).
    #[arg(long, value_name = "N")]
    pub trials: Option<usize>,
    /// Epochs per trial (overrides `search.epochs`).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Random seed of the search and of training.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Trials run side by side (default: number of cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Study storage (overrides `search.storage`): sqlite:///path.db,
    /// postgresql://user[:password]@host[:port]/db, journal:///abs/path.log
    /// (Optuna's journal file; also journal://relative/path.log), or memory:.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Study name in the storage (overrides `search.study_name`; default "snac").
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
    /// Time budget of the global search (overrides `search.timeout`): after
    /// it no new trial starts, running ones finish, and the run ends as usual
    /// (exit 0); the same command resumes. E.g. 90s, 45m, 2h, 1h30m, or seconds.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Hard time limit, counted from the start too (overrides
    /// `search.timeout_hard`): trials still running are cancelled at their
    /// next batch and recorded as FAIL "timeout" (not counted against n_trials).
    #[arg(long, value_name = "DURATION")]
    pub timeout_hard: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Config to benchmark (default: tutorial 1's setup on MNIST, found via
    /// `dataset.data_dir`, $SNAC_DATA_DIR or the cache).
    pub config: Option<PathBuf>,
    /// Number of architectures to time.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Seed for drawing architectures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trials run side by side (default 1: time one trial on one core).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Write the drawn architectures' layers as JSON, for timing the same
    /// architectures elsewhere (tools/keras_trial.py).
    #[arg(long, value_name = "FILE")]
    pub save_archs: Option<PathBuf>,
    /// Time these architectures instead of drawing them: a JSON list of
    /// layer lists, as `--save-archs` writes.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trials", "seed", "save_archs"])]
    pub archs: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Search quality: real searches per sampler and seed, hypervolume
    /// (accuracy up, BOPs down) after each trial, as a CSV and a plot.
    Search(SearchBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SearchBenchArgs {
    /// Config to search (default: tutorial 1 on MNIST 8×8 when the data is
    /// found, else the embedded digits example).
    pub config: Option<PathBuf>,
    /// Seeds per sampler (1, 2, ...).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Trials per search, unless a sampler names its own (`nsga2:150`).
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Samplers to compare: auto, tpe, nsga2, random, each optionally
    /// with its own trial count and NSGA-II population (`nsga2:150`, `nsga2:150:25`)
    /// and a pruner (`tpe+median`, `auto+hyperband`).
    #[arg(long, default_value = "nsga2,tpe,random,auto")]
    pub samplers: String,
    /// Training epochs per trial (default: the config's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Searches run side by side (each search runs its trials one by one).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Folder for search_quality.csv and the plot.
    #[arg(long, value_name = "DIR", default_value = "bench-search")]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download MNIST or Fashion-MNIST (IDX files) into the per-user cache,
    /// each file checked against its sha256.
    Fetch {
        /// The dataset to download.
        #[arg(value_parser = choices::downloadable_dataset())]
        name: DatasetName,
        /// Download into this folder instead of the per-user cache.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Base URL of another mirror (also $SNAC_DATA_MIRROR).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
    },
    /// Simulated qubit-readout traces (tutorial 3) under SNAC-Pack's file
    /// names, calibrated to real QICK traces; point `dataset.data_dir` at DIR.
    SimulateQubit(SimulateQubitArgs),
    /// Images as point sets for DeepSets: each image's P brightest pixels as
    /// (x, y, intensity), x and y in [0, 1], brightest first, zero-padded.
    /// Writes x_train.npy (N, P, 3), y_train.npy, x_test.npy, y_test.npy.
    MnistPoints(MnistPointsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MnistPointsArgs {
    /// Folder for x_train.npy, y_train.npy, x_test.npy and y_test.npy.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Points per image (P).
    #[arg(long, value_name = "P", default_value_t = 32)]
    pub points: usize,
    /// The images: mnist, fashion_mnist (IDX files, looked up as for
    /// dataset.name), or digits (the embedded 8×8 digits; 20 % held out as
    /// the test split).
    #[arg(long, default_value = "mnist", value_parser = choices::image_dataset())]
    pub source: DatasetName,
    /// Where the IDX files are (as dataset.data_dir); otherwise
    /// $SNAC_DATA_DIR, the cache and /usr/share/datasets are searched.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep only the first N images of each split.
    #[arg(long, value_name = "N")]
    pub subset: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateQubitArgs {
    /// Folder for 0528_{X,y}_{train,test}_0_770.npy (and simulation.yaml).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Training shots (half ground, half excited).
    #[arg(long, value_name = "N", default_value_t = 20000)]
    pub n: usize,
    /// Test shots (default: a quarter of --n).
    #[arg(long, value_name = "N")]
    pub n_test: Option<usize>,
    /// Seed of the simulated shots.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
    /// Physics parameters as YAML (keys as in simulation.yaml, all
    /// optional); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// I/Q samples per trace [default: 770].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Sampling period in ns [default: 2.6].
    #[arg(long)]
    pub sample_ns: Option<f64>,
    /// Per-sample noise std of I and Q, ADC units [default: 780].
    #[arg(long)]
    pub noise_std: Option<f64>,
    /// Energy relaxation time T1 in µs [default: 25].
    #[arg(long)]
    pub t1_us: Option<f64>,
    /// Resonator ring-up time constant 2/κ in ns [default: 60].
    #[arg(long)]
    pub ring_up_ns: Option<f64>,
    /// Delay before the readout signal reaches the ADC, ns [default: 100].
    #[arg(long)]
    pub delay_ns: Option<f64>,
    /// Dispersive shift χ/2π in MHz [default: 1].
    #[arg(long)]
    pub chi_mhz: Option<f64>,
    /// Probability that a ground-labelled shot starts excited [default: 0.02].
    #[arg(long)]
    pub ground_prep_error: Option<f64>,
    /// Probability that an excited-labelled shot starts in ground [default: 0.02].
    #[arg(long)]
    pub excited_prep_error: Option<f64>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Quantized model file written by local search (best_model_{bits}b{int}i.json).
    pub model: PathBuf,
    /// Samples as .npy: shape (N, features), (features,), or (N, ...) with
    /// `features` values per sample.
    pub input: PathBuf,
    /// Write the outputs (N, classes) as float64 .npy here; without it, one
    /// line per sample is printed: the arg-max, a tab, then the outputs.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Quantized model file written by local search (best_model_{bits}b{int}i.json).
    pub model: PathBuf,
    /// Folder to write the hand-off into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Convert with hls4ml, compile (g++) and compare its C simulation with
    /// our integer inference (Python: $SNAC_PYTHON, or a venv made in the cache).
    #[arg(long)]
    pub verify: bool,
    /// The FPGA board; its part goes into the hls4ml config.
    #[arg(long, default_value = "zcu102", value_parser = choices::board())]
    pub board: Board,
    /// hls4ml reuse factor.
    #[arg(long, default_value_t = 1)]
    pub reuse: u32,
    /// hls4ml's strategy for Dense layers.
    #[arg(long, default_value = "latency", value_parser = choices::strategy())]
    pub strategy: Strategy,
    /// hls4ml's IOType: whole arrays at once, or FIFOs between layers (FIFO
    /// depths are hls4ml's default: one slot per pixel of the tensor).
    #[arg(long, default_value = "io_parallel", value_parser = choices::io_type())]
    pub io_type: IoType,
    /// hls4ml backend, which decides the HLS tool (Vivado HLS or Vitis HLS).
    #[arg(long, default_value = "Vitis", value_parser = choices::backend())]
    pub backend: Backend,
    /// Clock period in ns (hls4ml's ClockPeriod).
    #[arg(long, value_name = "NS", default_value_t = snac_core::estimate::DEFAULT_CLOCK_PERIOD_NS)]
    pub clock_ns: f64,
    /// Where convert.py writes the HLS project (default: hls_project inside --out).
    #[arg(long, value_name = "DIR")]
    pub hls_output_dir: Option<PathBuf>,
    /// Number of test vectors: seeded random inputs across the input type's
    /// range, with our integer inference's outputs.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
}
