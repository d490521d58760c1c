//! The trainer's fake-quantized forward pass and the integer model agree bit
//! for bit: QAT-trained, pruned networks with BatchNorm and every activation
//! that has a fixed-point form (GELU included), on every real digits sample and thousands of
//! random inputs, at several precisions.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Aggregation, Arch, Component, Norm, Shape};
use snac_core::data::Split;
use snac_core::quantized::QuantizedModel;
use snac_train::{
    Masks, QuantSpec, TrainConfig, evaluate_with, magnitude_masks, outputs_f64, quantized_model, train, train_from,
};

use common::{as_point_sets, conv_attention_net, deepsets_net, digits};

fn every_kind() -> Arch {
    Arch::new(
        Shape::Flat(64),
        vec![
            Component::mlp("b0", 24, Norm::Batch, Activation::Relu),
            Component::mlp("b1", 16, Norm::None, Activation::Tanh),
            Component::mlp("b2", 16, Norm::Batch, Activation::Sigmoid),
            Component::mlp("b3", 12, Norm::None, Activation::LeakyRelu),
            Component::mlp("b4", 12, Norm::Batch, Activation::Identity),
            Component::mlp("b5", 12, Norm::None, Activation::Gelu),
            Component::output("output", 10, Activation::Softmax),
        ],
    )
}

fn integer_outputs(model: &QuantizedModel, x: &[f32]) -> Vec<f64> {
    model.predict(x).unwrap()
}

#[test]
fn trainer_and_integer_model_agree_bit_for_bit() {
    let Some((train_split, val_split)) = digits() else { return };
    let arch = every_kind();
    let config = TrainConfig { epochs: 15, ..TrainConfig::default() };
    let float = train(&arch, &train_split, &val_split, 10, &config).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for (total, int) in [(8, 3), (16, 6), (6, 2)] {
        let spec = QuantSpec::from_qkeras(total, int).unwrap();
        let qat = TrainConfig { epochs: 3, quant: Some(spec.clone()), ..TrainConfig::default() };
        let warm = train_from(&arch, float.weights.clone(), &train_split, &val_split, 10, &qat).unwrap();
        let masks: Masks = magnitude_masks(&warm.weights, 0.3).unwrap();
        let pruned = TrainConfig { masks: Some(masks.clone()), ..qat.clone() };
        let tuned = train_from(&arch, warm.weights, &train_split, &val_split, 10, &pruned).unwrap();
        let model = quantized_model(&arch, &tuned.weights, Some(&masks), &spec).unwrap();
        eprintln!("<{total},{int}>: float {:.4}", float.val_accuracy);

        // Every real sample, then random inputs across and beyond the range.
        let mut x = train_split.x.clone();
        x.extend(&val_split.x);
        let top = spec.input.max_value() as f32;
        x.extend((0..3000 * 64).map(|_| rng.random_range(-1.5 * top..1.5 * top)));
        let trainer = outputs_f64(&arch, &tuned.weights, &x, Some(&spec)).unwrap();
        let integer = integer_outputs(&model, &x);
        assert_eq!(trainer.len(), integer.len());
        let differing = trainer.iter().zip(&integer).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "<{total},{int}>: {differing} of {} outputs differ", integer.len());

        // The accuracy the trainer reports (f32) is the integer model's,
        // up to f32 rounding of wide sums.
        let (_, reported) = evaluate_with(&arch, &tuned.weights, &val_split, Some(&spec)).unwrap();
        let deployed = model.accuracy(&val_split.x, &val_split.y).unwrap();
        eprintln!("<{total},{int}>: trainer {reported:.4}, integer model {deployed:.4}");
        assert!((reported - deployed).abs() <= 0.01, "<{total},{int}>: trainer {reported} vs integer {deployed}");
    }
}

/// Without quantization the f64 outputs are not the integer model's: the
/// comparison above can fail.
#[test]
fn the_float_model_differs_from_the_integer_one() {
    let Some((train_split, val_split)) = digits() else { return };
    let arch = every_kind();
    let float =
        train(&arch, &train_split, &val_split, 10, &TrainConfig { epochs: 1, ..TrainConfig::default() }).unwrap();
    let spec = QuantSpec::from_qkeras(8, 3).unwrap();
    let model = quantized_model(&arch, &float.weights, None, &spec).unwrap();
    let x = &val_split.x[..64 * 50];
    let unquantized = outputs_f64(&arch, &float.weights, x, None).unwrap();
    assert_ne!(unquantized, integer_outputs(&model, x));
}

