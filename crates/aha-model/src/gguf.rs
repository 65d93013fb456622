//! GGUF files (llama.cpp's format), versions 2 and 3: metadata, tensor infos, alignment,
//! and the tensor data as candle `QTensor`s. Also the writer used by `aha quantize`.
//!
//! The reader checks every length against the bytes left in the file before allocating, so a
//! truncated or hostile file gives an error, never a panic or a huge allocation.

use crate::error::{ModelError, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use candle_core::quantized::gguf_file::Value;

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
    pub dtype: GgmlDType,
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
    /// The shape as candle (and PyTorch) write it: outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF header. Tensor data is read on demand with [`GgufFile::qtensor`].
#[derive(Debug)]
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

/// A ggml type id as llama.cpp names it, for errors about types aha does not run.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2 (removed)",
        5 => "Q4_3 (removed)",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

fn dtype_from_id(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// Bounded little-endian reading: every length is checked against the bytes left.
struct Cursor<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }
    fn bytes(&mut self, n: u64, what: &str) -> std::result::Result<Vec<u8>, String> {
        if n > self.left() {
            return Err(format!(
                "truncated file: {what} needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.left()
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|e| format!("reading {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(buf)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let v = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(format!("{what}: string length {n} is absurd"));
        }
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| format!("{what}: not valid UTF-8"))
    }
    fn value(&mut self, ty: u32, what: &str, depth: usize) -> std::result::Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(what)?[0]),
            1 => Value::I8(self.arr::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => match self.arr::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what}: bool byte {b} is neither 0 nor 1")),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("{what}: arrays nested too deep"));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10 | 11 | 12 => 8,
                    9 => 12,
                    t => return Err(format!("{what}: unknown array element type {t}")),
                };
                if n.checked_mul(min).is_none_or(|b| b > self.left()) {
                    return Err(format!(
                        "{what}: array of {n} elements does not fit in the {} bytes left",
                        self.left()
                    ));
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
            t => return Err(format!("{what}: unknown value type {t}")),
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
        let mut f = std::fs::File::open(path).map_err(|e| ModelError::file(path, e))?;
        let len = f
            .seek(SeekFrom::End(0))
            .and_then(|l| f.seek(SeekFrom::Start(0)).map(|_| l))
            .map_err(|e| ModelError::file(path, e))?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        Self::parse(&mut r, len, path, check_data)
    }

    /// Parse a header from any reader positioned at the start of the file; `len` is the file size.
    pub fn parse<R: Read>(r: &mut R, len: u64, path: &Path, check_data: bool) -> Result<Self> {
        Self::parse_inner(r, len, path, check_data)
            .map_err(|m| ModelError::file(path, format!("invalid GGUF: {m}")))
    }

    fn parse_inner<R: Read>(
        r: &mut R,
        len: u64,
        path: &Path,
        check_data: bool,
    ) -> std::result::Result<Self, String> {
        let mut c = Cursor { r, pos: 0, len };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            if magic.swap_bytes() == MAGIC {
                return Err("big-endian GGUF files are not supported".into());
            }
            return Err(format!("wrong magic 0x{magic:08x} (expected \"GGUF\")"));
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
            v => return Err(format!("unsupported GGUF version {v}")),
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // Each metadata entry takes at least 13 bytes (key length, type, a 1-byte value),
        // each tensor info at least 32.
        if n_kv.checked_mul(13).is_none_or(|b| b > c.left()) {
            return Err(format!(
                "metadata count {n_kv} does not fit in a {len}-byte file"
            ));
        }
        if n_tensors.checked_mul(32).is_none_or(|b| b > c.left()) {
            return Err(format!(
                "tensor count {n_tensors} does not fit in a {len}-byte file"
            ));
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&format!("type of {key}"))?;
            let v = c.value(ty, &key, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(format!("duplicate metadata key {key:?}"));
            }
            metadata.push((key, v));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
            Some((_, v)) => return Err(format!("general.alignment {v:?} is not a power of two")),
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor name #{i}"))?;
            let nd = c.u32(&name)? as usize;
            if nd == 0 || nd > MAX_DIMS {
                return Err(format!(
                    "tensor {name}: {nd} dimensions (1 to {MAX_DIMS} allowed)"
                ));
            }
            let mut dims = Vec::with_capacity(nd);
            let mut elems: u64 = 1;
            for _ in 0..nd {
                let d = c.u64(&name)?;
                if d == 0 {
                    return Err(format!("tensor {name}: a dimension is 0"));
                }
                elems = elems
                    .checked_mul(d)
                    .filter(|&e| e <= (1 << 48))
                    .ok_or_else(|| format!("tensor {name}: absurd size"))?;
                dims.push(d as usize);
            }
            let tid = c.u32(&name)?;
            let dtype = dtype_from_id(tid).ok_or_else(|| {
                format!("tensor {name}: quantization type {} (id {tid}) is not supported; aha runs F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K", ggml_type_name(tid))
            })?;
            if dims[0] % dtype.block_size() != 0 {
                return Err(format!(
                    "tensor {name}: row length {} is not a multiple of the {dtype:?} block size {}",
                    dims[0],
                    dtype.block_size()
                ));
            }
            let offset = c.u64(&name)?;
            if offset % alignment != 0 {
                return Err(format!(
                    "tensor {name}: offset {offset} is not a multiple of the alignment {alignment}"
                ));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(format!("duplicate tensor {name:?}"));
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
                ));
            }
            let data_len = len - data_offset.min(len);
            for t in &tensors {
                let end = t.offset.checked_add(t.size_in_bytes() as u64);
                if end.is_none_or(|e| e > data_len) {
                    return Err(format!(
                        "tensor {} ({} bytes at data offset {}) runs past the end of the file ({} data bytes): truncated file or inconsistent tensor sizes",
                        t.name, t.size_in_bytes(), t.offset, data_len
                    ));
                }
            }
            // Tensors must not overlap.
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
                    return Err(format!("tensors {} and {} overlap", w[0].2, w[1].2));
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

    fn err(&self, msg: impl ToString) -> ModelError {
        ModelError::file(&self.path, msg)
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!(
                "metadata {key} is {:?}, expected a string",
                v.value_type()
            ))),
        }
    }

    /// The end-of-sequence ids llama.cpp stops on (eos, eot, eom), without repeats; keys that
    /// are absent or not integers are skipped.
    pub fn eos_token_ids(&self) -> Vec<u64> {
        let mut eos = Vec::new();
        for k in ["eos", "eot", "eom"] {
            if let Ok(Some(id)) = self.get_uint(&format!("tokenizer.ggml.{k}_token_id")) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        eos
    }

    /// An integer value of any width, as u64 (negative values are an error).
    pub fn get_uint(&self, key: &str) -> Result<Option<u64>> {
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: Option<u64> = match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        };
        n.map(Some).ok_or_else(|| {
            self.err(format!(
                "metadata {key} is {v:?}, expected a non-negative integer"
            ))
        })
    }

    pub fn get_float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x as f64)),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(v) => Err(self.err(format!("metadata {key} is {v:?}, expected a float"))),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("metadata {key} is {v:?}, expected a bool"))),
        }
    }

    /// The raw bytes of one tensor, in a buffer aligned for any block type.
    pub fn tensor_data(&self, name: &str) -> Result<AlignedBytes> {
        let t = self
            .tensor_info(name)
            .ok_or_else(|| self.err(format!("no tensor {name}")))?;
        let n = t.size_in_bytes();
        let start = self
            .data_offset
            .checked_add(t.offset)
            .ok_or_else(|| self.err("tensor offset overflows"))?;
        if start
            .checked_add(n as u64)
            .is_none_or(|e| e > self.file_len)
        {
            return Err(self.err(format!(
                "tensor {name} lies past the end of the file (truncated or partial download)"
            )));
        }
        let mut f = std::fs::File::open(&self.path).map_err(|e| ModelError::file(&self.path, e))?;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| ModelError::file(&self.path, e))?;
        let mut buf = AlignedBytes::zeroed(n);
        f.read_exact(buf.as_mut())
            .map_err(|e| self.err(format!("reading tensor {name}: {e}")))?;
        Ok(buf)
    }

    /// One tensor as a candle `QTensor` (shape outermost first), quantized as stored.
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let t = self
            .tensor_info(name)
            .ok_or_else(|| self.err(format!("no tensor {name}")))?;
        let data = self.tensor_data(name)?;
        qtensor_from_bytes(t.dtype, data.as_ref(), &t.shape(), device)
    }
}

