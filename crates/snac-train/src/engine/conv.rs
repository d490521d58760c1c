//! Conv2d in the engine (stride 1, channels last): im2col in cache-sized
//! chunks of the batch and gemm, forward and backward.

use super::Backprop;
use super::linalg::{column_sums, matmul, rows_of};
use snac_core::arch::ConvGeometry;

/// Floats of im2col matrix per chunk of a convolution: 256 KiB, a quarter
/// of this class of core's L2, so the matrix, its gradient and the outputs
/// stay in cache between im2col and the products.
pub(super) const CONV_CHUNK_FLOATS: usize = 1 << 16;

/// Output positions per image, patch length, and input length per image.
fn conv_sizes(g: &ConvGeometry) -> (usize, usize, usize) {
    let positions = g.out_height * g.out_width;
    (positions, g.kernel * g.kernel * g.channels, g.height * g.width * g.channels)
}

/// `(first sample, samples)` of each chunk of a batch for a convolution.
fn conv_chunks(g: &ConvGeometry, batch: usize, floats: usize) -> impl Iterator<Item = (usize, usize)> {
    let (positions, k, _) = conv_sizes(g);
    let per_chunk = (floats / (positions * k).max(1)).max(1);
    (0..batch).step_by(per_chunk).map(move |start| (start, per_chunk.min(batch - start)))
}

/// The patches of `batch` images, one row per output position. Inlined
/// into its callers (with [`ConvGeometry::patch_runs`]) as it was when they
/// were one function: out of line, the per-run copies cost about 3 % of a
/// conv net's training step.
#[inline(always)]
fn im2col(x: &[f32], batch: usize, g: &ConvGeometry, col: &mut Vec<f32>) {
    let (positions, k, image_len) = conv_sizes(g);
    let block_len = positions * k;
    col.clear();
    col.resize(batch * block_len, 0.0);
    for (image, block) in x.chunks_exact(image_len).zip(col.chunks_exact_mut(block_len)) {
        g.patch_runs(|to, from, len| block[to..to + len].copy_from_slice(&image[from..from + len]));
    }
}

/// The transpose of [`im2col`]: every patch value added back to its pixel.
fn col2im(col: &[f32], batch: usize, g: &ConvGeometry, dx: &mut [f32]) {
    let (positions, k, image_len) = conv_sizes(g);
    let block_len = positions * k;
    dx.fill(0.0);
    for (image, block) in dx.chunks_exact_mut(image_len).zip(col.chunks_exact(block_len)).take(batch) {
        g.patch_runs(|from, to, len| {
            for (d, s) in image[to..to + len].iter_mut().zip(&block[from..from + len]) {
                *d += s;
            }
        });
    }
}

/// The convolution of `batch` images `x` (replaced by the output), in
/// chunks of about `chunk_floats` im2col values; returns the input, which
/// the backward pass needs.
pub(super) fn forward(
    x: &mut Vec<f32>,
    kernel: &[f32],
    bias: &[f32],
    g: &ConvGeometry,
    batch: usize,
    chunk_floats: usize,
) -> Vec<f32> {
    let (positions, k, image_len) = conv_sizes(g);
    let mut y = rows_of(bias, batch * positions);
    let mut col = Vec::new();
    for (start, n) in conv_chunks(g, batch, chunk_floats) {
        im2col(&x[start * image_len..(start + n) * image_len], n, g, &mut col);
        let out = &mut y[start * positions * g.filters..];
        matmul(n * positions, g.filters, k, &col, false, kernel, false, out, true);
    }
    std::mem::replace(x, y)
}

/// Gradients of the parameters at `kernel` and `bias` into `pass`; returns
/// the input gradient (empty for the first layer, whose is never used).
pub(super) fn backward(
    grad: Vec<f32>,
    input: &[f32],
    kernel: usize,
    bias: usize,
    g: &ConvGeometry,
    first: bool,
    pass: &mut Backprop,
) -> Vec<f32> {
    let batch = pass.batch;
    // The im2col matrix is rebuilt chunk by chunk, in cache,
    // rather than kept from the forward pass.
    let (positions, k, image_len) = conv_sizes(g);
    let out_len = positions * g.filters;
    let mut dw = vec![0.0f32; k * g.filters];
    let mut dx = if first { Vec::new() } else { vec![0.0f32; batch * image_len] };
    let (mut col, mut dcol) = (Vec::new(), Vec::new());
    for (start, n) in conv_chunks(g, batch, pass.conv_chunk_floats) {
        let rows = n * positions;
        let grad = &grad[start * out_len..(start + n) * out_len];
        im2col(&input[start * image_len..(start + n) * image_len], n, g, &mut col);
        matmul(k, g.filters, rows, &col, true, grad, false, &mut dw, start > 0);
        if !first {
            dcol.resize(rows * k, 0.0);
            matmul(rows, k, g.filters, grad, false, &pass.params[kernel], true, &mut dcol, false);
            col2im(&dcol, n, g, &mut dx[start * image_len..(start + n) * image_len]);
        }
    }
    pass.gradients[kernel] = Some(dw);
    pass.gradients[bias] = Some(column_sums(&grad, g.filters));
    dx
}
