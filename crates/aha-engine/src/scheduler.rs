//! Continuous batching. Requests carry their own settings and reply channel; the scheduler
//! owns the sequences. Each [`Scheduler::step`] admits waiting requests (one prefill for
//! their distinct prompts, the cache rows copied to their samples), samples one token for
//! every active sequence, retires finished or cancelled ones at once, and runs one decode
//! step over the rest.
//!
//! All sequences share one batched KV cache whose rows are right-aligned: a sequence that
//! joins a longer-running batch is left-padded (masked), and padding no row needs any more
//! is dropped. Positions are per sequence, so no one's prefix is recomputed.
//!
//! Tokens a logits processor forces (the only continuation it allows) are appended without
//! sampling and fed to the model several at once: a decode step then takes up to
//! [`SchedulerConfig::fast_forward`] positions in all, each row's new tokens right-aligned
//! (rows with fewer are padded, masked, inside their own row).

use crate::sampling::{argmax, SamplingParams};
use crate::{EngineError, FinishReason, Result};
use aha_model::{ForwardInput, KvCache, LogitsFor, Mode, Model, Tensor};
use aha_text::Tokenizer;
use candle_core::{DType, IndexOp};
use rand::{rngs::StdRng, SeedableRng};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

/// Per-request generation settings.
#[derive(Debug, Clone)]
pub struct RequestParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub seed: u64,
    /// Sample j draws from an RNG seeded by (seed, seed_offset + j), so a batch of requests can
    /// reproduce one request with many samples.
    pub seed_offset: u64,
    /// Tokens that end a sample (EOS); the token itself is still emitted.
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a sample; the text is cut before them (needs a tokenizer).
    pub stop_strings: Vec<String>,
    /// Report each sampled token's log-probability with this many top alternatives.
    pub logprobs: Option<usize>,
    /// Reported log-probabilities are of the logits divided by this (1: the model's own
    /// distribution; the sampling temperature: what an RL trainer recomputes). Sampling
    /// itself does not depend on it.
    pub logprob_temperature: f32,
}

impl Default for RequestParams {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            seed: 0,
            seed_offset: 0,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            logprobs: None,
            logprob_temperature: 1.0,
        }
    }
}

/// Where constraints plug in: called on every sample's logits before sampling.
pub trait LogitsProcessor: Send {
    /// `generated`: the tokens sample `sample` has produced so far.
    fn process(&mut self, sample: usize, generated: &[u32], logits: &mut [f32]);

    /// Tokens that must follow `generated` whatever the model says: the scheduler appends
    /// them without a forward pass for each. Empty when more than one continuation is allowed.
    fn forced(&mut self, _sample: usize, _generated: &[u32]) -> Vec<u32> {
        Vec::new()
    }
}

/// A sampled token's log-probability (of the model's distribution after any logits
/// processor, before temperature and filtering) and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// What the scheduler tells a request.
#[derive(Debug, Clone)]
pub enum Event {
    /// One sampled token and the text it completes (empty while held back: an incomplete
    /// character or a possible stop string).
    Token {
        sample: usize,
        token: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The sample is done; no more events for it.
    Finished { sample: usize, reason: FinishReason },
    /// The request failed; no more events for it.
    Failed(String),
}

/// A request's channel back to its caller.
pub trait Reply {
    /// False when the receiver is gone: the request is then cancelled.
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone (checked before spending compute on the request).
    fn is_closed(&self) -> bool {
        false
    }
}

impl Reply for std::sync::mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
}

pub struct Request<R> {
    pub prompt: Vec<u32>,
    /// Samples of this prompt; they share its prefill.
    pub n: usize,
    pub params: RequestParams,
    pub processor: Option<Box<dyn LogitsProcessor>>,
    pub reply: R,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most sequences decoding at once.
    pub max_batch: usize,
    /// Most tokens (prompt + completion) one sequence may hold.
    pub max_context: usize,
    /// Most (padded) prompt tokens in one admission's prefill; one request is always admitted.
    pub max_prefill_tokens: usize,
    /// Drop cache columns that are padding for every row. Changes the attention's reduction
    /// lengths, so off where outputs must match the plain batched loop bit for bit.
    pub compact: bool,
    /// Most token positions (rows x new tokens) of a decode step that feeds forced tokens
    /// several at a time; a batch of this many rows or more feeds them one per step (which
    /// still skips sampling them). 0 or 1: one token per row per step.
    pub fast_forward: usize,
}

