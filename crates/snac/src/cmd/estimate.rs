//! `snac estimate`: FPGA resources and latency of one architecture.

use crate::cli::EstimateArgs;
use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use snac_core::estimate::{Board, EstimatorKind, HlsSettings, Rule4mlRow, Strategy};
use snac_core::fixed::FixedPoint;
use std::process::ExitCode;

pub fn estimate(args: &EstimateArgs) -> Result<ExitCode> {
    let arch = snac_core::trial_yaml::read_arch(&args.arch)?;
    let board = Board::by_name(&args.board).context("--board")?;
    let precision =
        args.precision.parse::<FixedPoint>().with_context(|| format!("--precision '{}'", args.precision))?;
    let strategy = Strategy::parse(&args.strategy).context("--strategy")?;
    anyhow::ensure!(args.reuse >= 1, "--reuse 0: the reuse factor must be at least 1");
    let Some(kind) = EstimatorKind::parse(&args.estimator) else {
        bail!("--estimator '{}' is unknown; accepted: {}", args.estimator, EstimatorKind::ACCEPTED);
    };
    let estimator = kind.build(&Rule4mlRow::default()).with_context(|| format!("--estimator {kind}"))?;
    let settings = HlsSettings { precision, reuse_factor: args.reuse, strategy };
    let estimate = estimator.estimate(&arch, &settings, None, &board)?;
    if args.json {
        println!("{}", serde_json::to_string(&estimate)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["resource", "estimate", &format!("% of {}", board.name)]);
    for (name, count, pct) in [
        ("LUT", estimate.lut, estimate.lut_pct),
        ("FF", estimate.ff, estimate.ff_pct),
        ("DSP", estimate.dsp, estimate.dsp_pct),
        ("BRAM (18K)", estimate.bram, estimate.bram_pct),
    ] {
        table.add_row([name.to_string(), format!("{count:.0}"), format!("{pct:.3}")]);
    }
    table.add_row(["average".to_string(), String::new(), format!("{:.3}", estimate.avg_resource)]);
    table.add_row(["latency (cycles)".to_string(), format!("{:.0}", estimate.cycles), String::new()]);
    table.add_row(["interval (cycles)".to_string(), format!("{:.0}", estimate.interval), String::new()]);
    println!(
        "{} on {} ({}), {precision}, reuse {}, {} strategy, {} estimator",
        arch.summary(),
        board.name,
        board.part,
        args.reuse,
        strategy.name(),
        estimator.name()
    );
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
