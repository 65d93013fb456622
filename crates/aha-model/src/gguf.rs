//! GGUF tensors as candle `QTensor`s. The file format itself (reader, writer, tensor names,
//! special ids) is aha-gguf; this module adds what needs candle: the quant types aha runs,
//! tensors as `QTensor`s, and writing `QTensor`s.

use crate::error::{ModelError, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::io::Write;
use std::path::Path;

pub use aha_gguf::names::{self, permute_rows};
pub use aha_gguf::{is_gguf_path, AlignedBytes, GgmlType, GgufFile, TensorInfo, Value};

/// candle's dtype for a ggml type that aha runs (dequantizes or multiplies), else None.
pub fn candle_dtype(t: GgmlType) -> Option<GgmlDType> {
    Some(match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        _ => return None,
    })
}

/// The ggml type of a candle dtype (for writing).
pub fn ggml_type(d: GgmlDType) -> GgmlType {
    match d {
        GgmlDType::F32 => GgmlType::F32,
        GgmlDType::F16 => GgmlType::F16,
        GgmlDType::BF16 => GgmlType::BF16,
        GgmlDType::Q4_0 => GgmlType::Q4_0,
        GgmlDType::Q4_1 => GgmlType::Q4_1,
        GgmlDType::Q5_0 => GgmlType::Q5_0,
        GgmlDType::Q5_1 => GgmlType::Q5_1,
        GgmlDType::Q8_0 => GgmlType::Q8_0,
        GgmlDType::Q8_1 => GgmlType::Q8_1,
        GgmlDType::Q2K => GgmlType::Q2_K,
        GgmlDType::Q3K => GgmlType::Q3_K,
        GgmlDType::Q4K => GgmlType::Q4_K,
        GgmlDType::Q5K => GgmlType::Q5_K,
        GgmlDType::Q6K => GgmlType::Q6_K,
        GgmlDType::Q8K => GgmlType::Q8_K,
    }
}

fn dtype_of(g: &GgufFile, t: &TensorInfo) -> Result<GgmlDType> {
    candle_dtype(t.dtype).ok_or_else(|| {
        ModelError::file(
            &g.path,
            format!(
                "tensor {}: quantization type {} (id {}) is not supported; aha runs F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K",
                t.name,
                t.dtype.name(),
                t.dtype.id()
            ),
        )
    })
}

/// Every tensor of the file is of a type aha runs.
pub fn check_supported(g: &GgufFile) -> Result<()> {
    g.tensors
        .iter()
        .try_for_each(|t| dtype_of(g, t).map(|_| ()))
}

/// Open a GGUF model file: the header, every tensor inside the file and of a type aha runs.
pub fn open(path: &Path) -> Result<GgufFile> {
    let g = GgufFile::open(path)?;
    check_supported(&g)?;
    Ok(g)
}

/// One tensor as a candle `QTensor` (shape outermost first), quantized as stored.
pub fn qtensor(g: &GgufFile, name: &str, device: &Device) -> Result<QTensor> {
    let t = g
        .tensor_info(name)
        .ok_or_else(|| ModelError::file(&g.path, format!("no tensor {name}")))?;
    let dtype = dtype_of(g, t)?;
    let data = g.tensor_data(name)?;
    qtensor_from_bytes(dtype, data.as_ref(), &t.shape(), device)
}

/// The candle dtype of a tensor of the file (an error for types aha does not run).
pub fn tensor_dtype(g: &GgufFile, t: &TensorInfo) -> Result<GgmlDType> {
    dtype_of(g, t)
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

/// Write `QTensor`s as a GGUF v3 file (see [`aha_gguf::write`]).
pub fn write<W: Write>(
    w: &mut W,
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> Result<()> {
    let data: Vec<(Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(_, t)| Ok((t.data()?.into_owned(), t.shape().dims().to_vec())))
        .collect::<Result<_>>()?;
    let out: Vec<aha_gguf::TensorOut> = tensors
        .iter()
        .zip(&data)
        .map(|((name, t), (bytes, shape))| aha_gguf::TensorOut {
            name,
            shape,
            dtype: ggml_type(t.dtype()),
            data: bytes,
        })
        .collect();
    Ok(aha_gguf::write(w, metadata, &out)?)
}
