//! The engine against burn's autodiff on the same networks: logits, loss,
//! every parameter gradient and the BatchNorm statistics, in training and
//! inference mode, with and without quantization.

use super::*;
use crate::layers::softmax_cross_entropy;
use crate::weights::Weights;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snac_core::arch::{Arch, BlockType, Component, Layer, Norm, Padding, Shape};

/// Whether the engine covers every layer of `net`.
fn supports(net: &Net) -> bool {
    Engine::new(net).is_some()
}

/// The engine of `net`, which it covers.
fn engine(net: &Net) -> Engine {
    Engine::new(net).expect("the engine covers every test network")
}

fn nets() -> Vec<(&'static str, Arch)> {
    let conv = |layers: Vec<Layer>| Component { name: "c".into(), block_type: BlockType::Conv, layers };
    let flatten = Component { name: "f".into(), block_type: BlockType::Flatten, layers: vec![Layer::Flatten] };
    let pool =
        |mode| Component { name: "p".into(), block_type: BlockType::Flatten, layers: vec![Layer::Aggregate(mode)] };
    vec![
        (
            "mlp",
            Arch::new(
                Shape::Flat(12),
                vec![
                    Component::mlp("a", 10, Norm::Batch, Activation::Relu),
                    Component::mlp("b", 9, Norm::None, Activation::Tanh),
                    Component::mlp("c", 8, Norm::Batch, Activation::Sigmoid),
                    Component::mlp("d", 7, Norm::None, Activation::LeakyRelu),
                    Component::mlp("e", 6, Norm::None, Activation::Gelu),
                    Component::output("o", 4, Activation::Softmax),
                ],
            ),
        ),
        (
            "conv",
            Arch::new(
                Shape::Image { height: 7, width: 6, channels: 2 },
                vec![
                    conv(vec![
                        Layer::Conv2d { filters: 5, kernel: 3, padding: Padding::Valid },
                        Layer::BatchNorm,
                        Layer::Act(Activation::Relu),
                        Layer::ConvAttention { hidden: 3, scale: false },
                        Layer::Act(Activation::Relu),
                        Layer::ConvAttention { hidden: 2, scale: true },
                        // Wider than THIN_ATTENTION_MAX_HIDDEN: gemm's products.
                        Layer::ConvAttention { hidden: 5, scale: true },
                        Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Same },
                        Layer::Act(Activation::Tanh),
                        Layer::Conv2d { filters: 3, kernel: 2, padding: Padding::Same },
                        Layer::Act(Activation::LeakyRelu),
                        Layer::Conv2d { filters: 3, kernel: 1, padding: Padding::Same },
                        Layer::Act(Activation::Relu),
                    ]),
                    flatten,
                    Component::mlp("h", 8, Norm::None, Activation::Relu),
                    Component::output("o", 4, Activation::Softmax),
                ],
            ),
        ),
        (
            "sets",
            Arch::new(
                Shape::Set { elements: 5, features: 3 },
                vec![
                    Component::mlp("phi", 6, Norm::Batch, Activation::Relu),
                    pool(Aggregation::Mean),
                    Component::mlp("rho", 5, Norm::None, Activation::Relu),
                    Component::output("o", 4, Activation::Softmax),
                ],
            ),
        ),
        (
            "sets max",
            Arch::new(
                Shape::Set { elements: 5, features: 3 },
                vec![
                    Component::mlp("phi", 6, Norm::None, Activation::Sigmoid),
                    pool(Aggregation::Max),
                    Component::output("o", 4, Activation::Softmax),
                ],
            ),
        ),
    ]
}

fn close(a: &[f32], b: &[f32], tolerance: f32) -> f64 {
    assert_eq!(a.len(), b.len());
    let good = a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= tolerance * (1.0 + x.abs().max(y.abs()))).count();
    good as f64 / a.len().max(1) as f64
}

fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    // Plus an absolute floor: a bias before BatchNorm has a zero gradient.
    diff / (norm + 1e-3)
}

