//! LoRA adapters in the PEFT format: parity with PEFT on the tiny qwen2_tied model (logits in
//! both modes, loss gradients; fixture recorded by scripts/ref/make_lora_fixture.py), only
//! adapters train, save/load round trip, merging, and bad adapter files as errors.

use crate::common;
use aha_model::lora::{self, LoraConfig};
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model, ModelError};
use candle_core::{DType, Device, Tensor, D};
use common::{max_abs, max_abs_diff};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn base() -> Model {
    Model::load(&fixtures().join("qwen2_tied"), &LoadOptions::default()).expect("load base")
}

fn adapter_dir() -> PathBuf {
    fixtures().join("qwen2_tied_lora")
}

fn with_adapter() -> Model {
    let mut m = base();
    m.load_adapter(&adapter_dir()).expect("load PEFT adapter");
    m
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(adapter_dir().join("reference.safetensors"), &Device::Cpu)
        .expect("load reference")
}

fn ref_ids(r: &HashMap<String, Tensor>) -> Tensor {
    r["ids"].to_dtype(DType::U32).unwrap()
}

fn logits(model: &Model, ids: &Tensor, mode: Mode) -> Tensor {
    let t = ids.dim(0).unwrap();
    let input_ids = ids.unsqueeze(0).unwrap();
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let input = ForwardInput {
        input_ids: &input_ids,
        position_ids: &pos,
        key_mask: None,
        segments: None,
        mode,
        logits: LogitsFor::All,
    };
    model.forward(&input, None).unwrap().squeeze(0).unwrap()
}

/// Mean next-token NLL over the sequence, as the fixture script computes it.
fn loss(model: &Model, ids: &Tensor) -> Tensor {
    let t = ids.dim(0).unwrap();
    let l = logits(model, ids, Mode::Train).narrow(0, 0, t - 1).unwrap();
    let max = l.max_keepdim(D::Minus1).unwrap().detach();
    let shifted = l.broadcast_sub(&max).unwrap();
    let lse = shifted
        .exp()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .log()
        .unwrap();
    let lsm = shifted.broadcast_sub(&lse).unwrap();
    let targets = ids.narrow(0, 1, t - 1).unwrap().unsqueeze(1).unwrap();
    lsm.gather(&targets, 1)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap()
}

#[test]
fn peft_adapter_logits_match_in_both_modes() {
    let r = reference();
    let ids = ref_ids(&r);
    let model = with_adapter();
    for mode in [Mode::Inference, Mode::Train] {
        let d = max_abs_diff(&logits(&model, &ids, mode), &r["logits"]);
        assert!(d < 1e-4, "{mode:?}: logits differ from PEFT's by {d}");
    }
    // The adapter matters: the base model is far from these logits.
    let d = max_abs_diff(&logits(&base(), &ids, Mode::Inference), &r["logits"]);
    assert!(d > 1e-2, "base and adapted logits differ by only {d}");
    let a = model.adapter().unwrap();
    assert_eq!(a.config.r, 4);
    assert_eq!(a.config.lora_alpha, 8.0);
    assert_eq!(a.modules().len(), 6, "q, v, down in 2 layers");
}

#[test]
fn gradients_match_peft_and_only_adapters_train() {
    let r = reference();
    let ids = ref_ids(&r);
    let model = with_adapter();
    let trainable = model.trainable_params();
    assert_eq!(trainable.len(), 12);
    for (name, _) in trainable.iter() {
        assert!(
            name.starts_with(lora::PEFT_PREFIX) && name.contains(".lora_"),
            "{name} is trainable"
        );
        assert!(model.params().get(name).is_none());
    }
    let l = loss(&model, &ids);
    let want = r["loss"].to_scalar::<f32>().unwrap();
    let got = l.to_scalar::<f32>().unwrap();
    assert!((got - want).abs() < 1e-5, "loss {got} vs PEFT {want}");
    let store = l.backward().unwrap();
    for (name, var) in trainable.iter() {
        let g = store
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let m = max_abs(g);
        assert!(m.is_finite() && m > 0.0, "{name}: gradient max {m}");
        let want = &r[&format!("grad.{name}")];
        let d = max_abs_diff(g, want);
        assert!(
            d < 1e-5 + 1e-4 * max_abs(want),
            "{name}: gradient differs from PEFT's by {d}"
        );
    }
    // The frozen base gets no gradient at all (not merely left out of the optimizer).
    for (name, var) in model.params().iter() {
        assert!(
            store.get(var.as_tensor()).is_none(),
            "base weight {name} got a gradient"
        );
    }
}

