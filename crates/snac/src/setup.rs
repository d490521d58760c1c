//! What a run is set up with, prepared once and shared by every stage: the
//! experiment with its data, folds, space and hardware ([`SearchSetup`]), and
//! how this process takes part in its study ([`Participation`]).

use anyhow::{Context, Result, bail};
use snac_core::arch::{Arch, Shape};
use snac_core::config::{Experiment, ModelType, Objective};
use snac_core::cost::BopsFormula;
use snac_core::data::{Dataset, Split};
use snac_core::estimate::{Board, Estimate, HlsSettings, ResourceEstimator, Strategy};
use snac_core::fixed::FixedPoint;
use snac_core::search::samplers::SamplerChoice;
use snac_core::search::{Direction, Sampler};
use snac_core::space::SpaceSpec;
use std::sync::Arc;
use std::time::Duration;

/// How this process takes part in its study.
#[derive(Clone, Debug)]
pub struct Participation {
    /// Other processes may run the same study (an explicit storage, or `snac
    /// worker`): a RUNNING trial is someone else's until its heartbeat goes
    /// stale. Otherwise the study is this results dir's own, and a RUNNING
    /// trial found at the start was left by a process that died.
    pub shared: bool,
    /// `snac worker`: no results-dir lock (the workers share the folder) and
    /// a CSV of this worker's own trials, `*_rank{SLURM_PROCID}.csv`.
    pub worker: bool,
    pub heartbeat_interval: Duration,
    /// A RUNNING trial without a heartbeat for this long is FAILed.
    pub heartbeat_grace: Duration,
}

impl Participation {
    /// `snac run`/`search`: shared when the config or `--storage` names a storage.
    pub fn for_run(setup: &SearchSetup) -> Participation {
        Participation {
            shared: setup.experiment.search.storage.is_some(),
            worker: false,
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_grace: Duration::from_secs(60),
        }
    }
}

/// The study's name: `search.study_name`, else `snac` (also what `--study`
/// sets).
pub fn study_name(search: &snac_core::config::SearchConfig) -> &str {
    search.study_name.as_deref().unwrap_or("snac")
}

/// This process's rank in a SLURM job, if it is one.
pub fn slurm_rank() -> Option<String> {
    std::env::var("SLURM_PROCID").ok().filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
}

/// Everything a trial needs, prepared once per search.
pub struct SearchSetup {
    pub experiment: Experiment,
    pub dataset: Arc<Dataset>,
    /// Stratified k-fold `(train, validation)` splits when `search.n_folds > 1`
    /// (train and validation pooled, as SNAC-Pack does).
    pub folds: Option<Arc<Vec<(Split, Split)>>>,
    pub spec: SpaceSpec,
    /// Objectives in the study, in order, with their directions.
    pub objectives: Vec<(Objective, bool)>,
    pub formula: BopsFormula,
    /// FPGA resource estimate settings, used when an objective needs them.
    pub hardware: HardwareSetup,
}

/// The board, HLS settings and estimator of an experiment (`hls_config`).
pub struct HardwareSetup {
    pub board: Board,
    pub settings: HlsSettings,
    pub estimator: Box<dyn ResourceEstimator + Send + Sync>,
}

impl HardwareSetup {
    pub fn from_config(hls: &snac_core::config::HlsConfig) -> Result<HardwareSetup> {
        let board = Board::by_name(&hls.board).context("hls_config.board")?;
        let precision = hls
            .precision
            .parse::<FixedPoint>()
            .with_context(|| format!("hls_config.model.precision '{}'", hls.precision))?;
        let strategy = Strategy::parse(&hls.strategy).context("hls_config.model.strategy")?;
        Ok(HardwareSetup {
            board,
            settings: HlsSettings {
                precision,
                reuse_factor: hls.reuse_factor,
                strategy,
                clock_period_ns: hls.clock_period,
                io_type: hls.io_type,
                backend: hls.backend,
            },
            estimator: hls
                .estimator
                .build(&hls.rule4ml_row)
                .with_context(|| format!("estimator: {}", hls.estimator))?,
        })
    }

    pub fn estimate(&self, arch: &Arch) -> Result<Estimate> {
        self.estimator.estimate(arch, &self.settings, None, &self.board)
    }
}

impl SearchSetup {
    /// Loads the data and checks that the experiment fits it.
    pub fn prepare(experiment: Experiment) -> Result<SearchSetup> {
        let dataset = snac_core::data::load(&experiment.dataset)
            .with_context(|| format!("loading dataset '{}'", experiment.dataset.name.name()))?;
        Self::with_dataset(experiment, dataset)
    }

