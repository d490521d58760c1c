//! The UCI 8×8 handwritten digits (1797 samples, pixels 0..16), embedded in
//! the binary so that a first run needs no download (licence:
//! `crates/snac-core/data/DIGITS-LICENSE.md`).
//!
//! There is no test split: [`super::prepare`] holds out `validation_split`
//! of each class after a shuffle with seed 42.

use super::{Raw, Split, check_labels};
use crate::arch::Shape;
use anyhow::{Context, Result, ensure};
use flate2::read::GzDecoder;
use std::io::Read;

/// The scikit-learn copy of the UCI test set: 64 pixels then the label per row.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

const SIDE: usize = 8;
const CLASSES: usize = 10;

pub(crate) fn load() -> Result<Raw> {
    let mut text = String::new();
    GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut text).context("embedded digits.csv.gz is corrupt")?;
    let train = parse(&text)?;
    Ok(Raw {
        shape: Shape::Image { height: SIDE, width: SIDE, channels: 1 },
        train,
        val: None,
        scale: 16.0,
        num_classes: CLASSES,
    })
}

fn parse(text: &str) -> Result<Split> {
    let mut split = Split::default();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("embedded digits.csv line {}: not a number", line_no + 1))?;
        ensure!(values.len() == SIDE * SIDE + 1, "embedded digits.csv line {}: {} columns", line_no + 1, values.len());
        split.x.extend_from_slice(&values[..SIDE * SIDE]);
        split.y.push(values[SIDE * SIDE] as u32);
    }
    check_labels(&split.y, CLASSES, "embedded digits.csv")?;
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetName;
    use crate::data::load as load_dataset;
    use crate::data::tests::{config, shared_or_skip};
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_copy_is_the_documented_file() {
        let digest = format!("{:x}", Sha256::digest(DIGITS_CSV_GZ));
        assert_eq!(digest, "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22");
        if let Some(shared) = shared_or_skip("embedded_copy_is_the_documented_file (shared part)") {
            let on_disk = std::fs::read(shared.join("uci_digits_8x8/digits.csv.gz")).unwrap();
            assert_eq!(on_disk, DIGITS_CSV_GZ);
        }
    }

    #[test]
    fn raw_digits() {
        let raw = load().unwrap();
        assert_eq!(raw.train.len(), 1797);
        assert_eq!(raw.train.x.len(), 1797 * 64);
        // First row of digits.csv: a zero, "0,0,5,13,9,1,0,0,...".
        assert_eq!(&raw.train.x[..8], &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]);
        assert_eq!(&raw.train.y[..4], &[0, 1, 2, 3]);
        let mut counts = [0usize; 10];
        raw.train.y.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(raw.train.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
    }

    #[test]
    fn digits_dataset_is_scaled_and_stratified() {
        let data = load_dataset(&config(DatasetName::Digits)).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 8, width: 8, channels: 1 });
        assert_eq!(data.num_classes, 10);
        assert_eq!(data.train.len() + data.val.len(), 1797);
        assert_eq!(data.val.len(), 359);
        let mut counts = [0usize; 10];
        data.val.y.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| (34..=37).contains(&c)), "{counts:?}");
        let max = data.train.x.iter().cloned().fold(0.0f32, f32::max);
        assert_eq!(max, 1.0);
        assert!(data.train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Deterministic.
        let again = load_dataset(&config(DatasetName::Digits)).unwrap();
        assert_eq!(again.val, data.val);
    }

    #[test]
    fn digits_resize_subset_flatten() {
        let mut c = config(DatasetName::Digits);
        c.resize_val = Some(4);
        c.subset_size = Some(100);
        c.flatten = true;
        c.validation_split = 0.5;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(16));
        assert_eq!((data.train.len(), data.val.len()), (100, 100));
        assert_eq!(data.train.x.len(), 1600);
        c.resize_val = Some(8);
        assert_eq!(load_dataset(&c).unwrap().sample_shape, Shape::Flat(64));
    }
}
