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

/// Suffix of the hand-off folder `snac run` writes beside each
/// local-search model: `best_model_8b3i.json` → `best_model_8b3i_hls4ml/`.
pub const HANDOFF_SUFFIX: &str = "_hls4ml";

/// The hls4ml settings of a run (`hls_config`, already checked in
/// `setup.hardware`), with the HLS project written to `hls_output_dir`.
fn run_settings(setup: &SearchSetup, hls_output_dir: PathBuf) -> ExportSettings {
    let hardware = &setup.hardware;
    ExportSettings {
        board: hardware.board.clone(),
        reuse_factor: hardware.settings.reuse_factor as u32,
        strategy: hardware.settings.strategy,
        io_type: hardware.settings.io_type,
        backend: hardware.settings.backend,
        clock_period_ns: hardware.settings.clock_period_ns,
        hls_output_dir,
        project_name: "snac_model".into(),
    }
}

/// What [`export_after_run`] wrote.
#[derive(Debug, Default)]
pub struct Handoff {
    /// The `synthesis:` precision's folder (`<results_dir>/hls4ml_export`).
    pub synthesis: Option<PathBuf>,
    /// One folder per local-search model that exports, in name order.
    pub models: Vec<PathBuf>,
    /// `(model file, why)` for each local-search model that does not.
    pub refused: Vec<(PathBuf, String)>,
}

/// After `snac run`: exports every local-search model
/// (`local_search_combined/best_model_*.json`) to `<stem>_hls4ml/` beside
/// it, and the `synthesis:` precision's model also to
/// `<results_dir>/hls4ml_export/` with `synthesis.hls_output_dir`. A model
/// that cannot be exported (a float model, a layer hls4ml has no form for)
/// gets one line saying why, and no folder (a stale one from an earlier run
/// is removed): the search's results are written by now, so it is a note,
/// not a failed run.
pub fn export_after_run(setup: &SearchSetup, results_dir: &Path) -> Result<Handoff> {
    let local = results_dir.join(crate::local_search::LOCAL_DIR);
    let mut handoff = Handoff::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&local) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("best_model_") && name.ends_with(".json")
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for path in &files {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let out = local.join(format!("{stem}{HANDOFF_SUFFIX}"));
        let exported = QuantizedModel::read(path).and_then(|model| {
            let settings = run_settings(setup, PathBuf::from("hls_project"));
            export(&model, &test_inputs(&model, 100), &settings, &out)
        });
        match exported {
            Ok(_) => handoff.models.push(out),
            Err(e) => {
                let why = format!("{e:#}");
                log::warn!("no hls4ml hand-off for {}: {why}", path.display());
                if out.join("convert.py").exists() {
                    std::fs::remove_dir_all(&out).with_context(|| format!("removing the stale {}", out.display()))?;
                }
                handoff.refused.push((path.clone(), why));
            }
        }
    }
    if !files.is_empty() {
        log::info!(
            "hls4ml hand-off: {} of {} local-search models exported (each to its <model>{HANDOFF_SUFFIX}/ in {})",
            handoff.models.len(),
            files.len(),
            local.display()
        );
    }

    let Some(synthesis) = &setup.experiment.synthesis else { return Ok(handoff) };
    let name = format!("best_model_{}b{}i.json", synthesis.total_bits, synthesis.int_bits);
    let path = local.join(&name);
    if !path.exists() {
        log::info!(
            "note: synthesis asks for <{},{}> but local search wrote no {name} (add that precision pair to \
             local_search.precision_pairs); nothing exported to hls4ml_export",
            synthesis.total_bits,
            synthesis.int_bits
        );
        return Ok(handoff);
    }
    if handoff.refused.iter().any(|(p, _)| *p == path) {
        return Ok(handoff);
    }
    let model = QuantizedModel::read(&path)?;
    let settings = run_settings(setup, std::path::absolute(&synthesis.hls_output_dir)?);
    let out = results_dir.join("hls4ml_export");
    match export(&model, &test_inputs(&model, 100), &settings, &out) {
        Ok(_) => handoff.synthesis = Some(out),
        Err(e) => log::warn!("no hls4ml hand-off for {}: {e:#}", path.display()),
    }
    Ok(handoff)
}
