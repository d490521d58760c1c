//! Training speed of tutorial-2 architectures (16×16 Fashion-MNIST-sized
//! images, batch 128, one thread): optimiser steps per second, the achieved
//! training GFLOP/s against the core's FMA peak, and the projected wall time
//! of a T2 trial (3 folds, 15 epochs, 20 000 training and 10 000 validation
//! samples per fold, no early stop).
//!
//! `[CONV_SPEED_STEPS=N] cargo bench -p snac-train --bench conv_speed [-- NAME]`

use mimalloc::MiMalloc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Activation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use snac_core::data::Split;
use snac_train::{TrainConfig, evaluate, train};
use std::time::Instant;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn images(samples: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..samples * 256).map(|_| rng.random_range(0.0..1.0)).collect();
    let y = (0..samples).map(|_| rng.random_range(0..10)).collect();
    Split { x, y }
}

fn conv(name: &str, layers: &[(usize, usize)], norm: Norm, act: Activation) -> Component {
    let mut out = Vec::new();
    for &(filters, kernel) in layers {
        let padding = if kernel > 1 { Padding::Valid } else { Padding::Same };
        out.push(Layer::Conv2d { filters, kernel, padding });
        out.extend(norm.layer());
        out.push(Layer::Act(act));
    }
    Component { name: name.into(), block_type: BlockType::Conv, layers: out }
}

fn head(mut components: Vec<Component>) -> Arch {
    components.push(Component { name: "flatten".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] });
    components.push(Component::mlp("MLP_Head_0", 32, Norm::None, Activation::Relu));
    components.push(Component::mlp("MLP_Head_1", 16, Norm::None, Activation::Relu));
    components.push(Component::output("output", 10, Activation::Softmax));
    Arch::new(Shape::Image { height: 16, width: 16, channels: 1 }, components)
}

fn architectures() -> Vec<(&'static str, Arch)> {
    let attention = |hidden| Component {
        name: "attn".into(),
        block_type: BlockType::ConvAttn,
        layers: vec![Layer::ConvAttention { hidden, scale: false }, Layer::Act(Activation::Relu)],
    };
    vec![
        ("conv 8k3-16k3 bn", head(vec![conv("b0", &[(8, 3), (16, 3)], Norm::Batch, Activation::Relu)])),
        (
            "conv 16k3-16k3 ×2",
            head(vec![
                conv("b0", &[(16, 3), (16, 3)], Norm::Batch, Activation::Relu),
                conv("b1", &[(16, 3), (16, 3)], Norm::None, Activation::Relu),
            ]),
        ),
        (
            "conv 8k5-8k1 + attn 8",
            head(vec![conv("b0", &[(8, 5), (8, 1)], Norm::None, Activation::Relu), attention(8)]),
        ),
        ("attn 4 on 16×16", head(vec![attention(4)])),
        ("attn 8 on 16×16", head(vec![attention(8)])),
        ("attn 16 on 16×16", head(vec![attention(16)])),
    ]
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let peak = snac_train::peak_gflops();
    // `CONV_SPEED_STEPS` lengthens the timed epoch, for A/B comparisons.
    let steps = std::env::var("CONV_SPEED_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let batch = 128;
    let train_split = images(steps * batch, 1);
    let val_split = images(2_000, 2);
    println!("one thread; FMA peak {peak:.1} GFLOP/s per core; batch {batch}");
    println!(
        "{:<24} {:>10} {:>9} {:>9} {:>8} {:>10} {:>12}",
        "architecture", "MFLOP/step", "steps/s", "GFLOP/s", "of peak", "eval/s", "T2 trial (s)"
    );
    for (name, arch) in architectures() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let macs = snac_core::cost::macs(&arch).unwrap() as f64;
        // Forward and backward: about 3 × 2 FLOP per multiply-accumulate.
        let flop_per_step = 6.0 * macs * batch as f64;
        let config = TrainConfig { epochs: 1, batch_size: batch, ..TrainConfig::default() };
        // Warm-up, then the timed epoch (its validation pass included).
        train(&arch, &images(batch * 2, 3), &images(64, 4), 10, &config).unwrap();
        let start = Instant::now();
        let outcome = train(&arch, &train_split, &images(64, 4), 10, &config).unwrap();
        let step_time = start.elapsed().as_secs_f64() / outcome.steps as f64;
        let start = Instant::now();
        evaluate(&arch, &outcome.weights, &val_split).unwrap();
        let eval_rate = val_split.len() as f64 / start.elapsed().as_secs_f64();
        let gflops = flop_per_step / step_time / 1e9;
        // T2: 3 folds × 15 epochs × (20 000 / 128 steps + 10 000 validation samples).
        let trial = 3.0 * 15.0 * ((20_000f64 / batch as f64).ceil() * step_time + 10_000.0 / eval_rate);
        println!(
            "{name:<24} {:>10.1} {:>9.1} {:>9.2} {:>7.1}% {:>10.0} {:>12.1}",
            flop_per_step / 1e6,
            1.0 / step_time,
            gflops,
            100.0 * gflops / peak,
            eval_rate,
            trial
        );
    }
}
