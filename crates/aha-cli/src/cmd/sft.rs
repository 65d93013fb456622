//! `aha sft`: supervised fine-tuning on a JSONL or Parquet dataset (full, or LoRA).

use super::common;
use crate::plot::line_chart;
use aha_train::sft::{self, SftConfig, Template};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SftArgs {
    /// Model directory (config.json, safetensors, tokenizer.json) or a .gguf file (loaded
    /// dense: dequantized to f32).
    #[arg(long)]
    model: PathBuf,
    /// Dataset, JSONL or Parquet: chat `messages` ([{role, content}, ...]; assistant turns
    /// may hold <think> reasoning, or OpenAI `tool_calls` with `tool` results after them and
    /// the row's `tools`), `prompt`/`completion`, or GSM8K `question`/`answer`.
    #[arg(long)]
    dataset: PathBuf,
    /// Output directory: config.json, metrics.jsonl, loss.png, checkpoint/, final/ (the
    /// model as an HF directory, or with LoRA the PEFT adapter), merged/ (--merge).
    #[arg(long, default_value = "sft-out")]
    out: PathBuf,
    /// `chat`: the model's chat template, as `aha chat` renders it; `r1-zero`: DeepSeek-R1-Zero's
    /// plain-text prompt as in the paper (as `aha grpo` and `aha eval --template r1-zero` fill it
    /// in), then the completion and EOS (a GSM8K answer becomes <think> steps </think> <answer>
    /// final </answer>); `r1-zero-short`: its first sentence only, as the built-in tasks' tiny
    /// models use it (`aha zero`, `aha sample --task`); or the path of a Jinja chat template file.
    #[arg(long, default_value = "chat")]
    template: String,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Peak learning rate. Default: 2e-4 with LoRA; full fine-tuning 1e-3 below 50M
    /// parameters, 1e-4 below 1B, else 4e-5.
    #[arg(long, value_parser = super::common::range::positive)]
    lr: Option<f64>,
    /// Warmup, as a fraction of all steps.
    #[arg(long, default_value_t = 0.1, value_parser = super::common::range::unit)]
    warmup_ratio: f64,
    /// Floor of the cosine decay, as a fraction of the peak learning rate.
    #[arg(long, default_value_t = 0.1, value_parser = super::common::range::unit)]
    min_lr_ratio: f64,
    #[arg(long, default_value_t = 0.0, value_parser = super::common::range::non_negative)]
    weight_decay: f64,
    /// Global gradient-norm bound (0: no clipping).
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::non_negative)]
    max_grad_norm: f64,
    /// Examples per optimizer step (the loss is the mean NLL over all their trained tokens).
    #[arg(long, default_value_t = 16, value_parser = super::common::range::count::<usize>)]
    batch_size: usize,
    /// Rows per forward/backward pass (gradients accumulate exactly over them).
    #[arg(long, default_value_t = 4)]
    micro_batch: usize,
    /// Longest sequence in tokens; longer examples are cut.
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Pack several examples into each row of --max-len tokens (own positions, block-diagonal
    /// attention mask: the same log-probs as unpacked).
    #[arg(long)]
    packing: bool,
    /// Hold out this fraction of the dataset for the held-out loss (ignored with
    /// --eval-dataset).
    #[arg(long, default_value_t = 0.05, value_parser = super::common::range::below_one)]
    eval_fraction: f64,
    /// A separate held-out dataset (same shapes as --dataset).
    #[arg(long)]
    eval_dataset: Option<PathBuf>,
    /// Held-out loss every N steps (and at the end).
    #[arg(long, default_value_t = 10)]
    eval_every: u64,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    save_every: u64,
    /// Write the first --dump-count examples as JSONL {"input_ids": [...], "labels": [...]}
    /// (label -100 where no loss is taken) to this file.
    #[arg(long)]
    dump_batches: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    dump_count: usize,
    /// Continue from OUT/checkpoint; the result equals a run that never stopped.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N dataset rows.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    lora: common::LoraArgs,
    /// With LoRA: also write the model with the adapter merged in, as an HF directory, to
    /// OUT/merged.
    #[arg(long)]
    merge: bool,
}

fn template(args: &SftArgs, tok: &aha_text::Tokenizer) -> Result<Template> {
    Ok(match args.template.as_str() {
        "chat" => Template::Chat(Box::new(common::chat_template(&args.model)?)),
        "r1-zero" => Template::r1_zero(),
        "r1-zero-short" => Template::r1_zero_short(),
        path => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("--template: reading the template file {path}"))?;
            Template::Chat(Box::new(
                aha_text::ChatTemplate::new(source, tok.special_tokens().clone())
                    .with_context(|| format!("--template: compiling {path}"))?,
            ))
        }
    })
}

