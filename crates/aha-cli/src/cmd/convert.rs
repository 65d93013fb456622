//! `aha convert`: write a model as a dense Hugging Face directory: a GGUF Llama/Qwen2 file
//! dequantized to f32 (with its tokenizer and chat template), optionally with a LoRA
//! adapter merged in.

use super::common;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    /// A .gguf file (llama or qwen2) or a model directory.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter directory to merge into the weights (W += alpha/r B A).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Output directory: config.json, model.safetensors (f32), tokenizer.json,
    /// tokenizer_config.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let loaded = common::load_with(&args.model, args.adapter.as_deref(), true)?;
    common::save_hf(&loaded.model, &args.model, &args.out)?;
    eprintln!(
        "wrote {} ({} parameters{})",
        args.out.display(),
        loaded.model.params().count(),
        if args.adapter.is_some() {
            ", adapter merged"
        } else {
            ""
        }
    );
    Ok(())
}
