//! Prints the cases of a labelled JSONL set whose verdict differs from the
//! label, with what was extracted, then per-category accuracy.
//!
//! `cargo run --release -p aha-reward --example misses -- FILE.jsonl`
use aha_reward::batch::verify_json_line;
use aha_reward::ExtractConfig;
use std::collections::BTreeMap;

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: misses FILE.jsonl");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(path)?;
    let cfg = ExtractConfig::default();
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut fa, mut neg) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let o = verify_json_line(line, &cfg);
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let cat = v["category"].as_str().unwrap_or("?").to_string();
        let e = per.entry(cat).or_default();
        e.1 += 1;
        let expected = o.expected.unwrap_or(!o.verdict);
        if !expected {
            neg += 1;
            fa += usize::from(o.verdict);
        }
        if o.verdict == expected {
            e.0 += 1;
        } else {
            println!("{}", o.json);
        }
    }
    let (mut ok, mut n) = (0, 0);
    for (c, (a, t)) in &per {
        println!("{c:36} {a:4}/{t:<4} {:.3}", *a as f64 / *t as f64);
        ok += a;
        n += t;
    }
    println!(
        "all {ok}/{n} {:.3}; false accepts {fa}/{neg}",
        ok as f64 / n as f64
    );
    Ok(())
}
