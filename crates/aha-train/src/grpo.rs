//! GRPO (Group Relative Policy Optimization), the reinforcement learning of DeepSeek-R1-Zero,
//! with the variants that followed it: Dr. GRPO (no std division, constant normaliser), DAPO
//! (clip-higher, token-level aggregation, overlong masking; groups with all-equal rewards can
//! be dropped, which is not DAPO's dynamic sampling: see [`GrpoConfig::drop_zero_std_groups`]).
//!
//! The pieces, each usable alone:
//! * [`group_advantages`]: rewards -> advantages within each group of G samples.
//! * [`completion_logprobs`]: per-token log-probs (and entropy) of completions given their
//!   prompts, for a whole batch in one forward pass ([`completion_logits`]: the logits).
//! * [`token_weights`] + [`grpo_loss`]: the clipped-ratio objective with a k3 KL penalty and
//!   the three loss aggregations.
//! * [`GrpoTrainer`]: sampling with the engine, rewards, several optimisation passes per
//!   batch, AdamW, checkpoints and exact resume.

use crate::optim::{AdamWConfig, LrSchedule};
use crate::rollout::{Generated, Local, Pending, RolloutRequest, RolloutSource};
use crate::trainer::{MicroLoss, Objective, OptimConfig, Stats, Trainer};
use aha_engine::{Completion, FinishReason, GenerateOptions, SamplingParams};
use aha_model::{ForwardInput, LogitsFor, Mode, Model};
use aha_text::Tokenizer;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

use crate::error::file_err;
pub use crate::error::{Result, TrainError};

// ---------------------------------------------------------------------------------------
// Advantages
// ---------------------------------------------------------------------------------------

/// How rewards become advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageNorm {
    /// (r - group mean) / (group std + eps): GRPO / R1.
    Group,
    /// r - group mean: Dr. GRPO (no std division).
    NoStd,
    /// (r - group mean) / (std over the whole batch + eps).
    Batch,
}

/// Unbiased standard deviation (as `torch.std`); 0 for fewer than 2 values.
pub fn std_dev(xs: &[f32]) -> f32 {
    let n = xs.len();
    if n < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f32>() / n as f32;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (n - 1) as f32).sqrt()
}

fn mean(xs: &[f32]) -> f32 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f32>() / xs.len() as f32
    }
}

/// Advantages of `rewards` laid out as consecutive groups of `group_size` samples of the
/// same prompt. `eps` guards the division (TRL uses 1e-4).
pub fn group_advantages(
    rewards: &[f32],
    group_size: usize,
    norm: AdvantageNorm,
    eps: f32,
) -> Vec<f32> {
    assert!(
        group_size > 0 && rewards.len().is_multiple_of(group_size),
        "rewards must be whole groups"
    );
    let batch_std = std_dev(rewards);
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group_size) {
        let m = mean(g);
        let scale = match norm {
            AdvantageNorm::Group => 1.0 / (std_dev(g) + eps),
            AdvantageNorm::NoStd => 1.0,
            AdvantageNorm::Batch => 1.0 / (batch_std + eps),
        };
        out.extend(g.iter().map(|r| (r - m) * scale));
    }
    out
}

/// Whether each group's rewards are all equal (such a group has zero advantages and no
/// learning signal).
pub fn zero_variance_groups(rewards: &[f32], group_size: usize) -> Vec<bool> {
    rewards
        .chunks(group_size)
        .map(|g| g.iter().all(|&r| (r - g[0]).abs() <= 1e-6))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Log-probs
// ---------------------------------------------------------------------------------------

/// Per-token log-probs of completions given their prompts.
pub struct CompletionLogprobs {
    /// [b, c] log p(completion token | prefix); 0 at padding.
    pub logprobs: Tensor,
    /// [b, c] entropy of the next-token distribution at each completion position (detached).
    pub entropy: Tensor,
    /// [b, c] f32, 1 at real completion tokens.
    pub mask: Tensor,
}

/// The logits that predict each completion token, from one forward pass over the batch.
pub struct CompletionLogits {
    /// [b, c, vocab] f32: row r, position k predicts completion token k of row r.
    pub logits: Tensor,
    /// [b, c, 1] u32: the completion tokens (0 at padding).
    pub targets: Tensor,
    /// [b, c] f32, 1 at real completion tokens.
    pub mask: Tensor,
}

/// Prompts and completions laid out as `[left pad, prompt, completion, right pad]`.
struct CompletionBatch {
    input_ids: Tensor,
    position_ids: Tensor,
    key_mask: Tensor,
    /// Completion tokens per row (the logits of the last this-many-plus-one positions are
    /// needed).
    c_max: usize,
    /// [b, c] u32: the completion tokens (0 at padding).
    targets: Tensor,
    /// [b, c] f32, 1 at real completion tokens.
    mask: Tensor,
}

impl CompletionBatch {
    fn input(&self, mode: Mode) -> ForwardInput<'_> {
        ForwardInput {
            input_ids: &self.input_ids,
            position_ids: &self.position_ids,
            key_mask: Some(&self.key_mask),
            segments: None,
            mode,
            logits: LogitsFor::Tail(self.c_max + 1),
        }
    }
}

