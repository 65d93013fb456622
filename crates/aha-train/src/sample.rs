//! Rejection sampling as in the R1 paper: k completions per prompt (the prompt's prefill
//! shared), each scored (correct, format, language consistency), then kept or dropped by
//! small pure filters: only correct ones, language mixing in the reasoning, overly long
//! paragraphs, code blocks in the reasoning, missing or malformed tags, reasoning too short to
//! be a chain of thought, and a pass-rate window over the prompt's k samples.
//!
//! Output (with a path `FILE.jsonl`):
//! * `FILE.jsonl`: one line per *kept* completion ([`SampleLine`]: `problem_id`, `sample`,
//!   `prompt` (the question, untemplated), `completion`, `correct`, `rewards`, `kept`,
//!   `dropped_by`), ready for SFT as `prompt`/`completion`; with
//!   [`SampleConfig::write_dropped`] the dropped ones too (`kept: false`);
//! * `FILE.progress.jsonl`: one line per finished prompt with its counts and the length of
//!   `FILE.jsonl` after it; this is what makes a run resumable;
//! * `FILE.stats.json`: counts kept and dropped per filter ([`SampleStats`]).
//!
//! Resuming: a prompt's lines are appended and flushed, then its progress line. On restart
//! `FILE.jsonl` is cut back to the length the last complete progress line recorded (dropping a
//! prompt cut off mid-write) and the prompts listed there are skipped, so none is duplicated.
//! Problems are generated in fixed chunks (seeded by chunk index), so a resumed run produces
//! the same lines as an uninterrupted one. A resume with other settings (kept in
//! `FILE.config.json`), other problems, or a progress file with a line that is not a record is
//! refused, the files untouched.

use crate::eval::{
    generate_chunk, io_err, read_jsonl, to_line, GenConfig, ProblemSet, PromptStyle, Result,
    TrainError,
};
use aha_engine::FinishReason;
use aha_model::Model;
use aha_reward::Script;
use aha_text::Tokenizer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

/// The filters, in the order a dropped completion is attributed to the first one it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// The prompt's pass rate lies outside the window.
    PassRate,
    /// Not verified correct.
    Correct,
    /// Missing or malformed `<think>`/`<answer>` tags.
    Format,
    /// Too much of the reasoning outside the target script.
    LanguageMix,
    /// A paragraph longer than the limit.
    LongParagraph,
    /// A ``` code block in the reasoning.
    CodeBlock,
    /// Fewer reasoning words than the minimum (an answer given without working).
    ShortReasoning,
}

impl Filter {
    pub const ALL: [Filter; 7] = [
        Filter::PassRate,
        Filter::Correct,
        Filter::Format,
        Filter::LanguageMix,
        Filter::LongParagraph,
        Filter::CodeBlock,
        Filter::ShortReasoning,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Filter::PassRate => "pass_rate",
            Filter::Correct => "correct",
            Filter::Format => "format",
            Filter::LanguageMix => "language_mix",
            Filter::LongParagraph => "long_paragraph",
            Filter::CodeBlock => "code_block",
            Filter::ShortReasoning => "short_reasoning",
        }
    }
}

/// Which filters apply; the default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Filters {
    /// Keep only verified-correct completions.
    pub keep_correct: bool,
    /// Keep only completions with well-formed tags.
    pub require_format: bool,
    /// Drop when more than this share of the reasoning's words is outside the target script.
    pub max_language_mix: Option<f32>,
    /// Drop when a paragraph (text between blank lines) has more characters than this.
    pub max_paragraph_chars: Option<usize>,
    /// Drop completions with a ``` code block in the reasoning.
    pub no_code: bool,
    /// Drop completions whose reasoning has fewer whitespace-separated words than this (the
    /// cold start's long chains of thought, not answers given at once).
    pub min_reasoning_words: Option<usize>,
    /// Keep only prompts whose pass rate over their k samples lies in `[min, max]`.
    pub pass_rate: Option<(f64, f64)>,
}

/// Share of the reasoning's words outside the target script, from the language-consistency
/// score (`RewardFn::Language`).
pub fn language_mix(language_consistency: f32) -> f32 {
    1.0 - language_consistency
}

/// Characters in the longest paragraph (paragraphs are separated by blank lines).
pub fn longest_paragraph_chars(text: &str) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            current = 0;
        } else {
            // The line break inside a paragraph counts as one character.
            current += line.chars().count() + usize::from(current > 0);
            longest = longest.max(current);
        }
    }
    longest
}

