//! `aha pretrain` then `aha zero` end to end on a very small budget: the pipeline writes
//! everything it promises (metrics per step, plots, the final model, the summary).

use crate::common::ok as aha;

#[test]
fn pretrain_then_zero_writes_metrics_plots_model_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let run = dir.path().join("run");
    let (base_s, run_s) = (base.to_str().unwrap(), run.to_str().unwrap());
    aha(&[
        "--threads",
        "2",
        "pretrain",
        "--out",
        base_s,
        "--task",
        "arithmetic:1",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--hidden",
        "32",
        "--layers",
        "1",
        "--vocab",
        "300",
        "--eval-n",
        "0",
    ]);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(base.join(f).is_file(), "pretrain wrote no {f}");
    }
    let zero = |out: &str| {
        aha(&[
            "--threads",
            "2",
            "zero",
            "--base",
            base_s,
            "--task",
            "arithmetic:1",
            "--steps",
            "2",
            "--batch-prompts",
            "2",
            "--group-size",
            "2",
            "--max-tokens",
            "16",
            "--eval-n",
            "4",
            "--out",
            out,
        ])
    };
    zero(run_s);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["step"], 2);
    assert!(lines[0]["reward_mean"].is_number() && lines[0]["kl"].is_number());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 2);
    for k in ["base", "final"] {
        let acc = summary[k]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(summary[k]["format_rate"].is_number() && summary[k]["mean_length"].is_number());
        for m in ["pass@1", "cons@k", "format_rate_sampled"] {
            let v = summary[k][m].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} {m} {v}");
        }
        assert!(run.join(format!("eval-{k}/samples.jsonl")).is_file());
    }
    assert!(summary["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        run.join("model/model.safetensors").is_file() && run.join("model/tokenizer.json").is_file()
    );
    // The final model loads again.
    aha_model::Model::load(&run.join("model"), &Default::default()).unwrap();
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        for p in ["reward.png", "accuracy.png", "length.png", "kl.png"] {
            assert_eq!(&std::fs::read(run.join(p)).unwrap()[..4], b"\x89PNG", "{p}");
        }
    }

    // The same seed gives the same run: identical summary (but for the wall time) and
    // identical per-step metrics (but for the timings).
    let again = dir.path().join("again");
    zero(again.to_str().unwrap());
    let strip = |v: &mut serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| {
                !(k.starts_with("time_") || k.ends_with("_per_s") || k == "wall_seconds")
            });
        }
    };
    for f in ["summary.json", "metrics.jsonl"] {
        let parse = |d: &std::path::Path| -> Vec<serde_json::Value> {
            let text = std::fs::read_to_string(d.join(f)).unwrap();
            let mut vals: Vec<serde_json::Value> = if f.ends_with(".jsonl") {
                text.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            } else {
                vec![serde_json::from_str(&text).unwrap()]
            };
            vals.iter_mut().for_each(strip);
            vals
        };
        assert_eq!(
            parse(&run),
            parse(&again),
            "{f} differs between two runs with seed 0"
        );
    }
}
