//! Built-in verifiable tasks: multi-step arithmetic and countdown.
//!
//! Each task has a seeded generator of unlimited fresh problems, a fixed held-out test set
//! and a verifier (aha-reward's checkers). Training and test problems are disjoint by
//! construction: every problem has a canonical key, and a hash of the key puts it in the
//! held-out partition (about 1 in [`HELD_OUT_MODULUS`]) or the training partition; the
//! training generator never yields a held-out problem, whatever its seed.
//!
//! Arithmetic ("Compute 7 + 5 * 3 - 4."): `difficulty + 1` operands joined by `+ - *`, every
//! intermediate value in `0..=max_value`. The worked solution rewrites the expression one
//! operation at a time (`7 + 5 * 3 - 4 = 7 + 15 - 4 = 22 - 4 = 18`), which a small model can
//! follow token by token, while answering at once needs the whole computation in one step.
//!
//! Countdown ("Using the numbers [3, 5, 2], make 16."): `difficulty + 1` numbers, each used
//! once with `+ - * /`; the worked solution tries a few orders and keeps the one that works.
//!
//! JSON ("Compute 7 + 5 * 3 - 4. Answer in JSON."): the arithmetic problems, answered after
//! the reasoning with a JSON object valid under [`JSON_ANSWER_SCHEMA`]
//! (`{"answer": 18, "steps": 3}`: the value and the number of operations), with no
//! `<answer>` tags. Correctness is the value, however the answer is written; whether it is
//! schema-valid JSON is the format.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// About one problem in this many belongs to the held-out partition.
pub const HELD_OUT_MODULUS: u64 = 8;

/// The R1-Zero template as the paper gives it (Table 1), for real models (`aha grpo` and
/// `aha eval` with `--template r1-zero`); `{prompt}` is the question.
pub const R1_ZERO_TEMPLATE: &str = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:";

/// The R1-Zero template, cut to its first sentence for tiny models (every prompt token costs
/// pretraining and RL compute): the problem goes after `User: `, and the model continues after
/// `Assistant:` with `<think> ... </think> <answer> ... </answer>`.
pub const TEMPLATE_HEAD: &str = "A conversation between User and Assistant. User: ";
pub const TEMPLATE_TAIL: &str = " Assistant:";
/// [`TEMPLATE_HEAD`] and [`TEMPLATE_TAIL`] around a `{prompt}` placeholder.
pub const R1_ZERO_SHORT_TEMPLATE: &str =
    "A conversation between User and Assistant. User: {prompt} Assistant:";

/// The short R1-Zero prompt for a problem statement.
pub fn r1_zero_prompt(problem: &str) -> String {
    format!("{TEMPLATE_HEAD}{problem}{TEMPLATE_TAIL}")
}

/// A built-in task at a difficulty (>= 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    /// `difficulty + 1` operands; larger numbers from difficulty 4 on.
    Arithmetic { difficulty: u32 },
    /// `difficulty + 1` numbers; larger numbers from difficulty 4 on.
    Countdown { difficulty: u32 },
    /// The arithmetic problems, answered with a JSON object ([`JSON_ANSWER_SCHEMA`]).
    Json { difficulty: u32 },
    /// The arithmetic problems, answered by calling the `answer` tool ([`ANSWER_TOOL`]) in
    /// the Hermes syntax (`<tool_call>` JSON `</tool_call>`, as Qwen2.5's template writes).
    Tool { difficulty: u32 },
}

/// What follows the reasoning in a task's well-formatted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerForm {
    /// `<answer> .. </answer>` (the R1-Zero format).
    Tags,
    /// A JSON object valid under [`JSON_ANSWER_SCHEMA`].
    Json,
    /// One call of the [`ANSWER_TOOL`] function.
    ToolCall,
}

/// The tool task's function: its name and the JSON Schema of its arguments.
pub const ANSWER_TOOL: (&str, &str) = (
    "answer",
    r#"{
  "type": "object",
  "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 999}},
  "required": ["value"],
  "additionalProperties": false
}"#,
);

/// What the tool task's problem statements end with.
const TOOL_INSTRUCTION: &str = " Call the answer tool.";

