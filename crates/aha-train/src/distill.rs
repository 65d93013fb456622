//! Logit-level distillation: the student learns the teacher's next-token distributions on
//! the same text, with the generalized Jensen-Shannon divergence of GKD (Agarwal et al.,
//! "On-Policy Distillation of Language Models", 2024).
//!
//! The pieces:
//! * [`generalized_jsd`]: the divergence per token, from student and teacher logits.
//! * [`masked_mean`] / [`DistillConfig`]: the loss over the trained tokens.
//! * [`distill_loss`]: teacher and student scored over the same completions (any two
//!   architectures sharing a tokenizer, e.g. a DeepSeek-V3 MoE teacher and a dense
//!   Qwen2/Llama student), and the loss, differentiable in the student.
//! * [`choose_source`] + [`batch_completions`]: GKD's on-policy fraction λ, the share of
//!   batches whose completions the student generates (and the teacher then scores).
//! * [`LogitObjective`] + [`train_logit`]: the whole run on the shared [`crate::trainer`]
//!   loop (metrics, checkpoints), the loss normalised over each optimizer step's completion
//!   tokens so that gradient accumulation is exact.

use crate::grpo::completion_logits;
use crate::sft::{Example, IGNORE};
use crate::trainer::{
    epoch_order, file_err, progress_bar, MetricsSink, MicroLoss, Objective, OptimConfig, Stats,
    Trainer,
};
use aha_engine::{GenerateOptions, SamplingParams};
use aha_model::ops::log_softmax;
use aha_model::{Mode, Model};
use aha_text::Tokenizer;
use candle_core::{Tensor, D};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

pub use crate::error::{Result, TrainError};

/// The divergence and its temperature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistillConfig {
    /// β of [`generalized_jsd`]: 0 forward KL(teacher || student), 1 reverse
    /// KL(student || teacher), in between the generalized JSD.
    pub beta: f64,
    /// Both distributions are softmax(logits / temperature).
    pub temperature: f64,
}

impl Default for DistillConfig {
    /// GKD's and TRL's defaults: β = 0.5, T = 1.
    fn default() -> Self {
        Self {
            beta: 0.5,
            temperature: 1.0,
        }
    }
}

/// Sum over the last dimension of `exp(log_p) * (log_p - log_q)`: KL(p || q) from log-probs.
fn kl(log_p: &Tensor, log_q: &Tensor) -> candle_core::Result<Tensor> {
    (log_p.exp()? * (log_p - log_q)?)?.sum(D::Minus1)
}

