//! [`QuantizedModel::validate`]: the checks a model read from a file must
//! pass before inference or export touch it.
//!
//! A model file is only ever written by [`QuantizedModel::build`], so the
//! checks ask for exactly what `build` produces, up to the parameter
//! values: the layers follow the architecture in order, every count matches
//! the shapes, every code lies within its type, every accumulator is the
//! exact one for its weights, the lookup tables have hls4ml's size and a
//! power-of-two range, and every shift the integer inference makes stays
//! within `i64`. Each error names the key path
//! (`layers[3].kernel.codes`), the value and what would be accepted.

use super::tables::has_table;
use super::{
    ActivationTable, Codes, FORMAT, MAX_EXACT_BITS, Projection, QLayer, QuantizedModel, TABLE_SIZE, accumulator_type,
    mean_accumulator, softmax,
};
use crate::arch::{Activation, Aggregation, ConvGeometry, Layer, Shape};
use crate::fixed::{FixedPoint, MAX_INTEGER, MAX_WIDTH};
use anyhow::{Context, Result, bail, ensure};

/// The most values one tensor of one sample may hold (inputs, outputs,
/// kernels, a convolution's patches): 2^28.
pub const MAX_VALUES: usize = 1 << 28;

/// The widest integer the shifts of integer inference may produce.
const I64_BITS: i64 = 62;

/// What the arch asks for at one position of `layers`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Dense,
    Conv2d,
    ConvAttention,
    Aggregate,
    BatchNorm,
    Activation(Activation),
}

fn kind_of(layer: &QLayer) -> Kind {
    match layer {
        QLayer::Dense { .. } => Kind::Dense,
        QLayer::Conv2d { .. } => Kind::Conv2d,
        QLayer::ConvAttention { .. } => Kind::ConvAttention,
        QLayer::Aggregate { .. } => Kind::Aggregate,
        QLayer::BatchNorm { .. } => Kind::BatchNorm,
        QLayer::Activation { function, .. } => Kind::Activation(*function),
    }
}

fn kind_name(kind: Kind) -> String {
    match kind {
        Kind::Activation(f) => format!("{f:?} activation"),
        Kind::Dense | Kind::Conv2d | Kind::ConvAttention | Kind::Aggregate | Kind::BatchNorm => format!("{kind:?}"),
    }
}

/// A fixed-point type at `path` that the methods of [`FixedPoint`] accept.
fn check_type(path: &str, fixed: &FixedPoint) -> Result<()> {
    ensure!(
        (1..=MAX_WIDTH).contains(&fixed.width),
        "{path}.width: {} bits is not supported (accepted: 1 to {MAX_WIDTH})",
        fixed.width
    );
    ensure!(
        fixed.integer <= MAX_INTEGER,
        "{path}.integer: {} integer bits is not supported (accepted: 0 to {MAX_INTEGER})",
        fixed.integer
    );
    Ok(())
}

/// Codes at `path`: a valid type, `expected` codes (`how` says why), each
/// within the type's range.
fn check_codes(path: &str, codes: &Codes, expected: usize, how: &str) -> Result<()> {
    check_type(&format!("{path}.type"), &codes.fixed)?;
    ensure!(
        codes.codes.len() == expected,
        "{path}.codes: {} codes, but {how} needs {expected} (accepted: {expected})",
        codes.codes.len()
    );
    let (low, high) = (codes.fixed.min_code(), codes.fixed.max_code());
    if let Some((i, code)) = codes.codes.iter().enumerate().find(|(_, c)| !(low..=high).contains(*c)) {
        bail!("{path}.codes[{i}]: {code} is outside its type {} (accepted: {low} to {high})", codes.fixed);
    }
    Ok(())
}

/// The product of `factors`, at most [`MAX_VALUES`].
fn count(path: &str, factors: &[usize]) -> Result<usize> {
    let product = factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f));
    match product {
        Some(n) if n <= MAX_VALUES => Ok(n),
        _ => bail!("{path}: {factors:?} makes more than {MAX_VALUES} values (accepted: at most {MAX_VALUES})"),
    }
}

