//! A transparent model of what hls4ml generates and what Vivado/Vitis HLS
//! makes of it. Each design is first counted in hardware units
//! ([`Features`]: multiplier partial-product bits, adder bits, multiplexer
//! bits, table lookups, register bits, DSP products, BRAM words, pipeline
//! depth), from the ops of `ops.rs` and the settings (precision, reuse
//! factor, strategy, io type, clock). Resources are then those counts
//! priced by [`Coefficients`]: one price per unit, each named after the
//! hardware fact it stands for.
//!
//! The prices are fitted, reproducibly, on the calibration corpus of real
//! hls4ml synthesis reports (`testdata/corpus/`, `snac estimate
//! --calibrate`), by non-negative least squares on relative error; the
//! rules (which products become DSPs, when an array goes to BRAM, how a
//! layer is pipelined) come from hls4ml's templates and are not fitted.
//! `snac estimate --validate` reports the error with each source left out
//! of the fit that predicts it.

use super::ops::{ActKind, DenseOp, Op, ceil_log2, lower};
use super::{Board, Estimate, HlsSettings, IoType, LayerInfo, Report, ResourceEstimator, Strategy};
use crate::arch::Arch;
use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

/// The DSP48's multiplier is 27 × 18 bits on UltraScale (25 × 18 on
/// 7-series); wider products are tiled over several slices.
const DSP_PORT_A_BITS: u32 = 27;
const DSP_PORT_B_BITS: u32 = 18;
/// HLS maps a product to a DSP48 only when its wider operand has more than
/// this many bits and its narrower more than [`DSP_MIN_NARROW_BITS`]:
/// narrower products are cheaper in LUTs. hls4ml's own resource rule is the
/// same: weights under 9 bits use no DSP (`hls4ml/backends/fpga`), which is
/// why quantized hls4ml designs use few or none.
const DSP_MIN_WIDE_BITS: u32 = 10;
const DSP_MIN_NARROW_BITS: u32 = 8;
/// One BRAM_18K holds 18 Kbit; its widest port is 36 bits, 512 words deep.
const BRAM_WORD_BITS: usize = 36;
const BRAM_DEPTH_AT_WORD: usize = 512;
/// Arrays shallower than this stay in LUTRAM/registers (a LUT6 is a 64 × 1
/// RAM); deeper ones go to block RAM.
const BRAM_MIN_DEPTH: usize = 64;
/// hls4ml's activation tables: 1024 words of `ap_fixed<18,8>`, one BRAM_18K;
/// a dual-port BRAM serves two lookups per cycle, so HLS replicates the
/// table once per two parallel lookups.
const LOOKUPS_PER_BRAM: f64 = 2.0;
const TABLE_WORD_BITS: u32 = 18;

/// The price of each hardware unit, and the delays the schedule uses.
/// Fitted on the corpus (`snac estimate --calibrate` prints this table).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    /// LUTs per unit of [`Features::lut`], in the order of [`LUT_TERMS`].
    pub lut: [f64; LUT_TERMS.len()],
    /// FFs per unit of [`Features::ff`], in the order of [`FF_TERMS`].
    pub ff: [f64; FF_TERMS.len()],
    /// DSPs per DSP-eligible product by a constant weight: hls4ml's weights
    /// are constants, and HLS strength-reduces the ones that are powers of
    /// two or have few set bits.
    pub dsp_per_constant_product: f64,
    /// Combinational delays in ns: a DSP multiply, a LUT multiply, one
    /// adder-tree level.
    pub dsp_multiply_ns: f64,
    pub lut_multiply_ns: f64,
    pub adder_level_ns: f64,
    /// Cycles every layer adds beyond its logic depth (its output register,
    /// a table read), and every streaming layer beyond its positions.
    pub layer_cycles: f64,
    pub stream_layer_cycles: f64,
    /// FFs per bit alive at a pipeline-stage boundary: each layer's live
    /// bits times the stages its logic depth takes at the clock.
    pub ff_per_stage_bit: f64,
}

/// What the LUT terms count.
pub const LUT_TERMS: [&str; 8] = [
    "constant-multiplier partial-product bit (input bits × weight bits of a LUT multiplier)",
    "variable-multiplier partial-product bit (activation × activation, or Resource-strategy weights)",
    "adder bit (accumulator width × adders)",
    "multiplexer input bit (reuse and streaming input selection)",
    "bitwise-logic bit (ReLU, comparators, saturation)",
    "table lookup (index arithmetic of tanh/sigmoid/softmax tables)",
    "shift-register/LUTRAM bit (FIFOs, line buffers, small weight memories)",
    "layer (control logic of one hls4ml layer)",
];

