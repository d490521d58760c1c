//! `report.html`: one self-contained page (inline CSS, SVG and a small
//! hand-written script; nothing fetched) with the study summary, an
//! interactive Pareto scatter, the best model and its estimated resources,
//! the local search, and a sortable table of every trial.
//!
//! It is cheap to build (no raster images), so the search rewrites it after
//! every trial and a user watches the search by reloading the page.

use crate::data::{Results, TrialRecord};
use crate::labels;
use crate::plots::{self, LocalAxis, LocalPlot, TrainingCurves, format_number};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use snac_core::estimate::{AnalyticalEstimator, Board, HlsSettings, ResourceEstimator};
use snac_core::trial_yaml::ArchitectureYaml;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

const SCRIPT: &str = include_str!("report.js");

/// Collects script errors into the page (`#js-errors`) before anything else
/// runs, so a headless browser's DOM dump shows them.
const ERROR_COLLECTOR: &str = r#"window.addEventListener("error", function (e) {
  var box = document.getElementById("js-errors");
  box.hidden = false;
  box.textContent += (e.message || String(e)) + "\n";
  document.documentElement.setAttribute("data-js-errors", "1");
});"#;

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } thead th { background: #f3f3f3; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[data-sort="asc"]::after { content: " ▲"; } table.sortable thead th[data-sort="desc"]::after { content: " ▼"; }
tr.fail td { color: #999; } tr.infeasible td { background: #fff6e8; } tr.front td:first-child { border-left: 4px solid #d72828; }
.plot-box { position: relative; display: inline-block; } #pareto-plot { border: 1px solid #ddd; font-size: 12px; }
#pareto-plot circle.pt { fill: #466ebe; fill-opacity: 0.75; cursor: pointer; } #pareto-plot circle.front { fill: #d72828; fill-opacity: 1; }
#pareto-plot .axis-name { font-size: 14px; }
#tooltip { position: absolute; background: #fff; border: 1px solid #888; padding: 6px 8px; font-size: 12px; pointer-events: none; max-width: 420px; box-shadow: 2px 2px 6px rgba(0,0,0,0.2); }
#tooltip .arch { font-family: monospace; margin: 4px 0; word-break: break-all; } #tooltip table { font-size: 12px; } #tooltip .params { color: #555; margin-top: 4px; }
svg.figure { max-width: 100%; height: auto; } .muted { color: #777; } .controls { margin: 8px 0; }
#js-errors { color: #b00; background: #fee; padding: 8px; }
.scroll { max-height: 600px; overflow: auto; display: inline-block; max-width: 100%; }
"#;

/// Options of [`write_report`].
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// The search is still running (the page says so and that a reload updates it).
    pub running: bool,
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside a `<script>` element.
fn script_json(value: &Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Writes the report to `path` atomically.
pub fn write_report(results: &Results, path: &Path, options: &ReportOptions) -> Result<()> {
    let page = render(results, options)?;
    snac_core::write_atomic(path, page.as_bytes()).with_context(|| format!("writing the report {}", path.display()))
}

/// The FPGA estimate of the best model: the one stored with the trial, or
/// an analytical estimate with SNAC-Pack's default HLS settings. Returns
/// (where it comes from, values).
pub fn best_estimate(best: &TrialRecord) -> Option<(String, BTreeMap<String, f64>)> {
    if let Some(stored) = &best.estimate {
        return Some(("the search's estimate (hls_config of the run)".into(), stored.clone()));
    }
    let architecture: ArchitectureYaml = serde_json::from_value(best.architecture.clone()?).ok()?;
    let arch = architecture.to_arch().ok()?;
    let settings = HlsSettings::default();
    let board = Board::by_name("zcu102").ok()?;
    let estimate = AnalyticalEstimator::default().estimate(&arch, &settings, None, &board).ok()?;
    let values = serde_json::to_value(estimate).ok()?;
    let values = values.as_object()?.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect();
    Some(("analytical estimate with SNAC-Pack's defaults (zcu102, ap_fixed<8,3>, reuse 1, Latency)".into(), values))
}

/// The whole page: one function per section, in page order.
pub fn render(results: &Results, options: &ReportOptions) -> Result<String> {
    let axes = results.axes();
    let best = results.best();
    let front = full_front(results);
    let mut page = String::with_capacity(64 * 1024);
    header(&mut page, results, options)?;
    summary(&mut page, results, best, &front);
    pareto_section(&mut page);
    best_model(&mut page, results, best)?;
    local_search(&mut page, results)?;
    trial_table(&mut page, results, &axes, &front)?;
    script(&mut page, results, &axes)?;
    Ok(page)
}

/// The document head, the error box and the title.
fn header(page: &mut String, results: &Results, options: &ReportOptions) -> Result<()> {
    let title = format!("snac report: {}", results.name);
    write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\n<body>\n\
         <script>{ERROR_COLLECTOR}</script>\n<pre id=\"js-errors\" hidden></pre>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    )?;
    if options.running {
        page.push_str("<p class=\"muted\">The search is still running: reload the page to see new trials.</p>\n");
    }
    Ok(())
}

/// The summary table: study, objectives, trial counts and the best trial.
fn summary(page: &mut String, results: &Results, best: Option<&TrialRecord>, front: &[&TrialRecord]) {
    let complete: Vec<&TrialRecord> = results.complete().collect();
    let count = |state: &str| results.trials.iter().filter(|t| t.state == state).count();
    let infeasible = complete.iter().filter(|t| !t.is_feasible()).count();
    let durations: Vec<f64> = results.trials.iter().filter_map(|t| t.duration_s).collect();
    page.push_str("<h2 id=\"summary\">Summary</h2>\n<table>\n");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(page, "<tr><th>{}</th><td>{value}</td></tr>", esc(key));
    };
    row("study", esc(&results.name));
    row("read from", esc(&results.source));
    row(
        "objectives",
        esc(&results
            .objectives
            .iter()
            .map(|o| {
                format!("{} ({}, {})", labels::label(&o.name), o.name, if o.maximize { "maximize" } else { "minimize" })
            })
            .collect::<Vec<_>>()
            .join(", ")),
    );
    row(
        "trials",
        format!(
            "{} in all: {} complete, {} failed, {} running{}",
            results.trials.len(),
            complete.len(),
            count("FAIL"),
            count("RUNNING"),
            if infeasible > 0 { format!(", {infeasible} infeasible") } else { String::new() }
        ),
    );
    row("Pareto front (all objectives)", format!("{} trials", front.len()));
    if !durations.is_empty() {
        let total: f64 = durations.iter().sum();
        row("trial time", format!("{:.1} s in all, {:.2} s per trial", total, total / durations.len() as f64));
    }
    if let Some(best) = best {
        row(
            "best trial (accuracy)",
            format!(
                "trial {}: {} {}{}",
                best.number,
                labels::label("performance_metric"),
                format_number(best.metric("performance_metric")),
                best.arch.as_ref().map(|a| format!(", <code>{}</code>", esc(a))).unwrap_or_default()
            ),
        );
    }
    page.push_str("</table>\n");
}

/// The interactive Pareto scatter's frame (the script draws it).
fn pareto_section(page: &mut String) {
    page.push_str(
        "<h2 id=\"pareto\">Pareto front</h2>\n<div class=\"controls\"><label>x axis <select id=\"x-axis\"></select></label> \
         <label>y axis <select id=\"y-axis\"></select></label> <span class=\"muted\">hover over a point for its trial</span></div>\n\
         <div class=\"plot-box\"><svg id=\"pareto-plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"520\" viewBox=\"0 0 820 520\"></svg>\
         <div id=\"tooltip\" hidden></div></div>\n<p id=\"pareto-caption\" class=\"muted\"></p>\n\
         <noscript><p>The scatter needs JavaScript; the PNG/SVG plots in plots/ show the same.</p></noscript>\n",
    );
}

/// The best model: its architecture, estimated resources and training curves.
fn best_model(page: &mut String, results: &Results, best: Option<&TrialRecord>) -> Result<()> {
    page.push_str("<h2 id=\"best\">Best model</h2>\n");
    let Some(best) = best else {
        page.push_str("<p class=\"muted\">No completed trial yet.</p>\n");
        return Ok(());
    };
    writeln!(
        page,
        "<p>Trial {} (highest {}{}).</p>",
        best.number,
        labels::label("performance_metric"),
        if results.complete().any(|t| !t.is_feasible()) { " among feasible trials" } else { "" }
    )?;
    architecture_table(page, best)?;
    match best_estimate(best) {
        Some((source, values)) => resource_table(page, &source, &values)?,
        None => page.push_str("<p class=\"muted\">No resource estimate for this architecture.</p>\n"),
    }
    if let Some(curves) = TrainingCurves::best(results) {
        page.push_str("<h3>Training curves</h3>\n");
        page.push_str(&figure_svg(&curves)?);
    }
    Ok(())
}

/// The best model's estimated FPGA resources, and whether they fit the board.
fn resource_table(page: &mut String, source: &str, values: &BTreeMap<String, f64>) -> Result<()> {
    write!(page, "<h3>Estimated FPGA resources</h3>\n<p class=\"muted\">{}</p>\n<table>\n", esc(source))?;
    let rows =
        [("LUT", "lut", "lut_pct"), ("FF", "ff", "ff_pct"), ("DSP", "dsp", "dsp_pct"), ("BRAM", "bram", "bram_pct")];
    page.push_str("<thead><tr><th>resource</th><th>count</th><th>% of board</th></tr></thead>\n");
    for (label, key, pct) in rows {
        let value = |k: &str| values.get(k).map(|v| format_number(*v)).unwrap_or_else(|| "–".into());
        writeln!(
            page,
            "<tr><th>{label}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            value(key),
            value(pct)
        )?;
    }
    for (label, key) in [
        ("average resource %", "avg_resource"),
        ("latency (clock cycles)", "cycles"),
        ("interval (cycles)", "interval"),
    ] {
        if let Some(v) = values.get(key) {
            writeln!(page, "<tr><th>{label}</th><td class=\"num\" colspan=\"2\">{}</td></tr>", format_number(*v))?;
        }
    }
    page.push_str("</table>\n");
    let over: Vec<String> = rows
        .iter()
        .filter_map(|(label, _, pct)| values.get(*pct).filter(|v| **v > 100.0).map(|v| format!("{label} {v:.0} %")))
        .collect();
    if !over.is_empty() {
        writeln!(
            page,
            "<p><strong>Does not fit the board</strong>: it needs {} of it. A larger reuse factor, \
             the Resource strategy, io_stream, fewer bits, pruning or a larger part would be needed.</p>",
            esc(&over.join(", "))
        )?;
    }
    page.push_str(
        "<p class=\"muted\">These are estimates; their measured error on real hls4ml synthesis \
         reports is in docs/estimator-accuracy.md (<code>snac estimate --validate</code>).</p>\n",
    );
    Ok(())
}

/// The local-search log as a sortable table, and its plots.
fn local_search(page: &mut String, results: &Results) -> Result<()> {
    page.push_str("<h2 id=\"local\">Local search</h2>\n");
    if results.local.is_empty() {
        page.push_str(
            "<p class=\"muted\">No local-search log yet (local_search_combined/combined_qat_pruning_log.csv).</p>\n",
        );
        return Ok(());
    }
    let extra: Vec<String> = ["bops_effective", "avg_resource", "clock_cycles", "lut", "ff", "dsp", "bram"]
        .into_iter()
        .filter(|k| results.local.iter().any(|r| r.extra.contains_key(*k)))
        .map(str::to_string)
        .collect();
    page.push_str(
        "<div class=\"scroll\"><table class=\"sortable\" id=\"local-table\"><thead><tr><th>precision</th><th>iteration</th>",
    );
    for key in ["sparsity", "accuracy", "effective_bops"].into_iter().chain(extra.iter().map(String::as_str)) {
        header_cell(page, key)?;
    }
    page.push_str("</tr></thead><tbody>\n");
    for row in &results.local {
        write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td>{}{}{}",
            esc(&row.precision),
            row.iteration.map(|i| i.to_string()).unwrap_or_default(),
            num_cell(row.sparsity),
            num_cell(row.accuracy),
            num_cell(row.effective_bops)
        )?;
        for key in &extra {
            page.push_str(&row.extra.get(key).map_or("<td></td>".to_string(), |v| num_cell(*v)));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table></div>\n");
    for kind in LocalAxis::ALL {
        if let Some(plot) = LocalPlot::new(&results.local, kind) {
            page.push_str(&figure_svg(&plot)?);
        }
    }
    Ok(())
}

/// Every trial, as a sortable table with the Pareto front marked.
fn trial_table(page: &mut String, results: &Results, axes: &[String], front: &[&TrialRecord]) -> Result<()> {
    let front_numbers: Vec<u64> = front.iter().map(|t| t.number).collect();
    page.push_str("<h2 id=\"trials\">Trials</h2>\n<p class=\"muted\">Click a column to sort. A red edge marks the Pareto front.</p>\n");
    page.push_str(
        "<div class=\"scroll\"><table class=\"sortable\" id=\"trial-table\"><thead><tr><th>trial</th><th>state</th>",
    );
    for axis in axes {
        header_cell(page, axis)?;
    }
    page.push_str(
        "<th>feasible</th><th>duration (s)</th><th>architecture</th><th>fail reason</th></tr></thead><tbody>\n",
    );
    for trial in &results.trials {
        let class = if !trial.is_complete() {
            "fail"
        } else if !trial.is_feasible() {
            "infeasible"
        } else if front_numbers.contains(&trial.number) {
            "front"
        } else {
            ""
        };
        write!(
            page,
            "<tr class=\"{class}\" id=\"trial-{}\"><td class=\"num\" data-v=\"{}\">{}</td><td>{}</td>",
            trial.number,
            trial.number,
            trial.number,
            esc(&trial.state)
        )?;
        for axis in axes {
            page.push_str(&trial.metrics.get(axis).map_or("<td data-v=\"\"></td>".to_string(), |v| num_cell(*v)));
        }
        writeln!(
            page,
            "<td>{}</td>{}<td><code>{}</code></td><td>{}</td></tr>",
            trial.feasible.map(|f| if f { "yes" } else { "no" }).unwrap_or(""),
            trial.duration_s.map_or("<td data-v=\"\"></td>".to_string(), num_cell),
            esc(trial.arch.as_deref().unwrap_or("")),
            esc(trial.fail_reason.as_deref().unwrap_or(""))
        )?;
    }
    page.push_str("</tbody></table></div>\n");
    Ok(())
}

/// The data for the script, then the script, and the end of the page.
fn script(page: &mut String, results: &Results, axes: &[String]) -> Result<()> {
    let data = json!({
        "axes": axes.iter().map(|a| json!({
            "name": a,
            "label": labels::label(a),
            "scale": labels::scale(a).name(),
            "maximize": results.maximize(a),
        })).collect::<Vec<_>>(),
        "trials": results.trials.iter().filter(|t| t.is_complete()).map(|t| json!({
            "number": t.number,
            "state": t.state,
            "metrics": t.metrics,
            "feasible": t.feasible,
            "arch": t.arch,
            "params": t.params,
        })).collect::<Vec<_>>(),
    });
    write!(
        page,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        script_json(&data)
    )?;
    Ok(())
}

/// A table header for a metric: its label, with the column name as a tooltip.
fn header_cell(page: &mut String, metric: &str) -> Result<()> {
    write!(page, "<th title=\"{}\">{}</th>", esc(metric), esc(labels::label(metric)))?;
    Ok(())
}

fn num_cell(value: f64) -> String {
    if value.is_finite() {
        format!("<td class=\"num\" data-v=\"{value}\">{}</td>", format_number(value))
    } else {
        "<td data-v=\"\"></td>".to_string()
    }
}

/// A plotters figure as inline SVG.
fn figure_svg<F: plots::Figure>(figure: &F) -> Result<String> {
    let svg = plots::svg_string(figure)?;
    // Let CSS scale it: plotters writes a fixed width and height.
    Ok(svg.replacen("<svg ", "<svg class=\"figure\" ", 1) + "\n")
}

/// Trials on the Pareto front of all objectives (feasible ones only).
fn full_front(results: &Results) -> Vec<&TrialRecord> {
    let directions: Vec<_> = results.objectives.iter().map(|o| o.direction()).collect();
    let candidates: Vec<&TrialRecord> = results.complete().filter(|t| t.is_feasible()).collect();
    let values: Vec<Vec<f64>> =
        candidates.iter().map(|t| results.objectives.iter().map(|o| t.metric(&o.name)).collect()).collect();
    plots::front_indices(&values, &directions).into_iter().map(|i| candidates[i]).collect()
}

/// The best trial's blocks (from its stored architecture), or its summary.
fn architecture_table(page: &mut String, best: &TrialRecord) -> Result<()> {
    let components = best.architecture.as_ref().and_then(|a| a.get("components")).and_then(Value::as_array);
    if let Some(arch) = &best.arch {
        writeln!(page, "<p><code>{}</code></p>", esc(arch))?;
    }
    if let Some(components) = components {
        page.push_str("<table><thead><tr><th>block</th><th>type</th><th>parameters</th></tr></thead><tbody>\n");
        for component in components {
            let text = |k: &str| component.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let params = component.get("params").map(|p| p.to_string()).unwrap_or_default();
            writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&text("name")),
                esc(&text("block_type")),
                esc(&params)
            )?;
        }
        page.push_str("</tbody></table>\n");
    }
    let metrics: Vec<String> =
        best.metrics.iter().map(|(k, v)| format!("{} {}", labels::label(k), format_number(*v))).collect();
    writeln!(page, "<p>{}</p>", esc(&metrics.join(" · ")))?;
    Ok(())
}