/// A shape with every dimension at least 1 and at most [`MAX_VALUES`] values.
fn check_shape(path: &str, shape: Shape) -> Result<()> {
    let dims = match shape {
        Shape::Flat(n) => vec![n],
        Shape::Image { height, width, channels } => vec![height, width, channels],
        Shape::Set { elements, features } => vec![elements, features],
    };
    ensure!(!dims.contains(&0), "{path}: {shape} has a dimension of 0 (accepted: every dimension at least 1)");
    count(path, &dims)?;
    Ok(())
}

/// `name` of the layer at `path` equals what the arch implies.
fn same<T: PartialEq + std::fmt::Debug>(path: &str, name: &str, found: T, expected: T, why: &str) -> Result<()> {
    ensure!(found == expected, "{path}.{name}: {found:?}, but {why} gives {expected:?} (accepted: {expected:?})");
    Ok(())
}

/// Shifting a `width`-bit value left by `shift` stays within `limit` bits.
fn check_shift(path: &str, what: &str, width: i64, shift: i64, limit: i64) -> Result<()> {
    ensure!(
        shift >= 0,
        "{path}: {what} would lose {} fractional bits: the type it goes into has fewer than it (accepted: at least \
         as many fractional bits; local search writes such types)",
        -shift
    );
    ensure!(
        width + shift <= limit,
        "{path}: shifting {what} ({width} bits) left by {shift} bits needs {} bits, more than the {limit} bits \
         integer inference holds (accepted: types whose fractional bits differ less; local search writes such types)",
        width + shift
    );
    Ok(())
}

/// A kernel `[inputs, outputs]` and its bias applied to an input of type
/// `input`, with the accumulator that the file gives.
fn check_affine(
    path: &str,
    input: FixedPoint,
    (kernel, bias, accumulator): (&Codes, &Codes, &FixedPoint),
    (inputs, outputs): (usize, usize),
    mask: &[bool],
) -> Result<()> {
    let size = count(&format!("{path}.kernel"), &[inputs, outputs])?;
    check_codes(&format!("{path}.kernel"), kernel, size, &format!("inputs × outputs = {inputs} × {outputs}"))?;
    check_codes(&format!("{path}.bias"), bias, outputs, &format!("{outputs} outputs"))?;
    check_mask(path, mask, kernel)?;
    check_type(&format!("{path}.accumulator"), accumulator)?;
    // The shifts accumulator_type makes and integer inference repeats.
    let product = (input.fractional_bits() + kernel.fixed.fractional_bits()) as i64;
    let bias_frac = bias.fixed.fractional_bits() as i64;
    ensure!(
        (product - bias_frac).abs() <= I64_BITS,
        "{path}.bias.type: {} has {bias_frac} fractional bits and the products {product}: they differ by more than \
         {I64_BITS} (accepted: types whose fractional bits differ less)",
        bias.fixed
    );
    let expected = accumulator_type(input, kernel, bias, inputs).map_err(|e| anyhow::anyhow!("{path}: {e:#}"))?;
    ensure!(
        *accumulator == expected,
        "{path}.accumulator: {accumulator} is not the exact accumulator of these weights on a {input} input, {expected} \
         (accepted: {expected}, as local search computes it)"
    );
    ensure!(
        accumulator.width <= MAX_EXACT_BITS,
        "{path}.accumulator.width: {} bits (accepted: at most {MAX_EXACT_BITS})",
        accumulator.width
    );
    let acc_frac = accumulator.fractional_bits() as i64;
    check_shift(path, "the products", accumulator.width as i64, acc_frac - product, I64_BITS)?;
    check_shift(path, "the bias", bias.fixed.width as i64, acc_frac - bias_frac, I64_BITS)?;
    Ok(())
}

/// A pruning mask: empty, or one entry per weight with the pruned ones 0.
fn check_mask(path: &str, mask: &[bool], kernel: &Codes) -> Result<()> {
    if mask.is_empty() {
        return Ok(());
    }
    ensure!(
        mask.len() == kernel.codes.len(),
        "{path}.mask: {} entries for {} weights (accepted: none, or one per weight)",
        mask.len(),
        kernel.codes.len()
    );
    if let Some(i) = mask.iter().zip(&kernel.codes).position(|(&keep, &code)| !keep && code != 0) {
        bail!("{path}.kernel.codes[{i}]: {} for a pruned weight (mask[{i}] is false; accepted: 0)", kernel.codes[i]);
    }
    Ok(())
}