#[test]
fn engine_matches_burn() {
    let batch = 16;
    for (name, arch) in nets() {
        for quant in [None, Some(QuantSpec::from_qkeras(16, 6).unwrap()), Some(QuantSpec::from_qkeras(8, 3).unwrap())] {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut weights = Weights::init(&arch, &mut rng).unwrap();
            // Non-trivial BatchNorm parameters and statistics.
            for layer in weights.layers.iter_mut().filter(|l| l.kind == "BatchNorm") {
                for t in &mut layer.tensors {
                    for v in &mut t.values {
                        *v = if t.name == "moving_variance" {
                            rng.random_range(0.5..2.0)
                        } else {
                            rng.random_range(-0.5..1.5)
                        };
                    }
                }
            }
            let (net, table) = Net::build(&arch, &weights).unwrap();
            assert!(supports(&net));
            let x: Vec<f32> = (0..batch * net.input_features).map(|_| rng.random_range(-2.0..2.0)).collect();
            let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..4)).collect();
            let q = quant.as_ref();
            let label = format!("{name} {:?}", quant.as_ref().map(|s| s.weights.width));

            // Training mode: burn's autodiff.
            let device = Device::flex().autodiff();
            let tensors: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&device, q).require_grad())).collect();
            let input = Tensor::from_data(TensorData::new(x.clone(), [batch, net.input_features]), &device);
            let mut one_hot = vec![0.0f32; batch * 4];
            for (i, &l) in labels.iter().enumerate() {
                one_hot[i * 4 + l as usize] = 1.0;
            }
            let mut stats = Vec::new();
            let logits = net.forward(input, &tensors, true, &mut stats, q, None);
            let loss =
                softmax_cross_entropy(logits.clone(), Tensor::from_data(TensorData::new(one_hot, [batch, 4]), &device));
            let burn_loss = loss.clone().inner().into_scalar::<f32>();
            let burn_logits = logits.inner().into_data().try_into_vec::<f32>().unwrap();
            let mut grads = loss.backward();

            let params = parameter_values(&table, q);
            // Convolutions in one chunk, and one sample per chunk.
            let whole = engine(&net).step(&table, &params, x.clone(), &labels, q);
            let mut chunked = Engine { conv_chunk_floats: 1, ..engine(&net) };
            let result = chunked.step(&table, &params, x.clone(), &labels, q);
            assert_eq!(whole.logits, result.logits, "{label}: chunks change the forward pass");
            for (i, (a, b)) in whole.gradients.iter().zip(&result.gradients).enumerate() {
                if let (Some(a), Some(b)) = (a, b) {
                    let error = relative_error(a, b);
                    assert!(error < 1e-4, "{label}: chunks change gradient {i} by {error:e}");
                }
            }
            let share = close(&result.logits, &burn_logits, 1e-4);
            let floor = if quant.is_some() { 0.95 } else { 1.0 };
            assert!(share >= floor, "{label}: only {share} of the training logits agree");
            assert!((result.loss as f32 - burn_loss).abs() < 1e-3 * (1.0 + burn_loss.abs()), "{label}: loss");
            for (i, tensor) in tensors.iter().enumerate() {
                let expected = tensor
                    .as_ref()
                    .unwrap()
                    .grad_remove(&mut grads)
                    .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
                let got = result.gradients[i].clone();
                let (Some(expected), Some(got)) = (expected, got) else {
                    assert!(!table.params[i].trainable, "{label}: parameter {i} has no gradient");
                    continue;
                };
                // A flipped rounding in one quantized activation moves many
                // gradient entries a little: compare whole vectors.
                let error = relative_error(&got, &expected);
                let bound = if quant.is_some() { 5e-2 } else { 1e-3 };
                let name = &table.params[i].name;
                assert!(error < bound, "{label}: parameter {i} ({name}) gradient differs by {error:e}");
                assert!(
                    share >= floor,
                    "{label}: parameter {} ({}) gradients agree for only {share}",
                    i,
                    table.params[i].name
                );
            }
            for ((m, v, mean, var), (bm, bv, bmean, bvar)) in result.batch_stats.iter().zip(stats) {
                assert_eq!((*m, *v), (bm, bv));
                let host = |t: Tensor<2>| t.inner().into_data().try_into_vec::<f32>().unwrap();
                assert!(
                    close(mean, &host(bmean), 1e-4) >= floor && close(var, &host(bvar), 1e-3) >= floor,
                    "{label}: statistics"
                );
            }

            // Inference mode.
            let plain = Device::flex();
            let tensors: Vec<_> = table.params.iter().map(|p| Some(p.tensor(&plain, q))).collect();
            let input = Tensor::from_data(TensorData::new(x.clone(), [batch, net.input_features]), &plain);
            let expected = net
                .forward(input, &tensors, false, &mut Vec::new(), q, None)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let got = engine(&net).infer(&params, x.clone(), batch, q);
            let chunked = Engine { conv_chunk_floats: 1, ..engine(&net) }.infer(&params, x, batch, q);
            assert_eq!(got, chunked, "{label}: chunks change inference");
            let share = close(&got, &expected, 1e-4);
            assert!(share >= floor, "{label}: only {share} of the inference logits agree");
        }
    }
}