#[test]
fn fresh_adapter_changes_nothing_until_trained() {
    let r = reference();
    let ids = ref_ids(&r);
    let plain = logits(&base(), &ids, Mode::Inference);
    let mut model = base();
    let cfg = LoraConfig::new(8, 16.0, &lora::LLAMA_TARGETS);
    model.add_lora(&cfg, 7).unwrap();
    assert_eq!(model.trainable_params().len(), 2 * 7 * 2);
    assert_eq!(
        max_abs_diff(&logits(&model, &ids, Mode::Inference), &plain),
        0.0
    );
    // PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0; seeded.
    let a = model
        .trainable_params()
        .get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.dims(), &[8, 48]);
    let bound = 1.0 / (48f32).sqrt();
    let m = max_abs(a.as_tensor());
    assert!(m > 0.5 * bound && m <= bound, "A max {m}, bound {bound}");
    let mut again = base();
    again.add_lora(&cfg, 7).unwrap();
    for (name, v) in model.trainable_params().iter() {
        let w = again.trainable_params().get(name).unwrap();
        assert_eq!(max_abs_diff(v.as_tensor(), w.as_tensor()), 0.0, "{name}");
    }
    // With B = 0 only B gets a gradient; once B moves, every A and B does.
    let store = loss(&model, &ids).backward().unwrap();
    for (name, var) in model.trainable_params().iter() {
        let g = max_abs(store.get(var.as_tensor()).unwrap());
        if name.contains("lora_B") {
            assert!(g > 0.0, "{name}");
        }
    }
    for (name, var) in model.trainable_params().iter() {
        if name.contains("lora_B") {
            let t = var.as_tensor();
            var.set(&(t.randn_like(0.0, 0.05).unwrap())).unwrap();
            assert!(max_abs(t) > 0.0, "{name}");
        }
    }
    let store = loss(&model, &ids).backward().unwrap();
    for (name, var) in model.trainable_params().iter() {
        let g = max_abs(store.get(var.as_tensor()).unwrap());
        assert!(g.is_finite() && g > 0.0, "{name}: gradient max {g}");
    }
    for (name, var) in model.params().iter() {
        assert!(store.get(var.as_tensor()).is_none(), "{name}");
    }
}

#[test]
fn save_load_round_trip_and_merge() {
    let r = reference();
    let ids = ref_ids(&r);
    let model = with_adapter();
    let want = logits(&model, &ids, Mode::Inference);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    model.save_adapter(&dir).unwrap();
    let mut again = base();
    again.load_adapter(&dir).unwrap();
    assert_eq!(
        max_abs_diff(&logits(&again, &ids, Mode::Inference), &want),
        0.0
    );
    // The config survives, PEFT's extra fields included.
    let mut saved = LoraConfig::read(&dir).unwrap();
    let orig = LoraConfig::read(&adapter_dir()).unwrap();
    assert!(saved.inference_mode);
    saved.inference_mode = orig.inference_mode;
    assert_eq!(saved, orig);
    let text = std::fs::read_to_string(dir.join(lora::CONFIG_FILE)).unwrap();
    assert!(text.contains("\"lora_alpha\": 8,"), "{text}");
    assert!(text.contains("\"peft_type\": \"LORA\""));
    let names: Vec<String> = lora::read_adapter(&dir, DType::F32, &Device::Cpu)
        .unwrap()
        .1
        .into_keys()
        .collect();
    assert!(names
        .iter()
        .any(|n| n == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));

    // Model::save writes the merged model: loads without an adapter, same logits.
    let merged_dir = tmp.path().join("merged");
    model.save(&merged_dir).unwrap();
    assert!(!merged_dir.join(lora::CONFIG_FILE).exists());
    let merged = Model::load(&merged_dir, &LoadOptions::default()).unwrap();
    assert!(merged.adapter().is_none());
    let d = max_abs_diff(&logits(&merged, &ids, Mode::Inference), &want);
    assert!(d < 1e-5, "merged model differs by {d}");
    // In place.
    let mut m = with_adapter();
    m.merge_adapter().unwrap();
    assert!(m.adapter().is_none());
    assert_eq!(m.trainable_params().len(), m.params().len());
    let d = max_abs_diff(&logits(&m, &ids, Mode::Inference), &want);
    assert!(d < 1e-5, "merged in place differs by {d}");
    let d = max_abs_diff(&logits(&m, &ids, Mode::Inference), &r["logits"]);
    assert!(d < 1e-4, "merged in place vs PEFT: {d}");
}

