//! Constrained decoding: a token mask from a JSON Schema, a regex, a choice list or a Lark
//! grammar, computed per token by `llguidance`, and applied only after the reasoning.
//!
//! A reasoning model thinks in free text and closes with `</think>`; masking from the first
//! token would forbid `<think>` and push the JSON into the reasoning. So each sample starts
//! free, the constraint takes over once the decoded text has closed the reasoning, and an
//! optional budget forces `</think>` when the thinking runs long; while a grammar waits, the
//! reasoning cannot end the turn (EOS is masked until `</think>`). Without a reasoning phase
//! (a model that does not think) the constraint applies from the first token.

use crate::scheduler::LogitsProcessor;
use crate::{EngineError, Result};
use aha_text::{TokenBytes, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

/// What the answer must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON Schema; a keyword llguidance does not implement is an error, never ignored.
    JsonSchema(serde_json::Value),
    /// A regular expression the whole answer matches.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A Lark grammar (llguidance's dialect: `start: ...`, regex terminals, `%json {...}`).
    Lark(String),
    /// Tool calls in the model's format (a forced `tool_choice`): each call names one of
    /// `tools` (name, JSON Schema of its arguments) with arguments valid under its schema;
    /// exactly one call when `one`, else one or more.
    ToolCalls {
        format: aha_text::ToolCallFormat,
        tools: Vec<(String, serde_json::Value)>,
        one: bool,
    },
}

impl Grammar {
    fn top_level(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(bounded_whitespace(
                serde_json::json!({"type": "object"}),
            )),
            Grammar::JsonSchema(s) => {
                TopLevelGrammar::from_json_schema(bounded_whitespace(s.clone()))
            }
            Grammar::Regex(r) => TopLevelGrammar::from_regex(r),
            Grammar::Choice(options) => {
                if options.is_empty() {
                    return Err(EngineError::Invalid("a choice list needs an option".into()));
                }
                let alternatives: Vec<String> = options.iter().map(|o| regex_escape(o)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
            Grammar::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            Grammar::ToolCalls { format, tools, one } => {
                if tools.is_empty() {
                    return Err(EngineError::Invalid("tool calls need a tool".into()));
                }
                let mut named = Vec::with_capacity(tools.len());
                for (name, schema) in tools {
                    let ok = !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !ok {
                        return Err(EngineError::Invalid(format!(
                            "tool name {name:?}: 1 to 64 of a-z, A-Z, 0-9, _ and -"
                        )));
                    }
                    named.push((name.clone(), bounded_whitespace(schema.clone()).to_string()));
                }
                TopLevelGrammar::from_lark(format.lark(&named, *one))
            }
        })
    }
}

/// Whitespace between JSON tokens: one space, or one line break and an indentation (up to
/// 32 spaces or 8 tabs). Pretty-printed JSON passes; a model cannot stall in whitespace,
/// which free whitespace allows (a known failure of JSON modes). A schema that sets
/// llguidance's own `x-guidance` options keeps them.
const JSON_WHITESPACE: &str = r"( |\r?\n( {0,32}|\t{0,8}))";

fn bounded_whitespace(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance")
            .or_insert_with(|| serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }));
    }
    schema
}

/// Escape every regex metacharacter, so the text matches itself.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The free-reasoning phase before a constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Reasoning {
    /// Forced first tokens that open the reasoning (`<think>\n`), unless the prompt did.
    pub open: Vec<u32>,
    /// The text that closes the reasoning (`</think>`).
    pub end: String,
    /// At most this many reasoning tokens; then `forced` is appended.
    pub budget: Option<usize>,
    /// What closes an over-long reasoning: an optional phrase, then `end` (token ids).
    pub forced: Vec<u32>,
}

impl Reasoning {
    /// R1's think block, with a budget. Unless the prompt opened it (`prompt_opened`), the
    /// output starts with `<think>\n`, as DeepSeek advises for R1 (it otherwise sometimes
    /// skips thinking). When the budget runs out, a short closing sentence and the tag are
    /// written for the model, so the reasoning ends in words rather than mid-thought.
    pub fn think(
        tokenizer: &Tokenizer,
        budget: Option<usize>,
        prompt_opened: bool,
    ) -> Result<Self> {
        let end = aha_text::THINK_END.to_string();
        let forced = tokenizer.encode(&format!("\n\nTime to answer.\n{end}\n\n"), false)?;
        let open = if prompt_opened {
            Vec::new()
        } else {
            tokenizer.encode(&format!("{}\n", aha_text::THINK_START), false)?
        };
        Ok(Self {
            open,
            end,
            budget,
            forced,
        })
    }
}

