//! Fixed-point number types as values, with the semantics of Vivado/Vitis
//! HLS `ap_fixed<W, I, Q, O>` (and hls4ml's `FixedPrecisionType`): the grid
//! a quantized network's weights and activations live on, and the rounding
//! and overflow that put a real number onto it.
//!
//! ```
//! use snac_core::fixed::FixedPoint;
//!
//! // QKeras quantized_bits(8, 3): step 1/16, range [−8, 8 − 1/16].
//! let fixed = FixedPoint::from_qkeras(8, 3).unwrap();
//! assert_eq!(fixed.to_string(), "ap_fixed<8,4,AP_RND_CONV,AP_SAT>");
//! assert_eq!(fixed.quantize(1.3), 1.3125);
//! assert_eq!(fixed.quantize(100.0), 7.9375);
//! assert_eq!(fixed.to_code(1.3), 21);
//! assert_eq!("ap_fixed<8,4,AP_RND_CONV,AP_SAT>".parse::<FixedPoint>().unwrap(), fixed);
//! ```

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The widest type supported (accumulators included): codes must fit
/// comfortably in an `i64`.
pub const MAX_WIDTH: u32 = 62;
/// The widest precision pair for training (weights and activations).
pub const MAX_PRECISION_BITS: u32 = 32;
/// The most integer bits supported (the step stays a normal `f64`).
pub const MAX_INTEGER: u32 = 64;

/// How a value between two grid points is rounded (`ap_fixed`'s `Q`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rounding {
    /// `AP_TRN`: towards minus infinity (drop the extra bits), the default.
    Truncate,
    /// `AP_RND_CONV`: to the nearest, ties to the even code (QKeras).
    HalfEven,
    /// `AP_RND`: to the nearest, ties towards plus infinity.
    HalfUp,
}

/// What happens to a value outside the representable range (`ap_fixed`'s `O`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Overflow {
    /// `AP_WRAP`: keep the low `width` bits (two's complement), the default.
    Wrap,
    /// `AP_SAT`: clamp to the range.
    Saturate,
    /// `AP_SAT_SYM`: clamp to a range symmetric about zero; for signed types
    /// the most negative code is never produced.
    SaturateSymmetric,
}

impl Rounding {
    pub const ALL: [Rounding; 3] = [Rounding::Truncate, Rounding::HalfEven, Rounding::HalfUp];

    /// The HLS spelling, such as `AP_RND_CONV`.
    pub fn hls_name(self) -> &'static str {
        match self {
            Rounding::Truncate => "AP_TRN",
            Rounding::HalfEven => "AP_RND_CONV",
            Rounding::HalfUp => "AP_RND",
        }
    }
}

impl Overflow {
    pub const ALL: [Overflow; 3] = [Overflow::Wrap, Overflow::Saturate, Overflow::SaturateSymmetric];

    /// The HLS spelling, such as `AP_SAT`.
    pub fn hls_name(self) -> &'static str {
        match self {
            Overflow::Wrap => "AP_WRAP",
            Overflow::Saturate => "AP_SAT",
            Overflow::SaturateSymmetric => "AP_SAT_SYM",
        }
    }
}

/// A fixed-point type `ap_fixed<width, integer, rounding, overflow>` (or
/// `ap_ufixed` when not `signed`). A value is `code · step` with an integer
/// `code` of `width` bits and `step = 2^(integer − width)`.
///
/// `integer` counts the integer bits *including* the sign bit, as in
/// `ap_fixed<W, I>`; it may exceed `width` (negative fractional bits, a step
/// above 1). The constructors ([`FixedPoint::new`], [`FixedPoint::from_qkeras`],
/// parsing) check `1 ≤ width ≤ 32` and `integer ≤ 64`; the methods assume a
/// type that passed [`FixedPoint::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FixedPoint {
    pub width: u32,
    pub integer: u32,
    pub signed: bool,
    pub rounding: Rounding,
    pub overflow: Overflow,
}

impl FixedPoint {
    /// A checked fixed-point type.
    pub fn new(width: u32, integer: u32, signed: bool, rounding: Rounding, overflow: Overflow) -> Result<FixedPoint> {
        let fixed = FixedPoint { width, integer, signed, rounding, overflow };
        fixed.validate()?;
        Ok(fixed)
    }