fn completion_batch(
    model: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
) -> Result<CompletionBatch> {
    if prompts.len() != completions.len() || prompts.is_empty() {
        return Err(TrainError::Invalid(
            "need one completion per prompt, and at least one".into(),
        ));
    }
    if prompts.iter().any(|p| p.is_empty()) {
        return Err(TrainError::Invalid(
            "every prompt needs at least one token".into(),
        ));
    }
    let device = model.device();
    let b = prompts.len();
    let p_max = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let c_max = completions
        .iter()
        .map(|c| c.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let width = p_max + c_max;
    let mut ids = vec![0u32; b * width];
    let mut pos = vec![0u32; b * width];
    let mut key = vec![0u8; b * width];
    let mut targets = vec![0u32; b * c_max];
    let mut mask = vec![0f32; b * c_max];
    for r in 0..b {
        let (p, c) = (prompts[r], completions[r]);
        let pad = p_max - p.len();
        for (j, &t) in p.iter().chain(c.iter()).enumerate() {
            ids[r * width + pad + j] = t;
            pos[r * width + pad + j] = j as u32;
            key[r * width + pad + j] = 1;
        }
        // Right padding continues the positions (its outputs are masked anyway).
        for j in p.len() + c.len()..width - pad {
            pos[r * width + pad + j] = j as u32;
        }
        for (k, &t) in c.iter().enumerate() {
            targets[r * c_max + k] = t;
            mask[r * c_max + k] = 1.0;
        }
    }
    Ok(CompletionBatch {
        input_ids: Tensor::from_vec(ids, (b, width), device)?,
        position_ids: Tensor::from_vec(pos, (b, width), device)?,
        key_mask: Tensor::from_vec(key, (b, width), device)?,
        c_max,
        targets: Tensor::from_vec(targets, (b, c_max), device)?,
        mask: Tensor::from_vec(mask, (b, c_max), device)?,
    })
}

/// One forward pass over the batch laid out as `[left pad, prompt, completion, right pad]`,
/// keeping the logits at the positions that predict completion tokens. `Mode::Train` keeps
/// the graph to the parameters; `Mode::Inference` detaches.
pub fn completion_logits(
    model: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    mode: Mode,
) -> Result<CompletionLogits> {
    let batch = completion_batch(model, prompts, completions)?;
    let logits = model
        .forward(&batch.input(mode), None)?
        .to_dtype(DType::F32)?;
    // Logits at position p_max - 1 + k predict completion token k; the tail starts at p_max - 1.
    let logits = logits.narrow(1, 0, batch.c_max)?;
    let logits = if mode == Mode::Inference {
        logits.detach()
    } else {
        logits
    };
    Ok(CompletionLogits {
        logits,
        targets: batch.targets.unsqueeze(2)?,
        mask: batch.mask,
    })
}

/// [`completion_logprobs_at`] at temperature 1: the model's own distribution.
pub fn completion_logprobs(
    model: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    mode: Mode,
) -> Result<CompletionLogprobs> {
    completion_logprobs_at(model, prompts, completions, mode, 1.0)
}

/// Per-token log-probs and entropies of completions under softmax(logits / temperature),
/// the distribution the sampler draws from at that temperature (top-p/top-k truncation
/// aside, as in TRL). `temperature <= 0` (greedy) scores at 1.
pub fn completion_logprobs_at(
    model: &Model,
    prompts: &[&[u32]],
    completions: &[&[u32]],
    mode: Mode,
    temperature: f32,
) -> Result<CompletionLogprobs> {
    let batch = completion_batch(model, prompts, completions)?;
    let scale = if temperature > 0.0 {
        1.0 / temperature as f64
    } else {
        1.0
    };
    let (logprobs, entropy) = model.target_logprobs(&batch.input(mode), &batch.targets, scale)?;
    let mask = batch.mask;
    let logprobs = (logprobs * &mask)?;
    let entropy = (entropy * &mask)?;
    Ok(CompletionLogprobs {
        logprobs,
        entropy,
        mask,
    })
}

// ---------------------------------------------------------------------------------------
// The loss
// ---------------------------------------------------------------------------------------

/// How per-token losses are reduced to the batch loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAgg {
    /// Mean over each sequence's tokens, then mean over sequences (GRPO).
    Sequence,
    /// Sum over all tokens of the batch / number of tokens (DAPO).
    Token,
    /// Sum over all tokens / (sequences x max completion length) (Dr. GRPO).
    Constant,
}

/// The normalisers of the whole sampled batch (over all micro-batches), so that the
/// micro-batch losses sum to the batch loss and accumulated gradients equal the full-batch
/// gradient. They count every row of the batch, also rows that get no loss (masked as
/// truncated, in dropped groups): a row leaving the loss never raises the weight of the
/// others. This is TRL's convention for the sequence mean and for Dr. GRPO's constant (a
/// masked row adds 0 to the mean over all rows); for token-level aggregation TRL drops a
/// masked row's tokens from its count, which we do not, for the same reason.
#[derive(Debug, Clone, Copy)]
pub struct LossNorm {
    pub total_seqs: f64,
    pub total_tokens: f64,
    pub max_tokens: f64,
}

impl LossNorm {
    /// Normalisers of one batch with these completion lengths (every row of the batch).
    pub fn of(lengths: &[usize], max_tokens: usize) -> Self {
        Self {
            total_seqs: lengths.len() as f64,
            total_tokens: lengths.iter().sum::<usize>() as f64,
            max_tokens: max_tokens as f64,
        }
    }
}

/// The weight of each token of row i (the same for all its tokens): the loss is
/// `sum_i sum_t w_i * mask_it * loss_it`.
pub fn token_weights(lengths: &[usize], agg: LossAgg, norm: &LossNorm) -> Vec<f32> {
    lengths
        .iter()
        .map(|&len| {
            let w = match agg {
                LossAgg::Sequence => 1.0 / (len.max(1) as f64 * norm.total_seqs.max(1.0)),
                LossAgg::Token => 1.0 / norm.total_tokens.max(1.0),
                LossAgg::Constant => 1.0 / (norm.total_seqs * norm.max_tokens).max(1.0),
            };
            w as f32
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LossConfig {
    /// Clip the ratio below at 1 - eps_low ...
    pub eps_low: f64,
    /// ... and above at 1 + eps_high (DAPO's clip-higher: eps_high > eps_low).
    pub eps_high: f64,
    /// Coefficient of the k3 KL estimate against the reference.
    pub beta: f64,
}

/// The loss of a (micro-)batch and its statistics.
pub struct LossOutput {
    /// Scalar loss to backpropagate.
    pub loss: Tensor,
    /// [b, t] per-token loss before weighting (masked).
    pub per_token: Tensor,
    /// Sum of the k3 KL estimate over real tokens (0 without a reference).
    pub kl_sum: f64,
    /// Real tokens where the ratio was clipped below (advantage < 0) / above (advantage > 0).
    pub clipped_low: f64,
    pub clipped_high: f64,
    /// Number of real tokens.
    pub tokens: f64,
}

/// The GRPO objective per token, negated to a loss:
/// `-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + beta * k3`, with `r = exp(logp -
/// old_logp)` and `k3 = exp(ref - logp) - (ref - logp) - 1`; reduced with `weights` (one per
/// row, from [`token_weights`]). Shapes: logp/old/ref/mask [b, t], advantages `[b]` (one per
/// row) or `[b, t]` (per token: importance-weighted).
pub fn grpo_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    ref_logp: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    weights: &Tensor,
    cfg: &LossConfig,
) -> Result<LossOutput> {
    let old_logp = old_logp.detach();
    let adv = match advantages.rank() {
        1 => advantages.detach().unsqueeze(1)?,
        _ => advantages.detach(),
    };
    let ratio = (logp - &old_logp)?.exp()?;
    let unclipped = ratio.broadcast_mul(&adv)?;
    let clipped = ratio
        .clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)?
        .broadcast_mul(&adv)?;
    let mut per_token = unclipped.minimum(&clipped)?.neg()?;
    let mut kl_sum = 0.0;
    if let Some(r) = ref_logp {
        let d = (r.detach() - logp)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        kl_sum = (k3.detach() * mask)?.sum_all()?.to_scalar::<f32>()? as f64;
        if cfg.beta != 0.0 {
            per_token = (per_token + (k3 * cfg.beta)?)?;
        }
    }
    let per_token = (per_token * mask)?;
    let loss = per_token.broadcast_mul(&weights.unsqueeze(1)?)?.sum_all()?;
    // Clip statistics, on detached values.
    let ratio_v: Vec<Vec<f32>> = ratio.detach().to_vec2()?;
    let adv_v: Vec<Vec<f32>> = adv.broadcast_as(ratio.shape())?.contiguous()?.to_vec2()?;
    let mask_v: Vec<Vec<f32>> = mask.to_vec2()?;
    let (mut lo, mut hi, mut tokens) = (0.0, 0.0, 0.0);
    for i in 0..ratio_v.len() {
        for t in 0..ratio_v[i].len() {
            if mask_v[i][t] == 0.0 {
                continue;
            }
            tokens += 1.0;
            let r = ratio_v[i][t] as f64;
            if adv_v[i][t] < 0.0 && r < 1.0 - cfg.eps_low {
                lo += 1.0;
            }
            if adv_v[i][t] > 0.0 && r > 1.0 + cfg.eps_high {
                hi += 1.0;
            }
        }
    }
    Ok(LossOutput {
        loss,
        per_token,
        kl_sum,
        clipped_low: lo,
        clipped_high: hi,
        tokens,
    })
}

// ---------------------------------------------------------------------------------------
// Rewards
// ---------------------------------------------------------------------------------------

/// One sampled completion, as a reward function sees it.
pub struct Sample<'a> {
    pub prompt: &'a Prompt,
    pub token_ids: &'a [u32],
    /// Decoded text ("" without a tokenizer).
    pub text: &'a str,
    pub truncated: bool,
}

