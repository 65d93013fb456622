//! Final-answer extraction from a full model response.
//!
//! Order of precedence: the last `<answer>…</answer>` block (after `</think>`
//! when there is one), then in the text after `</think>` (or the whole text):
//! the last `\boxed{}`/`\fbox{}`, a GSM8K `#### N` line, an "answer is" /
//! "final answer:" phrase, and optionally the last number. The latest answer
//! wins because models revise themselves.
//!
//! Rewards use [`ExtractConfig::reward`], which is stricter under the think/answer
//! template (see [`ExtractConfig::template`]): a completion cut inside its reasoning must
//! not score by the last number of that reasoning.
//! All scans are linear in the input, so megabyte responses stay cheap.

use serde::Serialize;

/// Which extraction rules run, in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractConfig {
    /// Use `<answer>…</answer>` when present.
    pub answer_tag: bool,
    /// Use `\boxed{}` / `\fbox{}`.
    pub boxed: bool,
    /// Use GSM8K's `#### N`.
    pub gsm8k: bool,
    /// Use "the answer is" / "final answer:" phrases.
    pub phrases: bool,
    /// Fall back to the last number in the response.
    pub last_number: bool,
    /// Under the think/answer template (the response contains `<think>`, `</think>` or
    /// `<answer>`), the answer is the content of the last complete `<answer>…</answer>`
    /// block after the reasoning (after the last `</think>`), or else the last `\boxed{}`
    /// after the reasoning; nothing else. A response cut inside its reasoning (`<think>`
    /// never closed) or inside its last answer block (`<answer>` never closed) has no
    /// answer. Responses without these tags are read by the other rules as usual.
    pub template: bool,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            answer_tag: true,
            boxed: true,
            gsm8k: true,
            phrases: true,
            last_number: true,
            template: false,
        }
    }
}

impl ExtractConfig {
    /// No last-number fallback: an answer must be marked as such.
    pub fn strict() -> Self {
        Self {
            last_number: false,
            ..Self::default()
        }
    }

    /// For rewards: the default rules for free-form responses, the strict
    /// [`ExtractConfig::template`] rule for responses in the think/answer template.
    pub fn reward() -> Self {
        Self {
            template: true,
            ..Self::default()
        }
    }
}

/// Whether a response uses the think/answer template.
pub(crate) fn uses_template(response: &str) -> bool {
    response.contains("<think>") || response.contains("</think>") || response.contains("<answer>")
}

/// The answer of a response in the think/answer template (see [`ExtractConfig::template`]).
fn template_answer(response: &str, cfg: &ExtractConfig) -> Option<Extracted> {
    let after = match response.rfind("</think>") {
        Some(i) => &response[i + "</think>".len()..],
        // Reasoning opened and never closed: cut before any answer.
        None if response.contains("<think>") => return None,
        None => response,
    };
    if let Some(open) = after.rfind("<answer>") {
        let body = &after[open + "<answer>".len()..];
        // The last block never closed: the final answer was cut.
        let close = body.find("</answer>")?;
        return answer_block(&body[..close], cfg);
    }
    if !cfg.boxed {
        return None;
    }
    let boxed_only = ExtractConfig {
        answer_tag: false,
        boxed: true,
        gsm8k: false,
        phrases: false,
        last_number: false,
        template: false,
    };
    extract_in(after, &boxed_only, false)
}

/// The answer inside an `<answer>` block: a box or phrase in it, or the whole content; an
/// empty block commits to nothing.
fn answer_block(body: &str, cfg: &ExtractConfig) -> Option<Extracted> {
    if body.trim().is_empty() {
        return None;
    }
    let answer = match extract_in(body, cfg, false) {
        Some(e) => e.answer,
        None => cap(body),
    };
    Some(Extracted {
        answer,
        source: Source::AnswerTag,
    })
}

/// Where an extracted answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    AnswerTag,
    Boxed,
    Gsm8k,
    Phrase,
    LastNumber,
    Whole,
}

/// An extracted final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extracted {
    pub answer: String,
    pub source: Source,
}

