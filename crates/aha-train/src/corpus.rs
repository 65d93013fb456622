//! The generated pretraining corpus of the built-in tasks: documents in the R1-Zero template
//! (the prompt, then the assistant's turn) and plain-text drills.
//!
//! The corpus is built so that a tiny base behaves like the base models of the R1 paper:
//! * it follows the `<think> .. </think> <answer> .. </answer>` format only sometimes (most
//!   template documents close with a plain "The answer is N." instead of answer tags), so
//!   R1-Zero must learn the format along with the accuracy;
//! * it mostly answers at once (right in the data, but a tiny model cannot compute a whole
//!   expression in one step) and only sometimes works step by step, so RL has a better,
//!   longer mode to find;
//! * its worked solutions are written in two languages, English and a second vocabulary in
//!   Cyrillic script for the same steps (`7 + 15 - 4 is 22 - 4` / `7 + 15 - 4 равно 22 - 4`),
//!   and some documents switch between them mid-solution, so sampled reasoning mixes
//!   languages as R1-Zero's did, and a language-consistency reward has something to fix.

use crate::bpe;
use crate::tasks::{r1_zero_prompt, AnswerForm, Problem, Task};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Shares of the document kinds in the corpus (normalized when drawn), and of their
/// formats and languages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CorpusMix {
    /// Worked, correct.
    pub step_by_step: f32,
    /// The answer at once (correct in the data).
    pub direct: f32,
    /// Worked, with an arithmetic slip that carries to a wrong answer.
    pub slip: f32,
    /// Plain text outside the template: a run of single operations and their results
    /// (`3 + 8 is 11. 11 - 7 is 4. ...`), the facts a worked solution is made of, densely.
    pub drill: f32,
    /// Share of template documents in the strict R1-Zero format; the others break it
    /// (mostly by closing with "The answer is N." instead of `<answer>` tags).
    pub formatted: f32,
    /// Share of documents written in the second language only ...
    pub second_language: f32,
    /// ... and switching language word by word.
    pub mixed_language: f32,
}

impl Default for CorpusMix {
    /// Answering at once is the habit and working step by step the exception; 30% of the
    /// template documents are well formatted, so that a base sampled at T=0.6 is mostly not;
    /// 40% of documents are English only.
    fn default() -> Self {
        Self {
            step_by_step: 0.22,
            direct: 0.44,
            slip: 0.04,
            drill: 0.3,
            formatted: 0.3,
            second_language: 0.3,
            mixed_language: 0.3,
        }
    }
}

/// Which kind of document to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    StepByStep,
    Direct,
    Slip,
    Drill,
}

/// How a template document is formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<think> .. </think> <answer> .. </answer>`.
    Strict,
    /// `<think> .. </think> The answer is N.`
    NoAnswerTags,
    /// `.. The answer is N.` with no tags at all.
    NoTags,
    /// `<think> .. <answer> N </answer>` (no `</think>`).
    NoThinkClose,
}

/// The language of a document's words (numbers and operators are shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    English,
    /// The second vocabulary, in Cyrillic script.
    Second,
    /// Each word drawn from either language.
    Mixed,
}

/// Everything that decides how a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub kind: DocKind,
    pub format: Format,
    pub lang: Lang,
}

impl Style {
    /// Well formatted, in English.
    pub fn plain(kind: DocKind) -> Self {
        Self {
            kind,
            format: Format::Strict,
            lang: Lang::English,
        }
    }
}

/// The words of the corpus in each language: (English, second language).
const IS: (&str, &str) = ("is", "равно");
const THE_ANSWER_IS: (&str, &str) = ("The answer is", "Ответ");
const NOT: (&str, &str) = ("not", "не");
const IT_WORKS: (&str, &str) = ("It works", "Подходит");

fn word(w: (&'static str, &'static str), lang: Lang, rng: &mut impl Rng) -> &'static str {
    let second = match lang {
        Lang::English => false,
        Lang::Second => true,
        Lang::Mixed => rng.random::<bool>(),
    };
    if second {
        w.1
    } else {
        w.0
    }
}

