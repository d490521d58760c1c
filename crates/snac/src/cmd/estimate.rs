//! `snac estimate`: FPGA resources and latency of one model, or the
//! estimator's measured error on real synthesis reports (`--validate`) and
//! its fitted prices (`--calibrate`).

use crate::cli::EstimateArgs;
use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use snac_core::arch::Arch;
use snac_core::estimate::analytical::{CSYNTH, SYNTH};
use snac_core::estimate::{
    AnalyticalEstimator, Board, Estimate, EstimatorKind, HlsSettings, LayerInfo, Report, Rule4mlEstimator, Rule4mlRow,
    calibrate,
};
use snac_core::fixed::FixedPoint;
use snac_core::quantized::QuantizedModel;
use std::path::Path;
use std::process::ExitCode;

pub fn estimate(args: &EstimateArgs) -> Result<ExitCode> {
    if args.validate {
        return validate(args);
    }
    if args.calibrate {
        return calibrate_command();
    }
    let path = args.model.as_deref().expect("clap requires MODEL without --validate/--calibrate");
    let (board, settings, report, kind) = parse_settings(args)?;
    let (arch, layer_info, what) = read_model(path, args.weights.as_deref(), settings.precision.width)?;

    // Post-synthesis prices exist only once the corpus has such reports.
    let synth_fitted = SYNTH != CSYNTH;
    if report == Report::Synth && !synth_fitted {
        log::info!(
            "note: the corpus has no post-synthesis (vivado_synth) report yet, so --report synth gives the \
             C-synthesis figures"
        );
    }
    let info = layer_info.as_deref();
    let (primary, secondary) = run_estimator(kind, report, synth_fitted, &arch, info, &settings, &board)?;
    if args.json {
        println!("{}", serde_json::to_string(&primary)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (csynth, synth) = match (report, secondary) {
        (Report::Synth, Some(csynth)) => (csynth, Some(primary)),
        (_, synth) => (primary, synth),
    };
    let synth = synth.filter(|_| synth_fitted);
    let shown = if report == Report::Synth { synth.unwrap_or(csynth) } else { csynth };
    let table = resource_table(&board, &csynth, synth.as_ref(), &shown);
    println!(
        "{} ({what}) on {} ({}), {}, reuse {}, {} strategy, {}, {} ns clock, {} backend, {} estimator",
        arch.summary(),
        board.name,
        board.part,
        settings.precision,
        args.reuse,
        settings.strategy.name(),
        settings.io_type.name(),
        args.clock_ns,
        settings.backend.name(),
        kind.name()
    );
    println!("{table}");
    println!("latency {:.0} cycles = {:.0} ns at {} ns", csynth.cycles, csynth.cycles * args.clock_ns, args.clock_ns);
    print_fit(&board, &shown);
    if kind == EstimatorKind::Analytical {
        println!(
            "Measured error of these figures on real hls4ml reports: see docs/estimator-accuracy.md \
             (snac estimate --validate)."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The estimate `snac estimate --json` prints (the Python package's
/// `snac_pack.estimate`).
pub fn estimate_for(args: &EstimateArgs) -> Result<Estimate> {
    let Some(path) = args.model.as_deref() else { bail!("estimate needs a model file") };
    let (board, settings, report, kind) = parse_settings(args)?;
    let (arch, layer_info, _) = read_model(path, args.weights.as_deref(), settings.precision.width)?;
    Ok(run_estimator(kind, report, SYNTH != CSYNTH, &arch, layer_info.as_deref(), &settings, &board)?.0)
}

/// The board, HLS settings, report and estimator the flags name, checked
/// (clap has read the choices).
fn parse_settings(args: &EstimateArgs) -> Result<(Board, HlsSettings, Report, EstimatorKind)> {
    let precision =
        args.precision.parse::<FixedPoint>().with_context(|| format!("--precision '{}'", args.precision))?;
    anyhow::ensure!(args.reuse >= 1, "--reuse 0: the reuse factor must be at least 1");
    let settings = HlsSettings {
        precision,
        reuse_factor: args.reuse,
        strategy: args.strategy,
        clock_period_ns: args.clock_ns,
        io_type: args.io_type,
        backend: args.backend,
    };
    settings.check().context("--clock-ns")?;
    Ok((args.board.clone(), settings, args.report, args.estimator))
}

/// The estimate for the report asked for and, from the analytical
/// estimator, the other report's when it is fitted.
fn run_estimator(
    kind: EstimatorKind,
    report: Report,
    synth_fitted: bool,
    arch: &Arch,
    info: Option<&[LayerInfo]>,
    settings: &HlsSettings,
    board: &Board,
) -> Result<(Estimate, Option<Estimate>)> {
    Ok(match kind {
        EstimatorKind::Analytical => {
            let estimate = |report| {
                let estimator = AnalyticalEstimator::for_report(report);
                snac_core::estimate::ResourceEstimator::estimate(&estimator, arch, settings, info, board)
            };
            let csynth = estimate(Report::Csynth)?;
            let synth = if synth_fitted { Some(estimate(Report::Synth)?) } else { None };
            match (report, synth) {
                (Report::Synth, Some(synth)) => (synth, Some(csynth)),
                (_, synth) => (csynth, synth),
            }
        }
        EstimatorKind::Rule4ml => {
            let estimator = kind.build(&Rule4mlRow::default()).with_context(|| format!("--estimator {kind}"))?;
            (estimator.estimate(arch, settings, info, board)?, None)
        }
    })
}

/// The resources (C-synthesis, post-synthesis when fitted, and the shown
/// report's share of the board) and the latency, as a table.
fn resource_table(board: &Board, csynth: &Estimate, synth: Option<&Estimate>, shown: &Estimate) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["resource".to_string(), "C-synthesis".to_string()];
    if synth.is_some() {
        header.push("post-synthesis".into());
    }
    header.push(format!("% of {} ({})", board.name, board.part));
    table.set_header(header);
    type Row = (&'static str, fn(&Estimate) -> (f64, f64));
    let rows: [Row; 4] = [
        ("LUT", |e| (e.lut, e.lut_pct)),
        ("FF", |e| (e.ff, e.ff_pct)),
        ("DSP", |e| (e.dsp, e.dsp_pct)),
        ("BRAM (18K)", |e| (e.bram, e.bram_pct)),
    ];
    for (name, get) in rows {
        let mut row = vec![name.to_string(), format!("{:.0}", get(csynth).0)];
        if let Some(synth) = synth {
            row.push(format!("{:.0}", get(synth).0));
        }
        row.push(format!("{:.2}", get(shown).1));
        table.add_row(row);
    }
    let blank = if synth.is_some() { 2 } else { 1 };
    let mut latency = vec!["latency (cycles)".to_string(), format!("{:.0}", csynth.cycles)];
    let mut interval = vec!["interval (cycles)".to_string(), format!("{:.0}", csynth.interval)];
    for _ in 0..blank {
        latency.push(String::new());
        interval.push(String::new());
    }
    table.add_row(latency);
    table.add_row(interval);
    table
}

/// Says whether the shown estimate fits the board, and what to try if not.
fn print_fit(board: &Board, shown: &Estimate) {
    let overfull = shown.overfull();
    if overfull.is_empty() {
        println!("fits the {} ({}).", board.name, board.part);
    } else {
        let list: Vec<String> = overfull.iter().map(|(name, pct)| format!("{name} {pct:.0} %")).collect();
        println!(
            "does NOT fit the {} ({}): it needs {} of the board. Use a larger reuse factor, the Resource strategy, \
             io_stream, fewer bits, pruning, or a larger part.",
            board.name,
            board.part,
            list.join(", ")
        );
    }
}

/// The architecture and, when the file says, per-layer widths and nonzero
/// weights; plus a word for what was read.
fn read_model(path: &Path, weights: Option<&Path>, bits: u32) -> Result<(Arch, Option<Vec<LayerInfo>>, &'static str)> {
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        anyhow::ensure!(
            weights.is_none(),
            "--weights goes with an architecture YAML; {} already holds its weights",
            path.display()
        );
        let model = QuantizedModel::read(path).with_context(|| {
            format!(
                "{} is not a quantized model; pass an architecture YAML (with --weights for trial weights)",
                path.display()
            )
        })?;
        let info = LayerInfo::of_model(&model);
        return Ok((model.arch, Some(info), "quantized model: its widths and nonzero weights"));
    }
    let arch = snac_core::trial_yaml::read_arch(path)?;
    let Some(weights) = weights else { return Ok((arch, None, "architecture")) };
    let trained = snac_train::Weights::load(weights)?;
    trained.check_fits(&arch).with_context(|| format!("{} does not fit {}", weights.display(), path.display()))?;
    let info = trained
        .kernel_nonzeros()
        .into_iter()
        .flatten()
        .map(|nonzero| LayerInfo { weight_bits: bits, activation_bits: bits, nonzero_weights: Some(nonzero) })
        .collect();
    Ok((arch, Some(info), "architecture with its trained weights' zeros"))
}

fn validate(args: &EstimateArgs) -> Result<ExitCode> {
    let (samples, skipped) = calibrate::samples()?;
    let rule4ml = match Rule4mlEstimator::load_default(&Rule4mlRow::default()) {
        Ok(estimator) => Some(estimator),
        Err(error) => {
            log::warn!("rule4ml comparison skipped: {error:#}");
            None
        }
    };
    let report = calibrate::validation_report(&samples, &skipped, rule4ml.as_ref());
    println!("{report}");
    if let Some(path) = &args.markdown {
        let text = format!(
            "# Estimator accuracy\n\nWritten by `snac estimate --validate --markdown {}`; do not edit by hand.\n\n{report}",
            path.display()
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        log::info!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn calibrate_command() -> Result<ExitCode> {
    let (samples, skipped) = calibrate::samples()?;
    for (id, reason) in &skipped {
        log::info!("not built: {id}: {reason}");
    }
    println!("// `snac estimate --calibrate` on {} corpus designs", samples.len());
    println!("{}", calibrate::coefficients_source("CSYNTH", &calibrate::fit_all(&samples, Report::Csynth)));
    if samples.iter().any(|s| s.design.synth.is_some()) {
        println!("{}", calibrate::coefficients_source("SYNTH", &calibrate::fit_all(&samples, Report::Synth)));
    } else {
        println!("// no post-synthesis figures in the corpus: SYNTH stays CSYNTH");
    }
    Ok(ExitCode::SUCCESS)
}
