//! MNIST and Fashion-MNIST from IDX files (gzipped or not), found in the
//! config's `data_dir`, `$SNAC_DATA_DIR/<name>/`, the per-user cache, or
//! `/usr/share/datasets/<name>/`.
//!
//! IDX: a big-endian magic `0x0000_08NN` (`08` = unsigned bytes, `NN` =
//! number of dimensions), one big-endian `u32` per dimension, then the bytes.

use super::fetch::{default_cache_dir, idx_files};
use super::{Raw, Split, check_labels};
use crate::arch::Shape;
use crate::config::{DatasetConfig, DatasetName};
use anyhow::{Context, Result, bail, ensure};
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Classes of MNIST and Fashion-MNIST.
pub const MNIST_CLASSES: usize = 10;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Folder names a dataset may have on disk (Debian spells Fashion-MNIST with a hyphen).
fn folder_names(name: DatasetName) -> Vec<&'static str> {
    match name {
        DatasetName::FashionMnist => vec!["fashion_mnist", "fashion-mnist"],
        other => vec![other.name()],
    }
}

/// Every directory [`load`] looks in for `name`'s IDX files, in order.
pub fn search_dirs(name: DatasetName, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let env_root = std::env::var_os("SNAC_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    search_dirs_in(name, data_dir, env_root.as_deref(), default_cache_dir().as_deref())
}

fn search_dirs_in(
    name: DatasetName,
    data_dir: Option<&Path>,
    env_root: Option<&Path>,
    cache: Option<&Path>,
) -> Vec<PathBuf> {
    let names = folder_names(name);
    let mut dirs = Vec::new();
    if let Some(dir) = data_dir {
        dirs.push(dir.to_path_buf());
        dirs.extend(names.iter().map(|n| dir.join(n)));
    }
    if let Some(root) = env_root {
        dirs.extend(names.iter().map(|n| root.join(n)));
    }
    if let Some(root) = cache {
        dirs.push(root.join(name.name()));
    }
    dirs.extend(names.iter().map(|n| Path::new("/usr/share/datasets").join(n)));
    dirs
}

/// `dir/<file>.gz` or `dir/<file>`, whichever exists.
fn find_file(dir: &Path, file: &str) -> Option<PathBuf> {
    [dir.join(format!("{file}.gz")), dir.join(file)].into_iter().find(|p| p.is_file())
}

/// The four files' paths in the first directory that holds all of them.
fn locate(config: &DatasetConfig) -> Result<[PathBuf; 4]> {
    let env_root = std::env::var_os("SNAC_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let advice = how_to_get(config.name, config.data_dir.is_some(), env_root.is_some());
    locate_in(config.name, &search_dirs(config.name, config.data_dir.as_deref()), &advice)
}

/// Every way to provide the files, for the error when none worked.
fn how_to_get(dataset: DatasetName, data_dir_set: bool, env_set: bool) -> String {
    let name = dataset.name();
    let mut ways = vec![format!("`snac data fetch {name}` downloads them into the cache (sha256-checked)")];
    if dataset == DatasetName::FashionMnist {
        ways.push(
            "`apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist (Debian, Ubuntu)"
                .into(),
        );
    }
    let unset = |set: bool| if set { "" } else { ", not set now" };
    ways.push(format!("dataset.data_dir: a folder holding the files, or {name}/ with them{}", unset(data_dir_set)));
    ways.push(format!("$SNAC_DATA_DIR: a folder with {name}/ holding the files{}", unset(env_set)));
    format!("To provide them:\n{}", ways.iter().map(|w| format!("  - {w}")).collect::<Vec<_>>().join("\n"))
}

fn locate_in(dataset: DatasetName, dirs: &[PathBuf], advice: &str) -> Result<[PathBuf; 4]> {
    let name = dataset.name();
    let mut looked = Vec::new();
    for dir in dirs {
        let found: Vec<Option<PathBuf>> = idx_files(dataset).iter().map(|f| find_file(dir, f.name)).collect();
        let count = found.iter().flatten().count();
        if count == 4 {
            let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
            return Ok(paths.try_into().expect("four paths"));
        }
        looked.push(if count == 0 {
            format!("  {}", dir.display())
        } else {
            format!("  {} (only {count} of the 4 files)", dir.display())
        });
    }
    bail!(
        "{name}: no IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], \
         t10k-labels-idx1-ubyte[.gz]) found. Looked in:\n{}\n{advice}",
        looked.join("\n")
    )
}

pub(crate) fn load(config: &DatasetConfig) -> Result<Raw> {
    let [train_images, train_labels, test_images, test_labels] = locate(config)?;
    // Only the first `subset_size` samples are used: stop reading there.
    let limit = config.subset_size;
    let train = read_pair(&train_images, &train_labels, limit)?;
    let (val, val_shape) = read_pair(&test_images, &test_labels, limit)?;
    let (train, shape) = train;
    ensure!(
        shape == val_shape,
        "{} holds images of shape {shape} but {} holds {val_shape}; the training and test images \
         must have the same size",
        train_images.display(),
        test_images.display(),
    );
    Ok(Raw { shape, train, val: Some(val), scale: 255.0, num_classes: MNIST_CLASSES })
}

/// Images and labels of one split, checked against each other.
fn read_pair(images: &Path, labels: &Path, limit: Option<usize>) -> Result<(Split, Shape)> {
    let (x, count, shape) = read_images(images, limit)?;
    let (y, label_count) = read_labels(labels, limit)?;
    ensure!(
        count == label_count,
        "{} holds {count} images but {} holds {label_count} labels",
        images.display(),
        labels.display()
    );
    check_labels(&y, MNIST_CLASSES, &labels.display().to_string())?;
    let take = limit.map_or(count, |n| n.min(count));
    Ok((Split { x: x.into_iter().map(f32::from).collect(), y: y.into_iter().take(take).collect() }, shape))
}

/// Opens a file, transparently gunzipping it when it starts with the gzip
/// magic; with the file's length when it is not gzipped.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let len = file.metadata().with_context(|| format!("could not read {}", path.display()))?.len();
    let mut file = BufReader::new(file);
    let is_gz = std::io::BufRead::fill_buf(&mut file)
        .with_context(|| format!("could not read {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if is_gz { (Box::new(GzDecoder::new(file)), None) } else { (Box::new(file), Some(len)) })
}

/// For an uncompressed file of `len` bytes: checks, before anything is
/// allocated, that it holds the header and the `count` items of
/// `item_bytes` the header declares (`what` names them).
fn check_file_size(
    path: &Path,
    len: Option<u64>,
    dims: &[usize],
    count: usize,
    item_bytes: usize,
    what: &str,
) -> Result<()> {
    let Some(len) = len else { return Ok(()) };
    let header = 4 + 4 * dims.len() as u64;
    let payload = (count as u64).checked_mul(item_bytes as u64);
    let dims = dims.iter().map(usize::to_string).collect::<Vec<_>>().join(" × ");
    match payload.and_then(|p| p.checked_add(header)) {
        Some(needed) if needed == len => Ok(()),
        Some(needed) if needed > len => bail!(
            "{} is truncated: its IDX header declares {dims} ({what}), {needed} bytes with the header, \
             but the file holds only {len}",
            path.display()
        ),
        Some(needed) => bail!(
            "{}: {} unexpected bytes after the data the header announces ({dims}, {what}: {needed} bytes)",
            path.display(),
            len - needed
        ),
        None => bail!(
            "{}: its IDX header declares {dims} ({what}), more bytes than can be counted; the file holds {len}",
            path.display()
        ),
    }
}

/// Reads exactly `buf.len()` bytes, or says how many the file was short.
fn read_exact(reader: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                bail!("{} is truncated: {what} needs {} bytes but only {filled} follow", path.display(), buf.len())
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("{} is corrupt (while reading {what})", path.display())),
        }
    }
    Ok(())
}