/// A tokenizer's view for llguidance: one per model, shared by every request.
#[derive(Clone)]
pub struct Constrainer {
    factory: Arc<ParserFactory>,
    env: TokEnv,
    vocab: usize,
    eos: u32,
}

struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.tokenizer
            .encode(&String::from_utf8_lossy(s), false)
            .unwrap_or_default()
    }
}

impl Constrainer {
    /// Build the token trie of `tokenizer` (special tokens are never produced by a grammar;
    /// the end of an answer is the first EOS id).
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let eos = *tokenizer.eos_token_ids().first().ok_or_else(|| {
            EngineError::Invalid("constrained decoding needs an EOS token in the tokenizer".into())
        })?;
        let words: Vec<Vec<u8>> = tokenizer
            .token_bytes()?
            .into_iter()
            .map(|TokenBytes { mut bytes, special }| {
                if special {
                    bytes.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
                }
                bytes
            })
            .collect();
        let vocab = words.len().max(eos as usize + 1);
        let info = TokRxInfo::new(vocab as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Env {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new(
            &env,
            llguidance::toktrie::InferenceCapabilities::default(),
            &string_slices(),
        )
        .map_err(llg)?;
        factory.set_stderr_log_level(0);
        Ok(Self {
            factory: Arc::new(factory),
            env,
            vocab,
            eos,
        })
    }

    /// Compile `grammar` (errors here: a bad regex, an unsupported schema keyword) into a
    /// constraint whose processors start after `reasoning`, if given. No grammar: only the
    /// reasoning budget applies, and the answer is free.
    pub fn compile(
        &self,
        grammar: Option<&Grammar>,
        reasoning: Option<Reasoning>,
    ) -> Result<Constraint> {
        let matcher = match grammar {
            Some(g) => {
                let parser = self.factory.create_parser(g.top_level()?).map_err(llg)?;
                let matcher = Matcher::new(Ok(parser));
                if let Some(e) = matcher.get_error() {
                    return Err(EngineError::Invalid(format!("constraint: {e}")));
                }
                Some(matcher)
            }
            None => None,
        };
        Ok(Constraint {
            matcher,
            env: self.env.clone(),
            reasoning,
            vocab: self.vocab,
            eos: self.eos,
        })
    }
}

/// Token classes whose masks llguidance precomputes: whitespace and JSON string contents of
/// bounded lengths. Its default (up to 10, up to 30, any) leaves a string with fewer than 10
/// characters left (the end of every `maxLength` string) to a walk over the whole vocabulary;
/// shorter classes keep those steps on the precomputed path.
fn string_slices() -> Vec<String> {
    let chars = r#"[^"\\\x00-\x1F\x7F]"#;
    let mut slices = vec![r"[\x20\x0A\x0D\x09]+".to_string()];
    for n in [2, 4, 6, 10, 30] {
        slices.push(format!("{chars}{{1,{n}}}"));
    }
    slices.push(format!("{chars}+"));
    slices
}

fn llg(e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("constraint: {e}"))
}

/// A compiled constraint; [`Constraint::processor`] makes one request's state.
pub struct Constraint {
    matcher: Option<Matcher>,
    env: TokEnv,
    reasoning: Option<Reasoning>,
    vocab: usize,
    eos: u32,
}

impl Constraint {
    pub fn processor(&self) -> Box<dyn LogitsProcessor> {
        Box::new(Processor {
            proto: self.matcher.as_ref().map(Matcher::deep_clone),
            env: self.env.clone(),
            reasoning: self.reasoning.clone(),
            vocab: self.vocab,
            eos: self.eos,
            samples: Vec::new(),
        })
    }
}

