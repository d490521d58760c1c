//! Fitting the analytical estimator's prices on the corpus, and measuring
//! its error honestly: leave-one-source-out, so that no design's own report
//! tunes its estimate (`snac estimate --calibrate`, `--validate`).

use super::analytical::{Coefficients, Features, PRIOR, features, layer_stages, price, stage_bits};
use super::corpus::{Design, designs};
use super::{Board, Estimate, HlsSettings, IoType, Report, ResourceEstimator, Rule4mlEstimator, Strategy};
use anyhow::Result;
use std::collections::BTreeSet;

/// The figures the validation compares, as the reports name them.
pub const KEYS: [&str; 5] = ["lut", "ff", "dsp", "bram", "latency"];

/// One corpus design, counted once.
pub struct Sample {
    pub design: Design,
    pub settings: HlsSettings,
    pub features: Features,
}

/// Corpus designs the estimator cannot build: (id, reason).
pub type Skipped = Vec<(String, String)>;

/// A subset of the corpus the error is reported on: its name and test.
pub type Subset = (&'static str, fn(&Sample) -> bool);

/// A price the latency fit searches, and its grid.
type Axis = (fn(&mut Coefficients) -> &mut f64, Vec<f64>);

/// Every corpus design whose model the estimator can build, and those it
/// cannot with the reason.
pub fn samples() -> Result<(Vec<Sample>, Skipped)> {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for design in designs()? {
        let built = design.ops().and_then(|ops| Ok((design.settings()?, ops)));
        match built {
            Ok((settings, ops)) => {
                let features = features(&ops, &settings, design.fabric_multipliers());
                if std::env::var("SNAC_DEBUG_DESIGN").is_ok_and(|id| id == design.id) {
                    eprintln!("{ops:#?}\n{features:#?}");
                }
                kept.push(Sample { design, settings, features });
            }
            Err(error) => skipped.push((design.id.clone(), format!("{error:#}"))),
        }
    }
    Ok((kept, skipped))
}

fn estimate(sample: &Sample, c: &Coefficients) -> Estimate {
    price(&sample.features, c, &sample.settings, &sample.design.board())
}

fn predicted(estimate: &Estimate, key: &str) -> f64 {
    match key {
        "lut" => estimate.lut,
        "ff" => estimate.ff,
        "dsp" => estimate.dsp,
        "bram" => estimate.bram,
        "latency" => estimate.cycles,
        _ => f64::NAN,
    }
}

/// Minimises ‖A x − b‖² over x ≥ 0 by cyclic coordinate descent on the
/// normal equations (the problem is convex; a few hundred sweeps of a
/// handful of unknowns converge to well under the prices' rounding).
pub fn nnls(rows: &[Vec<f64>], targets: &[f64]) -> Vec<f64> {
    let n = rows.first().map_or(0, Vec::len);
    let mut gram = vec![vec![0.0; n]; n];
    let mut rhs = vec![0.0; n];
    for (row, target) in rows.iter().zip(targets) {
        for i in 0..n {
            rhs[i] += row[i] * target;
            for j in 0..n {
                gram[i][j] += row[i] * row[j];
            }
        }
    }
    let mut x = vec![0.0; n];
    for _ in 0..2000 {
        let mut change = 0.0f64;
        for i in 0..n {
            if gram[i][i] <= 0.0 {
                continue;
            }
            let gradient: f64 = (0..n).map(|j| gram[i][j] * x[j]).sum::<f64>() - rhs[i];
            let next = (x[i] - gradient / gram[i][i]).max(0.0);
            change = change.max((next - x[i]).abs() / (1.0 + x[i].abs()));
            x[i] = next;
        }
        if change < 1e-12 {
            break;
        }
    }
    x
}

/// Relative-error least squares of `actual ≈ units · prices`: each design's
/// row is divided by its actual figure, so a large design does not outweigh
/// the small ones. Returns the prices.
fn fit_linear<'a>(samples: impl Iterator<Item = (&'a [f64], f64, f64)>, prior: &[f64]) -> Vec<f64> {
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (units, actual, weight) in samples {
        if actual > 0.0 {
            let scale = weight.sqrt() / actual;
            rows.push(units.iter().map(|u| u * scale).collect::<Vec<f64>>());
            targets.push(weight.sqrt());
        }
    }
    // One pseudo-observation per price, "price ≈ prior" in relative terms,
    // weighted like PRIOR_WEIGHT designs: a price few designs determine
    // stays near its hardware fact instead of absorbing what the units do
    // not explain (a source left out then is not priced by a fluke).
    for (index, &value) in prior.iter().enumerate() {
        if value > 0.0 {
            let mut row = vec![0.0; prior.len()];
            row[index] = PRIOR_WEIGHT.sqrt() / value;
            rows.push(row);
            targets.push(PRIOR_WEIGHT.sqrt());
        }
    }
    nnls(&rows, &targets)
}