impl SchedulerConfig {
    /// Everything admitted at once and never compacted: the plain batched loop.
    pub fn unbounded() -> Self {
        Self {
            max_batch: usize::MAX,
            max_context: usize::MAX,
            max_prefill_tokens: usize::MAX,
            compact: false,
            fast_forward: FAST_FORWARD,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_context: 4096,
            max_prefill_tokens: 8192,
            compact: true,
            fast_forward: FAST_FORWARD,
        }
    }
}

/// Positions fed in one step cost well under as many one-position steps (SmolLM2 Q4_1 on this
/// machine: 2.3 ms per prompt token, 5.4 ms per decoded token; docs/benchmarks.md), while
/// padding the other rows of a large batch would cost them a position each.
const FAST_FORWARD: usize = 16;

pub(crate) type Forward<'m> =
    Box<dyn FnMut(&ForwardInput, &mut KvCache) -> aha_model::Result<Tensor> + 'm>;

struct Live<R> {
    reply: R,
    params: RequestParams,
    processor: Option<Box<dyn LogitsProcessor>>,
    rows_left: usize,
    cancelled: bool,
}

struct Row {
    req: u64,
    sample: usize,
    tokens: Vec<u32>,
    rng: StdRng,
    decoder: Option<aha_text::IncrementalDecoder>,
    text: String,
    /// Bytes of `text` already sent.
    sent: usize,
    /// Tokens in the cache for this row (= position id of the next token fed).
    cached: usize,
    /// Cache columns from this row's first token to the right edge (`cached` plus the
    /// padding inside the row when other rows fed more tokens in a step).
    span: usize,
    /// Emitted tokens not yet fed to the model; the row's logits are stale while it has
    /// more than one (the last is fed by the step that makes them current).
    queued: VecDeque<u32>,
    done: bool,
}

/// The running batch: one cache row, one mask row and one pending logits row per sequence.
struct Batch {
    rows: Vec<Row>,
    cache: KvCache,
    /// [rows, cache width] u8.
    key_mask: Tensor,
    /// [rows, 1, vocab]: the next token's logits of each row.
    logits: Tensor,
}

/// What one step did, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    /// Requests admitted and prompt tokens prefilled (distinct prompts once).
    pub admitted: usize,
    pub prefill_tokens: usize,
    /// Tokens sampled (at most one per active sequence).
    pub sampled: usize,
    /// Tokens appended because a logits processor forced them (not sampled).
    pub forced: usize,
    /// Sequences decoding after the step.
    pub batch: usize,
}

pub struct Scheduler<'m, R: Reply> {
    model: &'m Model,
    tokenizer: Option<&'m Tokenizer>,
    cfg: SchedulerConfig,
    forward: Forward<'m>,
    waiting: VecDeque<(u64, Request<R>)>,
    live: HashMap<u64, Live<R>>,
    batch: Option<Batch>,
    next_id: u64,
}

impl<'m, R: Reply> Scheduler<'m, R> {
    pub fn new(model: &'m Model, tokenizer: Option<&'m Tokenizer>, cfg: SchedulerConfig) -> Self {
        Self::with_forward(
            model,
            tokenizer,
            cfg,
            Box::new(move |input: &ForwardInput, cache: &mut KvCache| {
                model.forward(input, Some(cache))
            }),
        )
    }

