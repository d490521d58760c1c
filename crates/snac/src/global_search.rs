//! The global search: trials trained side by side, each told to the study as
//! soon as it finishes, with the CSV and YAML outputs written as it goes.
//!
//! A failed trial (an error, a NaN loss, even a panic in training) is stored
//! as FAIL with its reason and the search goes on. Every finished trial is in
//! the storage before its CSV row is written, so a killed run resumes with
//! `snac run` again and loses nothing.
//!
//! Several processes (`snac worker`, on one machine or many) may share one
//! study in a database: each draws trials until the study as a whole holds
//! `n_trials` (the count and the new trial are one transaction), beats a
//! heartbeat for its running trials, and fails the trials of workers whose
//! heartbeat went stale, so another trial takes their place.

use crate::outputs::{self, CsvLog};
use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use snac_core::arch::{Arch, Shape};
use snac_core::config::{ConstraintMetric, Experiment, ModelType, Objective, SamplerKind};
use snac_core::cost::{self, BopsFormula, GLOBAL_SEARCH_BITS};
use snac_core::data::{Dataset, Split};
use snac_core::estimate::{Board, Estimate, HlsSettings, ResourceEstimator, Strategy};
use snac_core::fixed::FixedPoint;
use snac_core::interrupt;
use snac_core::search::nsga2::NsgaIISampler;
use snac_core::search::random::RandomSampler;
use snac_core::search::{CONSTRAINTS_KEY, Direction, FrozenTrial, Sampler, Study, Trial, TrialState};
use snac_core::space::{self, SpaceSpec};
use snac_core::storage::{self, INTERRUPTED_KEY, Storage, counts_against_budget};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// System attribute naming the process that ran a trial (host, pid, and the
/// SLURM rank when there is one).
pub const WORKER_KEY: &str = "snac:worker";

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

/// This process's rank in a SLURM job, if it is one.
pub fn slurm_rank() -> Option<String> {
    std::env::var("SLURM_PROCID").ok().filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
}

/// Who runs a trial: stored with it, so a stale trial names its worker.
fn worker_identity() -> Value {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    json!({"host": host, "pid": std::process::id(), "rank": slurm_rank()})
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
            eprintln!(
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
        }
    }

    /// Builds the sampler the config names.
    pub fn sampler(&self) -> Arc<dyn Sampler> {
        match self.experiment.search.sampler {
            SamplerKind::Random => Arc::new(RandomSampler),
            SamplerKind::Nsga2 => Arc::new(NsgaIISampler {
                population_size: self.experiment.search.population_size,
                ..Default::default()
            }),
        }
    }
}

/// Whether an experiment's trials need an FPGA estimate.
pub fn wants_hardware(experiment: &Experiment) -> bool {
    let search = &experiment.search;
    search.use_hardware_metrics
        || search.objectives.iter().any(|(o, _)| o.is_hardware())
        || search.constraints.iter().any(|(c, _)| c.is_hardware())
}

/// What one trial produced.
pub struct TrialResult {
    pub arch: Arch,
    /// Validation accuracy; with k-fold, the mean over folds.
    pub accuracy: f64,
    /// Each fold's validation accuracy, with k-fold.
    pub fold_accuracies: Option<Vec<f64>>,
    pub bops: f64,
    pub params: usize,
    /// FPGA estimate, when an objective or `use_hardware_metrics` asks for it.
    pub estimate: Option<Estimate>,
    /// Qubit readout: F = 1 − P(e|g) − P(g|e) on the validation split.
    pub readout_fidelity: Option<f64>,
    pub outcome: snac_train::TrainOutcome,
}

