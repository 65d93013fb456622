//! The R1 paper's evaluation protocol: k samples per problem (T = 0.6, top-p 0.95 by
//! default, the prompt's prefill shared by its k samples), scored by a rule-based checker,
//! reported as pass@1 (mean correctness over the k samples), cons@k (majority vote over
//! equivalent final answers) and the unbiased pass@k' of Chen et al. (2021) for k' = 1..=k,
//! with standard errors across problems.
//!
//! [`evaluate`] writes `samples.jsonl` (one line per completion), `config.json` and
//! `results.json` to its output directory; [`results_from_samples`] is the only place metrics
//! are computed, so [`rescore`] rebuilds `results.json` from `samples.jsonl` (and the echoed
//! `config.json`) byte for byte.

pub mod greedy;

use crate::data;
use crate::tasks::{r1_zero_prompt, AnswerForm, Problem, Task};
use aha_engine::{generate_n, FinishReason, GenerateOptions, SamplingParams};
use aha_model::Model;
use aha_reward::{answers_equivalent, extract_answer, ExtractConfig, RewardFn, Script, Source};
use aha_text::{ChatMessage, ChatTemplate, Tokenizer};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

pub(crate) use crate::error::io_err;
pub use crate::error::{Result, TrainError};

/// How a completion is judged correct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// A built-in task's checker ([`Task::check_gold`]).
    Task(Task),
    /// aha-reward's verifier against the gold answer ([`aha_reward::verify`]).
    Verifier,
    /// The completion's tool calls, written in this format, against the gold calls
    /// ([`crate::grpo::tool_calls_match`]: the same functions in order, arguments equal as
    /// JSON): datasets whose rows carry `tool_calls` instead of an answer.
    ToolCalls(aha_text::ToolCallFormat),
}

impl Checker {
    pub fn check(&self, gold: &str, response: &str) -> bool {
        match self {
            Checker::Task(t) => t.check_gold(gold, response),
            Checker::Verifier => aha_reward::verify(gold, response).correct,
            Checker::ToolCalls(f) => crate::grpo::tool_calls_match(*f, response, gold),
        }
    }
}

/// One problem: an id unique in its set, the question (not yet templated) and the gold
/// string its [`Checker`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalProblem {
    pub id: String,
    pub question: String,
    pub gold: String,
    /// The tools the prompt offers (OpenAI's `[{"type": "function", "function": ..}]`), from
    /// a dataset row's `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
}

/// Problems with their checker.
#[derive(Debug, Clone)]
pub struct ProblemSet {
    /// What the problems are (`arithmetic:2 test`, a file path), for the run's config.
    pub source: String,
    pub checker: Checker,
    pub problems: Vec<EvalProblem>,
}

impl ProblemSet {
    /// The first `n` problems of a built-in task's held-out set.
    pub fn task_test(task: Task, n: usize) -> Self {
        let mut set = Self::task_problems(task, task.test_set(n));
        set.source = format!("{task} test");
        set
    }

    /// Given problems of a built-in task (e.g. `task.train_problems(seed).take(n)`), with
    /// their canonical keys as ids; a repeated problem is kept once.
    pub fn task_problems(task: Task, problems: impl IntoIterator<Item = Problem>) -> Self {
        let mut seen = HashSet::new();
        let problems = problems
            .into_iter()
            .filter(|p| seen.insert(p.key.clone()))
            .map(|p| EvalProblem {
                id: p.key,
                question: p.prompt,
                gold: p.gold,
                tools: None,
            })
            .collect();
        Self {
            source: task.to_string(),
            checker: Checker::Task(task),
            problems,
        }
    }