impl Constraint {
    /// An adversarial sampler for tests and benchmarks: append tokens drawn uniformly from
    /// those the mask allows (EOS half of the time once it is allowed, so walks end) for at
    /// most `max_tokens`. Returns the tokens and whether the walk ended with EOS; `timed`
    /// sees how long each step's mask took.
    pub fn random_walk(
        &self,
        max_tokens: usize,
        rng: &mut impl rand::Rng,
        mut timed: impl FnMut(std::time::Duration),
    ) -> (Vec<u32>, bool) {
        let mut p = self.processor();
        let mut out: Vec<u32> = Vec::new();
        let mut logits = vec![0f32; self.vocab];
        while out.len() < max_tokens {
            logits.fill(0.0);
            let t = std::time::Instant::now();
            p.process(0, &out, &mut logits);
            timed(t.elapsed());
            let allowed: Vec<u32> = (0..self.vocab as u32)
                .filter(|&j| logits[j as usize].is_finite())
                .collect();
            if allowed.is_empty() {
                return (out, false);
            }
            let next = if allowed.contains(&self.eos) && rng.random::<bool>() {
                self.eos
            } else {
                allowed[rng.random_range(0..allowed.len())]
            };
            if next == self.eos {
                return (out, true);
            }
            out.push(next);
        }
        (out, false)
    }
}

enum Phase {
    /// The opening tokens are forced, in order.
    Opening { next: usize },
    /// Free text; the decoded bytes so far (to find the closing tag).
    Thinking { text: Vec<u8>, tokens: usize },
    /// The budget ran out: these tokens are forced, in order.
    Closing { next: usize },
    /// The answer: constrained by the matcher, or free without one.
    Answer(Option<Box<Matcher>>),
}

struct SampleState {
    /// Tokens of `generated` already seen.
    seen: usize,
    phase: Phase,
}

struct Processor {
    proto: Option<Matcher>,
    env: TokEnv,
    reasoning: Option<Reasoning>,
    vocab: usize,
    eos: u32,
    samples: Vec<Option<SampleState>>,
}

impl Processor {
    fn start(&self) -> SampleState {
        SampleState {
            seen: 0,
            phase: match &self.reasoning {
                Some(r) if !r.open.is_empty() => Phase::Opening { next: 0 },
                Some(_) => Phase::Thinking {
                    text: Vec::new(),
                    tokens: 0,
                },
                None => Phase::Answer(self.answer()),
            },
        }
    }

    fn answer(&self) -> Option<Box<Matcher>> {
        self.proto.as_ref().map(|m| Box::new(m.deep_clone()))
    }

    /// Move `state` past one generated token.
    fn advance(&self, state: &mut SampleState, token: u32) {
        let trie = self.env.tok_trie();
        let bytes = if (token as usize) < trie.vocab_size() {
            trie.token(token)
        } else {
            &[]
        };
        match &mut state.phase {
            Phase::Opening { next } => {
                *next += 1;
                if *next >= self.reasoning.as_ref().map_or(0, |r| r.open.len()) {
                    state.phase = Phase::Thinking {
                        text: Vec::new(),
                        tokens: 0,
                    };
                }
            }
            Phase::Thinking { text, tokens } => {
                *tokens += 1;
                text.extend_from_slice(bytes);
                let end = self.reasoning.as_ref().map(|r| r.end.as_bytes());
                if let Some(end) = end {
                    // Only a tag that ends in this token's bytes is new: scan just that tail,
                    // not the whole reasoning again (quadratic over a long think block).
                    let tail = text
                        .len()
                        .saturating_sub(bytes.len() + end.len().saturating_sub(1));
                    if text[tail..].windows(end.len()).any(|w| w == end) {
                        state.phase = Phase::Answer(self.answer());
                    }
                }
            }
            Phase::Closing { next } => {
                *next += 1;
                let forced = self.reasoning.as_ref().map_or(&[][..], |r| &r.forced[..]);
                if *next >= forced.len() {
                    state.phase = Phase::Answer(self.answer());
                }
            }
            // A token the mask forbade cannot be sampled; an error stops the matcher, and
            // the mask below then allows only EOS.
            Phase::Answer(Some(m)) => {
                let _ = m.consume_token(token);
            }
            Phase::Answer(None) => {}
        }
    }
}

