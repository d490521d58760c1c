//! Bilinear image resizing that matches TensorFlow's `tf.image.resize`
//! default (bilinear, half-pixel centers, no antialiasing), which SNAC-Pack
//! applies to MNIST before training.
//!
//! TensorFlow's kernel maps output pixel `d` to the source coordinate
//! `s = (d + 0.5) · in/out − 0.5`, takes the neighbours `max(⌊s⌋, 0)` and
//! `min(⌈s⌉, in − 1)` and interpolates with weight `s − ⌊s⌋`, all in `f32`;
//! this module does the same arithmetic in the same order.

/// Source neighbours and weight for one output coordinate.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    lower: usize,
    upper: usize,
    lerp: f32,
}

fn taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|d| {
            let s = (d as f32 + 0.5) * scale - 0.5;
            let floor = s.floor();
            Tap {
                lower: (floor.max(0.0) as usize).min(in_size - 1),
                upper: (s.ceil().max(0.0) as usize).min(in_size - 1),
                lerp: s - floor,
            }
        })
        .collect()
}

/// Resizes `count` images of `height × width × channels` (channels last,
/// row-major) to `out_height × out_width`.
pub fn resize_bilinear(
    images: &[f32],
    count: usize,
    height: usize,
    width: usize,
    channels: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<f32> {
    assert_eq!(images.len(), count * height * width * channels, "resize_bilinear: input length");
    let ys = taps(height, out_height);
    let xs = taps(width, out_width);
    let mut out = Vec::with_capacity(count * out_height * out_width * channels);
    for image in images.chunks_exact(height * width * channels) {
        let at = |y: usize, x: usize, c: usize| image[(y * width + x) * channels + c];
        for ty in &ys {
            for tx in &xs {
                for c in 0..channels {
                    let top_left = at(ty.lower, tx.lower, c);
                    let top_right = at(ty.lower, tx.upper, c);
                    let bottom_left = at(ty.upper, tx.lower, c);
                    let bottom_right = at(ty.upper, tx.upper, c);
                    let top = top_left + (top_right - top_left) * tx.lerp;
                    let bottom = bottom_left + (bottom_right - bottom_left) * tx.lerp;
                    out.push(top + (bottom - top) * ty.lerp);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "index {i}: {x} != {y}\n{a:?}\n{b:?}");
        }
    }

    #[test]
    fn taps_follow_half_pixel_centers() {
        // 4 → 2: s = (d + 0.5)·2 − 0.5 = 0.5, 2.5.
        assert_eq!(taps(4, 2), vec![Tap { lower: 0, upper: 1, lerp: 0.5 }, Tap { lower: 2, upper: 3, lerp: 0.5 }]);
        // 2 → 4: s = (d + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25 (clamped at both edges).
        let t = taps(2, 4);
        assert_eq!((t[0].lower, t[0].upper), (0, 0));
        assert_eq!((t[1].lower, t[1].upper, t[1].lerp), (0, 1, 0.25));
        assert_eq!((t[2].lower, t[2].upper, t[2].lerp), (0, 1, 0.75));
        assert_eq!((t[3].lower, t[3].upper), (1, 1));
    }

    #[test]
    fn upscale_2x2_to_4x4_by_hand() {
        // [[0, 4], [8, 12]]: along x the 4 outputs read 0, 1, 3, 4 (×1 for the
        // top row, 8 + that for the bottom row); along y the same weights.
        let out = resize_bilinear(&[0.0, 4.0, 8.0, 12.0], 1, 2, 2, 1, 4, 4);
        #[rustfmt::skip]
        let expected = [
            0.0, 1.0, 3.0, 4.0,
            2.0, 3.0, 5.0, 6.0,
            6.0, 7.0, 9.0, 10.0,
            8.0, 9.0, 11.0, 12.0,
        ];
        close(&out, &expected);
    }

    #[test]
    fn downscale_4x4_to_2x2_averages_blocks() {
        // Half-pixel centers land exactly between source pixels: each output is
        // the mean of a 2×2 block.
        let image: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = resize_bilinear(&image, 1, 4, 4, 1, 2, 2);
        close(&out, &[2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn downscale_28_to_8_of_a_ramp_and_a_stripe() {
        // Horizontal ramp p(y, x) = 10·x. Scale 3.5: s = 3.5·d + 1.25 (inside the
        // image for every d), so the output is 10·s exactly.
        let ramp: Vec<f32> = (0..28 * 28).map(|i| 10.0 * (i % 28) as f32).collect();
        let out = resize_bilinear(&ramp, 1, 28, 28, 1, 8, 8);
        let row: Vec<f32> = (0..8).map(|d| 10.0 * (3.5 * d as f32 + 1.25)).collect();
        assert_eq!(row[0], 12.5);
        assert_eq!(row[7], 257.5);
        for r in out.chunks(8) {
            close(r, &row);
        }
        // A one-pixel vertical stripe of 255 at column 8: output column d reads
        // source s = 3.5·d + 1.25; d = 2 gives s = 8.25 (lower 8, upper 9,
        // weight 0.25): 255·0.75 = 191.25. Every other column misses it.
        let stripe: Vec<f32> = (0..28 * 28).map(|i| if i % 28 == 8 { 255.0 } else { 0.0 }).collect();
        let out = resize_bilinear(&stripe, 1, 28, 28, 1, 8, 8);
        for r in out.chunks(8) {
            close(r, &[0.0, 0.0, 191.25, 0.0, 0.0, 0.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn constant_images_stay_constant_and_channels_stay_apart() {
        for (h, w, oh, ow) in [(28, 28, 8, 8), (28, 28, 16, 16), (8, 8, 28, 28), (5, 7, 3, 11), (1, 1, 4, 4)] {
            let mut image = Vec::new();
            for _ in 0..h * w {
                image.extend_from_slice(&[3.0, 200.0]);
            }
            let out = resize_bilinear(&image, 1, h, w, 2, oh, ow);
            assert_eq!(out.len(), oh * ow * 2);
            for px in out.chunks(2) {
                assert_eq!(px, [3.0, 200.0], "{h}x{w} -> {oh}x{ow}");
            }
        }
    }

    #[test]
    fn same_size_is_identity_and_batches_are_independent() {
        let images: Vec<f32> = (0..2 * 9).map(|v| (v * v) as f32).collect();
        assert_eq!(resize_bilinear(&images, 2, 3, 3, 1, 3, 3), images);
        let both = resize_bilinear(&images, 2, 3, 3, 1, 2, 5);
        let second = resize_bilinear(&images[9..], 1, 3, 3, 1, 2, 5);
        assert_eq!(&both[10..], &second[..]);
    }
}