    /// The first `limit` rows of a JSONL/Parquet file with `question`/`answer` (GSM8K: the
    /// gold after `####`), `problem`/`answer` or `problem`/`solution` (gold in `\boxed{}`),
    /// checked by the verifier. Ids are the row's `id` field when present, else its index. A
    /// row whose gold the verifier cannot read ([`gold_answer`]) is an error naming its line.
    ///
    /// Rows whose reference is `tool_calls` (no answer field) are judged by their calls
    /// ([`Checker::ToolCalls`] in `tool_format`, the chat template's call syntax; none is an
    /// error), offering the row's `tools`; every row of a file must be of one kind.
    pub fn from_file(
        path: &Path,
        limit: Option<usize>,
        tool_format: Option<aha_text::ToolCallFormat>,
    ) -> Result<Self> {
        let (at, rows): (Vec<data::RowAt>, Vec<data::Record>) =
            data::read_records_at(path, limit)?.into_iter().unzip();
        let qa = data::question_answer(&rows, path)?;
        let tool_golds = rows.first().is_some_and(data::answer_is_tool_calls);
        if let Some(i) = rows
            .iter()
            .position(|r| data::answer_is_tool_calls(r) != tool_golds)
        {
            return Err(data::DataError::Row {
                path: path.display().to_string(),
                at: at[i],
                msg: format!(
                    "its reference is {} but the first row's is {}: a file holds one kind",
                    if tool_golds {
                        "an answer"
                    } else {
                        "tool_calls"
                    },
                    if tool_golds {
                        "tool_calls"
                    } else {
                        "an answer"
                    },
                ),
            }
            .into());
        }
        let checker = match (tool_golds, tool_format) {
            (false, _) => Checker::Verifier,
            (true, Some(f)) => Checker::ToolCalls(f),
            (true, None) => {
                return Err(TrainError::Invalid(format!(
                    "{}: the references are tool calls, judged in the call syntax of the \
                     model's chat template (--template chat), which does not write tool calls \
                     or could not be read",
                    path.display()
                )))
            }
        };
        let mut seen = HashSet::new();
        let mut problems = Vec::with_capacity(qa.len());
        for (i, (row, (question, answer))) in rows.iter().zip(qa).enumerate() {
            let id = match row.get("id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => i.to_string(),
            };
            if !seen.insert(id.clone()) {
                return Err(TrainError::Invalid(format!(
                    "{}: row {}: id {id:?} appears twice",
                    path.display(),
                    i + 1
                )));
            }
            let gold = if tool_golds {
                gold_calls(&answer)
            } else {
                gold_answer(&answer)
            };
            let gold = gold.map_err(|msg| data::DataError::Row {
                path: path.display().to_string(),
                at: at[i],
                msg,
            })?;
            let tools = row.get("tools").filter(|t| !t.is_null()).cloned();
            problems.push(EvalProblem {
                id,
                question,
                gold,
                tools,
            });
        }
        Ok(Self {
            source: path.display().to_string(),
            checker,
            problems,
        })
    }
}

/// A row's `tool_calls` as the gold [`Checker::ToolCalls`] compares with (its JSON text), or
/// why no completion could match it: each call needs a function name, and arguments that
/// are an object or a JSON text of one.
fn gold_calls(reference: &str) -> std::result::Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(reference).map_err(|e| format!("tool_calls is not JSON: {e}"))?;
    let calls = match &v {
        serde_json::Value::Array(a) if a.is_empty() => return Err("tool_calls is empty".into()),
        serde_json::Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    for (i, c) in calls.into_iter().enumerate() {
        let f = c.get("function").unwrap_or(c);
        let args = match &f["arguments"] {
            serde_json::Value::String(s) => serde_json::from_str(s).ok(),
            a => Some(a.clone()),
        };
        if !f["name"].is_string() || !args.is_some_and(|a: serde_json::Value| a.is_object()) {
            return Err(format!(
                "tool call {} needs a \"name\" and \"arguments\" (an object or its JSON text)",
                i + 1
            ));
        }
    }
    Ok(reference.to_string())
}

/// The gold answer the verifier compares with, read from a dataset's reference answer, or
/// why it cannot be read: such a row would be scored wrong whatever the model answered. A
/// marked answer (GSM8K's `#### 42`, `\boxed{}`, `<answer>`, "the answer is") or a bare
/// answer (`42`, `\frac{1}{2}`, `x = 3`, a matrix) is read; an empty answer, an empty mark,
/// or a worked solution with no marked answer (GSM8K's without `####`) is not.
pub fn gold_answer(reference: &str) -> std::result::Result<String, String> {
    const EXPECTED: &str = "expected the answer alone (`42`, `\\frac{1}{2}`) or a solution \
        that marks it (a last line `#### 42` as GSM8K's, `\\boxed{42}`, `<answer>42</answer>` \
        or \"the answer is 42\")";
    let text = reference.trim();
    if text.is_empty() {
        return Err(format!("the answer is empty: {EXPECTED}"));
    }
    let gold = aha_reward::extract_gold(reference);
    let marked = extract_answer(text, &ExtractConfig::strict()).is_some();
    // Without a mark the verifier compares the whole text: right for a bare answer (a
    // matrix may take lines), never matched by a solution (lines of prose, or GSM8K's
    // `<<6*3=18>>` calculator notes).
    let solution = (text.contains("<<") && text.contains(">>"))
        || ((text.len() > 200 || text.contains('\n')) && prose_words(text) >= 5);
    let shown = text.chars().take(60).collect::<String>();
    let shown = if shown.len() < text.len() {
        format!("{shown}...")
    } else {
        shown
    };
    if gold.trim().is_empty() || (!marked && text.contains("####")) {
        Err(format!(
            "the answer {shown:?} marks an empty answer: {EXPECTED}"
        ))
    } else if !marked && solution {
        Err(format!(
            "the answer {shown:?} is a solution with no marked final answer: {EXPECTED}"
        ))
    } else {
        Ok(gold)
    }
}

/// Words of two or more letters that are not LaTeX commands (`\frac`, `\begin`).
fn prose_words(text: &str) -> usize {
    let (mut words, mut len, mut command, mut prev) = (0, 0, false, ' ');
    for c in text.chars().chain([' ']) {
        if c.is_alphabetic() {
            if len == 0 {
                command = prev == '\\';
            }
            len += 1;
        } else {
            if len >= 2 && !command {
                words += 1;
            }
            len = 0;
        }
        prev = c;
    }
    words
}

