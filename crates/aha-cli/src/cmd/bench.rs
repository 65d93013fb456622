//! `aha bench`: measured throughput, printed as JSON lines for side-by-side comparisons.

use super::common;
use aha_engine::{generate, GenerateOptions, SamplingParams};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Batched generation throughput (greedy, EOS ignored).
    Generate(GenerateBench),
}

#[derive(Args)]
struct GenerateBench {
    #[arg(long)]
    model: PathBuf,
    /// JSON list of prompts (lists of ids); batch B uses the first B. Default: <model>/prompts.json.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Batch sizes to run (repeatable).
    #[arg(long, default_values_t = vec![1, 32])]
    batch: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Runs per batch size after one warm-up; the best is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchKind::Generate(a) => bench_generate(a),
    }
}

fn bench_generate(a: GenerateBench) -> Result<()> {
    let loaded = common::load(&a.model)?;
    let path = a
        .prompts
        .clone()
        .unwrap_or_else(|| a.model.join("prompts.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let prompts: Vec<Vec<u32>> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of id lists", path.display()))?;
    let opts = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: a.new_tokens,
        ignore_eos: true,
        ..Default::default()
    };
    let threads = std::env::var("RAYON_NUM_THREADS").ok();
    for &b in &a.batch {
        if b > prompts.len() {
            anyhow::bail!(
                "batch {b} needs {b} prompts, {} has {}",
                path.display(),
                prompts.len()
            );
        }
        let batch = &prompts[..b];
        generate(&loaded.model, None, batch, &opts, |_| {})?;
        let mut best = f64::INFINITY;
        for _ in 0..a.repeat.max(1) {
            let t = Instant::now();
            let out = generate(&loaded.model, None, batch, &opts, |_| {})?;
            let n: usize = out.iter().map(|c| c.token_ids.len()).sum();
            anyhow::ensure!(
                n == b * a.new_tokens,
                "generated {n} tokens, expected {}",
                b * a.new_tokens
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{}",
            serde_json::json!({"impl": "aha", "batch": b, "new_tokens": a.new_tokens, "seconds": best,
                "tokens_per_s": (b * a.new_tokens) as f64 / best, "threads": threads})
        );
    }
    Ok(())
}
