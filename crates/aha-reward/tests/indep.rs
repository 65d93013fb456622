//! The independent labelled sets (issue #16, scripts/verify/make_indep.py,
//! make_fresh.py and make_blind.py) and the
//! cases ported from math-verify's own test suite: accuracy per set and per class,
//! false accepts, a per-case time bound and thread independence.
use aha_reward::batch::verify_json_line;
use aha_reward::ExtractConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const INDEP: &str = include_str!("data/indep.jsonl");
const HELDOUT: &str = include_str!("data/indep_heldout.jsonl");
/// Written without access to the verifier (scripts/verify/make_fresh.py); held out until
/// measured once (0.953), a development set since.
const FRESH: &str = include_str!("data/fresh_heldout.jsonl");
/// Written the same way later (scripts/verify/make_blind.py); measured once before any
/// change (0.958, false accepts 8.2%: rounded decimals for exact answers, truncated
/// responses), a development set since.
const BLIND: &str = include_str!("data/blind.jsonl");
const SUITE: &str = include_str!("data/mathverify_suite.jsonl");

/// Unoptimised test builds are ~10x slower than release.
const CASE_LIMIT: Duration = Duration::from_millis(500);

struct Score {
    n: usize,
    right: usize,
    wrong_labels: usize,
    false_accepts: usize,
    /// Rows marked `aha_differs` (a documented deliberate difference from the
    /// label): how many, and how many of them aha gets "wrong".
    differs: usize,
    differs_missed: usize,
    /// False accepts and wrong labels outside the `aha_differs` rows.
    plain_false_accepts: usize,
    plain_wrong_labels: usize,
    per_class: BTreeMap<String, (usize, usize)>,
    misses: Vec<String>,
}

fn score(set: &str) -> Score {
    let cfg = ExtractConfig::default();
    let mut s = Score {
        n: 0,
        right: 0,
        wrong_labels: 0,
        false_accepts: 0,
        differs: 0,
        differs_missed: 0,
        plain_false_accepts: 0,
        plain_wrong_labels: 0,
        per_class: BTreeMap::new(),
        misses: Vec::new(),
    };
    for line in set.lines().filter(|l| !l.trim().is_empty()) {
        let t = Instant::now();
        let out = verify_json_line(line, &cfg);
        assert!(
            t.elapsed() < CASE_LIMIT,
            "slow case: {}",
            &line[..line.len().min(120)]
        );
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let class = v["category"].as_str().unwrap_or("?").to_string();
        let Some(expected) = out.expected else {
            panic!("unlabelled case: {line}");
        };
        s.n += 1;
        let e = s.per_class.entry(class).or_default();
        e.1 += 1;
        let differs = v.get("aha_differs").is_some();
        s.differs += usize::from(differs);
        s.differs_missed += usize::from(differs && out.verdict != expected);
        if !expected {
            s.wrong_labels += 1;
            s.false_accepts += usize::from(out.verdict);
            if !differs {
                s.plain_wrong_labels += 1;
                s.plain_false_accepts += usize::from(out.verdict);
            }
        }
        if out.verdict == expected {
            s.right += 1;
            e.0 += 1;
        } else {
            s.misses.push(out.json.chars().take(300).collect());
        }
    }
    s
}

#[test]
fn independent_set_accuracy() {
    let s = score(INDEP);
    assert!(s.n >= 600, "only {} cases", s.n);
    let acc = s.right as f64 / s.n as f64;
    let fa = s.false_accepts as f64 / s.wrong_labels as f64;
    let report = format!(
        "accuracy {acc:.3}, false accepts {}/{}; per class {:?}; misses:\n{}",
        s.false_accepts,
        s.wrong_labels,
        s.per_class,
        s.misses.join("\n")
    );
    assert!(acc >= 0.98, "{report}");
    assert!(fa < 0.01, "{report}");
    for (class, (right, n)) in &s.per_class {
        assert!(
            *right as f64 / *n as f64 >= 0.95,
            "class {class}: {right}/{n}\n{report}"
        );
    }
}

#[test]
fn heldout_set_accuracy() {
    for (set, min_n) in [(HELDOUT, 300), (FRESH, 350), (BLIND, 500)] {
        heldout_floor(set, min_n);
    }
}

fn heldout_floor(set: &str, min_n: usize) {
    let s = score(set);
    assert!(s.n >= min_n, "only {} cases", s.n);
    let acc = s.right as f64 / s.n as f64;
    let fa = s.false_accepts as f64 / s.wrong_labels as f64;
    let report = format!(
        "accuracy {acc:.3}, false accepts {}/{}; misses:\n{}",
        s.false_accepts,
        s.wrong_labels,
        s.misses.join("\n")
    );
    assert!(acc >= 0.98, "{report}");
    assert!(fa < 0.01, "{report}");
}

#[test]
fn mathverify_suite_accuracy() {
    let s = score(SUITE);
    assert!(s.n >= 250, "only {} cases", s.n);
    let acc = s.right as f64 / s.n as f64;
    let report = format!(
        "accuracy {acc:.3}, false accepts {}/{} ({}/{} outside aha_differs rows); misses:\n{}",
        s.false_accepts,
        s.wrong_labels,
        s.plain_false_accepts,
        s.plain_wrong_labels,
        s.misses.join("\n")
    );
    // Every miss must be a documented deliberate difference (`aha_differs`,
    // reasons in the data and in docs/benchmarks.md); those rows count as
    // misses in the accuracy.
    assert!(acc >= 0.98, "{report}");
    assert_eq!(s.misses.len(), s.differs_missed, "{report}");
    assert!(s.differs <= 6, "{report}");
    let fa = s.plain_false_accepts as f64 / s.plain_wrong_labels as f64;
    assert!(fa < 0.01, "{report}");
}

#[test]
fn independent_verdicts_are_thread_independent() {
    use rayon::prelude::*;
    let cfg = ExtractConfig::default();
    let lines: Vec<&str> = INDEP
        .lines()
        .chain(HELDOUT.lines())
        .chain(SUITE.lines())
        .collect();
    let seq: Vec<bool> = lines
        .iter()
        .map(|l| verify_json_line(l, &cfg).verdict)
        .collect();
    let par: Vec<bool> = lines
        .par_iter()
        .map(|l| verify_json_line(l, &cfg).verdict)
        .collect();
    assert_eq!(seq, par);
}