/// Bytes in a u64-backed buffer, so casts to block structs (align <= 8) never panic.
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

/// Build a QTensor from raw ggml bytes after checking the size (candle asserts, which panics).
pub fn qtensor_from_bytes(
    dtype: GgmlDType,
    data: &[u8],
    shape: &[usize],
    device: &Device,
) -> Result<QTensor> {
    let elems = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ModelError::Invalid(format!("tensor shape {shape:?} is absurd")))?;
    let row = *shape.last().unwrap_or(&0);
    if !row.is_multiple_of(dtype.block_size()) {
        return Err(ModelError::Invalid(format!(
            "row length {row} is not a multiple of the {dtype:?} block size"
        )));
    }
    let expected = elems / dtype.block_size() * dtype.type_size();
    if data.len() != expected {
        return Err(ModelError::Invalid(format!(
            "{dtype:?} tensor {shape:?} needs {expected} bytes, got {}",
            data.len()
        )));
    }
    let aligned;
    let data = if (data.as_ptr() as usize).is_multiple_of(8) {
        data
    } else {
        aligned = AlignedBytes::from_slice(data);
        aligned.as_ref()
    };
    let storage = candle_core::quantized::QStorage::from_data(
        std::borrow::Cow::Borrowed(data),
        device,
        dtype,
    )?;
    Ok(QTensor::new(storage, shape.to_vec())?)
}

