//! Trains two tutorial-2 (conv) architectures with SNAC-Pack's recipe on
//! Fashion-MNIST 16×16 arrays exported by Keras (10000 train / 5000 val,
//! `tf.image.resize` bilinear, /255, channels last), three seeds each, and
//! prints each run's validation accuracy and wall time and the mean ± std,
//! to compare with the same runs in TensorFlow/Keras (docs/keras-parity.md).
//!
//! `KERAS_ARRAYS=<dir with x_train.npy y_train.npy x_val.npy y_val.npy> cargo run --release -p snac-train --example keras_parity_conv [A|B ...]`
//! (`SEEDS=1` for a single timing run per architecture.)

use std::path::Path;
use std::time::Instant;

use snac_core::arch::{Activation, Arch, BlockType, Component, Layer, Norm, Padding, Shape};
use snac_core::data::{Split, read_npy_f32};
use snac_train::{TrainConfig, train};

fn split(dir: &Path, x_file: &str, y_file: &str) -> anyhow::Result<Split> {
    let (x_dims, x) = read_npy_f32(&dir.join(x_file))?;
    let (_, y) = read_npy_f32(&dir.join(y_file))?;
    anyhow::ensure!(x_dims[1..] == [16, 16, 1], "{x_file}: expected (N, 16, 16, 1), got {x_dims:?}");
    Ok(Split { x, y: y.iter().map(|&v| v as u32).collect() })
}

fn block(name: &str, block_type: BlockType, layers: Vec<Layer>) -> Component {
    Component { name: name.into(), block_type, layers }
}

fn head(mut components: Vec<Component>) -> Arch {
    components.push(block("flatten", BlockType::Flatten, vec![Layer::Flatten]));
    components.push(Component::mlp("d0", 32, Norm::None, Activation::Relu));
    components.push(Component::mlp("d1", 16, Norm::None, Activation::Relu));
    components.push(Component::output("output", 10, Activation::Softmax));
    Arch::new(Shape::Image { height: 16, width: 16, channels: 1 }, components)
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var_os("KERAS_ARRAYS").ok_or_else(|| anyhow::anyhow!("set KERAS_ARRAYS"))?;
    let dir = Path::new(&dir);
    let train_split = split(dir, "x_train.npy", "y_train.npy")?;
    let val_split = split(dir, "x_val.npy", "y_val.npy")?;
    println!("train {} val {}", train_split.len(), val_split.len());
    use Activation::Relu;
    let a = head(vec![block(
        "b0",
        BlockType::Conv,
        vec![
            Layer::Conv2d { filters: 8, kernel: 3, padding: Padding::Valid },
            Layer::BatchNorm,
            Layer::Act(Relu),
            Layer::Conv2d { filters: 16, kernel: 3, padding: Padding::Valid },
            Layer::Act(Relu),
        ],
    )]);
    let b = head(vec![
        block(
            "b0",
            BlockType::Conv,
            vec![Layer::Conv2d { filters: 8, kernel: 1, padding: Padding::Same }, Layer::Act(Relu)],
        ),
        block("b1", BlockType::ConvAttn, vec![Layer::ConvAttention { hidden: 8, scale: false }, Layer::Act(Relu)]),
    ]);
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    // SEEDS=n runs seeds 0..n (default 3), e.g. SEEDS=1 for a timing run.
    let seeds: u64 = std::env::var("SEEDS").ok().map(|s| s.parse()).transpose()?.unwrap_or(3);
    for (name, arch) in [("A", a), ("B", b)] {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let mut accs = Vec::new();
        let mut times = Vec::new();
        for seed in 0..seeds {
            let config = TrainConfig { epochs: 15, early_stopping_patience: 5, seed, ..TrainConfig::default() };
            let start = Instant::now();
            let outcome = train(&arch, &train_split, &val_split, 10, &config)?;
            let wall = start.elapsed().as_secs_f64();
            println!(
                "{name} seed {seed}: val_acc {:.4} (best epoch {} of {}) wall {wall:.1}s",
                outcome.val_accuracy,
                outcome.best_epoch,
                outcome.history.len()
            );
            accs.push(outcome.val_accuracy);
            times.push(wall);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (accs.len().max(2) - 1) as f64).sqrt();
        let wall = times.iter().sum::<f64>() / times.len() as f64;
        println!("{name}: mean {mean:.4} std {std:.4} wall/run {wall:.1}s");
    }
    Ok(())
}
