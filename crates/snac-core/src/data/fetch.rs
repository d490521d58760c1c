//! Downloads MNIST / Fashion-MNIST IDX files from their public mirrors into
//! the per-user cache that [`super::load`] searches, checking each file's
//! sha256.
//!
//! Mirrors re-gzip the files, so the digest is taken of the *decompressed*
//! IDX payload (the canonical bytes; see `shared/data/SOURCES.md`). Each file
//! is written to a temporary name and renamed once it checks out, so an
//! interrupted or corrupt download never leaves a file that looks complete.

use crate::config::DatasetName;
use anyhow::{Context, Result, bail, ensure};
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One IDX file of a dataset: its name without `.gz`, and the sha256 and
/// size of its decompressed payload.
#[derive(Clone, Copy, Debug)]
pub struct IdxFile {
    pub name: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
}

const fn idx(name: &'static str, sha256: &'static str, bytes: u64) -> IdxFile {
    IdxFile { name, sha256, bytes }
}

const MNIST_FILES: [IdxFile; 4] = [
    idx("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47_040_016),
    idx("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60_008),
    idx("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7_840_016),
    idx("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10_008),
];

const FASHION_MNIST_FILES: [IdxFile; 4] = [
    idx("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
    idx("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
    idx("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
    idx("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
];

/// The four IDX files of MNIST or Fashion-MNIST, in the order train images,
/// train labels, test images, test labels (empty for other datasets).
pub fn idx_files(name: DatasetName) -> &'static [IdxFile] {
    match name {
        DatasetName::Mnist => &MNIST_FILES,
        DatasetName::FashionMnist => &FASHION_MNIST_FILES,
        _ => &[],
    }
}

/// Canonical public mirror (base URL of the `.gz` files).
fn default_mirror(name: DatasetName) -> &'static str {
    match name {
        DatasetName::FashionMnist => "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        _ => "https://ossci-datasets.s3.amazonaws.com/mnist/",
    }
}

/// `<user cache>/snac-pack`, e.g. `~/.cache/snac-pack` on Linux.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("snac-pack"))
}

/// Downloads `name` (`mnist` or `fashion_mnist`) into `<cache_dir>/<name>/`
/// (default [`default_cache_dir`]) and returns that directory. Files already
/// there with the right digest are kept. `mirror` (else `$SNAC_DATA_MIRROR`,
/// else the canonical mirror) is the base URL; `{name}` in it is replaced by
/// the dataset name. `progress` shows a progress bar per file on stderr.
pub fn fetch(name: &str, cache_dir: Option<&Path>, mirror: Option<&str>, progress: bool) -> Result<PathBuf> {
    let dataset = DatasetName::parse(name)
        .filter(|d| DatasetName::DOWNLOADABLE.contains(d))
        .with_context(|| format!("snac data fetch {name}: only mnist and fashion_mnist can be downloaded"))?;
    let root = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => default_cache_dir().context("no per-user cache directory on this system; pass a cache directory")?,
    };
    let dir = root.join(dataset.name());
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let env_mirror = std::env::var("SNAC_DATA_MIRROR").ok().filter(|m| !m.is_empty());
    let mut base = mirror.map(str::to_string).or(env_mirror).unwrap_or_else(|| default_mirror(dataset).to_string());
    base = base.replace("{name}", dataset.name());
    if !base.ends_with('/') {
        base.push('/');
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .into();
    // Smallest first: a bad mirror shows up before the long downloads.
    let mut files = idx_files(dataset).to_vec();
    files.sort_by_key(|f| f.bytes);
    for file in &files {
        if let Some(existing) = verified_copy(&dir, file) {
            if progress {
                eprintln!("{} is already there", existing.display());
            }
            continue;
        }
        download(&agent, &format!("{base}{}.gz", file.name), &dir, file, progress)?;
    }
    Ok(dir)
}

/// An existing `<file>.gz` or `<file>` in `dir` whose payload checks out.
fn verified_copy(dir: &Path, file: &IdxFile) -> Option<PathBuf> {
    [dir.join(format!("{}.gz", file.name)), dir.join(file.name)]
        .into_iter()
        .find(|p| p.is_file() && payload_sha256(p).is_ok_and(|(digest, _)| digest == file.sha256))
}

/// Removes a temporary file unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn download(agent: &ureq::Agent, url: &str, dir: &Path, file: &IdxFile, progress: bool) -> Result<PathBuf> {
    let mut response = agent.get(url).call().with_context(|| format!("could not download {url}"))?;
    let length = response.body().content_length();
    let bar = if progress { ProgressBar::new(length.unwrap_or(0)) } else { ProgressBar::hidden() };
    if progress {
        bar.set_style(
            ProgressStyle::with_template("{msg:28} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .expect("valid template"),
        );
        bar.set_message(file.name);
    }
    let temp_path = dir.join(format!(".{}.{}.part", file.name, std::process::id()));
    let mut guard = TempFile(Some(temp_path.clone()));
    {
        let out = File::create(&temp_path).with_context(|| format!("could not create {}", temp_path.display()))?;
        let mut out = BufWriter::new(out);
        let mut body = response.body_mut().as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("download of {url} was interrupted")),
            };
            out.write_all(&buf[..n]).with_context(|| format!("could not write {}", temp_path.display()))?;
            bar.inc(n as u64);
        }
        out.flush().with_context(|| format!("could not write {}", temp_path.display()))?;
    }
    bar.finish_and_clear();
    // Some servers send the payload with `Content-Encoding: gzip`, which ureq
    // undoes: keep whatever arrived, under the matching name.
    let (digest, size) = payload_sha256(&temp_path).with_context(|| format!("downloaded {url} is corrupt"))?;
    ensure!(
        digest == file.sha256,
        "checksum mismatch for {} (from {url}): expected sha256 {} of the decompressed payload, got {digest} \
         ({size} bytes, expected {})",
        file.name,
        file.sha256,
        file.bytes
    );
    let final_name = if is_gzip(&temp_path)? { format!("{}.gz", file.name) } else { file.name.to_string() };
    let final_path = dir.join(final_name);
    std::fs::rename(&temp_path, &final_path)
        .with_context(|| format!("could not move {} to {}", temp_path.display(), final_path.display()))?;
    guard.0 = None;
    if progress {
        eprintln!("{} ✓", final_path.display());
    }
    Ok(final_path)
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    Ok(f.read(&mut magic)? == 2 && magic == [0x1f, 0x8b])
}

/// sha256 (hex) and length of the file's payload, gunzipped when it is gzip.
fn payload_sha256(path: &Path) -> Result<(String, u64)> {
    let file = BufReader::new(File::open(path).with_context(|| format!("could not open {}", path.display()))?);
    let mut reader: Box<dyn Read> = if is_gzip(path)? { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("{} is corrupt", path.display())),
        }
    }
    Ok((format!("{:x}", hasher.finalize()), total))
}

