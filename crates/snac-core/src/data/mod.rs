//! Datasets: loading real data (IDX MNIST / Fashion-MNIST, the embedded UCI
//! digits, qubit-readout traces, `.npy`/`.npz`/`.csv` files) into [`Dataset`], prepared exactly as
//! SNAC-Pack prepares it (resize, scale, subset, flatten), and images turned
//! into point sets for DeepSets ([`image_to_points`]).
//!
//! Formats stay at the edge: each loader produces [`Raw`] samples (values as
//! stored, a sample shape, class indices), and [`prepare`] applies the shared
//! SNAC-Pack recipe. [`fetch`] downloads MNIST / Fashion-MNIST into the cache
//! that [`load`] searches.
//!
//! ```
//! use snac_core::arch::Shape;
//! use snac_core::config::{DatasetConfig, DatasetName};
//! let config = DatasetConfig::new(DatasetName::Digits);
//! let data = snac_core::data::load(&config).unwrap();
//! assert_eq!(data.sample_shape, Shape::Flat(64));
//! assert_eq!(data.train.len() + data.val.len(), 1797);
//! ```

mod digits;
mod fetch;
mod files;
mod idx;
mod point_sets;
mod qubit;
mod qubit_sim;
mod resize;

pub use fetch::{IdxFile, default_cache_dir, fetch, idx_files, verify};
pub use files::{read_npy_f32, write_npy, write_npy_f64};
pub use idx::{MNIST_CLASSES, search_dirs};
pub use point_sets::{POINT_FEATURES, image_to_points};
pub use qubit::{QUBIT_FILES, qubit_search_dirs, readout_fidelity};
pub use qubit_sim::{
    PARAMS_FILE as QUBIT_SIM_PARAMS_FILE, QubitSimParams, simulate_qubit, write_dataset as write_qubit_dataset,
};
pub use resize::resize_bilinear;