/// The JSON task's answer: the value and the number of operations in the expression, in
/// the task's ranges (values stay in 0..=999 at every difficulty; at most 8 operations).
/// Bounded numbers also bound what a constrained sampler can write.
pub const JSON_ANSWER_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "answer": {"type": "integer", "minimum": 0, "maximum": 999},
    "steps": {"type": "integer", "minimum": 1, "maximum": 8}
  },
  "required": ["answer", "steps"],
  "additionalProperties": false
}"#;

/// What the JSON task's problem statements end with.
const JSON_INSTRUCTION: &str = " Answer in JSON.";

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The problem statement (not yet wrapped in the template: see [`r1_zero_prompt`]).
    pub prompt: String,
    /// A reference answer (arithmetic: the value; countdown: one valid expression).
    pub answer: String,
    /// The gold string for aha-reward's checker named by [`Task::reward_name`]
    /// (arithmetic: the value; countdown: `{"numbers": [..], "target": N}`).
    pub gold: String,
    /// Worked steps: the chain of thought of a correct solution.
    pub steps: Vec<String>,
    /// Task-specific data: arithmetic `{"numbers", "ops", "value"}`, countdown `{"numbers", "target"}`.
    pub meta: serde_json::Value,
    /// Canonical key (problems with the same key are the same problem).
    pub key: String,
}

impl Default for Task {
    fn default() -> Self {
        Task::Arithmetic { difficulty: 2 }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name(), self.difficulty())
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    /// `arithmetic`, `countdown`, or with a difficulty: `arithmetic:4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, diff) = match s.split_once(':') {
            Some((n, d)) => (
                n.trim(),
                Some(
                    d.trim()
                        .parse::<u32>()
                        .map_err(|e| format!("difficulty {d:?}: {e}"))?,
                ),
            ),
            None => (s.trim(), None),
        };
        let task = match name.to_ascii_lowercase().as_str() {
            "arithmetic" => Task::Arithmetic {
                difficulty: diff.unwrap_or(2),
            },
            "countdown" => Task::Countdown {
                difficulty: diff.unwrap_or(2),
            },
            "json" => Task::Json {
                difficulty: diff.unwrap_or(2),
            },
            "tool" => Task::Tool {
                difficulty: diff.unwrap_or(2),
            },
            other => {
                return Err(format!(
                    "unknown task {other:?}: expected arithmetic, countdown, json or tool"
                ))
            }
        };
        if task.difficulty() == 0 || task.difficulty() > 8 {
            return Err(format!(
                "difficulty must be 1..=8, got {}",
                task.difficulty()
            ));
        }
        Ok(task)
    }
}

