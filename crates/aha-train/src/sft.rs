//! Supervised fine-tuning: datasets rendered into token ids with loss labels, the NLL
//! objective (with packing), and [`train`], the whole run on the shared [`crate::trainer`]
//! loop.
//!
//! **Examples.** An [`Example`] is `input_ids` plus `labels` of the same length, -100 where no
//! loss is taken (the Hugging Face convention: `labels[i]` is the token the model should
//! produce at position i, predicted from the positions before it). Only completion tokens
//! are trained (assistant turns, for chats), the end-of-turn/EOS token included: a model
//! that never learns to stop is the most common SFT failure.
//!
//! **Datasets** ([`Sample::from_record`]): chat `messages` (`[{role, content}, ...]`, in
//! OpenAI's shape: assistant `tool_calls`, `tool` results, the row's `tools`),
//! `prompt`/`completion` (strings, or lists of messages), GSM8K `question`/`answer` (also
//! `problem`/`solution`). Rendered with
//! * a chat template ([`conversation_examples`]), exactly as `aha chat` renders a prompt
//!   (tools and calls through [`ChatTemplate::render_with_tools`]): each assistant turn's
//!   span, its calls included, is found by rendering the conversation prefix by prefix (the
//!   messages before the turn with the generation prompt, then with the turn), each piece
//!   tokenized as `aha chat` tokenizes a prompt (no added special tokens); tool results are
//!   prompt, not trained;
//! * or a plain-text template ([`text_example`]; R1-Zero's, in full or short) filled in with
//!   the prompt and encoded with special tokens, the completion encoded alone, and the EOS id appended; prompt and
//!   completion are tokenized apart as they are when the RL trainer samples. A GSM8K answer
//!   (`steps #### 42`) becomes ` <think> steps </think> <answer> 42 </answer>`.
//!
//! **Templates that rewrite the history.** DeepSeek-R1's template drops the reasoning
//! (`<think>...</think>`) of every assistant message it renders, and later turns may render
//! earlier ones differently from how they rendered at their own time. The model, though,
//! generates its reasoning: so a turn's trained span is the turn *as generated* (its full
//! content, reasoning included, followed by what the template closes the turn with), found
//! by putting the content back where the template rendered its visible part. When every
//! turn renders as a prefix of the whole conversation and no turn before the last needed
//! its reasoning put back, the conversation is one example with every assistant turn
//! trained; otherwise it becomes one example per assistant turn, each with the history as
//! the template renders it at that point and only that turn trained: exactly what the
//! model sees and produces when it answers that turn.
//!
//! **Loss.** The mean negative log-likelihood over all trained tokens of the optimizer step:
//! each micro-batch's summed NLL is divided by the step's trained-token count, so the
//! accumulated gradient is the full-batch gradient whatever the micro-batching.
//!
//! **Packing.** Several examples share a row, each with its own position ids (from 0) and a
//! block-diagonal causal mask (a [b, t, t] key mask, see [`aha_model::ForwardInput`]): the
//! per-token log-probs equal the unpacked ones.

use crate::data::Record;
use crate::trainer::{
    epoch_order, file_err, progress_bar, MetricsSink, MicroLoss, Objective, OptimConfig, Result,
    Stats, TrainError, Trainer,
};
use aha_model::{ForwardInput, LogitsFor, Mode, Model, Tensor};
use aha_text::{ChatMessage, ChatTemplate, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The label of a position that takes no loss.
pub const IGNORE: i64 = -100;

/// One training sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub input_ids: Vec<u32>,
    /// `labels[i]`: the token expected at position i, or [`IGNORE`].
    pub labels: Vec<i64>,
}

impl Example {
    /// Tokens that take a loss (position 0 has nothing before it to predict it from).
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l != IGNORE).count()
    }

    /// Keep the first `max_len` tokens.
    pub fn truncate(&mut self, max_len: usize) {
        self.input_ids.truncate(max_len);
        self.labels.truncate(max_len);
    }

    fn push(&mut self, ids: &[u32], trained: bool) {
        self.input_ids.extend_from_slice(ids);
        self.labels
            .extend(ids.iter().map(|&t| if trained { t as i64 } else { IGNORE }));
    }
}

fn invalid(msg: impl Into<String>) -> TrainError {
    TrainError::Invalid(msg.into())
}

fn text_err(e: aha_text::TextError) -> TrainError {
    TrainError::Invalid(e.to_string())
}

// ---------------------------------------------------------------------------------------
// Dataset rows
// ---------------------------------------------------------------------------------------

/// A dataset row as a conversation or a prompt/completion pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Chat(Conversation),
    Pair {
        prompt: String,
        completion: String,
        /// The completion is a GSM8K answer (`steps #### final`).
        gsm8k: bool,
    },
}

/// A conversation in OpenAI's chat shape, as `aha chat` and `aha serve` render one: message
/// objects (`role`, `content`; an assistant's `tool_calls`, a tool result's `tool_call_id`)
/// and the `tools` it offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Value>,
    pub tools: Option<Value>,
}

impl Conversation {
    /// Plain `{role, content}` messages, no tools.
    pub fn plain(msgs: &[ChatMessage]) -> Self {
        Self {
            messages: msgs
                .iter()
                .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
                .collect(),
            tools: None,
        }
    }
}

