//! Tokenizer loading and special-token metadata on a tiny hand-made
//! tokenizer.json (no downloaded assets needed).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use aha_text::{TextError, Tokenizer};

const TINY: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 5, "content": "<eot>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": null,
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "hello": 2, "world": 3, "<unk>": 4, "<eot>": 5}, "unk_token": "<unk>"}
}"#;

fn temp_dir(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "aha-text-tok-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join(name), body).unwrap();
    }
    dir
}

#[test]
fn bare_tokenizer_json() {
    let dir = temp_dir(&[("tokenizer.json", TINY)]);
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.encode("hello world", false).unwrap(), vec![2, 3]);
    assert_eq!(tok.encode("hello <s> what", true).unwrap(), vec![2, 0, 4]);
    assert_eq!(tok.decode(&[0, 2, 3, 1], true).unwrap(), "hello world");
    assert_eq!(tok.decode(&[0, 2], false).unwrap(), "<s> hello");
    assert_eq!(tok.token_to_id("world"), Some(3));
    assert_eq!(tok.id_to_token(2).as_deref(), Some("hello"));
    assert_eq!(tok.token_to_id("nope"), None);
    assert_eq!(tok.vocab_size(), 6);
    assert_eq!(tok.bos_token(), None);
    assert!(tok.eos_token_ids().is_empty());

    let t2 = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert_eq!(t2.encode("world", false).unwrap(), vec![3]);
}

#[test]
fn special_tokens_from_side_files() {
    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        (
            "tokenizer_config.json",
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
                "pad_token": null, "add_bos_token": true}"#,
        ),
        ("generation_config.json", r#"{"eos_token_id": [5, 1]}"#),
        ("config.json", r#"{"eos_token_id": 1, "bos_token_id": 0}"#),
    ]);
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.bos_token(), Some("<s>"));
    assert_eq!(tok.bos_token_id(), Some(0));
    assert_eq!(tok.eos_token(), Some("</s>"));
    assert_eq!(tok.eos_token_id(), Some(1));
    assert_eq!(tok.pad_token(), None);
    // generation_config first, duplicates removed.
    assert_eq!(tok.eos_token_ids(), &[5, 1]);
    assert!(tok.is_eos(5) && tok.is_eos(1) && !tok.is_eos(0));
    // add_bos_token: true adds BOS when asked for special tokens, once.
    assert_eq!(tok.encode("hello", true).unwrap(), vec![0, 2]);
    assert_eq!(tok.encode("<s> hello", true).unwrap(), vec![0, 2]);
    assert_eq!(tok.encode("hello", false).unwrap(), vec![2]);
}

#[test]
fn incremental_decoder_word_level() {
    let dir = temp_dir(&[("tokenizer.json", TINY)]);
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let mut dec = tok.incremental_decoder(true);
    assert_eq!(dec.push(2).unwrap(), "hello");
    assert_eq!(dec.push(0).unwrap(), ""); // special, skipped
    assert_eq!(dec.push(3).unwrap(), " world");
    assert_eq!(dec.finish().unwrap(), "");
    assert_eq!(dec.ids(), &[2, 0, 3]);
}

#[test]
fn bad_inputs_are_errors() {
    let missing = std::env::temp_dir().join("aha-text-definitely-missing-dir");
    let e = Tokenizer::from_dir(&missing).unwrap_err();
    assert!(matches!(e, TextError::Io { .. }));
    assert!(e.to_string().contains("tokenizer.json"), "{e}");

    let dir = temp_dir(&[("tokenizer.json", "{not json")]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(matches!(e, TextError::TokenizerLoad { .. }), "{e:?}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        ("tokenizer_config.json", "{\"bos_token\": "),
    ]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(matches!(e, TextError::Json { .. }));
    assert!(
        e.to_string()
            .contains("tokenizer_config.json is not valid JSON"),
        "{e}"
    );

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        ("tokenizer_config.json", "[1, 2]"),
    ]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(e.to_string().contains("top level"), "{e}");

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        ("tokenizer_config.json", r#"{"eos_token": "<nope>"}"#),
    ]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(
        e.to_string()
            .contains("eos_token \"<nope>\" is not in the tokenizer vocabulary"),
        "{e}"
    );

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        (
            "tokenizer_config.json",
            r#"{"bos_token": {"lstrip": true}}"#,
        ),
    ]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(
        e.to_string()
            .contains("`bos_token` is an object without a string `content`"),
        "{e}"
    );

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        ("generation_config.json", r#"{"eos_token_id": "1"}"#),
    ]);
    let e = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(e.to_string().contains("generation_config.json"), "{e}");
    assert!(e.to_string().contains("not a token id"), "{e}");

    let dir = temp_dir(&[
        ("tokenizer.json", TINY),
        ("config.json", r#"{"eos_token_id": [1, -3]}"#),
    ]);
    assert!(Tokenizer::from_dir(&dir).is_err());
}