/// Whether the reasoning holds a fenced code block (or the start of one).
pub fn has_code_block(reasoning: &str) -> bool {
    reasoning.contains("```")
}

/// Whether `correct` of `k` samples is a pass rate inside `[min, max]`.
pub fn in_pass_rate_window(correct: usize, k: usize, (min, max): (f64, f64)) -> bool {
    let rate = correct as f64 / k.max(1) as f64;
    // A small tolerance so that e.g. 1/3 is inside a window written as 0.333..
    rate >= min - 1e-9 && rate <= max + 1e-9
}

/// What the completion-level filters look at.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub completion: &'a str,
    pub reasoning: &'a str,
    pub correct: bool,
    pub formatted: bool,
    pub language_consistency: f32,
}

/// The completion-level filters a candidate fails, in [`Filter`] order.
pub fn failed_filters(f: &Filters, c: &Candidate) -> Vec<Filter> {
    let mut out = Vec::new();
    if f.keep_correct && !c.correct {
        out.push(Filter::Correct);
    }
    if f.require_format && !c.formatted {
        out.push(Filter::Format);
    }
    if f.max_language_mix
        .is_some_and(|x| language_mix(c.language_consistency) > x)
    {
        out.push(Filter::LanguageMix);
    }
    if f.max_paragraph_chars
        .is_some_and(|n| longest_paragraph_chars(c.completion) > n)
    {
        out.push(Filter::LongParagraph);
    }
    if f.no_code && has_code_block(c.reasoning) {
        out.push(Filter::CodeBlock);
    }
    if f.min_reasoning_words
        .is_some_and(|n| c.reasoning.split_whitespace().count() < n)
    {
        out.push(Filter::ShortReasoning);
    }
    out
}

/// Rewards recorded with each completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewards {
    /// 1 when verified correct.
    pub accuracy: f32,
    /// 1 when the tags are well formed.
    pub format: f32,
    /// Share of the reasoning's words in the target script.
    pub language: f32,
}

/// One completion line of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleLine {
    pub problem_id: String,
    pub sample: usize,
    /// The question, untemplated.
    pub prompt: String,
    pub completion: String,
    pub gold: String,
    pub correct: bool,
    pub rewards: Rewards,
    pub tokens: usize,
    pub finish_reason: FinishReason,
    pub kept: bool,
    /// The first filter it failed, when dropped.
    pub dropped_by: Option<Filter>,
}

/// Counts over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleStats {
    pub prompts: usize,
    pub completions: usize,
    pub correct: usize,
    pub kept: usize,
    pub dropped: usize,
    /// Prompts with at least one kept completion.
    pub prompts_with_kept: usize,
    /// Dropped completions by the first filter they failed (sums to `dropped`).
    pub dropped_by: BTreeMap<Filter, usize>,
    /// Completions each filter rejects on its own (a completion may count under several).
    pub rejected_by: BTreeMap<Filter, usize>,
}

impl SampleStats {
    fn add(&mut self, p: &PromptProgress) {
        self.prompts += 1;
        self.completions += p.samples;
        self.correct += p.correct;
        self.kept += p.kept;
        self.dropped += p.samples - p.kept;
        self.prompts_with_kept += usize::from(p.kept > 0);
        for (f, n) in &p.dropped_by {
            *self.dropped_by.entry(*f).or_default() += n;
        }
        for (f, n) in &p.rejected_by {
            *self.rejected_by.entry(*f).or_default() += n;
        }
    }
}

/// One line of the progress file: a finished prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PromptProgress {
    problem_id: String,
    samples: usize,
    correct: usize,
    kept: usize,
    dropped_by: BTreeMap<Filter, usize>,
    rejected_by: BTreeMap<Filter, usize>,
    /// Length of the output file after this prompt's lines.
    bytes: u64,
}

