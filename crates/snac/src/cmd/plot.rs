//! `snac plot CSV`: plots after the fact from a search CSV, ours or
//! SNAC-Pack's (with the local-search log when it lies beside the CSV).

use crate::cli::PlotArgs;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub fn plot(args: &PlotArgs) -> Result<ExitCode> {
    let mut results = snac_report::load_csv(&args.csv, args.objectives.as_deref())?;
    let dir = args.csv.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    results.local = snac_report::data::load_local_log(dir)?;
    let out = args.out.clone().unwrap_or_else(|| dir.join(crate::report::PLOTS_DIR));
    let set = snac_report::write_plots(&results, &out)?;
    for file in set.files() {
        println!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