/// Decodes, trains and measures one trial. Panics inside training are caught
/// and returned as errors, so one bad trial never stops a search.
pub fn evaluate_trial(setup: &SearchSetup, trial: &mut Trial) -> Result<TrialResult> {
    let arch = space::decode(&setup.spec, trial)?;
    let estimate = if setup.wants_hardware() {
        Some(setup.hardware.estimate(&arch).context("FPGA resource estimate")?)
    } else {
        None
    };
    let seed = setup.experiment.search.seed ^ trial.training_seed();
    // With the parameters the space drew: two round trips on PostgreSQL.
    trial.set_user_attrs(&[("seed", json!(seed)), ("arch", json!(arch.summary()))])?;
    let config = setup.train_config(seed);
    check_memory(setup, &arch, config.batch_size)?;
    let FoldsOutcome { kept: outcome, fold_accuracies, .. } = setup.train_folds(&arch, &config)?;
    let accuracy = match &fold_accuracies {
        Some(accuracies) => accuracies.iter().sum::<f64>() / accuracies.len() as f64,
        None => outcome.val_accuracy,
    };
    let bops = cost::bops(&arch, setup.formula, GLOBAL_SEARCH_BITS)?;
    let params = arch.parameter_count()?;
    let readout_fidelity = if setup.wants_readout_fidelity() {
        let val = &setup.dataset.val;
        let logits = snac_train::layer_outputs(&arch, &outcome.weights, &val.x, None)?;
        let logits = &logits.last().context("the network has no layers")?.values;
        let predicted: Vec<u32> = logits.chunks_exact(2).map(|pair| u32::from(pair[1] > pair[0])).collect();
        snac_core::data::readout_fidelity(&predicted, &val.y)
    } else {
        None
    };
    Ok(TrialResult { accuracy, fold_accuracies, arch, bops, params, estimate, readout_fidelity, outcome })
}

/// Refuses an architecture whose training would not fit in the memory one
/// trial may use: half of this machine's memory, shared by the workers
/// (`SNAC_TRIAL_MEMORY_GB` overrides it). An allocation failure would abort
/// the whole process; this makes it one failed trial with its reason.
fn check_memory(setup: &SearchSetup, arch: &Arch, batch_size: usize) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    let needed = cost::training_memory_bytes(arch, batch_size)? as f64;
    let workers = setup.experiment.search.workers.unwrap_or(1).max(1) as f64;
    let (budget, why) = match std::env::var("SNAC_TRIAL_MEMORY_GB").ok().and_then(|v| v.parse::<f64>().ok()) {
        Some(gb) => (gb * GIB, "SNAC_TRIAL_MEMORY_GB".to_string()),
        None => {
            (machine_memory_bytes() / 2.0 / workers, format!("half of this machine's memory over {workers} worker(s)"))
        }
    };
    ensure!(
        needed <= budget,
        "this architecture needs about {:.2} GiB to train ({} parameters, batch {batch_size}), more than the \
         {:.2} GiB a trial may use ({why}); make the search space smaller (widths, channels, layers) or the \
         batch smaller",
        needed / GIB,
        arch.parameter_count()?,
        budget / GIB
    );
    Ok(())
}

/// Total memory of this machine (`/proc/meminfo`), or 16 GiB where unknown.
fn machine_memory_bytes() -> f64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    });
    total_kib.map_or(16.0 * (1u64 << 30) as f64, |kib| kib * 1024.0)
}

/// Trains `arch` with `config` on `train`, validating on `val`; a panic in
/// training becomes an error with its message.
pub fn train_guarded(
    arch: &Arch,
    train: &Split,
    val: &Split,
    classes: usize,
    config: &snac_train::TrainConfig,
) -> Result<snac_train::TrainOutcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| snac_train::train(arch, train, val, classes, config)))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            anyhow::anyhow!("training panicked: {message}")
        })?
}

