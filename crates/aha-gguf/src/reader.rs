//! The bounded reader: every length is checked against the bytes left in the file before
//! anything is allocated, so a truncated or hostile file is an error, never a panic or a
//! huge allocation.

use crate::error::{GgufError, Result};
use crate::types::{type_name, GgmlType, Value};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
pub const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: usize = 4;
const MAX_DEPTH: usize = 4;
/// Largest single string (a chat template is a few KiB; a key is short).
const MAX_STRING: u64 = 64 << 20;

/// One tensor's entry in the header. `dims` in ggml order: `dims[0]` is the row length.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elem_count(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn size_in_bytes(&self) -> usize {
        self.elem_count() / self.dtype.block_size() * self.dtype.type_size()
    }
    /// The shape as PyTorch (and candle) write it: outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF header (versions 2 and 3). Tensor data is read on demand.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
}

enum Fail {
    Msg(String),
    Io(std::io::Error),
}

impl From<String> for Fail {
    fn from(m: String) -> Self {
        Fail::Msg(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Self {
        Fail::Msg(m.to_string())
    }
}

type R<T> = std::result::Result<T, Fail>;

struct Cursor<'a, Rd: Read> {
    r: &'a mut Rd,
    pos: u64,
    len: u64,
}

impl<Rd: Read> Cursor<'_, Rd> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }
    fn bytes(&mut self, n: u64, what: &str) -> R<Vec<u8>> {
        if n > self.left() {
            return Err(format!(
                "truncated file: {what} needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.left()
            )
            .into());
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(Fail::Io)?;
        self.pos += n;
        Ok(buf)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> R<[u8; N]> {
        let v = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> R<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> R<String> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(format!("{what}: string length {n} is absurd").into());
        }
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| format!("{what}: not valid UTF-8").into())
    }
    fn value(&mut self, ty: u32, what: &str, depth: usize) -> R<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(what)?[0]),
            1 => Value::I8(self.arr::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            // The spec's bool is one byte, 0 or 1; anything else is a corrupt file (llama.cpp's
            // own reader would read it as true, gguf-py as an error: be strict, say so).
            7 => match self.arr::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what}: bool byte {b} is neither 0 nor 1").into()),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("{what}: arrays nested too deep").into());
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10 | 11 | 12 => 8,
                    9 => 12,
                    t => return Err(format!("{what}: unknown array element type {t}").into()),
                };
                if n.checked_mul(min).is_none_or(|b| b > self.left()) {
                    return Err(format!(
                        "{what}: array of {n} elements does not fit in the {} bytes left",
                        self.left()
                    )
                    .into());
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(format!("{what}: unknown value type {t}").into()),
        })
    }
}

