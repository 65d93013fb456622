//! DeepSeek-V3 parity with transformers' `DeepseekV3ForCausalLM` on tiny random models
//! (fixtures recorded by scripts/ref/make_deepseek_fixtures.py): logits, padded batches,
//! greedy tokens, log-probs, gradients, chosen experts; and the absorbed-MLA decode, FP8
//! loading, routing statistics and balancing.

use aha_model::deepseek_v3::{DeepseekV3, MlaForm};
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use std::collections::HashMap;
use std::path::PathBuf;

const FIXTURES: [&str; 4] = ["deepseek_v3_default", "deepseek_v3_yarn", "deepseek_v3_bf16", "deepseek_v3_fp8"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture(name: &str) -> (DeepseekV3, HashMap<String, Tensor>) {
    let model = DeepseekV3::load_dir(&dir(name), &LoadOptions::default()).expect("load fixture model");
    let reference = candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu).expect("load reference");
    (model, reference)
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn positions(input_ids: &Tensor) -> Tensor {
    let t = input_ids.dim(1).unwrap();
    Tensor::arange(0u32, t as u32, &Device::Cpu).unwrap().unsqueeze(0).unwrap().broadcast_as(input_ids.dims()).unwrap().contiguous().unwrap()
}

fn logits(model: &DeepseekV3, input_ids: &Tensor, mode: Mode) -> Tensor {
    let pos = positions(input_ids);
    let input = ForwardInput { input_ids, position_ids: &pos, key_mask: None, mode, logits: LogitsFor::All };
    model.forward(&input, None).unwrap()
}

#[test]
fn single_sequence_logits_match_in_every_mode_and_form() {
    for name in FIXTURES {
        let (mut model, r) = fixture(name);
        let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
        for form in [MlaForm::Plain, MlaForm::Absorbed] {
            model.mla_form = form;
            for mode in [Mode::Inference, Mode::Train] {
                let got = logits(&model, &input, mode).squeeze(0).unwrap();
                let diff = max_abs_diff(&got, &r["single_logits"]);
                assert!(diff < 1e-4, "{name} {form:?} {mode:?}: logits differ by {diff}");
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
        let fi = ForwardInput { input_ids: &input, position_ids: &pos, key_mask: None, mode: Mode::Inference, logits: LogitsFor::All };
        let chosen = model.chosen_experts(&fi).unwrap();
        let expected: Vec<&String> = r.keys().filter(|k| k.starts_with("experts.")).collect();
        assert_eq!(chosen.len(), expected.len(), "{name}: MoE layer count");
        for (layer, per_token) in chosen {
            let want: Vec<Vec<i64>> = r[&format!("experts.{layer}")].to_vec2().unwrap();
            let got: Vec<Vec<i64>> = per_token.iter().map(|v| v.iter().map(|&e| e as i64).collect()).collect();
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
        let input = ForwardInput { input_ids: &batch_ids, position_ids: &pos, key_mask: Some(&mask), mode: Mode::Inference, logits: LogitsFor::All };
        let got = model.forward(&input, None).unwrap();
        let mask_v: Vec<Vec<u32>> = mask.to_vec2().unwrap();
        for (b, row) in mask_v.iter().enumerate() {
            let start = row.iter().position(|&m| m == 1).unwrap();
            let got_b = got.i((b, start..)).unwrap();
            let diff = max_abs_diff(&got_b, &r["batch_logits"].i((b, start..)).unwrap());
            assert!(diff < 1e-4, "{name} row {b}: batch logits differ from reference by {diff}");
            let alone = batch_ids.i((b..b + 1, start..)).unwrap();
            let single = logits(&model, &alone, Mode::Inference).squeeze(0).unwrap();
            let diff = max_abs_diff(&got_b, &single);
            assert!(diff < 1e-4, "{name} row {b}: padded batch differs from single by {diff}");
        }
    }
}

fn greedy(model: &DeepseekV3, prompt: &Tensor, n: usize) -> (Vec<i64>, Vec<Tensor>) {
    let mut seq = prompt.unsqueeze(0).unwrap();
    let mut cache = KvCacheFor::new(model);
    let mut past = 0usize;
    let (mut got, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = seq.dim(1).unwrap();
        let pos = Tensor::arange(past as u32, (past + t) as u32, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let input = ForwardInput { input_ids: &seq, position_ids: &pos, key_mask: None, mode: Mode::Inference, logits: LogitsFor::Last };
        let out = model.forward(&input, Some(&mut cache)).unwrap();
        let next = out.i((0, 0)).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
        steps.push(out.i((0, 0)).unwrap());
        got.push(next as i64);
        past += t;
        seq = Tensor::new(&[[next]], &Device::Cpu).unwrap();
    }
    (got, steps)
}

struct KvCacheFor;
impl KvCacheFor {
    fn new(model: &DeepseekV3) -> aha_model::KvCache {
        aha_model::KvCache::new(model.num_layers())
    }
}

#[test]
fn greedy_tokens_with_compressed_cache_match_in_both_forms() {
    for name in FIXTURES {
        let (mut model, r) = fixture(name);
        let want: Vec<i64> = r["greedy_tokens"].to_vec1().unwrap();
        let prompt = ids(&r["greedy_prompt"]);
        model.mla_form = MlaForm::Plain;
        let (plain, plain_steps) = greedy(&model, &prompt, want.len());
        assert_eq!(plain, want, "{name}: greedy tokens (plain MLA)");
        model.mla_form = MlaForm::Absorbed;
        let (absorbed, absorbed_steps) = greedy(&model, &prompt, want.len());
        assert_eq!(absorbed, want, "{name}: greedy tokens (absorbed MLA)");
        let worst = plain_steps.iter().zip(&absorbed_steps).map(|(a, b)| max_abs_diff(a, b)).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{name}: absorbed decode logits differ from plain by {worst}");
    }
}

#[test]
fn mla_cache_is_compressed() {
    let (model, _) = fixture("deepseek_v3_default");
    let c = &model.cfg;
    // f32: layers * (kv_lora_rank + rope) * 4 vs layers * heads * (nope + rope + v) * 4
    assert_eq!(model.cache_bytes_per_token(), c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4);
    assert_eq!(model.naive_cache_bytes_per_token(), c.num_hidden_layers * c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim) * 4);
    assert!(model.cache_bytes_per_token() * 3 < model.naive_cache_bytes_per_token());
    // The cache really holds [b, 1, T, rank] latents.
    let mut cache = aha_model::KvCache::new(model.num_layers());
    let ids = Tensor::new(&[[3u32, 4, 5]], &Device::Cpu).unwrap();
    let pos = positions(&ids);
    let input = ForwardInput { input_ids: &ids, position_ids: &pos, key_mask: None, mode: Mode::Inference, logits: LogitsFor::Last };
    model.forward(&input, Some(&mut cache)).unwrap();
    assert_eq!(cache.len(), 3);
}

fn completion_logprobs(model: &DeepseekV3, r: &HashMap<String, Tensor>, mode: Mode) -> Tensor {
    let prompt = ids(&r["lp_prompt"]);
    let completion = ids(&r["lp_completion"]);
    let p = prompt.dim(0).unwrap();
    let c = completion.dim(0).unwrap();
    let all = Tensor::cat(&[&prompt, &completion], 0).unwrap().unsqueeze(0).unwrap();
    let logits = logits(model, &all, mode).squeeze(0).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.narrow(0, p - 1, c).unwrap(), D::Minus1).unwrap();
    lp.gather(&completion.unsqueeze(1).unwrap().contiguous().unwrap(), 1).unwrap().squeeze(1).unwrap()
}

#[test]
fn completion_logprobs_match() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let got = completion_logprobs(&model, &r, Mode::Inference);
        let diff = max_abs_diff(&got, &r["lp_logprobs"]);
        assert!(diff < 1e-4, "{name}: log-probs differ by {diff}");
    }
}

#[test]
fn gradients_match_for_every_trainable_tensor() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let loss = completion_logprobs(&model, &r, Mode::Train).mean_all().unwrap().neg().unwrap();
        let want_loss = r["loss"].to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let got_loss = loss.to_scalar::<f32>().unwrap();
        assert!((got_loss - want_loss).abs() < 1e-4, "{name}: loss {got_loss} vs {want_loss}");
        let grads = loss.backward().unwrap();
        let expected: Vec<&String> = r.keys().filter(|k| k.starts_with("grad.")).collect();
        let trainable: Vec<&String> = model.params().iter().map(|(n, _)| n).filter(|n| !model.is_gradient_free(n)).collect();
        assert_eq!(expected.len(), trainable.len(), "{name}: trainable tensor count");
        let mut worst = (0f32, String::new());
        for (pname, var) in model.params().iter() {
            if model.is_gradient_free(pname) {
                assert!(grads.get(var.as_tensor()).is_none_or(|g| max_abs(g) == 0.0), "{name}: {pname} got a gradient");
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
            assert!(rel < 1e-4, "{name}: gradient of {pname} off by {rel} (relative)");
        }
        eprintln!("{name}: worst relative gradient error {:.2e} ({})", worst.0, worst.1);
    }
}

