//! Training of snac-pack architectures on burn's Flex CPU backend, with the
//! semantics of SNAC-Pack's Keras training (REFERENCE §3): Adam, softmax
//! cross-entropy, EarlyStopping and ReduceLROnPlateau on the validation loss.
//! Quantization-aware training ([`quant`], [`TrainConfig::quant`]) and pruning
//! masks ([`prune`], [`TrainConfig::masks`]) plug into the same loop.
//!
//! ```no_run
//! use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
//! use snac_core::data::Split;
//! use snac_train::{TrainConfig, evaluate, train};
//!
//! let arch = Arch::new(
//!     Shape::Flat(4),
//!     vec![
//!         Component::mlp("b0", 8, Norm::Batch, Activation::Relu),
//!         Component::output("output", 2, Activation::Softmax),
//!     ],
//! );
//! let split = Split { x: vec![0.0, 1.0, 0.5, 0.2, 1.0, 0.0, 0.3, 0.9], y: vec![0, 1] };
//! let outcome = train(&arch, &split, &split, 2, &TrainConfig { epochs: 3, ..TrainConfig::default() }).unwrap();
//! let (loss, accuracy) = evaluate(&arch, &outcome.weights, &split).unwrap();
//! assert_eq!(accuracy, outcome.val_accuracy);
//! # let _ = loss;
//! ```

mod attention;
mod engine;
mod fastmath;
pub mod layers;
mod net;
pub mod prune;
pub mod quant;
mod train;
mod weights;

pub use prune::{Masks, magnitude_masks};
pub use quant::{QuantSpec, fake_quantize, quantize_weights, quantized_model};
pub use train::{
    EpochStats, LayerOutput, TrainConfig, TrainOutcome, evaluate, evaluate_with, layer_outputs, outputs_f64, train,
    train_from,
};
pub use weights::{LayerWeights, NamedTensor, Weights};

/// FMA peak of one core in GFLOP/s, for reporting training speed against
/// it: `SNAC_PEAK_GFLOPS`, or two FMA pipes of eight f32 lanes at the clock
/// /proc/cpuinfo gives (AVX2-class cores; 2.6 GHz when it gives none).
pub fn peak_gflops() -> f64 {
    if let Some(v) = std::env::var("SNAC_PEAK_GFLOPS").ok().and_then(|v| v.parse().ok()) {
        return v;
    }
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        })
        .unwrap_or(2600.0f64);
    mhz / 1000.0 * 2.0 * 8.0 * 2.0
}
