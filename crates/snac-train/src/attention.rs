//! Float self-attention for thin heads, one score row at a time, with the
//! softmax recomputed in the backward pass instead of kept.
//!
//! Why: with hidden width h ≤ [`FUSED_MAX_HIDDEN`] the S×S score matrices
//! dominate a T2 attention step (S = 256 positions), and keeping a batch's
//! softmax for the backward pass meant writing and rereading 32 MiB a step
//! (128 samples × 256 KiB), the size of this machine's L3. Here a sample's
//! scores, softmax, weighted sums and all four gradient products are done
//! row by row on data that stays in L1 (the transposed keys and values,
//! h×S each); the forward pass keeps one number per row, the shift that
//! makes `2^(scaled score − shift)` the softmax. This is the recomputation
//! of FlashAttention (Dao et al., 2022), on a CPU and for one sample at a
//! time.
//!
//! Scores are scaled by `factor·log₂e` through the queries, so that the
//! softmax is [`exp2_fast`] of one fused multiply-add chain, and the
//! backward pass applies `factor` once per row of `dq` and per column of
//! `dk`. Values equal [`crate::fastmath::softmax_rows`] followed by the
//! products up to float rounding; `engine::tests::engine_matches_burn`
//! checks them and their gradients against burn's autodiff, and
//! `tests::rows_match_the_definition` against an f64 reference.

use crate::fastmath::{exp2_fast, transpose};

/// Widest head the row-wise kernels cover (they are compiled per width).
pub(crate) const FUSED_MAX_HIDDEN: usize = 4;

/// Eight lanes per step: what AVX2 holds, and what the compiler vectorises.
const LANES: usize = 8;

/// `t (h×s) = mᵀ` for `m (s×h)`, into a buffer reused between samples.
fn transpose_into(m: &[f32], s: usize, h: usize, t: &mut Vec<f32>) {
    t.resize(h * s, 0.0);
    transpose(m, s, h, t);
}

/// Scratch buffers for one sample (h×S each), reused between samples.
#[derive(Default)]
pub(crate) struct Scratch {
    kt: Vec<f32>,
    vt: Vec<f32>,
    dkt: Vec<f32>,
    dvt: Vec<f32>,
}

/// Forward pass of one sample: `q`, `k`, `v` are `s×h`; writes
/// `attended = softmax(q·kᵀ·factor)·v` (`s×h`) and each row's softmax
/// shift into `shifts` (`s` values), for [`backward`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    s: usize,
    h: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    factor: f32,
    attended: &mut [f32],
    shifts: &mut [f32],
    scratch: &mut Scratch,
) {
    assert!(q.len() == s * h && k.len() == s * h && v.len() == s * h && attended.len() == s * h);
    assert!(shifts.len() == s && factor > 0.0);
    transpose_into(k, s, h, &mut scratch.kt);
    transpose_into(v, s, h, &mut scratch.vt);
    let Scratch { kt, vt, .. } = scratch;
    dispatch(h, Pass::Forward { q, kt, vt, factor, attended, shifts });
}

/// Backward pass of one sample, given the forward's inputs, `attended` and
/// `shifts`, and `da`, the gradient of `attended`: writes `dq`, `dk`, `dv`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    s: usize,
    h: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    attended: &[f32],
    shifts: &[f32],
    da: &[f32],
    factor: f32,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    scratch: &mut Scratch,
) {
    for m in [q, k, v, attended, da, &*dq, &*dk, &*dv] {
        assert_eq!(m.len(), s * h);
    }
    assert!(shifts.len() == s && factor > 0.0);
    transpose_into(k, s, h, &mut scratch.kt);
    transpose_into(v, s, h, &mut scratch.vt);
    for t in [&mut scratch.dkt, &mut scratch.dvt] {
        t.clear();
        t.resize(h * s, 0.0);
    }
    let Scratch { kt, vt, dkt, dvt, .. } = scratch;
    dispatch(h, Pass::Backward { q, kt, vt, attended, shifts, da, factor, dq, dkt, dvt });
    // `dk` is summed without `factor`; it is applied here, once a value.
    dkt.iter_mut().for_each(|v| *v *= factor);
    transpose(dkt, h, s, dk);
    transpose(dvt, h, s, dv);
}

/// One pass's arguments (the transposed matrices are `h×s`).
enum Pass<'a> {
    Forward {
        q: &'a [f32],
        kt: &'a [f32],
        vt: &'a [f32],
        factor: f32,
        attended: &'a mut [f32],
        shifts: &'a mut [f32],
    },
    Backward {
        q: &'a [f32],
        kt: &'a [f32],
        vt: &'a [f32],
        attended: &'a [f32],
        shifts: &'a [f32],
        da: &'a [f32],
        factor: f32,
        dq: &'a mut [f32],
        dkt: &'a mut [f32],
        dvt: &'a mut [f32],
    },
}

