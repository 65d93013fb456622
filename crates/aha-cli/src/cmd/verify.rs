//! `aha verify`: check model answers against gold answers.
//!
//! `aha verify --gold G --prediction P` prints the verdict and both extracted
//! answers; `aha verify --jsonl FILE` annotates every line with `verdict` and
//! `extracted`, in input order, using all cores.
use aha_reward::batch::{verify_json_line, LineOutcome};
use aha_reward::{verify_with, ExtractConfig};
use anyhow::Context;
use clap::Args;
use rayon::prelude::*;
use std::io::{BufRead, BufWriter, Write};
use std::time::Instant;

#[derive(Args)]
pub struct VerifyArgs {
    /// Gold answer (a bare answer, a `\boxed{}` solution or a GSM8K `#### N` solution).
    #[arg(long, requires = "prediction", conflicts_with = "jsonl")]
    pub gold: Option<String>,
    /// Model response or answer to check.
    #[arg(long, requires = "gold")]
    pub prediction: Option<String>,
    /// JSONL file with `gold` and `prediction` fields (`-` for stdin).
    #[arg(long)]
    pub jsonl: Option<String>,
    /// Where to write annotated lines (default: stdout).
    #[arg(long, short)]
    pub output: Option<String>,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not fall back to the last number of a response.
    #[arg(long)]
    pub strict: bool,
}

/// Lines per parallel batch: big enough to keep cores busy, small enough to
/// stream huge files.
const CHUNK: usize = 8192;

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let cfg = if args.strict {
        ExtractConfig::strict()
    } else {
        ExtractConfig::default()
    };
    match (&args.gold, &args.prediction, &args.jsonl) {
        (Some(g), Some(p), None) => {
            let v = verify_with(g, p, &cfg);
            println!("verdict: {}", v.correct);
            println!("gold: {}", v.gold);
            match &v.predicted {
                Some(e) => println!("prediction: {} (from {:?})", e.answer, e.source),
                None => println!("prediction: <none extracted>"),
            }
            Ok(())
        }
        (None, None, Some(path)) => run_jsonl(path, args.output.as_deref(), args.threads, &cfg),
        _ => anyhow::bail!("give either --gold and --prediction, or --jsonl FILE"),
    }
}

fn run_jsonl(
    path: &str,
    output: Option<&str>,
    threads: usize,
    cfg: &ExtractConfig,
) -> anyhow::Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building the thread pool")?;
    let input: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        Box::new(std::io::BufReader::new(f))
    };
    let out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {p}"))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let start = Instant::now();
    let (mut n, mut correct, mut labelled, mut agree) = (0usize, 0usize, 0usize, 0usize);
    let mut lines = input.lines();
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        for line in lines.by_ref() {
            let line = line.context("reading input")?;
            if line.trim().is_empty() {
                continue;
            }
            chunk.push(line);
            if chunk.len() == CHUNK {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        let results: Vec<LineOutcome> =
            pool.install(|| chunk.par_iter().map(|l| verify_json_line(l, cfg)).collect());
        for r in results {
            n += 1;
            correct += usize::from(r.verdict);
            if let Some(e) = r.expected {
                labelled += 1;
                agree += usize::from(e == r.verdict);
            }
            writeln!(out, "{}", r.json)?;
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "verified {n} lines in {secs:.3}s ({:.0} lines/s): {correct} correct",
        n as f64 / secs.max(1e-9)
    );
    if labelled > 0 {
        eprintln!(
            "agreement with `expected`: {agree}/{labelled} = {:.4}",
            agree as f64 / labelled as f64
        );
    }
    Ok(())
}
