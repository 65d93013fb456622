//! Pretraining a tiny base model from scratch on a generated corpus for a built-in task.
//!
//! The corpus ([`crate::corpus`]) is documents in the R1-Zero template written so that the
//! base behaves like the base models of the R1 paper: it follows the format only sometimes,
//! mostly answers at once although it computes better step by step, and mixes languages.
//!
//! The model is a small Qwen2 (dense) built from random init as an ordinary aha [`Model`],
//! trained with next-token cross-entropy, AdamW, warmup and cosine decay, and saved as a
//! Hugging Face directory (config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json, generation_config.json).

use crate::bpe;
use crate::corpus::{corpus, forced_opening, CorpusMix, DocKind};
use crate::tasks::{fnv1a, is_well_formatted, r1_zero_prompt, Problem, Task};
use aha_engine::{generate, GenerateOptions, SamplingParams};
use aha_model::weights::Checkpoint;
use aha_model::{ForwardInput, LogitsFor, Mode, Model};
use aha_text::Tokenizer;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::Optimizer;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(transparent)]
    Model(#[from] aha_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Engine(#[from] aha_engine::EngineError),
    #[error(transparent)]
    Text(#[from] aha_text::TextError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, PretrainError>;

/// Everything that determines a pretrained base (its hash keys the cache of [`ensure_base`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub task: Task,
    /// BPE vocabulary size (the 4 tag tokens come on top).
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub max_position_embeddings: usize,
    pub steps: usize,
    /// Documents per step.
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// Final learning rate as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub mix: CorpusMix,
    /// Documents the tokenizer is trained on.
    pub tokenizer_docs: usize,
}

impl Default for PretrainConfig {
    /// Sized for a few minutes on 2 CPU cores (measured in a release build: 4500 steps of 16
    /// documents, 2.6M tokens, 306 s on one thread of a shared 2-core machine). 3000 steps
    /// were not always enough: the seed-1 base then did its single steps off by one.
    fn default() -> Self {
        Self {
            task: Task::Arithmetic { difficulty: 2 },
            vocab_size: 512,
            hidden_size: 64,
            intermediate_size: 192,
            num_layers: 4,
            num_heads: 2,
            num_kv_heads: 1,
            max_position_embeddings: 512,
            steps: 4500,
            batch_size: 16,
            lr: 5e-3,
            warmup_steps: 50,
            min_lr_ratio: 0.1,
            weight_decay: 0.05,
            seed: 0,
            mix: CorpusMix::default(),
            tokenizer_docs: 4000,
        }
    }
}

impl PretrainConfig {
    /// A very small config for tests: a few seconds per dozen steps.
    pub fn tiny(task: Task) -> Self {
        Self {
            task,
            vocab_size: 512,
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            max_position_embeddings: 256,
            steps: 12,
            batch_size: 8,
            lr: 3e-3,
            warmup_steps: 2,
            tokenizer_docs: 500,
            ..Self::default()
        }
    }

    /// Stable hex hash of the config.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", fnv1a(json.as_bytes()))
    }

    /// Learning rate at a step: linear warmup, then cosine down to `min_lr_ratio * lr`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

// ---------------------------------------------------------------- model

/// config.json of the tiny Qwen2 (tied embeddings, f32).
pub fn model_config_json(
    cfg: &PretrainConfig,
    vocab_size: usize,
    eos_id: u32,
) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "use_cache": true,
        "use_sliding_window": false,
        "sliding_window": null,
        "max_window_layers": cfg.num_layers,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    })
}

