//! Tests of the quantized model: building, integer against float
//! inference, requantization, and the checks a model file must pass.

use super::forward::{NarrowProducts, affine_codes, affine_codes_wide};
use super::*;
use crate::arch::{Component, Layer, Norm, Shape};
use crate::config::{DatasetConfig, DatasetName};
use crate::fixed::{Overflow, Rounding};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Random parameters for every layer of `arch`, with a spread that drives
/// values across the whole range of narrow types (and past it).
fn random_params(arch: &Arch, rng: &mut ChaCha8Rng, spread: f32) -> HashMap<(usize, String), Vec<f32>> {
    let mut params = HashMap::new();
    for (index, (layer, input, output)) in arch.shapes().unwrap().into_iter().enumerate() {
        let mut add = |name: &str, n: usize, low: f32, high: f32| {
            params.insert((index, name.to_string()), (0..n).map(|_| rng.random_range(low..high)).collect());
        };
        match layer {
            Layer::Dense { units } => {
                add("kernel", input.numel() * units, -spread, spread);
                add("bias", *units, -spread, spread);
            }
            Layer::BatchNorm => {
                let n = output.numel();
                add("gamma", n, 0.2, 3.0);
                add("beta", n, -1.0, 1.0);
                add("moving_mean", n, -2.0, 2.0);
                add("moving_variance", n, 0.05, 4.0);
            }
            _ => {}
        }
    }
    params
}

fn random_masks(arch: &Arch, rng: &mut ChaCha8Rng, keep: f64) -> HashMap<usize, Vec<bool>> {
    let mut masks = HashMap::new();
    for (index, (layer, input, _)) in arch.shapes().unwrap().into_iter().enumerate() {
        if let Layer::Dense { units } = layer {
            masks.insert(index, (0..input.numel() * units).map(|_| rng.random_bool(keep)).collect());
        }
    }
    masks
}

fn build(
    arch: &Arch,
    params: &HashMap<(usize, String), Vec<f32>>,
    masks: &HashMap<usize, Vec<bool>>,
    types: QuantTypes,
) -> Result<QuantizedModel> {
    QuantizedModel::build(
        arch,
        &|i: usize, name: &str| params.get(&(i, name.to_string())).cloned(),
        &|i: usize| masks.get(&i).cloned(),
        types,
    )
}

/// An MLP with BatchNorm and every activation kind with a fixed-point form.
fn every_activation(inputs: usize) -> Arch {
    Arch::new(
        Shape::Flat(inputs),
        vec![
            Component::mlp("a", 12, Norm::Batch, Activation::Relu),
            Component::mlp("b", 10, Norm::None, Activation::Tanh),
            Component::mlp("c", 9, Norm::Batch, Activation::Sigmoid),
            Component::mlp("d", 8, Norm::None, Activation::LeakyRelu),
            Component::mlp("e", 7, Norm::Batch, Activation::Identity),
            Component::mlp("f", 6, Norm::None, Activation::Gelu),
            Component::output("out", 5, Activation::Softmax),
        ],
    )
}

/// Inputs across and beyond the input type's range, plus exact grid points
/// and half-steps (the rounding ties).
fn random_input(rng: &mut ChaCha8Rng, n: usize, fixed: &FixedPoint) -> Vec<f32> {
    let step = fixed.step() as f32;
    (0..n)
        .map(|_| match rng.random_range(0..4) {
            0 => rng.random_range(-1.5..1.5) * fixed.max_value() as f32,
            1 => rng.random_range(-40i32..40) as f32 * step,
            2 => (rng.random_range(-40i32..40) as f32 + 0.5) * step,
            _ => rng.random_range(-1.0..1.0),
        })
        .collect()
}

fn assert_bit_exact(model: &QuantizedModel, x: &[f32]) {
    let (codes, fixed) = model.forward_int(x).unwrap();
    let float = model.forward_float(x).unwrap();
    let from_int: Vec<f64> = codes.iter().map(|&c| fixed.from_code(c)).collect();
    assert_eq!(from_int, float, "integer and float forward passes differ on input {x:?}");
    for (&c, &v) in codes.iter().zip(&float) {
        assert_eq!(fixed.to_code(v), c);
        assert!(c >= fixed.min_code() && c <= fixed.max_code());
    }
}

