//! Pruning: per-layer 0/1 masks over kernels ([`Masks`]), magnitude pruning
//! with TF-MOT `ConstantSparsity` semantics ([`magnitude_masks`]), and
//! lottery-ticket rewinding ([`Weights::rewind`]).
//!
//! Training with `TrainConfig::masks` set keeps the pruned weights
//! at exactly zero: they are zeroed before the first step and again (with
//! their Adam moments) after every optimiser step.

use crate::weights::{LayerWeights, Weights};
use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

/// A `keep` mask (true = the weight survives) for each layer's kernel,
/// aligned with [`Weights::layers`]; `None` for layers without a kernel or
/// left unpruned. A ConvAttention layer's mask covers its four projection
/// kernels one after another ([`LayerWeights::kernels`]). Biases are
/// never pruned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Masks {
    pub layers: Vec<Option<Vec<bool>>>,
}

impl Masks {
    /// Checks that every mask belongs to a layer with a kernel of its size.
    pub fn check_fits(&self, weights: &Weights) -> Result<()> {
        ensure!(
            self.layers.len() == weights.layers.len(),
            "masks cover {} layers, the weights have {}",
            self.layers.len(),
            weights.layers.len()
        );
        for (mask, layer) in self.layers.iter().zip(&weights.layers) {
            let Some(mask) = mask else { continue };
            ensure!(
                layer.kernel_len() > 0,
                "a mask is given for layer {} ({}), which has no kernel",
                layer.index,
                layer.kind
            );
            ensure!(
                mask.len() == layer.kernel_len(),
                "layer {} ({}) mask has {} entries, its kernels {} weights",
                layer.index,
                layer.kind,
                mask.len(),
                layer.kernel_len()
            );
        }
        Ok(())
    }

    /// Zeroes the masked kernel weights of `weights` (which must fit).
    pub fn apply(&self, weights: &mut Weights) -> Result<()> {
        self.check_fits(weights)?;
        for (mask, layer) in self.layers.iter().zip(&mut weights.layers) {
            let Some(mask) = mask else { continue };
            let mut keeps = mask.iter();
            for position in layer.kernel_positions() {
                for (value, &keep) in layer.tensors[position].values.iter_mut().zip(&mut keeps) {
                    if !keep {
                        *value = 0.0;
                    }
                }
            }
        }
        Ok(())
    }

    /// The fraction of masked entries over all masks (0 when there are none).
    pub fn sparsity(&self) -> f64 {
        let (total, pruned) = self
            .layers
            .iter()
            .flatten()
            .fold((0usize, 0usize), |(t, p), m| (t + m.len(), p + m.iter().filter(|k| !**k).count()));
        if total == 0 { 0.0 } else { pruned as f64 / total as f64 }
    }
}

/// Per-kernel magnitude pruning, as TF-MOT's `ConstantSparsity(target_sparsity)`
/// mask update: in each kernel of `n` weights the
/// `k = max(round(n · (1 − target_sparsity)), 1)` largest by `|w|` are kept
/// (`round` to even, as `tf.math.round`) and the others masked. Where TF
/// keeps every weight tied with the k-th largest, this keeps exactly `k`,
/// breaking ties by position (the earlier weight survives), so the result is
/// deterministic. Biases are not pruned. ConvAttention's four projections
/// are 1×1 convolutions, each pruned on its own like any Conv2d kernel.
pub fn magnitude_masks(weights: &Weights, target_sparsity: f64) -> Result<Masks> {
    ensure!((0.0..=1.0).contains(&target_sparsity), "target sparsity {target_sparsity} is outside [0, 1]");
    let kernel_mask = |values: &[f32]| {
        let n = values.len();
        let keep_count = ((n as f64 * (1.0 - target_sparsity)).round_ties_even() as usize).clamp(1.min(n), n);
        let mut order: Vec<usize> = (0..n).collect();
        // Largest magnitude first; NaN counts as largest, ties by position.
        order.sort_by(|&a, &b| {
            let (x, y) = (values[a].abs(), values[b].abs());
            y.total_cmp(&x).then(a.cmp(&b))
        });
        let mut mask = vec![false; n];
        for &i in &order[..keep_count] {
            mask[i] = true;
        }
        mask
    };
    let layers = weights
        .layers
        .iter()
        .map(|layer| (layer.kernel_len() > 0).then(|| layer.kernels().flat_map(|k| kernel_mask(&k.values)).collect()))
        .collect();
    Ok(Masks { layers })
}

