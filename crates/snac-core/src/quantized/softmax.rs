//! The attention softmax in fixed point, shared by the trainer's quantized
//! forward pass and the integer model so that both compute the same codes.
//!
//! For one row of attention scores `s` (integer codes with `frac` fractional
//! bits, optionally times the `1/√d` constant of [`attention_scale`]):
//! 1. `d_j = (max_i s_i − s_j)·c ≥ 0`, exact;
//! 2. `e_j = EXP[min(⌊d_j · 64⌋, 1023)]`, a 1024-entry table of `exp(−i/64)`
//!    with [`EXP_FRAC`] fractional bits (it covers `d` in `[0, 16)`; beyond
//!    that `exp` is below the table's last entry);
//! 3. `p_j = e_j / Σ e`, rounded half to even onto the output type and
//!    saturated.
//!
//! Only integer arithmetic; the table is built once from `f64::exp`, as a
//! ROM would be.

use crate::fixed::FixedPoint;
use std::sync::OnceLock;

/// Entries of the exponential table.
pub const EXP_TABLE_SIZE: usize = 1024;
/// Table entries per unit of `d`.
pub const EXP_STEPS_LOG2: i32 = 6;
/// Fractional bits of the table entries (`exp(0)` = 2^16).
pub const EXP_FRAC: i32 = 16;
/// Fractional bits of the `1/√d` constant.
pub const SCALE_FRAC: i32 = 12;

fn exp_table() -> &'static [u64; EXP_TABLE_SIZE] {
    static TABLE: OnceLock<[u64; EXP_TABLE_SIZE]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0u64; EXP_TABLE_SIZE];
        for (i, entry) in table.iter_mut().enumerate() {
            let x = -(i as f64) / (1u64 << EXP_STEPS_LOG2) as f64;
            *entry = (x.exp() * (1u64 << EXP_FRAC) as f64).round() as u64;
        }
        table
    })
}

/// The `1/√hidden` constant as a code with [`SCALE_FRAC`] fractional bits.
pub fn attention_scale(hidden: usize) -> i64 {
    ((1u64 << SCALE_FRAC) as f64 / (hidden.max(1) as f64).sqrt()).round() as i64
}

/// Integer division `num / den` (den > 0) rounded half to even.
pub fn divide_half_even(num: i128, den: i128) -> i128 {
    let floor = num.div_euclid(den);
    let twice_remainder = 2 * num.rem_euclid(den);
    if twice_remainder > den || (twice_remainder == den && floor & 1 == 1) { floor + 1 } else { floor }
}

/// Softmax of one row of score codes (`frac` fractional bits), with the
/// scale code `scale` (fractional bits [`SCALE_FRAC`]) when given; returns
/// codes of `out`.
pub fn softmax_codes(scores: &[i64], frac: i32, scale: Option<i64>, out: &FixedPoint) -> Vec<i64> {
    let table = exp_table();
    let Some(&max) = scores.iter().max() else { return Vec::new() };
    let (factor, shift) = match scale {
        Some(c) => (c as i128, frac + SCALE_FRAC - EXP_STEPS_LOG2),
        None => (1i128, frac - EXP_STEPS_LOG2),
    };
    let entries: Vec<u64> = scores
        .iter()
        .map(|&s| {
            let d = (max as i128 - s as i128) * factor;
            let index = if shift >= 0 { d >> shift.min(126) } else { d << (-shift).min(64) };
            table[index.min(EXP_TABLE_SIZE as i128 - 1) as usize]
        })
        .collect();
    let sum: i128 = entries.iter().map(|&e| e as i128).sum();
    let out_frac = out.fractional_bits();
    entries
        .iter()
        .map(|&e| {
            let (num, den) =
                if out_frac >= 0 { ((e as i128) << out_frac, sum) } else { (e as i128, sum << (-out_frac)) };
            (divide_half_even(num, den) as i64).clamp(out.min_code(), out.max_code())
        })
        .collect()
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
            assert!((pi - exact).abs() < 2e-3, "{pi} vs {exact}");
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 3.0 * out.step());
    }

    #[test]
    fn scale_divides_the_scores() {
        let out = FixedPoint::from_qkeras(16, 1).unwrap();
        let scores = [4.0, 0.0];
        let scaled = softmax_values(&scores, 0, Some(attention_scale(4)), &out);
        let halved = softmax_values(&[2.0, 0.0], 0, None, &out);
        assert_eq!(scaled, halved, "1/sqrt(4) = 0.5 exactly");
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