#[test]
fn integer_and_float_passes_agree_bit_for_bit_on_random_inputs() {
    let arch = every_activation(6);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (total, int) in [(8, 3), (16, 6), (6, 2), (4, 0), (12, 4), (3, 1)] {
        let types = QuantTypes::from_qkeras(total, int).unwrap();
        for spread in [0.3f32, 1.5, 6.0] {
            let params = random_params(&arch, &mut rng, spread);
            let masks = random_masks(&arch, &mut rng, 0.6);
            let model = build(&arch, &params, &masks, types.clone()).unwrap();
            for _ in 0..300 {
                assert_bit_exact(&model, &random_input(&mut rng, 6, &types.input));
            }
        }
    }
}

/// Random per-layer types for every layer of `arch`: widths 2 to 12,
/// integer bits 1 to 4, saturating; some layers keep the model-wide types.
fn random_layer_types(arch: &Arch, base: QuantTypes, rng: &mut ChaCha8Rng) -> QuantTypes {
    let mut types = base;
    for index in 0..arch.layers().count() {
        if rng.random_bool(0.2) {
            continue;
        }
        let mut fixed = || {
            let integer = rng.random_range(1..=4u32);
            let width = rng.random_range(2..=12u32).max(integer);
            FixedPoint::new(width, integer, true, Rounding::HalfEven, Overflow::Saturate).unwrap()
        };
        let layer = LayerTypes { index, weights: Some(fixed()), biases: Some(fixed()), result: Some(fixed()) };
        types = types.with_layer(layer);
    }
    types
}

#[test]
fn per_layer_types_are_used_and_integer_and_float_agree() {
    let arch = every_activation(6);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..8 {
        let types = random_layer_types(&arch, QuantTypes::from_qkeras(8, 3).unwrap(), &mut rng);
        let params = random_params(&arch, &mut rng, 2.0);
        let masks = random_masks(&arch, &mut rng, 0.7);
        let model = build(&arch, &params, &masks, types.clone()).unwrap();
        // Every layer holds its own types.
        for layer in &model.layers {
            let index = layer.arch_index();
            match layer {
                QLayer::Dense { kernel, bias, .. } => {
                    assert_eq!(kernel.fixed, types.weights_at(index), "layer {index} kernel");
                    assert_eq!(bias.fixed, types.biases_at(index), "layer {index} bias");
                }
                QLayer::Activation { result, .. } | QLayer::BatchNorm { result, .. } => {
                    assert_eq!(*result, types.result_at(index), "layer {index} result");
                }
                _ => {}
            }
        }
        for _ in 0..200 {
            assert_bit_exact(&model, &random_input(&mut rng, 6, &types.input));
        }
        // The types survive a model file.
        let back: QuantizedModel = serde_json::from_value(serde_json::to_value(&model).unwrap()).unwrap();
        back.validate().unwrap();
        assert_eq!(back.types, types);
    }
}

#[test]
fn per_layer_entries_are_checked() {
    let arch = every_activation(6);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let params = random_params(&arch, &mut rng, 1.0);
    let base = QuantTypes::from_qkeras(8, 3).unwrap();
    let model = build(&arch, &params, &HashMap::new(), base.clone()).unwrap();
    let layers = arch.layers().count();

    let mut past = model.clone();
    past.types.layers = vec![LayerTypes::new(layers + 3)];
    let err = format!("{:#}", past.validate().unwrap_err());
    assert_mentions(&err, &["types.layers[0].index", &(layers + 3).to_string(), "accepted: 0 to"]);

    let mut twice = model.clone();
    twice.types.layers = vec![LayerTypes::new(1), LayerTypes::new(1)];
    let err = format!("{:#}", twice.validate().unwrap_err());
    assert_mentions(&err, &["types.layers[1].index", "second entry"]);

    let mut bad = model;
    let mut layer = LayerTypes::new(0);
    layer.result = Some(FixedPoint { width: 90, ..base.activations });
    bad.types.layers = vec![layer];
    let err = format!("{:#}", bad.validate().unwrap_err());
    assert_mentions(&err, &["types.layers[0].result"]);
}

