//! Llama and Qwen2 from a GGUF file, run with quantized matmuls (candle's `QMatMul`): the
//! projections and the output head stay in their stored quant type; norms are f32 and the
//! embedding rows are dequantized as they are looked up.
//!
//! Tensor names are llama.cpp's (`token_embd`, `blk.N.attn_q`, ...); the q and k rows of
//! the `llama` architecture are reordered back to HF's rope layout on load.

use crate::error::{ModelError, Result};
use crate::gguf::{permute_rows, qtensor, qtensor_from_bytes, tensor_dtype, GgufFile};
use crate::kv_cache::KvCache;
use crate::ops::{self, Mode};
use crate::qkernels::QMat;
use crate::rope::Rope;
use crate::weights::Params;
use crate::ForwardInput;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use std::sync::Arc;

/// The hyper-parameters named by `{arch}.*` metadata.
#[derive(Debug, Clone)]
pub struct QuantizedConfig {
    pub arch: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub context_length: usize,
}

impl QuantizedConfig {
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g
            .get_str("general.architecture")?
            .ok_or_else(|| ModelError::file(&g.path, "no general.architecture"))?
            .to_string();
        match arch.as_str() {
            "llama" | "qwen2" => {}
            "deepseek2" => {
                return Err(ModelError::file(&g.path, "GGUF architecture deepseek2 (DeepSeek-V2/V3/R1 MLA+MoE) is not a llama/qwen2 model; Model::load runs it as DeepSeek-V3 (gguf_deepseek2)"))
            }
            other => return Err(ModelError::UnknownArchitecture(format!("{other} (GGUF)"))),
        }
        let need = |key: &str| -> Result<usize> {
            let k = format!("{arch}.{key}");
            g.get_uint(&k)?
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::file(&g.path, format!("missing metadata {k}")))
        };
        let hidden_size = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let kv_heads = g
            .get_uint(&format!("{arch}.attention.head_count_kv"))?
            .map(|v| v as usize)
            .unwrap_or(heads);
        let vocab_size = match g.get_uint(&format!("{arch}.vocab_size"))? {
            Some(v) => v as usize,
            None => g
                .tensor_info("token_embd.weight")
                .map(|t| t.dims[1])
                .ok_or_else(|| ModelError::file(&g.path, "no token_embd.weight"))?,
        };
        let head_dim = match g.get_uint(&format!("{arch}.attention.key_length"))? {
            Some(v) => v as usize,
            None if heads > 0 => hidden_size / heads,
            None => 0,
        };
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_layers: need("block_count")?,
            heads,
            kv_heads,
            head_dim,
            rms_norm_eps: g
                .get_float(&format!("{arch}.attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5),
            rope_theta: g
                .get_float(&format!("{arch}.rope.freq_base"))?
                .unwrap_or(10000.0),
            context_length: g
                .get_uint(&format!("{arch}.context_length"))?
                .unwrap_or(4096) as usize,
            arch,
        };
        let ok = cfg.heads > 0
            && cfg.kv_heads > 0
            && cfg.heads.is_multiple_of(cfg.kv_heads)
            && cfg.head_dim > 0
            && cfg.head_dim.is_multiple_of(2)
            && cfg.num_layers > 0
            && cfg.num_layers <= 1024
            && cfg.vocab_size > 0;
        if !ok {
            return Err(ModelError::file(
                &g.path,
                format!("inconsistent hyper-parameters {cfg:?}"),
            ));
        }
        Ok(cfg)
    }
}

struct QLinear {
    w: QMat,
    b: Option<Tensor>,
}

impl QLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.w.forward(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: QLinear,
    k: QLinear,
    v: QLinear,
    o: QLinear,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
}

pub struct QuantizedLlama {
    pub cfg: QuantizedConfig,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: QMat,
    /// [head_dim / 2] inverse rope frequencies.
    inv_freq: Tensor,
    params: Params,
}

