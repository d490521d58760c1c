//! The architecture IR: the one description of a network that every other part
//! reads (trainer, BOPs counter, estimators, exporters, YAML writer).
//!
//! An [`Arch`] is an input shape plus named [`Component`]s (SNAC-Pack's
//! "blocks"), each a short sequence of [`Layer`]s. [`Arch::layers`] flattens it
//! into the compute sequence; [`Arch::shapes`] infers every layer's output shape.
//!
//! ```
//! use snac_core::arch::{Activation, Arch, Component, Layer, Norm, Shape};
//! let arch = Arch::new(
//!     Shape::Flat(64),
//!     vec![
//!         Component::mlp("b0", 32, Norm::Batch, Activation::Relu),
//!         Component::output("output", 10, Activation::Softmax),
//!     ],
//! );
//! assert_eq!(arch.output_shape().unwrap(), Shape::Flat(10));
//! assert_eq!(arch.parameter_count().unwrap(), 64 * 32 + 32 + 2 * 32 + 32 * 10 + 10);
//! ```

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The shape of one sample flowing between layers (the batch axis is implicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// A feature vector.
    Flat(usize),
    /// An image, channels last: height, width, channels.
    Image { height: usize, width: usize, channels: usize },
    /// A set of `elements` items of `features` each (DeepSets: particles of a
    /// jet, points of a cloud); layers before an [`Layer::Aggregate`] act on
    /// every element alike.
    Set { elements: usize, features: usize },
}

impl Shape {
    /// Number of scalars in one sample.
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Flat(n) => n,
            Shape::Image { height, width, channels } => height * width * channels,
            Shape::Set { elements, features } => elements * features,
        }
    }

    /// Rows per sample and values per row when a batch is laid out as a
    /// matrix: an image is `height·width` positions of `channels`, a set is
    /// `elements` rows of `features`, a vector is one row.
    pub fn rows_and_features(&self) -> (usize, usize) {
        match *self {
            Shape::Flat(n) => (1, n),
            Shape::Image { height, width, channels } => (height * width, channels),
            Shape::Set { elements, features } => (elements, features),
        }
    }

    /// The shape as a list of dimensions, as SNAC-Pack writes `input_shape`.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Flat(n) => vec![n],
            Shape::Image { height, width, channels } => vec![height, width, channels],
            Shape::Set { elements, features } => vec![elements, features],
        }
    }

    /// Inverse of [`Shape::dims`].
    pub fn from_dims(dims: &[usize]) -> Result<Shape> {
        match *dims {
            [n] if n > 0 => Ok(Shape::Flat(n)),
            [h, w, c] if h > 0 && w > 0 && c > 0 => Ok(Shape::Image { height: h, width: w, channels: c }),
            [h, w] if h > 0 && w > 0 => Ok(Shape::Image { height: h, width: w, channels: 1 }),
            _ => bail!(
                "input shape {dims:?} is not one of [features], [height, width] or [height, width, channels] with positive sizes"
            ),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Flat(n) => write!(f, "({n})"),
            Shape::Image { height, width, channels } => write!(f, "({height}, {width}, {channels})"),
            Shape::Set { elements, features } => write!(f, "({elements} × {features} set)"),
        }
    }
}

/// A pointwise nonlinearity. `Softmax` is only valid as the last layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// Leaky ReLU with negative slope 0.01 (PyTorch's and SNAC-Pack's default).
    LeakyRelu,
    /// GELU, exact (erf) form.
    Gelu,
    Tanh,
    Sigmoid,
    Identity,
    Softmax,
}