/// Every kind of layer that exists in quantized models appears in the test
/// architecture, so the bit-exact test covers all of them.
#[test]
fn the_test_architecture_has_every_layer_kind() {
    let arch = every_activation(6);
    let types = QuantTypes::from_qkeras(8, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let model = build(&arch, &random_params(&arch, &mut rng, 1.0), &HashMap::new(), types).unwrap();
    let mut kinds: Vec<String> = model
        .layers
        .iter()
        .map(|l| match l {
            QLayer::Dense { .. } => "dense".to_string(),
            QLayer::BatchNorm { .. } => "batch_norm".to_string(),
            QLayer::Activation { function, .. } => format!("{function:?}"),
            other => other.describe(),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["Gelu", "Identity", "LeakyRelu", "Relu", "Sigmoid", "Tanh", "batch_norm", "dense"]);
}

/// Real inputs: the embedded 8×8 digits, through a model with real-sized
/// weights, every sample.
#[test]
fn integer_and_float_passes_agree_on_real_digits() {
    let data = crate::data::load(&DatasetConfig::new(DatasetName::Digits)).unwrap();
    let arch = Arch::new(
        Shape::Flat(64),
        vec![
            Component::mlp("h0", 32, Norm::Batch, Activation::Relu),
            Component::mlp("h1", 16, Norm::None, Activation::Tanh),
            Component::output("out", 10, Activation::Softmax),
        ],
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let params = random_params(&arch, &mut rng, 0.4);
    for (total, int) in [(8, 3), (16, 6)] {
        let model =
            build(&arch, &params, &random_masks(&arch, &mut rng, 0.5), QuantTypes::from_qkeras(total, int).unwrap())
                .unwrap();
        for sample in data.train.x.chunks_exact(64).chain(data.val.x.chunks_exact(64)) {
            assert_bit_exact(&model, sample);
        }
    }
}

#[test]
fn requantize_matches_rounding_the_real_value() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let modes = [Rounding::Truncate, Rounding::HalfEven, Rounding::HalfUp];
    let overflows = [Overflow::Wrap, Overflow::Saturate, Overflow::SaturateSymmetric];
    for _ in 0..20_000 {
        let width = rng.random_range(1..=20);
        let integer = rng.random_range(0..=width + 3);
        let signed = rng.random_bool(0.8);
        let to =
            FixedPoint::new(width, integer, signed, modes[rng.random_range(0..3)], overflows[rng.random_range(0..3)])
                .unwrap();
        let frac = rng.random_range(-4..24);
        let code = rng.random_range(-(1i64 << 30)..(1i64 << 30)) >> rng.random_range(0..30);
        let real = code as f64 * 2f64.powi(-frac);
        assert_eq!(requantize(code, frac, &to), to.to_code(real), "code {code} frac {frac} to {to:?}");
    }
}

#[test]
fn accumulators_never_overflow_at_the_extremes() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (total, int) in [(8, 3), (16, 6), (4, 0)] {
        let types = QuantTypes::from_qkeras(total, int).unwrap();
        let arch = Arch::new(Shape::Flat(40), vec![Component::output("out", 3, Activation::Identity)]);
        let params = random_params(&arch, &mut rng, 100.0);
        let model = build(&arch, &params, &HashMap::new(), types.clone()).unwrap();
        let QLayer::Dense { kernel, bias, accumulator, .. } = &model.layers[0] else { panic!() };
        // The input that maximises each output: the extreme code with the weight's sign.
        for j in 0..3 {
            let mut sum: i128 = 0;
            for i in 0..40 {
                let w = kernel.codes[i * 3 + j] as i128;
                let x = if w >= 0 { types.input.max_code() } else { types.input.min_code() } as i128;
                sum += w * x;
            }
            let shift = accumulator.fractional_bits() - kernel.fixed.fractional_bits() - types.input.fractional_bits();
            let total = (sum << shift)
                + ((bias.codes[j] as i128) << (accumulator.fractional_bits() - types.biases.fractional_bits()));
            assert!(total <= accumulator.max_code() as i128 && -total >= accumulator.min_code() as i128);
        }
    }
}

#[test]
fn hls4ml_tables() {
    let tanh = ActivationTable::hls4ml(Activation::Tanh).unwrap();
    let sigmoid = ActivationTable::hls4ml(Activation::Sigmoid).unwrap();
    // ap_fixed<18,8>: 10 fractional bits. Entry N/2 is f(0).
    assert_eq!(tanh.table.codes[512], 0);
    assert_eq!(sigmoid.table.codes[512], 512);
    // Truncation: every entry is at most f(x) and within one step of it.
    for (i, &code) in tanh.table.codes.iter().enumerate() {
        let x = 8.0 * (i as f64 - 512.0) / 1024.0;
        let exact = x.tanh() * 1024.0;
        assert!(code as f64 <= exact + 1e-9 && exact - (code as f64) < 1.0, "tanh entry {i}");
    }
    // Index: x·128 truncated toward zero, + 512 (tanh); x·64 (sigmoid).
    let frac = 10;
    assert_eq!(tanh.index(-1, frac), 512, "−2^-10 truncates toward zero");
    assert_eq!(tanh.index(8, frac), 513);
    assert_eq!(tanh.index(-8, frac), 511);
    assert_eq!(tanh.index(1 << 20, frac), 1023);
    assert_eq!(tanh.index(-(1 << 20), frac), 0);
    assert_eq!(sigmoid.index(16, frac), 513);
    assert_eq!(tanh.index_of_value(-1.0 / 1024.0), 512);
    assert_eq!(tanh.index_of_value(8.0 / 1024.0), 513);
}

#[test]
fn layers_without_a_fixed_point_form_are_named() {
    let types = QuantTypes::from_qkeras(8, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // GELU has one since it is the sigmoid form; LayerNorm has none.
    let arch = Arch::new(
        Shape::Flat(4),
        vec![Component::mlp("h", 3, Norm::Layer, Activation::Relu), Component::output("o", 2, Activation::Softmax)],
    );
    let params = random_params(&arch, &mut rng, 1.0);
    let err = format!("{:#}", build(&arch, &params, &HashMap::new(), types).unwrap_err());
    assert!(err.contains("layer 1 (LayerNorm)"), "{err}");
}

#[test]
fn model_files_round_trip_and_are_checked() {
    let arch = every_activation(5);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let model = build(
        &arch,
        &random_params(&arch, &mut rng, 1.0),
        &random_masks(&arch, &mut rng, 0.7),
        QuantTypes::from_qkeras(8, 3).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("m.json");
    std::fs::write(&bare, serde_json::to_vec(&model).unwrap()).unwrap();
    assert_eq!(QuantizedModel::read(&bare).unwrap(), model);
    let wrapped = dir.path().join("best.json");
    std::fs::write(
        &wrapped,
        serde_json::to_vec(&serde_json::json!({"accuracy": 0.9, "quantized_model": model})).unwrap(),
    )
    .unwrap();
    assert_eq!(QuantizedModel::read(&wrapped).unwrap(), model);
    let other = dir.path().join("other.json");
    std::fs::write(&other, b"{\"hello\": 1}").unwrap();
    let err = format!("{:#}", QuantizedModel::read(&other).unwrap_err());
    assert!(err.contains("other.json") && err.contains(FORMAT), "{err}");
}

#[test]
fn pruned_weights_are_zero_codes() {
    let arch = every_activation(6);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let masks = random_masks(&arch, &mut rng, 0.3);
    let model =
        build(&arch, &random_params(&arch, &mut rng, 1.0), &masks, QuantTypes::from_qkeras(8, 3).unwrap()).unwrap();
    for layer in &model.layers {
        if let QLayer::Dense { index, kernel, .. } = layer {
            for (code, keep) in kernel.codes.iter().zip(&masks[index]) {
                if !keep {
                    assert_eq!(*code, 0);
                }
            }
        }
    }
}

/// The `i32` products agree with the `i64` ones wherever they are used, and
/// are refused where a partial sum could leave `i32` (one past the bound).
#[test]
fn narrow_products_equal_wide_products_up_to_the_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (inputs, outputs, rows) = (37, 13, 50);
    let fixed = FixedPoint::from_qkeras(16, 6).unwrap();
    let bias = Codes::quantize(fixed, (0..outputs).map(|_| rng.random_range(-100.0..100.0)));
    let accumulator = FixedPoint::ap_fixed(62, 32).unwrap();
    for weight_limit in [3i64, 1 << 10, 1 << 20] {
        let kernel_codes: Vec<i64> =
            (0..inputs * outputs).map(|_| rng.random_range(-weight_limit..=weight_limit)).collect();
        let kernel = Codes { fixed, codes: kernel_codes.clone(), narrow: NarrowKernel::default() };
        let column_sum = |o: usize| (0..inputs).map(|i| kernel_codes[i * outputs + o].abs()).sum::<i64>();
        let widest = (0..outputs).max_by_key(|&o| column_sum(o)).unwrap();
        let column_max = column_sum(widest);
        // The largest input code for which the narrow path still applies,
        // and one more.
        let largest = (i32::MAX as i64 - 1) / column_max;
        for (limit, narrow) in [(largest, true), (largest + 1, false)] {
            let mut codes: Vec<i64> = (0..inputs * rows).map(|_| rng.random_range(-limit..=limit)).collect();
            // One row that reaches the bound on the widest column.
            for i in 0..inputs {
                codes[i] = limit * kernel_codes[i * outputs + widest].signum();
            }
            assert_eq!(NarrowProducts::new(&codes, &kernel, outputs).is_some(), narrow, "limit {limit}");
            assert_eq!(
                affine_codes(&codes, 8, &kernel, &bias, &accumulator),
                affine_codes_wide(&codes, 8, &kernel, &bias, &accumulator),
                "weights within ±{weight_limit}, inputs within ±{limit}"
            );
        }
    }
}

// ---- The validated loader (issue 16): bad model files are errors, never
// panics, never a silently different model.

use crate::arch::{BlockType, Padding};
use proptest::prelude::*;
use serde_json::Value;

/// Random parameters for every layer kind with parameters.
fn all_params(arch: &Arch, rng: &mut ChaCha8Rng) -> HashMap<(usize, String), Vec<f32>> {
    let mut params = random_params(arch, rng, 1.0);
    for (index, (layer, input, _)) in arch.shapes().unwrap().into_iter().enumerate() {
        let mut add = |name: &str, n: usize| {
            params.insert((index, name.to_string()), (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect());
        };
        match *layer {
            // Per row: a Dense on a set sees the features of one element.
            Layer::Dense { units } => {
                add("kernel", input.rows_and_features().1 * units);
                add("bias", units);
            }
            Layer::Conv2d { filters, kernel, .. } => {
                let channels = input.rows_and_features().1;
                add("kernel", kernel * kernel * channels * filters);
                add("bias", filters);
            }
            Layer::ConvAttention { hidden, .. } => {
                let channels = input.rows_and_features().1;
                for name in ["query", "key", "value"] {
                    add(&format!("{name}_kernel"), channels * hidden);
                    add(&format!("{name}_bias"), hidden);
                }
                add("output_kernel", hidden * channels);
                add("output_bias", channels);
            }
            _ => {}
        }
    }
    params
}

fn component(name: &str, layers: Vec<Layer>) -> Component {
    Component { name: name.to_string(), block_type: BlockType::Mlp, layers }
}

/// A convolution, attention and a Flatten before a Dense head.
fn conv_arch() -> Arch {
    Arch::new(
        Shape::Image { height: 4, width: 4, channels: 2 },
        vec![
            component("c", vec![Layer::Conv2d { filters: 3, kernel: 3, padding: Padding::Same }]),
            component("a", vec![Layer::ConvAttention { hidden: 2, scale: true }]),
            component("f", vec![Layer::Flatten]),
            Component::output("out", 4, Activation::Softmax),
        ],
    )
}

/// DeepSets: Dense per element, mean pooling, a Dense head.
fn set_arch() -> Arch {
    Arch::new(
        Shape::Set { elements: 3, features: 4 },
        vec![
            Component::mlp("phi", 5, Norm::None, Activation::Relu),
            component("pool", vec![Layer::Aggregate(Aggregation::Mean)]),
            Component::output("out", 2, Activation::Softmax),
        ],
    )
}

/// Real model files of every layer kind, as JSON values.
fn model_jsons() -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let types = QuantTypes::from_qkeras(8, 3).unwrap();
    let dense = every_activation(5);
    let masks = random_masks(&dense, &mut rng, 0.7);
    [(dense, masks), (conv_arch(), HashMap::new()), (set_arch(), HashMap::new())]
        .into_iter()
        .map(|(arch, masks)| {
            let model = build(&arch, &all_params(&arch, &mut rng), &masks, types.clone()).unwrap();
            serde_json::to_value(&model).unwrap()
        })
        .collect()
}

fn load(value: &Value) -> Result<QuantizedModel> {
    QuantizedModel::from_json(&value.to_string())
}

/// The error text of loading `value` after `change`.
fn load_error(model: usize, change: impl FnOnce(&mut Value)) -> String {
    let mut value = model_jsons().swap_remove(model);
    change(&mut value);
    format!("{:#}", load(&value).expect_err("the changed model must be refused"))
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "'{part}' missing from: {err}");
    }
}

