//! `aha pipeline`: the whole DeepSeek-R1 recipe on a built-in task (base, R1-Zero, cold
//! start, reasoning RL, rejection sampling + SFT, R1, and distillation into a smaller student
//! against RL alone), each stage evaluated the same way; a table and `summary.json` at the end.

use crate::plot::line_chart;
use aha_train::grpo::StepMetrics;
use aha_train::pipeline::{self, Finding, Observer, PipelineConfig, StageSummary};
use aha_train::tasks::Task;
use anyhow::{Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PipelineArgs {
    /// Output directory: one folder per stage (model, metrics, eval samples and results),
    /// plots, config.json, summary.json and findings.json (the paper's findings checked).
    #[arg(long, default_value = "runs/pipeline")]
    out: PathBuf,
    /// Every setting of the recipe as JSON, in the shape `--print-config` prints (top-level
    /// fields left out keep their defaults); the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Built-in task, optionally with a difficulty [default: arithmetic:2]: arithmetic,
    /// countdown, json (answers in JSON) or tool (answers with a call; its accuracy is the
    /// tool-call reward).
    #[arg(long)]
    task: Option<Task>,
    /// [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Held-out problems every stage is evaluated on [default: 200].
    #[arg(long)]
    eval_n: Option<usize>,
    /// Samples per held-out problem (pass@1 is their mean, cons@k their majority vote)
    /// [default: 4].
    #[arg(long)]
    eval_k: Option<usize>,
    /// Scale every stage's RL steps by this factor (e.g. 0.1 for a quick smoke run).
    #[arg(long, default_value_t = 1.0)]
    rl_scale: f64,
    /// Where pretrained bases are cached (reused across runs).
    /// Default: $XDG_CACHE_HOME/aha, else ~/.cache/aha, the same from any directory.
    #[arg(long, env = "AHA_CACHE", default_value_os_t = super::common::default_cache_dir())]
    cache: PathBuf,
    /// Print the configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

/// Progress bars per RL stage, the RL metrics kept for the plots, and the findings to print
/// after the table.
struct Cli {
    bar: Option<indicatif::ProgressBar>,
    rl: BTreeMap<String, Vec<StepMetrics>>,
    findings: Vec<Finding>,
}

impl Observer for Cli {
    fn stage_started(&mut self, name: &str, what: &str) {
        eprintln!("== {name}: {what}");
    }
    fn rl_step(&mut self, stage: &str, m: &StepMetrics, total: u64) {
        let bar = self
            .bar
            .get_or_insert_with(|| aha_train::trainer::progress_bar(total));
        bar.set_message(format!(
            "reward {:.2} acc {:.0}% format {:.0}% len {:.1}",
            m.reward_mean,
            100.0 * m.accuracy.unwrap_or(0.0),
            100.0 * m.format_rate.unwrap_or(0.0),
            m.completion_len_mean
        ));
        bar.inc(1);
        self.rl
            .entry(stage.to_string())
            .or_default()
            .push(m.clone());
    }
    fn warning(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn findings(&mut self, findings: &[Finding]) {
        self.findings = findings.to_vec();
    }
    fn stage_done(&mut self, s: &StageSummary, dir: &Path) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(h) = self.rl.get(&s.name) {
            super::zero::plot_history(dir, h);
        }
        eprintln!(
            "   {}: pass@1 {:.1}%  cons@{} {:.1}%  format {:.0}%  language {:.2}  length {:.1}  ({:.0} s)",
            s.name,
            100.0 * s.pass1,
            s.k,
            100.0 * s.cons,
            100.0 * s.format_rate,
            s.language_consistency,
            s.mean_length,
            s.wall_seconds
        );
    }
}

/// The first key of `given` (nested objects) that `known` does not have, as a dotted path.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value, at: &str) -> Option<String> {
    given.as_object()?.iter().find_map(|(k, v)| {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match known.get(k) {
            None => Some(path),
            Some(inner) if inner.is_object() => unknown_key(v, inner, &path),
            Some(_) => None,
        }
    })
}

pub fn run(args: PipelineArgs) -> Result<()> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let given: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            anyhow::ensure!(
                given.is_object(),
                "{}: a pipeline config is a JSON object (`aha pipeline --print-config` prints one)",
                path.display()
            );
            let cfg = serde_json::from_value::<PipelineConfig>(given.clone())
                .with_context(|| format!("{}: not a pipeline config", path.display()))?;
            // A misspelt setting took its default without a word.
            unknown_key(&given, &serde_json::to_value(&cfg)?, "").map_or(Ok(()), |k| {
                Err(anyhow::anyhow!(
                    "{}: no setting {k} (`aha pipeline --print-config` shows them all)",
                    path.display()
                ))
            })?;
            cfg
        }
        None => PipelineConfig::default(),
    };
    if let Some(t) = args.task {
        cfg.task = t;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(n) = args.eval_n {
        cfg.eval_n = n;
    }
    if let Some(k) = args.eval_k {
        cfg.eval_k = k;
    }
    anyhow::ensure!(args.rl_scale > 0.0, "--rl-scale must be positive");
    for rl in [
        &mut cfg.zero,
        &mut cfg.reasoning_rl,
        &mut cfg.r1,
        &mut cfg.student_rl,
    ] {
        rl.steps = ((rl.steps as f64 * args.rl_scale).round() as u64).max(1);
    }
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let mut obs = Cli {
        bar: None,
        rl: BTreeMap::new(),
        findings: Vec::new(),
    };
    let summary =
        pipeline::run(&cfg, &args.out, &args.cache, &mut obs).context("running the R1 recipe")?;
    plot_lengths(&args.out, &obs.rl);

    println!(
        "\n{:<18} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7}",
        "stage", "pass@1", "cons@k", "format", "language", "length", "params", "time"
    );
    for s in &summary.stages {
        println!(
            "{:<18} {:>6.1}% {:>6.1}% {:>6.0}% {:>9.2} {:>7.1} {:>9} {:>6.0}s",
            s.name,
            100.0 * s.pass1,
            100.0 * s.cons,
            100.0 * s.format_rate,
            s.language_consistency,
            s.mean_length,
            s.params,
            s.wall_seconds
        );
    }
    println!(
        "\n{} held-out problems x {} samples (T=0.6, top-p 0.95) per stage; {:.0} s in all; summary.json in {}",
        cfg.eval_n,
        cfg.eval_k,
        summary.wall_seconds,
        args.out.display()
    );
    println!("\nThe paper's findings on this run (findings.json):");
    for f in &obs.findings {
        let mark = if f.holds { "holds" } else { "NOT  " };
        println!("  {mark}  {}: {}", f.claim, f.measured);
    }
    Ok(())
}

