//! Batched generation: left-padded prompts, a KV cache, per-sequence sampling and
//! stopping rules; finished sequences leave the batch so they stop costing compute. Several
//! samples of one prompt share its prefill: its KV cache rows are copied, not recomputed.

mod sampling;

pub use sampling::{argmax, SamplingParams};

use aha_model::{ForwardInput, LogitsFor, Mode, Model, Tensor};
use aha_text::Tokenizer;
use candle_core::{DType, IndexOp};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};

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

struct Sequence {
    index: usize,
    tokens: Vec<u32>,
    rng: StdRng,
    decoder: Option<aha_text::IncrementalDecoder>,
    text: String,
    /// Position id of the next token.
    next_pos: u32,
    finish: Option<FinishReason>,
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
        |input, cache| model.forward(input, Some(cache)),
    )
}

/// Distinct prompts (first occurrence order) and, per output row, its distinct prompt.
fn distinct_rows(prompts: &[Vec<u32>], n: usize) -> (Vec<&[u32]>, Vec<u32>) {
    let mut uniq: Vec<&[u32]> = Vec::new();
    let mut seen: std::collections::HashMap<&[u32], u32> = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(prompts.len() * n);
    for p in prompts {
        let u = *seen.entry(p.as_slice()).or_insert_with(|| {
            uniq.push(p.as_slice());
            (uniq.len() - 1) as u32
        });
        rows.extend(std::iter::repeat_n(u, n));
    }
    (uniq, rows)
}

/// The one decode loop behind `generate` and `generate_n`; `forward` is the model call
/// (a parameter so that tests can watch the batches it receives).
fn decode(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    prompts: &[Vec<u32>],
    n: usize,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(TokenEvent),
    mut forward: impl FnMut(&ForwardInput, &mut aha_model::KvCache) -> aha_model::Result<Tensor>,
) -> Result<Vec<Completion>> {
    if prompts.iter().any(|p| p.is_empty()) {
        return Err(EngineError::Invalid(
            "every prompt needs at least one token".into(),
        ));
    }
    let vocab = model.vocab_size() as u32;
    if let Some(bad) = prompts.iter().flatten().find(|&&t| t >= vocab) {
        return Err(EngineError::Invalid(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        )));
    }
    if !opts.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(EngineError::Invalid("stop strings need a tokenizer".into()));
    }
    let device = model.device().clone();
    let mut seqs: Vec<Sequence> = (0..prompts.len() * n)
        .map(|i| Sequence {
            index: i,
            tokens: Vec::new(),
            rng: StdRng::seed_from_u64(
                opts.seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(i as u64),
            ),
            decoder: tokenizer.map(|t| t.incremental_decoder(true)),
            text: String::new(),
            next_pos: prompts[i / n].len() as u32,
            finish: None,
        })
        .collect();
    if opts.max_tokens == 0 || seqs.is_empty() {
        return Ok(seqs
            .into_iter()
            .map(|s| Completion {
                token_ids: vec![],
                text: s.decoder.map(|_| String::new()),
                finish_reason: FinishReason::Length,
            })
            .collect());
    }

    // Prefill the distinct prompts, left-padded to the longest.
    let (uniq, row_of) = distinct_rows(prompts, n);
    let width = uniq.iter().map(|p| p.len()).max().unwrap_or(0);
    let b = uniq.len();
    let mut ids = vec![0u32; b * width];
    let mut mask = vec![0u8; b * width];
    let mut pos = vec![0u32; b * width];
    for (r, p) in uniq.iter().enumerate() {
        let pad = width - p.len();
        for (j, &t) in p.iter().enumerate() {
            ids[r * width + pad + j] = t;
            mask[r * width + pad + j] = 1;
            pos[r * width + pad + j] = j as u32;
        }
    }
    let mut key_mask = Tensor::from_vec(mask, (b, width), &device)?;
    let input_ids = Tensor::from_vec(ids, (b, width), &device)?;
    let position_ids = Tensor::from_vec(pos, (b, width), &device)?;
    let mut cache = model.new_cache();
    let input = ForwardInput {
        input_ids: &input_ids,
        position_ids: &position_ids,
        key_mask: Some(&key_mask),
        mode: Mode::Inference,
        logits: LogitsFor::Last,
    };
    let mut logits = forward(&input, &mut cache)?;
    // Copy each distinct prompt's cache rows (and last logits) to its output rows.
    if row_of.len() != b {
        let rows = Tensor::new(row_of.as_slice(), &device)?;
        cache.select_rows(&rows)?;
        key_mask = key_mask.index_select(&rows, 0)?;
        logits = logits.index_select(&rows, 0)?;
    }

    // `active[i]` is the index into `seqs` of batch row i.
    let mut active: Vec<usize> = (0..seqs.len()).collect();
    let eos: Vec<u32> = if opts.ignore_eos {
        Vec::new()
    } else {
        opts.stop_token_ids.clone()
    };
    loop {
        let rows: Vec<Vec<f32>> = logits.i((.., 0))?.to_dtype(DType::F32)?.to_vec2()?;
        let mut next = Vec::with_capacity(active.len());
        for (row, &si) in rows.into_iter().zip(&active) {
            let s = &mut seqs[si];
            let mut row = row;
            let tok = opts.sampling.sample(&mut row, &mut s.rng);
            s.tokens.push(tok);
            let delta = match &mut s.decoder {
                Some(d) => d.push(tok)?,
                None => String::new(),
            };
            let before = s.text.len();
            s.text.push_str(&delta);
            if eos.contains(&tok) {
                s.finish = Some(FinishReason::Stop);
            } else if let Some(cut) = find_stop(&s.text, before, &opts.stop_strings) {
                s.text.truncate(cut);
                s.finish = Some(FinishReason::Stop);
            } else if s.tokens.len() >= opts.max_tokens {
                s.finish = Some(FinishReason::Length);
            }
            let shown = &s.text[before.min(s.text.len())..];
            on_token(TokenEvent {
                index: s.index,
                token: tok,
                text: shown,
            });
            next.push(tok);
        }
        // Drop finished rows from the batch before the next step.
        let keep: Vec<u32> = (0..active.len())
            .filter(|&r| seqs[active[r]].finish.is_none())
            .map(|r| r as u32)
            .collect();
        if keep.is_empty() {
            break;
        }
        let mut next_ids: Vec<u32> = next;
        if keep.len() < active.len() {
            let rows = Tensor::new(keep.as_slice(), &device)?;
            cache.select_rows(&rows)?;
            key_mask = key_mask.index_select(&rows, 0)?;
            next_ids = keep.iter().map(|&r| next_ids[r as usize]).collect();
            active = keep.iter().map(|&r| active[r as usize]).collect();
        }
        let n = active.len();
        let step_pos: Vec<u32> = active.iter().map(|&si| seqs[si].next_pos).collect();
        for &si in &active {
            seqs[si].next_pos += 1;
        }
        key_mask = Tensor::cat(&[&key_mask, &Tensor::ones((n, 1), DType::U8, &device)?], 1)?;
        let input_ids = Tensor::from_vec(next_ids, (n, 1), &device)?;
        let position_ids = Tensor::from_vec(step_pos, (n, 1), &device)?;
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &position_ids,
            key_mask: Some(&key_mask),
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        logits = forward(&input, &mut cache)?;
    }
    Ok(seqs
        .into_iter()
        .map(|s| Completion {
            text: s.decoder.is_some().then_some(s.text),
            token_ids: s.tokens,
            finish_reason: s.finish.unwrap_or(FinishReason::Length),
        })
        .collect())
}