#[test]
fn real_models_of_every_kind_load_and_run() {
    for value in model_jsons() {
        let model = load(&value).unwrap();
        assert_eq!(serde_json::to_value(&model).unwrap(), value);
        let x: Vec<f32> = (0..2 * model.input_features).map(|i| i as f32 * 0.37 - 2.0).collect();
        assert_eq!(model.predict(&x).unwrap().len(), 2 * model.output_features);
    }
}

/// `every_activation`'s layers: 0 Dense, 1 BatchNorm, 2 Relu, 3 Dense, 4 Tanh, ...
#[test]
fn table_range_zero_is_refused() {
    let err = load_error(0, |v| v["layers"][4]["table"]["range"] = 0.into());
    assert_mentions(&err, &["layers[4]", "Tanh", "table.range", ": 0", "power of two"]);
}

#[test]
fn odd_table_range_is_refused() {
    let err = load_error(0, |v| v["layers"][4]["table"]["range"] = 3.into());
    assert_mentions(&err, &["layers[4]", "table.range", ": 3", "power of two from 1 to 512"]);
    let err = load_error(0, |v| v["layers"][4]["table"]["range"] = 1024.into());
    assert_mentions(&err, &["table.range", "1024"]);
}

#[test]
fn short_table_is_refused() {
    let err = load_error(0, |v| v["layers"][4]["table"]["table"]["codes"].as_array_mut().unwrap().truncate(10));
    assert_mentions(&err, &["layers[4]", "table.table.codes", "10 codes", "1024"]);
}

