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

use crate::folds::CoreClaim;
use crate::heartbeat::{Running, WORKER_KEY, others_may_fail, worker_identity};
use crate::outputs::{self, CsvLog, rank_csv_path};
use crate::pruning::{Pruning, pruned};
use crate::report::LiveReport;
use crate::setup::{Participation, SearchSetup, slurm_rank};
use crate::trial::{TrialResult, evaluate_trial, objective_values};
use crate::ui::{self, TrialEvent};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use snac_core::config::SamplerKind;
use snac_core::interrupt;
use snac_core::search::{CONSTRAINTS_KEY, FrozenTrial, Study, Trial, TrialState};
use snac_core::storage::{self, INTERRUPTED_KEY, Storage, counts_against_budget};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Summary of a finished search.
pub struct SearchSummary {
    pub trials: Vec<FrozenTrial>,
    pub best: Option<FrozenTrial>,
    /// Stopped by Ctrl-C or SIGTERM before the budget was used up.
    pub interrupted: bool,
}

/// What every trial worker of one search shares.
struct SearchRun<'a> {
    setup: &'a SearchSetup,
    study: &'a Study,
    results_dir: &'a Path,
    how: &'a Participation,
    progress: Progress,
    /// The pruner's view of the study, with `search.pruner`.
    pruning: Option<Pruning>,
}

/// The search's tallies, updated as trials finish.
struct Progress {
    csv: Mutex<CsvLog>,
    /// The best trial so far, kept up to date from each finished trial (the
    /// order is total, so the best of (best, new) is the best of all).
    best_so_far: Mutex<Option<FrozenTrial>>,
    /// Trials finished in this run, of `to_run`.
    done: AtomicUsize,
    to_run: usize,
    /// Objective names, for the per-trial lines.
    metric_names: Vec<String>,
    failures: AtomicUsize,
    running: Running,
    live_report: LiveReport,
}

impl Progress {
    fn new(setup: &SearchSetup, csv: CsvLog, existing: &[FrozenTrial], to_run: usize, results_dir: &Path) -> Progress {
        let best_so_far = outputs::best_by_accuracy(existing);
        ui::current().search_started(to_run, best_so_far.as_ref());
        Progress {
            csv: Mutex::new(csv),
            best_so_far: Mutex::new(best_so_far),
            done: AtomicUsize::new(0),
            to_run,
            metric_names: crate::report::objectives(setup).into_iter().map(|o| o.name).collect(),
            failures: AtomicUsize::new(0),
            running: Running::default(),
            live_report: LiveReport::new(results_dir),
        }
    }
}

/// Runs the global search of `setup` in `results_dir`.
pub fn run(setup: &SearchSetup, results_dir: &Path, how: &Participation) -> Result<SearchSummary> {
    let _lock = lock_results_dir(results_dir, how)?;
    let (study, study_name) = open_study(setup, results_dir, how)?;
    let interrupted = fail_interrupted(&study, how)?;
    let existing = study.trials()?;
    let to_run = announce(setup, &study_name, results_dir, &existing, interrupted.len());
    let csv = open_csv(setup, results_dir, how, &existing)?;
    let search = &setup.experiment.search;
    let workers = search.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let workers = workers.min(to_run.max(1));
    let progress = Progress::new(setup, csv, &existing, to_run, results_dir);
    let pruning = Pruning::of(setup, &study);
    let run = SearchRun { setup, study: &study, results_dir, how, progress, pruning };
    run_workers(&run, workers)?;
    finish(&run)
}

/// Creates the results dir and, unless this is a `snac worker`, takes its
/// lock (held until the returned file is dropped).
fn lock_results_dir(results_dir: &Path, how: &Participation) -> Result<Option<File>> {
    std::fs::create_dir_all(results_dir).with_context(|| format!("creating {}", results_dir.display()))?;
    let lock_path = results_dir.join(".snac.lock");
    if how.worker {
        return Ok(None);
    }
    let lock = File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another snac process is running in {} (it holds {}); wait for it or use --results-dir \
             (to share one study between processes, use `snac worker`)",
            results_dir.display(),
            lock_path.display()
        )
    })?;
    Ok(Some(lock))
}

