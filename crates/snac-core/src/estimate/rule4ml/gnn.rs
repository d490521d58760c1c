//! rule4ml 0.2.0's graph-neural-network predictor (`TorchGNN`) evaluated in
//! plain Rust: one predictor per target (LUT, FF, ...), built from its
//! `*.config.json` and the tensors of its `*.weights.pt`.
//!
//! The network, as rule4ml defines it: embeddings of the four global
//! categories and bias-free linear maps of the global numbers; one graph node
//! per layer (its type embedding, then its numbers) in a chain with self
//! loops; GIN convolutions (`nn((1 + ε)·x + Σ neighbours)`, `nn` = Linear,
//! ReLU, Linear) each followed by GraphNorm and ReLU; the outputs of all of
//! them concatenated, pooled by softmax attention over the nodes of a graph,
//! concatenated with the global part and run through ReLU Dense layers and a
//! softplus output. Dropout is off at inference.
//!
//! rule4ml calls GraphNorm without a batch vector, so its statistics run over
//! every node of every graph predicted together. [`GnnPredictor::predict`]
//! does the same over the samples it gets: one sample alone is what SNAC-Pack
//! gets (its 24 rows per call are one model repeated), a whole grid is what
//! rule4ml's `MultiModelWrapper.predict` gets for its default grid.

use super::torch_file::Tensor;
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::collections::HashMap;

/// GraphNorm's ε (torch_geometric's default; not part of the state dict).
const GRAPH_NORM_EPS: f64 = 1e-5;

/// One sample as the network reads it: the global numbers in the order of
/// [`GnnPredictor::global_numerical_labels`], the global categories as
/// rule4ml's ordinal codes (by category name), and one node per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct GnnInput {
    pub global_numerical: Vec<f64>,
    pub global_categorical: Vec<(String, usize)>,
    pub nodes: Vec<GnnNode>,
}

/// A layer node: its type code and numbers in the order of
/// [`GnnPredictor::sequential_numerical_labels`].
#[derive(Clone, Debug, PartialEq)]
pub struct GnnNode {
    pub layer_type: usize,
    pub numerical: Vec<f64>,
}

#[derive(Clone, Debug)]
struct Linear {
    inputs: usize,
    outputs: usize,
    /// Row-major `outputs × inputs`, as torch stores it.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Linear {
    fn load(weights: &Weights, name: &str, bias: bool) -> Result<Linear> {
        let weight = weights.get(&format!("{name}.weight"))?;
        ensure!(weight.shape.len() == 2, "{name}.weight has shape {:?}, not a matrix", weight.shape);
        let (outputs, inputs) = (weight.shape[0], weight.shape[1]);
        let bias = if bias {
            let bias = weights.get(&format!("{name}.bias"))?;
            ensure!(bias.shape == [outputs], "{name}.bias has shape {:?}, expected [{outputs}]", bias.shape);
            Some(bias.data.clone())
        } else {
            None
        };
        Ok(Linear { inputs, outputs, weight: weight.data.clone(), bias })
    }

    /// `out = W·x + b`, in f32 as torch computes it.
    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        debug_assert_eq!(x.len(), self.inputs);
        out.clear();
        for row in 0..self.outputs {
            let sum = dot(&self.weight[row * self.inputs..(row + 1) * self.inputs], x);
            out.push(sum + self.bias.as_ref().map_or(0.0, |b| b[row]));
        }
    }
}

#[derive(Clone, Debug)]
struct Embedding {
    dim: usize,
    rows: usize,
    table: Vec<f32>,
}

impl Embedding {
    fn load(weights: &Weights, name: &str) -> Result<Embedding> {
        let table = weights.get(&format!("{name}.weight"))?;
        ensure!(table.shape.len() == 2, "{name}.weight has shape {:?}, not a table", table.shape);
        Ok(Embedding { rows: table.shape[0], dim: table.shape[1], table: table.data.clone() })
    }

    fn row(&self, index: usize, what: &str) -> Result<&[f32]> {
        ensure!(index < self.rows, "{what} code {index} is outside the embedding's {} rows", self.rows);
        Ok(&self.table[index * self.dim..(index + 1) * self.dim])
    }
}

