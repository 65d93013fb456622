//! `aha bench`: measured throughput, printed as JSON lines for side-by-side comparisons.

use super::common;
use aha_engine::{generate, GenerateOptions, SamplingParams};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rand::SeedableRng;
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
    /// Full fine-tuning throughput: SFT optimizer steps (forward, backward, AdamW) on fixed
    /// token data, in trained tokens per second, and the process's peak memory.
    Sft(SftBench),
    /// Constrained decoding's cost per token: the time to compute and apply the JSON-schema
    /// token mask over the whole vocabulary, while random allowed tokens are appended.
    Mask(MaskBench),
    /// Constrained decoding end to end: tokens/s of greedy chat generation under each JSON
    /// Schema against the same number of unconstrained tokens from the same prompt, the two
    /// alternated per schema.
    Constrained(ConstrainedBench),
}

#[derive(Args)]
struct ConstrainedBench {
    /// A model directory or .gguf file with a chat template (a model that does not reason:
    /// the constraint then starts at the first token).
    #[arg(long)]
    model: PathBuf,
    /// JSON list of JSON Schemas; the first --n are used.
    #[arg(long, default_value = "benches/mask_schemas.json")]
    schemas: PathBuf,
    #[arg(long, default_value_t = 10)]
    n: usize,
    /// At most this many tokens per answer.
    #[arg(long, default_value_t = 96)]
    tokens: usize,
    #[arg(long, default_value = "Describe a city you like as JSON.")]
    prompt: String,
}

#[derive(Args)]
struct MaskBench {
    /// A model directory with tokenizer.json, or a .gguf file (its tokenizer).
    #[arg(long)]
    tokenizer: PathBuf,
    /// JSON list of JSON Schemas.
    #[arg(long, default_value = "benches/mask_schemas.json")]
    schemas: PathBuf,
    /// At most this many tokens per schema (a sample also ends when only EOS is allowed).
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    /// Samples per schema, each with its own random choices.
    #[arg(long, default_value_t = 3)]
    samples: u64,
}

#[derive(Args)]
struct SftBench {
    #[arg(long)]
    model: PathBuf,
    /// JSON list of {"input_ids": [...], "labels": [...]} (label -100: no loss), as
    /// `scripts/ref/bench_sft_torch.py` writes it. Default: <model>/sft_data.json.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 8, value_parser = super::common::range::count::<usize>)]
    batch_size: usize,
    /// Examples per forward/backward pass.
    #[arg(long, default_value_t = 4, value_parser = super::common::range::count::<usize>)]
    micro_batch: usize,
    /// Timed optimizer steps, after one warm-up step.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Also time the step's matrix products alone (best of 3 after a warm-up): for each
    /// micro-batch, every 2-D weight's forward product and its two backward ones (input and
    /// weight gradients) over all its tokens (the head from the first trained position on),
    /// and attention's two score/value products per head and their four gradient products (no
    /// causal skipping). A step can be no faster: the trained tokens over that time are the
    /// GEMM roofline.
    #[arg(long)]
    roofline: bool,
}

#[derive(Args)]
struct GenerateBench {
    #[arg(long)]
    model: PathBuf,
    /// JSON list of prompts (lists of ids); batch B uses the first B. Default: <model>/prompts.json.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Batch sizes to run (repeatable).
    #[arg(long, default_values_t = vec![1, 32], value_parser = super::common::range::count::<usize>)]
    batch: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Runs per batch size after one warm-up; the best is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Also measure a decode step's two lower bounds at each batch size: its matrix products'
    /// FLOPs (x [B, in] times every 2-D weight) at the rate this machine's f32 GEMM reaches
    /// on large products (x [1024, 512] times a [1408, 512] weight, transposed), and reading
    /// every weight once at the rate the machine streams memory. B over the larger of the two
    /// times is the roofline in tokens/s. Needs a model directory (safetensors).
    #[arg(long)]
    roofline: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchKind::Generate(a) => bench_generate(a),
        BenchKind::Sft(a) => bench_sft(a),
        BenchKind::Mask(a) => bench_mask(a),
        BenchKind::Constrained(a) => bench_constrained(a),
    }
}

