//! The labelled dev set: every verdict must match its label.
use aha_reward::batch::verify_json_line;
use aha_reward::ExtractConfig;
use std::time::{Duration, Instant};

const DEVSET: &str = include_str!("data/devset.jsonl");

/// Unoptimised test builds are ~10x slower than release; the 50 ms goal is
/// measured in release by scripts/verify/sidebyside.py.
const CASE_LIMIT: Duration = Duration::from_millis(500);

#[test]
fn devset_verdicts_match_labels() {
    let cfg = ExtractConfig::default();
    let mut wrong = Vec::new();
    let mut slow = Vec::new();
    let mut n = 0;
    for line in DEVSET.lines().filter(|l| !l.trim().is_empty()) {
        n += 1;
        let t = Instant::now();
        let out = verify_json_line(line, &cfg);
        let dt = t.elapsed();
        let expected = out.expected.unwrap_or(!out.verdict);
        if out.verdict != expected {
            let short: String = out.json.chars().take(300).collect();
            wrong.push(short);
        }
        if dt > CASE_LIMIT {
            slow.push((dt, line.chars().take(120).collect::<String>()));
        }
    }
    assert!(n >= 400, "dev set has only {n} cases");
    assert!(slow.is_empty(), "slow cases: {slow:#?}");
    assert!(
        wrong.is_empty(),
        "{} of {n} verdicts differ from labels:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn megabyte_responses() {
    let filler = "We keep reasoning about 17 and 23. ".repeat(30_000);
    assert!(filler.len() > 1_000_000);
    let with_answer = format!("<think>{filler}</think><answer>\\boxed{{41}}</answer>");
    let t = Instant::now();
    assert!(aha_reward::verify("41", &with_answer).correct);
    assert!(!aha_reward::verify("40", &with_answer).correct);
    let boxes = "\\boxed{".repeat(200_000);
    assert!(!aha_reward::verify("1", &boxes).correct);
    let nul = "\0".repeat(1_000_000);
    assert!(!aha_reward::verify("0", &nul).correct);
    let rtl = "\u{202E}\u{05D0}".repeat(300_000) + "\\boxed{9}";
    assert!(aha_reward::verify("9", &rtl).correct);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn verdicts_are_thread_independent() {
    use rayon::prelude::*;
    let cfg = ExtractConfig::default();
    let lines: Vec<&str> = DEVSET.lines().collect();
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

#[test]
fn pathological_inputs_stay_cheap() {
    let nines = "9".repeat(16_000);
    let tower = vec!["2"; 300].join("^");
    let fracs = "\\frac{".repeat(1000) + "1" + &"}{2}".repeat(1000);
    let set_a = format!(
        "\\{{{}\\}}",
        (0..128)
            .map(|i| format!("\\sqrt{{{i}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let set_b = format!(
        "\\{{{}\\}}",
        (0..128)
            .rev()
            .map(|i| format!("\\sqrt{{{i}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cases: Vec<(String, String, bool)> = vec![
        ("3000!".into(), "2999!".into(), false),
        (
            "\\binom{100000}{3000}".into(),
            "\\binom{100000}{2999}".into(),
            false,
        ),
        ("2^{262000}".into(), "2^{262001}".into(), false),
        (nines.clone(), nines, true),
        ("1".into(), tower, false),
        ("1".into(), fracs, false),
        (set_a, set_b, true),
        ("x^{1000000}".into(), "x^{1000001}".into(), false),
        ("1".into(), "-".repeat(5000) + "1", false),
        ("1".into(), "|".repeat(3000), false),
    ];
    for (g, p, want) in cases {
        let t = Instant::now();
        let got = aha_reward::answers_equivalent(&g, &p);
        assert_eq!(
            got,
            want,
            "{} vs {}",
            &g[..g.len().min(40)],
            &p[..p.len().min(40)]
        );
        assert!(t.elapsed() < CASE_LIMIT, "slow: {}", &p[..p.len().min(40)]);
    }
}