/// Opens (or creates) the study in its storage and records its objectives;
/// returns it with its name.
fn open_study(setup: &SearchSetup, results_dir: &Path, how: &Participation) -> Result<(Study, String)> {
    let search = &setup.experiment.search;
    let storage: Arc<dyn Storage> = match &search.storage {
        Some(url) => storage::open(url)?,
        None if how.shared => {
            bail!("a shared study needs a storage: give --storage URL (or search.storage in the config)")
        }
        None => storage::open(&results_dir.join("study.db").to_string_lossy())?,
    };
    let study_name = crate::setup::study_name(search).to_string();
    let study = Study::create_or_load(storage, &study_name, &setup.directions(), setup.sampler(), search.seed)
        .with_context(|| format!("opening study '{study_name}'"))?
        .with_trial_system_attrs([(WORKER_KEY.to_string(), worker_identity())]);
    let study = if how.shared { study.with_stale_grace(how.heartbeat_grace) } else { study };
    crate::report::record_objectives(setup, &study)?;
    Ok((study, study_name))
}

/// FAILs the trials left RUNNING by a process that died; returns their numbers.
fn fail_interrupted(study: &Study, how: &Participation) -> Result<Vec<u64>> {
    // We hold the lock of the study's own results dir, so RUNNING trials
    // belong to a process that died. In a shared study, only those whose
    // heartbeat is stale do.
    let storage = study.storage();
    let mut interrupted = Vec::new();
    if how.shared {
        interrupted = storage.fail_stale_trials(study.info().id, how.heartbeat_grace)?;
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
    Ok(interrupted)
}

/// Says what a resumed study keeps and warns of an NSGA-II search too short
/// to leave its first generation; returns how many trials are left to run.
fn announce(
    setup: &SearchSetup,
    study_name: &str,
    results_dir: &Path,
    existing: &[FrozenTrial],
    just_now: usize,
) -> usize {
    let search = &setup.experiment.search;
    let done_before = existing.iter().filter(|t| counts_against_budget(t)).count();
    let to_run = search.n_trials.saturating_sub(done_before);
    // Interrupted trials (by a signal, or a process that died) are FAIL and
    // do not count: their places are drawn again.
    let interrupted_total = existing.iter().filter(|t| !counts_against_budget(t)).count();
    if done_before > 0 || interrupted_total > 0 {
        log::info!(
            "resuming study '{study_name}' in {}: {done_before} finished trials kept, {interrupted_total} \
             interrupted ({just_now} just now), {to_run} to run",
            results_dir.display(),
        );
    }
    let choice = setup.sampler_choice();
    if choice.kind == SamplerKind::Nsga2 && search.n_trials < 2 * choice.population_size {
        log::warn!(
            "{} trials is less than two generations of population {}: NSGA-II never leaves its random \
             first generation, so this search is effectively random (set search.population_size lower or \
             search.n_trials higher)",
            search.n_trials,
            choice.population_size
        );
    }
    to_run
}

/// Rewrites the CSV from the storage: the run's own, or a worker's per-rank one.
fn open_csv(setup: &SearchSetup, results_dir: &Path, how: &Participation, existing: &[FrozenTrial]) -> Result<CsvLog> {
    if !how.worker {
        return CsvLog::rebuild(results_dir, setup, existing);
    }
    // This worker's own trials (those of its rank, when it has one).
    let path = rank_csv_path(results_dir, setup);
    let rank = slurm_rank();
    let mine: Vec<FrozenTrial> = existing
        .iter()
        .filter(|t| rank.is_some() && t.system_attrs.get(WORKER_KEY).and_then(|w| w.get("rank")) == Some(&json!(rank)))
        .cloned()
        .collect();
    CsvLog::rebuild_at(path, setup, &mine)
}

/// Runs `workers` trial workers and the heartbeat thread until the budget is
/// used up, a stop is requested or a storage error ends a worker.
fn run_workers(run: &SearchRun, workers: usize) -> Result<()> {
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| run.progress.running.beat(run.study.storage().as_ref(), run.how.heartbeat_interval, &done));
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let _core = CoreClaim::this_thread();
                    if let Err(err) = work(run) {
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
    ui::current().search_finished();
    if let Some(err) = first_error.into_inner().unwrap() {
        return Err(err.context("the search stopped"));
    }
    Ok(())
}

/// One trial worker: runs the trials the study hands out until there are
/// none left or a stop is requested.
fn work(run: &SearchRun) -> Result<()> {
    let how = run.how;
    loop {
        if interrupt::stop_requested() {
            return Ok(());
        }
        // The budget is the study's: other threads and processes draw from it too.
        match run.study.ask_within(Some(run.setup.experiment.search.n_trials))? {
            Some(trial) => {
                run_one(run, trial)?;
                run.progress.live_report.after_trial(run.setup, run.study, run.results_dir);
            }
            None if others_may_fail(run.study, how)? => {
                std::thread::sleep(how.heartbeat_interval.min(Duration::from_secs(1)))
            }
            None => return Ok(()),
        }
    }
}

/// After the workers: the final CSV, the best model and the summary.
fn finish(run: &SearchRun) -> Result<SearchSummary> {
    let SearchRun { setup, study, results_dir, how, progress, .. } = run;
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
    let (written, cost) = progress.live_report.stats();
    if written > 0 {
        log::debug!(
            "report.html was rewritten {written} times during the search, {:.1} ms each",
            cost.as_secs_f64() * 1e3
        );
    }
    let failed = progress.failures.load(Ordering::SeqCst);
    if failed > 0 {
        log::warn!("{failed} trial(s) failed; their reasons are in the CSV's fail_reason column");
    }
    // Stopped early if the budget still has room (a stop after the last
    // trial changes nothing).
    let n_trials = setup.experiment.search.n_trials;
    let interrupted =
        interrupt::stop_requested() && trials.iter().filter(|t| counts_against_budget(t)).count() < n_trials;
    Ok(SearchSummary { trials, best, interrupted })
}

/// Runs one trial the study handed out, tells the study its outcome and
/// records it in the CSV and the progress bar.
fn run_one(run: &SearchRun, mut trial: Trial) -> Result<()> {
    let SearchRun { setup, study, results_dir, progress, .. } = run;
    let Progress { csv, best_so_far, failures, running, .. } = progress;
    running.start(&trial);
    let outcome = evaluate_trial(setup, &mut trial, run.pruning.as_ref());
    let told = match &outcome {
        Ok(result) => {
            let values = objective_values(setup, result);
            record_result(&trial, result, results_dir)?;
            if run.pruning.is_none() {
                // The training curve, as Optuna's intermediate values (with a
                // pruner they were stored epoch by epoch).
                let curve: Vec<(u64, f64)> =
                    result.outcome.history.iter().map(|e| (e.epoch as u64, e.val_accuracy)).collect();
                study.storage().set_trial_intermediate_values(trial.id, &curve)?;
            }
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
        Err(err) if pruned(err).is_some() => {
            let stop = pruned(err).expect("checked");
            // The last accuracy, where the CSV and the report look for it.
            trial.set_user_attrs(&[
                ("performance_metric", json!(stop.accuracy)),
                ("pruned_at_epoch", json!(stop.epoch)),
                ("prune_reason", json!(stop.reason)),
            ])?;
            study.tell_pruned(&trial)?
        }
        Err(err) if interrupt::is_interrupted(err) => {
            // Like a trial of a killed process: FAIL, not counted against
            // the budget, so a rerun draws its place again.
            trial.set_system_attr(INTERRUPTED_KEY, &Value::Bool(true))?;
            study.tell(&trial, Err(format!("{err:#}")))?
        }
        Err(err) => {
            failures.fetch_add(1, Ordering::SeqCst);
            study.tell(&trial, Err(format!("{err:#}")))?
        }
    };
    running.stop(trial.id);
    if !told {
        log::warn!("trial {} was marked finished by someone else; its result was not stored", trial.number);
    }
    let frozen = study.storage().get_trial(trial.id)?;
    csv.lock().unwrap().append(&frozen)?;
    let mut best = best_so_far.lock().unwrap();
    let candidates: Vec<FrozenTrial> = best.take().into_iter().chain([frozen.clone()]).collect();
    *best = outputs::best_by_accuracy(&candidates);
    let done = progress.done.fetch_add(1, Ordering::SeqCst) + 1;
    let event = TrialEvent {
        trial: &frozen,
        metric_names: &progress.metric_names,
        done,
        total: progress.to_run,
        best: best.as_ref(),
    };
    ui::current().trial_finished(&event);
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
    result.outcome.weights.save_npz(&weights_path.with_extension("npz"))?;
    Ok(())
}