/// The generalized Jensen-Shannon divergence between the teacher's and the student's
/// next-token distributions, per position: logits `[.., vocab]` -> `[..]`.
///
/// With p_T = softmax(teacher / T) and p_S = softmax(student / T):
/// * β = 0: KL(p_T || p_S) = Σ p_T (log p_T - log p_S), the forward KL (mode covering);
/// * β = 1: KL(p_S || p_T), the reverse KL (mode seeking);
/// * 0 < β < 1: JSD_β = β KL(p_T || m) + (1 - β) KL(p_S || m), m = β p_T + (1 - β) p_S,
///   with log m computed as a log-sum-exp of (log β + log p_T, log(1 - β) + log p_S).
///
/// This is GKD's definition and TRL's `generalized_jsd_loss`. The ends are the KLs
/// exactly, as special cases: JSD_β itself goes to 0 at both ends (JSD_β ≈ β KL(p_T || p_S)
/// for small β, ≈ (1 - β) KL(p_S || p_T) near 1), so its scale is not continuous at β = 0
/// or 1. JSD_0.5 is the symmetric Jensen-Shannon divergence (at most ln 2).
///
/// Differentiable in `student_logits` (differentiable ops only, max detached in the
/// log-sum-exp); the teacher is detached. When the vocabularies differ in size (padded
/// embedding rows), only the ids of the smaller one are compared.
pub fn generalized_jsd(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    beta: f64,
    temperature: f64,
) -> Result<Tensor> {
    let valid = (0.0..=1.0).contains(&beta) && temperature > 0.0 && temperature.is_finite();
    if !valid {
        return Err(TrainError::Invalid(format!(
            "distillation needs 0 <= beta <= 1 and temperature > 0, got beta {beta}, temperature {temperature}"
        )));
    }
    let (vs, vt) = (
        student_logits.dim(D::Minus1)?,
        teacher_logits.dim(D::Minus1)?,
    );
    let v = vs.min(vt);
    let last = student_logits.rank() - 1;
    let s = student_logits.narrow(last, 0, v)?;
    let t = teacher_logits.detach().narrow(last, 0, v)?;
    if s.dims()[..last] != t.dims()[..last] {
        return Err(TrainError::Invalid(format!(
            "student logits {:?} and teacher logits {:?} cover different positions",
            student_logits.dims(),
            teacher_logits.dims()
        )));
    }
    let (s, t) = if temperature != 1.0 {
        ((s / temperature)?, (t / temperature)?)
    } else {
        (s, t)
    };
    let log_s = log_softmax(&s)?;
    let log_t = log_softmax(&t)?;
    if beta == 0.0 {
        return Ok(kl(&log_t, &log_s)?);
    }
    if beta == 1.0 {
        return Ok(kl(&log_s, &log_t)?);
    }
    let a = (&log_t + beta.ln())?;
    let b = (&log_s + (1.0 - beta).ln())?;
    let max = a.maximum(&b)?.detach();
    let log_m = ((a.broadcast_sub(&max)?.exp()? + b.broadcast_sub(&max)?.exp()?)?.log()? + &max)?;
    let jsd = ((kl(&log_t, &log_m)? * beta)? + (kl(&log_s, &log_m)? * (1.0 - beta))?)?;
    Ok(jsd)
}

/// Mean of `per_token` `[b, c]` over the positions where `mask` `[b, c]` is 1 (0 when none).
pub fn masked_mean(per_token: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask.sum_all()?.to_scalar::<f32>()?;
    Ok(((per_token * mask)?.sum_all()? / n.max(1.0) as f64)?)
}

/// The distillation loss of a batch and what it was computed over.
pub struct DistillOutput {
    /// Scalar: the mean divergence over the completion tokens, differentiable in the student.
    pub loss: Tensor,
    /// `[b, c]` divergence at each completion position (0 at padding).
    pub per_token: Tensor,
    /// Number of completion tokens (to weight micro-batches of one optimizer step).
    pub tokens: usize,
}

/// Teacher and student over the same `[prompt, completion]` sequences (one forward pass
/// each, the batch padded as in GRPO), compared at the positions that predict completion
/// tokens: the loss is the mean generalized JSD over those tokens. The student runs in
/// `Mode::Train` (gradients reach its trainable parameters), the teacher in inference.
/// The two models must share a tokenizer; their architectures and sizes may differ.
pub fn distill_loss(
    student: &Model,
    teacher: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    cfg: &DistillConfig,
) -> Result<DistillOutput> {
    let (per_token, mask) = divergence(student, teacher, prompts, completions, cfg)?;
    let loss = masked_mean(&per_token, &mask)?;
    Ok(DistillOutput {
        loss,
        per_token,
        tokens: completions.iter().map(|c| c.len()).sum(),
    })
}

/// The `[b, c]` divergence at each completion position (0 at padding) and the `[b, c]` mask.
fn divergence(
    student: &Model,
    teacher: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    cfg: &DistillConfig,
) -> Result<(Tensor, Tensor)> {
    let t = completion_logits(teacher, prompts, completions, Mode::Inference)?;
    let s = completion_logits(student, prompts, completions, Mode::Train)?;
    let per_token = (generalized_jsd(&s.logits, &t.logits, cfg.beta, cfg.temperature)? * &s.mask)?;
    Ok((per_token, s.mask))
}