/// Judge the k completions of one prompt: every line with `kept`/`dropped_by` set, and the
/// prompt's counts.
fn judge_prompt(
    filters: &Filters,
    lines: &mut [SampleLine],
    reasonings: &[String],
) -> PromptProgress {
    let k = lines.len();
    let correct = lines.iter().filter(|l| l.correct).count();
    let window_ok = filters
        .pass_rate
        .is_none_or(|w| in_pass_rate_window(correct, k, w));
    let mut p = PromptProgress {
        problem_id: lines
            .first()
            .map(|l| l.problem_id.clone())
            .unwrap_or_default(),
        samples: k,
        correct,
        kept: 0,
        dropped_by: BTreeMap::new(),
        rejected_by: BTreeMap::new(),
        bytes: 0,
    };
    for (l, reasoning) in lines.iter_mut().zip(reasonings) {
        let mut failed = failed_filters(
            filters,
            &Candidate {
                completion: &l.completion,
                reasoning,
                correct: l.correct,
                formatted: l.rewards.format >= 1.0,
                language_consistency: l.rewards.language,
            },
        );
        if !window_ok {
            failed.insert(0, Filter::PassRate);
        }
        for f in &failed {
            *p.rejected_by.entry(*f).or_default() += 1;
        }
        l.dropped_by = failed.first().copied();
        l.kept = l.dropped_by.is_none();
        match l.dropped_by {
            Some(f) => *p.dropped_by.entry(f).or_default() += 1,
            None => p.kept += 1,
        }
    }
    p
}

/// Rejection-sampling settings.
#[derive(Debug, Clone, Serialize)]
pub struct SampleConfig {
    pub gen: GenConfig,
    /// Target script of the language score and filter.
    #[serde(serialize_with = "crate::eval::ser_script")]
    pub script: Script,
    pub filters: Filters,
    /// Also write dropped completions to the output (with `kept: false`).
    pub write_dropped: bool,
    /// Show a progress bar over prompts.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            gen: GenConfig::default(),
            script: Script::Latin,
            filters: Filters::default(),
            write_dropped: false,
            progress: false,
        }
    }
}

/// What [`rejection_sample`] returns: the kept completions (of this and, when resumed, the
/// earlier run) and the counts.
#[derive(Debug, Clone)]
pub struct SampleReport {
    pub kept: Vec<SampleLine>,
    pub stats: SampleStats,
}

/// `FILE.jsonl` -> `FILE.<suffix>`.
pub fn side_path(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{}.{suffix}", stem.unwrap_or_else(|| "out".into())))
}

/// A resumed run must be the run it continues: its settings are kept beside the output
/// (`FILE.config.json`) when it starts and compared when it resumes, and the prompts it
/// finished must be among this run's (resuming `--samples 3` on a `--samples 2` run, or
/// another task into the same file, mixed the two in one output).
fn check_settings(
    out: &Path,
    cfg: &SampleConfig,
    set: &ProblemSet,
    done: &[PromptProgress],
) -> Result<()> {
    let path = side_path(out, "config.json");
    let settings = serde_json::to_value(cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if done.is_empty() {
        return aha_model::write_atomic(&path, to_line(&settings).as_bytes()).map_err(Into::into);
    }
    let refuse = |why: String| {
        Err(TrainError::Invalid(format!(
            "{} cannot be resumed with these settings: {why}; use the same settings or another output",
            out.display()
        )))
    };
    if let Some(p) = done.iter().find(|p| p.samples != cfg.gen.samples) {
        return refuse(format!(
            "it has {} samples per prompt, this run {}",
            p.samples, cfg.gen.samples
        ));
    }
    let ids: HashSet<&str> = set.problems.iter().map(|p| p.id.as_str()).collect();
    if let Some(p) = done.iter().find(|p| !ids.contains(p.problem_id.as_str())) {
        return refuse(format!(
            "it holds problem {:?}, which is not in this run's problems",
            p.problem_id
        ));
    }
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let before: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TrainError::Json {
                path: path.clone(),
                line: e.line(),
                msg: e.to_string(),
            })?;
        if before != settings {
            return refuse(format!("they differ from {}'s", path.display()));
        }
    }
    Ok(())
}

/// The output files of a (possibly resumed) run, opened for appending.
struct Output {
    out: std::fs::File,
    progress: std::fs::File,
    out_path: PathBuf,
    progress_path: PathBuf,
}

