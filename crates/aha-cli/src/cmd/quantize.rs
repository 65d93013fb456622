//! `aha quantize`: write a Llama or Qwen2 model directory as a GGUF file (llama.cpp's tensor
//! names and metadata, the tokenizer and chat template included) in q8_0, q4_k, f16, ...

use aha_model::gguf::{self, Value};
use aha_model::weights::Checkpoint;
use aha_model::{config, gguf_llama, DType, Device, Tensor};
use aha_text::gguf::GgufVocab;
use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuantizeArgs {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// q8_0, q4_k, f16 (also f32, bf16, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k).
    #[arg(long = "type", default_value = "q8_0")]
    qtype: String,
    #[arg(long)]
    out: PathBuf,
}

/// llama.cpp's fallback for rows not a multiple of 256 (k-quants need whole super-blocks).
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

fn file_type(t: GgmlDType) -> u32 {
    // llama_ftype
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

pub fn run(args: QuantizeArgs) -> Result<()> {
    let qtype = gguf_llama::parse_quant_type(&args.qtype)
        .with_context(|| format!("unknown --type {}", args.qtype))?;
    let dir = &args.model;
    let cfg_path = dir.join("config.json");
    let cfg = config::read_config(&cfg_path)?;
    let arch = config::architecture(&cfg).context("config.json names no architecture")?;
    if arch != "llama" && arch != "qwen2" {
        bail!("aha quantize writes llama and qwen2 models; this one is {arch}");
    }
    let cfg_model = aha_model::llama::LlamaConfig::from_json(&cfg, &cfg_path)?;
    let (h, nh, kvh, hd) = (
        cfg_model.hidden_size,
        cfg_model.num_attention_heads,
        cfg_model.kv_heads(),
        cfg_model.head_dim(),
    );
    let rope = cfg.get("rope_theta").and_then(|v| v.as_f64()).or_else(|| {
        cfg.pointer("/rope_parameters/rope_theta")
            .and_then(|v| v.as_f64())
    });
    if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        eprintln!("warning: rope_scaling is not written to the GGUF file");
    }
    let vocab =
        GgufVocab::from_hf_dir(dir, cfg_model.vocab_size).context("reading the tokenizer")?;
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
        (a("block_count"), u32v(cfg_model.num_hidden_layers)),
        (a("context_length"), u32v(cfg_model.max_position_embeddings)),
        (a("embedding_length"), u32v(h)),
        (a("feed_forward_length"), u32v(cfg_model.intermediate_size)),
        (a("attention.head_count"), u32v(nh)),
        (a("attention.head_count_kv"), u32v(kvh)),
        (a("attention.key_length"), u32v(hd)),
        (a("attention.value_length"), u32v(hd)),
        (a("rope.dimension_count"), u32v(hd)),
        (
            a("rope.freq_base"),
            Value::F32(rope.unwrap_or(10000.0) as f32),
        ),
        (
            a("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg_model.rms_norm_eps as f32),
        ),
        (a("vocab_size"), u32v(cfg_model.vocab_size)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.pre".into(),
            Value::String(vocab.pre.clone().unwrap_or_default()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                vocab
                    .tokens
                    .iter()
                    .map(|t| Value::String(t.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocab.token_types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                vocab
                    .merges
                    .iter()
                    .map(|t| Value::String(t.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(vocab.add_bos.unwrap_or(false)),
        ),
    ];
    for (k, v) in [
        ("bos", vocab.special.bos),
        ("eos", vocab.special.eos.first().copied()),
        ("unknown", vocab.unk),
        ("padding", vocab.pad),
    ] {
        if let Some(id) = v {
            meta.push((format!("tokenizer.ggml.{k}_token_id"), Value::U32(id)));
        }
    }
    if let Some(t) = &vocab.chat_template {
        meta.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }

    let mut ckpt = Checkpoint::read_dir(dir, DType::F32, &Device::Cpu)?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    // llama.cpp's names from the one HF <-> GGUF map (aha_model::gguf::names).
    let mut push = |ckpt: &mut Checkpoint,
                    hf: &str,
                    shape: Vec<usize>,
                    permute_heads: Option<usize>|
     -> Result<()> {
        let gg = gguf::names::gguf_name(hf).with_context(|| format!("no GGUF name for {hf}"))?;
        let mut t: Tensor = ckpt.take(hf, shape.clone())?;
        if let Some(heads) = permute_heads {
            let bytes: Vec<u8> = t
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let p = gguf::permute_rows(&bytes, shape[0], heads, false)?;
            let v: Vec<f32> = p
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            t = Tensor::from_vec(v, shape.clone(), &Device::Cpu)?;
        }
        let dt = match shape.as_slice() {
            [_] => GgmlDType::F32,
            [.., row] => fallback(qtype, *row),
            [] => bail!("{hf}: a scalar weight"),
        };
        tensors.push((gg, QTensor::quantize(&t, dt)?));
        Ok(())
    };
    let llama = arch == "llama";
    let v = cfg_model.vocab_size;
    let (ff, qn, kvn) = (cfg_model.intermediate_size, nh * hd, kvh * hd);
    push(&mut ckpt, "model.embed_tokens.weight", vec![v, h], None)?;
    for i in 0..cfg_model.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        push(&mut ckpt, &p("input_layernorm.weight"), vec![h], None)?;
        push(
            &mut ckpt,
            &p("self_attn.q_proj.weight"),
            vec![qn, h],
            llama.then_some(nh),
        )?;
        push(
            &mut ckpt,
            &p("self_attn.k_proj.weight"),
            vec![kvn, h],
            llama.then_some(kvh),
        )?;
        push(&mut ckpt, &p("self_attn.v_proj.weight"), vec![kvn, h], None)?;
        push(&mut ckpt, &p("self_attn.o_proj.weight"), vec![h, qn], None)?;
        if !llama {
            for (x, n) in [("q", qn), ("k", kvn), ("v", kvn)] {
                push(
                    &mut ckpt,
                    &p(&format!("self_attn.{x}_proj.bias")),
                    vec![n],
                    None,
                )?;
            }
        } else if cfg_model.attention_bias {
            bail!("llama models with attention biases are not supported by aha quantize");
        }
        push(
            &mut ckpt,
            &p("post_attention_layernorm.weight"),
            vec![h],
            None,
        )?;
        push(&mut ckpt, &p("mlp.gate_proj.weight"), vec![ff, h], None)?;
        push(&mut ckpt, &p("mlp.up_proj.weight"), vec![ff, h], None)?;
        push(&mut ckpt, &p("mlp.down_proj.weight"), vec![h, ff], None)?;
    }
    push(&mut ckpt, "model.norm.weight", vec![h], None)?;
    if !cfg_model.tie_word_embeddings {
        push(&mut ckpt, "lm_head.weight", vec![v, h], None)?;
    }
    let tmp = args.out.with_extension("gguf.tmp");
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        gguf::write(&mut f, &meta, &tensors)?;
        std::io::Write::flush(&mut f)?;
    }
    std::fs::rename(&tmp, &args.out)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (_, t) in &tensors {
        *counts.entry(format!("{:?}", t.dtype())).or_default() += 1;
    }
    eprintln!(
        "wrote {} ({} tensors: {counts:?})",
        args.out.display(),
        tensors.len()
    );
    Ok(())
}
