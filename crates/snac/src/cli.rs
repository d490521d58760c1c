//! Command-line flags (clap). Raw values only; `cmd` turns them into a
//! checked experiment.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "snac", version, about = "Find small, accurate, FPGA-cheap neural networks and hand them to hls4ml")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every stage the config asks for (for now: the global search).
    /// Without CONFIG, runs the embedded digits example.
    Run(RunArgs),
    /// Run the global architecture search only.
    Search(RunArgs),
    /// Local search: QAT at each precision pair plus iterative magnitude
    /// pruning with lottery-ticket rewinding, from the best global-search
    /// architecture (or --arch).
    Local(LocalArgs),
    /// FPGA resources and latency of an architecture YAML (hls4ml io_parallel).
    Estimate(EstimateArgs),
    /// Check a config and print the resolved experiment, or every error.
    Validate(RunArgs),
    /// Time trials with tutorial 1's setup (MNIST 8×8, subset 10000, 2 epochs).
    Bench(BenchArgs),
    /// Datasets: download into the cache.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Print the embedded example config (a starting point for your own).
    ExampleConfig,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Experiment YAML (SNAC-Pack's format). Omit to use the embedded digits example.
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
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
pub struct EstimateArgs {
    /// Architecture YAML (a trial YAML or best_model_for_local_search.yaml).
    pub arch: PathBuf,
    /// pynq-z2, zcu102, alveo-u200 or alveo-u250.
    #[arg(long, default_value = "zcu102")]
    pub board: String,
    /// Fixed-point type of weights and activations.
    #[arg(long, default_value = "ap_fixed<8,3>")]
    pub precision: String,
    /// hls4ml reuse factor.
    #[arg(long, default_value_t = 1)]
    pub reuse: usize,
    /// latency or resource.
    #[arg(long, default_value = "latency")]
    pub strategy: String,
    /// analytical, or rule4ml (rule4ml 0.2.0's numbers, hls4ml 0.8.1 / Vivado
    /// 2019.1 row; needs `pip install --no-deps rule4ml==0.2.0` or $SNAC_RULE4ML_DIR).
    #[arg(long, default_value = "analytical")]
    pub estimator: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
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
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download mnist or fashion_mnist into the cache, with sha256 checks.
    Fetch {
        /// `mnist` or `fashion_mnist`.
        name: String,
        /// Download into this folder instead of the per-user cache.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Base URL of another mirror (also $SNAC_DATA_MIRROR).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
    },
}
