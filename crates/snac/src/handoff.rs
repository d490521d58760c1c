//! The hand-off to hls4ml around `snac_export`: test inputs, the export at
//! the end of `snac run` (the `synthesis:` precision), and `--verify`, which
//! runs the export's `convert.py` with a Python that has hls4ml.

use crate::cli::ExportArgs;
use crate::setup::SearchSetup;
use anyhow::{Context, Result, bail};
use snac_core::quantized::QuantizedModel;
use snac_export::{ExportSettings, export};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Pinned versions for `--verify`'s venv.
pub const PYTHON_PACKAGES: [&str; 3] = ["hls4ml==1.3.0", "qonnx==1.0.0", "onnx==1.23.2"];

/// The hls4ml settings `snac export`'s flags name, checked.
pub fn settings_of(args: &ExportArgs) -> Result<ExportSettings> {
    let settings = ExportSettings {
        board: args.board.clone(),
        reuse_factor: args.reuse,
        strategy: args.strategy,
        io_type: args.io_type,
        backend: args.backend,
        clock_period_ns: args.clock_ns,
        hls_output_dir: args.hls_output_dir.clone().unwrap_or_else(|| PathBuf::from("hls_project")),
        project_name: "snac_model".into(),
    };
    Ok(settings)
}

/// Test inputs: the validation data when the caller has it, else seeded
/// random values across the input type's range.
pub fn test_inputs(model: &QuantizedModel, samples: usize) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let top = model.types.input.max_value() as f32;
    (0..samples * model.input_features).map(|_| rng.random_range(-top..=top)).collect()
}

/// Runs the export's `convert.py --verify` with a Python that has hls4ml:
/// `$SNAC_PYTHON`, or a venv created (once) in the cache with pinned versions.
pub fn verify(script: &Path) -> Result<ExitCode> {
    let python = python_with_hls4ml()?;
    log::info!("verifying with {} (hls4ml C simulation needs g++)", python.display());
    let status = Command::new(&python)
        .arg(script)
        .arg("--verify")
        .status()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn python_with_hls4ml() -> Result<PathBuf> {
    if let Some(python) = std::env::var_os("SNAC_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let Some(cache) = snac_core::data::default_cache_dir() else {
        bail!(
            "no per-user cache directory to make a venv in: set SNAC_PYTHON to a Python with {}",
            PYTHON_PACKAGES.join(" ")
        )
    };
    let venv = cache.join("venv-hls4ml");
    let python = venv.join("bin/python");
    if !python.exists() {
        log::info!("creating {} with {}", venv.display(), PYTHON_PACKAGES.join(" "));
        let created = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        if !created.is_ok_and(|s| s.success()) {
            bail!("could not create a venv at {} (needs python3 with venv); or set SNAC_PYTHON", venv.display());
        }
        let installed = Command::new(venv.join("bin/pip")).arg("install").args(PYTHON_PACKAGES).status();
        if !installed.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&venv);
            bail!("could not install {} into {}; or set SNAC_PYTHON", PYTHON_PACKAGES.join(" "), venv.display());
        }
    }
    Ok(python)
}

/// After `snac run`: exports the local-search model of the `synthesis:`
/// precision to `<results_dir>/hls4ml_export/`, with the run's board, reuse
/// factor, strategy, io type, backend and clock period (`hls_config`, already
/// checked in `setup.hardware`).
pub fn export_after_run(setup: &SearchSetup, results_dir: &Path) -> Result<()> {
    let Some(synthesis) = &setup.experiment.synthesis else { return Ok(()) };
    let name = format!("best_model_{}b{}i.json", synthesis.total_bits, synthesis.int_bits);
    let path = results_dir.join(crate::local_search::LOCAL_DIR).join(&name);
    if !path.exists() {
        log::info!(
            "note: synthesis asks for <{},{}> but local search wrote no {name} (add that precision pair to \
             local_search.precision_pairs); nothing exported",
            synthesis.total_bits,
            synthesis.int_bits
        );
        return Ok(());
    }
    let model = QuantizedModel::read(&path)?;
    let hardware = &setup.hardware;
    let settings = ExportSettings {
        board: hardware.board.clone(),
        reuse_factor: hardware.settings.reuse_factor as u32,
        strategy: hardware.settings.strategy,
        io_type: hardware.settings.io_type,
        backend: hardware.settings.backend,
        clock_period_ns: hardware.settings.clock_period_ns,
        hls_output_dir: std::path::absolute(&synthesis.hls_output_dir)?,
        project_name: "snac_model".into(),
    };
    let out = results_dir.join("hls4ml_export");
    // The search's results are written by now: a model the exporter does not
    // cover yet is a note, not a failed run.
    if let Err(e) = export(&model, &test_inputs(&model, 100), &settings, &out) {
        log::info!("note: no hls4ml hand-off for {}: {e:#}", path.display());
        return Ok(());
    }
    Ok(())
}