/// How much weight the prior of each price has, in sources (each source's
/// designs weigh 1 together).
const PRIOR_WEIGHT: f64 = 0.5;

/// Each design's weight in a fit: 1 / (designs of its source), so that
/// every source counts the same: a project that committed 35 reports of
/// one setup does not outvote ten projects of one report each.
fn source_weights(samples: &[&Sample]) -> std::collections::HashMap<String, f64> {
    let mut counts = std::collections::HashMap::new();
    for s in samples {
        *counts.entry(s.design.source_group.clone()).or_insert(0.0) += 1.0;
    }
    counts.into_iter().map(|(group, n)| (group, 1.0 / n)).collect()
}

/// sMAPE in % with a weight per pair (prediction, actual, weight).
fn weighted_smape(pairs: &[(f64, f64, f64)]) -> f64 {
    let total: f64 = pairs.iter().map(|p| p.2).sum();
    if total == 0.0 {
        return f64::NAN;
    }
    let terms = pairs.iter().map(|&(p, a, w)| {
        let scale = p.abs() + a.abs();
        if scale == 0.0 { 0.0 } else { w * 2.0 * (p - a).abs() / scale }
    });
    100.0 * terms.sum::<f64>() / total
}

/// Fits the prices of `report` on `samples`, starting from [`PRIOR`] (which
/// also stands for what the data cannot determine).
pub fn fit(samples: &[&Sample], report: Report) -> Coefficients {
    let mut c = PRIOR;
    let weights = source_weights(samples);
    let weights = &weights;
    let with = |key: &'static str| {
        samples.iter().filter_map(move |s| {
            let actual = s.design.figures(report).and_then(|f| f.get(key))?;
            Some((*s, actual, weights[&s.design.source_group]))
        })
    };
    if with("lut").count() > 0 {
        let prices = fit_linear(with("lut").map(|(s, a, w)| (&s.features.lut[..], a, w)), &PRIOR.lut);
        keep_determined(&mut c.lut, &prices, with("lut").map(|(s, _, _)| &s.features.lut[..]));
    }
    // The schedule first: the FFs' pipeline registers depend on it.
    fit_latency(&mut c, &with("latency").collect::<Vec<_>>());
    if with("ff").count() > 0 {
        // The FF units plus the pipeline's stage bits at the fitted delays.
        let rows: Vec<(Vec<f64>, f64, f64)> = with("ff")
            .map(|(s, a, w)| {
                let stages = layer_stages(&s.features, &c, &s.settings);
                let mut row = s.features.ff.to_vec();
                row.push(stage_bits(&s.features, &stages));
                (row, a, w)
            })
            .collect();
        let mut prior = PRIOR.ff.to_vec();
        prior.push(PRIOR.ff_per_stage_bit);
        let prices = fit_linear(rows.iter().map(|(row, a, w)| (&row[..], *a, *w)), &prior);
        let mut all = c.ff.to_vec();
        all.push(c.ff_per_stage_bit);
        keep_determined(&mut all, &prices, rows.iter().map(|(row, _, _)| &row[..]));
        c.ff_per_stage_bit = all.pop().expect("one more");
        c.ff.copy_from_slice(&all);
        scale_to_smape(&mut c, &with("ff").collect::<Vec<_>>(), "ff", |c, k| {
            c.ff.iter_mut().for_each(|p| *p *= k);
            c.ff_per_stage_bit *= k;
        });
    }
    if with("lut").count() > 0 {
        scale_to_smape(&mut c, &with("lut").collect::<Vec<_>>(), "lut", |c, k| c.lut.iter_mut().for_each(|p| *p *= k));
    }
    // DSPs: the share of DSP-eligible constant products that stay DSPs,
    // by sMAPE over a grid (a least-squares fit is dominated by designs
    // with a handful of DSPs).
    let dsp: Vec<(&Sample, f64, f64)> = with("dsp").collect();
    if dsp.iter().any(|(s, _, _)| s.features.dsp_constant > 0.0) {
        let error = |share: f64| {
            let pairs: Vec<(f64, f64, f64)> = dsp
                .iter()
                .map(|(s, a, w)| (s.features.dsp_variable + s.features.dsp_constant * share, *a, *w))
                .collect();
            weighted_smape(&pairs)
        };
        let best = (0..=100).map(|i| i as f64 / 100.0).min_by(|a, b| error(*a).total_cmp(&error(*b)));
        c.dsp_per_constant_product = best.expect("a grid");
    }
    c
}