/// OUT/loss.png from OUT/metrics.jsonl: the `loss` of each step and any `eval_loss`.
pub fn plot_loss(out: &Path, title: &str, y_label: &str) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let step = v["step"].as_f64().unwrap_or(0.0);
        if let Some(l) = v.get("loss").and_then(|x| x.as_f64()) {
            train.push((step, l));
        }
        if let Some(l) = v.get("eval_loss").and_then(|x| x.as_f64()) {
            eval.push((step, l));
        }
    }
    let mut series = vec![("train", train)];
    if !eval.is_empty() {
        series.push(("held-out", eval));
    }
    line_chart(&out.join("loss.png"), title, y_label, &series)
}

pub fn run(args: SftArgs) -> Result<()> {
    let lora = args.lora.enabled();
    if args.merge && !lora {
        anyhow::bail!("--merge needs LoRA (--lora-r N); without it OUT/final is the whole model");
    }
    // Dense: a .gguf file is dequantized, since a quantized model cannot train.
    let loaded = common::load_with(&args.model, None, true)?;
    let tok = loaded
        .tokenizer
        .clone()
        .context("aha sft needs a tokenizer (tokenizer.json in the model directory)")?;
    let eos = loaded.eos_ids();
    let tmpl = template(&args, &tok)?;
    let build = |path: &Path, limit| -> Result<(Vec<sft::Example>, sft::BuildStats)> {
        let records = aha_train::data::read_records(path, limit)?;
        sft::examples_from_records(&records, &tmpl, &tok, &eos, args.max_len)
            .with_context(|| format!("rendering {}", path.display()))
    };
    let (examples, stats) = build(&args.dataset, args.limit)?;
    eprintln!(
        "{} rows -> {} examples ({} cut at {} tokens, {} dropped with nothing left to train)",
        stats.rows, stats.examples, stats.truncated, args.max_len, stats.dropped
    );
    if let Some(path) = &args.dump_batches {
        sft::dump_batches(path, &examples, args.dump_count)?;
        eprintln!(
            "wrote the first {} examples to {}",
            args.dump_count,
            path.display()
        );
    }
    let (train, eval) = match &args.eval_dataset {
        Some(p) => (examples, build(p, None)?.0),
        None => sft::split_eval(examples, args.eval_fraction, args.seed),
    };
    let cfg = SftConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        micro_batch: args.micro_batch,
        max_len: args.max_len,
        packing: args.packing,
        lr: args.lr,
        warmup_ratio: args.warmup_ratio,
        min_lr_ratio: args.min_lr_ratio,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        eval_every: args.eval_every,
        save_every: args.save_every,
        progress: true,
        stop_after: None,
    };
    let mut model = loaded.model;
    let ckpt = args.out.join("checkpoint");
    if args.resume {
        if !ckpt.join("trainer.json").is_file() {
            anyhow::bail!("--resume: no checkpoint at {}", ckpt.display());
        }
        let has_adapter = ckpt.join(aha_model::lora::CONFIG_FILE).is_file();
        if lora != has_adapter {
            anyhow::bail!(
                "--resume: the checkpoint at {} {} a LoRA adapter; resume with{} --lora-r",
                ckpt.display(),
                if has_adapter {
                    "holds"
                } else {
                    "does not hold"
                },
                if has_adapter { "" } else { "out" }
            );
        }
    } else if lora {
        args.lora.add_to(&mut model, args.seed)?;
    }
    eprintln!(
        "{} training and {} held-out examples, {} steps",
        train.len(),
        eval.len(),
        cfg.total_steps(train.len())
    );
    let (model, report) = sft::train(model, &train, &eval, &cfg, &args.out, args.resume)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "report": report, "data": stats }))?,
    )?;
    if let Err(e) = plot_loss(&args.out, "SFT loss", "NLL per token") {
        eprintln!("no loss.png: {e:#}");
    }
    let fin = args.out.join("final");
    if model.adapter().is_some() {
        model.save_adapter(&fin)?;
        eprintln!("done: LoRA adapter (PEFT format) in {}", fin.display());
        if args.merge {
            let merged = args.out.join("merged");
            common::save_hf(&model, &args.model, &merged)?;
            eprintln!("merged model in {}", merged.display());
        }
    } else {
        common::save_hf(&model, &args.model, &fin)?;
        eprintln!("done: model in {}", fin.display());
    }
    let evals: Vec<String> = report
        .eval_losses
        .iter()
        .map(|(s, l)| format!("{s}:{l:.4}"))
        .collect();
    let evals = if evals.is_empty() {
        String::new()
    } else {
        format!("; held-out loss by step {}", evals.join(" "))
    };
    match report.final_loss {
        Some(loss) => eprintln!("final train loss {loss:.4}{evals}; {:.0} s", report.wall_s),
        None => eprintln!(
            "nothing left to train: the checkpoint is at step {} of {}{evals}",
            report.resumed_from.unwrap_or(0),
            report.steps
        ),
    }
    Ok(())
}
