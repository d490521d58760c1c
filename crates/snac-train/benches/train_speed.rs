//! Training speed of the MLP 64-128-64-32-10 (relu, batch 128, one thread):
//! optimiser steps per second, and the wall time of a T1-like trial (10 000
//! training and 10 000 validation samples of 64 features, 2 epochs).
//!
//! `cargo bench -p snac-train --bench train_speed`

use mimalloc::MiMalloc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::data::Split;
use snac_train::{QuantSpec, TrainConfig, evaluate, magnitude_masks, train, train_from};
use std::time::Instant;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Random inputs with labels from a fixed random linear map, so there is
/// something to learn.
fn synthetic(samples: usize, features: usize, classes: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut map_rng = ChaCha8Rng::seed_from_u64(99);
    let map: Vec<f32> = (0..features * classes).map(|_| map_rng.random_range(-1.0..1.0)).collect();
    let x: Vec<f32> = (0..samples * features).map(|_| rng.random_range(0.0..1.0)).collect();
    let y = x
        .chunks_exact(features)
        .map(|row| {
            let scores =
                (0..classes).map(|c| row.iter().enumerate().map(|(i, v)| v * map[i * classes + c]).sum::<f32>());
            scores.enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0 as u32
        })
        .collect();
    Split { x, y }
}

fn mlp(norm: Norm) -> Arch {
    Arch::new(
        Shape::Flat(64),
        vec![
            Component::mlp("b0", 128, norm, Activation::Relu),
            Component::mlp("b1", 64, norm, Activation::Relu),
            Component::mlp("b2", 32, norm, Activation::Relu),
            Component::output("output", 10, Activation::Softmax),
        ],
    )
}

fn main() {
    let train_split = synthetic(10_000, 64, 10, 1);
    let val_split = synthetic(10_000, 64, 10, 2);
    for (label, norm) in [("no norm", Norm::None), ("batchnorm", Norm::Batch)] {
        let arch = mlp(norm);
        // Steps per second: 10 epochs of 79 steps, validation excluded by
        // timing a tiny validation split.
        let tiny_val = Split { x: val_split.x[..64 * 16].to_vec(), y: val_split.y[..16].to_vec() };
        let config = TrainConfig { epochs: 10, early_stopping_patience: 100, ..TrainConfig::default() };
        let start = Instant::now();
        let outcome = train(&arch, &train_split, &tiny_val, 10, &config).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "MLP 64-128-64-32-10 relu, {label}: {} steps in {:.3} s = {:.0} steps/s",
            outcome.steps,
            seconds,
            outcome.steps as f64 / seconds
        );

        let start = Instant::now();
        let runs = 20;
        for _ in 0..runs {
            evaluate(&arch, &outcome.weights, &val_split).unwrap();
        }
        println!("evaluate on 10k samples ({label}): {:.1} ms", start.elapsed().as_secs_f64() * 1e3 / runs as f64);

        let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
        let mut times: Vec<f64> = (0..9)
            .map(|seed| {
                let start = Instant::now();
                let outcome =
                    train(&arch, &train_split, &val_split, 10, &TrainConfig { seed, ..config.clone() }).unwrap();
                assert_eq!(outcome.steps, 158);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "T1-like trial ({label}; 10k train, 10k val, 2 epochs): median {:.1} ms (min {:.1}, max {:.1})",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );

        // Continuing from the trained weights: plain, then with QAT at <8,3>
        // and half the kernel weights masked.
        let config = TrainConfig { epochs: 10, early_stopping_patience: 100, ..TrainConfig::default() };
        let start = Instant::now();
        let plain = train_from(&arch, outcome.weights.clone(), &train_split, &tiny_val, 10, &config).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "MLP 64-128-64-32-10 relu, {label}, from trained weights: {} steps in {:.3} s = {:.0} steps/s",
            plain.steps,
            seconds,
            plain.steps as f64 / seconds
        );
        let masks = magnitude_masks(&outcome.weights, 0.5).unwrap();
        let quant = Some(QuantSpec::from_qkeras(8, 3).unwrap());
        let config = TrainConfig {
            epochs: 10,
            early_stopping_patience: 100,
            quant,
            masks: Some(masks),
            ..TrainConfig::default()
        };
        let start = Instant::now();
        let qat = train_from(&arch, outcome.weights.clone(), &train_split, &tiny_val, 10, &config).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "MLP 64-128-64-32-10 relu, {label}, QAT <8,3> + masks: {} steps in {:.3} s = {:.0} steps/s",
            qat.steps,
            seconds,
            qat.steps as f64 / seconds
        );
    }
}