/// Does this path name a GGUF file (by extension, or by its magic)?
pub fn is_gguf_path(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && u32::from_le_bytes(magic) == MAGIC
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GgufError + '_ {
    move |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl GgufFile {
    /// Read the header of a GGUF file and check that every tensor lies inside it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    /// Read the header only; tensors may lie past the end of the file (the first part of a
    /// split download still has the whole header, with the tokenizer).
    pub fn open_header(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, check_data: bool) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let len = f
            .seek(SeekFrom::End(0))
            .and_then(|l| f.seek(SeekFrom::Start(0)).map(|_| l))
            .map_err(io(path))?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        Self::parse(&mut r, len, path, check_data)
    }

    /// Parse a header from a reader at the start of a file of `len` bytes; `path` names it
    /// in errors. With `check_data`, every tensor must lie inside the file, without overlaps.
    pub fn parse<Rd: Read>(r: &mut Rd, len: u64, path: &Path, check_data: bool) -> Result<Self> {
        Self::parse_inner(r, len, path, check_data).map_err(|f| match f {
            Fail::Msg(message) => GgufError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            Fail::Io(source) => GgufError::Io {
                path: path.to_path_buf(),
                source,
            },
        })
    }

    fn parse_inner<Rd: Read>(r: &mut Rd, len: u64, path: &Path, check_data: bool) -> R<Self> {
        let mut c = Cursor { r, pos: 0, len };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            if magic.swap_bytes() == MAGIC {
                return Err("big-endian GGUF files are not supported".into());
            }
            return Err(format!("wrong magic 0x{magic:08x} (expected \"GGUF\")").into());
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(
                    "GGUF version 1 is not supported (re-convert with a current llama.cpp)".into(),
                )
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err("big-endian GGUF files are not supported".into())
            }
            v => return Err(format!("unsupported GGUF version {v}").into()),
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // Each metadata entry takes at least 13 bytes (key length, type, a 1-byte value),
        // each tensor info at least 32.
        if n_kv.checked_mul(13).is_none_or(|b| b > c.left()) {
            return Err(format!("metadata count {n_kv} does not fit in a {len}-byte file").into());
        }
        if n_tensors.checked_mul(32).is_none_or(|b| b > c.left()) {
            return Err(
                format!("tensor count {n_tensors} does not fit in a {len}-byte file").into(),
            );
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&format!("type of {key}"))?;
            let v = c.value(ty, &key, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(format!("duplicate metadata key {key:?}").into());
            }
            metadata.push((key, v));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
            Some((_, v)) => {
                return Err(format!("general.alignment {v:?} is not a power of two").into())
            }
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor name #{i}"))?;
            let nd = c.u32(&name)? as usize;
            if nd == 0 || nd > MAX_DIMS {
                return Err(
                    format!("tensor {name}: {nd} dimensions (1 to {MAX_DIMS} allowed)").into(),
                );
            }
            let mut dims = Vec::with_capacity(nd);
            let mut elems: u64 = 1;
            for _ in 0..nd {
                let d = c.u64(&name)?;
                if d == 0 {
                    return Err(format!("tensor {name}: a dimension is 0").into());
                }
                elems = elems
                    .checked_mul(d)
                    .filter(|&e| e <= (1 << 48))
                    .ok_or_else(|| format!("tensor {name}: absurd size"))?;
                dims.push(d as usize);
            }
            let tid = c.u32(&name)?;
            let dtype = GgmlType::from_id(tid).ok_or_else(|| {
                format!(
                    "tensor {name}: type {} (id {tid}) is not supported",
                    type_name(tid)
                )
            })?;
            if dims[0] % dtype.block_size() != 0 {
                return Err(format!(
                    "tensor {name}: row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    dtype.name(),
                    dtype.block_size()
                )
                .into());
            }
            let offset = c.u64(&name)?;
            if offset % alignment != 0 {
                return Err(format!(
                    "tensor {name}: offset {offset} is not a multiple of the alignment {alignment}"
                )
                .into());
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(format!("duplicate tensor {name:?}").into());
            }
            tensors.push(TensorInfo {
                name,
                dims,
                dtype,
                offset,
            });
        }
        let data_offset = c.pos.div_ceil(alignment) * alignment;
        if check_data {
            if !tensors.is_empty() && data_offset > len {
                return Err(format!(
                    "the tensor data would start at byte {data_offset}, past the end of the file ({len} bytes): truncated file"
                ).into());
            }
            let data_len = len - data_offset.min(len);
            for t in &tensors {
                let end = t.offset.checked_add(t.size_in_bytes() as u64);
                if end.is_none_or(|e| e > data_len) {
                    return Err(format!(
                        "tensor {} ({} bytes at data offset {}) runs past the end of the file ({} data bytes): truncated file or inconsistent tensor sizes",
                        t.name, t.size_in_bytes(), t.offset, data_len
                    ).into());
                }
            }
            let mut spans: Vec<(u64, u64, &str)> = tensors
                .iter()
                .map(|t| {
                    (
                        t.offset,
                        t.offset + t.size_in_bytes() as u64,
                        t.name.as_str(),
                    )
                })
                .collect();
            spans.sort();
            for w in spans.windows(2) {
                if w[1].0 < w[0].1 {
                    return Err(format!("tensors {} and {} overlap", w[0].2, w[1].2).into());
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            version,
            metadata,
            index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
            file_len: len,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub(crate) fn content(&self, message: impl Into<String>) -> GgufError {
        GgufError::Content {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.content(format!(
                "metadata {key} is of type {}, expected a string",
                v.type_id()
            ))),
        }
    }

    /// An integer value of any width, as u64 (negative values are an error).
    pub fn get_uint(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.content(format!(
                    "metadata {key} is {v:?}, expected a non-negative integer"
                ))
            }),
        }
    }

    pub fn get_float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.content(format!("metadata {key} is {v:?}, expected a float"))),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.content(format!("metadata {key} is {v:?}, expected a bool"))),
        }
    }

    /// The raw bytes of one tensor, in a buffer aligned for any block type.
    pub fn tensor_data(&self, name: &str) -> Result<AlignedBytes> {
        let t = self
            .tensor_info(name)
            .ok_or_else(|| self.content(format!("no tensor {name}")))?;
        let n = t.size_in_bytes();
        let start = self
            .data_offset
            .checked_add(t.offset)
            .ok_or_else(|| self.content("tensor offset overflows"))?;
        if start
            .checked_add(n as u64)
            .is_none_or(|e| e > self.file_len)
        {
            return Err(self.content(format!(
                "tensor {name} lies past the end of the file (truncated or partial download)"
            )));
        }
        let mut f = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        f.seek(SeekFrom::Start(start)).map_err(io(&self.path))?;
        let mut buf = AlignedBytes::zeroed(n);
        f.read_exact(buf.as_mut()).map_err(io(&self.path))?;
        Ok(buf)
    }
}

/// Bytes in a u64-backed buffer, so casts to block structs (align <= 8) never fail.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    buf: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> Self {
        Self {
            buf: vec![0u64; len.div_ceil(8)],
            len,
        }
    }
    pub fn from_slice(b: &[u8]) -> Self {
        let mut s = Self::zeroed(b.len());
        s.as_mut().copy_from_slice(b);
        s
    }
}

impl AsMut<[u8]> for AlignedBytes {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: u64 storage of at least `len` bytes; u8 has no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, self.len) }
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.len) }
    }
}
