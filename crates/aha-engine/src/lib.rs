//! Batched generation: left-padded prompts, a KV cache, per-sequence sampling and
//! stopping rules; finished sequences leave the batch so they stop costing compute. Several
//! samples of one prompt share its prefill: its KV cache rows are copied, not recomputed.

pub mod constraint;
mod sampling;
pub mod scheduler;
pub mod speculative;
pub mod worker;

pub use constraint::{Constrainer, Constraint, Grammar, Reasoning};
pub use sampling::{argmax, SamplingParams};
pub use scheduler::{
    Event, LogitsProcessor, Reply, Request, RequestParams, Scheduler, SchedulerConfig, StepStats,
    TokenLogprob,
};
pub use worker::{Held, Message, WorkerStats};

use aha_model::ops::token_logprobs;
use aha_model::{ForwardInput, KvCache, LogitsFor, Mode, Model, Tensor};
use aha_text::Tokenizer;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] aha_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Text(#[from] aha_text::TextError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Per-sequence RNGs are seeded from (seed, sequence index): a sequence samples the same
    /// tokens whatever else is in the batch.
    pub seed: u64,
    pub stop_token_ids: Vec<u32>,
    /// Stop once the decoded text contains one of these (needs a tokenizer); the text is cut before it.
    pub stop_strings: Vec<String>,
    pub ignore_eos: bool,
    /// Every sample's answer matches this (after its reasoning, if the constraint has one).
    pub constraint: Option<std::sync::Arc<Constraint>>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            seed: 0,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            ignore_eos: false,
            constraint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An EOS token or a stop string.
    Stop,
    /// max_tokens reached.
    Length,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// Generated ids (the EOS that ended it included).
    pub token_ids: Vec<u32>,
    /// Decoded text, when a tokenizer was given (special tokens skipped, stop string cut).
    pub text: Option<String>,
    pub finish_reason: FinishReason,
}

/// One streamed token: which output it belongs to, the id, and the new text if decoding.
pub struct TokenEvent<'a> {
    /// The output index (`generate`: the prompt's; `generate_n`: `prompt * n + sample`).
    pub index: usize,
    pub token: u32,
    pub text: &'a str,
}

/// Generate a completion for each prompt, batched together (`generate_n` with n = 1, so a
/// prompt given several times is prefilled once too).
pub fn generate(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    on_token: impl FnMut(TokenEvent),
) -> Result<Vec<Completion>> {
    generate_n(model, tokenizer, prompts, 1, opts, on_token)
}

/// Generate `n` completions per prompt, prompt-major: output `i * n + j` is sample j of
/// prompt i (and `TokenEvent::index` is that output index). Each distinct prompt is
/// prefilled once and its KV cache rows are copied to all its samples. Output row r samples
/// with an RNG seeded from (seed, r), so `generate_n(p, n)` equals `generate` on each prompt
/// repeated n times, and a row's tokens do not depend on the rest of the batch.
///
/// Runs on the [`Scheduler`] with every request admitted at once.
pub fn generate_n(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    prompts: &[Vec<u32>],
    n: usize,
    opts: &GenerateOptions,
    on_token: impl FnMut(TokenEvent),
) -> Result<Vec<Completion>> {
    decode(
        model,
        tokenizer,
        prompts,
        n,
        opts,
        on_token,
        Box::new(|input: &ForwardInput, cache: &mut KvCache| model.forward(input, Some(cache))),
    )
}

/// Collects a request's events, tagged with their output index.
struct Collect {
    base: usize,
    events: Rc<RefCell<Vec<(usize, Event)>>>,
}

impl Reply for Collect {
    fn send(&mut self, event: Event) -> bool {
        let index = match &event {
            Event::Token { sample, .. } | Event::Finished { sample, .. } => self.base + sample,
            Event::Failed(_) => self.base,
        };
        self.events.borrow_mut().push((index, event));
        true
    }
}

