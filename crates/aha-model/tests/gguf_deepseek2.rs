//! DeepSeek-V3 from a `deepseek2` GGUF file (llama.cpp's layout): the fixture
//! `fixtures/gguf_deepseek2/model.gguf` is llama.cpp's own converter's output for the HF
//! fixture `fixtures/deepseek_v3_default` (scripts/gguf/make_deepseek2_fixture.py), with
//! llama.cpp's logits for a few ids in `llama_cpp_logits.json`. The older single-`attn_kv_b`
//! layout, the fused `ffn_gate_up_exps` and a YaRN variant (its rope metadata as the converter
//! wrote it, in `llama_cpp_logits_yarn.json`) are rebuilt here from that file with aha's writer.

use crate::common;
use aha_model::gguf::{self, GgufFile, Value};
use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::{max_abs, max_abs_diff};
use std::path::{Path, PathBuf};

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
        segments: None,
        mode: Mode::Inference,
        logits: LogitsFor::All,
    };
    model.forward(&input, None).unwrap().squeeze(0).unwrap()
}

/// Last-position logits of one-token steps through the KV cache (absorbed MLA), stacked.
fn stepped_logits(model: &Model, ids: &[u32]) -> Tensor {
    let mut cache = model.new_cache();
    let mut last = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let input_ids = Tensor::new(&[[id]], &Device::Cpu).unwrap();
        let pos = Tensor::new(&[[i as u32]], &Device::Cpu).unwrap();
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &pos,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::Last,
        };
        let l = model.forward(&input, Some(&mut cache)).unwrap();
        last.push(l.squeeze(0).unwrap());
    }
    Tensor::cat(&last, 0).unwrap()
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
    let stepped = stepped_logits(&model, &IDS);
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
        .map(|t| {
            (
                t.name.clone(),
                gguf::qtensor(&g, &t.name, &Device::Cpu).unwrap(),
            )
        })
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

/// The fixture (or another deepseek2 file) with every weight whose rows fit the block
/// quantized: `pick(row length)` gives the type, None keeps F32. Norms and biases stay F32.
fn quantize_all(
    tensors: &[(String, QTensor)],
    pick: impl Fn(usize) -> Option<GgmlDType>,
) -> Vec<(String, QTensor)> {
    tensors
        .iter()
        .map(|(name, q)| {
            let t = deq(q);
            let row = *t.dims().last().unwrap();
            let q = match pick(row) {
                Some(dt) if t.rank() >= 2 => QTensor::quantize(&t, dt).unwrap(),
                _ => f32q(&t),
            };
            (name.clone(), q)
        })
        .collect()
}

fn q8_0(row: usize) -> Option<GgmlDType> {
    row.is_multiple_of(32).then_some(GgmlDType::Q8_0)
}

/// The quantized model (`Model::load`) against the dense one on the same dequantized weights
/// (`Model::load_dense`): max |logits diff| relative to max |logit|, also for cached decoding.
fn quantized_vs_dense(path: &Path, ids: &[u32]) -> (Model, usize, f32) {
    let model = load(path);
    let n = model.as_deepseek_v3().unwrap().quantized_linears();
    let dense = Model::load_dense(path, &LoadOptions::default()).unwrap();
    assert_eq!(dense.as_deepseek_v3().unwrap().quantized_linears(), 0);
    let (got, want) = (logits(&model, ids), logits(&dense, ids));
    let rel = max_abs_diff(&got, &want) / max_abs(&want);
    (model, n, rel)
}

/// A Q8_0 copy of the fixture: only the projections whose rows are a multiple of 32 can be
/// quantized (hidden is 48): the three attn_q_b (rows of q_lora_rank 32) and blk.0's
/// ffn_down (rows of 96); they run quantized, the rest is dense.
#[test]
fn q8_0_fixture_runs_its_quantizable_projections_quantized() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, tensors) = read_all(&gguf_path());
    let p = write_variant(
        &dir.path().join("q8_0.gguf"),
        &meta,
        &quantize_all(&tensors, q8_0),
    );
    let (_, n, rel) = quantized_vs_dense(&p, &IDS);
    eprintln!("fixture Q8_0: {n} quantized linears, quantized vs dequantized-dense: max |diff| / max |logit| = {rel:.2e}");
    assert_eq!(n, 4);
    // Measured 6.5e-3: the 8-bit activations of those four matmuls.
    assert!(rel < 2e-2, "relative logits diff {rel}");
    // The f32 fixture holds nothing quantized.
    assert_eq!(
        load(&gguf_path())
            .as_deepseek_v3()
            .unwrap()
            .quantized_linears(),
        0
    );
}