fn bench_constrained(a: ConstrainedBench) -> Result<()> {
    use aha_engine::{Constrainer, Grammar};
    let loaded = common::load(&a.model)?;
    let tok = loaded.tokenizer()?;
    let template = common::chat_template(&a.model)?;
    let prompt = template.render(&[aha_text::ChatMessage::user(a.prompt.as_str())], true)?;
    let ids = vec![tok.encode(&prompt, false)?];
    let text = std::fs::read_to_string(&a.schemas)
        .with_context(|| format!("reading {}", a.schemas.display()))?;
    let schemas: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of schemas", a.schemas.display()))?;
    let constrainer = Constrainer::new(tok)?;
    let base = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: a.tokens,
        stop_token_ids: loaded.eos_ids(),
        ..Default::default()
    };
    let (mut tc, mut tu, mut n_all) = (0.0f64, 0.0f64, 0usize);
    for (i, schema) in schemas.iter().take(a.n).enumerate() {
        let c = constrainer
            .compile(Some(&Grammar::JsonSchema(schema.clone())), None)
            .with_context(|| format!("schema {i}"))?;
        let constrained = GenerateOptions {
            constraint: Some(std::sync::Arc::new(c)),
            ..base.clone()
        };
        // Warm-up, then the constrained answer; the unconstrained run makes as many tokens.
        generate(&loaded.model, Some(tok), &ids, &base, |_| {})?;
        let t = Instant::now();
        let out = generate(&loaded.model, Some(tok), &ids, &constrained, |_| {})?;
        let secs_c = t.elapsed().as_secs_f64();
        let n = out[0].token_ids.len();
        let free = GenerateOptions {
            max_tokens: n,
            ignore_eos: true,
            ..base.clone()
        };
        let t = Instant::now();
        let out_u = generate(&loaded.model, Some(tok), &ids, &free, |_| {})?;
        let secs_u = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            out_u[0].token_ids.len() == n,
            "unconstrained run made other lengths"
        );
        let answer = out[0].text.clone().unwrap_or_default();
        let valid = serde_json::from_str::<serde_json::Value>(&answer).is_ok();
        println!(
            "{}",
            serde_json::json!({"bench": "constrained", "schema": i, "tokens": n,
                "constrained_tok_s": n as f64 / secs_c, "unconstrained_tok_s": n as f64 / secs_u,
                "ratio": secs_u / secs_c, "json": valid,
                "finish": format!("{:?}", out[0].finish_reason)})
        );
        tc += secs_c;
        tu += secs_u;
        n_all += n;
    }
    println!(
        "{}",
        serde_json::json!({"bench": "constrained", "schema": "all", "tokens": n_all,
            "constrained_tok_s": n_all as f64 / tc, "unconstrained_tok_s": n_all as f64 / tu,
            "ratio": tu / tc})
    );
    Ok(())
}

fn bench_mask(a: MaskBench) -> Result<()> {
    use aha_engine::{Constrainer, Grammar};
    let tok = if aha_text::gguf::is_gguf_path(&a.tokenizer) {
        aha_text::gguf::tokenizer(&a.tokenizer)?
    } else {
        aha_text::Tokenizer::from_dir(&a.tokenizer)?
    };
    let text = std::fs::read_to_string(&a.schemas)
        .with_context(|| format!("reading {}", a.schemas.display()))?;
    let schemas: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of schemas", a.schemas.display()))?;
    let t = Instant::now();
    let constrainer = Constrainer::new(&tok)?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let vocab = tok.vocab_size();
    let mut all: Vec<f64> = Vec::new();
    for (i, schema) in schemas.iter().enumerate() {
        let t = Instant::now();
        let c = constrainer
            .compile(Some(&Grammar::JsonSchema(schema.clone())), None)
            .with_context(|| format!("schema {i}"))?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut times = Vec::new();
        let (mut finished, mut valid) = (0, 0);
        for sample in 0..a.samples {
            let mut rng = rand::rngs::StdRng::seed_from_u64(sample * 1000 + i as u64);
            let (out, ended) =
                c.random_walk(a.tokens, &mut rng, |d| times.push(d.as_secs_f64() * 1e6));
            if ended {
                // A finished answer must be JSON (the schema itself is the engine tests' job).
                finished += 1;
                let text = tok.decode(&out, false)?;
                valid += serde_json::from_str::<serde_json::Value>(&text).is_ok() as usize;
            }
        }
        if valid < finished {
            anyhow::bail!(
                "schema {i}: {} finished samples are not JSON",
                finished - valid
            );
        }
        let q = quantiles(&mut times.clone());
        println!(
            "{}",
            serde_json::json!({"bench": "mask", "schema": i, "compile_ms": compile_ms,
                "tokens": times.len(), "p50_us": q.0, "p99_us": q.1, "max_us": q.2,
                "finished": format!("{finished}/{}", a.samples)})
        );
        all.extend(times);
    }
    let q = quantiles(&mut all);
    println!(
        "{}",
        serde_json::json!({"bench": "mask", "schema": "all", "vocab": vocab,
            "tokenizer_setup_ms": setup_ms, "tokens": all.len(),
            "p50_us": q.0, "p99_us": q.1, "max_us": q.2})
    );
    Ok(())
}

