//! Ctrl-C and SIGTERM (SLURM sends it before it kills a job): the first
//! signal stops the search from drawing new work and gives running trials a
//! grace period to finish; then they are cancelled and recorded as
//! interrupted. A second signal exits at once with status 130.
//!
//! signal-hook rather than a hand-written handler: its flag handlers are
//! async-signal-safe, and its conditional shutdown is the "second Ctrl-C
//! quits" rule in one call.

use anyhow::{Context, Result};
use snac_core::interrupt;
use std::time::Duration;

/// How long running trials get to finish after the first signal;
/// `SNAC_STOP_GRACE` (seconds) overrides it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The exit status of a run stopped by a signal (128 + SIGINT, as shells do).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Installs the handlers and the thread that enforces the grace period.
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = interrupt::stop_flag();
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED_EXIT as i32, flag.clone())
            .context("installing the signal handler")?;
        signal_hook::flag::register(signal, flag.clone()).context("installing the signal handler")?;
    }
    let grace = grace();
    std::thread::spawn(move || {
        // A signal's stop only: the time budget's (crate::deadline) has its own rules.
        while !interrupt::stop_signalled() {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "\nstopping: no new trials start; running ones get {:.0} s to finish, then are recorded as \
             interrupted (press Ctrl-C again to quit at once)",
            grace.as_secs_f64()
        );
        std::thread::sleep(grace);
        interrupt::cancel();
    });
    Ok(())
}

/// The grace period: `SNAC_STOP_GRACE` seconds, else [`DEFAULT_GRACE`].
pub fn grace() -> Duration {
    std::env::var("SNAC_STOP_GRACE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_GRACE, Duration::from_secs_f64)
}

/// The command line that resumes this run, for the user to copy.
pub fn resume_command() -> String {
    std::env::args()
        .map(|arg| {
            if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c)) {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