    /// `ap_fixed<width, integer>` with HLS's defaults, `AP_TRN` and `AP_WRAP`.
    pub fn ap_fixed(width: u32, integer: u32) -> Result<FixedPoint> {
        FixedPoint::new(width, integer, true, Rounding::Truncate, Overflow::Wrap)
    }

    /// QKeras `quantized_bits(total_bits, int_bits, alpha=1)`: step
    /// `2^(int_bits − (total_bits − 1))`, range `[−2^int_bits, 2^int_bits − step]`,
    /// round half to even, saturate. That is
    /// `ap_fixed<total_bits, int_bits + 1, AP_RND_CONV, AP_SAT>`: QKeras'
    /// integer bits leave out the sign bit.
    pub fn from_qkeras(total_bits: u32, int_bits: u32) -> Result<FixedPoint> {
        ensure!(
            total_bits > 0,
            "precision ({total_bits}, {int_bits}): total bits must be at least 1 (quantized_bits(total_bits, int_bits) \
             accepts 1 ≤ total_bits ≤ {MAX_PRECISION_BITS} and 0 ≤ int_bits < total_bits)"
        );
        ensure!(
            total_bits <= MAX_PRECISION_BITS,
            "precision ({total_bits}, {int_bits}): {total_bits} total bits is more than the {MAX_PRECISION_BITS} supported"
        );
        ensure!(
            int_bits < total_bits,
            "precision ({total_bits}, {int_bits}): int_bits must be less than total_bits, since one of the \
             {total_bits} bits is the sign (accepted: 0 ≤ int_bits ≤ {})",
            total_bits - 1
        );
        FixedPoint::new(total_bits, int_bits + 1, true, Rounding::HalfEven, Overflow::Saturate)
    }

    /// Checks the invariants the methods rely on.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=MAX_WIDTH).contains(&self.width),
            "fixed-point width {} is out of range: 1 to {MAX_WIDTH} bits are supported",
            self.width
        );
        ensure!(
            self.integer <= MAX_INTEGER,
            "fixed-point type with {} integer bits: at most {MAX_INTEGER} are supported",
            self.integer
        );
        Ok(())
    }

    /// Bits after the binary point, `width − integer` (negative when the
    /// step is above 1).
    pub fn fractional_bits(&self) -> i32 {
        self.width as i32 - self.integer as i32
    }

    /// The distance between neighbouring values, `2^(integer − width)`.
    pub fn step(&self) -> f64 {
        2f64.powi(-self.fractional_bits())
    }

    /// The smallest code: `−2^(width−1)` (signed; one more with
    /// [`Overflow::SaturateSymmetric`]) or 0 (unsigned).
    pub fn min_code(&self) -> i64 {
        match (self.signed, self.overflow) {
            (false, _) => 0,
            (true, Overflow::SaturateSymmetric) => -self.max_code(),
            (true, _) => -(1i64 << (self.width - 1)),
        }
    }

    /// The largest code: `2^(width−1) − 1` (signed) or `2^width − 1` (unsigned).
    pub fn max_code(&self) -> i64 {
        if self.signed { (1i64 << (self.width - 1)) - 1 } else { (1i64 << self.width) - 1 }
    }

    /// The smallest value [`FixedPoint::quantize`] can return.
    pub fn min_value(&self) -> f64 {
        self.from_code(self.min_code())
    }

    /// The largest value [`FixedPoint::quantize`] can return.
    pub fn max_value(&self) -> f64 {
        self.from_code(self.max_code())
    }

    /// The value of `code`, `code · step`.
    pub fn from_code(&self, code: i64) -> f64 {
        code as f64 * self.step()
    }

    /// The code of the grid value `x` is rounded to, after overflow handling.
    /// NaN gives 0; infinities saturate (also under [`Overflow::Wrap`],
    /// where no low bits are defined).
    pub fn to_code(&self, x: f64) -> i64 {
        Grid::new(self).code(x) as i64
    }

    /// [`FixedPoint::to_code`] of every value.
    pub fn to_codes(&self, values: impl IntoIterator<Item = f64>) -> Vec<i64> {
        let grid = Grid::new(self);
        values.into_iter().map(|x| grid.code(x) as i64).collect()
    }

    /// `x` rounded onto the grid, with this type's rounding and overflow:
    /// `from_code(to_code(x))`.
    pub fn quantize(&self, x: f64) -> f64 {
        let grid = Grid::new(self);
        grid.code(x) * grid.step
    }

    /// Quantizes every value in place. Exact (on the grid) for widths up to
    /// 24 bits; wider codes are rounded to the nearest `f32`.
    ///
    /// QAT calls this for every weight and activation of every step, so the
    /// saturating modes take a branch-free loop per rounding mode; the
    /// result is the same as [`FixedPoint::quantize`]'s.
    pub fn quantize_slice(&self, values: &mut [f32]) {
        let grid = Grid::new(self);
        match (self.overflow, self.rounding) {
            (Overflow::Wrap, _) => {
                for value in values {
                    *value = (grid.code(*value as f64) * grid.step) as f32;
                }
            }
            // Adding and subtracting 1.5·2^52 rounds half to even for
            // |s| < 2^51; beyond, the sign and size survive and saturate.
            (_, Rounding::HalfEven) => grid.saturate_half_even(values),
            (_, Rounding::Truncate) => grid.saturate_slice(values, floor),
            (_, Rounding::HalfUp) => grid.saturate_slice(values, |s| {
                let whole = floor(s);
                if s - whole >= 0.5 { whole + 1.0 } else { whole }
            }),
        }
    }
}

