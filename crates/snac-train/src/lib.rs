//! Training of snac-pack architectures on burn's Flex CPU backend, with the
//! semantics of SNAC-Pack's Keras training (docs/snac-pack-compat.md §3): Adam, softmax
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
    EpochHook, EpochStats, LayerOutput, TrainConfig, TrainOutcome, evaluate, evaluate_with, layer_outputs, outputs_f64,
    train, train_from,
};
pub use weights::{LayerWeights, NamedTensor, Weights};

/// FMA peak of one core in GFLOP/s, for reporting training speed against
/// it: `SNAC_PEAK_GFLOPS`, else measured once per process (twelve
/// independent chains of 8-lane fused multiply-adds, the best of five short
/// runs, so at the clock the core actually runs vectors at), else two FMA
/// pipes of eight f32 lanes at the clock /proc/cpuinfo gives (2.6 GHz when
/// it gives none). /proc/cpuinfo tends to give the base clock: on the
/// development machine it said 2.6 GHz (83 GFLOP/s) where gemm alone
/// reached 112 GFLOP/s.
pub fn peak_gflops() -> f64 {
    static PEAK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *PEAK.get_or_init(|| {
        if let Some(v) = std::env::var("SNAC_PEAK_GFLOPS").ok().and_then(|v| v.parse().ok()) {
            return v;
        }
        if let Some(measured) = measured_fma_peak() {
            return measured;
        }
        let mhz = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
            })
            .unwrap_or(2600.0f64);
        mhz / 1000.0 * 2.0 * 8.0 * 2.0
    })
}

/// GFLOP/s of a loop of nothing but independent 8-lane FMAs (AVX2 + FMA
/// cores only): twelve chains hide the FMA latency on two pipes.
fn measured_fma_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn fma_chains(iterations: usize) -> [[f32; 8]; 12] {
            let mut acc = [[1.0f32; 8]; 12];
            let (m, a) = (std::hint::black_box([0.999_999f32; 8]), std::hint::black_box([1e-7f32; 8]));
            for _ in 0..iterations {
                for chain in acc.iter_mut() {
                    for l in 0..8 {
                        chain[l] = chain[l].mul_add(m[l], a[l]);
                    }
                }
            }
            acc
        }
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return None;
        }
        let iterations = 500_000;
        let best = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                // SAFETY: the CPU supports AVX2 and FMA, checked above.
                std::hint::black_box(unsafe { fma_chains(iterations) });
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        Some((iterations * 12 * 8 * 2) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}
