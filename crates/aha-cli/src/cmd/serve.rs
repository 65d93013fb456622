//! `aha serve`: an OpenAI-compatible HTTP server (see the aha-serve crate).

use super::common;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Model directory (config.json, safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* (default: the AHA_API_KEY variable).
    #[arg(long, env = "AHA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Most sequences decoding together (also the largest n).
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Context length per sequence (prompt + completion tokens).
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// Requests that may wait beyond a full batch; more get 503.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// max_tokens for requests that give none (capped by the context).
    #[arg(long, default_value_t = 1024, value_parser = super::common::range::count::<usize>)]
    default_max_tokens: usize,
    /// The model name clients see (default: the file or directory name).
    #[arg(long)]
    name: Option<String>,
    /// What reported log-probs are of: raw_logprobs (the model's distribution) or
    /// processed_logprobs (the logits divided by the request's temperature, as sampled
    /// before top-k/top-p: what an RL trainer recomputes). vLLM's names.
    #[arg(long, default_value = "raw_logprobs",
          value_parser = ["raw_logprobs", "processed_logprobs"])]
    logprobs_mode: String,
    /// The weight version responses report until the first update (see docs/serve-admin.md).
    #[arg(long, default_value = "0")]
    weight_version: String,
    /// On SIGINT/SIGTERM, seconds requests in flight may still run before they are
    /// cancelled: unfinished choices then end with finish_reason "length" (streams with
    /// `[DONE]`), and requests without a token yet get 503. New connections are refused at once;
    /// a second signal cancels the requests in flight without waiting for the rest of the grace.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = super::common::range::non_negative)]
    shutdown_grace: f64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let loaded = common::load(&args.model)?;
    let eos_token_ids = loaded.eos_ids();
    let tokenizer = loaded.tokenizer()?.clone();
    let template = match common::chat_template(&args.model) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("no chat template ({e:#}): /v1/chat/completions will answer 400");
            None
        }
    };
    let model_name = args.name.unwrap_or_else(|| {
        args.model
            .file_name()
            .map_or_else(|| "aha".into(), |n| n.to_string_lossy().into_owned())
    });
    let vocab_size = loaded.model.vocab_size();
    let cfg = aha_serve::ServeConfig {
        model_name,
        api_key: args.api_key,
        max_batch: args.max_batch,
        context: args.ctx,
        max_queue: args.max_queue,
        default_max_tokens: args.default_max_tokens,
        logprobs_mode: aha_serve::LogprobsMode::parse(&args.logprobs_mode)
            .context("--logprobs-mode: raw_logprobs or processed_logprobs")?,
        weight_version: args.weight_version,
        shutdown_grace: std::time::Duration::try_from_secs_f64(args.shutdown_grace)
            .map_err(|e| anyhow::anyhow!("--shutdown-grace {}: {e}", args.shutdown_grace))?,
    };
    // Constraints need each token's bytes; a vocabulary aha cannot read that way only
    // turns them off (requests asking for one get a clear 400).
    let constrainer = match aha_engine::Constrainer::new(&tokenizer) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("constrained decoding is off for this model: {e}");
            None
        }
    };
    let assets = aha_serve::Assets {
        constrainer,
        tokenizer,
        template,
        eos_token_ids,
        vocab_size,
        logits_processor: None,
    };
    aha_serve::serve(loaded.model, assets, cfg, &args.host, args.port).context("aha serve")
}