#[test]
fn registered_in_model_and_fp8_dequantized_on_load() {
    let model = Model::load(&dir("deepseek_v3_fp8"), &LoadOptions::default()).unwrap();
    let r = candle_core::safetensors::load(dir("deepseek_v3_fp8").join("reference.safetensors"), &Device::Cpu).unwrap();
    for (n, v) in model.params().iter() {
        assert_eq!(v.dtype(), DType::F32, "{n}");
        assert!(!n.ends_with("scale_inv"), "{n}");
    }
    let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
    let pos = positions(&input);
    let fi = ForwardInput { input_ids: &input, position_ids: &pos, key_mask: None, mode: Mode::Inference, logits: LogitsFor::All };
    let got = model.forward(&fi, None).unwrap().squeeze(0).unwrap();
    let diff = max_abs_diff(&got, &r["single_logits"]);
    assert!(diff < 1e-4, "fp8 via Model: logits differ by {diff}");
    let mut cache = model.new_cache();
    let fi = ForwardInput { logits: LogitsFor::Last, ..fi };
    model.forward(&fi, Some(&mut cache)).unwrap();
    assert_eq!(cache.len(), input.dim(1).unwrap());
}

#[test]
fn computing_all_experts_gives_the_same_logits() {
    let (mut model, r) = fixture("deepseek_v3_default");
    let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
    let sparse = logits(&model, &input, Mode::Inference);
    model.compute_all_experts = true;
    let dense = logits(&model, &input, Mode::Inference);
    let diff = max_abs_diff(&sparse, &dense);
    assert!(diff < 1e-5, "all-experts baseline differs by {diff}");
}