/// How a question becomes a prompt.
#[derive(Debug, Clone, Copy)]
pub enum PromptStyle<'a> {
    /// The built-in tasks' short R1-Zero template ([`r1_zero_prompt`]), as `aha zero` trains
    /// with; the format check allows a missing `<think>`.
    R1Zero,
    /// A plain-text template with a `{prompt}` placeholder (e.g. the full R1-Zero template
    /// `aha grpo --template r1-zero` uses), tokenized with the tokenizer's special tokens
    /// (BOS) as `aha grpo` does; the format check is R1-Zero's.
    Template(&'a str),
    /// One user turn through the model's chat template, as `aha chat` renders it.
    Chat(&'a ChatTemplate),
}

impl PromptStyle<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            PromptStyle::R1Zero => "r1-zero",
            PromptStyle::Template(_) => "template",
            PromptStyle::Chat(_) => "chat",
        }
    }

    pub fn render(&self, question: &str) -> Result<String> {
        Ok(match self {
            PromptStyle::R1Zero => r1_zero_prompt(question),
            PromptStyle::Template(t) => t.replace("{prompt}", question),
            PromptStyle::Chat(t) => t.render(&[ChatMessage::user(question)], true)?,
        })
    }

    /// [`PromptStyle::render`] of a problem's question, offering its tools (chat templates
    /// only: a plain-text template has no place for them).
    pub fn render_problem(&self, p: &EvalProblem) -> Result<String> {
        match (self, &p.tools) {
            (_, None) => self.render(&p.question),
            (PromptStyle::Chat(t), Some(tools)) => {
                let user = serde_json::json!({"role": "user", "content": p.question});
                Ok(t.render_with_tools(&[user], Some(tools), true)?)
            }
            (_, Some(_)) => Err(TrainError::Invalid(format!(
                "problem {}: offers tools, which only a chat template (--template chat) shows",
                p.id
            ))),
        }
    }

    /// Whether to add the tokenizer's special tokens: a chat template writes its own, and the
    /// tiny models' R1-Zero prompts are encoded without them (as pretraining and `aha zero` do).
    pub fn add_special_tokens(&self) -> bool {
        matches!(self, PromptStyle::Template(_))
    }
}

/// The final answer of a response: the content of the last complete `<answer>` block,
/// else the last `\boxed{}`, else aha-reward's extraction (phrases, `####`, last number).
pub fn final_answer(response: &str) -> Option<String> {
    if let Some(close) = response.rfind("</answer>") {
        if let Some(open) = response[..close].rfind("<answer>") {
            // The block on its own, so a `\boxed{}` inside it is read as aha-reward does.
            let block = &response[open..close + "</answer>".len()];
            return extract_answer(block, &ExtractConfig::strict()).map(|e| e.answer);
        }
    }
    let boxed_only = ExtractConfig {
        answer_tag: false,
        boxed: true,
        gsm8k: false,
        phrases: false,
        last_number: false,
        template: false,
    };
    if let Some(e) = extract_answer(response, &boxed_only).filter(|e| e.source == Source::Boxed) {
        return Some(e.answer);
    }
    extract_answer(response, &ExtractConfig::default()).map(|e| e.answer)
}

/// Calls as one JSON text, `[{"name", "arguments"}]` with the arguments parsed where they
/// are JSON, their keys sorted: equal calls give equal texts, so majority votes group them.
fn calls_json(calls: &[aha_text::ToolCall]) -> String {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            let args = serde_json::from_str(&c.arguments)
                .map(|a| sorted_keys(&a))
                .unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone()));
            serde_json::json!({"name": c.name, "arguments": args})
        })
        .collect();
    serde_json::Value::Array(calls).to_string()
}

/// `v` with every object's keys in sorted order (serde_json keeps insertion order here).
fn sorted_keys(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_keys(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        v => v.clone(),
    }
}

/// The judgement of one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub reasoning: String,
    pub extracted: Option<String>,
    pub correct: bool,
    /// R1-Zero format (`RewardFn::R1ZeroFormat`) for plain-text templates or a prompt that
    /// opens `<think>` itself, strict `RewardFn::Format` otherwise; for a task that answers
    /// in JSON or with a tool call, [`Task::is_well_formatted`].
    pub formatted: bool,
    /// Share of the reasoning's words in the target script (`RewardFn::Language`).
    pub language_consistency: f32,
}

