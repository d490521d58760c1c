//! The subset of ONNX's protobuf schema (`onnx.proto3`, IR version 8) that a
//! QONNX model needs, as prost messages. Field numbers are ONNX's.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto.AttributeType`.
pub const ATTRIBUTE_FLOAT: i32 = 1;
pub const ATTRIBUTE_INT: i32 = 2;
pub const ATTRIBUTE_STRING: i32 = 3;
pub const ATTRIBUTE_INTS: i32 = 7;

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    // Optional so that zeros are written: proto3 would leave a plain 0 out,
    // and ONNX would then apply the attribute's default (epsilon 1e-5).
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

impl AttributeProto {
    pub fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: ATTRIBUTE_INT, i: Some(value), ..Default::default() }
    }
    pub fn float(name: &str, value: f32) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: ATTRIBUTE_FLOAT, f: Some(value), ..Default::default() }
    }
    pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: ATTRIBUTE_INTS, ints: values.to_vec(), ..Default::default() }
    }
    pub fn string(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: ATTRIBUTE_STRING,
            s: value.as_bytes().to_vec(),
            ..Default::default()
        }
    }
}

/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, tag = "1")]
    pub dim_value: i64,
}

/// A float tensor value-info of fixed shape.
pub fn float_value(name: &str, shape: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: shape.iter().map(|&d| Dimension { dim_value: d as i64 }).collect(),
                }),
            }),
        }),
    }
}

/// A float initializer.
pub fn float_tensor(name: &str, shape: &[usize], values: Vec<f32>) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        float_data: values,
        name: name.into(),
    }
}

