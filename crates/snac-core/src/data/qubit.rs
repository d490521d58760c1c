//! The qubit-readout loader (`dataset.name: qubit`), laid out as SNAC-Pack's
//! tutorial 3 expects: `0528_X_{train,test}_0_770.npy` holding raw I/Q traces
//! of shape `(N, 2·T)` with I and Q interleaved (I0, Q0, I1, Q1, …), and
//! `0528_y_{train,test}_0_770.npy` holding the states (0 ground, 1 excited).
//!
//! The recipe: keep the window `[2·start_location, 2·(start_location +
//! window_size))` of features, take a random `subset_size` of the training
//! traces (seed 42), and z-score every feature with the training statistics
//! when `normalize` is set. `train_file` / `val_file` (`.npy` with
//! `train_labels` / `val_labels`, or `.npz` with arrays `x` and `y`) replace
//! the default file names; without a test split, `validation_split` of the
//! training traces is held out.

use super::files::read_split;
use super::{HOLDOUT_SEED, Raw, Split, check_labels, holdout};
use crate::arch::Shape;
use crate::config::DatasetConfig;
use anyhow::{Result, bail, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// SNAC-Pack's file names: X train, y train, X test, y test.
pub const QUBIT_FILES: [&str; 4] =
    ["0528_X_train_0_770.npy", "0528_y_train_0_770.npy", "0528_X_test_0_770.npy", "0528_y_test_0_770.npy"];

/// The traces' files: features and labels of train, and of test when there is one.
#[derive(Clone, Debug, PartialEq)]
struct QubitFiles {
    train: (PathBuf, Option<PathBuf>),
    test: Option<(PathBuf, Option<PathBuf>)>,
}

/// Every directory searched for [`QUBIT_FILES`], in order: `data_dir`,
/// `data_dir/qubit`, `$SNAC_DATA_DIR/qubit`, `$SNAC_DATA_DIR`.
pub fn qubit_search_dirs(data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = data_dir {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join("qubit"));
    }
    if let Some(root) = std::env::var_os("SNAC_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from) {
        dirs.push(root.join("qubit"));
        dirs.push(root);
    }
    dirs
}

