//! rule4ml's input features, computed from our [`Arch`] as rule4ml computes
//! them from the Keras model SNAC-Pack builds for it (`config_from_keras_model`,
//! `get_global_inputs`, `get_layers_data` in rule4ml 0.2.0).
//!
//! Each layer becomes a Keras-style record: Dense (with bias), Conv2D
//! (stride 1), BatchNormalization (4 parameters per feature, 2 trainable),
//! Flatten, and one activation record per nonlinear activation (a `linear`
//! activation is no layer). Dense and Conv2D layers carry hls4ml's closest
//! valid reuse factor, the others the model's. Global features are per-kind
//! means and counts, the mean reuse factor over all records, and the total
//! operation counts; only the means of inputs, outputs, parameters and reuse
//! are ever accumulated (rule4ml's filters, kernel and stride means stay 0).

use crate::arch::{Activation, Arch, Layer, Shape};
use anyhow::{Result, bail};
use std::collections::HashMap;

/// One layer as rule4ml sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRecord {
    /// rule4ml's layer type: `dense`, `conv2d`, `batchnormalization`,
    /// `flatten`, `relu`, `sigmoid`, `tanh`, `softmax`.
    pub layer_type: &'static str,
    pub input_size: usize,
    pub output_size: usize,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub filters: usize,
    pub kernel: usize,
    pub stride: usize,
    pub reuse: usize,
    pub op_add: usize,
    pub op_mult: usize,
    pub op_logical: usize,
    pub op_lookup: usize,
}

impl LayerRecord {
    fn plain(layer_type: &'static str, size: usize, reuse: usize) -> LayerRecord {
        LayerRecord {
            layer_type,
            input_size: size,
            output_size: size,
            parameters: 0,
            trainable_parameters: 0,
            filters: 0,
            kernel: 0,
            stride: 0,
            reuse,
            op_add: 0,
            op_mult: 0,
            op_logical: 0,
            op_lookup: 0,
        }
    }

    /// The value of one of rule4ml's `sequential_numerical_labels`.
    pub fn feature(&self, label: &str) -> Result<f64> {
        Ok(match label {
            "layer_input_size" => self.input_size,
            "layer_output_size" => self.output_size,
            "layer_parameter_count" => self.parameters,
            "layer_trainable_parameter_count" => self.trainable_parameters,
            "layer_filters" => self.filters,
            "layer_kernel_height" | "layer_kernel_width" => self.kernel,
            "layer_stride_height" | "layer_stride_width" => self.stride,
            "layer_reuse" => self.reuse,
            "layer_op_add" => self.op_add,
            "layer_op_mult" => self.op_mult,
            "layer_op_logical" => self.op_logical,
            "layer_op_lookup" => self.op_lookup,
            other => bail!("rule4ml layer feature '{other}' is unknown to snac"),
        } as f64)
    }
}

/// hls4ml's check that reuse factor `rf` fits an `n_in × n_out` product
/// array (its `_validate_reuse_factor`).
fn valid_reuse_factor(n_in: usize, n_out: usize, rf: usize) -> bool {
    let multiplier_limit = (n_in * n_out).div_ceil(n_in.min(rf));
    (multiplier_limit.is_multiple_of(n_out) || rf >= n_in)
        && (rf.is_multiple_of(n_in) || rf < n_in)
        && (n_in * n_out).is_multiple_of(rf)
}

/// The valid reuse factor closest to `chosen`, the smaller one on a tie
/// (hls4ml's `get_closest_reuse_factor`, as rule4ml copies it).
pub fn closest_reuse_factor(n_in: usize, n_out: usize, chosen: usize) -> usize {
    let total = n_in * n_out;
    // A valid factor divides n_in·n_out: walk the divisors only.
    let mut valid: Vec<usize> = Vec::new();
    let mut d = 1;
    while d * d <= total {
        if total.is_multiple_of(d) {
            valid.push(d);
            if d != total / d {
                valid.push(total / d);
            }
        }
        d += 1;
    }
    valid.retain(|&rf| valid_reuse_factor(n_in, n_out, rf));
    valid.sort_unstable();
    let position = valid.partition_point(|&rf| rf < chosen);
    match (position.checked_sub(1).map(|i| valid[i]), valid.get(position)) {
        (None, Some(&after)) => after,
        (Some(before), None) => before,
        (Some(before), Some(&after)) => {
            if after - chosen < chosen - before {
                after
            } else {
                before
            }
        }
        (None, None) => chosen,
    }
}

