//! The generic loader (`dataset.name: file`): features and labels from
//! `.npy` (labels in a second `.npy`), `.npz` (keys `x`/`X`, `y`/`Y`) or
//! `.csv` (label in the last column), for training and optionally validation.
//!
//! Features are taken as stored (no scaling). X of shape `(N, F)` gives flat
//! samples, `(N, H, W)` / `(N, H, W, C)` images; when the config asks for sets
//! (`search.model_type: deepsets`, without `points`), `(N, P, F)` is N sets of
//! P elements with F features each. Labels are class indices, integers (or
//! integer-valued floats), or one-hot rows.

use super::{Raw, Split, check_finite, check_labels};
use crate::arch::Shape;
use crate::config::DatasetConfig;
use anyhow::{Context, Result, bail, ensure};
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
use std::path::Path;

/// An array as read from a file: dimensions and row-major values.
struct Array<T> {
    dims: Vec<usize>,
    values: Vec<T>,
}

pub(crate) fn load(config: &DatasetConfig) -> Result<Raw> {
    let Some(train_file) = &config.train_file else {
        bail!("dataset.name: file needs dataset.train_file (a .npy, .npz or .csv file)")
    };
    // Images turned into points are read as images.
    let sets = config.sets && config.points.is_none();
    let (shape, train, mut max_label) = read_split(train_file, config.train_labels.as_deref(), sets)?;
    let val = match &config.val_file {
        Some(val_file) => {
            let (val_shape, val, val_max) = read_split(val_file, config.val_labels.as_deref(), sets)?;
            ensure!(
                val_shape == shape,
                "{} has samples of shape {:?} but {} has {:?}",
                val_file.display(),
                val_shape.dims(),
                train_file.display(),
                shape.dims()
            );
            max_label = max_label.max(val_max);
            Some(val)
        }
        None => {
            ensure!(config.val_labels.is_none(), "dataset.val_labels is set but dataset.val_file is not");
            None
        }
    };
    let num_classes = match config.num_classes {
        Some(n) => {
            let labels_of = |file: &Path, labels: Option<&Path>| labels.unwrap_or(file).display().to_string();
            check_labels(&train.y, n, &labels_of(train_file, config.train_labels.as_deref()))?;
            if let (Some(val), Some(val_file)) = (&val, &config.val_file) {
                check_labels(&val.y, n, &labels_of(val_file, config.val_labels.as_deref()))?;
            }
            n
        }
        None => max_label as usize + 1,
    };
    ensure!(num_classes >= 2, "{}: all labels are 0; a classifier needs at least 2 classes", train_file.display());
    Ok(Raw { shape, train, val, scale: 1.0, num_classes })
}

/// One split: its sample shape, the samples, and the largest label. With
/// `sets`, 3-D features are `(N, elements, features)` sets and nothing else
/// is accepted.
pub(crate) fn read_split(file: &Path, labels_file: Option<&Path>, sets: bool) -> Result<(Shape, Split, u32)> {
    let ext = extension(file);
    let (x, y, y_name) = match ext.as_str() {
        "npy" => {
            let Some(labels_file) = labels_file else {
                bail!(
                    "{} holds only features; set the matching labels .npy (dataset.train_labels / val_labels)",
                    file.display()
                )
            };
            let (reader, len) = npy_open(file)?;
            let x = read_npy(&file.display().to_string(), reader, len)?;
            let y = read_labels_file(labels_file)?;
            (x, y, labels_file.display().to_string())
        }
        "npz" => {
            ensure!(
                labels_file.is_none(),
                "{}: an .npz holds its own labels (key y); drop the labels file",
                file.display()
            );
            let (x, y) = read_npz(file)?;
            (x, y, format!("{} (y)", file.display()))
        }
        "csv" | "txt" => {
            ensure!(
                labels_file.is_none(),
                "{}: a .csv holds its labels in the last column; drop the labels file",
                file.display()
            );
            let (x, y) = read_csv(file)?;
            (x, y, format!("{} (last column)", file.display()))
        }
        _ => bail!("{}: unknown data file type {ext:?}; use .npy, .npz or .csv", file.display()),
    };
    let name = file.display().to_string();
    let n = x.dims.first().copied().unwrap_or(0);
    ensure!(n > 0 && !x.values.is_empty(), "{name}: empty data (shape {:?})", x.dims);
    let shape = match x.dims[..] {
        [_, elements, features] if sets => Shape::Set { elements, features },
        _ if sets => bail!(
            "{name}: features of shape {:?}; search.model_type: deepsets needs sets of shape \
             (N, elements, features)",
            x.dims
        ),
        [_] => Shape::Flat(1),
        [_, f] => Shape::Flat(f),
        [_, h, w] => Shape::Image { height: h, width: w, channels: 1 },
        [_, h, w, c] => Shape::Image { height: h, width: w, channels: c },
        _ => bail!("{name}: features of shape {:?}; expected (N, F), (N, H, W) or (N, H, W, C)", x.dims),
    };
    check_finite(&x.values, &name)?;
    let labels = labels_to_indices(&y, &y_name)?;
    ensure!(
        labels.len() == n,
        "{name} holds {n} samples (shape {:?}) but {y_name} holds {} labels (shape {:?})",
        x.dims,
        labels.len(),
        y.dims
    );
    let max_label = labels.iter().copied().max().unwrap_or(0);
    Ok((shape, Split { x: x.values, y: labels }, max_label))
}

