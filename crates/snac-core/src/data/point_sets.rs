//! Images as point sets, the test bed of DeepSets search: each grayscale
//! image becomes its `P` brightest pixels as `(x, y, intensity)` points, the
//! way a jet becomes its particles.
//!
//! Points are ordered by brightness (brightest first; equal intensities in
//! row-major pixel order), `x = column / (width − 1)` and `y = row /
//! (height − 1)` lie in `[0, 1]` (row 0 at the top), and the intensity is
//! the pixel value as given. Only pixels brighter than 0 become points; a set
//! with fewer is padded with `(0, 0, 0)` rows, which no real point can equal
//! (its intensity would be above 0).
//!
//! ```
//! use snac_core::data::image_to_points;
//! // A 2×3 image with two lit pixels.
//! let image = [0.0, 0.5, 0.0,
//!              0.0, 0.0, 1.0];
//! let points = image_to_points(&image, 2, 3, 3);
//! assert_eq!(points, [1.0, 1.0, 1.0, // (x, y, intensity) of the brightest
//!                     0.5, 0.0, 0.5,
//!                     0.0, 0.0, 0.0]); // padding
//! ```

use super::Split;
use crate::arch::Shape;
use anyhow::{Result, bail, ensure};

/// Values per point: x, y, intensity.
pub const POINT_FEATURES: usize = 3;

/// The `points` brightest pixels of one `height`×`width` grayscale image
/// (row-major) as `points` rows of `(x, y, intensity)`, zero-padded.
pub fn image_to_points(pixels: &[f32], height: usize, width: usize, points: usize) -> Vec<f32> {
    assert_eq!(pixels.len(), height * width, "image_to_points: {height}×{width} image needs {} pixels", height * width);
    let mut lit: Vec<usize> = (0..pixels.len()).filter(|&i| pixels[i] > 0.0).collect();
    // Brightest first; ties keep row-major order (the sort is stable).
    lit.sort_by(|&a, &b| pixels[b].total_cmp(&pixels[a]));
    let scale = |index: usize, size: usize| if size > 1 { index as f32 / (size - 1) as f32 } else { 0.0 };
    let mut out = vec![0.0; points * POINT_FEATURES];
    for (row, &i) in out.chunks_exact_mut(POINT_FEATURES).zip(&lit) {
        row.copy_from_slice(&[scale(i % width, width), scale(i / width, height), pixels[i]]);
    }
    out
}

