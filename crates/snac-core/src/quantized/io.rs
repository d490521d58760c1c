//! Reading a model file ([`QuantizedModel::read`], [`QuantizedModel::from_json`]):
//! a bare model or local search's wrapper, parsed, then validated. Writing
//! is plain `serde_json` of the [`QuantizedModel`].

use super::{FORMAT, QuantizedModel};
use anyhow::{Context, Result, bail, ensure};

impl QuantizedModel {
    /// Reads a model file: a bare model, or an object with the model under
    /// `quantized_model` (local search's `best_model_*.json`), checked with
    /// [`QuantizedModel::validate`]. Every error starts with the file's path.
    pub fn read(path: &std::path::Path) -> Result<QuantizedModel> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        QuantizedModel::from_json(&text).with_context(|| format!("{}", path.display()))
    }

    /// [`QuantizedModel::read`] on the text of a file: parses, then
    /// validates. Never panics, whatever the text.
    pub fn from_json(text: &str) -> Result<QuantizedModel> {
        let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
        let model = match value.get("quantized_model") {
            Some(serde_json::Value::Null) => bail!(
                "quantized_model: this model has no fixed-point form ({})",
                value.get("quantized_model_error").and_then(|v| v.as_str()).unwrap_or("reason not recorded")
            ),
            Some(inner) => inner.clone(),
            None => value,
        };
        if let Some(format) = model.get("format").and_then(|f| f.as_str()) {
            ensure!(format == FORMAT, "format: '{format}' is not supported (accepted: '{FORMAT}')");
        }
        let model: QuantizedModel = serde_json::from_value(model)
            .with_context(|| format!("not a quantized model (expected format '{FORMAT}', as local search writes)"))?;
        model.validate().context("invalid quantized model")?;
        Ok(model)
    }
}
