//! Datasets: loading real data (IDX MNIST / Fashion-MNIST, the embedded UCI
//! digits, `.npy`/`.npz`/`.csv` files) into [`Dataset`], prepared exactly as
//! SNAC-Pack prepares it (resize, scale, subset, flatten).

use crate::arch::Shape;
use crate::config::DatasetConfig;
use anyhow::Result;

/// One split: `x` holds `len()` samples of `Dataset::sample_shape.numel()`
/// values each, row-major (images channels last); `y` holds class indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// A prepared dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    /// Shape of one sample as the network sees it.
    pub sample_shape: Shape,
    pub num_classes: usize,
    pub train: Split,
    /// Validation split (SNAC-Pack uses the test split's first N samples).
    pub val: Split,
}

/// Loads and prepares the dataset the config describes.
pub fn load(config: &DatasetConfig) -> Result<Dataset> {
    let _ = config;
    anyhow::bail!("data loading is not implemented yet")
}