    /// `forward` replaces the model call (tests watch the batches it receives).
    pub(crate) fn with_forward(
        model: &'m Model,
        tokenizer: Option<&'m Tokenizer>,
        cfg: SchedulerConfig,
        forward: Forward<'m>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            cfg,
            forward,
            waiting: VecDeque::new(),
            live: HashMap::new(),
            batch: None,
            next_id: 0,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Why a request cannot run, if it cannot.
    pub fn validate(&self, prompt: &[u32], n: usize, params: &RequestParams) -> Result<()> {
        let invalid = |m: String| Err(EngineError::Invalid(m));
        if prompt.is_empty() {
            return invalid("every prompt needs at least one token".into());
        }
        let vocab = self.model.vocab_size() as u32;
        if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
            return invalid(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            ));
        }
        if n == 0 {
            return invalid("n must be at least 1".into());
        }
        if n > self.cfg.max_batch {
            return invalid(format!(
                "n = {n} is more than the server's batch size ({})",
                self.cfg.max_batch
            ));
        }
        if prompt.len().saturating_add(params.max_tokens) > self.cfg.max_context {
            return invalid(format!(
                "the prompt ({} tokens) plus max_tokens ({}) exceeds the context length ({})",
                prompt.len(),
                params.max_tokens,
                self.cfg.max_context
            ));
        }
        if !params.stop_strings.is_empty() && self.tokenizer.is_none() {
            return invalid("stop strings need a tokenizer".into());
        }
        Ok(())
    }

    /// Queue a request; an invalid one is answered with [`Event::Failed`] and returned as an error.
    pub fn submit(&mut self, mut req: Request<R>) -> Result<()> {
        if let Err(e) = self.validate(&req.prompt, req.n, &req.params) {
            req.reply.send(Event::Failed(e.to_string()));
            return Err(e);
        }
        let id = self.next_id;
        self.next_id += 1;
        if req.params.max_tokens == 0 {
            for sample in 0..req.n {
                req.reply.send(Event::Finished {
                    sample,
                    reason: FinishReason::Length,
                });
            }
            return Ok(());
        }
        self.waiting.push_back((id, req));
        Ok(())
    }

    /// Nothing waiting and nothing decoding.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.batch.is_none()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences in the running batch.
    pub fn batch_size(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.rows.len())
    }

    /// Admit, sample one token per sequence (plus any it forces), retire, and run one
    /// decode step.
    pub fn step(&mut self) -> Result<StepStats> {
        let mut stats = self.admit()?;
        let Some(batch) = self.batch.as_mut() else {
            return Ok(stats);
        };
        // The logits read in place where they are a CPU buffer (a batch-32 step copied 4 MB
        // here on one thread, the others waiting); each draw copies its row only to change it.
        let logits = batch
            .logits
            .i((.., 0))?
            .to_dtype(DType::F32)?
            .contiguous()?;
        let vocab = logits.dim(1)?;
        let (storage, layout) = logits.storage_and_layout();
        let owned: Vec<f32>;
        let flat: &[f32] = match aha_model::ops::f32_elems(&storage, layout) {
            Some(v) => v,
            None => {
                owned = logits.flatten_all()?.to_vec1()?;
                &owned
            }
        };
        // The rows to sample, with their logits processed (in row order).
        let mut draws = Vec::with_capacity(batch.rows.len());
        for (logits, row) in flat.chunks_exact(vocab).zip(batch.rows.iter_mut()) {
            draws.push(self.live.get_mut(&row.req).and_then(|live| {
                if live.cancelled || live.reply.is_closed() {
                    live.cancelled = true;
                    return None;
                }
                row.queued.is_empty().then(|| Draw::new(live, row, logits))
            }));
        }
        // Each row draws from its own generator, so the rows can be sampled in parallel
        // (a 128k-vocabulary row is ~0.5 ms) with the same tokens; on the spin pool, whose
        // helper would otherwise spin beside rayon's threads.
        let rngs = batch.rows.iter_mut().map(|row| &mut row.rng);
        let drawn: Vec<Option<(u32, Option<TokenLogprob>)>> =
            aha_model::spin::map(draws.into_iter().zip(rngs).collect(), |(d, rng)| {
                d.map(|d| d.draw(rng))
            });
        for (drawn, row) in drawn.into_iter().zip(batch.rows.iter_mut()) {
            let Some(live) = self.live.get_mut(&row.req) else {
                row.done = true;
                continue;
            };
            if live.cancelled {
                row.done = true;
                continue;
            }
            if let Some((tok, logprob)) = drawn {
                stats.sampled += 1;
                emit(live, row, tok, logprob)?;
                fast_forward(live, row, &mut stats)?;
            }
        }
        self.retire_and_decode(&mut stats)?;
        Ok(stats)
    }

    /// Answer every request with `message` and forget them (after a failed forward pass).
    pub fn fail_all(&mut self, message: &str) {
        self.batch = None;
        for (_, mut req) in self.waiting.drain(..) {
            req.reply.send(Event::Failed(message.to_string()));
        }
        for (_, mut live) in self.live.drain() {
            live.reply.send(Event::Failed(message.to_string()));
        }
    }

    fn admit(&mut self) -> Result<StepStats> {
        let mut stats = StepStats::default();
        let mut rows = self.batch_size();
        let mut group: Vec<(u64, Request<R>)> = Vec::new();
        let mut widest = 0usize;
        let mut distinct: std::collections::HashSet<Vec<u32>> = Default::default();
        while let Some((_, req)) = self.waiting.front() {
            if req.reply.is_closed() {
                self.waiting.pop_front();
                continue;
            }
            let fits_batch = rows + req.n <= self.cfg.max_batch;
            let new_prompt = !distinct.contains(&req.prompt);
            let width = widest.max(req.prompt.len());
            let prefill = width * (distinct.len() + usize::from(new_prompt));
            // One request always goes in when the batch has room, however long its prompt.
            let fits_prefill = group.is_empty() || prefill <= self.cfg.max_prefill_tokens;
            if !(fits_batch && fits_prefill) {
                break;
            }
            let Some((id, req)) = self.waiting.pop_front() else {
                break;
            };
            rows += req.n;
            widest = width;
            distinct.insert(req.prompt.clone());
            group.push((id, req));
        }
        if group.is_empty() {
            return Ok(stats);
        }
        let prompts: Vec<&[u32]> = group.iter().map(|(_, r)| r.prompt.as_slice()).collect();
        let ns: Vec<usize> = group.iter().map(|(_, r)| r.n).collect();
        let (uniq, row_of) = distinct_rows(&prompts, &ns);
        stats.admitted = group.len();
        stats.prefill_tokens = uniq.iter().map(|p| p.len()).sum();
        let (cache, key_mask, logits) = self.prefill(&uniq, &row_of)?;
        let mut new_rows = Vec::with_capacity(row_of.len());
        for (id, req) in group {
            for sample in 0..req.n {
                let idx = req.params.seed_offset.wrapping_add(sample as u64);
                new_rows.push(Row {
                    req: id,
                    sample,
                    tokens: Vec::new(),
                    rng: StdRng::seed_from_u64(
                        req.params
                            .seed
                            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                            .wrapping_add(idx),
                    ),
                    decoder: self.tokenizer.map(|t| t.incremental_decoder(true)),
                    text: String::new(),
                    sent: 0,
                    cached: req.prompt.len(),
                    span: req.prompt.len(),
                    queued: VecDeque::new(),
                    done: false,
                });
            }
            self.live.insert(
                id,
                Live {
                    reply: req.reply,
                    params: req.params,
                    processor: req.processor,
                    rows_left: req.n,
                    cancelled: false,
                },
            );
        }
        let mut batch = match self.batch.take() {
            None => Batch {
                rows: new_rows,
                cache,
                key_mask,
                logits,
            },
            Some(old) => merge(old, new_rows, cache, key_mask, logits)?,
        };
        // Room for the longest remaining generation (up to a bound), so that the cache's
        // buffers are not regrown and copied as the batch decodes.
        let ahead = batch
            .rows
            .iter()
            .filter_map(|r| {
                let live = self.live.get(&r.req)?;
                Some(live.params.max_tokens.saturating_sub(r.tokens.len()))
            })
            .max()
            .unwrap_or(0);
        batch.cache.reserve(ahead.min(RESERVE_AHEAD))?;
        self.batch = Some(batch);
        Ok(stats)
    }

    /// Prefill the distinct prompts left-padded to the longest; copy cache rows to `row_of`.
    fn prefill(&mut self, uniq: &[&[u32]], row_of: &[u32]) -> Result<(KvCache, Tensor, Tensor)> {
        let device = self.model.device().clone();
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
        let mut cache = self.model.new_cache();
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &position_ids,
            key_mask: Some(&key_mask),
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        let mut logits = (self.forward)(&input, &mut cache)?;
        if row_of.len() != b {
            let rows = Tensor::new(row_of, &device)?;
            cache.select_rows(&rows)?;
            key_mask = key_mask.index_select(&rows, 0)?;
            logits = logits.index_select(&rows, 0)?;
        }
        Ok((cache, key_mask, logits))
    }

    fn retire_and_decode(&mut self, stats: &mut StepStats) -> Result<()> {
        let Some(mut batch) = self.batch.take() else {
            return Ok(());
        };
        let device = self.model.device().clone();
        for row in &batch.rows {
            let cancelled = self.live.get(&row.req).is_none_or(|l| l.cancelled);
            if row.done || cancelled {
                if let Some(live) = self.live.get_mut(&row.req) {
                    live.rows_left -= 1;
                    if live.rows_left == 0 {
                        self.live.remove(&row.req);
                    }
                }
            }
        }
        let keep: Vec<u32> = (0..batch.rows.len())
            .filter(|&r| {
                let row = &batch.rows[r];
                !row.done && self.live.get(&row.req).is_some_and(|l| !l.cancelled)
            })
            .map(|r| r as u32)
            .collect();
        if keep.is_empty() {
            // Requests whose rows were all cancelled may still be listed.
            self.live.retain(|_, l| !l.cancelled);
            stats.batch = 0;
            return Ok(());
        }
        if keep.len() < batch.rows.len() {
            let idx = Tensor::new(keep.as_slice(), &device)?;
            batch.cache.select_rows(&idx)?;
            batch.key_mask = batch.key_mask.index_select(&idx, 0)?;
            let mut rows: Vec<Option<Row>> = batch.rows.into_iter().map(Some).collect();
            batch.rows = keep
                .iter()
                .filter_map(|&r| rows[r as usize].take())
                .collect();
            self.live.retain(|_, l| !l.cancelled);
            if self.cfg.compact {
                compact(&mut batch)?;
            }
        }
        // Each row feeds its queued tokens, right-aligned in a step `width` wide.
        let n = batch.rows.len();
        let most = batch.rows.iter().map(|r| r.queued.len()).max().unwrap_or(1);
        let width = most.min((self.cfg.fast_forward / n).max(1)).max(1);
        let mut ids = vec![0u32; n * width];
        let mut pos = vec![0u32; n * width];
        let mut mask = vec![0u8; n * width];
        for (r, row) in batch.rows.iter_mut().enumerate() {
            let feed = row.queued.len().min(width);
            let pad = width - feed;
            for j in 0..feed {
                let at = r * width + pad + j;
                ids[at] = row.queued.pop_front().unwrap_or(0);
                pos[at] = row.cached as u32;
                mask[at] = 1;
                row.cached += 1;
            }
            row.span += width;
        }
        batch.key_mask = Tensor::cat(
            &[
                &batch.key_mask,
                &Tensor::from_vec(mask, (n, width), &device)?,
            ],
            1,
        )?;
        let input_ids = Tensor::from_vec(ids, (n, width), &device)?;
        let position_ids = Tensor::from_vec(pos, (n, width), &device)?;
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &position_ids,
            key_mask: Some(&batch.key_mask),
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        batch.logits = (self.forward)(&input, &mut batch.cache)?;
        stats.batch = n;
        self.batch = Some(batch);
        Ok(())
    }
}