fn locate(config: &DatasetConfig) -> Result<QubitFiles> {
    if let Some(train_file) = &config.train_file {
        return Ok(QubitFiles {
            train: (train_file.clone(), config.train_labels.clone()),
            test: config.val_file.clone().map(|f| (f, config.val_labels.clone())),
        });
    }
    ensure!(config.val_file.is_none(), "dataset.val_file is set but dataset.train_file is not");
    let dirs = qubit_search_dirs(config.data_dir.as_deref());
    for dir in &dirs {
        let [x_train, y_train, x_test, y_test] = QUBIT_FILES.map(|f| dir.join(f));
        if x_train.is_file() && y_train.is_file() {
            let test = (x_test.is_file() && y_test.is_file()).then_some((x_test, Some(y_test)));
            return Ok(QubitFiles { train: (x_train, Some(y_train)), test });
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| format!("  {}", d.display())).collect();
    bail!(
        "qubit: no readout traces found: need {} and {} (and optionally {} and {}), I/Q interleaved, shape (N, 2·T). \
         Looked in:\n{}\nSet dataset.data_dir (or $SNAC_DATA_DIR, or dataset.train_file), or make simulated traces \
         with `snac data simulate-qubit --out DIR`",
        QUBIT_FILES[0],
        QUBIT_FILES[1],
        QUBIT_FILES[2],
        QUBIT_FILES[3],
        if looked.is_empty() {
            "  (nowhere: dataset.data_dir and $SNAC_DATA_DIR are both unset)".into()
        } else {
            looked.join("\n")
        }
    )
}

/// Reads one split and checks it holds flat `(N, 2·T)` traces; returns T.
fn read_traces(file: &Path, labels: Option<&Path>) -> Result<(Split, usize)> {
    let (shape, split, _) = read_split(file, labels, false)?;
    let Shape::Flat(features) = shape else {
        bail!(
            "{}: samples of shape {:?}; qubit traces must be (N, 2·T): T I/Q pairs per row, interleaved",
            file.display(),
            shape.dims()
        )
    };
    ensure!(
        features >= 2 && features % 2 == 0,
        "{}: {features} features per trace; qubit traces must hold an even number (I/Q interleaved, shape (N, 2·T))",
        file.display()
    );
    Ok((split, features / 2))
}

/// Keeps features `[2·start, 2·(start + window))` of every trace.
fn crop(split: &Split, features: usize, start: usize, window: usize) -> Split {
    let (from, to) = (2 * start, 2 * (start + window));
    let mut x = Vec::with_capacity(split.len() * (to - from));
    for row in split.x.chunks_exact(features) {
        x.extend_from_slice(&row[from..to]);
    }
    Split { x, y: split.y.clone() }
}

pub(crate) fn load(config: &DatasetConfig) -> Result<Raw> {
    let files = locate(config)?;
    let (train_file, train_labels) = &files.train;
    let (train, samples) = read_traces(train_file, train_labels.as_deref())?;
    let start = config.start_location.unwrap_or(0);
    let window = match config.window_size {
        Some(window) => window,
        None => samples.checked_sub(start).filter(|&w| w > 0).unwrap_or(0),
    };
    ensure!(
        window > 0 && start + window <= samples,
        "dataset.start_location {start} + window_size {window} = {} samples, but {} holds traces of {samples} I/Q \
         samples (shape (N, {})); accepted: start_location + window_size <= {samples}, window_size >= 1",
        start + window,
        train_file.display(),
        2 * samples
    );
    let features = 2 * samples;
    let mut train = crop(&train, features, start, window);
    let sample_len = 2 * window;
    let num_classes = match config.num_classes {
        Some(n) => n,
        None => train.y.iter().copied().max().unwrap_or(0) as usize + 1,
    };
    ensure!(num_classes >= 2, "{}: all labels are 0; a classifier needs at least 2 classes", train_file.display());
    let labels_name = |(x, y): &(PathBuf, Option<PathBuf>)| y.as_deref().unwrap_or(x).display().to_string();
    check_labels(&train.y, num_classes, &labels_name(&files.train))?;
    let mut val = match &files.test {
        Some(test) => {
            let (val, val_samples) = read_traces(&test.0, test.1.as_deref())?;
            ensure!(
                val_samples == samples,
                "{} holds traces of {val_samples} I/Q samples but {} holds {samples}; both need the same length",
                test.0.display(),
                train_file.display()
            );
            check_labels(&val.y, num_classes, &labels_name(test))?;
            crop(&val, features, start, window)
        }
        None => {
            let (t, v) = holdout(&train, sample_len, num_classes, config.validation_split)?;
            train = t;
            v
        }
    };
    if let Some(n) = config.subset_size {
        ensure!(n > 0, "dataset.subset_size: 0 leaves no samples; use at least 1");
        if n < train.len() {
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(HOLDOUT_SEED));
            order.truncate(n);
            train = train.select(&order, sample_len);
        }
    }
    if config.normalize {
        normalize(&mut train, &mut val, sample_len);
    }
    Ok(Raw { shape: Shape::Flat(sample_len), train, val: Some(val), scale: 1.0, num_classes })
}

