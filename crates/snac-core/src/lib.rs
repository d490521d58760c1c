//! snac-core: everything in snac-pack that is not tensor math. The architecture
//! IR ([`arch`]) sits at the centre; config, data, search space, costs, search
//! and storage are built around it, and formats stay at the edge.
//!
//! Modules use each other in one direction only: [`trial`] (what a trial is)
//! is used by [`storage`] and [`space`], and [`search`] (the study, its
//! samplers) uses all three; [`data`] uses [`config`], never the reverse.

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
pub mod suggest;
pub mod trial;
pub mod trial_yaml;

use anyhow::Context;
use std::path::Path;

/// Writes a file so that readers never see it half written: a temp file in
/// the destination's directory (`.` for a bare file name), then a rename. On
/// any error the temp file is removed, and a destination that is a directory
/// is refused before anything is written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(
        !path.is_dir(),
        "cannot write {}: it is a directory; give a file path (such as {})",
        path.display(),
        path.join("out").display()
    );
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        anyhow::bail!("cannot write {}: it does not end in a file name", path.display())
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Removed when dropped, that is on every error below.
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // As std::fs::write would create it (0666 less the umask), not tempfile's 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {} to write {}", dir.display(), path.display()))?;
    tmp.write_all(bytes).and_then(|()| tmp.flush()).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::write_atomic;

    fn leftovers(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn write_atomic_leaves_no_temp_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report.html");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(leftovers(dir.path()), ["report.html"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o644, 0o644, "readable like any written file: {mode:o}");
        }
        // The destination is a directory: refused, nothing written next to it.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("keep"), b"").unwrap();
        let e = format!("{:#}", write_atomic(&sub, b"x").unwrap_err());
        assert!(e.contains("sub: it is a directory"), "{e}");
        // A destination under a file: refused, nothing left anywhere.
        let e = format!("{:#}", write_atomic(&sub.join("keep").join("x"), b"x").unwrap_err());
        assert!(e.contains("keep"), "{e}");
        let mut names = leftovers(dir.path());
        names.sort();
        assert_eq!(names, ["report.html", "sub"]);
        assert_eq!(leftovers(&sub), ["keep"]);
        // "/" has no file name.
        let e = format!("{:#}", write_atomic(std::path::Path::new("/"), b"x").unwrap_err());
        assert!(e.contains("is a directory"), "{e}");
    }
}
