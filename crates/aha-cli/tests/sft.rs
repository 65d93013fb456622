//! `aha sft` on chat rows with tool calls: the calls and each turn's end trained, the tool
//! results not (as `--dump-batches` writes the labels); a template that cannot write calls
//! refused by row.

use crate::common::{ok, run, stderr, tiny_model, HERMES_TEMPLATE};

/// The maximal runs of trained and untrained tokens of a dumped example, decoded.
fn runs(tok: &aha_text::Tokenizer, line: &str) -> Vec<(bool, String)> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let ids: Vec<u32> = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let labels: Vec<i64> = serde_json::from_value(v["labels"].clone()).unwrap();
    let mut out: Vec<(bool, Vec<u32>)> = Vec::new();
    for (&id, &l) in ids.iter().zip(&labels) {
        let trained = l != -100;
        match out.last_mut() {
            Some((t, run)) if *t == trained => run.push(id),
            _ => out.push((trained, vec![id])),
        }
    }
    out.into_iter()
        .map(|(t, ids)| (t, tok.decode(&ids, false).unwrap()))
        .collect()
}

#[test]
fn sft_trains_tool_calls_and_not_their_results() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), true);
    let template = dir.path().join("hermes.jinja");
    std::fs::write(&template, HERMES_TEMPLATE).unwrap();
    let row = serde_json::json!({"messages": [
        {"role": "user", "content": "What is 17*23?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c0", "type": "function",
            "function": {"name": "calculator", "arguments": {"expression": "17*23"}}}]},
        {"role": "tool", "tool_call_id": "c0", "content": "391"},
        {"role": "assistant", "content": "391."}
    ]});
    let data = dir.path().join("tools.jsonl");
    std::fs::write(&data, format!("{row}\n{row}\n")).unwrap();
    let dump = dir.path().join("dump.jsonl");
    let (m, d, t, u, o) = (
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        template.to_str().unwrap(),
        dump.to_str().unwrap(),
        dir.path().join("out"),
    );
    let args = |template: &str| {
        [
            "sft",
            "--model",
            m,
            "--dataset",
            d,
            "--template",
            template,
            "--dump-batches",
            u,
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--eval-fraction",
            "0",
            "--save-every",
            "0",
            "--out",
            o.to_str().unwrap(),
        ]
        .map(str::to_string)
    };
    let a = args(t);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let tok = aha_text::Tokenizer::from_dir(&model).unwrap();
    let dumped = std::fs::read_to_string(&dump).unwrap();
    let r = runs(&tok, dumped.lines().next().unwrap());
    let trained: Vec<&str> = r.iter().filter(|x| x.0).map(|x| x.1.as_str()).collect();
    assert_eq!(
        trained,
        [
            "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\":\"17*23\"}}</tool_call><|endoftext|>",
            "391.<|endoftext|>"
        ]
    );
    let untrained: Vec<&str> = r.iter().filter(|x| !x.0).map(|x| x.1.as_str()).collect();
    assert_eq!(
        untrained,
        [
            "<user>What is 17*23?<|endoftext|><assistant>",
            "<user><tool_response>391</tool_response><|endoftext|><assistant>"
        ]
    );
    // A template without a call syntax: refused, naming the row.
    let plain = dir.path().join("plain.jinja");
    std::fs::write(
        &plain,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}",
    )
    .unwrap();
    let a = args(plain.to_str().unwrap());
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("row 1: message 2 has tool_calls")
            && err.contains("does not write tool calls"),
        "{err}"
    );
}