/// Score one completion of `prompt` (the rendered prompt: it tells whether the template
/// opened the reasoning block).
pub fn score_completion(
    checker: &Checker,
    style: &PromptStyle,
    script: Script,
    gold: &str,
    prompt: &str,
    completion: &str,
) -> Scored {
    let opened = aha_text::prompt_opens_reasoning(prompt);
    let format = if opened || !matches!(style, PromptStyle::Chat(_)) {
        RewardFn::R1ZeroFormat
    } else {
        RewardFn::Format
    };
    // A task that answers in JSON or with a call judges its own format and reads its own
    // answer.
    let json_task = match checker {
        Checker::Task(t) if t.answer_form() != AnswerForm::Tags => Some(t),
        _ => None,
    };
    Scored {
        reasoning: aha_text::split_reasoning(completion, opened).reasoning,
        extracted: match (json_task, checker) {
            (Some(t), _) => t.final_value(completion),
            (None, Checker::ToolCalls(f)) => crate::grpo::answer_calls(*f, completion)
                .filter(|a| !a.calls.is_empty())
                .map(|a| calls_json(&a.calls)),
            (None, _) => final_answer(completion),
        },
        correct: checker.check(gold, completion),
        formatted: match json_task {
            Some(t) => t.is_well_formatted(completion),
            None => format.score(completion, None) >= 1.0,
        },
        language_consistency: RewardFn::Language { script }.score(completion, None),
    }
}

/// Generation settings shared by evaluation and rejection sampling.
#[derive(Debug, Clone, Serialize)]
pub struct GenConfig {
    /// Samples per problem (k).
    pub samples: usize,
    #[serde(serialize_with = "ser_f32")]
    pub temperature: f32,
    #[serde(serialize_with = "ser_f32")]
    pub top_p: f32,
    pub max_tokens: usize,
    pub seed: u64,
    /// Problems per generate call (k rows each). Samples depend on (seed, batch_size).
    pub batch_size: usize,
    /// Constrained answers (e.g. [`task_constraint`]); not echoed in `config.json`, so a
    /// caller says in the run's extra config what it was.
    #[serde(skip)]
    pub constraint: Option<std::sync::Arc<aha_engine::Constraint>>,
    /// Sample elsewhere (e.g. [`crate::rollout::Remote`] servers) instead of on the model in
    /// memory; not echoed either.
    #[serde(skip)]
    pub sampler: Option<Sampler>,
}

/// A shared rollout source for evaluation and rejection sampling.
#[derive(Clone)]
pub struct Sampler(pub std::sync::Arc<dyn crate::rollout::RolloutSource>);

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampler")
    }
}

impl Default for GenConfig {
    /// The paper's protocol: T = 0.6, top-p 0.95.
    fn default() -> Self {
        Self {
            samples: 4,
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 256,
            seed: 0,
            batch_size: 8,
            constraint: None,
            sampler: None,
        }
    }
}

/// Tokens [`task_constraint`] leaves for the structured answer after a thinking budget:
/// the JSON object, or the call with its markers (twice as long).
pub fn answer_room(task: &Task) -> usize {
    match task.answer_form() {
        AnswerForm::ToolCall => 48,
        AnswerForm::Json | AnswerForm::Tags => 24,
    }
}

/// The constraint of a task that answers in JSON or with a tool call
/// ([`Task::answer_grammar`]), for the tiny models' R1-Zero prompts: the completion opens
/// with `<think>` (as the strict format does), thinks freely for at most `max_tokens -`
/// [`answer_room`] tokens (then `</think>` is forced), and after `</think>` writes only
/// what the grammar allows. None for tasks answered in tags.
pub fn task_constraint(
    task: &Task,
    tok: &Tokenizer,
    max_tokens: usize,
) -> Result<Option<std::sync::Arc<aha_engine::Constraint>>> {
    let Some(grammar) = task.answer_grammar() else {
        return Ok(None);
    };
    let reasoning = aha_engine::Reasoning {
        open: tok.encode(aha_text::THINK_START, false)?,
        end: aha_text::THINK_END.to_string(),
        budget: Some(max_tokens.saturating_sub(answer_room(task)).max(1)),
        forced: tok.encode(aha_text::THINK_END, false)?,
    };
    let constraint = aha_engine::Constrainer::new(tok)?.compile(Some(&grammar), Some(reasoning))?;
    Ok(Some(std::sync::Arc::new(constraint)))
}

impl GenConfig {
    /// Greedy decoding, one sample per problem.
    pub fn greedy() -> Self {
        Self {
            samples: 1,
            temperature: 0.0,
            ..Self::default()
        }
    }

