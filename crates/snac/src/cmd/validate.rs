//! `snac validate`: the resolved experiment, or every error at once.

use crate::cli::RunArgs;
use anyhow::Result;
use std::process::ExitCode;

pub fn validate(args: &RunArgs) -> Result<ExitCode> {
    match super::load_experiment(args) {
        Ok(experiment) => {
            for key in &experiment.unused_keys {
                log::info!("note: {}", key.note(&experiment.source));
            }
            print!("{}", serde_saphyr::to_string(&experiment)?);
            log::info!("{}: valid", experiment.source.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{err:#}");
            Ok(ExitCode::from(2))
        }
    }
}