/// The records of `arch` with model reuse factor `reuse`, or an error naming
/// the first layer rule4ml cannot take.
pub fn layer_records(arch: &Arch, reuse: usize) -> Result<Vec<LayerRecord>> {
    let mut records = Vec::new();
    for (position, (layer, input, output)) in arch.shapes()?.into_iter().enumerate() {
        let (n_in, n_out) = (input.numel(), output.numel());
        let record = match layer {
            Layer::Dense { units } => LayerRecord {
                parameters: n_in * units + units,
                trainable_parameters: n_in * units + units,
                reuse: closest_reuse_factor(n_in, *units, reuse),
                // With the bias: (n_in − 1 + 1) additions per output.
                op_add: n_in * units,
                op_mult: n_in * units,
                ..LayerRecord::plain("dense", n_in, reuse)
            }
            .with_output(n_out),
            Layer::Conv2d { filters, kernel, .. } => {
                let Shape::Image { channels, .. } = input else { bail!("Conv2d layer {position} has a flat input") };
                let fan_in = kernel * kernel * channels;
                let positions = n_out / filters;
                LayerRecord {
                    parameters: fan_in * filters + filters,
                    trainable_parameters: fan_in * filters + filters,
                    filters: *filters,
                    kernel: *kernel,
                    stride: 1,
                    reuse: closest_reuse_factor(fan_in, *filters, reuse),
                    op_add: positions * filters * fan_in,
                    op_mult: positions * filters * fan_in,
                    ..LayerRecord::plain("conv2d", n_in, reuse)
                }
                .with_output(n_out)
            }
            Layer::BatchNorm => {
                let features = input.rows_and_features().1;
                LayerRecord {
                    parameters: 4 * features,
                    trainable_parameters: 2 * features,
                    op_add: n_in,
                    op_mult: n_in,
                    ..LayerRecord::plain("batchnormalization", n_in, reuse)
                }
            }
            Layer::Flatten => LayerRecord::plain("flatten", n_in, reuse),
            Layer::Act(Activation::Identity) => continue,
            Layer::Act(Activation::Relu) => LayerRecord { op_logical: n_in, ..LayerRecord::plain("relu", n_in, reuse) },
            Layer::Act(Activation::Sigmoid) => {
                LayerRecord { op_lookup: n_in, ..LayerRecord::plain("sigmoid", n_in, reuse) }
            }
            Layer::Act(Activation::Tanh) => LayerRecord { op_lookup: n_in, ..LayerRecord::plain("tanh", n_in, reuse) },
            // Exponentials and the inverse of their sum by table, the sum by
            // adders, one product per feature.
            Layer::Act(Activation::Softmax) => LayerRecord {
                op_lookup: n_in + 1,
                op_add: n_in.saturating_sub(1),
                op_mult: n_in,
                ..LayerRecord::plain("softmax", n_in, reuse)
            },
            Layer::Act(kind @ (Activation::LeakyRelu | Activation::Gelu)) => bail!(
                "rule4ml has no {} layer (layer {position} of {}); its layer types are Dense, Conv2D, \
                 BatchNormalization, Flatten and the relu, sigmoid, tanh and softmax activations; \
                 use the analytical estimator",
                kind.name(),
                arch.summary()
            ),
            Layer::LayerNorm | Layer::ConvAttention { .. } | Layer::Aggregate(_) => bail!(
                "rule4ml has no {} layer (layer {position} of {}); its layer types are Dense, Conv2D, \
                 BatchNormalization, Flatten and the relu, sigmoid, tanh and softmax activations; \
                 use the analytical estimator",
                layer.kind(),
                arch.summary()
            ),
        };
        records.push(record);
    }
    if records.is_empty() {
        bail!("{} has no layer rule4ml can see", arch.summary());
    }
    Ok(records)
}

impl LayerRecord {
    fn with_output(mut self, output_size: usize) -> LayerRecord {
        self.output_size = output_size;
        self
    }
}

