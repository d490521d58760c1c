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
