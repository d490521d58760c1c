//! Where a run's progress and messages go. Stages never print to stderr
//! themselves: messages go through the `log` macros (`log::warn!`, ...) and
//! trial progress through [`current`]'s [`Ui`], so the same run shows
//!
//! - at a terminal: a progress bar, with every message printed above it;
//! - in a batch log (SLURM's `slurm-N.out`, stderr not a terminal): one line
//!   per finished, failed or pruned trial and a summary every
//!   [`SUMMARY_EVERY`] (done/total, best so far, ETA);
//! - in Python: events handed to the `snac_pack` package, which draws a
//!   Jupyter progress bar (`crates/snac-py`).
//!
//! The level is `-q`/`-v` on the command line, else `SNAC_LOG`, else
//! `RUST_LOG` (`error`, `warn`, `info`, `debug`, `trace`); the default is
//! `info`. Warnings and errors carry a `warning:`/`error:` prefix.

use log::{Level, LevelFilter, Log, Metadata, Record};
use snac_core::search::{FrozenTrial, TrialState};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often a batch log gets a summary line.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// One finished trial, as a [`Ui`] sees it.
pub struct TrialEvent<'a> {
    pub trial: &'a FrozenTrial,
    /// Objective names, in the order of `trial.values`.
    pub metric_names: &'a [String],
    /// Trials finished in this run so far (this one included) and to run.
    pub done: usize,
    pub total: usize,
    /// The best trial so far (by validation accuracy), if any completed.
    pub best: Option<&'a FrozenTrial>,
}

/// A run's progress display.
pub trait Ui: Send + Sync {
    /// A message that passed the level filter.
    fn message(&self, level: Level, text: &str);
    /// The global search starts `total` trials.
    fn search_started(&self, total: usize, best: Option<&FrozenTrial>);
    /// A trial finished, failed or was pruned.
    fn trial_finished(&self, event: &TrialEvent);
    /// The global search ended (the bar, if any, goes).
    fn search_finished(&self);
}

static CURRENT: RwLock<Option<Arc<dyn Ui>>> = RwLock::new(None);

/// The display in use: the one [`install`]ed, else the terminal's.
pub fn current() -> Arc<dyn Ui> {
    if let Some(ui) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return ui.clone();
    }
    let mut slot = CURRENT.write().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| Arc::new(TerminalUi::new(std::io::stderr().is_terminal()))).clone()
}

/// Makes `ui` the display until the guard drops (the previous one returns).
pub fn install(ui: Arc<dyn Ui>) -> InstallGuard {
    let previous = CURRENT.write().unwrap_or_else(|e| e.into_inner()).replace(ui);
    InstallGuard { previous }
}

/// Puts the previous display back when dropped.
pub struct InstallGuard {
    previous: Option<Arc<dyn Ui>>,
}

impl Drop for InstallGuard {
    fn drop(&mut self) {
        *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = self.previous.take();
    }
}

/// The `log` backend: everything at or above the level goes to [`current`].
struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            current().message(record.level(), &record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend (once per process) at `level`: the flags'
/// level when given, else `SNAC_LOG`'s, else `RUST_LOG`'s, else `info`.
pub fn init_logging(level: Option<LevelFilter>) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level.or_else(env_level).unwrap_or(LevelFilter::Info));
}

/// The level named by `SNAC_LOG` or `RUST_LOG` (a plain level; `RUST_LOG`'s
/// per-module filters are not read, only a bare level).
fn env_level() -> Option<LevelFilter> {
    ["SNAC_LOG", "RUST_LOG"].iter().find_map(|var| std::env::var(var).ok()?.trim().parse().ok())
}

/// The level of `-q`/`-v` counts: each `-v` one level more, each `-q` one
/// less, from `info`; `None` when neither is given.
pub fn level_from_flags(verbose: u8, quiet: u8) -> Option<LevelFilter> {
    if verbose == 0 && quiet == 0 {
        return None;
    }
    let levels = [LevelFilter::Off, LevelFilter::Error, LevelFilter::Warn, LevelFilter::Info, LevelFilter::Debug];
    let index = (3 + verbose as i32 - quiet as i32).clamp(0, levels.len() as i32);
    Some(levels.get(index as usize).copied().unwrap_or(LevelFilter::Trace))
}