fn extension(file: &Path) -> String {
    file.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase()
}

/// Class indices from `(N,)`, `(N, 1)` or one-hot `(N, K)` labels.
fn labels_to_indices(y: &Array<f64>, name: &str) -> Result<Vec<u32>> {
    let as_index = |i: usize, v: f64| -> Result<u32> {
        ensure!(v.is_finite(), "{name}: label {v} at index {i} is not finite");
        ensure!(
            v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64,
            "{name}: label {v} at index {i} is not a class index (0, 1, 2, ...)"
        );
        Ok(v as u32)
    };
    match y.dims[..] {
        [_] | [_, 1] => y.values.iter().enumerate().map(|(i, &v)| as_index(i, v)).collect(),
        [n, k] if k > 1 => (0..n)
            .map(|row| {
                let values = &y.values[row * k..(row + 1) * k];
                let ones: Vec<usize> = (0..k).filter(|&j| values[j] == 1.0).collect();
                ensure!(
                    ones.len() == 1 && values.iter().all(|&v| v == 0.0 || v == 1.0),
                    "{name}: row {row} of the {n}×{k} labels is not one-hot: {values:?}"
                );
                Ok(ones[0] as u32)
            })
            .collect(),
        _ => bail!("{name}: labels of shape {:?}; expected (N,), (N, 1) or one-hot (N, K)", y.dims),
    }
}

/// Opens a `.npy` file: a reader at its start and its length in bytes.
fn npy_open(file: &Path) -> Result<(std::io::BufReader<std::fs::File>, u64)> {
    let f = std::fs::File::open(file).with_context(|| format!("could not open {}", file.display()))?;
    let len = f.metadata().with_context(|| format!("could not read {}", file.display()))?.len();
    Ok((std::io::BufReader::new(f), len))
}

fn read_labels_file(file: &Path) -> Result<Array<f64>> {
    ensure!(extension(file) == "npy", "{}: labels files must be .npy", file.display());
    let (reader, len) = npy_open(file)?;
    read_npy(&file.display().to_string(), reader, len)
}

/// The NPY versions [`read_npy`] reads: 1.0 (16-bit header length), 2.0
/// (32-bit) and 3.0 (2.0 with a UTF-8 header).
const NPY_VERSIONS: &str = "1.0, 2.0 and 3.0";

/// Longest header accepted: numpy writes a few hundred bytes, and refuses
/// to read more than 10 000 unless told to.
const NPY_MAX_HEADER: u64 = 1 << 20;

