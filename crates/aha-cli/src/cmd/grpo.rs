//! `aha grpo`: train a policy with GRPO on a JSONL or Parquet dataset with rule-based rewards.

use super::common;
use aha_train::grpo::{
    AdvantageNorm, GrpoConfig, GrpoTrainer, LossAgg, Prompt, SpecReward, StepMetrics,
};
use aha_train::rollout::{Remote, RemoteConfig, WeightSync};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

use aha_train::tasks::R1_ZERO_TEMPLATE;

#[derive(Clone, Copy, ValueEnum)]
pub enum Template {
    /// DeepSeek-R1-Zero's plain-text template.
    R1Zero,
    /// The model's own chat template (tokenizer_config.json), the question as a user message.
    Chat,
    /// The question as it is.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AdvArg {
    Group,
    NoStd,
    Batch,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum SyncArg {
    /// The whole model (an adapter merged in) as a model directory, loaded by
    /// POST /update_weights_from_disk (aha serve, SGLang).
    Full,
    /// The PEFT adapter, loaded by POST /v1/load_lora_adapter (aha serve, vLLM); needs --lora-r.
    Lora,
    /// Servers keep their weights (they do not sample the policy being trained).
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AggArg {
    Sequence,
    Token,
    Constant,
}

#[derive(Args)]
pub struct GrpoArgs {
    /// Model directory (config.json, safetensors, tokenizer.json) or a .gguf file (loaded
    /// dense: dequantized to f32).
    #[arg(long)]
    model: PathBuf,
    /// Dataset: JSONL, or Parquet as Hugging Face datasets store it; GSM8K's
    /// {"question", "answer"} (also "prompt"/"problem", "gold"/"solution"/"ground_truth").
    #[arg(long)]
    dataset: PathBuf,
    /// Reward spec: comma-separated names with optional weights, e.g. accuracy,format:0.5.
    /// Also json_schema:FILE (the answer after the reasoning is JSON valid under the schema),
    /// json_object, and with --template chat tool_call (the answer's tool calls equal the
    /// row's `tool_calls`; rows may carry `tools`, which the template shows the model).
    #[arg(long, default_value = "accuracy,format")]
    reward: String,
    #[arg(long, value_enum, default_value = "r1-zero")]
    template: Template,
    /// G: samples per prompt.
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    #[arg(long, default_value_t = 100, value_parser = super::common::range::count::<u64>)]
    steps: u64,
    /// Prompts per step.
    #[arg(long, default_value_t = 2, value_parser = super::common::range::count::<usize>)]
    batch_prompts: usize,
    /// Peak learning rate; after warmup it follows a cosine over --steps down to
    /// --min-lr-ratio x lr. The schedule counts GRPO steps: all --num-iterations passes of a
    /// step use that step's learning rate.
    #[arg(long, default_value_t = 1e-6, value_parser = super::common::range::positive)]
    lr: f64,
    /// Linear warmup length, in GRPO steps.
    #[arg(long, default_value_t = 0)]
    warmup_steps: u64,
    /// Floor of the cosine decay, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1, value_parser = super::common::range::unit)]
    min_lr_ratio: f64,
    #[arg(long, default_value_t = 0.0, value_parser = super::common::range::non_negative)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::non_negative)]
    max_grad_norm: f64,
    /// KL coefficient (0 keeps no reference model).
    #[arg(long, default_value_t = 0.001, value_parser = super::common::range::non_negative)]
    beta: f64,
    #[arg(long, default_value_t = 0.2, value_parser = super::common::range::below_one)]
    eps_low: f64,
    /// Upper clip bound (DAPO's clip-higher: 0.28).
    #[arg(long, default_value_t = 0.2, value_parser = super::common::range::non_negative)]
    eps_high: f64,
    #[arg(long, value_enum, default_value = "group")]
    advantage: AdvArg,
    #[arg(long, value_enum, default_value = "sequence")]
    loss_agg: AggArg,
    /// Optimisation passes per sampled batch.
    #[arg(long, default_value_t = 1)]
    num_iterations: usize,
    /// Sequences per forward/backward pass.
    #[arg(long, default_value_t = 8)]
    micro_batch: usize,
    /// Maximum completion tokens.
    #[arg(long, default_value_t = 256, value_parser = super::common::range::count::<usize>)]
    max_tokens: usize,
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::temperature)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::top_p)]
    top_p: f32,
    /// No loss on completions cut at --max-tokens (they stay in the loss normaliser, so the
    /// other rows keep their weight).
    #[arg(long)]
    mask_truncated: bool,
    /// Skip the groups whose rewards are all equal (zero advantages): saves their compute;
    /// with --beta > 0 their rows also get no KL penalty. Not DAPO's dynamic sampling: no
    /// extra prompts are sampled to refill the batch.
    #[arg(long)]
    drop_zero_std_groups: bool,
    /// Reset the reference model to the policy every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    ref_reset_every: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    lora: common::LoraArgs,
    /// With LoRA: also write the model with the adapter merged in, as an HF directory, to
    /// OUT/merged.
    #[arg(long)]
    merge: bool,
    /// Output directory: metrics.jsonl, checkpoint/ (latest: the model, or with LoRA the PEFT
    /// adapter, plus optimizer and trainer state), final/ (the model, or with LoRA the PEFT
    /// adapter: adapter_config.json, adapter_model.safetensors), merged/ (--merge).
    #[arg(long, default_value = "grpo-out")]
    out: PathBuf,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 50)]
    save_every: u64,
    /// Print a few sampled completions every N steps (0: never).
    #[arg(long, default_value_t = 10)]
    samples_every: u64,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    resume: bool,
    /// Use only the first N dataset rows.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Rollouts on OpenAI-compatible servers (aha serve, vLLM, SGLang) instead of in-process.
