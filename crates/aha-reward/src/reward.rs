//! Reward functions over completions, and their weighted combination.

use crate::error::RewardError;
use crate::tasks::Countdown;
use std::collections::HashSet;

/// One completion to score. `num_tokens` is used by length-based rewards when
/// the trainer knows it; otherwise they count characters.
#[derive(Debug, Clone, Copy)]
pub struct RewardInput<'a> {
    pub completion: &'a str,
    pub gold: Option<&'a str>,
    pub num_tokens: Option<usize>,
}

impl RewardInput<'_> {
    fn length(&self) -> usize {
        self.num_tokens
            .unwrap_or_else(|| self.completion.chars().count())
    }
}

/// Writing systems for the language-consistency reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Latin,
    Han,
    Kana,
    Hangul,
    Cyrillic,
    Arabic,
    Devanagari,
    Greek,
    Other,
}

impl Script {
    fn of(c: char) -> Option<Script> {
        Some(match c {
            'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' => Script::Latin,
            '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' => {
                Script::Han
            }
            '\u{3040}'..='\u{30FF}' => Script::Kana,
            '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}' => Script::Hangul,
            '\u{0400}'..='\u{04FF}' => Script::Cyrillic,
            '\u{0600}'..='\u{06FF}' => Script::Arabic,
            '\u{0900}'..='\u{097F}' => Script::Devanagari,
            '\u{0370}'..='\u{03FF}' => Script::Greek,
            c if c.is_alphabetic() => Script::Other,
            _ => return None,
        })
    }

    /// From a language code (`en`, `zh`, …) or a script name.
    pub fn from_code(code: &str) -> Option<Script> {
        Some(match code.to_ascii_lowercase().as_str() {
            "en" | "fr" | "de" | "es" | "it" | "pt" | "nl" | "latin" => Script::Latin,
            "zh" | "han" => Script::Han,
            "ja" | "kana" => Script::Kana,
            "ko" | "hangul" => Script::Hangul,
            "ru" | "uk" | "cyrillic" => Script::Cyrillic,
            "ar" | "fa" | "arabic" => Script::Arabic,
            "hi" | "devanagari" => Script::Devanagari,
            "el" | "greek" => Script::Greek,
            _ => return None,
        })
    }
}

/// A single reward function. Construct directly or with [`RewardFn::parse`].
#[derive(Debug, Clone, PartialEq)]
pub enum RewardFn {
    /// 1 when the final answer matches the gold answer, else 0. The answer is read with
    /// [`crate::ExtractConfig::reward`]: under the think/answer template only the last
    /// complete `<answer>` block (or a final box) after the reasoning counts.
    Accuracy,
    /// 1 for exactly one non-empty `<think>` block followed by one non-empty
    /// `<answer>` block and nothing else but whitespace, else 0.
    Format,
    /// 0.25 for each of the four tags that appears exactly once.
    TagCount,
    /// R1-Zero template: like `Format`, but the opening `<think>` may have
    /// been prefilled by the prompt.
    R1ZeroFormat,
    /// Share of chain-of-thought words written in the target script.
    Language {
        script: Script,
    },
    /// Cosine length scaling (correct: short is better; wrong: long is less bad).
    Cosine {
        min_wrong: f32,
        max_wrong: f32,
        min_correct: f32,
        max_correct: f32,
        max_len: usize,
    },
    /// DAPO soft overlong punishment: 0 up to `max_len - cache`, then linear
    /// down to -1 at `max_len`, -1 beyond.
    Overlong {
        max_len: usize,
        cache: usize,
    },
    /// `max_penalty` × share of repeated word n-grams.
    Repetition {
        ngram: usize,
        max_penalty: f32,
    },
    /// Gold is `{"numbers": [..], "target": N}`.
    Countdown,
    Arithmetic,
    Gsm8k,
    /// 1 when the answer after the reasoning ([`crate::json_answer`]) is JSON valid under
    /// the schema (`json_schema(file=PATH)`; `json_object`: any object), else 0.
    JsonSchema(crate::JsonSchemaCheck),
}

/// Whether `s` answers `gold`, reading the answer as rewards do.
fn reward_verdict(gold: &str, s: &str) -> bool {
    crate::verify_with(gold, s, &crate::ExtractConfig::reward()).correct
}

fn tag_once(s: &str, tag: &str) -> Option<usize> {
    let i = s.find(tag)?;
    (s[i + tag.len()..].find(tag).is_none()).then_some(i)
}