/// Runs `pass` compiled for width `h` (a constant, so that the h-wide
/// accumulators stay in registers), with AVX2 where the CPU has it.
fn dispatch(h: usize, pass: Pass) {
    #[inline(always)]
    fn run<const H: usize>(pass: Pass) {
        match pass {
            Pass::Forward { q, kt, vt, factor, attended, shifts } => {
                forward_rows::<H>(q, kt, vt, factor, attended, shifts)
            }
            Pass::Backward { q, kt, vt, attended, shifts, da, factor, dq, dkt, dvt } => {
                backward_rows::<H>(q, kt, vt, attended, shifts, da, factor, dq, dkt, dvt)
            }
        }
    }
    #[inline(always)]
    fn by_width(h: usize, pass: Pass) {
        match h {
            1 => run::<1>(pass),
            2 => run::<2>(pass),
            3 => run::<3>(pass),
            4 => run::<4>(pass),
            _ => unreachable!("row-wise attention is compiled for widths 1 to {FUSED_MAX_HIDDEN}, not {h}"),
        }
    }
    const _: () = assert!(FUSED_MAX_HIDDEN == 4, "by_width covers widths 1 to 4");
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn by_width_avx2(h: usize, pass: Pass) {
        by_width(h, pass)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { by_width_avx2(h, pass) };
        return;
    }
    by_width(h, pass)
}

#[inline(always)]
fn head<const H: usize>(m: &[f32], i: usize) -> [f32; H] {
    m[i * H..(i + 1) * H].try_into().expect("rows are H wide")
}

/// The `h×s` matrix `t` as its `H` rows.
#[inline(always)]
fn rows<const H: usize>(t: &[f32], s: usize) -> [&[f32]; H] {
    std::array::from_fn(|d| &t[d * s..(d + 1) * s])
}

/// Columns `j..j+W` of `H` rows.
#[inline(always)]
fn columns<const H: usize, const W: usize, R: AsRef<[f32]>>(rows: &[R; H], j: usize) -> [[f32; W]; H] {
    std::array::from_fn(|d| rows[d].as_ref()[j..j + W].try_into().expect("W columns"))
}

/// `start + Σ_d q_d·k[d][l]` for `W` columns, in fused multiply-adds.
#[inline(always)]
fn scores<const H: usize, const W: usize>(start: f32, q: &[f32; H], k: &[[f32; W]; H]) -> [f32; W] {
    let mut z = [start; W];
    for d in 0..H {
        for l in 0..W {
            z[l] = q[d].mul_add(k[d][l], z[l]);
        }
    }
    z
}

/// The queries of row `i` times `factor·log₂e`: then `2^(q'·k − shift)`
/// is the softmax.
#[inline(always)]
fn scaled_query<const H: usize>(q: &[f32], i: usize, factor: f32) -> [f32; H] {
    let mut scaled = head::<H>(q, i);
    for v in &mut scaled {
        *v *= factor * std::f32::consts::LOG2_E;
    }
    scaled
}