/// Z-scores every feature with the training split's mean and standard
/// deviation (a constant feature is only centred).
fn normalize(train: &mut Split, val: &mut Split, sample_len: usize) {
    let n = train.len().max(1) as f64;
    let mut mean = vec![0f64; sample_len];
    let mut square = vec![0f64; sample_len];
    for row in train.x.chunks_exact(sample_len) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            square[j] += (v as f64) * (v as f64);
        }
    }
    let scale: Vec<(f32, f32)> = (0..sample_len)
        .map(|j| {
            let m = mean[j] / n;
            let std = (square[j] / n - m * m).max(0.0).sqrt();
            (m as f32, if std > 1e-12 { std as f32 } else { 1.0 })
        })
        .collect();
    for split in [train, val] {
        for row in split.x.chunks_exact_mut(sample_len) {
            for (v, &(m, s)) in row.iter_mut().zip(&scale) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// Readout fidelity F = 1 − P(e|g) − P(g|e) of predicted states against true
/// ones (0 ground, 1 excited); `None` unless both states occur in `truth`.
pub fn readout_fidelity(predicted: &[u32], truth: &[u32]) -> Option<f64> {
    let mut counts = [[0usize; 2]; 2];
    for (&p, &t) in predicted.iter().zip(truth) {
        if p < 2 && t < 2 {
            counts[t as usize][p as usize] += 1;
        } else if t < 2 {
            // A third class counts as wrong for either state.
            counts[t as usize][1 - t as usize] += 1;
        }
    }
    let rate = |t: usize| {
        let total = counts[t][0] + counts[t][1];
        (total > 0).then(|| counts[t][1 - t] as f64 / total as f64)
    };
    Some(1.0 - rate(0)? - rate(1)?)
}

#[cfg(test)]
mod tests {
    use super::super::qubit_sim::{QubitSimParams, write_dataset};
    use super::super::tests::config;
    use super::*;
    use crate::config::DatasetName;
    use crate::data::{load as load_dataset, write_npy};

    fn qubit_config(dir: &Path) -> DatasetConfig {
        DatasetConfig { data_dir: Some(dir.to_path_buf()), ..config(DatasetName::Qubit) }
    }

    /// Train 4 traces of 3 I/Q samples whose values encode (row, feature), test 2.
    fn tiny_files(dir: &Path) {
        let x: Vec<f32> = (0..4).flat_map(|r| (0..6).map(move |f| (10 * r + f) as f32)).collect();
        write_npy(&dir.join(QUBIT_FILES[0]), &[4, 6], &x).unwrap();
        write_npy(&dir.join(QUBIT_FILES[1]), &[4], &[0i64, 1, 0, 1]).unwrap();
        write_npy(&dir.join(QUBIT_FILES[2]), &[2, 6], &x[..12]).unwrap();
        write_npy(&dir.join(QUBIT_FILES[3]), &[2], &[1i64, 0]).unwrap();
    }

    #[test]
    fn readout_fidelity_is_one_minus_both_error_rates() {
        // Ground: 1 of 4 read as excited; excited: 1 of 2 read as ground.
        let f = readout_fidelity(&[0, 0, 1, 0, 1, 0], &[0, 0, 0, 0, 1, 1]).unwrap();
        assert!((f - (1.0 - 0.25 - 0.5)).abs() < 1e-12, "{f}");
        assert_eq!(readout_fidelity(&[0, 1], &[0, 1]), Some(1.0));
        assert_eq!(readout_fidelity(&[1, 0], &[0, 1]), Some(-1.0));
        assert_eq!(readout_fidelity(&[0, 0], &[0, 0]), None, "no excited shots");
    }

    #[test]
    fn qubit_window_selects_interleaved_iq_features() {
        let dir = tempfile::tempdir().unwrap();
        tiny_files(dir.path());
        let config = DatasetConfig { start_location: Some(1), window_size: Some(2), ..qubit_config(dir.path()) };
        let data = load_dataset(&config).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(4));
        assert_eq!(data.num_classes, 2);
        // Features [2, 6): I1, Q1, I2, Q2 of every trace.
        assert_eq!(&data.train.x[..8], &[2.0, 3.0, 4.0, 5.0, 12.0, 13.0, 14.0, 15.0]);
        assert_eq!(data.train.y, vec![0, 1, 0, 1]);
        assert_eq!(data.val.y, vec![1, 0]);
        // Whole traces by default.
        let data = load_dataset(&qubit_config(dir.path())).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(6));
    }

    #[test]
    fn qubit_normalize_uses_train_statistics() {
        let dir = tempfile::tempdir().unwrap();
        tiny_files(dir.path());
        let config = DatasetConfig { normalize: true, ..qubit_config(dir.path()) };
        let data = load_dataset(&config).unwrap();
        for j in 0..6 {
            let column: Vec<f64> = data.train.x.iter().skip(j).step_by(6).map(|&v| v as f64).collect();
            let mean = column.iter().sum::<f64>() / 4.0;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "feature {j}: mean {mean} var {var}");
        }
        // Test rows 0 and 1 equal train rows 0 and 1, so they get the same values.
        assert_eq!(&data.val.x[..], &data.train.x[..12]);
    }

    #[test]
    fn qubit_subset_is_random_and_seeded() {
        let dir = tempfile::tempdir().unwrap();
        let params = QubitSimParams { samples: 20, ..QubitSimParams::default() };
        write_dataset(dir.path(), &params, 200, 50, 3).unwrap();
        let config = DatasetConfig { subset_size: Some(30), ..qubit_config(dir.path()) };
        let a = load_dataset(&config).unwrap();
        let b = load_dataset(&config).unwrap();
        assert_eq!((a.train.len(), a.val.len()), (30, 50), "validation keeps the whole test split");
        assert_eq!(a.train, b.train);
        let full = load_dataset(&qubit_config(dir.path())).unwrap();
        assert_ne!(&a.train.x[..], &full.train.x[..30 * 40], "not the first 30");
        // Every subset trace is one of the training traces.
        for row in a.train.x.chunks_exact(40) {
            assert!(full.train.x.chunks_exact(40).any(|r| r == row));
        }
    }

    #[test]
    fn qubit_errors_name_file_shape_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", load_dataset(&qubit_config(dir.path())).unwrap_err());
        assert!(err.contains(QUBIT_FILES[0]) && err.contains("simulate-qubit"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        tiny_files(dir.path());
        let config = DatasetConfig { start_location: Some(2), window_size: Some(2), ..qubit_config(dir.path()) };
        let err = format!("{:#}", load_dataset(&config).unwrap_err());
        assert!(err.contains("start_location 2 + window_size 2 = 4") && err.contains("(N, 6)"), "{err}");
        assert!(err.contains(QUBIT_FILES[0]) && err.contains("<= 3"), "{err}");
        // An odd number of features is not I/Q interleaved.
        write_npy(&dir.path().join(QUBIT_FILES[0]), &[4, 5], &[0f32; 20]).unwrap();
        let err = format!("{:#}", load_dataset(&qubit_config(dir.path())).unwrap_err());
        assert!(err.contains("5 features") && err.contains("(N, 2·T)"), "{err}");
        // Images are not traces.
        write_npy(&dir.path().join(QUBIT_FILES[0]), &[4, 2, 2], &[0f32; 16]).unwrap();
        let err = format!("{:#}", load_dataset(&qubit_config(dir.path())).unwrap_err());
        assert!(err.contains("samples of shape [2, 2, 1]") && err.contains(QUBIT_FILES[0]), "{err}");
        // Labels beyond num_classes.
        tiny_files(dir.path());
        write_npy(&dir.path().join(QUBIT_FILES[3]), &[2], &[2i64, 0]).unwrap();
        let err = format!(
            "{:#}",
            load_dataset(&DatasetConfig { num_classes: Some(2), ..qubit_config(dir.path()) }).unwrap_err()
        );
        assert!(err.contains(QUBIT_FILES[3]) && err.contains("label 2"), "{err}");
    }

    #[test]
    fn qubit_npz_and_holdout_without_test_split() {
        let dir = tempfile::tempdir().unwrap();
        let params = QubitSimParams { samples: 10, ..QubitSimParams::default() };
        write_dataset(dir.path(), &params, 100, 20, 5).unwrap();
        // The same traces as an .npz with arrays x and y.
        let (dims, x) = crate::data::read_npy_f32(&dir.path().join(QUBIT_FILES[0])).unwrap();
        let (_, y) = crate::data::read_npy_f32(&dir.path().join(QUBIT_FILES[1])).unwrap();
        let npz = dir.path().join("train.npz");
        {
            use npyz::WriterBuilder;
            let mut zip = npyz::npz::NpzWriter::create(&npz).unwrap();
            let shape: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
            let mut w =
                zip.array::<f32>("x", Default::default()).unwrap().default_dtype().shape(&shape).begin_nd().unwrap();
            w.extend(x.iter().copied()).unwrap();
            w.finish().unwrap();
            let mut w =
                zip.array::<i64>("y", Default::default()).unwrap().default_dtype().shape(&[100]).begin_nd().unwrap();
            w.extend(y.iter().map(|&v| v as i64)).unwrap();
            w.finish().unwrap();
        }
        let npz_config = DatasetConfig {
            train_file: Some(npz),
            validation_split: 0.2,
            start_location: Some(2),
            window_size: Some(5),
            ..config(DatasetName::Qubit)
        };
        let data = load_dataset(&npz_config).unwrap();
        assert_eq!((data.train.len(), data.val.len(), data.sample_shape.numel()), (80, 20, 10));
        assert_eq!(data.val.y.iter().filter(|&&y| y == 1).count(), 10, "stratified hold-out");
        // The window of the .npz equals the window of the .npy files.
        let from_npy = load_dataset(&DatasetConfig {
            data_dir: Some(dir.path().to_path_buf()),
            train_file: None,
            start_location: Some(2),
            window_size: Some(5),
            ..config(DatasetName::Qubit)
        })
        .unwrap();
        let mut npz_rows: Vec<&[f32]> = data.train.x.chunks_exact(10).chain(data.val.x.chunks_exact(10)).collect();
        let mut npy_rows: Vec<&[f32]> = from_npy.train.x.chunks_exact(10).collect();
        npz_rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
        npy_rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(npz_rows, npy_rows);
    }

    #[test]
    fn qubit_loader_reads_real_board_traces() {
        let Some(shared) = crate::data::shared_data_dir() else {
            eprintln!("skipped: ../shared/data (or $SNAC_SHARED_DIR) is absent, so no real qubit traces");
            return;
        };
        let dir = shared.join("qubit_readout");
        let (x, y) = (dir.join("malab_mock_w100_s285_X.npy"), dir.join("malab_mock_w100_s285_y.npy"));
        if !x.is_file() || !y.is_file() {
            eprintln!("skipped: {} is absent", x.display());
            return;
        }
        let config = DatasetConfig {
            train_file: Some(x),
            train_labels: Some(y),
            start_location: Some(10),
            window_size: Some(80),
            normalize: true,
            subset_size: Some(2000),
            ..config(DatasetName::Qubit)
        };
        let data = load_dataset(&config).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(160));
        assert_eq!(data.num_classes, 2);
        // 6200 traces (3100 per state), 20 % held out per state, then 2000 drawn at random.
        assert_eq!((data.train.len(), data.val.len()), (2000, 1240));
        assert_eq!(data.val.y.iter().filter(|&&y| y == 1).count(), 620);
        let excited = data.train.y.iter().filter(|&&y| y == 1).count();
        assert!((850..1150).contains(&excited), "a random subset mixes both states: {excited} excited of 2000");
        // Both states' mean traces differ clearly after normalization: a
        // nearest-mean classifier on the validation split is near perfect (the
        // board's NN classified these mock traces 100 % correctly).
        let mean_of = |class: u32| {
            let mut mean = vec![0f64; 160];
            let rows: Vec<&[f32]> = data
                .train
                .x
                .chunks_exact(160)
                .zip(&data.train.y)
                .filter(|(_, y)| **y == class)
                .map(|(r, _)| r)
                .collect();
            for row in &rows {
                for (m, &v) in mean.iter_mut().zip(row.iter()) {
                    *m += v as f64 / rows.len() as f64;
                }
            }
            mean
        };
        let (g, e) = (mean_of(0), mean_of(1));
        let distance = |row: &[f32], m: &[f64]| row.iter().zip(m).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>();
        let correct = data
            .val
            .x
            .chunks_exact(160)
            .zip(&data.val.y)
            .filter(|(row, y)| (distance(row, &e) < distance(row, &g)) == (**y == 1))
            .count();
        assert!(correct as f64 / data.val.len() as f64 > 0.97, "{correct} of {}", data.val.len());
    }
}