impl CorpusMix {
    pub fn draw_kind(&self, rng: &mut impl Rng) -> DocKind {
        const KINDS: [DocKind; 4] = [
            DocKind::StepByStep,
            DocKind::Direct,
            DocKind::Slip,
            DocKind::Drill,
        ];
        let w = [self.step_by_step, self.direct, self.slip, self.drill].map(|x| x.max(0.0));
        let total: f32 = w.iter().sum();
        let mut u = rng.random::<f32>() * total.max(1e-9);
        for (k, w) in KINDS.into_iter().zip(w) {
            if u < w {
                return k;
            }
            u -= w;
        }
        DocKind::StepByStep
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Style {
        let kind = self.draw_kind(rng);
        let format = if rng.random::<f32>() < self.formatted {
            Format::Strict
        } else {
            // Mostly the answer tags are what is missing: the format then hinges on one
            // token after `</think>`, where the base prefers the unformatted ending.
            match rng.random_range(0..10) {
                0..7 => Format::NoAnswerTags,
                7..9 => Format::NoTags,
                _ => Format::NoThinkClose,
            }
        };
        let u = rng.random::<f32>();
        let lang = if u < self.second_language {
            Lang::Second
        } else if u < self.second_language + self.mixed_language {
            Lang::Mixed
        } else {
            Lang::English
        };
        Style { kind, format, lang }
    }
}

/// How the strict format ends a task's answer.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Tags,
    /// `{"answer": N, "steps": K}` (the JSON task).
    Json {
        steps: usize,
    },
    /// A call of the answer tool (the tool task).
    ToolCall,
}

impl Ending {
    fn of(task: &Task, problem: &Problem) -> Self {
        match task.answer_form() {
            AnswerForm::Tags => Ending::Tags,
            AnswerForm::Json => Ending::Json {
                steps: problem.steps.len(),
            },
            AnswerForm::ToolCall => Ending::ToolCall,
        }
    }
}

/// The assistant's text in `style.format`. The JSON and tool tasks' strict format answers
/// in JSON or with a tool call after `</think>`; their broken `NoThinkClose` documents
/// answer in the other tasks' `<answer>` tags instead.
fn with_format(
    think: &str,
    answer: &str,
    style: Style,
    ending: Ending,
    rng: &mut impl Rng,
) -> String {
    let structured = match ending {
        Ending::Tags => None,
        Ending::Json { steps } => Some(crate::tasks::json_answer_text(answer, steps)),
        Ending::ToolCall => Some(crate::tasks::tool_answer_text(answer)),
    };
    if let Some(structured) = structured {
        match style.format {
            Format::Strict => return format!(" <think> {think} </think> {structured}"),
            Format::NoThinkClose => {
                return format!(" <think> {think} </think> <answer> {answer} </answer>")
            }
            _ => {}
        }
    }
    match style.format {
        Format::Strict => format!(" <think> {think} </think> <answer> {answer} </answer>"),
        Format::NoAnswerTags => format!(
            " <think> {think} </think> {} {answer}.",
            word(THE_ANSWER_IS, style.lang, rng)
        ),
        Format::NoTags => format!(
            " {think}. {} {answer}.",
            word(THE_ANSWER_IS, style.lang, rng)
        ),
        Format::NoThinkClose => format!(" <think> {think} <answer> {answer} </answer>"),
    }
}

fn numbers_and_ops(problem: &Problem) -> (Vec<i64>, Vec<char>) {
    let nums: Vec<i64> =
        serde_json::from_value(problem.meta["numbers"].clone()).unwrap_or_default();
    let ops: Vec<char> = serde_json::from_value::<Vec<String>>(problem.meta["ops"].clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.chars().next())
        .collect();
    (nums, ops)
}