/// A `tanh` / `sigmoid` table read by an input of type `input`.
fn check_table(path: &str, table: &ActivationTable, input: FixedPoint) -> Result<()> {
    let half = TABLE_SIZE as u32 / 2;
    ensure!(
        table.range.is_power_of_two() && table.range <= half,
        "{path}.table.range: {} (accepted: a power of two from 1 to {half}; hls4ml uses 4 for tanh, 8 for sigmoid)",
        table.range
    );
    check_codes(&format!("{path}.table.table"), &table.table, TABLE_SIZE, "hls4ml's table_size")?;
    // ActivationTable::index: the input code shifted by frac − k.
    let k = (TABLE_SIZE as u32 / (2 * table.range)).trailing_zeros() as i64;
    let shift = input.fractional_bits() as i64 - k;
    if shift < 0 {
        check_shift(path, "the table index", input.width as i64, -shift, I64_BITS)?;
    } else {
        check_shift(path, "the table index", 1, shift, I64_BITS)?;
    }
    Ok(())
}

/// GELU, `x·σ(x·scale)`: one scale code (the slope), hls4ml's sigmoid
/// table read at `x·scale`, and both products within `i64`.
fn gelu(path: &str, current: FixedPoint, scale: Option<&Codes>, table: Option<&ActivationTable>) -> Result<()> {
    let Some(scale) = scale else { bail!("{path}.slope: missing: GELU needs its scale 1.702 (accepted: one code)") };
    let Some(table) = table else {
        bail!(
            "{path}.table: missing: GELU needs hls4ml's {TABLE_SIZE}-entry sigmoid table (accepted: as build writes it)"
        )
    };
    check_codes(&format!("{path}.slope"), scale, 1, "GELU's one scale")?;
    let product = current.width + scale.fixed.width.max(table.table.fixed.width);
    check_shift(path, "the products", product as i64, 0, I64_BITS)?;
    let scaled = FixedPoint {
        width: current.width + scale.fixed.width,
        integer: current.integer + scale.fixed.integer,
        ..current
    };
    check_table(path, table, scaled)
}

impl QuantizedModel {
    /// Checks that the model is one [`QuantizedModel::build`] could have
    /// written, up to its parameter values (see the module docs): afterwards
    /// inference and export cannot panic or read past a table. The error
    /// names the key path, the value and what is accepted.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.format == FORMAT, "format: '{}' is not supported (accepted: '{FORMAT}')", self.format);
        for (name, fixed) in self.types.named() {
            check_type(&name, &fixed)?;
        }
        check_shape("arch.input_shape", self.arch.input_shape)?;
        let shapes = self.arch.shapes().map_err(|e| anyhow::anyhow!("arch: {e:#}"))?;
        ensure!(!shapes.is_empty(), "arch.components: no layers (accepted: at least one layer)");
        let mut seen = std::collections::BTreeSet::new();
        for (i, layer) in self.types.layers.iter().enumerate() {
            ensure!(
                layer.index < shapes.len(),
                "types.layers[{i}].index: {} is past the arch's {} layers (accepted: 0 to {})",
                layer.index,
                shapes.len(),
                shapes.len() - 1
            );
            ensure!(
                seen.insert(layer.index),
                "types.layers[{i}].index: layer {} has a second entry (accepted: one entry per layer)",
                layer.index
            );
        }
        for (index, (layer, _, output)) in shapes.iter().enumerate() {
            check_shape(&format!("arch layer {index} ({}) output", layer.kind()), *output)?;
        }
        let input_numel = self.arch.input_shape.numel();
        ensure!(
            self.input_features == input_numel,
            "input_features: {}, but arch.input_shape {} holds {input_numel} (accepted: {input_numel})",
            self.input_features,
            self.arch.input_shape
        );
        let output_numel = shapes[shapes.len() - 1].2.numel();
        ensure!(
            self.output_features == output_numel,
            "output_features: {}, but the arch's last layer outputs {output_numel} values (accepted: {output_numel})",
            self.output_features
        );