/// Checks a graph before it is written, as `onnx.checker` with shape
/// inference would: every initializer holds as many values as its shape,
/// every node reads tensors defined before it, and each node's shapes fit
/// its operator (the operators [`crate::qonnx::build`] writes). The error
/// names the node, the input and both shapes.
pub fn check(model: &ModelProto) -> anyhow::Result<()> {
    use anyhow::{bail, ensure};
    use std::collections::HashMap;
    let Some(graph) = &model.graph else { bail!("the ONNX model has no graph") };
    let mut shapes: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut constants: HashMap<&str, usize> = HashMap::new();
    for tensor in &graph.initializer {
        ensure!(
            tensor.dims.iter().all(|&d| d >= 1),
            "initializer '{}': dims {:?} (accepted: all ≥ 1)",
            tensor.name,
            tensor.dims
        );
        let numel: i64 = tensor.dims.iter().product();
        ensure!(
            tensor.float_data.len() as i64 == numel,
            "initializer '{}': {} values for dims {:?}, which hold {numel}",
            tensor.name,
            tensor.float_data.len(),
            tensor.dims
        );
        ensure!(
            shapes.insert(&tensor.name, tensor.dims.clone()).is_none(),
            "initializer '{}' is defined twice",
            tensor.name
        );
        constants.insert(&tensor.name, tensor.float_data.len());
    }
    let declared = |info: &ValueInfoProto| -> Vec<i64> {
        let dims = info.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
        dims.map(|s| s.dim.iter().map(|d| d.dim_value).collect()).unwrap_or_default()
    };
    for input in &graph.input {
        ensure!(shapes.insert(&input.name, declared(input)).is_none(), "graph input '{}' is defined twice", input.name);
    }
    for node in &graph.node {
        let at = format!("node '{}' ({})", node.name, node.op_type);
        let mut inputs = Vec::new();
        for name in &node.input {
            let Some(shape) = shapes.get(name.as_str()) else {
                bail!("{at}: input '{name}' is not defined by an earlier node, an initializer or the graph input")
            };
            inputs.push(shape.clone());
        }
        let int = |name: &str| node.attribute.iter().find(|a| a.name == name).and_then(|a| a.i);
        let ints = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone());
        let arity = |n: usize| -> anyhow::Result<()> {
            ensure!(inputs.len() == n, "{at}: {} inputs (accepted: {n})", inputs.len());
            Ok(())
        };
        let out: Vec<i64> = match node.op_type.as_str() {
            "Quant" => {
                arity(4)?;
                for name in &node.input[1..] {
                    ensure!(
                        constants.get(name.as_str()) == Some(&1),
                        "{at}: '{name}' must be a one-value initializer (scale, zero-point, bit width)"
                    );
                }
                inputs[0].clone()
            }
            "Relu" | "Tanh" | "Sigmoid" | "LeakyRelu" => {
                arity(1)?;
                inputs[0].clone()
            }
            "MatMul" => {
                arity(2)?;
                let (a, b) = (&inputs[0], &inputs[1]);
                ensure!(
                    a.len() == 2 && b.len() == 2 && a[1] == b[0],
                    "{at}: '{}' has shape {a:?} and '{}' {b:?}; they do not multiply",
                    node.input[0],
                    node.input[1]
                );
                vec![a[0], b[1]]
            }
            "Add" => {
                arity(2)?;
                let (a, b) = (&inputs[0], &inputs[1]);
                ensure!(
                    b.len() <= a.len() && a[a.len() - b.len()..].iter().zip(b).all(|(x, y)| x == y || *y == 1),
                    "{at}: '{}' of shape {b:?} does not broadcast onto '{}' of shape {a:?}",
                    node.input[1],
                    node.input[0]
                );
                a.clone()
            }
            "Conv" => {
                arity(3)?;
                let (x, w, b) = (&inputs[0], &inputs[1], &inputs[2]);
                let pads = ints("pads").unwrap_or_default();
                let kernel = ints("kernel_shape").unwrap_or_default();
                ensure!(
                    x.len() == 4
                        && w.len() == 4
                        && x[1] == w[1]
                        && b[..] == [w[0]]
                        && pads.len() == 4
                        && kernel[..] == w[2..],
                    "{at}: input {x:?}, kernel {w:?}, bias {b:?}, kernel_shape {kernel:?}, pads {pads:?} do not fit \
                     (accepted: [N, C, H, W], [F, C, k, k], [F], [k, k], four pads)"
                );
                let (h, wd) = (x[2] + pads[0] + pads[2] - w[2] + 1, x[3] + pads[1] + pads[3] - w[3] + 1);
                ensure!(h >= 1 && wd >= 1, "{at}: a {:?} kernel does not fit the {x:?} input", &w[2..]);
                vec![x[0], w[0], h, wd]
            }
            "BatchNormalization" => {
                arity(5)?;
                let x = &inputs[0];
                ensure!(x.len() >= 2, "{at}: input of shape {x:?} has no channel axis");
                for (name, shape) in node.input[1..].iter().zip(&inputs[1..]) {
                    ensure!(shape[..] == [x[1]], "{at}: '{name}' has shape {shape:?} for {} channels", x[1]);
                }
                x.clone()
            }
            "Transpose" => {
                arity(1)?;
                let perm = ints("perm").unwrap_or_default();
                let x = &inputs[0];
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                ensure!(
                    sorted == (0..x.len() as i64).collect::<Vec<_>>(),
                    "{at}: perm {perm:?} is not a permutation of the {} axes of {x:?}",
                    x.len()
                );
                perm.iter().map(|&p| x[p as usize]).collect()
            }
            "Flatten" => {
                arity(1)?;
                let x = &inputs[0];
                let axis = int("axis").unwrap_or(1);
                ensure!((0..=x.len() as i64).contains(&axis), "{at}: axis {axis} for shape {x:?}");
                let axis = axis as usize;
                vec![x[..axis].iter().product(), x[axis..].iter().product()]
            }
            other => bail!("{at}: operator '{other}' is not one the export writes"),
        };
        for name in &node.output {
            ensure!(shapes.insert(name, out.clone()).is_none(), "{at}: output '{name}' is already defined");
        }
    }
    for output in &graph.output {
        let Some(shape) = shapes.get(output.name.as_str()) else {
            bail!("graph output '{}' is computed by no node", output.name)
        };
        let expected = declared(output);
        ensure!(
            *shape == expected,
            "graph output '{}': the nodes compute shape {shape:?}, but it is declared {expected:?}",
            output.name
        );
    }
    Ok(())
}