/// The largest code the `f32` quantizer handles (2^22).
const F32_ROUND_LIMIT: f64 = 4_194_304.0;

/// 1.5 · 2^52: see [`FixedPoint::quantize_slice`].
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// The constants of one type's quantization, computed once per call.
struct Grid {
    scale: f64,
    step: f64,
    min_code: f64,
    max_code: f64,
    /// `2^width`, the period of wrapping.
    modulus: f64,
    signed: bool,
    rounding: Rounding,
    overflow: Overflow,
}

impl Grid {
    fn new(fixed: &FixedPoint) -> Grid {
        Grid {
            scale: 2f64.powi(fixed.fractional_bits()),
            step: fixed.step(),
            min_code: fixed.min_code() as f64,
            max_code: fixed.max_code() as f64,
            modulus: 2f64.powi(fixed.width as i32),
            signed: fixed.signed,
            rounding: fixed.rounding,
            overflow: fixed.overflow,
        }
    }

    /// Quantizes `values` with a saturating overflow mode, `round` taking
    /// the scaled value to a whole number.
    #[inline(always)]
    /// [`Grid::saturate_slice`] rounding half to even, with AVX2 where the
    /// CPU has it (the same operations, four lanes at a time: same bits).
    fn saturate_half_even(&self, values: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.saturate_half_even_avx2(values) };
            return;
        }
        self.saturate_slice(values, |s| (s + ROUND_MAGIC) - ROUND_MAGIC)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn saturate_half_even_avx2(&self, values: &mut [f32]) {
        if self.fits_f32() {
            self.saturate_half_even_f32(values)
        } else {
            self.saturate_slice(values, |s| (s + ROUND_MAGIC) - ROUND_MAGIC)
        }
    }

    /// Whether every step of the half-even path is exact in `f32`: codes
    /// within ±2^22 and a power-of-two scale well inside `f32`'s range.
    fn fits_f32(&self) -> bool {
        self.max_code <= F32_ROUND_LIMIT
            && -self.min_code <= F32_ROUND_LIMIT
            && (2f64.powi(-100)..2f64.powi(100)).contains(&self.scale)
    }

    /// The half-even saturating path in `f32`, eight lanes under AVX2:
    /// clamping to the (whole) code range first and rounding after gives the
    /// same codes as rounding first, and `(s + 1.5·2^23) − 1.5·2^23` rounds
    /// half to even for |s| ≤ 2^22.
    #[inline(always)]
    fn saturate_half_even_f32(&self, values: &mut [f32]) {
        const MAGIC: f32 = 12_582_912.0;
        let (scale, step) = (self.scale as f32, self.step as f32);
        let (low, high) = (self.min_code as f32, self.max_code as f32);
        for value in values {
            let scaled = *value * scale;
            let clamped = if scaled > high {
                high
            } else if scaled < low {
                low
            } else {
                scaled
            };
            let code = (clamped + MAGIC) - MAGIC;
            *value = if scaled.is_nan() { 0.0 } else { code * step };
        }
    }

    #[inline(always)]
    fn saturate_slice(&self, values: &mut [f32], round: impl Fn(f64) -> f64) {
        for value in values {
            let scaled = *value as f64 * self.scale;
            let code = round(scaled).max(self.min_code).min(self.max_code);
            *value = if scaled.is_nan() { 0.0 } else { (code * self.step) as f32 };
        }
    }

    /// The code of `x` as an `f64` (an integer within the code range). All
    /// steps are exact: scaling by a power of two, `floor`, a difference of
    /// at most one unit, and `rem_euclid` of integers.
    #[inline]
    fn code(&self, x: f64) -> f64 {
        if x.is_nan() {
            return 0.0;
        }
        let scaled = x * self.scale;
        let floor = floor(scaled);
        let rounded = match self.rounding {
            Rounding::Truncate => floor,
            Rounding::HalfUp => {
                if scaled - floor >= 0.5 {
                    floor + 1.0
                } else {
                    floor
                }
            }
            Rounding::HalfEven => {
                let fraction = scaled - floor;
                if fraction > 0.5 || (fraction == 0.5 && floor.rem_euclid(2.0) == 1.0) { floor + 1.0 } else { floor }
            }
        };
        if rounded >= self.min_code && rounded <= self.max_code {
            return rounded;
        }
        match self.overflow {
            Overflow::Saturate | Overflow::SaturateSymmetric => rounded.clamp(self.min_code, self.max_code),
            Overflow::Wrap if rounded.is_infinite() => rounded.clamp(self.min_code, self.max_code),
            Overflow::Wrap => {
                let low_bits = rounded.rem_euclid(self.modulus);
                if self.signed && low_bits > self.max_code { low_bits - self.modulus } else { low_bits }
            }
        }
    }
}