/// Fails unless every file of `name` in `dir` checks out (for `snac data verify`).
pub fn verify(name: DatasetName, dir: &Path) -> Result<()> {
    let mut bad = Vec::new();
    for file in idx_files(name) {
        if verified_copy(dir, file).is_none() {
            bad.push(file.name);
        }
    }
    if !bad.is_empty() {
        bail!("{}: missing or corrupt: {}", dir.display(), bad.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Shape;
    use crate::data::idx::tests::gzip;
    use crate::data::load;
    use crate::data::tests::{config, shared_or_skip};
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    /// A minimal HTTP/1.1 server on 127.0.0.1 serving `files` (path → bytes),
    /// one connection at a time, `Connection: close`. Returns the base URL.
    fn serve(files: HashMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(files);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header == "\r\n" || header == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                let _ = match files.get(&path) {
                    Some(body) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
                                 Connection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(body)),
                    None => {
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    }
                };
            }
        });
        format!("http://{addr}/")
    }

    fn shared_files(dir: &Path) -> HashMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
            .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }

    #[test]
    fn digests_match_the_shared_files() {
        let Some(shared) = shared_or_skip("digests_match_the_shared_files") else { return };
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            verify(name, &shared.join(name.name())).unwrap();
        }
    }

    #[test]
    fn fetch_from_a_local_mirror_then_load() {
        let Some(shared) = shared_or_skip("fetch_from_a_local_mirror_then_load") else { return };
        let url = serve(shared_files(&shared.join("mnist")));
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch("mnist", Some(cache.path()), Some(&url), false).unwrap();
        assert_eq!(dir, cache.path().join("mnist"));
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz"
            ]
        );
        let mut c = config(DatasetName::Mnist);
        c.data_dir = Some(dir.clone());
        c.subset_size = Some(100);
        c.resize_val = Some(8);
        let data = load(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 8, width: 8, channels: 1 });
        assert_eq!(&data.train.y[..3], &[5, 0, 4]);
        // A second fetch finds everything in place and downloads nothing
        // (the server is gone: a bad URL proves it).
        fetch("mnist", Some(cache.path()), Some("http://127.0.0.1:9/"), false).unwrap();
    }

    #[test]
    fn corrupted_download_fails_with_the_checksum_and_leaves_nothing() {
        let Some(shared) = shared_or_skip("corrupted_download_fails_with_the_checksum") else { return };
        let mut files = shared_files(&shared.join("fashion_mnist"));
        // Flip one label in the decompressed payload and re-gzip it: a valid
        // gzip with the wrong content.
        let mut labels = Vec::new();
        GzDecoder::new(&files["train-labels-idx1-ubyte.gz"][..]).read_to_end(&mut labels).unwrap();
        labels[100] = (labels[100] + 1) % 10;
        files.insert("train-labels-idx1-ubyte.gz".into(), gzip(&labels));
        // Keep the test quick: small files only, the big ones 404.
        files.retain(|k, _| k.contains("labels"));
        let url = serve(files);
        let cache = tempfile::tempdir().unwrap();
        let err = format!("{:#}", fetch("fashion_mnist", Some(cache.path()), Some(&url), false).unwrap_err());
        assert!(err.contains("checksum mismatch for train-labels-idx1-ubyte"), "{err}");
        assert!(err.contains("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"), "{err}");
        assert!(err.contains("got "), "{err}");
        // The intact test labels were kept; nothing else, no partial file.
        let left: Vec<String> = std::fs::read_dir(cache.path().join("fashion_mnist"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["t10k-labels-idx1-ubyte.gz"]);
    }

    #[test]
    fn http_errors_and_unknown_names() {
        let url = serve(HashMap::new());
        let cache = tempfile::tempdir().unwrap();
        let err = format!("{:#}", fetch("mnist", Some(cache.path()), Some(&url), false).unwrap_err());
        assert!(err.contains("could not download") && err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
        assert!(err.contains("404"), "{err}");
        let err = fetch("digits", Some(cache.path()), None, false).unwrap_err().to_string();
        assert!(err.contains("only mnist and fashion_mnist"), "{err}");
    }
}