/// Open the output files, resuming from the progress file: returns them, the finished
/// prompts' progress entries and the kept lines written so far.
fn open_output(path: &Path) -> Result<(Output, Vec<PromptProgress>, Vec<SampleLine>)> {
    let progress_path = side_path(path, "progress.jsonl");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut done = Vec::new();
    let mut good_len = 0u64;
    if progress_path.is_file() {
        let f = std::fs::File::open(&progress_path).map_err(io_err(&progress_path))?;
        let mut reader = std::io::BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(io_err(&progress_path))?;
            // A line cut off by a kill (no newline, or not JSON) ends the valid prefix.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            // A complete line that is not a record is not a kill's doing: stop rather than
            // cut the output back to what it vouches for.
            let p = serde_json::from_str::<PromptProgress>(&line).map_err(|e| {
                TrainError::Invalid(format!(
                    "{} line {}: not a progress record ({e}); remove it and the output to start over",
                    progress_path.display(),
                    done.len() + 1
                ))
            })?;
            done.push(p);
            good_len += n as u64;
        }
    } else if path.metadata().is_ok_and(|m| m.len() > 0) {
        return Err(TrainError::Invalid(format!(
            "{} exists but {} does not, so it cannot be resumed: remove it or choose another output",
            path.display(),
            progress_path.display()
        )));
    }
    let out_len = done.last().map_or(0, |p| p.bytes);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(p)
            .map_err(io_err(p))
    };
    let mut out = open(path)?;
    let mut progress = open(&progress_path)?;
    let have = out.metadata().map_err(io_err(path))?.len();
    if have < out_len {
        return Err(TrainError::Invalid(format!(
            "{} is shorter ({have} bytes) than {} records ({out_len}): the files do not belong together",
            path.display(),
            progress_path.display()
        )));
    }
    // Drop whatever a killed run wrote after its last finished prompt.
    out.set_len(out_len).map_err(io_err(path))?;
    progress.set_len(good_len).map_err(io_err(&progress_path))?;
    out.seek(std::io::SeekFrom::End(0)).map_err(io_err(path))?;
    progress
        .seek(std::io::SeekFrom::End(0))
        .map_err(io_err(&progress_path))?;
    let kept: Vec<SampleLine> = if out_len > 0 {
        read_jsonl::<SampleLine>(path)?
            .into_iter()
            .filter(|l| l.kept)
            .collect()
    } else {
        Vec::new()
    };
    Ok((
        Output {
            out,
            progress,
            out_path: path.to_path_buf(),
            progress_path,
        },
        done,
        kept,
    ))
}

impl Output {
    /// Append one finished prompt: its lines, flushed, then its progress line.
    fn append(
        &mut self,
        lines: &[SampleLine],
        write_dropped: bool,
        p: &mut PromptProgress,
    ) -> Result<()> {
        let mut text = String::new();
        for l in lines.iter().filter(|l| l.kept || write_dropped) {
            text.push_str(&to_line(l));
        }
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(io_err(&self.out_path))?;
        p.bytes = self.out.stream_position().map_err(io_err(&self.out_path))?;
        self.progress
            .write_all(to_line(p).as_bytes())
            .and_then(|_| self.progress.flush())
            .map_err(io_err(&self.progress_path))?;
        Ok(())
    }
}

