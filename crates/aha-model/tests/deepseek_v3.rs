//! DeepSeek-V3 parity with transformers' `DeepseekV3ForCausalLM` on tiny random models
//! (fixtures recorded by scripts/ref/make_deepseek_fixtures.py): logits, padded batches,
//! greedy tokens, log-probs, gradients, chosen experts; and the absorbed-MLA decode, FP8
//! loading, routing statistics and balancing.

use crate::common;
use aha_model::deepseek_v3::{DeepseekV3, DeepseekV3Config, MlaForm, RunOptions};
use aha_model::weights::Checkpoint;
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use common::{max_abs, max_abs_diff};
use std::collections::HashMap;
use std::path::PathBuf;

const FIXTURES: [&str; 4] = [
    "deepseek_v3_default",
    "deepseek_v3_yarn",
    "deepseek_v3_bf16",
    "deepseek_v3_fp8",
];

/// The fixtures directory; `AHA_DEEPSEEK_FIXTURES` points the tests at fixtures generated with
/// other seeds and sizes (scripts/ref/make_deepseek_fixtures.py --out DIR --seed N ...).
fn dir(name: &str) -> PathBuf {
    match std::env::var_os("AHA_DEEPSEEK_FIXTURES") {
        Some(d) => PathBuf::from(d).join(name),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    }
}

fn fixture(name: &str) -> (DeepseekV3, HashMap<String, Tensor>) {
    let model =
        DeepseekV3::load_dir(&dir(name), &LoadOptions::default()).expect("load fixture model");
    let reference =
        candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
            .expect("load reference");
    (model, reference)
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

fn positions(input_ids: &Tensor) -> Tensor {
    let t = input_ids.dim(1).unwrap();
    Tensor::arange(0u32, t as u32, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .broadcast_as(input_ids.dims())
        .unwrap()
        .contiguous()
        .unwrap()
}

fn logits(model: &DeepseekV3, input_ids: &Tensor, mode: Mode) -> Tensor {
    let pos = positions(input_ids);
    let input = ForwardInput {
        input_ids,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode,
        logits: LogitsFor::All,
    };
    model.forward(&input, None).unwrap()
}

#[test]
fn single_sequence_logits_match_in_every_mode_and_form() {
    for name in FIXTURES {
        let (mut model, r) = fixture(name);
        let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
        for form in [MlaForm::Plain, MlaForm::Absorbed] {
            model.set_run_options(RunOptions {
                mla_form: form,
                ..model.run_options()
            });
            for mode in [Mode::Inference, Mode::Train] {
                let got = logits(&model, &input, mode).squeeze(0).unwrap();
                let diff = max_abs_diff(&got, &r["single_logits"]);
                eprintln!("{name} {form:?} {mode:?}: max |logits - transformers| = {diff:.2e}");
                assert!(
                    diff < 1e-4,
                    "{name} {form:?} {mode:?}: logits differ by {diff}"
                );
            }
        }
    }
}

#[test]
fn chosen_experts_match_exactly() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
        let pos = positions(&input);
        let fi = ForwardInput {
            input_ids: &input,
            position_ids: &pos,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::All,
        };
        let chosen = model.chosen_experts(&fi).unwrap();
        let expected: Vec<&String> = r.keys().filter(|k| k.starts_with("experts.")).collect();
        assert_eq!(chosen.len(), expected.len(), "{name}: MoE layer count");
        for (layer, per_token) in chosen {
            let want: Vec<Vec<i64>> = r[&format!("experts.{layer}")].to_vec2().unwrap();
            let got: Vec<Vec<i64>> = per_token
                .iter()
                .map(|v| v.iter().map(|&e| e as i64).collect())
                .collect();
            assert_eq!(got, want, "{name}: experts chosen in layer {layer}");
        }
    }
}

