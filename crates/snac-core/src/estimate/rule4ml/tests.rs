//! Parity with rule4ml 0.2.0 on its own outputs (`../shared/reference-data/
//! rule4ml/`, written by rule4ml in Python): the features of the reference
//! nets, every row of the fixed-config table and of the default grid.
//! Needs the weights (a rule4ml install, see [`Rule4mlEstimator::locate`]);
//! without them the tests say so, and fail under `SNAC_REQUIRE_ALL=1`.

use super::*;
use crate::arch::{Activation, Component, Norm, Shape};
use crate::estimate::Strategy;
use crate::fixed::FixedPoint;
use std::collections::HashMap;

/// `../shared/reference-data/rule4ml`, when there.
fn reference_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let dir = if dir.exists() { dir } else { PathBuf::from(std::env::var_os("SNAC_SHARED_DIR")?) };
    let dir = dir.join("reference-data/rule4ml");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} (rule4ml's reference outputs) is not here", dir.display());
        None
    }
}

fn estimator() -> Option<Rule4mlEstimator> {
    match Rule4mlEstimator::locate() {
        Ok(dir) => Some(Rule4mlEstimator::load(&dir, &Rule4mlRow::default()).expect("rule4ml weights load")),
        Err(error) => {
            crate::missing_test_dependency(&format!("{error:#}"));
            None
        }
    }
}

/// A CSV file as rows of column → text (quoted fields may hold commas).
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let split = |line: &str| {
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut field)),
                _ => field.push(c),
            }
        }
        fields.push(field);
        fields
    };
    let mut lines = text.lines();
    let header = split(lines.next().expect("header"));
    lines.map(|line| header.iter().cloned().zip(split(line)).collect()).collect()
}

/// The reference nets: Dense + ReLU per hidden width, Dense + softmax last,
/// named by their widths (`mlp_64_32_10`: 64 inputs, 32 hidden, 10 outputs).
fn reference_arch(model: &str) -> Arch {
    let widths: Vec<usize> = model.split('_').skip(1).map(|w| w.parse().unwrap()).collect();
    let (&outputs, hidden) = widths[1..].split_last().unwrap();
    let mut components: Vec<Component> = hidden
        .iter()
        .enumerate()
        .map(|(i, &w)| Component::mlp(&format!("b{i}"), w, Norm::None, Activation::Relu))
        .collect();
    components.push(Component::output("output", outputs, Activation::Softmax));
    Arch::new(Shape::Flat(widths[0]), components)
}

fn settings(row: &HashMap<String, String>) -> HlsSettings {
    let precision = &row["Precision"];
    let inner = precision.trim_start_matches("ap_fixed<").trim_end_matches('>');
    let (width, integer) = inner.split_once(',').unwrap();
    HlsSettings {
        precision: FixedPoint::ap_fixed(width.trim().parse().unwrap(), integer.trim().parse().unwrap()).unwrap(),
        reuse_factor: row["Reuse Factor"].parse().unwrap(),
        strategy: Strategy::parse(&row["Strategy"]).unwrap(),
        ..HlsSettings::default()
    }
}

const COLUMNS: [&str; 10] =
    ["BRAM", "BRAM (%)", "DSP", "DSP (%)", "FF", "FF (%)", "LUT", "LUT (%)", "CYCLES", "INTERVAL"];

fn values(estimate: &Estimate) -> [f64; 10] {
    [
        estimate.bram,
        estimate.bram_pct,
        estimate.dsp,
        estimate.dsp_pct,
        estimate.ff,
        estimate.ff_pct,
        estimate.lut,
        estimate.lut_pct,
        estimate.cycles,
        estimate.interval,
    ]
}

/// Compares one row; returns the largest relative error of a value that is
/// not within the table's rounding (0.01), and fails beyond 0.5 %.
fn compare(row: &HashMap<String, String>, estimate: &Estimate, what: &str) -> f64 {
    let mut worst = 0.0f64;
    for (column, predicted) in COLUMNS.iter().zip(values(estimate)) {
        let expected: f64 = row[*column].parse().unwrap();
        let error = (predicted - expected).abs();
        let relative = error / expected.abs().max(1e-12);
        if error > 0.01 {
            worst = worst.max(relative);
        }
        assert!(
            error <= 0.01 || relative <= 0.005,
            "{what}: {column} is {predicted:.4}, rule4ml says {expected} ({:.3} % off)",
            100.0 * relative
        );
    }
    worst
}

#[test]
fn layer_features_match_rule4ml() {
    let Some(dir) = reference_dir() else { return };
    for model in ["mlp_64_32_10", "mlp_64_128_64_32_10", "jet_16_64_32_32_5", "qubit_800_16_8_2", "mlp_64_8_10"] {
        let records = layer_records(&reference_arch(model), 1).unwrap();
        let expected = read_csv(&dir.join(format!("layers_data_{model}.csv")));
        assert_eq!(records.len(), expected.len(), "{model}");
        for (record, row) in records.iter().zip(&expected) {
            assert_eq!(record.layer_type, row["layer_type"], "{model}");
            for (label, value) in row {
                if label.starts_with("layer_") && label != "layer_type" {
                    let expected: f64 = value.parse().unwrap();
                    assert_eq!(record.feature(label).unwrap(), expected, "{model} {} {label}", record.layer_type);
                }
            }
        }
    }
}

