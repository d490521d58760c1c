//! Linear algebra on row-major `f32` buffers, shared by every layer of the
//! engine: gemm products, bias rows, column sums and row scaling.

/// `C (m×n) = A (m×k) · B (k×n)` (or `C +=` when `accumulate`), row-major;
/// `a_t`/`b_t` say that A/B are stored transposed (`k×m`, `n×k`).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "matmul: buffers too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above bound every index the strides reach.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `rows` copies of `row`, one after another.
pub(super) fn rows_of(row: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * row.len());
    for _ in 0..rows {
        out.extend_from_slice(row);
    }
    out
}

/// The sum of each column of `grad` (`columns` wide): a bias gradient.
pub(super) fn column_sums(grad: &[f32], columns: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; columns];
    for row in grad.chunks_exact(columns) {
        for (s, &g) in sums.iter_mut().zip(row) {
            *s += g;
        }
    }
    sums
}

/// Multiplies each `width`-wide row of `x` by its scale.
pub(super) fn scale_rows(x: &mut [f32], width: usize, scales: &[f32]) {
    for (row, &scale) in x.chunks_exact_mut(width).zip(scales) {
        row.iter_mut().for_each(|v| *v *= scale);
    }
}