impl Activation {
    /// Every activation, in a fixed order.
    pub const ALL: [Activation; 7] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Identity,
        Activation::Softmax,
    ];

    /// The negative slope of [`Activation::LeakyRelu`].
    pub const LEAKY_SLOPE: f32 = 0.01;

    /// [`Activation::Gelu`] is the sigmoid form `x·σ(1.702·x)` (Hendrycks &
    /// Gimpel's approximation of `x·Φ(x)`, at most 0.02 from it): the trainer,
    /// the integer model and the hls4ml export all compute this function,
    /// which hls4ml can build from a constant multiply, its sigmoid table and
    /// a product (it has no GELU of its own).
    pub const GELU_SCALE: f64 = 1.702;

    /// Parses any of the spellings SNAC-Pack configs use (`relu`, `ReLU`,
    /// `LeakyReLU`, `leaky_relu`, `GELU`, `linear`, ...), case-insensitively.
    pub fn parse(name: &str) -> Option<Activation> {
        let key: String = name.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_lowercase();
        Some(match key.as_str() {
            "relu" => Activation::Relu,
            "leakyrelu" | "lrelu" => Activation::LeakyRelu,
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "identity" | "linear" | "none" => Activation::Identity,
            "softmax" => Activation::Softmax,
            _ => return None,
        })
    }

    /// The canonical lower-case name, as written to YAML and CSV.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
            Activation::Softmax => "softmax",
        }
    }

    /// The accepted names, for error messages.
    pub const ACCEPTED: &'static str = "relu, leaky_relu (LeakyReLU), gelu, tanh, sigmoid, identity (linear), softmax";
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Normalisation after a Dense or Conv layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    None,
    Batch,
    Layer,
}

impl Norm {
    /// Parses `null`/`none`, `batch`/`batchnorm`, `layer`/`layernorm`.
    pub fn parse(name: &str) -> Option<Norm> {
        match name.to_lowercase().replace(['_', '-'], "").as_str() {
            "" | "null" | "none" | "~" => Some(Norm::None),
            "batch" | "batchnorm" | "bn" => Some(Norm::Batch),
            "layer" | "layernorm" | "ln" => Some(Norm::Layer),
            _ => None,
        }
    }

    /// Canonical name; `None` is written as YAML `null`.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Norm::None => None,
            Norm::Batch => Some("batch"),
            Norm::Layer => Some("layer"),
        }
    }

    /// The layer this norm adds, if any.
    pub fn layer(&self) -> Option<Layer> {
        match self {
            Norm::None => None,
            Norm::Batch => Some(Layer::BatchNorm),
            Norm::Layer => Some(Layer::LayerNorm),
        }
    }

    pub const ACCEPTED: &'static str = "null (none), batch, layer";
}

/// Convolution padding, as in Keras.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    Valid,
    Same,
}

/// How a DeepSets model pools a set into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Mean,
    Max,
}

impl Aggregation {
    pub fn parse(name: &str) -> Option<Aggregation> {
        match name.to_lowercase().as_str() {
            "mean" | "avg" | "average" => Some(Aggregation::Mean),
            "max" => Some(Aggregation::Max),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Aggregation::Mean => "mean",
            Aggregation::Max => "max",
        }
    }

    pub const ACCEPTED: &'static str = "mean, max";
}

/// One layer of the compute sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// Fully connected layer with bias; input must be flat.
    Dense {
        units: usize,
    },
    /// 2-D convolution with bias, stride 1, channels last.
    Conv2d {
        filters: usize,
        kernel: usize,
        padding: Padding,
    },
    /// Convolutional self-attention over the H·W positions with a residual
    /// connection (docs/snac-pack-compat.md §2); keeps the shape.
    ConvAttention {
        hidden: usize,
        scale: bool,
    },
    /// Batch normalisation over the last (feature/channel) axis.
    BatchNorm,
    /// Layer normalisation over the features of one sample.
    LayerNorm,
    Act(Activation),
    /// Image to vector (row-major, channels last, as Keras).
    Flatten,
    /// Set to vector: the mean or maximum of each feature over the elements.
    Aggregate(Aggregation),
}