fn series(h: &[StepMetrics], f: impl Fn(&StepMetrics) -> f64) -> Vec<(f64, f64)> {
    h.iter().map(|m| (m.step as f64, f(m))).collect()
}

/// Response length over every RL stage, one line each.
fn plot_lengths(out: &Path, rl: &BTreeMap<String, Vec<StepMetrics>>) {
    let lines: Vec<(&str, Vec<(f64, f64)>)> = rl
        .iter()
        .map(|(name, h)| (name.as_str(), series(h, |m| m.completion_len_mean as f64)))
        .collect();
    if let Err(e) = line_chart(
        &out.join("length.png"),
        "Response length during the RL stages",
        "tokens",
        &lines,
    ) {
        eprintln!("warning: length.png not drawn: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_setting_is_named() {
        let known = serde_json::to_value(PipelineConfig::default()).unwrap();
        let given = serde_json::json!({"seed": 1, "zero": {"steps": 3, "lrr": 1.0}});
        assert_eq!(unknown_key(&given, &known, ""), Some("zero.lrr".into()));
        let given = serde_json::json!({"seed": 1, "nosuch": 1});
        assert_eq!(unknown_key(&given, &known, ""), Some("nosuch".into()));
        assert_eq!(unknown_key(&known, &known, ""), None);
    }
}