/// Multiplies a resource's prices by the factor (over a grid from 0.5 to
/// 2) that minimises its sMAPE: least squares in relative error leans low.
fn scale_to_smape(c: &mut Coefficients, samples: &[(&Sample, f64, f64)], key: &str, scale: fn(&mut Coefficients, f64)) {
    let error = |k: f64| {
        let mut trial = *c;
        scale(&mut trial, k);
        let pairs: Vec<(f64, f64, f64)> =
            samples.iter().map(|(s, a, w)| (predicted(&estimate(s, &trial), key), *a, *w)).collect();
        weighted_smape(&pairs)
    };
    let best = (0..=60).map(|i| 0.5 * 2f64.powf(i as f64 / 30.0)).min_by(|a, b| error(*a).total_cmp(&error(*b)));
    scale(c, best.expect("a grid"));
}

/// Prices whose unit no sample uses stay as they were.
fn keep_determined<'a>(prices: &mut [f64], fitted: &[f64], units: impl Iterator<Item = &'a [f64]>) {
    let mut used = vec![false; prices.len()];
    for row in units {
        for (i, u) in row.iter().enumerate() {
            used[i] |= *u > 0.0;
        }
    }
    for i in 0..prices.len() {
        if used[i] {
            prices[i] = fitted[i];
        }
    }
}

/// The schedule's delays, by coordinate search over a grid of plausible
/// values (ceil makes the error piecewise constant), minimising sMAPE.
fn fit_latency(c: &mut Coefficients, samples: &[(&Sample, f64, f64)]) {
    if samples.is_empty() {
        return;
    }
    let error = |c: &Coefficients| {
        let pairs: Vec<(f64, f64, f64)> = samples.iter().map(|(s, a, w)| (estimate(s, c).cycles, *a, *w)).collect();
        weighted_smape(&pairs)
    };
    let grid = |low: f64, high: f64, step: f64| -> Vec<f64> {
        (0..).map(|i| low + step * i as f64).take_while(|v| *v <= high + 1e-9).collect()
    };
    let axes: [Axis; 5] = [
        (|c| &mut c.dsp_multiply_ns, grid(0.5, 6.0, 0.25)),
        (|c| &mut c.lut_multiply_ns, grid(0.25, 6.0, 0.25)),
        (|c| &mut c.adder_level_ns, grid(0.1, 3.0, 0.05)),
        (|c| &mut c.layer_cycles, grid(0.0, 4.0, 0.5)),
        (|c| &mut c.stream_layer_cycles, grid(0.0, 8.0, 0.5)),
    ];
    let mut best = error(c);
    for _ in 0..4 {
        for (field, values) in &axes {
            for value in values {
                let mut trial = *c;
                *field(&mut trial) = *value;
                let e = error(&trial);
                if e < best - 1e-9 {
                    best = e;
                    *c = trial;
                }
            }
        }
    }
}

/// sMAPE in %: the mean of 2·|p − a| / (|p| + |a|), a pair of zeros
/// counting as exact.
pub fn smape(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    let terms = pairs.iter().map(|&(p, a)| {
        let scale = p.abs() + a.abs();
        if scale == 0.0 { 0.0 } else { 2.0 * (p - a).abs() / scale }
    });
    100.0 * terms.sum::<f64>() / pairs.len() as f64
}

/// Median absolute percentage error in %, over pairs whose actual is not 0.
pub fn median_ape(pairs: &[(f64, f64)]) -> f64 {
    let mut errors: Vec<f64> =
        pairs.iter().filter(|(_, a)| *a != 0.0).map(|(p, a)| 100.0 * (p - a).abs() / a.abs()).collect();
    if errors.is_empty() {
        return f64::NAN;
    }
    errors.sort_by(f64::total_cmp);
    let mid = errors.len() / 2;
    if errors.len() % 2 == 1 { errors[mid] } else { (errors[mid - 1] + errors[mid]) / 2.0 }
}