impl Layer {
    /// Output shape for an input shape, or why the layer cannot take it.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        Ok(match (self, input) {
            (Layer::Dense { units }, Shape::Flat(_)) => {
                if *units == 0 {
                    bail!("Dense layer with 0 units");
                }
                Shape::Flat(*units)
            }
            (Layer::Dense { units }, Shape::Set { elements, .. }) => {
                if *units == 0 {
                    bail!("Dense layer with 0 units");
                }
                Shape::Set { elements, features: *units }
            }
            (Layer::Dense { .. }, Shape::Image { .. }) => {
                bail!("Dense layer got image input {input}; add a Flatten first")
            }
            (Layer::Conv2d { filters, kernel, padding }, Shape::Image { height, width, .. }) => {
                if *filters == 0 || *kernel == 0 {
                    bail!("Conv2d with {filters} filters and kernel {kernel}: both must be positive");
                }
                let shrink = match padding {
                    Padding::Valid => kernel - 1,
                    Padding::Same => 0,
                };
                if height <= shrink || width <= shrink {
                    bail!("Conv2d kernel {kernel} with 'valid' padding does not fit input {input}");
                }
                Shape::Image { height: height - shrink, width: width - shrink, channels: *filters }
            }
            (Layer::Conv2d { .. } | Layer::ConvAttention { .. }, Shape::Flat(_) | Shape::Set { .. }) => {
                bail!("{} layer got input {input}; it needs an image", self.kind())
            }
            (Layer::ConvAttention { hidden, .. }, shape) => {
                if *hidden == 0 {
                    bail!("ConvAttention with 0 hidden channels");
                }
                shape
            }
            (Layer::BatchNorm | Layer::LayerNorm | Layer::Act(_), shape) => shape,
            (Layer::Flatten, shape) => Shape::Flat(shape.numel()),
            (Layer::Aggregate(_), Shape::Set { features, .. }) => Shape::Flat(features),
            (Layer::Aggregate(_), _) => bail!("Aggregate layer got input {input}; it needs a set"),
        })
    }

    /// Trainable parameters given the input shape.
    pub fn parameter_count(&self, input: Shape) -> usize {
        let features = input.rows_and_features().1;
        match *self {
            Layer::Dense { units } => match input {
                Shape::Set { features, .. } => features * units + units,
                _ => input.numel() * units + units,
            },
            Layer::Conv2d { filters, kernel, .. } => kernel * kernel * features * filters + filters,
            // q, k, v projections to `hidden` and the output projection back, all 1×1 with bias
            Layer::ConvAttention { hidden, .. } => 3 * (features * hidden + hidden) + hidden * features + features,
            Layer::BatchNorm | Layer::LayerNorm => 2 * features,
            Layer::Act(_) | Layer::Flatten | Layer::Aggregate(_) => 0,
        }
    }

    /// A short name of the layer kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "Dense",
            Layer::Conv2d { .. } => "Conv2d",
            Layer::ConvAttention { .. } => "ConvAttention",
            Layer::BatchNorm => "BatchNorm",
            Layer::LayerNorm => "LayerNorm",
            Layer::Act(_) => "Activation",
            Layer::Flatten => "Flatten",
            Layer::Aggregate(_) => "Aggregate",
        }
    }
}

/// What a component is, as SNAC-Pack names its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockType {
    Mlp,
    Conv,
    ConvAttn,
    Flatten,
    /// DeepSets pooling: one [`Layer::Aggregate`] from a set to a vector.
    Aggregate,
    /// The final Dense layer with the output activation.
    Output,
}

impl BlockType {
    pub fn name(&self) -> &'static str {
        match self {
            BlockType::Mlp => "MLP",
            BlockType::Conv => "Conv",
            BlockType::ConvAttn => "ConvAttn",
            BlockType::Flatten => "Flatten",
            BlockType::Aggregate => "Aggregate",
            BlockType::Output => "Output",
        }
    }

    pub fn parse(name: &str) -> Option<BlockType> {
        Some(match name.to_lowercase().as_str() {
            "mlp" | "dense" => BlockType::Mlp,
            "conv" => BlockType::Conv,
            "convattn" | "conv_attn" => BlockType::ConvAttn,
            "flatten" => BlockType::Flatten,
            "aggregate" => BlockType::Aggregate,
            "output" => BlockType::Output,
            _ => return None,
        })
    }
}