/// Positions of the four tags, each present exactly once and in order.
fn blocks(s: &str, need_open: bool) -> Option<(&str, &str, usize, usize)> {
    let open = tag_once(s, "<think>");
    let close = tag_once(s, "</think>")?;
    let a_open = tag_once(s, "<answer>")?;
    let a_close = tag_once(s, "</answer>")?;
    let think_start = match open {
        Some(o) => {
            if !s[..o].trim().is_empty() || o > close {
                return None;
            }
            o + "<think>".len()
        }
        None if need_open => return None,
        None => {
            if s.contains("<think>") {
                return None;
            }
            0
        }
    };
    if !(close < a_open && a_open < a_close) {
        return None;
    }
    let between = &s[close + "</think>".len()..a_open];
    let after = &s[a_close + "</answer>".len()..];
    if !between.trim().is_empty() || !after.trim().is_empty() {
        return None;
    }
    let think = &s[think_start..close];
    let answer = &s[a_open + "<answer>".len()..a_close];
    Some((think, answer, close, a_close))
}

fn strict_format(s: &str, need_open: bool) -> f32 {
    match blocks(s, need_open) {
        Some((t, a, _, _)) if !t.trim().is_empty() && !a.trim().is_empty() => 1.0,
        _ => 0.0,
    }
}

fn chain_of_thought(s: &str) -> &str {
    match (s.find("<think>"), s.find("</think>")) {
        (Some(o), Some(c)) if o < c => &s[o + 7..c],
        (None, Some(c)) => &s[..c],
        (Some(o), None) => &s[o + 7..],
        _ => s,
    }
}

fn language_share(s: &str, target: Script) -> f32 {
    let cot = chain_of_thought(s);
    let (mut total, mut hits) = (0u64, 0u64);
    let mut chars = cot.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // LaTeX command names are not language.
            while chars.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                chars.next();
            }
            continue;
        }
        let Some(script) = Script::of(c) else {
            continue;
        };
        let ideographic = matches!(script, Script::Han | Script::Kana);
        if !ideographic {
            // A word is a run of letters of one script; single letters are
            // usually math variables.
            let mut len = 1;
            while chars.peek().is_some_and(|&d| Script::of(d) == Some(script)) {
                chars.next();
                len += 1;
            }
            if len < 2 {
                continue;
            }
        }
        total += 1;
        let same = script == target || (target == Script::Kana && script == Script::Han);
        if same {
            hits += 1;
        }
    }
    if total == 0 {
        return if cot.trim().is_empty() { 0.0 } else { 1.0 };
    }
    hits as f32 / total as f32
}

fn repetition(s: &str, n: usize, max_penalty: f32) -> f32 {
    let words: Vec<String> = s.split_whitespace().map(|w| w.to_lowercase()).collect();
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let total = words.len() - n + 1;
    let unique: HashSet<&[String]> = words.windows(n).collect();
    let scaling = 1.0 - unique.len() as f32 / total as f32;
    scaling * max_penalty
}

impl RewardFn {
    /// Scores a completion against an optional gold answer.
    pub fn score(&self, completion: &str, gold: Option<&str>) -> f32 {
        self.score_input(&RewardInput {
            completion,
            gold,
            num_tokens: None,
        })
    }

    /// Scores with full input (token count for length rewards).
    pub fn score_input(&self, x: &RewardInput) -> f32 {
        let s = x.completion;
        match self {
            RewardFn::Accuracy => match x.gold {
                Some(g) => f32::from(u8::from(reward_verdict(g, s))),
                None => 0.0,
            },
            RewardFn::Format => strict_format(s, true),
            RewardFn::R1ZeroFormat => strict_format(s, false),
            RewardFn::TagCount => {
                let count = |t: &str| s.matches(t).count() == 1;
                ["<think>", "</think>", "<answer>", "</answer>"]
                    .iter()
                    .filter(|t| count(t))
                    .count() as f32
                    * 0.25
            }
            RewardFn::Language { script } => language_share(s, *script),
            RewardFn::Cosine {
                min_wrong,
                max_wrong,
                min_correct,
                max_correct,
                max_len,
            } => {
                let correct = x.gold.is_some_and(|g| reward_verdict(g, s));
                let progress = (x.length() as f32 / (*max_len).max(1) as f32).min(1.0);
                let cosine = (progress * std::f32::consts::PI).cos();
                // Wrong answers: the range is flipped so longer is less negative.
                let (lo, hi) = if correct {
                    (*min_correct, *max_correct)
                } else {
                    (*max_wrong, *min_wrong)
                };
                lo + 0.5 * (hi - lo) * (1.0 + cosine)
            }
            RewardFn::Overlong { max_len, cache } => {
                let len = x.length();
                let free = max_len.saturating_sub(*cache);
                if len <= free {
                    0.0
                } else if len <= *max_len && *cache > 0 {
                    (free as f32 - len as f32) / *cache as f32
                } else {
                    -1.0
                }
            }
            RewardFn::Repetition { ngram, max_penalty } => repetition(s, *ngram, *max_penalty),
            RewardFn::Countdown => x
                .gold
                .and_then(|g| Countdown::from_json(g).ok())
                .map_or(0.0, |t| f32::from(u8::from(t.check_response(s)))),
            RewardFn::Arithmetic => x
                .gold
                .map_or(0.0, |g| f32::from(u8::from(crate::tasks::arithmetic(s, g)))),
            RewardFn::Gsm8k => x
                .gold
                .map_or(0.0, |g| f32::from(u8::from(crate::tasks::gsm8k(s, g)))),
            RewardFn::JsonSchema(check) => f32::from(u8::from(check.check_response(s))),
        }
    }