/// Reads a numeric `.npy` array of `len` bytes in all (header included) from
/// `reader`, converting every element with `T::from_f64`. The header's shape
/// is checked against `len` before anything is allocated, so a corrupt or
/// hostile header is an error, never a huge allocation.
fn read_npy<T: FromF64>(name: &str, mut reader: impl Read, len: u64) -> Result<Array<T>> {
    let not_npy = || anyhow::anyhow!("{name} is not a valid .npy file: it does not start with \\x93NUMPY");
    let mut magic = [0u8; 8];
    if len < 8 {
        return Err(not_npy());
    }
    reader.read_exact(&mut magic).with_context(|| format!("could not read {name}"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(not_npy());
    }
    let (major, minor) = (magic[6], magic[7]);
    let prefix: u64 = match (major, minor) {
        (1, 0) => 10,
        (2, 0) | (3, 0) => 12,
        _ => bail!("{name}: NPY format version {major}.{minor} is not supported; accepted: {NPY_VERSIONS}"),
    };
    ensure!(len >= prefix, "{name} is truncated: {len} bytes, shorter than an NPY {major}.{minor} preamble");
    let mut size_bytes = vec![0u8; prefix as usize - 8];
    reader.read_exact(&mut size_bytes).with_context(|| format!("could not read {name}"))?;
    let header_len = match size_bytes[..] {
        [a, b] => u64::from(u16::from_le_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
        _ => unreachable!("2 or 4 bytes"),
    };
    ensure!(
        header_len <= len - prefix,
        "{name} is truncated: its header claims {header_len} bytes but only {} follow",
        len - prefix
    );
    ensure!(
        header_len <= NPY_MAX_HEADER,
        "{name}: its header claims {header_len} bytes (numpy writes a few hundred); the file is corrupt"
    );
    let mut head = magic.to_vec();
    head.extend_from_slice(&size_bytes);
    head.resize((prefix + header_len) as usize, 0);
    reader.read_exact(&mut head[prefix as usize..]).with_context(|| format!("could not read {name}"))?;
    let npy = NpyFile::new(&head[..]).with_context(|| format!("{name} is not a valid .npy file (bad header)"))?;
    let available = len - prefix - header_len;
    let dims: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{name}: shape {:?} does not fit in memory", npy.shape()))?;
    ensure!(
        npy.order() == Order::C || dims.iter().filter(|&&d| d > 1).count() <= 1,
        "{name}: Fortran-ordered arrays are not supported; save it with np.ascontiguousarray"
    );
    let DType::Plain(ty) = npy.dtype() else {
        bail!("{name}: structured dtype {}; expected numbers", npy.dtype().descr())
    };
    let supported = matches!(
        (ty.type_char(), ty.size_field()),
        (TypeChar::Float, 4 | 8) | (TypeChar::Int | TypeChar::Uint, 1 | 2 | 4 | 8) | (TypeChar::Bool, 1)
    );
    ensure!(supported, "{name}: dtype {ty} is not supported; use float32/64, int8..int64, uint8..uint64 or bool");
    let item = ty.size_field();
    let total = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let needed = total.and_then(|n| (n as u64).checked_mul(item));
    let Some((total, needed)) = total.zip(needed) else {
        bail!(
            "{name}: its header declares shape {dims:?} of {ty}, more elements than can be counted; \
             the file holds {available} bytes of data"
        )
    };
    ensure!(
        needed <= available,
        "{name} is truncated: its header declares shape {dims:?} of {ty}, {needed} bytes of data, \
         but the file holds only {available}"
    );
    ensure!(
        needed == available,
        "{name}: {} unexpected bytes after the {needed} bytes of data its header declares \
         (shape {dims:?} of {ty}); the file is corrupt",
        available - needed
    );
    let npy = NpyFile::with_header(npy.header().clone(), reader.take(needed));
    // Room for what the file holds; an archive member may lie about its size,
    // so the vector grows with the data beyond a first 16 M values.
    let mut values = Vec::with_capacity(total.min(1 << 24));
    macro_rules! read_as {
        ($t:ty, $to:expr) => {{
            let data = npy.data::<$t>().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            for v in data {
                let v: $t = v.with_context(|| format!("{name} is truncated or corrupt"))?;
                values.push(T::from_f64($to(v)));
            }
        }};
    }
    match (ty.type_char(), ty.size_field()) {
        (TypeChar::Float, 4) => read_as!(f32, f64::from),
        (TypeChar::Float, 8) => read_as!(f64, |v| v),
        (TypeChar::Int, 1) => read_as!(i8, f64::from),
        (TypeChar::Int, 2) => read_as!(i16, f64::from),
        (TypeChar::Int, 4) => read_as!(i32, f64::from),
        (TypeChar::Int, 8) => read_as!(i64, |v| v as f64),
        (TypeChar::Uint, 1) => read_as!(u8, f64::from),
        (TypeChar::Uint, 2) => read_as!(u16, f64::from),
        (TypeChar::Uint, 4) => read_as!(u32, f64::from),
        (TypeChar::Uint, 8) => read_as!(u64, |v| v as f64),
        (TypeChar::Bool, 1) => read_as!(bool, |v: bool| f64::from(u8::from(v))),
        _ => unreachable!("checked above"),
    }
    ensure!(values.len() == total, "{name} is truncated: {} of {total} values", values.len());
    Ok(Array { dims, values })
}

/// Any numeric `.npy` file as `f32` values with its shape.
pub fn read_npy_f32(file: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    ensure!(extension(file) == "npy", "{}: expected a .npy file", file.display());
    let (reader, len) = npy_open(file)?;
    let array: Array<f32> = read_npy(&file.display().to_string(), reader, len)?;
    Ok((array.dims, array.values))
}

/// Writes `values` (row-major, shape `dims`) as a float64 `.npy` file.
pub fn write_npy_f64(file: &Path, dims: &[usize], values: &[f64]) -> Result<()> {
    write_npy(file, dims, values)
}

/// Writes `values` (row-major, shape `dims`) as a `.npy` file of `T`
/// (float32 features, int64 labels, ...).
pub fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    file: &Path,
    dims: &[usize],
    values: &[T],
) -> Result<()> {
    use npyz::WriterBuilder;
    ensure!(dims.iter().product::<usize>() == values.len(), "shape {dims:?} does not hold {} values", values.len());
    let mut bytes = Vec::new();
    let shape: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut bytes).begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()?;
    crate::write_atomic(file, &bytes)
}

trait FromF64 {
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
}
impl FromF64 for f64 {
    fn from_f64(v: f64) -> f64 {
        v
    }
}

fn read_npz(file: &Path) -> Result<(Array<f32>, Array<f64>)> {
    let name = file.display();
    let f = std::fs::File::open(file).with_context(|| format!("could not open {name}"))?;
    let mut archive = zip::ZipArchive::new(f).with_context(|| format!("{name} is not a valid .npz (zip) file"))?;
    let keys: Vec<String> = archive.file_names().filter_map(|n| n.strip_suffix(".npy")).map(str::to_string).collect();
    let pick = |wanted: [&str; 2]| wanted.iter().find(|k| keys.iter().any(|n| n == *k)).map(|k| k.to_string());
    let Some(x_key) = pick(["x", "X"]) else { bail!("{name}: no array named x or X (arrays: {keys:?})") };
    let Some(y_key) = pick(["y", "Y"]) else { bail!("{name}: no array named y or Y (arrays: {keys:?})") };
    let x = npz_member(&mut archive, &name.to_string(), &x_key)?;
    let y = npz_member(&mut archive, &name.to_string(), &y_key)?;
    Ok((x, y))
}

/// Array `key` of an `.npz` archive, checked against the member's size.
fn npz_member<T: FromF64>(archive: &mut zip::ZipArchive<std::fs::File>, name: &str, key: &str) -> Result<Array<T>> {
    let shown = format!("{name}[{key}]");
    let entry = archive.by_name(&format!("{key}.npy")).with_context(|| format!("{shown} is corrupt"))?;
    let len = entry.size();
    read_npy(&shown, entry, len)
}