/// Conv2d (valid and 1×1 'same', pruned), BatchNorm on images,
/// ConvAttention with and without the 1/√d scale, Flatten, and DeepSets
/// (Dense per element, mean and max pooling): after QAT and pruning the
/// trainer's f64 pass and the integer model agree on every output.
#[test]
fn conv_attention_and_sets_agree_bit_for_bit() {
    let Some((train_split, val_split)) = digits() else { return };
    let sets = (as_point_sets(&train_split), as_point_sets(&val_split));
    // The first 48 of the 64 points: 1/48 is not a power of two, so the
    // mean's fixed-point constant is rounded (the trainer multiplies by it too).
    let first_48 = |split: &Split| Split {
        x: split.x.chunks_exact(64 * 3).flat_map(|set| set[..48 * 3].iter().copied()).collect(),
        y: split.y.clone(),
    };
    let sets_48 = (first_48(&sets.0), first_48(&sets.1));
    let mut mean_48 = deepsets_net(Aggregation::Mean);
    mean_48.input_shape = Shape::Set { elements: 48, features: 3 };
    // Each case's data: the images, or point sets.
    type Data<'a> = Option<&'a (Split, Split)>;
    let cases: Vec<(String, Arch, Data)> = vec![
        ("conv + attention".into(), conv_attention_net(false), None),
        ("conv + scaled attention".into(), conv_attention_net(true), None),
        ("deepsets mean".into(), deepsets_net(Aggregation::Mean), Some(&sets)),
        ("deepsets max".into(), deepsets_net(Aggregation::Max), Some(&sets)),
        ("deepsets mean of 48".into(), mean_48, Some(&sets_48)),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (name, arch, set) in cases {
        let (train_split, val_split) = match set {
            Some((train, val)) => (train, val),
            None => (&train_split, &val_split),
        };
        let features = arch.input_shape.numel();
        let config = TrainConfig { epochs: 3, batch_size: 32, ..TrainConfig::default() };
        let float = train(&arch, train_split, val_split, 10, &config).unwrap();
        for (total, int) in [(8, 3), (16, 6), (6, 2)] {
            let spec = QuantSpec::from_qkeras(total, int).unwrap();
            let qat = TrainConfig { epochs: 1, quant: Some(spec.clone()), ..config.clone() };
            let warm = train_from(&arch, float.weights.clone(), train_split, val_split, 10, &qat).unwrap();
            let masks: Masks = magnitude_masks(&warm.weights, 0.3).unwrap();
            let pruned = TrainConfig { masks: Some(masks.clone()), ..qat.clone() };
            let tuned = train_from(&arch, warm.weights, train_split, val_split, 10, &pruned).unwrap();
            // Every kernel, the attention's four projections included, is
            // pruned and stays so through training.
            for (layer, nonzero) in tuned.weights.layers.iter().zip(tuned.weights.kernel_nonzeros()) {
                let Some(nonzero) = nonzero else { continue };
                let kept = masks.layers[layer.index].as_ref().unwrap().iter().filter(|k| **k).count();
                assert!(
                    nonzero <= kept && kept < layer.kernel_len(),
                    "{name}: layer {} ({}) has {nonzero} nonzero weights, its mask keeps {kept} of {}",
                    layer.index,
                    layer.kind,
                    layer.kernel_len()
                );
            }
            let model = quantized_model(&arch, &tuned.weights, Some(&masks), &spec).unwrap();

            let mut x = val_split.x.clone();
            let top = spec.input.max_value() as f32;
            x.extend((0..300 * features).map(|_| rng.random_range(-1.5 * top..1.5 * top)));
            let trainer = outputs_f64(&arch, &tuned.weights, &x, Some(&spec)).unwrap();
            let integer = integer_outputs(&model, &x);
            assert_eq!(trainer.len(), integer.len());
            let differing = trainer.iter().zip(&integer).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{name} <{total},{int}>: {differing} of {} outputs differ", integer.len());

            let (_, reported) = evaluate_with(&arch, &tuned.weights, val_split, Some(&spec)).unwrap();
            let deployed = model.accuracy(&val_split.x, &val_split.y).unwrap();
            eprintln!(
                "{name} <{total},{int}>: float {:.4}, trainer {reported:.4}, integer {deployed:.4}",
                float.val_accuracy
            );
            assert!(
                (reported - deployed).abs() <= 0.02,
                "{name} <{total},{int}>: trainer {reported} vs integer {deployed}"
            );
        }
    }
}

/// Random per-layer types for `arch`: each layer's kernel, bias and output
/// on its own width (3 to 10 bits) and integer bits, saturating.
fn per_layer_spec(arch: &Arch, rng: &mut ChaCha8Rng) -> QuantSpec {
    use snac_core::fixed::{FixedPoint, Overflow, Rounding};
    use snac_core::quantized::LayerTypes;
    let mut spec = QuantSpec::from_qkeras(8, 3).unwrap();
    for index in 0..arch.layers().count() {
        let mut fixed = |integers: std::ops::RangeInclusive<u32>| {
            let integer = rng.random_range(integers);
            let width = rng.random_range(3..=10u32).max(integer + 1);
            Some(FixedPoint::new(width, integer, true, Rounding::HalfEven, Overflow::Saturate).unwrap())
        };
        let layer = LayerTypes { index, weights: fixed(1..=2), biases: fixed(1..=3), result: fixed(2..=5) };
        spec = spec.with_layer(layer);
    }
    spec
}

/// Per-layer precision: QAT at different types per layer (the trainer's
/// engine and its burn pass) and the integer model built from the same
/// types agree on every output, for an MLP with every activation, a conv
/// + attention network and a DeepSets network.
#[test]
fn per_layer_types_agree_bit_for_bit() {
    let Some((train_split, val_split)) = digits() else { return };
    let sets = (as_point_sets(&train_split), as_point_sets(&val_split));
    let cases = [
        ("every kind", every_kind(), None),
        ("conv + scaled attention", conv_attention_net(true), None),
        ("deepsets mean", deepsets_net(Aggregation::Mean), Some(&sets)),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for (name, arch, set) in cases {
        let (train_split, val_split) = set.map_or((&train_split, &val_split), |(t, v)| (t, v));
        let config = TrainConfig { epochs: 2, batch_size: 32, ..TrainConfig::default() };
        let float = train(&arch, train_split, val_split, 10, &config).unwrap();
        let spec = per_layer_spec(&arch, &mut rng);
        let qat = TrainConfig { epochs: 1, quant: Some(spec.clone()), ..config };
        let tuned = train_from(&arch, float.weights, train_split, val_split, 10, &qat).unwrap();
        let model = quantized_model(&arch, &tuned.weights, None, &spec).unwrap();
        assert_eq!(model.types, spec);

        let features = arch.input_shape.numel();
        let mut x = val_split.x.clone();
        x.extend((0..300 * features).map(|_| rng.random_range(-6.0f32..6.0)));
        let trainer = outputs_f64(&arch, &tuned.weights, &x, Some(&spec)).unwrap();
        let integer = integer_outputs(&model, &x);
        let differing = trainer.iter().zip(&integer).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{name}: {differing} of {} outputs differ", integer.len());

        // The uniform model-wide types alone compute something else.
        let uniform = QuantSpec { layers: Vec::new(), ..spec.clone() };
        let other = outputs_f64(&arch, &tuned.weights, &x, Some(&uniform)).unwrap();
        assert_ne!(other, trainer, "{name}: the per-layer types changed nothing");

        let (_, reported) = evaluate_with(&arch, &tuned.weights, val_split, Some(&spec)).unwrap();
        let deployed = model.accuracy(&val_split.x, &val_split.y).unwrap();
        eprintln!("{name} per-layer: trainer {reported:.4}, integer {deployed:.4}");
        assert!((reported - deployed).abs() <= 0.02, "{name}: trainer {reported} vs integer {deployed}");
    }
}
