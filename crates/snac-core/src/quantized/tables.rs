//! hls4ml's `tanh` and `sigmoid` lookup tables ([`ActivationTable`]): how
//! they are built, and which entry an input code reads.

use super::{Codes, TABLE_SIZE};
use crate::arch::Activation;
use crate::fixed::FixedPoint;
use serde::{Deserialize, Serialize};

/// A lookup-table activation as hls4ml builds it: `TABLE_SIZE` entries of
/// `table_t = ap_fixed<18,8>` over `[−range, range)`; the input `x` picks
/// entry `trunc(x · TABLE_SIZE / (2·range)) + TABLE_SIZE/2`, clamped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationTable {
    /// Half the input range: 4 for tanh, 8 for sigmoid.
    pub range: u32,
    pub table: Codes,
}

/// Whether hls4ml builds `function` as a lookup table (tanh, sigmoid).
pub(super) fn has_table(function: Activation) -> bool {
    match function {
        Activation::Tanh | Activation::Sigmoid => true,
        Activation::Relu | Activation::LeakyRelu | Activation::Gelu | Activation::Identity | Activation::Softmax => {
            false
        }
    }
}

impl ActivationTable {
    /// hls4ml's table for `tanh` or `sigmoid` (None for other functions).
    /// Entry `i` is `f(in_val)` at `in_val = 2·range·(i − N/2)/N` computed in
    /// `float`, converted to `ap_fixed<18,8>` by truncation.
    pub fn hls4ml(function: Activation) -> Option<ActivationTable> {
        let table_type = FixedPoint::ap_fixed(18, 8).expect("valid type");
        let n = TABLE_SIZE as f32;
        let (range, f): (u32, fn(f32) -> f64) = match function {
            // hls4ml: `tanh(in_val)` on a float, which resolves to C's
            // double `tanh`.
            Activation::Tanh => (4, |x| (x as f64).tanh()),
            // hls4ml: `1.0 / (1 + std::exp(-input))` with a float input:
            // `expf`, then a double division.
            Activation::Sigmoid => (8, |x| 1.0 / (1.0f32 + (-x).exp()) as f64),
            Activation::Relu
            | Activation::LeakyRelu
            | Activation::Gelu
            | Activation::Identity
            | Activation::Softmax => return None,
        };
        let values = (0..TABLE_SIZE).map(|i| f(2.0 * range as f32 * (i as f32 - n / 2.0) / n)).collect::<Vec<f64>>();
        Some(ActivationTable { range, table: Codes::quantize(table_type, values) })
    }

    /// The table index for input code `code` with `frac` fractional bits:
    /// `trunc(x · N / (2·range)) + N/2`, truncating toward zero as C's
    /// conversion to `int` does, then clamped to the table.
    pub fn index(&self, code: i64, frac: i32) -> usize {
        // N / (2·range) = 2^k.
        let k = (TABLE_SIZE as u32 / (2 * self.range)).trailing_zeros() as i32;
        let shift = frac - k;
        let whole = if shift <= 0 { code << -shift } else { code / (1i64 << shift) };
        (whole + TABLE_SIZE as i64 / 2).clamp(0, TABLE_SIZE as i64 - 1) as usize
    }

    /// The same index from a real value (for the float forward pass). The
    /// scale is a power of two, so `x · scale` is exact, and `as i64`
    /// truncates toward zero (saturating; NaN gives the middle entry).
    #[inline]
    pub fn index_of_value(&self, x: f64) -> usize {
        let scaled = (x * (TABLE_SIZE as f64 / (2.0 * self.range as f64))) as i64;
        scaled.saturating_add(TABLE_SIZE as i64 / 2).clamp(0, TABLE_SIZE as i64 - 1) as usize
    }

    /// hls4ml's table for `tanh` or `sigmoid`, built once, with its entries
    /// as real values.
    pub fn cached(function: Activation) -> Option<&'static (ActivationTable, Vec<f64>)> {
        static TANH: std::sync::OnceLock<(ActivationTable, Vec<f64>)> = std::sync::OnceLock::new();
        static SIGMOID: std::sync::OnceLock<(ActivationTable, Vec<f64>)> = std::sync::OnceLock::new();
        let cell = match function {
            Activation::Tanh => &TANH,
            Activation::Sigmoid => &SIGMOID,
            Activation::Relu
            | Activation::LeakyRelu
            | Activation::Gelu
            | Activation::Identity
            | Activation::Softmax => return None,
        };
        Some(cell.get_or_init(|| {
            let table = ActivationTable::hls4ml(function).expect("tanh and sigmoid have tables");
            let values = table.table.values();
            (table, values)
        }))
    }
}