/// At most this many positions reserved ahead in the cache when requests join.
const RESERVE_AHEAD: usize = 512;

/// One row's next-token draw: its logits after the request's processor, and what the
/// request asks of the draw.
struct Draw<'a> {
    logits: Cow<'a, [f32]>,
    sampling: SamplingParams,
    logprobs: Option<usize>,
    logprob_temperature: f32,
}

impl<'a> Draw<'a> {
    fn new<R: Reply>(live: &mut Live<R>, row: &Row, logits: &'a [f32]) -> Self {
        let mut logits = Cow::Borrowed(logits);
        if let Some(p) = live.processor.as_mut() {
            p.process(row.sample, &row.tokens, logits.to_mut());
        }
        Self {
            logits,
            sampling: live.params.sampling.clone(),
            logprobs: live.params.logprobs,
            logprob_temperature: live.params.logprob_temperature,
        }
    }

    fn draw(mut self, rng: &mut StdRng) -> (u32, Option<TokenLogprob>) {
        let t = self.logprob_temperature;
        let logprob = self.logprobs.map(|k| logprob_of(&self.logits, k, t));
        let tok = if self.sampling.is_greedy() {
            argmax(&self.logits)
        } else {
            self.sampling.sample(self.logits.to_mut(), rng)
        };
        (tok, logprob.map(|f| f(tok)))
    }
}

