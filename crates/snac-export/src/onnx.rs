//! The subset of ONNX's protobuf schema (`onnx.proto3`, IR version 8) that a
//! QONNX model needs, as prost messages (field numbers are ONNX's), and
//! [`check`], the shape check a graph passes before it is written.

use prost::Message;
use std::collections::HashMap;

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
/// `TensorProto.DataType.INT64` (a `Reshape`'s shape).
pub const INT64: i32 = 7;

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
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
        int64_data: Vec::new(),
        name: name.into(),
    }
}

/// An int64 vector initializer (a `Reshape`'s shape).
pub fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: INT64,
        float_data: Vec::new(),
        int64_data: values.to_vec(),
        name: name.into(),
    }
}

/// Checks a graph before it is written, as `onnx.checker` with shape
/// inference would: every initializer holds as many values as its shape,
/// every node reads tensors defined before it, and each node's shapes fit
/// its operator (the operators that `qonnx::build` writes). The error
/// names the node, the input and both shapes.
pub fn check(model: &ModelProto) -> anyhow::Result<()> {
    use anyhow::{bail, ensure};
    let Some(graph) = &model.graph else { bail!("the ONNX model has no graph") };
    let (mut shapes, constants) = initializer_shapes(graph)?;
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
        let check = NodeCheck { node, at, inputs, graph };
        let out = check.output_shape(&constants)?;
        for name in &node.output {
            ensure!(shapes.insert(name, out.clone()).is_none(), "{}: output '{name}' is already defined", check.at);
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

/// Tensor shapes by name, and the number of values of each initializer.
type Shapes<'a> = (HashMap<&'a str, Vec<i64>>, HashMap<&'a str, usize>);

/// The initializers' shapes and value counts, each checked against the other.
fn initializer_shapes(graph: &GraphProto) -> anyhow::Result<Shapes<'_>> {
    use anyhow::ensure;
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
        let values = if tensor.data_type == INT64 { tensor.int64_data.len() } else { tensor.float_data.len() };
        ensure!(
            values as i64 == numel,
            "initializer '{}': {} values for dims {:?}, which hold {numel}",
            tensor.name,
            values,
            tensor.dims
        );
        ensure!(
            shapes.insert(&tensor.name, tensor.dims.clone()).is_none(),
            "initializer '{}' is defined twice",
            tensor.name
        );
        constants.insert(&tensor.name, values);
    }
    Ok((shapes, constants))
}

/// The shape a graph input or output is declared with.
fn declared(info: &ValueInfoProto) -> Vec<i64> {
    let dims = info.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
    dims.map(|s| s.dim.iter().map(|d| d.dim_value).collect()).unwrap_or_default()
}

/// One node being checked: its name for errors and its inputs' shapes.
struct NodeCheck<'a> {
    node: &'a NodeProto,
    /// `node 'NAME' (OP)`, the start of every error.
    at: String,
    inputs: Vec<Vec<i64>>,
    /// For the values of a `Reshape`'s shape.
    graph: &'a GraphProto,
}