impl QuantizedLlama {
    pub fn load(g: &GgufFile, device: &Device) -> Result<Self> {
        let cfg = QuantizedConfig::from_gguf(g)?;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let qt = |name: &str, shape: &[usize]| checked_qtensor(g, name, shape, None, device);
        let f32t = |name: &str, shape: &[usize]| -> Result<Tensor> {
            Ok(qt(name, shape)?.dequantize(device)?.to_dtype(DType::F32)?)
        };
        let bias = |name: &str, n: usize| -> Result<Option<Tensor>> {
            if g.tensor_info(name).is_some() {
                Ok(Some(f32t(name, &[n])?))
            } else {
                Ok(None)
            }
        };
        let permuted = |name: &str, shape: &[usize], heads: usize| {
            checked_qtensor(g, name, shape, Some(heads), device)
        };
        let lin = |w: QTensor, b: Option<Tensor>| -> Result<QLinear> {
            Ok(QLinear {
                w: QMat::from_qtensor(w)?,
                b,
            })
        };
        let embed = qt("token_embd.weight", &[cfg.vocab_size, h])?;
        let is_llama = cfg.arch == "llama";
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("blk.{i}");
            let qshape = [cfg.heads * hd, h];
            let kshape = [cfg.kv_heads * hd, h];
            let (qw, kw) = if is_llama {
                (
                    permuted(&format!("{p}.attn_q.weight"), &qshape, cfg.heads)?,
                    permuted(&format!("{p}.attn_k.weight"), &kshape, cfg.kv_heads)?,
                )
            } else {
                (
                    qt(&format!("{p}.attn_q.weight"), &qshape)?,
                    qt(&format!("{p}.attn_k.weight"), &kshape)?,
                )
            };
            // A llama q/k bias would need the same reordering; llama.cpp's llama has none.
            let (qb, kb) = if is_llama {
                (None, None)
            } else {
                (
                    bias(&format!("{p}.attn_q.bias"), cfg.heads * hd)?,
                    bias(&format!("{p}.attn_k.bias"), cfg.kv_heads * hd)?,
                )
            };
            layers.push(Layer {
                attn_norm: f32t(&format!("{p}.attn_norm.weight"), &[h])?,
                q: lin(qw, qb)?,
                k: lin(kw, kb)?,
                v: lin(
                    qt(&format!("{p}.attn_v.weight"), &kshape)?,
                    bias(&format!("{p}.attn_v.bias"), cfg.kv_heads * hd)?,
                )?,
                o: lin(
                    qt(&format!("{p}.attn_output.weight"), &[h, cfg.heads * hd])?,
                    bias(&format!("{p}.attn_output.bias"), h)?,
                )?,
                ffn_norm: f32t(&format!("{p}.ffn_norm.weight"), &[h])?,
                gate: lin(
                    qt(&format!("{p}.ffn_gate.weight"), &[cfg.intermediate_size, h])?,
                    None,
                )?,
                up: lin(
                    qt(&format!("{p}.ffn_up.weight"), &[cfg.intermediate_size, h])?,
                    None,
                )?,
                down: lin(
                    qt(&format!("{p}.ffn_down.weight"), &[h, cfg.intermediate_size])?,
                    None,
                )?,
            });
        }
        let norm = f32t("output_norm.weight", &[h])?;
        let embed = Arc::new(embed);
        let lm_head = if g.tensor_info("output.weight").is_some() {
            QMat::from_qtensor(qt("output.weight", &[cfg.vocab_size, h])?)?
        } else {
            QMat::from_arc(embed.clone())?
        };
        let mut freqs: Vec<f64> = (0..hd / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / hd as f64))
            .collect();
        // Llama 3.1-style scaling is stored as per-frequency divisors.
        if g.tensor_info("rope_freqs.weight").is_some() {
            let f: Vec<f32> = f32t("rope_freqs.weight", &[hd / 2])?.to_vec1()?;
            freqs.iter_mut().zip(f).for_each(|(a, b)| *a /= b as f64);
        }
        match g.get_str(&format!("{}.rope.scaling.type", cfg.arch))? {
            None | Some("none") => {}
            Some("linear") => {
                let factor = g
                    .get_float(&format!("{}.rope.scaling.factor", cfg.arch))?
                    .unwrap_or(1.0);
                freqs.iter_mut().for_each(|a| *a /= factor);
            }
            Some(other) => {
                return Err(ModelError::file(
                    &g.path,
                    format!("rope scaling {other:?} is not supported for GGUF models"),
                ))
            }
        }
        let inv_freq = Tensor::new(freqs.iter().map(|&f| f as f32).collect::<Vec<_>>(), device)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            params: Params::default(),
        })
    }

    /// Quantized models hold no trainable parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn num_layers(&self) -> usize {
        self.cfg.num_layers
    }

    pub fn forward(&self, input: &ForwardInput, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let mode = Mode::Inference;
        let (b, t) = input.input_ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let device = input.input_ids.device();
        let bias = crate::attention_bias(input.key_mask, b, t, past, device)?;
        let pos = input
            .position_ids
            .to_dtype(DType::F32)?
            .unsqueeze(D::Minus1)?;
        let angles = pos.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let ids = input.input_ids.flatten_all()?;
        let h = self.cfg.hidden_size;
        let mut x = self.embed.embedding(&ids)?.reshape((b, t, h))?;
        let (nh, kvh, hd) = (self.cfg.heads, self.cfg.kv_heads, self.cfg.head_dim);
        let eps = self.cfg.rms_norm_eps;
        for (i, l) in self.layers.iter().enumerate() {
            let n = ops::rms_norm(&x, &l.attn_norm, eps, mode)?;
            let split = |y: Tensor, heads: usize| y.reshape((b, t, heads, hd))?.transpose(1, 2);
            let q = Rope::apply(&split(l.q.forward(&n)?, nh)?, &cos, &sin, mode)?;
            let k = Rope::apply(&split(l.k.forward(&n)?, kvh)?, &cos, &sin, mode)?;
            let v = split(l.v.forward(&n)?, kvh)?.contiguous()?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.append(i, &k, &v)?,
                None => (k, v),
            };
            let a = crate::llama::attend(&q, &k, &v, &bias, kvh, mode)?;
            let a = a.transpose(1, 2)?.reshape((b, t, nh * hd))?;
            x = (x + l.o.forward(&a)?)?;
            let n = ops::rms_norm(&x, &l.ffn_norm, eps, mode)?;
            let g = candle_nn::ops::silu(&l.gate.forward(&n)?)?;
            x = (x + l.down.forward(&(g * l.up.forward(&n)?)?)?)?;
        }
        let x = input.logits.select(&x)?;
        let x = ops::rms_norm(&x, &self.norm, eps, mode)?;
        Ok(self.lm_head.forward(&x.contiguous()?)?)
    }

    /// A config.json-like description, for `Model::config`.
    pub fn config_json(&self, g: &GgufFile) -> serde_json::Value {
        let special = g.special_ids();
        let eos = &special.eos;
        let c = &self.cfg;
        serde_json::json!({
            "model_type": c.arch,
            "gguf_file": g.path.display().to_string(),
            "quantization": self.quant_summary(g),
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kv_heads,
            "head_dim": c.head_dim,
            "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_theta,
            "max_position_embeddings": c.context_length,
            "bos_token_id": special.bos,
            "eos_token_id": eos,
        })
    }

    fn quant_summary(&self, g: &GgufFile) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for t in &g.tensors {
            *counts.entry(format!("{:?}", t.dtype)).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A tensor of the file with the expected shape, or a clear error. With `permute_heads`, a
/// llama q/k weight: its rows are interleaved per head for llama.cpp's rope and are put back
/// in HF's order.
pub(crate) fn checked_qtensor(
    g: &GgufFile,
    name: &str,
    shape: &[usize],
    permute_heads: Option<usize>,
    device: &Device,
) -> Result<QTensor> {
    let t = g.tensor_info(name).ok_or_else(|| ModelError::Tensor {
        path: g.path.clone(),
        name: name.into(),
        message: "missing from the GGUF file".into(),
    })?;
    if t.shape() != shape {
        return Err(ModelError::Tensor {
            path: g.path.clone(),
            name: name.into(),
            message: format!("has shape {:?}, expected {shape:?}", t.shape()),
        });
    }
    match permute_heads {
        Some(heads) => {
            let data = g.tensor_data(name)?;
            let bytes = permute_rows(data.as_ref(), shape[0], heads, true)?;
            qtensor_from_bytes(tensor_dtype(g, t)?, &bytes, shape, device)
        }
        None => qtensor(g, name, device),
    }
}

/// A GGUF Llama/Qwen2 model as a dense f32 checkpoint: an HF `config.json` and every weight
/// dequantized under its HF name (llama's q/k rows reordered back to HF's rope layout), for
/// [`crate::Model::load_dense`] (training, LoRA) and `aha convert`.
pub fn dense_checkpoint(
    g: &GgufFile,
    device: &Device,
) -> Result<(serde_json::Value, std::collections::HashMap<String, Tensor>)> {
    let cfg = QuantizedConfig::from_gguf(g)?;
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    if g.tensor_info("rope_freqs.weight").is_some() {
        return Err(ModelError::file(
            &g.path,
            "rope_freqs (Llama 3.1 rope scaling) is not supported when loading a GGUF file dense",
        ));
    }
    let rope_scaling = match g.get_str(&format!("{}.rope.scaling.type", cfg.arch))? {
        None | Some("none") => serde_json::Value::Null,
        Some("linear") => serde_json::json!({
            "rope_type": "linear",
            "factor": g.get_float(&format!("{}.rope.scaling.factor", cfg.arch))?.unwrap_or(1.0),
        }),
        Some(other) => {
            return Err(ModelError::file(
                &g.path,
                format!("rope scaling {other:?} is not supported for GGUF models"),
            ))
        }
    };
    let is_llama = cfg.arch == "llama";
    let mut out = std::collections::HashMap::new();
    // Each tensor under its HF name (one map for reading and writing: aha_gguf::names).
    let mut put = |gguf_name: &str, shape: &[usize], heads: Option<usize>| -> Result<()> {
        let hf_name = aha_gguf::names::hf_name(gguf_name)
            .ok_or_else(|| ModelError::Invalid(format!("no HF name for {gguf_name}")))?;
        let q = checked_qtensor(g, gguf_name, shape, heads, device)?;
        out.insert(hf_name, q.dequantize(device)?.to_dtype(DType::F32)?);
        Ok(())
    };
    put("token_embd.weight", &[cfg.vocab_size, h], None)?;
    let perm = |heads: usize| if is_llama { Some(heads) } else { None };
    let (qn, kvn, ff) = (cfg.heads * hd, cfg.kv_heads * hd, cfg.intermediate_size);
    for i in 0..cfg.num_layers {
        let p = |s: &str| format!("blk.{i}.{s}");
        put(&p("attn_norm.weight"), &[h], None)?;
        put(&p("attn_q.weight"), &[qn, h], perm(cfg.heads))?;
        put(&p("attn_k.weight"), &[kvn, h], perm(cfg.kv_heads))?;
        put(&p("attn_v.weight"), &[kvn, h], None)?;
        put(&p("attn_output.weight"), &[h, qn], None)?;
        if !is_llama {
            // Qwen2 always has q/k/v biases.
            put(&p("attn_q.bias"), &[qn], None)?;
            put(&p("attn_k.bias"), &[kvn], None)?;
            put(&p("attn_v.bias"), &[kvn], None)?;
        }
        put(&p("ffn_norm.weight"), &[h], None)?;
        put(&p("ffn_gate.weight"), &[ff, h], None)?;
        put(&p("ffn_up.weight"), &[ff, h], None)?;
        put(&p("ffn_down.weight"), &[h, ff], None)?;
    }
    put("output_norm.weight", &[h], None)?;
    let tied = g.tensor_info("output.weight").is_none();
    if !tied {
        put("output.weight", &[cfg.vocab_size, h], None)?;
    }
    let special = g.special_ids();
    let eos = &special.eos;
    let c = &cfg;
    // GGUF stores these as f32: write 1e-5, not 9.999999747378752e-6.
    let short = |v: f64| format!("{}", v as f32).parse::<f64>().unwrap_or(v);
    let arch_class = if is_llama {
        "LlamaForCausalLM"
    } else {
        "Qwen2ForCausalLM"
    };
    let config = serde_json::json!({
        "architectures": [arch_class],
        "model_type": c.arch,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": short(c.rms_norm_eps),
        "rope_theta": short(c.rope_theta),
        "rope_scaling": rope_scaling,
        "max_position_embeddings": c.context_length,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": special.bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    Ok((config, out))
}

/// Dequantize a whole GGUF model's weights to f32 HF-named tensors (for reference tests).
pub fn dequantized_tensor(g: &GgufFile, name: &str) -> Result<Tensor> {
    Ok(qtensor(g, name, &Device::Cpu)?.dequantize(&Device::Cpu)?)
}

/// Whether a quant type can be the target of `aha quantize`.
pub fn parse_quant_type(s: &str) -> Option<GgmlDType> {
    Some(match s.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "bf16" => GgmlDType::BF16,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q8_0" => GgmlDType::Q8_0,
        "q2_k" => GgmlDType::Q2K,
        "q3_k" => GgmlDType::Q3K,
        "q4_k" => GgmlDType::Q4K,
        "q5_k" => GgmlDType::Q5K,
        "q6_k" => GgmlDType::Q6K,
        _ => return None,
    })
}