/// -inf for every logit whose bit in `words` (32 tokens a word) is clear, and past `allowed`
/// tokens. Word by word: most words of a JSON mask are all clear or all set (measured: the
/// per-token loop over R1's 129k-token vocabulary cost more than computing the mask).
fn apply_mask(words: &[u32], allowed: usize, logits: &mut [f32]) {
    let n = allowed.min(logits.len());
    let (head, tail) = logits.split_at_mut(n);
    tail.fill(f32::NEG_INFINITY);
    for (w, chunk) in head.chunks_mut(32).enumerate() {
        match words.get(w).copied().unwrap_or(0) {
            u32::MAX => {}
            0 => chunk.fill(f32::NEG_INFINITY),
            bits => {
                for (b, l) in chunk.iter_mut().enumerate() {
                    if bits & (1 << b) == 0 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

fn force(logits: &mut [f32], token: u32) {
    for (i, l) in logits.iter_mut().enumerate() {
        if i != token as usize {
            *l = f32::NEG_INFINITY;
        }
    }
}

impl Processor {
    /// Sample `sample`'s state, moved past `generated` (taken out; put it back after use).
    fn sync(&mut self, sample: usize, generated: &[u32]) -> SampleState {
        if self.samples.len() <= sample {
            self.samples.resize_with(sample + 1, || None);
        }
        let mut state = match self.samples[sample].take() {
            Some(s) => s,
            None => self.start(),
        };
        for &t in &generated[state.seen.min(generated.len())..] {
            self.advance(&mut state, t);
        }
        state.seen = generated.len();
        if let (Phase::Thinking { tokens, .. }, Some(r)) = (&state.phase, &self.reasoning) {
            if r.budget.is_some_and(|b| *tokens >= b) && !r.forced.is_empty() {
                state.phase = Phase::Closing { next: 0 };
            }
        }
        state
    }
}

impl LogitsProcessor for Processor {
    fn process(&mut self, sample: usize, generated: &[u32], logits: &mut [f32]) {
        let mut state = self.sync(sample, generated);
        match &mut state.phase {
            Phase::Opening { next } => {
                if let Some(&t) = self.reasoning.as_ref().and_then(|r| r.open.get(*next)) {
                    force(logits, t);
                }
            }
            // With an answer to produce, the turn cannot end while thinking: an empty
            // answer would not match the grammar.
            Phase::Thinking { .. } if self.proto.is_some() => {
                if let Some(l) = logits.get_mut(self.eos as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            Phase::Thinking { .. } => {}
            Phase::Closing { next } => {
                if let Some(&t) = self.reasoning.as_ref().and_then(|r| r.forced.get(*next)) {
                    force(logits, t);
                }
            }
            Phase::Answer(None) => {}
            Phase::Answer(Some(m)) => match m.compute_mask_or_eos() {
                Ok(mask) => apply_mask(mask.as_slice(), mask.len().min(self.vocab), logits),
                Err(_) => force(logits, self.eos),
            },
        }
        self.samples[sample] = Some(state);
    }

    /// The rest of a forced opening or closing, or what the grammar allows one way only.
    fn forced(&mut self, sample: usize, generated: &[u32]) -> Vec<u32> {
        let mut state = self.sync(sample, generated);
        let rest = |tokens: &[u32], next: usize| tokens.get(next..).unwrap_or(&[]).to_vec();
        let forced = match &mut state.phase {
            Phase::Opening { next } => self
                .reasoning
                .as_ref()
                .map_or(Vec::new(), |r| rest(&r.open, *next)),
            Phase::Closing { next } => self
                .reasoning
                .as_ref()
                .map_or(Vec::new(), |r| rest(&r.forced, *next)),
            Phase::Answer(Some(m)) if !m.is_stopped() => m.compute_ff_tokens(),
            Phase::Thinking { .. } | Phase::Answer(_) => Vec::new(),
        };
        self.samples[sample] = Some(state);
        forced
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("reasoning", &self.reasoning)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::apply_mask;

    #[test]
    fn mask_words_clear_exactly_the_forbidden_logits() {
        // 70 logits, 66 allowed by length; words: all set, all clear, mixed.
        let words = [u32::MAX, 0, 0b101];
        let mut logits = vec![1.0f32; 70];
        apply_mask(&words, 66, &mut logits);
        for (i, l) in logits.iter().enumerate() {
            let allowed = i < 32 || i == 64;
            assert_eq!(l.is_finite(), allowed, "logit {i}");
        }
    }
}
