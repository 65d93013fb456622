//! `aha generate` with constraints on a real model (SmolLM2-135M-Instruct, Q4_1 GGUF): the
//! answer follows the JSON Schema, the choice list or the regex, and bad constraints are
//! clear errors.

use crate::common::{asset, ok, run, stderr, stdout};
use serde_json::Value;

fn generate(model: &str, extra: &[&str]) -> Value {
    let mut args = vec!["generate", "--model", model, "--chat", "--json"];
    args.extend_from_slice(extra);
    let out = stdout(&ok(&args));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn generate_follows_schema_choice_and_regex() {
    let Some(model) = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40},
                           "population_millions": {"type": "number"}},
            "required": ["city", "population_millions"],
            "additionalProperties": false}"#,
    )
    .unwrap();
    for seed in ["0", "1", "2"] {
        let line = generate(
            model,
            &[
                "--prompt",
                "What is the capital of France? Answer in JSON.",
                "--json-schema",
                schema.to_str().unwrap(),
                "--temperature",
                "0.8",
                "--seed",
                seed,
                "--max-tokens",
                "80",
            ],
        );
        assert_eq!(line["finish_reason"], "stop", "{line}");
        // SmolLM2 does not reason: the whole text is the answer.
        let v: Value = serde_json::from_str(line["content"].as_str().unwrap()).unwrap();
        let o = v.as_object().unwrap();
        assert!(
            o["city"].as_str().is_some_and(|c| c.chars().count() <= 40),
            "{v}"
        );
        assert!(o["population_millions"].is_number(), "{v}");
        assert_eq!(o.len(), 2, "{v}");
    }
    let line = generate(
        model,
        &[
            "--prompt",
            "Is Paris in France?",
            "--choice",
            "yes",
            "--choice",
            "no",
        ],
    );
    assert!(
        ["yes", "no"].contains(&line["text"].as_str().unwrap()),
        "{line}"
    );
    let line = generate(
        model,
        &[
            "--prompt",
            "A date, please.",
            "--regex",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        ],
    );
    let t = line["text"].as_str().unwrap();
    assert!(
        t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-',
        "{t}"
    );

    // An unsupported keyword is named; a thinking budget needs a reasoning model.
    std::fs::write(&schema, r#"{"type": "array", "uniqueItems": true}"#).unwrap();
    let out = run(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "x",
        "--json-schema",
        schema.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("uniqueItems"), "{}", stderr(&out));
    let out = run(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "x",
        "--thinking-budget",
        "4",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reasoning"), "{}", stderr(&out));
}
