//! Stopping on request: Ctrl-C, SIGTERM (which SLURM sends before it kills a
//! job), a caller of the library, or the search's time budget running out.
//! Process-wide flags, because a signal reaches the whole process:
//!
//! - [`stop_requested`]: draw no new work (no new trial, no next pruning
//!   iteration); what runs may still finish.
//! - [`cancelled`]: running work gives up at its next batch, with the
//!   [`Interrupted`] error, so its trial is recorded as interrupted.
//!
//! The `snac` binary sets the first on the first signal and the second after
//! a grace period; a second signal exits at once. A time budget
//! ([`time_up`], [`cancel_for_timeout`]) sets its own flags, so that the
//! signal handling still sees a first Ctrl-C as the first, and an
//! [`Interrupted`] error then names the timeout as its reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static CANCEL: AtomicBool = AtomicBool::new(false);
/// The time budget ran out: no new work (set by [`time_up`]).
static TIME_UP: AtomicBool = AtomicBool::new(false);

/// The stop flag itself, for signal handlers that set it.
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP.clone()
}

/// Asks every search loop to draw no new work.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for: by a signal, a caller, or the time budget.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed) || TIME_UP.load(Ordering::Relaxed)
}

/// Whether a stop was asked for by a signal or a caller (not the time budget).
pub fn stop_signalled() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The time budget ran out: draw no new work; what runs may still finish.
pub fn time_up() {
    TIME_UP.store(true, Ordering::SeqCst);
}

/// Whether the time budget ran out (and no signal asked for a stop, which
/// takes precedence).
pub fn timed_out() -> bool {
    TIME_UP.load(Ordering::Relaxed) && !stop_signalled()
}

/// The hard time limit: running work gives up at its next batch, recorded
/// with reason "timeout".
pub fn cancel_for_timeout() {
    time_up();
    CANCEL.store(true, Ordering::SeqCst);
}

/// Clears the time budget's flags (a search that finished as it ran out:
/// later stages run as usual); a signal's stay.
pub fn clear_timeout() {
    if TIME_UP.swap(false, Ordering::SeqCst) && !stop_signalled() {
        CANCEL.store(false, Ordering::SeqCst);
    }
}

/// Asks running work to give up (implies a stop).
pub fn cancel() {
    request_stop();
    CANCEL.store(true, Ordering::SeqCst);
}

/// Whether running work should give up now.
pub fn cancelled() -> bool {
    CANCEL.load(Ordering::Relaxed)
}

/// Clears both flags (a library caller starting new work after a stop).
pub fn reset() {
    STOP.store(false, Ordering::SeqCst);
    CANCEL.store(false, Ordering::SeqCst);
    TIME_UP.store(false, Ordering::SeqCst);
}

/// The error of work that stopped because it was asked to. Its message
/// says why: a signal, or (when only the time budget asked) "timeout".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if timed_out() {
            f.write_str("timeout: the search's time limit (--timeout / --timeout-hard) ran out before it finished")
        } else {
            f.write_str("interrupted (Ctrl-C or SIGTERM) before it finished")
        }
    }
}

impl std::error::Error for Interrupted {}

/// Whether `err` (or anything in its chain) is an [`Interrupted`].
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<Interrupted>().is_some())
}

/// `Err(Interrupted)` once running work should give up.
pub fn check() -> anyhow::Result<()> {
    if cancelled() { Err(Interrupted.into()) } else { Ok(()) }
}