/// The geometry of a Conv2d layer (stride 1) on a channels-last image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub kernel: usize,
    pub filters: usize,
    pub out_height: usize,
    pub out_width: usize,
    /// `(before, after)` zero padding of the rows and of the columns: none
    /// for 'valid'; `k − 1` in all for 'same', the extra one after (Keras).
    pub padding: [(usize, usize); 2],
}

impl ConvGeometry {
    /// The geometry of `layer` on `input`, or `None` if it is not a Conv2d on an image.
    pub fn of(layer: &Layer, input: Shape) -> Option<ConvGeometry> {
        let (Layer::Conv2d { filters, kernel, padding }, Shape::Image { height, width, channels }) = (layer, input)
        else {
            return None;
        };
        let (k, filters) = (*kernel, *filters);
        let (pad, shrink) = match padding {
            Padding::Valid => ((0, 0), k - 1),
            Padding::Same => (((k - 1) / 2, k - 1 - (k - 1) / 2), 0),
        };
        Some(ConvGeometry {
            height,
            width,
            channels,
            kernel: k,
            filters,
            out_height: height - shrink,
            out_width: width - shrink,
            padding: [pad, pad],
        })
    }

    /// The im2col layout of one image: for every output position, a row of
    /// `k·k·C` values (kernel row, kernel column, channel), zero where the
    /// kernel hangs over the padding. Calls `run(row_offset, image_offset,
    /// len)` for each contiguous run of the row that comes from the image
    /// (whole channel runs of adjacent columns; offsets in values, the row's
    /// from the start of the image's im2col block). Shared by the trainer's
    /// im2col and its transpose and by the integer model, so all three read
    /// the same pixels.
    pub fn patch_runs(&self, mut run: impl FnMut(usize, usize, usize)) {
        let (k, c) = (self.kernel, self.channels);
        let (top, left) = (self.padding[0].0, self.padding[1].0);
        for oy in 0..self.out_height {
            for ox in 0..self.out_width {
                let row = (oy * self.out_width + ox) * k * k * c;
                // The kernel columns that fall inside the image.
                let first = left.saturating_sub(ox);
                let last = k.min(self.width + left - ox);
                if first >= last {
                    continue;
                }
                for dy in 0..k {
                    let y = (oy + dy).wrapping_sub(top);
                    if y >= self.height {
                        continue;
                    }
                    let x0 = ox + first - left;
                    run(row + (dy * k + first) * c, (y * self.width + x0) * c, (last - first) * c);
                }
            }
        }
    }
}

/// A named group of layers: one SNAC-Pack block or head layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub block_type: BlockType,
    pub layers: Vec<Layer>,
}

impl Component {
    /// Dense(units) [+ norm] + activation.
    pub fn mlp(name: &str, units: usize, norm: Norm, act: Activation) -> Component {
        let mut layers = vec![Layer::Dense { units }];
        layers.extend(norm.layer());
        layers.push(Layer::Act(act));
        Component { name: name.to_string(), block_type: BlockType::Mlp, layers }
    }

    /// The final Dense layer and output activation, no norm.
    pub fn output(name: &str, units: usize, act: Activation) -> Component {
        Component {
            name: name.to_string(),
            block_type: BlockType::Output,
            layers: vec![Layer::Dense { units }, Layer::Act(act)],
        }
    }
}

/// A whole network: input shape and components in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    pub input_shape: Shape,
    pub components: Vec<Component>,
}

impl Arch {
    pub fn new(input_shape: Shape, components: Vec<Component>) -> Arch {
        Arch { input_shape, components }
    }

