//! `aha distill` on tiny pretrained bases: a teacher into a smaller student sharing its
//! tokenizer, sequence level (SFT on the teacher's samples) and logit level (on-policy), the
//! files it promises, and a clear error for students with another tokenizer.

use std::path::Path;

use crate::common::run as aha;

/// Runs `aha`, requiring success; its stderr (where the commands report).
fn ok(args: &[&str]) -> String {
    crate::common::stderr(&crate::common::ok(args))
}

fn pretrain(out: &Path, hidden: &str, layers: &str, vocab: &str) {
    ok(&[
        "--threads",
        "2",
        "pretrain",
        "--out",
        out.to_str().unwrap(),
        "--task",
        "arithmetic:1",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--vocab",
        vocab,
        "--eval-n",
        "0",
        "--hidden",
        hidden,
        "--layers",
        layers,
    ]);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn distill_sequence_and_logit_into_a_smaller_student() {
    let dir = tempfile::tempdir().unwrap();
    let (teacher, student, other) = (
        dir.path().join("teacher"),
        dir.path().join("student"),
        dir.path().join("other"),
    );
    pretrain(&teacher, "64", "2", "300");
    pretrain(&student, "32", "1", "300");
    let run = |out: &Path, student: &Path, extra: &[&str]| {
        let mut args = vec![
            "--threads",
            "2",
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--student",
            student.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--task",
            "arithmetic:1",
            "--n",
            "4",
            "--samples",
            "2",
            "--max-tokens",
            "12",
            // A 3-step base is never correct: keep every sample to exercise the path.
            "--keep",
            "all",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--micro-batch",
            "2",
        ];
        args.extend(extra);
        aha(&args)
    };

    let seq = dir.path().join("seq");
    let out = run(&seq, &student, &["--mode", "sequence"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fin = seq.join("final");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(fin.join(f).is_file(), "final/ has no {f}");
    }
    // The student keeps its own (smaller) shape.
    assert_eq!(
        json(&fin.join("config.json"))["hidden_size"],
        json(&student.join("config.json"))["hidden_size"]
    );
    assert_ne!(
        json(&fin.join("config.json"))["hidden_size"],
        json(&teacher.join("config.json"))["hidden_size"]
    );
    assert!(seq.join("loss.png").is_file());
    let samples = std::fs::read_to_string(seq.join("teacher_samples.jsonl")).unwrap();
    let kept = samples.lines().count();
    assert_eq!(kept, 8, "4 prompts x 2 samples, all kept");
    let report = json(&seq.join("report.json"));
    assert_eq!(report["mode"], "sequence");
    assert_eq!(report["data"]["examples"], kept);
    // 8 sequences in batches of 4 for 2 epochs.
    let m = metrics(&seq);
    assert_eq!(m.len(), 4);
    assert_eq!(report["report"]["steps"], 4);
    assert!(m.iter().all(|l| l["loss"].as_f64().unwrap().is_finite()));
    // Resuming the finished run samples and trains nothing new.
    let out = run(&seq, &student, &["--mode", "sequence", "--resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(metrics(&seq).len(), 4);
    assert_eq!(
        std::fs::read_to_string(seq.join("teacher_samples.jsonl")).unwrap(),
        samples
    );
    // The trained student loads and generates.
    ok(&[
        "generate",
        "--model",
        fin.to_str().unwrap(),
        "--prompt",
        "1 + 1",
        "--max-tokens",
        "4",
    ]);

    // Logit level, half the steps on-policy: the teacher scores the student's samples.
    let logit = dir.path().join("logit");
    let out = run(
        &logit,
        &student,
        &["--mode", "logit", "--lambda", "0.5", "--lr", "1e-2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = metrics(&logit);
    assert_eq!(m.len(), 4);
    let on_policy = m.iter().filter(|l| l["source"] == "student").count();
    assert_eq!(
        json(&logit.join("report.json"))["report"]["on_policy_steps"],
        on_policy
    );
    assert!(logit.join("final/model.safetensors").is_file());
    assert!(logit.join("loss.png").is_file());

    // Logit level on a dataset's own completions (rendered with the student's chat
    // template), scored by the teacher as they are: no teacher samples.
    let data = dir.path().join("data.jsonl");
    let row = r#"{"prompt": "Compute 1 + 2.", "completion": "<think> 1 + 2 = 3 </think> <answer> 3 </answer>"}"#;
    std::fs::write(&data, format!("{row}\n{row}\n{row}\n")).unwrap();
    let from_data = dir.path().join("from_data");
    ok(&[
        "--threads",
        "2",
        "distill",
        "--teacher",
        teacher.to_str().unwrap(),
        "--student",
        student.to_str().unwrap(),
        "--out",
        from_data.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--mode",
        "logit",
        "--epochs",
        "2",
        "--batch-size",
        "2",
    ]);
    assert!(!from_data.join("teacher_samples.jsonl").exists());
    let m = metrics(&from_data);
    assert_eq!(m.len(), 4, "3 rows in batches of 2, 2 epochs");
    assert!(m.iter().all(|l| l["source"] == "dataset"));
    assert!(from_data.join("final/tokenizer.json").is_file());

    // Another tokenizer: a clear error before any training.
    pretrain(&other, "32", "1", "200");
    let bad = dir.path().join("bad");
    let out = run(&bad, &other, &["--mode", "sequence"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("same tokenizer"), "{err}");
    assert!(!bad.join("final").exists());
}