/// Where a batch's completions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The dataset's completions (supervised distillation).
    Dataset,
    /// Generated by the student from the batch's prompts (on-policy).
    Student,
}

/// GKD's on-policy fraction: with probability `lambda` a batch is generated by the student,
/// otherwise it comes from the dataset (λ = 0: always the dataset, 1: always the student).
pub fn choose_source(lambda: f64, rng: &mut impl Rng) -> Source {
    // One draw per batch whatever λ, so the RNG stream does not depend on it.
    let u: f64 = rng.random();
    if u < lambda {
        Source::Student
    } else {
        Source::Dataset
    }
}

/// The completions of one batch: with probability `lambda` ([`choose_source`]) generated by
/// `student` from `prompts` with `opts` (the teacher then scores them in
/// [`distill_loss`]), else the dataset's `dataset_completions`.
pub fn batch_completions(
    lambda: f64,
    rng: &mut impl Rng,
    student: &Model,
    tokenizer: Option<&Tokenizer>,
    prompts: &[Vec<u32>],
    dataset_completions: &[Vec<u32>],
    opts: &GenerateOptions,
) -> Result<(Source, Vec<Vec<u32>>)> {
    if prompts.len() != dataset_completions.len() {
        return Err(TrainError::Invalid(
            "need one dataset completion per prompt".into(),
        ));
    }
    Ok(match choose_source(lambda, rng) {
        Source::Dataset => (Source::Dataset, dataset_completions.to_vec()),
        Source::Student => {
            let out = aha_engine::generate(student, tokenizer, prompts, opts, |_| {})?;
            (
                Source::Student,
                out.into_iter().map(|c| c.token_ids).collect(),
            )
        }
    })
}

// ---------------------------------------------------------------------------------------
// Teacher and student share a tokenizer
// ---------------------------------------------------------------------------------------

/// Teacher and student must share a tokenizer: the same vocabulary size and the same token
/// at every id (the divergence compares distributions id by id).
pub fn check_same_tokenizer(teacher: &Tokenizer, student: &Tokenizer) -> Result<()> {
    let (vt, vs) = (teacher.vocab_size(), student.vocab_size());
    if vt != vs {
        return Err(TrainError::Invalid(format!(
            "teacher and student need the same tokenizer: the teacher's has {vt} tokens, \
             the student's {vs}"
        )));
    }
    for id in 0..vt as u32 {
        let (a, b) = (teacher.id_to_token(id), student.id_to_token(id));
        if a != b {
            return Err(TrainError::Invalid(format!(
                "teacher and student need the same tokenizer: id {id} is {a:?} for the \
                 teacher and {b:?} for the student"
            )));
        }
    }
    Ok(())
}

/// An SFT example as a (prompt ids, completion ids) pair: the prompt is everything before
/// the first trained token, the completion runs from there to the last trained token
/// (untrained tokens between turns of a multi-turn chat stay in it). None when nothing is
/// trained or the prompt would be empty.
pub fn pair_from_example(ex: &Example) -> Option<(Vec<u32>, Vec<u32>)> {
    // labels[i] is the token at position i, predicted from the positions before it.
    let first = ex.labels.iter().skip(1).position(|&l| l != IGNORE)? + 1;
    let last = ex.labels.iter().rposition(|&l| l != IGNORE)?;
    Some((
        ex.input_ids[..first].to_vec(),
        ex.input_ids[first..=last].to_vec(),
    ))
}

// ---------------------------------------------------------------------------------------
// The logit-level run
// ---------------------------------------------------------------------------------------

/// A micro-batch of the logit-level objective.
pub struct LogitBatch {
    pub prompts: Vec<Vec<u32>>,
    pub completions: Vec<Vec<u32>>,
    /// Completion tokens of the whole optimizer step (the normaliser).
    pub step_tokens: usize,
}