        let last = shapes.len() - 1;
        let mut position = 0;
        // The type of the tensor flowing between layers.
        let mut current = self.types.input;
        for (index, &(layer, input, output)) in shapes.iter().enumerate() {
            let expected = expected_kinds(index, layer, input, last, shapes[last].0)?;
            for kind in expected {
                let Some(qlayer) = self.layers.get(position) else {
                    bail!(
                        "layers[{position}]: missing: arch layer {index} ({}) needs a {} layer here, but the model has \
                         only {} layers",
                        layer.kind(),
                        kind_name(kind),
                        self.layers.len()
                    );
                };
                let path = format!("layers[{position}] ({})", qlayer.describe());
                ensure!(
                    kind_of(qlayer) == kind && qlayer.arch_index() == index,
                    "{path}: expected the {} layer of arch layer {index} ({}) here: a layer is missing, extra or \
                     out of order (accepted: a {} layer with index {index}; layers follow the arch in order)",
                    kind_name(kind),
                    layer.kind(),
                    kind_name(kind)
                );
                let at = At {
                    path: &path,
                    layer,
                    input,
                    output,
                    current,
                    why: format!("the arch's input {input} to this layer"),
                };
                current = check_layer(&at, qlayer)?;
                position += 1;
            }
        }
        if let Some(extra) = self.layers.get(position) {
            bail!(
                "layers[{position}] ({}): extra layer: layers[0..{position}] already cover all {} arch layers \
                 (accepted: {position} layers)",
                extra.describe(),
                shapes.len()
            );
        }
        Ok(())
    }
}

/// The model layers arch layer `index` becomes, in order (`last`: the index
/// of the arch's last layer, `last_layer` that layer), or why it has no
/// fixed-point form.
fn expected_kinds(index: usize, layer: &Layer, input: Shape, last: usize, last_layer: &Layer) -> Result<Vec<Kind>> {
    Ok(match layer {
        Layer::Dense { .. } => {
            let softmax_next = index + 1 == last && *last_layer == Layer::Act(Activation::Softmax);
            if index == last || softmax_next {
                vec![Kind::Dense, Kind::Activation(Activation::Identity)]
            } else {
                vec![Kind::Dense]
            }
        }
        Layer::Conv2d { .. } => vec![Kind::Conv2d],
        Layer::ConvAttention { .. } => vec![Kind::ConvAttention],
        Layer::Aggregate(_) => vec![Kind::Aggregate],
        Layer::Flatten if input.rows_and_features().0 > 1 => vec![Kind::Activation(Activation::Identity)],
        Layer::Flatten => vec![],
        Layer::BatchNorm => vec![Kind::BatchNorm],
        Layer::Act(Activation::Softmax) if index == last => vec![],
        Layer::Act(Activation::Softmax) => {
            bail!("arch layer {index}: Softmax here has no fixed-point form (accepted: a final softmax)")
        }
        Layer::LayerNorm => bail!("arch layer {index}: LayerNorm has no fixed-point form"),
        Layer::Act(
            f @ (Activation::Relu
            | Activation::LeakyRelu
            | Activation::Tanh
            | Activation::Sigmoid
            | Activation::Gelu
            | Activation::Identity),
        ) => vec![Kind::Activation(*f)],
    })
}

/// One model layer being checked against the arch layer it comes from.
struct At<'a> {
    /// The key path for messages, e.g. `layers[3] (Dense (layer 2))`.
    path: &'a str,
    layer: &'a Layer,
    input: Shape,
    output: Shape,
    /// The type of the tensor flowing in.
    current: FixedPoint,
    /// Why counts taken from the input are expected.
    why: String,
}

/// Checks one model layer (one function per kind); returns the type of its
/// output.
fn check_layer(at: &At, qlayer: &QLayer) -> Result<FixedPoint> {
    match qlayer {
        QLayer::Dense { rows, inputs, outputs, kernel, bias, mask, accumulator, .. } => {
            at.dense((*rows, *inputs, *outputs), (kernel, bias, accumulator), mask)
        }
        QLayer::Conv2d { kernel, bias, mask, accumulator, .. } => {
            let stored = qlayer.conv_geometry().expect("a Conv2d layer has a geometry");
            at.conv2d(&stored, (kernel, bias, accumulator), mask)
        }
        QLayer::ConvAttention { positions, channels, hidden, query, key, value, output, scale, result, .. } => {
            at.conv_attention((*positions, *channels, *hidden), [query, key, value, output], *scale, result)
        }
        QLayer::Aggregate { elements, features, mode, result, .. } => {
            at.aggregate((*elements, *features), *mode, result)
        }
        QLayer::BatchNorm { scale, shift, result, .. } => at.batch_norm(scale, shift, result),
        QLayer::Activation { function, result, slope, table, .. } => {
            at.activation(*function, result, slope.as_ref(), table.as_ref())
        }
    }
}

