//! rule4ml-compatible estimates: rule4ml 0.2.0's default GNN predictors
//! (`load_default_models()`), evaluated natively, so an estimate takes
//! microseconds instead of rule4ml's seconds while giving its numbers.
//!
//! rule4ml is GPL-3.0, so its weights are never part of snac: they are read at
//! run time from the user's own install ([`Rule4mlEstimator::locate`]:
//! `$SNAC_RULE4ML_DIR`, else the `rule4ml` package `python3` imports).
//! rule4ml predicts one row per hls4ml/Vivado version pair; [`Rule4mlRow`]
//! picks one, by default the first (hls4ml 0.8.1, Vivado 2019.1), the row
//! SNAC-Pack used.
//!
//! ```no_run
//! use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
//! use snac_core::estimate::{Board, HlsSettings, ResourceEstimator, Rule4mlEstimator, Rule4mlRow};
//! let estimator = Rule4mlEstimator::load_default(&Rule4mlRow::default())?;
//! let arch = Arch::new(
//!     Shape::Flat(16),
//!     vec![Component::mlp("b0", 64, Norm::None, Activation::Relu), Component::output("output", 5, Activation::Softmax)],
//! );
//! let board = Board::by_name("zcu102")?;
//! let estimate = estimator.estimate(&arch, &HlsSettings::default(), None, &board)?;
//! println!("{:.0} LUTs, {:.0} cycles", estimate.lut, estimate.cycles);
//! # anyhow::Ok(())
//! ```

mod features;
mod gnn;
mod torch_file;

pub use features::{LayerRecord, closest_reuse_factor, global_features, layer_records};
pub use gnn::{GnnInput, GnnNode, GnnPredictor};
pub use torch_file::{Tensor, read_state_dict};

use super::{Board, Estimate, HlsSettings, LayerInfo, ResourceEstimator};
use crate::arch::Arch;
use anyhow::{Context, Result, bail, ensure};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The targets of rule4ml's default predictors, as its files name them.
pub const TARGETS: [&str; 6] = ["BRAM", "DSP", "FF", "LUT", "CYCLES", "INTERVAL"];
/// Where the default predictors sit inside the rule4ml package.
const WEIGHTS_SUBDIR: &str = "models/weights/v2/gnn";
/// The environment variable that points at a rule4ml install.
pub const DIR_VARIABLE: &str = "SNAC_RULE4ML_DIR";
/// How to get the weights, for error messages.
pub const INSTALL_HINT: &str = "install rule4ml for the python3 on PATH with `pip install --no-deps rule4ml==0.2.0`, \
                                or point $SNAC_RULE4ML_DIR at an installed rule4ml package directory";

/// Which of rule4ml's rows (hls4ml and Vivado version) an estimate is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule4mlRow {
    pub hls4ml_version: String,
    pub vivado_version: String,
}

impl Default for Rule4mlRow {
    /// hls4ml 0.8.1 with Vivado 2019.1: the first row of rule4ml's table,
    /// the one SNAC-Pack took.
    fn default() -> Rule4mlRow {
        Rule4mlRow { hls4ml_version: "0.8.1".into(), vivado_version: "2019.1".into() }
    }
}

/// The hls4ml versions rule4ml 0.2.0 was trained on.
pub const HLS4ML_VERSIONS: [&str; 2] = ["0.8.1", "1.1.0"];
/// The Vivado versions rule4ml 0.2.0 was trained on.
pub const VIVADO_VERSIONS: [&str; 12] = [
    "2019.1", "2019.2", "2020.1", "2020.2", "2021.1", "2021.2", "2022.1", "2022.2", "2023.1", "2023.2", "2024.1",
    "2024.2",
];

/// One prediction request: everything a row of rule4ml's table depends on.
#[derive(Clone, Debug)]
pub struct Rule4mlQuery<'a> {
    pub arch: &'a Arch,
    pub settings: HlsSettings,
    /// One of rule4ml's four boards.
    pub board: &'a Board,
    pub row: &'a Rule4mlRow,
}

/// rule4ml's six default GNN predictors.
#[derive(Clone, Debug)]
pub struct Rule4mlEstimator {
    /// In [`TARGETS`] order.
    predictors: Vec<GnnPredictor>,
    row: Rule4mlRow,
    /// The directory the weights were read from.
    pub weights_dir: PathBuf,
}