/// Seed stream of the held-out test set (any seed would do: the partition is by key).
const TEST_SEED: u64 = 0x7E57_5E70_FA4A;

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Arithmetic { .. } => "arithmetic",
            Task::Countdown { .. } => "countdown",
            Task::Json { .. } => "json",
            Task::Tool { .. } => "tool",
        }
    }

    pub fn difficulty(&self) -> u32 {
        match *self {
            Task::Arithmetic { difficulty }
            | Task::Countdown { difficulty }
            | Task::Json { difficulty }
            | Task::Tool { difficulty } => difficulty,
        }
    }

    /// The same task at another difficulty.
    pub fn with_difficulty(&self, difficulty: u32) -> Task {
        match self {
            Task::Arithmetic { .. } => Task::Arithmetic { difficulty },
            Task::Countdown { .. } => Task::Countdown { difficulty },
            Task::Json { .. } => Task::Json { difficulty },
            Task::Tool { .. } => Task::Tool { difficulty },
        }
    }

    /// The name of aha-reward's task checker for this task (`arithmetic` / `countdown`),
    /// usable in a reward spec such as `"arithmetic:1,r1_zero_format:0.5"`.
    pub fn reward_name(&self) -> &'static str {
        match self {
            Task::Json { .. } | Task::Tool { .. } => "arithmetic",
            _ => self.name(),
        }
    }

    /// Whether the problems are arithmetic expressions (however the answer is written).
    pub fn is_arithmetic(&self) -> bool {
        matches!(
            self,
            Task::Arithmetic { .. } | Task::Json { .. } | Task::Tool { .. }
        )
    }

    /// What follows the reasoning in a well-formatted answer. A task with a form other
    /// than tags judges its own format and reads its own answer ([`Task::final_value`]).
    pub fn answer_form(&self) -> AnswerForm {
        match self {
            Task::Json { .. } => AnswerForm::Json,
            Task::Tool { .. } => AnswerForm::ToolCall,
            Task::Arithmetic { .. } | Task::Countdown { .. } => AnswerForm::Tags,
        }
    }

    /// The JSON Schema the answer must follow, for tasks that answer in JSON.
    pub fn answer_schema(&self) -> Option<serde_json::Value> {
        (self.answer_form() == AnswerForm::Json).then(|| json_answer_check().schema().clone())
    }

    /// What a constrained decoder may write after the reasoning: the JSON task's schema, or
    /// one call of the tool task's function. None for tasks answered in tags.
    pub fn answer_grammar(&self) -> Option<aha_engine::Grammar> {
        match self.answer_form() {
            AnswerForm::Tags => None,
            AnswerForm::Json => self.answer_schema().map(aha_engine::Grammar::JsonSchema),
            AnswerForm::ToolCall => Some(aha_engine::Grammar::ToolCalls {
                format: aha_text::ToolCallFormat::Hermes,
                tools: vec![(
                    ANSWER_TOOL.0.to_string(),
                    tool_args_check().schema().clone(),
                )],
                one: true,
            }),
        }
    }

    /// Draw one problem (either partition).
    pub fn sample(&self, rng: &mut impl Rng) -> Problem {
        match *self {
            Task::Arithmetic { difficulty } => arithmetic(difficulty.max(1), rng),
            Task::Countdown { difficulty } => countdown(difficulty.max(1), rng),
            Task::Json { difficulty } => {
                let mut p = arithmetic(difficulty.max(1), rng);
                p.prompt.push_str(JSON_INSTRUCTION);
                p.answer = json_answer_text(&p.answer, p.steps.len());
                p
            }
            Task::Tool { difficulty } => {
                let mut p = arithmetic(difficulty.max(1), rng);
                p.prompt.push_str(TOOL_INSTRUCTION);
                p.answer = tool_answer_text(&p.answer);
                p
            }
        }
    }

    /// Whether a problem belongs to the held-out partition.
    pub fn is_held_out(problem: &Problem) -> bool {
        fnv1a(problem.key.as_bytes()).is_multiple_of(HELD_OUT_MODULUS)
    }

    /// Unlimited training problems for a seed: deterministic, never held-out.
    pub fn train_problems(&self, seed: u64) -> impl Iterator<Item = Problem> {
        let task = *self;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_7A11_0000_0001);
        std::iter::repeat_with(move || loop {
            let p = task.sample(&mut rng);
            if !Task::is_held_out(&p) {
                return p;
            }
        })
    }

    /// The fixed held-out test set: the first `n` distinct held-out problems of a fixed
    /// stream (so the first `n` of a larger set are the same problems). Fewer than `n` only
    /// when the held-out partition of this difficulty is smaller than `n`.
    pub fn test_set(&self, n: usize) -> Vec<Problem> {
        let mut rng = StdRng::seed_from_u64(
            TEST_SEED ^ (self.difficulty() as u64) << 32 ^ fnv1a(self.name().as_bytes()),
        );
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut misses = 0usize;
        while out.len() < n && misses < 200_000 {
            let p = self.sample(&mut rng);
            if Task::is_held_out(&p) && seen.insert(p.key.clone()) {
                out.push(p);
                misses = 0;
            } else {
                misses += 1;
            }
        }
        out
    }

    /// Whether a full response solves the problem (aha-reward's task checker).
    pub fn check(&self, problem: &Problem, response: &str) -> bool {
        self.check_gold(&problem.gold, response)
    }

    /// Whether a full response matches a problem's `gold` string (see [`Problem::gold`]).
    /// The built-in tasks use the R1-Zero template, so the answer is the content of the last
    /// complete `<answer> .. </answer>` block and nothing else: a response without one (or
    /// cut off inside it) is wrong whatever numbers it contains. The JSON task reads the
    /// value however it is written ([`Task::final_value`]): its format is judged apart. The
    /// tool task's answer is right when its calls are exactly the reference call
    /// ([`crate::grpo::tool_calls_match`], the `tool_call` reward): `answer(value = gold)`.
    pub fn check_gold(&self, gold: &str, response: &str) -> bool {
        let block = || answer_block(response).map(|a| format!("<answer>{a}</answer>"));
        match self {
            Task::Tool { .. } => gold.trim().parse::<i64>().is_ok_and(|v| {
                let reference =
                    serde_json::json!({"name": ANSWER_TOOL.0, "arguments": {"value": v}});
                crate::grpo::tool_calls_match(
                    aha_text::ToolCallFormat::Hermes,
                    response,
                    &reference.to_string(),
                )
            }),
            Task::Json { .. } => self
                .final_value(response)
                .is_some_and(|v| v.trim() == gold.trim()),
            Task::Arithmetic { .. } => {
                block().is_some_and(|a| aha_reward::tasks::arithmetic(&a, gold))
            }
            Task::Countdown { .. } => block().is_some_and(|a| {
                aha_reward::tasks::Countdown::from_json(gold).is_ok_and(|c| c.check_response(&a))
            }),
        }
    }

    /// The JSON task's final value: the `answer` of the JSON after the reasoning, else the
    /// last `<answer>` block, else the last number after `</think>`, else (no tags at all) a
    /// closing phrase such as "The answer is N.". A reasoning never closed has no value.
    /// The tool task's final value is the `value` of its one `answer` call, and nothing
    /// else. None for the other tasks.
    pub fn final_value(&self, response: &str) -> Option<String> {
        match self {
            Task::Json { .. } => {}
            Task::Tool { .. } => {
                let call = tool_answer_call(response)?;
                return match call.get("value") {
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
            }
            Task::Arithmetic { .. } | Task::Countdown { .. } => return None,
        }
        if let Some(v) = aha_reward::json_answer(response) {
            return match v.get("answer") {
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
        }
        if let Some(a) = answer_block(response) {
            return Some(a.trim().to_string());
        }
        if response.contains("<think>") && !response.contains("</think>") {
            return None;
        }
        // After a closed reasoning any number counts ("Ответ 18."); without tags only a
        // closing phrase does.
        let cfg = aha_reward::ExtractConfig {
            last_number: response.contains("</think>"),
            ..aha_reward::ExtractConfig::default()
        };
        aha_reward::extract_answer(aha_reward::answer_part(response), &cfg).map(|e| e.answer)
    }

    /// Whether a response has the task's format: the strict R1-Zero format; for the JSON
    /// task a non-empty reasoning closed by `</think>` and then only JSON valid under
    /// [`JSON_ANSWER_SCHEMA`]; for the tool task the same reasoning, then only one call of
    /// [`ANSWER_TOOL`] with valid arguments.
    pub fn is_well_formatted(&self, response: &str) -> bool {
        let reasoned = || {
            response
                .rfind("</think>")
                .is_some_and(|i| !response[..i].replace("<think>", "").trim().is_empty())
        };
        match self {
            Task::Json { .. } => reasoned() && json_answer_check().check_response(response),
            Task::Tool { .. } => {
                let answer = aha_reward::answer_part(response);
                let parsed = aha_text::ToolCallFormat::Hermes.parse(answer);
                reasoned()
                    && parsed.content.trim().is_empty()
                    && tool_answer_call(response).is_some_and(|a| tool_args_check().is_valid(&a))
            }
            Task::Arithmetic { .. } | Task::Countdown { .. } => is_well_formatted(response),
        }
    }
}

/// The tool task's answer: one call of [`ANSWER_TOOL`] with `value`.
pub fn tool_answer_text(value: &str) -> String {
    format!(
        "<tool_call>\n{{\"name\": \"{}\", \"arguments\": {{\"value\": {value}}}}}\n</tool_call>",
        ANSWER_TOOL.0
    )
}

/// The arguments of a response's answer call, when its calls (after or ending the
/// reasoning) are exactly one call of [`ANSWER_TOOL`].
fn tool_answer_call(response: &str) -> Option<serde_json::Value> {
    let answer = crate::grpo::answer_calls(aha_text::ToolCallFormat::Hermes, response)?;
    match answer.calls.as_slice() {
        [call] if call.name == ANSWER_TOOL.0 => serde_json::from_str(&call.arguments).ok(),
        _ => None,
    }
}

fn tool_args_check() -> &'static aha_reward::JsonSchemaCheck {
    static CHECK: std::sync::OnceLock<aha_reward::JsonSchemaCheck> = std::sync::OnceLock::new();
    CHECK.get_or_init(|| {
        aha_reward::JsonSchemaCheck::new(
            serde_json::from_str(ANSWER_TOOL.1).expect("a valid JSON literal"),
        )
        .expect("a valid schema")
    })
}

