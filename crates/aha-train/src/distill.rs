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

use crate::grpo::{completion_logits, log_softmax, GrpoError};
use aha_engine::GenerateOptions;
use aha_model::{Mode, Model};
use aha_text::Tokenizer;
use candle_core::{Tensor, D};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub type Result<T> = std::result::Result<T, GrpoError>;

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
        return Err(GrpoError::Invalid(format!(
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
        return Err(GrpoError::Invalid(format!(
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
    let t = completion_logits(teacher, prompts, completions, Mode::Inference)?;
    let s = completion_logits(student, prompts, completions, Mode::Train)?;
    let per_token = (generalized_jsd(&s.logits, &t.logits, cfg.beta, cfg.temperature)? * &s.mask)?;
    let loss = masked_mean(&per_token, &s.mask)?;
    Ok(DistillOutput {
        loss,
        per_token,
        tokens: completions.iter().map(|c| c.len()).sum(),
    })
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
        return Err(GrpoError::Invalid(
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
