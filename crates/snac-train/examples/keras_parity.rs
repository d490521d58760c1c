//! Trains tutorial-1 architectures with SNAC-Pack's recipe on MNIST 8×8
//! (subset 10000) over several seeds and prints mean ± std validation
//! accuracy, to compare with the same runs in TensorFlow/Keras.
//!
//! `SNAC_DATA_DIR=../shared/data cargo run --release -p snac-train --example keras_parity`
//! With `TF_COMPARE_DIR` pointing at Keras' preprocessed arrays
//! (`X_train_8x8.npy`, `X_val_8x8.npy`), it also checks the preprocessing.

use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::config::{DatasetConfig, DatasetName};
use snac_train::{TrainConfig, train};

fn main() -> anyhow::Result<()> {
    let config =
        DatasetConfig { resize_val: Some(8), subset_size: Some(10000), ..DatasetConfig::new(DatasetName::Mnist) };
    let data = snac_core::data::load(&config)?;
    if let Some(dir) = std::env::var_os("TF_COMPARE_DIR") {
        for (name, ours) in [("X_train_8x8.npy", &data.train.x), ("X_val_8x8.npy", &data.val.x)] {
            let bytes = std::fs::read(std::path::Path::new(&dir).join(name))?;
            let theirs: Vec<f32> = npyz::NpyFile::new(&bytes[..])?.into_vec()?;
            let max_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            println!("{name}: {} values, max |ours - keras| = {max_diff:e}", theirs.len());
        }
    }
    let mlp = |layers: &[(usize, Norm, Activation)]| {
        let mut components: Vec<Component> =
            layers.iter().enumerate().map(|(i, &(u, n, a))| Component::mlp(&format!("l{i}"), u, n, a)).collect();
        components.push(Component::output("output", 10, Activation::Softmax));
        Arch::new(Shape::Flat(64), components)
    };
    use Activation::*;
    let archs = [
        ("A", mlp(&[(64, Norm::None, Relu), (32, Norm::None, Relu)])),
        ("B", mlp(&[(128, Norm::Batch, Relu), (64, Norm::Batch, Relu), (32, Norm::Batch, Relu)])),
        ("C", mlp(&[(16, Norm::None, Tanh), (16, Norm::None, Sigmoid)])),
        ("D", mlp(&[(32, Norm::Batch, Sigmoid), (8, Norm::None, Relu)])),
    ];
    println!("| arch | epochs | mean val acc | std | min | max |");
    println!("|---|---|---|---|---|---|");
    for epochs in [2, 20] {
        for (name, arch) in &archs {
            let accs: Vec<f64> = (0..5)
                .map(|seed| {
                    let config = TrainConfig { epochs, early_stopping_patience: 3, seed, ..TrainConfig::default() };
                    train(arch, &data.train, &data.val, 10, &config).map(|o| o.val_accuracy)
                })
                .collect::<anyhow::Result<_>>()?;
            let mean = accs.iter().sum::<f64>() / accs.len() as f64;
            let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (accs.len() - 1) as f64).sqrt();
            let min = accs.iter().copied().fold(1.0, f64::min);
            let max = accs.iter().copied().fold(0.0, f64::max);
            println!("| {name} | {epochs} | {mean:.4} | {std:.4} | {min:.4} | {max:.4} |");
        }
    }
    Ok(())
}