use crate::arch::Shape;
use crate::config::{DatasetConfig, DatasetName};
use anyhow::{Result, bail, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Seed of the shuffle before a validation hold-out (SNAC-Pack uses 42).
pub const HOLDOUT_SEED: u64 = 42;

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

    /// Keeps the first `n` samples (all when fewer).
    fn truncate(&mut self, n: usize, sample_len: usize) {
        if n < self.len() {
            self.y.truncate(n);
            self.x.truncate(n * sample_len);
        }
    }

    /// The samples at `indices`, in that order.
    fn select(&self, indices: &[usize], sample_len: usize) -> Split {
        let mut x = Vec::with_capacity(indices.len() * sample_len);
        for &i in indices {
            x.extend_from_slice(&self.x[i * sample_len..(i + 1) * sample_len]);
        }
        Split { x, y: indices.iter().map(|&i| self.y[i]).collect() }
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

/// File names [`Dataset::write_npy`] writes: features and labels of the
/// training and the validation (test) split.
pub const NPY_SPLIT_FILES: [&str; 4] = ["x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"];

impl Dataset {
    /// Writes the prepared splits into `dir` as [`NPY_SPLIT_FILES`]:
    /// float32 features of shape `(N, *sample_shape.dims())` and int64 class
    /// indices, ready for `dataset.name: file` (`train_file`/`train_labels`,
    /// `val_file`/`val_labels`). Returns the paths in that order.
    pub fn write_npy(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        let [x_train, y_train, x_test, y_test] = NPY_SPLIT_FILES;
        let mut paths = Vec::new();
        for (split, x_name, y_name) in [(&self.train, x_train, y_train), (&self.val, x_test, y_test)] {
            let mut dims = vec![split.len()];
            dims.extend(self.sample_shape.dims());
            let labels: Vec<i64> = split.y.iter().map(|&y| i64::from(y)).collect();
            paths.push(dir.join(x_name));
            write_npy(&dir.join(x_name), &dims, &split.x)?;
            paths.push(dir.join(y_name));
            write_npy(&dir.join(y_name), &[split.len()], &labels)?;
        }
        Ok(paths)
    }

    /// Stratified k-fold cross-validation as SNAC-Pack does it: train and
    /// validation pooled, each class shuffled with `seed` and dealt round
    /// robin over the `k` folds (so every fold's class mix is the pool's, to
    /// within one sample per class). Returns `(train, validation)` per fold.
    pub fn stratified_folds(&self, k: usize, seed: u64) -> Result<Vec<(Split, Split)>> {
        let sample_len = self.sample_shape.numel();
        let mut pooled = self.train.clone();
        pooled.x.extend_from_slice(&self.val.x);
        pooled.y.extend_from_slice(&self.val.y);
        ensure!(k >= 2, "k-fold needs at least 2 folds, got {k}");
        ensure!(
            k <= pooled.len(),
            "n_folds is {k} but dataset '{}' has only {} samples (train and validation pooled)",
            self.name,
            pooled.len()
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fold_of = vec![0usize; pooled.len()];
        let mut next = 0usize;
        for class in 0..self.num_classes as u32 {
            let mut members: Vec<usize> = (0..pooled.len()).filter(|&i| pooled.y[i] == class).collect();
            members.shuffle(&mut rng);
            for i in members {
                fold_of[i] = next % k;
                next += 1;
            }
        }
        Ok((0..k)
            .map(|fold| {
                let (val, train): (Vec<usize>, Vec<usize>) = (0..pooled.len()).partition(|&i| fold_of[i] == fold);
                (pooled.select(&train, sample_len), pooled.select(&val, sample_len))
            })
            .collect())
    }
}

/// Samples as a loader read them, before the SNAC-Pack recipe: values as
/// stored (e.g. 0..255 pixels), `shape` of one sample.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    pub shape: Shape,
    pub train: Split,
    /// `None` when the source has no validation / test split.
    pub val: Option<Split>,
    /// Pixels are divided by this after resizing (255 for IDX, 16 for digits,
    /// 1 for generic files).
    pub scale: f32,
    pub num_classes: usize,
}

/// Loads and prepares the dataset the config describes.
pub fn load(config: &DatasetConfig) -> Result<Dataset> {
    let raw = match config.name {
        DatasetName::Mnist | DatasetName::FashionMnist => idx::load(config)?,
        DatasetName::Digits => digits::load()?,
        DatasetName::File => files::load(config)?,
        // The qubit loader draws its own random subset (SNAC-Pack's recipe).
        DatasetName::Qubit => {
            return prepare(&DatasetConfig { subset_size: None, ..config.clone() }, qubit::load(config)?);
        }
    };
    prepare(config, raw)
}

/// SNAC-Pack's recipe: hold out a validation split when there is none,
/// resize images to `resize_val`², scale, take the first `subset_size` of
/// each split, flatten. With `points`, images become point sets after the
/// scaling; with `sets` (DeepSets), the samples must be sets and stay sets.
pub(crate) fn prepare(config: &DatasetConfig, raw: Raw) -> Result<Dataset> {
    let name = match config.points {
        Some(_) => format!("{}_points", config.name.name()),
        None => config.name.name().to_string(),
    };
    let Raw { mut shape, mut train, val, scale, num_classes } = raw;
    let mut val = match val {
        Some(val) => val,
        None => {
            let (t, v) = holdout(&train, shape.numel(), num_classes, config.validation_split)?;
            train = t;
            v
        }
    };
    if let Some(n) = config.subset_size {
        ensure!(n > 0, "dataset.subset_size: 0 leaves no samples; use at least 1");
        train.truncate(n, shape.numel());
        val.truncate(n, shape.numel());
    }
    if let Some(size) = config.resize_val {
        ensure!(size > 0, "dataset.resize_val: 0 is not an image size; use at least 1");
        match shape {
            Shape::Image { height, width, channels } if (height, width) != (size, size) => {
                train.x = resize_bilinear(&train.x, train.len(), height, width, channels, size, size);
                val.x = resize_bilinear(&val.x, val.len(), height, width, channels, size, size);
                shape = Shape::Image { height: size, width: size, channels };
            }
            Shape::Image { .. } => {}
            Shape::Flat(_) | Shape::Set { .. } => bail!(
                "dataset.resize_val: {size} asks to resize images, but {name} samples are {shape}, not images; \
                 remove resize_val or give the data as (N, H, W[, C]) images"
            ),
        }
    }
    if scale != 1.0 {
        for v in train.x.iter_mut().chain(val.x.iter_mut()) {
            *v /= scale;
        }
    }
    if let Some(points) = config.points {
        let source = config.name.name();
        point_sets::split_to_points(&mut val, shape, points, source)?;
        shape = point_sets::split_to_points(&mut train, shape, points, source)?;
    }
    if config.sets {
        ensure!(
            matches!(shape, Shape::Set { .. }),
            "search.model_type: deepsets needs samples that are sets, but {name} samples are {shape}; \
             use dataset.points: N to turn images into point sets, or file data of shape (N, elements, features)"
        );
    } else if config.flatten {
        shape = Shape::Flat(shape.numel());
    }
    ensure!(!train.is_empty(), "{name}: the training split is empty");
    ensure!(!val.is_empty(), "{name}: the validation split is empty");
    Ok(Dataset { name, sample_shape: shape, num_classes, train, val })
}

/// Shuffles with [`HOLDOUT_SEED`] and holds out `fraction` of every class as
/// validation (stratified); both parts keep the shuffled order.
pub(crate) fn holdout(data: &Split, sample_len: usize, num_classes: usize, fraction: f64) -> Result<(Split, Split)> {
    ensure!(
        fraction > 0.0 && fraction < 1.0,
        "dataset.validation_split: {fraction} must be between 0 and 1 (exclusive) when the data has no validation split"
    );
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(HOLDOUT_SEED));
    let mut per_class = vec![0usize; num_classes];
    for &label in &data.y {
        per_class[label as usize] += 1;
    }
    let mut val_quota: Vec<usize> = per_class.iter().map(|&n| (n as f64 * fraction).round() as usize).collect();
    let mut train_idx = Vec::new();
    let mut val_idx = Vec::new();
    for i in order {
        let quota = &mut val_quota[data.y[i] as usize];
        if *quota > 0 {
            *quota -= 1;
            val_idx.push(i);
        } else {
            train_idx.push(i);
        }
    }
    ensure!(
        !val_idx.is_empty() && !train_idx.is_empty(),
        "holding out {fraction} of {} samples leaves an empty split; give more data or a val_file",
        data.len()
    );
    Ok((data.select(&train_idx, sample_len), data.select(&val_idx, sample_len)))
}

/// Errors on the first NaN or infinite value, naming `what` (usually a file).
pub(crate) fn check_finite(values: &[f32], what: &str) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!("{what}: value {} at flat index {i} is not finite (NaN, ±inf, or too large for f32)", values[i]);
    }
    Ok(())
}

