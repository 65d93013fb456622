//! `generate_n` on the continuous-batching scheduler gives the very tokens the plain batched
//! loop it replaced gave (fixture written by that loop at commit 2f0be01: set
//! AHA_WRITE_GOLDEN=path to write one), for dense, MLA and quantized models, sampling and
//! greedy, with duplicate prompts, n > 1 and sequences finishing at different steps.

use aha_engine::{generate_n, GenerateOptions, SamplingParams};
use aha_model::{LoadOptions, Model};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../aha-model/tests/fixtures")
}

fn runs() -> Value {
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 2, 3],
        vec![9, 8],
        vec![1, 2, 3],
        (4..30).collect(),
        vec![200],
    ];
    let cases: Vec<(&str, usize, GenerateOptions)> = vec![
        (
            "qwen2_untied",
            3,
            GenerateOptions {
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 0.9,
                    ..Default::default()
                },
                max_tokens: 20,
                seed: 5,
                // Many stop ids, so samples finish at different steps.
                stop_token_ids: (0..12).collect(),
                ..Default::default()
            },
        ),
        (
            "llama3_rope",
            1,
            GenerateOptions {
                sampling: SamplingParams::greedy(),
                max_tokens: 24,
                stop_token_ids: vec![7, 77],
                ..Default::default()
            },
        ),
        (
            "deepseek_v3_default",
            2,
            GenerateOptions {
                sampling: SamplingParams {
                    temperature: 0.8,
                    top_k: 20,
                    min_p: 0.05,
                    ..Default::default()
                },
                max_tokens: 12,
                seed: 11,
                stop_token_ids: (0..8).collect(),
                ..Default::default()
            },
        ),
        (
            "gguf_aha_quantized/zero-q4_0.gguf",
            2,
            GenerateOptions {
                sampling: SamplingParams {
                    temperature: 1.0,
                    ..Default::default()
                },
                max_tokens: 16,
                seed: 2,
                ..Default::default()
            },
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, n, opts) in cases {
        let model = Model::load(&fixtures().join(name), &LoadOptions::default()).unwrap();
        let vocab = model.vocab_size() as u32;
        let ps: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| p.iter().map(|t| t % vocab).collect())
            .collect();
        let mut streamed: Vec<Vec<u32>> = vec![Vec::new(); ps.len() * n];
        let got = generate_n(&model, None, &ps, n, &opts, |e| {
            streamed[e.index].push(e.token)
        })
        .unwrap();
        for (c, s) in got.iter().zip(&streamed) {
            assert_eq!(&c.token_ids, s, "{name}: streamed tokens");
        }
        out.insert(
            name.to_string(),
            json!(got
                .iter()
                .map(|c| json!({"tokens": c.token_ids, "finish": c.finish_reason}))
                .collect::<Vec<_>>()),
        );
    }
    Value::Object(out)
}

#[test]
fn generate_n_matches_the_plain_batched_loop() {
    let got = runs();
    if let Some(path) = std::env::var_os("AHA_WRITE_GOLDEN") {
        std::fs::write(path, serde_json::to_string_pretty(&got).unwrap()).unwrap();
        return;
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_generate.json");
    let want: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, w) in want.as_object().unwrap() {
        assert_eq!(&got[name], w, "{name}");
    }
}