/// Reads a `.csv` (or `.txt`) of numbers, the label in the last column,
/// through the `csv` crate (quoting, CRLF). A UTF-8 byte-order mark is
/// skipped, lines starting with `#` and blank lines are ignored. The first
/// row is a header only when none of its fields is a number: a first row
/// mixing numbers and text is an error, not a data row silently lost.
fn read_csv(file: &Path) -> Result<(Array<f32>, Array<f64>)> {
    let name = file.display();
    let f = std::fs::File::open(file).with_context(|| format!("could not open {name}"))?;
    let mut reader = std::io::BufReader::new(f);
    let start = std::io::BufRead::fill_buf(&mut reader).with_context(|| format!("could not read {name}"))?;
    if start.starts_with(b"\xef\xbb\xbf") {
        std::io::BufRead::consume(&mut reader, 3);
    }
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(reader);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut columns = None;
    let mut first = true;
    let mut record = csv::StringRecord::new();
    loop {
        match rows.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => bail!("{name}: {}", csv_error(&e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let parsed: Vec<Option<f64>> = record.iter().map(|f| f.parse::<f64>().ok()).collect();
        if std::mem::take(&mut first) {
            if parsed.iter().all(Option::is_none) {
                columns = Some(record.len());
                continue;
            }
            if let Some(col) = parsed.iter().position(Option::is_none) {
                let number = parsed.iter().position(Option::is_some).expect("a number");
                bail!(
                    "{name} line {line}, column {}: {:?} is not a number, but column {} ({:?}) is; \
                     the first row must be all numbers (data) or all names (a header)",
                    col + 1,
                    &record[col],
                    number + 1,
                    &record[number]
                )
            }
        }
        let mut row = Vec::with_capacity(parsed.len());
        for (col, value) in parsed.iter().enumerate() {
            match value {
                // Features become f32: 1e300 is as bad as inf.
                Some(v) if v.is_finite() && (col + 1 == parsed.len() || (*v as f32).is_finite()) => row.push(*v),
                Some(_) => bail!(
                    "{name} line {line}, column {}: {:?} is not a finite number; features and labels \
                     must be finite (no NaN or inf, features within ±3.4e38)",
                    col + 1,
                    &record[col]
                ),
                None => bail!("{name} line {line}, column {}: {:?} is not a number", col + 1, &record[col]),
            }
        }
        ensure!(row.len() >= 2, "{name} line {line}: need at least one feature and the label");
        match columns {
            None => columns = Some(row.len()),
            Some(c) => ensure!(row.len() == c, "{name} line {line}: {} columns, expected {c}", row.len()),
        }
        let (label, values) = row.split_last().expect("two columns");
        features.extend(values.iter().map(|&v| v as f32));
        labels.push(*label);
    }
    let n = labels.len();
    ensure!(n > 0, "{name}: empty data (no rows)");
    let f = features.len() / n;
    Ok((Array { dims: vec![n, f], values: features }, Array { dims: vec![n], values: labels }))
}

/// A `csv` crate error with its line, in our words.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => format!(
            "line {}, column {}: not UTF-8 text ({err}); save the file as UTF-8",
            pos.as_ref().map_or(0, |p| p.line()),
            err.field() + 1
        ),
        csv::ErrorKind::Io(err) => format!("could not read: {err}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetName;
    use crate::data::load as load_dataset;
    use crate::data::tests::{config, shared_or_skip};
    use npyz::WriterBuilder;
    use std::path::PathBuf;

    /// Writes a version-1.0 `.npy` by hand: `descr` like `<f4`, `shape`, raw bytes.
    pub(super) fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let shape = match shape {
            [n] => format!("({n},)"),
            dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    pub(super) fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    pub(super) fn i64s(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn file_config(train: &Path, labels: Option<&Path>) -> DatasetConfig {
        let mut c = config(DatasetName::File);
        c.train_file = Some(train.to_path_buf());
        c.train_labels = labels.map(Path::to_path_buf);
        c
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn err(c: &DatasetConfig) -> String {
        format!("{:#}", load_dataset(c).unwrap_err())
    }

    /// 10 samples of 3 features `[i, i+0.5, -i]`, labels `i % 2`.
    fn tiny_npy(dir: &Path) -> (PathBuf, PathBuf) {
        let x: Vec<f32> = (0..10).flat_map(|i| [i as f32, i as f32 + 0.5, -(i as f32)]).collect();
        let y: Vec<i64> = (0..10).map(|i| i % 2).collect();
        (
            write(dir, "x.npy", &npy_bytes("<f4", &[10, 3], &f32s(&x))),
            write(dir, "y.npy", &npy_bytes("<i8", &[10], &i64s(&y))),
        )
    }

    #[test]
    fn npy_pair_with_holdout() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = tiny_npy(dir.path());
        let data = load_dataset(&file_config(&x, Some(&y))).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(3));
        assert_eq!(data.num_classes, 2);
        assert_eq!((data.train.len(), data.val.len()), (8, 2));
        assert_eq!(data.val.y.iter().filter(|&&l| l == 1).count(), 1);
        for (row, &label) in data.train.x.chunks(3).zip(&data.train.y) {
            assert_eq!(row[1], row[0] + 0.5);
            assert_eq!(row[0] as u32 % 2, label);
        }
    }

    #[test]
    fn npy_with_val_file_and_image_shapes_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<u8> = (0..4 * 2 * 3).map(|v| v as u8).collect();
        let xs = write(dir.path(), "x.npy", &npy_bytes("|u1", &[4, 2, 3], &x));
        // Labels as float64 integers.
        let y: Vec<u8> = [0.0f64, 1.0, 2.0, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ys = write(dir.path(), "y.npy", &npy_bytes("<f8", &[4], &y));
        // Validation: 4-D int16 images, one-hot labels.
        let xv: Vec<u8> = (0..2 * 2 * 3).flat_map(|v| (v as i16 - 3).to_le_bytes()).collect();
        let xvs = write(dir.path(), "xv.npy", &npy_bytes("<i2", &[2, 2, 3, 1], &xv));
        let yv: Vec<u8> = [0u8, 0, 1, 1, 0, 0].to_vec();
        let yvs = write(dir.path(), "yv.npy", &npy_bytes("|u1", &[2, 3], &yv));
        let mut c = file_config(&xs, Some(&ys));
        c.val_file = Some(xvs);
        c.val_labels = Some(yvs);
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Image { height: 2, width: 3, channels: 1 });
        assert_eq!(data.num_classes, 3);
        assert_eq!(data.train.y, vec![0, 1, 2, 1]);
        assert_eq!(data.train.x[7], 7.0);
        assert_eq!(data.val.y, vec![2, 0]);
        assert_eq!(data.val.x[0], -3.0);
        c.flatten = true;
        c.resize_val = Some(4);
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(16));
    }

    #[test]
    fn three_dimensional_features_are_sets_when_the_search_asks() {
        let dir = tempfile::tempdir().unwrap();
        // 4 sets of 5 elements with 2 features each.
        let x: Vec<f32> = (0..40).map(|v| v as f32 / 40.0).collect();
        let xs = write(dir.path(), "sets.npy", &npy_bytes("<f4", &[4, 5, 2], &f32s(&x)));
        let ys = write(dir.path(), "set_labels.npy", &npy_bytes("<i8", &[4], &i64s(&[0, 1, 0, 1])));
        let mut c = file_config(&xs, Some(&ys));
        c.validation_split = 0.5;
        c.sets = true;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Set { elements: 5, features: 2 });
        assert_eq!((data.train.len(), data.val.len(), data.train.x.len()), (2, 2, 20));
        // Rows stay whole: each set is 10 consecutive values.
        for set in data.train.x.chunks_exact(10) {
            assert!(set.windows(2).all(|w| (w[1] - w[0] - 0.025).abs() < 1e-6), "{set:?}");
        }
        // The same file is an image for the other model types.
        c.sets = false;
        assert_eq!(load_dataset(&c).unwrap().sample_shape, Shape::Image { height: 5, width: 2, channels: 1 });
        // With `points`, a 3-D array is images to turn into point sets.
        c.sets = true;
        c.points = Some(3);
        assert_eq!(load_dataset(&c).unwrap().sample_shape, Shape::Set { elements: 3, features: 3 });
        // Anything but (N, elements, features) is refused, naming the file.
        let (flat, y) = tiny_npy(dir.path());
        let e = err(&DatasetConfig { sets: true, ..file_config(&flat, Some(&y)) });
        assert!(e.contains("x.npy: features of shape [10, 3]") && e.contains("(N, elements, features)"), "{e}");
        let four = write(dir.path(), "four.npy", &npy_bytes("<f4", &[4, 5, 2, 1], &f32s(&x)));
        let e = err(&DatasetConfig { sets: true, ..file_config(&four, Some(&ys)) });
        assert!(e.contains("four.npy: features of shape [4, 5, 2, 1]") && e.contains("deepsets"), "{e}");
        // Sets cannot be resized.
        c.points = None;
        let e = err(&DatasetConfig { resize_val: Some(4), ..c });
        assert!(e.contains("resize_val") && e.contains("(5 × 2 set)"), "{e}");
    }

    #[test]
    fn npz_with_upper_case_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        {
            let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
            let x: Vec<f64> = (0..12).map(f64::from).collect();
            let mut w =
                npz.array::<f64>("X", Default::default()).unwrap().default_dtype().shape(&[6, 2]).begin_nd().unwrap();
            w.extend(x).unwrap();
            w.finish().unwrap();
            let mut w =
                npz.array::<i32>("Y", Default::default()).unwrap().default_dtype().shape(&[6]).begin_nd().unwrap();
            w.extend([0, 1, 0, 1, 0, 1]).unwrap();
            w.finish().unwrap();
        }
        let mut c = file_config(&path, None);
        c.validation_split = 1.0 / 3.0;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(2));
        assert_eq!((data.train.len(), data.val.len()), (4, 2));
        assert_eq!(data.val.y.iter().sum::<u32>(), 1);
        // Missing key.
        let other = dir.path().join("e.npz");
        {
            let mut npz = npyz::npz::NpzWriter::create(&other).unwrap();
            let mut w = npz
                .array::<f32>("features", Default::default())
                .unwrap()
                .default_dtype()
                .shape(&[1, 1])
                .begin_nd()
                .unwrap();
            w.push(&1.0).unwrap();
            w.finish().unwrap();
        }
        let e = err(&file_config(&other, None));
        assert!(e.contains("e.npz") && e.contains("no array named x or X") && e.contains("features"), "{e}");
    }

    #[test]
    fn csv_with_header() {
        let dir = tempfile::tempdir().unwrap();
        let text = "a,b,label\n1,2,0\n3,4,1\n\n5,6,1\n7,8,0\n9,10,2\n";
        let path = write(dir.path(), "d.csv", text.as_bytes());
        let mut c = file_config(&path, None);
        let mut v = dir.path().join("v.csv");
        std::fs::write(&v, "0.5,1e1,2\n").unwrap();
        c.val_file = Some(v.clone());
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(2));
        assert_eq!(data.train.x, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(data.train.y, vec![0, 1, 1, 0, 2]);
        assert_eq!(data.val.x, vec![0.5, 10.0]);
        assert_eq!(data.num_classes, 3);
        // A bad cell after the data started.
        v = write(dir.path(), "v.csv", b"1,2,0\n3,x,1\n");
        c.val_file = Some(v);
        let e = err(&c);
        assert!(e.contains("v.csv line 2, column 2") && e.contains("\"x\""), "{e}");
        // Ragged rows.
        c.val_file = Some(write(dir.path(), "v.csv", b"1,2,0\n3,1\n"));
        let e = err(&c);
        assert!(e.contains("v.csv line 2: 2 columns, expected 3"), "{e}");
    }

    #[test]
    fn non_finite_values_name_file_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let (_, y) = tiny_npy(dir.path());
        let mut x: Vec<f32> = vec![0.0; 30];
        x[17] = f32::NAN;
        let xs = write(dir.path(), "nan.npy", &npy_bytes("<f4", &[10, 3], &f32s(&x)));
        let e = err(&file_config(&xs, Some(&y)));
        assert!(e.contains("nan.npy") && e.contains("flat index 17"), "{e}");
        x[17] = 0.0;
        x[3] = f32::INFINITY;
        let xs = write(dir.path(), "inf.npy", &npy_bytes("<f4", &[10, 3], &f32s(&x)));
        let e = err(&file_config(&xs, Some(&y)));
        assert!(e.contains("inf.npy") && e.contains("flat index 3"), "{e}");
        let csv = write(dir.path(), "nan.csv", b"1,0\nnan,1\n");
        let e = err(&file_config(&csv, None));
        assert!(e.contains("nan.csv line 2, column 1: \"nan\" is not a finite number"), "{e}");
        let csv = write(dir.path(), "inf.csv", b"1,2,0\n3,-inf,1\n");
        let e = err(&file_config(&csv, None));
        assert!(e.contains("inf.csv line 2, column 2: \"-inf\" is not a finite"), "{e}");
        let csv = write(dir.path(), "big.csv", b"1,2,0\n3,1e300,1\n");
        let e = err(&file_config(&csv, None));
        assert!(e.contains("big.csv line 2, column 2: \"1e300\""), "{e}");
        let csv = write(dir.path(), "label.csv", b"1,2,0\n3,4,NaN\n");
        let e = err(&file_config(&csv, None));
        assert!(e.contains("label.csv line 2, column 3: \"NaN\""), "{e}");
    }

    #[test]
    fn shape_mismatches_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (x, _) = tiny_npy(dir.path());
        let y9 = write(dir.path(), "y9.npy", &npy_bytes("<i8", &[9], &i64s(&[0; 9])));
        let e = err(&file_config(&x, Some(&y9)));
        assert!(e.contains("x.npy holds 10 samples") && e.contains("y9.npy holds 9 labels"), "{e}");
        let neg = write(dir.path(), "neg.npy", &npy_bytes("<i8", &[10], &i64s(&[0, 1, 0, -1, 0, 1, 0, 1, 0, 1])));
        let e = err(&file_config(&x, Some(&neg)));
        assert!(e.contains("neg.npy: label -1 at index 3"), "{e}");
        let frac: Vec<u8> = [0.0f32, 1.5].iter().cycle().take(10).flat_map(|v| v.to_le_bytes()).collect();
        let frac = write(dir.path(), "frac.npy", &npy_bytes("<f4", &[10], &frac));
        let e = err(&file_config(&x, Some(&frac)));
        assert!(e.contains("frac.npy: label 1.5 at index 1"), "{e}");
        // Out of range for the configured number of classes.
        let big = write(dir.path(), "big.npy", &npy_bytes("<i8", &[10], &i64s(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])));
        let mut c = file_config(&x, Some(&big));
        c.num_classes = Some(5);
        let e = err(&c);
        assert!(e.contains("big.npy: label 5 at index 5 is out of range"), "{e}");
        // Train and val sample shapes differ.
        let x4 = write(dir.path(), "x4.npy", &npy_bytes("<f4", &[2, 4], &f32s(&[0.0; 8])));
        let y2 = write(dir.path(), "y2.npy", &npy_bytes("<i8", &[2], &i64s(&[0, 1])));
        let mut c = file_config(&x, Some(&big));
        c.val_file = Some(x4);
        c.val_labels = Some(y2);
        let e = err(&c);
        assert!(e.contains("x4.npy has samples of shape [4]") && e.contains("x.npy has [3]"), "{e}");
        // Labels of a bad shape, and not one-hot rows.
        let y3d = write(dir.path(), "y3d.npy", &npy_bytes("<i8", &[10, 1, 1], &i64s(&[0; 10])));
        assert!(err(&file_config(&x, Some(&y3d))).contains("labels of shape [10, 1, 1]"));
        let two = write(dir.path(), "two.npy", &npy_bytes("<i8", &[10, 2], &i64s(&[1; 20])));
        assert!(err(&file_config(&x, Some(&two))).contains("row 0 of the 10×2 labels is not one-hot"));
    }

    /// A `.npy` of any `version` with the header text `dict` (padded).
    fn npy_versioned(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let prefix = if version == 1 { 10 } else { 12 };
        let mut header = dict.to_string();
        while !(prefix + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn npy_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.npy", bytes);
        format!("{:#}", read_npy_f32(&path).unwrap_err())
    }

    #[test]
    fn huge_declared_shapes_are_refused_before_allocating() {
        // (2^64-1, 16): the element count overflows.
        let e = npy_err(&npy_bytes("<f4", &[usize::MAX, 16], &f32s(&[0.0; 4])));
        assert!(e.contains("bad.npy") && e.contains("[18446744073709551615, 16]") && e.contains("16 bytes"), "{e}");
        // 2^40 × 16 float32: 64 TiB declared, 16 bytes present.
        let e = npy_err(&npy_bytes("<f4", &[1 << 40, 16], &f32s(&[0.0; 4])));
        assert!(
            e.contains("bad.npy is truncated")
                && e.contains("[1099511627776, 16]")
                && e.contains("70368744177664 bytes")
                && e.contains("holds only 16"),
            "{e}"
        );
        // Products that wrap around to something small are caught too.
        let e = npy_err(&npy_bytes("<f8", &[1 << 61, 8], &[]));
        assert!(e.contains("more elements than can be counted") || e.contains("is truncated"), "{e}");
        // A header length beyond the file.
        let mut bytes = npy_bytes("<f4", &[1], &f32s(&[1.0]));
        bytes[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        let e = npy_err(&bytes);
        assert!(e.contains("bad.npy is truncated: its header claims 65535 bytes"), "{e}");
        // Bytes after the data.
        let mut bytes = npy_bytes("<f4", &[1], &f32s(&[1.0]));
        bytes.extend_from_slice(&[0; 3]);
        let e = npy_err(&bytes);
        assert!(e.contains("bad.npy: 3 unexpected bytes after the 4 bytes of data"), "{e}");
    }

    #[test]
    fn npy_versions_two_and_three_read_and_others_are_named() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        let data = f32s(&[1.5, -2.0]);
        for version in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), "v.npy", &npy_versioned(version, dict, &data));
            assert_eq!(read_npy_f32(&path).unwrap(), (vec![2], vec![1.5, -2.0]), "version {version}");
        }
        // Version 3 allows UTF-8 in the header (here in a structured dtype's name).
        let utf8 = "{'descr': [('é', '<f4')], 'fortran_order': False, 'shape': (2,), }";
        let e = npy_err(&npy_versioned(3, utf8, &data));
        assert!(e.contains("structured dtype"), "{e}");
        let e = npy_err(&npy_versioned(4, dict, &data));
        assert!(e.contains("bad.npy: NPY format version 4.0 is not supported; accepted: 1.0, 2.0 and 3.0"), "{e}");
        let e = npy_err(b"\x93NUMPY\x03\x00\x10");
        assert!(e.contains("bad.npy is truncated"), "{e}");
    }

    #[test]
    fn npz_member_sizes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lie.npz");
        {
            use std::io::Write;
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            let options = zip::write::FileOptions::default();
            zip.start_file("x.npy", options).unwrap();
            zip.write_all(&npy_bytes("<f4", &[1 << 40, 16], &f32s(&[0.0; 4]))).unwrap();
            zip.start_file("y.npy", options).unwrap();
            zip.write_all(&npy_bytes("<i8", &[1], &i64s(&[0]))).unwrap();
            zip.finish().unwrap();
        }
        let e = err(&file_config(&path, None));
        assert!(e.contains("lie.npz[x] is truncated") && e.contains("[1099511627776, 16]"), "{e}");
    }

    #[test]
    fn csv_bom_quotes_and_header_detection() {
        let dir = tempfile::tempdir().unwrap();
        // A BOM before a header, CRLF line ends, quoted fields and a comment.
        let text = "\u{feff}\"a\",b,label\r\n# a comment\r\n1,\"2\",0\r\n3, 4 ,1\r\n";
        let path = write(dir.path(), "bom.csv", text.as_bytes());
        let mut c = file_config(&path, None);
        c.val_file = Some(write(dir.path(), "val.csv", b"0,0,1\n"));
        let data = load_dataset(&c).unwrap();
        assert_eq!((data.train.x, data.train.y), (vec![1.0, 2.0, 3.0, 4.0], vec![0, 1]));
        // A BOM before data keeps the first row.
        let path = write(dir.path(), "bom2.csv", "\u{feff}1,2,0\n3,4,1\n5,6,1\n".as_bytes());
        c.train_file = Some(path);
        assert_eq!(load_dataset(&c).unwrap().train.y, vec![0, 1, 1]);
        // A typo in the first data row is an error, not a header.
        let path = write(dir.path(), "typo.csv", b"1,2o,0\n3,4,1\n");
        let e = err(&file_config(&path, None));
        assert!(e.contains("typo.csv line 1, column 2: \"2o\" is not a number, but column 1 (\"1\") is"), "{e}");
        // A header with a numeric column name is refused the same way.
        let path = write(dir.path(), "hdr.csv", b"x,2,label\n3,4,1\n");
        let e = err(&file_config(&path, None));
        assert!(e.contains("hdr.csv line 1, column 1: \"x\" is not a number"), "{e}");
        // Not UTF-8.
        let path = write(dir.path(), "latin1.csv", b"a,b\n1,\xe9,0\n");
        let e = err(&file_config(&path, None));
        assert!(e.contains("latin1.csv: line 2") && e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn truncated_corrupt_empty_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = tiny_npy(dir.path());
        let bytes = std::fs::read(&x).unwrap();
        let cut = write(dir.path(), "cut.npy", &bytes[..bytes.len() - 6]);
        let e = err(&file_config(&cut, Some(&y)));
        assert!(e.contains("cut.npy is truncated"), "{e}");
        let junk = write(dir.path(), "junk.npy", b"this is not numpy");
        let e = err(&file_config(&junk, Some(&y)));
        assert!(e.contains("junk.npy is not a valid .npy file"), "{e}");
        let junk = write(dir.path(), "junk.npz", b"PK not really");
        let e = err(&file_config(&junk, None));
        assert!(e.contains("junk.npz is not a valid .npz"), "{e}");
        let empty = write(dir.path(), "empty.npy", &npy_bytes("<f4", &[0, 3], &[]));
        let y0 = write(dir.path(), "y0.npy", &npy_bytes("<i8", &[0], &[]));
        let e = err(&file_config(&empty, Some(&y0)));
        assert!(e.contains("empty.npy: empty data"), "{e}");
        let e = err(&file_config(&write(dir.path(), "e.csv", b"a,b\n"), None));
        assert!(e.contains("e.csv: empty data"), "{e}");
        let e = err(&file_config(&x, None));
        assert!(e.contains("x.npy holds only features"), "{e}");
        let e = err(&file_config(&dir.path().join("absent.npy"), Some(&y)));
        assert!(e.contains("could not open") && e.contains("absent.npy"), "{e}");
        let e = err(&file_config(&write(dir.path(), "c16.npy", &npy_bytes("<c8", &[1, 1], &[0; 8])), Some(&y)));
        assert!(e.contains("c16.npy: dtype <c8 is not supported"), "{e}");
        assert!(err(&config(DatasetName::File)).contains("needs dataset.train_file"));
    }

    #[test]
    fn real_qubit_npy_files() {
        let Some(shared) = shared_or_skip("real_qubit_npy_files") else { return };
        let q = shared.join("qubit_readout");
        // float32 (20, 800) with int64 labels: 10 ground then 10 excited.
        let mut c = file_config(&q.join("qick_tb_w400_s100_X.npy"), Some(&q.join("qick_tb_w400_s100_y.npy")));
        c.validation_split = 0.5;
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(800));
        assert_eq!((data.train.len(), data.val.len(), data.num_classes), (10, 10, 2));
        assert_eq!(data.val.y.iter().filter(|&&l| l == 1).count(), 5);
        // int16 (6200, 200) board traces.
        let c = file_config(&q.join("malab_mock_w100_s285_X.npy"), Some(&q.join("malab_mock_w100_s285_y.npy")));
        let data = load_dataset(&c).unwrap();
        assert_eq!(data.sample_shape, Shape::Flat(200));
        assert_eq!((data.train.len(), data.val.len()), (4960, 1240));
        assert!(data.train.x.iter().all(|v| v.fract() == 0.0));
    }
}