    /// Parses `name` or `name(key=value, ...)`. Names: accuracy, format,
    /// tag_count, r1_zero_format, language(lang=en), cosine(max_len=1000,
    /// min_wrong, max_wrong, min_correct, max_correct), overlong(max_len,
    /// cache), repetition(ngram=3, max_penalty=-1), countdown, arithmetic,
    /// gsm8k, json_object, json_schema(file=PATH).
    pub fn parse(spec: &str) -> Result<RewardFn, RewardError> {
        let spec = spec.trim();
        let (name, params) = match spec.find('(') {
            Some(i) => {
                let inner = spec[i + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| RewardError::UnknownReward(spec.to_string()))?;
                (spec[..i].trim(), inner)
            }
            None => (spec, ""),
        };
        let mut kv: Vec<(&str, &str)> = Vec::new();
        for part in params
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| RewardError::BadParam {
                name: name.to_string(),
                param: part.to_string(),
                reason: "expected key=value".into(),
            })?;
            kv.push((k.trim(), v.trim()));
        }
        let known: &[&str] = match name {
            "language" | "lang" => &["lang", "script"],
            "cosine" => &[
                "max_len",
                "min_wrong",
                "max_wrong",
                "min_correct",
                "max_correct",
            ],
            "overlong" => &["max_len", "cache"],
            "repetition" => &["ngram", "max_penalty"],
            "json_schema" => &["file"],
            _ => &[],
        };
        for (k, _) in &kv {
            if !known.contains(k) {
                return Err(RewardError::BadParam {
                    name: name.into(),
                    param: (*k).into(),
                    reason: "unknown parameter".into(),
                });
            }
        }
        let get_f = |k: &str, d: f32| -> Result<f32, RewardError> {
            match kv.iter().find(|(key, _)| *key == k) {
                None => Ok(d),
                Some((_, v)) => v
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| RewardError::BadParam {
                        name: name.into(),
                        param: k.into(),
                        reason: format!("`{v}` is not a number"),
                    }),
            }
        };
        let get_u = |k: &str, d: usize| -> Result<usize, RewardError> {
            match kv.iter().find(|(key, _)| *key == k) {
                None => Ok(d),
                Some((_, v)) => v.parse::<usize>().map_err(|_| RewardError::BadParam {
                    name: name.into(),
                    param: k.into(),
                    reason: format!("`{v}` is not a count"),
                }),
            }
        };
        Ok(match name {
            "accuracy" | "acc" => RewardFn::Accuracy,
            "format" => RewardFn::Format,
            "tag_count" | "tags" => RewardFn::TagCount,
            "r1_zero_format" | "r1_zero" => RewardFn::R1ZeroFormat,
            "language" | "lang" => {
                let code = kv
                    .iter()
                    .find(|(k, _)| *k == "lang" || *k == "script")
                    .map_or("en", |(_, v)| v);
                let script = Script::from_code(code).ok_or_else(|| RewardError::BadParam {
                    name: name.into(),
                    param: "lang".into(),
                    reason: format!("unknown language `{code}`"),
                })?;
                RewardFn::Language { script }
            }
            "cosine" => RewardFn::Cosine {
                min_wrong: get_f("min_wrong", -1.0)?,
                max_wrong: get_f("max_wrong", -0.5)?,
                min_correct: get_f("min_correct", 0.5)?,
                max_correct: get_f("max_correct", 1.0)?,
                max_len: get_u("max_len", 1000)?,
            },
            "overlong" => {
                let max_len = get_u("max_len", 4096)?;
                let cache = get_u("cache", 512)?;
                if cache > max_len {
                    return Err(RewardError::BadParam {
                        name: name.into(),
                        param: "cache".into(),
                        reason: "cache exceeds max_len".into(),
                    });
                }
                RewardFn::Overlong { max_len, cache }
            }
            "repetition" => RewardFn::Repetition {
                ngram: get_u("ngram", 3)?.max(1),
                max_penalty: get_f("max_penalty", -1.0)?,
            },
            "countdown" => RewardFn::Countdown,
            "arithmetic" => RewardFn::Arithmetic,
            "gsm8k" => RewardFn::Gsm8k,
            "json_object" => RewardFn::JsonSchema(crate::JsonSchemaCheck::any_object()),
            "json_schema" => {
                let file =
                    kv.iter()
                        .find(|(k, _)| *k == "file")
                        .ok_or_else(|| RewardError::BadParam {
                            name: name.into(),
                            param: "file".into(),
                            reason: "json_schema needs file=PATH (a JSON Schema)".into(),
                        })?;
                RewardFn::JsonSchema(crate::JsonSchemaCheck::from_file(std::path::Path::new(
                    file.1,
                ))?)
            }
            other => return Err(RewardError::UnknownReward(other.to_string())),
        })
    }
}