    pub fn with_dataset(experiment: Experiment, dataset: Dataset) -> Result<SearchSetup> {
        let space = experiment.search_space.clone();
        if !space.dropped_for_export.is_empty() {
            log::info!(
                "search_space.exportable_only: dropped {} from the search space",
                space.dropped_for_export.join(", ")
            );
        }
        let output_dim = space.output_dim.unwrap_or(dataset.num_classes);
        if output_dim != dataset.num_classes {
            bail!(
                "{}: search_space.output_dim is {output_dim} but dataset '{}' has {} classes",
                experiment.source.display(),
                dataset.name,
                dataset.num_classes
            );
        }
        if let (Some(size), Shape::Image { height, .. }) = (space.initial_img_size, dataset.sample_shape)
            && size != height
        {
            log::info!(
                "note: search_space.initial_img_size is {size} but the images are {height}×{height}; using {height}"
            );
        }
        let folds = match experiment.search.n_folds {
            0 | 1 => None,
            k => Some(Arc::new(
                dataset
                    .stratified_folds(k, snac_core::data::HOLDOUT_SEED)
                    .with_context(|| format!("{}: search.n_folds", experiment.source.display()))?,
            )),
        };
        let objectives = experiment.search.objectives.clone();
        let formula = match experiment.search.model_type {
            ModelType::Mlp => BopsFormula::Mlp,
            // DeepSets have no SNAC-Pack formula: the block one (b² per
            // multiplication), counted per set element.
            ModelType::Block | ModelType::DeepSets => BopsFormula::Block,
        };
        let spec = SpaceSpec {
            model_type: experiment.search.model_type,
            space,
            input_shape: dataset.sample_shape,
            output_dim,
            min_layers: experiment.search.min_layers,
            max_layers: experiment.search.max_layers,
        };
        let hardware = HardwareSetup::from_config(&experiment.hls)
            .with_context(|| format!("{}: hls_config", experiment.source.display()))?;
        Ok(SearchSetup { experiment, dataset: Arc::new(dataset), folds, spec, objectives, formula, hardware })
    }

    /// Whether trials report readout fidelity: two-state qubit data, plain
    /// train/validation split.
    pub fn wants_readout_fidelity(&self) -> bool {
        self.experiment.dataset.name == snac_core::config::DatasetName::Qubit
            && self.dataset.num_classes == 2
            && self.folds.is_none()
    }

    /// Whether trials need an FPGA estimate.
    pub fn wants_hardware(&self) -> bool {
        wants_hardware(&self.experiment)
    }

    pub fn directions(&self) -> Vec<Direction> {
        self.objectives.iter().map(|(_, max)| Direction::from_maximize(*max)).collect()
    }

    pub fn train_config(&self, seed: u64) -> snac_train::TrainConfig {
        let search = &self.experiment.search;
        snac_train::TrainConfig {
            epochs: search.epochs,
            batch_size: search.batch_size,
            learning_rate: search.learning_rate,
            early_stopping_patience: search.early_stopping_patience,
            lr_plateau_patience: 2,
            lr_factor: 0.5,
            min_lr: 1e-6,
            seed,
            quant: None,
            masks: None,
            on_epoch: None,
        }
    }

    /// The sampler the config names, `auto` resolved by the budget.
    pub fn sampler_choice(&self) -> SamplerChoice {
        SamplerChoice::of(&self.experiment.search)
    }

    /// Trials this process trains side by side: `search.workers`, else the
    /// cores, at most the budget.
    pub fn workers(&self) -> usize {
        let search = &self.experiment.search;
        let cores = || std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        search.workers.unwrap_or_else(cores).min(search.n_trials).max(1)
    }

    /// Builds the sampler the config names and logs which one and why.
    pub fn sampler(&self) -> Arc<dyn Sampler> {
        let choice = self.sampler_choice();
        let workers = self.workers();
        if choice.kind == snac_core::config::SamplerKind::Tpe && workers > 1 {
            log::info!("sampler: {}; trial n learns from trials 0..=n-{workers} ({workers} workers)", choice.why);
        } else {
            log::info!("sampler: {}", choice.why);
        }
        choice.build(workers)
    }
}

/// Whether an experiment's trials need an FPGA estimate.
pub fn wants_hardware(experiment: &Experiment) -> bool {
    let search = &experiment.search;
    search.use_hardware_metrics
        || search.objectives.iter().any(|(o, _)| o.is_hardware())
        || search.constraints.iter().any(|(c, _)| c.is_hardware())
}
