//! Times `aha verify`'s per-line work on one thread, case by case.
//!
//! `cargo run --release -p aha-reward --example bench -- FILE.jsonl [passes]`
//! prints one `{"i", "verdict", "us"}` line per case (last pass) and a
//! summary on stderr. Used by scripts/verify/sidebyside.py.
use aha_reward::batch::verify_json_line;
use aha_reward::ExtractConfig;
use std::io::Write;
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: bench FILE.jsonl [passes]");
        std::process::exit(2);
    };
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let cfg = ExtractConfig::default();
    let mut results = Vec::new();
    let mut best_total = f64::INFINITY;
    for _ in 0..passes {
        let mut pass = Vec::with_capacity(lines.len());
        let start = Instant::now();
        for l in &lines {
            let t = Instant::now();
            let o = verify_json_line(l, &cfg);
            pass.push((o.verdict, t.elapsed().as_micros()));
        }
        best_total = best_total.min(start.elapsed().as_secs_f64());
        results = pass;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, (v, us)) in results.iter().enumerate() {
        writeln!(out, "{{\"i\":{i},\"verdict\":{v},\"us\":{us}}}")?;
    }
    let max_us = results.iter().map(|r| r.1).max().unwrap_or(0);
    eprintln!(
        "{} cases, best of {passes} passes: {:.4}s ({:.0} cases/s), slowest case {:.3} ms",
        lines.len(),
        best_total,
        lines.len() as f64 / best_total.max(1e-9),
        max_us as f64 / 1000.0
    );
    Ok(())
}