/// `generate_n` on a scheduler whose model call is `forward` (tests watch its batches).
fn decode<'m>(
    model: &'m Model,
    tokenizer: Option<&'m Tokenizer>,
    prompts: &[Vec<u32>],
    n: usize,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(TokenEvent),
    forward: scheduler::Forward<'m>,
) -> Result<Vec<Completion>> {
    let mut sched =
        Scheduler::with_forward(model, tokenizer, SchedulerConfig::unbounded(), forward);
    let params = RequestParams {
        sampling: opts.sampling.clone(),
        max_tokens: opts.max_tokens,
        seed: opts.seed,
        seed_offset: 0,
        stop_token_ids: if opts.ignore_eos {
            Vec::new()
        } else {
            opts.stop_token_ids.clone()
        },
        stop_strings: opts.stop_strings.clone(),
        logprobs: None,
        logprob_temperature: 1.0,
    };
    for p in prompts {
        sched.validate(p, n.max(1), &params)?;
    }
    let mut out: Vec<Completion> = (0..prompts.len() * n)
        .map(|_| Completion {
            token_ids: Vec::new(),
            text: tokenizer.map(|_| String::new()),
            finish_reason: FinishReason::Length,
        })
        .collect();
    if out.is_empty() {
        return Ok(out);
    }
    let events = Rc::new(RefCell::new(Vec::new()));
    for (i, p) in prompts.iter().enumerate() {
        sched.submit(Request {
            prompt: p.clone(),
            n,
            params: RequestParams {
                seed_offset: (i * n) as u64,
                ..params.clone()
            },
            processor: opts.constraint.as_ref().map(|c| c.processor()),
            reply: Collect {
                base: i * n,
                events: events.clone(),
            },
        })?;
    }
    loop {
        let batch: Vec<(usize, Event)> = events.borrow_mut().drain(..).collect();
        for (index, event) in batch {
            match event {
                Event::Token { token, text, .. } => {
                    let c = &mut out[index];
                    c.token_ids.push(token);
                    if let Some(t) = &mut c.text {
                        t.push_str(&text);
                    }
                    on_token(TokenEvent {
                        index,
                        token,
                        text: &text,
                    });
                }
                Event::Finished { reason, .. } => out[index].finish_reason = reason,
                Event::Failed(m) => return Err(EngineError::Invalid(m)),
            }
        }
        if sched.is_idle() {
            return Ok(out);
        }
        sched.step()?;
    }
}

/// log p(token_i | tokens_<i) for i >= 1 of each sequence (one forward pass each).
/// Returns, per sequence, `len - 1` values.
pub fn score(model: &Model, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(sequences.len());
    for seq in sequences {
        if seq.len() < 2 {
            out.push(Vec::new());
            continue;
        }
        let logits = full_logits(model, seq)?;
        let targets = Tensor::new(&seq[1..], model.device())?;
        let (lp, _) = token_logprobs(&logits.narrow(0, 0, seq.len() - 1)?, &targets, 1.0)?;
        out.push(lp.to_vec1()?);
    }
    Ok(out)
}

/// Logits [len, vocab] for every position of one sequence.
pub fn full_logits(model: &Model, seq: &[u32]) -> Result<Tensor> {
    let device = model.device();
    let ids = Tensor::new(seq, device)?.unsqueeze(0)?;
    let pos = Tensor::arange(0u32, seq.len() as u32, device)?.unsqueeze(0)?;
    let input = ForwardInput {
        input_ids: &ids,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    Ok(model
        .forward(&input, None)?
        .squeeze(0)?
        .to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> Model {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../aha-model/tests/fixtures/qwen2_tied");
        Model::load(&dir, &aha_model::LoadOptions::default()).unwrap()
    }

    #[test]
    fn each_distinct_prompt_is_prefilled_once() {
        let model = tiny_model();
        let prompts = vec![vec![5, 6, 7], vec![9, 8], vec![5, 6, 7]];
        let opts = GenerateOptions {
            sampling: SamplingParams {
                temperature: 1.0,
                ..Default::default()
            },
            max_tokens: 4,
            ignore_eos: true,
            ..Default::default()
        };
        // (batch, positions) of every forward call.
        let calls = std::cell::RefCell::new(Vec::<(usize, usize)>::new());
        let watched = decode(
            &model,
            None,
            &prompts,
            3,
            &opts,
            |_| {},
            Box::new(|input: &ForwardInput, cache: &mut KvCache| {
                calls.borrow_mut().push(input.input_ids.dims2().unwrap());
                model.forward(input, Some(cache))
            }),
        )
        .unwrap();
        // One prefill of the 2 distinct prompts, then one-token steps for all 9 rows.
        let calls = calls.into_inner();
        assert_eq!(calls[0], (2, 3));
        assert_eq!(calls[1..], vec![(9, 1); 3]);
        let plain = generate_n(&model, None, &prompts, 3, &opts, |_| {}).unwrap();
        for (a, b) in watched.iter().zip(&plain) {
            assert_eq!(a.token_ids, b.token_ids);
        }
    }
}
