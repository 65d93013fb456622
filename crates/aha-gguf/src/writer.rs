//! The writer: GGUF v3, metadata in the given order, tensor data aligned to 32 bytes.

use crate::error::{GgufError, Result};
use crate::reader::{DEFAULT_ALIGNMENT, MAGIC};
use crate::types::{GgmlType, Value};
use std::io::Write;

/// One tensor to write: raw ggml bytes of `dtype`, `shape` outermost first (as PyTorch).
#[derive(Debug, Clone, Copy)]
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub dtype: GgmlType,
    pub data: &'a [u8],
}

fn layout(msg: String) -> GgufError {
    GgufError::Layout(msg)
}

fn check(t: &TensorOut) -> Result<()> {
    let row = t.shape.last().copied().unwrap_or(0);
    if t.shape.is_empty() || t.shape.len() > 4 || t.shape.contains(&0) {
        return Err(layout(format!("tensor {}: shape {:?}", t.name, t.shape)));
    }
    if !row.is_multiple_of(t.dtype.block_size()) {
        return Err(layout(format!(
            "tensor {}: row length {row} is not a multiple of the {} block size",
            t.name,
            t.dtype.name()
        )));
    }
    let elems = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| layout(format!("tensor {}: absurd shape", t.name)))?;
    let want = elems / t.dtype.block_size() * t.dtype.type_size();
    if t.data.len() != want {
        return Err(layout(format!(
            "tensor {}: {} {:?} needs {want} bytes, got {}",
            t.name,
            t.dtype.name(),
            t.shape,
            t.data.len()
        )));
    }
    Ok(())
}

fn check_value(key: &str, v: &Value) -> Result<()> {
    if let Value::Array(items) = v {
        if let Some(first) = items.first() {
            if items.iter().any(|x| x.type_id() != first.type_id()) {
                return Err(layout(format!("metadata {key}: array of mixed types")));
            }
        }
        items.iter().try_for_each(|x| check_value(key, x))?;
    }
    Ok(())
}

fn write_str(w: &mut Vec<u8>, s: &str) {
    w.extend_from_slice(&(s.len() as u64).to_le_bytes());
    w.extend_from_slice(s.as_bytes());
}

fn write_value(w: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => w.push(*x),
        Value::I8(x) => w.push(*x as u8),
        Value::U16(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => w.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(b) => w.push(*b as u8),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            // An empty array needs some element type; llama.cpp's writer uses u32 too.
            let ty = items.first().map_or(4, Value::type_id);
            w.extend_from_slice(&ty.to_le_bytes());
            w.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|x| write_value(w, x));
        }
    }
}

/// Write a GGUF v3 file. Inconsistent tensors or mixed-type arrays are an error before
/// anything is written.
pub fn write<W: Write>(
    w: &mut W,
    metadata: &[(String, Value)],
    tensors: &[TensorOut],
) -> Result<()> {
    metadata.iter().try_for_each(|(k, v)| check_value(k, v))?;
    tensors.iter().try_for_each(check)?;
    let align = DEFAULT_ALIGNMENT as usize;
    let mut head: Vec<u8> = Vec::new();
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        write_str(&mut head, k);
        head.extend_from_slice(&v.type_id().to_le_bytes());
        write_value(&mut head, v);
    }
    let mut offset = 0usize;
    for t in tensors {
        write_str(&mut head, t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        head.extend_from_slice(&t.dtype.id().to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).next_multiple_of(align);
    }
    head.resize(head.len().next_multiple_of(align), 0);
    w.write_all(&head).map_err(GgufError::Write)?;
    for t in tensors {
        w.write_all(t.data).map_err(GgufError::Write)?;
        let pad = t.data.len().next_multiple_of(align) - t.data.len();
        w.write_all(&vec![0u8; pad]).map_err(GgufError::Write)?;
    }
    Ok(())
}
