//! `aha pretrain`: train a tiny base model from scratch on a built-in task's corpus, then
//! evaluate it on the task's held-out problems.

use aha_train::eval::greedy::{self, EvalOptions};
use aha_train::pretrain::{self, PretrainConfig};
use aha_train::tasks::Task;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PretrainArgs {
    /// Output model directory (config.json, model.safetensors, tokenizer.json, ...).
    #[arg(long)]
    out: PathBuf,
    /// Built-in task, optionally with a difficulty: arithmetic, arithmetic:4, countdown:2, json.
    #[arg(long, default_value = "arithmetic:2")]
    task: Task,
    /// Optimizer steps (default: the built-in config's).
    #[arg(long, value_parser = super::common::range::count::<usize>)]
    steps: Option<usize>,
    /// Documents per step.
    #[arg(long, value_parser = super::common::range::count::<usize>)]
    batch_size: Option<usize>,
    /// Documents per forward/backward pass (a step's passes run on parallel threads; the
    /// result does not depend on the thread count). 0: the whole step in one pass.
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Pad each pass's documents to its longest instead of packing them into one row (the
    /// bases of earlier versions; packed passes take about 0.8x the time).
    #[arg(long)]
    padded: bool,
    /// Peak learning rate.
    #[arg(long, value_parser = super::common::range::positive)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hidden size (the MLP is 3x, heads of 32).
    #[arg(long, value_parser = hidden)]
    hidden: Option<usize>,
    #[arg(long, value_parser = super::common::range::count::<usize>)]
    layers: Option<usize>,
    /// BPE vocabulary size.
    #[arg(long, value_parser = super::common::range::count::<usize>)]
    vocab: Option<usize>,
    /// Corpus mix as key=value shares over the default, e.g.
    /// `formatted=0.5,mixed_language=0` (keys: step_by_step, direct, slip, drill, formatted,
    /// second_language, mixed_language).
    #[arg(long)]
    mix: Option<String>,
    /// Held-out problems to evaluate on at the end (0: skip).
    #[arg(long, default_value_t = 200)]
    eval_n: usize,
    /// Also evaluate with sampling at this temperature (0: greedy only).
    #[arg(long, default_value_t = 1.0, value_parser = super::common::range::temperature)]
    eval_temperature: f32,
    /// Print this many evaluated completions.
    #[arg(long, default_value_t = 4)]
    show: usize,
    /// Print the config as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

/// `--hidden`: at least 1, and whole heads of the size it gives them.
fn hidden(s: &str) -> std::result::Result<usize, String> {
    let h = super::common::range::count::<usize>(s)?;
    PretrainConfig::default()
        .with_hidden(h)
        .check()
        .map(|()| h)
        .map_err(|e| {
            let below = h / 32 * 32;
            format!("{e} (a head per 32): e.g. {below} or {}", below + 32)
        })
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let mut cfg = PretrainConfig {
        task: args.task,
        seed: args.seed,
        ..PretrainConfig::default()
    };
    if let Some(s) = args.steps {
        cfg.steps = s;
        cfg.warmup_steps = cfg.warmup_steps.min(s / 5 + 1);
    }
    if let Some(b) = args.batch_size {
        cfg.batch_size = b;
    }
    if let Some(m) = args.micro_batch {
        cfg.micro_batch = m;
    }
    cfg.packed &= !args.padded;
    if let Some(lr) = args.lr {
        cfg.lr = lr;
    }
    if let Some(h) = args.hidden {
        cfg = cfg.with_hidden(h);
    }
    if let Some(v) = args.vocab {
        cfg.vocab_size = v;
    }
    if let Some(m) = &args.mix {
        // key=value pairs over the default mix.
        let mut mix = serde_json::to_value(cfg.mix)?;
        for pair in m.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("--mix: {pair:?} is not key=value"))?;
            let v: f32 = v.trim().parse().with_context(|| format!("--mix {k}"))?;
            anyhow::ensure!(
                mix.get(k.trim()).is_some(),
                "--mix: unknown share {k:?} (known: {})",
                mix.as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            );
            mix[k.trim()] = serde_json::json!(v);
        }
        cfg.mix = serde_json::from_value(mix)?;
    }
    if let Some(l) = args.layers {
        cfg.num_layers = l;
    }
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    eprintln!(
        "pretraining a base for {} into {} ({} steps x {} documents)",
        cfg.task,
        args.out.display(),
        cfg.steps,
        cfg.batch_size
    );
    let report = pretrain::pretrain(&cfg, &args.out, true).context("pretraining")?;
    println!(
        "pretrained {} parameters (vocab {}) in {:.1}s: {} tokens, loss {:.3} -> {:.3}",
        report.params,
        report.vocab_size,
        report.seconds,
        report.tokens,
        report.first_loss,
        report.final_loss
    );
    if args.eval_n == 0 {
        return Ok(());
    }
    let model = aha_model::Model::load(&args.out, &aha_model::LoadOptions::default())?;
    let tok = aha_text::Tokenizer::from_dir(&args.out)?;
    let mut temps = vec![0.0f32];
    if args.eval_temperature > 0.0 {
        temps.push(args.eval_temperature);
    }
    for t in temps {
        let opts = EvalOptions {
            temperature: t,
            ..EvalOptions::new(&cfg.task, args.eval_n, args.seed)
        };
        let start = std::time::Instant::now();
        let r = greedy::evaluate_with(&model, &tok, &cfg.task, &opts)?;
        println!(
            "base on {} held-out {} problems (temperature {t}): accuracy {:.1}%, format {:.1}%, correct+formatted {:.1}%, mean length {:.1} tokens ({:.1}s)",
            r.n,
            cfg.task,
            100.0 * r.accuracy,
            100.0 * r.format_rate,
            100.0 * r.strict_accuracy,
            r.mean_length,
            start.elapsed().as_secs_f64()
        );
        for s in r.samples.iter().take(args.show) {
            println!(
                "  {} ->{} [{}{}]",
                s.prompt,
                s.completion,
                if s.correct { "correct" } else { "wrong" },
                if s.formatted { ", formatted" } else { "" }
            );
        }
    }
    // What GRPO can find: how well the base does when it works step by step, and when it
    // answers at once (greedy, with the completion's opening forced).
    if let Some((steps, direct)) =
        greedy::mode_accuracies(&model, &tok, &cfg.task, args.eval_n, args.seed)?
    {
        println!(
            "base forced to work step by step: accuracy {:.1}%; forced to answer at once: {:.1}% (greedy)",
            100.0 * steps,
            100.0 * direct
        );
    }
    Ok(())
}
