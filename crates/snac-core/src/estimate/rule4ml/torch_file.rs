//! Reads a PyTorch state dict (`torch.save(model.state_dict())`, a zip
//! archive) without torch: `*/data.pkl` is a pickle of an `OrderedDict` of
//! tensors whose storages live in `*/data/<key>` entries.
//!
//! The pickle is read by a small purpose-built unpickler rather than a general
//! pickle crate: torch's tensors are `REDUCE` calls of
//! `torch._utils._rebuild_tensor_v2` on storages given as persistent ids
//! (`BINPERSID`), which general pickle readers reject or leave unresolved.
//! Only the opcodes `torch.save` emits for a state dict are understood, and
//! only the two callables it uses (`collections.OrderedDict` and
//! `_rebuild_tensor_v2`) are ever "called"; anything else is an error, so no
//! file can make this code run anything.

use anyhow::{Context, Result, bail, ensure};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A float32 tensor from a state dict, in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads every tensor of the state dict saved at `path`, by parameter name.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{}: not a PyTorch zip archive", path.display()))?;
    let pickle_name = archive
        .file_names()
        .find(|name| name.ends_with("/data.pkl") || *name == "data.pkl")
        .map(str::to_string)
        .with_context(|| format!("{}: no data.pkl inside; is it a torch.save file?", path.display()))?;
    let prefix = pickle_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    let read_entry = |archive: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
        let mut entry = archive.by_name(name).with_context(|| format!("{}: entry {name} missing", path.display()))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).with_context(|| format!("{}: reading {name}", path.display()))?;
        Ok(bytes)
    };
    if archive.file_names().any(|name| name == format!("{prefix}byteorder")) {
        let order = read_entry(&mut archive, &format!("{prefix}byteorder"))?;
        ensure!(order == b"little", "{}: byte order {:?}; only little-endian files are read", path.display(), order);
    }
    let pickle = read_entry(&mut archive, &pickle_name)?;
    let root = Unpickler::new(&pickle).run().with_context(|| format!("{}: reading {pickle_name}", path.display()))?;
    let Value::Dict(entries) = root else {
        bail!("{}: {pickle_name} holds {}, not a state dict", path.display(), root.kind());
    };
    let mut tensors = HashMap::new();
    for (key, value) in entries {
        let (Value::Str(name), Value::Tensor(tensor)) = (&key, &value) else {
            bail!("{}: state dict entry {} → {} is not a named tensor", path.display(), key.kind(), value.kind());
        };
        let bytes = read_entry(&mut archive, &format!("{prefix}data/{}", tensor.storage_key))?;
        let tensor = tensor.materialise(&bytes).with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.insert(name.clone(), tensor);
    }
    Ok(tensors)
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, not yet read.
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage_key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn materialise(&self, storage: &[u8]) -> Result<Tensor> {
        ensure!(storage.len().is_multiple_of(4), "storage of {} bytes is not float32", storage.len());
        let values: Vec<f32> = storage.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let count: usize = self.shape.iter().product();
        let mut data = Vec::with_capacity(count);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..count {
            let at = self.offset + index.iter().zip(&self.stride).map(|(i, s)| i * s).sum::<usize>();
            data.push(*values.get(at).with_context(|| {
                format!("shape {:?} stride {:?} reads past its storage of {}", self.shape, self.stride, values.len())
            })?);
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                if index[axis] < self.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(Tensor { shape: self.shape.clone(), data })
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage named by a persistent id: its dtype (`FloatStorage`) and key.
    Storage {
        dtype: String,
        key: String,
    },
    Tensor(TensorRef),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(..) => "a global",
            Value::Storage { .. } => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }

    fn as_usize(&self) -> Result<usize> {
        match self {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            other => bail!("expected a non-negative int, found {}", other.kind()),
        }
    }

    fn as_usizes(&self) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().map(Value::as_usize).collect(),
            other => bail!("expected a tuple of ints, found {}", other.kind()),
        }
    }
}

struct Unpickler<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Unpickler { bytes, at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.with_context(|| format!("pickle ends early at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').context("unterminated text in pickle")?;
        let text = String::from_utf8(rest[..end].to_vec()).context("pickle text is not UTF-8")?;
        self.at += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().context("pickle pops an empty stack")
    }

    /// The values pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().context("pickle has no MARK to pop")?;
        ensure!(mark <= self.stack.len(), "pickle MARK beyond the stack");
        Ok(self.stack.split_off(mark))
    }