/// Turns every image of a split into a point set; returns the new sample shape.
pub(crate) fn split_to_points(split: &mut Split, shape: Shape, points: usize, dataset: &str) -> Result<Shape> {
    let Shape::Image { height, width, channels } = shape else {
        bail!(
            "dataset.points: {points} turns images into point sets, but {dataset} samples are {shape}, not images; \
             remove points, or give the data as (N, H, W) images"
        )
    };
    ensure!(
        channels == 1,
        "dataset.points: {points} needs grayscale images, but {dataset} images have {channels} channels"
    );
    ensure!(points > 0, "dataset.points: 0 leaves empty sets; use at least 1");
    let pixels = height * width;
    let mut x = Vec::with_capacity(split.len() * points * POINT_FEATURES);
    for image in split.x.chunks_exact(pixels) {
        x.extend(image_to_points(image, height, width, points));
    }
    split.x = x;
    Ok(Shape::Set { elements: points, features: POINT_FEATURES })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DatasetConfig, DatasetName};
    use crate::data::load;
    use crate::data::tests::shared_or_skip;

    #[test]
    fn brightest_first_ties_by_position_and_padding() {
        // 3×3: two pixels of 0.8 (positions 5 and 1), one of 1.0, negatives ignored.
        let image = [0.0, 0.8, 0.0, -1.0, 0.0, 0.8, 1.0, 0.0, 0.2];
        let points = image_to_points(&image, 3, 3, 5);
        #[rustfmt::skip]
        let expected = [
            0.0, 1.0, 1.0, // pixel 6: column 0, row 2
            0.5, 0.0, 0.8, // pixel 1 before pixel 5 (same intensity)
            1.0, 0.5, 0.8,
            1.0, 1.0, 0.2,
            0.0, 0.0, 0.0, // padding
        ];
        assert_eq!(points, expected);
        // Fewer points than lit pixels: the brightest ones.
        assert_eq!(image_to_points(&image, 3, 3, 2), expected[..6]);
        // A blank image is all padding; a one-pixel-wide image has x = 0.
        assert_eq!(image_to_points(&[0.0; 4], 2, 2, 2), [0.0; 6]);
        assert_eq!(image_to_points(&[0.0, 3.0], 2, 1, 1), [0.0, 1.0, 3.0]);
    }

    #[test]
    fn coordinates_lie_in_the_unit_square() {
        let image: Vec<f32> = (0..28 * 28).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
        let points = image_to_points(&image, 28, 28, 100);
        for point in points.chunks_exact(3) {
            assert!((0.0..=1.0).contains(&point[0]) && (0.0..=1.0).contains(&point[1]), "{point:?}");
        }
        let brightest: Vec<f32> = points.chunks_exact(3).map(|p| p[2]).collect();
        assert!(brightest.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(brightest[0], 254.0 / 255.0);
    }

    fn points_config(name: DatasetName, points: usize) -> DatasetConfig {
        DatasetConfig { points: Some(points), sets: true, flatten: false, ..DatasetConfig::new(name) }
    }

    #[test]
    fn digits_as_point_sets() {
        let data = load(&points_config(DatasetName::Digits, 16)).unwrap();
        assert_eq!(data.name, "digits_points");
        assert_eq!(data.sample_shape, Shape::Set { elements: 16, features: 3 });
        assert_eq!(data.train.x.len(), data.train.len() * 48);
        assert_eq!(data.train.len() + data.val.len(), 1797);
        // Intensities are scaled to (0, 1] and sorted; padding only at the end.
        for set in data.train.x.chunks_exact(48) {
            let intensity: Vec<f32> = set.chunks_exact(3).map(|p| p[2]).collect();
            assert!(intensity.windows(2).all(|w| w[0] >= w[1]), "{intensity:?}");
            assert!(intensity.iter().all(|&v| (0.0..=1.0).contains(&v)));
            assert!(intensity[0] > 0.0);
            assert!(set.iter().all(|v| (0.0..=1.0).contains(v)));
            // x and y are multiples of 1/7 on the 8×8 grid.
            for point in set.chunks_exact(3) {
                assert!(point[..2].iter().all(|c| ((c * 7.0).round() - c * 7.0).abs() < 1e-5), "{point:?}");
            }
        }
        // With as many points as pixels, the lit points are the lit pixels.
        let images = load(&DatasetConfig { flatten: false, ..DatasetConfig::new(DatasetName::Digits) }).unwrap();
        let all = load(&points_config(DatasetName::Digits, 64)).unwrap();
        for (image, set) in images.train.x.chunks_exact(64).zip(all.train.x.chunks_exact(192)) {
            let lit = image.iter().filter(|&&v| v > 0.0).count();
            assert_eq!(set.chunks_exact(3).filter(|p| p[2] > 0.0).count(), lit);
            assert!(set[lit * 3..].iter().all(|&v| v == 0.0));
        }
        // Same samples, same order as the image dataset (the holdout runs first).
        assert_eq!(images.train.y, data.train.y);
        let first = &images.train.x[..64];
        assert_eq!(data.train.x[..48], image_to_points(first, 8, 8, 16)[..]);
    }

    #[test]
    fn written_point_sets_load_back_as_sets() {
        let data = load(&DatasetConfig { subset_size: Some(50), ..points_config(DatasetName::Digits, 12) }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let paths = data.write_npy(dir.path()).unwrap();
        let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, crate::data::NPY_SPLIT_FILES);
        let (dims, _) = crate::data::read_npy_f32(&paths[0]).unwrap();
        assert_eq!(dims, [50, 12, 3]);
        let config = DatasetConfig {
            train_file: Some(paths[0].clone()),
            train_labels: Some(paths[1].clone()),
            val_file: Some(paths[2].clone()),
            val_labels: Some(paths[3].clone()),
            num_classes: Some(10),
            sets: true,
            flatten: false,
            ..DatasetConfig::new(DatasetName::File)
        };
        let back = load(&config).unwrap();
        assert_eq!(back.sample_shape, data.sample_shape);
        assert_eq!((back.train, back.val), (data.train, data.val));
    }

    #[test]
    fn flattened_points_for_an_mlp_and_errors() {
        let config = DatasetConfig { points: Some(8), ..DatasetConfig::new(DatasetName::Digits) };
        let data = load(&config).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(24));
        let mut split = Split { x: vec![0.0; 6], y: vec![0, 1] };
        let err = split_to_points(&mut split, Shape::Flat(3), 4, "qubit").unwrap_err().to_string();
        assert!(err.contains("dataset.points: 4") && err.contains("qubit samples are (3), not images"), "{err}");
        let rgb = Shape::Image { height: 1, width: 1, channels: 3 };
        let err = split_to_points(&mut split, rgb, 4, "file").unwrap_err().to_string();
        assert!(err.contains("grayscale") && err.contains("3 channels"), "{err}");
    }

    #[test]
    fn real_mnist_as_point_sets() {
        let Some(shared) = shared_or_skip("real_mnist_as_point_sets") else { return };
        let config = DatasetConfig {
            data_dir: Some(shared.join("mnist")),
            subset_size: Some(500),
            ..points_config(DatasetName::Mnist, 32)
        };
        let data = load(&config).unwrap();
        assert_eq!(data.sample_shape, Shape::Set { elements: 32, features: 3 });
        assert_eq!((data.train.len(), data.val.len()), (500, 500));
        assert_eq!(&data.train.y[..3], &[5, 0, 4]);
        // MNIST digits have well over 32 inked pixels: no padding, and the
        // brightest pixel is nearly always saturated (255 / 255).
        assert!(data.train.x.chunks_exact(3).all(|p| p[2] > 0.0));
        let saturated = data.train.x.chunks_exact(96).filter(|set| set[2] == 1.0).count();
        assert!(saturated > 450, "{saturated} of 500");
        // The points of a digit sit in the middle of the 28×28 frame.
        let (mut x, mut y) = (0.0, 0.0);
        for point in data.train.x.chunks_exact(3) {
            x += point[0];
            y += point[1];
        }
        let n = (data.train.len() * 32) as f32;
        assert!((0.35..0.65).contains(&(x / n)) && (0.35..0.65).contains(&(y / n)), "{} {}", x / n, y / n);
    }
}
