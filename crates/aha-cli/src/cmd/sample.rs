//! `aha sample`: rejection sampling. k completions per prompt (prefill shared), scored and
//! filtered as in the R1 paper; kept ones go to the output JSONL, counts per filter to
//! FILE.stats.json. Resumable: rerun the same command after a kill.

use super::eval::{prepare, ProblemArgs};
use aha_train::sample::{rejection_sample, Filter, Filters, SampleConfig, SampleStats};
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Keep {
    /// Every completion (subject to the other filters).
    All,
    /// Only verified-correct completions.
    Correct,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Problems and generation (a --task draws its training problems, never held-out ones).
    #[command(flatten)]
    problems: ProblemArgs,
    /// Output JSONL: one line per kept completion ({problem_id, sample, prompt, completion,
    /// correct, rewards, kept, dropped_by}); FILE.progress.jsonl and FILE.stats.json beside it.
    /// An unfinished run with the same output resumes.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "all")]
    keep: Keep,
    /// Drop completions with more than this share of reasoning words outside the --language
    /// script (0.1: at most 10%).
    #[arg(long)]
    max_language_mix: Option<f32>,
    /// Drop completions with a paragraph (text between blank lines) longer than this many chars.
    #[arg(long)]
    max_paragraph_chars: Option<usize>,
    /// Drop completions with a ``` code block in the reasoning.
    #[arg(long)]
    no_code: bool,
    /// Drop completions with missing or malformed <think>/<answer> tags.
    #[arg(long)]
    require_format: bool,
    /// Drop completions whose reasoning has fewer than this many words (answers without
    /// working; R1's cold start keeps long chains of thought only).
    #[arg(long, value_name = "N")]
    min_reasoning_words: Option<usize>,
    /// Keep only prompts whose pass rate over the k samples lies in MIN,MAX (e.g. 0.1,0.9).
    #[arg(long, value_name = "MIN,MAX", value_parser = parse_window)]
    pass_rate: Option<(f64, f64)>,
    /// Also write dropped completions (kept: false, with dropped_by) to the output.
    #[arg(long)]
    write_dropped: bool,
}

fn parse_window(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected MIN,MAX, got {s:?}"))?;
    let p = |x: &str| x.trim().parse::<f64>().map_err(|e| format!("{x:?}: {e}"));
    let (lo, hi) = (p(a)?, p(b)?);
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(format!("need 0 <= MIN <= MAX <= 1, got {lo},{hi}"));
    }
    Ok((lo, hi))
}

pub fn run(args: SampleArgs) -> Result<()> {
    // Said before the model loads; the OS would say only "Is a directory" after.
    let out = args.out.to_string_lossy();
    if args.out.is_dir() || out.ends_with(std::path::MAIN_SEPARATOR) {
        anyhow::bail!(
            "--out {out}: a directory; --out must be a file path (the JSONL of kept \
             completions, with FILE.stats.json beside it), e.g. {}",
            args.out.join("kept.jsonl").display()
        );
    }
    let p = prepare(&args.problems, true)?;
    let cfg = SampleConfig {
        gen: p.gen.clone(),
        script: p.script,
        filters: Filters {
            keep_correct: args.keep == Keep::Correct,
            require_format: args.require_format,
            max_language_mix: args.max_language_mix,
            max_paragraph_chars: args.max_paragraph_chars,
            no_code: args.no_code,
            min_reasoning_words: args.min_reasoning_words,
            pass_rate: args.pass_rate,
        },
        write_dropped: args.write_dropped,
        progress: true,
    };
    let report = rejection_sample(
        &p.loaded.model,
        p.tokenizer()?,
        &p.set,
        &p.style(),
        &cfg,
        Some(&args.out),
    )?;
    print_stats(&report.stats);
    println!(
        "wrote {} (stats: {})",
        args.out.display(),
        aha_train::sample::side_path(&args.out, "stats.json").display()
    );
    Ok(())
}

fn print_stats(s: &SampleStats) {
    println!(
        "{} prompts, {} completions, {} correct; kept {} ({} prompts with a kept one), dropped {}",
        s.prompts, s.completions, s.correct, s.kept, s.prompts_with_kept, s.dropped
    );
    println!("{:<16} {:>12} {:>12}", "filter", "dropped by", "rejects");
    for f in Filter::ALL {
        let d = s.dropped_by.get(&f).copied().unwrap_or(0);
        let r = s.rejected_by.get(&f).copied().unwrap_or(0);
        println!("{:<16} {:>12} {:>12}", f.name(), d, r);
    }
}