impl SearchSetup {
    /// Trains `arch` on the train/validation split, or on every fold with
    /// k-fold. Returns the outcome whose weights are kept (the best fold's)
    /// and, with k-fold, every fold's validation accuracy.
    pub fn train_folds(&self, arch: &Arch, config: &snac_train::TrainConfig) -> Result<FoldsOutcome> {
        let classes = self.dataset.num_classes;
        let Some(folds) = &self.folds else {
            let started = std::time::Instant::now();
            let kept = train_guarded(arch, &self.dataset.train, &self.dataset.val, classes, config)?;
            let epochs = kept.history.len();
            return Ok(FoldsOutcome {
                kept,
                fold_accuracies: None,
                epochs,
                core_seconds: started.elapsed().as_secs_f64(),
            });
        };
        // Folds side by side on idle cores (each training is one thread and
        // deterministic, so the result does not depend on how many ran at once).
        let _this_thread = CoreClaim::this_thread();
        let next = AtomicUsize::new(0);
        // Each fold's outcome, by fold.
        type FoldResult = Result<snac_train::TrainOutcome>;
        let outcomes: Mutex<Vec<Option<FoldResult>>> = Mutex::new((0..folds.len()).map(|_| None).collect());
        let work = || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((train, val)) = folds.get(index) else { return };
                let outcome = train_guarded(arch, train, val, classes, config);
                outcomes.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(outcome);
            }
        };
        let mut claims: Vec<CoreClaim> = std::iter::from_fn(CoreClaim::idle_core).take(folds.len() - 1).collect();
        let cores = claims.len() + 1;
        // With more folds than cores and a remainder, a last round of folds
        // would leave cores idle (3 folds on 2 cores: 2 fold-times); then
        // every fold runs at once and they share the cores (1.5 fold-times).
        let threads = if cores > 1 && folds.len() % cores != 0 { folds.len() } else { cores };
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            for _ in 1..threads {
                let claim = claims.pop();
                scope.spawn(|| {
                    let _claim = claim;
                    COUNTED.with(|c| c.set(true));
                    work();
                });
            }
            work();
        });
        let core_seconds = started.elapsed().as_secs_f64() * cores as f64;
        let mut accuracies = Vec::with_capacity(folds.len());
        let mut epochs = 0;
        let mut kept: Option<snac_train::TrainOutcome> = None;
        let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let outcome = outcome.expect("every fold ran").with_context(|| format!("fold {index}"))?;
            epochs += outcome.history.len();
            accuracies.push(outcome.val_accuracy);
            if kept.as_ref().is_none_or(|k| outcome.val_accuracy > k.val_accuracy) {
                kept = Some(outcome);
            }
        }
        let kept = kept.expect("at least two folds");
        Ok(FoldsOutcome { kept, fold_accuracies: Some(accuracies), epochs, core_seconds })
    }
}

/// What [`SearchSetup::train_folds`] gives.
pub struct FoldsOutcome {
    /// The outcome whose weights are kept: the best fold's with k-fold.
    pub kept: snac_train::TrainOutcome,
    /// Every fold's validation accuracy, with k-fold.
    pub fold_accuracies: Option<Vec<f64>>,
    /// Epochs trained, over every fold.
    pub epochs: usize,
    /// The trial's training wall time times the cores it held (each
    /// training is one thread; folds may share cores).
    pub core_seconds: f64,
}

/// Threads of this process now training, against the cores it may use.
static TRAINING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is already counted in [`TRAINING_THREADS`].
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One thread counted in [`TRAINING_THREADS`] until dropped. Trial workers
/// hold one for their lifetime, so that folds only spread onto cores no
/// worker uses.
pub struct CoreClaim {
    counted: bool,
}

impl CoreClaim {
    /// Counts the calling thread, whatever the count (once per thread).
    pub fn this_thread() -> CoreClaim {
        if COUNTED.with(|c| c.replace(true)) {
            return CoreClaim { counted: false };
        }
        TRAINING_THREADS.fetch_add(1, Ordering::SeqCst);
        CoreClaim { counted: true }
    }

    /// A claim on a core no counted thread uses, if there is one; the
    /// thread that runs on it marks itself with [`CoreClaim::this_thread`].
    fn idle_core() -> Option<CoreClaim> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        TRAINING_THREADS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < cores).then_some(n + 1))
            .ok()
            .map(|_| CoreClaim { counted: true })
    }
}

impl Drop for CoreClaim {
    fn drop(&mut self) {
        if self.counted {
            TRAINING_THREADS.fetch_sub(1, Ordering::SeqCst);
            COUNTED.with(|c| c.set(false));
        }
    }
}