#[test]
fn left_padded_batch_matches_reference_and_single() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let batch_ids = ids(&r["batch_ids"]);
        let mask = r["batch_mask"].to_dtype(DType::U32).unwrap();
        let pos = ids(&r["batch_position_ids"]);
        let input = ForwardInput {
            input_ids: &batch_ids,
            position_ids: &pos,
            key_mask: Some(&mask),
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::All,
        };
        let got = model.forward(&input, None).unwrap();
        let mask_v: Vec<Vec<u32>> = mask.to_vec2().unwrap();
        for (b, row) in mask_v.iter().enumerate() {
            let start = row.iter().position(|&m| m == 1).unwrap();
            let got_b = got.i((b, start..)).unwrap();
            let diff = max_abs_diff(&got_b, &r["batch_logits"].i((b, start..)).unwrap());
            assert!(
                diff < 1e-4,
                "{name} row {b}: batch logits differ from reference by {diff}"
            );
            let alone = batch_ids.i((b..b + 1, start..)).unwrap();
            let single = logits(&model, &alone, Mode::Inference).squeeze(0).unwrap();
            let diff = max_abs_diff(&got_b, &single);
            assert!(
                diff < 1e-4,
                "{name} row {b}: padded batch differs from single by {diff}"
            );
        }
    }
}

fn greedy(model: &DeepseekV3, prompt: &Tensor, n: usize) -> (Vec<i64>, Vec<Tensor>) {
    let mut seq = prompt.unsqueeze(0).unwrap();
    let mut cache = aha_model::KvCache::new(model.num_layers());
    let mut past = 0usize;
    let (mut got, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = seq.dim(1).unwrap();
        let pos = Tensor::arange(past as u32, (past + t) as u32, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let input = ForwardInput {
            input_ids: &seq,
            position_ids: &pos,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        let out = model.forward(&input, Some(&mut cache)).unwrap();
        let next = out
            .i((0, 0))
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        steps.push(out.i((0, 0)).unwrap());
        got.push(next as i64);
        past += t;
        seq = Tensor::new(&[[next]], &Device::Cpu).unwrap();
    }
    (got, steps)
}

#[test]
fn greedy_tokens_with_compressed_cache_match_in_both_forms() {
    for name in FIXTURES {
        let (mut model, r) = fixture(name);
        let want: Vec<i64> = r["greedy_tokens"].to_vec1().unwrap();
        let prompt = ids(&r["greedy_prompt"]);
        model.set_run_options(RunOptions {
            mla_form: MlaForm::Plain,
            ..model.run_options()
        });
        let (plain, plain_steps) = greedy(&model, &prompt, want.len());
        assert_eq!(plain, want, "{name}: greedy tokens (plain MLA)");
        model.set_run_options(RunOptions {
            mla_form: MlaForm::Absorbed,
            ..model.run_options()
        });
        let (absorbed, absorbed_steps) = greedy(&model, &prompt, want.len());
        assert_eq!(absorbed, want, "{name}: greedy tokens (absorbed MLA)");
        let worst = plain_steps
            .iter()
            .zip(&absorbed_steps)
            .map(|(a, b)| max_abs_diff(a, b))
            .fold(0f32, f32::max);
        eprintln!(
            "{name}: absorbed vs plain decode logits, max diff {worst:.2e} over {} steps",
            want.len()
        );
        assert!(
            worst < 1e-4,
            "{name}: absorbed decode logits differ from plain by {worst}"
        );
    }
}

/// A batch's decode logits have the same bits on one thread and on two (where each thread
/// takes whole experts, and their kernels run on it alone).
#[test]
fn batch_logits_do_not_depend_on_the_threads() {
    let (model, r) = fixture("deepseek_v3_default");
    // Six different rows, so that the experts see different numbers of rows.
    let prompt: Vec<u32> = ids(&r["greedy_prompt"])
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let vocab = model.cfg.vocab_size as u32;
    let rows: Vec<Vec<u32>> = (0..6u32)
        .map(|r| prompt.iter().map(|&v| (v + 7 * r) % vocab).collect())
        .collect();
    let batch = Tensor::new(rows, &Device::Cpu).unwrap();
    let bits = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let l = logits(&model, &batch, Mode::Inference);
            let v: Vec<f32> = l.flatten_all().unwrap().to_vec1().unwrap();
            v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        })
    };
    let one = bits(1);
    assert_eq!(bits(2), one);
}

