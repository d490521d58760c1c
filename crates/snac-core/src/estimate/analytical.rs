//! A transparent, closed-form model of how hls4ml's `io_parallel` Latency and
//! Resource strategies lay Dense, BatchNorm and activation layers out on an
//! FPGA: multipliers from the nonzero weights and the reuse factor, DSP or LUT
//! multipliers by operand widths, adder trees by fan-in, and a schedule that
//! chains operations into clock cycles the way HLS does, putting registers
//! (FFs) wherever a cycle ends.
//!
//! Every constant below names the hardware fact it stands for. The delays
//! are of the order Vivado HLS assigns on 7-series/UltraScale parts, and the
//! 18 handshake FFs are what every combinational hls4ml report shows; nothing
//! was fitted to the validation reports (`testdata/hls4ml_baselines.json`),
//! whose error the validation test prints. It is the default estimator when
//! rule4ml is absent, and the only one that sees per-layer bit widths and
//! sparsity. Latency is counted as HLS reports it: clock edges crossed, so a
//! design that fits in one cycle has latency 0.

use super::{Board, Estimate, HlsSettings, LayerInfo, ResourceEstimator, Strategy};
use crate::arch::{Activation, Arch, Layer};
use anyhow::{Result, bail, ensure};

/// A product is mapped to DSP48 slices only when its wider operand has more
/// than this many bits: Vivado HLS builds narrower products from LUTs, which
/// is why hls4ml designs at ≤ 10 bits use few or no DSPs.
const DSP_MIN_WIDE_BITS: u32 = 10;
/// ...and its narrower operand more than this many: a product by a 1–4 bit
/// number is a handful of shifted additions, which HLS never puts in a DSP.
const DSP_MIN_NARROW_BITS: u32 = 4;
/// The DSP48's multiplier is 25 × 18 bits (7-series; 27 × 18 on UltraScale);
/// wider products are tiled over several slices.
const DSP_PORT_A_BITS: u32 = 25;
const DSP_PORT_B_BITS: u32 = 18;
/// LUTs per partial-product bit of a LUT multiplier: an `a × w` array
/// multiplier has `a·w` partial-product bits, and a LUT6 with the carry chain
/// sums about two of them. With constant weights (Latency strategy) HLS
/// simplifies further, so this is an upper-side figure.
const LUT_PER_PRODUCT_BIT: f64 = 0.5;
/// A two-input adder costs one LUT per result bit (LUT6 + CARRY4/CARRY8).
const LUT_PER_ADDER_BIT: f64 = 1.0;
/// One LUT6 selects one bit out of four inputs, so an `r:1` multiplexer of a
/// `b`-bit word costs about `b·(r−1)/3` LUTs.
const MUX_INPUTS_PER_LUT: f64 = 3.0;
/// Combinational delays HLS schedules with, in ns: a DSP48 multiply without
/// its internal registers, a LUT multiply (a few carry-chain rows), one
/// adder-tree level (carry chain plus routing), a ReLU mux and a leaky-ReLU
/// shift-add, and the index arithmetic in front of a look-up table.
const DSP_MULTIPLY_NS: f64 = 2.0;
const LUT_MULTIPLY_NS: f64 = 1.5;
const ADDER_LEVEL_NS: f64 = 0.8;
const RELU_NS: f64 = 0.3;
const LEAKY_RELU_NS: f64 = 1.0;
const TABLE_INDEX_NS: f64 = 0.8;
/// Registers of the block-level handshake (`ap_ctrl_hs`, `ap_start`/`ap_done`)
/// that every hls4ml top function has, even a purely combinational one.
const CONTROL_FF: f64 = 18.0;
/// One BRAM_18K holds 18 Kbit; its widest port (simple dual port) is 36 bits
/// and 512 words deep at that width.
const BRAM_WORD_BITS: usize = 36;
const BRAM_DEPTH_AT_WORD: usize = 512;
/// Arrays shallower than this are kept in LUTRAM or registers by Vivado HLS
/// rather than block RAM (a LUT6 is a 64 × 1 RAM/ROM).
const BRAM_MIN_DEPTH: usize = 64;
const LUTRAM_DEPTH: usize = 64;
/// hls4ml's activation look-up tables: 1024 entries of `ap_fixed<18,8>`, one
/// BRAM_18K each; a dual-port BRAM serves two lookups per cycle, and a read
/// takes one clock cycle after the registered address.
const TABLE_WORD_BITS: u32 = 18;
const BRAMS_PER_TABLE: f64 = 1.0;
const LOOKUPS_PER_BRAM: f64 = 2.0;
/// rule4ml's clock, 100 MHz; hls4ml's own tests use 5 ns.
const DEFAULT_CLOCK_PERIOD_NS: f64 = 10.0;

