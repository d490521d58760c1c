//! Issue 16 for model files: `snac predict` and `snac export` on a broken
//! or inconsistent quantized model (or a bad input) exit non-zero with an
//! error naming the file, the layer and the field, never panic, and export
//! writes nothing.

use serde_json::Value;
use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::quantized::{QuantTypes, QuantizedModel};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snac"))
}

/// A real model: 4 inputs → Dense 6 → tanh → Dense 3 (→ softmax), so its
/// layers are `[Dense 0, Tanh 1, Dense 2, Identity 2]`.
fn model_json() -> Value {
    let arch = Arch::new(
        Shape::Flat(4),
        vec![Component::mlp("a", 6, Norm::None, Activation::Tanh), Component::output("out", 3, Activation::Softmax)],
    );
    let params = |index: usize, name: &str| -> Option<Vec<f32>> {
        let n = match (index, name) {
            (0, "kernel") => 24,
            (0, "bias") => 6,
            (2, "kernel") => 18,
            (2, "bias") => 3,
            _ => return None,
        };
        Some((0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0 + index as f32 * 0.1).collect())
    };
    let model = QuantizedModel::build(&arch, &params, &|_| None, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap();
    serde_json::to_value(model).unwrap()
}

/// Writes `model` as local search does (under `quantized_model`).
fn write_model(dir: &Path, model: &Value) -> PathBuf {
    let path = dir.join("best_model_8b3i.json");
    let file = serde_json::json!({"accuracy": 0.5, "quantized_model": model});
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    path
}

fn write_input(dir: &Path, rows: usize, values: &[f64]) -> PathBuf {
    let path = dir.join("x.npy");
    snac_core::data::write_npy_f64(&path, &[rows, values.len() / rows], values).unwrap();
    path
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure without a panic whose message holds every `part`.
fn assert_refused(output: &Output, parts: &[&str]) {
    let stderr = stderr_of(output);
    assert!(!output.status.success(), "expected a failure, got success; stderr:\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in parts {
        assert!(stderr.contains(part), "'{part}' missing from:\n{stderr}");
    }
}

/// `snac predict` and `snac export` on `model` after `change`: both refused
/// with `parts` in the message, and export leaves no output directory.
fn both_refuse(change: impl FnOnce(&mut Value), parts: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = model_json();
    change(&mut model);
    let path = write_model(dir.path(), &model);
    let x = write_input(dir.path(), 2, &[0.5, -1.0, 0.25, 2.0, 1.0, 0.0, -0.5, 3.0]);
    let mut all = vec!["best_model_8b3i.json"];
    all.extend(parts);
    assert_refused(&snac().arg("predict").arg(&path).arg(&x).output().unwrap(), &all);
    let out = dir.path().join("export");
    assert_refused(&snac().arg("export").arg(&path).arg("--out").arg(&out).output().unwrap(), &all);
    assert!(!out.exists(), "export wrote {} after refusing", out.display());
}

#[test]
fn the_unchanged_model_predicts_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), &model_json());
    let x = write_input(dir.path(), 2, &[0.5, -1.0, 0.25, 2.0, 1.0, 0.0, -0.5, 3.0]);
    let output = snac().arg("predict").arg(&path).arg(&x).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    let out = dir.path().join("export");
    let output = snac().arg("export").arg(&path).arg("--out").arg(&out).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    for file in ["model.onnx", "hls4ml_config.json", "tb_data/tb_input_features.dat", "convert.py", "README.md"] {
        assert!(out.join(file).exists(), "{file}");
    }
}

#[test]
fn table_range_zero() {
    both_refuse(|m| m["layers"][1]["table"]["range"] = 0.into(), &["layers[1] (Tanh (layer 1))", "table.range: 0"]);
}

#[test]
fn table_with_10_entries() {
    both_refuse(
        |m| m["layers"][1]["table"]["table"]["codes"].as_array_mut().unwrap().truncate(10),
        &["layers[1] (Tanh (layer 1))", "table.table.codes: 10 codes", "1024"],
    );
}

#[test]
fn odd_table_range() {
    both_refuse(
        |m| m["layers"][1]["table"]["range"] = 6.into(),
        &["layers[1] (Tanh (layer 1))", "table.range: 6", "power of two"],
    );
}

#[test]
fn code_count_does_not_match_the_shape() {
    both_refuse(
        |m| m["layers"][2]["bias"]["codes"].as_array_mut().unwrap().push(1.into()),
        &["layers[2] (Dense (layer 2))", "bias.codes: 4 codes", "needs 3"],
    );
}

#[test]
fn inputs_that_do_not_chain() {
    both_refuse(|m| m["layers"][2]["inputs"] = 5.into(), &["layers[2] (Dense (layer 2)).inputs: 5", "accepted: 6"]);
}

#[test]
fn code_outside_its_type() {
    both_refuse(
        |m| m["layers"][0]["kernel"]["codes"][3] = 1000.into(),
        &["layers[0] (Dense (layer 0)).kernel.codes[3]: 1000", "-128 to 127"],
    );
}

#[test]
fn width_0() {
    both_refuse(
        |m| m["layers"][1]["result"]["width"] = 0.into(),
        &["layers[1] (Tanh (layer 1)).result.width: 0 bits", "1 to 62"],
    );
}

#[test]
fn width_1000() {
    both_refuse(
        |m| m["layers"][0]["kernel"]["type"]["width"] = 1000.into(),
        &["layers[0] (Dense (layer 0)).kernel.type.width: 1000 bits", "1 to 62"],
    );
}

#[test]
fn missing_layer() {
    both_refuse(
        |m| drop(m["layers"].as_array_mut().unwrap().remove(1)),
        &["layers[1] (Dense (layer 2))", "expected the Tanh activation layer of arch layer 1", "missing"],
    );
}

#[test]
fn nan_input_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), &model_json());
    let x = write_input(dir.path(), 2, &[0.5, -1.0, 0.25, 2.0, 1.0, f64::NAN, -0.5, f64::INFINITY]);
    let out = dir.path().join("out.npy");
    let output = snac().arg("predict").arg(&path).arg(&x).arg("--out").arg(&out).output().unwrap();
    assert_refused(&output, &["x.npy", "row 1, column 1 is NaN", "2 non-finite values", "finite"]);
    assert!(!out.exists());
}

/// A table that is valid but not hls4ml's: predict uses it, but hls4ml
/// would compute its own, so export refuses rather than write test vectors
/// that the hardware would not reproduce.
#[test]
fn export_refuses_a_table_that_is_not_hls4mls() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = model_json();
    model["layers"][1]["table"]["table"]["codes"][700] = 0.into();
    let path = write_model(dir.path(), &model);
    let x = write_input(dir.path(), 1, &[0.5, -1.0, 0.25, 2.0]);
    let output = snac().arg("predict").arg(&path).arg(&x).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let out = dir.path().join("export");
    let output = snac().arg("export").arg(&path).arg("--out").arg(&out).output().unwrap();
    assert_refused(
        &output,
        &["best_model_8b3i.json", "Tanh (layer 1)", "table.table.codes[700] is 0, not hls4ml's Tanh table"],
    );
    assert!(!out.exists());
}