impl NodeCheck<'_> {
    /// The shape of the node's output: one function per operator the export
    /// writes; any other operator is an error.
    fn output_shape(&self, constants: &HashMap<&str, usize>) -> anyhow::Result<Vec<i64>> {
        match self.node.op_type.as_str() {
            "Quant" => self.quant(constants),
            "Relu" | "Tanh" | "Sigmoid" | "LeakyRelu" => {
                self.arity(1)?;
                Ok(self.inputs[0].clone())
            }
            "MatMul" => self.matmul(),
            "Add" | "Mul" => self.add(),
            "Conv" => self.conv(),
            "MaxPool" => self.max_pool(),
            "BatchNormalization" => self.batch_normalization(),
            "Transpose" => self.transpose(),
            "Flatten" => self.flatten(),
            "Reshape" => self.reshape(),
            "Einsum" => self.einsum(),
            "Softmax" => {
                self.arity(1)?;
                Ok(self.inputs[0].clone())
            }
            other => anyhow::bail!("{}: operator '{other}' is not one the export writes", self.at),
        }
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.node.attribute.iter().find(|a| a.name == name).and_then(|a| a.i)
    }

    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
    }

    fn arity(&self, n: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.inputs.len() == n, "{}: {} inputs (accepted: {n})", self.at, self.inputs.len());
        Ok(())
    }

    fn quant(&self, constants: &HashMap<&str, usize>) -> anyhow::Result<Vec<i64>> {
        self.arity(4)?;
        for name in &self.node.input[1..] {
            anyhow::ensure!(
                constants.get(name.as_str()) == Some(&1),
                "{}: '{name}' must be a one-value initializer (scale, zero-point, bit width)",
                self.at
            );
        }
        Ok(self.inputs[0].clone())
    }

    fn matmul(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(2)?;
        let (a, b) = (&self.inputs[0], &self.inputs[1]);
        anyhow::ensure!(
            a.len() == 2 && b.len() == 2 && a[1] == b[0],
            "{}: '{}' has shape {a:?} and '{}' {b:?}; they do not multiply",
            self.at,
            self.node.input[0],
            self.node.input[1]
        );
        Ok(vec![a[0], b[1]])
    }

    fn add(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(2)?;
        let (a, b) = (&self.inputs[0], &self.inputs[1]);
        anyhow::ensure!(
            b.len() <= a.len() && a[a.len() - b.len()..].iter().zip(b).all(|(x, y)| x == y || *y == 1),
            "{}: '{}' of shape {b:?} does not broadcast onto '{}' of shape {a:?}",
            self.at,
            self.node.input[1],
            self.node.input[0]
        );
        Ok(a.clone())
    }

    fn conv(&self) -> anyhow::Result<Vec<i64>> {
        anyhow::ensure!(
            (2..=3).contains(&self.inputs.len()),
            "{}: {} inputs (accepted: 2 or 3)",
            self.at,
            self.inputs.len()
        );
        let at = &self.at;
        let (x, w) = (&self.inputs[0], &self.inputs[1]);
        let bias_fits = self.inputs.get(2).is_none_or(|b| b[..] == [w[0]]);
        let pads = self.ints("pads").unwrap_or_default();
        let kernel = self.ints("kernel_shape").unwrap_or_default();
        let group = self.int("group").unwrap_or(1);
        anyhow::ensure!(
            x.len() == 4
                && w.len() == 4
                && group >= 1
                && x[1] == w[1] * group
                && w[0] % group == 0
                && bias_fits
                && pads.len() == 4
                && kernel[..] == w[2..],
            "{at}: input {x:?}, kernel {w:?}, bias {:?}, kernel_shape {kernel:?}, pads {pads:?}, group {group} do not \
             fit (accepted: [N, C, H, W], [F, C/group, kh, kw], [F] or none, [kh, kw], four pads)",
            self.inputs.get(2)
        );
        let strides = self.ints("strides").unwrap_or_else(|| vec![1, 1]);
        anyhow::ensure!(strides.len() == 2 && strides.iter().all(|&s| s >= 1), "{at}: strides {strides:?}");
        let (h, wd) = (x[2] + pads[0] + pads[2] - w[2], x[3] + pads[1] + pads[3] - w[3]);
        anyhow::ensure!(h >= 0 && wd >= 0, "{at}: a {:?} kernel does not fit the {x:?} input", &w[2..]);
        Ok(vec![x[0], w[0], h / strides[0] + 1, wd / strides[1] + 1])
    }

    fn max_pool(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(1)?;
        let at = &self.at;
        let x = &self.inputs[0];
        let kernel = self.ints("kernel_shape").unwrap_or_default();
        let strides = self.ints("strides").unwrap_or_else(|| vec![1, 1]);
        let pads = self.ints("pads").unwrap_or_else(|| vec![0; 4]);
        anyhow::ensure!(
            x.len() == 4
                && kernel.len() == 2
                && strides.len() == 2
                && strides.iter().all(|&s| s >= 1)
                && pads.len() == 4
                && kernel[0] <= x[2] + pads[0] + pads[2]
                && kernel[1] <= x[3] + pads[1] + pads[3],
            "{at}: input {x:?}, kernel_shape {kernel:?}, strides {strides:?}, pads {pads:?} do not fit \
             (accepted: [N, C, H, W], a 2-D window within the padded input)"
        );
        let h = (x[2] + pads[0] + pads[2] - kernel[0]) / strides[0] + 1;
        let w = (x[3] + pads[1] + pads[3] - kernel[1]) / strides[1] + 1;
        Ok(vec![x[0], x[1], h, w])
    }

    fn batch_normalization(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(5)?;
        let at = &self.at;
        let x = &self.inputs[0];
        anyhow::ensure!(x.len() >= 2, "{at}: input of shape {x:?} has no channel axis");
        for (name, shape) in self.node.input[1..].iter().zip(&self.inputs[1..]) {
            anyhow::ensure!(shape[..] == [x[1]], "{at}: '{name}' has shape {shape:?} for {} channels", x[1]);
        }
        Ok(x.clone())
    }

    fn transpose(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(1)?;
        let perm = self.ints("perm").unwrap_or_default();
        let x = &self.inputs[0];
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        anyhow::ensure!(
            sorted == (0..x.len() as i64).collect::<Vec<_>>(),
            "{}: perm {perm:?} is not a permutation of the {} axes of {x:?}",
            self.at,
            x.len()
        );
        Ok(perm.iter().map(|&p| x[p as usize]).collect())
    }

    fn flatten(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(1)?;
        let x = &self.inputs[0];
        let axis = self.int("axis").unwrap_or(1);
        anyhow::ensure!((0..=x.len() as i64).contains(&axis), "{}: axis {axis} for shape {x:?}", self.at);
        let axis = axis as usize;
        Ok(vec![x[..axis].iter().product(), x[axis..].iter().product()])
    }

    fn reshape(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(2)?;
        let at = &self.at;
        let name = &self.node.input[1];
        let shape = self.graph.initializer.iter().find(|t| t.name == *name && t.data_type == INT64);
        let Some(shape) = shape else { anyhow::bail!("{at}: the shape '{name}' is not an int64 initializer") };
        let x = &self.inputs[0];
        let (from, to): (i64, i64) = (x.iter().product(), shape.int64_data.iter().product());
        anyhow::ensure!(
            from == to && shape.int64_data.iter().all(|&d| d >= 1),
            "{at}: {x:?} cannot become {:?}",
            shape.int64_data
        );
        Ok(shape.int64_data.clone())
    }

    /// Einsum of two operands, `ab…,cd…->ef…` with single-letter axes.
    fn einsum(&self) -> anyhow::Result<Vec<i64>> {
        self.arity(2)?;
        let at = &self.at;
        let equation = self.node.attribute.iter().find(|a| a.name == "equation").map(|a| a.s.clone());
        let equation = String::from_utf8(equation.unwrap_or_default())?;
        let Some((operands, output)) = equation.split_once("->") else {
            anyhow::bail!("{at}: equation '{equation}' has no '->'")
        };
        let terms: Vec<&str> = operands.split(',').collect();
        anyhow::ensure!(terms.len() == 2, "{at}: equation '{equation}' needs two operands");
        let mut sizes: HashMap<char, i64> = HashMap::new();
        for (term, shape) in terms.iter().zip(&self.inputs) {
            anyhow::ensure!(term.len() == shape.len(), "{at}: '{term}' for an input of shape {shape:?}");
            for (axis, &size) in term.chars().zip(shape) {
                let known = *sizes.entry(axis).or_insert(size);
                anyhow::ensure!(known == size, "{at}: axis '{axis}' is {known} and {size}");
            }
        }
        output
            .chars()
            .map(|axis| {
                sizes.get(&axis).copied().ok_or_else(|| anyhow::anyhow!("{at}: output axis '{axis}' is no input's"))
            })
            .collect()
    }
}