/// Append the tokens the processor forces after the row's last one, until it forces no more
/// or the row finishes.
fn fast_forward<R: Reply>(live: &mut Live<R>, row: &mut Row, stats: &mut StepStats) -> Result<()> {
    while !row.done && !live.cancelled {
        let Some(p) = live.processor.as_mut() else {
            return Ok(());
        };
        let forced = p.forced(row.sample, &row.tokens);
        if forced.is_empty() {
            return Ok(());
        }
        for tok in forced {
            if row.done || live.cancelled {
                break;
            }
            // One draw per token, sampled or not, so a seed gives the same sample with or
            // without fast-forward.
            if live.params.sampling.temperature > 0.0 {
                let _: f32 = rand::Rng::random(&mut row.rng);
            }
            let logprob = live.params.logprobs.map(|_| TokenLogprob {
                logprob: 0.0,
                top: vec![(tok, 0.0)],
            });
            stats.forced += 1;
            emit(live, row, tok, logprob)?;
        }
    }
    Ok(())
}

/// Append `tok` to the row (queued to be fed), send its text, and finish the row on a stop
/// token, a stop string or the length limit.
fn emit<R: Reply>(
    live: &mut Live<R>,
    row: &mut Row,
    tok: u32,
    logprob: Option<TokenLogprob>,
) -> Result<()> {
    row.tokens.push(tok);
    row.queued.push_back(tok);
    let before = row.text.len();
    if let Some(d) = &mut row.decoder {
        row.text.push_str(&d.push(tok)?);
    }
    let params = &live.params;
    let mut finish = None;
    if params.stop_token_ids.contains(&tok) {
        finish = Some(FinishReason::Stop);
    } else if let Some(cut) = find_stop(&row.text, before, &params.stop_strings) {
        row.text.truncate(cut);
        finish = Some(FinishReason::Stop);
    } else if row.tokens.len() >= params.max_tokens {
        finish = Some(FinishReason::Length);
    }
    // Hold back a tail that may still become a stop string.
    let upto = if finish.is_some() {
        row.text.len()
    } else {
        row.text.len() - held_back(&row.text, &params.stop_strings)
    };
    let text = row.text.get(row.sent..upto.max(row.sent)).unwrap_or("");
    let sent_ok = live.reply.send(Event::Token {
        sample: row.sample,
        token: tok,
        text: text.to_string(),
        logprob,
    });
    row.sent = upto.max(row.sent);
    let mut ok = sent_ok;
    if let Some(reason) = finish {
        row.done = true;
        ok &= live.reply.send(Event::Finished {
            sample: row.sample,
            reason,
        });
    }
    if !ok {
        live.cancelled = true;
    }
    Ok(())
}

