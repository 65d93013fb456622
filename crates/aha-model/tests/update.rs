//! Changing a loaded model's weights in place (a server's weight updates): every parameter
//! from another checkpoint, and LoRA adapters replaced and removed.

use aha_model::lora;
use aha_model::{read_weights, ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Model {
    Model::load(&fixture(name), &LoadOptions::default()).unwrap()
}

fn logits(model: &Model) -> Vec<f32> {
    let ids = Tensor::new(&[[1u32, 5, 9, 2]], &Device::Cpu).unwrap();
    let pos = Tensor::new(&[[0u32, 1, 2, 3]], &Device::Cpu).unwrap();
    let input = ForwardInput {
        input_ids: &ids,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    let out = model.forward(&input, None).unwrap();
    out.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn set_weights_replaces_every_parameter_or_none() {
    let dir = tempfile::tempdir().unwrap();
    // Another model of the same shapes: every weight moved.
    let other = load("qwen2_tied");
    for (_, var) in other.params().iter() {
        var.set(&((var.as_tensor() * 0.5).unwrap() + 0.01).unwrap())
            .unwrap();
    }
    other.save(dir.path()).unwrap();
    let want = logits(&other);

    let served = load("qwen2_tied");
    let before = logits(&served);
    let tensors = read_weights(dir.path(), DType::F32, &Device::Cpu).unwrap();
    served.set_weights(&tensors, dir.path()).unwrap();
    assert!(max_diff(&logits(&served), &want) < 1e-5);
    assert!(max_diff(&before, &want) > 1e-2);

    // A missing or misshapen tensor: an error naming it and the source, nothing changed.
    let served = load("qwen2_tied");
    let mut missing = tensors.clone();
    missing.remove("model.norm.weight");
    let err = served.set_weights(&missing, dir.path()).unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("model.norm.weight") && m.contains("missing"),
        "{m}"
    );
    assert!(m.contains(&dir.path().display().to_string()), "{m}");
    let mut misshapen = tensors.clone();
    misshapen.insert(
        "model.norm.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = served.set_weights(&misshapen, dir.path()).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
    assert_eq!(logits(&served), before);
    // Another dtype is converted.
    let bf16 = read_weights(dir.path(), DType::BF16, &Device::Cpu).unwrap();
    served.set_weights(&bf16, dir.path()).unwrap();
    assert!(max_diff(&logits(&served), &want) < 0.1);

    let err = read_weights(&dir.path().join("nope"), DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn adapters_are_replaced_and_removed() {
    let base = load("qwen2_tied");
    let plain = logits(&base);
    let mut m = load("qwen2_tied");
    m.load_adapter(&fixture("qwen2_tied_lora")).unwrap();
    let adapted = logits(&m);
    assert!(max_diff(&plain, &adapted) > 1e-3);

    // Replace with the same adapter read again: same outputs, one adapter.
    let dir = fixture("qwen2_tied_lora");
    let (cfg, tensors) = lora::read_adapter(&dir, DType::F32, &Device::Cpu).unwrap();
    m.replace_adapter(&cfg, tensors.clone(), &dir).unwrap();
    assert!(max_diff(&logits(&m), &adapted) < 1e-6);

    // A bad one leaves the attached adapter in place.
    let mut bad = tensors.clone();
    let name = bad.keys().next().unwrap().clone();
    bad.insert(
        name.clone(),
        Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = m.replace_adapter(&cfg, bad, &dir).unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(m.adapter().is_some());
    assert!(max_diff(&logits(&m), &adapted) < 1e-6);

    assert!(m.remove_adapter());
    assert!(m.adapter().is_none());
    assert!(!m.remove_adapter());
    assert!(max_diff(&logits(&m), &plain) < 1e-6);
    // Every weight trains again.
    assert_eq!(m.trainable_params().len(), m.params().len());
}
