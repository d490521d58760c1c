//! Running an experiment from Python: the stages run on a Rust thread with
//! the GIL released, while the calling thread hands progress events to a
//! Python callback (which draws a Jupyter bar) and watches for Ctrl-C or a
//! kernel interrupt. The first interrupt stops new trials and gives running
//! ones `SNAC_STOP_GRACE` seconds (10 by default) before they are cancelled
//! and recorded as interrupted; a second cancels them at once. Completed
//! trials are kept either way, as with the command line.

use crate::py_err;
use anyhow::{Context, Result, bail, ensure};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::{Value, json};
use snac::setup::{Participation, SearchSetup};
use snac::stages::{self, Stages};
use snac::ui::{self, TrialEvent, Ui};
use snac_core::arch::Shape;
use snac_core::config::{self, Experiment, ModelType, Overrides};
use snac_core::data::{Dataset, Split};
use snac_core::interrupt;
use snac_core::search::FrozenTrial;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One run at a time per process: the display and the stop flags are
/// process-wide.
static RUNNING: Mutex<()> = Mutex::new(());

/// A dataset given as arrays, already checked by the Python half: samples
/// as little-endian `f32` bytes, labels as little-endian `u32` bytes.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct ArrayData<'py> {
    sample_shape: Vec<usize>,
    num_classes: usize,
    x_train: Bound<'py, PyBytes>,
    y_train: Bound<'py, PyBytes>,
    x_val: Bound<'py, PyBytes>,
    y_val: Bound<'py, PyBytes>,
}

/// Runs an experiment and returns what it left behind, as JSON.
///
/// `config_path` or `config_text` (with `source` naming it in errors) gives
/// the config; neither means the embedded example. `stages` is `all`
/// (`snac run`), `search` or `local`. Overrides mirror the CLI flags.
#[pyfunction]
#[pyo3(signature = (stages, on_event, config_path=None, config_text=None, source=None, trials=None, epochs=None,
                    seed=None, workers=None, results_dir=None, storage=None, study=None, data=None, arch=None,
                    timeout=None, timeout_hard=None))]
#[allow(clippy::too_many_arguments)]
pub fn run_experiment(
    py: Python<'_>,
    stages: &str,
    on_event: Bound<'_, PyAny>,
    config_path: Option<PathBuf>,
    config_text: Option<String>,
    source: Option<String>,
    trials: Option<usize>,
    epochs: Option<usize>,
    seed: Option<u64>,
    workers: Option<usize>,
    results_dir: Option<PathBuf>,
    storage: Option<String>,
    study: Option<String>,
    data: Option<ArrayData<'_>>,
    arch: Option<PathBuf>,
    timeout: Option<String>,
    timeout_hard: Option<String>,
) -> PyResult<String> {
    let stage = match stages {
        "all" | "search" | "local" => stages.to_string(),
        other => return Err(py_err(anyhow::anyhow!("stages '{other}' is unknown; accepted: all, search, local"))),
    };
    let overrides = Overrides { results_dir, trials, epochs, seed, workers, timeout, timeout_hard };
    let dataset = data.map(|d| d.to_dataset()).transpose().map_err(py_err)?;
    let Ok(_one_at_a_time) = RUNNING.try_lock() else {
        return Err(py_err(anyhow::anyhow!(
            "another snac_pack run is in progress in this process; wait for it to finish (runs share the \
             process's progress display and stop flags)"
        )));
    };
    let work = move || -> Result<Value> {
        let mut experiment = load(config_path.as_deref(), config_text.as_deref(), source.as_deref())?;
        experiment.apply(&overrides)?;
        if storage.is_some() {
            experiment.search.storage = storage;
        }
        if study.is_some() {
            experiment.search.study_name = study;
        }
        for key in &experiment.unused_keys {
            log::info!("note: {}", key.note(&experiment.source));
        }
        let setup = match dataset {
            Some(mut dataset) => {
                dataset.sample_shape = sample_shape_for(experiment.search.model_type, dataset.sample_shape);
                SearchSetup::with_dataset(experiment, dataset)?
            }
            None => SearchSetup::prepare(experiment)?,
        };
        run_stages(&setup, &stage, arch.as_deref())
    };
    let (outcome, interrupted_by_user) = drive(py, &on_event, work)?;
    let mut outcome = outcome.map_err(py_err)?;
    outcome["interrupted_by_user"] = json!(interrupted_by_user);
    Ok(outcome.to_string())
}