/// A field that is JSON, or its JSON text (a Parquet column holds nested values as text).
fn json_field(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        v => v.clone(),
    }
}

fn messages_of(v: &Value) -> std::result::Result<Vec<Value>, String> {
    json_field(v)
        .as_array()
        .ok_or("not a list of {role, content} objects")?
        .iter()
        .enumerate()
        .map(|(i, m)| message_of(m).map_err(|e| format!("message {}: {e}", i + 1)))
        .collect()
}

/// One message as templates read it: `content` a string (empty when null or absent, but
/// kept null beside `tool_calls`, as OpenAI writes a turn that only calls), and each call's
/// `arguments` as JSON text (datasets also hold them as objects; templates write text).
fn message_of(m: &Value) -> std::result::Result<Value, String> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or("no `role` string")?;
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(k, c)| tool_call_of(c).map_err(|e| format!("tool call {}: {e}", k + 1)))
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err("`tool_calls` is not a list".into()),
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Null) | None if !calls.is_empty() => Value::Null,
        Some(Value::Null) | None => Value::String(String::new()),
        Some(_) => return Err("`content` is not a string".into()),
    };
    let mut out = serde_json::json!({"role": role, "content": content});
    // Only a message with calls has the key: templates test `'tool_calls' in message`.
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    for key in ["tool_call_id", "name"] {
        if let Some(Value::String(s)) = m.get(key) {
            out[key] = Value::String(s.clone());
        }
    }
    Ok(out)
}

fn tool_call_of(c: &Value) -> std::result::Result<Value, String> {
    let f = c.get("function").ok_or("no `function`")?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("no `function.name`")?;
    let object_text = |v: &Value| v.is_object().then(|| v.to_string());
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => Some("{}".to_string()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .map(|_| s.clone()),
        Some(v) => object_text(v),
    }
    .ok_or("`function.arguments` is neither a JSON object nor its JSON text")?;
    let kind = c.get("type").and_then(Value::as_str).unwrap_or("function");
    let mut out = serde_json::json!({
        "type": kind,
        "function": {"name": name, "arguments": arguments},
    });
    if let Some(Value::String(id)) = c.get("id") {
        out["id"] = Value::String(id.clone());
    }
    Ok(out)
}

/// The row's `tools` (OpenAI's list), if it offers any.
fn tools_of(r: &Record) -> std::result::Result<Option<Value>, String> {
    match r.get("tools").map(json_field) {
        None | Some(Value::Null) => Ok(None),
        Some(t @ Value::Array(_)) => Ok(Some(t)),
        Some(_) => Err("`tools` is not a list".into()),
    }
}

fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Sample {
    /// Read a row: `messages` (a list of `{role, content}`, OpenAI's shape: an assistant
    /// message may carry `tool_calls`, with the results as `tool` messages; a Parquet list
    /// column comes as its JSON text) with the `tools` it offers, if any,
    /// `prompt`/`completion`, or `question`/`answer` (`problem`/`solution`).
    pub fn from_record(r: &Record) -> std::result::Result<Sample, String> {
        if let Some(v) = r.get("messages") {
            let messages = messages_of(v).map_err(|e| format!("`messages`: {e}"))?;
            return Ok(Sample::Chat(Conversation {
                messages,
                tools: tools_of(r)?,
            }));
        }
        if let (Some(p), Some(c)) = (r.get("prompt"), r.get("completion")) {
            return match (p, c) {
                (Value::Array(_), Value::Array(_)) => {
                    let mut m = messages_of(p).map_err(|e| format!("`prompt`: {e}"))?;
                    m.extend(messages_of(c).map_err(|e| format!("`completion`: {e}"))?);
                    Ok(Sample::Chat(Conversation {
                        messages: m,
                        tools: tools_of(r)?,
                    }))
                }
                _ => Ok(Sample::Pair {
                    prompt: string_of(p).ok_or("`prompt` is not a string")?,
                    completion: string_of(c).ok_or("`completion` is not a string")?,
                    gsm8k: false,
                }),
            };
        }
        for (q, a) in [("question", "answer"), ("problem", "solution")] {
            if let (Some(p), Some(c)) = (r.get(q).and_then(string_of), r.get(a).and_then(string_of))
            {
                return Ok(Sample::Pair {
                    prompt: p,
                    completion: c,
                    gsm8k: true,
                });
            }
        }
        let keys: Vec<&String> = r.keys().collect();
        Err(format!(
            "no `messages`, `prompt`/`completion` or `question`/`answer` fields (found {keys:?})"
        ))
    }
}