/// The analytical estimator, for one target clock period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalyticalEstimator {
    pub clock_period_ns: f64,
}

impl Default for AnalyticalEstimator {
    /// A 10 ns clock, as rule4ml assumes.
    fn default() -> AnalyticalEstimator {
        AnalyticalEstimator { clock_period_ns: DEFAULT_CLOCK_PERIOD_NS }
    }
}

impl AnalyticalEstimator {
    /// An estimator for a clock period of `clock_period_ns` (e.g. 5 for 200 MHz).
    pub fn new(clock_period_ns: f64) -> Result<AnalyticalEstimator> {
        ensure!(
            clock_period_ns.is_finite() && clock_period_ns >= 1.0,
            "clock period must be at least 1 ns, got {clock_period_ns}"
        );
        Ok(AnalyticalEstimator { clock_period_ns })
    }
}

/// Resources of the layers seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Resources {
    lut: f64,
    dsp: f64,
    bram: f64,
}

/// The pipeline as HLS schedules it: operations chain within a clock cycle
/// while their delays fit; where a cycle ends, the values alive there are
/// registered, which is where the FFs come from.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    period_ns: f64,
    /// Clock edges crossed so far: the latency in cycles.
    cycles: f64,
    /// Delay already used in the current cycle.
    used_ns: f64,
    ff: f64,
}

impl Schedule {
    fn new(period_ns: f64) -> Schedule {
        Schedule { period_ns, cycles: 0.0, used_ns: 0.0, ff: CONTROL_FF }
    }

    /// Ends the current cycle, registering `live_bits` bits.
    fn cut(&mut self, live_bits: f64) {
        self.cycles += 1.0;
        self.ff += live_bits;
        self.used_ns = 0.0;
    }

    /// An operation of `delay_ns` whose inputs are `live_bits` bits in all.
    fn chain(&mut self, delay_ns: f64, live_bits: f64) {
        if self.used_ns > 0.0 && self.used_ns + delay_ns > self.period_ns {
            self.cut(live_bits);
        }
        self.used_ns += delay_ns;
    }

    /// Table lookups of `count` entries: the index arithmetic, the registered
    /// address, and one cycle of BRAM read giving `count` table words.
    fn lookup(&mut self, count: usize, index_bits: u32) {
        let index_live = (count * index_bits as usize) as f64;
        self.chain(TABLE_INDEX_NS, index_live);
        self.cut(index_live);
        self.cut((count * TABLE_WORD_BITS as usize) as f64);
    }
}

/// ⌈log2 n⌉ for n ≥ 1 (0 for n ≤ 1): levels of a binary adder tree over n terms.
fn ceil_log2(n: usize) -> u32 {
    if n <= 1 { 0 } else { usize::BITS - (n - 1).leading_zeros() }
}

/// DSP slices for one `a × b` product, or 0 when it is built from LUTs.
fn dsp_per_product(a_bits: u32, b_bits: u32) -> f64 {
    let (wide, narrow) = (a_bits.max(b_bits), a_bits.min(b_bits));
    if wide <= DSP_MIN_WIDE_BITS || narrow <= DSP_MIN_NARROW_BITS {
        return 0.0;
    }
    (wide.div_ceil(DSP_PORT_A_BITS) * narrow.div_ceil(DSP_PORT_B_BITS)) as f64
}