/// A message as printed: warnings and errors prefixed.
pub fn format_message(level: Level, text: &str) -> String {
    match level {
        Level::Error => format!("error: {text}"),
        Level::Warn => format!("warning: {text}"),
        Level::Info => text.to_string(),
        Level::Debug => format!("debug: {text}"),
        Level::Trace => format!("trace: {text}"),
    }
}

/// One line per finished trial: number, state, values (or the reason it
/// failed), duration and worker.
pub fn trial_line(event: &TrialEvent) -> String {
    let trial = event.trial;
    let state = format!("{:?}", trial.state).to_uppercase();
    let duration = match (trial.datetime_start, trial.datetime_complete) {
        (Some(start), Some(end)) => format!(" in {:.2} s", (end - start).num_milliseconds() as f64 / 1e3),
        _ => String::new(),
    };
    let worker = trial.system_attrs.get(crate::heartbeat::WORKER_KEY).map(worker_name).unwrap_or_default();
    let detail = match (&trial.values, trial.state) {
        (Some(values), _) => {
            let pairs: Vec<String> =
                event.metric_names.iter().zip(values).map(|(name, v)| format!("{name}={}", short(*v))).collect();
            pairs.join(" ")
        }
        (None, TrialState::Pruned) => match trial.user_attrs.get("performance_metric").and_then(|v| v.as_f64()) {
            Some(accuracy) => format!("last performance_metric={}", short(accuracy)),
            None => String::new(),
        },
        (None, _) => trial
            .user_attrs
            .get(snac_core::search::FAIL_REASON_KEY)
            .and_then(|v| v.as_str())
            .unwrap_or("no reason recorded")
            .to_string(),
    };
    format!("trial {} {state}{duration}{worker} [{}/{}]: {detail}", trial.number, event.done, event.total)
}

/// `on host:pid (rank r)` from a stored worker identity.
fn worker_name(worker: &serde_json::Value) -> String {
    let host = worker.get("host").and_then(|h| h.as_str()).unwrap_or("?");
    let pid = worker.get("pid").and_then(|p| p.as_u64()).unwrap_or(0);
    match worker.get("rank").and_then(|r| r.as_str()) {
        Some(rank) => format!(" on {host}:{pid} (rank {rank})"),
        None => format!(" on {host}:{pid}"),
    }
}

/// A value in few characters: 4 decimals, or scientific for large ones.
fn short(v: f64) -> String {
    if v.abs() >= 1e4 { format!("{v:.4e}") } else { format!("{v:.4}") }
}