/// (p50, p99, max) of `v`, sorted in place.
fn quantiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
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
    let roof = if a.roofline {
        Some(decode_roofline(&a.model)?)
    } else {
        None
    };
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
        // FNV-1a over every generated id: two builds that claim the same bits must agree.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for _ in 0..a.repeat.max(1) {
            let t = Instant::now();
            let out = generate(&loaded.model, None, batch, &opts, |_| {})?;
            best = best.min(t.elapsed().as_secs_f64());
            let n: usize = out.iter().map(|c| c.token_ids.len()).sum();
            anyhow::ensure!(
                n == b * a.new_tokens,
                "generated {n} tokens, expected {}",
                b * a.new_tokens
            );
            hash = 0xcbf2_9ce4_8422_2325;
            for id in out.iter().flat_map(|c| &c.token_ids) {
                for byte in id.to_le_bytes() {
                    hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        let tokens_per_s = (b * a.new_tokens) as f64 / best;
        let mut row = serde_json::json!({"impl": "aha", "batch": b, "new_tokens": a.new_tokens,
            "seconds": best, "tokens_per_s": tokens_per_s, "threads": threads,
            "tokens_fnv1a": format!("{hash:016x}")});
        if let Some(r) = &roof {
            let compute_s = r.flop_per_token * b as f64 / r.gemm_flop_per_s;
            let memory_s = r.weight_bytes / r.bytes_per_s;
            let roof = b as f64 / compute_s.max(memory_s);
            row["gflop_per_step"] = (r.flop_per_token * b as f64 / 1e9).into();
            row["gemm_gflop_per_s"] = (r.gemm_flop_per_s / 1e9).into();
            row["achieved_gflop_per_s"] = (r.flop_per_token * tokens_per_s / 1e9).into();
            row["weight_gb"] = (r.weight_bytes / 1e9).into();
            row["stream_gb_per_s"] = (r.bytes_per_s / 1e9).into();
            row["compute_bound_tokens_per_s"] = (b as f64 / compute_s).into();
            row["memory_bound_tokens_per_s"] = (b as f64 / memory_s).into();
            row["roofline_tokens_per_s"] = roof.into();
            row["share_of_roofline"] = (tokens_per_s / roof).into();
        }
        println!("{row}");
    }
    Ok(())
}

/// The model's 2-D weights in name order (the embedding table only when it is also the
/// head, with no separate `lm_head`): the matrices a pass multiplies by.
fn matrix_weights(model: &std::path::Path) -> Result<Vec<(String, candle_core::Tensor)>> {
    use candle_core::{DType, Device};
    let weights = aha_model::read_weights(model, DType::F32, &Device::Cpu)
        .with_context(|| format!("--roofline reads {}", model.display()))?;
    let has_head = weights.keys().any(|k| k.ends_with("lm_head.weight"));
    let mut mats: Vec<_> = weights
        .into_iter()
        .filter(|(name, w)| w.rank() == 2 && !(name.contains("embed_tokens") && has_head))
        .collect();
    mats.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(mats)
}

