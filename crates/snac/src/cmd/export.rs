//! `snac export MODEL --out DIR [--verify]`: the hand-off to hls4ml (QONNX,
//! hls4ml configuration, test vectors, conversion script, README) of one
//! model file; the work is in [`crate::handoff`].

use crate::cli::ExportArgs;
use anyhow::{Context, Result};
use snac_core::quantized::QuantizedModel;
use snac_export::export;
use std::process::ExitCode;

pub fn export_command(args: &ExportArgs) -> Result<ExitCode> {
    let model = QuantizedModel::read(&args.model)?;
    let settings = crate::handoff::settings_of(args)?;
    let x = crate::handoff::test_inputs(&model, args.samples);
    let written = export(&model, &x, &settings, &args.out)
        .with_context(|| format!("exporting {} to {}", args.model.display(), args.out.display()))?;
    println!("exported {} to {}", args.model.display(), args.out.display());
    if args.verify {
        return crate::handoff::verify(&written.script);
    }
    Ok(ExitCode::SUCCESS)
}
