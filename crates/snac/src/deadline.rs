//! The global search's time budget (`--timeout`, `search.timeout`; Optuna's
//! `optimize(timeout=...)`) and its hard limit (`--timeout-hard`,
//! `search.timeout_hard`), both counted from the start of the search.
//!
//! A thread waits for each: at the budget it sets the interrupt module's
//! time-up flag (no new trial starts, running ones finish), at the hard
//! limit it cancels running trials at their next batch, which are then
//! recorded as FAIL with reason "timeout" and, like interrupted ones, do not
//! count against `n_trials`. It is the machinery Ctrl-C uses
//! (`snac_core::interrupt`), with its own flags so that a Ctrl-C after the
//! budget is still handled as a first one.

use snac_core::config::format_duration;
use snac_core::interrupt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running time budget; dropping it (or [`Deadline::finish`]) ends its
/// thread without stopping anything.
pub struct Deadline {
    /// Dropped to end the thread (its wait sees the channel closed).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deadline {
    /// Starts the clock, if there is a budget or a hard limit (alone, a hard
    /// limit is the budget too).
    pub fn start(budget: Option<Duration>, hard: Option<Duration>) -> Option<Deadline> {
        let budget = budget.or(hard)?;
        let hard = hard.filter(|h| *h >= budget);
        let started = Instant::now();
        let (stop, stopped) = mpsc::channel::<()>();
        let wait_until = move |at: Duration| {
            let left = at.saturating_sub(started.elapsed());
            matches!(stopped.recv_timeout(left), Err(RecvTimeoutError::Timeout))
        };
        let thread = std::thread::spawn(move || {
            if !wait_until(budget) {
                return;
            }
            interrupt::time_up();
            let then = match hard {
                Some(hard) if hard > budget => {
                    format!("running ones are cancelled at the hard limit ({})", format_duration(hard))
                }
                Some(_) => "running ones are cancelled now".to_string(),
                None => "running ones finish".to_string(),
            };
            log::warn!("time budget of {} is used up: no new trials start; {then}", format_duration(budget));
            let Some(hard) = hard else { return };
            if wait_until(hard) {
                interrupt::cancel_for_timeout();
            }
        });
        Some(Deadline { stop: Some(stop), thread: Some(thread) })
    }

    /// Ends the clock; returns whether the budget ran out before.
    pub fn finish(mut self) -> bool {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        interrupt::timed_out()
    }
}