#[test]
fn snapshot_shares_the_base_and_copies_the_adapter() {
    let r = reference();
    let ids = ref_ids(&r);
    let model = with_adapter();
    let snap = model.snapshot().unwrap();
    let before = logits(&snap, &ids, Mode::Inference);
    for (_, var) in model.trainable_params().iter() {
        var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
    }
    // The policy is back to the base model; the snapshot still has the adapter.
    let d = max_abs_diff(
        &logits(&model, &ids, Mode::Inference),
        &logits(&base(), &ids, Mode::Inference),
    );
    assert!(d < 1e-5, "{d}");
    assert_eq!(
        max_abs_diff(&logits(&snap, &ids, Mode::Inference), &before),
        0.0
    );
    // Without an adapter the snapshot is a deep copy.
    let plain = base();
    let snap = plain.snapshot().unwrap();
    let before = logits(&snap, &ids, Mode::Inference);
    for (_, var) in plain.params().iter() {
        var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
    }
    assert_eq!(
        max_abs_diff(&logits(&snap, &ids, Mode::Inference), &before),
        0.0
    );
}

/// Copy the fixture adapter into a temp dir, let `edit` change it, and load it.
fn load_edited(
    edit: impl FnOnce(&mut serde_json::Value, &mut HashMap<String, Tensor>),
) -> Result<Model, ModelError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter_dir().join(lora::CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    let mut tensors =
        candle_core::safetensors::load(adapter_dir().join(lora::WEIGHTS_FILE), &Device::Cpu)
            .unwrap();
    edit(&mut cfg, &mut tensors);
    std::fs::write(
        tmp.path().join(lora::CONFIG_FILE),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    candle_core::safetensors::save(&tensors, tmp.path().join(lora::WEIGHTS_FILE)).unwrap();
    let mut m = base();
    m.load_adapter(tmp.path()).map(|_| m)
}

fn expect_err(what: &str, r: Result<Model, ModelError>, needle: &str) {
    match r {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(needle),
                "{what}: error {msg:?} lacks {needle:?}"
            );
        }
    }
}

const Q0: &str = "base_model.model.model.layers.0.self_attn.q_proj";

#[test]
fn unknown_config_fields_are_tolerated() {
    let m = load_edited(|c, _| {
        c["some_future_peft_field"] = serde_json::json!({"x": 1});
        c["rank_pattern"] = serde_json::Value::Null;
        c.as_object_mut().unwrap().remove("lora_dropout");
    })
    .unwrap();
    let a = m.adapter().unwrap();
    assert!(a.config.other.contains_key("some_future_peft_field"));
}