#[test]
fn code_count_that_does_not_match_the_shape_is_refused() {
    let err = load_error(0, |v| v["layers"][0]["kernel"]["codes"].as_array_mut().unwrap().pop().map(drop).unwrap());
    assert_mentions(&err, &["layers[0] (Dense (layer 0))", "kernel.codes", "59 codes", "5 × 12", "60"]);
}

#[test]
fn inputs_that_do_not_chain_are_refused() {
    let err = load_error(0, |v| v["layers"][3]["inputs"] = 11.into());
    assert_mentions(&err, &["layers[3] (Dense (layer 3))", ".inputs: 11", "accepted: 12"]);
}

#[test]
fn codes_outside_their_type_are_refused() {
    let err = load_error(0, |v| v["layers"][0]["bias"]["codes"][2] = 300.into());
    assert_mentions(&err, &["layers[0]", "bias.codes[2]", "300", "-128 to 127"]);
}

#[test]
fn widths_of_0_and_1000_are_refused() {
    let err = load_error(0, |v| v["layers"][0]["kernel"]["type"]["width"] = 0.into());
    assert_mentions(&err, &["layers[0]", "kernel.type.width", "0 bits", "1 to 62"]);
    let err = load_error(0, |v| v["types"]["input"]["width"] = 1000.into());
    assert_mentions(&err, &["types.input.width", "1000 bits", "1 to 62"]);
    let err = load_error(0, |v| v["layers"][2]["result"]["width"] = 1000.into());
    assert_mentions(&err, &["layers[2] (Relu (layer 2)).result.width", "1000"]);
}