    fn top_dict(&mut self) -> Result<&mut Vec<(Value, Value)>> {
        match self.stack.last_mut() {
            Some(Value::Dict(entries)) => Ok(entries),
            other => bail!("pickle sets items on {}", other.map_or("nothing", |v| v.kind())),
        }
    }

    /// Runs the pickle to its STOP and returns what it leaves; the opcodes
    /// come in groups, one method each.
    fn run(mut self) -> Result<Value> {
        loop {
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    let protocol = self.u8()?;
                    ensure!(protocol <= 5, "pickle protocol {protocol} is unknown");
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' | 0x88 | 0x89 | b'K' | b'M' | b'J' | 0x8a | b'G' | b'X' | 0x8c | b'c' | 0x93 => {
                    let value = self.atom(opcode)?;
                    self.stack.push(value);
                }
                b')' | b't' | 0x85..=0x87 | b']' | b'e' | b'a' | b'}' | b's' | b'u' => self.collection(opcode)?,
                b'q' | b'r' | b'h' | b'j' | 0x94 => self.memo(opcode)?,
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(storage_from_persistent_id(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                b'b' => {
                    // BUILD sets state on the object below (the OrderedDict's
                    // `_metadata`); the tensors do not need it.
                    self.pop()?;
                }
                other => bail!("pickle opcode 0x{other:02x} at byte {} is not one torch.save uses", self.at - 1),
            }
        }
    }

