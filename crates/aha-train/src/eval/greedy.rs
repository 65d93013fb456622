//! Quick evaluation of the built-in tasks' tiny models: one greedy (or low-temperature)
//! completion per held-out problem, optionally forced to open as a worked or a direct answer
//! ([`mode_accuracies`]: what GRPO can find in a model). `aha pretrain` and `aha zero` report
//! it next to the paper's protocol ([`super::evaluate`]).

use crate::corpus::{forced_opening, DocKind};
use crate::error::{Result, TrainError};
use crate::tasks::{default_max_tokens, r1_zero_prompt, Problem, Task};
use aha_engine::{generate, GenerateOptions, SamplingParams};
use aha_model::Model;
use aha_text::Tokenizer;
use serde::Serialize;

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
    if !task.is_arithmetic() {
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
    /// Share of completions in the task's format ([`Task::is_well_formatted`]).
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
        constraint: None,
    };
    let opening = |p: &Problem| -> Result<String> {
        match opts.forced {
            None => Ok(String::new()),
            Some(kind) => forced_opening(task, p, kind).ok_or_else(|| {
                TrainError::Invalid(format!("no forced {kind:?} opening for {task:?}"))
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
                formatted: task.is_well_formatted(&text),
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
