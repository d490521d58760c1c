//! End-to-end training: learning on real data, determinism, EarlyStopping
//! with restored weights, ReduceLROnPlateau, NaN detection, weight files.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Arch, Component, Layer, Norm, Padding, Shape};
use snac_core::data::Split;
use snac_train::{TrainConfig, Weights, evaluate, train, train_from};

mod common;
use common::{as_point_sets, conv_attention_net, deepsets_net, digits, mlp};

/// Random inputs with random labels: nothing to learn, so the validation
/// loss rises as the network memorises the training set.
fn noise(samples: usize, features: usize, classes: u32, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Split {
        x: (0..samples * features).map(|_| rng.random_range(-1.0..1.0)).collect(),
        y: (0..samples).map(|_| rng.random_range(0..classes)).collect(),
    }
}

#[test]
fn mlp_learns_digits() {
    let Some((train_split, val_split)) = digits() else { return };
    for norm in [Norm::None, Norm::Batch, Norm::Layer] {
        let arch = mlp(64, &[64, 32], norm, Activation::Relu, 10);
        let config = TrainConfig { epochs: 4, batch_size: 16, ..TrainConfig::default() };
        let outcome = train(&arch, &train_split, &val_split, 10, &config).unwrap();
        eprintln!("{norm:?}: {:?}", outcome.history);
        assert!(outcome.val_accuracy > 0.85, "{norm:?}: validation accuracy only {}", outcome.val_accuracy);
        assert_eq!(outcome.steps, 4 * train_split.len().div_ceil(16), "the last partial batch is trained");
        let first = &outcome.history[0];
        let last = outcome.history.last().unwrap();
        assert!(last.train_loss < first.train_loss, "{norm:?}: training loss did not fall");
    }
}

/// LayerNorm here: BatchNorm's moving statistics (momentum 0.99) lag behind
/// after a few hundred steps, as in Keras, which is what `mlp_learns_digits` covers.
#[test]
fn every_activation_trains() {
    let Some((train_split, val_split)) = digits() else { return };
    for act in Activation::ALL.into_iter().filter(|a| *a != Activation::Softmax) {
        let arch = mlp(64, &[32], Norm::Layer, act, 10);
        let config = TrainConfig { epochs: 3, batch_size: 16, ..TrainConfig::default() };
        let outcome = train(&arch, &train_split, &val_split, 10, &config).unwrap();
        eprintln!("{act}: validation accuracy {}", outcome.val_accuracy);
        assert!(outcome.val_accuracy > 0.7, "{act}: validation accuracy only {}", outcome.val_accuracy);
    }
}

#[test]
fn same_seed_same_result_other_seed_differs() {
    let train_split = noise(300, 8, 3, 1);
    let val_split = noise(100, 8, 3, 2);
    let arch = mlp(8, &[16, 8], Norm::Batch, Activation::Gelu, 3);
    let config = TrainConfig { epochs: 3, batch_size: 32, seed: 11, ..TrainConfig::default() };
    let a = train(&arch, &train_split, &val_split, 3, &config).unwrap();
    let b = train(&arch, &train_split, &val_split, 3, &config).unwrap();
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.history, b.history);
    assert_eq!(a.val_accuracy.to_bits(), b.val_accuracy.to_bits());
    let c = train(&arch, &train_split, &val_split, 3, &TrainConfig { seed: 12, ..config }).unwrap();
    assert_ne!(a.weights, c.weights);
    assert_ne!(a.history[0].train_loss, c.history[0].train_loss);
}

