//! `aha eval` (with `--rescore`) and `aha sample` on a tiny base: the files they promise,
//! rescoring byte for byte, a rerun of a finished `aha sample` adding nothing, and a filter
//! counted in the stats.

fn aha(args: &[&str]) -> String {
    crate::common::stdout(&crate::common::ok(args))
}

#[test]
fn eval_rescore_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let ev = dir.path().join("eval");
    let kept = dir.path().join("kept.jsonl");
    let (base_s, ev_s, kept_s) = (
        base.to_str().unwrap(),
        ev.to_str().unwrap(),
        kept.to_str().unwrap(),
    );
    let tiny = [
        "--task",
        "arithmetic:1",
        "--steps",
        "3",
        "--batch-size",
        "4",
    ];
    let mut args = vec![
        "--threads",
        "2",
        "pretrain",
        "--out",
        base_s,
        "--eval-n",
        "0",
    ];
    args.extend(tiny);
    args.extend(["--hidden", "32", "--layers", "1"]);
    aha(&args);
    let common = [
        "--model",
        base_s,
        "--task",
        "arithmetic:1",
        "--n",
        "3",
        "--samples",
        "2",
        "--max-tokens",
        "12",
    ];
    let mut args = vec!["eval", "--out", ev_s];
    args.extend(common);
    let table = aha(&args);
    assert!(
        table.contains("pass@1") && table.contains("cons@2"),
        "{table}"
    );
    let results = std::fs::read(ev.join("results.json")).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&results).unwrap();
    assert_eq!(r["k"], 2);
    assert_eq!(r["n_problems"], 3);
    assert_eq!(r["config"]["temperature"], 0.6);
    let lines = std::fs::read_to_string(ev.join("samples.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6);
    aha(&["eval", "--rescore", ev_s]);
    assert_eq!(std::fs::read(ev.join("results.json")).unwrap(), results);

    let mut args = vec!["sample", "--out", kept_s, "--require-format"];
    args.extend(common);
    let table = aha(&args);
    assert!(table.contains("format"), "{table}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("kept.stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["stats"]["completions"], 6);
    let first = std::fs::read(&kept).unwrap();
    let n = String::from_utf8_lossy(&first).lines().count();
    assert_eq!(stats["stats"]["kept"], n);
    // Rerunning a finished run resumes to nothing new.
    aha(&args);
    assert_eq!(std::fs::read(&kept).unwrap(), first);

    // --min-reasoning-words: no 12-token completion has 1000 words of reasoning.
    let short = dir.path().join("short.jsonl");
    let mut args = vec![
        "sample",
        "--out",
        short.to_str().unwrap(),
        "--min-reasoning-words",
        "1000",
    ];
    args.extend(common);
    aha(&args);
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("short.stats.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stats["stats"]["kept"], 0, "{stats}");
    assert_eq!(
        stats["stats"]["dropped_by"]["short_reasoning"], 6,
        "{stats}"
    );
    assert_eq!(stats["config"]["filters"]["min_reasoning_words"], 1000);
}