impl Rule4mlEstimator {
    /// The directory of rule4ml's default GNN weights: under
    /// `$SNAC_RULE4ML_DIR` (the package directory, or the weights directory
    /// itself) when set, else under the `rule4ml` package that `python3`
    /// finds. The error says what was searched and how to install it.
    pub fn locate() -> Result<PathBuf> {
        let has_weights = |dir: &Path| dir.join("LUT.config.json").is_file() && dir.join("LUT.weights.pt").is_file();
        if let Some(dir) = std::env::var_os(DIR_VARIABLE).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            for candidate in [dir.join(WEIGHTS_SUBDIR), dir.clone()] {
                if has_weights(&candidate) {
                    return Ok(candidate);
                }
            }
            bail!(
                "rule4ml weights not found: ${DIR_VARIABLE} is {} but neither it nor {} holds LUT.config.json and \
                 LUT.weights.pt; {INSTALL_HINT}",
                dir.display(),
                dir.join(WEIGHTS_SUBDIR).display()
            );
        }
        // rule4ml's __init__ imports nothing heavy, so this works without
        // TensorFlow or torch installed.
        let found = std::process::Command::new("python3")
            .args(["-c", "import os, rule4ml; print(os.path.dirname(rule4ml.__file__))"])
            .output();
        let searched = match found {
            Ok(output) if output.status.success() => {
                let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                let dir = package.join(WEIGHTS_SUBDIR);
                if has_weights(&dir) {
                    return Ok(dir);
                }
                format!(
                    "python3 imports rule4ml from {}, but {} holds no GNN weights",
                    package.display(),
                    dir.display()
                )
            }
            Ok(output) => format!(
                "${DIR_VARIABLE} is not set and python3 cannot import rule4ml ({})",
                String::from_utf8_lossy(&output.stderr).trim().lines().last().unwrap_or("no message")
            ),
            Err(error) => format!("${DIR_VARIABLE} is not set and python3 could not be run ({error})"),
        };
        bail!("rule4ml weights not found: {searched}; {INSTALL_HINT}")
    }

    /// Loads the predictors from [`Rule4mlEstimator::locate`]'s directory.
    pub fn load_default(row: &Rule4mlRow) -> Result<Rule4mlEstimator> {
        Rule4mlEstimator::load(&Rule4mlEstimator::locate()?, row)
    }

    /// Loads the six predictors (`BRAM.config.json`, `BRAM.weights.pt`, ...)
    /// from `dir`, estimating `row`.
    pub fn load(dir: &Path, row: &Rule4mlRow) -> Result<Rule4mlEstimator> {
        let mut predictors = Vec::new();
        for target in TARGETS {
            let config_path = dir.join(format!("{target}.config.json"));
            let weights_path = dir.join(format!("{target}.weights.pt"));
            let text = std::fs::read_to_string(&config_path)
                .with_context(|| format!("reading {}; {INSTALL_HINT}", config_path.display()))?;
            let config: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not JSON", config_path.display()))?;
            let tensors = read_state_dict(&weights_path)?;
            let origin = format!("{} with {}", config_path.display(), weights_path.display());
            let predictor = GnnPredictor::new(&config, &tensors, &origin)?;
            ensure!(
                predictor.target == target.to_lowercase(),
                "{}: predicts '{}', expected '{}'",
                config_path.display(),
                predictor.target,
                target.to_lowercase()
            );
            predictors.push(predictor);
        }
        let estimator = Rule4mlEstimator { predictors, row: row.clone(), weights_dir: dir.to_path_buf() };
        estimator.check_row(row)?;
        Ok(estimator)
    }

    /// The row this estimator reports.
    pub fn row(&self) -> &Rule4mlRow {
        &self.row
    }

    fn check_row(&self, row: &Rule4mlRow) -> Result<()> {
        for predictor in &self.predictors {
            code(predictor, "hls4ml_version", &row.hls4ml_version)?;
            code(predictor, "vivado_version", &row.vivado_version)?;
        }
        Ok(())
    }

    /// Predicts every query together, as one call of rule4ml's `predict`
    /// does (its GraphNorm statistics pool all graphs of a call, so a row can
    /// depend on what else is predicted with it). [`ResourceEstimator::estimate`]
    /// predicts one architecture alone, which is what SNAC-Pack's calls amount to.
    pub fn predict(&self, queries: &[Rule4mlQuery<'_>]) -> Result<Vec<Estimate>> {
        let mut records = Vec::with_capacity(queries.len());
        for query in queries {
            ensure!(query.settings.reuse_factor >= 1, "reuse factor must be at least 1");
            let layers = layer_records(query.arch, query.settings.reuse_factor)?;
            let globals = global_features(&layers, query.settings.precision.width);
            records.push((layers, globals));
        }
        let boards: Vec<&str> = queries.iter().map(|q| q.board.name.as_str()).collect();
        let mut outputs = Vec::with_capacity(self.predictors.len());
        for predictor in &self.predictors {
            let inputs = queries
                .iter()
                .zip(&records)
                .map(|(query, (layers, globals))| input(predictor, query, layers, globals))
                .collect::<Result<Vec<_>>>()?;
            outputs.push(predictor.predict(&inputs, &boards)?);
        }
        Ok((0..queries.len())
            .map(|i| {
                let [bram, dsp, ff, lut, cycles, interval] = [0, 1, 2, 3, 4, 5].map(|t| outputs[t][i]);
                Estimate::from_counts(lut, ff, dsp, bram, cycles, interval, queries[i].board)
            })
            .collect())
    }
}