/// Extracted answers longer than this are cut; no real answer is this long
/// except a 5000-digit integer, which fits.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Index of the `}` matching the `{` at byte `open`, if balanced.
pub(crate) fn matching_brace(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            // An escaped brace `\{` is content, not structure.
            b'\\' => {
                i += 2;
                continue;
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn cap(s: &str) -> String {
    let t = s.trim();
    if t.len() <= MAX_ANSWER_BYTES {
        return t.to_string();
    }
    let mut end = MAX_ANSWER_BYTES;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_string()
}

/// Content of the last `\boxed{…}` / `\fbox{…}` (or `\boxed 5`). Also reports
/// the byte span of the box so hedges between boxes can be spotted.
fn last_boxed(s: &str) -> Option<(String, usize)> {
    let mut best: Option<(usize, &str)> = None;
    for pat in ["\\boxed", "\\fbox"] {
        if let Some(i) = s.rfind(pat) {
            if best.is_none_or(|(j, _)| i > j) {
                best = Some((i, pat));
            }
        }
    }
    let (i, pat) = best?;
    let after = &s[i + pat.len()..];
    let skipped = after.len() - after.trim_start().len();
    let rest = after.trim_start();
    if rest.starts_with('{') {
        let open = i + pat.len() + skipped;
        match matching_brace(s, open) {
            Some(close) => Some((s[open + 1..close].to_string(), i)),
            // Unbalanced: take what is there, up to a newline.
            None => {
                let body = &s[open + 1..];
                let end = body.find('\n').unwrap_or(body.len());
                Some((body[..end].to_string(), i))
            }
        }
    } else if skipped > 0 {
        // `\boxed 5`: one token.
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '$')
            .unwrap_or(rest.len());
        (end > 0).then(|| (rest[..end].to_string(), i))
    } else {
        None
    }
}

/// Boxes written one after another (`\\boxed{3}$ and $x=\\boxed{5}`, `\\boxed{1},
/// \\boxed{2}`) state one answer with several values; a run of them separated only
/// by connectors is read as a list, or as alternatives when joined by "or". Returns
/// the answer and the byte span of the run.
fn boxed_run(s: &str) -> Option<(String, usize, usize)> {
    let (last, start) = last_boxed(s)?;
    let end = box_end(s, start).unwrap_or(s.len());
    let mut items = vec![last];
    let mut or = false;
    let mut first = start;
    // Bounded: long runs are rare and each step is a short scan.
    for _ in 0..64 {
        let before = &s[..first];
        let Some((prev, pstart)) = last_boxed(before) else {
            break;
        };
        let Some(pend) = box_end(s, pstart) else {
            break;
        };
        if pend > first {
            break;
        }
        match connector(&s[pend..first]) {
            Some(is_or) => {
                or |= is_or;
                items.push(prev);
                first = pstart;
            }
            None => break,
        }
    }
    items.reverse();
    let mut uniq: Vec<String> = Vec::with_capacity(items.len());
    for it in items {
        if !uniq.iter().any(|u| u.trim() == it.trim()) {
            uniq.push(it);
        }
    }
    let sep = if or { " or " } else { ", " };
    Some((uniq.join(sep), first, end))
}

/// The distinct contents of the last boxes (at most 16), in order, as long as
/// only symbols (no letters or digits) separate them.
fn symbol_separated_boxes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut end = s.len();
    let mut next_start: Option<usize> = None;
    for _ in 0..16 {
        let Some((b, i)) = last_boxed(&s[..end]) else {
            break;
        };
        if let Some(ns) = next_start {
            let Some(e) = box_end(s, i).filter(|&e| e <= ns) else {
                break;
            };
            if s[e..ns].chars().any(|c| c.is_alphanumeric()) {
                break;
            }
        }
        if !out.iter().any(|u| u.trim() == b.trim()) {
            out.push(b);
        }
        next_start = Some(i);
        end = i;
    }
    out.reverse();
    out
}

/// End (exclusive) of the box starting at `start`.
fn box_end(s: &str, start: usize) -> Option<usize> {
    let open = start + s[start..].find('{')?;
    if s[start..open]
        .trim_start_matches(['\\', 'b', 'o', 'x', 'e', 'd', 'f'])
        .trim()
        != ""
    {
        return None;
    }
    matching_brace(s, open).map(|c| c + 1)
}

