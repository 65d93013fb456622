//! A llama-SentencePiece GGUF runs `generate --prompt`; a GGUF whose tokenizer aha cannot
//! build still runs with token ids (`generate --ids`, `logprobs --ids`) and says why text
//! cannot be used. Fixture: crates/aha-text/tests/fixtures/gguf_spm (a 1-layer random Llama).

use std::path::{Path, PathBuf};

use crate::common::run as aha;

fn ok(args: &[&str]) -> String {
    crate::common::stdout(&crate::common::ok(args))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../aha-text/tests/fixtures/gguf_spm/tiny-spm.gguf")
}

#[test]
fn spm_gguf_generates_from_text() {
    let model = fixture();
    let out = ok(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "The quick brown fox",
        "--max-tokens",
        "5",
        "--ignore-eos",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 5, "{out}");
    assert!(v["text"].is_string(), "{out}");
}

#[test]
fn unknown_tokenizer_still_runs_with_ids() {
    let mut b = std::fs::read(fixture()).unwrap();
    let key = b"tokenizer.ggml.model";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&b[at..at + 5], b"llama");
    b[at..at + 5].copy_from_slice(b"zzzzz");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("unknown-tokenizer.gguf");
    std::fs::write(&p, &b).unwrap();
    let model = p.to_str().unwrap();
    let out = ok(&[
        "generate",
        "--model",
        model,
        "--ids",
        "1,5,9",
        "--max-tokens",
        "3",
        "--ignore-eos",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 3, "{out}");
    let out = ok(&["logprobs", "--model", model, "--ids", "1,5,9", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["logprobs"].as_array().unwrap().len(), 3, "{out}");
    // Text needs the tokenizer: a clear error that names the cause and the way out.
    let out = aha(&["generate", "--model", model, "--prompt", "hi"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("zzzzz") && e.contains("--ids"), "{e}");
}
