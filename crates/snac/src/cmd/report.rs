//! `snac report RESULTS_DIR`: the HTML report of a results dir (and, on
//! request, its plots and a screenshot).

use crate::cli::ReportArgs;
use crate::report::{PLOTS_DIR, REPORT_FILE};
use anyhow::{Context, Result};
use snac_report::browser;
use snac_report::html::{self, ReportOptions};
use std::process::ExitCode;

/// Window size of the screenshot.
const SCREENSHOT_SIZE: (u32, u32) = (1280, 1800);

pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let dir = &args.results_dir;
    let results = snac_report::load_results_dir(dir, args.study.as_deref())?;
    let page = dir.join(REPORT_FILE);
    html::write_report(&results, &page, &ReportOptions::default())?;
    println!("report: {} ({} trials)", page.display(), results.trials.len());
    if args.plots {
        let set = snac_report::write_plots(&results, &dir.join(PLOTS_DIR))?;
        println!("plots: {} files in {}", set.files().len(), dir.join(PLOTS_DIR).display());
    }
    if args.screenshot {
        let chromium = browser::find_chromium()
            .context("--screenshot needs Chromium: set $SNAC_CHROMIUM or put chromium on PATH")?;
        let png = dir.join("report.png");
        browser::screenshot(&chromium, &page, &png, SCREENSHOT_SIZE)?;
        println!("screenshot: {}", png.display());
    }
    Ok(ExitCode::SUCCESS)
}