impl Weights {
    /// Lottery-ticket rewinding: `checkpoint`'s values with the masked kernel
    /// weights set to 0. `self` (the weights that were pruned) and
    /// `checkpoint` must have the same layout; every tensor (biases and
    /// normalisation parameters too) is taken from the checkpoint.
    pub fn rewind(&self, checkpoint: &Weights, masks: &Masks) -> Result<Weights> {
        ensure!(
            self.layers.len() == checkpoint.layers.len(),
            "cannot rewind: the weights have {} layers, the checkpoint {}",
            self.layers.len(),
            checkpoint.layers.len()
        );
        for (have, old) in self.layers.iter().zip(&checkpoint.layers) {
            let layout = |l: &LayerWeights| -> Vec<(String, Vec<usize>)> {
                l.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect()
            };
            ensure!(
                have.kind == old.kind && layout(have) == layout(old),
                "cannot rewind: layer {} is {} {:?} in the weights but {} {:?} in the checkpoint",
                have.index,
                have.kind,
                layout(have),
                old.kind,
                layout(old)
            );
        }
        let mut rewound = checkpoint.clone();
        masks.apply(&mut rewound).context("cannot rewind")?;
        Ok(rewound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::NamedTensor;

    fn dense(index: usize, values: Vec<f32>, bias: Vec<f32>) -> LayerWeights {
        let n = values.len();
        let units = bias.len();
        LayerWeights {
            index,
            kind: "Dense".into(),
            tensors: vec![
                NamedTensor { name: "kernel".into(), shape: vec![n / units, units], values },
                NamedTensor { name: "bias".into(), shape: vec![units], values: bias },
            ],
        }
    }

    fn relu(index: usize) -> LayerWeights {
        LayerWeights { index, kind: "Activation".into(), tensors: Vec::new() }
    }

    #[test]
    fn smallest_magnitudes_go_first_with_ties_by_position() {
        let weights = Weights {
            layers: vec![
                dense(0, vec![0.5, -0.1, 0.3, -0.3, 0.0, 2.0], vec![0.0, 0.0]),
                relu(1),
                dense(2, vec![1.0, -1.0], vec![0.01]),
            ],
        };
        let masks = magnitude_masks(&weights, 0.5).unwrap();
        // 3 of 6 kept: 2.0, 0.5, then the first of the tied ±0.3.
        assert_eq!(masks.layers[0], Some(vec![true, false, true, false, false, true]));
        assert_eq!(masks.layers[1], None);
        assert_eq!(masks.layers[2], Some(vec![true, false]));
        assert_eq!(magnitude_masks(&weights, 0.0).unwrap().sparsity(), 0.0);
        // TF-MOT keeps at least one weight per layer.
        let all = magnitude_masks(&weights, 1.0).unwrap();
        assert_eq!(all.layers[0].as_ref().unwrap().iter().filter(|k| **k).count(), 1);
        assert!(magnitude_masks(&weights, 1.5).unwrap_err().to_string().contains("1.5"));
        assert!(magnitude_masks(&weights, f64::NAN).is_err());

        let mut pruned = weights.clone();
        masks.apply(&mut pruned).unwrap();
        assert_eq!(pruned.layers[0].tensors[0].values, vec![0.5, 0.0, 0.3, 0.0, 0.0, 2.0]);
        assert_eq!(pruned.layers[2].tensors[1].values, vec![0.01], "biases are not pruned");
        assert_eq!(pruned.kernel_nonzeros(), vec![Some(3), None, Some(1)]);
        assert_eq!(pruned.sparsity(), 4.0 / 8.0);
        assert_eq!(weights.sparsity(), 1.0 / 8.0, "an initial zero counts");
    }

    #[test]
    fn rewind_takes_the_checkpoint_and_zeroes_the_pruned() {
        let checkpoint = Weights { layers: vec![dense(0, vec![1.0, 2.0, 3.0, 4.0], vec![0.5, 0.6])] };
        let trained = Weights { layers: vec![dense(0, vec![0.1, -9.0, 0.2, 8.0], vec![0.7, 0.8])] };
        let masks = magnitude_masks(&trained, 0.5).unwrap();
        let rewound = trained.rewind(&checkpoint, &masks).unwrap();
        assert_eq!(rewound.layers[0].tensors[0].values, vec![0.0, 2.0, 0.0, 4.0]);
        assert_eq!(rewound.layers[0].tensors[1].values, vec![0.5, 0.6]);

        let other = Weights { layers: vec![dense(0, vec![1.0, 2.0, 3.0], vec![0.5, 0.6, 0.7])] };
        let e = trained.rewind(&other, &masks).unwrap_err().to_string();
        assert!(e.contains("checkpoint") && e.contains("layer 0"), "{e}");
        let short = Masks { layers: vec![Some(vec![true; 3])] };
        let e = format!("{:#}", trained.rewind(&checkpoint, &short).unwrap_err());
        assert!(e.contains("3 entries") && e.contains("4 weights"), "{e}");
        let misplaced = Masks { layers: vec![None, Some(vec![true])] };
        assert!(misplaced.check_fits(&trained).is_err());
    }

    #[test]
    fn attention_projections_are_pruned_each_on_its_own() {
        // A file may list the tensors in any order; the mask follows
        // ATTENTION_PARAMS (query, key, value, output).
        let projection = |name: &str, values: Vec<f32>| NamedTensor { name: name.into(), shape: vec![2, 2], values };
        let attention = LayerWeights {
            index: 0,
            kind: "ConvAttention".into(),
            tensors: vec![
                projection("output_kernel", vec![4.0, 3.0, 2.0, 1.0]),
                NamedTensor { name: "query_bias".into(), shape: vec![2], values: vec![9.0, 9.0] },
                projection("query_kernel", vec![0.1, 0.4, 0.2, 0.3]),
                projection("key_kernel", vec![-1.0, 1.0, 5.0, 0.5]),
                projection("value_kernel", vec![0.0, 0.0, 7.0, 0.0]),
            ],
        };
        let weights = Weights { layers: vec![attention] };
        let masks = magnitude_masks(&weights, 0.5).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            false, true, false, true, // query: 0.4, 0.3
            true, false, true, false, // key: 5.0, then the first of ±1.0
            true, false, true, false, // value: 7.0, then the first of the tied zeros
            true, true, false, false, // output: 4.0, 3.0
        ];
        assert_eq!(masks.layers[0].as_ref().unwrap(), &expected);
        let mut pruned = weights.clone();
        masks.apply(&mut pruned).unwrap();
        let tensor = |name: &str| pruned.layers[0].get(name).unwrap().values.clone();
        assert_eq!(tensor("query_kernel"), vec![0.0, 0.4, 0.0, 0.3]);
        assert_eq!(tensor("key_kernel"), vec![-1.0, 0.0, 5.0, 0.0]);
        assert_eq!(tensor("output_kernel"), vec![4.0, 3.0, 0.0, 0.0]);
        assert_eq!(tensor("query_bias"), vec![9.0, 9.0], "biases are not pruned");
        assert_eq!(pruned.kernel_nonzeros(), vec![Some(7)]);
        let short = Masks { layers: vec![Some(vec![true; 4])] };
        assert!(format!("{:#}", short.check_fits(&weights).unwrap_err()).contains("16 weights"));
    }
}