/// The JSON task's answer for a value reached in `steps` operations.
pub fn json_answer_text(value: &str, steps: usize) -> String {
    format!("{{\"answer\": {value}, \"steps\": {steps}}}")
}

fn json_answer_check() -> &'static aha_reward::JsonSchemaCheck {
    static CHECK: std::sync::OnceLock<aha_reward::JsonSchemaCheck> = std::sync::OnceLock::new();
    CHECK.get_or_init(|| {
        aha_reward::JsonSchemaCheck::new(
            serde_json::from_str(JSON_ANSWER_SCHEMA).expect("a valid JSON literal"),
        )
        .expect("a valid schema")
    })
}

/// The content of the last complete `<answer> .. </answer>` block.
pub fn answer_block(response: &str) -> Option<&str> {
    let close = response.rfind("</answer>")?;
    let open = response[..close].rfind("<answer>")?;
    Some(&response[open + "<answer>".len()..close])
}

/// Strict R1-Zero format: `[<think>] reasoning </think> <answer> answer </answer>` and
/// nothing else, both parts non-empty (aha-reward's `r1_zero_format`).
pub fn is_well_formatted(response: &str) -> bool {
    aha_reward::RewardFn::R1ZeroFormat.score(response, None) >= 1.0
}

/// 64-bit FNV-1a: a stable hash (std's hasher may change between Rust versions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------- arithmetic