/// Arbitrary bytes and mutated valid files through every file reader: an
/// error or a value, never a panic or a huge allocation.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_npy() -> Vec<u8> {
        super::tests::npy_bytes("<f4", &[3, 2], &super::tests::f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    }

    fn valid_npz(x: &[u8], y: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("x.npy", options).unwrap();
        zip.write_all(x).unwrap();
        zip.start_file("y.npy", options).unwrap();
        zip.write_all(y).unwrap();
        zip.finish().unwrap().into_inner()
    }

    /// `bytes` with `edits` applied: (position, new byte), positions wrapped.
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

    fn read_all(ext: &str, bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("f.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        let labels = dir.path().join("y.npy");
        std::fs::write(&labels, super::tests::npy_bytes("<i8", &[3], &super::tests::i64s(&[0, 1, 0]))).unwrap();
        let labels = (ext == "npy").then_some(labels.as_path());
        let _ = read_split(&path, labels, false);
        let _ = read_split(&path, labels, true);
        if ext == "npy" {
            let _ = read_npy_f32(&path);
        }
    }

    /// Inputs that once crashed a reader, kept as regression cases.
    #[test]
    fn known_crashers() {
        // Shape (2^64-1, 16): a capacity-overflow panic.
        read_all("npy", &super::tests::npy_bytes("<f4", &[usize::MAX, 16], &[0; 16]));
        // 64 TB declared: an abort on allocation.
        read_all("npy", &super::tests::npy_bytes("<f4", &[1 << 40, 16], &[0; 16]));
        // A v2 header length of 4 GB.
        read_all("npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), ext in 0..3usize) {
            read_all(["npy", "npz", "csv"][ext], &bytes);
        }

        #[test]
        fn mutated_npy(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
            read_all("npy", &mutate(valid_npy(), &edits, cut));
        }

        #[test]
        fn mutated_npy_header_text(dict in "\\{('descr'|'shape'|'fortran_order'|: |<f4|\\(|\\)|,|[0-9]{1,20}|True|False|'|\\}| ){0,16}") {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            bytes.extend_from_slice(dict.as_bytes());
            bytes.extend_from_slice(&[0; 24]);
            read_all("npy", &bytes);
        }

        #[test]
        fn mutated_npz(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in proptest::option::of(any::<usize>())) {
            let y = super::tests::npy_bytes("<i8", &[3], &super::tests::i64s(&[0, 1, 0]));
            read_all("npz", &mutate(valid_npz(&valid_npy(), &y), &edits, cut));
        }

        #[test]
        fn csv_like_text(text in "([0-9]{1,3}|-|\\.|e|nan|inf|,|\"|#|\n|\r| |a|\u{feff}){0,60}") {
            read_all("csv", text.as_bytes());
        }
    }
}
