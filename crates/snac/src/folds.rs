//! Training one trial's architecture: on the train/validation split, or on
//! every fold with k-fold, the folds spread over the cores no trial worker
//! uses ([`CoreClaim`]); a panic in training becomes an error.
//!
//! Cores are shared with the other `snac` processes of the node: under
//! SLURM this process uses `SLURM_CPUS_ON_NODE / SLURM_NTASKS_PER_NODE`
//! cores, and otherwise every training thread holds an flock'ed lock file,
//! one per core, in a per-user folder of the temp dir (`SNAC_CORE_LOCK_DIR`
//! overrides it), released by the kernel when the process dies. A fold
//! spreads onto a core only when it gets one; the results are the same
//! either way, since each fold's training is one deterministic thread.

use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use snac_core::arch::Arch;
use snac_core::data::Split;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

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
                cores: 1,
            });
        };
        // Folds side by side on idle cores (each training is one thread and
        // deterministic, so the result does not depend on how many ran at once).
        let _this_thread = CoreClaim::this_thread();
        let next = AtomicUsize::new(0);
        // Each fold's outcome, by fold.
        type FoldResult = Result<snac_train::TrainOutcome>;
        let outcomes: Mutex<Vec<Option<FoldResult>>> = Mutex::new((0..folds.len()).map(|_| None).collect());
        // With a pruner, the first fold's curve is the trial's; the others
        // stop when it is pruned.
        let (lead, follow) = match &config.on_epoch {
            Some(hook) => {
                let (lead, follow) = crate::pruning::fold_hooks(hook);
                let with = |h| snac_train::TrainConfig { on_epoch: Some(h), ..config.clone() };
                (with(lead), with(follow))
            }
            None => (config.clone(), config.clone()),
        };
        let work = || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((train, val)) = folds.get(index) else { return };
                let fold_config = if index == 0 { &lead } else { &follow };
                let outcome = train_guarded(arch, train, val, classes, fold_config);
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
        Ok(FoldsOutcome { kept, fold_accuracies: Some(accuracies), epochs, core_seconds, cores })
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
    /// Cores the trial held: its own and those its folds spread onto.
    pub cores: usize,
}

/// Threads of this process now training, against the cores it may use.
static TRAINING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is already counted in [`TRAINING_THREADS`].
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How this process shares the node's cores with other processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreShare {
    /// SLURM says how many cores each task of the node has.
    Slurm { cores: usize },
    /// Per-core lock files in `dir`, for `cores` cores.
    Locks { dir: PathBuf, cores: usize },
    /// No lock folder could be made: this process's own count only.
    Alone { cores: usize },
}

impl CoreShare {
    /// From the environment: SLURM's per-task share when `SLURM_CPUS_ON_NODE`
    /// and `SLURM_NTASKS_PER_NODE` are set, otherwise lock files.
    pub fn from_env() -> CoreShare {
        let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
        // SLURM_NTASKS_PER_NODE may read "4(x2)" on uneven allocations; its
        // leading number is this node's when the job asked for it per node.
        let tasks = std::env::var("SLURM_NTASKS_PER_NODE")
            .ok()
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<usize>().ok()));
        if let (Some(cpus), Some(tasks)) = (number("SLURM_CPUS_ON_NODE"), tasks.filter(|t| *t > 0)) {
            return CoreShare::Slurm { cores: (cpus / tasks).clamp(1, machine) };
        }
        let dir = std::env::var_os("SNAC_CORE_LOCK_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "user".into());
            let user: String = user.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
            std::env::temp_dir().join(format!("snac-cores-{user}"))
        });
        match std::fs::create_dir_all(&dir) {
            Ok(()) => CoreShare::Locks { dir, cores: machine },
            Err(err) => {
                eprintln!(
                    "note: cannot make {} for per-core lock files ({err}); other snac processes on this node are \
                     not seen when folds spread over the cores (set SNAC_CORE_LOCK_DIR)",
                    dir.display()
                );
                CoreShare::Alone { cores: machine }
            }
        }
    }

    /// Cores this process may train on.
    pub fn cores(&self) -> usize {
        match self {
            CoreShare::Slurm { cores } | CoreShare::Locks { cores, .. } | CoreShare::Alone { cores } => *cores,
        }
    }

    /// Locks the lock file of a core no thread of any process holds.
    fn lock_free_core(&self) -> Option<File> {
        let CoreShare::Locks { dir, cores } = self else { return None };
        (0..*cores).find_map(|core| {
            let file =
                File::options().create(true).truncate(false).write(true).open(dir.join(format!("core{core}.lock")));
            file.ok().filter(|f| f.try_lock().is_ok())
        })
    }
}

/// This process's share of the node's cores, read once.
pub fn core_share() -> &'static CoreShare {
    static SHARE: OnceLock<CoreShare> = OnceLock::new();
    SHARE.get_or_init(CoreShare::from_env)
}

/// One thread counted in [`TRAINING_THREADS`] (and holding a core's lock
/// file, when one is free) until dropped. Trial workers hold one for their
/// lifetime, so that folds only spread onto cores no worker, of this
/// process or another, uses.
pub struct CoreClaim {
    counted: bool,
    _lock: Option<File>,
}

impl CoreClaim {
    /// Counts the calling thread, whatever the count (once per thread), and
    /// takes a free core's lock file if there is one.
    pub fn this_thread() -> CoreClaim {
        if COUNTED.with(|c| c.replace(true)) {
            return CoreClaim { counted: false, _lock: None };
        }
        TRAINING_THREADS.fetch_add(1, Ordering::SeqCst);
        CoreClaim { counted: true, _lock: core_share().lock_free_core() }
    }

    /// A claim on a core no counted thread uses (of this process, and with
    /// lock files of any process), if there is one; the thread that runs on
    /// it marks itself with [`CoreClaim::this_thread`].
    fn idle_core() -> Option<CoreClaim> {
        let share = core_share();
        TRAINING_THREADS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < share.cores()).then_some(n + 1))
            .ok()?;
        let lock = match share {
            CoreShare::Locks { .. } => match share.lock_free_core() {
                Some(lock) => Some(lock),
                None => {
                    // Every core is taken by some process: give the count back
                    // (not through Drop, which would unmark this thread).
                    TRAINING_THREADS.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
            },
            CoreShare::Slurm { .. } | CoreShare::Alone { .. } => None,
        };
        Some(CoreClaim { counted: true, _lock: lock })
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