/// Largest operand and largest intermediate value at a difficulty.
fn arithmetic_limits(difficulty: u32) -> (i64, i64) {
    // Small values up to difficulty 3: every single rewrite is then one of a few hundred
    // facts a tiny model can learn in minutes, while the whole computation at once is not.
    if difficulty <= 3 {
        (9, 30)
    } else {
        (19, 999)
    }
}

/// Render `n0 o0 n1 o1 n2 ...`.
pub fn render_expression(nums: &[i64], ops: &[char]) -> String {
    let mut s = nums[0].to_string();
    for (o, n) in ops.iter().zip(&nums[1..]) {
        s.push(' ');
        s.push(*o);
        s.push(' ');
        s.push_str(&n.to_string());
    }
    s
}

/// One reduction step with the usual precedence (first `*`, else the first `+`/`-`).
/// Returns the index of the operation reduced.
pub fn reduce_once(nums: &mut Vec<i64>, ops: &mut Vec<char>) -> usize {
    let i = ops.iter().position(|&o| o == '*').unwrap_or(0);
    let (a, b) = (nums[i], nums[i + 1]);
    let v = match ops[i] {
        '*' => a * b,
        '+' => a + b,
        _ => a - b,
    };
    nums[i] = v;
    nums.remove(i + 1);
    ops.remove(i);
    i
}

/// The chain of rewrites of an expression down to its value, e.g.
/// `["7 + 5 * 3 - 4", "7 + 15 - 4", "22 - 4", "18"]`, or None if an intermediate value
/// leaves `0..=max_value`.
pub fn reduction_chain(nums: &[i64], ops: &[char], max_value: i64) -> Option<Vec<String>> {
    let (mut n, mut o) = (nums.to_vec(), ops.to_vec());
    let mut chain = vec![render_expression(&n, &o)];
    while !o.is_empty() {
        let i = reduce_once(&mut n, &mut o);
        if n[i] < 0 || n[i] > max_value {
            return None;
        }
        chain.push(render_expression(&n, &o));
    }
    Some(chain)
}

fn arithmetic(difficulty: u32, rng: &mut impl Rng) -> Problem {
    let (max_operand, max_value) = arithmetic_limits(difficulty);
    let k = difficulty as usize + 1;
    loop {
        let nums: Vec<i64> = (0..k).map(|_| rng.random_range(1..=max_operand)).collect();
        let ops: Vec<char> = (0..k - 1)
            .map(|_| ['+', '-', '*'][rng.random_range(0..3)])
            .collect();
        let Some(chain) = reduction_chain(&nums, &ops, max_value) else {
            continue;
        };
        let value: i64 = chain.last().unwrap().parse().unwrap();
        let expr = chain[0].clone();
        return Problem {
            prompt: format!("Compute {expr}."),
            answer: value.to_string(),
            gold: value.to_string(),
            steps: chain[1..].to_vec(),
            meta: serde_json::json!({"numbers": nums, "ops": ops.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "value": value}),
            key: format!("a:{expr}"),
        };
    }
}

