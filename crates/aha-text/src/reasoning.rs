//! Splitting a completion into chain-of-thought and final answer.
//!
//! The batch function is defined as "feed everything to the streaming
//! parser", so both always agree on where the boundary is.

pub const THINK_START: &str = "<think>";
pub const THINK_END: &str = "</think>";

/// A completion split into its reasoning and its final content. Text is
/// kept verbatim (tags removed); callers trim if they want to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningSplit {
    pub reasoning: String,
    pub content: String,
    /// Whether the closing tag was seen. `false` with non-empty `reasoning`
    /// means the model stopped (or was cut off) while still thinking.
    pub reasoning_closed: bool,
}

/// Text produced by one [`StreamingReasoningParser::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningDelta {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningDelta {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty()
    }
}

/// True if `prompt` ends inside an open think block, i.e. the template
/// pre-filled `<think>` (DeepSeek-R1's newer template does), so the
/// completion starts in the reasoning.
pub fn prompt_opens_reasoning(prompt: &str) -> bool {
    prompt.trim_end().ends_with(THINK_START)
}

/// Split a whole completion. `starts_in_reasoning`: the prompt already
/// opened the think block (see [`prompt_opens_reasoning`]).
///
/// - `<think>R</think>C` (leading whitespace allowed) gives reasoning R, content C;
/// - with `starts_in_reasoning`, `R</think>C` gives the same;
/// - a missing `</think>` makes everything after the opening reasoning;
/// - output not starting with `<think>` (and not pre-opened) is all content.
pub fn split_reasoning(text: &str, starts_in_reasoning: bool) -> ReasoningSplit {
    let mut p = StreamingReasoningParser::new(starts_in_reasoning);
    let mut a = p.push(text);
    let b = p.finish();
    a.reasoning.push_str(&b.reasoning);
    a.content.push_str(&b.content);
    ReasoningSplit {
        reasoning: a.reasoning,
        content: a.content,
        reasoning_closed: p.reasoning_closed(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen yet; an opening tag may still come.
    Start,
    Reasoning,
    Content,
}

/// Incremental reasoning/content splitter for streamed text deltas.
///
/// A tag may arrive split across deltas, so text that could be the start of
/// a tag is held back until it is decided; [`finish`](Self::finish) flushes it.
#[derive(Debug, Clone)]
pub struct StreamingReasoningParser {
    state: State,
    pending: String,
    closed: bool,
    start_tag: String,
    end_tag: String,
}

impl StreamingReasoningParser {
    pub fn new(starts_in_reasoning: bool) -> Self {
        Self::with_tags(starts_in_reasoning, THINK_START, THINK_END)
    }

    /// Parser for the completion of `prompt` (pre-opened think block or not).
    pub fn for_prompt(prompt: &str) -> Self {
        Self::new(prompt_opens_reasoning(prompt))
    }

    /// Custom tags, for models that use something other than `<think>`.
    pub fn with_tags(starts_in_reasoning: bool, start_tag: &str, end_tag: &str) -> Self {
        Self {
            state: if starts_in_reasoning {
                State::Reasoning
            } else {
                State::Start
            },
            pending: String::new(),
            closed: false,
            start_tag: start_tag.to_string(),
            end_tag: end_tag.to_string(),
        }
    }

    /// Whether the parser is currently inside the reasoning block.
    pub fn in_reasoning(&self) -> bool {
        self.state == State::Reasoning
    }

    /// Whether the closing tag has been seen.
    pub fn reasoning_closed(&self) -> bool {
        self.closed
    }

    /// Feed a text delta; returns what can be emitted now.
    pub fn push(&mut self, text: &str) -> ReasoningDelta {
        self.pending.push_str(text);
        let mut out = ReasoningDelta::default();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(self.start_tag.as_str()) {
                        // Whitespace before the tag is dropped with it.
                        self.pending = rest.to_string();
                        self.state = State::Reasoning;
                    } else if self.start_tag.starts_with(trimmed) {
                        // Empty or a partial opening tag: undecided.
                        return out;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => {
                    if let Some(i) = self.pending.find(self.end_tag.as_str()) {
                        out.reasoning.push_str(&self.pending[..i]);
                        self.pending.drain(..i + self.end_tag.len());
                        self.state = State::Content;
                        self.closed = true;
                    } else {
                        let keep = partial_suffix_len(&self.pending, &self.end_tag);
                        let emit = self.pending.len() - keep;
                        out.reasoning.push_str(&self.pending[..emit]);
                        self.pending.drain(..emit);
                        return out;
                    }
                }
                State::Content => {
                    out.content.push_str(&self.pending);
                    self.pending.clear();
                    return out;
                }
            }
        }
    }

    /// End of stream: flush held-back text where it belongs.
    pub fn finish(&mut self) -> ReasoningDelta {
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Reasoning => ReasoningDelta {
                reasoning: rest,
                content: String::new(),
            },
            State::Start | State::Content => ReasoningDelta {
                reasoning: String::new(),
                content: rest,
            },
        }
    }
}

/// Length of the longest proper prefix of `tag` that `text` ends with.
fn partial_suffix_len(text: &str, tag: &str) -> usize {
    let max = tag.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| {
            let start = text.len() - k;
            text.is_char_boundary(start) && tag.starts_with(&text[start..])
        })
        .unwrap_or(0)
}
