//! Quantization-aware training and pruning end to end: quantized forward
//! passes stay on their grids, QAT keeps float accuracy at wide types,
//! magnitude masks hit their sparsity targets and hold through training,
//! lottery-ticket rewinding.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::data::Split;
use snac_core::fixed::FixedPoint;
use snac_train::{
    QuantSpec, TrainConfig, TrainOutcome, Weights, evaluate, evaluate_with, layer_outputs, magnitude_masks,
    quantize_weights, train, train_from,
};

mod common;
use common::{digits, mlp};

fn noise(samples: usize, features: usize, classes: u32, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Split {
        x: (0..samples * features).map(|_| rng.random_range(-1.0..1.0)).collect(),
        y: (0..samples).map(|_| rng.random_range(0..classes)).collect(),
    }
}

fn on_grid(values: &[f32], fixed: &FixedPoint) -> bool {
    values.iter().all(|&v| {
        let v = v as f64;
        v >= fixed.min_value() && v <= fixed.max_value() && (v / fixed.step()).fract() == 0.0
    })
}

/// Every layer kind the trainer supports, each activation once.
fn every_kind() -> Arch {
    Arch::new(
        Shape::Flat(12),
        vec![
            Component::mlp("b0", 16, Norm::Batch, Activation::Relu),
            Component::mlp("b1", 16, Norm::Layer, Activation::Tanh),
            Component::mlp("b2", 8, Norm::None, Activation::Sigmoid),
            Component::mlp("b3", 8, Norm::None, Activation::Gelu),
            Component::mlp("b4", 8, Norm::None, Activation::LeakyRelu),
            Component::mlp("b5", 8, Norm::None, Activation::Identity),
            Component::output("output", 4, Activation::Softmax),
        ],
    )
}

