//! `aha logprobs`: score a sequence token by token.

use super::common::{self, parse_ids, Ids};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct LogprobsArgs {
    /// Model directory or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) to score
    /// with. A .gguf model is then dequantized to f32.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Text to score (tokenized with special tokens, e.g. BOS).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<String>,
    /// Token ids to score, e.g. 1,2,3.
    #[arg(long, value_parser = parse_ids)]
    ids: Option<Ids>,
    /// Print {"token_ids", "logprobs": [null, lp1, ...], "perplexity"}.
    #[arg(long)]
    json: bool,
    /// Also write the logits as a safetensors file with one f32 tensor `logits` [len, vocab].
    #[arg(long)]
    dump_logits: Option<PathBuf>,
}

pub fn run(args: LogprobsArgs) -> Result<()> {
    let loaded = common::load_with(&args.model, args.adapter.as_deref(), false)?;
    let ids = match (&args.ids, &args.text) {
        (Some(ids), _) => ids.0.clone(),
        (None, Some(text)) => loaded.tokenizer_or_ids()?.encode(text, true)?,
        (None, None) => anyhow::bail!("give --text or --ids"),
    };
    if ids.is_empty() {
        anyhow::bail!("nothing to score: the text encodes to no tokens");
    }
    let vocab = loaded.model.vocab_size();
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        anyhow::bail!("token id {bad} is outside the vocabulary (size {vocab})");
    }
    let logits = aha_engine::full_logits(&loaded.model, &ids)?;
    let scored = aha_engine::score(&loaded.model, std::slice::from_ref(&ids))?.remove(0);
    if let Some(path) = &args.dump_logits {
        let mut map = std::collections::HashMap::new();
        map.insert("logits".to_string(), logits.contiguous()?);
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let nll: f64 = scored.iter().map(|&l| -(l as f64)).sum();
    let perplexity = if scored.is_empty() {
        None
    } else {
        Some((nll / scored.len() as f64).exp())
    };
    if args.json {
        let lps: Vec<Option<f32>> = std::iter::once(None)
            .chain(scored.iter().map(|&l| Some(l)))
            .collect();
        println!(
            "{}",
            serde_json::json!({"token_ids": ids, "logprobs": lps, "perplexity": perplexity})
        );
        return Ok(());
    }
    let tok = loaded.tokenizer.as_ref();
    println!("{:>5}  {:>8}  {:>10}  token", "pos", "id", "logprob");
    for (i, &id) in ids.iter().enumerate() {
        let piece = tok.and_then(|t| t.id_to_token(id)).unwrap_or_default();
        let lp = if i == 0 {
            "-".to_string()
        } else {
            format!("{:.4}", scored[i - 1])
        };
        println!("{i:>5}  {id:>8}  {lp:>10}  {piece:?}");
    }
    if let Some(p) = perplexity {
        println!("perplexity {p:.4} over {} tokens", scored.len());
    }
    Ok(())
}