impl At<'_> {
    fn dense(
        &self,
        (rows, inputs, outputs): (usize, usize, usize),
        affine: (&Codes, &Codes, &FixedPoint),
        mask: &[bool],
    ) -> Result<FixedPoint> {
        let (path, input, output, why) = (self.path, self.input, self.output, &self.why);
        let (expected_rows, expected_inputs) = input.rows_and_features();
        same(path, "rows", rows, expected_rows, why)?;
        same(path, "inputs", inputs, expected_inputs, why)?;
        same(path, "outputs", outputs, output.rows_and_features().1, &format!("the arch's output {output}"))?;
        check_affine(path, self.current, affine, (inputs, outputs), mask)?;
        Ok(*affine.2)
    }

    fn conv2d(
        &self,
        stored: &ConvGeometry,
        affine: (&Codes, &Codes, &FixedPoint),
        mask: &[bool],
    ) -> Result<FixedPoint> {
        let (path, input, why) = (self.path, self.input, &self.why);
        let Some(g) = ConvGeometry::of(self.layer, input) else {
            bail!("{path}: the arch's layer takes {input}, not an image")
        };
        same(path, "height", stored.height, g.height, why)?;
        same(path, "width", stored.width, g.width, why)?;
        same(path, "channels", stored.channels, g.channels, why)?;
        same(path, "kernel_size", stored.kernel, g.kernel, "the arch's layer")?;
        same(path, "filters", stored.filters, g.filters, "the arch's layer")?;
        same(path, "out_height", stored.out_height, g.out_height, "the arch's layer and input")?;
        same(path, "out_width", stored.out_width, g.out_width, "the arch's layer and input")?;
        same(path, "padding", stored.padding, g.padding, "the arch's padding")?;
        let patch = count(&format!("{path} patches"), &[g.kernel, g.kernel, g.channels])?;
        count(&format!("{path} patches"), &[g.out_height, g.out_width, patch])?;
        check_affine(path, self.current, affine, (patch, g.filters), mask)?;
        Ok(*affine.2)
    }

    fn conv_attention(
        &self,
        (positions, channels, hidden): (usize, usize, usize),
        [query, key, value, output]: [&Projection; 4],
        scale: Option<i64>,
        result: &FixedPoint,
    ) -> Result<FixedPoint> {
        let (path, layer, input, current, why) = (self.path, self.layer, self.input, self.current, &self.why);
        let Layer::ConvAttention { hidden: arch_hidden, scale: scaled } = layer else {
            bail!("{path}: the arch's layer is a {}", layer.kind())
        };
        let (expected_positions, expected_channels) = input.rows_and_features();
        same(path, "positions", positions, expected_positions, why)?;
        same(path, "channels", channels, expected_channels, why)?;
        same(path, "hidden", hidden, *arch_hidden, "the arch's layer")?;
        check_type(&format!("{path}.result"), result)?;
        let rf = result.fractional_bits();
        ensure!(rf >= 0, "{path}.result: {result} has {rf} fractional bits (accepted: at least 0 for attention)");
        let projections: [(&str, &Projection, FixedPoint, usize, usize); 4] = [
            ("query", query, current, channels, hidden),
            ("key", key, current, channels, hidden),
            ("value", value, current, channels, hidden),
            ("output", output, *result, hidden, channels),
        ];
        for (name, p, from, inputs, outputs) in projections {
            let at = format!("{path}.{name}");
            check_affine(&at, from, (&p.kernel, &p.bias, &p.accumulator), (inputs, outputs), &[])?;
        }
        let expected_scale = scaled.then(|| softmax::attention_scale(hidden));
        same(path, "scale", scale, expected_scale, "the arch's scale flag and hidden size")?;
        let largest = result.min_code().unsigned_abs().max(result.max_code().unsigned_abs()) as u128;
        let bound = largest * largest * hidden as u128 * positions as u128;
        ensure!(
            bound < 1u128 << MAX_EXACT_BITS,
            "{path}.result: with {result} the scores need {} bits (accepted: at most {MAX_EXACT_BITS}; use \
             a narrower type)",
            128 - bound.leading_zeros()
        );
        let frac = current.fractional_bits();
        let sum_frac = frac.max(rf);
        check_shift(path, "the residual", current.width as i64, (sum_frac - frac) as i64, I64_BITS)?;
        check_shift(path, "the residual", result.width as i64, (sum_frac - rf) as i64, I64_BITS)?;
        Ok(*result)
    }

    fn aggregate(
        &self,
        (elements, features): (usize, usize),
        mode: Aggregation,
        result: &FixedPoint,
    ) -> Result<FixedPoint> {
        let (path, layer, input, current, why) = (self.path, self.layer, self.input, self.current, &self.why);
        let (Layer::Aggregate(arch_mode), Shape::Set { elements: e, features: f }) = (layer, input) else {
            bail!("{path}: the arch's layer is a {} on {input}, not a pooling over a set", layer.kind())
        };
        same(path, "elements", elements, e, why)?;
        same(path, "features", features, f, why)?;
        same(path, "mode", mode, *arch_mode, "the arch's layer")?;
        check_type(&format!("{path}.result"), result)?;
        if mode == Aggregation::Mean {
            // The sum times 1/elements, exact in 53 bits (as `build` checks).
            let accumulator = mean_accumulator(current, elements).with_context(|| format!("{path}: the mean"))?;
            ensure!(
                accumulator.width <= MAX_EXACT_BITS,
                "{path}: the mean of {elements} values of {current} needs {} bits (accepted: at most \
                 {MAX_EXACT_BITS})",
                accumulator.width
            );
        }
        Ok(*result)
    }

    fn batch_norm(&self, scale: &Codes, shift: &Codes, result: &FixedPoint) -> Result<FixedPoint> {
        let (path, output, current) = (self.path, self.output, self.current);
        let features = output.rows_and_features().1;
        let how = format!("{features} features of the arch's {output}");
        check_codes(&format!("{path}.scale"), scale, features, &how)?;
        check_codes(&format!("{path}.shift"), shift, features, &how)?;
        check_type(&format!("{path}.result"), result)?;
        let product_width = current.width + scale.fixed.width;
        ensure!(
            product_width < MAX_EXACT_BITS,
            "{path}.scale.type: its input ({current}) times its scale ({}) needs {product_width} bits \
             (accepted: at most {})",
            scale.fixed,
            MAX_EXACT_BITS - 1
        );
        let product = current.fractional_bits() + scale.fixed.fractional_bits();
        let frac = product.max(shift.fixed.fractional_bits());
        check_shift(path, "the product", product_width as i64, (frac - product) as i64, I64_BITS)?;
        let shift_bits = (frac - shift.fixed.fractional_bits()) as i64;
        check_shift(path, "the shift", shift.fixed.width as i64, shift_bits, I64_BITS)?;
        Ok(*result)
    }

    fn activation(
        &self,
        function: Activation,
        result: &FixedPoint,
        slope: Option<&Codes>,
        table: Option<&ActivationTable>,
    ) -> Result<FixedPoint> {
        let (path, current) = (self.path, self.current);
        check_type(&format!("{path}.result"), result)?;
        if function == Activation::Gelu {
            return gelu(path, current, slope, table).map(|()| *result);
        }
        let needs_table = has_table(function);
        match table {
            Some(table) if needs_table => check_table(path, table, current)?,
            Some(_) => {
                bail!("{path}.table: a {function:?} has no table (accepted: none; only tanh and sigmoid)")
            }
            None if needs_table => bail!(
                "{path}.table: missing: {function:?} needs hls4ml's {TABLE_SIZE}-entry table (accepted: \
                 range and table as local search writes them)"
            ),
            None => {}
        }
        match slope {
            Some(slope) if function == Activation::LeakyRelu => {
                check_codes(&format!("{path}.slope"), slope, 1, "a Leaky ReLU's one slope")?;
                let width = (current.width + slope.fixed.width) as i64;
                check_shift(path, "the slope product", width, 0, I64_BITS)?;
            }
            Some(_) => bail!("{path}.slope: a {function:?} has no slope (accepted: none)"),
            None if function == Activation::LeakyRelu => {
                bail!("{path}.slope: missing: Leaky ReLU needs its slope (accepted: one code)")
            }
            None => {}
        }
        Ok(*result)
    }
}