/// A weighted sum of reward functions.
#[derive(Debug, Clone, PartialEq)]
pub struct Reward {
    pub terms: Vec<(RewardFn, f32)>,
}

/// Splits at commas outside parentheses.
fn split_top(spec: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&spec[start..]);
    out
}

impl Reward {
    /// Parses `"accuracy:1.0,format:0.5,cosine(max_len=2048)"`; weights
    /// default to 1.
    pub fn parse(spec: &str) -> Result<Reward, RewardError> {
        let mut terms = Vec::new();
        for item in split_top(spec)
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // `json_schema:FILE[:weight]` is short for `json_schema(file=FILE)[:weight]`.
            if let Some(rest) = item.strip_prefix("json_schema:") {
                let (file, weight) = match rest.rsplit_once(':') {
                    Some((f, w)) if w.trim().parse::<f32>().is_ok_and(f32::is_finite) => {
                        (f, w.trim().parse::<f32>().unwrap_or(1.0))
                    }
                    _ => (rest, 1.0),
                };
                let check = crate::JsonSchemaCheck::from_file(std::path::Path::new(file.trim()))?;
                terms.push((RewardFn::JsonSchema(check), weight));
                continue;
            }
            // The weight follows the last ':' outside parentheses.
            let close = item.rfind(')').map_or(0, |i| i + 1);
            let (fn_spec, weight) = match item[close..].rfind(':') {
                Some(j) => {
                    let j = close + j;
                    let w = item[j + 1..].trim();
                    let weight =
                        w.parse::<f32>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| RewardError::BadWeight {
                                name: item[..j].trim().to_string(),
                                weight: w.to_string(),
                            })?;
                    (&item[..j], weight)
                }
                None => (item, 1.0),
            };
            terms.push((RewardFn::parse(fn_spec)?, weight));
        }
        if terms.is_empty() {
            return Err(RewardError::EmptySpec);
        }
        Ok(Reward { terms })
    }

    /// Weighted sum for one completion.
    pub fn score(&self, completion: &str, gold: Option<&str>) -> f32 {
        self.score_input(&RewardInput {
            completion,
            gold,
            num_tokens: None,
        })
    }

    /// Weighted sum with full input.
    pub fn score_input(&self, x: &RewardInput) -> f32 {
        self.terms.iter().map(|(f, w)| w * f.score_input(x)).sum()
    }

    /// Scores a group of completions (e.g. one GRPO group); a missing gold
    /// (shorter `golds`) counts as `None`.
    pub fn score_batch(&self, completions: &[&str], golds: &[Option<&str>]) -> Vec<f32> {
        completions
            .iter()
            .enumerate()
            .map(|(i, c)| self.score(c, golds.get(i).copied().flatten()))
            .collect()
    }

    /// Each term's unweighted value, in spec order (for logging).
    pub fn breakdown(&self, x: &RewardInput) -> Vec<f32> {
        self.terms.iter().map(|(f, _)| f.score_input(x)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_rewards() {
        let f = RewardFn::Format;
        assert_eq!(f.score("<think>a</think>\n<answer>b</answer>\n", None), 1.0);
        assert_eq!(f.score("<think> </think><answer>b</answer>", None), 0.0);
        assert_eq!(f.score("x<think>a</think><answer>b</answer>", None), 0.0);
        assert_eq!(
            f.score("<think>a</think><answer>b</answer><answer>c</answer>", None),
            0.0
        );
        assert_eq!(f.score("a</think><answer>b</answer>", None), 0.0);
        assert_eq!(
            RewardFn::R1ZeroFormat.score("a</think><answer>b</answer>", None),
            1.0
        );
        assert_eq!(RewardFn::TagCount.score("<think>a</think>", None), 0.5);
    }

    #[test]
    fn language_and_length() {
        let en = RewardFn::Language {
            script: Script::Latin,
        };
        assert_eq!(en.score("<think>we add the numbers</think>", None), 1.0);
        let mixed = en.score("<think>we add 数字 数字</think>", None);
        assert!(mixed > 0.3 && mixed < 0.7, "{mixed}");
        let o = RewardFn::Overlong {
            max_len: 100,
            cache: 20,
        };
        assert_eq!(o.score(&"a".repeat(80), None), 0.0);
        assert!((o.score(&"a".repeat(90), None) + 0.5).abs() < 1e-6);
        assert_eq!(o.score(&"a".repeat(101), None), -1.0);
        let c = RewardFn::parse("cosine(max_len=100)").unwrap_or(RewardFn::Accuracy);
        let short = c.score("<answer>4</answer>", Some("4"));
        let long = c.score(&format!("{}<answer>4</answer>", "x".repeat(90)), Some("4"));
        assert!(short > long && short <= 1.0 && long >= 0.5);
        let wrong = c.score("<answer>5</answer>", Some("4"));
        assert!((-1.0..=-0.5).contains(&wrong));
        let r = RewardFn::Repetition {
            ngram: 2,
            max_penalty: -1.0,
        };
        assert_eq!(r.score("a b c d", None), 0.0);
        assert!(r.score("a b a b a b", None) < -0.5);
    }

    #[test]
    fn spec_parsing() {
        let r = Reward::parse("accuracy:1.0, format:0.5, cosine(max_len=10,min_wrong=-2):0.1");
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.terms.len(), 3);
        assert_eq!(r.terms[1], (RewardFn::Format, 0.5));
        assert!(Reward::parse("nope").is_err());
        assert!(Reward::parse("accuracy:x").is_err());
        assert!(Reward::parse("").is_err());
        assert!(Reward::parse("cosine(bogus=1)").is_err());
        assert!(Reward::parse("language(lang=zz)").is_err());
        let acc = Reward::parse("accuracy").unwrap_or(Reward { terms: Vec::new() });
        let got = acc.score_batch(
            &["<answer>4</answer>", "<answer>5</answer>", "4"],
            &[Some("4"), Some("4")],
        );
        assert_eq!(got, vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn json_schema_terms_from_a_file() {
        let dir = std::env::temp_dir().join(format!("aha-reward-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("answer.json");
        std::fs::write(
            &path,
            r#"{"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}"#,
        )
        .unwrap();
        let p = path.display();
        let good = "<think> 2 + 2 is 4 </think> {\"answer\": 4}";
        let bad = "<think> 2 + 2 is 4 </think> {\"answer\": \"4\"}";
        for spec in [
            format!("json_schema(file={p}):0.5"),
            format!("json_schema:{p}:0.5"),
        ] {
            let r = Reward::parse(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(r.score(good, None), 0.5, "{spec}");
            assert_eq!(r.score(bad, None), 0.0, "{spec}");
        }
        let r = Reward::parse(&format!("json_schema:{p}")).unwrap();
        assert_eq!(r.terms[0].1, 1.0);
        assert!(Reward::parse("json_schema").is_err());
        let missing = Reward::parse("json_schema(file=/nonexistent.json)").unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent.json"),
            "{missing}"
        );
        let obj = Reward::parse("json_object").unwrap();
        assert_eq!(obj.score("</think> {\"x\": [1]}", None), 1.0);
        assert_eq!(obj.score("</think> 4", None), 0.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[cfg(test)]
mod thread_tests {
    #[test]
    fn rewards_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Reward>();
        check::<super::RewardFn>();
    }
}