#[test]
fn mla_cache_is_compressed() {
    let (model, _) = fixture("deepseek_v3_default");
    let c = &model.cfg;
    // f32: layers * (kv_lora_rank + rope) * 4 vs layers * heads * (nope + rope + v) * 4
    assert_eq!(
        model.cache_bytes_per_token(),
        c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4
    );
    assert_eq!(
        model.naive_cache_bytes_per_token(),
        c.num_hidden_layers
            * c.num_attention_heads
            * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim)
            * 4
    );
    assert!(model.cache_bytes_per_token() * 3 < model.naive_cache_bytes_per_token());
    // The cache really holds [b, 1, T, rank] latents.
    let mut cache = aha_model::KvCache::new(model.num_layers());
    let ids = Tensor::new(&[[3u32, 4, 5]], &Device::Cpu).unwrap();
    let pos = positions(&ids);
    let input = ForwardInput {
        input_ids: &ids,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::Last,
    };
    model.forward(&input, Some(&mut cache)).unwrap();
    assert_eq!(cache.len(), 3);
}

fn completion_logprobs(model: &DeepseekV3, r: &HashMap<String, Tensor>, mode: Mode) -> Tensor {
    let prompt = ids(&r["lp_prompt"]);
    let completion = ids(&r["lp_completion"]);
    let p = prompt.dim(0).unwrap();
    let c = completion.dim(0).unwrap();
    let all = Tensor::cat(&[&prompt, &completion], 0)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = logits(model, &all, mode).squeeze(0).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.narrow(0, p - 1, c).unwrap(), D::Minus1).unwrap();
    lp.gather(&completion.unsqueeze(1).unwrap().contiguous().unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
}

#[test]
fn completion_logprobs_match() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let got = completion_logprobs(&model, &r, Mode::Inference);
        let diff = max_abs_diff(&got, &r["lp_logprobs"]);
        eprintln!("{name}: max |log-probs - transformers| = {diff:.2e}");
        assert!(diff < 1e-4, "{name}: log-probs differ by {diff}");
    }
}

#[test]
fn gradients_match_for_every_trainable_tensor() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let loss = completion_logprobs(&model, &r, Mode::Train)
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let want_loss = r["loss"]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let got_loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (got_loss - want_loss).abs() < 1e-4,
            "{name}: loss {got_loss} vs {want_loss}"
        );
        let grads = loss.backward().unwrap();
        let expected: Vec<&String> = r.keys().filter(|k| k.starts_with("grad.")).collect();
        let trainable: Vec<&String> = model
            .params()
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !model.is_gradient_free(n))
            .collect();
        assert_eq!(
            expected.len(),
            trainable.len(),
            "{name}: trainable tensor count"
        );
        let mut worst = (0f32, String::new());
        for (pname, var) in model.params().iter() {
            if model.is_gradient_free(pname) {
                assert!(
                    grads.get(var.as_tensor()).is_none_or(|g| max_abs(g) == 0.0),
                    "{name}: {pname} got a gradient"
                );
                continue;
            }
            let want = &r[&format!("grad.{pname}")];
            let zero = Tensor::zeros(want.shape(), DType::F32, &Device::Cpu).unwrap();
            // An expert no token chose is not in the graph at all.
            let got = grads.get(var.as_tensor()).unwrap_or(&zero);
            if max_abs(want) == 0.0 {
                assert_eq!(max_abs(got), 0.0, "{name}: {pname} should have no gradient");
                continue;
            }
            let rel = max_abs_diff(got, want) / max_abs(want);
            if rel > worst.0 {
                worst = (rel, pname.clone());
            }
            assert!(
                rel < 1e-4,
                "{name}: gradient of {pname} off by {rel} (relative)"
            );
        }
        eprintln!(
            "{name}: worst relative gradient error {:.2e} ({})",
            worst.0, worst.1
        );
    }
}