/// A GSM8K answer (`steps #### 42`) in the R1-Zero format:
/// ` <think> steps </think> <answer> 42 </answer>`. Other text is kept as it is.
pub fn gsm8k_completion(answer: &str) -> String {
    match answer.rsplit_once("####") {
        Some((steps, fin)) => format!(
            " <think> {} </think> <answer> {} </answer>",
            steps.trim(),
            fin.trim()
        ),
        None => answer.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// How a sample becomes text.
pub enum Template {
    /// A chat template (the model's own, or one read from a file).
    Chat(Box<ChatTemplate>),
    /// A plain-text prompt template with a `{prompt}` placeholder (R1-Zero's, in full or its
    /// short form for the built-in tasks): the filled-in prompt, then the completion and EOS.
    Text(String),
}

impl Template {
    /// DeepSeek-R1-Zero's template as in the paper ([`crate::tasks::R1_ZERO_TEMPLATE`]).
    pub fn r1_zero() -> Self {
        Template::Text(crate::tasks::R1_ZERO_TEMPLATE.to_string())
    }

    /// Its short form, as the built-in tasks' tiny models are trained with.
    pub fn r1_zero_short() -> Self {
        Template::Text(crate::tasks::R1_ZERO_SHORT_TEMPLATE.to_string())
    }
}

/// A plain-text template example: the filled-in prompt (encoded with special tokens,
/// untrained), the completion (encoded alone, trained) and the tokenizer's EOS (trained).
pub fn text_example(
    tok: &Tokenizer,
    template: &str,
    prompt: &str,
    completion: &str,
) -> Result<Example> {
    let eos = tok
        .eos_token_id()
        .ok_or_else(|| invalid("the tokenizer has no EOS token to end completions with"))?;
    let mut ex = Example {
        input_ids: Vec::new(),
        labels: Vec::new(),
    };
    ex.push(
        &tok.encode(&template.replace("{prompt}", prompt), true)
            .map_err(text_err)?,
        false,
    );
    ex.push(&tok.encode(completion, false).map_err(text_err)?, true);
    ex.push(&[eos], true);
    Ok(ex)
}

/// Examples from (prompt, completion) pairs under the short R1-Zero template: the built-in
/// tasks' in-process path.
pub fn examples_from_pairs(tok: &Tokenizer, pairs: &[(String, String)]) -> Result<Vec<Example>> {
    pairs
        .iter()
        .map(|(p, c)| text_example(tok, crate::tasks::R1_ZERO_SHORT_TEMPLATE, p, c))
        .collect()
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            return i;
        }
        n = i + x.len_utf8();
    }
    n
}

/// Where a turn rendered in `with` starts after the generation prompt `prompt`: the prompt's
/// end, or when the template opens a generated turn differently from how it renders a
/// finished one (e.g. `<think>\n` only when generating), their shared part, never cut inside
/// a tag (`<think>` and `<｜tool▁calls▁begin｜>` share their `<`, not a token).
fn turn_start(prompt: &str, with: &str) -> usize {
    if with.starts_with(prompt) {
        return prompt.len();
    }
    let n = common_prefix_len(prompt, with);
    let Some(open) = with[..n].rfind('<') else {
        return n;
    };
    let name_len = with[open + 1..]
        .find(|c: char| c == '>' || c == '<' || c.is_whitespace())
        .unwrap_or(0);
    let close = open + 1 + name_len;
    if name_len > 0 && with[close..].starts_with('>') && close >= n {
        open
    } else {
        n
    }
}

/// One assistant turn located in a render: where it starts and ends, and its text as the
/// model generates it.
struct Turn {
    start: usize,
    end: usize,
    generated: String,
    /// The template dropped the turn's reasoning, put back into `generated`.
    restored: bool,
}

/// Locate the last message (an assistant turn) of `msgs` in `render(msgs)`.
fn locate_turn(render: &impl Fn(&[Value], bool) -> Result<String>, msgs: &[Value]) -> Result<Turn> {
    let prompt = render(&msgs[..msgs.len() - 1], true)?;
    let with = render(msgs, false)?;
    let start = turn_start(&prompt, &with);
    let span = &with[start..];
    let content = msgs[msgs.len() - 1]["content"].as_str().unwrap_or_default();
    let mut generated = span.to_string();
    let mut restored = false;
    if !span.contains(content) {
        if let Some((_, visible)) = content.rsplit_once("</think>") {
            // The template rendered only the part after the reasoning: put the content back
            // in its place (trying the visible part as is, then without leading newlines,
            // which some templates strip).
            for v in [visible, visible.trim_start_matches('\n'), visible.trim()] {
                if let Some(pos) = span.find(v).filter(|_| !v.is_empty()) {
                    generated = format!("{}{}{}", &span[..pos], content, &span[pos + v.len()..]);
                    restored = true;
                    break;
                }
            }
        }
    }
    Ok(Turn {
        start,
        end: with.len(),
        generated,
        restored,
    })
}

/// Encode a trained piece: labels up to and including its last EOS (the end of the turn),
/// nothing after it (e.g. the newline ChatML puts after `<|im_end|>`).
fn push_trained(ex: &mut Example, ids: &[u32], tok: &Tokenizer, eos: &[u32]) {
    let stop = ids
        .iter()
        .rposition(|&i| tok.is_eos(i) || eos.contains(&i))
        .map_or(ids.len(), |p| p + 1);
    ex.push(&ids[..stop], true);
    ex.push(&ids[stop..], false);
}

/// The examples of plain `{role, content}` messages: [`conversation_examples`] without
/// tools.
pub fn chat_example(
    t: &ChatTemplate,
    tok: &Tokenizer,
    msgs: &[ChatMessage],
    eos: &[u32],
) -> Result<Vec<Example>> {
    conversation_examples(t, tok, &Conversation::plain(msgs), eos)
}