/// Deterministic weights in [-scale, scale).
fn uniform(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A deepseek2 file wide enough for every projection to quantize (hidden, ranks and MLP
/// widths 256; heads * v_head 256) with random weights: one dense layer, two MoE layers of 4
/// experts + 1 shared (the second with a fused `ffn_gate_up_exps`), the fixture's metadata
/// otherwise. In F32; `quantize_all` makes the variants.
fn wide_model() -> Contents {
    let (mut meta, _) = read_all(&gguf_path());
    let (h, nh, q_rank, kv_rank, rope, nope, v, inter, e, vocab) =
        (256, 2, 256, 32, 16, 16, 128, 256, 4, 256);
    for (k, val) in [
        ("embedding_length", h),
        ("feed_forward_length", inter),
        ("attention.head_count", nh),
        ("attention.q_lora_rank", q_rank),
        ("attention.kv_lora_rank", kv_rank),
        ("attention.key_length", kv_rank + rope),
        ("attention.value_length", kv_rank),
        ("attention.key_length_mla", nope + rope),
        ("attention.value_length_mla", v),
        ("rope.dimension_count", rope),
        ("expert_count", e),
        ("expert_used_count", 2),
        ("expert_group_count", 2),
        ("expert_group_used_count", 1),
        ("expert_feed_forward_length", inter),
        ("vocab_size", vocab),
    ] {
        set_meta(
            &mut meta,
            &format!("deepseek2.{k}"),
            Some(Value::U32(val as u32)),
        );
    }
    let mut seed = 0u64;
    let mut t = Vec::new();
    let mut add = |name: String, shape: &[usize], scale: f32, offset: f32| {
        seed += 1;
        let w = (uniform(shape, seed, scale) + offset as f64).unwrap();
        t.push((name, f32q(&w)));
    };
    // Weights ~ U(+-sqrt(3 / fan_in)): unit-variance outputs.
    let lin = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    add("token_embd.weight".into(), &[vocab, h], 1.0, 0.0);
    add("output.weight".into(), &[vocab, h], lin(h), 0.0);
    add("output_norm.weight".into(), &[h], 0.1, 1.0);
    for i in 0..3 {
        let p = format!("blk.{i}");
        add(format!("{p}.attn_norm.weight"), &[h], 0.1, 1.0);
        add(format!("{p}.attn_q_a.weight"), &[q_rank, h], lin(h), 0.0);
        add(format!("{p}.attn_q_a_norm.weight"), &[q_rank], 0.1, 1.0);
        add(
            format!("{p}.attn_q_b.weight"),
            &[nh * (nope + rope), q_rank],
            lin(q_rank),
            0.0,
        );
        add(
            format!("{p}.attn_kv_a_mqa.weight"),
            &[kv_rank + rope, h],
            lin(h),
            0.0,
        );
        add(format!("{p}.attn_kv_a_norm.weight"), &[kv_rank], 0.1, 1.0);
        add(
            format!("{p}.attn_k_b.weight"),
            &[nh, kv_rank, nope],
            lin(kv_rank),
            0.0,
        );
        add(
            format!("{p}.attn_v_b.weight"),
            &[nh, v, kv_rank],
            lin(kv_rank),
            0.0,
        );
        add(
            format!("{p}.attn_output.weight"),
            &[h, nh * v],
            lin(nh * v),
            0.0,
        );
        add(format!("{p}.ffn_norm.weight"), &[h], 0.1, 1.0);
        if i == 0 {
            add(format!("{p}.ffn_gate.weight"), &[inter, h], lin(h), 0.0);
            add(format!("{p}.ffn_up.weight"), &[inter, h], lin(h), 0.0);
            add(format!("{p}.ffn_down.weight"), &[h, inter], lin(inter), 0.0);
            continue;
        }
        add(format!("{p}.ffn_gate_inp.weight"), &[e, h], lin(h), 0.0);
        add(format!("{p}.exp_probs_b.bias"), &[e], 0.1, 0.0);
        if i == 2 {
            add(
                format!("{p}.ffn_gate_up_exps.weight"),
                &[e, 2 * inter, h],
                lin(h),
                0.0,
            );
        } else {
            add(
                format!("{p}.ffn_gate_exps.weight"),
                &[e, inter, h],
                lin(h),
                0.0,
            );
            add(
                format!("{p}.ffn_up_exps.weight"),
                &[e, inter, h],
                lin(h),
                0.0,
            );
        }
        add(
            format!("{p}.ffn_down_exps.weight"),
            &[e, h, inter],
            lin(inter),
            0.0,
        );
        add(
            format!("{p}.ffn_gate_shexp.weight"),
            &[inter, h],
            lin(h),
            0.0,
        );
        add(format!("{p}.ffn_up_shexp.weight"), &[inter, h], lin(h), 0.0);
        add(
            format!("{p}.ffn_down_shexp.weight"),
            &[h, inter],
            lin(inter),
            0.0,
        );
    }
    (meta, t)
}

/// Q8_0 and Q4_K (Q8_0 where rows are not a multiple of 256) copies of a model where every
/// projection can quantize: all 45 run quantized (q_a, q_b, kv_a, o per layer, the dense
/// MLP, 4 experts + 1 shared of gate/up/down per MoE layer, cut from the stacked and the
/// fused expert tensors); the logits stay close to the dense model on the same weights,
/// also when decoding with the cache; training and saving fail clearly.
#[test]
fn q8_0_and_q4_k_projections_run_quantized() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, tensors) = wide_model();
    let q4_k = |row: usize| {
        if row.is_multiple_of(256) {
            Some(GgmlDType::Q4K)
        } else {
            q8_0(row)
        }
    };
    for (label, pick, tol) in [
        // Measured 1.7e-2 and 3.0e-2 (same expert routes; candle's QMatMul: 2.9e-2 at Q8_0):
        // 8-bit activations (Q8_0, Q8_K blocks) over ~20 chained random unit-gain matmuls.
        (
            "Q8_0",
            &q8_0 as &dyn Fn(usize) -> Option<GgmlDType>,
            4e-2f32,
        ),
        ("Q4_K", &q4_k, 6e-2),
    ] {
        let p = write_variant(
            &dir.path().join(format!("{label}.gguf")),
            &meta,
            &quantize_all(&tensors, pick),
        );
        let (model, n, rel) = quantized_vs_dense(&p, &IDS);
        eprintln!("wide {label}: {n} quantized linears, quantized vs dequantized-dense: max |diff| / max |logit| = {rel:.2e}");
        assert_eq!(n, 45, "{label}");
        assert!(rel < tol, "{label}: relative logits diff {rel}");
        // Cached decoding (absorbed MLA, kv_b dense) agrees with the full forward.
        let full = logits(&model, &IDS[..4]);
        let stepped = stepped_logits(&model, &IDS[..4]);
        let d = max_abs_diff(&stepped, &full) / max_abs(&full);
        eprintln!("wide {label}: cached decode vs full forward: {d:.2e}");
        assert!(d < 1e-4, "{label}: cached decode differs by {d}");
        if label == "Q4_K" {
            // Inference only: a training forward, a save and a snapshot are clear errors.
            let ids = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
            let pos = Tensor::new(&[[0u32, 1]], &Device::Cpu).unwrap();
            let input = ForwardInput {
                input_ids: &ids,
                position_ids: &pos,
                key_mask: None,
                segments: None,
                mode: Mode::Train,
                logits: LogitsFor::All,
            };
            let err = model
                .forward(&input, None)
                .expect_err("train fails")
                .to_string();
            assert!(err.contains("load_dense"), "{err}");
            let err = model
                .save(&dir.path().join("out"))
                .expect_err("save fails")
                .to_string();
            assert!(err.contains("load_dense"), "{err}");
            assert!(model.snapshot().is_err());
        }
    }
}