/// What the FF terms count.
pub const FF_TERMS: [&str; 6] = [
    "output register bit (a layer's results, once per pipeline stage boundary)",
    "pipeline register bit (partial sums alive at a cycle boundary inside a layer)",
    "accumulator bit (sums kept across reuse cycles or streamed positions)",
    "table-lookup register bit (registered table address and word)",
    "layer (handshake and loop-control registers of one hls4ml layer)",
    "input register bit (io_parallel registers the model's input)",
];

/// The hardware units of one design.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Features {
    pub lut: [f64; LUT_TERMS.len()],
    pub ff: [f64; FF_TERMS.len()],
    /// DSP slices of products by variables (always DSPs when wide enough).
    pub dsp_variable: f64,
    /// DSP slices of products by constant weights, before strength reduction.
    pub dsp_constant: f64,
    pub bram: f64,
    /// Logic depth of each layer: DSP multiplies, LUT multiplies and adder
    /// levels chained (turned into cycles at the clock by [`price`]), and the
    /// cycles that do not depend on it.
    pub layer_depth: Vec<[f64; 3]>,
    /// Bits alive inside each layer (its products at accumulator width),
    /// registered at every stage boundary of its pipeline.
    pub layer_live_bits: Vec<f64>,
    pub fixed_cycles: f64,
    pub interval: f64,
}

/// Which delays a layer's logic chains: multiplies (DSP or LUT) then adder
/// levels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Depth {
    dsp_multiplies: f64,
    lut_multiplies: f64,
    adder_levels: f64,
}

/// Where every fit starts, and what it keeps for a unit no design uses:
/// prices of the order of the hardware facts (a LUT6 with carry sums about
/// two partial-product bits; one LUT per adder bit; a LUT selects one of
/// three inputs; ~1 FF per registered bit) and delays of the order Vivado
/// HLS assigns on 7-series/UltraScale parts.
pub const PRIOR: Coefficients = Coefficients {
    lut: [0.5, 0.5, 1.0, 0.33, 0.5, 60.0, 0.03, 30.0],
    ff: [1.0, 1.0, 1.0, 1.0, 20.0, 1.0],
    dsp_per_constant_product: 0.95,
    dsp_multiply_ns: 2.0,
    lut_multiply_ns: 1.5,
    adder_level_ns: 0.8,
    layer_cycles: 0.5,
    stream_layer_cycles: 2.0,
    ff_per_stage_bit: 0.5,
};

/// The shipped prices: the output of `snac estimate --calibrate` on the
/// embedded corpus (C-synthesis reports); a test checks that they are.
pub const CSYNTH: Coefficients = Coefficients {
    lut: [0.3013, 0.5361, 1.56, 0.07082, 0.8991, 94.84, 0.04165, 43.78],
    ff: [0.0, 0.0, 3.517, 1.913, 0.0, 1.854],
    dsp_per_constant_product: 0.88,
    dsp_multiply_ns: 5.75,
    lut_multiply_ns: 5.75,
    adder_level_ns: 1.8,
    layer_cycles: 0.0,
    stream_layer_cycles: 1.0,
    ff_per_stage_bit: 0.04943,
};

/// The shipped prices for post-synthesis (Vivado) figures: the corpus has no
/// post-synthesis report yet, so these are the C-synthesis prices, and
/// `--report synth` says so.
pub const SYNTH: Coefficients = CSYNTH;

/// DSP slices for one `a × b` product, or 0 when HLS builds it from LUTs.
fn dsp_tiles(a_bits: u32, b_bits: u32) -> f64 {
    let (wide, narrow) = (a_bits.max(b_bits), a_bits.min(b_bits));
    if wide <= DSP_MIN_WIDE_BITS || narrow <= DSP_MIN_NARROW_BITS {
        return 0.0;
    }
    (wide.div_ceil(DSP_PORT_A_BITS) * narrow.div_ceil(DSP_PORT_B_BITS)) as f64
}

/// LUT term indices.
mod lut {
    pub const CONST_MULT: usize = 0;
    pub const VAR_MULT: usize = 1;
    pub const ADDER: usize = 2;
    pub const MUX: usize = 3;
    pub const LOGIC: usize = 4;
    pub const TABLE: usize = 5;
    pub const SRL: usize = 6;
    pub const LAYER: usize = 7;
}

/// FF term indices.
mod ff {
    pub const OUTPUT: usize = 0;
    pub const PIPELINE: usize = 1;
    pub const ACCUM: usize = 2;
    pub const TABLE: usize = 3;
    pub const LAYER: usize = 4;
    pub const INPUT: usize = 5;
}

