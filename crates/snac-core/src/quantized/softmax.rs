//! The attention softmax in fixed point, shared by the trainer's quantized
//! forward pass and the integer model so that both compute the same codes.
//!
//! It is hls4ml's `softmax_stable` (`nnet_utils/nnet_activation.h`) with
//! the types [`SoftmaxTypes`] chooses, so that the export hands hls4ml the
//! same arithmetic. For one row of `n` attention scores `s` (integer codes
//! with `frac` fractional bits):
//! 1. `d_j = max_i s_i − s_j ≥ 0` cast to `inp_norm_t =
//!    ap_ufixed<4 + f, 4, AP_TRN, AP_SAT>` (`f = max(frac, 6)`), and the table
//!    index is its top 10 bits: `min(⌊d_j · 64⌋, 1023)`;
//! 2. `e_j = EXP[index]`, a 1024-entry table of `exp(−(i/64)·c)` (`c` the
//!    optional `1/√d` constant, hls4ml's `exp_scale`), computed in `f32` as
//!    hls4ml's C++ does and rounded (half up) to [`EXP_FRAC`] fractional bits
//!    (`exp_table_t = ap_ufixed<17, 1, AP_RND, AP_SAT>`);
//! 3. `S = Σ e_j`, exact (`accum_t = inv_inp_t = ap_ufixed<17 + b, 1 + b>`,
//!    `b = ⌈log2 n⌉`);
//! 4. `inv = INV[⌊S · 64⌋]`, a `2^(7+b)`-entry table of `1/(i/64)` in `f32`,
//!    rounded (half up) to [`INV_FRAC`] fractional bits (`inv_table_t =
//!    ap_ufixed<17, 1, AP_RND, AP_SAT>`; `S ≥ 1` always, as the maximum's
//!    entry is `exp(0) = 1`);
//! 5. `p_j = e_j · inv`, exact, then rounded half to even onto the output
//!    type and saturated (the `Quant` after hls4ml's softmax).
//!
//! Only integer arithmetic once the tables are built (from `f32` `exp` and
//! division, as hls4ml's C simulation builds them).

use crate::fixed::{FixedPoint, Overflow, Rounding};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Entries of the exponential table (hls4ml's `exp_table_size`).
pub const EXP_TABLE_SIZE: usize = 1024;
/// Table entries per unit of `d`.
pub const EXP_STEPS_LOG2: i32 = 6;
/// Integer bits of `inp_norm_t` (`d` saturates at 16).
pub const NORM_INTEGER: i32 = 4;
/// Fractional bits of the exponential table entries (`exp(0)` = 2^16).
pub const EXP_FRAC: i32 = 16;
/// Fractional bits of the inverse table entries.
pub const INV_FRAC: i32 = 16;
/// Inverse-table entries per unit of the sum.
pub const INV_STEPS_LOG2: i32 = 6;
/// Fractional bits of the `1/√d` constant.
pub const SCALE_FRAC: i32 = 12;

/// The hls4ml types of the softmax over rows of `positions` scores with
/// `frac` fractional bits (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxTypes {
    /// `inp_norm_t`.
    pub norm: FixedPoint,
    /// `exp_table_t` and `inv_table_t`.
    pub exp_table: FixedPoint,
    pub inv_table: FixedPoint,
    /// `accum_t` and `inv_inp_t`: the exact sum of a row's entries.
    pub accum: FixedPoint,
    /// `exp_table_size` and `inv_table_size`.
    pub exp_table_size: usize,
    pub inv_table_size: usize,
    /// The exact product `e_j · inv`: the softmax's own result type.
    pub product: FixedPoint,
}

impl SoftmaxTypes {
    pub fn new(positions: usize, frac: i32) -> SoftmaxTypes {
        let unsigned = |width: i32, integer: i32, rounding, overflow| {
            FixedPoint::new(width as u32, integer as u32, false, rounding, overflow)
                .expect("softmax types are valid fixed-point types")
        };
        let norm_frac = frac.max(EXP_STEPS_LOG2);
        let sum_bits = 1 + positions.max(1).next_power_of_two().trailing_zeros() as i32;
        let table = unsigned(1 + EXP_FRAC, 1, Rounding::HalfUp, Overflow::Saturate);
        SoftmaxTypes {
            norm: unsigned(NORM_INTEGER + norm_frac, NORM_INTEGER, Rounding::Truncate, Overflow::Saturate),
            exp_table: table,
            inv_table: unsigned(1 + INV_FRAC, 1, Rounding::HalfUp, Overflow::Saturate),
            accum: unsigned(sum_bits + EXP_FRAC, sum_bits, Rounding::Truncate, Overflow::Wrap),
            exp_table_size: EXP_TABLE_SIZE,
            inv_table_size: 1 << (sum_bits + INV_STEPS_LOG2),
            product: unsigned(1 + EXP_FRAC + INV_FRAC, 1, Rounding::Truncate, Overflow::Wrap),
        }
    }
}

