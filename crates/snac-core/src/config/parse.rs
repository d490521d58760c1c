//! Loading an experiment file: the YAML is read into a tree whose nodes know
//! their lines (stage one), then the schema checker walks it and collects every
//! error before giving up (stage two), so one run of `snac validate` shows all
//! the problems in a file.
//!
//! ```
//! use snac_core::config::load_str;
//! use std::path::Path;
//!
//! let experiment = load_str("dataset: {name: digits}\nsearch: {model_type: mlp}\n", Path::new("x.yaml")).unwrap();
//! assert_eq!(experiment.search.n_trials, 10);
//!
//! let errors = load_str("dataset: {name: cifar}\nsearch: {model_type: mlp, sampler: nsga3}\n", Path::new("x.yaml"))
//!     .unwrap_err();
//! assert_eq!(errors.errors.len(), 2);
//! assert_eq!(errors.errors[1].to_string(), "2: search.sampler: 'nsga3' is not a sampler (did you mean 'nsga2'?); accepted: auto, tpe, nsga2, random");
//! ```

mod reader;
mod sections;
#[cfg(test)]
mod tests;

pub use sections::{BLOCK_TYPES, BOARDS, DEFAULT_PRECISION_PAIRS, parse_precision};

use super::Experiment;
use reader::{Ctx, Field};
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScanError, YamlDataOwned};
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file: `search.maximize_flags[2]`; empty for whole-file
    /// problems (YAML syntax).
    pub key_path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The bad value as written and what would be accepted.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `12: search.sampler: 'nsga3' is not a sampler (did you mean 'nsga2'?); accepted: auto, tpe, nsga2, random`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one experiment file, in line order.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    /// One error per line, each prefixed with the file:
    /// `t1.yaml:12: search.sampler: 'nsga3' is not a sampler (did you mean 'nsga2'?); accepted: auto, tpe, nsga2, random`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let separator = if error.line.is_some() { ":" } else { ": " };
            write!(f, "{}{separator}{error}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and checks an experiment file.
pub fn load(path: &Path) -> Result<Experiment, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(error) => Err(ConfigErrors {
            file: path.to_path_buf(),
            errors: vec![ConfigError { key_path: String::new(), line: None, message: format!("cannot read: {error}") }],
        }),
    }
}

/// Checks an experiment given as text. `path` names the file in messages,
/// gives the default results directory (`./results/<stem>`), and relative
/// dataset paths are resolved against its directory.
pub fn load_str(text: &str, path: &Path) -> Result<Experiment, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors { file: path.to_path_buf(), errors };
    let documents = MarkedYamlOwned::load_from_str(text).map_err(|error| fail(vec![syntax_error(&error)]))?;
    let mut ctx = Ctx::new(text);
    if let Some(second) = documents.get(1) {
        let message = format!("the file holds {} YAML documents; accepted: one", documents.len());
        ctx.error("", Some(second.span.start.line()), message);
    }
    let root = documents.first().filter(|root| !reader::is_null(root));
    if let Some(root) = root
        && !matches!(reader::untag(root).data, YamlDataOwned::Mapping(_))
    {
        let message = format!(
            "{} is not an experiment; accepted: a map with the sections dataset, search, search_space, \
                 hls_config, local_search, synthesis, output",
            ctx.show(root)
        );
        ctx.error("", Some(root.span.start.line()), message);
        return Err(fail(ctx.errors));
    }
    let root = root.map(|node| Field { node, line: node.span.start.line() });
    let experiment = sections::experiment(&mut ctx, root, path);
    if ctx.errors.is_empty() {
        Ok(experiment)
    } else {
        let mut errors = ctx.errors;
        errors.sort_by_key(|error| error.line);
        Err(fail(errors))
    }
}

fn syntax_error(error: &ScanError) -> ConfigError {
    let marker = error.marker();
    ConfigError {
        key_path: String::new(),
        line: Some(marker.line()),
        message: format!("YAML syntax error: {} (column {})", error.info(), marker.col() + 1),
    }
}