/// `x.floor()` without a libm call on targets without SSE4.1 (a quarter of
/// a QAT step's time went to it): truncation through `i64` is one
/// instruction, and from 2^52 on every `f64` is already whole.
#[inline]
fn floor(x: f64) -> f64 {
    const WHOLE_FROM: f64 = 4_503_599_627_370_496.0; // 2^52
    if x.abs() < WHOLE_FROM {
        let truncated = x as i64 as f64;
        if truncated > x { truncated - 1.0 } else { truncated }
    } else {
        x
    }
}

impl fmt::Display for FixedPoint {
    /// `ap_fixed<W,I>`, `ap_ufixed<W,I>`, with the rounding and overflow
    /// arguments written when they are not HLS's defaults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.signed { "ap_fixed" } else { "ap_ufixed" };
        write!(f, "{name}<{},{}", self.width, self.integer)?;
        if self.rounding != Rounding::Truncate || self.overflow != Overflow::Wrap {
            write!(f, ",{}", self.rounding.hls_name())?;
        }
        if self.overflow != Overflow::Wrap {
            write!(f, ",{}", self.overflow.hls_name())?;
        }
        write!(f, ">")
    }
}

impl FromStr for FixedPoint {
    type Err = anyhow::Error;

    /// Parses `ap_fixed<W,I[,Q[,O[,N]]]>`, `ap_ufixed<...>` (also without
    /// the `ap_` prefix, as hls4ml writes them), `ap_int<W>` and `ap_uint<W>`.
    /// `N`, the saturation bits, must be 0.
    fn from_str(text: &str) -> Result<FixedPoint> {
        parse(text).with_context(|| {
            format!(
                "could not read the fixed-point type '{text}' (expected e.g. ap_fixed<8,3>, ap_ufixed<8,3> or \
                 ap_fixed<8,3,AP_RND_CONV,AP_SAT>)"
            )
        })
    }
}