/// An arithmetic chain with a slip at one step: the value there is off by 1..=3.
fn slipped_chain(problem: &Problem, rng: &mut impl Rng) -> Vec<String> {
    let (nums, ops) = numbers_and_ops(problem);
    if ops.is_empty() {
        let mut chain = vec![problem.prompt.clone()];
        chain.extend(problem.steps.iter().cloned());
        return chain;
    }
    let (mut n, mut o) = (nums, ops.clone());
    let at = rng.random_range(0..ops.len());
    let mut chain = vec![crate::tasks::render_expression(&n, &o)];
    let mut step = 0;
    while !o.is_empty() {
        let i = crate::tasks::reduce_once(&mut n, &mut o);
        if step == at {
            let delta = rng.random_range(1..=3) * if rng.random::<bool>() { 1 } else { -1 };
            n[i] = (n[i] + delta).max(0);
            if n[i].to_string() == problem.steps.get(step).cloned().unwrap_or_default() {
                n[i] += 1;
            }
        }
        chain.push(crate::tasks::render_expression(&n, &o));
        step += 1;
    }
    chain
}

/// The links of a chain joined by "is" in the document's language.
fn join_chain(links: &[String], lang: Lang, rng: &mut impl Rng) -> String {
    let mut s = links.first().cloned().unwrap_or_default();
    for l in &links[1.min(links.len())..] {
        s.push(' ');
        s.push_str(word(IS, lang, rng));
        s.push(' ');
        s.push_str(l);
    }
    s
}

/// The expression of an arithmetic (or JSON task) problem (`7 + 5 * 3 - 4`).
pub fn expression(problem: &Problem) -> &str {
    let rest = problem.prompt.trim_start_matches("Compute ");
    rest.split_once('.').map_or(rest, |(e, _)| e)
}

/// The assistant's part of a document (after `Assistant:`), without the EOS token; for a
/// drill, the single steps of the problem as plain text.
pub fn completion_text(task: &Task, problem: &Problem, style: Style, rng: &mut impl Rng) -> String {
    let lang = style.lang;
    match task {
        Task::Arithmetic { .. } | Task::Json { .. } | Task::Tool { .. } => {
            let ending = Ending::of(task, problem);
            let value = problem.gold.as_str();
            let mut links = vec![expression(problem).to_string()];
            links.extend(problem.steps.iter().cloned());
            match style.kind {
                DocKind::StepByStep => {
                    let worked = join_chain(&links, lang, rng);
                    with_format(&worked, value, style, ending, rng)
                }
                // The direct answer opens differently from a worked one, so that which kind
                // of answer to give is one early token choice a policy can learn.
                DocKind::Direct => {
                    let direct = format!("{} {value}.", word(THE_ANSWER_IS, lang, rng));
                    with_format(&direct, value, style, ending, rng)
                }
                DocKind::Slip => {
                    let chain = slipped_chain(problem, rng);
                    let answer = chain.last().cloned().unwrap_or_default();
                    with_format(&join_chain(&chain, lang, rng), &answer, style, ending, rng)
                }
                DocKind::Drill => facts(problem, lang, rng).join(". "),
            }
        }
        Task::Countdown { difficulty } => {
            let target = problem.meta["target"].as_i64().unwrap_or(0);
            let numbers: Vec<i64> =
                serde_json::from_value(problem.meta["numbers"].clone()).unwrap_or_default();
            let max_value = if *difficulty <= 3 { 99 } else { 999 };
            let mut tries = Vec::new();
            for _ in 0..rng.random_range(0..=2) {
                if let Some((steps, _, v)) =
                    crate::tasks::random_countdown_chain(&numbers, max_value, rng)
                {
                    if v != target {
                        let not = word(NOT, lang, rng);
                        tries.push(format!("{}, {not} {target}.", steps.join(", ")));
                    }
                }
            }
            let works = word(IT_WORKS, lang, rng);
            tries.push(format!("{}. {works}.", problem.steps.join(", ")));
            let worked = tries.join(" ");
            match style.kind {
                DocKind::StepByStep => {
                    with_format(&worked, &problem.answer, style, Ending::Tags, rng)
                }
                DocKind::Direct => {
                    let direct = format!("{} = {target}.", problem.answer);
                    with_format(&direct, &problem.answer, style, Ending::Tags, rng)
                }
                DocKind::Slip => {
                    // A wrong expression presented as a solution.
                    let wrong = crate::tasks::random_countdown_chain(&numbers, max_value, rng)
                        .filter(|(_, _, v)| *v != target);
                    match wrong {
                        Some((steps, expr, _)) => {
                            let think = format!("{}. {works}.", steps.join(", "));
                            with_format(&think, &expr, style, Ending::Tags, rng)
                        }
                        None => with_format(&worked, &problem.answer, style, Ending::Tags, rng),
                    }
                }
                DocKind::Drill => problem.steps.join(". "),
            }
        }
    }
}