/// A weighted set of named reward terms.
pub trait Rewarder: Send + Sync {
    fn names(&self) -> Vec<String>;
    fn weights(&self) -> Vec<f32>;
    /// Unweighted value of each term.
    fn score(&self, sample: &Sample) -> Vec<f32>;
}

/// Reward terms from an aha-reward spec such as `accuracy,format:0.5`, plus `tool_call`
/// ([`tool_calls_match`]) for a model whose chat template writes tool calls.
pub struct SpecReward {
    pub names: Vec<String>,
    terms: Vec<(Term, f32)>,
}

enum Term {
    Rule(aha_reward::RewardFn),
    ToolCall(aha_text::ToolCallFormat),
}

impl SpecReward {
    pub fn parse(spec: &str) -> Result<Self> {
        Self::parse_with(spec, None)
    }

    /// With `tool_format` (the policy's chat template's), the spec may also name
    /// `tool_call[:weight]`.
    pub fn parse_with(spec: &str, tool_format: Option<aha_text::ToolCallFormat>) -> Result<Self> {
        let bad = |e: String| TrainError::Invalid(format!("reward spec {spec:?}: {e}"));
        let (mut depth, mut start) = (0i32, 0usize);
        let mut items = Vec::new();
        for (i, c) in spec.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&spec[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&spec[start..]);
        let (mut names, mut terms) = (Vec::new(), Vec::new());
        for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
            let end = item.find(['(', ':']).unwrap_or(item.len());
            let name = item[..end].trim();
            if name == "tool_call" {
                let weight = match item[end..].strip_prefix(':') {
                    Some(w) => w
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|w| w.is_finite())
                        .ok_or_else(|| bad(format!("bad weight {w:?} for tool_call")))?,
                    None => 1.0,
                };
                let format = tool_format.ok_or_else(|| {
                    bad("tool_call needs a model whose chat template writes tool calls".into())
                })?;
                terms.push((Term::ToolCall(format), weight));
            } else {
                let r = aha_reward::Reward::parse(item).map_err(|e| bad(e.to_string()))?;
                terms.extend(r.terms.into_iter().map(|(f, w)| (Term::Rule(f), w)));
            }
            names.push(name.to_string());
        }
        if terms.is_empty() {
            return Err(bad("no reward terms".into()));
        }
        Ok(Self { names, terms })
    }
}

impl Rewarder for SpecReward {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn weights(&self) -> Vec<f32> {
        self.terms.iter().map(|(_, w)| *w).collect()
    }
    fn score(&self, s: &Sample) -> Vec<f32> {
        let gold = s.prompt.gold.as_deref();
        let x = aha_reward::RewardInput {
            completion: s.text,
            gold,
            num_tokens: Some(s.token_ids.len()),
        };
        self.terms
            .iter()
            .map(|(t, _)| match t {
                Term::Rule(f) => f.score_input(&x),
                Term::ToolCall(format) => f32::from(u8::from(
                    gold.is_some_and(|g| tool_calls_match(*format, s.text, g)),
                )),
            })
            .collect()
    }
}

/// Whether a completion's tool calls (in `format`, after or ending its reasoning) are the
/// reference calls: the same functions in the same order, arguments equal as JSON values.
/// `gold` is one call `{"name", "arguments"}` or a list of them (OpenAI's `tool_calls` shape
/// `{"function": {"name", "arguments"}}` too; arguments an object or a JSON string).
pub fn tool_calls_match(format: aha_text::ToolCallFormat, completion: &str, gold: &str) -> bool {
    let Ok(gold) = serde_json::from_str::<serde_json::Value>(gold) else {
        return false;
    };
    let wanted: Vec<&serde_json::Value> = match &gold {
        serde_json::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let as_json = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => serde_json::from_str(s).ok(),
        v => Some(v.clone()),
    };
    let Some(answer) = answer_calls(format, completion) else {
        return false;
    };
    answer.calls.len() == wanted.len()
        && answer.calls.iter().zip(wanted).all(|(c, w)| {
            let w = if w.get("function").is_some() {
                &w["function"]
            } else {
                w
            };
            let args: Option<serde_json::Value> = serde_json::from_str(&c.arguments).ok();
            w["name"] == c.name.as_str() && args.is_some() && args == as_json(&w["arguments"])
        })
}

/// A completion's tool calls in `format` (a call written before `</think>` ends the
/// reasoning); the reasoning counts as opened by the prompt when the completion closes it
/// without opening it.
pub fn answer_calls(
    format: aha_text::ToolCallFormat,
    completion: &str,
) -> Option<aha_text::AnswerCalls> {
    let opened = !completion.trim_start().starts_with("<think>") && completion.contains("</think>");
    let split = aha_text::split_reasoning(completion, opened);
    format.answer_calls(&split.reasoning, &split.content)
}