/// Whether the text between two boxes only joins them: punctuation, math
/// delimiters, spacing, "and"/"or", and a label before the next box (`x =`).
/// `Some(true)` when the join is "or".
fn connector(gap: &str) -> Option<bool> {
    if gap.len() > 48 {
        return None;
    }
    let mut g = gap.to_string();
    for pat in [
        "\\text{",
        "\\textrm{",
        "\\mbox{",
        "\\quad",
        "\\qquad",
        "\\(",
        "\\)",
        "\\[",
        "\\]",
        "\\,",
        "\\;",
        "\\ ",
        "$",
        ",",
        ";",
        "&",
        "}",
        ".",
    ] {
        g = g.replace(pat, " ");
    }
    let mut g = g.trim().to_ascii_lowercase();
    if let Some(head) = g.strip_suffix('=') {
        // Drop the label of the next value: the last word before `=`.
        let head = head.trim_end();
        let cut = head.rfind(' ').map_or(0, |i| i + 1);
        g = head[..cut].trim().to_string();
    }
    // `$\frac12$ (or possibly $\frac14$ ...)`: an alternative offered in passing.
    let g = g.replace("(or ", "or ");
    let mut words = drop_part_labels(g.split_whitespace().collect());
    if words.contains(&"or") {
        words.retain(|w| !["possibly", "maybe", "perhaps"].contains(w));
    }
    let joins = |w: &&str| *w == "and" || *w == "or";
    // Beside "and"/"or", one word may name the unit of the value before it
    // (`\\boxed{1} papers and \\boxed{2} bins`).
    let other: Vec<&&str> = words.iter().filter(|w| !joins(w)).collect();
    let ok = match words.len() {
        0 => true,
        1 => other.is_empty(),
        2 => {
            other.len() == 1
                && joins(&words[1])
                && other[0].chars().all(|c| c.is_ascii_alphabetic())
        }
        _ => false,
    };
    if !ok {
        return None;
    }
    Some(words.contains(&"or"))
}

/// Drops the labels of the parts of a question from the words between two
/// boxes: "for part (a)", "in case (ii)", "(b)", "part 2".
fn drop_part_labels(words: Vec<&str>) -> Vec<&str> {
    let is_label = |w: &str| {
        let inner = w.strip_prefix('(').unwrap_or(w);
        let Some(inner) = inner.strip_suffix(')') else {
            return false;
        };
        let roman = !inner.is_empty() && inner.chars().all(|c| "ivx".contains(c));
        roman
            || (inner.chars().count() == 1 && inner.chars().all(|c| c.is_ascii_alphanumeric()))
            || (!inner.is_empty() && inner.len() <= 2 && inner.chars().all(|c| c.is_ascii_digit()))
    };
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let mut j = i;
        if matches!(words[j], "for" | "in" | "of") {
            j += 1;
        }
        let part = j < words.len() && matches!(words[j], "part" | "case");
        if part {
            j += 1;
        }
        let label = j < words.len()
            && (is_label(words[j])
                || (part
                    && words[j].len() <= 3
                    && words[j].chars().all(|c| c.is_ascii_alphanumeric())));
        if label {
            i = j + 1;
        } else {
            out.push(words[i]);
            i += 1;
        }
    }
    out
}

fn gsm8k_answer(s: &str) -> Option<String> {
    let i = s.rfind("####")?;
    let rest = s[i + 4..].trim_start_matches('#');
    let line = rest.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_string())
}

const PHRASES: [&str; 18] = [
    "final answer is",
    "final answer:",
    "the answer is",
    "answer is:",
    "answer is",
    "answer must be",
    "answer should be",
    "answer:",
    "**answer**",
    "**final answer**",
    "correct option is",
    "correct choice is",
    "答案是",
    "答案：",
    // A Markdown heading over the answer (`### Answer`), and the Chinese school form `答：`.
    "# answer\n",
    "# final answer\n",
    "答：",
    "答:",
];