#[test]
fn parallel_trainings_match_serial_ones() {
    let train_split = noise(200, 8, 3, 3);
    let val_split = noise(50, 8, 3, 4);
    let arch = mlp(8, &[16], Norm::Layer, Activation::Tanh, 3);
    let config = |seed| TrainConfig { epochs: 2, batch_size: 16, seed, ..TrainConfig::default() };
    let serial: Vec<Weights> =
        (0..3).map(|seed| train(&arch, &train_split, &val_split, 3, &config(seed)).unwrap().weights).collect();
    let parallel: Vec<Weights> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|seed| {
                let (arch, train_split, val_split) = (&arch, &train_split, &val_split);
                scope.spawn(move || train(arch, train_split, val_split, 3, &config(seed)).unwrap().weights)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(serial, parallel);
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    let train_split = noise(64, 16, 4, 5);
    let val_split = noise(256, 16, 4, 6);
    let arch = mlp(16, &[128, 128], Norm::None, Activation::Relu, 4);
    let config = TrainConfig {
        epochs: 40,
        batch_size: 16,
        learning_rate: 1e-2,
        early_stopping_patience: 3,
        seed: 3,
        ..TrainConfig::default()
    };
    let outcome = train(&arch, &train_split, &val_split, 4, &config).unwrap();
    let history = &outcome.history;
    assert!(history.len() < 40, "early stopping never triggered: {history:?}");
    assert_eq!(history.len(), outcome.best_epoch + 3, "stops `patience` epochs after the best");
    let best = history.iter().map(|e| e.val_loss).fold(f64::INFINITY, f64::min);
    assert_eq!(outcome.val_loss, best);
    assert_eq!(history[outcome.best_epoch - 1].val_loss, best);
    assert_eq!(outcome.val_accuracy, history[outcome.best_epoch - 1].val_accuracy);
    assert!(history.last().unwrap().val_loss > best);
    // The returned weights are the best epoch's, not the last one's.
    let (loss, accuracy) = evaluate(&arch, &outcome.weights, &val_split).unwrap();
    assert_eq!((loss, accuracy), (outcome.val_loss, outcome.val_accuracy));
}

#[test]
fn learning_rate_follows_keras_reduce_on_plateau() {
    let train_split = noise(64, 16, 4, 7);
    let val_split = noise(128, 16, 4, 8);
    let arch = mlp(16, &[64], Norm::Batch, Activation::Relu, 4);
    let config = TrainConfig {
        epochs: 12,
        batch_size: 16,
        learning_rate: 1e-2,
        early_stopping_patience: 100,
        lr_plateau_patience: 2,
        lr_factor: 0.5,
        min_lr: 2e-3,
        seed: 1,
        quant: None,
        masks: None,
        on_epoch: None,
    };
    let outcome = train(&arch, &train_split, &val_split, 4, &config).unwrap();
    assert_eq!(outcome.history.len(), 12);
    // Replay Keras' rule on the recorded validation losses.
    let (mut lr, mut best, mut wait) = (config.learning_rate, f64::INFINITY, 0);
    let mut reductions = 0;
    for epoch in &outcome.history {
        assert_eq!(epoch.learning_rate, lr, "epoch {}", epoch.epoch);
        if epoch.val_loss < best - 1e-4 {
            best = epoch.val_loss;
            wait = 0;
        } else {
            wait += 1;
            if wait >= config.lr_plateau_patience && lr > config.min_lr {
                lr = (lr * config.lr_factor).max(config.min_lr);
                wait = 0;
                reductions += 1;
            }
        }
    }
    assert!(reductions >= 2, "the scenario should reduce the rate at least twice: {:?}", outcome.history);
    assert!(outcome.history.iter().all(|e| e.learning_rate >= config.min_lr));
}

#[test]
fn nan_loss_is_an_error() {
    let train_split = noise(64, 4, 2, 9);
    let arch = mlp(4, &[8], Norm::None, Activation::Relu, 2);
    let config = TrainConfig { epochs: 3, batch_size: 16, learning_rate: 1e30, ..TrainConfig::default() };
    let err = train(&arch, &train_split, &train_split, 2, &config).unwrap_err().to_string();
    assert!(err.contains("loss became") && err.contains("at epoch"), "{err}");

    let huge = Split { x: train_split.x.iter().map(|v| v * 1e38).collect(), y: train_split.y.clone() };
    let err = train(&arch, &huge, &huge, 2, &TrainConfig::default()).unwrap_err().to_string();
    assert!(err.contains("loss became") && err.contains("at epoch"), "{err}");
}

#[test]
fn weights_round_trip_through_a_file() {
    let Some((train_split, val_split)) = digits() else { return };
    let arch = mlp(64, &[32], Norm::Batch, Activation::LeakyRelu, 10);
    let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
    let outcome = train(&arch, &train_split, &val_split, 10, &config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.json");
    outcome.weights.save(&path).unwrap();
    let loaded = Weights::load(&path).unwrap();
    assert_eq!(loaded, outcome.weights);
    let bn = &loaded.layers[1];
    assert_eq!(bn.kind, "BatchNorm");
    assert!(bn.get("moving_mean").unwrap().values.iter().any(|v| *v != 0.0), "moving statistics were updated");
    let (loss, accuracy) = evaluate(&arch, &loaded, &val_split).unwrap();
    assert_eq!(accuracy, outcome.val_accuracy);
    assert_eq!(loss, outcome.val_loss);
    // A later stage can continue from them.
    let more = train_from(&arch, loaded, &train_split, &val_split, 10, &config).unwrap();
    assert!(more.val_loss < outcome.val_loss * 1.5);
}

#[test]
fn conv_and_attention_learn_digits() {
    let Some((train_split, val_split)) = digits() else { return };
    for scale in [false, true] {
        let arch = conv_attention_net(scale);
        let config = TrainConfig { epochs: 4, batch_size: 32, ..TrainConfig::default() };
        let outcome = train(&arch, &train_split, &val_split, 10, &config).unwrap();
        eprintln!("scale {scale}: {:?}", outcome.history.last());
        assert!(outcome.val_accuracy > 0.85, "scale {scale}: validation accuracy only {}", outcome.val_accuracy);
        let (_, accuracy) = evaluate(&arch, &outcome.weights, &val_split).unwrap();
        assert_eq!(accuracy, outcome.val_accuracy);
    }
}

#[test]
fn deepsets_learn_digits_as_point_sets() {
    let Some((train_split, val_split)) = digits() else { return };
    let (train_split, val_split) = (as_point_sets(&train_split), as_point_sets(&val_split));
    for mode in [snac_core::arch::Aggregation::Mean, snac_core::arch::Aggregation::Max] {
        let arch = deepsets_net(mode);
        let config = TrainConfig { epochs: 20, batch_size: 16, ..TrainConfig::default() };
        let outcome = train(&arch, &train_split, &val_split, 10, &config).unwrap();
        eprintln!("{mode:?}: {:?}", outcome.history.last());
        // Chance is 0.1; a mean over all 64 pixels learns more slowly than a max.
        let floor = if mode == snac_core::arch::Aggregation::Mean { 0.4 } else { 0.6 };
        assert!(outcome.val_accuracy > floor, "{mode:?}: validation accuracy only {}", outcome.val_accuracy);
    }
}

#[test]
fn clear_errors() {
    let image = Shape::Image { height: 4, width: 4, channels: 1 };
    let conv = Arch::new(
        image,
        vec![Component {
            name: "c0".into(),
            block_type: snac_core::arch::BlockType::Conv,
            layers: vec![Layer::Conv2d { filters: 2, kernel: 3, padding: Padding::Same }, Layer::Flatten],
        }],
    );
    let split = noise(4, 16, 2, 1);
    let no_flatten = Arch::new(
        image,
        vec![Component { layers: conv.components[0].layers[..1].to_vec(), ..conv.components[0].clone() }],
    );
    let err = train(&no_flatten, &split, &split, 32, &TrainConfig::default()).unwrap_err().to_string();
    assert!(err.contains("must be a vector"), "{err}");

    let arch = mlp(16, &[4], Norm::None, Activation::Relu, 2);
    let err = train(&arch, &split, &split, 3, &TrainConfig::default()).unwrap_err().to_string();
    assert!(err.contains("3 classes"), "{err}");
    let bad_labels = Split { x: split.x.clone(), y: vec![0, 1, 2, 0] };
    let err = train(&arch, &bad_labels, &split, 2, &TrainConfig::default()).unwrap_err().to_string();
    assert!(err.contains("label 2"), "{err}");
    let other = mlp(16, &[5], Norm::None, Activation::Relu, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = evaluate(&arch, &Weights::init(&other, &mut rng).unwrap(), &split).unwrap_err().to_string();
    assert!(err.contains("kernel"), "{err}");
}

#[test]
fn the_epoch_hook_sees_every_epoch_and_its_error_stops_training() {
    use std::sync::{Arc, Mutex};
    let train_split = noise(64, 16, 4, 7);
    let val_split = noise(64, 16, 4, 8);
    let arch = mlp(16, &[8], Norm::None, Activation::Relu, 4);
    let seen: Arc<Mutex<Vec<(usize, f64)>>> = Arc::default();
    let log = seen.clone();
    let hook = snac_train::EpochHook(Arc::new(move |stats: &snac_train::EpochStats| {
        log.lock().unwrap().push((stats.epoch, stats.val_accuracy));
        anyhow::ensure!(stats.epoch < 3, "stop after epoch {}", stats.epoch);
        Ok(())
    }));
    let config =
        TrainConfig { epochs: 6, early_stopping_patience: 100, on_epoch: Some(hook), ..TrainConfig::default() };
    let err = train(&arch, &train_split, &val_split, 4, &config).unwrap_err();
    assert!(format!("{err:#}").contains("stop after epoch 3"), "{err:#}");
    let epochs: Vec<usize> = seen.lock().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(epochs, [1, 2, 3]);
    // Without an error it is called once per epoch and changes nothing.
    let plain = TrainConfig { epochs: 3, early_stopping_patience: 100, ..TrainConfig::default() };
    let counted: Arc<Mutex<usize>> = Arc::default();
    let count = counted.clone();
    let hook = snac_train::EpochHook(Arc::new(move |_: &snac_train::EpochStats| {
        *count.lock().unwrap() += 1;
        Ok(())
    }));
    let hooked = TrainConfig { on_epoch: Some(hook), ..plain.clone() };
    let a = train(&arch, &train_split, &val_split, 4, &plain).unwrap();
    let b = train(&arch, &train_split, &val_split, 4, &hooked).unwrap();
    assert_eq!(*counted.lock().unwrap(), 3);
    assert_eq!(a.history, b.history);
}