/// The examples of a conversation under a chat template, rendered as `aha chat` and `aha
/// serve` render one (the offered tools and the assistants' tool calls included; see the
/// module doc): one example with every assistant turn trained, its calls and end of turn
/// included, or one per assistant turn when the template rewrites the history. `eos` adds
/// end-of-turn ids to the tokenizer's EOS (e.g. a model's `generation_config.json` ids).
pub fn conversation_examples(
    t: &ChatTemplate,
    tok: &Tokenizer,
    conv: &Conversation,
    eos: &[u32],
) -> Result<Vec<Example>> {
    let msgs = &conv.messages;
    let calls_of = |m: &Value| m.get("tool_calls").and_then(Value::as_array).cloned();
    if t.tool_call_format().is_none() {
        if let Some(i) = msgs.iter().position(|m| calls_of(m).is_some()) {
            return Err(invalid(format!(
                "message {} has tool_calls, but the chat template does not write tool calls \
                 (neither DeepSeek's nor Hermes' call syntax)",
                i + 1
            )));
        }
    }
    let render = |m: &[Value], generation_prompt: bool| {
        t.render_with_tools(m, conv.tools.as_ref(), generation_prompt)
            .map_err(text_err)
    };
    let turns: Vec<usize> = msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m["role"] == "assistant")
        .map(|(i, _)| i)
        .collect();
    if turns.is_empty() {
        return Err(invalid("a conversation without an assistant turn"));
    }
    let locate = |i: usize| -> Result<Turn> {
        let turn = locate_turn(&render, &msgs[..=i])?;
        // A template may write calls only in some positions: never train a turn without them.
        for call in calls_of(&msgs[i]).unwrap_or_default() {
            let name = call["function"]["name"].as_str().unwrap_or_default();
            if !turn.generated.contains(name) {
                return Err(invalid(format!(
                    "message {}: the chat template did not write its call of `{name}`",
                    i + 1
                )));
            }
        }
        Ok(turn)
    };
    let enc = |s: &str| tok.encode(s, false).map_err(text_err);
    let full = render(msgs, false)?;
    // One sequence if every turn sits where the whole render has it.
    let mut located = Vec::new();
    let mut one_sequence = true;
    let mut done = 0;
    for (k, &i) in turns.iter().enumerate() {
        let turn = locate(i)?;
        let last = k + 1 == turns.len();
        let prefix = render(&msgs[..=i], false)?;
        if !full.starts_with(&prefix) || turn.start < done || (turn.restored && !last) {
            one_sequence = false;
            break;
        }
        done = turn.end;
        located.push(turn);
    }
    if one_sequence {
        let mut ex = Example {
            input_ids: Vec::new(),
            labels: Vec::new(),
        };
        let mut at = 0;
        for turn in &located {
            ex.push(&enc(&full[at..turn.start])?, false);
            push_trained(&mut ex, &enc(&turn.generated)?, tok, eos);
            at = turn.end;
        }
        ex.push(&enc(&full[at..])?, false);
        return Ok(vec![ex]);
    }
    turns
        .iter()
        .map(|&i| {
            let turn = locate(i)?;
            let text = render(&msgs[..=i], false)?;
            let mut ex = Example {
                input_ids: Vec::new(),
                labels: Vec::new(),
            };
            ex.push(&enc(&text[..turn.start])?, false);
            push_trained(&mut ex, &enc(&turn.generated)?, tok, eos);
            Ok(ex)
        })
        .collect()
}

/// The content of a message of `role` without tool calls.
fn plain<'a>(m: &'a Value, role: &str) -> Option<&'a str> {
    (m["role"] == role && m.get("tool_calls").is_none())
        .then(|| m["content"].as_str().unwrap_or_default())
}

const PLAIN_TEXT_CHAT: &str =
    "a plain-text template takes one user and one assistant message, without tools or tool calls";

/// How the rows of a dataset became examples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildStats {
    pub rows: usize,
    pub examples: usize,
    /// Examples cut at `max_len`.
    pub truncated: usize,
    /// Examples left with no trained token after the cut (dropped).
    pub dropped: usize,
}