/// The values of the study's objectives for a result.
fn objective_values(setup: &SearchSetup, result: &TrialResult) -> Vec<f64> {
    setup
        .objectives
        .iter()
        .map(|(objective, _)| match objective {
            Objective::PerformanceMetric => result.accuracy,
            Objective::Bops => result.bops,
            Objective::Params => result.params as f64,
            Objective::AvgResource => result.estimate.as_ref().map_or(f64::NAN, |e| e.avg_resource),
            Objective::ClockCycles => result.estimate.as_ref().map_or(f64::NAN, |e| e.cycles),
        })
        .collect()
}

impl TrialResult {
    /// The value a constraint bounds.
    fn metric(&self, metric: ConstraintMetric) -> f64 {
        let estimate = |f: fn(&Estimate) -> f64| self.estimate.as_ref().map_or(f64::NAN, f);
        match metric {
            ConstraintMetric::Lut => estimate(|e| e.lut),
            ConstraintMetric::Ff => estimate(|e| e.ff),
            ConstraintMetric::Dsp => estimate(|e| e.dsp),
            ConstraintMetric::Bram => estimate(|e| e.bram),
            ConstraintMetric::LutPct => estimate(|e| e.lut_pct),
            ConstraintMetric::FfPct => estimate(|e| e.ff_pct),
            ConstraintMetric::DspPct => estimate(|e| e.dsp_pct),
            ConstraintMetric::BramPct => estimate(|e| e.bram_pct),
            ConstraintMetric::AvgResource => estimate(|e| e.avg_resource),
            ConstraintMetric::ClockCycles => estimate(|e| e.cycles),
            ConstraintMetric::Interval => estimate(|e| e.interval),
            ConstraintMetric::Bops => self.bops,
            ConstraintMetric::Params => self.params as f64,
        }
    }
}

/// Summary of a finished search.
pub struct SearchSummary {
    pub trials: Vec<FrozenTrial>,
    pub best: Option<FrozenTrial>,
    /// Stopped by Ctrl-C or SIGTERM before the budget was used up.
    pub interrupted: bool,
}