#[test]
fn quantized_outputs_lie_on_their_grids() {
    let arch = every_kind();
    let train_split = noise(256, 12, 4, 1);
    let val_split = noise(128, 12, 4, 2);
    let float =
        train(&arch, &train_split, &val_split, 4, &TrainConfig { epochs: 2, ..TrainConfig::default() }).unwrap();
    let spec = QuantSpec {
        weights: FixedPoint::from_qkeras(6, 1).unwrap(),
        biases: FixedPoint::from_qkeras(8, 2).unwrap(),
        activations: FixedPoint::from_qkeras(4, 1).unwrap(),
        input: FixedPoint::from_qkeras(4, 1).unwrap(),
        layers: Vec::new(),
    };
    let outputs = layer_outputs(&arch, &float.weights, &val_split.x, Some(&spec)).unwrap();
    let kinds: Vec<&str> = outputs.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "Dense").count(), 7);
    assert_eq!(kinds.iter().filter(|k| **k == "Activation").count(), 6, "the final softmax is left out");
    assert_eq!(outputs.last().unwrap().kind, "Dense", "the logits come last");
    assert_eq!(outputs.last().unwrap().values.len(), 128 * 4);
    let last = outputs.len() - 1;
    let mut checked = 0;
    for (position, output) in outputs.iter().enumerate() {
        if output.kind != "Dense" || position == last {
            assert!(
                on_grid(&output.values, &spec.activations),
                "layer {} ({}) is off the grid",
                output.index,
                output.kind
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6 + 2 + 1, "activations, normalisations and logits");
    // Without quantization the same outputs are not on the grid.
    let float_outputs = layer_outputs(&arch, &float.weights, &val_split.x, None).unwrap();
    assert!(!on_grid(&float_outputs.last().unwrap().values, &spec.activations));

    // Training with QAT validates with the same quantized forward pass as
    // evaluate_with, and the weights it returns are float "shadow" weights.
    let config = TrainConfig { epochs: 2, quant: Some(spec.clone()), ..TrainConfig::default() };
    let qat = train_from(&arch, float.weights.clone(), &train_split, &val_split, 4, &config).unwrap();
    let (loss, accuracy) = evaluate_with(&arch, &qat.weights, &val_split, Some(&spec)).unwrap();
    assert_eq!((loss, accuracy), (qat.val_loss, qat.val_accuracy));
    assert_ne!(evaluate(&arch, &qat.weights, &val_split).unwrap().0, loss);

    // The quantized forward pass is the float one on quantized weights,
    // with quantized activations.
    let on_grid_weights = quantize_weights(&spec, &qat.weights);
    for (layer, original) in on_grid_weights.layers.iter().zip(&qat.weights.layers) {
        if layer.kind == "Dense" {
            assert!(on_grid(&layer.get("kernel").unwrap().values, &spec.weights));
            assert!(on_grid(&layer.get("bias").unwrap().values, &spec.biases));
        } else {
            assert_eq!(layer, original);
        }
    }
    assert_eq!(evaluate_with(&arch, &on_grid_weights, &val_split, Some(&spec)).unwrap(), (loss, accuracy));
    let quantized = layer_outputs(&arch, &qat.weights, &val_split.x, Some(&spec)).unwrap();
    assert_eq!(layer_outputs(&arch, &on_grid_weights, &val_split.x, Some(&spec)).unwrap(), quantized);
}

fn float_digits_model(arch: &Arch) -> Option<(Split, Split, TrainOutcome)> {
    let (train_split, val_split) = digits()?;
    let config = TrainConfig { epochs: 6, batch_size: 16, ..TrainConfig::default() };
    let float = train(arch, &train_split, &val_split, 10, &config).unwrap();
    eprintln!("float: validation accuracy {}", float.val_accuracy);
    assert!(float.val_accuracy > 0.9);
    Some((train_split, val_split, float))
}

#[test]
fn qat_keeps_float_accuracy_at_wide_types_and_runs_at_narrow_ones() {
    let arch = mlp(64, &[64, 32], Norm::Batch, Activation::Relu, 10);
    let Some((train_split, val_split, float)) = float_digits_model(&arch) else { return };
    let qat = |total_bits, int_bits| {
        let spec = QuantSpec::from_qkeras(total_bits, int_bits).unwrap();
        let config = TrainConfig { epochs: 2, batch_size: 16, quant: Some(spec.clone()), ..TrainConfig::default() };
        let before = evaluate_with(&arch, &float.weights, &val_split, Some(&spec)).unwrap().1;
        let outcome = train_from(&arch, float.weights.clone(), &train_split, &val_split, 10, &config).unwrap();
        eprintln!("<{total_bits},{int_bits}>: {before} before QAT, {} after", outcome.val_accuracy);
        outcome
    };
    let wide = qat(16, 6);
    assert!(
        wide.val_accuracy > float.val_accuracy - 0.03,
        "<16,6> QAT accuracy {} vs float {}",
        wide.val_accuracy,
        float.val_accuracy
    );
    let narrow = qat(4, 1);
    assert!(narrow.val_accuracy.is_finite() && narrow.steps == 2 * train_split.len().div_ceil(16));
    assert!(
        narrow.val_accuracy < wide.val_accuracy,
        "<4,1> ({}) should lose accuracy against <16,6> ({})",
        narrow.val_accuracy,
        wide.val_accuracy
    );
}

#[test]
fn magnitude_masks_meet_their_targets() {
    let arch = mlp(64, &[64, 32], Norm::Batch, Activation::Relu, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let weights = Weights::init(&arch, &mut rng).unwrap();
    for target in [0.2, 0.36, 0.488, 1.0 - 0.8f64.powi(5)] {
        let masks = magnitude_masks(&weights, target).unwrap();
        let mut pruned = weights.clone();
        masks.apply(&mut pruned).unwrap();
        for (layer, (mask, nonzeros)) in pruned.layers.iter().zip(masks.layers.iter().zip(pruned.kernel_nonzeros())) {
            let Some(nonzeros) = nonzeros else {
                assert!(mask.is_none());
                continue;
            };
            let total = layer.get("kernel").unwrap().values.len();
            let pruned_count = (total - nonzeros) as f64;
            assert!(
                (pruned_count - target * total as f64).abs() <= 1.0,
                "layer {}: {pruned_count} of {total} pruned for target {target}",
                layer.index
            );
            assert_eq!(layer.get("bias").unwrap().values, weights.layers[layer.index].get("bias").unwrap().values);
        }
        assert!((pruned.sparsity() - target).abs() < 3.0 / 4096.0, "{} vs {target}", pruned.sparsity());
        assert_eq!(masks.sparsity(), pruned.sparsity());
        // The smallest magnitudes went: every surviving weight is at least
        // as large as every pruned one, layer by layer.
        for (layer, mask) in weights.layers.iter().zip(&masks.layers) {
            let Some(mask) = mask else { continue };
            let kernel = &layer.get("kernel").unwrap().values;
            let kept_min = kernel.iter().zip(mask).filter(|(_, k)| **k).map(|(w, _)| w.abs()).fold(f32::MAX, f32::min);
            let pruned_max = kernel.iter().zip(mask).filter(|(_, k)| !**k).map(|(w, _)| w.abs()).fold(0.0, f32::max);
            assert!(kept_min >= pruned_max);
        }
    }
}

#[test]
fn masks_hold_through_training_and_rewinding() {
    let arch = mlp(64, &[64, 32], Norm::Batch, Activation::Relu, 10);
    let Some((train_split, val_split, float)) = float_digits_model(&arch) else { return };
    let checkpoint = float.weights;
    let masks = magnitude_masks(&checkpoint, 0.5).unwrap();
    let config = TrainConfig { epochs: 3, batch_size: 16, masks: Some(masks.clone()), ..TrainConfig::default() };
    let pruned = train_from(&arch, checkpoint.clone(), &train_split, &val_split, 10, &config).unwrap();
    eprintln!("pruned to 0.5: validation accuracy {}", pruned.val_accuracy);
    assert!(pruned.val_accuracy > 0.9, "accuracy after pruning {}", pruned.val_accuracy);
    assert!((pruned.weights.sparsity() - 0.5).abs() < 0.01, "sparsity {}", pruned.weights.sparsity());
    let (mut kept, mut changed) = (0, 0);
    for ((layer, before), mask) in pruned.weights.layers.iter().zip(&checkpoint.layers).zip(&masks.layers) {
        let Some(mask) = mask else { continue };
        let (after, before) = (&layer.get("kernel").unwrap().values, &before.get("kernel").unwrap().values);
        for ((&a, &b), &keep) in after.iter().zip(before).zip(mask) {
            if keep {
                kept += 1;
                changed += (a != b) as usize;
            } else {
                assert_eq!(a.to_bits(), 0, "a pruned weight is {a}");
            }
        }
    }
    eprintln!("{changed} of {kept} surviving weights changed");
    // Weights from always-blank pixels get no gradient and stay put.
    assert!(changed as f64 > 0.8 * kept as f64, "only {changed} of {kept} surviving weights changed");

    // QAT and masks together.
    let spec = QuantSpec::from_qkeras(8, 3).unwrap();
    let masks = magnitude_masks(&checkpoint, 0.488).unwrap();
    let config = TrainConfig { epochs: 1, batch_size: 16, quant: Some(spec), masks: Some(masks.clone()), ..config };
    let both = train_from(&arch, checkpoint.clone(), &train_split, &val_split, 10, &config).unwrap();
    eprintln!("<8,3> at 0.488: validation accuracy {}", both.val_accuracy);
    assert!(both.val_accuracy > 0.85);
    assert!((both.weights.sparsity() - 0.488).abs() < 0.01);

    // Lottery-ticket rewinding: the checkpoint's values where the mask keeps.
    let rewound = both.weights.rewind(&checkpoint, &masks).unwrap();
    let mut expected = checkpoint.clone();
    masks.apply(&mut expected).unwrap();
    assert_eq!(rewound, expected);
    assert_eq!(rewound.kernel_nonzeros(), expected.kernel_nonzeros());
    assert!((rewound.sparsity() - 0.488).abs() < 0.01);
}

/// Issue 3's accuracy criterion on tutorial 1's data (MNIST resized to 8×8,
/// 10 000 samples): after QAT, within 1 point of the float model at <16,6>
/// and within 3 points at <8,3>. Needs MNIST from ../shared.
#[test]
fn mnist_8x8_qat_stays_close_to_float() {
    use snac_core::config::{DatasetConfig, DatasetName};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    if !dir.exists() {
        eprintln!("skipped: {} (MNIST from ../shared) is not here", dir.display());
        return;
    }
    let mut config = DatasetConfig::new(DatasetName::Mnist);
    config.resize_val = Some(8);
    config.subset_size = Some(10_000);
    config.data_dir = Some(dir);
    let data = snac_core::data::load(&config).unwrap();
    let arch = mlp(64, &[64, 32], Norm::Batch, Activation::Relu, 10);
    let float_config = TrainConfig { epochs: 12, ..TrainConfig::default() };
    let float = train(&arch, &data.train, &data.val, 10, &float_config).unwrap();
    for (total, int, margin) in [(16, 6, 0.01), (8, 3, 0.03)] {
        let spec = QuantSpec::from_qkeras(total, int).unwrap();
        let config = TrainConfig { epochs: 2, quant: Some(spec.clone()), ..TrainConfig::default() };
        let qat = train_from(&arch, float.weights.clone(), &data.train, &data.val, 10, &config).unwrap();
        eprintln!("<{total},{int}>: float {:.4}, QAT {:.4}", float.val_accuracy, qat.val_accuracy);
        assert!(
            qat.val_accuracy >= float.val_accuracy - margin,
            "<{total},{int}>: QAT {} is more than {margin} below float {}",
            qat.val_accuracy,
            float.val_accuracy
        );
    }
}