/// Log-softmax of `logits / temperature` (a non-positive or non-finite temperature counts
/// as 1); returns a closure giving the sampled token's entry and the top k.
fn logprob_of(logits: &[f32], k: usize, temperature: f32) -> impl FnOnce(u32) -> TokenLogprob {
    let inv = if temperature > 0.0 && temperature.is_finite() {
        1.0 / temperature
    } else {
        1.0
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) * inv;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l * inv - max).exp())
            .sum::<f32>()
            .ln();
    let lp: Vec<f32> = logits.iter().map(|&l| l * inv - lse).collect();
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 {
        let mut idx: Vec<(u32, f32)> = lp.iter().enumerate().map(|(i, &p)| (i as u32, p)).collect();
        let by = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = k.min(idx.len());
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by);
            idx.truncate(k);
        }
        idx.sort_unstable_by(by);
        top = idx;
    }
    move |tok| TokenLogprob {
        logprob: lp.get(tok as usize).copied().unwrap_or(f32::NEG_INFINITY),
        top,
    }
}

/// Join the running batch and newly prefilled rows: both caches right-aligned to one width.
fn merge(
    old: Batch,
    mut rows: Vec<Row>,
    cache: KvCache,
    key_mask: Tensor,
    logits: Tensor,
) -> Result<Batch> {
    let width = old.cache.len().max(cache.len());
    let pad = |m: &Tensor| -> Result<Tensor> {
        let (b, w) = m.dims2()?;
        if w == width {
            return Ok(m.clone());
        }
        let z = Tensor::zeros((b, width - w), DType::U8, m.device())?;
        Ok(Tensor::cat(&[&z, m], 1)?)
    };
    let key_mask = Tensor::cat(&[&pad(&old.key_mask)?, &pad(&key_mask)?], 0)?;
    let merged = KvCache::stack_left_padded(&[&old.cache, &cache])?;
    let logits = Tensor::cat(&[&old.logits, &logits], 0)?;
    let mut all = old.rows;
    all.append(&mut rows);
    Ok(Batch {
        rows: all,
        cache: merged,
        key_mask,
        logits,
    })
}