/// Runs the global search of `setup` in `results_dir`.
pub fn run(setup: &SearchSetup, results_dir: &Path, show_progress: bool, how: &Participation) -> Result<SearchSummary> {
    std::fs::create_dir_all(results_dir).with_context(|| format!("creating {}", results_dir.display()))?;
    let lock_path = results_dir.join(".snac.lock");
    let _lock = if how.worker {
        None
    } else {
        let lock = File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another snac process is running in {} (it holds {}); wait for it or use --results-dir \
                 (to share one study between processes, use `snac worker`)",
                results_dir.display(),
                lock_path.display()
            )
        })?;
        Some(lock)
    };

    let search = &setup.experiment.search;
    let storage: Arc<dyn Storage> = match &search.storage {
        Some(url) => storage::open(url)?,
        None if how.shared => {
            bail!("a shared study needs a storage: give --storage URL (or search.storage in the config)")
        }
        None => storage::open(&results_dir.join("study.db").to_string_lossy())?,
    };
    let study_name = search.study_name.clone().unwrap_or_else(|| "snac".to_string());
    let study = Study::create_or_load(storage.clone(), &study_name, &setup.directions(), setup.sampler(), search.seed)
        .with_context(|| format!("opening study '{study_name}'"))?
        .with_trial_system_attrs([(WORKER_KEY.to_string(), worker_identity())]);
    let study = if how.shared { study.with_stale_grace(how.heartbeat_grace) } else { study };
    crate::report::record_objectives(setup, &study)?;

    // We hold the lock of the study's own results dir, so RUNNING trials
    // belong to a process that died. In a shared study, only those whose
    // heartbeat is stale do.
    let mut interrupted = Vec::new();
    if how.shared {
        interrupted = study.storage().fail_stale_trials(study.info().id, how.heartbeat_grace)?;
    }
    let running = if how.shared { vec![] } else { study.trials()? };
    for trial in running.iter().filter(|t| t.state == TrialState::Running) {
        storage.set_trial_system_attr(trial.id, INTERRUPTED_KEY, &Value::Bool(true))?;
        storage.set_trial_user_attr(
            trial.id,
            snac_core::search::FAIL_REASON_KEY,
            &json!("interrupted: the process running it stopped"),
        )?;
        storage.finish_trial(trial.id, TrialState::Fail, None)?;
        interrupted.push(trial.number);
    }
    let existing = study.trials()?;
    let done_before = existing.iter().filter(|t| counts_against_budget(t)).count();
    let to_run = search.n_trials.saturating_sub(done_before);
    // Interrupted trials (by a signal, or a process that died) are FAIL and
    // do not count: their places are drawn again.
    let interrupted_total = existing.iter().filter(|t| !counts_against_budget(t)).count();
    if done_before > 0 || interrupted_total > 0 {
        eprintln!(
            "resuming study '{study_name}' in {}: {done_before} finished trials kept, {interrupted_total} \
             interrupted ({} just now), {to_run} to run",
            results_dir.display(),
            interrupted.len()
        );
    }
    if search.sampler == SamplerKind::Nsga2 && search.n_trials < 2 * search.population_size {
        eprintln!(
            "warning: {} trials is less than two generations of population {}: NSGA-II never leaves its random \
             first generation, so this search is effectively random (set search.population_size lower or \
             search.n_trials higher)",
            search.n_trials, search.population_size
        );
    }

    let csv = if how.worker {
        // This worker's own trials (those of its rank, when it has one).
        let path = rank_csv_path(results_dir, setup);
        let rank = slurm_rank();
        let mine: Vec<FrozenTrial> = existing
            .iter()
            .filter(|t| {
                rank.is_some() && t.system_attrs.get(WORKER_KEY).and_then(|w| w.get("rank")) == Some(&json!(rank))
            })
            .cloned()
            .collect();
        CsvLog::rebuild_at(path, setup, &mine)?
    } else {
        CsvLog::rebuild(results_dir, setup, &existing)?
    };
    let csv = Mutex::new(csv);
    let workers = search.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let workers = workers.min(to_run.max(1));
    let bar = if show_progress { ProgressBar::new(to_run as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} trials, ETA {eta} {msg}")
            .expect("valid template"),
    );
    // The best trial so far, kept up to date from each finished trial (the
    // order is total, so the best of (best, new) is the best of all).
    let best_so_far = Mutex::new(outputs::best_by_accuracy(&existing));
    bar.set_message(best_message(best_so_far.lock().unwrap().as_ref()));
    let failures = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let live_report = crate::report::LiveReport::new(results_dir);
    let running = Running { ids: Mutex::new(BTreeSet::new()) };
    let done = AtomicBool::new(false);

    std::thread::scope(|scope| {
        scope.spawn(|| running.beat(study.storage().as_ref(), how.heartbeat_interval, &done));
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let _core = CoreClaim::this_thread();
                    let result = (|| -> Result<()> {
                        loop {
                            if interrupt::stop_requested() {
                                return Ok(());
                            }
                            // The budget is the study's: other threads and processes draw from it too.
                            match study.ask_within(Some(search.n_trials))? {
                                Some(trial) => {
                                    run_one(
                                        setup,
                                        &study,
                                        trial,
                                        results_dir,
                                        &csv,
                                        &best_so_far,
                                        &bar,
                                        &failures,
                                        &running,
                                    )?;
                                    live_report.after_trial(setup, &study, results_dir);
                                }
                                None if others_may_fail(&study, how)? => {
                                    std::thread::sleep(how.heartbeat_interval.min(Duration::from_secs(1)))
                                }
                                None => return Ok(()),
                            }
                        }
                    })();
                    if let Err(err) = result {
                        // Storage errors end this worker; trial errors never get here.
                        first_error.lock().unwrap().get_or_insert(err);
                    }
                })
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
        done.store(true, Ordering::SeqCst);
    });
    bar.finish_and_clear();
    if let Some(err) = first_error.into_inner().unwrap() {
        return Err(err.context("the search stopped"));
    }

    let trials = study.trials()?;
    if !how.worker {
        // Rows were appended as trials finished; rewritten in trial order, the
        // CSV of a seeded search is the same whatever the number of workers.
        CsvLog::rebuild(results_dir, setup, &trials)?;
    }
    let best = outputs::best_by_accuracy(&trials);
    if let Some(best) = &best {
        outputs::write_best_model(results_dir, best)?;
    }
    let (written, cost) = live_report.stats();
    if written > 0 {
        eprintln!(
            "report.html was rewritten {written} times during the search, {:.1} ms each",
            cost.as_secs_f64() * 1e3
        );
    }
    let failed = failures.load(Ordering::SeqCst);
    if failed > 0 {
        eprintln!("{failed} trial(s) failed; their reasons are in the CSV's fail_reason column");
    }
    // Stopped early if the budget still has room (a stop after the last
    // trial changes nothing).
    let interrupted =
        interrupt::stop_requested() && trials.iter().filter(|t| counts_against_budget(t)).count() < search.n_trials;
    Ok(SearchSummary { trials, best, interrupted })
}

