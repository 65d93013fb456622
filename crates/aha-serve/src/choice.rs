//! One output (choice) of a request as its tokens arrive: the reasoning split, counts and
//! log-probabilities, for whole responses and for stream deltas alike.

use aha_engine::{FinishReason, TokenLogprob};
use aha_text::{ReasoningDelta, StreamingReasoningParser, Tokenizer};
use serde_json::{json, Value};

pub struct Choice {
    /// None: no reasoning split (plain completions).
    parser: Option<StreamingReasoningParser>,
    pub content: String,
    pub reasoning: String,
    pub tokens: usize,
    pub reasoning_tokens: usize,
    /// Chat-shaped log-probability entries, when asked for.
    pub logprobs: Vec<Value>,
    pub finish: Option<FinishReason>,
    saw_reasoning: bool,
    /// Tokens seen while it is undecided whether an opening tag is coming (a tag split
    /// across tokens): reasoning if the tag completes.
    undecided: usize,
}

impl Choice {
    pub fn new(parser: Option<StreamingReasoningParser>) -> Self {
        let saw_reasoning = parser.as_ref().is_some_and(|p| p.in_reasoning());
        Self {
            parser,
            content: String::new(),
            reasoning: String::new(),
            tokens: 0,
            reasoning_tokens: 0,
            logprobs: Vec::new(),
            finish: None,
            saw_reasoning,
            undecided: 0,
        }
    }

    /// Take one token's text; returns what it adds.
    pub fn push(&mut self, text: &str) -> ReasoningDelta {
        self.tokens += 1;
        let d = match &mut self.parser {
            Some(p) => {
                let before = p.in_reasoning();
                let d = p.push(text);
                // The tags count as reasoning tokens, like the text between them.
                if before || p.in_reasoning() {
                    if !before {
                        self.reasoning_tokens += std::mem::take(&mut self.undecided);
                    }
                    self.reasoning_tokens += 1;
                    self.saw_reasoning = true;
                } else if !self.saw_reasoning {
                    self.undecided += 1;
                }
                d
            }
            None => ReasoningDelta {
                reasoning: String::new(),
                content: text.to_string(),
            },
        };
        self.add(&d);
        d
    }

    /// End of output: flush held-back text.
    pub fn finish(&mut self, reason: FinishReason) -> ReasoningDelta {
        self.finish = Some(reason);
        let d = match &mut self.parser {
            Some(p) => p.finish(),
            None => ReasoningDelta::default(),
        };
        self.add(&d);
        d
    }

    fn add(&mut self, d: &ReasoningDelta) {
        self.reasoning.push_str(&d.reasoning);
        self.content.push_str(&d.content);
    }

    /// The reasoning, or None when the output had no think block.
    pub fn reasoning_field(&self) -> Option<&str> {
        (self.saw_reasoning || !self.reasoning.is_empty()).then_some(self.reasoning.as_str())
    }
}

pub fn finish_str(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

/// A chat `logprobs.content` entry.
pub fn chat_logprob(tok: &Tokenizer, id: u32, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, logprob: f32| {
        let t = token_text(tok, id);
        json!({"token": t, "logprob": logprob, "bytes": t.as_bytes()})
    };
    let mut e = entry(id, lp.logprob);
    e["top_logprobs"] = Value::Array(lp.top.iter().map(|&(i, l)| entry(i, l)).collect());
    e
}

/// The legacy completions `logprobs` object for some tokens.
pub fn completion_logprobs(
    tok: &Tokenizer,
    items: &[(u32, TokenLogprob)],
    offset0: usize,
) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = offset0;
    for (id, lp) in items {
        let t = token_text(tok, *id);
        offsets.push(offset);
        offset += t.len();
        tokens.push(t);
        token_logprobs.push(lp.logprob);
        let m: serde_json::Map<String, Value> = lp
            .top
            .iter()
            .map(|&(i, l)| (token_text(tok, i), json!(l)))
            .collect();
        top.push(Value::Object(m));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets})
}
