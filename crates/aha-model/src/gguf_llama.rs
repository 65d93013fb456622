//! Llama and Qwen2 GGUF files (llama.cpp's `llama` and `qwen2` architectures) as a
//! [`crate::llama`] checkpoint: an HF `config.json` and the weights under HF names.
//! [`crate::Model::load`] keeps the 2-D weights (projections, embedding, output head) in
//! their GGUF blocks and runs them with [`crate::qkernels`] (inference); norms and biases are
//! f32. [`crate::Model::load_dense`] dequantizes everything to f32 (training, LoRA, `aha
//! convert`).
//!
//! Tensor names are llama.cpp's (`token_embd`, `blk.N.attn_q`, ...; one map for reading and
//! writing: [`aha_gguf::names`]); the q and k rows of the `llama` architecture are
//! interleaved per head for llama.cpp's rope and are put back in HF's order on load.

use crate::error::{ModelError, Result};
use crate::gguf::{permute_rows, qtensor, qtensor_from_bytes, tensor_dtype, GgufFile};
use aha_gguf::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The hyper-parameters named by `{arch}.*` metadata.
#[derive(Debug, Clone)]
struct Hp {
    arch: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rms_norm_eps: f64,
    rope_theta: f64,
    context_length: usize,
}

impl Hp {
    fn from_gguf(g: &GgufFile) -> Result<Self> {
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

/// The HF-named tensors of a GGUF Llama/Qwen2 file: the config, the dense tensors, and
/// (with `keep_quantized`) the 2-D weights still in their blocks; else every weight is
/// dequantized to f32.
pub type Tensors = (
    serde_json::Value,
    HashMap<String, Tensor>,
    HashMap<String, QTensor>,
);

/// A GGUF Llama/Qwen2 model as a [`crate::llama::Llama`] checkpoint (see the module docs).
pub fn checkpoint(g: &GgufFile, device: &Device, keep_quantized: bool) -> Result<Tensors> {
    let cfg = Hp::from_gguf(g)?;
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let rope_freqs = g.tensor_info("rope_freqs.weight").is_some();
    if rope_freqs && !keep_quantized {
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
    let mut dense = HashMap::new();
    let mut quantized = HashMap::new();
    // Each tensor under its HF name; 2-D weights stay quantized when asked.
    let mut put = |gguf_name: &str, shape: &[usize], heads: Option<usize>| -> Result<()> {
        let hf_name = aha_gguf::names::hf_name(gguf_name)
            .ok_or_else(|| ModelError::Invalid(format!("no HF name for {gguf_name}")))?;
        let q = checked_qtensor(g, gguf_name, shape, heads, device)?;
        if keep_quantized && shape.len() == 2 {
            quantized.insert(hf_name, q);
        } else {
            dense.insert(hf_name, q.dequantize(device)?.to_dtype(DType::F32)?);
        }
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
    if rope_freqs {
        let t = checked_qtensor(g, "rope_freqs.weight", &[hd / 2], None, device)?;
        dense.insert(
            crate::llama::ROPE_FREQS.to_string(),
            t.dequantize(device)?.to_dtype(DType::F32)?,
        );
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
    let mut config = serde_json::json!({
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
    if keep_quantized {
        // Not HF fields: what `aha info` shows about the file.
        config["gguf_file"] = g.path.display().to_string().into();
        config["quantization"] = quant_summary(g).into();
    }
    Ok((config, dense, quantized))
}

/// Tensors per GGUF type, e.g. `F32:61,Q4_1:150`.
fn quant_summary(g: &GgufFile) -> String {
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

/// llama.cpp's fallback for rows not a multiple of the block (k-quants need whole
/// super-blocks of 256).
fn fallback(t: GgmlDType, row: usize) -> GgmlDType {
    if row.is_multiple_of(t.block_size()) {
        return t;
    }
    let f = match t {
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        _ => GgmlDType::F16,
    };
    if row.is_multiple_of(f.block_size()) {
        f
    } else {
        GgmlDType::F16
    }
}

/// llama.cpp's `llama_ftype` of a file mostly in `t`.
fn file_type(t: GgmlDType) -> u32 {
    match t {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 12,
        GgmlDType::Q4K => 15,
        GgmlDType::Q5K => 17,
        GgmlDType::Q6K => 18,
        GgmlDType::BF16 => 32,
        _ => 0,
    }
}

/// Write the Llama/Qwen2 model directory `dir` as a GGUF file at `out` (atomically): the
/// 2-D weights in `qtype` (or llama.cpp's fallback type where rows do not fit its blocks),
/// norms and biases f32, llama.cpp's names and metadata, plus `extra` metadata (the
/// tokenizer's, which aha-text writes). Returns the tensors written per type.
pub fn write(
    dir: &Path,
    qtype: GgmlDType,
    extra: Vec<(String, Value)>,
    out: &Path,
) -> Result<BTreeMap<String, usize>> {
    let cfg_path = dir.join("config.json");
    let cfg = crate::config::read_config(&cfg_path)?;
    let arch = crate::config::architecture(&cfg)
        .ok_or_else(|| ModelError::config(&cfg_path, "names no architecture"))?;
    if arch != "llama" && arch != "qwen2" {
        return Err(ModelError::config(
            &cfg_path,
            format!("GGUF writing covers llama and qwen2 models; this one is {arch}"),
        ));
    }
    let c = crate::llama::LlamaConfig::from_json(&cfg, &cfg_path)?;
    let llama = arch == "llama";
    if llama && c.attention_bias {
        return Err(ModelError::config(
            &cfg_path,
            "llama models with attention biases cannot be written as GGUF",
        ));
    }
    if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        tracing::warn!("rope_scaling is not written to the GGUF file");
    }
    let (h, nh, kvh, hd) = (
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.head_dim(),
    );
    let rope = cfg
        .get("rope_theta")
        .or_else(|| cfg.pointer("/rope_parameters/rope_theta"))
        .and_then(|v| v.as_f64())
        .unwrap_or(10000.0);
    let u32v = |x: usize| Value::U32(x as u32);
    let a = |k: &str| format!("{arch}.{k}");
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.clone())),
        ("general.name".into(), Value::String(name)),
        ("general.quantization_version".into(), Value::U32(2)),
        ("general.file_type".into(), Value::U32(file_type(qtype))),
        (a("block_count"), u32v(c.num_hidden_layers)),
        (a("context_length"), u32v(c.max_position_embeddings)),
        (a("embedding_length"), u32v(h)),
        (a("feed_forward_length"), u32v(c.intermediate_size)),
        (a("attention.head_count"), u32v(nh)),
        (a("attention.head_count_kv"), u32v(kvh)),
        (a("attention.key_length"), u32v(hd)),
        (a("attention.value_length"), u32v(hd)),
        (a("rope.dimension_count"), u32v(hd)),
        (a("rope.freq_base"), Value::F32(rope as f32)),
        (
            a("attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_norm_eps as f32),
        ),
        (a("vocab_size"), u32v(c.vocab_size)),
    ];
    meta.extend(extra);

    let mut ckpt = crate::weights::Checkpoint::read_dir(dir, DType::F32, &Device::Cpu)?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    // llama.cpp's names from the one HF <-> GGUF map; llama's q/k rows in its rope order.
    let mut push = |hf: &str, shape: Vec<usize>, heads: Option<usize>| -> Result<()> {
        let gg = aha_gguf::names::gguf_name(hf)
            .ok_or_else(|| ModelError::Invalid(format!("no GGUF name for {hf}")))?;
        let mut t = ckpt.take(hf, shape.clone())?;
        if let Some(heads) = heads {
            let bytes: Vec<u8> = t
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let p = permute_rows(&bytes, shape[0], heads, false)?;
            let v: Vec<f32> = p
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            t = Tensor::from_vec(v, shape.clone(), &Device::Cpu)?;
        }
        let dt = match shape.as_slice() {
            [.., row] if shape.len() > 1 => fallback(qtype, *row),
            _ => GgmlDType::F32,
        };
        tensors.push((gg, QTensor::quantize(&t, dt)?));
        Ok(())
    };
    let v = c.vocab_size;
    let (ff, qn, kvn) = (c.intermediate_size, nh * hd, kvh * hd);
    push("model.embed_tokens.weight", vec![v, h], None)?;
    for i in 0..c.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        push(&p("input_layernorm.weight"), vec![h], None)?;
        push(
            &p("self_attn.q_proj.weight"),
            vec![qn, h],
            llama.then_some(nh),
        )?;
        push(
            &p("self_attn.k_proj.weight"),
            vec![kvn, h],
            llama.then_some(kvh),
        )?;
        push(&p("self_attn.v_proj.weight"), vec![kvn, h], None)?;
        push(&p("self_attn.o_proj.weight"), vec![h, qn], None)?;
        if !llama {
            for (x, n) in [("q", qn), ("k", kvn), ("v", kvn)] {
                push(&p(&format!("self_attn.{x}_proj.bias")), vec![n], None)?;
            }
        }
        push(&p("post_attention_layernorm.weight"), vec![h], None)?;
        push(&p("mlp.gate_proj.weight"), vec![ff, h], None)?;
        push(&p("mlp.up_proj.weight"), vec![ff, h], None)?;
        push(&p("mlp.down_proj.weight"), vec![h, ff], None)?;
    }
    push("model.norm.weight", vec![h], None)?;
    if !c.tie_word_embeddings {
        push("lm_head.weight", vec![v, h], None)?;
    }
    // Streamed to a temporary file, renamed into place when complete.
    let tmp = out.with_extension("gguf.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| ModelError::file(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    crate::gguf::write(&mut w, &meta, &tensors)?;
    std::io::Write::flush(&mut w).map_err(|e| ModelError::file(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| ModelError::file(out, e))?;
    let mut counts = BTreeMap::new();
    for (_, t) in &tensors {
        *counts.entry(format!("{:?}", t.dtype())).or_default() += 1;
    }
    Ok(counts)
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