/// The global numeric features of rule4ml's `get_global_inputs`, by name.
pub fn global_features(records: &[LayerRecord], bit_width: u32) -> HashMap<String, f64> {
    let mut features: HashMap<String, f64> = HashMap::new();
    features.insert("bit_width".into(), bit_width.into());
    let reuse_sum: usize = records.iter().map(|r| r.reuse).sum();
    features.insert("reuse_mean".into(), reuse_sum as f64 / records.len() as f64);
    // Per kind: count, and the means of what rule4ml accumulates for it.
    let kinds: [(&str, &[&str]); 13] = [
        ("dense", &["inputs", "outputs", "parameters", "reuse"]),
        ("conv1d", &["inputs", "outputs", "parameters", "reuse"]),
        ("conv2d", &["inputs", "outputs", "parameters", "reuse"]),
        ("batchnormalization", &["inputs", "outputs", "parameters"]),
        ("add", &["inputs", "outputs"]),
        ("concatenate", &["inputs", "outputs"]),
        ("dropout", &["inputs", "outputs"]),
        ("relu", &["inputs", "outputs"]),
        ("sigmoid", &["inputs", "outputs"]),
        ("tanh", &["inputs", "outputs"]),
        ("softmax", &["inputs", "outputs"]),
        ("flatten", &[]),
        ("inputlayer", &[]),
    ];
    for (kind, means) in kinds {
        let of_kind: Vec<&LayerRecord> = records.iter().filter(|r| r.layer_type == kind).collect();
        let count = of_kind.len();
        features.insert(format!("{kind}_count"), count as f64);
        for &what in means {
            let sum: usize = of_kind
                .iter()
                .map(|r| match what {
                    "inputs" => r.input_size,
                    "outputs" => r.output_size,
                    "parameters" => r.parameters,
                    _ => r.reuse,
                })
                .sum();
            let mean = if count > 0 { sum as f64 / count as f64 } else { 0.0 };
            features.insert(format!("{kind}_{what}_mean"), mean);
        }
        // Never accumulated by rule4ml 0.2.0, so always 0.
        for what in ["filters", "kernel_size", "strides"] {
            features.insert(format!("{kind}_{what}_mean"), 0.0);
        }
    }
    let total = |op: fn(&LayerRecord) -> usize| records.iter().map(op).sum::<usize>() as f64;
    features.insert("total_add".into(), total(|r| r.op_add));
    features.insert("total_mult".into(), total(|r| r.op_mult));
    features.insert("total_logical".into(), total(|r| r.op_logical));
    features.insert("total_lookup".into(), total(|r| r.op_lookup));
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Component, Norm};

    /// hls4ml's rule, checked on every candidate, for comparison.
    fn closest_by_brute_force(n_in: usize, n_out: usize, chosen: usize) -> usize {
        let valid: Vec<usize> = (1..=n_in * n_out).filter(|&rf| valid_reuse_factor(n_in, n_out, rf)).collect();
        let position = valid.partition_point(|&rf| rf < chosen);
        if position == 0 {
            return valid[0];
        }
        if position == valid.len() {
            return valid[valid.len() - 1];
        }
        let (before, after) = (valid[position - 1], valid[position]);
        if after - chosen < chosen - before { after } else { before }
    }

    #[test]
    fn closest_reuse_factor_matches_the_exhaustive_rule() {
        for (n_in, n_out) in [(64, 32), (32, 10), (800, 16), (16, 8), (8, 2), (27, 5), (1, 1), (7, 3)] {
            for chosen in [1, 2, 3, 4, 5, 8, 16, 32, 64, 100, 1000, 100_000] {
                assert_eq!(
                    closest_reuse_factor(n_in, n_out, chosen),
                    closest_by_brute_force(n_in, n_out, chosen),
                    "{n_in}×{n_out} rf {chosen}"
                );
            }
        }
        // Values rule4ml's Python gives: 3 does not divide 800 · 16 (2 and 4
        // tie; the smaller wins), 4 does not fit 27 × 5, 100 does not divide
        // 64 · 32.
        assert_eq!(closest_reuse_factor(800, 16, 3), 2);
        assert_eq!(closest_reuse_factor(27, 5, 4), 3);
        assert_eq!(closest_reuse_factor(7, 3, 5), 7);
        assert_eq!(closest_reuse_factor(64, 32, 100), 128);
    }

    #[test]
    fn records_of_an_mlp() {
        let arch = Arch::new(
            Shape::Flat(64),
            vec![
                Component::mlp("b0", 32, Norm::Batch, Activation::Relu),
                Component::output("output", 10, Activation::Softmax),
            ],
        );
        let records = layer_records(&arch, 1).unwrap();
        let types: Vec<&str> = records.iter().map(|r| r.layer_type).collect();
        assert_eq!(types, ["dense", "batchnormalization", "relu", "dense", "softmax"]);
        assert_eq!((records[1].parameters, records[1].trainable_parameters, records[1].op_mult), (128, 64, 32));
        assert_eq!((records[4].op_add, records[4].op_mult, records[4].op_lookup), (9, 10, 11));
        let identity = Arch::new(Shape::Flat(4), vec![Component::output("output", 2, Activation::Identity)]);
        assert_eq!(layer_records(&identity, 1).unwrap().len(), 1);
        let leaky = Arch::new(Shape::Flat(4), vec![Component::output("output", 2, Activation::LeakyRelu)]);
        let message = format!("{:#}", layer_records(&leaky, 1).unwrap_err());
        assert!(message.contains("leaky") && message.contains("analytical"), "{message}");
    }
}
