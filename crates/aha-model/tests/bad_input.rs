//! Bad files give clear errors naming the file and the problem, never a panic.

use crate::common;

use aha_model::{LoadOptions, Model};
use common::max_abs_diff;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_untied")
}

/// A copy of the fixture model to corrupt.
fn copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn missing_weights_file() {
    let d = copy();
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("no model.safetensors"), "{e}");
}

#[test]
fn truncated_weights_file() {
    let d = copy();
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    std::fs::write(&p, &bytes[..5]).unwrap();
    assert!(load_err(d.path()).contains("not a valid safetensors"));
}

/// Rewrite one tensor of the checkpoint.
fn replace_tensor(dir: &Path, name: &str, t: candle_core::Tensor) {
    let p = dir.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    map.insert(name.to_string(), t);
    candle_core::safetensors::save(&map, &p).unwrap();
}

#[test]
fn wrong_shape_and_dtype() {
    let d = copy();
    replace_tensor(
        d.path(),
        "model.norm.weight",
        candle_core::Tensor::zeros(7, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    let e = load_err(d.path());
    assert!(
        e.contains("model.norm.weight") && e.contains("shape [7]"),
        "{e}"
    );
    let d = copy();
    replace_tensor(
        d.path(),
        "model.norm.weight",
        candle_core::Tensor::zeros(48, candle_core::DType::I64, &candle_core::Device::Cpu).unwrap(),
    );
    let e = load_err(d.path());
    assert!(
        e.contains("model.norm.weight") && e.contains("dtype"),
        "{e}"
    );
}

#[test]
fn missing_tensor() {
    let d = copy();
    let p = d.path().join("model.safetensors");
    let mut map = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    map.remove("model.layers.1.mlp.up_proj.weight");
    candle_core::safetensors::save(&map, &p).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn unknown_architecture_and_malformed_config() {
    let d = copy();
    edit_config(d.path(), |v| v["model_type"] = "mamba".into());
    assert!(load_err(d.path()).contains("unsupported architecture \"mamba\""));
    let d = copy();
    std::fs::write(d.path().join("config.json"), "{\"model_type\": \"qwen2\", ").unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("config.json") && e.contains("invalid config"),
        "{e}"
    );
    let d = copy();
    edit_config(d.path(), |v| v["hidden_size"] = "big".into());
    let e = load_err(d.path());
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );
    let d = copy();
    edit_config(d.path(), |v| v["num_key_value_heads"] = 3.into());
    assert!(load_err(d.path()).contains("multiple of num_key_value_heads"));
    let d = copy();
    edit_config(d.path(), |v| {
        v["rope_scaling"] = serde_json::json!({"rope_type": "llama3"})
    });
    assert!(load_err(d.path()).contains("rope scaling"));
}

#[test]
fn sharded_checkpoint_and_save_roundtrip() {
    // Split the fixture into two shards with an index; it must load to the same logits.
    let d = copy();
    let p = d.path().join("model.safetensors");
    let map = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    std::fs::remove_file(&p).unwrap();
    let (mut a, mut b) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut weight_map = serde_json::Map::new();
    for (i, (k, v)) in map.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        weight_map.insert(k.clone(), file.into());
        if i % 2 == 0 {
            a.insert(k, v);
        } else {
            b.insert(k, v);
        }
    }
    candle_core::safetensors::save(&a, d.path().join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, d.path().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let sharded = Model::load(d.path(), &LoadOptions::default()).unwrap();
    let original = Model::load(&fixture_dir(), &LoadOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    sharded.save(out.path()).unwrap();
    let saved = Model::load(out.path(), &LoadOptions::default()).unwrap();
    for (name, var) in original.params().iter() {
        let other = saved.params().get(name).unwrap();
        let diff = max_abs_diff(var.as_tensor(), other.as_tensor());
        assert_eq!(diff, 0.0, "{name}");
    }
    assert_eq!(saved.params().len(), original.params().len());
}
