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
use crate::corpus::{corpus, CorpusMix};
use crate::optim::AdamWConfig;
use crate::sft::{packed_passes, step_batches, Example, Nll};
use crate::tasks::{fnv1a, Task};
use crate::trainer::{progress_bar, OptimConfig, Trainer};
use aha_model::weights::Checkpoint;
use aha_model::Model;
use aha_text::Tokenizer;
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::error::{Result, TrainError};

/// Bumped when pretraining's results change for the same config (v2: the shared trainer;
/// v3: the fused training kernels; v4: passes packed by default).
const TRAIN_CODE_VERSION: &str = "v4";
use crate::error::io_err;

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
    /// Documents per forward/backward pass; 0: the whole step in one pass. A step's passes
    /// run at once, one per thread, their gradients added in order, so the base does not
    /// depend on the thread count (4 on 2 cores: 1.8x faster than one pass). Left out of the
    /// config's hash when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub micro_batch: usize,
    /// Each pass's documents packed into one row, attention within each document: no
    /// padding. Padded passes (off) give the bases of cache version v3.
    #[serde(default = "yes")]
    pub packed: bool,
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
    /// Sized for about a minute on 2 CPU cores (4500 steps of 16 documents, 2.6M tokens, in
    /// packed passes of 4 on two workers). 3000 steps are not enough, at this rate or the
    /// old one: some bases then do their single steps off by one. The peak rate is half what
    /// it was (5e-3), where R1-Zero's gain fell under 25 points on 4 of 9 bases that differed
    /// only in rounding; at 2.5e-3 about one seed in ten still gives such a base, padded or
    /// packed (docs/benchmarks.md).
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
            micro_batch: 4,
            packed: true,
            lr: 2.5e-3,
            warmup_steps: 50,
            min_lr_ratio: 0.1,
            weight_decay: 0.05,
            seed: 0,
            mix: CorpusMix::default(),
            tokenizer_docs: 4000,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
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
            micro_batch: 0,
            lr: 3e-3,
            warmup_steps: 2,
            tokenizer_docs: 500,
            ..Self::default()
        }
    }

    /// The config with hidden size `h`: the MLP 3x, heads of 32 (at least one), half as many
    /// KV heads when the heads are even.
    pub fn with_hidden(self, h: usize) -> Self {
        let num_heads = (h / 32).max(1);
        Self {
            hidden_size: h,
            intermediate_size: 3 * h,
            num_heads,
            num_kv_heads: if num_heads.is_multiple_of(2) {
                num_heads / 2
            } else {
                num_heads
            },
            ..self
        }
    }

    /// Check the model's shape, naming the setting at fault: every size at least 1,
    /// `hidden_size` a multiple of `num_heads`, `num_heads` of `num_kv_heads`.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(TrainError::Invalid(format!("{name} must be at least 1")));
            }
        }
        for (a, x, b, y) in [
            ("hidden_size", self.hidden_size, "num_heads", self.num_heads),
            (
                "num_heads",
                self.num_heads,
                "num_kv_heads",
                self.num_kv_heads,
            ),
        ] {
            if !x.is_multiple_of(y) {
                return Err(TrainError::Invalid(format!(
                    "{a} {x} must be a multiple of {b} {y}"
                )));
            }
        }
        Ok(())
    }

    /// Stable hex hash of the config.
    pub fn hash(&self) -> String {
        // With the version of the training code, so a change to it retrains cached bases.
        let json = serde_json::to_string(self).unwrap_or_default() + TRAIN_CODE_VERSION;
        format!("{:016x}", fnv1a(json.as_bytes()))
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
    cfg.check()?;
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
    // Before the tokenizer's training, which a bad shape would only waste.
    cfg.check()?;
    let docs: Vec<String> = corpus(cfg.task, cfg.mix, cfg.seed ^ 0x70CE)
        .take(cfg.tokenizer_docs)
        .collect();
    let hf = bpe::train_tokenizer(docs.iter(), cfg.vocab_size)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    bpe::save_tokenizer(&hf, dir).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let vocab = hf.get_vocab_size(true);
    let eos = hf
        .token_to_id(bpe::EOS_TOKEN)
        .ok_or_else(|| TrainError::Tokenizer("no EOS token".into()))?;
    let gen = serde_json::json!({"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos, "do_sample": false});
    let path = dir.join("generation_config.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&gen).unwrap_or_default(),
    )
    .map_err(io_err(&path))?;
    let tok = Tokenizer::from_dir(dir)?;
    let model = init_model(cfg, vocab, eos, cfg.seed)?;
    Ok((model, tok))
}

/// One step's documents encoded (every token trained) and cut into passes of `micro_batch`
/// documents, in document order (documents of similar length in a pass would pad less, but
/// packing pads nothing); with the step's token count.
fn step_data(
    tok: &Tokenizer,
    cfg: &PretrainConfig,
    texts: &[String],
    micro_batch: usize,
) -> Result<(usize, Vec<crate::sft::NllBatch>)> {
    let examples = texts
        .iter()
        .map(|doc| {
            let input_ids = tok.encode(doc, false)?;
            let labels = input_ids.iter().map(|&t| t as i64).collect();
            Ok(Example { input_ids, labels })
        })
        .collect::<Result<Vec<_>>>()?;
    let tokens = examples.iter().map(|e| e.input_ids.len()).sum();
    let all: Vec<usize> = (0..examples.len()).collect();
    let micro = if cfg.packed {
        packed_passes(&examples, &all, micro_batch)
    } else {
        step_batches(
            &examples,
            &all,
            false,
            cfg.max_position_embeddings,
            micro_batch,
        )
    };
    Ok((tokens, micro))
}

/// The optimizer of a pretraining run: AdamW (β2 0.95, weight decay on every tensor),
/// linear warmup then cosine decay, clipping at 1.
fn optim_config(cfg: &PretrainConfig) -> OptimConfig {
    OptimConfig {
        lr: cfg.lr,
        warmup_steps: cfg.warmup_steps as u64,
        total_steps: cfg.steps as u64,
        min_lr_ratio: cfg.min_lr_ratio,
        adam: AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
            decay_1d: true,
        },
        max_grad_norm: 1.0,
    }
}

/// Train `model` on the corpus of `cfg` for `cfg.steps` steps of next-token prediction on
/// every token (the shared [`Trainer`] with the [`Nll`] objective); returns the model.
/// `progress`: show a bar.
pub fn train(
    model: Model,
    tok: &Tokenizer,
    cfg: &PretrainConfig,
    progress: bool,
) -> Result<(Model, PretrainReport)> {
    let micro_batch = match cfg.micro_batch {
        0 => cfg.batch_size.max(1),
        m => m.min(cfg.batch_size.max(1)),
    };
    let passes = cfg.batch_size.div_ceil(micro_batch);
    let mut trainer = Trainer::new(model, optim_config(cfg))?
        .with_workers(rayon::current_num_threads().min(passes))?;
    let bar = if progress {
        progress_bar(cfg.steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    let (mut tokens, mut first_loss, mut tail) = (0usize, f64::NAN, Vec::new());
    let tail_from = cfg.steps - (cfg.steps / 10).max(1).min(cfg.steps);
    let mut ema = f64::NAN;
    // The next steps' documents are encoded and packed on a thread of their own, in the
    // time the workers wait for a step's longest pass and for the update.
    std::thread::scope(|s| -> Result<()> {
        // Inside the scope: leaving it early drops `rx`, which stops the thread.
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        s.spawn(move || {
            let mut docs = corpus(cfg.task, cfg.mix, cfg.seed);
            for _ in 0..cfg.steps {
                let texts: Vec<String> = (&mut docs).take(cfg.batch_size).collect();
                if tx.send(step_data(tok, cfg, &texts, micro_batch)).is_err() {
                    break;
                }
            }
        });
        for step in 0..cfg.steps {
            let Ok(data) = rx.recv() else {
                return Err(TrainError::Invalid("the data thread stopped".into()));
            };
            let (step_tokens, micro) = data?;
            tokens += step_tokens;
            let out = trainer.step(&Nll, &micro)?;
            if !out.loss.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "loss is {} at step {step}",
                    out.loss
                )));
            }
            if step == 0 {
                first_loss = out.loss;
            }
            if step >= tail_from {
                tail.push(out.loss);
            }
            ema = if ema.is_nan() {
                out.loss
            } else {
                0.95 * ema + 0.05 * out.loss
            };
            bar.set_message(format!("loss {ema:.3}"));
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish();
    let final_loss = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
    let model = trainer.model;
    let report = PretrainReport {
        steps: cfg.steps,
        first_loss: first_loss as f32,
        final_loss: final_loss as f32,
        seconds: start.elapsed().as_secs_f64(),
        tokens,
        params: model.params().count(),
        vocab_size: model.vocab_size(),
    };
    Ok((model, report))
}

/// Pretrain a base model into `out` (tokenizer, config, weights). Returns the report.
pub fn pretrain(cfg: &PretrainConfig, out: &Path, progress: bool) -> Result<PretrainReport> {
    cfg.check()?;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let (model, tok) = prepare(cfg, out)?;
    let (model, report) = train(model, &tok, cfg, progress)?;
    model.save(out)?;
    let meta = serde_json::json!({"pretrain_config": cfg, "report": report});
    let path = out.join("aha_pretrain.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&meta).unwrap_or_default(),
    )
    .map_err(io_err(&path))?;
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
    std::fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    let tmp = cache_dir.join(format!(".tmp-{}-{}", cfg.hash(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    pretrain(cfg, &tmp, true)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    Ok(dir)
}
