//! `snac data`: dataset downloads.

use crate::cli::DataCommand;
use anyhow::Result;
use std::process::ExitCode;

pub fn data(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Fetch { name, dir, mirror } => {
            let path = snac_core::data::fetch(&name, dir.as_deref(), mirror.as_deref(), true)?;
            println!("{name} is in {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