    fn options(&self, tok: &Tokenizer, model: &Model, chunk: usize) -> GenerateOptions {
        let eos = if tok.eos_token_ids().is_empty() {
            model.eos_token_ids()
        } else {
            tok.eos_token_ids().to_vec()
        };
        GenerateOptions {
            sampling: SamplingParams {
                temperature: self.temperature,
                top_p: self.top_p,
                ..Default::default()
            },
            max_tokens: self.max_tokens,
            // One seed per chunk of problems; rows within it are seeded by their index.
            seed: self
                .seed
                .wrapping_add((chunk as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            stop_token_ids: eos,
            constraint: self.constraint.clone(),
            ..Default::default()
        }
    }
}

/// One generated, scored completion of a problem.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub sample: usize,
    pub text: String,
    pub finish_reason: FinishReason,
    pub tokens: usize,
    pub scored: Scored,
}

/// Generate and score `cfg.samples` completions for the problems of chunk `chunk` (the
/// problems `chunk * batch_size ..`), prompt-major.
pub(crate) fn generate_chunk(
    model: &Model,
    tok: &Tokenizer,
    set: &ProblemSet,
    style: &PromptStyle,
    script: Script,
    cfg: &GenConfig,
    chunk: usize,
) -> Result<Vec<(String, Vec<Generated>)>> {
    let b = cfg.batch_size.max(1);
    let start = (chunk * b).min(set.problems.len());
    let problems = &set.problems[start..(start + b).min(set.problems.len())];
    let prompts: Vec<String> = problems
        .iter()
        .map(|p| style.render_problem(p))
        .collect::<Result<_>>()?;
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tok.encode(p, style.add_special_tokens()))
        .collect::<std::result::Result<_, _>>()?;
    let k = cfg.samples;
    let opts = cfg.options(tok, model, chunk);
    let outs = match &cfg.sampler {
        Some(Sampler(s)) => {
            if opts.constraint.is_some() {
                return Err(TrainError::Invalid(
                    "constrained answers are not supported with a remote sampler".into(),
                ));
            }
            let req = crate::rollout::RolloutRequest {
                prompts: ids,
                n: k,
                opts,
            };
            let (g, _) = s.submit(model, 0, req)?.wait()?;
            g.into_iter().map(|g| g.completion).collect()
        }
        None => generate_n(model, Some(tok), &ids, k, &opts, |_| {})?,
    };
    let mut outs = outs.into_iter();
    Ok(problems
        .iter()
        .zip(prompts)
        .map(|(p, prompt)| {
            let gens = (0..k)
                .zip(outs.by_ref())
                .map(|(j, c)| {
                    let text = c.text.unwrap_or_default();
                    Generated {
                        sample: j,
                        scored: score_completion(
                            &set.checker,
                            style,
                            script,
                            &p.gold,
                            &prompt,
                            &text,
                        ),
                        finish_reason: c.finish_reason,
                        tokens: c.token_ids.len(),
                        text,
                    }
                })
                .collect();
            (prompt, gens)
        })
        .collect())
}

/// One line of `samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub problem_id: String,
    pub sample: usize,
    pub completion: String,
    pub reasoning: String,
    /// The final answer ([`final_answer`]); `null` when none was found.
    pub extracted: Option<String>,
    pub gold: String,
    pub correct: bool,
    pub finish_reason: FinishReason,
    pub tokens: usize,
    pub formatted: bool,
    pub language_consistency: f32,
}

/// The metrics of an evaluation, serialized as `results.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// Mean over problems of (correct samples / k).
    pub pass1: f64,
    /// Share of problems whose majority answer is correct.
    pub cons: f64,
    /// `pass_at[i]` is pass@(i+1), Chen et al.'s unbiased estimator averaged over problems.
    pub pass_at: Vec<f64>,
    pub k: usize,
    pub n_problems: usize,
    /// Share of all completions that are well formatted.
    pub format_rate: f64,
    /// Mean completion length in tokens.
    pub mean_length: f64,
    /// Mean language consistency of all completions.
    pub language_consistency: f64,
    /// Standard errors across problems.
    pub stderr_pass1: f64,
    pub stderr_cons: f64,
    /// The run's configuration, echoed.
    pub config: serde_json::Value,
}

/// `{"1": .., "2": .., ...}` in numeric order.
struct PassAt<'a>(&'a [f64]);

impl Serialize for PassAt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (i, v) in self.0.iter().enumerate() {
            m.serialize_entry(&(i + 1).to_string(), v)?;
        }
        m.end()
    }
}

impl Serialize for Results {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Stderr {
            #[serde(rename = "pass@1")]
            pass1: f64,
            #[serde(rename = "cons@k")]
            cons: f64,
        }
        let stderr = Stderr {
            pass1: self.stderr_pass1,
            cons: self.stderr_cons,
        };
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("pass@1", &self.pass1)?;
        m.serialize_entry("cons@k", &self.cons)?;
        m.serialize_entry("pass@k", &PassAt(&self.pass_at))?;
        m.serialize_entry("k", &self.k)?;
        m.serialize_entry("n_problems", &self.n_problems)?;
        m.serialize_entry("format_rate", &self.format_rate)?;
        m.serialize_entry("mean_length", &self.mean_length)?;
        m.serialize_entry("language_consistency", &self.language_consistency)?;
        m.serialize_entry("stderr", &stderr)?;
        m.serialize_entry("config", &self.config)?;
        m.end()
    }
}