/// The shortest of `n` timed runs of `f`, after a warm-up run.
fn best_of(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for pass in 0..=n {
        let t = Instant::now();
        f()?;
        if pass > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}

/// What bounds a decode step from below, measured on this machine: the step's matrix
/// products (per token: x [1, in] times each 2-D weight [out, in], the embedding table once,
/// as the output head, when there is no separate `lm_head`) run no faster than a large f32
/// GEMM, and the step reads every weight once.
struct DecodeRoofline {
    flop_per_token: f64,
    /// Best of 20 after a warm-up: x [1024, 512] times a [1408, 512] weight transposed (a
    /// product of ~8 ms: best of 3 read 94-184 GFLOP/s across runs on a noisy VM, each low
    /// figure inflating the share of the roofline).
    gemm_flop_per_s: f64,
    weight_bytes: f64,
    /// Best of 3 after a warm-up: every weight summed once, on the bench's threads.
    bytes_per_s: f64,
}

fn decode_roofline(model: &std::path::Path) -> Result<DecodeRoofline> {
    use candle_core::{Device, Tensor};
    use rayon::prelude::*;
    let x = Tensor::randn(0f32, 1.0, (1024, 512), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (1408, 512), &Device::Cpu)?;
    let gemm_s = best_of(20, || {
        x.matmul(&w.t()?)?;
        Ok(())
    })?;
    let mut flop_per_token = 0.0;
    let mut weights = Vec::new();
    for (_, w) in matrix_weights(model)? {
        let (out, inp) = w.dims2()?;
        flop_per_token += (2 * out * inp) as f64;
        weights.push(w.flatten_all()?.to_vec1::<f32>()?);
    }
    let weight_bytes = weights.iter().map(|w| 4.0 * w.len() as f64).sum::<f64>();
    let mut total = 0f32;
    let stream_s = best_of(3, || {
        for w in &weights {
            // Eight lanes per chunk, so that the sum vectorizes.
            total += w
                .par_chunks(1 << 16)
                .map(|c| {
                    let mut lanes = [0f32; 8];
                    for c in c.chunks_exact(8) {
                        lanes.iter_mut().zip(c).for_each(|(l, v)| *l += v);
                    }
                    lanes.iter().sum::<f32>()
                })
                .sum::<f32>();
        }
        Ok(())
    })?;
    std::hint::black_box(total);
    Ok(DecodeRoofline {
        flop_per_token,
        gemm_flop_per_s: 2.0 * 1024.0 * 512.0 * 1408.0 / gemm_s,
        weight_bytes,
        bytes_per_s: weight_bytes / stream_s,
    })
}

#[derive(serde::Deserialize)]
struct SftRow {
    input_ids: Vec<u32>,
    labels: Vec<i64>,
}

fn bench_sft(a: SftBench) -> Result<()> {
    use aha_train::sft::{step_batches, Example, Nll};
    use aha_train::trainer::{OptimConfig, Trainer};
    let loaded = common::load(&a.model)?;
    let path = a
        .data
        .clone()
        .unwrap_or_else(|| a.model.join("sft_data.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<SftRow> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of {{input_ids, labels}}",
            path.display()
        )
    })?;
    let examples: Vec<Example> = rows
        .into_iter()
        .map(|r| Example {
            input_ids: r.input_ids,
            labels: r.labels,
        })
        .collect();
    let need = a.batch_size * (a.steps + 1);
    anyhow::ensure!(
        examples.len() >= need,
        "{} has {} examples; {} steps of {} (plus a warm-up) need {need}",
        path.display(),
        examples.len(),
        a.steps,
        a.batch_size
    );
    let max_len = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(1);
    let mut trainer = Trainer::new(
        loaded.model,
        OptimConfig::cosine(1e-5, 0, 0.0, 1.0, 0.0, 1.0),
    )?;
    let mut times = Vec::new();
    let mut trained = 0usize;
    for step in 0..=a.steps {
        let idx: Vec<usize> = (step * a.batch_size..(step + 1) * a.batch_size).collect();
        let micro = step_batches(&examples, &idx, false, max_len, a.micro_batch);
        let t = Instant::now();
        let out = trainer.step(&Nll, &micro)?;
        let dt = t.elapsed().as_secs_f64();
        anyhow::ensure!(out.loss.is_finite(), "loss {} at step {step}", out.loss);
        if step > 0 {
            times.push(dt);
            trained += idx
                .iter()
                .map(|&i| examples[i].trained_tokens())
                .sum::<usize>();
        }
    }
    let seconds: f64 = times.iter().sum();
    let tokens_per_s = trained as f64 / seconds;
    let mut row = serde_json::json!({"impl": "aha", "batch_size": a.batch_size,
        "micro_batch": a.micro_batch, "seq_len": max_len, "steps": a.steps, "step_seconds": times,
        "trained_tokens_per_s": tokens_per_s, "peak_rss_mb": peak_rss_mb(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok()});
    if a.roofline {
        let micro = a.batch_size.div_ceil(a.micro_batch.max(1));
        // aha computes logits from the first trained position on (as `rows_logprobs` does).
        let first = examples
            .iter()
            .filter_map(|e| e.labels.iter().skip(1).position(|&l| l >= 0).map(|p| p + 1))
            .min()
            .unwrap_or(1);
        let b = a.micro_batch.min(a.batch_size);
        let (gemm_s, flop) = sft_gemm_time(
            &a.model,
            trainer.model.config(),
            b,
            max_len,
            max_len - first,
        )?;
        let (step_s, step_flop) = (gemm_s * micro as f64, flop * micro as f64);
        let roof = (trained as f64 / a.steps as f64) / step_s;
        row["gemm_seconds_per_step"] = step_s.into();
        row["gemm_gflop_per_step"] = (step_flop / 1e9).into();
        row["gemm_gflop_per_s"] = (flop / gemm_s / 1e9).into();
        row["roofline_trained_tokens_per_s"] = roof.into();
        row["share_of_roofline"] = (tokens_per_s / roof).into();
    }
    println!("{row}");
    Ok(())
}

/// The time one SFT micro-batch of `b` sequences of `t` tokens spends in matrix products
/// alone, and their FLOPs: for every 2-D weight [out, in] (the tied embedding as the head,
/// over `head_t` positions per sequence), x [b t, in] W^T forward, dy W and dy^T x backward;
/// per sequence and head, q k^T and p v forward, and their four gradient products back. Best
/// of 3 after a warm-up.
fn sft_gemm_time(
    model: &std::path::Path,
    config: &serde_json::Value,
    b: usize,
    t: usize,
    head_t: usize,
) -> Result<(f64, f64)> {
    use candle_core::{Device, Tensor};
    let field = |k: &str| {
        config[k]
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("--roofline: the model's config has no {k}"))
    };
    let (heads, layers, hidden) = (
        field("num_attention_heads")?,
        field("num_hidden_layers")?,
        field("hidden_size")?,
    );
    let d = hidden / heads.max(1);
    let mats = matrix_weights(model)?;
    let is_head = |name: &str| name.contains("embed_tokens") || name.ends_with("lm_head.weight");
    let rows = |name: &str| if is_head(name) { b * head_t } else { b * t };
    let randn = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &Device::Cpu);
    let mut acts: std::collections::HashMap<(usize, usize), Tensor> = Default::default();
    let mut flop = 0.0;
    for (name, w) in &mats {
        let (out, inp) = w.dims2()?;
        let r = rows(name);
        for n in [inp, out] {
            if let std::collections::hash_map::Entry::Vacant(e) = acts.entry((r, n)) {
                e.insert(randn(&[r, n])?);
            }
        }
        flop += (3 * 2 * r * out * inp) as f64;
    }
    // Attention per layer: [b heads, t, d] queries, keys, values; [b heads, t, t] scores.
    let (q, s) = (randn(&[b * heads, t, d])?, randn(&[b * heads, t, t])?);
    flop += (layers * 6 * 2 * b * heads * t * t * d) as f64;
    let best = best_of(3, || {
        for (name, w) in &mats {
            let (out, inp) = w.dims2()?;
            let r = rows(name);
            let (x, dy) = (&acts[&(r, inp)], &acts[&(r, out)]);
            x.matmul(&w.t()?)?;
            dy.matmul(w)?;
            dy.t()?.matmul(x)?;
        }
        for _ in 0..layers {
            // Score-shaped left side: p v forward; dv = p^T do, dq = ds k, dk = ds^T q back.
            s.matmul(&q)?;
            s.t()?.matmul(&q)?;
            s.matmul(&q)?;
            s.t()?.matmul(&q)?;
            // Score-shaped result: q k^T forward, dp = do v^T back.
            q.matmul(&q.t()?)?;
            q.matmul(&q.t()?)?;
        }
        Ok(())
    })?;
    Ok((best, flop))
}

/// The process's peak resident memory (VmHWM), in MB; None where /proc does not say.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