#[derive(Clone, Debug)]
struct GinLayer {
    eps: f32,
    first: Linear,
    second: Linear,
    norm_weight: Vec<f64>,
    norm_bias: Vec<f64>,
    norm_mean_scale: Vec<f64>,
}

/// The state dict of one predictor, with errors that name the file.
struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    origin: &'a str,
}

impl Weights<'_> {
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).with_context(|| format!("{}: no tensor '{name}'", self.origin))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f64>> {
        let tensor = self.get(name)?;
        ensure!(tensor.data.len() == len, "{}: {name} has {} values, expected {len}", self.origin, tensor.data.len());
        Ok(widen(tensor))
    }
}

fn widen(tensor: &Tensor) -> Vec<f64> {
    tensor.data.iter().map(|&v| f64::from(v)).collect()
}

/// How the network's output becomes the target: rule4ml's
/// `BoardPercentScaler` (the network predicts % of the board) or nothing.
#[derive(Clone, Debug)]
enum OutputScale {
    Raw,
    /// Board name → the resource total the percentage is of.
    PercentOfBoard(HashMap<String, f64>),
}

/// One rule4ml GNN predictor.
#[derive(Clone, Debug)]
pub struct GnnPredictor {
    /// `lut`, `ff`, `dsp`, `bram`, `cycles` or `interval`.
    pub target: String,
    pub global_numerical_labels: Vec<String>,
    pub sequential_numerical_labels: Vec<String>,
    /// Category name (`strategy`, `board`, ...) → value → ordinal code.
    pub global_categories: HashMap<String, HashMap<String, usize>>,
    /// Layer type name → ordinal code.
    pub layer_types: HashMap<String, usize>,
    /// The global embeddings in the order the network concatenates them.
    global_embeddings: Vec<(String, Embedding)>,
    layer_type_embedding: Embedding,
    numerical_layers: Vec<Linear>,
    gin_layers: Vec<GinLayer>,
    gate: Linear,
    dense_layers: Vec<Linear>,
    output: Linear,
    scale: OutputScale,
}

fn string_list(config: &Value, key: &str, origin: &str) -> Result<Vec<String>> {
    config[key]
        .as_array()
        .with_context(|| format!("{origin}: '{key}' is not a list"))?
        .iter()
        .map(|v| v.as_str().map(str::to_string).with_context(|| format!("{origin}: '{key}' holds a non-string")))
        .collect()
}

fn code_map(value: &Value, what: &str, origin: &str) -> Result<HashMap<String, usize>> {
    let map = value.as_object().with_context(|| format!("{origin}: {what} is not a map"))?;
    map.iter()
        .map(|(key, code)| {
            let code = code.as_u64().with_context(|| format!("{origin}: {what}.{key} is not a whole number"))?;
            Ok((key.to_lowercase(), code as usize))
        })
        .collect()
}