impl Results {
    /// The text of `results.json`.
    pub fn to_json(&self) -> String {
        // Serializing plain numbers, strings and maps cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Chen et al.'s unbiased pass@k for one problem with `n` samples of which `c` are correct:
/// `1 - C(n-c, k) / C(n, k)`, as the product `prod_{i=n-c+1}^{n} (1 - k/i)` (no huge
/// binomials). Needs `k <= n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    let c = c.min(n);
    if n - c < k {
        return 1.0;
    }
    let mut miss = 1.0f64;
    for i in (n - c + 1)..=n {
        miss *= 1.0 - k as f64 / i as f64;
    }
    1.0 - miss
}

/// Index of the winning answer group of a majority vote over equivalent answers; `None` when
/// nothing was extracted. Answers join the first group whose first member they are
/// equivalent to; the largest group wins, ties going to the group whose first member came
/// first. Empty answers do not vote.
pub fn majority_vote(answers: &[Option<&str>]) -> Option<usize> {
    // (first member index, size)
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let Some(a) = a.filter(|a| !a.trim().is_empty()) else {
            continue;
        };
        let joined = groups.iter_mut().find(|(first, _)| {
            answers[*first].is_some_and(|r| answers_equivalent(r, a) || answers_equivalent(a, r))
        });
        match joined {
            Some(g) => g.1 += 1,
            None => groups.push((i, 1)),
        }
    }
    // max_by_key keeps the last maximum; scan in reverse so the earliest group wins ties.
    groups
        .iter()
        .rev()
        .max_by_key(|g| g.1)
        .map(|&(first, _)| first)
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Standard error of the mean (sample standard deviation / sqrt(n)); 0 below two values.
fn stderr(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// All metrics from the per-completion records (the only place they are computed).
/// Problems are taken in order of first appearance, samples by their `sample` index; every
/// problem must have the same number of samples k. cons@k: a problem counts as correct when
/// the first member of its winning answer group ([`majority_vote`]) is correct.
pub fn results_from_samples(
    records: &[SampleRecord],
    config: serde_json::Value,
) -> Result<Results> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_problem: HashMap<&str, Vec<&SampleRecord>> = HashMap::new();
    for r in records {
        by_problem
            .entry(r.problem_id.as_str())
            .or_insert_with(|| {
                order.push(r.problem_id.as_str());
                Vec::new()
            })
            .push(r);
    }
    let k = order.first().map_or(0, |id| by_problem[id].len());
    let (mut pass1, mut cons) = (Vec::new(), Vec::new());
    let mut pass_at: Vec<Vec<f64>> = vec![Vec::new(); k];
    for id in &order {
        // Every id in `order` was inserted into `by_problem` with it.
        let Some(rs) = by_problem.get_mut(id) else {
            continue;
        };
        if rs.len() != k {
            return Err(TrainError::Invalid(format!(
                "problem {id:?} has {} samples, the first problem {k}",
                rs.len()
            )));
        }
        rs.sort_by_key(|r| r.sample);
        if rs.iter().enumerate().any(|(j, r)| r.sample != j) {
            return Err(TrainError::Invalid(format!(
                "problem {id:?}: its samples are not numbered 0 to {} once each",
                k - 1
            )));
        }
        let c = rs.iter().filter(|r| r.correct).count();
        pass1.push(c as f64 / k as f64);
        let answers: Vec<Option<&str>> = rs.iter().map(|r| r.extracted.as_deref()).collect();
        let won = majority_vote(&answers).is_some_and(|i| rs[i].correct);
        cons.push(if won { 1.0 } else { 0.0 });
        for (j, v) in pass_at.iter_mut().enumerate() {
            v.push(pass_at_k(k, c, j + 1));
        }
    }
    let all = |f: &dyn Fn(&SampleRecord) -> f64| mean(&records.iter().map(f).collect::<Vec<_>>());
    Ok(Results {
        pass1: mean(&pass1),
        cons: mean(&cons),
        pass_at: pass_at.iter().map(|v| mean(v)).collect(),
        k,
        n_problems: order.len(),
        format_rate: all(&|r| f64::from(u8::from(r.formatted))),
        mean_length: all(&|r| r.tokens as f64),
        language_consistency: all(&|r| f64::from(r.language_consistency)),
        stderr_pass1: stderr(&pass1),
        stderr_cons: stderr(&cons),
        config,
    })
}

/// Evaluation settings.
#[derive(Debug, Clone, Serialize)]
pub struct EvalConfig {
    #[serde(flatten)]
    pub gen: GenConfig,
    /// Target script of the language-consistency score.
    #[serde(serialize_with = "ser_script")]
    pub script: Script,
    /// Show a progress bar over problems.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            gen: GenConfig::default(),
            script: Script::Latin,
            progress: false,
        }
    }
}

/// An f32 as the f64 with the same shortest decimal (0.6, not 0.6000000238418579).
fn ser_f32<S: Serializer>(x: &f32, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_f64(x.to_string().parse().unwrap_or(f64::from(*x)))
}

pub(crate) fn ser_script<S: Serializer>(
    s: &Script,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(&format!("{s:?}").to_lowercase())
}