#[test]
fn registered_in_model_and_fp8_dequantized_on_load() {
    let model = Model::load(&dir("deepseek_v3_fp8"), &LoadOptions::default()).unwrap();
    let r = candle_core::safetensors::load(
        dir("deepseek_v3_fp8").join("reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    for (n, v) in model.params().iter() {
        assert_eq!(v.dtype(), DType::F32, "{n}");
        assert!(!n.ends_with("scale_inv"), "{n}");
    }
    let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
    let pos = positions(&input);
    let fi = ForwardInput {
        input_ids: &input,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    let got = model.forward(&fi, None).unwrap().squeeze(0).unwrap();
    let diff = max_abs_diff(&got, &r["single_logits"]);
    assert!(diff < 1e-4, "fp8 via Model: logits differ by {diff}");
    let mut cache = model.new_cache();
    let fi = ForwardInput {
        logits: LogitsFor::Last,
        ..fi
    };
    model.forward(&fi, Some(&mut cache)).unwrap();
    assert_eq!(cache.len(), input.dim(1).unwrap());
}

#[test]
fn computing_all_experts_gives_the_same_logits() {
    let (mut model, r) = fixture("deepseek_v3_default");
    let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
    let sparse = logits(&model, &input, Mode::Inference);
    model.set_run_options(RunOptions {
        compute_all_experts: true,
        ..model.run_options()
    });
    let dense = logits(&model, &input, Mode::Inference);
    let diff = max_abs_diff(&sparse, &dense);
    assert!(diff < 1e-5, "all-experts baseline differs by {diff}");
}

/// A random DeepSeek-V3-shaped model built in memory (official tensor names).
fn random_model(raw: serde_json::Value) -> DeepseekV3 {
    let path = PathBuf::from("random/config.json");
    let cfg = DeepseekV3Config::from_json(&raw, &path).unwrap();
    let (h, v, nh) = (cfg.hidden_size, cfg.vocab_size, cfg.num_attention_heads);
    let qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut w = |name: String, shape: &[usize]| {
        let std = if shape.len() == 1 {
            0.0
        } else {
            1.0 / (shape[1] as f64).sqrt()
        };
        let x = if shape.len() == 1 && !name.contains("bias") {
            Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()
        } else {
            Tensor::randn(0f32, std.max(0.01) as f32, shape, &Device::Cpu).unwrap()
        };
        t.insert(name, x);
    };
    w("model.embed_tokens.weight".into(), &[v, h]);
    w("model.norm.weight".into(), &[h]);
    w("lm_head.weight".into(), &[v, h]);
    let mi = cfg.moe_intermediate_size.unwrap();
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let q = cfg.q_lora_rank.unwrap();
        w(format!("{p}.self_attn.q_a_proj.weight"), &[q, h]);
        w(format!("{p}.self_attn.q_a_layernorm.weight"), &[q]);
        w(format!("{p}.self_attn.q_b_proj.weight"), &[nh * qk, q]);
        w(
            format!("{p}.self_attn.kv_a_proj_with_mqa.weight"),
            &[cfg.kv_lora_rank + cfg.qk_rope_head_dim, h],
        );
        w(
            format!("{p}.self_attn.kv_a_layernorm.weight"),
            &[cfg.kv_lora_rank],
        );
        w(
            format!("{p}.self_attn.kv_b_proj.weight"),
            &[
                nh * (cfg.qk_nope_head_dim + cfg.v_head_dim),
                cfg.kv_lora_rank,
            ],
        );
        w(
            format!("{p}.self_attn.o_proj.weight"),
            &[h, nh * cfg.v_head_dim],
        );
        w(format!("{p}.input_layernorm.weight"), &[h]);
        w(format!("{p}.post_attention_layernorm.weight"), &[h]);
        let mlp = |w: &mut dyn FnMut(String, &[usize]), pre: String, inter: usize| {
            w(format!("{pre}.gate_proj.weight"), &[inter, h]);
            w(format!("{pre}.up_proj.weight"), &[inter, h]);
            w(format!("{pre}.down_proj.weight"), &[h, inter]);
        };
        if cfg.is_moe_layer(i) {
            let e = cfg.n_experts();
            w(format!("{p}.mlp.gate.weight"), &[e, h]);
            w(format!("{p}.mlp.gate.e_score_correction_bias"), &[e]);
            for ei in 0..e {
                mlp(&mut w, format!("{p}.mlp.experts.{ei}"), mi);
            }
            mlp(
                &mut w,
                format!("{p}.mlp.shared_experts"),
                mi * cfg.n_shared_experts.unwrap_or(0),
            );
        } else {
            mlp(&mut w, format!("{p}.mlp"), cfg.intermediate_size);
        }
    }
    let mut ckpt = Checkpoint::from_tensors(t, &path);
    DeepseekV3::load(cfg, &mut ckpt, &Device::Cpu).unwrap()
}

fn decode_tokens_per_s(model: &DeepseekV3, prompt_len: usize, new: usize) -> f64 {
    let mut cache = aha_model::KvCache::new(model.num_layers());
    let prompt = Tensor::from_vec(
        (0..prompt_len as u32)
            .map(|i| i * 7 % 1000 + 1)
            .collect::<Vec<_>>(),
        (1, prompt_len),
        &Device::Cpu,
    )
    .unwrap();
    let pos = positions(&prompt);
    let input = ForwardInput {
        input_ids: &prompt,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::Last,
    };
    let mut out = model.forward(&input, Some(&mut cache)).unwrap();
    let start = std::time::Instant::now();
    for step in 0..new {
        let next = out
            .i((0, 0))
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        let ids = Tensor::new(&[[next]], &Device::Cpu).unwrap();
        let p = (prompt_len + step) as u32;
        let pos = Tensor::new(&[[p]], &Device::Cpu).unwrap();
        let input = ForwardInput {
            input_ids: &ids,
            position_ids: &pos,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        out = model.forward(&input, Some(&mut cache)).unwrap();
    }
    new as f64 / start.elapsed().as_secs_f64()
}

/// Decode throughput of a MoE model with 1/8 of the routed experts active per token against
/// the same model computing every expert, and MLA cache bytes (absorbed/compressed vs naive).
/// `cargo test -p aha-model --test deepseek_v3 bench_ -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_moe_decode_and_mla_cache() {
    let raw = serde_json::json!({
        "model_type": "deepseek_v3", "vocab_size": 1024, "hidden_size": 512, "intermediate_size": 1024,
        "moe_intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
        "n_shared_experts": 1, "n_routed_experts": 64, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
        "routed_scaling_factor": 2.5, "norm_topk_prob": true, "first_k_dense_replace": 1,
        "kv_lora_rank": 128, "q_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    });
    let mut model = random_model(raw);
    let total: usize = model.params().count();
    eprintln!("model: {:.1}M parameters, 3 MoE layers x 64 experts (8 routed + 1 shared active per token)", total as f64 / 1e6);
    let (prompt, new) = (64, 48);
    decode_tokens_per_s(&model, 8, 4); // warm-up
    for form in [MlaForm::Absorbed, MlaForm::Plain] {
        model.set_run_options(RunOptions {
            mla_form: form,
            ..model.run_options()
        });
        model.set_run_options(RunOptions {
            compute_all_experts: false,
            ..model.run_options()
        });
        let sparse = decode_tokens_per_s(&model, prompt, new);
        model.set_run_options(RunOptions {
            compute_all_experts: true,
            ..model.run_options()
        });
        let dense = decode_tokens_per_s(&model, prompt, new);
        eprintln!("{form:?} MLA: routed experts only {sparse:.1} tok/s, all experts {dense:.1} tok/s ({:.2}x)", sparse / dense);
    }
    eprintln!(
        "cache bytes/token (f32, this model): MLA {} vs naive {} ({:.1}x smaller)",
        model.cache_bytes_per_token(),
        model.naive_cache_bytes_per_token(),
        model.naive_cache_bytes_per_token() as f64 / model.cache_bytes_per_token() as f64
    );
    // DeepSeek-V3 / R1 at bf16: 61 layers, 128 heads, kv_lora_rank 512, rope 64, nope 128, v 128.
    let (mla, naive) = (61 * (512 + 64) * 2, 61 * 128 * (128 + 64 + 128) * 2);
    eprintln!(
        "cache bytes/token (bf16, DeepSeek-V3 671B): MLA {mla} vs naive {naive} ({:.1}x smaller)",
        naive as f64 / mla as f64
    );
}

/// YaRN inv_freq and attention factor against transformers' `_compute_yarn_parameters`
/// (values printed by transformers 5.24) for the cases the fixtures do not cover: mscale or
/// mscale_all_dim alone, an explicit attention_factor, truncate false.
#[test]
fn yarn_parameters_match_transformers() {
    let cases: [(serde_json::Value, f64, [f64; 8]); 4] = [
        (
            serde_json::json!({"factor": 4.0, "original_max_position_embeddings": 64, "mscale": 0.707}),
            1.138629436111989,
            [
                1.0,
                0.237170815,
                0.049999997,
                0.007905695,
                0.0025,
                0.000790569,
                0.00025,
                7.9057e-05,
            ],
        ),
        (
            serde_json::json!({"factor": 4.0, "original_max_position_embeddings": 64, "mscale_all_dim": 0.5}),
            1.138629436111989,
            [
                1.0,
                0.237170815,
                0.049999997,
                0.007905695,
                0.0025,
                0.000790569,
                0.00025,
                7.9057e-05,
            ],
        ),
        (
            serde_json::json!({"factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.3, "beta_fast": 16.0, "beta_slow": 2.0}),
            1.3,
            [
                1.0,
                0.197642356,
                0.025,
                0.007905695,
                0.0025,
                0.000790569,
                0.00025,
                7.9057e-05,
            ],
        ),
        (
            serde_json::json!({"factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 1.0, "truncate": false}),
            1.0,
            [
                1.0,
                0.316227764,
                0.100000001,
                0.027710859,
                0.005524063,
                0.000722638,
                2.5e-05,
                7.906e-06,
            ],
        ),
    ];
    for (rope, want_factor, want_inv) in cases {
        let mut rp = rope.clone();
        rp["rope_type"] = "yarn".into();
        rp["rope_theta"] = 10000.0.into();
        let raw = serde_json::json!({"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 1, "kv_lora_rank": 4, "q_lora_rank": null, "qk_rope_head_dim": 16, "qk_nope_head_dim": 4,
            "v_head_dim": 4, "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "rope_parameters": rp});
        let cfg = DeepseekV3Config::from_json(&raw, &PathBuf::from("config.json")).unwrap();
        let rope_cfg = cfg.rope.clone().unwrap();
        let r = aha_model::rope::Rope::new(&rope_cfg, 16, &Device::Cpu).unwrap();
        let (cos, sin) = r
            .cos_sin(&Tensor::new(&[[0u32, 1]], &Device::Cpu).unwrap())
            .unwrap();
        let cos: Vec<Vec<f32>> = cos.squeeze(0).unwrap().to_vec2().unwrap();
        let sin: Vec<Vec<f32>> = sin.squeeze(0).unwrap().to_vec2().unwrap();
        assert!(
            (cos[0][0] as f64 - want_factor).abs() < 1e-6,
            "{rope}: attention factor {} vs {want_factor}",
            cos[0][0]
        );
        for (i, &w) in want_inv.iter().enumerate() {
            let got = (sin[1][i] as f64).atan2(cos[1][i] as f64);
            assert!(
                (got - w).abs() < 1e-6 * w.max(1e-3) + 1e-9,
                "{rope}: inv_freq[{i}] {got} vs {w}"
            );
        }
        // The softmax scale follows mscale_all_dim alone (yarn_apply_mscale).
        let mad = rope
            .get("mscale_all_dim")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        let m = if mad != 0.0 {
            aha_model::rope::yarn_mscale(rope["factor"].as_f64().unwrap(), mad)
        } else {
            1.0
        };
        assert!(
            (cfg.softmax_scale() - m * m / 20f64.sqrt()).abs() < 1e-12,
            "{rope}: softmax scale"
        );
    }
}

/// bf16 compute (the dtype for large checkpoints) runs in both MLA forms and stays about as
/// close to the f32 reference as transformers' own bf16 run of this fixture (0.81 max logit
/// difference: this tiny random model flips some near-tied routing choices under bf16).
#[test]
fn bf16_compute_runs_and_stays_close() {
    let name = "deepseek_v3_default";
    let opts = LoadOptions {
        dtype: DType::BF16,
        device: Device::Cpu,
        ..LoadOptions::default()
    };
    let mut model = DeepseekV3::load_dir(&dir(name), &opts).unwrap();
    let r = candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap();
    let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
    for form in [MlaForm::Plain, MlaForm::Absorbed] {
        model.set_run_options(RunOptions {
            mla_form: form,
            ..model.run_options()
        });
        let got = logits(&model, &input, Mode::Inference)
            .to_dtype(DType::F32)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let diff = max_abs_diff(&got, &r["single_logits"]);
        eprintln!("bf16 {form:?}: max |logits - f32 transformers| = {diff:.3}");
        assert!(diff.is_finite() && diff < 1.5, "bf16 {form:?}: {diff}");
    }
    let (got, _) = greedy(&model, &ids(&r["greedy_prompt"]), 4);
    assert_eq!(got.len(), 4);
}

/// `Model::save` writes every tensor under its checkpoint name (routing bias included), and
/// the saved directory loads back to the same logits (also from a block-FP8 source, saved
/// dequantized).
#[test]
fn save_and_reload_roundtrip() {
    for name in ["deepseek_v3_default", "deepseek_v3_fp8"] {
        let model = Model::load(&dir(name), &LoadOptions::default()).unwrap();
        let out =
            std::env::temp_dir().join(format!("aha_ds_roundtrip_{}_{name}", std::process::id()));
        model.save(&out).unwrap();
        let again = Model::load(&out, &LoadOptions::default()).unwrap();
        assert_eq!(model.params().len(), again.params().len());
        let r =
            candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
                .unwrap();
        let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
        let pos = positions(&input);
        let fi = ForwardInput {
            input_ids: &input,
            position_ids: &pos,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::All,
        };
        let diff = max_abs_diff(
            &model.forward(&fi, None).unwrap(),
            &again.forward(&fi, None).unwrap(),
        );
        assert_eq!(diff, 0.0, "{name}: reloaded model differs by {diff}");
        std::fs::remove_dir_all(&out).ok();
    }
}

/// The MTP module against transformers' `MtpLayer` (fixture deepseek_v3_mtp, DeepSeek-V3's
/// checkpoint layout `model.layers.{L}.*`).
#[test]
fn mtp_module_matches_transformers() {
    let name = "deepseek_v3_mtp";
    let model = DeepseekV3::load_dir(&dir(name), &LoadOptions::default()).unwrap();
    assert_eq!(model.num_mtp(), 1);
    let r = candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap();
    let all = ids(&r["mtp_ids"]).unsqueeze(0).unwrap();
    let t = all.dim(1).unwrap();
    let pos = positions(&all);
    let fi = ForwardInput {
        input_ids: &all,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    let out = model.forward_full(&fi, None, false).unwrap();
    let hidden = out.hidden.narrow(1, 0, t - 1).unwrap();
    let next = all.narrow(1, 1, t - 1).unwrap();
    let next_pos = pos.narrow(1, 1, t - 1).unwrap();
    let (got, _) = model
        .mtp_forward(0, &hidden, &next, &next_pos, None, None)
        .unwrap();
    let diff = max_abs_diff(&got.squeeze(0).unwrap(), &r["mtp_logits"]);
    eprintln!("{name}: max |MTP logits - transformers MtpLayer| = {diff:.2e}");
    assert!(diff < 1e-4, "MTP logits differ by {diff}");
    // Through a cache, one position at a time, as in decoding.
    let mut cache = aha_model::KvCache::new(1);
    for i in 0..t - 1 {
        let (step, _) = model
            .mtp_forward(
                0,
                &hidden.narrow(1, i, 1).unwrap(),
                &next.narrow(1, i, 1).unwrap(),
                &next_pos.narrow(1, i, 1).unwrap(),
                None,
                Some(&mut cache),
            )
            .unwrap();
        let diff = max_abs_diff(
            &step.squeeze(0).unwrap().squeeze(0).unwrap(),
            &r["mtp_logits"].get(i).unwrap(),
        );
        assert!(diff < 1e-4, "cached MTP step {i} differs by {diff}");
    }
    // Registered through Model too, with no checkpoint tensor left over.
    let m = Model::load(&dir(name), &LoadOptions::default()).unwrap();
    assert_eq!(m.params().len(), model.params().len());
}

/// DeepSeek-V3 / R1's own config.json (Hub release, block FP8, YaRN, MTP) parses into the
/// settings the model runs with.
#[test]
fn official_deepseek_r1_config_parses() {
    let raw: serde_json::Value = serde_json::from_str(r#"{
        "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config", "AutoModel": "modeling_deepseek.DeepseekV3Model",
            "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
        "aux_loss_alpha": 0.001, "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3,
        "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432,
        "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3", "moe_intermediate_size": 2048,
        "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": true,
        "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
        "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "seq_aux": true,
        "tie_word_embeddings": false, "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3", "use_cache": true, "v_head_dim": 128, "vocab_size": 129280
    }"#).unwrap();
    let cfg = DeepseekV3Config::from_json(&raw, &PathBuf::from("DeepSeek-R1/config.json")).unwrap();
    assert_eq!(
        aha_model::config::architecture(&raw).as_deref(),
        Some("deepseek_v3")
    );
    assert_eq!(cfg.fp8_block(), Some((128, 128)));
    assert_eq!(cfg.num_nextn_predict_layers, Some(1));
    assert!(!cfg.is_moe_layer(2) && cfg.is_moe_layer(3) && cfg.is_moe_layer(60));
    assert_eq!((cfg.n_experts(), cfg.top_k(), cfg.groups()), (256, 8, 8));
    assert_eq!(
        cfg.topk_method(),
        aha_model::deepseek_v3::TopkMethod::NoauxTc
    );
    assert!(cfg.rope_interleave.unwrap_or(true));
    let m = 0.1 * 40f64.ln() + 1.0;
    assert!((cfg.softmax_scale() - m * m / 192f64.sqrt()).abs() < 1e-12);
    // transformers-5 spelling of the same
    let mut v5 = raw.clone();
    let obj = v5.as_object_mut().unwrap();
    let rs = obj.remove("rope_scaling").unwrap();
    obj.remove("rope_theta");
    let mut rp = rs.clone();
    rp["rope_type"] = "yarn".into();
    rp.as_object_mut().unwrap().remove("type");
    rp["rope_theta"] = 10000.0.into();
    obj.insert("rope_parameters".into(), rp);
    let n = obj.remove("num_nextn_predict_layers").unwrap();
    obj.insert("num_mtp_layers".into(), n);
    let cfg5 = DeepseekV3Config::from_json(&v5, &PathBuf::from("config.json")).unwrap();
    assert_eq!(cfg5.rope, cfg.rope);
    assert_eq!(cfg5.num_nextn_predict_layers, Some(1));
}