/// `f32` to a code with `frac` fractional bits, rounded half up (AP_RND),
/// saturated to `max_code` (AP_SAT).
fn round_half_up(value: f32, frac: i32, max_code: i64) -> i64 {
    let scaled = value as f64 * 2f64.powi(frac);
    if scaled.is_nan() { max_code } else { ((scaled + 0.5).floor().min(max_code as f64)) as i64 }
}

/// hls4ml's `exp_scale`: the scale constant as an `f32` (exact: 12 bits).
fn exp_scale(scale: Option<i64>) -> f32 {
    scale.map_or(1.0, |c| c as f32 / (1u32 << SCALE_FRAC) as f32)
}

/// The exponential table for a scale code (`init_exp_table` with
/// `negative = true`): entry `i` is `exp(−(i/64)·exp_scale)`. Built once per
/// scale; each thread remembers the last one it used, so the trainer's many
/// rows take no lock.
fn exp_table(scale: Option<i64>) -> &'static [i64] {
    thread_local! {
        static LAST: Cell<Option<(Option<i64>, &'static [i64])>> = const { Cell::new(None) };
    }
    if let Some((last, table)) = LAST.get()
        && last == scale
    {
        return table;
    }
    static TABLES: OnceLock<Mutex<HashMap<Option<i64>, &'static [i64]>>> = OnceLock::new();
    let mut tables = TABLES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let table = *tables.entry(scale).or_insert_with(|| {
        let factor = exp_scale(scale);
        let max = (1i64 << (1 + EXP_FRAC)) - 1;
        let table: Vec<i64> = (0..EXP_TABLE_SIZE)
            .map(|i| {
                let x = (i as f32 / (1u32 << EXP_STEPS_LOG2) as f32) * factor;
                round_half_up((-x).exp(), EXP_FRAC, max)
            })
            .collect();
        Box::leak(table.into_boxed_slice())
    });
    LAST.set(Some((scale, table)));
    table
}

/// The inverse table of `size` entries, a power of two
/// (`init_invert_table`): entry `i` is `1/(i/64)` (saturated; entry 0 is
/// never read).
fn inv_table(size: usize) -> &'static [i64] {
    static TABLES: [OnceLock<Box<[i64]>>; 64] = [const { OnceLock::new() }; 64];
    TABLES[size.trailing_zeros() as usize].get_or_init(|| {
        let max = (1i64 << (1 + INV_FRAC)) - 1;
        (0..size)
            .map(|i| {
                let x = i as f32 / (1u32 << INV_STEPS_LOG2) as f32;
                if i == 0 { max } else { round_half_up(1.0 / x, INV_FRAC, max) }
            })
            .collect()
    })
}

/// The `1/√hidden` constant as a code with [`SCALE_FRAC`] fractional bits.
pub fn attention_scale(hidden: usize) -> i64 {
    ((1u64 << SCALE_FRAC) as f64 / (hidden.max(1) as f64).sqrt()).round() as i64
}

/// The scale as hls4ml's `exp_scale`, for the export.
pub fn hls4ml_exp_scale(scale: Option<i64>) -> f32 {
    exp_scale(scale)
}

/// Integer division `num / den` (den > 0) rounded half to even.
pub fn divide_half_even(num: i128, den: i128) -> i128 {
    let floor = num.div_euclid(den);
    let twice_remainder = 2 * num.rem_euclid(den);
    if twice_remainder > den || (twice_remainder == den && floor & 1 == 1) { floor + 1 } else { floor }
}

/// `code` (with `from` fractional bits) rounded half to even onto `out`, saturated.
fn onto(code: i128, from: i32, out: &FixedPoint) -> i64 {
    let shift = from - out.fractional_bits();
    let rounded = if shift > 0 { divide_half_even(code, 1i128 << shift.min(126)) } else { code << (-shift).min(64) };
    rounded.clamp(out.min_code() as i128, out.max_code() as i128) as i64
}