/// `count` multipliers of `a × b` bits reading `input_bits` bits of inputs.
fn multipliers(count: usize, a_bits: u32, b_bits: u32, input_bits: f64, used: &mut Resources, schedule: &mut Schedule) {
    let dsp = dsp_per_product(a_bits, b_bits);
    if dsp > 0.0 {
        used.dsp += count as f64 * dsp;
        schedule.chain(DSP_MULTIPLY_NS, input_bits);
    } else {
        used.lut += count as f64 * LUT_PER_PRODUCT_BIT * (a_bits * b_bits) as f64;
        schedule.chain(LUT_MULTIPLY_NS, input_bits);
    }
}

/// `outputs` adder trees, each summing `terms` values of `bits` bits; the
/// tree's levels chain into the schedule, registering the partial sums alive
/// wherever a cycle ends.
fn adder_trees(outputs: usize, terms: usize, bits: u32, used: &mut Resources, schedule: &mut Schedule) {
    used.lut += (outputs * terms.saturating_sub(1)) as f64 * LUT_PER_ADDER_BIT * bits as f64;
    for level in 0..ceil_log2(terms) {
        let alive = terms.div_ceil(1 << level);
        schedule.chain(ADDER_LEVEL_NS, (outputs * alive * bits as usize) as f64);
    }
}

/// LUTs of an `inputs:1` multiplexer of `bits`-bit words, `count` times.
fn multiplexers(count: usize, inputs: usize, bits: u32) -> f64 {
    (count * bits as usize) as f64 * inputs.saturating_sub(1) as f64 / MUX_INPUTS_PER_LUT
}

/// The shape and widths of one Dense layer.
#[derive(Clone, Copy, Debug)]
struct DenseLayer {
    n_in: usize,
    n_out: usize,
    nonzero: usize,
    weight_bits: u32,
    input_bits: u32,
}

/// One Dense layer: multipliers, adder trees, and for reuse > 1 the input
/// multiplexers, accumulators and weight memory.
fn dense(layer: DenseLayer, settings: &HlsSettings, used: &mut Resources, schedule: &mut Schedule) {
    let DenseLayer { n_in, n_out, nonzero, weight_bits, input_bits } = layer;
    let total = n_in * n_out;
    // hls4ml never reuses a multiplier more often than there are weights.
    let reuse = settings.reuse_factor.clamp(1, total.max(1));
    let product_bits = input_bits + weight_bits;
    // The exact sum of n_in products: hls4ml's `accum_t` when inferred.
    let accumulator_bits = product_bits + ceil_log2(n_in);

    // Pruned weights are constant zeros: HLS removes their products in the
    // Latency strategy; the Resource strategy still schedules nonzero / R
    // products per cycle when the zeros are left out of the weight array.
    let multiplier_count = nonzero.div_ceil(reuse);
    multipliers(multiplier_count, input_bits, weight_bits, (n_in * input_bits as usize) as f64, used, schedule);

    // Each output sums its share of the products of one reuse slot, plus the
    // bias (or, for reuse > 1, the running accumulator).
    let terms_per_output = multiplier_count.div_ceil(n_out.max(1)) + 1;
    adder_trees(n_out, terms_per_output, accumulator_bits, used, schedule);

    if reuse > 1 {
        // Each multiplier picks one of `reuse` inputs per cycle, ...
        used.lut += multiplexers(multiplier_count, reuse, input_bits);
        // ... the weights come from a `reuse`-deep memory, one word of
        // `total / reuse` weights per cycle, ...
        let word_bits = total.div_ceil(reuse) * weight_bits as usize;
        match settings.strategy {
            Strategy::Resource if reuse >= BRAM_MIN_DEPTH => {
                used.bram += (word_bits.div_ceil(BRAM_WORD_BITS) * reuse.div_ceil(BRAM_DEPTH_AT_WORD)) as f64;
            }
            Strategy::Resource => used.lut += (word_bits * reuse.div_ceil(LUTRAM_DEPTH)) as f64,
            // Latency: constant weights become a small ROM per multiplier.
            Strategy::Latency => {
                used.lut += (multiplier_count * weight_bits as usize * reuse.div_ceil(LUTRAM_DEPTH)) as f64
            }
        }
        // ... and the outputs keep accumulators across the `reuse` cycles
        // over which their products arrive.
        schedule.cut((n_out * accumulator_bits as usize) as f64);
        schedule.cycles += (reuse - 2) as f64;
    }
}

