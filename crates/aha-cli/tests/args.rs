//! Numeric flags out of their range are refused by name before any work (a NaN learning rate
//! used to train to the end and save a NaN model; a top-p of 2 sampled garbage).

use crate::common::{run, stderr};

#[test]
fn out_of_range_flags_are_refused_by_name() {
    for (args, flag) in [
        (&["generate", "--temperature", "nan"][..], "--temperature"),
        (&["generate", "--top-p", "2"], "--top-p"),
        (&["generate", "--min-p=-0.5"], "--min-p"),
        (&["chat", "--temperature=-1"], "--temperature"),
        (&["eval", "--top-p", "0"], "--top-p"),
        (&["sft", "--lr", "nan"], "--lr"),
        (&["sft", "--eval-fraction", "1"], "--eval-fraction"),
        (&["sft", "--warmup-ratio", "2"], "--warmup-ratio"),
        (&["grpo", "--batch-prompts", "0"], "--batch-prompts"),
        (&["grpo", "--beta=-1"], "--beta"),
        (&["grpo", "--eps-low", "1"], "--eps-low"),
        (&["zero", "--lr", "inf"], "--lr"),
        (&["pretrain", "--batch-size", "0"], "--batch-size"),
        (&["pretrain", "--hidden", "0"], "--hidden"),
        (&["pretrain", "--hidden", "65"], "--hidden"),
        (&["pretrain", "--layers", "0"], "--layers"),
        (&["pretrain", "--vocab", "0"], "--vocab"),
        (&["bench", "sft", "--micro-batch", "0"], "--micro-batch"),
        (&["--threads", "100000", "verify"], "--threads"),
    ] {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "aha {args:?}: {err}");
        assert!(
            err.contains("invalid value") && err.contains(flag) && err.contains("must be"),
            "aha {args:?}: {err}"
        );
    }
    // In range, the same flags parse (the run then fails for the missing model, not them).
    let out = run(&[
        "generate",
        "--temperature",
        "0.6",
        "--top-p",
        "1",
        "--min-p",
        "0",
    ]);
    assert!(!stderr(&out).contains("invalid value"), "{}", stderr(&out));
}

#[test]
fn quantize_does_not_write_over_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, b"the source weights").unwrap();
    let (model, out) = (dir.path().to_str().unwrap(), weights.to_str().unwrap());
    let result = run(&["quantize", "--model", model, "--out", out]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("would overwrite"),
        "{}",
        stderr(&result)
    );
    assert_eq!(std::fs::read(&weights).unwrap(), b"the source weights");
}

/// `aha sample --out` names a file: a directory is refused before the model loads (it used to
/// fail after, on the OS's "Is a directory").
#[test]
fn sample_out_must_be_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let with_slash = format!("{}/new/", d);
    for out in [d, with_slash.as_str()] {
        let result = run(&[
            "sample",
            "--out",
            out,
            "--task",
            "arithmetic:1",
            "--model",
            "/nonexistent",
        ]);
        assert!(!result.status.success());
        let err = stderr(&result);
        assert!(
            err.contains("--out must be a file path") && err.contains("kept.jsonl"),
            "{err}"
        );
    }
}

/// `aha eval` on a dataset of `rows` (JSONL) with no model: it must fail before loading one.
/// The dataset's path and the error.
fn eval_refusal(rows: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, rows).unwrap();
    let d = data.to_str().unwrap();
    let result = run(&["eval", "--model", "/nonexistent", "--dataset", d]);
    assert!(!result.status.success());
    (d.to_string(), stderr(&result))
}

/// A dataset row whose gold answer the verifier cannot read is refused by file and line
/// before the model loads (it used to be scored wrong on every sample).
#[test]
fn eval_refuses_a_gold_it_cannot_read() {
    let (d, err) = eval_refusal(
        "{\"question\": \"1+1?\", \"answer\": \"1 + 1 = 2\\n#### 2\"}\n\
         {\"question\": \"2+2?\", \"answer\": \"2 + 2 = <<2+2=4>>4\"}\n",
    );
    assert!(
        err.contains(&format!("{d}: line 2: the answer"))
            && err.contains("no marked final answer")
            && err.contains("#### 42"),
        "{err}"
    );
}

/// A dataset of tool-call references needs a template that writes calls; without one it is
/// refused before the model loads, naming why.
#[test]
fn eval_refuses_tool_call_references_without_a_call_syntax() {
    let (_, err) = eval_refusal(
        "{\"question\": \"Weather?\", \"tool_calls\": [{\"name\": \"w\", \"arguments\": {}}]}\n",
    );
    assert!(
        err.contains("references are tool calls") && err.contains("--template chat"),
        "{err}"
    );
}