#[derive(Args)]
#[command(next_help_heading = "Remote rollouts")]
pub struct RemoteArgs {
    /// Sample on this server (repeat for several: each prompt's group goes to the least busy
    /// live one; a failed server is skipped, retried later and re-synced when it is back).
    /// Start them with `aha serve --logprobs-mode processed_logprobs` for exact
    /// importance weights.
    #[arg(long = "rollout-url", value_name = "URL")]
    urls: Vec<String>,
    /// API key of the servers (sent as a bearer token).
    #[arg(long, env = "AHA_ROLLOUT_API_KEY")]
    rollout_api_key: Option<String>,
    /// How new weights reach the servers after each step (default: lora with --lora-r, else
    /// full).
    #[arg(long, value_enum)]
    sync: Option<SyncArg>,
    /// Where synced weights are written, one directory per version (default OUT/sync; must be
    /// readable by the servers at the same path).
    #[arg(long)]
    sync_dir: Option<PathBuf>,
    /// Generate step t+1's rollouts while step t trains (one step stale).
    #[arg(long = "async")]
    overlap: bool,
    /// Drop rollouts from weights more than K steps older than the policy.
    #[arg(long, default_value_t = 1)]
    max_staleness: u64,
    /// Truncated importance sampling cap: weight each token by min(p_policy / p_sampler, C)
    /// when servers report log-probs (0: off).
    #[arg(long, default_value_t = 2.0, value_parser = super::common::range::positive)]
    tis_cap: f64,
    /// Longest wait for one request, in seconds.
    #[arg(long, default_value_t = 600)]
    rollout_timeout: u64,
}

struct Row {
    question: String,
    answer: String,
    /// The row's `tools` (OpenAI's list), shown to the model by its chat template.
    tools: Option<serde_json::Value>,
}

fn read_dataset(path: &Path, limit: Option<usize>) -> Result<Vec<Row>> {
    let records = aha_train::data::read_records(path, limit)?;
    Ok(aha_train::data::question_answer(&records, path)?
        .into_iter()
        .zip(&records)
        .map(|((question, answer), r)| Row {
            question,
            answer,
            tools: r.get("tools").filter(|t| t.is_array()).cloned(),
        })
        .collect())
}

fn print_step(m: &StepMetrics, steps: u64) {
    let opt = |x: Option<f32>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    eprintln!(
        "step {}/{} reward {:.3}±{:.3} acc {} fmt {} len {:.0}/{} trunc {:.2} kl {:.4} ent {:.3} clip {:.3} gnorm {:.3} lr {:.2e} | {:.0} rollout tok/s {:.0} train tok/s | sample {:.1}s score {:.2}s train {:.1}s",
        m.step, steps, m.reward_mean, m.reward_std, opt(m.accuracy), opt(m.format_rate), m.completion_len_mean, m.completion_len_max, m.truncated_rate, m.kl, m.entropy, m.clip_frac, m.grad_norm, m.lr,
        m.rollout_tokens_per_s, m.train_tokens_per_s, m.time_sample_s, m.time_score_s, m.time_train_s
    );
    for s in &m.samples {
        eprintln!(
            "--- sample (prompt {}, reward {:.2}) ---\n{}\n---",
            s.prompt, s.reward, s.text
        );
    }
}

