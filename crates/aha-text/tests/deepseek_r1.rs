//! Compare against HF transformers on the real DeepSeek-R1 tokenizer and
//! chat template. Fixture: scripts/text/make_text_fixtures.py; assets:
//! scripts/text/fetch_assets.sh.

use std::path::{Path, PathBuf};

use aha_text::{split_reasoning, ChatMessage, ChatTemplate, Tokenizer};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek_r1_text.json");
    let text = std::fs::read_to_string(&path).expect("fixture is committed");
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

/// The asset dir, or None (test skipped) when absent outside CI.
fn asset_dir() -> Option<PathBuf> {
    let base = std::env::var_os("AHA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/assets"));
    let dir = base.join("deepseek-r1-tokenizer");
    if dir.join("tokenizer.json").is_file() && dir.join("tokenizer_config.json").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing and CI is set: run scripts/text/fetch_assets.sh",
            dir.display()
        );
    }
    eprintln!(
        "skipped: {} not found; run scripts/text/fetch_assets.sh",
        dir.display()
    );
    None
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).expect("messages")
}

#[test]
fn special_tokens_match_transformers() {
    let Some(dir) = asset_dir() else { return };
    let fx = fixture();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.bos_token(), fx["bos_token"].as_str());
    assert_eq!(tok.eos_token(), fx["eos_token"].as_str());
    assert_eq!(tok.pad_token(), fx["pad_token"].as_str());
    assert_eq!(
        tok.bos_token_id(),
        Some(fx["bos_token_id"].as_u64().unwrap() as u32)
    );
    let eos = fx["eos_token_id"].as_u64().unwrap() as u32;
    assert_eq!(tok.eos_token_ids(), &[eos]);
    assert!(tok.is_eos(eos) && !tok.is_eos(eos + 1));
    assert_eq!(tok.vocab_size() as u64, fx["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.token_to_id("<think>"), Some(128798));
    assert_eq!(tok.id_to_token(128799).as_deref(), Some("</think>"));
}

#[test]
fn encodings_match_transformers() {
    let Some(dir) = asset_dir() else { return };
    let fx = fixture();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let cases = fx["encodings"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        assert_eq!(
            tok.encode(text, false).unwrap(),
            expected,
            "encode {text:?}"
        );
        assert_eq!(
            tok.encode(text, true).unwrap(),
            ids(&case["ids_with_special"]),
            "encode with specials {text:?}"
        );
        assert_eq!(
            tok.decode(&expected, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decode {text:?}"
        );
        assert_eq!(
            tok.decode(&expected, true).unwrap(),
            case["decoded_skip_special"].as_str().unwrap(),
            "decode skipping specials {text:?}"
        );
    }
}

#[test]
fn incremental_decoding_matches_full_decode() {
    let Some(dir) = asset_dir() else { return };
    let fx = fixture();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let mut held_back = 0;
    for case in fx["encodings"].as_array().unwrap() {
        let expected_ids = ids(&case["ids"]);
        for skip in [false, true] {
            let mut dec = tok.incremental_decoder(skip);
            let mut out = String::new();
            for &id in &expected_ids {
                let piece = dec.push(id).unwrap();
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "partial char emitted: {piece:?}"
                );
                held_back += usize::from(piece.is_empty());
                out.push_str(&piece);
            }
            out.push_str(&dec.finish().unwrap());
            let key = if skip {
                "decoded_skip_special"
            } else {
                "decoded"
            };
            assert_eq!(out, case[key].as_str().unwrap());
        }
    }
    // Emoji/CJK split across byte-level tokens must have been held back.
    assert!(held_back > 0);
}

#[test]
fn truncated_multibyte_char_is_flushed_on_finish() {
    let Some(dir) = asset_dir() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let ids = tok.encode("ok 😀", false).unwrap();
    // Find a prefix of the ids that ends inside the emoji.
    let cut = (1..ids.len())
        .find(|&n| tok.decode(&ids[..n], false).unwrap().ends_with('\u{FFFD}'))
        .expect("the emoji spans several byte-level tokens");
    let mut dec = tok.incremental_decoder(false);
    let shown = dec.push_all(&ids[..cut]).unwrap();
    assert_eq!(shown, "ok");
    let rest = dec.finish().unwrap();
    assert!(rest.ends_with('\u{FFFD}'), "{rest:?}");
}

#[test]
fn chat_template_matches_transformers() {
    let Some(dir) = asset_dir() else { return };
    let fx = fixture();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let tmpl = ChatTemplate::from_dir(&dir).unwrap();
    let chats = fx["chats"].as_array().unwrap();
    assert!(chats.len() >= 8);
    for case in chats {
        let msgs = messages(&case["messages"]);
        let add_gen = case["add_generation_prompt"].as_bool().unwrap();
        let text = tmpl.render(&msgs, add_gen).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "{}", case["name"]);
        assert_eq!(
            tok.encode(&text, false).unwrap(),
            ids(&case["ids"]),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn r1_template_drops_earlier_reasoning_and_parser_recovers_it() {
    let Some(dir) = asset_dir() else { return };
    let tmpl = ChatTemplate::from_dir(&dir).unwrap();
    let answer = "<think>\n3 times 7 is 21.\n</think>\n\nThe answer is 21.";
    let text = tmpl
        .render(
            &[ChatMessage::user("3*7?"), ChatMessage::assistant(answer)],
            false,
        )
        .unwrap();
    assert!(!text.contains("3 times 7") && text.contains("The answer is 21."));
    let split = split_reasoning(answer, false);
    assert_eq!(split.reasoning, "\n3 times 7 is 21.\n");
    assert_eq!(split.content, "\n\nThe answer is 21.");
    assert!(split.reasoning_closed);
}

/// What constrained decoding matches tokens against: each token's bytes, concatenated, are
/// the text (byte-level tokens that hold part of a character included).
#[test]
fn token_bytes_spell_the_encoded_text() {
    let Some(dir) = asset_dir() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let bytes = tok.token_bytes().unwrap();
    assert!(bytes.len() >= tok.vocab_size());
    for text in [
        "Hello, world!",
        "naïve café, 世界 and 🙂 in one line",
        "<think>\nx = 3\n</think>\n\n{\"answer\": 3}",
    ] {
        let ids = tok.encode(text, false).unwrap();
        let spelled: Vec<u8> = ids
            .iter()
            .flat_map(|&i| bytes[i as usize].bytes.clone())
            .collect();
        assert_eq!(String::from_utf8_lossy(&spelled), text);
    }
    let bos = tok.bos_token_id().expect("R1 has a BOS");
    assert!(bytes[bos as usize].special);
    assert!(!bytes[tok.encode("Hello", false).unwrap()[0] as usize].special);
}
