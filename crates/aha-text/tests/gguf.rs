//! Tokenizer and chat template read from GGUF metadata, checked against transformers' GGUF
//! loader and llama.cpp (reference JSON made by scripts/gguf/tokenizer_reference.py).
//! Real assets come from scripts/fetch_assets.sh; without them the tests skip (fail under CI).

use aha_text::gguf::{chat_template, tokenizer, GgufVocab};
use aha_text::ChatMessage;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn asset(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("AHA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/assets"));
    let p = base.join(rel);
    if p.is_file() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "asset {} missing under CI: run scripts/fetch_assets.sh",
            p.display()
        );
    }
    eprintln!(
        "SKIP: asset {} missing (run scripts/fetch_assets.sh)",
        p.display()
    );
    None
}

fn reference(name: &str) -> serde_json::Value {
    let p = repo()
        .join("crates/aha-model/tests/fixtures/gguf")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn check_against_reference(gguf: &Path, reference: &serde_json::Value) {
    let tok = tokenizer(gguf).unwrap();
    let vocab = GgufVocab::read(gguf).unwrap();
    let mut checked = 0;
    for e in reference["texts"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        let ids = |k: &str| -> Vec<u32> {
            e[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        let ours = tok.encode(text, false).unwrap();
        let hf = ids("hf");
        // transformers' GGUF loader (5.x) misses the full-width DeepSeek bos/eos tokens of the
        // R1-Distill vocabulary and appends new ids past the vocabulary for them; there
        // llama.cpp's ids (those of the real HF tokenizer.json) are the reference.
        let hf_broken = hf.iter().any(|&i| i as usize >= vocab.tokens.len());
        if !hf_broken {
            assert_eq!(ours, hf, "encoding of {text:?} differs from transformers'");
        }
        if e.get("llama_cpp").is_some() {
            assert_eq!(
                ours,
                ids("llama_cpp"),
                "encoding of {text:?} differs from llama.cpp's"
            );
        }
        // (aha's Tokenizer adds no second BOS before a text that starts with one.)
        let mut with_bos: Vec<u32> = vocab
            .special
            .bos
            .filter(|b| vocab.add_bos == Some(true) && ours.first() != Some(b))
            .into_iter()
            .collect();
        with_bos.extend(&ours);
        if !hf_broken
            && !ids("hf_special")
                .iter()
                .any(|&i| i as usize >= vocab.tokens.len())
        {
            assert_eq!(
                with_bos,
                ids("hf_special"),
                "encoding of {text:?} with special tokens"
            );
        }
        assert_eq!(
            tok.encode(text, true).unwrap(),
            with_bos,
            "encoding of {text:?} with special tokens"
        );
        // Decoding gives the text back.
        assert_eq!(tok.decode(&ours, false).unwrap(), text);
        checked += 1;
    }
    assert!(checked >= 9);
    let tmpl = chat_template(gguf).unwrap();
    let conv: Vec<ChatMessage> = serde_json::from_value(reference["conversation"].clone()).unwrap();
    assert_eq!(
        tmpl.render(&conv, true).unwrap(),
        reference["rendered"].as_str().unwrap()
    );
    assert_eq!(
        tmpl.render(&conv[..3], false).unwrap(),
        reference["rendered_no_gen"].as_str().unwrap()
    );
}

#[test]
fn smollm2_tokenizer_and_template_match_transformers_and_llama_cpp() {
    let Some(p) = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let v = GgufVocab::read(&p).unwrap();
    assert_eq!(v.pre.as_deref(), Some("smollm"));
    assert_eq!(v.tokens.len(), 49152);
    check_against_reference(&p, &reference("smollm2_tokenizer.json"));
    let tok = tokenizer(&p).unwrap();
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert!(tok.is_eos(2));
}

#[test]
fn r1_distill_qwen_7b_tokenizer_and_template_from_gguf_header() {
    // The first 95 MiB of the 7B GGUF: the whole header, a few tensors.
    let Some(p) = asset("r1-distill-qwen-7b-gguf/model_part_0000") else {
        return;
    };
    let v = GgufVocab::read(&p).unwrap();
    assert_eq!(v.pre.as_deref(), Some("deepseek-r1-qwen"));
    assert_eq!(v.architecture.as_deref(), Some("qwen2"));
    check_against_reference(&p, &reference("r1_distill_qwen_7b_tokenizer.json"));
    let tok = tokenizer(&p).unwrap();
    assert_eq!(tok.bos_token(), Some("<｜begin▁of▁sentence｜>"));
    assert_eq!(tok.token_to_id("<think>"), Some(151648));
}

fn header(n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

#[test]
fn bad_headers_are_clear_errors() {
    let parse = |b: &[u8]| GgufVocab::parse(b, b.len() as u64).map_err(|e| e.to_string());
    assert!(parse(b"GGUX\x03\0\0\0").unwrap_err().contains("magic"));
    assert!(parse(b"GG").unwrap_err().contains("truncated"));
    assert!(parse(&header(u64::MAX))
        .unwrap_err()
        .contains("does not fit"));
    // A string claiming 2^60 bytes.
    let mut b = header(1);
    b.extend((1u64 << 60).to_le_bytes());
    b.extend([0u8; 16]); // room for one entry, so the count check passes
    assert!(parse(&b).unwrap_err().contains("absurd"));
    // An array claiming 2^40 strings.
    let mut b = header(1);
    let key = b"tokenizer.ggml.tokens";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key);
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((1u64 << 40).to_le_bytes());
    assert!(parse(&b).unwrap_err().contains("does not fit"));
    // Every prefix of a valid header is an error, never a panic.
    let mut ok = header(1);
    let key = b"tokenizer.ggml.tokens";
    ok.extend((key.len() as u64).to_le_bytes());
    ok.extend(key);
    ok.extend(9u32.to_le_bytes());
    ok.extend(8u32.to_le_bytes());
    ok.extend(2u64.to_le_bytes());
    for s in ["a", "b"] {
        ok.extend(1u64.to_le_bytes());
        ok.extend(s.as_bytes());
    }
    assert_eq!(parse(&ok).unwrap().tokens, vec!["a", "b"]);
    for n in 0..ok.len() {
        assert!(parse(&ok[..n]).is_err());
    }
}

fn spm_fixture() -> (PathBuf, serde_json::Value) {
    let dir = repo().join("crates/aha-text/tests/fixtures/gguf_spm");
    let r = std::fs::read_to_string(dir.join("llama_cpp_encodings.json")).unwrap();
    (dir, serde_json::from_str(&r).unwrap())
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Tiny llama-SentencePiece GGUF files written by gguf-py, encodings from llama.cpp
/// (scripts/gguf/make_spm_fixture.py): aha's `encode` is llama.cpp's tokenize with special
/// tokens parsed, with and without add_special (BOS/EOS by the file's flags).
#[test]
fn llama_sentencepiece_gguf_encodes_like_llama_cpp() {
    let (dir, r) = spm_fixture();
    let texts = r["texts"].as_array().unwrap();
    let mut checked = 0;
    for (file, encs) in r["files"].as_object().unwrap() {
        let path = dir.join(file);
        let tok = tokenizer(&path).unwrap();
        let vocab = GgufVocab::read(&path).unwrap();
        assert_eq!(vocab.model, "llama");
        assert_eq!(tok.bos_token(), Some("<s>"));
        assert_eq!(tok.eos_token_ids(), &[2]);
        for (text, e) in texts.iter().zip(encs.as_array().unwrap()) {
            let text = text.as_str().unwrap();
            assert_eq!(
                tok.encode(text, false).unwrap(),
                ids_of(&e["special"]),
                "{file}: {text:?}"
            );
            assert_eq!(
                tok.encode(text, true).unwrap(),
                ids_of(&e["add_special"]),
                "{file}: {text:?} with BOS/EOS"
            );
            // Text without special-token strings or a literal `▁` decodes back to itself
            // (the prefix space is removed again).
            let specials = ["<s>", "</s>", "<unk>", "<think>", "</think>", "\u{2581}"];
            if !specials.iter().any(|s| text.contains(s)) {
                let ids = tok.encode(text, false).unwrap();
                assert_eq!(tok.decode(&ids, false).unwrap(), text, "{file}");
                let mut dec = tok.incremental_decoder(false);
                let mut s = dec.push_all(&ids).unwrap();
                s.push_str(&dec.finish().unwrap());
                assert_eq!(s, text, "{file}: incremental");
                // The tokens' bytes spell the text too (with the prefix space, when added).
                let bytes = tok.token_bytes().unwrap();
                let spelled: Vec<u8> = ids
                    .iter()
                    .flat_map(|&i| bytes[i as usize].bytes.clone())
                    .collect();
                let spelled = String::from_utf8(spelled).unwrap();
                let extra = spelled.strip_suffix(text);
                assert!(
                    extra == Some("") || extra == Some(" "),
                    "{file}: bytes {spelled:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn an_unknown_tokenizer_model_is_a_clear_error() {
    let (dir, _) = spm_fixture();
    let mut b = std::fs::read(dir.join("tiny-spm.gguf")).unwrap();
    let key = b"tokenizer.ggml.model";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&b[at..at + 5], b"llama");
    b[at..at + 5].copy_from_slice(b"zzzzz");
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("unknown.gguf");
    std::fs::write(&p, &b).unwrap();
    let e = tokenizer(&p).unwrap_err().to_string();
    assert!(
        e.contains("\"zzzzz\"") && e.contains("not supported"),
        "{e}"
    );
}