/// rule4ml's ordinal code of `value` for the global category `category`.
fn code(predictor: &GnnPredictor, category: &str, value: &str) -> Result<usize> {
    let codes = predictor
        .global_categories
        .get(category)
        .with_context(|| format!("the rule4ml {} predictor has no '{category}' input", predictor.target))?;
    if let Some(&code) = codes.get(&value.to_lowercase()) {
        return Ok(code);
    }
    let mut accepted: Vec<(&usize, &String)> = codes.iter().map(|(name, code)| (code, name)).collect();
    accepted.sort();
    let accepted: Vec<&str> = accepted.into_iter().map(|(_, name)| name.as_str()).collect();
    bail!("rule4ml has no {category} '{value}'; accepted: {}", accepted.join(", "))
}

fn input(
    predictor: &GnnPredictor,
    query: &Rule4mlQuery<'_>,
    records: &[LayerRecord],
    globals: &HashMap<String, f64>,
) -> Result<GnnInput> {
    let global_numerical = predictor
        .global_numerical_labels
        .iter()
        .map(|label| {
            globals.get(label).copied().with_context(|| format!("rule4ml global feature '{label}' is unknown"))
        })
        .collect::<Result<Vec<_>>>()?;
    let global_categorical = vec![
        ("strategy".to_string(), code(predictor, "strategy", query.settings.strategy.name())?),
        ("board".to_string(), code(predictor, "board", &query.board.name)?),
        ("hls4ml_version".to_string(), code(predictor, "hls4ml_version", &query.row.hls4ml_version)?),
        ("vivado_version".to_string(), code(predictor, "vivado_version", &query.row.vivado_version)?),
    ];
    let nodes = records
        .iter()
        .map(|record| {
            let layer_type = *predictor
                .layer_types
                .get(record.layer_type)
                .with_context(|| format!("rule4ml knows no layer type '{}'", record.layer_type))?;
            let numerical = predictor
                .sequential_numerical_labels
                .iter()
                .map(|label| record.feature(label))
                .collect::<Result<Vec<_>>>()?;
            Ok(GnnNode { layer_type, numerical })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GnnInput { global_numerical, global_categorical, nodes })
}

impl ResourceEstimator for Rule4mlEstimator {
    fn name(&self) -> &'static str {
        "rule4ml"
    }

    /// rule4ml's prediction for `arch` alone, in this estimator's row.
    /// rule4ml sees only the model-wide precision: `layer_info` (per-layer
    /// widths, sparsity) is ignored, as rule4ml would.
    fn estimate(
        &self,
        arch: &Arch,
        settings: &HlsSettings,
        _layer_info: Option<&[LayerInfo]>,
        board: &Board,
    ) -> Result<Estimate> {
        ensure!(
            Board::NAMES.contains(&board.name.as_str()),
            "rule4ml only knows the boards {}; '{}' ({}) needs the analytical estimator",
            Board::NAMES.join(", "),
            board.name,
            board.part
        );
        let query = Rule4mlQuery { arch, settings: *settings, board, row: &self.row };
        Ok(self.predict(std::slice::from_ref(&query))?.remove(0))
    }
}

#[cfg(test)]
mod tests;
