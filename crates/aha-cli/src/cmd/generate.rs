//! `aha generate`: complete prompts, batched.

use super::common::{self, parse_ids, Ids};
use aha_engine::{generate, GenerateOptions, SamplingParams};
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model directory (config.json, safetensors, optionally tokenizer.json) or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) to run
    /// the model with, e.g. OUT/final of `aha grpo --lora-r 8`. A .gguf model is then
    /// dequantized to f32.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Prompt text (needs a tokenizer in the model directory). Repeat for a batch.
    #[arg(long, conflicts_with = "ids")]
    prompt: Vec<String>,
    /// Prompt as token ids, e.g. 1,2,3. Repeat for a batch; no tokenizer needed.
    #[arg(long, value_parser = parse_ids)]
    ids: Vec<Ids>,
    /// Wrap each --prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.0, value_parser = super::common::range::temperature)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::top_p)]
    top_p: f32,
    /// 0 keeps all tokens.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0.0, value_parser = super::common::range::unit_f32)]
    min_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating past EOS tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// One JSON line per prompt: {"token_ids", "text", "finish_reason"}, plus "reasoning" and
    /// "content" (the text split at `</think>`) when decoding text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    constraint: common::ConstraintArgs,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if args.prompt.is_empty() && args.ids.is_empty() {
        anyhow::bail!("give a prompt with --prompt TEXT or --ids 1,2,3");
    }
    let loaded = common::load_with(&args.model, args.adapter.as_deref(), false)?;
    // Prompt texts, when given as text (to tell whether they open the reasoning).
    let mut texts: Vec<String> = Vec::new();
    let prompts: Vec<Vec<u32>> = if args.ids.is_empty() {
        let tok = loaded.tokenizer_or_ids()?;
        let template = if args.chat {
            Some(common::chat_template(&args.model)?)
        } else {
            None
        };
        texts = args
            .prompt
            .iter()
            .map(|p| match &template {
                Some(t) => Ok(t.render(&[aha_text::ChatMessage::user(p.as_str())], true)?),
                None => Ok(p.clone()),
            })
            .collect::<Result<_>>()?;
        texts
            .iter()
            .map(|t| tok.encode(t, template.is_none()))
            .collect::<std::result::Result<_, _>>()?
    } else {
        args.ids.iter().map(|i| i.0.clone()).collect()
    };
    let constraint = match &loaded.tokenizer {
        Some(tok) => {
            let opened =
                !texts.is_empty() && texts.iter().all(|t| aha_text::prompt_opens_reasoning(t));
            args.constraint.build(tok, opened)?
        }
        None if args.constraint.wants_constraint() => {
            anyhow::bail!("constrained decoding needs the model's tokenizer")
        }
        None => None,
    };
    let opts = GenerateOptions {
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
        },
        max_tokens: args.max_tokens,
        seed: args.seed,
        stop_token_ids: loaded.eos_ids(),
        stop_strings: args.stop.clone(),
        ignore_eos: args.ignore_eos,
        constraint,
    };
    // A single prompt streams to the terminal as it is generated.
    let stream = !args.json && prompts.len() == 1 && loaded.tokenizer.is_some();
    let mut stdout = std::io::stdout();
    let completions = generate(
        &loaded.model,
        loaded.tokenizer.as_ref(),
        &prompts,
        &opts,
        |e| {
            if stream {
                let _ = write!(stdout, "{}", e.text);
                let _ = stdout.flush();
            }
        },
    )?;
    if stream {
        println!();
        return Ok(());
    }
    for (i, c) in completions.iter().enumerate() {
        if args.json {
            let mut line = serde_json::json!({"token_ids": c.token_ids, "text": c.text, "finish_reason": c.finish_reason});
            if let Some(text) = &c.text {
                let opened = texts
                    .get(i)
                    .is_some_and(|p| aha_text::prompt_opens_reasoning(p));
                let split = aha_text::split_reasoning(text, opened);
                line["reasoning"] = split.reasoning.into();
                line["content"] = split.content.into();
            }
            println!("{line}");
        } else {
            match &c.text {
                Some(t) => println!("[{i}] {t}"),
                None => println!("[{i}] {:?}", c.token_ids),
            }
        }
    }
    Ok(())
}