#[test]
fn missing_and_extra_layers_are_refused() {
    let err = load_error(0, |v| drop(v["layers"].as_array_mut().unwrap().remove(4)));
    assert_mentions(&err, &["layers[4]", "Tanh", "arch layer 4"]);
    let last = model_jsons()[0]["layers"].as_array().unwrap().len();
    let err = load_error(0, |v| drop(v["layers"].as_array_mut().unwrap().pop()));
    assert_mentions(&err, &[&format!("layers[{}]: missing", last - 1), "Identity"]);
    let err = load_error(0, |v| {
        let layers = v["layers"].as_array_mut().unwrap();
        layers.push(layers[last - 1].clone());
    });
    assert_mentions(&err, &[&format!("layers[{last}]"), "extra layer"]);
}

#[test]
fn accumulators_pruned_weights_and_counts_are_checked() {
    let err = load_error(0, |v| v["layers"][0]["accumulator"]["width"] = 40.into());
    assert_mentions(&err, &["layers[0]", "accumulator", "not the exact accumulator"]);
    let err = load_error(0, |v| v["output_features"] = 6.into());
    assert_mentions(&err, &["output_features: 6", "accepted: 5"]);
    let err = load_error(1, |v| v["layers"][1]["scale"] = (-5).into());
    assert_mentions(&err, &["layers[1] (ConvAttention (layer 1)).scale", "-5"]);
    let err = load_error(2, |v| v["layers"][2]["elements"] = 0.into());
    assert_mentions(&err, &["layers[2] (Aggregate mean (layer 2)).elements: 0", "accepted: 3"]);
    let err = load_error(0, |v| {
        let mask = v["layers"][0]["mask"].as_array().unwrap();
        let pruned = mask.iter().position(|m| m == false).unwrap();
        v["layers"][0]["kernel"]["codes"][pruned] = 1.into();
    });
    assert_mentions(&err, &["layers[0]", "pruned weight", "accepted: 0"]);
}