/// Reads the `len` payload bytes the header announced, growing the buffer as
/// data arrives (a corrupt header cannot ask for an absurd allocation).
fn read_payload(reader: &mut dyn Read, len: Option<usize>, path: &Path, what: &str) -> Result<Vec<u8>> {
    let Some(len) = len else { bail!("{}: the IDX header announces more data than fits in memory", path.display()) };
    let mut payload = Vec::with_capacity(len.min(1 << 26));
    reader
        .take(len as u64)
        .read_to_end(&mut payload)
        .with_context(|| format!("{} is corrupt (while reading {what})", path.display()))?;
    ensure!(
        payload.len() == len,
        "{} is truncated: {what} needs {len} bytes but only {} follow",
        path.display(),
        payload.len()
    );
    Ok(payload)
}

/// Magic number and dimensions.
fn read_header(reader: &mut dyn Read, path: &Path, magic: u32, kind: &str) -> Result<Vec<usize>> {
    let mut word = [0u8; 4];
    read_exact(reader, &mut word, path, "the IDX magic number")?;
    let found = u32::from_be_bytes(word);
    ensure!(
        found == magic,
        "{}: wrong IDX magic number 0x{found:08x}; {kind} files start with 0x{magic:08x} \
         (is this the right file, and not an HTML error page?)",
        path.display()
    );
    let ndim = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        read_exact(reader, &mut word, path, "the IDX header")?;
        dims.push(u32::from_be_bytes(word) as usize);
    }
    Ok(dims)
}