/// The source groups, in order.
pub fn groups(samples: &[Sample]) -> Vec<String> {
    samples.iter().map(|s| s.design.source_group.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Prices fitted on every sample: what [`super::analytical::CSYNTH`] and
/// [`super::analytical::SYNTH`] hold.
pub fn fit_all(samples: &[Sample], report: Report) -> Coefficients {
    fit(&samples.iter().collect::<Vec<_>>(), report)
}

/// One design's figures against its leave-one-source-out estimate.
pub struct Prediction<'a> {
    pub sample: &'a Sample,
    pub estimate: Estimate,
}

/// Every sample with figures of `report`, predicted by prices fitted on
/// the other sources.
pub fn leave_one_source_out<'a>(samples: &'a [Sample], report: Report) -> Vec<Prediction<'a>> {
    let mut predictions = Vec::new();
    for group in groups(samples) {
        let in_sample = std::env::var_os("SNAC_IN_SAMPLE").is_some();
        let training: Vec<&Sample> = samples.iter().filter(|s| in_sample || s.design.source_group != group).collect();
        let c = fit(&training, report);
        for sample in samples.iter().filter(|s| s.design.source_group == group && s.design.figures(report).is_some()) {
            predictions.push(Prediction { sample, estimate: estimate(sample, &c) });
        }
    }
    predictions
}

/// Subsets the error is reported on.
pub fn subsets() -> Vec<Subset> {
    vec![
        ("all", |_| true),
        ("io_parallel", |s| s.settings.io_type == IoType::Parallel),
        ("io_stream", |s| s.settings.io_type == IoType::Stream),
        ("Latency strategy", |s| s.settings.strategy == Strategy::Latency),
        ("Resource strategy", |s| s.settings.strategy == Strategy::Resource),
        ("pruned (sparsity > 0)", |s| s.design.sparsity.unwrap_or(0.0) > 0.0),
        ("unpruned", |s| s.design.sparsity.unwrap_or(0.0) == 0.0),
        ("multi-layer MLPs", |s| s.design.is_multi_layer_mlp()),
    ]
}

