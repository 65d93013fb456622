//! DeepSeek-V3 from a `deepseek2` GGUF file (llama.cpp's layout): the fixture
//! `fixtures/gguf_deepseek2/model.gguf` is llama.cpp's own converter's output for the HF
//! fixture `fixtures/deepseek_v3_default` (scripts/gguf/make_deepseek2_fixture.py), with
//! llama.cpp's logits for a few ids in `llama_cpp_logits.json`. The older single-`attn_kv_b`
//! layout, the fused `ffn_gate_up_exps` and a YaRN variant (its rope metadata as the converter
//! wrote it, in `llama_cpp_logits_yarn.json`) are rebuilt here from that file with aha's writer.

use aha_model::gguf::{self, GgufFile, Value};
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
mod common;
use common::max_abs_diff;

const IDS: [u32; 10] = [1, 17, 42, 99, 200, 255, 7, 128, 3, 64];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn gguf_path() -> PathBuf {
    fixtures().join("gguf_deepseek2/model.gguf")
}

/// Logits [t, vocab] for one sequence.
fn logits(model: &Model, ids: &[u32]) -> Tensor {
    let input_ids = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let pos = Tensor::arange(0u32, ids.len() as u32, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let input = ForwardInput {
        input_ids: &input_ids,
        position_ids: &pos,
        key_mask: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    model.forward(&input, None).unwrap().squeeze(0).unwrap()
}

fn load(path: &Path) -> Model {
    Model::load(path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn hf_reference() -> Tensor {
    logits(&load(&fixtures().join("deepseek_v3_default")), &IDS)
}

#[test]
fn gguf_logits_equal_the_hf_fixture_logits() {
    let model = load(&gguf_path());
    assert!(model.as_deepseek_v3().is_some(), "loads as DeepSeek-V3");
    let got = logits(&model, &IDS);
    let diff = max_abs_diff(&got, &hf_reference());
    eprintln!("deepseek2 GGUF vs HF fixture: max |logits diff| = {diff:.2e}");
    assert!(diff < 1e-5, "max |logits diff| = {diff}");
    // Decoding with the KV cache (absorbed MLA for one-token steps) agrees too.
    let mut cache = model.new_cache();
    let mut last = Vec::new();
    for (i, &id) in IDS.iter().enumerate() {
        let input_ids = Tensor::new(&[[id]], &Device::Cpu).unwrap();
        let pos = Tensor::new(&[[i as u32]], &Device::Cpu).unwrap();
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &pos,
            key_mask: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        last.push(
            model
                .forward(&input, Some(&mut cache))
                .unwrap()
                .squeeze(0)
                .unwrap(),
        );
    }
    let stepped = Tensor::cat(&last, 0).unwrap();
    let diff = max_abs_diff(&stepped, &got);
    eprintln!("deepseek2 GGUF: cached decode vs full forward: {diff:.2e}");
    assert!(diff < 1e-4, "cached decode differs by {diff}");
}

#[test]
fn gguf_config_matches_the_hf_config() {
    let g = GgufFile::open(&gguf_path()).unwrap();
    let (cfg, tensors) =
        aha_model::gguf_deepseek2::dense_checkpoint(&g, &Device::Cpu).expect("dense checkpoint");
    let hf = aha_model::config::read_config(&fixtures().join("deepseek_v3_default/config.json"))
        .unwrap();
    for k in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "n_shared_experts",
        "n_routed_experts",
        "routed_scaling_factor",
        "kv_lora_rank",
        "q_lora_rank",
        "qk_rope_head_dim",
        "qk_nope_head_dim",
        "v_head_dim",
        "n_group",
        "topk_group",
        "num_experts_per_tok",
        "first_k_dense_replace",
        "norm_topk_prob",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_interleave",
        "tie_word_embeddings",
    ] {
        assert_eq!(cfg[k], hf[k], "config field {k}");
    }
    assert_eq!(cfg["scoring_func"], "sigmoid");
    assert_eq!(cfg["topk_method"], "noaux_tc");
    assert_eq!(cfg["rope_scaling"], serde_json::Value::Null);
    // Every HF tensor is there, with the HF values (the GGUF is f32).
    let reference = candle_core::safetensors::load(
        fixtures().join("deepseek_v3_default/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(tensors.len(), reference.len(), "tensor count");
    for (name, want) in &reference {
        let got = tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the GGUF checkpoint"));
        assert_eq!(got.dims(), want.dims(), "{name}");
        let d = max_abs_diff(got, &want.to_dtype(DType::F32).unwrap());
        assert!(d == 0.0, "{name} differs by {d}");
    }
}

#[derive(serde::Deserialize)]
struct LlamaCppLogits {
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

#[test]
fn gguf_logits_agree_with_llama_cpp() {
    let path = fixtures().join("gguf_deepseek2/llama_cpp_logits.json");
    if !path.is_file() {
        eprintln!("no {}: skipped", path.display());
        return;
    }
    let r: LlamaCppLogits = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (t, v) = (r.logits.len(), r.logits[0].len());
    let want = Tensor::new(r.logits.concat(), &Device::Cpu)
        .unwrap()
        .reshape((t, v))
        .unwrap();
    let got = logits(&load(&gguf_path()), &r.ids);
    let diff = max_abs_diff(&got, &want);
    eprintln!("deepseek2 GGUF: aha vs llama.cpp: max |logits diff| = {diff:.2e}");
    // Measured 1.4e-6 (logits up to |3|; llama.cpp with an f32 KV cache, its f16 default moves
    // them by 1.2e-3): the same f32 weights, summed in another order.
    assert!(diff < 2e-5, "aha vs llama.cpp logits differ by {diff}");
    // Same greedy tokens everywhere.
    let a = got.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    let b = want.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(a, b);
}

type Contents = (Vec<(String, Value)>, Vec<(String, QTensor)>);

/// The fixture's metadata and tensors, to rewrite into variants.
fn read_all(path: &Path) -> Contents {
    let g = GgufFile::open(path).unwrap();
    let tensors = g
        .tensors
        .iter()
        .map(|t| (t.name.clone(), g.qtensor(&t.name, &Device::Cpu).unwrap()))
        .collect();
    (g.metadata.clone(), tensors)
}

fn write_variant(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> PathBuf {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    gguf::write(&mut f, metadata, tensors).unwrap();
    drop(f);
    path.to_path_buf()
}

fn f32q(t: &Tensor) -> QTensor {
    QTensor::quantize(&t.contiguous().unwrap(), GgmlDType::F32).unwrap()
}

fn deq(q: &QTensor) -> Tensor {
    q.dequantize(&Device::Cpu).unwrap()
}

fn set_meta(metadata: &mut Vec<(String, Value)>, key: &str, v: Option<Value>) {
    metadata.retain(|(k, _)| k != key);
    if let Some(v) = v {
        metadata.push((key.to_string(), v));
    }
}

#[test]
fn legacy_kv_b_and_fused_gate_up_layouts_load_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (mut meta, tensors) = read_all(&gguf_path());
    let find = |name: &str| -> Tensor { deq(&tensors.iter().find(|(n, _)| n == name).unwrap().1) };
    // Older files: one attn_kv_b [heads * (nope + v), rank], no _mla keys, key/value length
    // per head.
    let (heads, rank, nope, v) = (4, 24, 12, 12);
    let mut legacy = Vec::new();
    let mut fused = Vec::new();
    for (name, q) in &tensors {
        if name.ends_with("attn_k_b.weight") {
            let kb = find(name); // [heads, rank, nope]
            let vb = find(&name.replace("attn_k_b", "attn_v_b")); // [heads, v, rank]
            assert_eq!(kb.dims(), &[heads, rank, nope]);
            let kv_b = Tensor::cat(&[&kb.transpose(1, 2).unwrap(), &vb], 1)
                .unwrap()
                .reshape((heads * (nope + v), rank))
                .unwrap();
            legacy.push((name.replace("attn_k_b", "attn_kv_b"), f32q(&kv_b)));
        } else if !name.ends_with("attn_v_b.weight") {
            legacy.push((name.clone(), f32q(&deq(q))));
        }
        if name.ends_with("ffn_gate_exps.weight") {
            let up = find(&name.replace("gate", "up"));
            let gu = Tensor::cat(&[&find(name), &up], 1).unwrap();
            fused.push((name.replace("ffn_gate_exps", "ffn_gate_up_exps"), f32q(&gu)));
        } else if !name.ends_with("ffn_up_exps.weight") {
            fused.push((name.clone(), f32q(&deq(q))));
        }
    }
    let reference = hf_reference();
    let fused_path = write_variant(&dir.path().join("fused.gguf"), &meta, &fused);
    let d = max_abs_diff(&logits(&load(&fused_path), &IDS), &reference);
    eprintln!("fused ffn_gate_up_exps: max |logits diff| vs HF = {d:.2e}");
    assert!(d < 1e-5, "fused gate_up differs by {d}");

    set_meta(&mut meta, "deepseek2.attention.key_length_mla", None);
    set_meta(&mut meta, "deepseek2.attention.value_length_mla", None);
    set_meta(
        &mut meta,
        "deepseek2.attention.key_length",
        Some(Value::U32((nope + 8) as u32)),
    );
    set_meta(
        &mut meta,
        "deepseek2.attention.value_length",
        Some(Value::U32(v as u32)),
    );
    let legacy_path = write_variant(&dir.path().join("legacy.gguf"), &meta, &legacy);
    let d = max_abs_diff(&logits(&load(&legacy_path), &IDS), &reference);
    eprintln!("legacy attn_kv_b: max |logits diff| vs HF = {d:.2e}");
    assert!(d < 1e-5, "legacy attn_kv_b differs by {d}");
}

#[test]
fn converted_to_hf_and_back_is_the_same_model() {
    // What `aha convert --model x.gguf` does: load dense, save as an HF directory.
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load_dense(&gguf_path(), &LoadOptions::default()).unwrap();
    model.save(dir.path()).unwrap();
    let back = load(dir.path());
    let d = max_abs_diff(&logits(&back, &IDS), &logits(&model, &IDS));
    assert!(d == 0.0, "round trip differs by {d}");
}

/// Loading `path` fails with an error that mentions every one of `needles`.
fn expect_error(path: &Path, needles: &[&str]) {
    let err = match Model::load(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded, expected an error", path.display()),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
}

#[test]
fn broken_deepseek2_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, tensors) = read_all(&gguf_path());
    let variant = |name: &str, meta: &[(String, Value)], tensors: &[(String, QTensor)]| {
        write_variant(&dir.path().join(name), meta, tensors)
    };
    let without = |drop: &str| -> Vec<(String, QTensor)> {
        tensors
            .iter()
            .filter(|(n, _)| n != drop)
            .map(|(n, q)| (n.clone(), f32q(&deq(q))))
            .collect()
    };

    // A missing expert tensor.
    let p = variant("missing.gguf", &meta, &without("blk.2.ffn_up_exps.weight"));
    expect_error(&p, &["blk.2.ffn_up_exps.weight", "missing"]);

    // An expert tensor with the wrong number of experts.
    let mut wrong = without("blk.1.ffn_gate_exps.weight");
    wrong.push((
        "blk.1.ffn_gate_exps.weight".into(),
        f32q(&Tensor::zeros((15, 24, 48), DType::F32, &Device::Cpu).unwrap()),
    ));
    let p = variant("wrong_shape.gguf", &meta, &wrong);
    expect_error(
        &p,
        &["blk.1.ffn_gate_exps.weight", "[15, 24, 48]", "[16, 24, 48]"],
    );

    // attn_k_b with its axes not transposed (as a naive converter would write it).
    let mut naive = without("blk.0.attn_k_b.weight");
    naive.push((
        "blk.0.attn_k_b.weight".into(),
        f32q(&Tensor::zeros((4, 12, 24), DType::F32, &Device::Cpu).unwrap()),
    ));
    let p = variant("k_b.gguf", &meta, &naive);
    expect_error(&p, &["blk.0.attn_k_b.weight", "expected [4, 24, 12]"]);

    // Inconsistent metadata: more experts used than there are.
    let all = without("");
    let mut m = meta.clone();
    set_meta(&mut m, "deepseek2.expert_used_count", Some(Value::U32(17)));
    expect_error(&variant("used.gguf", &m, &all), &["inconsistent deepseek2"]);

    // Missing metadata.
    let mut m = meta.clone();
    set_meta(&mut m, "deepseek2.attention.kv_lora_rank", None);
    expect_error(
        &variant("rank.gguf", &m, &all),
        &["missing metadata deepseek2.attention.kv_lora_rank"],
    );

    // Only one of the _mla keys.
    let mut m = meta.clone();
    set_meta(&mut m, "deepseek2.attention.value_length_mla", None);
    expect_error(&variant("mla.gguf", &m, &all), &["value_length_mla"]);

    // An unsupported gating function.
    let mut m = meta.clone();
    set_meta(&mut m, "deepseek2.expert_gating_func", Some(Value::U32(4)));
    expect_error(&variant("gating.gguf", &m, &all), &["expert_gating_func 4"]);

    // A metadata value of the wrong type.
    let mut m = meta.clone();
    set_meta(
        &mut m,
        "deepseek2.expert_count",
        Some(Value::String("16".into())),
    );
    expect_error(&variant("type.gguf", &m, &all), &["deepseek2.expert_count"]);

    // A truncated download.
    let bytes = std::fs::read(gguf_path()).unwrap();
    for (cut, what) in [
        (bytes.len() / 2, "truncated"),
        (bytes.len() - 1, "truncated"),
        (1000, "does not fit"),
    ] {
        let p = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        expect_error(&p, &["invalid GGUF", what]);
    }
}

#[derive(serde::Deserialize)]
struct LlamaCppYarn {
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    rope_metadata: serde_json::Map<String, serde_json::Value>,
}

/// DeepSeek-V3-style YaRN: the rope metadata llama.cpp's converter wrote for the same model
/// with `rope_scaling` yarn (factor 4, original 128, mscale = mscale_all_dim = 1), added to
/// model.gguf; aha must agree with llama.cpp on it and with aha on the HF model.
#[test]
fn yarn_metadata_maps_to_deepseek_yarn() {
    let path = fixtures().join("gguf_deepseek2/llama_cpp_logits_yarn.json");
    if !path.is_file() {
        eprintln!("no {}: skipped", path.display());
        return;
    }
    let r: LlamaCppYarn = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut meta, tensors) = read_all(&gguf_path());
    for (k, v) in &r.rope_metadata {
        let v = match v {
            serde_json::Value::String(s) => Value::String(s.clone()),
            _ if k.ends_with("original_context_length") => Value::U32(v.as_u64().unwrap() as u32),
            _ => Value::F32(v.as_f64().unwrap() as f32),
        };
        set_meta(&mut meta, k, Some(v));
    }
    let p = write_variant(&dir.path().join("yarn.gguf"), &meta, &tensors);
    let model = load(&p);
    let rope = &model.config()["rope_scaling"];
    let expect = serde_json::json!({"rope_type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 128, "beta_fast": 32.0, "beta_slow": 1.0,
        "mscale": 1.0, "mscale_all_dim": 1.0});
    assert_eq!(rope, &expect);

    let (t, v) = (r.logits.len(), r.logits[0].len());
    let want = Tensor::new(r.logits.concat(), &Device::Cpu)
        .unwrap()
        .reshape((t, v))
        .unwrap();
    let got = logits(&model, &r.ids);
    let diff = max_abs_diff(&got, &want);
    eprintln!("deepseek2 GGUF with yarn: aha vs llama.cpp: max |logits diff| = {diff:.2e}");
    assert!(
        diff < 2e-5,
        "yarn: aha vs llama.cpp logits differ by {diff}"
    );
    // The yarn model differs from the plain one (the scaling is not a no-op here).
    let plain = logits(&load(&gguf_path()), &r.ids);
    assert!(max_abs_diff(&got, &plain) > 1e-3);

    // The HF model with that rope_scaling.
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    let src = fixtures().join("deepseek_v3_default");
    std::fs::copy(src.join("model.safetensors"), hf.join("model.safetensors")).unwrap();
    let mut cfg = aha_model::config::read_config(&src.join("config.json")).unwrap();
    let o = cfg.as_object_mut().unwrap();
    o.remove("rope_parameters");
    o.insert("rope_theta".into(), 10000.0.into());
    o.insert(
        "rope_scaling".into(),
        serde_json::json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}),
    );
    std::fs::write(hf.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let d = max_abs_diff(&got, &logits(&load(&hf), &r.ids));
    eprintln!("deepseek2 GGUF with yarn vs HF with yarn: {d:.2e}");
    assert!(d < 1e-5, "yarn GGUF vs HF differs by {d}");
}