impl LogitBatch {
    /// The micro-batches of one step over `prompts`/`completions`, `micro_batch` rows each.
    pub fn split(prompts: &[Vec<u32>], completions: &[Vec<u32>], micro_batch: usize) -> Vec<Self> {
        let step_tokens = completions.iter().map(Vec::len).sum();
        prompts
            .chunks(micro_batch.max(1))
            .zip(completions.chunks(micro_batch.max(1)))
            .map(|(p, c)| LogitBatch {
                prompts: p.to_vec(),
                completions: c.to_vec(),
                step_tokens,
            })
            .collect()
    }
}

/// The mean generalized JSD over all completion tokens of the optimizer step: each
/// micro-batch's summed divergence is divided by the step's completion-token count, so the
/// accumulated gradient is the full batch's whatever the micro-batching.
pub struct LogitObjective<'a> {
    pub teacher: &'a Model,
    pub cfg: DistillConfig,
}

impl Objective for LogitObjective<'_> {
    type Batch = LogitBatch;

    fn micro_loss(&self, model: &Model, batch: &LogitBatch) -> crate::trainer::Result<MicroLoss> {
        let p: Vec<&[u32]> = batch.prompts.iter().map(Vec::as_slice).collect();
        let c: Vec<&[u32]> = batch.completions.iter().map(Vec::as_slice).collect();
        let (per_token, mask) = divergence(model, self.teacher, &p, &c, &self.cfg)?;
        let sum = per_token.sum_all()?;
        let loss = (&sum / batch.step_tokens.max(1) as f64)?;
        let mut stats = Stats::new();
        stats.insert(
            "divergence_sum".into(),
            sum.detach().to_scalar::<f32>()? as f64,
        );
        stats.insert("tokens".into(), mask.sum_all()?.to_scalar::<f32>()? as f64);
        Ok(MicroLoss { loss, stats })
    }
}

/// A logit-level distillation run. Optimizer defaults as [`crate::sft::SftConfig`]'s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogitConfig {
    /// β and temperature of the divergence.
    pub distill: DistillConfig,
    /// GKD's on-policy fraction: the share of steps whose completions the student generates.
    pub lambda: f64,
    pub epochs: usize,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Rows per forward/backward pass (of the student and of the teacher).
    pub micro_batch: usize,
    /// Peak learning rate; None: [`crate::sft::default_lr`] for the student's size.
    pub lr: Option<f64>,
    pub warmup_ratio: f64,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Data order, on-policy draws and student sampling.
    pub seed: u64,
    /// Student generation on on-policy steps.
    pub max_tokens: usize,
    pub gen_temperature: f32,
    pub top_p: f32,
    /// Checkpoint every N steps (and at the end; 0: never).
    pub save_every: u64,
    pub progress: bool,
    /// End the run after this step (a checkpoint is written there when `save_every > 0`);
    /// the schedule still spans every epoch. None: run to the end.
    pub stop_after: Option<u64>,
    /// Continue from `out_dir/checkpoint`, with the student as the run started it (for LoRA
    /// the base without an adapter): the result equals a run that never stopped.
    #[serde(skip)]
    pub resume: bool,
}

impl Default for LogitConfig {
    fn default() -> Self {
        Self {
            distill: DistillConfig::default(),
            lambda: 0.0,
            epochs: 3,
            batch_size: 16,
            micro_batch: 4,
            lr: None,
            warmup_ratio: 0.1,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 0,
            max_tokens: 256,
            gen_temperature: 1.0,
            top_p: 1.0,
            save_every: 0,
            progress: false,
            stop_after: None,
            resume: false,
        }
    }
}

impl LogitConfig {
    pub fn steps_per_epoch(&self, n: usize) -> u64 {
        n.div_ceil(self.batch_size.max(1)) as u64
    }

    pub fn total_steps(&self, n: usize) -> u64 {
        self.steps_per_epoch(n) * self.epochs as u64
    }

