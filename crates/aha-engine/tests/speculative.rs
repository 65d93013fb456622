//! Speculative greedy decoding on DeepSeek-V3 (aha-model's tiny fixtures): drafts from an MTP
//! module or any proposer, verified by the main model, give exactly plain greedy decoding.

use aha_engine::speculative::{speculative_greedy, Drafter};
use aha_model::deepseek_v3::{DeepseekV3, DeepseekV3Config};
use aha_model::weights::Checkpoint;
use aha_model::LoadOptions;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// aha-model's DeepSeek-V3 fixtures (recorded by scripts/ref/make_deepseek_fixtures.py).
fn u32s(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect()
}

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures")
        .join(name)
}

/// The default fixture plus a random MTP module `model.layers.{L}` (official DeepSeek names).
fn with_mtp(name: &str, seed: u64) -> DeepseekV3 {
    let d = dir(name);
    let mut raw = aha_model::config::read_config(&d.join("config.json")).unwrap();
    let layers = raw["num_hidden_layers"].as_u64().unwrap() as usize;
    let h = raw["hidden_size"].as_u64().unwrap() as usize;
    raw["num_nextn_predict_layers"] = serde_json::json!(1);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in candle_core::safetensors::load(d.join("model.safetensors"), &Device::Cpu).unwrap()
    {
        tensors.insert(k, v);
    }
    let last = format!("model.layers.{}.", layers - 1);
    let mtp = format!("model.layers.{layers}.");
    let mut rng = seed;
    let mut noise = |shape: &[usize], base: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                base + ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let copies: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k.starts_with(&last))
        .map(|(k, v)| (k.replacen(&last, &mtp, 1), v.clone()))
        .collect();
    for (k, v) in copies {
        let v = (&v + noise(v.dims(), 0.0)).unwrap();
        tensors.insert(k, v);
    }
    tensors.insert(format!("{mtp}enorm.weight"), noise(&[h], 1.0));
    tensors.insert(format!("{mtp}hnorm.weight"), noise(&[h], 1.0));
    tensors.insert(format!("{mtp}eh_proj.weight"), noise(&[h, 2 * h], 0.0));
    tensors.insert(format!("{mtp}shared_head.norm.weight"), noise(&[h], 1.0));
    let cfg = DeepseekV3Config::from_json(&raw, &d.join("config.json")).unwrap();
    let mut ckpt = Checkpoint::from_tensors(tensors, &d);
    DeepseekV3::load(cfg, &mut ckpt, &Device::Cpu).unwrap()
}

#[test]
fn mtp_speculative_decoding_equals_plain_greedy() {
    for name in ["deepseek_v3_default", "deepseek_v3_yarn"] {
        let r =
            candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
                .unwrap();
        let want = u32s(&r["greedy_tokens"]);
        let prompt = u32s(&r["greedy_prompt"]);
        let model = with_mtp(name, 7);
        assert_eq!(model.num_mtp(), 1);
        assert!(model.is_gradient_free(&format!(
            "model.layers.{}.eh_proj.weight",
            model.num_layers()
        )));
        let (got, stats) = speculative_greedy(&model, &prompt, want.len(), Drafter::Mtp).unwrap();
        assert_eq!(got, want, "{name}: MTP speculative decoding vs greedy");
        eprintln!("{name}: MTP drafts {stats:?}");
        // A proposer right on every other step exercises both the accept and the reject path.
        let full: Vec<u32> = prompt.iter().chain(&want).cloned().collect();
        let mut calls = 0usize;
        let mut oracle = |seq: &[u32]| {
            calls += 1;
            if calls.is_multiple_of(3) {
                0
            } else {
                full.get(seq.len()).cloned().unwrap_or(0)
            }
        };
        let (got, stats) =
            speculative_greedy(&model, &prompt, want.len(), Drafter::Func(&mut oracle)).unwrap();
        assert_eq!(
            got, want,
            "{name}: oracle-drafted speculative decoding vs greedy"
        );
        assert!(
            stats.accepted > 0 && stats.accepted < stats.drafted,
            "{name}: {stats:?}"
        );
        assert!(stats.steps < want.len(), "{name}: {stats:?}");
    }
}

/// With the trained-looking MTP module of fixture deepseek_v3_mtp (DeepSeek-V3's layout),
/// self-speculative decoding gives transformers' greedy tokens.
#[test]
fn mtp_drafts_reproduce_transformers_greedy() {
    let name = "deepseek_v3_mtp";
    let model = DeepseekV3::load_dir(&dir(name), &LoadOptions::default()).unwrap();
    let r = candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap();
    let want = u32s(&r["greedy_tokens"]);
    let prompt = u32s(&r["greedy_prompt"]);
    let (got, stats) = speculative_greedy(&model, &prompt, want.len(), Drafter::Mtp).unwrap();
    assert_eq!(got, want, "MTP speculative decoding vs transformers greedy");
    eprintln!("{name}: {stats:?}");
}