/// Draw `cfg.gen.samples` completions per problem, score and filter them. With `out`, lines
/// are appended there as prompts finish (resuming a killed run, see the module doc) and the
/// stats are written to `FILE.stats.json`.
pub fn rejection_sample(
    model: &Model,
    tok: &Tokenizer,
    set: &ProblemSet,
    style: &PromptStyle,
    cfg: &SampleConfig,
    out: Option<&Path>,
) -> Result<SampleReport> {
    if cfg.gen.samples == 0 {
        return Err(TrainError::Invalid(
            "samples per prompt must be at least 1".into(),
        ));
    }
    if let Some((lo, hi)) = cfg.filters.pass_rate {
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return Err(TrainError::Invalid(format!(
                "pass-rate window [{lo}, {hi}] must satisfy 0 <= min <= max <= 1"
            )));
        }
    }
    let (mut output, done, mut kept) = match out {
        Some(p) => {
            let (o, d, k) = open_output(p)?;
            (Some(o), d, k)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    if let Some(p) = out {
        check_settings(p, cfg, set, &done)?;
    }
    let mut stats = SampleStats::default();
    let mut finished: HashSet<String> = HashSet::new();
    for p in &done {
        stats.add(p);
        finished.insert(p.problem_id.clone());
    }
    let bar = if cfg.progress {
        crate::trainer::progress_bar(set.problems.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.inc(
        set.problems
            .iter()
            .filter(|p| finished.contains(&p.id))
            .count() as u64,
    );
    let b = cfg.gen.batch_size.max(1);
    for chunk in 0..set.problems.len().div_ceil(b) {
        let problems = &set.problems[chunk * b..((chunk + 1) * b).min(set.problems.len())];
        if problems.iter().all(|p| finished.contains(&p.id)) {
            continue;
        }
        // The whole chunk is regenerated (same seed, same samples) even when part of it was
        // finished before a restart; only the unfinished prompts are written.
        let gens = generate_chunk(model, tok, set, style, cfg.script, &cfg.gen, chunk)?;
        for (p, (_, gens)) in problems.iter().zip(gens) {
            if !finished.insert(p.id.clone()) {
                continue;
            }
            let reasonings: Vec<String> = gens.iter().map(|g| g.scored.reasoning.clone()).collect();
            let mut lines: Vec<SampleLine> = gens
                .into_iter()
                .map(|g| SampleLine {
                    problem_id: p.id.clone(),
                    sample: g.sample,
                    prompt: p.question.clone(),
                    completion: g.text,
                    gold: p.gold.clone(),
                    correct: g.scored.correct,
                    rewards: Rewards {
                        accuracy: f32::from(u8::from(g.scored.correct)),
                        format: f32::from(u8::from(g.scored.formatted)),
                        language: g.scored.language_consistency,
                    },
                    tokens: g.tokens,
                    finish_reason: g.finish_reason,
                    kept: false,
                    dropped_by: None,
                })
                .collect();
            let mut progress = judge_prompt(&cfg.filters, &mut lines, &reasonings);
            if let Some(o) = output.as_mut() {
                o.append(&lines, cfg.write_dropped, &mut progress)?;
            }
            stats.add(&progress);
            kept.extend(lines.into_iter().filter(|l| l.kept));
            bar.inc(1);
        }
        bar.set_message(format!("kept {}/{}", stats.kept, stats.completions));
    }
    bar.finish_and_clear();
    if let Some(path) = out {
        let stats_path = side_path(path, "stats.json");
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "stats": stats,
            "config": cfg,
            "source": set.source,
            "template": style.name(),
        }))
        .unwrap_or_default()
            + "\n";
        aha_model::write_atomic(&stats_path, text.as_bytes())?;
    }
    Ok(SampleReport { kept, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(completion: &'a str, reasoning: &'a str) -> Candidate<'a> {
        Candidate {
            completion,
            reasoning,
            correct: true,
            formatted: true,
            language_consistency: 1.0,
        }
    }

    #[test]
    fn paragraphs_are_measured_between_blank_lines() {
        assert_eq!(longest_paragraph_chars(""), 0);
        assert_eq!(longest_paragraph_chars("abc"), 3);
        assert_eq!(longest_paragraph_chars("ab\ncd\n\nxyz"), 5);
        assert_eq!(longest_paragraph_chars("ab\n  \nabcd\n"), 4);
        assert_eq!(longest_paragraph_chars("héé"), 3);
    }

    #[test]
    fn each_filter_rejects_only_its_own_problem() {
        let all = Filters {
            keep_correct: true,
            require_format: true,
            max_language_mix: Some(0.2),
            max_paragraph_chars: Some(40),
            no_code: true,
            min_reasoning_words: Some(1),
            pass_rate: None,
        };
        let ok = cand("<think>short</think><answer>1</answer>", "short");
        assert!(failed_filters(&all, &ok).is_empty());
        let wrong = Candidate {
            correct: false,
            ..ok
        };
        assert_eq!(failed_filters(&all, &wrong), vec![Filter::Correct]);
        let unformatted = Candidate {
            formatted: false,
            ..ok
        };
        assert_eq!(failed_filters(&all, &unformatted), vec![Filter::Format]);
        let mixed = Candidate {
            language_consistency: 0.7,
            ..ok
        };
        assert_eq!(failed_filters(&all, &mixed), vec![Filter::LanguageMix]);
        let at_limit = Candidate {
            language_consistency: 0.8,
            ..ok
        };
        assert!(failed_filters(&all, &at_limit).is_empty());
        let long = cand("a paragraph of many, many more than forty characters", "x");
        assert_eq!(failed_filters(&all, &long), vec![Filter::LongParagraph]);
        let code = cand("x", "try:\n```py\nprint(1)\n```");
        assert_eq!(failed_filters(&all, &code), vec![Filter::CodeBlock]);
        // Nothing is filtered by default.
        let bad = Candidate {
            correct: false,
            formatted: false,
            language_consistency: 0.0,
            ..code
        };
        assert!(failed_filters(&Filters::default(), &bad).is_empty());
        assert_eq!(failed_filters(&all, &bad).len(), 4);
        let empty = cand("<think></think><answer>1</answer>", " \n ");
        assert_eq!(failed_filters(&all, &empty), vec![Filter::ShortReasoning]);
    }

    #[test]
    fn short_reasoning_counts_words_not_characters() {
        let f = Filters {
            min_reasoning_words: Some(5),
            ..Filters::default()
        };
        let direct = cand("x", "The answer is 29");
        let worked = cand("x", "3 * 8 + 5 is 24 + 5 is 29");
        let second = cand("x", "Ответ\t29");
        assert_eq!(failed_filters(&f, &direct), vec![Filter::ShortReasoning]);
        assert!(failed_filters(&f, &worked).is_empty());
        assert_eq!(failed_filters(&f, &second), vec![Filter::ShortReasoning]);
        let at_limit = cand("x", "one two three four five");
        assert!(failed_filters(&f, &at_limit).is_empty());
    }

    #[test]
    fn language_mix_uses_the_language_reward() {
        let score = |s: &str| {
            aha_reward::RewardFn::Language {
                script: Script::Latin,
            }
            .score(s, None)
        };
        let pure = "<think>add the two numbers then double</think><answer>4</answer>";
        let mixed = "<think>add the два numbers затем double</think><answer>4</answer>";
        assert_eq!(language_mix(score(pure)), 0.0);
        let m = language_mix(score(mixed));
        assert!((m - 2.0 / 6.0).abs() < 1e-6, "{m}");
    }

    #[test]
    fn pass_rate_window_is_inclusive() {
        assert!(in_pass_rate_window(1, 4, (0.25, 0.75)));
        assert!(in_pass_rate_window(3, 4, (0.25, 0.75)));
        assert!(!in_pass_rate_window(0, 4, (0.25, 0.75)));
        assert!(!in_pass_rate_window(4, 4, (0.25, 0.75)));
        assert!(in_pass_rate_window(1, 3, (0.333, 1.0)));
    }

    fn line(id: &str, sample: usize, correct: bool, completion: &str) -> SampleLine {
        SampleLine {
            problem_id: id.into(),
            sample,
            prompt: "q".into(),
            completion: completion.into(),
            gold: "1".into(),
            correct,
            rewards: Rewards {
                accuracy: f32::from(u8::from(correct)),
                format: 1.0,
                language: 1.0,
            },
            tokens: 3,
            finish_reason: FinishReason::Stop,
            kept: false,
            dropped_by: None,
        }
    }

    #[test]
    fn judging_a_prompt_attributes_each_drop_to_its_first_filter() {
        let f = Filters {
            keep_correct: true,
            no_code: true,
            pass_rate: Some((0.5, 1.0)),
            ..Filters::default()
        };
        let mut lines = vec![
            line("p", 0, true, "a"),
            line("p", 1, false, "b"),
            line("p", 2, true, "c"),
            line("p", 3, false, "d"),
        ];
        let reasonings = vec!["ok".into(), "ok".into(), "```".into(), "```".into()];
        let p = judge_prompt(&f, &mut lines, &reasonings);
        let kept: Vec<bool> = lines.iter().map(|l| l.kept).collect();
        assert_eq!(kept, vec![true, false, false, false]);
        assert_eq!(lines[1].dropped_by, Some(Filter::Correct));
        assert_eq!(lines[2].dropped_by, Some(Filter::CodeBlock));
        assert_eq!(lines[3].dropped_by, Some(Filter::Correct));
        assert_eq!((p.correct, p.kept), (2, 1));
        assert_eq!(p.dropped_by[&Filter::Correct], 2);
        assert_eq!(p.rejected_by[&Filter::CodeBlock], 2);
        // Pass rate 2/4 outside [0.75, 1]: everything goes, attributed to the window.
        let f = Filters {
            pass_rate: Some((0.75, 1.0)),
            ..f
        };
        let p = judge_prompt(&f, &mut lines, &reasonings);
        assert_eq!(p.kept, 0);
        assert_eq!(p.dropped_by[&Filter::PassRate], 4);
        assert!(lines.iter().all(|l| l.dropped_by == Some(Filter::PassRate)));
    }
}