/// Reads the rest of the stream to check there is nothing after the payload.
fn ensure_at_end(reader: &mut dyn Read, path: &Path) -> Result<()> {
    let mut extra = Vec::new();
    reader.read_to_end(&mut extra).with_context(|| format!("{} is corrupt", path.display()))?;
    ensure!(
        extra.is_empty(),
        "{}: {} unexpected bytes after the data the header announces",
        path.display(),
        extra.len()
    );
    Ok(())
}

/// Pixels (of at most `limit` images), the image count from the header, and the shape.
fn read_images(path: &Path, limit: Option<usize>) -> Result<(Vec<u8>, usize, Shape)> {
    let (mut reader, len) = open_maybe_gz(path)?;
    let dims = read_header(&mut reader, path, IMAGES_MAGIC, "IDX image (unsigned byte, 3-D)")?;
    let [count, height, width] = dims[..] else { unreachable!("three dimensions") };
    ensure!(
        count > 0 && height > 0 && width > 0,
        "{}: empty data ({count} images of {height}×{width})",
        path.display()
    );
    ensure!(
        height.checked_mul(width).is_some_and(|n| n <= 1 << 24),
        "{}: the IDX header announces {height}×{width} images; the file is corrupt",
        path.display()
    );
    check_file_size(path, len, &dims, count, height * width, "images of one byte per pixel")?;
    let take = limit.map_or(count, |n| n.min(count));
    let pixels = read_payload(
        &mut reader,
        take.checked_mul(height * width),
        path,
        &format!("{take} images of {height}×{width}"),
    )?;
    if take == count {
        ensure_at_end(&mut reader, path)?;
    }
    Ok((pixels, count, Shape::Image { height, width, channels: 1 }))
}

