//! The engine against transformers' greedy tokens, and batching invariants.

use aha_engine::{generate, generate_n, score, FinishReason, GenerateOptions, SamplingParams};
use aha_model::{LoadOptions, Model};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> (Model, std::collections::HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures")
        .join(name);
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let r =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    (model, r)
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::U32).unwrap().to_vec1().unwrap()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens,
        ..Default::default()
    }
}

#[test]
fn greedy_matches_transformers_alone_and_in_a_padded_batch() {
    for name in ["qwen2_tied", "llama3_rope"] {
        let (model, r) = fixture(name);
        let prompt = ids(&r["greedy_prompt"]);
        let want = ids(&r["greedy_tokens"]);
        let alone = generate(
            &model,
            None,
            std::slice::from_ref(&prompt),
            &greedy(20),
            |_| {},
        )
        .unwrap();
        assert_eq!(alone[0].token_ids, want, "{name}");
        assert_eq!(alone[0].finish_reason, FinishReason::Length);
        // Same prompt among longer and shorter ones: left padding must not change it.
        let longer: Vec<u32> = (1..15).collect();
        let batch = generate(
            &model,
            None,
            &[longer.clone(), prompt.clone(), vec![3]],
            &greedy(20),
            |_| {},
        )
        .unwrap();
        assert_eq!(batch[1].token_ids, want, "{name} in a batch");
        let longer_alone = generate(&model, None, &[longer], &greedy(20), |_| {}).unwrap();
        assert_eq!(batch[0].token_ids, longer_alone[0].token_ids);
    }
}

#[test]
fn sampling_is_seeded_per_sequence_and_batch_independent() {
    let (model, _) = fixture("qwen2_untied");
    let opts = GenerateOptions {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            ..Default::default()
        },
        max_tokens: 12,
        seed: 5,
        ..Default::default()
    };
    let a = generate(&model, None, &[vec![1, 2, 3], vec![9, 8]], &opts, |_| {}).unwrap();
    let b = generate(&model, None, &[vec![1, 2, 3], vec![9, 8]], &opts, |_| {}).unwrap();
    assert_eq!(a[0].token_ids, b[0].token_ids);
    let alone = generate(&model, None, &[vec![1, 2, 3]], &opts, |_| {}).unwrap();
    assert_eq!(a[0].token_ids, alone[0].token_ids);
    let other_seed = generate(
        &model,
        None,
        &[vec![1, 2, 3]],
        &GenerateOptions {
            seed: 6,
            ..opts.clone()
        },
        |_| {},
    )
    .unwrap();
    assert_ne!(a[0].token_ids, other_seed[0].token_ids);
}

#[test]
fn eos_stops_a_sequence_early_and_others_continue() {
    let (model, r) = fixture("qwen2_tied");
    let prompt = ids(&r["greedy_prompt"]);
    let want = ids(&r["greedy_tokens"]);
    let stop = want[4];
    let first = want.iter().position(|&t| t == stop).unwrap();
    let opts = GenerateOptions {
        stop_token_ids: vec![stop],
        ..greedy(20)
    };
    let mut streamed = vec![Vec::new(); 2];
    let out = generate(&model, None, &[prompt.clone(), vec![7, 7, 7]], &opts, |e| {
        streamed[e.index].push(e.token)
    })
    .unwrap();
    assert_eq!(out[0].token_ids, want[..=first].to_vec());
    assert_eq!(out[0].finish_reason, FinishReason::Stop);
    assert_eq!(streamed[0], out[0].token_ids);
    assert_eq!(streamed[1], out[1].token_ids);
    let ignore = generate(
        &model,
        None,
        &[prompt],
        &GenerateOptions {
            ignore_eos: true,
            ..opts
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(ignore[0].token_ids, want);
}

#[test]
fn score_matches_reference_logprobs() {
    let (model, r) = fixture("qwen2_bf16");
    let prompt = ids(&r["lp_prompt"]);
    let completion = ids(&r["lp_completion"]);
    let seq: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
    let lp = score(&model, &[seq]).unwrap();
    let want: Vec<f32> = r["lp_logprobs"].to_vec1().unwrap();
    let got = &lp[0][prompt.len() - 1..];
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
}

#[test]
fn bad_prompts_are_errors() {
    let (model, _) = fixture("qwen2_tied");
    assert!(generate(&model, None, &[vec![]], &greedy(3), |_| {}).is_err());
    assert!(generate(&model, None, &[vec![100000]], &greedy(3), |_| {}).is_err());
}

fn sampled(seed: u64) -> GenerateOptions {
    GenerateOptions {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            ..Default::default()
        },
        max_tokens: 10,
        seed,
        ..Default::default()
    }
}

#[test]
fn generate_n_equals_generate_on_repeated_prompts() {
    let (model, r) = fixture("qwen2_tied");
    let prompt = ids(&r["greedy_prompt"]);
    let prompts = vec![prompt.clone(), vec![4, 5], (1..12).collect()];
    let n = 3;
    let repeated: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n))
        .collect();
    for opts in [greedy(12), sampled(11)] {
        let shared = generate_n(&model, None, &prompts, n, &opts, |_| {}).unwrap();
        let plain = generate(&model, None, &repeated, &opts, |_| {}).unwrap();
        assert_eq!(shared.len(), prompts.len() * n);
        for (i, (a, b)) in shared.iter().zip(&plain).enumerate() {
            assert_eq!(a.token_ids, b.token_ids, "output {i}");
            assert_eq!(a.finish_reason, b.finish_reason);
        }
    }
    // Greedy samples of one prompt are all the transformers reference.
    let want = ids(&r["greedy_tokens"]);
    let g = generate_n(&model, None, &[prompt], 4, &greedy(20), |_| {}).unwrap();
    assert!(g.iter().all(|c| c.token_ids == want));
}

#[test]
fn generate_n_sampling_is_deterministic_and_samples_differ() {
    let (model, _) = fixture("qwen2_untied");
    let prompts = vec![vec![1, 2, 3], vec![9, 8]];
    let a = generate_n(&model, None, &prompts, 4, &sampled(3), |_| {}).unwrap();
    let b = generate_n(&model, None, &prompts, 4, &sampled(3), |_| {}).unwrap();
    let ta: Vec<_> = a.iter().map(|c| c.token_ids.clone()).collect();
    let tb: Vec<_> = b.iter().map(|c| c.token_ids.clone()).collect();
    assert_eq!(ta, tb);
    // The k samples of a prompt are not copies of each other.
    assert!(ta[..4].iter().any(|t| t != &ta[0]));
    // Streamed events carry the output index.
    let mut streamed = vec![Vec::new(); 8];
    generate_n(&model, None, &prompts, 4, &sampled(3), |e| {
        streamed[e.index].push(e.token)
    })
    .unwrap();
    assert_eq!(streamed, ta);
    assert!(generate_n(&model, None, &prompts, 0, &sampled(3), |_| {})
        .unwrap()
        .is_empty());
}
