//! Stub: replaced by the real parser.
use super::Experiment;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub key_path: String,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug)]
pub struct ConfigErrors {
    pub file: std::path::PathBuf,
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}: {}: {}", self.file.display(), e.key_path, e.message)?;
        }
        Ok(())
    }
}
impl std::error::Error for ConfigErrors {}

pub fn load(path: &Path) -> Result<Experiment, ConfigErrors> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    load_str(&text, path)
}

pub fn load_str(_text: &str, path: &Path) -> Result<Experiment, ConfigErrors> {
    Err(ConfigErrors { file: path.to_path_buf(), errors: vec![] })
}
