//! The reasoning split end to end, with the real DeepSeek-R1 tokenizer and chat template: a
//! random model the size of R1's vocabulary whose output a logits processor scripts, so
//! the server decodes, splits and streams exactly the tokens R1 would write. Four cases:
//! the template pre-fills `<think>`, the model writes both tags, none, or a tag split across
//! tokens; each whole and streamed (the concatenated stream must equal the whole answer).

use crate::common;

use aha_engine::LogitsProcessor;
use aha_serve::{Assets, Running, ServeConfig};
use aha_text::{ChatTemplate, Tokenizer};
use common::{asset_dir, chat_stream_text, post};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Forces the tokens of the current script, then EOS.
struct Script {
    tokens: Arc<Mutex<Vec<u32>>>,
    eos: u32,
}

impl LogitsProcessor for Script {
    fn process(&mut self, _sample: usize, generated: &[u32], logits: &mut [f32]) {
        let script = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let want = script.get(generated.len()).copied().unwrap_or(self.eos);
        for (i, l) in logits.iter_mut().enumerate() {
            *l = if i as u32 == want {
                0.0
            } else {
                f32::NEG_INFINITY
            };
        }
    }
}

pub(crate) struct Server {
    pub running: Running,
    pub script: Arc<Mutex<Vec<u32>>>,
    pub tok: Tokenizer,
}

pub(crate) fn start(dir: &Path, prefill_think: bool) -> Server {
    let tok = Tokenizer::from_dir(dir).unwrap();
    let mut template = ChatTemplate::from_dir(dir).unwrap();
    if prefill_think {
        // The updated R1 template opens the think block in the generation prompt.
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        let src = cfg["chat_template"].as_str().unwrap();
        let end = "{{'<｜Assistant｜>'}}{% endif %}";
        assert!(src.ends_with(end), "the R1 template changed");
        let src = format!(
            "{}{{{{'<｜Assistant｜><think>\\n'}}}}{{% endif %}}",
            &src[..src.len() - end.len()]
        );
        template = ChatTemplate::new(src, template.special_tokens().clone()).unwrap();
    }
    let (model, eos, vocab) = common::random_r1_model(&tok);
    let script = Arc::new(Mutex::new(Vec::new()));
    let s = script.clone();
    let assets = Assets {
        eos_token_ids: vec![eos],
        vocab_size: vocab,
        tokenizer: tok.clone(),
        template: Some(template),
        logits_processor: Some(Arc::new(move |_: &[u32]| {
            Some(Box::new(Script {
                tokens: s.clone(),
                eos,
            }) as Box<dyn LogitsProcessor>)
        })),
        constrainer: None,
    };
    let cfg = ServeConfig {
        model_name: "r1-scripted".into(),
        context: 512,
        max_batch: 4,
        ..Default::default()
    };
    Server {
        running: aha_serve::spawn(model, assets, cfg, "127.0.0.1", 0).unwrap(),
        script,
        tok,
    }
}

/// Run `pieces` (each tokenized on its own, so a tag can be split) through the server,
/// whole and streamed; check the split and the reasoning token count.
fn check(server: &Server, pieces: &[&str], reasoning: Option<&str>, content: &str) {
    // Expected reasoning tokens: all of them up to the one completing `</think>`.
    let mut ids = Vec::new();
    let mut reasoning_tokens = 0;
    let mut prefix = String::new();
    for p in pieces {
        ids.extend(server.tok.encode(p, false).unwrap());
        prefix.push_str(p);
        if prefix.ends_with("</think>") {
            reasoning_tokens = ids.len();
        }
    }
    if reasoning.is_some() && reasoning_tokens == 0 {
        // Never closed: everything is reasoning.
        reasoning_tokens = ids.len();
    }
    assert_eq!(
        server.tok.decode(&ids, true).unwrap(),
        pieces.concat(),
        "the script round-trips"
    );
    *server.script.lock().unwrap() = ids.clone();
    let a = server.running.addr;
    let body = json!({"messages": [{"role": "user", "content": "What is 2 + 3?"}],
                      "temperature": 0, "max_tokens": 100});
    let whole = post(a, "/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.body);
    let w = whole.json();
    let msg = &w["choices"][0]["message"];
    let case = pieces.concat();
    assert_eq!(msg["content"].as_str(), Some(content), "{case:?}");
    assert_eq!(msg["reasoning_content"].as_str(), reasoning, "{case:?}");
    assert_eq!(msg["reasoning"].as_str(), reasoning, "{case:?}");
    assert_eq!(w["choices"][0]["finish_reason"], "stop");
    let usage = &w["usage"];
    // The script plus the EOS that ended it.
    assert_eq!(usage["completion_tokens"], ids.len() + 1, "{case:?}");
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"], reasoning_tokens,
        "{case:?}"
    );

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let s = post(a, "/v1/chat/completions", &sbody);
    assert_eq!(s.status, 200);
    let events = s.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let parts = chat_stream_text(&events, 1);
    assert_eq!(parts[0].0, content, "streamed content of {case:?}");
    assert_eq!(
        parts[0].1,
        reasoning.unwrap_or(""),
        "streamed reasoning of {case:?}"
    );
    assert_eq!(parts[0].2.as_deref(), Some("stop"));
    // No delta ever carries a piece of a tag.
    for e in &events {
        assert!(!e.contains("think>") && !e.contains("\"</\""), "{e}");
    }
}

#[test]
fn reasoning_split_with_the_r1_tokenizer_and_template() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let plain = start(&dir, false);
    // The model writes both tags.
    check(
        &plain,
        &[
            "<think>",
            "\nThe sum of 2 and 3 is 5.\n",
            "</think>",
            "\n\nThe answer is **5**.",
        ],
        Some("\nThe sum of 2 and 3 is 5.\n"),
        "\n\nThe answer is **5**.",
    );
    // No tags: all content.
    check(&plain, &["The answer is 5."], None, "The answer is 5.");
    // Both tags split across tokens.
    check(
        &plain,
        &["<", "think", ">", "Add them.", "</", "think", ">", "5"],
        Some("Add them."),
        "5",
    );
    drop(plain);
    // The template pre-fills <think>: the output only closes it.
    let pre = start(&dir, true);
    check(
        &pre,
        &["Two plus three.\n", "</think>", "\n\n5"],
        Some("Two plus three.\n"),
        "\n\n5",
    );
    // ... and with nothing after the think block but EOS.
    check(&pre, &["Hmm.", "</", "think>"], Some("Hmm."), "");
}
