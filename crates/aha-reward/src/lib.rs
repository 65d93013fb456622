//! Rule-based rewards for R1-style reinforcement learning.
//!
//! R1 has no learned reward model: the reward is a deterministic check of
//! the final answer plus format checks. This crate provides:
//!
//! * [`verify`] / [`answers_equivalent`]: extract the final answer of a full
//!   model response ([`extract_answer`]) and decide whether it equals the gold
//!   answer — exact big-rational arithmetic, LaTeX expression trees, sets,
//!   tuples, intervals, matrices, equations, choices, units. Work is bounded
//!   by counted budgets (no wall-clock timeouts), so every verdict is the same
//!   on every run and thread; no input panics.
//! * [`RewardFn`]: one reward (accuracy, format, tag count, R1-Zero format,
//!   language consistency, cosine length scaling, DAPO overlong punishment,
//!   repetition penalty, task checkers), and [`Reward`]: a weighted sum
//!   parsed from a spec such as `"accuracy:1.0,format:0.5"`.
//! * [`tasks`]: checkers for countdown, arithmetic and GSM8K.
//!
//! ```
//! use aha_reward::{verify, Reward};
//! assert!(verify("\\frac{1}{2}", "<think>…</think><answer>0.5</answer>").correct);
//! let r = Reward::parse("accuracy:1.0,format:0.5").unwrap();
//! let s = r.score("<think>2+2</think><answer>4</answer>", Some("4"));
//! assert_eq!(s, 1.5);
//! ```
//!
//! For a trainer: build one [`Reward`] from the run's spec string, then call
//! [`Reward::score_batch`] (or [`Reward::score_input`] with a token count,
//! which the length rewards `cosine` and `overlong` use instead of
//! characters) per group. Everything is `Send + Sync` and pure, so groups can
//! be scored on any threads. Spec grammar: comma-separated
//! `name[(key=value; ...)][:weight]`, e.g.
//! `accuracy:1,format:0.5,language(lang=en):0.1,overlong(max_len=4096;cache=512)`.
//! Names: `accuracy`, `format`, `tag_count`, `r1_zero_format`, `language`,
//! `cosine`, `overlong`, `repetition`, `countdown` (gold
//! `{"numbers": [..], "target": N}`), `arithmetic`, `gsm8k`, `json_object` and
//! `json_schema(file=PATH)` (the answer after the reasoning is JSON valid under the schema).

pub mod batch;
mod equiv;
mod error;
mod eval;
mod extract;
mod json;
mod parse;
mod reward;
pub mod tasks;
mod text;

pub use equiv::{answers_equivalent, answers_equivalent_rounded};
pub use error::RewardError;
pub use extract::{extract_answer, extract_gold, is_hedged, ExtractConfig, Extracted, Source};
pub use json::{answer_part, json_answer, JsonSchemaCheck};
pub use reward::{Reward, RewardFn, RewardInput, Script};

use serde::Serialize;

/// The outcome of checking one response against a gold answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub correct: bool,
    /// The gold answer as read from `gold`.
    pub gold: String,
    /// The answer extracted from the response, if any.
    pub predicted: Option<Extracted>,
}

/// Checks a full response against a gold answer with the default extraction.
pub fn verify(gold: &str, response: &str) -> Verdict {
    verify_with(gold, response, &ExtractConfig::default())
}

/// [`verify`] with a chosen extraction configuration.
pub fn verify_with(gold: &str, response: &str, cfg: &ExtractConfig) -> Verdict {
    verify_rounded(gold, response, cfg, None)
}

/// [`verify_with`] with a stated rounding tolerance (see
/// [`answers_equivalent_rounded`]); `aha verify --jsonl` reads it from a line's
/// `precision` field.
pub fn verify_rounded(
    gold: &str,
    response: &str,
    cfg: &ExtractConfig,
    round_to: Option<u32>,
) -> Verdict {
    let gold_answer = extract_gold(gold);
    let predicted = extract_answer(response, cfg);
    let correct = predicted
        .as_ref()
        .is_some_and(|p| answers_equivalent_rounded(&gold_answer, &p.answer, round_to));
    Verdict {
        correct,
        gold: gold_answer,
        predicted,
    }
}

/// The value of a closed arithmetic expression (`17 * 23`, `\frac{1}{3} + 2^{10}`,
/// `sqrt(2)`), read by the verifier's parser: exact when rational (`391`, `1/3`), else a
/// decimal (`1.41421356237`); None for anything with a variable, a relation, or no value.
/// (The calculator tool of `aha chat --tools`.)
pub fn evaluate(expr: &str) -> Option<String> {
    if expr.len() > equiv::MAX_PARSE_BYTES {
        return None;
    }
    let node = parse::parse(expr).ok()?;
    let mut vars = Vec::new();
    eval::symbols(&node, &mut vars);
    if !vars.is_empty() || !eval::is_scalar(&node) {
        return None;
    }
    let mut budget = eval::Budget::new();
    if let Some(r) = eval::exact(&node, &mut budget) {
        return Some(if r.is_integer() {
            r.numer().to_string()
        } else {
            format!("{}/{}", r.numer(), r.denom())
        });
    }
    let z = eval::numeric(&node, &[], &mut eval::Budget::new())?;
    if !z.re.is_finite() || z.im.abs() > 1e-12 * z.re.abs().max(1.0) {
        return None;
    }
    let s = format!("{:.12}", z.re);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    Some(s.to_string())
}

#[cfg(test)]
mod evaluate_tests {
    #[test]
    fn closed_expressions_have_values() {
        use super::evaluate;
        assert_eq!(evaluate("17 * 23").as_deref(), Some("391"));
        assert_eq!(evaluate("(2 + 3) * 4 - 1").as_deref(), Some("19"));
        assert_eq!(evaluate("1/3 + 1/6").as_deref(), Some("1/2"));
        assert_eq!(evaluate("\\frac{1}{3} + 2^{10}").as_deref(), Some("3073/3"));
        assert_eq!(evaluate("sqrt(2)").as_deref(), Some("1.414213562373"));
        assert_eq!(evaluate("x + 1"), None);
        assert_eq!(evaluate("1/0"), None);
        assert_eq!(evaluate("2 +"), None);
        assert_eq!(evaluate("x = 2"), None);
    }
}