/// "best acc 0.9312 (trial 12, <arch>)", or nothing before a trial completed.
pub fn best_message(best: Option<&FrozenTrial>) -> String {
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

/// The command line's display: a bar at a terminal, lines in a batch log.
pub struct TerminalUi {
    terminal: bool,
    state: Mutex<TerminalState>,
}

#[derive(Default)]
struct TerminalState {
    bar: Option<indicatif::ProgressBar>,
    started: Option<Instant>,
    last_summary: Option<Instant>,
    failed: usize,
}

impl TerminalUi {
    pub fn new(terminal: bool) -> TerminalUi {
        TerminalUi { terminal, state: Mutex::new(TerminalState::default()) }
    }

    /// Prints `line` to stderr, above the bar when one is drawn.
    fn print(&self, line: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &state.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Ui for TerminalUi {
    fn message(&self, level: Level, text: &str) {
        self.print(&format_message(level, text));
    }

    fn search_started(&self, total: usize, best: Option<&FrozenTrial>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state =
            TerminalState { started: Some(Instant::now()), last_summary: Some(Instant::now()), ..Default::default() };
        if self.terminal {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} trials, ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar.set_message(best_message(best));
            state.bar = Some(bar);
        }
    }

    fn trial_finished(&self, event: &TrialEvent) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if event.trial.state == TrialState::Fail {
            state.failed += 1;
        }
        // A completed trial is news (info); one that failed is a warning.
        let level = if event.trial.state == TrialState::Complete { Level::Info } else { Level::Warn };
        let shown = level <= log::max_level();
        if let Some(bar) = &state.bar {
            if event.trial.state != TrialState::Complete && shown {
                let line = trial_line(event);
                bar.suspend(|| eprintln!("{line}"));
            }
            bar.inc(1);
            bar.set_message(best_message(event.best));
            return;
        }
        if shown {
            eprintln!("{}", trial_line(event));
        }
        let due = state.last_summary.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY);
        if log::max_level() >= LevelFilter::Info && (due || event.done == event.total) {
            state.last_summary = Some(Instant::now());
            eprintln!("{}", summary_line(event, state.started, state.failed));
        }
    }

    fn search_finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// "progress: 30/100 trials (2 failed), best acc …, elapsed 1m02s, ETA 2m10s".
pub fn summary_line(event: &TrialEvent, started: Option<Instant>, failed: usize) -> String {
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    let eta = if event.done > 0 && event.done < event.total {
        let left = elapsed.as_secs_f64() / event.done as f64 * (event.total - event.done) as f64;
        format!(", ETA {}", clock(Duration::from_secs_f64(left)))
    } else {
        String::new()
    };
    let best = best_message(event.best);
    let best = if best.is_empty() { String::new() } else { format!(", {best}") };
    format!("progress: {}/{} trials ({failed} failed){best}, elapsed {}{eta}", event.done, event.total, clock(elapsed))
}

/// `1h02m03s`, `2m10s` or `45s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, sec) => format!("{h}h{min:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn trial(state: TrialState, values: Option<Vec<f64>>) -> FrozenTrial {
        let start = chrono::Utc::now();
        FrozenTrial {
            id: 1,
            number: 7,
            state,
            params: BTreeMap::new(),
            values,
            user_attrs: BTreeMap::from([
                ("performance_metric".to_string(), json!(0.91)),
                (snac_core::search::FAIL_REASON_KEY.to_string(), json!("loss is NaN")),
            ]),
            system_attrs: BTreeMap::from([(
                crate::heartbeat::WORKER_KEY.to_string(),
                json!({"host": "node3", "pid": 42, "rank": "5"}),
            )]),
            datetime_start: Some(start),
            datetime_complete: Some(start + chrono::Duration::milliseconds(1500)),
        }
    }

    #[test]
    fn a_trial_line_has_number_state_values_duration_and_worker() {
        let names = vec!["performance_metric".to_string(), "bops".to_string()];
        let done = trial(TrialState::Complete, Some(vec![0.91, 123456.0]));
        let event = TrialEvent { trial: &done, metric_names: &names, done: 3, total: 10, best: None };
        assert_eq!(
            trial_line(&event),
            "trial 7 COMPLETE in 1.50 s on node3:42 (rank 5) [3/10]: performance_metric=0.9100 bops=1.2346e5"
        );
        let failed = trial(TrialState::Fail, None);
        let event = TrialEvent { trial: &failed, metric_names: &names, done: 4, total: 10, best: Some(&done) };
        assert!(trial_line(&event).ends_with("[4/10]: loss is NaN"), "{}", trial_line(&event));
        let pruned = trial(TrialState::Pruned, None);
        let event = TrialEvent { trial: &pruned, metric_names: &names, done: 5, total: 10, best: None };
        assert!(
            trial_line(&event).contains("PRUNED") && trial_line(&event).ends_with("last performance_metric=0.9100")
        );
    }

    #[test]
    fn the_summary_gives_an_eta_until_the_last_trial() {
        let names = vec!["performance_metric".to_string()];
        let done = trial(TrialState::Complete, Some(vec![0.91]));
        let event = TrialEvent { trial: &done, metric_names: &names, done: 1, total: 4, best: Some(&done) };
        let started = Instant::now() - Duration::from_secs(10);
        let line = summary_line(&event, Some(started), 0);
        assert!(line.starts_with("progress: 1/4 trials (0 failed), best acc 0.9100 (trial 7"), "{line}");
        assert!(line.contains("ETA 30s"), "{line}");
        let last = TrialEvent { done: 4, ..event };
        assert!(!summary_line(&last, Some(started), 1).contains("ETA"));
    }

    #[test]
    fn flags_move_the_level_from_info() {
        assert_eq!(level_from_flags(0, 0), None);
        assert_eq!(level_from_flags(1, 0), Some(LevelFilter::Debug));
        assert_eq!(level_from_flags(2, 0), Some(LevelFilter::Trace));
        assert_eq!(level_from_flags(0, 1), Some(LevelFilter::Warn));
        assert_eq!(level_from_flags(0, 2), Some(LevelFilter::Error));
        assert_eq!(level_from_flags(0, 5), Some(LevelFilter::Off));
        assert_eq!(format_message(Level::Warn, "x"), "warning: x");
        assert_eq!(format_message(Level::Info, "x"), "x");
    }
}