// ---------------------------------------------------------------- countdown

fn countdown_limits(difficulty: u32) -> (i64, i64) {
    if difficulty <= 3 {
        (9, 99)
    } else {
        (25, 999)
    }
}

/// Apply `a op b` exactly; None when the result is not a non-negative integer or too large.
pub fn apply_op(a: i64, op: char, b: i64, max_value: i64) -> Option<i64> {
    let v = match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        '/' => {
            if b == 0 || a % b != 0 {
                return None;
            }
            a / b
        }
        _ => return None,
    };
    (0..=max_value).contains(&v).then_some(v)
}

/// A left-to-right chain over `order` with `ops`: its steps ("5 * 2 = 10", ...), the
/// parenthesized expression and the value.
pub fn countdown_chain(
    order: &[i64],
    ops: &[char],
    max_value: i64,
) -> Option<(Vec<String>, String, i64)> {
    let mut acc = order[0];
    let mut expr = order[0].to_string();
    let mut steps = Vec::new();
    for (i, (&op, &b)) in ops.iter().zip(&order[1..]).enumerate() {
        let v = apply_op(acc, op, b, max_value)?;
        steps.push(format!("{acc} {op} {b} = {v}"));
        expr = if i + 1 < ops.len() {
            format!("({expr} {op} {b})")
        } else {
            format!("{expr} {op} {b}")
        };
        acc = v;
    }
    Some((steps, expr, acc))
}

/// A random chain over a random order of `numbers`: steps, expression, value.
pub fn random_countdown_chain(
    numbers: &[i64],
    max_value: i64,
    rng: &mut impl Rng,
) -> Option<(Vec<String>, String, i64)> {
    let mut order = numbers.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let ops: Vec<char> = (0..order.len() - 1)
        .map(|_| ['+', '-', '*', '/'][rng.random_range(0..4)])
        .collect();
    countdown_chain(&order, &ops, max_value)
}

fn countdown(difficulty: u32, rng: &mut impl Rng) -> Problem {
    let (max_operand, max_value) = countdown_limits(difficulty);
    let k = difficulty as usize + 1;
    loop {
        let numbers: Vec<i64> = (0..k).map(|_| rng.random_range(1..=max_operand)).collect();
        let Some((steps, expr, target)) = random_countdown_chain(&numbers, max_value, rng) else {
            continue;
        };
        if target < 1 || numbers.contains(&target) {
            continue;
        }
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        let gold = serde_json::json!({"numbers": numbers, "target": target});
        let list = numbers
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Problem {
            prompt: format!("Using the numbers [{list}], make {target}."),
            answer: expr,
            gold: gold.to_string(),
            steps,
            meta: gold,
            key: format!("c:{sorted:?}->{target}"),
        };
    }
}

/// Enough tokens for a worked solution at the task's difficulty.
pub fn default_max_tokens(task: &Task) -> usize {
    match task {
        Task::Arithmetic { difficulty } => 48 + 24 * *difficulty as usize,
        Task::Countdown { difficulty } => 64 + 48 * *difficulty as usize,
        // The JSON object takes about 12 tokens more than `<answer> N </answer>`.
        Task::Json { difficulty } => 60 + 24 * *difficulty as usize,
        // `<tool_call>` and the call's JSON: about 24 tokens more than the tags.
        Task::Tool { difficulty } => 72 + 24 * *difficulty as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_chain() {
        let c = reduction_chain(&[7, 5, 3, 4], &['+', '*', '-'], 99).unwrap();
        assert_eq!(c, vec!["7 + 5 * 3 - 4", "7 + 15 - 4", "22 - 4", "18"]);
        assert!(reduction_chain(&[1, 5], &['-'], 99).is_none());
    }

    #[test]
    fn countdown_expression_checks() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..300 {
            let t = Task::Countdown { difficulty: 3 };
            let p = t.sample(&mut rng);
            let resp = format!("<think> x </think> <answer> {} </answer>", p.answer);
            assert!(t.check(&p, &resp), "{p:?}");
        }
    }
}