/// The examples of dataset rows under `template`, each cut to `max_len` tokens (examples
/// with no trained token left are dropped). `eos`: extra end-of-turn ids (see
/// [`chat_example`]).
pub fn examples_from_records(
    records: &[Record],
    template: &Template,
    tok: &Tokenizer,
    eos: &[u32],
    max_len: usize,
) -> Result<(Vec<Example>, BuildStats)> {
    let mut stats = BuildStats {
        rows: records.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    for (row, r) in records.iter().enumerate() {
        let sample =
            Sample::from_record(r).map_err(|e| invalid(format!("row {}: {e}", row + 1)))?;
        let exs = match (template, sample) {
            (Template::Chat(t), Sample::Chat(c)) => conversation_examples(t, tok, &c, eos),
            (
                Template::Chat(t),
                Sample::Pair {
                    prompt, completion, ..
                },
            ) => chat_example(
                t,
                tok,
                &[
                    ChatMessage::user(prompt),
                    ChatMessage::assistant(completion),
                ],
                eos,
            ),
            (
                Template::Text(t),
                Sample::Pair {
                    prompt,
                    completion,
                    gsm8k,
                },
            ) => {
                let c = if gsm8k {
                    gsm8k_completion(&completion)
                } else {
                    completion
                };
                text_example(tok, t, &prompt, &c).map(|e| vec![e])
            }
            (Template::Text(t), Sample::Chat(c)) => match (c.messages.as_slice(), &c.tools) {
                ([u, a], None) => match (plain(u, "user"), plain(a, "assistant")) {
                    (Some(u), Some(a)) => text_example(tok, t, u, a).map(|e| vec![e]),
                    _ => Err(invalid(PLAIN_TEXT_CHAT)),
                },
                _ => Err(invalid(PLAIN_TEXT_CHAT)),
            },
        }
        .map_err(|e| invalid(format!("row {}: {e}", row + 1)))?;
        for mut ex in exs {
            if ex.input_ids.len() > max_len {
                ex.truncate(max_len);
                stats.truncated += 1;
            }
            if ex.trained_tokens() == 0 {
                stats.dropped += 1;
                continue;
            }
            out.push(ex);
        }
    }
    stats.examples = out.len();
    Ok((out, stats))
}

/// Write the first `n` examples as JSONL `{"input_ids": [...], "labels": [...]}`.
pub fn dump_batches(path: &Path, examples: &[Example], n: usize) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| file_err(path, e))?);
    for ex in examples.iter().take(n) {
        let line = serde_json::to_string(ex).map_err(|e| invalid(e.to_string()))?;
        writeln!(f, "{line}").map_err(|e| file_err(path, e))?;
    }
    f.flush().map_err(|e| file_err(path, e))
}

// ---------------------------------------------------------------------------------------
// The NLL objective
// ---------------------------------------------------------------------------------------

/// One row of a forward pass: one example, or several packed.
#[derive(Debug, Clone)]
pub struct Row {
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub positions: Vec<u32>,
    /// Which packed example each token belongs to.
    pub segments: Vec<u32>,
    /// (example index, offset in the row) of each example in the row.
    pub members: Vec<(usize, usize)>,
}

/// Rows of the examples `idx`: one each, or packed greedily in order into rows of at most
/// `max_len` tokens. A packed example's first label is dropped (it has no position before
/// it in its own sequence, as unpacked).
pub fn make_rows(examples: &[Example], idx: &[usize], packing: bool, max_len: usize) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for &i in idx {
        let ex = &examples[i];
        let n = ex.input_ids.len();
        let fits = rows
            .last()
            .is_some_and(|r| packing && r.ids.len() + n <= max_len);
        if !fits {
            rows.push(Row {
                ids: Vec::new(),
                labels: Vec::new(),
                positions: Vec::new(),
                segments: Vec::new(),
                members: Vec::new(),
            });
        }
        let Some(r) = rows.last_mut() else {
            continue;
        };
        let seg = r.members.len() as u32;
        r.members.push((i, r.ids.len()));
        r.ids.extend_from_slice(&ex.input_ids);
        r.labels.extend(
            ex.labels
                .iter()
                .enumerate()
                .map(|(k, &l)| if k == 0 { IGNORE } else { l }),
        );
        r.positions.extend(0..n as u32);
        r.segments.extend(std::iter::repeat_n(seg, n));
    }
    rows
}

/// Per-position log-probs of the trained tokens of `rows`: ([b, n] log p, [b, n] mask, the
/// row offset of column 0). Only the positions from the first trained one on get logits.
fn rows_logprobs(model: &Model, rows: &[Row], mode: Mode) -> Result<(Tensor, Tensor, usize)> {
    let device = model.device();
    let b = rows.len();
    let width = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let first = rows
        .iter()
        .filter_map(|r| {
            r.labels
                .iter()
                .skip(1)
                .position(|&l| l != IGNORE)
                .map(|p| p + 1)
        })
        .min()
        .ok_or_else(|| invalid("a micro-batch with no trained token"))?;
    let vocab = model.vocab_size() as i64;
    let packed = rows.iter().any(|r| r.members.len() > 1);
    let mut ids = vec![0u32; b * width];
    let mut pos = vec![0u32; b * width];
    let mut real = vec![0u8; b * width];
    // Logits at positions first-1 .. width-2 predict the labels at first .. width-1.
    let n = width - first;
    let mut targets = vec![0u32; b * n];
    let mut mask = vec![0f32; b * n];
    for (r, row) in rows.iter().enumerate() {
        let len = row.ids.len();
        for j in 0..width {
            let k = r * width + j;
            if j < len {
                ids[k] = row.ids[j];
                pos[k] = row.positions[j];
                real[k] = 1;
            } else {
                // Padding continues the positions; its outputs are never used.
                pos[k] = j as u32;
            }
        }
        for (j, &l) in row.labels.iter().enumerate().skip(first) {
            if l == IGNORE {
                continue;
            }
            if l < 0 || l >= vocab {
                return Err(invalid(format!(
                    "label {l} is outside the vocabulary (0..{vocab})"
                )));
            }
            targets[r * n + j - first] = l as u32;
            mask[r * n + j - first] = 1.0;
        }
    }
    let input_ids = Tensor::from_vec(ids, (b, width), device)?;
    let position_ids = Tensor::from_vec(pos, (b, width), device)?;
    // One packed row: its sequences' lengths, no [t, t] mask.
    let lens: Option<Vec<usize>> = match rows {
        [row] if packed => Some(
            row.members
                .iter()
                .map(|&(_, off)| off)
                .chain([row.ids.len()])
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| w[1] - w[0])
                .collect(),
        ),
        _ => None,
    };
    let key_mask = if lens.is_some() {
        None
    } else if packed {
        let mut allowed = vec![0u8; b * width * width];
        for (r, row) in rows.iter().enumerate() {
            for (q, sq) in row.segments.iter().enumerate() {
                let base = (r * width + q) * width;
                for (k, sk) in row.segments.iter().enumerate() {
                    allowed[base + k] = (sq == sk) as u8;
                }
            }
        }
        Some(Tensor::from_vec(allowed, (b, width, width), device)?)
    } else {
        Some(Tensor::from_vec(real, (b, width), device)?)
    };
    let input = ForwardInput {
        input_ids: &input_ids,
        position_ids: &position_ids,
        key_mask: key_mask.as_ref(),
        segments: lens.as_deref(),
        mode,
        logits: LogitsFor::Tail(n + 1),
    };
    let targets = Tensor::from_vec(targets, (b, n), device)?;
    let mask = Tensor::from_vec(mask, (b, n), device)?;
    let (logp, _) = model.target_logprobs(&input, &targets, 1.0)?;
    let logp = (logp * &mask)?;
    Ok((logp, mask, first))
}