/// The config from a file, a YAML text, or the embedded example.
fn load(path: Option<&Path>, text: Option<&str>, source: Option<&str>) -> Result<Experiment> {
    Ok(match (path, text) {
        (Some(path), _) => config::load(path)?,
        (None, Some(text)) => config::load_str(text, Path::new(source.unwrap_or("<config text>")))?,
        (None, None) => config::load_str(snac::cmd::EXAMPLE_CONFIG, Path::new("<embedded examples/digits_mlp.yaml>"))?,
    })
}

/// Runs `stage` of `setup` and describes the outcome as JSON.
fn run_stages(setup: &SearchSetup, stage: &str, arch: Option<&Path>) -> Result<Value> {
    let results_dir = setup.experiment.output.results_dir.clone();
    let storage_url = stages::storage_url(setup, &results_dir);
    let study_name = snac::setup::study_name(&setup.experiment.search);
    if stage == "local" {
        let rows = stages::local(setup, &results_dir, arch)?;
        return Ok(json!({
            "results_dir": results_dir, "storage_url": storage_url, "study_name": study_name,
            "local": rows, "interrupted": interrupt::stop_requested(),
        }));
    }
    let how = Participation::for_run(setup);
    let which = if stage == "all" { Stages::All } else { Stages::Search };
    let outcome = stages::run(setup, which, &how)?;
    Ok(json!({
        "results_dir": outcome.results_dir,
        "storage_url": outcome.storage_url,
        "study_name": outcome.study_name,
        "interrupted": outcome.search.interrupted,
        "timed_out": outcome.timed_out,
        "completed": outcome.completed(),
        "n_trials": setup.experiment.search.n_trials,
        "best_trial": outcome.search.best.as_ref().map(|t| t.number),
        "local": outcome.local,
        "export_dir": outcome.export_dir,
        "exports": outcome.exports,
        "metric_names": snac::report::objectives(setup).into_iter().map(|o| o.name).collect::<Vec<_>>(),
    }))
}

impl ArrayData<'_> {
    /// The arrays as a [`Dataset`], with the sizes checked.
    fn to_dataset(&self) -> Result<Dataset> {
        let numel: usize = self.sample_shape.iter().product();
        ensure!(numel > 0, "sample shape {:?} has no values", self.sample_shape);
        let split = |name: &str, x: &Bound<PyBytes>, y: &Bound<PyBytes>| -> Result<Split> {
            let x: Vec<f32> =
                x.as_bytes().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let y: Vec<u32> =
                y.as_bytes().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            ensure!(
                x.len() == y.len() * numel,
                "x_{name} holds {} values but y_{name} has {} labels of {numel} values each",
                x.len(),
                y.len()
            );
            if let Some(bad) = y.iter().find(|&&c| c as usize >= self.num_classes) {
                bail!("y_{name} has label {bad}; labels must be 0..{}", self.num_classes - 1);
            }
            Ok(Split { x, y })
        };
        let sample_shape = match self.sample_shape[..] {
            [n] => Shape::Flat(n),
            [height, width] => Shape::Image { height, width, channels: 1 },
            [height, width, channels] => Shape::Image { height, width, channels },
            _ => bail!(
                "samples of shape {:?} are not supported; accepted: (features,), (height, width) or \
                 (height, width, channels), channels last",
                self.sample_shape
            ),
        };
        Ok(Dataset {
            name: "arrays".into(),
            sample_shape,
            num_classes: self.num_classes,
            train: split("train", &self.x_train, &self.y_train).context("x_train/y_train")?,
            val: split("val", &self.x_val, &self.y_val).context("x_val/y_val")?,
        })
    }
}

/// Sends each display event to the calling thread as JSON.
struct ChannelUi {
    tx: Mutex<Sender<String>>,
}

impl ChannelUi {
    fn send(&self, event: Value) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(event.to_string());
    }
}