fn phrase_answer(s: &str) -> Option<String> {
    // ASCII lowering keeps byte offsets, so indexes carry over to `s`.
    let lower = s.to_ascii_lowercase();
    let mut best: Option<(usize, usize)> = None;
    for p in PHRASES {
        if let Some(i) = lower.rfind(p) {
            let end = i + p.len();
            if best.is_none_or(|(bi, bend)| i > bi || (i == bi && end > bend)) {
                best = Some((i, end));
            }
        }
    }
    let (_, end) = best?;
    let rest = s[end..].trim_start_matches([' ', ':', '\t', '*', '\n']);
    if let Some((b, _)) = last_boxed_prefix(rest) {
        return Some(b);
    }
    // Quotes around the answer (`"$12$ and $13$"`) are not part of it.
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("\\\"").unwrap_or(rest);
    let rest = rest.trim_start_matches(['"', '\'', '`']);
    if let Some(body) = rest.strip_prefix('$') {
        let double = body.starts_with('$');
        let body = body.strip_prefix('$').unwrap_or(body);
        // The closing `$` is the first one not escaped as `\$`.
        let b = body.as_bytes();
        if let Some(j) = (0..b.len()).find(|&j| b[j] == b'$' && (j == 0 || b[j - 1] != b'\\')) {
            let mut answer = body[..j].to_string();
            // `$12$ and $13$`: spans joined by connectors give several values.
            let close = if double && b.get(j + 1) == Some(&b'$') {
                2
            } else {
                1
            };
            let mut after = body.get(j + close..).unwrap_or("");
            for _ in 0..16 {
                let Some(k) = after.find('$') else { break };
                let Some(is_or) = connector(&after[..k]) else {
                    break;
                };
                let next = &after[k + 1..];
                let Some(e) = next.find('$') else { break };
                answer.push_str(if is_or { " or " } else { ", " });
                answer.push_str(&next[..e]);
                after = &next[e + 1..];
            }
            return Some(answer);
        }
    }
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(body) = rest.strip_prefix(open) {
            if let Some(j) = body.find(close) {
                return Some(body[..j].to_string());
            }
        }
    }
    // Up to the end of the sentence: a newline, or a full stop followed by
    // whitespace/end (so decimals survive).
    let mut end = rest.len().min(512);
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    let window = &rest[..end];
    let mut stop = window
        .find('\n')
        .unwrap_or(window.len())
        .min(tag_start(window).unwrap_or(window.len()));
    let wb = window.as_bytes();
    for (k, &c) in wb.iter().enumerate().take(stop) {
        if c == b'.' && (k + 1 == wb.len() || wb[k + 1].is_ascii_whitespace()) {
            stop = k;
            break;
        }
    }
    let ans = window[..stop].trim().trim_end_matches(['*', ',']).trim();
    if ans.is_empty() {
        return None;
    }
    if states_value(ans) {
        return Some(ans.to_string());
    }
    // Prose ("The largest $n$ is 34", "The area equals $12\\pi$"): the value after
    // the last linking verb, else the last math span of the sentence.
    let lower = ans.to_ascii_lowercase();
    let verb = [" is ", " are ", " equals ", " was ", " = "]
        .iter()
        .filter_map(|v| lower.rfind(v).map(|i| i + v.len()))
        .max();
    if let Some(v) = verb {
        let tail = ans[v..].trim();
        let tail = tail
            .strip_prefix("$$")
            .or_else(|| tail.strip_prefix('$'))
            .map_or(tail, |t| t.split('$').next().unwrap_or(t));
        if states_value(tail) {
            return Some(tail.trim().to_string());
        }
    }
    if let Some((span, _)) = last_math_span(ans) {
        return Some(span);
    }
    // "Jane started growing Sphere 3 hours ago": a sentence with one number.
    let numbers = ans
        .split(|c: char| !c.is_ascii_digit() && c != '.' && c != '-')
        .filter(|w| w.bytes().any(|c| c.is_ascii_digit()))
        .count();
    if numbers == 1 {
        if let Some((n, _)) = last_number_at(ans) {
            return Some(n);
        }
    }
    Some(ans.to_string())
}

/// Where the first tag or chat marker (`<answer>`, `</think>`, `<|im_end|>`) starts; a `<`
/// of a relation (`-2 < x`, `x<3`) is not one.
fn tag_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| {
        if b[i] != b'<' {
            return false;
        }
        let body = &b[i + 1..b.len().min(i + 40)];
        let body = body.strip_prefix(b"/").unwrap_or(body);
        body.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'|')
            && body
                .iter()
                .take_while(|c| !c.is_ascii_whitespace())
                .any(|&c| c == b'>')
    })
}

/// Words no sentence ends on: a response whose text stops on one (or on a comma, an
/// operator, an open bracket) was cut off mid-sentence.
const UNFINISHED: [&str; 30] = [
    "the", "a", "an", "of", "to", "for", "with", "from", "by", "at", "into", "than", "and", "or",
    "but", "because", "if", "so", "then", "that", "which", "is", "are", "was", "were", "be", "our",
    "their", "its", "we",
];