/// The budget is used up. In a shared study, trials still RUNNING elsewhere
/// may yet fail stale and free their place: this fails the stale ones and
/// says whether to wait and ask again.
fn others_may_fail(study: &Study, how: &Participation) -> Result<bool> {
    if !how.shared {
        return Ok(false); // the RUNNING trials are this process's own
    }
    // A trial failed here frees a place: ask again at once.
    let failed = study.storage().fail_stale_trials(study.info().id, how.heartbeat_grace)?;
    Ok(!failed.is_empty() || study.trials()?.iter().any(|t| t.state == TrialState::Running))
}

/// The trials this process is running, kept alive by a heartbeat thread.
/// (The study stores the worker's identity with each trial it asks for, and
/// a trial's start counts as its first heartbeat.)
struct Running {
    ids: Mutex<BTreeSet<i64>>,
}

impl Running {
    fn start(&self, trial: &Trial) {
        self.ids.lock().unwrap().insert(trial.id);
    }

    fn stop(&self, trial_id: i64) {
        self.ids.lock().unwrap().remove(&trial_id);
    }

    /// Records a heartbeat for every running trial each `interval`, until `done`.
    fn beat(&self, storage: &dyn Storage, interval: Duration, done: &AtomicBool) {
        let step = Duration::from_millis(20).min(interval);
        let mut since = Duration::ZERO;
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            since += step;
            if since < interval {
                continue;
            }
            since = Duration::ZERO;
            let ids: Vec<i64> = self.ids.lock().unwrap().iter().copied().collect();
            for id in ids {
                if let Err(err) = storage.record_heartbeat(id) {
                    eprintln!("warning: heartbeat of trial id {id} not recorded: {err:#}");
                }
            }
        }
    }
}

/// `{csv name}_rank{SLURM_PROCID}.csv` (SNAC-Pack's per-rank files), or
/// `_pid{pid}` outside SLURM.
pub fn rank_csv_path(results_dir: &Path, setup: &SearchSetup) -> PathBuf {
    let name = outputs::csv_name(setup.experiment.search.model_type);
    let stem = name.trim_end_matches(".csv");
    let suffix = slurm_rank().map_or_else(|| format!("pid{}", std::process::id()), |r| format!("rank{r}"));
    results_dir.join(format!("{stem}_{suffix}.csv"))
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    setup: &SearchSetup,
    study: &Study,
    mut trial: Trial,
    results_dir: &Path,
    csv: &Mutex<CsvLog>,
    best_so_far: &Mutex<Option<FrozenTrial>>,
    bar: &ProgressBar,
    failures: &AtomicUsize,
    running: &Running,
) -> Result<()> {
    running.start(&trial);
    let outcome = evaluate_trial(setup, &mut trial);
    let told = match &outcome {
        Ok(result) => {
            let values = objective_values(setup, result);
            record_result(&trial, result, results_dir)?;
            let constraints = &setup.experiment.search.constraints;
            if !constraints.is_empty() {
                // Optuna's convention: value − bound, feasible when every one is ≤ 0.
                let violations: Vec<f64> = constraints.iter().map(|(m, bound)| result.metric(*m) - bound).collect();
                let feasible = violations.iter().all(|v| *v <= 0.0);
                trial.set_system_attr(CONSTRAINTS_KEY, &json!(violations))?;
                trial.set_user_attr("feasible", &json!(feasible))?;
            }
            study.tell(&trial, Ok(values))?
        }
        Err(err) if interrupt::is_interrupted(err) => {
            // Like a trial of a killed process: FAIL, not counted against
            // the budget, so a rerun draws its place again.
            trial.set_system_attr(INTERRUPTED_KEY, &Value::Bool(true))?;
            bar.println(format!("trial {} interrupted", trial.number));
            study.tell(&trial, Err(format!("{err:#}")))?
        }
        Err(err) => {
            failures.fetch_add(1, Ordering::SeqCst);
            bar.println(format!("trial {} failed: {err:#}", trial.number));
            study.tell(&trial, Err(format!("{err:#}")))?
        }
    };
    running.stop(trial.id);
    if !told {
        bar.println(format!("trial {} was marked finished by someone else; its result was not stored", trial.number));
    }
    let frozen = study.storage().get_trial(trial.id)?;
    csv.lock().unwrap().append(&frozen)?;
    bar.inc(1);
    let mut best = best_so_far.lock().unwrap();
    let candidates: Vec<FrozenTrial> = best.take().into_iter().chain([frozen]).collect();
    *best = outputs::best_by_accuracy(&candidates);
    bar.set_message(best_message(best.as_ref()));
    Ok(())
}

