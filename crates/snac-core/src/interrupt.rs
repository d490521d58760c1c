//! Stopping on request: Ctrl-C, SIGTERM (which SLURM sends before it kills a
//! job), or a caller of the library. Two process-wide flags, because a
//! signal reaches the whole process:
//!
//! - [`stop_requested`]: draw no new work (no new trial, no next pruning
//!   iteration); what runs may still finish.
//! - [`cancelled`]: running work gives up at its next batch, with the
//!   [`Interrupted`] error, so its trial is recorded as interrupted.
//!
//! The `snac` binary sets the first on the first signal and the second after
//! a grace period; a second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static CANCEL: AtomicBool = AtomicBool::new(false);

/// The stop flag itself, for signal handlers that set it.
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP.clone()
}

/// Asks every search loop to draw no new work.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
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
}

/// The error of work that stopped because it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted (Ctrl-C or SIGTERM) before it finished")
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