/// Whether a response was cut off before its end: the reasoning opened and never closed,
/// or the text stops mid-sentence. Its last number is then not an answer.
fn looks_cut(s: &str) -> bool {
    if s.contains("<think>") && !s.contains("</think>") {
        return true;
    }
    let t = s.trim_end();
    if t.ends_with([',', ':', '=', '+', '(', '[', '{', '\\']) {
        return true;
    }
    let last = t
        .rsplit(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .next()
        .unwrap_or("");
    // Only a word the text ends on counts: `42 and` is cut, `and 42` is not.
    t.ends_with(|c: char| c.is_ascii_alphabetic())
        && UNFINISHED.contains(&last.to_ascii_lowercase().as_str())
}

/// `\boxed{..}` right at the start of `s` (after the answer phrase).
fn last_boxed_prefix(s: &str) -> Option<(String, usize)> {
    let t = s.trim_start().trim_start_matches('$').trim_start();
    if t.starts_with("\\boxed") || t.starts_with("\\fbox") {
        let line_end = t.find('\n').unwrap_or(t.len());
        last_boxed(&t[..line_end]).or_else(|| last_boxed(t))
    } else {
        None
    }
}

/// The last number and where it starts.
fn last_number_at(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut i = b.len();
    // Find the last digit, then expand over the number's characters.
    while i > 0 && !b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i == 0 {
        return None;
    }
    let end = i;
    let mut start = end;
    while start > 0 {
        let c = b[start - 1];
        let digit_before = start >= 2 && b[start - 2].is_ascii_digit();
        if c.is_ascii_digit() || ((c == b'.' || c == b',' || c == b'/') && digit_before) {
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && b[start - 1] == b'-' {
        start -= 1;
    }
    Some((s[start..end].to_string(), start))
}

/// A hedged answer ("5 or 6") offers several values; it never counts.
pub fn is_hedged(answer: &str) -> bool {
    crate::text::split_or(&crate::text::normalize_unicode(answer)).len() > 1
}

/// Extracts the final answer of a response; `None` when nothing qualifies.
pub fn extract_answer(response: &str, cfg: &ExtractConfig) -> Option<Extracted> {
    let response = before_chat_markers(response);
    let think_end = response.rfind("</think>").map(|i| i + "</think>".len());
    if cfg.template && uses_template(response) {
        return template_answer(response, cfg);
    }
    if cfg.answer_tag {
        let search_from = think_end.unwrap_or(0);
        let tail = &response[search_from..];
        let found = tail
            .rfind("<answer>")
            .map(|i| search_from + i)
            .or_else(|| response.rfind("<answer>"));
        if let Some(i) = found {
            let body = &response[i + "<answer>".len()..];
            let body = match body.find("</answer>") {
                Some(j) => &body[..j],
                None => body,
            };
            // An empty answer block commits to nothing; do not dig an answer out of the
            // reasoning instead.
            return answer_block(body, cfg);
        }
    }
    if let Some(end) = think_end {
        let after = &response[end..];
        if !after.trim().is_empty() {
            if let Some(e) = extract_in(after, cfg, cfg.last_number) {
                return Some(e);
            }
        }
    }
    if let Some(e) = extract_in(response, cfg, false) {
        return Some(e);
    }
    // A bare answer ("\\frac{1}{2}", "(1, 2)", "Monday") is its own answer.
    if let Some(w) = whole_answer(response) {
        return Some(Extracted {
            answer: w,
            source: Source::Whole,
        });
    }
    if cfg.last_number {
        return last_math_or_number(response);
    }
    None
}

/// End-of-turn tokens of chat templates: a response ends at the first one, and
/// what follows (a new user turn) is not part of it.
const CHAT_MARKERS: [&str; 8] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "<|end|>",
    "</s>",
    "<|im_start|>",
    "<|start_header_id|>",
    "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>",
];

fn before_chat_markers(response: &str) -> &str {
    if !response.contains("<|") && !response.contains("</s>") && !response.contains('\u{FF5C}') {
        return response;
    }
    let mut cut = response.len();
    for m in CHAT_MARKERS {
        let mut from = 0;
        while let Some(i) = response[from..].find(m) {
            let at = from + i;
            // A marker before any content (a template header) ends nothing.
            if !response[..at].trim().is_empty() {
                cut = cut.min(at);
                break;
            }
            from = at + m.len();
        }
    }
    &response[..cut]
}

/// The whole response, when it is short and reads as an answer rather than
/// prose: it parses as math, or is at most three words.
fn whole_answer(response: &str) -> Option<String> {
    let t = response.trim();
    // One math span and nothing else (`$$\\text{a regular hexagon}$$`) is an answer.
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(body) = t.strip_prefix(open).and_then(|b| b.strip_suffix(close)) {
            if !body.contains('$') && !body.contains("\\(") && !body.trim().is_empty() {
                return Some(cap(body));
            }
        }
    }
    if t.is_empty() || t.len() > MAX_ANSWER_BYTES || t.contains('\n') {
        return None;
    }
    let norm = crate::text::normalize_answer(t);
    let split = crate::text::split_unit(&norm);
    // Too big to parse is still a math answer, not prose.
    let parses = !matches!(
        crate::parse::parse(&split.value),
        Err(crate::parse::ParseError::Syntax | crate::parse::ParseError::Textual)
    ) || crate::text::split_or(&norm)
        .iter()
        .all(|p| crate::parse::parse(p).is_ok())
        // `x=-\frac13 \text{ and } x=2` lists two solutions.
        || (norm.contains("and")
            && crate::equiv::split_top(&crate::equiv::and_as_comma(&norm), b',')
                .iter()
                .all(|p| crate::parse::parse(p).is_ok()));
    if crate::equiv::number_words(t).is_some() {
        return Some(t.to_string());
    }
    let plain = crate::text::unwrap_text_commands(t);
    let few_words =
        (1..=3).contains(&plain.split_whitespace().count()) && !plain.contains(['\\', '{', '}']);
    (parses || few_words).then(|| t.to_string())
}

fn extract_in(s: &str, cfg: &ExtractConfig, allow_last_number: bool) -> Option<Extracted> {
    let boxed = cfg
        .boxed
        .then(|| boxed_run(s))
        .flatten()
        .filter(|(a, _, _)| !a.trim().is_empty());
    // A later committed answer revises a box ("\\boxed{5} ... re-reading the
    // problem, the final answer is 7"): a GSM8K line or an answer phrase after
    // the box wins when it states a value.
    // Only the text after the box can revise it; searching just there keeps
    // responses with a box as cheap as before.
    let tail = &s[boxed.as_ref().map_or(0, |b| b.2)..];
    if cfg.gsm8k {
        if let Some(a) = gsm8k_answer(tail) {
            return Some(Extracted {
                answer: cap(&a),
                source: Source::Gsm8k,
            });
        }
    }
    if cfg.phrases {
        if let Some(a) = phrase_answer(tail) {
            if boxed.is_none() || states_value(&a) {
                return Some(Extracted {
                    answer: cap(&a),
                    source: Source::Phrase,
                });
            }
        }
    }
    if let Some((b, _, _)) = boxed {
        return Some(Extracted {
            answer: cap(&b),
            source: Source::Boxed,
        });
    }
    if allow_last_number {
        return last_math_or_number(s);
    }
    None
}

/// Whether a phrase's answer states a value (math, a choice letter), as
/// opposed to prose such as "correct because ...".
fn states_value(a: &str) -> bool {
    let norm = crate::text::normalize_answer(a);
    let split = crate::text::split_unit(&norm);
    crate::parse::parse(&split.value).is_ok() || crate::text::choice_letter(&norm).is_some()
}

/// The last math span (`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`) that parses as
/// math, unless a bare number comes after it; else the last number; nothing when
/// the response [`looks_cut`].
fn last_math_or_number(s: &str) -> Option<Extracted> {
    if looks_cut(s) {
        return None;
    }
    let span = last_math_span(s);
    let num = last_number_at(s);
    match (span, num) {
        (Some((a, end)), n) if n.as_ref().is_none_or(|(_, at)| *at < end) => Some(Extracted {
            answer: cap(&a),
            source: Source::LastNumber,
        }),
        (_, Some((n, _))) => Some(Extracted {
            answer: n,
            source: Source::LastNumber,
        }),
        _ => None,
    }
}

/// Content and end offset of the last math span whose content parses.
fn last_math_span(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut best: Option<(usize, usize, usize)> = None;
    while i < b.len() {
        let (open, close): (&[u8], &[u8]) = if b[i..].starts_with(b"$$") {
            (b"$$", b"$$")
        } else if b[i] == b'$' && (i == 0 || b[i - 1] != b'\\') {
            (b"$", b"$")
        } else if b[i..].starts_with(b"\\(") {
            (b"\\(", b"\\)")
        } else if b[i..].starts_with(b"\\[") {
            (b"\\[", b"\\]")
        } else {
            i += 1;
            continue;
        };
        let body_start = i + open.len();
        let mut j = body_start;
        let mut end = None;
        while j < b.len() {
            if b[j..].starts_with(close) && !(close == b"$" && b[j - 1] == b'\\') {
                end = Some(j);
                break;
            }
            j += 1;
        }
        match end {
            Some(e) => {
                if !s[body_start..e].trim().is_empty() {
                    best = Some((body_start, e, e + close.len()));
                }
                i = e + close.len();
            }
            None => break,
        }
    }
    // Only the last span is tried: an earlier one is not the final answer.
    let (a, e, after) = best?;
    let body = &s[a..e];
    states_value(body).then(|| (body.to_string(), after))
}

/// Reads a gold answer: the `#### N` of a GSM8K solution, the last box of a
/// MATH solution, an `<answer>` block, or the string itself.
pub fn extract_gold(gold: &str) -> String {
    if let Some(a) = gsm8k_answer(gold) {
        return cap(&a);
    }
    if let Some((b, first, _)) = boxed_run(gold) {
        // A short gold written as boxes separated by symbols only
        // (`\boxed{35} ++ \boxed{4}`) states all of them; words between boxes
        // (`\boxed{1} no no \boxed{2}`) revise, as in a response.
        let short = gold.len() <= 200 && !gold.contains('\n');
        if short && last_boxed(&gold[..first]).is_some() {
            let all = symbol_separated_boxes(gold);
            if all.len() > 1 {
                return cap(&all.join(", "));
            }
        }
        return cap(&b);
    }
    if let Some(i) = gold.rfind("<answer>") {
        let body = &gold[i + 8..];
        let body = body.find("</answer>").map_or(body, |j| &body[..j]);
        return cap(body);
    }
    // A worked solution given as the reference: its stated final answer.
    if gold.len() > 200 || gold.contains('\n') {
        let strict = ExtractConfig::strict();
        if let Some(e) = extract_in(gold, &strict, false) {
            return e.answer;
        }
    }
    cap(gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Option<String> {
        extract_answer(s, &ExtractConfig::default()).map(|e| e.answer)
    }

    #[test]
    fn answer_tag_wins_over_think() {
        let r = "<think>maybe \\boxed{3}</think><answer>\\boxed{4}</answer>";
        assert_eq!(ex(r).as_deref(), Some("4"));
        let r = "<think>so 3</think>\n<answer> 7 </answer>";
        assert_eq!(ex(r).as_deref(), Some("7"));
    }

    #[test]
    fn later_box_replaces_earlier() {
        assert_eq!(
            ex("\\boxed{1} wait, no: \\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
    }

    #[test]
    fn part_labels_join_boxes() {
        let r = "$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$";
        assert_eq!(ex(r).as_deref(), Some("(3, 3), (1, 1)"));
        let r = "\\boxed{4} in case (ii), and \\boxed{5}";
        assert_eq!(ex(r).as_deref(), Some("4, 5"));
        // Prose that is not a part label still separates a revision.
        let r = "\\boxed{4} is wrong, so the answer is \\boxed{5}";
        assert_eq!(ex(r).as_deref(), Some("5"));
    }

    #[test]
    fn gold_of_symbol_separated_boxes() {
        assert_eq!(
            extract_gold("$\\\\boxed{35 cm} ++++++ \\\\boxed{4}$"),
            "35 cm, 4"
        );
        assert_eq!(extract_gold("\\boxed{1} no no no \\boxed{2}"), "2");
        assert_eq!(extract_gold("\\boxed{7} ; \\boxed{7}"), "7");
    }

    #[test]
    fn a_cut_off_response_has_no_last_number() {
        let cut = [
            "So far the running total is 467, and I still need to account for the",
            "First, $6 \\times 7 = 42$. Next we subtract the number of",
            "<think> There are 12 apples initially, then the baskets",
            "<think>\n先算 3 乘以 3 等于 9。然后还要考虑",
            "Adding the two parts, 40 + 2 =",
        ];
        for r in cut {
            assert_eq!(ex(r), None, "{r}");
        }
        assert_eq!(
            ex("Adding up, 40 + 2 gives a total of 42 apples").as_deref(),
            Some("42")
        );
        assert_eq!(ex("So it takes the train 3 hours.").as_deref(), Some("3"));
    }

    #[test]
    fn answer_headings_relations_and_passing_alternatives() {
        let strict = |r: &str| extract_answer(r, &ExtractConfig::strict()).map(|e| e.answer);
        assert_eq!(
            strict("Work.\n\n### Answer\n\n**$455$**").as_deref(),
            Some("455")
        );
        assert_eq!(
            strict("解：先整理。\n\n答：一共需要 244 元。").as_deref(),
            Some("244")
        );
        assert_eq!(
            ex("So, the answer is -2 < x \\le 3. Let me know!").as_deref(),
            Some("-2 < x \\le 3")
        );
        assert_eq!(ex("The answer is 7<|im_end|>").as_deref(), Some("7"));
        let a = ex("**Answer:** $\\frac{1}{2}$ (or possibly $\\frac{1}{4}$ if not)")
            .unwrap_or_default();
        assert!(is_hedged(&a), "{a}");
    }

    #[test]
    fn hedge_between_boxes_is_kept() {
        let a = ex("It is \\boxed{5} or \\boxed{6}.").unwrap_or_default();
        assert!(is_hedged(&a), "{a}");
    }

    #[test]
    fn phrases_gsm8k_and_fallback() {
        assert_eq!(ex("so\n#### 1,234").as_deref(), Some("1,234"));
        assert_eq!(ex("Thus the answer is 3.5.").as_deref(), Some("3.5"));
        assert_eq!(
            ex("It works, so the answer must be D.").as_deref(),
            Some("D")
        );
        assert_eq!(
            ex("x=-\\frac13 \\text{ and } x=2").as_deref(),
            Some("x=-\\frac13 \\text{ and } x=2")
        );
        assert_eq!(
            ex("Final Answer: The final answer is $\\frac{2}{3}$. I hope it is correct.")
                .as_deref(),
            Some("\\frac{2}{3}")
        );
        assert_eq!(ex("we get 12 then 13 apples").as_deref(), Some("13"));
        assert_eq!(
            extract_answer("so we get 12 in the end", &ExtractConfig::strict()),
            None
        );
    }

    #[test]
    fn unbalanced_and_empty() {
        assert_eq!(ex(""), None);
        assert_eq!(ex("\\boxed{12").as_deref(), Some("12"));
        assert_eq!(ex("\\boxed{}"), None);
    }
}

#[cfg(test)]
mod issue16_tests {
    use super::*;

    fn ex(s: &str) -> Option<String> {
        extract_answer(s, &ExtractConfig::default()).map(|e| e.answer)
    }

    #[test]
    fn display_math_and_prose() {
        assert_eq!(
            ex("So the answer is\n\\[\n\\frac{3}{4}\n\\]\nas claimed.").as_deref(),
            Some("\\frac{3}{4}")
        );
        assert_eq!(ex("The final answer is:\n$$ 12 $$").as_deref(), Some("12"));
        assert_eq!(
            ex("Final Answer: The largest $n$ is 34.").as_deref(),
            Some("34")
        );
        assert_eq!(ex("**Answer**\n\n$$\n7\n$$").as_deref(), Some("7"));
    }

    #[test]
    fn box_runs() {
        assert_eq!(
            ex("so $x = \\boxed{3}$ and $x = \\boxed{5}$.").as_deref(),
            Some("3, 5")
        );
        assert_eq!(
            ex("\\boxed{1}, \\boxed{2}, and \\boxed{3}").as_deref(),
            Some("1, 2, 3")
        );
        // Prose between boxes: the last one is the answer.
        assert_eq!(
            ex("First $a = \\boxed{3}$. Using it in part two, the total is $\\boxed{7}$.")
                .as_deref(),
            Some("7")
        );
        let hedge = ex("either \\boxed{2} or \\boxed{3}").unwrap_or_default();
        assert!(is_hedged(&hedge), "{hedge}");
    }

    #[test]
    fn joined_spans_and_unit_words() {
        assert_eq!(
            ex("Final Answer: The final answer is \\\"$12 $ and $13 $\\\". I hope it is correct.")
                .as_deref(),
            Some("12 , 13")
        );
        assert_eq!(
            ex("\\boxed{1} papers and \\boxed{2} bins").as_deref(),
            Some("1, 2")
        );
        // Found by cargo-fuzz: `$$` opened, a single `$` closing before a
        // multi-byte character.
        assert_eq!(ex("the answer is $$5$\u{FFFD}").as_deref(), Some("5"));
        // Two words between boxes are prose: the last box alone.
        assert_eq!(
            ex("\\boxed{1} is wrong and \\boxed{2}").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn revisions_and_leftovers() {
        assert_eq!(
            ex("So $\\boxed{5}$. But re-reading the problem, the final answer is $7$.").as_deref(),
            Some("7")
        );
        // A phrase after the box that states no value does not revise it.
        assert_eq!(
            ex("\\boxed{5}. This answer is reasonable because it is small.").as_deref(),
            Some("5")
        );
        assert_eq!(
            ex("#### 12<|endoftext|>Human: is it 13?").as_deref(),
            Some("12")
        );
        assert_eq!(
            ex("The answer is $\\boxed{4}$.<|im_end|>\n<|im_start|>user\nand \\boxed{9}?")
                .as_deref(),
            Some("4")
        );
    }

    #[test]
    fn last_math_span() {
        assert_eq!(
            ex("Therefore $x \\geq 5$ is the solution.").as_deref(),
            Some("x \\geq 5")
        );
        // A bare number after the last span is later, so it wins.
        assert_eq!(
            ex("Let $x$ be the count; we get 12 apples").as_deref(),
            Some("12")
        );
    }
}