    /// The sequence indices of step `step`: each epoch a seeded permutation cut into batches.
    fn step_indices(&self, n: usize, step: u64) -> Vec<usize> {
        let spe = self.steps_per_epoch(n).max(1);
        let (epoch, k) = (step / spe, (step % spe) as usize);
        let order = epoch_order(n, self.seed, epoch);
        let bs = self.batch_size.max(1);
        order[k * bs..((k + 1) * bs).min(n)].to_vec()
    }

    /// A seed for step `step` alone, so any step's draws are known without replaying others.
    fn step_seed(&self, step: u64) -> u64 {
        self.seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogitStep {
    pub step: u64,
    pub epoch: f64,
    /// Mean divergence per completion token of the step.
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    /// Completion tokens of the step.
    pub tokens: f64,
    /// Where the step's completions came from.
    pub source: Source,
    pub time_s: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogitReport {
    pub steps: u64,
    pub sequences: usize,
    pub lr: f64,
    pub first_loss: Option<f64>,
    pub final_loss: Option<f64>,
    /// Steps whose completions the student generated.
    pub on_policy_steps: u64,
    pub trained_tokens: f64,
    pub wall_s: f64,
    pub resumed_from: Option<u64>,
}

/// Distil `teacher` into `student` on `data` (prompt ids, completion ids) for `cfg.epochs`,
/// writing `config.json`, `metrics.jsonl` and (with `save_every`) `checkpoint/` under
/// `out_dir` (see [`LogitConfig::resume`]; data order, on-policy draws and student samples
/// depend only on the seed and the step, so a resumed run continues exactly). Each step takes a batch of prompts; with probability λ its completions are
/// generated by the student (EOS ids from `tok`, else the student's config), otherwise the
/// dataset's are used; the teacher scores them and the student minimises the mean
/// generalized JSD over the step's completion tokens. Returns the trained student.
pub fn train_logit(
    student: Model,
    teacher: &Model,
    tok: Option<&Tokenizer>,
    data: &[(Vec<u32>, Vec<u32>)],
    cfg: &LogitConfig,
    out_dir: &Path,
) -> Result<(Model, LogitReport)> {
    let t_start = Instant::now();
    let invalid = |m: &str| TrainError::Invalid(m.to_string());
    if data.is_empty() {
        return Err(invalid("no distillation data"));
    }
    if data.iter().any(|(p, _)| p.is_empty()) {
        return Err(invalid("every prompt needs at least one token"));
    }
    if cfg.batch_size == 0 || cfg.micro_batch == 0 || cfg.epochs == 0 {
        return Err(invalid(
            "epochs, batch_size and micro_batch must be positive",
        ));
    }
    if !(0.0..=1.0).contains(&cfg.lambda) {
        return Err(TrainError::Invalid(format!(
            "the on-policy fraction lambda must lie in [0, 1], got {}",
            cfg.lambda
        )));
    }
    // Checked once here rather than at the first step.
    generalized_jsd(
        &Tensor::zeros((1, 1), candle_core::DType::F32, student.device())?,
        &Tensor::zeros((1, 1), candle_core::DType::F32, student.device())?,
        cfg.distill.beta,
        cfg.distill.temperature,
    )?;
    std::fs::create_dir_all(out_dir).map_err(|e| file_err(out_dir, e))?;
    let ckpt = out_dir.join("checkpoint");
    let lora = student.adapter().is_some()
        || (cfg.resume && ckpt.join(aha_model::lora::CONFIG_FILE).is_file());
    let lr = cfg
        .lr
        .unwrap_or_else(|| crate::sft::default_lr(student.params().count(), lora));
    let total = cfg.total_steps(data.len());
    let optim = OptimConfig::cosine(
        lr,
        total,
        cfg.warmup_ratio,
        cfg.min_lr_ratio,
        cfg.weight_decay,
        cfg.max_grad_norm,
    );
    let state = serde_json::json!({ "config": cfg, "lr": lr, "sequences": data.len() });
    let config_text = serde_json::to_string_pretty(&serde_json::json!({
        "distill": state,
        "optimizer": optim,
    }))
    .map_err(|e| TrainError::Invalid(e.to_string()))?;
    aha_model::write_atomic(&out_dir.join("config.json"), config_text.as_bytes())
        .map_err(TrainError::from)?;
    let eos = match tok {
        Some(t) if !t.eos_token_ids().is_empty() => t.eos_token_ids().to_vec(),
        _ => student.eos_token_ids(),
    };
    let mut trainer = if cfg.resume {
        let (t, saved) = Trainer::resume(&ckpt, student, optim)?;
        let n = saved.get("sequences").and_then(|v| v.as_u64());
        if n != Some(data.len() as u64) {
            return Err(file_err(
                &ckpt,
                format!(
                    "the checkpoint trained on {n:?} sequences, this run has {}",
                    data.len()
                ),
            ));
        }
        t
    } else {
        Trainer::new(student, optim)?
    };
    let resumed_from = cfg.resume.then_some(trainer.step);
    let mut metrics = MetricsSink::open(&out_dir.join("metrics.jsonl"), resumed_from)?;
    let objective = LogitObjective {
        teacher,
        cfg: cfg.distill,
    };
    let mut report = LogitReport {
        steps: total,
        sequences: data.len(),
        lr,
        first_loss: None,
        final_loss: None,
        on_policy_steps: 0,
        trained_tokens: 0.0,
        wall_s: 0.0,
        resumed_from,
    };
    let spe = cfg.steps_per_epoch(data.len());
    let bar = cfg.progress.then(|| progress_bar(total));
    if let Some(b) = &bar {
        b.set_position(trainer.step);
    }
    let end = cfg.stop_after.map_or(total, |s| s.min(total));
    while trainer.step < end {
        let t0 = Instant::now();
        let idx = cfg.step_indices(data.len(), trainer.step);
        let prompts: Vec<Vec<u32>> = idx.iter().map(|&i| data[i].0.clone()).collect();
        let dataset: Vec<Vec<u32>> = idx.iter().map(|&i| data[i].1.clone()).collect();
        let seed = cfg.step_seed(trainer.step);
        let opts = GenerateOptions {
            sampling: SamplingParams {
                temperature: cfg.gen_temperature,
                top_p: cfg.top_p,
                ..Default::default()
            },
            max_tokens: cfg.max_tokens,
            seed,
            stop_token_ids: eos.clone(),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let (source, completions) = batch_completions(
            cfg.lambda,
            &mut rng,
            &trainer.model,
            tok,
            &prompts,
            &dataset,
            &opts,
        )?;
        let batches = LogitBatch::split(&prompts, &completions, cfg.micro_batch);
        let out = trainer.step(&objective, &batches)?;
        let tokens = out.stats.get("tokens").copied().unwrap_or(0.0);
        let line = LogitStep {
            step: out.step,
            epoch: out.step as f64 / spe as f64,
            loss: out.loss,
            grad_norm: out.grad_norm,
            lr: out.lr,
            tokens,
            source,
            // Student generation included.
            time_s: t0.elapsed().as_secs_f64(),
        };
        metrics.write(&line)?;
        report.first_loss.get_or_insert(out.loss);
        report.final_loss = Some(out.loss);
        report.trained_tokens += tokens;
        report.on_policy_steps += u64::from(source == Source::Student);
        if let Some(b) = &bar {
            b.set_position(trainer.step);
            b.set_message(format!("divergence {:.4}", out.loss));
        }
        if cfg.save_every > 0
            && (trainer.step == end || trainer.step.is_multiple_of(cfg.save_every))
        {
            trainer.save_checkpoint(&ckpt, &state)?;
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }
    report.wall_s = t_start.elapsed().as_secs_f64();
    Ok((trainer.model, report))
}
