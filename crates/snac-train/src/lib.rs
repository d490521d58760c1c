//! Stub until the trainer lands.
use anyhow::Result;
use snac_core::arch::Arch;
use snac_core::data::Split;
use std::path::Path;
pub struct TrainConfig { pub epochs: usize, pub batch_size: usize, pub learning_rate: f64,
    pub early_stopping_patience: usize, pub lr_plateau_patience: usize, pub lr_factor: f64, pub min_lr: f64, pub seed: u64 }
pub struct EpochStats { pub epoch: usize, pub train_loss: f64, pub train_accuracy: f64, pub val_loss: f64, pub val_accuracy: f64, pub learning_rate: f64 }
pub struct TrainOutcome { pub val_accuracy: f64, pub val_loss: f64, pub best_epoch: usize, pub history: Vec<EpochStats>, pub steps: usize, pub weights: Weights }
pub struct Weights;
impl Weights { pub fn save(&self, _p: &Path) -> Result<()> { Ok(()) } }
pub fn train(_arch: &Arch, _train: &Split, _val: &Split, _num_classes: usize, _config: &TrainConfig) -> Result<TrainOutcome> { anyhow::bail!("stub") }
