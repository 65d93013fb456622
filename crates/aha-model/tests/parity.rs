//! Parity with transformers on tiny random models (fixtures recorded by
//! scripts/ref/make_model_fixtures.py): logits, padded batches, greedy tokens,
//! log-probs and gradients.

use crate::common;
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use common::{max_abs, max_abs_diff};
use std::collections::HashMap;
use std::path::PathBuf;

const FIXTURES: [&str; 4] = ["qwen2_tied", "qwen2_untied", "llama3_rope", "qwen2_bf16"];

fn fixture(name: &str) -> (Model, HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let model = Model::load(&dir, &LoadOptions::default()).expect("load fixture model");
    let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
        .expect("load reference");
    (model, reference)
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

fn logits(model: &Model, input_ids: &Tensor, mode: Mode) -> Tensor {
    let t = input_ids.dim(1).unwrap();
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .broadcast_as(input_ids.dims())
        .unwrap()
        .contiguous()
        .unwrap();
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
fn single_sequence_logits_match() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let input = ids(&r["single_ids"]).unsqueeze(0).unwrap();
        for mode in [Mode::Inference, Mode::Train] {
            let got = logits(&model, &input, mode).squeeze(0).unwrap();
            let diff = max_abs_diff(&got, &r["single_logits"]);
            assert!(diff < 1e-4, "{name} {mode:?}: logits differ by {diff}");
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
            let len = row.len() - start;
            let got_b = got.i((b, start..)).unwrap();
            let want = r["batch_logits"].i((b, start..)).unwrap();
            let diff = max_abs_diff(&got_b, &want);
            assert!(
                diff < 1e-4,
                "{name} row {b}: batch logits differ from reference by {diff}"
            );
            // The same sequence alone, unpadded.
            let alone = batch_ids.i((b..b + 1, start..)).unwrap();
            let single = logits(&model, &alone, Mode::Inference).squeeze(0).unwrap();
            assert_eq!(single.dims(), &[len, model.vocab_size()]);
            let diff = max_abs_diff(&got_b, &single);
            assert!(
                diff < 1e-4,
                "{name} row {b}: padded batch differs from single by {diff}"
            );
        }
    }
}

#[test]
fn greedy_tokens_with_kv_cache_match() {
    for name in FIXTURES {
        let (model, r) = fixture(name);
        let want: Vec<i64> = r["greedy_tokens"].to_vec1().unwrap();
        let mut seq = ids(&r["greedy_prompt"]).unsqueeze(0).unwrap();
        let mut cache = model.new_cache();
        let mut past = 0usize;
        let mut got = Vec::new();
        for _ in 0..want.len() {
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
            got.push(next as i64);
            past += t;
            seq = Tensor::new(&[[next]], &Device::Cpu).unwrap();
        }
        assert_eq!(got, want, "{name}: greedy tokens");
    }
}

fn completion_logprobs(model: &Model, r: &HashMap<String, Tensor>, mode: Mode) -> Tensor {
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
        assert!(diff < 1e-4, "{name}: log-probs differ by {diff}");
    }
}

#[test]
fn gradients_match_for_every_parameter() {
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
        assert_eq!(
            expected.len(),
            model.params().len(),
            "{name}: parameter count"
        );
        for (pname, var) in model.params().iter() {
            let want = &r[&format!("grad.{pname}")];
            let got = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
            let scale = max_abs(want).max(1e-6);
            let rel = max_abs_diff(got, want) / scale;
            assert!(
                rel < 1e-4,
                "{name}: gradient of {pname} off by {rel} (relative)"
            );
            assert!(
                max_abs(got) > 0.0 && max_abs(got).is_finite(),
                "{name}: {pname} gradient is zero or not finite"
            );
        }
    }
}