/// A BatchNorm that hls4ml could not fold into a Dense layer: `x·scale + shift`
/// per feature, with `scale` at the model precision.
fn batch_norm(features: usize, input_bits: u32, settings: &HlsSettings, used: &mut Resources, schedule: &mut Schedule) {
    let scale_bits = settings.precision.width;
    multipliers(features, input_bits, scale_bits, (features * input_bits as usize) as f64, used, schedule);
    adder_trees(features, 2, input_bits + scale_bits, used, schedule);
}

/// One table lookup per feature (tanh, sigmoid, GELU, the exponentials of
/// softmax): index logic and the BRAM tables, dual ported.
fn table_lookups(features: usize, input_bits: u32, used: &mut Resources, schedule: &mut Schedule) {
    used.lut += (features * input_bits as usize) as f64;
    used.bram += (features as f64 / LOOKUPS_PER_BRAM).ceil() * BRAMS_PER_TABLE;
    schedule.lookup(features, input_bits);
}

fn activation(kind: Activation, features: usize, bits: u32, used: &mut Resources, schedule: &mut Schedule) {
    let live = (features * bits as usize) as f64;
    match kind {
        Activation::Identity => {}
        // `x > 0 ? x : 0`: the sign bit gates every bit; a LUT6 has two outputs.
        Activation::Relu => {
            used.lut += (features * bits.div_ceil(2) as usize) as f64;
            schedule.chain(RELU_NS, live);
        }
        // A constant multiply by the slope (shift-and-add) and the mux.
        Activation::LeakyRelu => {
            used.lut += live * 1.5;
            schedule.chain(LEAKY_RELU_NS, live);
        }
        Activation::Tanh | Activation::Sigmoid | Activation::Gelu => table_lookups(features, bits, used, schedule),
        // exp table per feature, a sum tree, one inverse table, and a
        // multiplication per feature by the inverse.
        Activation::Softmax => {
            table_lookups(features, bits, used, schedule);
            adder_trees(1, features, TABLE_WORD_BITS + ceil_log2(features), used, schedule);
            table_lookups(1, TABLE_WORD_BITS, used, schedule);
            let table_words = (features * TABLE_WORD_BITS as usize) as f64;
            multipliers(features, TABLE_WORD_BITS, TABLE_WORD_BITS, table_words, used, schedule);
        }
    }
}

/// LayerNorm as hls4ml builds it: a mean and a variance tree, an inverse
/// square root table, and two multiplications per feature (square, scale).
fn layer_norm(features: usize, bits: u32, settings: &HlsSettings, used: &mut Resources, schedule: &mut Schedule) {
    let live = (features * bits as usize) as f64;
    adder_trees(1, features, bits + ceil_log2(features), used, schedule);
    multipliers(features, bits, bits, live, used, schedule);
    adder_trees(1, features, 2 * bits + ceil_log2(features), used, schedule);
    table_lookups(1, 2 * bits, used, schedule);
    multipliers(features, bits, settings.precision.width, live, used, schedule);
}