fn normal(shape: &[usize], std: f64, rng: &mut StdRng) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        // Box-Muller.
        let u1: f64 = rng.random::<f64>().max(1e-12);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        v.push((r * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32);
        v.push((r * (2.0 * std::f64::consts::PI * u2).sin() * std) as f32);
    }
    v.truncate(n);
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// A randomly initialized model (std 0.02; output projections scaled by 1/sqrt(2 layers)).
pub fn init_model(
    cfg: &PretrainConfig,
    vocab_size: usize,
    eos_id: u32,
    seed: u64,
) -> Result<Model> {
    if !cfg.hidden_size.is_multiple_of(cfg.num_heads)
        || !cfg.num_heads.is_multiple_of(cfg.num_kv_heads.max(1))
    {
        return Err(PretrainError::Invalid(
            "hidden_size must divide by num_heads, num_heads by num_kv_heads".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1417_0000);
    let (h, i, hd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.hidden_size / cfg.num_heads,
    );
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let std = 0.02;
    let out_std = std / (2.0 * cfg.num_layers as f64).sqrt();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        normal(&[vocab_size, h], std, &mut rng)?,
    );
    t.insert(
        "model.norm.weight".into(),
        Tensor::ones(h, DType::F32, &Device::Cpu)?,
    );
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let mut put =
            |name: &str, shape: &[usize], s: f64, rng: &mut StdRng| -> candle_core::Result<()> {
                t.insert(format!("{p}.{name}"), normal(shape, s, rng)?);
                Ok(())
            };
        put("self_attn.q_proj.weight", &[q, h], std, &mut rng)?;
        put("self_attn.k_proj.weight", &[kv, h], std, &mut rng)?;
        put("self_attn.v_proj.weight", &[kv, h], std, &mut rng)?;
        put("self_attn.o_proj.weight", &[h, q], out_std, &mut rng)?;
        put("mlp.gate_proj.weight", &[i, h], std, &mut rng)?;
        put("mlp.up_proj.weight", &[i, h], std, &mut rng)?;
        put("mlp.down_proj.weight", &[h, i], out_std, &mut rng)?;
        for (name, n) in [
            ("self_attn.q_proj.bias", q),
            ("self_attn.k_proj.bias", kv),
            ("self_attn.v_proj.bias", kv),
        ] {
            t.insert(
                format!("{p}.{name}"),
                Tensor::zeros(n, DType::F32, &Device::Cpu)?,
            );
        }
        for name in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            t.insert(
                format!("{p}.{name}"),
                Tensor::ones(h, DType::F32, &Device::Cpu)?,
            );
        }
    }
    let config = model_config_json(cfg, vocab_size, eos_id);
    let mut ckpt = Checkpoint::from_tensors(t, Path::new("<random init>"));
    Ok(Model::from_checkpoint(
        config,
        &mut ckpt,
        Path::new("<pretrain config>"),
        &Device::Cpu,
    )?)
}

// ---------------------------------------------------------------- training

/// Right-pad token sequences into ids [b, t] and a loss mask [b, t - 1] over the targets.
pub fn pad_batch(seqs: &[Vec<u32>], pad_id: u32, max_len: usize) -> Result<(Tensor, Tensor)> {
    let t = seqs
        .iter()
        .map(|s| s.len().min(max_len))
        .max()
        .unwrap_or(0)
        .max(2);
    let b = seqs.len();
    let mut ids = vec![pad_id; b * t];
    let mut mask = vec![0f32; b * (t - 1)];
    for (r, s) in seqs.iter().enumerate() {
        let s = &s[..s.len().min(max_len)];
        ids[r * t..r * t + s.len()].copy_from_slice(s);
        for j in 0..s.len().saturating_sub(1) {
            mask[r * (t - 1) + j] = 1.0;
        }
    }
    Ok((
        Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
        Tensor::from_vec(mask, (b, t - 1), &Device::Cpu)?,
    ))
}

/// Mean next-token cross-entropy over the masked targets (differentiable: `Mode::Train`).
pub fn lm_loss(model: &Model, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let input = ids.narrow(1, 0, t - 1)?.contiguous()?;
    let target = ids.narrow(1, 1, t - 1)?.contiguous()?;
    let pos = Tensor::arange(0u32, (t - 1) as u32, ids.device())?
        .unsqueeze(0)?
        .broadcast_as((b, t - 1))?
        .contiguous()?;
    let fwd = ForwardInput {
        input_ids: &input,
        position_ids: &pos,
        key_mask: None,
        mode: Mode::Train,
        logits: LogitsFor::All,
    };
    let logits = model.forward(&fwd, None)?;
    let v = logits.dim(D::Minus1)?;
    let lp = candle_nn::ops::log_softmax(&logits.reshape((b * (t - 1), v))?, D::Minus1)?;
    let picked = lp
        .gather(&target.reshape((b * (t - 1), 1))?, 1)?
        .reshape((b, t - 1))?;
    let count = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
    Ok(((picked * mask)?.sum_all()? / -(count as f64))?)
}

/// What a pretraining run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub steps: usize,
    pub first_loss: f32,
    /// Mean loss over the last 10% of steps.
    pub final_loss: f32,
    pub seconds: f64,
    pub tokens: usize,
    pub params: usize,
    pub vocab_size: usize,
}

