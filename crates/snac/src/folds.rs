//! Training one trial's architecture: on the train/validation split, or on
//! every fold with k-fold, the folds spread over the cores no trial worker
//! uses ([`CoreClaim`]); a panic in training becomes an error.

use crate::setup::SearchSetup;
use anyhow::{Context, Result};
use snac_core::arch::Arch;
use snac_core::data::Split;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