/// One reward term computed by a closure (tests, custom tasks).
pub struct FnReward<F: Fn(&Sample) -> f32 + Send + Sync> {
    pub name: String,
    pub f: F,
}

impl<F: Fn(&Sample) -> f32 + Send + Sync> Rewarder for FnReward<F> {
    fn names(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
    fn weights(&self) -> Vec<f32> {
        vec![1.0]
    }
    fn score(&self, s: &Sample) -> Vec<f32> {
        vec![(self.f)(s)]
    }
}

// ---------------------------------------------------------------------------------------
// The trainer
// ---------------------------------------------------------------------------------------

/// A training prompt: its token ids and the gold answer the rewards check against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub gold: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrpoConfig {
    /// G: samples per prompt.
    pub group_size: usize,
    pub sampling: SamplingParams,
    /// Maximum completion length.
    pub max_tokens: usize,
    pub stop_token_ids: Vec<u32>,
    pub stop_strings: Vec<String>,
    pub lr: f64,
    /// Warmup length in GRPO steps.
    pub warmup_steps: u64,
    /// Total GRPO steps of the cosine schedule (0: constant learning rate after warmup).
    /// The schedule is indexed by GRPO step, not by optimizer step: all `num_iterations`
    /// passes over a step's batch use that step's learning rate, so the cosine ends at the
    /// last step whatever the number of passes.
    pub total_steps: u64,
    pub min_lr_ratio: f64,
    pub adam: AdamWConfig,
    /// Global gradient-norm bound (0: no clipping).
    pub max_grad_norm: f64,
    /// KL coefficient; 0 keeps no reference model.
    pub beta: f64,
    pub eps_low: f64,
    pub eps_high: f64,
    pub advantage: AdvantageNorm,
    pub advantage_eps: f32,
    pub loss_agg: LossAgg,
    /// Optimisation passes (each one optimizer step) per sampled batch.
    pub num_iterations: usize,
    /// Sequences per forward/backward (gradient accumulation over micro-batches).
    pub micro_batch: usize,
    /// Give truncated completions (no EOS within max_tokens) no loss.
    pub mask_truncated: bool,
    /// Skip the groups whose rewards are all equal. Their advantages are 0, so with the
    /// whole-batch normalisers ([`LossNorm`]) this saves their forward and backward passes
    /// and changes the update only through the KL term (their rows get no KL penalty). It is
    /// not DAPO's dynamic sampling, which samples more prompts until the batch is full of
    /// groups with a signal: the batch here just has fewer rows that train.
    #[serde(alias = "filter_zero_std")]
    pub drop_zero_std_groups: bool,
    /// Reset the reference to the current policy every N steps (0: never).
    pub ref_reset_every: u64,
    pub seed: u64,
    /// Keep this many sampled completions in the metrics every `samples_every` steps.
    pub samples_every: u64,
    pub samples_count: usize,
    /// Rollouts sampled by weights more than this many GRPO steps older than the policy are
    /// dropped (remote or asynchronous rollouts; local ones are always fresh).
    pub max_staleness: u64,
    /// Truncated importance sampling for rollouts whose sampler reported log-probs: each
    /// token's policy-gradient term is weighted by min(pi_policy / pi_sampler, tis_cap),
    /// correcting for stale weights and for sampler/trainer numerics (0: off).
    pub tis_cap: f64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            sampling: SamplingParams::default(),
            max_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            lr: 1e-6,
            warmup_steps: 0,
            total_steps: 0,
            min_lr_ratio: 0.1,
            adam: AdamWConfig::default(),
            max_grad_norm: 1.0,
            beta: 0.001,
            eps_low: 0.2,
            eps_high: 0.2,
            advantage: AdvantageNorm::Group,
            advantage_eps: 1e-4,
            loss_agg: LossAgg::Sequence,
            num_iterations: 1,
            micro_batch: 8,
            mask_truncated: false,
            drop_zero_std_groups: false,
            ref_reset_every: 0,
            seed: 0,
            samples_every: 0,
            samples_count: 2,
            max_staleness: 1,
            tis_cap: 2.0,
        }
    }
}

impl GrpoConfig {
    /// The temperature of the trainer's log-probs: the sampling temperature (logits / T,
    /// as the sampler and TRL do), 1 for greedy sampling (T = 0).
    pub fn logprob_temperature(&self) -> f32 {
        let t = self.sampling.temperature;
        if t > 0.0 {
            t
        } else {
            1.0
        }
    }