    /// The value an opcode that pushes one value reads: None, a bool, an
    /// int, a float, a string or a global.
    fn atom(&mut self, opcode: u8) -> Result<Value> {
        Ok(match opcode {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'K' => Value::Int(self.u8()?.into()),
            b'M' => {
                let b = self.take(2)?;
                Value::Int(u16::from_le_bytes([b[0], b[1]]).into())
            }
            b'J' => {
                let b = self.take(4)?;
                Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]).into())
            }
            0x8a => {
                let n = self.u8()? as usize;
                ensure!(n <= 8, "LONG1 of {n} bytes is too large");
                let b = self.take(n)?;
                let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(b);
                Value::Int(i64::from_le_bytes(buf))
            }
            b'G' => {
                let b = self.take(8)?;
                Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes")))
            }
            b'X' => {
                let n = self.u32()? as usize;
                Value::Str(String::from_utf8(self.take(n)?.to_vec()).context("pickle string is not UTF-8")?)
            }
            0x8c => {
                let n = self.u8()? as usize;
                Value::Str(String::from_utf8(self.take(n)?.to_vec()).context("pickle string is not UTF-8")?)
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                Value::Global(module, name)
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    bail!("STACK_GLOBAL of non-strings");
                };
                Value::Global(module, name)
            }
            other => unreachable!("opcode 0x{other:02x} is not an atom"),
        })
    }

    /// Tuples, lists and dicts: building them and adding to them.
    fn collection(&mut self, opcode: u8) -> Result<()> {
        match opcode {
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (opcode - 0x84) as usize;
                ensure!(self.stack.len() >= n, "TUPLE{n} on a short stack");
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(items));
            }
            b']' => self.stack.push(Value::List(Vec::new())),
            b'e' => {
                let items = self.pop_mark()?;
                match self.stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
                    other => bail!("APPENDS to {}", other.map_or("nothing", |v| v.kind())),
                }
            }
            b'a' => {
                let item = self.pop()?;
                match self.stack.last_mut() {
                    Some(Value::List(list)) => list.push(item),
                    other => bail!("APPEND to {}", other.map_or("nothing", |v| v.kind())),
                }
            }
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.top_dict()?.push((key, value));
            }
            b'u' => {
                let items = self.pop_mark()?;
                ensure!(items.len() % 2 == 0, "SETITEMS with an odd number of values");
                let mut items = items.into_iter();
                let dict = self.top_dict()?;
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    dict.push((key, value));
                }
            }
            other => unreachable!("opcode 0x{other:02x} is not a collection's"),
        }
        Ok(())
    }

    /// The memo: BINPUT, LONG_BINPUT, BINGET, LONG_BINGET and MEMOIZE.
    fn memo(&mut self, opcode: u8) -> Result<()> {
        match opcode {
            b'q' => {
                let slot = self.u8()?.into();
                self.memo_put(slot)
            }
            b'r' => {
                let slot = self.u32()?;
                self.memo_put(slot)
            }
            b'h' => {
                let slot = self.u8()?.into();
                self.memo_get(slot)
            }
            b'j' => {
                let slot = self.u32()?;
                self.memo_get(slot)
            }
            0x94 => {
                let slot = self.memo.len() as u32;
                self.memo_put(slot)
            }
            other => unreachable!("opcode 0x{other:02x} is not a memo's"),
        }
    }

    fn memo_put(&mut self, slot: u32) -> Result<()> {
        let top = self.stack.last().context("pickle memoises an empty stack")?.clone();
        self.memo.insert(slot, top);
        Ok(())
    }

    fn memo_get(&mut self, slot: u32) -> Result<()> {
        let value = self.memo.get(&slot).with_context(|| format!("pickle reads memo slot {slot} before it is set"))?;
        self.stack.push(value.clone());
        Ok(())
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)`.
fn storage_from_persistent_id(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else { bail!("persistent id is {}, not a tuple", pid.kind()) };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(module, dtype), Value::Str(key), ..]
            if tag == "storage" && module == "torch" =>
        {
            ensure!(dtype == "FloatStorage", "storage of type torch.{dtype}; only float32 (FloatStorage) is read");
            Ok(Value::Storage { dtype: dtype.clone(), key: key.clone() })
        }
        _ => bail!("persistent id {items:?} is not a torch storage"),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &callable else { bail!("REDUCE calls {}, not a global", callable.kind()) };
    let Value::Tuple(args) = args else { bail!("REDUCE arguments are {}, not a tuple", args.kind()) };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") => {
            ensure!(args.len() >= 4, "_rebuild_tensor_v2 with {} arguments", args.len());
            let Value::Storage { dtype, key } = &args[0] else {
                bail!("_rebuild_tensor_v2 of {}, not a storage", args[0].kind())
            };
            debug_assert_eq!(dtype, "FloatStorage");
            let shape = args[2].as_usizes()?;
            let stride = args[3].as_usizes()?;
            ensure!(shape.len() == stride.len(), "tensor shape {shape:?} and stride {stride:?} differ in rank");
            Ok(Value::Tensor(TensorRef { storage_key: key.clone(), offset: args[1].as_usize()?, shape, stride }))
        }
        _ => bail!("the pickle calls {module}.{name}; only a state dict of float tensors is read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A state dict pickled the way torch.save writes one (protocol 2): one
    /// 2 × 3 tensor stored transposed (stride (1, 2)) at offset 1.
    fn pickle() -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\nq\x00)R");
        p.push(b'(');
        let name = b"layer.weight";
        p.push(b'X');
        p.extend((name.len() as u32).to_le_bytes());
        p.extend(name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
        p.extend(b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x07tQ");
        p.extend(b"K\x01K\x02K\x03\x86K\x01K\x02\x86\x89h\x00)Rtr\x05\x00\x00\x00R");
        p.extend(b"u}X\x09\x00\x00\x00_metadatah\x00sb.");
        p
    }

    fn write_archive(dir: &Path, pickle: &[u8]) -> std::path::PathBuf {
        let path = dir.join("model.weights.pt");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("model/data.pkl", options).unwrap();
        zip.write_all(pickle).unwrap();
        zip.start_file("model/byteorder", options).unwrap();
        zip.write_all(b"little").unwrap();
        zip.start_file("model/data/0", options).unwrap();
        for value in [9.0f32, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0] {
            zip.write_all(&value.to_le_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn reads_a_strided_tensor_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = read_state_dict(&write_archive(dir.path(), &pickle())).unwrap();
        let tensor = &tensors["layer.weight"];
        assert_eq!(tensor.shape, vec![2, 3]);
        // Element (i, j) sits at 1 + i + 2j of [9, 0, 1, 2, 3, 4, 5].
        assert_eq!(tensor.data, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }

    #[test]
    fn refuses_other_callables_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let evil = pickle().windows(11).position(|w| w == b"OrderedDict").unwrap();
        let mut bytes = pickle();
        bytes.splice(evil - 12..evil + 12, b"os\nsystem\n".iter().copied());
        let message = format!("{:#}", read_state_dict(&write_archive(dir.path(), &bytes)).unwrap_err());
        assert!(message.contains("os.system"), "{message}");

        let truncated = &pickle()[..40];
        assert!(read_state_dict(&write_archive(dir.path(), truncated)).is_err());

        let not_zip = dir.path().join("plain.pt");
        std::fs::write(&not_zip, b"not a zip").unwrap();
        let message = format!("{:#}", read_state_dict(&not_zip).unwrap_err());
        assert!(message.contains("plain.pt"), "{message}");
    }
}