/// The log-prob of each trained token of each example (in order), computed in micro-batches
/// of `micro_batch` rows, packed or not: for tests and scoring.
pub fn example_logprobs(
    model: &Model,
    examples: &[Example],
    packing: bool,
    max_len: usize,
    micro_batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let idx: Vec<usize> = (0..examples.len()).collect();
    let rows = make_rows(examples, &idx, packing, max_len);
    let mut out = vec![Vec::new(); examples.len()];
    for chunk in rows.chunks(micro_batch.max(1)) {
        let (logp, _, first) = rows_logprobs(model, chunk, Mode::Inference)?;
        let logp: Vec<Vec<f32>> = logp.to_vec2()?;
        for (r, row) in chunk.iter().enumerate() {
            for &(e, off) in &row.members {
                let ex = &examples[e];
                for (j, &l) in ex.labels.iter().enumerate().skip(1) {
                    if l != IGNORE {
                        out[e].push(logp[r][off + j - first]);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A micro-batch of the NLL objective.
pub struct NllBatch {
    pub rows: Vec<Row>,
    /// Trained tokens of the whole optimizer step (the normaliser).
    pub step_tokens: usize,
}

/// Mean negative log-likelihood over the trained tokens of the step.
pub struct Nll;

impl Objective for Nll {
    type Batch = NllBatch;

    /// Positions computed: rows times the longest (padded rows are as long as it).
    fn cost(&self, batch: &NllBatch) -> usize {
        let longest = batch.rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        batch.rows.len() * longest
    }

    fn micro_loss(&self, model: &Model, batch: &NllBatch) -> Result<MicroLoss> {
        let (logp, mask, _) = rows_logprobs(model, &batch.rows, Mode::Train)?;
        let sum = logp.sum_all()?;
        let loss = (sum.neg()? / batch.step_tokens.max(1) as f64)?;
        let mut stats = Stats::new();
        stats.insert("nll_sum".into(), -(sum.detach().to_scalar::<f32>()? as f64));
        stats.insert("tokens".into(), mask.sum_all()?.to_scalar::<f32>()? as f64);
        stats.insert(
            "seq_tokens".into(),
            batch.rows.iter().map(|r| r.ids.len()).sum::<usize>() as f64,
        );
        Ok(MicroLoss { loss, stats })
    }
}

/// The micro-batches of one optimizer step over examples `idx`.
pub fn step_batches(
    examples: &[Example],
    idx: &[usize],
    packing: bool,
    max_len: usize,
    micro_batch: usize,
) -> Vec<NllBatch> {
    let step_tokens = idx.iter().map(|&i| examples[i].trained_tokens()).sum();
    make_rows(examples, idx, packing, max_len)
        .chunks(micro_batch.max(1))
        .map(|c| NllBatch {
            rows: c.to_vec(),
            step_tokens,
        })
        .collect()
}

/// The micro-batches of one optimizer step over examples `idx`, `per_pass` examples packed
/// into the one row of each: no padding, each example attending within itself.
pub fn packed_passes(examples: &[Example], idx: &[usize], per_pass: usize) -> Vec<NllBatch> {
    let step_tokens = idx.iter().map(|&i| examples[i].trained_tokens()).sum();
    idx.chunks(per_pass.max(1))
        .map(|c| NllBatch {
            rows: make_rows(examples, c, true, usize::MAX),
            step_tokens,
        })
        .collect()
}

/// Mean NLL per trained token of `examples` (no gradients).
pub fn evaluate(model: &Model, examples: &[Example], cfg: &SftConfig) -> Result<f64> {
    let idx: Vec<usize> = (0..examples.len()).collect();
    let (mut nll, mut tokens) = (0f64, 0f64);
    for chunk in make_rows(examples, &idx, cfg.packing, cfg.max_len).chunks(cfg.micro_batch.max(1))
    {
        let (logp, mask, _) = rows_logprobs(model, chunk, Mode::Inference)?;
        nll -= logp.sum_all()?.to_scalar::<f32>()? as f64;
        tokens += mask.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(nll / tokens.max(1.0))
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// An SFT run. Defaults follow open-r1's distillation recipe where it makes sense on a CPU:
/// cosine decay with 10% warmup to 10% of the peak, gradient clipping at 1.0, a few epochs,
/// no weight decay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SftConfig {
    pub epochs: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Rows per forward/backward pass (examples, or packed rows).
    pub micro_batch: usize,
    /// Longest row in tokens (examples are cut to it when built).
    pub max_len: usize,
    pub packing: bool,
    /// Peak learning rate; None: [`default_lr`] for the model's size.
    pub lr: Option<f64>,
    /// Warmup as a fraction of the total steps.
    pub warmup_ratio: f64,
    /// Floor of the cosine decay as a fraction of the peak.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Data order seed.
    pub seed: u64,
    /// Held-out loss every N steps (and at the end; 0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every N steps (and at the end; 0: never).
    pub save_every: u64,
    /// Show a progress bar.
    pub progress: bool,
    /// End the run after this step (a checkpoint is written there when `save_every > 0`);
    /// the schedule still spans every epoch. None: run to the end.
    pub stop_after: Option<u64>,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 16,
            micro_batch: 4,
            max_len: 1024,
            packing: false,
            lr: None,
            warmup_ratio: 0.1,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 0,
            eval_every: 10,
            save_every: 0,
            progress: false,
            stop_after: None,
        }
    }
}

/// The peak learning rate for a model of `params` trainable-or-not parameters: LoRA 2e-4;
/// full fine-tuning 1e-3 for tiny models (< 50M), 1e-4 below 1B, else open-r1's 4e-5.
pub fn default_lr(params: usize, lora: bool) -> f64 {
    if lora {
        2e-4
    } else if params < 50_000_000 {
        1e-3
    } else if params < 1_000_000_000 {
        1e-4
    } else {
        4e-5
    }
}

impl SftConfig {
    pub fn steps_per_epoch(&self, n: usize) -> u64 {
        n.div_ceil(self.batch_size.max(1)) as u64
    }

    pub fn total_steps(&self, n: usize) -> u64 {
        self.steps_per_epoch(n) * self.epochs as u64
    }

    /// The example indices of step `step` (0-based): each epoch a seeded permutation, cut
    /// into batches (the last one of an epoch may be smaller).
    pub fn step_indices(&self, n: usize, step: u64) -> Vec<usize> {
        let spe = self.steps_per_epoch(n).max(1);
        let (epoch, k) = (step / spe, (step % spe) as usize);
        let order = epoch_order(n, self.seed, epoch);
        let bs = self.batch_size.max(1);
        order[k * bs..((k + 1) * bs).min(n)].to_vec()
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SftStep {
    pub step: u64,
    pub epoch: f64,
    /// Mean NLL per trained token of the step.
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    /// Trained tokens of the step.
    pub tokens: f64,
    /// Tokens forwarded per second (prompt and completion).
    pub tokens_per_s: f64,
    pub time_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SftReport {
    pub steps: u64,
    pub train_examples: usize,
    pub eval_examples: usize,
    pub lr: f64,
    pub final_loss: Option<f64>,
    /// (step, held-out loss), the first at step 0.
    pub eval_losses: Vec<(u64, f64)>,
    pub trained_tokens: f64,
    pub wall_s: f64,
    pub resumed_from: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct RunState {
    config: SftConfig,
    lr: f64,
    train_examples: usize,
}

/// Train `model` on `train` (held-out loss on `eval`, if any) for `cfg.epochs`, writing
/// `config.json`, `metrics.jsonl` and `checkpoint/` under `out_dir`. With `resume` the run
/// continues from `out_dir/checkpoint` (same model as the run started with: for LoRA the
/// base without an adapter) and ends with bit-identical weights to a run that never
/// stopped. Returns the trained model.
pub fn train(
    model: Model,
    train: &[Example],
    eval: &[Example],
    cfg: &SftConfig,
    out_dir: &Path,
    resume: bool,
) -> Result<(Model, SftReport)> {
    let t_start = Instant::now();
    if train.is_empty() {
        return Err(invalid("no training examples"));
    }
    if cfg.batch_size == 0 || cfg.micro_batch == 0 || cfg.epochs == 0 {
        return Err(invalid(
            "epochs, batch_size and micro_batch must be positive",
        ));
    }
    if let Some(ex) = train
        .iter()
        .chain(eval)
        .find(|e| e.input_ids.len() > cfg.max_len)
    {
        return Err(invalid(format!(
            "an example of {} tokens is longer than max_len {}",
            ex.input_ids.len(),
            cfg.max_len
        )));
    }
    if let Some(ex) = train.iter().find(|e| e.input_ids.len() != e.labels.len()) {
        return Err(invalid(format!(
            "an example with {} ids and {} labels",
            ex.input_ids.len(),
            ex.labels.len()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| file_err(out_dir, e))?;
    let ckpt = out_dir.join("checkpoint");
    let lora =
        model.adapter().is_some() || (resume && ckpt.join(aha_model::lora::CONFIG_FILE).is_file());
    let lr = cfg
        .lr
        .unwrap_or_else(|| default_lr(model.params().count(), lora));
    let total = cfg.total_steps(train.len());
    let optim = OptimConfig::cosine(
        lr,
        total,
        cfg.warmup_ratio,
        cfg.min_lr_ratio,
        cfg.weight_decay,
        cfg.max_grad_norm,
    );
    let state = RunState {
        config: cfg.clone(),
        lr,
        train_examples: train.len(),
    };
    let state_json = serde_json::to_value(&state).map_err(|e| invalid(e.to_string()))?;
    let mut trainer = if resume {
        let (t, saved) = Trainer::resume(&ckpt, model, optim.clone())?;
        let saved: RunState = serde_json::from_value(saved).map_err(|e| file_err(&ckpt, e))?;
        // What shapes the steps must match (a resumed run with another batch size or
        // schedule is a different run); eval and save cadence, the bar and the stop may change.
        let shape = |c: &SftConfig| SftConfig {
            eval_every: 0,
            save_every: 0,
            progress: false,
            stop_after: None,
            ..c.clone()
        };
        if shape(&saved.config) != shape(cfg) || saved.lr != lr {
            return Err(file_err(
                &ckpt,
                "the checkpoint was trained with other settings (its config.json has them):                  resume with the same epochs, batch sizes, length, packing, schedule and seed",
            ));
        }
        if saved.train_examples != train.len() {
            return Err(file_err(
                &ckpt,
                format!(
                    "the checkpoint trained on {} examples, this run has {}",
                    saved.train_examples,
                    train.len()
                ),
            ));
        }
        t
    } else {
        Trainer::new(model, optim.clone())?
    };
    let resumed_from = resume.then_some(trainer.step);
    let config_text = serde_json::to_string_pretty(&serde_json::json!({
        "sft": state_json,
        "optimizer": optim,
        "eval_examples": eval.len(),
    }))
    .map_err(|e| invalid(e.to_string()))?;
    aha_model::write_atomic(&out_dir.join("config.json"), config_text.as_bytes())?;
    let mut metrics = MetricsSink::open(&out_dir.join("metrics.jsonl"), resumed_from)?;
    let mut report = SftReport {
        steps: total,
        train_examples: train.len(),
        eval_examples: eval.len(),
        lr,
        final_loss: None,
        eval_losses: Vec::new(),
        trained_tokens: 0.0,
        wall_s: 0.0,
        resumed_from,
    };
    if !eval.is_empty() && trainer.step == 0 {
        let l = evaluate(&trainer.model, eval, cfg)?;
        report.eval_losses.push((0, l));
        metrics.write(&serde_json::json!({ "step": 0, "eval_loss": l }))?;
    }
    let bar = cfg.progress.then(|| progress_bar(total));
    if let Some(b) = &bar {
        b.set_position(trainer.step);
    }
    let spe = cfg.steps_per_epoch(train.len());
    let end = cfg.stop_after.map_or(total, |s| s.min(total));
    while trainer.step < end {
        let idx = cfg.step_indices(train.len(), trainer.step);
        let batches = step_batches(train, &idx, cfg.packing, cfg.max_len, cfg.micro_batch);
        let out = trainer.step(&Nll, &batches)?;
        let tokens = out.stats.get("tokens").copied().unwrap_or(0.0);
        let seq_tokens = out.stats.get("seq_tokens").copied().unwrap_or(0.0);
        let last = trainer.step == total;
        let eval_loss = if !eval.is_empty()
            && (last || (cfg.eval_every > 0 && trainer.step.is_multiple_of(cfg.eval_every)))
        {
            let l = evaluate(&trainer.model, eval, cfg)?;
            report.eval_losses.push((trainer.step, l));
            Some(l)
        } else {
            None
        };
        let line = SftStep {
            step: out.step,
            epoch: out.step as f64 / spe as f64,
            loss: out.loss,
            grad_norm: out.grad_norm,
            lr: out.lr,
            tokens,
            tokens_per_s: seq_tokens / out.time_s.max(1e-9),
            time_s: out.time_s,
            eval_loss,
        };
        metrics.write(&line)?;
        report.final_loss = Some(out.loss);
        report.trained_tokens += tokens;
        if let Some(b) = &bar {
            b.set_position(trainer.step);
            b.set_message(match eval_loss {
                Some(e) => format!("loss {:.4} eval {:.4}", out.loss, e),
                None => format!("loss {:.4}", out.loss),
            });
        }
        if cfg.save_every > 0
            && (trainer.step == end || trainer.step.is_multiple_of(cfg.save_every))
        {
            trainer.save_checkpoint(&ckpt, &state_json)?;
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }
    report.wall_s = t_start.elapsed().as_secs_f64();
    Ok((trainer.model, report))
}

/// Split off the last `fraction` of `examples` (after a seeded shuffle) as a held-out set.
pub fn split_eval(
    mut examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    if fraction <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    let order = epoch_order(examples.len(), seed ^ 0x5eed_e7a1, 0);
    let mut shuffled: Vec<Example> = Vec::with_capacity(examples.len());
    let mut taken: Vec<Option<Example>> = examples.drain(..).map(Some).collect();
    for i in order {
        if let Some(e) = taken[i].take() {
            shuffled.push(e);
        }
    }
    let n_eval = ((shuffled.len() as f64 * fraction).round() as usize).clamp(1, shuffled.len() - 1);
    let eval = shuffled.split_off(shuffled.len() - n_eval);
    (shuffled, eval)
}