/// Each row's scores are computed twice, for their maximum and then for
/// the exponentials: cheaper than storing them (h multiply-adds a score).
#[inline(always)]
fn forward_rows<const H: usize>(
    q: &[f32],
    kt: &[f32],
    vt: &[f32],
    factor: f32,
    attended: &mut [f32],
    shifts: &mut [f32],
) {
    let s = shifts.len();
    let whole = s - s % LANES;
    let (kt, vt) = (rows::<H>(kt, s), rows::<H>(vt, s));
    for i in 0..s {
        let qi = scaled_query::<H>(q, i, factor);
        let mut maxes = [f32::NEG_INFINITY; LANES];
        for j in (0..whole).step_by(LANES) {
            let z = scores(0.0, &qi, &columns::<H, LANES, _>(&kt, j));
            for l in 0..LANES {
                maxes[l] = if z[l] > maxes[l] { z[l] } else { maxes[l] };
            }
        }
        let mut max = f32::NEG_INFINITY;
        for j in whole..s {
            let [z] = scores(0.0, &qi, &columns::<H, 1, _>(&kt, j));
            max = if z > max { z } else { max };
        }
        for m in maxes {
            max = if m > max { m } else { max };
        }
        // exp, its sum and the unnormalised weighted sums of the values.
        let mut sums = [0.0f32; LANES];
        let mut acc = [[0.0f32; LANES]; H];
        #[inline(always)]
        fn weigh<const H: usize, const W: usize>(
            t: [f32; W],
            v: [[f32; W]; H],
            sums: &mut [f32; LANES],
            acc: &mut [[f32; LANES]; H],
        ) {
            for l in 0..W {
                let e = exp2_fast(t[l]);
                sums[l] += e;
                for d in 0..H {
                    acc[d][l] = e.mul_add(v[d][l], acc[d][l]);
                }
            }
        }
        for j in (0..whole).step_by(LANES) {
            let t = scores(-max, &qi, &columns::<H, LANES, _>(&kt, j));
            weigh::<H, LANES>(t, columns(&vt, j), &mut sums, &mut acc);
        }
        for j in whole..s {
            let t = scores(-max, &qi, &columns::<H, 1, _>(&kt, j));
            weigh::<H, 1>(t, columns(&vt, j), &mut sums, &mut acc);
        }
        let total = sums.iter().sum::<f32>();
        for d in 0..H {
            attended[i * H + d] = acc[d].iter().sum::<f32>() / total;
        }
        shifts[i] = max + total.log2();
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows<const H: usize>(
    q: &[f32],
    kt: &[f32],
    vt: &[f32],
    attended: &[f32],
    shifts: &[f32],
    da: &[f32],
    factor: f32,
    dq: &mut [f32],
    dkt: &mut [f32],
    dvt: &mut [f32],
) {
    let s = shifts.len();
    let (kt, vt) = (rows::<H>(kt, s), rows::<H>(vt, s));
    let mut dkt_rows = dkt.chunks_exact_mut(s);
    let mut dkt: [&mut [f32]; H] = std::array::from_fn(|_| dkt_rows.next().expect("H rows"));
    let mut dvt_rows = dvt.chunks_exact_mut(s);
    let mut dvt: [&mut [f32]; H] = std::array::from_fn(|_| dvt_rows.next().expect("H rows"));
    for i in (0..s).step_by(BACKWARD_ROWS) {
        if i + BACKWARD_ROWS <= s {
            rows_backward::<H, BACKWARD_ROWS>(
                i,
                s,
                (q, da, attended, shifts, factor),
                (&kt, &vt),
                dq,
                &mut dkt,
                &mut dvt,
            );
        } else {
            for i in i..s {
                rows_backward::<H, 1>(i, s, (q, da, attended, shifts, factor), (&kt, &vt), dq, &mut dkt, &mut dvt);
            }
        }
    }
}

/// Score rows the backward pass takes together: each column of keys and
/// values is loaded, and each column of their gradients updated, once for
/// all of them, and their independent `exp`s overlap.
const BACKWARD_ROWS: usize = 2;

/// What one score row's backward pass needs besides the columns.
struct RowInputs<const H: usize> {
    q: [f32; H],
    /// `q` times `factor·log₂e`.
    scaled: [f32; H],
    /// The row's `dA`.
    a: [f32; H],
    shift: f32,
    /// `Σ_j dP_ij·P_ij = dA_i·(P·V)_i`: h products instead of S.
    dot: f32,
}

/// Backward pass of score rows `i..i+R`.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn rows_backward<const H: usize, const R: usize>(
    i: usize,
    s: usize,
    (q, da, attended, shifts, factor): (&[f32], &[f32], &[f32], &[f32], f32),
    (kt, vt): (&[&[f32]; H], &[&[f32]; H]),
    dq: &mut [f32],
    dkt: &mut [&mut [f32]; H],
    dvt: &mut [&mut [f32]; H],
) {
    let whole = s - s % LANES;
    let rows: [RowInputs<H>; R] = std::array::from_fn(|r| {
        let (a, attended) = (head::<H>(da, i + r), head::<H>(attended, i + r));
        let mut dot = 0.0f32;
        for d in 0..H {
            dot += a[d] * attended[d];
        }
        RowInputs { q: head::<H>(q, i + r), scaled: scaled_query::<H>(q, i + r, factor), a, shift: shifts[i + r], dot }
    });
    let mut acc = [[[0.0f32; LANES]; H]; R];
    for j in (0..whole).step_by(LANES) {
        columns_backward::<H, R, LANES>(j, &rows, (kt, vt), &mut acc, dkt, dvt);
    }
    for j in whole..s {
        columns_backward::<H, R, 1>(j, &rows, (kt, vt), &mut acc, dkt, dvt);
    }
    for (r, acc) in acc.iter().enumerate() {
        for d in 0..H {
            dq[(i + r) * H + d] = acc[d].iter().sum::<f32>() * factor;
        }
    }
}

/// Columns `j..j+W` of `R` score rows i: P_ij again, dP_ij = dA_i·v_j,
/// dv_j += P_ij·dA_i, dz_ij = P_ij·(dP_ij − dot_i), dq_i += dz_ij·k_j
/// (into W lanes), dk_j += dz_ij·q_i (both still to be times `factor`).
#[inline(always)]
fn columns_backward<const H: usize, const R: usize, const W: usize>(
    j: usize,
    rows: &[RowInputs<H>; R],
    (kt, vt): (&[&[f32]; H], &[&[f32]; H]),
    acc: &mut [[[f32; LANES]; H]; R],
    dkt: &mut [&mut [f32]; H],
    dvt: &mut [&mut [f32]; H],
) {
    let k = columns::<H, W, _>(kt, j);
    let v = columns::<H, W, _>(vt, j);
    // The stored columns go through arrays: updated in place through
    // `&mut` slices kept in an array, they were not vectorised.
    let mut dk = columns::<H, W, _>(dkt, j);
    let mut dv = columns::<H, W, _>(dvt, j);
    for (row, acc) in rows.iter().zip(acc.iter_mut()) {
        let t = scores(-row.shift, &row.scaled, &k);
        let dp = scores(-row.dot, &row.a, &v);
        let mut p = [0.0f32; W];
        let mut dz = [0.0f32; W];
        for l in 0..W {
            p[l] = exp2_fast(t[l]);
            dz[l] = p[l] * dp[l];
        }
        for d in 0..H {
            for l in 0..W {
                dv[d][l] = row.a[d].mul_add(p[l], dv[d][l]);
                acc[d][l] = dz[l].mul_add(k[d][l], acc[d][l]);
                dk[d][l] = row.q[d].mul_add(dz[l], dk[d][l]);
            }
        }
    }
    for d in 0..H {
        dkt[d][j..j + W].copy_from_slice(&dk[d]);
        dvt[d][j..j + W].copy_from_slice(&dv[d]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 7919) % 101) as f32 / 50.0 - 1.0).collect()
    }

    /// The definition in f64: softmax(q·kᵀ·factor)·v, and the gradients of
    /// `Σ da ⊙ attended`.
    #[allow(clippy::type_complexity)]
    fn reference(
        s: usize,
        h: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        da: &[f32],
        factor: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let at = |m: &[f32], i: usize, d: usize| m[i * h + d] as f64;
        let mut p = vec![0.0f64; s * s];
        for i in 0..s {
            let z: Vec<f64> = (0..s).map(|j| (0..h).map(|d| at(q, i, d) * at(k, j, d)).sum::<f64>() * factor).collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = z.iter().map(|z| (z - max).exp()).sum();
            for j in 0..s {
                p[i * s + j] = (z[j] - max).exp() / total;
            }
        }
        let (mut attended, mut dq, mut dk, mut dv) =
            (vec![0.0; s * h], vec![0.0; s * h], vec![0.0; s * h], vec![0.0; s * h]);
        for i in 0..s {
            let dp: Vec<f64> = (0..s).map(|j| (0..h).map(|d| at(da, i, d) * at(v, j, d)).sum()).collect();
            let dot: f64 = (0..s).map(|j| dp[j] * p[i * s + j]).sum();
            for j in 0..s {
                let pij = p[i * s + j];
                let dz = pij * (dp[j] - dot) * factor;
                for d in 0..h {
                    attended[i * h + d] += pij * at(v, j, d);
                    dv[j * h + d] += pij * at(da, i, d);
                    dq[i * h + d] += dz * at(k, j, d);
                    dk[j * h + d] += dz * at(q, i, d);
                }
            }
        }
        (attended, dq, dk, dv)
    }

    #[test]
    fn rows_match_the_definition() {
        // 13 positions: one run of eight lanes and a tail of five.
        for (s, h, factor) in [(13, 1, 1.0f32), (13, 2, 0.5), (16, 3, 1.0), (13, 4, 0.75), (5, 4, 1.0)] {
            let (q, k, v, da) = (values(s * h, 1), values(s * h, 2), values(s * h, 3), values(s * h, 4));
            let mut scratch = Scratch::default();
            let mut attended = vec![f32::NAN; s * h];
            let mut stats = vec![f32::NAN; s];
            forward(s, h, &q, &k, &v, factor, &mut attended, &mut stats, &mut scratch);
            let (mut dq, mut dk, mut dv) = (vec![f32::NAN; s * h], vec![f32::NAN; s * h], vec![f32::NAN; s * h]);
            backward(s, h, (&q, &k, &v), &attended, &stats, &da, factor, (&mut dq, &mut dk, &mut dv), &mut scratch);
            let expected = reference(s, h, &q, &k, &v, &da, factor as f64);
            for (name, got, want) in [
                ("attended", &attended, &expected.0),
                ("dq", &dq, &expected.1),
                ("dk", &dk, &expected.2),
                ("dv", &dv, &expected.3),
            ] {
                for (g, w) in got.iter().zip(want) {
                    assert!((*g as f64 - w).abs() < 1e-5, "s {s} h {h}: {name} {g} vs {w}");
                }
            }
        }
    }
}