#[test]
fn global_features_match_rule4ml() {
    let Some(dir) = reference_dir() else { return };
    let labels = match estimator() {
        Some(estimator) => estimator.predictors[0].global_numerical_labels.clone(),
        None => return,
    };
    for row in read_csv(&dir.join("input_features_fixed.csv")) {
        let records = layer_records(&reference_arch(&row["model"]), row["global_reuse"].parse().unwrap()).unwrap();
        let features = global_features(&records, row["bit_width"].parse().unwrap());
        for label in &labels {
            let expected: f64 = row[label].parse().unwrap();
            assert!(
                (features[label] - expected).abs() < 1e-9,
                "{} {label}: {} vs {expected}",
                row["model"],
                features[label]
            );
        }
    }
}

#[test]
fn every_version_row_of_the_fixed_config_matches_rule4ml() {
    let Some(dir) = reference_dir() else { return };
    let Some(estimator) = estimator() else { return };
    let mut worst = 0.0f64;
    let rows = read_csv(&dir.join("fixed_config_all_versions.csv"));
    for row in &rows {
        let arch = reference_arch(&row["Model"]);
        let board = Board::by_name(&row["Board"]).unwrap();
        let version =
            Rule4mlRow { hls4ml_version: row["HLS4ML Version"].clone(), vivado_version: row["Vivado Version"].clone() };
        let query = Rule4mlQuery { arch: &arch, settings: settings(row), board: &board, row: &version };
        let estimate = estimator.predict(&[query]).unwrap().remove(0);
        let what = format!("{} {} {}", row["Model"], version.hls4ml_version, version.vivado_version);
        worst = worst.max(compare(row, &estimate, &what));
    }
    println!("fixed config: {} rows, largest relative error {:.4} %", rows.len(), 100.0 * worst);
}

#[test]
fn estimate_is_the_first_row_alone() {
    let Some(dir) = reference_dir() else { return };
    let Some(estimator) = estimator() else { return };
    for row in read_csv(&dir.join("fixed_config_first_row.csv")) {
        let board = Board::by_name(&row["Board"]).unwrap();
        let estimate = estimator.estimate(&reference_arch(&row["Model"]), &settings(&row), None, &board).unwrap();
        compare(&row, &estimate, &row["Model"]);
    }
}

#[test]
fn every_row_of_the_default_grid_matches_rule4ml() {
    let Some(dir) = reference_dir() else { return };
    let Some(estimator) = estimator() else { return };
    let rows = read_csv(&dir.join("default_grid.csv"));
    let boards: HashMap<&str, Board> = Board::NAMES.iter().map(|&n| (n, Board::by_name(n).unwrap())).collect();
    let versions: Vec<Rule4mlRow> = rows
        .iter()
        .map(|row| Rule4mlRow {
            hls4ml_version: row["HLS4ML Version"].clone(),
            vivado_version: row["Vivado Version"].clone(),
        })
        .collect();
    let mut worst = 0.0f64;
    let mut models: Vec<&str> = rows.iter().map(|row| row["Model"].as_str()).collect();
    models.dedup();
    for model in models {
        // rule4ml predicted each model's grid in one call: so do we.
        let arch = reference_arch(model);
        let indices: Vec<usize> = (0..rows.len()).filter(|&i| rows[i]["Model"] == model).collect();
        let queries: Vec<Rule4mlQuery<'_>> = indices
            .iter()
            .map(|&i| Rule4mlQuery {
                arch: &arch,
                settings: settings(&rows[i]),
                board: &boards[rows[i]["Board"].as_str()],
                row: &versions[i],
            })
            .collect();
        let estimates = estimator.predict(&queries).unwrap();
        for (&i, estimate) in indices.iter().zip(&estimates) {
            let row = &rows[i];
            let what = format!(
                "{model} {} {} {} rf {} {} {}",
                row["Board"],
                row["Strategy"],
                row["Precision"],
                row["Reuse Factor"],
                row["HLS4ML Version"],
                row["Vivado Version"]
            );
            worst = worst.max(compare(row, estimate, &what));
        }
    }
    println!("default grid: {} rows, largest relative error {:.4} %", rows.len(), 100.0 * worst);
}