impl Ui for ChannelUi {
    fn message(&self, level: log::Level, text: &str) {
        self.send(json!({"kind": "message", "level": level.as_str().to_lowercase(), "text": text,
                         "line": ui::format_message(level, text)}));
    }
    fn search_started(&self, total: usize, best: Option<&FrozenTrial>) {
        self.send(json!({"kind": "search_started", "total": total, "best": ui::best_message(best)}));
    }
    fn trial_finished(&self, event: &TrialEvent) {
        let trial = event.trial;
        self.send(json!({
            "kind": "trial", "number": trial.number, "state": format!("{:?}", trial.state).to_uppercase(),
            "values": trial.values, "done": event.done, "total": event.total,
            "best": ui::best_message(event.best), "line": ui::trial_line(event),
        }));
    }
    fn search_finished(&self) {
        self.send(json!({"kind": "search_finished"}));
    }
}

/// Runs `work` on a new thread, handing its events to `on_event` and
/// turning interrupts into stop requests; returns its result and whether
/// the user interrupted it.
fn drive<T: Send + 'static>(
    py: Python<'_>,
    on_event: &Bound<'_, PyAny>,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> PyResult<(Result<T>, bool)> {
    let (tx, rx) = mpsc::channel::<String>();
    let rx = Mutex::new(rx);
    let _display = ui::install(Arc::new(ChannelUi { tx: Mutex::new(tx) }));
    interrupt::reset();
    let handle = std::thread::Builder::new()
        .name("snac-run".into())
        .spawn(work)
        .map_err(|e| py_err(anyhow::anyhow!("could not start the run's thread: {e}")))?;
    let grace = snac::signals::grace();
    let mut first_interrupt: Option<Instant> = None;
    let mut callback_ok = true;
    // Ctrl-C raises KeyboardInterrupt in whatever Python code runs: a check
    // of the signals here, or the progress callback.
    let interrupted = |first_interrupt: &mut Option<Instant>| {
        if first_interrupt.is_none() {
            interrupt::request_stop();
            *first_interrupt = Some(Instant::now());
            log::warn!(
                "stopping: no new trials start; running ones get {:.0} s to finish, then are recorded as \
                 interrupted (interrupt again to stop them now)",
                grace.as_secs_f64()
            );
        } else {
            interrupt::cancel();
        }
    };
    loop {
        let finished = handle.is_finished();
        for event in receive(py, &rx, finished) {
            if !callback_ok {
                continue;
            }
            match on_event.call1((event,)) {
                Err(err) if err.is_instance_of::<PyKeyboardInterrupt>(py) => interrupted(&mut first_interrupt),
                Err(err) => {
                    // A broken progress display must not lose the run.
                    err.print(py);
                    callback_ok = false;
                }
                Ok(_) => {}
            }
        }
        if finished {
            break;
        }
        if let Err(err) = py.check_signals() {
            if !err.is_instance_of::<PyKeyboardInterrupt>(py) {
                err.print(py);
            }
            interrupted(&mut first_interrupt);
        }
        if first_interrupt.is_some_and(|t| t.elapsed() >= grace) {
            interrupt::cancel();
        }
    }
    let result = match handle.join() {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(anyhow::anyhow!("internal error (please report it): the run panicked: {what}"))
        }
    };
    interrupt::reset();
    Ok((result, first_interrupt.is_some()))
}

/// The events waiting (all of them once the run finished), waiting up to
/// 100 ms for the first without holding the GIL.
fn receive(py: Python<'_>, rx: &Mutex<Receiver<String>>, finished: bool) -> Vec<String> {
    let mut events = Vec::new();
    if !finished {
        let next = py.detach(|| rx.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(Duration::from_millis(100)));
        match next {
            Ok(event) => events.push(event),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return events,
        }
    }
    events.extend(rx.lock().unwrap_or_else(|e| e.into_inner()).try_iter());
    events
}

/// Samples given as 2-D arrays are sets (elements × features) for a
/// DeepSets search and one-channel images otherwise.
fn sample_shape_for(model_type: ModelType, shape: Shape) -> Shape {
    match (model_type, shape) {
        (ModelType::DeepSets, Shape::Image { height, width, channels: 1 }) => {
            Shape::Set { elements: height, features: width }
        }
        (_, shape) => shape,
    }
}