#[test]
fn read_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best_model_8b3i.json");
    let mut value = model_jsons().swap_remove(0);
    value["layers"][4]["table"]["range"] = 0.into();
    std::fs::write(&path, serde_json::json!({"quantized_model": value}).to_string()).unwrap();
    let err = format!("{:#}", QuantizedModel::read(&path).unwrap_err());
    assert_mentions(&err, &["best_model_8b3i.json", "layers[4]", "table.range"]);
}

/// One change to a model file's JSON.
#[derive(Clone, Debug)]
enum Mutation {
    /// Set the `pick`-th number (outside code arrays) to `value`.
    Number { pick: usize, value: i64 },
    /// Set it to a fraction or a huge float.
    Float { pick: usize, value: f64 },
    /// Resize the `pick`-th array: drop, duplicate or truncate entries.
    Array { pick: usize, op: u8, at: usize },
    /// Change the `pick`-th code of the `array`-th code array.
    Code { array: usize, pick: usize, value: i64 },
    /// Swap the `pick`-th string for another name the format uses.
    Name { pick: usize, name: usize },
}

const NAMES: [&str; 12] = [
    "dense",
    "conv2d",
    "activation",
    "batch_norm",
    "aggregate",
    "Relu",
    "Tanh",
    "Sigmoid",
    "LeakyRelu",
    "Identity",
    "Softmax",
    "HalfEven",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let values = prop_oneof![
        prop::sample::select(vec![0i64, 1, 2, 3, -1, 7, 10, 62, 63, 64, 65, 128, 512, 1000, 1024, 1 << 40]),
        prop::sample::select(vec![i64::MAX, i64::MIN, u32::MAX as i64, i32::MAX as i64, -(1 << 40)]),
        -2000i64..2000,
    ];
    prop_oneof![
        (any::<usize>(), values.clone()).prop_map(|(pick, value)| Mutation::Number { pick, value }),
        (any::<usize>(), prop::sample::select(vec![0.5, -0.0, 1e30, -1e300, 2.5]))
            .prop_map(|(pick, value)| Mutation::Float { pick, value }),
        (any::<usize>(), 0u8..5, any::<usize>()).prop_map(|(pick, op, at)| Mutation::Array { pick, op, at }),
        (any::<usize>(), any::<usize>(), values).prop_map(|(array, pick, value)| Mutation::Code { array, pick, value }),
        (any::<usize>(), 0..NAMES.len()).prop_map(|(pick, name)| Mutation::Name { pick, name }),
    ]
}

/// JSON pointers to the numbers outside code arrays, the arrays, the code
/// arrays and the strings of `value`.
#[derive(Default)]
struct Paths {
    numbers: Vec<String>,
    arrays: Vec<String>,
    codes: Vec<String>,
    strings: Vec<String>,
}

fn collect(value: &Value, path: String, paths: &mut Paths) {
    match value {
        Value::Number(_) => paths.numbers.push(path),
        Value::String(_) => paths.strings.push(path),
        Value::Array(items) => {
            if path.ends_with("/codes") {
                paths.codes.push(path.clone());
            } else {
                for (i, item) in items.iter().enumerate() {
                    collect(item, format!("{path}/{i}"), paths);
                }
            }
            paths.arrays.push(path);
        }
        Value::Object(map) => {
            for (key, item) in map {
                collect(item, format!("{path}/{key}"), paths);
            }
        }
        _ => {}
    }
}