/// Counts the hardware of `ops` built with `settings`; `fabric`: every
/// multiplier in LUTs (HLS's `config_op mul -impl fabric`).
pub fn features(ops: &[Op], settings: &HlsSettings, fabric: bool) -> Features {
    let mut f = Features::default();
    let stream = settings.io_type == IoType::Stream;
    let mut interval = 1.0f64;
    for op in ops {
        if let Op::Input { features, bits } = *op {
            if !stream {
                f.ff[ff::INPUT] += (features as u32 * bits) as f64;
            }
            continue;
        }
        let positions = op.positions() as f64;
        // io_parallel builds element-wise layers for every position at once;
        // io_stream, and every convolution, per-element Dense and the
        // attention's per-query work (its products and its softmax rows),
        // one position at a time.
        let parallel = if stream || is_serial(op) { 1.0 } else { positions };
        let serial = positions / parallel;
        f.lut[lut::LAYER] += 1.0;
        f.ff[ff::LAYER] += 1.0;
        let (depth, ii) = op_units(op, parallel, settings, fabric, &mut f);
        interval = interval.max(schedule(op, (depth, ii), (serial, parallel), settings, &mut f));
    }
    f.interval = interval;
    f
}

/// Whether io_parallel still builds `op` one position at a time.
fn is_serial(op: &Op) -> bool {
    match op {
        Op::Dense(_) | Op::VarProducts { .. } | Op::Softmax { .. } => true,
        Op::Input { .. }
        | Op::Act { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Pool { .. }
        | Op::Add { .. } => false,
    }
}

/// Counts the units of one op, `parallel` copies of it built side by side
/// (one function per op kind); returns its logic depth and its initiation
/// interval per position.
fn op_units(op: &Op, parallel: f64, settings: &HlsSettings, fabric: bool, f: &mut Features) -> (Depth, f64) {
    let mut depth = Depth::default();
    let mut ii = 1.0;
    match *op {
        Op::Dense(dense) => ii = dense_layer(&dense, settings, fabric, f, &mut depth),
        Op::VarProducts { sums, terms, bits, accum_bits, .. } => {
            var_products((sums, terms), (bits, accum_bits), fabric, f, &mut depth)
        }
        Op::Act { kind, features, bits, .. } => activation(kind, features as f64 * parallel, bits, f),
        Op::BatchNorm { features, bits, .. } => batch_norm(features as f64 * parallel, bits, fabric, f, &mut depth),
        Op::LayerNorm { features, bits, .. } => layer_norm(features, bits, parallel, f, &mut depth),
        Op::Softmax { features, bits, .. } => softmax(features, bits, parallel, fabric, f, &mut depth),
        Op::Pool { max, window, channels, bits, row, .. } => {
            let stream = settings.io_type == IoType::Stream;
            pool((max, window, channels, bits, row), parallel, stream, f, &mut depth)
        }
        Op::Add { features, bits, .. } => {
            f.lut[lut::ADDER] += features as f64 * parallel * bits as f64;
            depth.adder_levels = 1.0;
        }
        Op::Input { .. } => unreachable!("handled by features"),
    }
    (depth, ii)
}

/// Products of two variables: DSPs or LUT multipliers, and their adders.
fn var_products(
    (sums, terms): (usize, usize),
    (bits, accum_bits): (u32, u32),
    fabric: bool,
    f: &mut Features,
    depth: &mut Depth,
) {
    let products = (sums * terms) as f64;
    let tiles = if fabric { 0.0 } else { dsp_tiles(bits, bits) };
    if tiles > 0.0 {
        f.dsp_variable += products * tiles;
        depth.dsp_multiplies = 1.0;
    } else {
        f.lut[lut::VAR_MULT] += products * (bits * bits) as f64;
        depth.lut_multiplies = 1.0;
    }
    f.lut[lut::ADDER] += products * accum_bits as f64;
    depth.adder_levels = ceil_log2(terms) as f64;
    f.ff[ff::PIPELINE] += sums as f64 * accum_bits as f64;
}

/// `n` activations of one kind.
fn activation(kind: ActKind, n: f64, bits: u32, f: &mut Features) {
    match kind {
        ActKind::Identity => {}
        ActKind::Relu => f.lut[lut::LOGIC] += n * bits as f64,
        ActKind::LeakyRelu => {
            f.lut[lut::LOGIC] += n * bits as f64;
            f.lut[lut::CONST_MULT] += n * (bits * 2) as f64;
        }
        ActKind::Table => table_lookups(n, bits, f),
    }
}

/// `n` unfolded BatchNorm features: a multiply and an add each.
fn batch_norm(n: f64, bits: u32, fabric: bool, f: &mut Features, depth: &mut Depth) {
    let tiles = if fabric { 0.0 } else { dsp_tiles(bits, bits) };
    if tiles > 0.0 {
        f.dsp_constant += n * tiles;
        depth.dsp_multiplies = 1.0;
    } else {
        f.lut[lut::CONST_MULT] += n * (bits * bits) as f64;
        depth.lut_multiplies = 1.0;
    }
    f.lut[lut::ADDER] += n * (2 * bits) as f64;
    depth.adder_levels = 1.0;
}

/// LayerNorm over `features`, `parallel` times.
fn layer_norm(features: usize, bits: u32, parallel: f64, f: &mut Features, depth: &mut Depth) {
    let n = features as f64 * parallel;
    let wide = (2 * bits + ceil_log2(features)) as f64;
    f.lut[lut::ADDER] += 2.0 * n * wide;
    f.lut[lut::VAR_MULT] += 2.0 * n * (bits * bits) as f64;
    table_lookups(parallel, 2 * bits, f);
    depth.adder_levels = 2.0 * ceil_log2(features) as f64;
    depth.lut_multiplies = 2.0;
}

/// Softmax over `features`, `parallel` times: an exp table per feature, a
/// sum tree, one inverse table, one multiplication per feature by the
/// inverse.
fn softmax(features: usize, bits: u32, parallel: f64, fabric: bool, f: &mut Features, depth: &mut Depth) {
    let n = features as f64 * parallel;
    table_lookups(n, bits, f);
    table_lookups(parallel, TABLE_WORD_BITS, f);
    let sum_bits = (TABLE_WORD_BITS + ceil_log2(features)) as f64;
    f.lut[lut::ADDER] += n * sum_bits;
    let tiles = if fabric { 0.0 } else { dsp_tiles(TABLE_WORD_BITS, TABLE_WORD_BITS) };
    if tiles > 0.0 {
        f.dsp_variable += n * tiles;
        depth.dsp_multiplies = 1.0;
    } else {
        f.lut[lut::VAR_MULT] += n * (TABLE_WORD_BITS * TABLE_WORD_BITS) as f64;
        depth.lut_multiplies = 1.0;
    }
    depth.adder_levels = ceil_log2(features) as f64;
    f.fixed_cycles += 2.0;
}

/// Max or average pooling: comparators or adders over each window; a
/// streaming pooling buffers a row.
fn pool(
    (max, window, channels, bits, row): (bool, usize, usize, u32, usize),
    parallel: f64,
    stream: bool,
    f: &mut Features,
    depth: &mut Depth,
) {
    let n = (channels * window.saturating_sub(1)) as f64 * parallel;
    if max {
        f.lut[lut::LOGIC] += n * 2.0 * bits as f64;
    } else {
        f.lut[lut::ADDER] += n * (bits + ceil_log2(window)) as f64;
    }
    depth.adder_levels = ceil_log2(window) as f64;
    if stream {
        f.lut[lut::SRL] += (row * channels * bits as usize) as f64;
    }
}

/// What one op adds beyond its units: output registers, pipeline depth,
/// cycles, and under io_stream the FIFO after it. Returns the interval it
/// imposes on the model.
fn schedule(
    op: &Op,
    (depth, ii): (Depth, f64),
    (serial, parallel): (f64, f64),
    settings: &HlsSettings,
    f: &mut Features,
) -> f64 {
    let stream = settings.io_type == IoType::Stream;
    let out_bits = output_bits(op) * parallel;
    f.ff[ff::OUTPUT] += out_bits;
    f.layer_depth.push([depth.dsp_multiplies, depth.lut_multiplies, depth.adder_levels]);
    f.layer_live_bits.push(live_bits(op, settings) * parallel);
    // One position every `ii` cycles; the last one's logic is in the
    // layer's stages.
    f.fixed_cycles += serial * ii - 1.0;
    if stream {
        // The FIFO after the layer: one word of its outputs per position,
        // as deep as the layer has positions (hls4ml's default depth is
        // the feature map's height × width); a deep one is block RAM.
        let (width, depth) = (output_bits(op) as usize, op.positions());
        if depth >= BRAM_MIN_DEPTH {
            f.bram += (width.div_ceil(BRAM_WORD_BITS) * depth.div_ceil(BRAM_DEPTH_AT_WORD)) as f64;
        } else {
            f.lut[lut::SRL] += (width * depth) as f64;
        }
    }
    // Streaming layers overlap (dataflow): the slowest sets the interval.
    if stream || serial > 1.0 { serial * ii } else { ii }
}

/// Bits alive inside a layer at one position: its instantiated products at
/// accumulator width (or its outputs, for element-wise layers).
fn live_bits(op: &Op, settings: &HlsSettings) -> f64 {
    match *op {
        Op::Dense(d) => {
            let reuse = d.reuse.unwrap_or(settings.reuse_factor).clamp(1, (d.n_in * d.n_out).max(1));
            d.nonzero.div_ceil(reuse) as f64 * d.accum_bits as f64
        }
        Op::VarProducts { sums, terms, accum_bits, .. } => (sums * terms) as f64 * accum_bits as f64,
        Op::Input { .. }
        | Op::Act { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Softmax { .. }
        | Op::Pool { .. }
        | Op::Add { .. } => output_bits(op),
    }
}

/// Bits a layer hands to the next at one position.
fn output_bits(op: &Op) -> f64 {
    match *op {
        Op::Dense(d) => (d.n_out as u32 * d.result_bits) as f64,
        Op::VarProducts { sums, accum_bits, .. } => (sums as u32 * accum_bits) as f64,
        Op::Act { features, bits, .. }
        | Op::BatchNorm { features, bits, .. }
        | Op::LayerNorm { features, bits, .. }
        | Op::Softmax { features, bits, .. }
        | Op::Add { features, bits, .. } => (features as u32 * bits) as f64,
        Op::Pool { channels, bits, .. } => (channels as u32 * bits) as f64,
        Op::Input { features, bits } => (features as u32 * bits) as f64,
    }
}

/// `n` parallel table lookups: index logic and registers, one BRAM per two.
fn table_lookups(n: f64, index_bits: u32, f: &mut Features) {
    f.lut[lut::TABLE] += n;
    f.ff[ff::TABLE] += n * (index_bits + TABLE_WORD_BITS) as f64;
    f.bram += (n / LOOKUPS_PER_BRAM).ceil();
}

/// One Dense layer or convolution; returns its initiation interval per
/// position.
fn dense_layer(d: &DenseOp, settings: &HlsSettings, fabric: bool, f: &mut Features, depth: &mut Depth) -> f64 {
    let total = d.n_in * d.n_out;
    let reuse = d.reuse.unwrap_or(settings.reuse_factor).clamp(1, total.max(1));
    let zeros = total - d.nonzero;
    // hls4ml's multiplier limit: ⌈n_in·n_out / R⌉ − ⌊zeros / R⌋.
    let multipliers = (total.div_ceil(reuse) - zeros / reuse) as f64;
    let (a, w) = (d.input_bits, d.weight_bits);
    let tiles = if fabric { 0.0 } else { dsp_tiles(a, w) };
    let constant_weights = settings.strategy == Strategy::Latency;
    // A product by a constant weight built from LUTs is logic specific to
    // that constant (shifts and adds): HLS cannot share it between weights,
    // so the reuse factor does not reduce it, nor its adders (real Latency
    // reports at reuse 100 keep ~80 % of the reuse-1 LUTs). DSPs and
    // products by weights read from memory (Resource) are shared.
    let shared = tiles > 0.0 || !constant_weights;
    let instances = if shared { multipliers } else { d.nonzero as f64 };
    if tiles > 0.0 {
        if constant_weights {
            f.dsp_constant += multipliers * tiles;
        } else {
            f.dsp_variable += multipliers * tiles;
        }
        depth.dsp_multiplies = 1.0;
    } else {
        let term = if constant_weights { lut::CONST_MULT } else { lut::VAR_MULT };
        f.lut[term] += instances * (a * w) as f64;
        depth.lut_multiplies = 1.0;
    }
    // Every product is added into its output's sum at the accumulator width.
    f.lut[lut::ADDER] += instances * d.accum_bits as f64;
    let terms_per_output = (d.nonzero.div_ceil(d.n_out.max(1)).div_ceil(reuse)).max(1);
    depth.adder_levels = ceil_log2(terms_per_output + 1) as f64;
    // Partial sums registered inside the adder tree.
    f.ff[ff::PIPELINE] += (d.n_out * terms_per_output.div_ceil(2)) as f64 * d.accum_bits as f64;
    if reuse > 1 && shared {
        // Each shared multiplier picks one of R inputs per cycle.
        f.lut[lut::MUX] += multipliers * a as f64 * (reuse - 1) as f64;
    }
    if reuse > 1 {
        // The outputs keep accumulators across the R cycles.
        f.ff[ff::ACCUM] += (d.n_out as u32 * d.accum_bits) as f64;
        if !constant_weights {
            // The Resource strategy's weights: R words of ⌈N/R⌉ weights.
            let word_bits = total.div_ceil(reuse) * w as usize;
            if reuse >= BRAM_MIN_DEPTH {
                f.bram += (word_bits.div_ceil(BRAM_WORD_BITS) * reuse.div_ceil(BRAM_DEPTH_AT_WORD)) as f64;
            } else {
                f.lut[lut::SRL] += (word_bits * reuse) as f64;
            }
        }
    }
    if d.positions > 1 {
        f.ff[ff::ACCUM] += (d.n_out as u32 * d.accum_bits) as f64;
        if let (Some((kernel, width, channels)), IoType::Stream) = (d.window, settings.io_type) {
            // The streaming line buffer: k − 1 rows of the input image, and
            // the k × k window's multiplexers.
            let line_bits = (kernel.saturating_sub(1) * width * channels) * a as usize;
            if width >= BRAM_MIN_DEPTH {
                f.bram += ((kernel.saturating_sub(1) * channels * a as usize).div_ceil(BRAM_WORD_BITS)
                    * width.div_ceil(BRAM_DEPTH_AT_WORD)) as f64;
            } else {
                f.lut[lut::SRL] += line_bits as f64;
            }
            f.lut[lut::MUX] += (kernel * kernel * channels * a as usize) as f64;
        }
    }
    reuse as f64
}

/// A design's estimate from its features and prices; `layer_depth`
/// becomes cycles at `settings.clock_period_ns`.
pub fn price(features: &Features, c: &Coefficients, settings: &HlsSettings, board: &Board) -> Estimate {
    let dot = |units: &[f64], prices: &[f64]| units.iter().zip(prices).map(|(u, p)| u * p).sum::<f64>();
    let lut = dot(&features.lut, &c.lut);
    let ff = dot(&features.ff, &c.ff);
    let dsp = features.dsp_variable + features.dsp_constant * c.dsp_per_constant_product;
    let stages = layer_stages(features, c, settings);
    let ff = ff + c.ff_per_stage_bit * stage_bits(features, &stages);
    // io_parallel's top function is one pipeline with the layers inlined:
    // HLS chains logic across layer boundaries, so the latency is the whole
    // depth over the period (registers crossed), plus a fixed cost per
    // layer with logic.
    let period = settings.clock_period_ns * (1.0 - settings.backend.clock_uncertainty());
    let delays = [c.dsp_multiply_ns, c.lut_multiply_ns, c.adder_level_ns];
    let with_logic = features.layer_depth.iter().filter(|d| d.iter().any(|&u| u > 0.0));
    let depth_ns: f64 = with_logic.clone().map(|d| dot(d, &delays)).sum();
    let logic_cycles = (depth_ns / period).floor() + c.layer_cycles * with_logic.count() as f64;
    let stream_cycles = if settings.io_type == IoType::Stream {
        c.stream_layer_cycles * features.layer_depth.len() as f64
    } else {
        0.0
    };
    let cycles = (logic_cycles + features.fixed_cycles + stream_cycles).round().max(0.0);
    Estimate::from_counts(lut, ff, dsp, features.bram, cycles, features.interval.round(), board)
}

/// Pipeline stages of each layer at the clock: its logic depth over the
/// usable period, plus the layer's own register (none for a layer without
/// logic, which HLS merges into its neighbour).
pub fn layer_stages(features: &Features, c: &Coefficients, settings: &HlsSettings) -> Vec<f64> {
    let period = settings.clock_period_ns * (1.0 - settings.backend.clock_uncertainty());
    let delays = [c.dsp_multiply_ns, c.lut_multiply_ns, c.adder_level_ns];
    features
        .layer_depth
        .iter()
        .map(|depth| {
            if depth.iter().any(|&units| units > 0.0) {
                (depth.iter().zip(&delays).map(|(u, d)| u * d).sum::<f64>() / period).floor() + c.layer_cycles
            } else {
                0.0
            }
        })
        .collect()
}

/// Σ over layers of stages × live bits: the register bits of the pipeline.
pub fn stage_bits(features: &Features, stages: &[f64]) -> f64 {
    features.layer_live_bits.iter().zip(stages).map(|(bits, stages)| bits * stages).sum()
}

/// The analytical estimator: C-synthesis or post-synthesis prices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalyticalEstimator {
    pub report: Report,
    pub coefficients: Coefficients,
}

impl Default for AnalyticalEstimator {
    /// C-synthesis figures with the shipped prices.
    fn default() -> AnalyticalEstimator {
        AnalyticalEstimator::for_report(Report::Csynth)
    }
}

impl AnalyticalEstimator {
    /// The shipped prices for `report`.
    pub fn for_report(report: Report) -> AnalyticalEstimator {
        let coefficients = match report {
            Report::Csynth => CSYNTH,
            Report::Synth => SYNTH,
        };
        AnalyticalEstimator { report, coefficients }
    }

    /// The estimate of `ops`, as [`ResourceEstimator::estimate`] gives it
    /// for an architecture.
    pub fn estimate_ops(&self, ops: &[Op], settings: &HlsSettings, board: &Board) -> Result<Estimate> {
        settings.check()?;
        Ok(price(&features(ops, settings, false), &self.coefficients, settings, board))
    }
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
        let ops = lower(arch, settings, layer_info)?;
        self.estimate_ops(&ops, settings, board)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Activation, Aggregation, BlockType, Component, Layer, Norm, Padding, Shape};
    use crate::fixed::FixedPoint;

    fn settings(width: u32, reuse_factor: usize, strategy: Strategy) -> HlsSettings {
        HlsSettings {
            precision: FixedPoint::ap_fixed(width, width.min(6)).unwrap(),
            reuse_factor,
            strategy,
            ..HlsSettings::default()
        }
    }

    fn board() -> Board {
        Board::by_name("zcu102").unwrap()
    }

    /// 16 → 32 relu → 5 softmax, as a jet-tagging MLP.
    fn mlp() -> Arch {
        Arch::new(
            Shape::Flat(16),
            vec![
                Component::mlp("b0", 32, Norm::None, Activation::Relu),
                Component::output("output", 5, Activation::Softmax),
            ],
        )
    }

    fn run(arch: &Arch, settings: &HlsSettings, info: Option<&[LayerInfo]>) -> Estimate {
        AnalyticalEstimator::default().estimate(arch, settings, info, &board()).unwrap()
    }

    #[test]
    fn one_dense_layer_counted_by_hand() {
        // 4 → 2 at ap_fixed<6,6>: 8 LUT multipliers of 6 × 6 bits (below
        // the DSP threshold), each product added at the exact accumulator
        // width 6 + 6 + ⌈log2 4⌉ = 14 bits.
        let arch = Arch::new(Shape::Flat(4), vec![Component::output("output", 2, Activation::Identity)]);
        let ops = lower(&arch, &settings(6, 1, Strategy::Latency), None).unwrap();
        let f = features(&ops, &settings(6, 1, Strategy::Latency), false);
        assert_eq!(f.lut[lut::CONST_MULT], 8.0 * 36.0);
        assert_eq!(f.lut[lut::ADDER], 8.0 * 14.0);
        assert_eq!((f.dsp_constant, f.dsp_variable, f.bram), (0.0, 0.0, 0.0));
        // At 16 bits the same products are DSPs.
        let f = features(&ops_at(&arch, 16), &settings(16, 1, Strategy::Latency), false);
        assert_eq!((f.dsp_constant, f.lut[lut::CONST_MULT]), (8.0, 0.0));
        // Forced into fabric (config_op mul -impl fabric): LUTs again.
        let f = features(&ops_at(&arch, 16), &settings(16, 1, Strategy::Latency), true);
        assert_eq!((f.dsp_constant, f.lut[lut::CONST_MULT]), (0.0, 8.0 * 256.0));
    }

    fn ops_at(arch: &Arch, width: u32) -> Vec<Op> {
        lower(arch, &settings(width, 1, Strategy::Latency), None).unwrap()
    }

    #[test]
    fn pruned_weights_cost_nothing_and_reuse_trades_multipliers_for_cycles() {
        let hls = settings(8, 1, Strategy::Latency);
        let dense = run(&mlp(), &hls, None);
        let pruned = [
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: Some(16 * 32 / 4) },
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: Some(32 * 5 / 4) },
        ];
        let sparse = run(&mlp(), &hls, Some(&pruned));
        assert!(sparse.lut < 0.6 * dense.lut, "{sparse:?} vs {dense:?}");
        let mut last: Option<Estimate> = None;
        for reuse in [1, 2, 4, 8, 16] {
            let estimate = run(&mlp(), &settings(16, reuse, Strategy::Latency), None);
            assert_eq!(estimate.interval, reuse as f64);
            if let Some(last) = last {
                assert!(estimate.dsp < last.dsp, "reuse {reuse}: {estimate:?}");
                assert!(
                    estimate.cycles >= last.cycles && estimate.cycles >= reuse as f64,
                    "reuse {reuse}: {estimate:?}"
                );
            }
            last = Some(estimate);
        }
    }

    #[test]
    fn a_faster_clock_takes_more_cycles() {
        let arch = Arch::new(Shape::Flat(64), vec![Component::output("output", 32, Activation::Relu)]);
        let cycles = |ns: f64| {
            run(&arch, &HlsSettings { clock_period_ns: ns, ..settings(16, 1, Strategy::Latency) }, None).cycles
        };
        assert!(cycles(2.0) > cycles(10.0), "{} vs {}", cycles(2.0), cycles(10.0));
        let bad = HlsSettings { clock_period_ns: 0.0, ..HlsSettings::default() };
        assert!(AnalyticalEstimator::default().estimate(&arch, &bad, None, &board()).is_err());
    }

    #[test]
    fn resource_strategy_keeps_large_weight_arrays_in_bram() {
        let arch = Arch::new(Shape::Flat(64), vec![Component::output("output", 64, Activation::Identity)]);
        // 4096 weights / 128 = 32 weights of 16 bits per word: 15 BRAMs wide.
        assert_eq!(run(&arch, &settings(16, 128, Strategy::Resource), None).bram, 15.0);
        assert_eq!(run(&arch, &settings(16, 128, Strategy::Latency), None).bram, 0.0);
        assert_eq!(run(&arch, &settings(16, 8, Strategy::Resource), None).bram, 0.0);
    }

    /// Conv, ConvAttention and DeepSets models: every block the search
    /// spaces produce gets an estimate, io_stream conv has a line buffer and
    /// takes one position per cycle.
    #[test]
    fn conv_attention_and_deepsets_are_estimated() {
        let image = Shape::Image { height: 8, width: 8, channels: 1 };
        let conv = Arch::new(
            image,
            vec![
                Component {
                    name: "c0".into(),
                    block_type: BlockType::Conv,
                    layers: vec![
                        Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Same },
                        Layer::BatchNorm,
                        Layer::Act(Activation::Relu),
                    ],
                },
                Component {
                    name: "a0".into(),
                    block_type: BlockType::ConvAttn,
                    layers: vec![Layer::ConvAttention { hidden: 4, scale: true }],
                },
                Component { name: "f".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] },
                Component::output("output", 10, Activation::Softmax),
            ],
        );
        let parallel = run(&conv, &settings(8, 1, Strategy::Latency), None);
        let stream = run(&conv, &HlsSettings { io_type: IoType::Stream, ..settings(8, 1, Strategy::Latency) }, None);
        for estimate in [parallel, stream] {
            assert!(estimate.lut > 0.0 && estimate.ff > 0.0 && estimate.cycles >= 64.0, "{estimate:?}");
        }
        // Three 1×1 projections, scores, softmax, weighted sum, output
        // projection, residual.
        let ops = lower(&conv, &settings(8, 1, Strategy::Latency), None).unwrap();
        assert_eq!(ops.iter().filter(|op| matches!(op, Op::VarProducts { .. })).count(), 2);
        assert_eq!(ops.iter().filter(|op| matches!(op, Op::Softmax { rows: 64, .. })).count(), 1);

        let sets = Arch::new(
            Shape::Set { elements: 16, features: 3 },
            vec![
                Component::mlp("phi_0", 8, Norm::None, Activation::Relu),
                Component {
                    name: "aggregate".into(),
                    block_type: BlockType::Aggregate,
                    layers: vec![Layer::Aggregate(Aggregation::Mean)],
                },
                Component::output("output", 5, Activation::Softmax),
            ],
        );
        let estimate = run(&sets, &settings(8, 1, Strategy::Latency), None);
        assert!(estimate.lut > 0.0 && estimate.cycles >= 16.0, "{estimate:?}");
    }

    #[test]
    fn layer_info_must_match_the_layers_with_weights() {
        let one = [LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: None }];
        let message = format!(
            "{:#}",
            AnalyticalEstimator::default().estimate(&mlp(), &HlsSettings::default(), Some(&one), &board()).unwrap_err()
        );
        assert!(message.contains("1 entries") && message.contains("2 layers with weights"), "{message}");
        let too_many = [
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: Some(16 * 32 + 1) },
            LayerInfo { weight_bits: 8, activation_bits: 8, nonzero_weights: None },
        ];
        let message = format!(
            "{:#}",
            AnalyticalEstimator::default()
                .estimate(&mlp(), &HlsSettings::default(), Some(&too_many), &board())
                .unwrap_err()
        );
        assert!(message.contains("513 nonzero"), "{message}");
    }

    #[test]
    fn percentages_follow_the_board_and_overfull_is_named() {
        let hls = settings(16, 1, Strategy::Latency);
        let small = run(&mlp(), &hls, None);
        let large = AnalyticalEstimator::default()
            .estimate(&mlp(), &hls, None, &Board::by_name("alveo-u250").unwrap())
            .unwrap();
        assert_eq!((small.lut, small.dsp), (large.lut, large.dsp));
        assert!((small.dsp_pct / large.dsp_pct - 12_288.0 / 2_520.0).abs() < 1e-9);
        let tiny = Board::custom("tiny", 100, 100, 1, 1).unwrap();
        let estimate = AnalyticalEstimator::default().estimate(&mlp(), &hls, None, &tiny).unwrap();
        let names: Vec<&str> = estimate.overfull().iter().map(|(name, _)| *name).collect();
        assert!(names.contains(&"LUT") && names.contains(&"DSP"), "{names:?}");
        assert!(small.overfull().is_empty());
    }
}
