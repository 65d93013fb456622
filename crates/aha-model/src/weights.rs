//! Safetensors checkpoints: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, stored as f32, bf16 or f16.

use crate::error::{ModelError, Result};
use crate::qkernels::{Kernels, QMat};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Shape, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// All tensors of a checkpoint, read into memory in the compute dtype; a GGUF checkpoint may
/// also hold weights still in their quantized blocks (see [`Checkpoint::with_quantized`]).
pub struct Checkpoint {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    quantized: HashMap<String, (QTensor, PathBuf)>,
    /// What runs the quantized weights.
    kernels: Kernels,
}

impl Checkpoint {
    /// Read every tensor of the model directory's safetensors files.
    pub fn read_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = shard_files(dir)?;
        let mut tensors = HashMap::new();
        for file in files {
            for (name, t) in read_file(&file, dtype, device)? {
                tensors.insert(name, (t, file.clone()));
            }
        }
        Ok(Self {
            tensors,
            quantized: HashMap::new(),
            kernels: Kernels::default(),
        })
    }

    pub fn from_tensors(tensors: HashMap<String, Tensor>, origin: &Path) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| (k, (v, origin.to_path_buf())))
            .collect();
        Self {
            tensors,
            quantized: HashMap::new(),
            kernels: Kernels::default(),
        }
    }

    /// Add weights kept quantized (by name), run by `kernels`: the model's linear layers
    /// that can run them take them with [`Checkpoint::take_qmat`]; [`Checkpoint::take`]
    /// dequantizes them (to f32) for anything else.
    pub fn with_quantized(
        mut self,
        tensors: HashMap<String, QTensor>,
        origin: &Path,
        kernels: Kernels,
    ) -> Self {
        self.kernels = kernels;
        self.quantized.extend(
            tensors
                .into_iter()
                .map(|(k, v)| (k, (v, origin.to_path_buf()))),
        );
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.quantized.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys().chain(self.quantized.keys())
    }

    /// Take a tensor held quantized by name (None when it is dense or absent), checking its
    /// shape.
    pub fn take_quantized(
        &mut self,
        name: &str,
        shape: impl Into<Shape>,
    ) -> Result<Option<QTensor>> {
        let shape = shape.into();
        let Some((t, path)) = self.quantized.remove(name) else {
            return Ok(None);
        };
        if t.shape() != &shape {
            return Err(ModelError::Tensor {
                path,
                name: name.to_string(),
                message: format!(
                    "has shape {:?}, expected {:?}",
                    t.shape().dims(),
                    shape.dims()
                ),
            });
        }
        Ok(Some(t))
    }

    /// Take a weight held quantized by name, ready to multiply (None when it is dense or
    /// absent), checking its shape.
    pub fn take_qmat(&mut self, name: &str, shape: impl Into<Shape>) -> Result<Option<QMat>> {
        match self.take_quantized(name, shape)? {
            Some(t) => Ok(Some(QMat::new(Arc::new(t), self.kernels)?)),
            None => Ok(None),
        }
    }

    /// The kernels that run this checkpoint's quantized weights.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Take a tensor by name, checking its shape (one held quantized comes dequantized, in
    /// f32).
    pub fn take(&mut self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if !self.tensors.contains_key(name) {
            if let Some(q) = self.take_quantized(name, shape.clone())? {
                return Ok(q.dequantize(&q.device())?);
            }
        }
        let (t, path) = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::Tensor {
                path: PathBuf::from("checkpoint"),
                name: name.to_string(),
                message: "missing from the checkpoint".into(),
            })?;
        if t.shape() != &shape {
            return Err(ModelError::Tensor {
                path,
                name: name.to_string(),
                message: format!("has shape {:?}, expected {:?}", t.dims(), shape.dims()),
            });
        }
        Ok(t)
    }
}

/// The safetensors files of a model directory, in shard order.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::file(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::file(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::file(&index, "no \"weight_map\" object"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(ModelError::file(&index, "\"weight_map\" lists no files"));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    Err(ModelError::file(
        dir,
        "no model.safetensors or model.safetensors.index.json in this directory",
    ))
}

/// Read one safetensors file, converting float tensors to `dtype`.
pub fn read_file(path: &Path, dtype: DType, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::file(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::file(path, format!("not a valid safetensors file ({e})")))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let stored = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F16 => DType::F16,
            // Block-FP8 weights (DeepSeek-V3) stay FP8 here: the architecture dequantizes them
            // with their `weight_scale_inv` blocks.
            safetensors::Dtype::F8_E4M3 => {
                out.push((
                    name,
                    Tensor::from_raw_buffer(view.data(), DType::F8E4M3, view.shape(), device)?,
                ));
                continue;
            }
            other => {
                return Err(ModelError::Tensor {
                    path: path.to_path_buf(),
                    name,
                    message: format!("has dtype {other:?}; weights must be f32, bf16 or f16"),
                })
            }
        };
        let t =
            Tensor::from_raw_buffer(view.data(), stored, view.shape(), device)?.to_dtype(dtype)?;
        out.push((name, t));
    }
    Ok(out)
}

/// Map a dtype name as HF writes it (`bfloat16`) to candle's.
pub fn parse_dtype(name: &str) -> Option<DType> {
    match name {
        "float32" | "f32" => Some(DType::F32),
        "bfloat16" | "bf16" => Some(DType::BF16),
        "float16" | "f16" | "half" => Some(DType::F16),
        _ => None,
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}

/// Write tensors as one safetensors file (atomically: a temp file, then a rename).
pub fn write_file(path: &Path, tensors: &BTreeMap<String, Tensor>, dtype: DType) -> Result<()> {
    let converted: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::tensor::serialize_to_file(
        converted.iter().map(|(k, t)| (k.as_str(), TensorView(t))),
        Some(meta),
        &tmp,
    )
    .map_err(|e| ModelError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::file(path, e))
}

struct TensorView<'a>(&'a Tensor);

impl safetensors::View for TensorView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self.0.dtype() {
            DType::BF16 => safetensors::Dtype::BF16,
            DType::F16 => safetensors::Dtype::F16,
            _ => safetensors::Dtype::F32,
        }
    }
    fn shape(&self) -> &[usize] {
        self.0.dims()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(tensor_bytes(self.0))
    }
    fn data_len(&self) -> usize {
        self.0.elem_count() * self.0.dtype().size_in_bytes()
    }
}

fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    // Tensors here are contiguous and of a float dtype (checked by the caller's conversion).
    let flat = match t.flatten_all() {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    match t.dtype() {
        DType::BF16 => flat
            .to_vec1::<half::bf16>()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        DType::F16 => flat
            .to_vec1::<half::f16>()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        _ => flat
            .to_vec1::<f32>()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
    .unwrap_or_default()
}

/// A model's parameters by their Hugging Face names. Each is a [`Var`], so the same
/// weights serve inference and training, and an optimizer updates them in place.
#[derive(Default, Clone)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

impl Params {
    /// Take a tensor from the checkpoint and register it as a parameter.
    pub fn take(
        &mut self,
        ckpt: &mut Checkpoint,
        name: &str,
        shape: impl Into<Shape>,
    ) -> Result<Tensor> {
        let t = ckpt.take(name, shape)?;
        self.insert(name, t)
    }

    pub fn insert(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        let v = Var::from_tensor(&t)?;
        let out = v.as_tensor().clone();
        self.vars.insert(name.to_string(), v);
        Ok(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }
}