impl GnnPredictor {
    /// Builds a predictor from its parsed `*.config.json` and the tensors of
    /// its `*.weights.pt`; `origin` names them in errors.
    pub fn new(config: &Value, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<GnnPredictor> {
        let class = config["model_class"].as_str().unwrap_or("(none)");
        ensure!(class == "TorchGNN", "{origin}: model_class {class}; only rule4ml's TorchGNN predictors are supported");
        let targets = string_list(config, "output_labels", origin)?;
        let [target] = targets.as_slice() else {
            bail!("{origin}: {} output labels; one per predictor is supported", targets.len())
        };
        let global_numerical_labels = string_list(config, "global_numerical_labels", origin)?;
        let sequential_numerical_labels = string_list(config, "sequential_numerical_labels", origin)?;
        let global_maps = config["global_categorical_maps"]
            .as_object()
            .with_context(|| format!("{origin}: global_categorical_maps is not a map"))?;
        let mut global_categories = HashMap::new();
        for (name, map) in global_maps {
            global_categories.insert(name.clone(), code_map(map, name, origin)?);
        }
        let layer_types =
            code_map(&config["sequential_categorical_maps"]["layer_type"], "sequential_categorical_maps", origin)?;
        let settings = &config["model_config"]["settings"];
        let layer_count = |key: &str| settings[key].as_array().map_or(0, Vec::len);

        let weights = Weights { tensors, origin };
        // The embeddings are named g{index}_{category}_embedding; the index is
        // the order in which the network concatenates them.
        let mut global_embeddings = Vec::new();
        for index in 0..global_categories.len() {
            let prefix = format!("global_embeddings.g{index}_");
            let name = tensors
                .keys()
                .find_map(|key| key.strip_prefix(&prefix)?.strip_suffix("_embedding.weight"))
                .with_context(|| format!("{origin}: no global embedding {prefix}*"))?;
            ensure!(global_categories.contains_key(name), "{origin}: embedding for unknown category '{name}'");
            let embedding = Embedding::load(&weights, &format!("global_embeddings.g{index}_{name}_embedding"))?;
            global_embeddings.push((name.to_string(), embedding));
        }
        let layer_type_embedding = Embedding::load(&weights, "sequential_embeddings.s0_layer_type_embedding")?;
        let categories = global_categories.len();
        let numerical_layers = (0..layer_count("numerical_dense_layers"))
            .map(|i| Linear::load(&weights, &format!("numerical_layers.g{}_numerical_layer", i + categories), false))
            .collect::<Result<Vec<_>>>()?;
        let mut gin_layers = Vec::new();
        for i in 0..layer_count("gconv_layers") {
            let first = Linear::load(&weights, &format!("gconvs.{i}.nn.0"), true)?;
            let second = Linear::load(&weights, &format!("gconvs.{i}.nn.2"), true)?;
            let units = second.outputs;
            let eps = match tensors.get(&format!("gconvs.{i}.eps")) {
                Some(eps) => *eps.data.first().context("empty eps")?,
                None => 0.0,
            };
            gin_layers.push(GinLayer {
                eps,
                first,
                second,
                norm_weight: weights.vector(&format!("norms.{i}.weight"), units)?,
                norm_bias: weights.vector(&format!("norms.{i}.bias"), units)?,
                norm_mean_scale: weights.vector(&format!("norms.{i}.mean_scale"), units)?,
            });
        }
        let gate = Linear::load(&weights, "attention_pool.gate_nn.0", true)?;
        let dense_layers = (0..layer_count("dense_layers"))
            .map(|i| Linear::load(&weights, &format!("dense_layers.{i}"), true))
            .collect::<Result<Vec<_>>>()?;
        let output = Linear::load(&weights, "output_layer", true)?;

        let scale = match config["scaler_class"].as_str() {
            None => OutputScale::Raw,
            Some("BoardPercentScaler") => {
                let boards = config["scaler_config"]["available_resources"]
                    .as_object()
                    .with_context(|| format!("{origin}: scaler_config.available_resources is not a map"))?;
                let mut totals = HashMap::new();
                for (board, resources) in boards {
                    let total = resources[target.to_lowercase().as_str()]
                        .as_f64()
                        .with_context(|| format!("{origin}: no {target} total for board {board}"))?;
                    totals.insert(board.to_lowercase(), total);
                }
                OutputScale::PercentOfBoard(totals)
            }
            Some(other) => bail!("{origin}: scaler {other} is not supported; accepted: BoardPercentScaler or none"),
        };

        let predictor = GnnPredictor {
            target: target.to_lowercase(),
            global_numerical_labels,
            sequential_numerical_labels,
            global_categories,
            layer_types,
            global_embeddings,
            layer_type_embedding,
            numerical_layers,
            gin_layers,
            gate,
            dense_layers,
            output,
            scale,
        };
        predictor.check_shapes().with_context(|| format!("{origin}: weights do not fit the config"))?;
        Ok(predictor)
    }

    /// Checks that consecutive layers fit, so that `predict` cannot index
    /// out of bounds.
    fn check_shapes(&self) -> Result<()> {
        let mut global = self.global_numerical_labels.len();
        for layer in &self.numerical_layers {
            ensure!(layer.inputs == global, "numerical layer takes {} inputs, gets {global}", layer.inputs);
            global = layer.outputs;
        }
        let mut node = self.layer_type_embedding.dim + self.sequential_numerical_labels.len();
        let mut pooled = 0;
        for (i, gin) in self.gin_layers.iter().enumerate() {
            ensure!(gin.first.inputs == node, "GIN layer {i} takes {} inputs, gets {node}", gin.first.inputs);
            ensure!(gin.second.inputs == gin.first.outputs, "GIN layer {i}: inner sizes differ");
            node = gin.second.outputs;
            pooled += node;
        }
        ensure!(self.gate.inputs == pooled && self.gate.outputs == 1, "attention gate does not take {pooled} inputs");
        let mut width = self.global_embeddings.iter().map(|(_, e)| e.dim).sum::<usize>() + global + pooled;
        for (i, dense) in self.dense_layers.iter().enumerate() {
            ensure!(dense.inputs == width, "dense layer {i} takes {} inputs, gets {width}", dense.inputs);
            width = dense.outputs;
        }
        ensure!(self.output.inputs == width && self.output.outputs == 1, "output layer does not take {width} inputs");
        Ok(())
    }

    /// Predicts the target for every sample, predicted together as rule4ml
    /// does (GraphNorm statistics over all their nodes). `boards` names each
    /// sample's board, for the percentage-of-board scaling.
    pub fn predict(&self, samples: &[GnnInput], boards: &[&str]) -> Result<Vec<f64>> {
        ensure!(samples.len() == boards.len(), "{} samples but {} boards", samples.len(), boards.len());
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        // Node features: the type embedding, then the numbers.
        let mut nodes: Vec<Vec<f32>> = Vec::new();
        let mut graphs = Vec::with_capacity(samples.len());
        for (index, sample) in samples.iter().enumerate() {
            ensure!(!sample.nodes.is_empty(), "sample {index} has no layers");
            let start = nodes.len();
            for node in &sample.nodes {
                ensure!(
                    node.numerical.len() == self.sequential_numerical_labels.len(),
                    "a layer node has {} numbers, expected {}",
                    node.numerical.len(),
                    self.sequential_numerical_labels.len()
                );
                let mut features = self.layer_type_embedding.row(node.layer_type, "layer type")?.to_vec();
                features.extend(node.numerical.iter().map(|&v| v as f32));
                nodes.push(features);
            }
            graphs.push(start..nodes.len());
        }

        // GIN layers on the chains; their outputs are concatenated per node.
        let mut concatenated: Vec<Vec<f32>> = vec![Vec::new(); nodes.len()];
        let mut hidden = Vec::new();
        for gin in &self.gin_layers {
            let mut outputs = Vec::with_capacity(nodes.len());
            for graph in &graphs {
                for i in graph.clone() {
                    // (1 + ε)·x_i plus the neighbours, the self loop included.
                    let mut aggregate: Vec<f32> = nodes[i].iter().map(|v| (2.0 + gin.eps) * v).collect();
                    for j in [i.wrapping_sub(1), i + 1] {
                        if graph.contains(&j) {
                            aggregate.iter_mut().zip(&nodes[j]).for_each(|(a, v)| *a += v);
                        }
                    }
                    gin.first.forward(&aggregate, &mut hidden);
                    hidden.iter_mut().for_each(|v| *v = v.max(0.0));
                    let mut out = Vec::new();
                    gin.second.forward(&hidden, &mut out);
                    outputs.push(out);
                }
            }
            graph_norm(&mut outputs, gin);
            for (node, out) in concatenated.iter_mut().zip(outputs.iter_mut()) {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
                node.extend_from_slice(out);
            }
            nodes = outputs;
        }

        let mut predictions = Vec::with_capacity(samples.len());
        let mut buffer = Vec::new();
        for ((sample, graph), board) in samples.iter().zip(&graphs).zip(boards) {
            let mut x = Vec::new();
            for (name, embedding) in &self.global_embeddings {
                let code = sample
                    .global_categorical
                    .iter()
                    .find(|(category, _)| category == name)
                    .with_context(|| format!("no value for the global category '{name}'"))?
                    .1;
                x.extend_from_slice(embedding.row(code, name)?);
            }
            ensure!(
                sample.global_numerical.len() == self.global_numerical_labels.len(),
                "{} global numbers, expected {}",
                sample.global_numerical.len(),
                self.global_numerical_labels.len()
            );
            let mut numerical: Vec<f32> = sample.global_numerical.iter().map(|&v| v as f32).collect();
            for layer in &self.numerical_layers {
                layer.forward(&numerical, &mut buffer);
                std::mem::swap(&mut numerical, &mut buffer);
            }
            x.extend(&numerical);
            x.extend(attention_pool(&self.gate, &concatenated[graph.clone()]));
            for dense in &self.dense_layers {
                dense.forward(&x, &mut buffer);
                x = buffer.iter().map(|v| v.max(0.0)).collect();
            }
            self.output.forward(&x, &mut buffer);
            let value = softplus(f64::from(buffer[0]));
            predictions.push(match &self.scale {
                OutputScale::Raw => value,
                OutputScale::PercentOfBoard(totals) => {
                    let total = totals.get(*board).with_context(|| {
                        format!("the {} predictor knows no board '{board}'", self.target.to_uppercase())
                    })?;
                    value * total / 100.0
                }
            });
        }
        Ok(predictions)
    }
}

/// GraphNorm over all rows: `w·(x − α·mean) / sqrt(var + ε) + b`, the
/// variance taken of the shifted values.
fn graph_norm(rows: &mut [Vec<f32>], gin: &GinLayer) {
    let count = rows.len() as f64;
    for channel in 0..gin.norm_weight.len() {
        let mean = rows.iter().map(|row| f64::from(row[channel])).sum::<f64>() / count;
        let shift = mean * gin.norm_mean_scale[channel];
        let var = rows.iter().map(|row| (f64::from(row[channel]) - shift).powi(2)).sum::<f64>() / count;
        let scale = gin.norm_weight[channel] / (var + GRAPH_NORM_EPS).sqrt();
        for row in rows.iter_mut() {
            row[channel] = (scale * (f64::from(row[channel]) - shift) + gin.norm_bias[channel]) as f32;
        }
    }
}

/// Softmax attention over the nodes of one graph: Σ softmax(gate(x_i))·x_i.
fn attention_pool(gate: &Linear, nodes: &[Vec<f32>]) -> Vec<f32> {
    let mut score = Vec::new();
    let scores: Vec<f64> = nodes
        .iter()
        .map(|node| {
            gate.forward(node, &mut score);
            f64::from(score[0])
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut pooled = vec![0.0f64; nodes[0].len()];
    for (node, weight) in nodes.iter().zip(&weights) {
        pooled.iter_mut().zip(node).for_each(|(p, &v)| *p += weight / total * f64::from(v));
    }
    pooled.into_iter().map(|v| v as f32).collect()
}

/// A dot product in eight independent lanes, so that the compiler can keep
/// it in SIMD registers (a plain left-to-right sum cannot be reordered).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// torch's softplus (β = 1, linear above 20).
fn softplus(x: f64) -> f64 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_matches_torch() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(25.0), 25.0);
        assert!(softplus(-30.0) > 0.0 && softplus(-30.0) < 1e-12);
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 / (i as f32 + 1.0)).collect();
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-5);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn graph_norm_by_hand() {
        let linear = Linear { inputs: 1, outputs: 1, weight: vec![1.0], bias: Some(vec![0.0]) };
        let gin = GinLayer {
            eps: 0.0,
            first: linear.clone(),
            second: linear,
            norm_weight: vec![2.0],
            norm_bias: vec![1.0],
            norm_mean_scale: vec![0.5],
        };
        // Values 1 and 3: mean 2, shifted by 1 → 0 and 2, variance 2.
        let mut rows = vec![vec![1.0f32], vec![3.0]];
        graph_norm(&mut rows, &gin);
        let std = (2.0 + GRAPH_NORM_EPS).sqrt();
        assert!((f64::from(rows[0][0]) - 1.0).abs() < 1e-6);
        assert!((f64::from(rows[1][0]) - (2.0 * 2.0 / std + 1.0)).abs() < 1e-6);
    }

    #[test]
    fn attention_pool_weights_by_softmax_of_the_gate() {
        let gate = Linear { inputs: 2, outputs: 1, weight: vec![1.0, 0.0], bias: Some(vec![0.5]) };
        let nodes = vec![vec![0.0, 10.0], vec![(3f32).ln(), 20.0]];
        // Gates 0.5 and ln 3 + 0.5: weights 1/4 and 3/4.
        let pooled = attention_pool(&gate, &nodes);
        assert!((pooled[1] - (0.25 * 10.0 + 0.75 * 20.0)).abs() < 1e-5, "{pooled:?}");
    }
}