/// Drop leading cache columns that are padding for every row, once there are enough of them
/// to be worth a copy.
fn compact(batch: &mut Batch) -> Result<()> {
    let width = batch.cache.len();
    let longest = batch.rows.iter().map(|r| r.span).max().unwrap_or(0);
    let dead = width.saturating_sub(longest);
    if dead >= 64 || (dead > 0 && dead * 4 >= width) {
        batch.cache.drop_front(dead)?;
        batch.key_mask = batch.key_mask.narrow(1, dead, width - dead)?.contiguous()?;
    }
    Ok(())
}

/// Distinct prompts (first occurrence order) and, per output row, its distinct prompt.
pub(crate) fn distinct_rows<'a>(prompts: &[&'a [u32]], ns: &[usize]) -> (Vec<&'a [u32]>, Vec<u32>) {
    let mut uniq: Vec<&[u32]> = Vec::new();
    let mut seen: HashMap<&[u32], u32> = HashMap::new();
    let mut rows = Vec::new();
    for (p, &n) in prompts.iter().zip(ns) {
        let u = *seen.entry(p).or_insert_with(|| {
            uniq.push(p);
            (uniq.len() - 1) as u32
        });
        rows.extend(std::iter::repeat_n(u, n));
    }
    (uniq, rows)
}

/// Byte offset where the earliest stop string starts, if one ends in the new text.
pub(crate) fn find_stop(text: &str, new_from: usize, stops: &[String]) -> Option<usize> {
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

/// Bytes at the end of `text` that are a proper prefix of some stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .map(|s| {
            let max = s.len().saturating_sub(1).min(text.len());
            (1..=max)
                .rev()
                .find(|&k| {
                    let start = text.len() - k;
                    text.is_char_boundary(start) && s.starts_with(&text[start..])
                })
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_rows_map_outputs_to_first_occurrences() {
        let p: Vec<&[u32]> = vec![&[1, 2], &[3], &[1, 2]];
        let (uniq, rows) = distinct_rows(&p, &[2, 2, 2]);
        assert_eq!(uniq, vec![&[1u32, 2][..], &[3][..]]);
        assert_eq!(rows, vec![0, 0, 1, 1, 0, 0]);
    }

    #[test]
    fn stop_strings_found_across_deltas() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(find_stop("x </ans", 3, &stops), None);
        assert_eq!(find_stop("x </answer> y", 7, &stops), Some(2));
        assert_eq!(find_stop("héllo</answer>", 12, &stops), Some(6));
    }

    #[test]
    fn a_possible_stop_string_prefix_is_held_back() {
        let stops = vec!["</answer>".to_string(), "END".to_string()];
        assert_eq!(held_back("x </ans", &stops), 5);
        assert_eq!(held_back("x EN", &stops), 2);
        assert_eq!(held_back("x <", &stops), 1);
        assert_eq!(held_back("x y", &stops), 0);
    }
}