/// What [`evaluate`] returns.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub results: Results,
    pub samples: Vec<SampleRecord>,
}

pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const RESULTS_FILE: &str = "results.json";
pub const CONFIG_FILE: &str = "config.json";

/// Evaluate `model` on `set`. `extra_config` (e.g. the model path) is merged into the echoed
/// config. With `out`, writes `config.json`, `samples.jsonl` and `results.json` there.
pub fn evaluate(
    model: &Model,
    tok: &Tokenizer,
    set: &ProblemSet,
    style: &PromptStyle,
    cfg: &EvalConfig,
    extra_config: serde_json::Value,
    out: Option<&Path>,
) -> Result<EvalReport> {
    if cfg.gen.samples == 0 {
        return Err(TrainError::Invalid(
            "samples per problem must be at least 1".into(),
        ));
    }
    if set.problems.is_empty() {
        return Err(TrainError::Invalid(format!("{}: no problems", set.source)));
    }
    let mut config = serde_json::json!({
        "source": set.source,
        "template": style.name(),
        "n": set.problems.len(),
    });
    if let (Some(c), Ok(serde_json::Value::Object(g))) =
        (config.as_object_mut(), serde_json::to_value(cfg))
    {
        c.extend(g);
        if let serde_json::Value::Object(extra) = extra_config {
            c.extend(extra);
        }
    }
    let bar = if cfg.progress {
        crate::trainer::progress_bar(set.problems.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut samples = Vec::with_capacity(set.problems.len() * cfg.gen.samples);
    let chunks = set.problems.len().div_ceil(cfg.gen.batch_size.max(1));
    let b = cfg.gen.batch_size.max(1);
    for chunk in 0..chunks {
        let gens = generate_chunk(model, tok, set, style, cfg.script, &cfg.gen, chunk)?;
        for (p, (_, gens)) in set.problems[chunk * b..].iter().zip(gens) {
            for g in gens {
                samples.push(SampleRecord {
                    problem_id: p.id.clone(),
                    sample: g.sample,
                    completion: g.text,
                    reasoning: g.scored.reasoning,
                    extracted: g.scored.extracted,
                    gold: p.gold.clone(),
                    correct: g.scored.correct,
                    finish_reason: g.finish_reason,
                    tokens: g.tokens,
                    formatted: g.scored.formatted,
                    language_consistency: g.scored.language_consistency,
                });
            }
            bar.inc(1);
        }
        let done = samples.iter().filter(|s| s.correct).count();
        bar.set_message(format!(
            "pass@1 {:.3}",
            done as f64 / samples.len().max(1) as f64
        ));
    }
    bar.finish_and_clear();
    let results = results_from_samples(&samples, config)?;
    if let Some(dir) = out {
        write_outputs(dir, &samples, &results)?;
    }
    Ok(EvalReport { results, samples })
}

fn write_outputs(dir: &Path, samples: &[SampleRecord], results: &Results) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut lines = String::new();
    for s in samples {
        lines.push_str(&to_line(s));
    }
    let config = serde_json::to_string_pretty(&results.config).unwrap_or_default() + "\n";
    aha_model::write_atomic(&dir.join(CONFIG_FILE), config.as_bytes())?;
    aha_model::write_atomic(&dir.join(SAMPLES_FILE), lines.as_bytes())?;
    aha_model::write_atomic(&dir.join(RESULTS_FILE), results.to_json().as_bytes())?;
    Ok(())
}

/// One JSON line (with its newline).
pub(crate) fn to_line<T: Serialize>(v: &T) -> String {
    // Records hold strings, numbers and booleans only: serializing cannot fail.
    let mut s = serde_json::to_string(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Read a JSONL file of records.
pub(crate) fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| TrainError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            msg: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Recompute `results.json` in `dir` from its `samples.jsonl` (and the echoed
/// `config.json`, `null` when absent).
pub fn rescore(dir: &Path) -> Result<Results> {
    let path = dir.join(SAMPLES_FILE);
    let samples: Vec<SampleRecord> = read_jsonl(&path)?;
    if samples.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no samples to score",
            path.display()
        )));
    }
    let config_path = dir.join(CONFIG_FILE);
    let config = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Json {
            path: config_path.clone(),
            line: e.line(),
            msg: e.to_string(),
        })?
    } else {
        serde_json::Value::Null
    };
    let results = results_from_samples(&samples, config)?;
    aha_model::write_atomic(&dir.join(RESULTS_FILE), results.to_json().as_bytes())?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C(n, k) exactly (n <= 64 fits u128 through the running product).
    fn binom(n: u64, k: u64) -> u128 {
        if k > n {
            return 0;
        }
        let mut r: u128 = 1;
        for i in 0..k.min(n - k) {
            r = r * (n - i) as u128 / (i + 1) as u128;
        }
        r
    }

    #[test]
    fn pass_at_k_matches_the_combinatorial_formula() {
        let mut worst = 0.0f64;
        for n in 1..=64u64 {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = 1.0 - binom(n - c, k) as f64 / binom(n, k) as f64;
                    let got = pass_at_k(n as usize, c as usize, k as usize);
                    worst = worst.max((got - exact).abs());
                    assert!((0.0..=1.0).contains(&got), "n={n} c={c} k={k}: {got}");
                }
            }
        }
        assert!(worst < 1e-12, "worst error {worst}");
        assert_eq!(binom(64, 32), 1_832_624_140_942_590_534);
        assert_eq!(pass_at_k(10, 0, 3), 0.0);
        assert_eq!(pass_at_k(10, 10, 3), 1.0);
        assert!((pass_at_k(4, 1, 1) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn majority_vote_groups_equivalent_answers_and_breaks_ties_by_first_member() {
        // 0.5 and \frac{1}{2} are one group of two; 3 has two votes too, but its group starts later.
        let a = [Some("3"), Some("0.5"), Some("\\frac{1}{2}"), Some("3")];
        assert_eq!(majority_vote(&a), Some(0));
        let a = [Some("0.5"), Some("3"), Some("3"), Some("\\frac{1}{2}")];
        assert_eq!(majority_vote(&a), Some(0));
        let a = [Some("7"), Some("0.5"), Some("1/2"), Some("\\frac12")];
        assert_eq!(majority_vote(&a), Some(1));
        // Empty answers do not vote.
        let a = [None, Some(""), Some(" "), Some("4")];
        assert_eq!(majority_vote(&a), Some(3));
        assert_eq!(majority_vote(&[None, Some("")]), None);
    }

    #[test]
    fn final_answer_prefers_complete_answer_blocks_then_boxes() {
        assert_eq!(
            final_answer("<think>\\boxed{3}</think> <answer>4</answer>").as_deref(),
            Some("4")
        );
        assert_eq!(
            final_answer("<answer>1</answer> <answer>\\boxed{2}</answer> <answer>9").as_deref(),
            Some("2")
        );
        assert_eq!(final_answer("so \\boxed{7} and 8").as_deref(), Some("7"));
        assert_eq!(final_answer("The answer is 12.").as_deref(), Some("12"));
        assert_eq!(final_answer("<answer></answer>"), None);
    }

    fn rec(id: &str, sample: usize, extracted: Option<&str>, correct: bool) -> SampleRecord {
        SampleRecord {
            problem_id: id.into(),
            sample,
            completion: String::new(),
            reasoning: String::new(),
            extracted: extracted.map(Into::into),
            gold: String::new(),
            correct,
            finish_reason: FinishReason::Stop,
            tokens: 10 + sample,
            formatted: correct,
            language_consistency: 1.0,
        }
    }

    #[test]
    fn samples_that_are_not_one_set_per_problem_are_refused() {
        let twice = vec![rec("a", 0, None, false), rec("a", 0, None, true)];
        let err = results_from_samples(&twice, serde_json::Value::Null).unwrap_err();
        assert!(err.to_string().contains("numbered 0 to 1"), "{err}");
        let gap = vec![rec("a", 0, None, false), rec("a", 99, None, true)];
        assert!(results_from_samples(&gap, serde_json::Value::Null).is_err());
        let uneven = vec![
            rec("a", 0, None, false),
            rec("a", 1, None, true),
            rec("b", 0, None, true),
        ];
        assert!(results_from_samples(&uneven, serde_json::Value::Null).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SAMPLES_FILE), "").unwrap();
        let err = rescore(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no samples"), "{err}");
    }

    #[test]
    fn results_from_hand_made_samples() {
        let recs = vec![
            // a: 1 of 3 correct, the majority (two 5s) wrong.
            rec("a", 0, Some("5"), false),
            rec("a", 1, Some("6"), true),
            rec("a", 2, Some("5.0"), false),
            // b: 2 of 3 correct and the majority right; listed out of order.
            rec("b", 2, Some("1"), false),
            rec("b", 0, Some("2"), true),
            rec("b", 1, Some("2"), true),
        ];
        let r = results_from_samples(&recs, serde_json::Value::Null).unwrap();
        assert_eq!((r.k, r.n_problems), (3, 2));
        assert!((r.pass1 - 0.5).abs() < 1e-12);
        assert_eq!(r.cons, 0.5);
        assert!((r.pass_at[2] - 1.0).abs() < 1e-12);
        // pass@2: a: 1 - C(2,2)/C(3,2) = 2/3; b: 1.
        assert!((r.pass_at[1] - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        // stderr of {1/3, 2/3}: sd = sqrt(1/18) ... / sqrt 2 = 1/6.
        assert!((r.stderr_pass1 - 1.0 / 6.0).abs() < 1e-12);
        assert!((r.format_rate - 0.5).abs() < 1e-12);
        let uneven = &recs[..5];
        assert!(results_from_samples(uneven, serde_json::Value::Null).is_err());
    }
}