    /// The trainer's optimizer settings. Its schedule is not used: GRPO takes the learning
    /// rate of [`GrpoConfig::schedule`] by GRPO step.
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.total_steps,
            min_lr_ratio: self.min_lr_ratio,
            adam: self.adam.clone(),
            max_grad_norm: self.max_grad_norm,
        }
    }

    pub fn schedule(&self) -> LrSchedule {
        self.optim().schedule()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TermStat {
    pub name: String,
    pub mean: f32,
    pub std: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleLog {
    pub prompt: usize,
    pub reward: f32,
    pub text: String,
}

/// What one GRPO step did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    /// Steps done after this one.
    pub step: u64,
    pub reward_mean: f32,
    pub reward_std: f32,
    pub rewards: Vec<TermStat>,
    /// Share of samples whose accuracy-type term (accuracy, gsm8k, countdown, arithmetic) > 0.5.
    pub accuracy: Option<f32>,
    /// Share of samples whose format term (format, r1_zero_format) > 0.5.
    pub format_rate: Option<f32>,
    pub completion_len_mean: f32,
    pub completion_len_max: usize,
    pub truncated_rate: f32,
    /// Groups skipped for all-equal rewards (with `drop_zero_std_groups`).
    pub groups_dropped: usize,
    pub loss: f32,
    /// Mean k3 KL to the reference per token (0 without a reference).
    pub kl: f32,
    pub entropy: f32,
    pub clip_frac: f32,
    pub clip_low_frac: f32,
    pub clip_high_frac: f32,
    /// Pre-clip gradient norm of the last pass.
    pub grad_norm: f32,
    pub lr: f64,
    pub rollout_tokens_per_s: f32,
    pub train_tokens_per_s: f32,
    pub time_sample_s: f32,
    pub time_score_s: f32,
    pub time_train_s: f32,
    pub time_total_s: f32,
    /// Time the trainer waited for this step's rollouts (less than `time_sample_s` when
    /// generation overlapped the previous step's training).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_wait_s: f32,
    /// Samples dropped for coming from weights older than `max_staleness` steps.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub stale_dropped: usize,
    /// The oldest rollout's age in GRPO steps.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub staleness_max: u64,
    /// Mean |log pi_trainer - log pi_sampler| per completion token, where the sampler
    /// reported log-probs (remote rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_mismatch: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SampleLog>,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}
fn is_zero_usize(x: &usize) -> bool {
    *x == 0
}
fn is_zero_u64(x: &u64) -> bool {
    *x == 0
}

impl StepMetrics {
    /// The metrics with the wall-clock fields zeroed (to compare runs).
    pub fn without_times(&self) -> StepMetrics {
        StepMetrics {
            rollout_tokens_per_s: 0.0,
            train_tokens_per_s: 0.0,
            time_sample_s: 0.0,
            time_score_s: 0.0,
            time_train_s: 0.0,
            time_total_s: 0.0,
            time_wait_s: 0.0,
            ..self.clone()
        }
    }
}

/// The sampled and scored batch of one step.
pub struct Rollout {
    /// Prompt of each sample (G consecutive samples per prompt).
    pub prompt_ids: Vec<Vec<u32>>,
    pub completions: Vec<Completion>,
    /// Weighted total reward of each sample.
    pub rewards: Vec<f32>,
    /// Unweighted reward terms of each sample.
    pub terms: Vec<Vec<f32>>,
    pub advantages: Vec<f32>,
    /// The policy version (GRPO steps done) that sampled each sample.
    pub versions: Vec<u64>,
    /// The sampler's log-probs of each sample's tokens, when it reported them.
    pub sampler_logprobs: Vec<Option<Vec<f32>>>,
    pub time_sample_s: f32,
    pub time_score_s: f32,
}

/// The objective's state saved with each checkpoint (the optimizer-step count is the
/// trainer's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// GRPO steps done.
    pub step: u64,
    pub config: GrpoConfig,
}

/// GRPO on the shared [`Trainer`]: rollouts from the engine, scored by the rewarder; each
/// step's batch then trains for `num_iterations` optimizer steps of the [`GrpoObjective`].
pub struct GrpoTrainer {
    /// The policy, its optimizer and the optimizer-step count.
    pub trainer: Trainer,
    /// The frozen reference (only when beta > 0).
    pub reference: Option<Model>,
    pub tokenizer: Option<Tokenizer>,
    pub reward: Box<dyn Rewarder>,
    pub cfg: GrpoConfig,
    /// GRPO steps done.
    pub step: u64,
    /// Where rollouts come from (the trainer's own engine unless set).
    pub rollouts: Box<dyn RolloutSource>,
}

/// One micro-batch of a GRPO update: sampled rows with their advantages and loss weights,
/// and the log-probs of the sampling policy and of the reference when they are needed.
pub struct GrpoBatch {
    pub prompts: Vec<Vec<u32>>,
    pub completions: Vec<Vec<u32>>,
    /// `[b]` advantages.
    pub advantages: Tensor,
    /// `[b]` per-token loss weights of each row ([`token_weights`]).
    pub weights: Tensor,
    /// [b, c] log-probs of the policy that sampled (None: the current policy, detached).
    pub old: Option<Tensor>,
    /// [b, c] log-probs of the reference (None: no KL term).
    pub reference: Option<Tensor>,
    /// [b, c] log-probs the sampler reported (None: it did not, or not for every row).
    pub sampler: Option<Tensor>,
}

/// The clipped-ratio GRPO loss with a k3 KL penalty ([`grpo_loss`]) of one micro-batch,
/// with log-probs at the sampling temperature.
pub struct GrpoObjective {
    pub loss: LossConfig,
    pub temperature: f32,
    /// Truncated importance sampling cap against the sampler's log-probs (0: off).
    pub tis_cap: f64,
}

impl Objective for GrpoObjective {
    type Batch = GrpoBatch;

    fn micro_loss(&self, model: &Model, b: &GrpoBatch) -> Result<MicroLoss> {
        let out = completion_logprobs_at(
            model,
            &slices(&b.prompts),
            &slices(&b.completions),
            Mode::Train,
            self.temperature,
        )?;
        let old = match &b.old {
            Some(t) => t.clone(),
            None => out.logprobs.detach(),
        };
        // Against the sampler's own log-probs: the mismatch, and TIS weights on the advantages.
        let (mut mismatch, mut advantages) = (0.0, b.advantages.clone());
        if let Some(sampler) = &b.sampler {
            if sampler.dims() != out.mask.dims() {
                return Err(TrainError::Invalid(format!(
                    "sampler log-probs {:?} do not match the completions {:?}",
                    sampler.dims(),
                    out.mask.dims()
                )));
            }
            let d = ((out.logprobs.detach() - sampler)? * &out.mask)?;
            mismatch = d.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
            if self.tis_cap > 0.0 {
                let w = d.exp()?.clamp(0.0, self.tis_cap)?;
                advantages = w.broadcast_mul(&b.advantages.unsqueeze(1)?)?;
            }
        }
        let l = grpo_loss(
            &out.logprobs,
            &old,
            b.reference.as_ref(),
            &advantages,
            &out.mask,
            &b.weights,
            &self.loss,
        )?;
        let tokens: usize = b.prompts.iter().map(|x| x.len()).sum::<usize>()
            + b.completions.iter().map(|x| x.len()).sum::<usize>();
        let stats = Stats::from([
            ("kl_sum".to_string(), l.kl_sum),
            (
                "entropy_sum".to_string(),
                out.entropy.sum_all()?.to_scalar::<f32>()? as f64,
            ),
            ("clipped_low".to_string(), l.clipped_low),
            ("clipped_high".to_string(), l.clipped_high),
            ("tokens".to_string(), l.tokens),
            ("forwarded_tokens".to_string(), tokens as f64),
            ("mismatch_sum".to_string(), mismatch),
            (
                "mismatch_tokens".to_string(),
                if b.sampler.is_some() { l.tokens } else { 0.0 },
            ),
        ]);
        Ok(MicroLoss {
            loss: l.loss,
            stats,
        })
    }
}

/// The sampler's log-probs of these rows as [b, longest completion] (0 past each row's end),
/// when it reported them for every row.
fn sampler_logprobs(
    ro: &Rollout,
    rows: impl Iterator<Item = usize> + Clone,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    let width = rows
        .clone()
        .map(|i| ro.completions[i].token_ids.len())
        .max()
        .unwrap_or(0);
    let mut flat = Vec::new();
    let mut b = 0;
    for i in rows {
        let Some(Some(lp)) = ro.sampler_logprobs.get(i) else {
            return Ok(None);
        };
        if lp.len() != ro.completions[i].token_ids.len() {
            return Ok(None);
        }
        flat.extend_from_slice(lp);
        flat.resize((b + 1) * width, 0.0);
        b += 1;
    }
    Ok(Some(Tensor::from_vec(flat, (b, width), device)?))
}

fn slices(rows: &[Vec<u32>]) -> Vec<&[u32]> {
    rows.iter().map(Vec::as_slice).collect()
}

/// A frozen copy of a model to serve as the reference: its trainable weights copied (with a
/// LoRA adapter, the frozen base weights are shared and the adapter copied).
pub fn copy_model(model: &Model) -> Result<Model> {
    Ok(model.snapshot()?)
}

/// Overwrite `dst`'s trainable weights with `src`'s (same architecture; with LoRA, the
/// adapters).
pub fn copy_weights(dst: &Model, src: &Model) -> Result<()> {
    for (name, var) in dst.trainable_params().iter() {
        let s = src
            .trainable_params()
            .get(name)
            .ok_or_else(|| TrainError::Invalid(format!("no parameter {name} to copy")))?;
        var.set(&s.as_tensor().detach().copy()?)?;
    }
    Ok(())
}

fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(step.wrapping_mul(0x9E37_79B9))
        .wrapping_add(1)
}

