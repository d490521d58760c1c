//! `snac predict MODEL INPUT.npy [--out OUT.npy]`: integer inference of a
//! quantized model (local search's `best_model_{bits}b{int}i.json`), exactly
//! as fixed-point hardware computes it.

use crate::cli::PredictArgs;
use anyhow::{Context, Result, bail};
use snac_core::data::{read_npy_f32, write_npy_f64};
use snac_core::quantized::QuantizedModel;
use std::io::Write;
use std::process::ExitCode;

pub fn predict(args: &PredictArgs) -> Result<ExitCode> {
    let model = QuantizedModel::read(&args.model)?;
    let (dims, x) = read_npy_f32(&args.input)?;
    let features = model.input_features;
    let samples = match dims[..] {
        [n] if n == features => 1,
        [n, f] if f == features => n,
        _ if dims.len() >= 2 && dims[1..].iter().product::<usize>() == features => dims[0],
        _ => bail!(
            "{}: shape {dims:?} does not fit the model, which takes {features} features per sample \
             (accepted: ({features},), (N, {features}), or (N, ...) with {features} values per sample)",
            args.input.display()
        ),
    };
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        let bad = x.iter().filter(|v| !v.is_finite()).count();
        bail!(
            "{}: row {}, column {} is {} ({bad} non-finite value{} in all); predict takes finite numbers only \
             (accepted: finite values; fill or drop the missing ones first)",
            args.input.display(),
            i / features,
            i % features,
            x[i],
            if bad == 1 { "" } else { "s" }
        );
    }
    let outputs = model.predict(&x).with_context(|| format!("running {}", args.model.display()))?;
    let classes = model.output_features;
    match &args.out {
        Some(out) => {
            write_npy_f64(out, &[samples, classes], &outputs)
                .with_context(|| format!("writing the outputs of {} to {}", args.model.display(), out.display()))?;
            log::info!("wrote {samples} × {classes} outputs to {}", out.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for row in outputs.chunks_exact(classes) {
                let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                writeln!(stdout, "{best}\t{}", values.join(" "))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