/// Byte offset where the earliest stop string starts, if one ends in the new text.
fn find_stop(text: &str, new_from: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            // A stop string may straddle the old and new text.
            let mut from = new_from.saturating_sub(s.len() - 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min()
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
        let lp = candle_nn_log_softmax(&logits.narrow(0, 0, seq.len() - 1)?)?;
        let targets = Tensor::new(&seq[1..], model.device())?.unsqueeze(1)?;
        out.push(lp.gather(&targets, 1)?.squeeze(1)?.to_vec1()?);
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
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    Ok(model
        .forward(&input, None)?
        .squeeze(0)?
        .to_dtype(DType::F32)?)
}

fn candle_nn_log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    shifted.broadcast_sub(&lse)
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
    fn distinct_rows_map_outputs_to_first_occurrences() {
        let p = vec![vec![1, 2], vec![3], vec![1, 2]];
        let (uniq, rows) = distinct_rows(&p, 2);
        assert_eq!(uniq, vec![&[1u32, 2][..], &[3][..]]);
        assert_eq!(rows, vec![0, 0, 1, 1, 0, 0]);
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
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let watched = decode(
            &model,
            None,
            &prompts,
            3,
            &opts,
            |_| {},
            |input, cache| {
                calls.push(input.input_ids.dims2().unwrap());
                model.forward(input, Some(cache))
            },
        )
        .unwrap();
        // One prefill of the 2 distinct prompts, then one-token steps for all 9 rows.
        assert_eq!(calls[0], (2, 3));
        assert_eq!(calls[1..], vec![(9, 1); 3]);
        let plain = generate_n(&model, None, &prompts, 3, &opts, |_| {}).unwrap();
        for (a, b) in watched.iter().zip(&plain) {
            assert_eq!(a.token_ids, b.token_ids);
        }
    }

    #[test]
    fn stop_strings_found_across_deltas() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(find_stop("x </ans", 3, &stops), None);
        assert_eq!(find_stop("x </answer> y", 7, &stops), Some(2));
        assert_eq!(find_stop("héllo</answer>", 12, &stops), Some(6));
    }
}