const REFERENCE_FILE: &str = "reference.safetensors";

impl GrpoTrainer {
    pub fn new(
        model: Model,
        tokenizer: Option<Tokenizer>,
        reward: Box<dyn Rewarder>,
        cfg: GrpoConfig,
    ) -> Result<Self> {
        let trainer = Trainer::new(model, cfg.optim())?;
        Self::with_trainer(trainer, tokenizer, reward, cfg)
    }

    fn with_trainer(
        trainer: Trainer,
        tokenizer: Option<Tokenizer>,
        reward: Box<dyn Rewarder>,
        cfg: GrpoConfig,
    ) -> Result<Self> {
        if cfg.group_size == 0 || cfg.micro_batch == 0 || cfg.num_iterations == 0 {
            return Err(TrainError::Invalid(
                "group_size, micro_batch and num_iterations must be positive".into(),
            ));
        }
        let reference = if cfg.beta > 0.0 {
            Some(copy_model(&trainer.model)?)
        } else {
            None
        };
        Ok(Self {
            trainer,
            reference,
            rollouts: Box::new(Local {
                tokenizer: tokenizer.clone(),
            }),
            tokenizer,
            reward,
            cfg,
            step: 0,
        })
    }

    /// The policy being trained.
    pub fn model(&self) -> &Model {
        &self.trainer.model
    }

    /// The policy, ending training.
    pub fn into_model(self) -> Model {
        self.trainer.model
    }

    /// Start sampling G completions per prompt for GRPO step `step` (0-based: the step that
    /// will train on them; its seed is the step's) with the current policy.
    pub fn submit(&self, prompts: &[Prompt], step: u64) -> Result<Pending> {
        let req = RolloutRequest {
            prompts: prompts.iter().map(|p| p.ids.clone()).collect(),
            n: self.cfg.group_size,
            opts: GenerateOptions {
                sampling: self.cfg.sampling.clone(),
                max_tokens: self.cfg.max_tokens,
                seed: step_seed(self.cfg.seed, step),
                stop_token_ids: self.cfg.stop_token_ids.clone(),
                stop_strings: self.cfg.stop_strings.clone(),
                ignore_eos: false,
                constraint: None,
            },
        };
        self.rollouts.submit(self.model(), self.step, req)
    }

    /// Sample G completions per prompt with the current policy and score them.
    pub fn sample(&self, prompts: &[Prompt]) -> Result<Rollout> {
        let (generated, took) = self.submit(prompts, self.step)?.wait()?;
        self.score(prompts, generated, took)
    }