/// Tokenizer and random model for a config, the tokenizer files written to `dir`.
pub fn prepare(cfg: &PretrainConfig, dir: &Path) -> Result<(Model, Tokenizer)> {
    let docs: Vec<String> = corpus(cfg.task, cfg.mix, cfg.seed ^ 0x70CE)
        .take(cfg.tokenizer_docs)
        .collect();
    let hf = bpe::train_tokenizer(docs.iter(), cfg.vocab_size)
        .map_err(|e| PretrainError::Tokenizer(e.to_string()))?;
    bpe::save_tokenizer(&hf, dir).map_err(|e| PretrainError::Tokenizer(e.to_string()))?;
    let vocab = hf.get_vocab_size(true);
    let eos = hf
        .token_to_id(bpe::EOS_TOKEN)
        .ok_or_else(|| PretrainError::Tokenizer("no EOS token".into()))?;
    let gen = serde_json::json!({"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos, "do_sample": false});
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::to_string_pretty(&gen).unwrap_or_default(),
    )?;
    let tok = Tokenizer::from_dir(dir)?;
    let model = init_model(cfg, vocab, eos, cfg.seed)?;
    Ok((model, tok))
}

/// Train `model` on the corpus of `cfg` for `cfg.steps` steps. `progress`: show a bar.
pub fn train(
    model: &Model,
    tok: &Tokenizer,
    cfg: &PretrainConfig,
    progress: bool,
) -> Result<PretrainReport> {
    let eos = tok
        .eos_token_id()
        .ok_or_else(|| PretrainError::Tokenizer("no EOS token".into()))?;
    let vars: Vec<candle_core::Var> = model.params().iter().map(|(_, v)| v.clone()).collect();
    let params = candle_nn::ParamsAdamW {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    };
    let mut opt = candle_nn::AdamW::new(vars.clone(), params)?;
    let mut docs = corpus(cfg.task, cfg.mix, cfg.seed);
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "pretrain {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (mut tokens, mut first_loss, mut tail) = (0usize, f32::NAN, Vec::new());
    let tail_from = cfg.steps - (cfg.steps / 10).max(1).min(cfg.steps);
    let mut ema = f32::NAN;
    for step in 0..cfg.steps {
        let seqs: Vec<Vec<u32>> = (0..cfg.batch_size)
            .map(|_| tok.encode(&docs.next().expect("endless corpus"), false))
            .collect::<std::result::Result<_, _>>()?;
        tokens += seqs.iter().map(Vec::len).sum::<usize>();
        let (ids, mask) = pad_batch(&seqs, eos, cfg.max_position_embeddings)?;
        let loss = lm_loss(model, &ids, &mask)?;
        let lv = loss.to_scalar::<f32>()?;
        if !lv.is_finite() {
            return Err(PretrainError::Invalid(format!(
                "loss is {lv} at step {step}"
            )));
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&vars, &mut grads, 1.0)?;
        opt.set_learning_rate(cfg.lr_at(step));
        opt.step(&grads)?;
        if step == 0 {
            first_loss = lv;
        }
        if step >= tail_from {
            tail.push(lv);
        }
        ema = if ema.is_nan() {
            lv
        } else {
            0.95 * ema + 0.05 * lv
        };
        bar.set_message(format!("loss {ema:.3}"));
        bar.inc(1);
    }
    bar.finish();
    let final_loss = tail.iter().sum::<f32>() / tail.len().max(1) as f32;
    Ok(PretrainReport {
        steps: cfg.steps,
        first_loss,
        final_loss,
        seconds: start.elapsed().as_secs_f64(),
        tokens,
        params: model.params().count(),
        vocab_size: model.vocab_size(),
    })
}

/// Scale the gradients so their global L2 norm is at most `max_norm`; returns the norm.
pub fn clip_grad_norm(
    vars: &[candle_core::Var],
    grads: &mut candle_core::backprop::GradStore,
    max_norm: f64,
) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

/// Pretrain a base model into `out` (tokenizer, config, weights). Returns the report.
pub fn pretrain(cfg: &PretrainConfig, out: &Path, progress: bool) -> Result<PretrainReport> {
    std::fs::create_dir_all(out)?;
    let (model, tok) = prepare(cfg, out)?;
    let report = train(&model, &tok, cfg, progress)?;
    model.save(out)?;
    let meta = serde_json::json!({"pretrain_config": cfg, "report": report});
    std::fs::write(
        out.join("aha_pretrain.json"),
        serde_json::to_string_pretty(&meta).unwrap_or_default(),
    )?;
    Ok(report)
}

/// The cached base for `cfg` under `cache_dir` (`base-<task>-<hash>`), pretraining it first
/// when absent. Training goes to a temporary directory renamed into place when complete.
pub fn ensure_base(cache_dir: &Path, cfg: &PretrainConfig) -> Result<PathBuf> {
    let dir = cache_dir.join(format!(
        "base-{}-{}-{}",
        cfg.task.name(),
        cfg.task.difficulty(),
        cfg.hash()
    ));
    let complete = |d: &Path| {
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "aha_pretrain.json",
        ]
        .iter()
        .all(|f| d.join(f).is_file())
    };
    if complete(&dir) {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache_dir)?;
    let tmp = cache_dir.join(format!(".tmp-{}-{}", cfg.hash(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    pretrain(cfg, &tmp, true)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

// ---------------------------------------------------------------- evaluation

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Held-out problems (the first `n` of the task's test set).
    pub n: usize,
    /// 0: greedy.
    pub temperature: f32,
    pub max_tokens: usize,
    pub seed: u64,
    /// Prompts generated together.
    pub batch_size: usize,
    /// Force the completion to open as this kind of answer ([`forced_opening`]): measures
    /// how well the model does in each mode, whichever it would choose.
    pub forced: Option<DocKind>,
}

impl EvalOptions {
    pub fn new(task: &Task, n: usize, seed: u64) -> Self {
        Self {
            n,
            temperature: 0.0,
            max_tokens: default_max_tokens(task),
            seed,
            batch_size: 64,
            forced: None,
        }
    }
}

/// Greedy accuracy on the first `n` held-out problems when forced to work step by step, and
/// when forced to answer at once: what GRPO can find in a model. None for tasks without
/// forced openings.
pub fn mode_accuracies(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    n: usize,
    seed: u64,
) -> Result<Option<(f64, f64)>> {
    if !matches!(task, Task::Arithmetic { .. }) {
        return Ok(None);
    }
    let acc = |kind| -> Result<f64> {
        let opts = EvalOptions {
            forced: Some(kind),
            ..EvalOptions::new(task, n, seed)
        };
        Ok(evaluate_with(model, tok, task, &opts)?.accuracy)
    };
    Ok(Some((acc(DocKind::StepByStep)?, acc(DocKind::Direct)?)))
}

/// Enough tokens for a worked solution at the task's difficulty.
pub fn default_max_tokens(task: &Task) -> usize {
    match task {
        Task::Arithmetic { difficulty } => 48 + 24 * *difficulty as usize,
        Task::Countdown { difficulty } => 64 + 48 * *difficulty as usize,
    }
}

/// One evaluated problem.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSample {
    pub prompt: String,
    pub completion: String,
    pub correct: bool,
    pub formatted: bool,
    pub tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub n: usize,
    /// Share of problems the task verifier accepts.
    pub accuracy: f64,
    /// Share of completions in the strict R1-Zero format.
    pub format_rate: f64,
    /// Share both correct and well formatted.
    pub strict_accuracy: f64,
    /// Mean completion length in tokens.
    pub mean_length: f64,
    pub samples: Vec<EvalSample>,
}

/// Greedy evaluation on the first `n` held-out problems of `task`.
pub fn evaluate(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    n: usize,
    seed: u64,
) -> Result<EvalResult> {
    evaluate_with(model, tok, task, &EvalOptions::new(task, n, seed))
}

pub fn evaluate_with(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    opts: &EvalOptions,
) -> Result<EvalResult> {
    let problems = task.test_set(opts.n);
    let gen = GenerateOptions {
        sampling: SamplingParams {
            temperature: opts.temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        },
        max_tokens: opts.max_tokens,
        seed: opts.seed,
        stop_token_ids: tok.eos_token_ids().to_vec(),
        stop_strings: Vec::new(),
        ignore_eos: false,
    };
    let opening = |p: &Problem| -> Result<String> {
        match opts.forced {
            None => Ok(String::new()),
            Some(kind) => forced_opening(task, p, kind).ok_or_else(|| {
                PretrainError::Invalid(format!("no forced {kind:?} opening for {task:?}"))
            }),
        }
    };
    let mut samples = Vec::with_capacity(problems.len());
    for (c, chunk) in problems.chunks(opts.batch_size.max(1)).enumerate() {
        let openings: Vec<String> = chunk.iter().map(opening).collect::<Result<_>>()?;
        let prompts: Vec<Vec<u32>> = chunk
            .iter()
            .zip(&openings)
            .map(|(p, o)| tok.encode(&format!("{}{o}", r1_zero_prompt(&p.prompt)), false))
            .collect::<std::result::Result<_, _>>()?;
        let gen = GenerateOptions {
            seed: opts.seed.wrapping_add(c as u64 * 1_000_003),
            ..gen.clone()
        };
        let outs = generate(model, Some(tok), &prompts, &gen, |_| {})?;
        for ((p, o), opening) in chunk.iter().zip(outs).zip(&openings) {
            let text = format!("{opening}{}", o.text.unwrap_or_default());
            samples.push(EvalSample {
                prompt: p.prompt.clone(),
                correct: task.check(p, &text),
                formatted: is_well_formatted(&text),
                tokens: o.token_ids.len(),
                completion: text,
            });
        }
    }
    let n = samples.len();
    let share = |f: &dyn Fn(&EvalSample) -> bool| {
        samples.iter().filter(|s| f(s)).count() as f64 / n.max(1) as f64
    };
    Ok(EvalResult {
        n,
        accuracy: share(&|s| s.correct),
        format_rate: share(&|s| s.formatted),
        strict_accuracy: share(&|s| s.correct && s.formatted),
        mean_length: samples.iter().map(|s| s.tokens as f64).sum::<f64>() / n.max(1) as f64,
        samples,
    })
}
