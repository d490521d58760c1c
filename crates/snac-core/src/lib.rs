//! snac-core: everything in snac-pack that is not tensor math. The architecture
//! IR ([`arch`]) sits at the centre; config, data, search space, costs, search
//! and storage are built around it, and formats stay at the edge.

pub mod arch;
pub mod config;
pub mod cost;
pub mod data;
pub mod estimate;
pub mod fixed;
pub mod interrupt;
pub mod quantized;
pub mod search;
pub mod space;
pub mod storage;
pub mod trial_yaml;

use anyhow::Context;
use std::path::Path;

/// Writes a file so that readers never see it half written: a temp file in
/// the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// For tests whose real dependency (a PostgreSQL server, the Python venv, a
/// browser) is missing: prints a skip message, or panics when
/// `SNAC_REQUIRE_ALL=1` (set by `.ci/run`, which installs them), so CI can
/// never pass by skipping. Returns so the caller can `return` after it.
pub fn missing_test_dependency(what: &str) {
    if std::env::var("SNAC_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{what}, but SNAC_REQUIRE_ALL=1 says .ci/run should have provided it");
    }
    eprintln!("skipped: {what}");
}