fn parse(text: &str) -> Result<FixedPoint> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let Some((name, rest)) = compact.split_once('<') else { bail!("no '<' after the type name") };
    let Some(arguments) = rest.strip_suffix('>') else { bail!("it does not end with '>'") };
    let arguments: Vec<&str> = arguments.split(',').collect();
    let number = |position: usize, what: &str| -> Result<u32> {
        let argument = arguments.get(position).with_context(|| format!("the {what} is missing"))?;
        argument.parse().with_context(|| format!("the {what} '{argument}' is not a non-negative whole number"))
    };
    let (signed, is_integer_type) = match name.strip_prefix("ap_").unwrap_or(name) {
        "fixed" => (true, false),
        "ufixed" => (false, false),
        "int" => (true, true),
        "uint" => (false, true),
        other => bail!("unknown type name '{other}'; accepted: ap_fixed, ap_ufixed, ap_int, ap_uint"),
    };
    let width = number(0, "width")?;
    if is_integer_type {
        ensure!(arguments.len() == 1, "{name} takes one argument, the width; found {}", arguments.len());
        return FixedPoint::new(width, width, signed, Rounding::Truncate, Overflow::Wrap);
    }
    ensure!(
        (2..=5).contains(&arguments.len()),
        "{name} takes 2 to 5 arguments (width, integer bits, rounding, overflow, saturation bits); found {}",
        arguments.len()
    );
    let integer = number(1, "integer bit count")?;
    let rounding = match arguments.get(2) {
        None => Rounding::Truncate,
        Some(spelling) => Rounding::ALL
            .into_iter()
            .find(|r| r.hls_name() == spelling.to_uppercase() || r.hls_name()[3..] == spelling.to_uppercase())
            .with_context(|| {
                format!("unsupported rounding mode '{spelling}'; accepted: AP_TRN, AP_RND_CONV, AP_RND")
            })?,
    };
    let overflow = match arguments.get(3) {
        None => Overflow::Wrap,
        Some(spelling) => Overflow::ALL
            .into_iter()
            .find(|o| o.hls_name() == spelling.to_uppercase() || o.hls_name()[3..] == spelling.to_uppercase())
            .with_context(|| {
                format!("unsupported overflow mode '{spelling}'; accepted: AP_WRAP, AP_SAT, AP_SAT_SYM")
            })?,
    };
    if arguments.len() == 5 {
        ensure!(number(4, "saturation bit count")? == 0, "saturation bits other than 0 are not supported");
    }
    FixedPoint::new(width, integer, signed, rounding, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn with(fixed: FixedPoint, rounding: Rounding, overflow: Overflow) -> FixedPoint {
        FixedPoint { rounding, overflow, ..fixed }
    }

    /// Hand-computed: quantized_bits(8,3) is ap_fixed<8,4>, step 1/16.
    #[test]
    fn qkeras_8_3() {
        let fixed = FixedPoint::from_qkeras(8, 3).unwrap();
        assert_eq!((fixed.width, fixed.integer, fixed.signed), (8, 4, true));
        assert_eq!(fixed.step(), 0.0625);
        assert_eq!(fixed.min_value(), -8.0);
        assert_eq!(fixed.max_value(), 7.9375);
        assert_eq!((fixed.min_code(), fixed.max_code()), (-128, 127));
        for (x, expected) in [
            (0.0, 0.0),
            (0.03125, 0.0),     // 0.5 step: tie to the even code 0
            (0.09375, 0.125),   // 1.5 steps: tie to 2
            (0.15625, 0.125),   // 2.5 steps: tie to 2
            (-0.03125, 0.0),    // −0.5 step: to 0
            (-0.09375, -0.125), // −1.5 steps: to −2
            (1.3, 1.3125),      // 20.8 steps
            (-1.3, -1.3125),
            (7.9375, 7.9375),
            (7.97, 7.9375), // rounds to code 128, saturates
            (100.0, 7.9375),
            (-8.0, -8.0),
            (-8.03, -8.0),
            (-100.0, -8.0),
        ] {
            assert_eq!(fixed.quantize(x), expected, "quantize({x})");
        }
        assert_eq!(fixed.to_code(1.3), 21);
        assert_eq!(fixed.to_code(-100.0), -128);
        assert_eq!(fixed.from_code(21), 1.3125);
    }

    #[test]
    fn qkeras_4_1() {
        let fixed = FixedPoint::from_qkeras(4, 1).unwrap();
        assert_eq!(fixed.to_string(), "ap_fixed<4,2,AP_RND_CONV,AP_SAT>");
        assert_eq!((fixed.step(), fixed.min_value(), fixed.max_value()), (0.25, -2.0, 1.75));
        for (x, expected) in [
            (0.125, 0.0),
            (0.375, 0.5),
            (0.625, 0.5),
            (0.875, 1.0),
            (0.3, 0.25),
            (-0.625, -0.5),
            (1.8, 1.75),
            (5.0, 1.75),
            (-1.9, -2.0),
            (-5.0, -2.0),
        ] {
            assert_eq!(fixed.quantize(x), expected, "quantize({x})");
        }
    }

    #[test]
    fn qkeras_6_2() {
        let fixed = FixedPoint::from_qkeras(6, 2).unwrap();
        assert_eq!((fixed.width, fixed.integer), (6, 3));
        assert_eq!((fixed.step(), fixed.min_value(), fixed.max_value()), (0.125, -4.0, 3.875));
        for (x, expected) in [
            (0.0625, 0.0),
            (0.1875, 0.25),
            (-0.1875, -0.25),
            (3.9, 3.875),
            (3.94, 3.875),
            (-4.0, -4.0),
            (-4.1, -4.0),
            (2.2, 2.25),
        ] {
            assert_eq!(fixed.quantize(x), expected, "quantize({x})");
        }
    }

    #[test]
    fn qkeras_16_6() {
        let fixed = FixedPoint::from_qkeras(16, 6).unwrap();
        assert_eq!((fixed.width, fixed.integer), (16, 7));
        assert_eq!(fixed.step(), 1.0 / 512.0);
        assert_eq!((fixed.min_value(), fixed.max_value()), (-64.0, 63.998046875));
        for (x, expected) in [
            (1.0 / 1024.0, 0.0),
            (3.0 / 1024.0, 4.0 / 1024.0),
            (0.1, 0.099609375),
            (-0.1, -0.099609375),
            (63.999, 63.998046875),
            (64.5, 63.998046875),
            (-64.1, -64.0),
        ] {
            assert_eq!(fixed.quantize(x), expected, "quantize({x})");
        }
        assert_eq!(fixed.to_code(0.1), 51);
        assert_eq!(fixed.to_code(1e9), 32767);
    }

    #[test]
    fn other_rounding_and_overflow_modes() {
        let base = FixedPoint::from_qkeras(8, 3).unwrap();
        let truncate = with(base, Rounding::Truncate, Overflow::Saturate);
        for (x, expected) in [(0.09375, 0.0625), (0.06, 0.0), (-0.01, -0.0625), (-0.0625, -0.0625), (1.3, 1.25)] {
            assert_eq!(truncate.quantize(x), expected, "AP_TRN quantize({x})");
        }
        let half_up = with(base, Rounding::HalfUp, Overflow::Saturate);
        for (x, expected) in [(0.03125, 0.0625), (0.09375, 0.125), (-0.03125, 0.0), (-0.09375, -0.0625), (1.3, 1.3125)]
        {
            assert_eq!(half_up.quantize(x), expected, "AP_RND quantize({x})");
        }
        let wrap = with(base, Rounding::HalfEven, Overflow::Wrap);
        for (x, expected) in [(8.0, -8.0), (8.0625, -7.9375), (-8.0625, 7.9375), (16.0, 0.0), (17.5, 1.5), (7.5, 7.5)] {
            assert_eq!(wrap.quantize(x), expected, "AP_WRAP quantize({x})");
        }
        assert_eq!(wrap.to_code(8.0), -128);
        let symmetric = with(base, Rounding::HalfEven, Overflow::SaturateSymmetric);
        assert_eq!((symmetric.min_value(), symmetric.max_value()), (-7.9375, 7.9375));
        assert_eq!(symmetric.quantize(-8.0), -7.9375);
        assert_eq!(symmetric.quantize(-100.0), -7.9375);

        let unsigned = FixedPoint::new(8, 8, false, Rounding::Truncate, Overflow::Wrap).unwrap();
        assert_eq!((unsigned.min_value(), unsigned.max_value()), (0.0, 255.0));
        assert_eq!(unsigned.quantize(256.0), 0.0);
        assert_eq!(unsigned.quantize(-1.0), 255.0);
        assert_eq!(unsigned.quantize(3.99), 3.0);
        let unsigned_saturating = FixedPoint { overflow: Overflow::Saturate, ..unsigned };
        assert_eq!(unsigned_saturating.quantize(-1.0), 0.0);
        assert_eq!(unsigned_saturating.quantize(300.0), 255.0);
    }

    #[test]
    fn negative_fractional_bits_and_wide_types() {
        // ap_fixed<4,6>: step 4, codes −8..7.
        let coarse = FixedPoint::new(4, 6, true, Rounding::HalfEven, Overflow::Saturate).unwrap();
        assert_eq!(coarse.fractional_bits(), -2);
        assert_eq!((coarse.step(), coarse.min_value(), coarse.max_value()), (4.0, -32.0, 28.0));
        assert_eq!(coarse.quantize(6.0), 8.0); // 1.5 steps → 2
        assert_eq!(coarse.quantize(10.0), 8.0); // 2.5 steps → 2
        assert_eq!(coarse.quantize(100.0), 28.0);
        assert_eq!(coarse.to_code(-13.0), -3);

        let wide = FixedPoint::new(32, 16, true, Rounding::HalfEven, Overflow::Saturate).unwrap();
        assert_eq!(wide.step(), 2f64.powi(-16));
        assert_eq!(wide.max_code(), i32::MAX as i64);
        assert_eq!(wide.min_value(), -32768.0);
        assert_eq!(wide.max_value(), 32768.0 - 2f64.powi(-16));
        assert_eq!(wide.to_code(1e9), i32::MAX as i64);
        assert_eq!(wide.quantize(1.0 + 2f64.powi(-17)), 1.0);
        let wide_unsigned = FixedPoint::new(32, 32, false, Rounding::Truncate, Overflow::Wrap).unwrap();
        assert_eq!(wide_unsigned.max_code(), u32::MAX as i64);
        assert_eq!(wide_unsigned.quantize(2f64.powi(32) + 5.0), 5.0);
        let wide_wrap = FixedPoint::new(32, 32, true, Rounding::Truncate, Overflow::Wrap).unwrap();
        assert_eq!(wide_wrap.quantize(2f64.powi(31)), -(2f64.powi(31)));
        // Huge inputs wrap exactly: with step 2^52, 2^60 + 3·2^52 is code
        // 2^8 + 3, whose low 8 bits are 3.
        let huge_step = FixedPoint::ap_fixed(8, 60).unwrap();
        assert_eq!(huge_step.quantize(2f64.powi(60) + 3.0 * 2f64.powi(52)), 3.0 * 2f64.powi(52));
        assert_eq!(FixedPoint::ap_fixed(8, 8).unwrap().quantize(-1.0), -1.0);

        let nan = FixedPoint::from_qkeras(8, 3).unwrap();
        assert_eq!(nan.to_code(f64::NAN), 0);
        assert_eq!(nan.to_code(f64::INFINITY), 127);
        assert_eq!(FixedPoint::ap_fixed(8, 3).unwrap().to_code(f64::NEG_INFINITY), -128);
    }

    #[test]
    fn quantize_is_idempotent_on_the_grid_and_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut types = Vec::new();
        for (width, integer) in [(1, 1), (4, 1), (4, 6), (8, 4), (8, 0), (12, 5), (16, 7), (24, 10), (32, 16)] {
            for signed in [true, false] {
                for rounding in Rounding::ALL {
                    for overflow in Overflow::ALL {
                        types.push(FixedPoint::new(width, integer, signed, rounding, overflow).unwrap());
                    }
                }
            }
        }
        for fixed in types {
            let (min, max, step) = (fixed.min_value(), fixed.max_value(), fixed.step());
            let span = (max - min).max(step) * 2.0;
            for _ in 0..500 {
                let x = rng.random_range(-span..span);
                let q = fixed.quantize(x);
                assert!(q >= min && q <= max, "{fixed}: quantize({x}) = {q} outside [{min}, {max}]");
                assert_eq!((q / step).fract(), 0.0, "{fixed}: quantize({x}) = {q} is off the grid");
                assert_eq!(fixed.quantize(q), q, "{fixed}: quantize is not idempotent at {x}");
                assert_eq!(fixed.from_code(fixed.to_code(x)), q, "{fixed}: code and value disagree at {x}");
                if matches!(fixed.overflow, Overflow::Saturate) && x >= min && x <= max {
                    assert!((q - x).abs() <= step, "{fixed}: quantize({x}) = {q} is more than a step away");
                }
            }
            if fixed.width <= 24 {
                let mut values: Vec<f32> = (0..100).map(|_| rng.random_range(-span..span) as f32).collect();
                // Ties, special values and huge ones take the same path.
                let step = step as f32;
                values.extend([0.5 * step, 1.5 * step, -2.5 * step, f32::NAN, f32::INFINITY, -f32::INFINITY]);
                values.extend([1e30, -1e30, 3e15, -3e15, 0.0, -0.0]);
                let expected: Vec<f32> = values.iter().map(|&v| fixed.quantize(v as f64) as f32).collect();
                fixed.quantize_slice(&mut values);
                assert_eq!(values, expected, "{fixed}");
                assert!(values.iter().all(|v| !v.is_nan()));
            }
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        for text in [
            "ap_fixed<8,3>",
            "ap_ufixed<8,3>",
            "ap_fixed<8,4,AP_RND_CONV,AP_SAT>",
            "ap_fixed<16,6,AP_RND>",
            "ap_ufixed<4,6,AP_TRN,AP_SAT_SYM>",
            "ap_fixed<32,0,AP_RND_CONV>",
            "ap_fixed<1,1>",
        ] {
            let fixed: FixedPoint = text.parse().unwrap();
            assert_eq!(fixed.to_string(), text);
            assert_eq!(fixed.to_string().parse::<FixedPoint>().unwrap(), fixed);
        }
        let parsed: FixedPoint = " ap_fixed< 8, 3, AP_RND_CONV, AP_SAT, 0 >".parse().unwrap();
        assert_eq!(parsed, FixedPoint::new(8, 3, true, Rounding::HalfEven, Overflow::Saturate).unwrap());
        assert_eq!("fixed<8,3,RND_CONV,SAT>".parse::<FixedPoint>().unwrap(), parsed);
        assert_eq!("ap_uint<6>".parse::<FixedPoint>().unwrap().to_string(), "ap_ufixed<6,6>");
        for qkeras in [(8, 3), (4, 1), (6, 2), (16, 6), (1, 0), (32, 31)] {
            let fixed = FixedPoint::from_qkeras(qkeras.0, qkeras.1).unwrap();
            assert_eq!(fixed.to_string().parse::<FixedPoint>().unwrap(), fixed);
        }
    }

    #[test]
    fn clear_errors() {
        let message = |result: Result<FixedPoint>| format!("{:#}", result.unwrap_err());
        let e = message(FixedPoint::from_qkeras(8, 8));
        assert!(e.contains("(8, 8)") && e.contains("int_bits must be less than total_bits"), "{e}");
        let e = message(FixedPoint::from_qkeras(4, 9));
        assert!(e.contains("(4, 9)") && e.contains("0 ≤ int_bits ≤ 3"), "{e}");
        let e = message(FixedPoint::from_qkeras(0, 0));
        assert!(e.contains("(0, 0)") && e.contains("at least 1"), "{e}");
        let e = message(FixedPoint::from_qkeras(33, 3));
        assert!(e.contains("33") && e.contains("32"), "{e}");
        let e = message(FixedPoint::ap_fixed(0, 0));
        assert!(e.contains("width 0") && e.contains("1 to 62"), "{e}");
        for (text, needle) in [
            ("ap_fixed<8>", "takes 2 to 5 arguments"),
            ("ap_fixed<8,x>", "'x' is not a non-negative"),
            ("ap_fixed<8,-2>", "'-2' is not a non-negative"),
            ("ap_fixed<8,3", "does not end with '>'"),
            ("float", "no '<'"),
            ("ap_float<8,3>", "unknown type name 'float'"),
            ("ap_fixed<8,3,AP_RND_ZERO>", "unsupported rounding mode 'AP_RND_ZERO'"),
            ("ap_fixed<8,3,AP_TRN,AP_SAT_ZERO>", "unsupported overflow mode 'AP_SAT_ZERO'"),
            ("ap_fixed<8,3,AP_TRN,AP_SAT,2>", "saturation bits"),
            ("ap_fixed<63,3>", "width 63"),
        ] {
            let e = message(text.parse());
            assert!(e.contains(needle) && e.contains(text), "{text}: {e}");
        }
    }
}