pub fn run(args: GrpoArgs) -> Result<()> {
    let lora = args.lora.enabled();
    if args.merge && !lora {
        anyhow::bail!("--merge needs LoRA (--lora-r N); without it OUT/final is the whole model");
    }
    let rows = read_dataset(&args.dataset, args.limit)?;
    let ckpt = args.out.join("checkpoint");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let tool_format = match args.template {
        Template::Chat => common::chat_template(&args.model)?.tool_call_format(),
        _ => None,
    };
    if rows.iter().any(|r| r.tools.is_some()) && args.template != Template::Chat {
        anyhow::bail!("rows with `tools` need --template chat (the model's template shows them)");
    }
    let reward = || -> Result<Box<dyn aha_train::grpo::Rewarder>> {
        Ok(Box::new(SpecReward::parse_with(&args.reward, tool_format)?))
    };
    let cfg = GrpoConfig {
        group_size: args.group_size,
        sampling: aha_engine::SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            ..Default::default()
        },
        max_tokens: args.max_tokens,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        total_steps: args.steps,
        min_lr_ratio: args.min_lr_ratio,
        adam: aha_train::optim::AdamWConfig {
            weight_decay: args.weight_decay,
            ..Default::default()
        },
        max_grad_norm: args.max_grad_norm,
        beta: args.beta,
        eps_low: args.eps_low,
        eps_high: args.eps_high,
        advantage: match args.advantage {
            AdvArg::Group => AdvantageNorm::Group,
            AdvArg::NoStd => AdvantageNorm::NoStd,
            AdvArg::Batch => AdvantageNorm::Batch,
        },
        loss_agg: match args.loss_agg {
            AggArg::Sequence => LossAgg::Sequence,
            AggArg::Token => LossAgg::Token,
            AggArg::Constant => LossAgg::Constant,
        },
        num_iterations: args.num_iterations,
        micro_batch: args.micro_batch,
        mask_truncated: args.mask_truncated,
        drop_zero_std_groups: args.drop_zero_std_groups,
        ref_reset_every: args.ref_reset_every,
        seed: args.seed,
        samples_every: args.samples_every,
        samples_count: 2,
        max_staleness: args.remote.max_staleness,
        tis_cap: args.remote.tis_cap,
        ..Default::default()
    };
    // Dense: a .gguf file is dequantized, since a quantized model cannot train.
    let loaded = common::load_with(&args.model, None, true)?;
    let eos = loaded.eos_ids();
    let tokenizer = loaded
        .tokenizer
        .clone()
        .context("aha grpo needs a tokenizer.json in the model directory")?;
    let mut cfg = cfg;
    cfg.stop_token_ids = eos;
    let has_adapter = ckpt.join(aha_model::lora::CONFIG_FILE).is_file();
    let mut trainer = if args.resume {
        if !ckpt.join("trainer.json").is_file() {
            anyhow::bail!("--resume: no checkpoint at {}", ckpt.display());
        }
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
        let t = if lora {
            // The base from --model, the adapter from the checkpoint.
            GrpoTrainer::resume_with(
                &ckpt,
                loaded.model,
                Some(tokenizer.clone()),
                reward()?,
                Some(cfg),
            )
            .with_context(|| format!("resuming from {}", ckpt.display()))?
        } else {
            drop(loaded);
            GrpoTrainer::resume(
                &ckpt,
                Some(tokenizer.clone()),
                reward()?,
                Some(cfg),
                &aha_model::LoadOptions::default(),
            )?
        };
        eprintln!("resumed from {} at step {}", ckpt.display(), t.step);
        t
    } else {
        let mut model = loaded.model;
        if lora {
            args.lora.add_to(&mut model, args.seed)?;
        }
        GrpoTrainer::new(model, Some(tokenizer.clone()), reward()?, cfg)?
    };
    // A resumed run keeps the lines of the steps already done and rewrites the rest.
    let mut metrics = aha_train::trainer::MetricsSink::open(
        &args.out.join("metrics.jsonl"),
        args.resume.then_some(trainer.step),
    )?;
    let chat = match args.template {
        Template::Chat => Some(common::chat_template(&args.model)?),
        _ => None,
    };
    let render = |row: &Row| -> Result<Vec<u32>> {
        let q = row.question.as_str();
        let text = match args.template {
            Template::R1Zero => R1_ZERO_TEMPLATE.replace("{prompt}", q),
            Template::Chat => chat
                .as_ref()
                .context("no chat template")?
                .render_with_tools(
                    &[serde_json::json!({"role": "user", "content": q})],
                    row.tools.as_ref(),
                    true,
                )?,
            Template::None => q.to_string(),
        };
        Ok(tokenizer.encode(&text, args.template != Template::Chat)?)
    };
    if let Some(remote) = remote_config(&args)? {
        eprintln!(
            "rollouts on {} ({} sync{})",
            remote.urls.join(", "),
            match remote.sync {
                WeightSync::Full => "full-weight",
                WeightSync::Lora => "LoRA",
                WeightSync::None => "no",
            },
            if args.remote.overlap {
                ", asynchronous"
            } else {
                ""
            }
        );
        trainer.rollouts = Box::new(Remote::new(remote)?);
    }
    let bar = aha_train::trainer::progress_bar(args.steps);
    bar.set_position(trainer.step);
    let prompts_at = |step: u64| -> aha_train::Result<Vec<Prompt>> {
        let idx = aha_train::data::batch_indices(rows.len(), args.batch_prompts, args.seed, step);
        idx.iter()
            .map(|&i| {
                Ok(Prompt {
                    ids: render(&rows[i])
                        .map_err(|e| aha_train::TrainError::Invalid(format!("{e:#}")))?,
                    gold: Some(rows[i].answer.clone()),
                })
            })
            .collect()
    };
    trainer.run(args.steps, args.remote.overlap, prompts_at, |trainer, m| {
        metrics.write(m)?;
        bar.suspend(|| print_step(m, args.steps));
        bar.set_position(trainer.step);
        bar.set_message(format!("reward {:.3}", m.reward_mean));
        if (args.save_every > 0 && trainer.step % args.save_every == 0)
            || trainer.step == args.steps
        {
            trainer.save_checkpoint(&ckpt)?;
        }
        Ok(())
    })?;
    bar.finish();
    let fin = args.out.join("final");
    if trainer.model().adapter().is_some() {
        trainer.model().save_adapter(&fin)?;
        eprintln!("done: LoRA adapter (PEFT format) in {}", fin.display());
        if args.merge {
            let merged = args.out.join("merged");
            common::save_hf(trainer.model(), &args.model, &merged)?;
            eprintln!("merged model in {}", merged.display());
        }
    } else {
        common::save_hf(trainer.model(), &args.model, &fin)?;
        eprintln!("done: model in {}", fin.display());
    }
    eprintln!("checkpoint in {}", ckpt.display());
    Ok(())
}

/// The remote rollout settings, or None for in-process rollouts.
fn remote_config(args: &GrpoArgs) -> Result<Option<RemoteConfig>> {
    let r = &args.remote;
    if r.urls.is_empty() {
        if r.overlap || r.sync.is_some() || r.sync_dir.is_some() {
            anyhow::bail!("--async, --sync and --sync-dir need --rollout-url");
        }
        return Ok(None);
    }
    let lora = args.lora.enabled();
    let sync = match r.sync {
        Some(SyncArg::Lora) if !lora => {
            anyhow::bail!("--sync lora needs LoRA training (--lora-r N)")
        }
        Some(SyncArg::Lora) => WeightSync::Lora,
        Some(SyncArg::Full) => WeightSync::Full,
        Some(SyncArg::None) => WeightSync::None,
        None if lora => WeightSync::Lora,
        None => WeightSync::Full,
    };
    Ok(Some(RemoteConfig {
        urls: r.urls.clone(),
        api_key: r.rollout_api_key.clone(),
        timeout: std::time::Duration::from_secs(r.rollout_timeout.max(1)),
        sync,
        sync_dir: r.sync_dir.clone().unwrap_or_else(|| args.out.join("sync")),
        ..Default::default()
    }))
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}
