//! `snac worker`: one of many processes sharing a study in a database.

use crate::cli::WorkerArgs;
use crate::setup::Participation;
use anyhow::{Result, bail};
use std::process::ExitCode;
use std::time::Duration;

pub fn worker(args: &WorkerArgs) -> Result<ExitCode> {
    let experiment = super::load_experiment(&args.run)?;
    if experiment.search.storage.is_none() {
        bail!(
            "snac worker needs a storage that all workers share: give --storage URL \
             (postgresql://user@host/db for many nodes, sqlite:///path.db for one machine) \
             or set search.storage in {}",
            experiment.source.display()
        );
    }
    let seconds = |flag: &str, s: f64| {
        if s.is_finite() && s > 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            bail!("--{flag} {s}: give a positive number of seconds")
        }
    };
    let interval = seconds("heartbeat-interval", args.heartbeat_interval)?;
    let grace = seconds("heartbeat-grace", args.heartbeat_grace)?;
    if grace <= interval {
        bail!(
            "--heartbeat-grace {} must be longer than --heartbeat-interval {} (or live workers' trials are failed)",
            args.heartbeat_grace,
            args.heartbeat_interval
        );
    }
    let how = Participation { shared: true, worker: true, heartbeat_interval: interval, heartbeat_grace: grace };
    super::run::run_as(&args.run, false, Some(how))
}
