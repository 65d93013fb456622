//! `aha quantize`: write a Llama or Qwen2 model directory as a GGUF file (llama.cpp's tensor
//! names and metadata, the tokenizer and chat template included) in q8_0, q4_k, f16, ...

use aha_model::{config, gguf_llama};
use aha_text::gguf::GgufVocab;
use anyhow::{Context, Result};
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

pub fn run(args: QuantizeArgs) -> Result<()> {
    let qtype = gguf_llama::parse_quant_type(&args.qtype)
        .with_context(|| format!("unknown --type {}", args.qtype))?;
    let dir = &args.model;
    // Writing into the model directory over one of its files (its weights) would destroy
    // the source.
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if args.out.exists() && out_dir.canonicalize().ok() == dir.canonicalize().ok() {
        anyhow::bail!(
            "--out {} would overwrite a file of the model being quantized: write elsewhere",
            args.out.display()
        );
    }
    let cfg_path = dir.join("config.json");
    let cfg = config::read_config(&cfg_path)?;
    let vocab_size = cfg["vocab_size"]
        .as_u64()
        .with_context(|| format!("{}: no vocab_size", cfg_path.display()))?;
    let vocab =
        GgufVocab::from_hf_dir(dir, vocab_size as usize).context("reading the tokenizer")?;
    let counts = gguf_llama::write(dir, qtype, vocab.metadata(), &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} tensors: {counts:?})",
        args.out.display(),
        counts.values().sum::<usize>()
    );
    Ok(())
}
