//! `snac_pack.Model`: a quantized model file (local search's
//! `best_model_{bits}b{int}i.json`) with integer inference, bit-exact with
//! `snac predict`, its weights as arrays, and the hls4ml hand-off.

use crate::py_err;
use anyhow::{Context, ensure};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::Value;
use snac_core::arch::Shape;
use snac_core::quantized::{Codes, QuantizedModel};
use std::path::PathBuf;

/// A parameter as it crosses to Python: name, shape, little-endian `f64` bytes.
type NamedArray<'py> = (String, Vec<usize>, Bound<'py, PyBytes>);

/// A quantized model, as fixed-point hardware computes it.
#[pyclass(frozen, module = "snac_pack._native")]
pub struct Model {
    inner: QuantizedModel,
    path: Option<PathBuf>,
}

#[pymethods]
impl Model {
    /// Reads and validates the model file at `path`.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let inner = py.detach(|| QuantizedModel::read(&path)).map_err(py_err)?;
        Ok(Model { inner, path: Some(path) })
    }

    /// A model from its JSON text.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Model> {
        Ok(Model { inner: QuantizedModel::from_json(text).map_err(py_err)?, path: None })
    }

    /// The file it was read from, if any.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    #[getter]
    fn input_features(&self) -> usize {
        self.inner.input_features
    }

    #[getter]
    fn output_features(&self) -> usize {
        self.inner.output_features
    }

    /// The shape of one sample: `(features,)`, `(height, width, channels)` or
    /// `(elements, features)`.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        match self.inner.arch.input_shape {
            Shape::Flat(n) => vec![n],
            Shape::Image { height, width, channels } => vec![height, width, channels],
            Shape::Set { elements, features } => vec![elements, features],
        }
    }

    /// The architecture in one line and the fixed-point types.
    fn describe(&self) -> String {
        format!("{}; {}", self.inner.arch.summary(), self.inner.types.describe())
    }

    /// The model as JSON text (the file format).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| py_err(e.into()))
    }

    /// Integer inference of `n` samples given as little-endian `f32` bytes;
    /// the outputs as little-endian `f64` bytes, `n × output_features`.
    fn predict_raw<'py>(&self, py: Python<'py>, x: &[u8], n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let features = self.inner.input_features;
        let values: Vec<f32> = x.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let outputs = py
            .detach(|| {
                ensure!(
                    values.len() == n * features,
                    "{} input values are not {n} samples of {features} features",
                    values.len()
                );
                self.inner.predict(&values)
            })
            .map_err(py_err)?;
        let bytes: Vec<u8> = outputs.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(PyBytes::new(py, &bytes))
    }

    /// The parameters as `(name, shape, little-endian f64 bytes)`, named
    /// `layer{index}_{kind}/{param}` as in the trial `.npz` files; the real
    /// values the integer codes stand for.
    fn weights_raw<'py>(&self, py: Python<'py>) -> PyResult<Vec<NamedArray<'py>>> {
        let layers = serde_json::to_value(&self.inner.layers).map_err(|e| py_err(e.into()))?;
        let mut out = Vec::new();
        for (position, layer) in layers.as_array().into_iter().flatten().enumerate() {
            let kind = layer.get("kind").and_then(Value::as_str).unwrap_or("layer");
            let index = layer.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
            for (name, value) in layer.as_object().into_iter().flatten() {
                let Ok(codes) = serde_json::from_value::<Codes>(value.clone()) else { continue };
                let values = codes.values();
                let shape = shape_of(layer, name, values.len());
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                out.push((format!("layer{index}_{kind}/{name}"), shape, PyBytes::new(py, &bytes)));
            }
        }
        Ok(out)
    }

    /// Writes the hls4ml hand-off (QONNX, hls4ml config, test vectors,
    /// `convert.py`, README) into `out` with `snac export`'s `flags`; returns
    /// the path of `convert.py`.
    fn export(&self, py: Python<'_>, out: PathBuf, flags: Vec<String>) -> PyResult<PathBuf> {
        use clap::Parser;
        let argv: Vec<String> =
            ["snac", "export", "MODEL", "--out", "OUT"].iter().map(|s| s.to_string()).chain(flags).collect();
        let cli = snac::cli::Cli::try_parse_from(&argv).map_err(|e| py_err(anyhow::anyhow!("{}", e.render())))?;
        let snac::cli::Command::Export(args) = cli.command else { unreachable!("parsed as export") };
        py.detach(|| {
            let settings = snac::handoff::settings_of(&args)?;
            let x = snac::handoff::test_inputs(&self.inner, args.samples);
            let written = snac_export::export(&self.inner, &x, &settings, &out)
                .with_context(|| format!("exporting to {}", out.display()))?;
            Ok(written.script)
        })
        .map_err(py_err)
    }
}

/// A kernel's shape when the layer says it (`inputs × outputs` for Dense),
/// else flat.
fn shape_of(layer: &Value, name: &str, len: usize) -> Vec<usize> {
    let dim = |key: &str| layer.get(key).and_then(Value::as_u64).map(|v| v as usize);
    match (name, dim("inputs"), dim("outputs")) {
        ("kernel", Some(i), Some(o)) if i * o == len => vec![i, o],
        _ => vec![len],
    }
}