/// Stores a trial's facts as user attributes and writes its YAML.
fn record_result(trial: &Trial, result: &TrialResult, results_dir: &Path) -> Result<()> {
    let history: Vec<Value> = result
        .outcome
        .history
        .iter()
        .map(|e| {
            json!({"epoch": e.epoch, "train_loss": e.train_loss, "train_accuracy": e.train_accuracy,
                   "val_loss": e.val_loss, "val_accuracy": e.val_accuracy, "learning_rate": e.learning_rate})
        })
        .collect();
    // One batch: a single round trip on PostgreSQL.
    let mut attrs: Vec<(&str, Value)> = vec![
        ("performance_metric", json!(result.accuracy)),
        ("bops", json!(result.bops)),
        ("params", json!(result.params)),
    ];
    if let Some(accuracies) = &result.fold_accuracies {
        let joined: Vec<String> = accuracies.iter().map(|a| format!("{a:.6}")).collect();
        attrs.push(("fold_accuracies", json!(joined.join(";"))));
    }
    if let Some(fidelity) = result.readout_fidelity {
        attrs.push(("readout_fidelity", json!(fidelity)));
    }
    attrs.extend([
        ("val_loss", json!(result.outcome.val_loss)),
        ("best_epoch", json!(result.outcome.best_epoch)),
        ("steps", json!(result.outcome.steps)),
    ]);
    if let Some(estimate) = &result.estimate {
        attrs.extend([
            ("avg_resource", json!(estimate.avg_resource)),
            ("clock_cycles", json!(estimate.cycles)),
            ("estimate", serde_json::to_value(estimate)?),
        ]);
    }
    attrs.push(("history", Value::Array(history)));
    let yaml = outputs::trial_yaml(trial.number, result)?;
    let path = outputs::trial_yaml_path(results_dir, trial.number);
    yaml.write(&path)?;
    attrs.push(("yaml_path", json!(path.to_string_lossy())));
    attrs.push(("architecture", serde_json::to_value(&yaml.architecture)?));
    trial.set_user_attrs(&attrs)?;
    let weights_path = outputs::trial_weights_path(results_dir, trial.number);
    result.outcome.weights.save(&weights_path)?;
    Ok(())
}

fn best_message(best: Option<&FrozenTrial>) -> String {
    match best {
        Some(best) => format!(
            "best acc {:.4} (trial {}, {})",
            best.user_attrs.get("performance_metric").and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
            best.number,
            best.user_attrs.get("arch").and_then(|v| v.as_str()).unwrap_or("")
        ),
        None => String::new(),
    }
}

/// Completed trials only.
pub fn completed(trials: &[FrozenTrial]) -> impl Iterator<Item = &FrozenTrial> {
    trials.iter().filter(|t| t.state == TrialState::Complete)
}