    /// Rewards and advantages of sampled completions (G consecutive ones per prompt).
    pub fn score(
        &self,
        prompts: &[Prompt],
        generated: Vec<Generated>,
        sample_time: std::time::Duration,
    ) -> Result<Rollout> {
        let g = self.cfg.group_size;
        if generated.len() != prompts.len() * g {
            return Err(TrainError::Invalid(format!(
                "{} completions for {} prompts of {g} samples",
                generated.len(),
                prompts.len()
            )));
        }
        let t1 = Instant::now();
        let prompt_ids: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.ids.clone(), g))
            .collect();
        let mut completions = Vec::with_capacity(generated.len());
        let mut versions = Vec::with_capacity(generated.len());
        let mut sampler_logprobs = Vec::with_capacity(generated.len());
        for x in generated {
            completions.push(x.completion);
            versions.push(x.version);
            sampler_logprobs.push(x.logprobs);
        }
        let weights = self.reward.weights();
        let mut terms = Vec::with_capacity(completions.len());
        let mut rewards = Vec::with_capacity(completions.len());
        for (i, c) in completions.iter().enumerate() {
            let s = Sample {
                prompt: &prompts[i / g],
                token_ids: &c.token_ids,
                text: c.text.as_deref().unwrap_or(""),
                truncated: c.finish_reason == FinishReason::Length,
            };
            let t = self.reward.score(&s);
            rewards.push(t.iter().zip(&weights).map(|(v, w)| v * w).sum());
            terms.push(t);
        }
        let advantages = group_advantages(&rewards, g, self.cfg.advantage, self.cfg.advantage_eps);
        Ok(Rollout {
            prompt_ids,
            completions,
            rewards,
            terms,
            advantages,
            versions,
            sampler_logprobs,
            time_sample_s: sample_time.as_secs_f32(),
            time_score_s: t1.elapsed().as_secs_f32(),
        })
    }

    /// Make the rollout source sample with the current policy (a no-op for local rollouts).
    pub fn sync(&self) -> Result<()> {
        self.rollouts.sync(self.model(), self.step)
    }

    /// Train until `steps` GRPO steps are done: `prompts_at(t)` gives step t's prompts, and
    /// `after_step` sees each step's metrics (to log and checkpoint). The rollout source is
    /// synced first (a resumed run's servers get its weights) and after every step. With
    /// `overlap` and a remote source, step t+1's rollouts are generated while step t trains,
    /// on step t's weights: one step stale (see `max_staleness`, `tis_cap`).
    pub fn run(
        &mut self,
        steps: u64,
        overlap: bool,
        mut prompts_at: impl FnMut(u64) -> Result<Vec<Prompt>>,
        mut after_step: impl FnMut(&mut Self, &StepMetrics) -> Result<()>,
    ) -> Result<()> {
        if self.step >= steps {
            return Ok(());
        }
        self.sync()?;
        let overlap = overlap && self.rollouts.is_remote();
        let prompts = prompts_at(self.step)?;
        let mut next = (self.submit(&prompts, self.step)?, prompts);
        loop {
            let (pending, prompts) = next;
            let waited = Instant::now();
            let (generated, took) = pending.wait()?;
            let waited = waited.elapsed().as_secs_f32();
            let ro = self.score(&prompts, generated, took)?;
            let t = self.step;
            let ahead = if overlap && t + 1 < steps {
                let p = prompts_at(t + 1)?;
                Some((self.submit(&p, t + 1)?, p))
            } else {
                None
            };
            let mut m = self.train(&ro)?;
            m.time_wait_s = waited;
            // Servers finish what they hold (the overlapped rollouts) before loading.
            self.sync()?;
            after_step(self, &m)?;
            if self.step >= steps {
                return Ok(());
            }
            next = match ahead {
                Some(x) => x,
                None => {
                    let p = prompts_at(self.step)?;
                    (self.submit(&p, self.step)?, p)
                }
            };
        }
    }

    /// Log-probs of completions under `model` (the policy, or the reference) at the sampling
    /// temperature ([`GrpoConfig::logprob_temperature`]): the ratio, the KL and the entropy
    /// are all about the distribution the completions were sampled from.
    pub fn logprobs(
        &self,
        model: &Model,
        prompts: &[&[u32]],
        completions: &[&[u32]],
        mode: Mode,
    ) -> Result<CompletionLogprobs> {
        completion_logprobs_at(
            model,
            prompts,
            completions,
            mode,
            self.cfg.logprob_temperature(),
        )
    }

    /// One GRPO step: sample, score, optimise, sync the rollout source.
    pub fn step(&mut self, prompts: &[Prompt]) -> Result<StepMetrics> {
        let rollout = self.sample(prompts)?;
        let m = self.train(&rollout)?;
        self.sync()?;
        Ok(m)
    }

    /// The optimisation part of a step on a sampled batch.
    pub fn train(&mut self, ro: &Rollout) -> Result<StepMetrics> {
        let t0 = Instant::now();
        let g = self.cfg.group_size;
        let n = ro.completions.len();
        let mut m = StepMetrics {
            step: self.step + 1,
            ..Default::default()
        };
        // Reward statistics.
        m.reward_mean = mean(&ro.rewards);
        m.reward_std = std_dev(&ro.rewards);
        let names = self.reward.names();
        for (k, name) in names.iter().enumerate() {
            let v: Vec<f32> = ro.terms.iter().map(|t| t[k]).collect();
            m.rewards.push(TermStat {
                name: name.clone(),
                mean: mean(&v),
                std: std_dev(&v),
            });
            let rate = v.iter().filter(|&&x| x > 0.5).count() as f32 / n.max(1) as f32;
            match name.as_str() {
                "accuracy" | "gsm8k" | "countdown" | "arithmetic" => m.accuracy = Some(rate),
                "format" | "r1_zero_format" => m.format_rate = Some(rate),
                _ => {}
            }
        }
        let lens: Vec<usize> = ro.completions.iter().map(|c| c.token_ids.len()).collect();
        m.completion_len_mean = lens.iter().sum::<usize>() as f32 / n.max(1) as f32;
        m.completion_len_max = lens.iter().copied().max().unwrap_or(0);
        let truncated: Vec<bool> = ro
            .completions
            .iter()
            .map(|c| c.finish_reason == FinishReason::Length)
            .collect();
        m.truncated_rate = truncated.iter().filter(|&&t| t).count() as f32 / n.max(1) as f32;
        let gen_tokens: usize = lens.iter().sum();
        m.rollout_tokens_per_s = gen_tokens as f32 / ro.time_sample_s.max(1e-9);
        m.time_sample_s = ro.time_sample_s;
        m.time_score_s = ro.time_score_s;

        // Rows that train.
        let zero_var = zero_variance_groups(&ro.rewards, g);
        let age = |i: usize| {
            ro.versions
                .get(i)
                .map_or(0, |&v| self.step.saturating_sub(v))
        };
        let stale: Vec<bool> = (0..n).map(|i| age(i) > self.cfg.max_staleness).collect();
        m.stale_dropped = stale.iter().filter(|&&x| x).count();
        m.staleness_max = (0..n).map(age).max().unwrap_or(0);
        let rows: Vec<usize> = (0..n)
            .filter(|&i| {
                !(self.cfg.drop_zero_std_groups && zero_var[i / g]
                    || self.cfg.mask_truncated && truncated[i]
                    || lens[i] == 0
                    || stale[i])
            })
            .collect();
        if self.cfg.drop_zero_std_groups {
            m.groups_dropped = zero_var.iter().filter(|&&z| z).count();
        }
        // By GRPO step (see `GrpoConfig::total_steps`): every pass of this step uses it.
        let lr = self.cfg.schedule().at(self.step + 1);
        m.lr = lr;
        if self.cfg.samples_every > 0 && (self.step + 1).is_multiple_of(self.cfg.samples_every) {
            for i in 0..n.min(self.cfg.samples_count) {
                let text = match &ro.completions[i].text {
                    Some(t) => t.clone(),
                    None => format!("{:?}", ro.completions[i].token_ids),
                };
                m.samples.push(SampleLog {
                    prompt: i / g,
                    reward: ro.rewards[i],
                    text,
                });
            }
        }

        if !rows.is_empty() {
            let micro = self.micro_batches(ro, &rows, &lens)?;
            let objective = GrpoObjective {
                loss: LossConfig {
                    eps_low: self.cfg.eps_low,
                    eps_high: self.cfg.eps_high,
                    beta: self.cfg.beta,
                },
                temperature: self.cfg.logprob_temperature(),
                tis_cap: self.cfg.tis_cap,
            };
            let mut forwarded = 0f64;
            for it in 0..self.cfg.num_iterations {
                let (grads, loss, stats) = self.trainer.gradients(&objective, &micro)?;
                let stat = |k: &str| stats.get(k).copied().unwrap_or(0.0);
                forwarded += stat("forwarded_tokens");
                let toks = stat("tokens").max(1.0);
                if it == 0 {
                    m.loss = loss as f32;
                    m.kl = (stat("kl_sum") / toks) as f32;
                    m.entropy = (stat("entropy_sum") / toks) as f32;
                    let mt = stat("mismatch_tokens");
                    if mt > 0.0 {
                        m.logprob_mismatch = Some((stat("mismatch_sum") / mt) as f32);
                    }
                }
                if it == self.cfg.num_iterations - 1 {
                    // Clipping only happens once the policy has moved: report the last pass.
                    m.clip_low_frac = (stat("clipped_low") / toks) as f32;
                    m.clip_high_frac = (stat("clipped_high") / toks) as f32;
                    m.clip_frac = m.clip_low_frac + m.clip_high_frac;
                }
                m.grad_norm = self.trainer.apply_at(grads, lr)? as f32;
            }
            m.time_train_s = t0.elapsed().as_secs_f32();
            m.train_tokens_per_s = forwarded as f32 / m.time_train_s.max(1e-9);
        }
        self.step += 1;
        if self.cfg.ref_reset_every > 0 && self.step.is_multiple_of(self.cfg.ref_reset_every) {
            if let Some(r) = &self.reference {
                copy_weights(r, self.model())?;
            }
        }
        m.time_train_s = t0.elapsed().as_secs_f32();
        m.time_total_s = m.time_sample_s + m.time_score_s + m.time_train_s;
        Ok(m)
    }

    /// The training rows of a rollout cut into micro-batches, with the log-probs of the
    /// sampling policy (needed only when several passes move the weights away from it) and
    /// of the reference. Loss weights use normalisers over all rows (see [`LossNorm`]).
    fn micro_batches(
        &self,
        ro: &Rollout,
        rows: &[usize],
        lens: &[usize],
    ) -> Result<Vec<GrpoBatch>> {
        let device = self.model().device().clone();
        let row_lens: Vec<usize> = rows.iter().map(|&i| lens[i]).collect();
        let norm = LossNorm::of(lens, self.cfg.max_tokens);
        let weights = token_weights(&row_lens, self.cfg.loss_agg, &norm);
        let mut out = Vec::new();
        for chunk in (0..rows.len())
            .collect::<Vec<_>>()
            .chunks(self.cfg.micro_batch)
        {
            let prompts: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&k| ro.prompt_ids[rows[k]].clone())
                .collect();
            let completions: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&k| ro.completions[rows[k]].token_ids.clone())
                .collect();
            let (p, c) = (slices(&prompts), slices(&completions));
            let old = if self.cfg.num_iterations > 1 {
                Some(
                    self.logprobs(self.model(), &p, &c, Mode::Inference)?
                        .logprobs,
                )
            } else {
                None
            };
            let reference = match &self.reference {
                Some(r) => Some(self.logprobs(r, &p, &c, Mode::Inference)?.logprobs),
                None => None,
            };
            let advantages: Vec<f32> = chunk.iter().map(|&k| ro.advantages[rows[k]]).collect();
            let w: Vec<f32> = chunk.iter().map(|&k| weights[k]).collect();
            let sampler = sampler_logprobs(ro, chunk.iter().map(|&k| rows[k]), &device)?;
            out.push(GrpoBatch {
                advantages: Tensor::from_vec(advantages, chunk.len(), &device)?,
                weights: Tensor::from_vec(w, chunk.len(), &device)?,
                prompts,
                completions,
                old,
                reference,
                sampler,
            });
        }
        Ok(out)
    }

    /// Write a checkpoint: the trainer's ([`Trainer::save_checkpoint`]: the model or the
    /// PEFT adapter, f32 masters for a model stored in lower precision, the optimizer, and
    /// `trainer.json` with the GRPO step and config), plus the reference model's trainable
    /// weights (`reference.safetensors`) when there is one.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let state = TrainerState {
            step: self.step,
            config: self.cfg.clone(),
        };
        let state = serde_json::to_value(&state).map_err(|e| TrainError::Invalid(e.to_string()))?;
        self.trainer.save_checkpoint_with(dir, &state, |tmp| {
            if let Some(r) = &self.reference {
                aha_model::weights::write_file(
                    &tmp.join(REFERENCE_FILE),
                    &r.trainable_params().tensors(),
                    DType::F32,
                )?;
            }
            Ok(())
        })
    }

    /// Continue from a checkpoint written by [`GrpoTrainer::save_checkpoint`], so the run
    /// goes on exactly as if it had not stopped. The model is loaded from `dir` (a LoRA
    /// checkpoint: the base named by its adapter config's `base_model_name_or_path`). `cfg`
    /// None takes the saved config.
    pub fn resume(
        dir: &Path,
        tokenizer: Option<Tokenizer>,
        reward: Box<dyn Rewarder>,
        cfg: Option<GrpoConfig>,
        opts: &aha_model::LoadOptions,
    ) -> Result<Self> {
        let model = if dir.join(aha_model::lora::CONFIG_FILE).is_file() {
            let lc = aha_model::LoraConfig::read(dir)?;
            let base = lc.base_model_name_or_path.ok_or_else(|| {
                file_err(
                    dir,
                    "the adapter config names no base model (base_model_name_or_path)",
                )
            })?;
            Model::load_dense(Path::new(&base), opts)?
        } else {
            Model::load(dir, opts)?
        };
        Self::resume_with(dir, model, tokenizer, reward, cfg)
    }

    /// [`GrpoTrainer::resume`] with the model as the run started it: for LoRA the base model
    /// without an adapter (the checkpoint's is attached).
    pub fn resume_with(
        dir: &Path,
        model: Model,
        tokenizer: Option<Tokenizer>,
        reward: Box<dyn Rewarder>,
        cfg: Option<GrpoConfig>,
    ) -> Result<Self> {
        let (_, state) = crate::trainer::read_state(dir)?;
        let state: TrainerState =
            serde_json::from_value(state).map_err(|e| file_err(&dir.join("trainer.json"), e))?;
        let cfg = cfg.unwrap_or(state.config);
        let (trainer, _) = Trainer::resume(dir, model, cfg.optim())?;
        let mut t = Self::with_trainer(trainer, tokenizer, reward, cfg)?;
        let ref_path = dir.join(REFERENCE_FILE);
        if let Some(r) = &t.reference {
            if ref_path.is_file() {
                crate::trainer::load_params(r.trainable_params(), &ref_path)?;
            }
        }
        t.step = state.step;
        Ok(t)
    }
}

/// Sum of the per-token log-probs of one completion under `model` (a convenience for tests
/// and evaluation).
pub fn sequence_logprob(model: &Model, prompt: &[u32], completion: &[u32]) -> Result<f32> {
    let out = completion_logprobs(model, &[prompt], &[completion], Mode::Inference)?;
    Ok(out.logprobs.sum_all()?.to_scalar::<f32>()?)
}

pub use crate::trainer::progress_bar;