#[test]
fn bad_adapter_files_are_errors_not_panics() {
    let mut m = base();
    let err = m
        .load_adapter(Path::new("/nonexistent/adapter"))
        .unwrap_err();
    assert!(
        err.to_string().contains("no such adapter directory"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let err = m.load_adapter(tmp.path()).unwrap_err();
    assert!(err.to_string().contains(lora::CONFIG_FILE), "{err}");
    assert!(m.adapter().is_none());

    expect_err(
        "missing tensor",
        load_edited(|_, t| {
            t.remove(&format!("{Q0}.lora_B.weight"));
        }),
        "missing from the adapter",
    );
    expect_err(
        "r mismatch",
        load_edited(|c, _| c["r"] = 8.into()),
        "expected [8, 48] (r = 8",
    );
    expect_err(
        "wrong shape",
        load_edited(|_, t| {
            t.insert(
                format!("{Q0}.lora_B.weight"),
                Tensor::zeros((47, 4), DType::F32, &Device::Cpu).unwrap(),
            );
        }),
        "has shape [47, 4], expected [48, 4]",
    );
    expect_err(
        "unknown tensor",
        load_edited(|_, t| {
            t.insert(
                "base_model.model.lm_head.lora_embedding_A".into(),
                Tensor::zeros((4, 48), DType::F32, &Device::Cpu).unwrap(),
            );
        }),
        "is not a LoRA tensor aha can load",
    );
    expect_err(
        "layer the model lacks",
        load_edited(|_, t| {
            let a = t[&format!("{Q0}.lora_A.weight")].clone();
            t.insert(
                "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight".into(),
                a,
            );
        }),
        "not a linear layer of this model",
    );
    expect_err(
        "untargeted module",
        load_edited(|c, _| c["target_modules"] = serde_json::json!(["q_proj", "v_proj"])),
        "do not select",
    );
    expect_err(
        "non-finite",
        load_edited(|_, t| {
            let a = &t[&format!("{Q0}.lora_A.weight")];
            let nan = (a.zeros_like().unwrap() + f64::NAN).unwrap();
            t.insert(format!("{Q0}.lora_A.weight"), nan);
        }),
        "non-finite",
    );
    expect_err(
        "no r",
        load_edited(|c, _| {
            c.as_object_mut().unwrap().remove("r");
        }),
        "missing field `r`",
    );
    expect_err(
        "r zero",
        load_edited(|c, _| c["r"] = 0.into()),
        "r must be positive",
    );
    expect_err(
        "r not a number",
        load_edited(|c, _| c["r"] = "four".into()),
        "r:",
    );
    expect_err(
        "peft_type",
        load_edited(|c, _| c["peft_type"] = "PREFIX_TUNING".into()),
        "only LORA",
    );
    expect_err(
        "bias",
        load_edited(|c, _| c["bias"] = "all".into()),
        "bias \"all\"",
    );
    expect_err(
        "dora",
        load_edited(|c, _| c["use_dora"] = true.into()),
        "DoRA",
    );
    expect_err(
        "fan_in_fan_out",
        load_edited(|c, _| c["fan_in_fan_out"] = true.into()),
        "fan_in_fan_out",
    );
    expect_err(
        "target",
        load_edited(|c, _| c["target_modules"] = serde_json::json!(["q_proj", "embed_tokens"])),
        "target module \"embed_tokens\" is not supported",
    );
    expect_err(
        "modules_to_save",
        load_edited(|c, _| c["modules_to_save"] = serde_json::json!(["lm_head"])),
        "modules_to_save",
    );
    expect_err(
        "rank_pattern",
        load_edited(|c, _| c["rank_pattern"] = serde_json::json!({"q_proj": 8})),
        "rank_pattern",
    );

    // Garbage files.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        adapter_dir().join(lora::CONFIG_FILE),
        tmp.path().join(lora::CONFIG_FILE),
    )
    .unwrap();
    let err = m.load_adapter(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::write(tmp.path().join(lora::WEIGHTS_FILE), b"not safetensors").unwrap();
    let err = m.load_adapter(tmp.path()).unwrap_err();
    assert!(
        err.to_string().contains("not a valid safetensors file"),
        "{err}"
    );
    std::fs::write(tmp.path().join(lora::CONFIG_FILE), b"{ not json").unwrap();
    let err = m.load_adapter(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("LoRA adapter"), "{err}");
    assert!(m.adapter().is_none());

    // A failed load leaves the model as it was; a second adapter is refused.
    let mut m = with_adapter();
    let err = m.load_adapter(&adapter_dir()).unwrap_err();
    assert!(
        err.to_string().contains("already has a LoRA adapter"),
        "{err}"
    );
    let err = base().save_adapter(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("no LoRA adapter"), "{err}");
}

#[test]
fn new_adapter_configs_are_checked() {
    let mut m = base();
    let err = m
        .add_lora(&LoraConfig::new(0, 8.0, &["q_proj"]), 0)
        .unwrap_err();
    assert!(err.to_string().contains("r must be positive"), "{err}");
    let err = m
        .add_lora(&LoraConfig::new(4, 8.0, &["c_attn"]), 0)
        .unwrap_err();
    assert!(
        err.to_string().contains("\"c_attn\" is not supported"),
        "{err}"
    );
    let mut cfg = LoraConfig::new(4, 8.0, &["q_proj"]);
    cfg.layers_to_transform = Some(lora::LayerIndices::List(vec![1]));
    m.add_lora(&cfg, 0).unwrap();
    assert_eq!(
        m.adapter().unwrap().modules(),
        vec!["model.layers.1.self_attn.q_proj".to_string()]
    );
    // base_model_name_or_path records where the base came from.
    let base_name = m.adapter().unwrap().config.base_model_name_or_path.clone();
    assert!(base_name.unwrap().ends_with("qwen2_tied"));
}

#[test]
fn rslora_scales_by_sqrt_r() {
    let mut c = LoraConfig::new(16, 8.0, &["q_proj"]);
    assert_eq!(c.scale(), 0.5);
    c.use_rslora = true;
    assert_eq!(c.scale(), 2.0);
}