/// Errors on the first label `>= num_classes`, naming `what`.
pub(crate) fn check_labels(labels: &[u32], num_classes: usize, what: &str) -> Result<()> {
    if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
        bail!(
            "{what}: label {} at index {i} is out of range: {num_classes} classes allow 0..={}",
            labels[i],
            num_classes - 1
        );
    }
    Ok(())
}

/// Directory with the real data files shared by the project, for tests.
#[cfg(test)]
pub(crate) fn shared_data_dir() -> Option<std::path::PathBuf> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if here.is_dir() {
        return Some(here);
    }
    let env = std::path::PathBuf::from(std::env::var_os("SNAC_SHARED_DIR")?);
    [env.join("data"), env].into_iter().find(|d| d.join("mnist").is_dir())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A config with SNAC-Pack's defaults for `name`.
    pub(crate) fn config(name: DatasetName) -> DatasetConfig {
        DatasetConfig { flatten: false, ..DatasetConfig::new(name) }
    }

    /// The shared data dir, or `None` after printing why the test is skipped.
    pub(crate) fn shared_or_skip(test: &str) -> Option<PathBuf> {
        let dir = shared_data_dir();
        if dir.is_none() {
            println!("skipping {test}: ../../../shared/data and $SNAC_SHARED_DIR are both missing");
        }
        dir
    }

    #[test]
    fn holdout_is_stratified_and_deterministic() {
        let y: Vec<u32> = (0..100).map(|i| (i % 4) as u32).collect();
        let x: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let data = Split { x, y };
        let (train, val) = holdout(&data, 2, 4, 0.2).unwrap();
        assert_eq!((train.len(), val.len()), (80, 20));
        for class in 0..4 {
            assert_eq!(val.y.iter().filter(|&&c| c == class).count(), 5);
        }
        // Rows stay together.
        for (row, &label) in train.x.chunks(2).zip(&train.y) {
            assert_eq!(row[1], row[0] + 1.0);
            assert_eq!((row[0] as usize / 2) % 4, label as usize);
        }
        let (train2, val2) = holdout(&data, 2, 4, 0.2).unwrap();
        assert_eq!((train, val), (train2, val2));
        assert!(holdout(&data, 2, 4, 0.0).is_err());
        assert!(holdout(&data, 2, 4, 1.0).is_err());
    }

    #[test]
    fn finite_and_label_checks_name_the_place() {
        let err = check_finite(&[1.0, f32::NAN], "a.npy").unwrap_err().to_string();
        assert!(err.contains("a.npy") && err.contains("index 1"), "{err}");
        let err = check_labels(&[0, 3, 12], 10, "y.npy").unwrap_err().to_string();
        assert!(err.contains("y.npy") && err.contains("label 12 at index 2"), "{err}");
    }

    #[test]
    fn stratified_folds_partition_the_pool_by_class() {
        let data = load(&config(DatasetName::Digits)).unwrap();
        let folds = data.stratified_folds(3, 42).unwrap();
        let total = data.train.len() + data.val.len();
        assert_eq!(folds.len(), 3);
        let count = |split: &Split, class: u32| split.y.iter().filter(|&&y| y == class).count();
        let mut seen = std::collections::HashSet::new();
        for (train, val) in &folds {
            assert_eq!(train.len() + val.len(), total);
            assert_eq!(train.x.len(), train.len() * 64);
            for class in 0..10 {
                let pool = count(&data.train, class) + count(&data.val, class);
                let got = count(val, class) as f64;
                assert!((got - pool as f64 / 3.0).abs() <= 1.0, "class {class}: {got} of {pool} in one fold");
            }
            // Every sample is in exactly one validation fold.
            for sample in val.x.chunks_exact(64) {
                seen.insert(sample.iter().map(|v| v.to_bits()).collect::<Vec<u32>>());
            }
        }
        let mut distinct = std::collections::HashSet::new();
        for split in [&data.train, &data.val] {
            for sample in split.x.chunks_exact(64) {
                distinct.insert(sample.iter().map(|v| v.to_bits()).collect::<Vec<u32>>());
            }
        }
        assert_eq!(seen, distinct, "the validation folds cover the pool");
        assert_eq!(folds, data.stratified_folds(3, 42).unwrap(), "seeded");
        assert_ne!(folds, data.stratified_folds(3, 7).unwrap());
        let err = data.stratified_folds(1, 42).unwrap_err().to_string();
        assert!(err.contains("at least 2"), "{err}");
    }
}