    /// The compute sequence.
    pub fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.components.iter().flat_map(|c| c.layers.iter())
    }

    /// Each layer with its input and output shapes, or the first layer that
    /// does not fit, named by component and position.
    pub fn shapes(&self) -> Result<Vec<(&Layer, Shape, Shape)>> {
        let mut shape = self.input_shape;
        let mut out = Vec::new();
        for component in &self.components {
            for (index, layer) in component.layers.iter().enumerate() {
                let next = layer.output_shape(shape).map_err(|e| {
                    anyhow::anyhow!("component '{}' layer {index} ({}): {e}", component.name, layer.kind())
                })?;
                out.push((layer, shape, next));
                shape = next;
            }
        }
        Ok(out)
    }

    pub fn output_shape(&self) -> Result<Shape> {
        Ok(self.shapes()?.last().map(|s| s.2).unwrap_or(self.input_shape))
    }

    /// Checks shapes and that softmax only appears last.
    pub fn validate(&self) -> Result<()> {
        self.shapes()?;
        let layers: Vec<&Layer> = self.layers().collect();
        for (i, layer) in layers.iter().enumerate() {
            if **layer == Layer::Act(Activation::Softmax) && i + 1 != layers.len() {
                bail!("softmax may only be the last layer, found at layer {i}");
            }
        }
        if layers.is_empty() {
            bail!("architecture has no layers");
        }
        Ok(())
    }

    pub fn parameter_count(&self) -> Result<usize> {
        Ok(self.shapes()?.iter().map(|(layer, input, _)| layer.parameter_count(*input)).sum())
    }

    /// A one-line summary such as `64 → 32 bn relu → 10 softmax`.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.input_shape.to_string()];
        for layer in self.layers() {
            parts.push(match layer {
                Layer::Dense { units } => format!("→ D{units}"),
                Layer::Conv2d { filters, kernel, .. } => format!("→ C{filters}k{kernel}"),
                Layer::ConvAttention { hidden, .. } => format!("→ A{hidden}"),
                Layer::BatchNorm => "bn".into(),
                Layer::LayerNorm => "ln".into(),
                Layer::Act(a) => a.name().into(),
                Layer::Flatten => "flat".into(),
                Layer::Aggregate(a) => format!("{}-pool", a.name()),
            });
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_spellings() {
        for (name, act) in [
            ("relu", Activation::Relu),
            ("ReLU", Activation::Relu),
            ("LeakyReLU", Activation::LeakyRelu),
            ("LeakyRelu", Activation::LeakyRelu),
            ("leaky_relu", Activation::LeakyRelu),
            ("GELU", Activation::Gelu),
            ("Identity", Activation::Identity),
            ("linear", Activation::Identity),
            ("softmax", Activation::Softmax),
        ] {
            assert_eq!(Activation::parse(name), Some(act), "{name}");
        }
        assert_eq!(Activation::parse("swish"), None);
        for act in Activation::ALL {
            assert_eq!(Activation::parse(act.name()), Some(act));
        }
    }

    #[test]
    fn shape_inference_and_errors() {
        let conv = Layer::Conv2d { filters: 4, kernel: 3, padding: Padding::Valid };
        let image = Shape::Image { height: 8, width: 8, channels: 1 };
        assert_eq!(conv.output_shape(image).unwrap(), Shape::Image { height: 6, width: 6, channels: 4 });
        assert!(conv.output_shape(Shape::Flat(3)).is_err());
        let tiny = Shape::Image { height: 2, width: 2, channels: 1 };
        assert!(conv.output_shape(tiny).is_err());
        assert_eq!(Layer::Flatten.output_shape(image).unwrap(), Shape::Flat(64));
        assert!(Layer::Dense { units: 3 }.output_shape(image).is_err());
        let arch = Arch::new(image, vec![Component::mlp("b0", 8, Norm::None, Activation::Relu)]);
        let err = arch.validate().unwrap_err().to_string();
        assert!(err.contains("'b0'") && err.contains("Flatten"), "{err}");
    }

    #[test]
    fn softmax_only_last() {
        let arch = Arch::new(
            Shape::Flat(4),
            vec![Component::output("a", 3, Activation::Softmax), Component::mlp("b", 3, Norm::None, Activation::Relu)],
        );
        assert!(arch.validate().is_err());
    }
}