/// Softmax of one row of score codes (`frac` fractional bits), with the
/// scale code `scale` (fractional bits [`SCALE_FRAC`]) when given; returns
/// codes of `out`.
pub fn softmax_codes(scores: &[i64], frac: i32, scale: Option<i64>, out: &FixedPoint) -> Vec<i64> {
    let Some(&max) = scores.iter().max() else { return Vec::new() };
    let types = SoftmaxTypes::new(scores.len(), frac);
    let table = exp_table(scale);
    // d on the grid of inp_norm_t (exact, as norm_frac ≥ frac), saturated;
    // its top 10 bits index the table.
    let norm_frac = types.norm.fractional_bits();
    let norm_max = types.norm.max_code() as i128;
    let entries: Vec<i64> = scores
        .iter()
        .map(|&s| {
            let d = ((max as i128 - s as i128) << (norm_frac - frac)).min(norm_max);
            table[(d >> (norm_frac - EXP_STEPS_LOG2)) as usize]
        })
        .collect();
    let sum: i64 = entries.iter().sum();
    let inverse = inv_table(types.inv_table_size)[(sum >> (EXP_FRAC - INV_STEPS_LOG2)) as usize];
    entries.iter().map(|&e| onto(e as i128 * inverse as i128, EXP_FRAC + INV_FRAC, out)).collect()
}

/// [`softmax_codes`] on real values that lie on the grid of `frac`
/// fractional bits (converted exactly); returns real values.
pub fn softmax_values(scores: &[f64], frac: i32, scale: Option<i64>, out: &FixedPoint) -> Vec<f64> {
    let unit = 2f64.powi(frac);
    let codes: Vec<i64> = scores.iter().map(|&s| (s * unit).round() as i64).collect();
    softmax_codes(&codes, frac, scale, out).into_iter().map(|c| out.from_code(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_the_real_softmax_and_sums_to_about_one() {
        let out = FixedPoint::from_qkeras(16, 1).unwrap();
        let scores = [0.5, -1.25, 2.0, 0.0, 3.5];
        let p = softmax_values(&scores, 4, None, &out);
        let max = 3.5f64;
        let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
        for (pi, s) in p.iter().zip(scores) {
            let exact = (s - max).exp() / z;
            // The inverse table's step (1/64 of the sum) dominates.
            assert!((pi - exact).abs() < 0.02 * exact.max(0.05), "{pi} vs {exact}");
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 0.03);
    }

    #[test]
    fn scale_is_hls4ml_exp_scale() {
        let out = FixedPoint::from_qkeras(16, 1).unwrap();
        // 1/sqrt(4) = 0.5 exactly: exp(-(i/64)/2) is exp(-(i/128)), so d = 4
        // scaled reads the same value as d = 2 unscaled.
        let scaled = softmax_values(&[4.0, 0.0], 0, Some(attention_scale(4)), &out);
        let halved = softmax_values(&[2.0, 0.0], 0, None, &out);
        assert_eq!(scaled, halved);
        assert_eq!(hls4ml_exp_scale(Some(attention_scale(4))), 0.5);
    }

    #[test]
    fn tables_and_types() {
        let table = exp_table(None);
        assert_eq!(table[0], 1 << EXP_FRAC);
        assert_eq!(table[64], (std::f64::consts::E.recip() * 65536.0).round() as i64);
        let inv = inv_table(2048);
        assert_eq!((inv[64], inv[128], inv[192]), (1 << 16, 1 << 15, 21845));
        let types = SoftmaxTypes::new(16, 8);
        assert_eq!(types.norm.to_string(), "ap_ufixed<12,4,AP_TRN,AP_SAT>");
        assert_eq!(types.accum.to_string(), "ap_ufixed<21,5>");
        assert_eq!((types.exp_table_size, types.inv_table_size), (1024, 2048));
        // Fewer fractional bits than the table steps: d is widened.
        assert_eq!(SoftmaxTypes::new(16, 2).norm.to_string(), "ap_ufixed<10,4,AP_TRN,AP_SAT>");
        assert_eq!(SoftmaxTypes::new(17, 2).inv_table_size, 4096);
    }

    #[test]
    fn codes_and_values_agree_and_saturate() {
        // A type whose largest value is below 1: a one-hot row saturates.
        let out = FixedPoint::from_qkeras(4, 0).unwrap();
        let p = softmax_codes(&[1000, 0], 0, None, &out);
        assert_eq!(p, vec![out.max_code(), 0]);
        let out = FixedPoint::from_qkeras(8, 3).unwrap();
        let codes = [37i64, -12, 5, 5];
        let values: Vec<f64> = codes.iter().map(|&c| c as f64 / 8.0).collect();
        let from_codes: Vec<f64> = softmax_codes(&codes, 3, None, &out).iter().map(|&c| out.from_code(c)).collect();
        assert_eq!(softmax_values(&values, 3, None, &out), from_codes);
    }

    #[test]
    fn half_even_division() {
        assert_eq!(divide_half_even(5, 2), 2);
        assert_eq!(divide_half_even(7, 2), 4);
        assert_eq!(divide_half_even(-5, 2), -2);
        assert_eq!(divide_half_even(-7, 2), -4);
        assert_eq!(divide_half_even(10, 3), 3);
        assert_eq!(divide_half_even(-10, 3), -3);
    }
}