/// Labels (at most `limit`) and the label count from the header.
fn read_labels(path: &Path, limit: Option<usize>) -> Result<(Vec<u32>, usize)> {
    let (mut reader, len) = open_maybe_gz(path)?;
    let dims = read_header(&mut reader, path, LABELS_MAGIC, "IDX label (unsigned byte, 1-D)")?;
    let count = dims[0];
    ensure!(count > 0, "{}: empty data (0 labels)", path.display());
    check_file_size(path, len, &dims, count, 1, "one-byte labels")?;
    let take = limit.map_or(count, |n| n.min(count));
    let labels = read_payload(&mut reader, Some(take), path, &format!("{take} labels"))?;
    if take == count {
        ensure_at_end(&mut reader, path)?;
    }
    Ok((labels.into_iter().map(u32::from).collect(), count))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::load as load_dataset;
    use crate::data::tests::{config, shared_or_skip};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    pub(crate) fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A tiny MNIST-like set: `n` 4×4 images whose pixels are `10·i + p` and
    /// labels `i % 10`, written both for train and t10k, gzipped when `gz`.
    fn write_tiny(dir: &Path, n: u32, gz: bool) {
        let pixels: Vec<u8> = (0..n * 16).map(|v| ((v / 16) * 10 + v % 16) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images = idx_bytes(IMAGES_MAGIC, &[n, 4, 4], &pixels);
        let labels = idx_bytes(LABELS_MAGIC, &[n], &labels);
        for split in ["train", "t10k"] {
            for (file, bytes) in [("images-idx3-ubyte", &images), ("labels-idx1-ubyte", &labels)] {
                let (name, data) = if gz {
                    (format!("{split}-{file}.gz"), gzip(bytes))
                } else {
                    (format!("{split}-{file}"), bytes.clone())
                };
                std::fs::write(dir.join(name), data).unwrap();
            }
        }
    }

    fn tiny_config(dir: &Path) -> DatasetConfig {
        let mut c = config(DatasetName::Mnist);
        c.data_dir = Some(dir.to_path_buf());
        c
    }

    #[test]
    fn tiny_idx_loads_gzipped_or_not() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_tiny(dir.path(), 12, gz);
            let data = load_dataset(&tiny_config(dir.path())).unwrap();
            assert_eq!(data.sample_shape, Shape::Image { height: 4, width: 4, channels: 1 });
            assert_eq!((data.train.len(), data.val.len(), data.num_classes), (12, 12, 10));
            assert_eq!(data.train.y[11], 1);
            assert_eq!(data.train.x[16 * 3 + 5], 35.0 / 255.0);
        }
    }

    #[test]
    fn subset_resize_flatten() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 12, true);
        let mut c = tiny_config(dir.path());
        c.subset_size = Some(5);
        c.resize_val = Some(2);
        c.flatten = true;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(4));
        assert_eq!((data.train.len(), data.val.len()), (5, 5));
        assert_eq!(data.train.x.len(), 20);
        // Image 1 is 10 + p: 2×2 block means of 0..16 are 2.5, 4.5, 10.5, 12.5.
        let expected: Vec<f32> = [12.5f32, 14.5, 20.5, 22.5].iter().map(|v| v / 255.0).collect();
        assert_eq!(&data.train.x[4..8], &expected[..]);
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn load_err(dir: &Path) -> String {
        format!("{:#}", load_dataset(&tiny_config(dir)).unwrap_err())
    }

    #[test]
    fn wrong_magic_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 3, false);
        write(dir.path(), "train-labels-idx1-ubyte", &idx_bytes(IMAGES_MAGIC, &[3, 1, 1], &[0, 1, 2]));
        let err = load_err(dir.path());
        assert!(err.contains("train-labels-idx1-ubyte") && err.contains("wrong IDX magic number 0x00000803"), "{err}");
        write(dir.path(), "train-labels-idx1-ubyte", b"<html>Not found</html>");
        let err = load_err(dir.path());
        assert!(err.contains("wrong IDX magic"), "{err}");
    }

    #[test]
    fn truncated_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 3, false);
        let full = idx_bytes(IMAGES_MAGIC, &[3, 4, 4], &[7; 48]);
        write(dir.path(), "t10k-images-idx3-ubyte", &full[..full.len() - 5]);
        let err = load_err(dir.path());
        assert!(
            err.contains("t10k-images-idx3-ubyte is truncated: its IDX header declares 3 × 4 × 4")
                && err.contains("64 bytes with the header, but the file holds only 59"),
            "{err}"
        );
        // Gzipped, the size shows only while reading.
        std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
        write(dir.path(), "t10k-images-idx3-ubyte.gz", &gzip(&full[..full.len() - 5]));
        let err = load_err(dir.path());
        assert!(
            err.contains("t10k-images-idx3-ubyte.gz is truncated") && err.contains("needs 48 bytes but only 43"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
        write(dir.path(), "t10k-images-idx3-ubyte", &full[..6]);
        let err = load_err(dir.path());
        assert!(err.contains("truncated") && err.contains("header"), "{err}");
        // A header announcing absurd sizes.
        write(dir.path(), "t10k-images-idx3-ubyte", &idx_bytes(IMAGES_MAGIC, &[u32::MAX, 4, 4], &[0; 10]));
        let err = load_err(dir.path());
        assert!(
            err.contains("declares 4294967295 × 4 × 4") && err.contains("68719476736 bytes") && err.contains("only 26"),
            "{err}"
        );
        write(dir.path(), "t10k-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[u32::MAX], &[0; 3]));
        write(dir.path(), "t10k-images-idx3-ubyte", &full);
        let err = load_err(dir.path());
        assert!(
            err.contains("t10k-labels-idx1-ubyte is truncated") && err.contains("4294967295 (one-byte labels)"),
            "{err}"
        );
        write_tiny(dir.path(), 3, false);
        write(dir.path(), "t10k-images-idx3-ubyte", &idx_bytes(IMAGES_MAGIC, &[3, u32::MAX, u32::MAX], &[0; 10]));
        let err = load_err(dir.path());
        assert!(err.contains("corrupt"), "{err}");
        // Extra bytes after the payload.
        let mut long = full.clone();
        long.push(0);
        write(dir.path(), "t10k-images-idx3-ubyte", &long);
        let err = load_err(dir.path());
        assert!(err.contains("1 unexpected bytes"), "{err}");
    }

    #[test]
    fn corrupt_gzip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 30, true);
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 12);
        std::fs::write(&path, &bytes).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
        // Garbage inside the deflate stream.
        let mut bytes = gzip(&idx_bytes(IMAGES_MAGIC, &[30, 4, 4], &[1; 480]));
        for b in &mut bytes[12..20] {
            *b ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
    }

    #[test]
    fn train_and_test_shapes_differ_in_words() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 3, false);
        write(dir.path(), "t10k-images-idx3-ubyte", &idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &[0; 12]));
        let err = load_err(dir.path());
        assert!(
            err.contains("train-images-idx3-ubyte holds images of shape (4, 4, 1) but")
                && err.contains("t10k-images-idx3-ubyte holds (2, 2, 1)")
                && !err.contains("Image {"),
            "{err}"
        );
    }

    #[test]
    fn count_mismatch_empty_and_label_range() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), 3, false);
        write(dir.path(), "train-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[2], &[0, 1]));
        let err = load_err(dir.path());
        assert!(err.contains("holds 3 images but") && err.contains("train-labels-idx1-ubyte holds 2 labels"), "{err}");
        write(dir.path(), "train-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[3], &[0, 10, 1]));
        let err = load_err(dir.path());
        assert!(err.contains("label 10 at index 1 is out of range"), "{err}");
        write(dir.path(), "train-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[0], &[]));
        write(dir.path(), "train-images-idx3-ubyte", &idx_bytes(IMAGES_MAGIC, &[0, 4, 4], &[]));
        let err = load_err(dir.path());
        assert!(err.contains("empty data"), "{err}");
    }

    #[test]
    fn missing_files_list_every_place_and_suggest_fetch() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &[]);
        let mut c = config(DatasetName::FashionMnist);
        c.data_dir = Some(dir.path().to_path_buf());
        let err = format!("{:#}", load_dataset(&c).unwrap_err());
        assert!(err.contains("snac data fetch fashion_mnist"), "{err}");
        assert!(err.contains(&format!("{} (only 1 of the 4 files)", dir.path().display())), "{err}");
        assert!(err.contains("/usr/share/datasets/fashion-mnist"), "{err}");
        assert!(err.contains("/usr/share/datasets/fashion_mnist"), "{err}");
        assert!(err.contains("apt install dataset-fashion-mnist"), "{err}");
        assert!(err.contains("dataset.data_dir: a folder") && err.contains("$SNAC_DATA_DIR: a folder"), "{err}");
        // Each route says whether it is set; MNIST has no Debian package.
        let advice = how_to_get(DatasetName::Mnist, false, true);
        assert!(advice.contains("fetch mnist") && !advice.contains("apt"), "{advice}");
        assert!(
            advice.contains("with them, not set now") && !advice.contains("holding the files, not set"),
            "{advice}"
        );
    }

    fn real(name: DatasetName, test: &str) -> Option<DatasetConfig> {
        let dir = shared_or_skip(test)?;
        let mut c = config(name);
        c.data_dir = Some(dir.join(name.name()));
        Some(c)
    }

    #[test]
    fn real_mnist_full() {
        let Some(c) = real(DatasetName::Mnist, "real_mnist_full") else { return };
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 28, width: 28, channels: 1 });
        assert_eq!((data.train.len(), data.val.len()), (60000, 10000));
        assert_eq!(data.train.x.len(), 60000 * 784);
        // The famous first labels: 5 0 4 1 9 2 1 3 1 4; test: 7 2 1 0 4.
        assert_eq!(&data.train.y[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
        assert_eq!(&data.val.y[..5], &[7, 2, 1, 0, 4]);
        let mut counts = [0usize; 10];
        data.train.y.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
        let (min, max) = data.train.x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((min, max), (0.0, 1.0));
        // The first training image's row 5 starts dark and reaches full white.
        assert_eq!(data.train.x[0], 0.0);
        assert!(data.train.x[..784].contains(&1.0));
    }

    #[test]
    fn real_mnist_as_snac_pack_t1() {
        // t1_config.yaml: resize 8, subset 10000, flatten.
        let Some(mut c) = real(DatasetName::Mnist, "real_mnist_as_snac_pack_t1") else { return };
        c.resize_val = Some(8);
        c.subset_size = Some(10000);
        c.flatten = true;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(64));
        assert_eq!((data.train.len(), data.val.len()), (10000, 10000));
        assert!(data.train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Corners of a resized digit stay black; the centre is inked.
        assert_eq!(data.train.x[0], 0.0);
        let ink: f32 = data.train.x[..64].iter().sum();
        assert!(ink > 5.0, "{ink}");
    }

    #[test]
    fn real_fashion_mnist() {
        let Some(mut c) = real(DatasetName::FashionMnist, "real_fashion_mnist") else { return };
        c.resize_val = Some(16);
        c.subset_size = Some(20000);
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 16, width: 16, channels: 1 });
        assert_eq!((data.train.len(), data.val.len()), (20000, 10000));
        // Fashion-MNIST's first labels: 9 (ankle boot) 0 0 3 0; test 9 2 1 1 6.
        assert_eq!(&data.train.y[..5], &[9, 0, 0, 3, 0]);
        assert_eq!(&data.val.y[..5], &[9, 2, 1, 1, 6]);
        let mut counts = [0usize; 10];
        data.val.y.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [1000; 10]);
    }

    #[test]
    fn search_order_and_folder_spellings() {
        let dirs = search_dirs_in(
            DatasetName::FashionMnist,
            Some(Path::new("/cfg")),
            Some(Path::new("/env")),
            Some(Path::new("/cache/snac-pack")),
        );
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/cfg",
                "/cfg/fashion_mnist",
                "/cfg/fashion-mnist",
                "/env/fashion_mnist",
                "/env/fashion-mnist",
                "/cache/snac-pack/fashion_mnist",
                "/usr/share/datasets/fashion_mnist",
                "/usr/share/datasets/fashion-mnist",
            ]
        );
        assert_eq!(search_dirs_in(DatasetName::Mnist, None, None, None).len(), 1);
    }

    #[test]
    fn tutorial_2_finds_fashion_mnist_by_every_route() {
        let Some(shared) = shared_or_skip("tutorial_2_finds_fashion_mnist_by_every_route") else { return };
        let t2 = shared.join("../peer-configs/t2_config.yaml");
        let experiment = crate::config::load(&t2).unwrap_or_else(|e| panic!("{e}"));
        let name = experiment.dataset.name;
        assert_eq!((name, experiment.dataset.data_dir.as_deref()), (DatasetName::FashionMnist, None));
        let expected = shared.join("fashion_mnist").join("train-images-idx3-ubyte.gz");
        // dataset.data_dir (the folder itself, or one holding fashion_mnist/),
        // $SNAC_DATA_DIR, and the cache; the Debian folder has its own test below.
        for (data_dir, env_root, cache) in [
            (Some(shared.join("fashion_mnist")), None, None),
            (Some(shared.clone()), None, None),
            (None, Some(shared.clone()), None),
            (None, None, Some(shared.clone())),
        ] {
            let dirs = search_dirs_in(name, data_dir.as_deref(), env_root.as_deref(), cache.as_deref());
            let [images, ..] = locate_in(name, &dirs, "").unwrap();
            assert_eq!(images, expected);
        }
        // The whole dataset section as tutorial 2 writes it, found through data_dir.
        let config = DatasetConfig { data_dir: Some(shared.clone()), subset_size: Some(100), ..experiment.dataset };
        let data = load_dataset(&config).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 16, width: 16, channels: 1 });
        assert_eq!((data.train.len(), data.val.len()), (100, 100));
    }

    #[cfg(unix)]
    #[test]
    fn snac_data_dir_layout_and_debian_folder_name_are_found() {
        let Some(shared) = shared_or_skip("snac_data_dir_layout_and_debian_folder_name_are_found") else { return };
        // SNAC_DATA_DIR=/work/shared/data: folders mnist and fashion_mnist.
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            let dirs = search_dirs_in(name, None, Some(&shared), None);
            let [images, ..] = locate_in(name, &dirs, "").unwrap();
            assert_eq!(images, shared.join(name.name()).join("train-images-idx3-ubyte.gz"));
        }
        // Debian's /usr/share/datasets/fashion-mnist spelling.
        let root = tempfile::tempdir().unwrap();
        let debian = root.path().join("fashion-mnist");
        std::fs::create_dir(&debian).unwrap();
        for f in idx_files(DatasetName::FashionMnist) {
            let name = format!("{}.gz", f.name);
            std::os::unix::fs::symlink(shared.join("fashion_mnist").join(&name), debian.join(&name)).unwrap();
        }
        let dirs = search_dirs_in(DatasetName::FashionMnist, None, Some(root.path()), None);
        let [.., labels] = locate_in(DatasetName::FashionMnist, &dirs, "").unwrap();
        assert_eq!(labels, debian.join("t10k-labels-idx1-ubyte.gz"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn read_both(bytes: &[u8]) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f-idx-ubyte");
            std::fs::write(&path, bytes).unwrap();
            for limit in [None, Some(2)] {
                let _ = read_images(&path, limit);
                let _ = read_labels(&path, limit);
            }
        }

        fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
            for &(at, b) in edits {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Arbitrary bytes, gzipped or not: an error or a value, never a panic.
            #[test]
            fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), gz in any::<bool>()) {
                read_both(&if gz { gzip(&bytes) } else { bytes });
            }

            /// Valid image and label files with bytes changed (the header
            /// included) and cut short.
            #[test]
            fn mutated_files(
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                cut in proptest::option::of(any::<usize>()),
                gz in any::<bool>(),
                images in any::<bool>(),
            ) {
                let valid = if images {
                    idx_bytes(IMAGES_MAGIC, &[3, 4, 4], &[7; 48])
                } else {
                    idx_bytes(LABELS_MAGIC, &[3], &[0, 1, 2])
                };
                let bytes = mutate(valid, &edits, cut);
                read_both(&if gz { gzip(&bytes) } else { bytes });
            }
        }
    }
}