/// The ggml type id of a candle dtype (for writing).
pub fn dtype_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// Write a GGUF v3 file: metadata in the given order, then each tensor's data aligned to 32.
pub fn write<W: Write>(
    w: &mut W,
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> Result<()> {
    write_inner(w, metadata, tensors).map_err(|e| ModelError::Invalid(format!("writing GGUF: {e}")))
}

fn write_str<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&[*x as u8]),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(b) => w.write_all(&[*b as u8]),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            let ty: u32 = items.first().map_or(4, value_type_id);
            w.write_all(&ty.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|v| write_value(w, v))
        }
    }
}

fn write_inner<W: Write>(
    w: &mut W,
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> candle_core::Result<()> {
    let align = DEFAULT_ALIGNMENT as usize;
    let mut head: Vec<u8> = Vec::new();
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        write_str(&mut head, k)?;
        head.extend_from_slice(&value_type_id(v).to_le_bytes());
        write_value(&mut head, v)?;
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        write_str(&mut head, name)?;
        let dims = t.shape().dims();
        head.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims.iter().rev() {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        head.extend_from_slice(&dtype_id(t.dtype()).to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.storage_size_in_bytes()).next_multiple_of(align);
    }
    head.resize(head.len().next_multiple_of(align), 0);
    w.write_all(&head)?;
    for (_, t) in tensors {
        let data = t.data()?;
        w.write_all(&data)?;
        w.write_all(&vec![0u8; data.len().next_multiple_of(align) - data.len()])?;
    }
    Ok(())
}

/// llama.cpp stores Llama's q and k projections with the rows of each head interleaved
/// (rope on adjacent pairs); HF's layout splits each head in halves. Reorder whole rows
/// (quantization blocks lie within a row, so this works on quantized bytes).
/// `to_hf`: GGUF -> HF; otherwise HF -> GGUF.
pub fn permute_rows(data: &[u8], rows: usize, heads: usize, to_hf: bool) -> Result<Vec<u8>> {
    if rows == 0
        || heads == 0
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
        || !data.len().is_multiple_of(rows)
    {
        return Err(ModelError::Invalid(format!(
            "cannot permute {rows} rows into {heads} heads"
        )));
    }
    let row_bytes = data.len() / rows;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * hd + 2 * i + j;
                let hf = h * hd + j * half + i;
                let (src, dst) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}