#[test]
fn unknown_rows_boards_and_layers_are_named() {
    let Some(estimator) = estimator() else { return };
    let bad = Rule4mlRow { hls4ml_version: "0.9.0".into(), vivado_version: "2019.1".into() };
    let message = format!("{:#}", Rule4mlEstimator::load(&estimator.weights_dir, &bad).unwrap_err());
    assert!(message.contains("0.9.0") && message.contains("0.8.1, 1.1.0"), "{message}");
    let bad = Rule4mlRow { hls4ml_version: "1.1.0".into(), vivado_version: "2018.3".into() };
    let message = format!("{:#}", Rule4mlEstimator::load(&estimator.weights_dir, &bad).unwrap_err());
    assert!(message.contains("2018.3") && message.contains("2019.1, 2019.2"), "{message}");

    let arch = reference_arch("mlp_64_8_10");
    let custom = Board::custom("xcvu9p", 1_182_240, 2_364_480, 6_840, 4_320).unwrap();
    let message = format!("{:#}", estimator.estimate(&arch, &HlsSettings::default(), None, &custom).unwrap_err());
    assert!(message.contains("xcvu9p") && message.contains("analytical"), "{message}");

    let gelu = Arch::new(Shape::Flat(8), vec![Component::output("output", 2, Activation::Gelu)]);
    let board = Board::by_name("zcu102").unwrap();
    let message = format!("{:#}", estimator.estimate(&gelu, &HlsSettings::default(), None, &board).unwrap_err());
    assert!(message.contains("gelu") && message.contains("analytical"), "{message}");
}

#[test]
fn missing_weights_say_where_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let message = format!("{:#}", Rule4mlEstimator::load(dir.path(), &Rule4mlRow::default()).unwrap_err());
    assert!(
        message.contains("BRAM.config.json") && message.contains("pip install --no-deps rule4ml==0.2.0"),
        "{message}"
    );
}

/// sMAPE in %, a pair of zeros counting as exact (as the analytical
/// estimator's validation computes it).
fn smape(pairs: &[(f64, f64)]) -> f64 {
    let terms = pairs.iter().map(|&(predicted, actual)| {
        let scale = predicted.abs() + actual.abs();
        if scale == 0.0 { 0.0 } else { 2.0 * (predicted - actual).abs() / scale }
    });
    100.0 * terms.sum::<f64>() / pairs.len() as f64
}

/// rule4ml against the real HLS reports the analytical estimator is
/// validated on (`testdata/hls4ml_baselines.json`: Dense on 1 input at
/// ap_fixed<16,6>, xcu250, 5 ns clock, which rule4ml cannot be told: it
/// assumes 10 ns). Prints the error per resource, in SNAC-Pack's row and in
/// the row of each report's Vivado/Vitis version; leaky_relu, which rule4ml
/// does not know, is left out.
#[test]
fn error_on_hls4ml_synthesis_baselines() {
    let Some(estimator) = estimator() else { return };
    let data: serde_json::Value = serde_json::from_str(include_str!("../testdata/hls4ml_baselines.json")).unwrap();
    let board = Board::by_name("alveo-u250").unwrap();
    let hls = HlsSettings {
        precision: FixedPoint::ap_fixed(16, 6).unwrap(),
        reuse_factor: 1,
        strategy: Strategy::Latency,
        ..HlsSettings::default()
    };
    let keys = ["lut", "ff", "dsp", "bram", "latency"];
    for matched_version in [false, true] {
        let mut pairs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); keys.len()];
        for case in data["cases"].as_array().unwrap() {
            let number = |key: &str| case[key].as_f64().unwrap();
            let activation = Activation::parse(case["activation"].as_str().unwrap()).unwrap();
            let arch = Arch::new(
                Shape::Flat(number("inputs") as usize),
                vec![Component::output("output", number("units") as usize, activation)],
            );
            let path = case["path"].as_str().unwrap();
            let mut row = Rule4mlRow::default();
            if matched_version {
                // test/pytest/baselines/<tool>/<version>/...: Vitis baselines
                // come from hls4ml 1.x.
                let mut parts = path.split('/').skip(3);
                let tool = parts.next().unwrap();
                row.vivado_version = parts.next().unwrap().to_string();
                if tool == "Vitis" {
                    row.hls4ml_version = "1.1.0".into();
                }
            }
            let query = Rule4mlQuery { arch: &arch, settings: hls, board: &board, row: &row };
            let Ok(mut estimates) = estimator.predict(&[query]) else {
                assert_eq!(case["activation"], "leaky_relu", "{path}");
                continue;
            };
            let estimate = estimates.remove(0);
            let predicted = [estimate.lut, estimate.ff, estimate.dsp, estimate.bram, estimate.cycles];
            for (index, key) in keys.iter().enumerate() {
                pairs[index].push((predicted[index], number(key)));
            }
            println!(
                "{:<80} {:>8.0}/{:<6} {:>6.0}/{:<5} {:>5.1}/{:<3} {:>5.1}/{:<3} {:>6.1}/{}",
                path.trim_start_matches("test/pytest/baselines/"),
                predicted[0],
                number("lut"),
                predicted[1],
                number("ff"),
                predicted[2],
                number("dsp"),
                predicted[3],
                number("bram"),
                predicted[4],
                number("latency")
            );
        }
        let label = if matched_version { "the report's tool version" } else { "SNAC-Pack's row (0.8.1, 2019.1)" };
        for (key, pairs) in keys.iter().zip(&pairs) {
            let error = smape(pairs);
            println!("rule4ml sMAPE {key} in {label}: {error:.1} % over {} reports", pairs.len());
            assert!(error.is_finite(), "{key}");
        }
    }
}