fn apply(value: &mut Value, mutation: &Mutation) {
    let mut paths = Paths::default();
    collect(value, String::new(), &mut paths);
    // None when the earlier mutations left nothing of that kind.
    fn pick_in<'a>(value: &'a mut Value, list: &[String], pick: usize) -> Option<&'a mut Value> {
        let path = list.get(pick % list.len().max(1))?;
        value.pointer_mut(path)
    }
    match *mutation {
        Mutation::Number { pick, value: v } => {
            pick_in(value, &paths.numbers, pick).into_iter().for_each(|t| *t = v.into())
        }
        Mutation::Float { pick, value: v } => {
            pick_in(value, &paths.numbers, pick).into_iter().for_each(|t| *t = v.into())
        }
        Mutation::Name { pick, name } => {
            pick_in(value, &paths.strings, pick).into_iter().for_each(|t| *t = NAMES[name].into())
        }
        Mutation::Code { array, pick, value: v } => {
            if let Some(codes) = pick_in(value, &paths.codes, array).and_then(|t| t.as_array_mut())
                && !codes.is_empty()
            {
                let n = codes.len();
                codes[pick % n] = v.into();
            }
        }
        Mutation::Array { pick, op, at: i } => {
            let Some(items) = pick_in(value, &paths.arrays, pick).and_then(|t| t.as_array_mut()) else { return };
            let n = items.len();
            match op {
                0 if n > 0 => drop(items.remove(i % n)),
                1 if n > 0 => items.insert(i % n, items[i % n].clone()),
                2 => items.truncate(i % (n + 1)),
                3 if n > 1 => items.swap(i % n, (i / n) % n),
                4 => items.truncate(10),
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any mutation of a real model file loads or is refused, never panics;
    /// a model that loads runs without panicking.
    #[test]
    fn mutated_model_files_never_panic(
        model in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..4),
        inputs in prop::collection::vec(prop_oneof![-1e3f32..1e3, Just(f32::MAX), Just(f32::MIN)], 1..64),
    ) {
        let mut value = MODELS.with(|m| m[model].clone());
        for m in &mutations {
            apply(&mut value, m);
        }
        if let Ok(loaded) = load(&value) {
            let x: Vec<f32> = inputs.iter().cycle().take(2 * loaded.input_features).copied().collect();
            let outputs = loaded.predict(&x);
            prop_assert!(outputs.is_ok(), "a loaded model fails to run: {:?}", outputs.err());
            prop_assert_eq!(outputs.unwrap().len(), 2 * loaded.output_features);
        }
    }
}

thread_local! {
    static MODELS: Vec<Value> = model_jsons();
}

#[test]
fn types_describe_their_per_layer_widths() {
    let uniform = QuantTypes::from_qkeras(8, 3).unwrap();
    assert!(!uniform.describe().contains("per layer"), "{}", uniform.describe());
    let narrow = FixedPoint::new(5, 2, true, Rounding::HalfEven, Overflow::Saturate).unwrap();
    let mut dense = LayerTypes::new(0);
    dense.weights = Some(narrow);
    let mut relu = LayerTypes::new(2);
    relu.result = Some(FixedPoint { width: 6, ..narrow });
    let types = uniform.with_layer(relu).with_layer(dense);
    assert_eq!(types.widths_summary(), "in8 0:w5 2:a6", "entries sorted by layer");
    assert!(types.describe().ends_with("per layer (kernel w / output a bits): in8 0:w5 2:a6"), "{}", types.describe());
}

/// A layer whose weights all quantize to zero (a narrow pair, small
/// weights) still builds a valid model: its accumulator keeps the products'
/// fractional bits instead of a 1-bit type integer inference cannot shift
/// into (T3's `<4,1>` pair failed so).
#[test]
fn a_kernel_of_zeros_builds_a_valid_model() {
    let arch = Arch::new(
        Shape::Flat(6),
        vec![Component::mlp("a", 4, Norm::None, Activation::Relu), Component::output("out", 3, Activation::Softmax)],
    );
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut params = random_params(&arch, &mut rng, 1.0);
    for name in ["kernel", "bias"] {
        for v in params.get_mut(&(0, name.to_string())).unwrap() {
            *v *= 0.01;
        }
    }
    let types = QuantTypes::from_qkeras(4, 1).unwrap();
    let model = build(&arch, &params, &HashMap::new(), types.clone()).unwrap();
    let QLayer::Dense { kernel, accumulator, .. } = &model.layers[0] else { panic!("{:?}", model.layers[0]) };
    assert!(kernel.codes.iter().all(|&c| c == 0));
    assert_eq!(accumulator.fractional_bits(), types.input.fractional_bits() + kernel.fixed.fractional_bits());
    for _ in 0..50 {
        assert_bit_exact(&model, &random_input(&mut rng, 6, &types.input));
    }
}
