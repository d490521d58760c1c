//! One trial of the global search: decode its architecture, check that its
//! training fits in memory, train it (every fold with k-fold) and measure
//! what the study's objectives and constraints need.

use crate::folds::FoldsOutcome;
use crate::pruning::Pruning;
use crate::setup::SearchSetup;
use anyhow::{Context, Result, ensure};
use serde_json::json;
use snac_core::arch::Arch;
use snac_core::config::{ConstraintMetric, Objective};
use snac_core::cost::{self, GLOBAL_SEARCH_BITS};
use snac_core::estimate::Estimate;
use snac_core::search::Trial;
use snac_core::space;

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
pub fn evaluate_trial(setup: &SearchSetup, trial: &mut Trial, pruning: Option<&Pruning>) -> Result<TrialResult> {
    let arch = space::decode(&setup.spec, trial)?;
    let estimate = if setup.wants_hardware() {
        Some(setup.hardware.estimate(&arch).context("FPGA resource estimate")?)
    } else {
        None
    };
    let seed = setup.experiment.search.seed ^ trial.training_seed();
    let bops = cost::bops(&arch, setup.formula, GLOBAL_SEARCH_BITS)?;
    // With the parameters the space drew: two round trips on PostgreSQL.
    // BOPs before training: a pruner compares trials of similar cost.
    trial.set_user_attrs(&[("seed", json!(seed)), ("arch", json!(arch.summary())), ("bops", json!(bops))])?;
    let mut config = setup.train_config(seed);
    config.on_epoch = pruning.map(|p| p.hook(trial.id, bops));
    check_memory(setup, &arch, config.batch_size)?;
    let FoldsOutcome { kept: outcome, fold_accuracies, cores, .. } = setup.train_folds(&arch, &config)?;
    if fold_accuracies.is_some() {
        // How many cores the folds spread over (crate::folds), for whoever
        // wonders why a trial took as long as it did.
        trial.set_user_attr("fold_cores", &json!(cores))?;
    }
    let accuracy = match &fold_accuracies {
        Some(accuracies) => accuracies.iter().sum::<f64>() / accuracies.len() as f64,
        None => outcome.val_accuracy,
    };
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

/// The values of the study's objectives for a result.
pub fn objective_values(setup: &SearchSetup, result: &TrialResult) -> Vec<f64> {
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
    pub fn metric(&self, metric: ConstraintMetric) -> f64 {
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