/// (sMAPE, median APE, count) of `key` over `predictions` that pass `keep`.
pub fn errors(
    predictions: &[Prediction<'_>],
    report: Report,
    key: &str,
    keep: impl Fn(&Sample) -> bool,
) -> (f64, f64, usize) {
    let pairs: Vec<(f64, f64)> = predictions
        .iter()
        .filter(|p| keep(p.sample))
        .filter_map(|p| p.sample.design.figures(report)?.get(key).map(|a| (predicted(&p.estimate, key), a)))
        .collect();
    (smape(&pairs), median_ape(&pairs), pairs.len())
}

/// The validation report as Markdown: the leave-one-source-out error per
/// subset and figure, for C-synthesis and post-synthesis reports; against
/// rule4ml on the designs it can predict, when `rule4ml` is given; the
/// worst-predicted designs; what the corpus holds.
pub fn validation_report(
    samples: &[Sample],
    skipped: &[(String, String)],
    rule4ml: Option<&Rule4mlEstimator>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let groups = groups(samples);
    let _ = writeln!(
        out,
        "Corpus: {} designs from {} sources (`crates/snac-core/src/estimate/testdata/corpus/`). Each source's \
         designs are predicted by prices fitted on the other sources only (leave-one-source-out).\n",
        samples.len(),
        groups.len()
    );
    for report in [Report::Csynth, Report::Synth] {
        let predictions = leave_one_source_out(samples, report);
        let title = match report {
            Report::Csynth => "C-synthesis (HLS report)",
            Report::Synth => "Post-synthesis (Vivado)",
        };
        if predictions.is_empty() {
            let _ = writeln!(out, "### {title}\n\nNo design in the corpus has these figures.\n");
            continue;
        }
        let _ = writeln!(out, "### {title}: sMAPE % / median APE % (designs)\n");
        let _ = writeln!(out, "| subset | LUT | FF | DSP | BRAM | latency |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for (name, keep) in subsets() {
            let cells: Vec<String> = KEYS
                .iter()
                .map(|key| {
                    let (smape, median, n) = errors(&predictions, report, key, keep);
                    if n == 0 { "–".into() } else { format!("{smape:.0} / {median:.0} ({n})") }
                })
                .collect();
            if cells.iter().all(|c| c == "–") {
                continue;
            }
            let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
        }
        // Each source's sMAPE, averaged: every source counts the same.
        let cells: Vec<String> = KEYS
            .iter()
            .map(|key| {
                let per_source: Vec<f64> = groups
                    .iter()
                    .map(|group| errors(&predictions, report, key, |s| &s.design.source_group == group))
                    .filter(|(_, _, n)| *n > 0)
                    .map(|(smape, _, _)| smape)
                    .collect();
                format!(
                    "{:.0} ({} sources)",
                    per_source.iter().sum::<f64>() / per_source.len() as f64,
                    per_source.len()
                )
            })
            .collect();
        let _ = writeln!(out, "| mean over sources | {} |", cells.join(" | "));
        let _ = writeln!(out);
        let _ = writeln!(out, "By source (each predicted with itself left out), sMAPE %:\n");
        let _ = writeln!(out, "| source | designs | LUT | FF | DSP | BRAM | latency |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for group in &groups {
            let in_group = |s: &Sample| &s.design.source_group == group;
            let designs = predictions.iter().filter(|p| in_group(p.sample)).count();
            if designs == 0 {
                continue;
            }
            let cells: Vec<String> = KEYS
                .iter()
                .map(|key| match errors(&predictions, report, key, in_group) {
                    (_, _, 0) => "–".into(),
                    (smape, _, _) => format!("{smape:.0}"),
                })
                .collect();
            let _ = writeln!(out, "| {group} | {designs} | {} |", cells.join(" | "));
        }
        let _ = writeln!(out);
        if report == Report::Csynth {
            if let Some(rule4ml) = rule4ml {
                let _ = writeln!(out, "{}", rule4ml_comparison(&predictions, rule4ml));
            }
            let _ = writeln!(out, "{}", worst(&predictions, report));
        }
    }
    let _ = writeln!(out, "Sources (designs):\n");
    for group in &groups {
        let n = samples.iter().filter(|s| &s.design.source_group == group).count();
        let _ = writeln!(out, "- {group} ({n})");
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nNot built ({}):\n", skipped.len());
        for (id, reason) in skipped {
            let _ = writeln!(out, "- {id}: {reason}");
        }
    }
    out
}

/// The analytical estimator against rule4ml on the io_parallel MLPs rule4ml
/// can predict (rule4ml knows no other).
fn rule4ml_comparison(predictions: &[Prediction<'_>], rule4ml: &Rule4mlEstimator) -> String {
    use std::fmt::Write;
    let mut pairs: Vec<[Vec<(f64, f64)>; 2]> = KEYS.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut count = 0;
    for p in predictions {
        let design = &p.sample.design;
        let Some(arch) = design.to_arch() else { continue };
        if p.sample.settings.io_type != IoType::Parallel {
            continue;
        }
        let board = design.board();
        let board = if Board::NAMES.contains(&board.name.as_str()) {
            board
        } else {
            Board::by_name("alveo-u250").expect("known board")
        };
        let Ok(theirs) = rule4ml.estimate(&arch, &p.sample.settings, None, &board) else { continue };
        count += 1;
        for (index, key) in KEYS.iter().enumerate() {
            if let Some(actual) = design.figures(Report::Csynth).and_then(|f| f.get(key)) {
                pairs[index][0].push((predicted(&p.estimate, key), actual));
                pairs[index][1].push((predicted(&theirs, key), actual));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Against rule4ml 0.2.0 on the same {count} io_parallel MLP designs (rule4ml's own row for hls4ml 0.8.1 / \
         Vivado 2019.1; parts outside its four boards as the Alveo U250), sMAPE %:\n"
    );
    let _ = writeln!(out, "| estimator | LUT | FF | DSP | BRAM | latency |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (row, name) in ["analytical (this)", "rule4ml"].iter().enumerate() {
        let cells: Vec<String> = pairs.iter().map(|p| format!("{:.0}", smape(&p[row]))).collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    out
}

/// The designs predicted worst (largest LUT error), with their figures.
fn worst(predictions: &[Prediction<'_>], report: Report) -> String {
    let count = if std::env::var_os("SNAC_VALIDATE_ALL").is_some() { usize::MAX } else { 10 };
    use std::fmt::Write;
    let mut rows: Vec<(f64, String)> = predictions
        .iter()
        .filter_map(|p| {
            let figures = p.sample.design.figures(report)?;
            let key = std::env::var("SNAC_WORST_BY").unwrap_or_else(|_| "lut".into());
            let actual = figures.get(&key)?;
            let guess = predicted(&p.estimate, &key);
            let error = 2.0 * (guess - actual).abs() / (guess.abs() + actual.abs()).max(1e-9);
            let cell = |key: &str| match figures.get(key) {
                Some(a) => format!("{:.0} / {a:.0}", predicted(&p.estimate, key)),
                None => format!("{:.0} / –", predicted(&p.estimate, key)),
            };
            Some((
                error,
                format!(
                    "| {} ({}) | {} | {} | {} | {} |",
                    p.sample.design.id,
                    p.sample.design.source_group,
                    cell("lut"),
                    cell("ff"),
                    cell("dsp"),
                    cell("latency")
                ),
            ))
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = String::new();
    let _ = writeln!(out, "Worst LUT predictions (estimate / report):\n");
    let _ = writeln!(out, "| design | LUT | FF | DSP | latency |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (_, row) in rows.iter().take(count) {
        let _ = writeln!(out, "{row}");
    }
    out
}

/// The prices as Rust source, as `analytical.rs` holds them.
pub fn coefficients_source(name: &str, c: &Coefficients) -> String {
    let list = |values: &[f64]| values.iter().map(|v| round(*v)).collect::<Vec<_>>().join(", ");
    format!(
        "pub const {name}: Coefficients = Coefficients {{\n    lut: [{}],\n    ff: [{}],\n    \
         dsp_per_constant_product: {},\n    dsp_multiply_ns: {},\n    lut_multiply_ns: {},\n    \
         adder_level_ns: {},\n    layer_cycles: {},\n    stream_layer_cycles: {},\n    ff_per_stage_bit: {},\n}};",
        list(&c.lut),
        list(&c.ff),
        round(c.dsp_per_constant_product),
        round(c.dsp_multiply_ns),
        round(c.lut_multiply_ns),
        round(c.adder_level_ns),
        round(c.layer_cycles),
        round(c.stream_layer_cycles),
        round(c.ff_per_stage_bit),
    )
}

/// Four significant digits, written so that Rust reads a float back.
fn round(value: f64) -> String {
    if value == 0.0 {
        return "0.0".into();
    }
    let digits = 3 - value.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    let rounded = (value * scale).round() / scale;
    let text = format!("{rounded}");
    if text.contains('.') || text.contains('e') { text } else { format!("{text}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    // For the shipped-prices test, moved here so that analytical.rs does not use calibrate.rs.
    use crate::estimate::analytical::CSYNTH;
    use crate::estimate::calibrate;

    #[test]
    fn shipped_prices_are_the_fit_on_the_corpus() {
        let (samples, _) = calibrate::samples().unwrap();
        let fitted = calibrate::fit_all(&samples, Report::Csynth);
        assert_eq!(
            calibrate::coefficients_source("CSYNTH", &fitted),
            calibrate::coefficients_source("CSYNTH", &CSYNTH),
            "run `snac estimate --calibrate` and paste its output into analytical.rs"
        );
    }

    #[test]
    fn smape_and_median_by_hand() {
        assert_eq!(smape(&[(0.0, 0.0), (1.0, 3.0)]), 50.0);
        assert_eq!(median_ape(&[(2.0, 1.0), (1.0, 1.0), (3.0, 2.0)]), 50.0);
    }

    #[test]
    fn nnls_recovers_prices_and_keeps_them_nonnegative() {
        // y = 2·a + 0·b + 3·c, exactly.
        let rows: Vec<Vec<f64>> =
            (0..12).map(|i| vec![1.0 + i as f64, ((i * 7) % 5) as f64, ((i * 3) % 4) as f64 + 0.5]).collect();
        let targets: Vec<f64> = rows.iter().map(|r| 2.0 * r[0] + 3.0 * r[2]).collect();
        let x = nnls(&rows, &targets);
        assert!((x[0] - 2.0).abs() < 1e-6 && x[1].abs() < 1e-6 && (x[2] - 3.0).abs() < 1e-6, "{x:?}");
        // The unconstrained optimum has a negative price: it is clamped.
        let targets: Vec<f64> = rows.iter().map(|r| 2.0 * r[0] - 1.0 * r[1]).collect();
        assert!(nnls(&rows, &targets).iter().all(|&p| p >= 0.0));
    }

    #[test]
    fn every_corpus_design_is_read_and_built() {
        let (samples, skipped) = samples().unwrap();
        assert!(skipped.is_empty(), "corpus designs the estimator cannot build: {skipped:?}");
        assert!(samples.len() >= 50, "{} designs", samples.len());
        assert!(groups(&samples).len() >= 5);
    }
}
