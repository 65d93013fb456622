//! Balancing DeepSeek-V3's experts while training (aha_train::moe) on aha-model's tiny
//! fixture: loads count real tokens only, the bias update evens the load without touching
//! weights, and the sequence-wise balance loss has the paper's value and a gradient.

use aha_model::deepseek_v3::{DeepseekV3, ForwardOutput};
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode};
use aha_train::moe;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> (DeepseekV3, HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures")
        .join(name);
    let model = DeepseekV3::load_dir(&dir, &LoadOptions::default()).unwrap();
    let reference =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
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

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn routed(model: &DeepseekV3, ids: &Tensor, mask: Option<&Tensor>, mode: Mode) -> ForwardOutput {
    let pos = positions(ids);
    let input = ForwardInput {
        input_ids: ids,
        position_ids: &pos,
        key_mask: mask,
        segments: None,
        mode,
        logits: LogitsFor::All,
    };
    model.forward_full(&input, None, true).unwrap()
}

#[test]
fn expert_load_counts_real_tokens_only() {
    let (model, r) = fixture("deepseek_v3_default");
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
    let out = model.forward_full(&input, None, true).unwrap();
    let real: f32 = r["batch_mask"]
        .to_dtype(DType::F32)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let loads = moe::expert_load(&out.routing, Some(&mask)).unwrap();
    let (e, k) = (model.cfg.n_experts(), model.cfg.top_k() as f32);
    assert_eq!(
        loads.len(),
        (0..model.num_layers())
            .filter(|&i| model.cfg.is_moe_layer(i))
            .count()
    );
    for (layer, load) in &loads {
        assert_eq!(load.len(), e);
        assert_eq!(load.iter().sum::<f32>(), real * k, "layer {layer}");
    }
    let all = moe::expert_load(&out.routing, None).unwrap();
    assert_eq!(
        all[0].1.iter().sum::<f32>(),
        batch_ids.elem_count() as f32 * k
    );
}

#[test]
fn bias_balancing_evens_out_expert_load_without_touching_weights() {
    let (model, _) = fixture("deepseek_v3_default");
    // 4 sequences of 32 pseudo-random tokens.
    let v: Vec<u32> = (0..128u32).map(|i| (i * 37 + 11) % 255 + 1).collect();
    let batch = Tensor::from_vec(v, (4, 32), &Device::Cpu).unwrap();
    let imbalance = |m: &DeepseekV3| -> f32 {
        let out = routed(m, &batch, None, Mode::Inference);
        let loads = moe::expert_load(&out.routing, None).unwrap();
        loads
            .iter()
            .map(|(_, l)| {
                l.iter().cloned().fold(0f32, f32::max) / (l.iter().sum::<f32>() / l.len() as f32)
            })
            .fold(0f32, f32::max)
    };
    let before = imbalance(&model);
    let bias_name = "model.layers.1.mlp.gate.e_score_correction_bias";
    let b0: Vec<f32> = model
        .params()
        .get(bias_name)
        .unwrap()
        .as_tensor()
        .to_vec1()
        .unwrap();
    let gate0 = model
        .params()
        .get("model.layers.1.mlp.gate.weight")
        .unwrap()
        .as_tensor()
        .copy()
        .unwrap();
    for _ in 0..30 {
        let out = routed(&model, &batch, None, Mode::Inference);
        let loads = moe::expert_load(&out.routing, None).unwrap();
        moe::update_routing_bias(&model, &loads, 0.01).unwrap();
    }
    let b1: Vec<f32> = model
        .params()
        .get(bias_name)
        .unwrap()
        .as_tensor()
        .to_vec1()
        .unwrap();
    assert!(b0.iter().zip(&b1).all(|(a, b)| (a - b).abs() <= 0.3 + 1e-5));
    assert!(b0 != b1);
    assert_eq!(
        crate::common::max_abs_diff(
            &gate0,
            model
                .params()
                .get("model.layers.1.mlp.gate.weight")
                .unwrap()
                .as_tensor()
        ),
        0.0
    );
    let after = imbalance(&model);
    eprintln!("max load / mean load: {before:.2} before, {after:.2} after 30 bias updates");
    assert!(
        after < before,
        "balancing did not help: {before} -> {after}"
    );
}

#[test]
fn sequence_balance_loss_value_and_gradient() {
    let (model, r) = fixture("deepseek_v3_default");
    let batch_ids = ids(&r["batch_ids"]);
    let mask = r["batch_mask"].to_dtype(DType::U32).unwrap();
    let out = routed(&model, &batch_ids, Some(&mask), Mode::Train);
    let alpha = 1e-4;
    let loss = moe::sequence_balance_loss(&out.routing, Some(&mask), alpha).unwrap();
    // By hand, from the recorded routing.
    let m: Vec<Vec<u32>> = mask.to_vec2().unwrap();
    let mut want = 0f64;
    for rt in &out.routing {
        let s: Vec<Vec<f32>> = rt.scores.to_vec2().unwrap();
        let (e, k, t) = (rt.n_experts, rt.top_k, rt.seq);
        for (b, row) in m.iter().enumerate() {
            let len = row.iter().filter(|&&x| x == 1).count() as f64;
            let mut f = vec![0f64; e];
            let mut p = vec![0f64; e];
            for (j, &mj) in row.iter().enumerate() {
                if mj == 0 {
                    continue;
                }
                let n = b * t + j;
                for &ex in &rt.experts[n * k..(n + 1) * k] {
                    f[ex as usize] += e as f64 / (k as f64 * len);
                }
                let tot: f64 = s[n].iter().map(|&x| x as f64).sum();
                for (i, &x) in s[n].iter().enumerate() {
                    p[i] += x as f64 / tot / len;
                }
            }
            want += f.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>() / m.len() as f64;
        }
    }
    want *= alpha / out.routing.len() as f64;
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (got - want).abs() < 1e-6 * want.abs().max(1e-3),
        "balance loss {got} vs {want}"
    );
    let grads = loss.backward().unwrap();
    for layer in [1, 2] {
        let g = grads
            .get(
                model
                    .params()
                    .get(&format!("model.layers.{layer}.mlp.gate.weight"))
                    .unwrap()
                    .as_tensor(),
            )
            .unwrap();
        assert!(max_abs(g) > 0.0 && max_abs(g).is_finite());
    }
}