impl ResourceEstimator for AnalyticalEstimator {
    fn name(&self) -> &'static str {
        "analytical"
    }

    fn estimate(
        &self,
        arch: &Arch,
        settings: &HlsSettings,
        layer_info: Option<&[LayerInfo]>,
        board: &Board,
    ) -> Result<Estimate> {
        ensure!(settings.reuse_factor >= 1, "reuse factor must be at least 1, got {}", settings.reuse_factor);
        ensure!(
            self.clock_period_ns.is_finite() && self.clock_period_ns >= 1.0,
            "clock period must be at least 1 ns, got {}",
            self.clock_period_ns
        );
        let shapes = arch.shapes()?;
        let dense_count = shapes.iter().filter(|(layer, _, _)| matches!(layer, Layer::Dense { .. })).count();
        if let Some(info) = layer_info {
            ensure!(
                info.len() == dense_count,
                "layer info has {} entries but the architecture has {dense_count} Dense layers (one entry per Dense layer)",
                info.len()
            );
        }

        let mut used = Resources::default();
        let mut schedule = Schedule::new(self.clock_period_ns);
        let mut interval = 1usize;
        let mut dense_index = 0;
        // Width of the values flowing between layers: the model precision,
        // unless a layer's info says what its input really is.
        let bits = settings.precision.width;
        let mut previous: Option<&Layer> = None;
        for (position, (layer, input, output)) in shapes.iter().enumerate() {
            let features = output.numel();
            match layer {
                Layer::Dense { units } => {
                    let n_in = input.numel();
                    let info = layer_info.map(|info| info[dense_index]);
                    let weight_bits = info.map_or(bits, |info| info.weight_bits);
                    let input_bits = info.map_or(bits, |info| info.activation_bits);
                    ensure!(
                        weight_bits >= 1 && input_bits >= 1,
                        "Dense layer {dense_index} (layer {position}): weight and activation widths must be at least \
                         1 bit, got {weight_bits} and {input_bits}"
                    );
                    let weights = n_in * units;
                    let nonzero = info.and_then(|info| info.nonzero_weights).unwrap_or(weights);
                    ensure!(
                        nonzero <= weights,
                        "Dense layer {dense_index} (layer {position}, {n_in} → {units}): {nonzero} nonzero weights \
                         is more than its {weights} weights"
                    );
                    dense_index += 1;
                    interval = interval.max(settings.reuse_factor.min(weights.max(1)));
                    let layer = DenseLayer { n_in, n_out: *units, nonzero, weight_bits, input_bits };
                    dense(layer, settings, &mut used, &mut schedule);
                }
                // hls4ml folds a BatchNorm that follows a Dense layer into its
                // weights and bias (`FuseBatchNormalization`): it costs nothing.
                Layer::BatchNorm if matches!(previous, Some(Layer::Dense { .. })) => {}
                Layer::BatchNorm => batch_norm(features, bits, settings, &mut used, &mut schedule),
                Layer::LayerNorm => layer_norm(features, bits, settings, &mut used, &mut schedule),
                Layer::Act(kind) => activation(*kind, features, bits, &mut used, &mut schedule),
                Layer::Flatten => {}
                Layer::Conv2d { .. } | Layer::ConvAttention { .. } | Layer::Aggregate(_) => bail!(
                    "the analytical estimator does not support {} layers yet (layer {position}, {}); \
                     it models Dense, BatchNorm, LayerNorm and activation layers",
                    layer.kind(),
                    arch.summary()
                ),
            }
            previous = Some(layer);
        }
        Ok(Estimate::from_counts(used.lut, schedule.ff, used.dsp, used.bram, schedule.cycles, interval as f64, board))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Component, Norm, Padding, Shape};
    use crate::fixed::FixedPoint;

    fn settings(width: u32, integer: u32, reuse_factor: usize, strategy: Strategy) -> HlsSettings {
        HlsSettings { precision: FixedPoint::ap_fixed(width, integer).unwrap(), reuse_factor, strategy }
    }

    fn pynq() -> Board {
        Board::by_name("pynq-z2").unwrap()
    }

    /// 4 → 2, no activation.
    fn tiny() -> Arch {
        Arch::new(Shape::Flat(4), vec![Component::output("output", 2, Activation::Identity)])
    }

    /// 16 → 32 relu → 5 softmax, as a jet-tagging MLP.
    fn mlp(norm: Norm) -> Arch {
        Arch::new(
            Shape::Flat(16),
            vec![Component::mlp("b0", 32, norm, Activation::Relu), Component::output("output", 5, Activation::Softmax)],
        )
    }

    fn run(arch: &Arch, settings: &HlsSettings, info: Option<&[LayerInfo]>) -> Estimate {
        AnalyticalEstimator::default().estimate(arch, settings, info, &pynq()).unwrap()
    }

    #[test]
    fn tiny_dense_with_dsp_multipliers_by_hand() {
        // ap_fixed<16,6>: 16 × 16 products → one DSP each, 8 of them (2 ns).
        // Accumulator 16 + 16 + ⌈log2 4⌉ = 34 bits; each of the 2 outputs sums
        // 4 products + bias = 5 terms: 4 adders (2 × 4 × 34 = 272 LUTs) in 3
        // levels (3 × 0.8 ns). 4.4 ns fit in one 10 ns cycle: no pipeline
        // registers, only the 18 handshake FFs, latency 0.
        let estimate = run(&tiny(), &settings(16, 6, 1, Strategy::Latency), None);
        assert_eq!((estimate.lut, estimate.ff, estimate.dsp, estimate.bram), (272.0, 18.0, 8.0, 0.0));
        assert_eq!((estimate.cycles, estimate.interval), (0.0, 1.0));
        assert!((estimate.lut_pct - 100.0 * 272.0 / 53_200.0).abs() < 1e-12);
        assert!((estimate.dsp_pct - 100.0 * 8.0 / 220.0).abs() < 1e-12);
        let mean = (estimate.lut_pct + estimate.ff_pct + estimate.dsp_pct + estimate.bram_pct) / 4.0;
        assert!((estimate.avg_resource - mean).abs() < 1e-12);

        // At 3 ns the second adder level (2.0 + 0.8 + 0.8 > 3) starts a new
        // cycle: 2 outputs × ⌈5 / 2⌉ partial sums × 34 bits are registered.
        let fast = AnalyticalEstimator::new(3.0).unwrap();
        let estimate = fast.estimate(&tiny(), &settings(16, 6, 1, Strategy::Latency), None, &pynq()).unwrap();
        assert_eq!((estimate.lut, estimate.ff, estimate.cycles), (272.0, 18.0 + 204.0, 1.0));
    }

    #[test]
    fn tiny_dense_with_lut_multipliers_by_hand() {
        // ap_fixed<8,3>: 8 LUT multipliers of 8 × 8 bits at 0.5 LUT per
        // partial-product bit (256 LUTs); 18-bit accumulators, 4 adders per
        // output (144 LUTs); 1.5 + 3 × 0.8 ns fits in one cycle.
        let estimate = run(&tiny(), &settings(8, 3, 1, Strategy::Latency), None);
        assert_eq!((estimate.lut, estimate.ff, estimate.dsp, estimate.bram), (400.0, 18.0, 0.0, 0.0));
        assert_eq!((estimate.cycles, estimate.interval), (0.0, 1.0));
    }

    #[test]
    fn table_activations_use_one_bram_per_two_features_and_two_cycles() {
        // 1 → Dense(64) → sigmoid: 64 lookups in 32 dual-port BRAMs; the
        // registered address and the BRAM read add two cycles.
        let arch = Arch::new(Shape::Flat(1), vec![Component::output("output", 64, Activation::Sigmoid)]);
        let estimate = run(&arch, &settings(16, 6, 1, Strategy::Latency), None);
        assert_eq!((estimate.bram, estimate.cycles), (32.0, 2.0));
        assert_eq!(estimate.ff, 18.0 + 64.0 * 16.0 + 64.0 * 18.0);
    }

    #[test]
    fn fewer_nonzero_weights_never_cost_more() {
        for width in [6, 16] {
            let hls = settings(width, 6.min(width), 1, Strategy::Latency);
            let mut last: Option<Estimate> = None;
            for percent in (0..=100).rev().step_by(10) {
                let info = [
                    LayerInfo {
                        weight_bits: width,
                        activation_bits: width,
                        nonzero_weights: Some(16 * 32 * percent / 100),
                    },
                    LayerInfo {
                        weight_bits: width,
                        activation_bits: width,
                        nonzero_weights: Some(32 * 5 * percent / 100),
                    },
                ];
                let estimate = run(&mlp(Norm::None), &hls, Some(&info));
                if let Some(last) = last {
                    assert!(estimate.lut <= last.lut && estimate.ff <= last.ff, "{width} bits, {percent} %");
                    assert!(estimate.dsp <= last.dsp && estimate.cycles <= last.cycles, "{width} bits, {percent} %");
                }
                last = Some(estimate);
            }
            let dense = run(&mlp(Norm::None), &hls, None);
            assert!(last.unwrap().lut < dense.lut / 2.0, "pruning must show: {width} bits");
        }
    }

    #[test]
    fn wider_types_never_cost_less_within_a_multiplier_kind() {
        let arch = mlp(Norm::None);
        let mut last: Option<Estimate> = None;
        for width in 2..=24 {
            let estimate = run(&arch, &settings(width, 1, 1, Strategy::Latency), None);
            if let Some(last) = last {
                assert!(estimate.dsp >= last.dsp, "DSPs at {width} bits");
                // Crossing into DSP multipliers moves products out of the LUTs.
                if estimate.dsp == last.dsp {
                    assert!(estimate.lut >= last.lut && estimate.ff >= last.ff, "{width} bits");
                }
            }
            last = Some(estimate);
        }
        assert_eq!(
            run(&arch, &settings(8, 3, 1, Strategy::Latency), None).dsp,
            5.0,
            "only the softmax multipliers (18 × 18 bits) use DSPs at 8 bits"
        );
    }

    #[test]
    fn per_layer_weight_bits_are_seen() {
        let arch = mlp(Norm::None);
        let hls = settings(8, 3, 1, Strategy::Latency);
        let info = |bits| {
            [
                LayerInfo { weight_bits: bits, activation_bits: 8, nonzero_weights: None },
                LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: None },
            ]
        };
        assert_eq!(run(&arch, &hls, Some(&info(8))), run(&arch, &hls, None));
        assert!(run(&arch, &hls, Some(&info(4))).lut < run(&arch, &hls, Some(&info(8))).lut);
    }

    #[test]
    fn more_reuse_means_fewer_multipliers_and_more_cycles() {
        let arch = mlp(Norm::None);
        for (width, strategy) in [(16, Strategy::Latency), (6, Strategy::Latency), (16, Strategy::Resource)] {
            let mut last: Option<Estimate> = None;
            for reuse in [1, 2, 4, 8, 16, 32] {
                let estimate = run(&arch, &settings(width, 6.min(width), reuse, strategy), None);
                assert_eq!(estimate.interval, reuse as f64);
                if let Some(last) = last {
                    assert!(estimate.dsp <= last.dsp, "{width} bits {strategy} reuse {reuse}");
                    assert!(estimate.cycles >= last.cycles + 1.0, "{width} bits {strategy} reuse {reuse}");
                    if estimate.dsp == 0.0 {
                        assert!(estimate.lut <= last.lut, "{width} bits {strategy} reuse {reuse}");
                    }
                }
                last = Some(estimate);
            }
        }
    }

    #[test]
    fn resource_strategy_puts_large_weight_arrays_in_bram() {
        let arch = Arch::new(Shape::Flat(64), vec![Component::output("output", 64, Activation::Identity)]);
        let resource = run(&arch, &settings(16, 6, 128, Strategy::Resource), None);
        // 4096 weights / 128 = 32 weights of 16 bits per word: 15 BRAMs wide.
        assert_eq!(resource.bram, 15.0);
        assert_eq!(run(&arch, &settings(16, 6, 128, Strategy::Latency), None).bram, 0.0);
        assert_eq!(run(&arch, &settings(16, 6, 8, Strategy::Resource), None).bram, 0.0);
    }

    #[test]
    fn batch_norm_after_dense_is_folded() {
        let hls = HlsSettings::default();
        assert_eq!(run(&mlp(Norm::Batch), &hls, None), run(&mlp(Norm::None), &hls, None));
        // A BatchNorm on the input cannot be folded.
        let mut arch = mlp(Norm::None);
        arch.components[0].layers.insert(0, Layer::BatchNorm);
        assert!(run(&arch, &hls, None).lut > run(&mlp(Norm::None), &hls, None).lut);
    }

    #[test]
    fn errors_name_the_problem() {
        let hls = HlsSettings::default();
        let conv = Arch::new(
            Shape::Image { height: 8, width: 8, channels: 1 },
            vec![Component {
                name: "c0".into(),
                block_type: crate::arch::BlockType::Conv,
                layers: vec![Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Same }, Layer::Flatten],
            }],
        );
        let message = format!("{:#}", AnalyticalEstimator::default().estimate(&conv, &hls, None, &pynq()).unwrap_err());
        assert!(message.contains("Conv2d") && message.contains("not support"), "{message}");

        let one = [LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: None }];
        let message = format!(
            "{:#}",
            AnalyticalEstimator::default().estimate(&mlp(Norm::None), &hls, Some(&one), &pynq()).unwrap_err()
        );
        assert!(message.contains("1 entries") && message.contains("2 Dense"), "{message}");

        let too_many = [
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: Some(16 * 32 + 1) },
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: None },
        ];
        let message = format!(
            "{:#}",
            AnalyticalEstimator::default().estimate(&mlp(Norm::None), &hls, Some(&too_many), &pynq()).unwrap_err()
        );
        assert!(message.contains("513 nonzero"), "{message}");

        let zero_reuse = HlsSettings { reuse_factor: 0, ..hls };
        assert!(AnalyticalEstimator::default().estimate(&mlp(Norm::None), &zero_reuse, None, &pynq()).is_err());
    }

    #[test]
    fn percentages_follow_the_board() {
        let hls = settings(16, 6, 1, Strategy::Latency);
        let small = run(&mlp(Norm::None), &hls, None);
        let large = AnalyticalEstimator::default()
            .estimate(&mlp(Norm::None), &hls, None, &Board::by_name("alveo-u250").unwrap())
            .unwrap();
        assert_eq!((small.lut, small.dsp), (large.lut, large.dsp));
        assert!((small.dsp_pct / large.dsp_pct - 12_288.0 / 220.0).abs() < 1e-9);
        assert_eq!(AnalyticalEstimator::default().name(), "analytical");
    }

    /// sMAPE in %: the mean of 2·|p − a| / (|p| + |a|), a pair of zeros
    /// counting as exact.
    fn smape(pairs: &[(f64, f64)]) -> f64 {
        let terms = pairs.iter().map(|&(predicted, actual)| {
            let scale = predicted.abs() + actual.abs();
            if scale == 0.0 { 0.0 } else { 2.0 * (predicted - actual).abs() / scale }
        });
        100.0 * terms.sum::<f64>() / pairs.len() as f64
    }

    #[test]
    fn smape_by_hand() {
        assert_eq!(smape(&[(0.0, 0.0), (1.0, 3.0)]), 50.0);
    }

    /// The analytical estimator against real HLS reports of hls4ml's
    /// regression tests (testdata/hls4ml_baselines.json says where each number
    /// comes from). Prints the error per resource; asserts only a loose bound,
    /// so that the numbers are reported, not tuned to.
    #[test]
    fn validation_against_hls4ml_synthesis_baselines() {
        let data: serde_json::Value = serde_json::from_str(include_str!("testdata/hls4ml_baselines.json")).unwrap();
        let estimator = AnalyticalEstimator::new(5.0).unwrap();
        let board = Board::by_name("alveo-u250").unwrap();
        let hls = settings(16, 6, 1, Strategy::Latency);
        let keys = ["lut", "ff", "dsp", "bram", "latency"];
        let mut pairs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); keys.len()];
        println!("{:<90} {:>13} {:>11} {:>9} {:>9} {:>9}", "report", "LUT", "FF", "DSP", "BRAM", "cycles");
        for case in data["cases"].as_array().unwrap() {
            let number = |key: &str| case[key].as_f64().unwrap_or_else(|| panic!("{key} in {case}"));
            let activation = Activation::parse(case["activation"].as_str().unwrap()).unwrap();
            let arch = Arch::new(
                Shape::Flat(number("inputs") as usize),
                vec![Component::output("output", number("units") as usize, activation)],
            );
            let estimate = estimator.estimate(&arch, &hls, None, &board).unwrap();
            let predicted = [estimate.lut, estimate.ff, estimate.dsp, estimate.bram, estimate.cycles];
            let mut row =
                format!("{:<90}", case["path"].as_str().unwrap().trim_start_matches("test/pytest/baselines/"));
            for (index, key) in keys.iter().enumerate() {
                pairs[index].push((predicted[index], number(key)));
                row += &format!(" {:>6}/{:<6}", predicted[index], number(key));
            }
            println!("{row}");
            assert_eq!(estimate.interval, number("interval"));
        }
        for (key, pairs) in keys.iter().zip(&pairs) {
            let error = smape(pairs);
            println!("sMAPE {key}: {error:.1} % over {} reports", pairs.len());
            assert!(error.is_finite() && error < 200.0, "{key}: {error}");
        }
    }
}