/// One full training document: prompt + completion + EOS, or for a drill a few problems'
/// single steps as plain text + EOS.
pub fn document(task: &Task, problem: &Problem, style: Style, rng: &mut impl Rng) -> String {
    if style.kind == DocKind::Drill {
        return format!(
            "{}.{}",
            completion_text(task, problem, style, rng),
            bpe::EOS_TOKEN
        );
    }
    format!(
        "{}{}{}",
        r1_zero_prompt(&problem.prompt),
        completion_text(task, problem, style, rng),
        bpe::EOS_TOKEN
    )
}

/// The single operations of an arithmetic problem's worked solution, in order
/// (`["5 * 3 is 15", "7 + 15 is 22", "22 - 4 is 18"]` for `7 + 5 * 3 - 4` in English).
pub fn facts(problem: &Problem, lang: Lang, rng: &mut impl Rng) -> Vec<String> {
    let (mut nums, mut ops) = numbers_and_ops(problem);
    let mut out = Vec::with_capacity(ops.len());
    while !ops.is_empty() && nums.len() == ops.len() + 1 {
        let i = ops.iter().position(|&o| o == '*').unwrap_or(0);
        let (a, op, b) = (nums[i], ops[i], nums[i + 1]);
        crate::tasks::reduce_once(&mut nums, &mut ops);
        out.push(format!("{a} {op} {b} {} {}", word(IS, lang, rng), nums[i]));
    }
    out
}

/// Problems whose steps make one drill document.
const DRILL_PROBLEMS: usize = 4;

/// An endless deterministic stream of training documents (never a held-out problem).
pub fn corpus(task: Task, mix: CorpusMix, seed: u64) -> impl Iterator<Item = String> {
    let d = task.difficulty();
    let mut streams: Vec<_> = (1..=d)
        .map(|k| {
            task.with_difficulty(k)
                .train_problems(seed.wrapping_add(k as u64 * 7919))
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC0_4905);
    std::iter::repeat_with(move || {
        let style = mix.draw(&mut rng);
        if style.kind == DocKind::Drill {
            // Several problems' steps in one document, from the hardest level (its steps
            // include every easier level's kinds of steps).
            let steps: Vec<String> = (0..DRILL_PROBLEMS)
                .map(|_| {
                    let p = streams[d as usize - 1].next().expect("endless");
                    completion_text(&task, &p, style, &mut rng)
                })
                .collect();
            return format!("{}.{}", steps.join(". "), bpe::EOS_TOKEN);
        }
        let k = rng.random_range(0..streams.len());
        let p = streams[k].next().expect("endless");
        document(&task.with_difficulty(k as u32 + 1), &p, style, &mut rng)
    })
}

/// The opening that commits a completion to one kind of answer, for arithmetic: a worked
/// solution restates the expression (`<think> 7 + 5 * 3 - 4 is`), a direct one opens with
/// `<think> The answer is`. None for other kinds and tasks.
pub fn forced_opening(task: &Task, problem: &Problem, kind: DocKind) -> Option<String> {
    if !task.is_arithmetic() {
        return None;
    }
    match kind {
        DocKind::StepByStep => Some(format!(" <think> {} {}", expression(problem), IS.0)),
        DocKind::Direct => Some(format!(" <think> {}", THE_ANSWER_IS.0)),
        _ => None,
    }
}
