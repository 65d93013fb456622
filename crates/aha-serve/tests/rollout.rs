//! The server as an RL rollout server: weight updates from disk and LoRA adapters (checked
//! against the same weights run locally), weight versions and their ordering, `seed_offset`,
//! `return_token_ids`, `stop_token_ids`, log-prob modes, pause/continue and bad admin input.

use crate::common::{get, post};
use aha_model::{LoadOptions, Model, Tensor};
use aha_serve::{Assets, LogprobsMode, Running, ServeConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const PROMPT: [u32; 6] = [5, 17, 42, 9, 100, 3];

/// Model directories shared by the tests: the served base, a modified copy, a LoRA adapter
/// for the base and a copy with a tensor missing.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    modified: PathBuf,
    adapter: PathBuf,
    broken: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        let cfg = aha_train::pretrain::PretrainConfig {
            max_position_embeddings: 4096,
            ..aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::default())
        };
        let (model, _) = aha_train::pretrain::prepare(&cfg, &base).unwrap();
        model.save(&base).unwrap();

        // Every weight moved: scaled and shifted.
        let modified = tmp.path().join("modified");
        let m = load(&base);
        for (_, var) in m.params().iter() {
            let t = ((var.as_tensor() * 1.3).unwrap() + 0.01).unwrap();
            var.set(&t).unwrap();
        }
        m.save(&modified).unwrap();

        // An adapter whose B is not zero, so that it changes the outputs.
        let adapter = tmp.path().join("adapter");
        let mut m = load(&base);
        let lora = aha_model::LoraConfig::new(4, 8.0, &aha_model::lora::LLAMA_TARGETS);
        m.add_lora(&lora, 1).unwrap();
        for (name, var) in m.adapter().unwrap().params().iter() {
            if name.ends_with("lora_B.weight") {
                let t = Tensor::randn(0f32, 0.2f32, var.dims(), var.device()).unwrap();
                var.set(&t).unwrap();
            }
        }
        m.save_adapter(&adapter).unwrap();

        let broken = tmp.path().join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        let mut tensors = load(&base).params().tensors();
        tensors.remove("model.norm.weight");
        aha_model::weights::write_file(
            &broken.join("model.safetensors"),
            &tensors,
            aha_model::DType::F32,
        )
        .unwrap();
        Fixture {
            _tmp: tmp,
            base,
            modified,
            adapter,
            broken,
        }
    })
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap()
}

fn with_adapter() -> Model {
    let f = fixture();
    let mut m = load(&f.base);
    m.load_adapter(&f.adapter).unwrap();
    m
}

fn start(mode: LogprobsMode) -> Running {
    start_with(ServeConfig {
        model_name: "tiny".into(),
        max_batch: 8,
        context: 4096,
        default_max_tokens: 16,
        logprobs_mode: mode,
        ..Default::default()
    })
}

/// A server on the fixture's base model with these settings.
fn start_with(cfg: ServeConfig) -> Running {
    let f = fixture();
    let model = load(&f.base);
    let tokenizer = aha_text::Tokenizer::from_dir(&f.base).unwrap();
    let assets = Assets {
        eos_token_ids: tokenizer.eos_token_ids().to_vec(),
        vocab_size: model.vocab_size(),
        tokenizer,
        template: None,
        logits_processor: None,
        constrainer: None,
    };
    aha_serve::spawn(model, assets, cfg, "127.0.0.1", 0).unwrap()
}

/// A server no test changes.
fn shared() -> SocketAddr {
    static S: OnceLock<Running> = OnceLock::new();
    S.get_or_init(|| start(LogprobsMode::RawLogprobs)).addr
}

fn completion(a: SocketAddr, extra: Value) -> Value {
    let mut b = json!({"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 1,
                       "return_token_ids": true});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    let r = post(a, "/v1/completions", &b);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A choice's (token ids, reported log-probs).
fn tokens_and_logprobs(choice: &Value) -> (Vec<u32>, Vec<f32>) {
    let lps: Vec<f32> = choice["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (ids(&choice["token_ids"]), lps)
}

/// log-softmax(logits / temperature) of each completion token under `model`.
fn local_logprobs(model: &Model, prompt: &[u32], tokens: &[u32], temperature: f64) -> Vec<f32> {
    let seq: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
    let logits = aha_engine::full_logits(model, &seq).unwrap();
    let logits = logits.narrow(0, prompt.len() - 1, tokens.len()).unwrap();
    let targets = Tensor::new(tokens, model.device()).unwrap();
    let (lp, _) = aha_model::ops::token_logprobs(&logits, &targets, 1.0 / temperature).unwrap();
    lp.to_vec1().unwrap()
}

fn local_greedy(model: &Model, prompt: &[u32], max_tokens: usize, ignore_eos: bool) -> Vec<u32> {
    let opts = aha_engine::GenerateOptions {
        sampling: aha_engine::SamplingParams::greedy(),
        max_tokens,
        stop_token_ids: model.eos_token_ids(),
        ignore_eos,
        ..Default::default()
    };
    let out = aha_engine::generate(model, None, &[prompt.to_vec()], &opts, |_| {}).unwrap();
    out[0].token_ids.clone()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-4, "{what}: token {i}: {g} vs {w}");
    }
}

/// The served greedy tokens and log-probs equal `model`'s; returns the log-probs.
fn check_against(a: SocketAddr, model: &Model, version: &str) -> Vec<f32> {
    let v = completion(a, json!({}));
    assert_eq!(v["weight_version"], version, "{v}");
    let (toks, lps) = tokens_and_logprobs(&v["choices"][0]);
    assert_eq!(toks, local_greedy(model, &PROMPT, 8, false));
    assert_close(
        &lps,
        &local_logprobs(model, &PROMPT, &toks, 1.0),
        "log-probs",
    );
    lps
}

fn version_of(a: SocketAddr) -> String {
    let v = get(a, "/get_weight_version").json();
    v["weight_version"].as_str().unwrap().to_string()
}

#[test]
fn update_weights_from_disk_serves_the_new_weights() {
    let f = fixture();
    let s = start(LogprobsMode::ProcessedLogprobs);
    assert_eq!(version_of(s.addr), "0");
    assert_eq!(get(s.addr, "/health").json()["weight_version"], "0");
    let old = check_against(s.addr, &load(&f.base), "0");

    let r = post(
        s.addr,
        "/update_weights_from_disk",
        &json!({"model_path": f.modified, "weight_version": "step-1", "flush_cache": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["weight_version"], "step-1");
    assert_eq!(version_of(s.addr), "step-1");
    assert_eq!(get(s.addr, "/health").json()["weight_version"], "step-1");
    let new = check_against(s.addr, &load(&f.modified), "step-1");
    assert!(
        old.iter().zip(&new).any(|(a, b)| (a - b).abs() > 1e-3),
        "the update changed nothing"
    );

    // Without a version: a counter over the non-numeric one; back to the base weights.
    let r = post(
        s.addr,
        "/update_weights_from_disk",
        &json!({"model_path": f.base}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = r.json()["weight_version"].as_str().unwrap().to_string();
    assert_ne!(v2, "step-1");
    let again = check_against(s.addr, &load(&f.base), &v2);
    assert_close(&again, &old, "back to the base");
    // A numeric version counts up.
    let r = post(
        s.addr,
        "/update_weights_from_disk",
        &json!({"model_path": f.modified, "weight_version": 41}),
    );
    assert_eq!(r.json()["weight_version"], "41");
    let r = post(
        s.addr,
        "/update_weights_from_disk",
        &json!({"model_path": f.modified}),
    );
    assert_eq!(r.json()["weight_version"], "42");
}

#[test]
fn processed_logprobs_are_of_the_tempered_distribution() {
    let f = fixture();
    let s = start(LogprobsMode::ProcessedLogprobs);
    let v = completion(
        s.addr,
        json!({"temperature": 0.7, "seed": 3, "max_tokens": 10, "top_k": 5}),
    );
    let (toks, lps) = tokens_and_logprobs(&v["choices"][0]);
    let base = load(&f.base);
    assert_close(
        &lps,
        &local_logprobs(&base, &PROMPT, &toks, 0.7),
        "processed",
    );
    // The raw mode reports the model's own distribution for the same tokens.
    let v = completion(
        shared(),
        json!({"temperature": 0.7, "seed": 3, "max_tokens": 10, "top_k": 5}),
    );
    let (raw_toks, raw) = tokens_and_logprobs(&v["choices"][0]);
    assert_eq!(raw_toks, toks, "the mode changes no sample");
    assert_close(&raw, &local_logprobs(&base, &PROMPT, &toks, 1.0), "raw");
}

#[test]
fn lora_adapters_load_and_unload() {
    let f = fixture();
    let s = start(LogprobsMode::RawLogprobs);
    let base = check_against(s.addr, &load(&f.base), "0");

    let r = post(
        s.addr,
        "/v1/load_lora_adapter",
        &json!({"lora_name": "policy", "lora_path": f.adapter}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["weight_version"], "1");
    let models = get(s.addr, "/v1/models").json();
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{models}");
    assert_eq!(data[1]["id"], "policy");
    assert_eq!(data[1]["parent"], "tiny");
    let adapted = check_against(s.addr, &with_adapter(), "1");
    assert!(base.iter().zip(&adapted).any(|(a, b)| (a - b).abs() > 1e-3));
    // The adapter's name and the base's both select base + adapter.
    for name in ["policy", "tiny"] {
        let v = completion(s.addr, json!({"model": name}));
        let (_, lps) = tokens_and_logprobs(&v["choices"][0]);
        assert_close(&lps, &adapted, name);
    }
    // Loading again replaces it.
    let r = post(
        s.addr,
        "/v1/load_lora_adapter",
        &json!({"lora_name": "policy2", "lora_path": f.adapter, "weight_version": "a2"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let models = get(s.addr, "/v1/models").json();
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
    assert_eq!(models["data"][1]["id"], "policy2");
    check_against(s.addr, &with_adapter(), "a2");

    let r = post(
        s.addr,
        "/v1/unload_lora_adapter",
        &json!({"lora_name": "policy"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["success"], false);
    let r = post(
        s.addr,
        "/v1/unload_lora_adapter",
        &json!({"lora_name": "policy2"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json()["weight_version"].as_str().unwrap().to_string();
    let after = check_against(s.addr, &load(&f.base), &v);
    assert_close(&after, &base, "unloaded");
    assert_eq!(
        get(s.addr, "/v1/models").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn seed_offset_splits_one_request_into_many() {
    let a = shared();
    let body = json!({"temperature": 1.0, "seed": 7, "max_tokens": 8, "ignore_eos": true});
    let mut whole = body.clone();
    whole["n"] = json!(4);
    let v = completion(a, whole);
    for j in 0..4 {
        let mut one = body.clone();
        one["seed_offset"] = json!(j);
        let w = completion(a, one);
        assert_eq!(
            ids(&w["choices"][0]["token_ids"]),
            ids(&v["choices"][j]["token_ids"]),
            "sample {j}"
        );
    }
    // Different samples indeed.
    assert_ne!(v["choices"][0]["token_ids"], v["choices"][1]["token_ids"]);
}

#[test]
fn token_ids_align_with_logprobs() {
    let a = shared();
    let v = completion(
        a,
        json!({"temperature": 1.0, "seed": 1, "n": 3, "max_tokens": 12, "logprobs": 2}),
    );
    assert_eq!(v["weight_version"], "0");
    for c in v["choices"].as_array().unwrap() {
        let (toks, lps) = tokens_and_logprobs(c);
        assert!(!toks.is_empty());
        assert_eq!(toks.len(), lps.len(), "{c}");
        assert_eq!(
            c["logprobs"]["tokens"].as_array().unwrap().len(),
            toks.len()
        );
        assert_eq!(ids(&c["prompt_token_ids"]), PROMPT.to_vec());
        // An EOS that ended the sample is the last id, with its log-prob.
        if c["finish_reason"] == "stop" {
            let eos = load(&fixture().base).eos_token_ids();
            assert!(eos.contains(toks.last().unwrap()));
        }
    }
    // Without the flag: no ids.
    let r = post(
        a,
        "/v1/completions",
        &json!({"prompt": PROMPT, "max_tokens": 2}),
    );
    assert!(r.json()["choices"][0].get("token_ids").is_none());

    // A stop token id ends the sample on it, included.
    let long = completion(a, json!({"max_tokens": 8, "ignore_eos": true}));
    let greedy = ids(&long["choices"][0]["token_ids"]);
    let stop = greedy[2];
    let cut = greedy.iter().position(|&t| t == stop).unwrap();
    let v = completion(
        a,
        json!({"max_tokens": 8, "ignore_eos": true, "stop_token_ids": [stop]}),
    );
    let c = &v["choices"][0];
    assert_eq!(ids(&c["token_ids"]), greedy[..=cut].to_vec());
    assert_eq!(c["finish_reason"], "stop");
    let r = post(
        a,
        "/v1/completions",
        &json!({"prompt": PROMPT, "stop_token_ids": [1_000_000]}),
    );
    assert_eq!(r.status, 400);

    // Streamed: the chunks' ids add up to the whole answer's, each chunk names the version.
    let body = json!({"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": true,
                      "return_token_ids": true, "stream": true});
    let r = post(a, "/v1/completions", &body);
    let mut streamed = Vec::new();
    let mut prompt_ids = None;
    for e in r.events() {
        if e == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["weight_version"], "0", "{v}");
        for c in v["choices"].as_array().unwrap() {
            streamed.extend(ids(&c["token_ids"]));
            if let Some(p) = c.get("prompt_token_ids") {
                assert!(prompt_ids.is_none(), "prompt ids sent once");
                prompt_ids = Some(ids(p));
            }
        }
    }
    assert_eq!(streamed, greedy);
    assert_eq!(prompt_ids, Some(PROMPT.to_vec()));
}

/// POST a streamed completion and return the reader once its first chunk has arrived.
fn open_stream(a: SocketAddr, body: &Value) -> (BufReader<TcpStream>, Vec<Value>) {
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let b = body.to_string();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut chunks = Vec::new();
    while chunks.is_empty() {
        chunks.extend(read_data(&mut r, 1));
    }
    (r, chunks)
}

/// Up to `most` SSE data payloads (JSON, not `[DONE]`); fewer at the end of the stream.
fn read_data(r: &mut BufReader<TcpStream>, most: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut line = String::new();
    while out.len() < most {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(d) = line.trim().strip_prefix("data:") {
            let d = d.trim();
            if d == "[DONE]" {
                break;
            }
            out.push(serde_json::from_str(d).unwrap());
        }
    }
    out
}

#[test]
fn requests_before_an_update_finish_on_the_old_weights() {
    let f = fixture();
    let s = start(LogprobsMode::RawLogprobs);
    let a = s.addr;
    // About a second of decoding here: the update arrives while it runs, and had it been
    // applied then, the rest of the tokens would be the new model's.
    let long = 2500;
    let body = json!({"prompt": PROMPT, "max_tokens": long, "temperature": 0, "ignore_eos": true,
                      "return_token_ids": true, "stream": true});
    let (mut reader, mut chunks) = open_stream(a, &body);
    // The long request is running; the update is ordered after it.
    let update = std::thread::spawn(move || {
        let r = post(
            a,
            "/update_weights_from_disk",
            &json!({"model_path": fixture().modified, "weight_version": "v1"}),
        );
        (r.status, r.body)
    });
    std::thread::sleep(Duration::from_millis(200));
    // Sent after the update: runs on the new weights, whether or not it was applied yet.
    let after = std::thread::spawn(move || completion(a, json!({})));
    chunks.extend(read_data(&mut reader, usize::MAX));
    let mut toks = Vec::new();
    for c in &chunks {
        assert_eq!(c["weight_version"], "0", "{c}");
        toks.extend(ids(&c["choices"][0]["token_ids"]));
    }
    assert_eq!(toks.len(), long);
    assert_eq!(toks, local_greedy(&load(&f.base), &PROMPT, long, true));
    let (status, body) = update.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let v = after.join().unwrap();
    assert_eq!(v["weight_version"], "v1");
    let (t, _) = tokens_and_logprobs(&v["choices"][0]);
    assert_eq!(t, local_greedy(&load(&f.modified), &PROMPT, 8, false));
}

#[test]
fn paused_requests_wait_and_updates_still_apply() {
    let f = fixture();
    let s = start(LogprobsMode::RawLogprobs);
    let a = s.addr;
    let r = post(a, "/pause_generation", &json!({}));
    assert_eq!(r.json()["success"], true);
    assert_eq!(get(a, "/health").json()["paused"], true);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(completion(a, json!({})));
    });
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    // An update while paused does not wait for the held request.
    let r = post(
        a,
        "/update_weights_from_disk",
        &json!({"model_path": f.modified, "weight_version": "7"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(rx.try_recv().is_err());
    let r = post(a, "/continue_generation", &json!({}));
    assert_eq!(r.json()["success"], true);
    let v = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // It had not started: it ran on the weights current when generation continued.
    assert_eq!(v["weight_version"], "7");
    let (t, _) = tokens_and_logprobs(&v["choices"][0]);
    assert_eq!(t, local_greedy(&load(&f.modified), &PROMPT, 8, false));
}

#[test]
fn bad_admin_requests_are_refused() {
    let f = fixture();
    let s = start(LogprobsMode::RawLogprobs);
    let a = s.addr;
    let bad = |path: &str, body: &str, status: u16, needle: &str| {
        let r = crate::common::request(a, "POST", path, Some(body), None);
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        let v = r.json();
        assert_eq!(v["success"], false, "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(needle), "{path} {body}: {m}");
    };
    bad("/update_weights_from_disk", "{not json", 400, "invalid");
    bad("/update_weights_from_disk", "{}", 400, "model_path");
    bad(
        "/update_weights_from_disk",
        r#"{"model_path": "/no/such/dir"}"#,
        400,
        "/no/such/dir",
    );
    let broken = json!({"model_path": f.broken}).to_string();
    bad(
        "/update_weights_from_disk",
        &broken,
        400,
        "model.norm.weight is missing",
    );
    // An adapter directory is no model directory.
    let adapter = json!({"model_path": f.adapter}).to_string();
    bad(
        "/update_weights_from_disk",
        &adapter,
        400,
        "model.safetensors",
    );
    let empty = json!({"model_path": f.modified, "weight_version": ""}).to_string();
    bad("/update_weights_from_disk", &empty, 400, "weight_version");
    bad(
        "/v1/load_lora_adapter",
        r#"{"lora_name": "x"}"#,
        400,
        "lora_path",
    );
    bad(
        "/v1/load_lora_adapter",
        r#"{"lora_name": "x", "lora_path": "/no/such/adapter"}"#,
        400,
        "/no/such/adapter",
    );
    // A model directory is no adapter directory.
    let model_dir = json!({"lora_name": "x", "lora_path": f.base}).to_string();
    bad("/v1/load_lora_adapter", &model_dir, 400, "adapter");
    bad(
        "/v1/unload_lora_adapter",
        r#"{"lora_name": "x"}"#,
        404,
        "no LoRA adapter",
    );
    // Nothing changed, and the server still serves.
    assert_eq!(version_of(a), "0");
    check_against(a, &load(&f.base), "0");
}

#[test]
fn admin_routes_need_the_api_key() {
    let f = fixture();
    let s = start_with(ServeConfig {
        api_key: Some("k".into()),
        weight_version: "init".into(),
        ..Default::default()
    });
    let body = json!({"model_path": f.modified}).to_string();
    for key in [None, Some("wrong")] {
        let r = crate::common::request(
            s.addr,
            "POST",
            "/update_weights_from_disk",
            Some(&body),
            key,
        );
        assert_eq!(r.status, 401);
    }
    let r = crate::common::request(s.addr, "GET", "/get_weight_version", None, Some("k"));
    assert_eq!(r.json()["weight_version"], "init");
    let r = crate::common::request(
        s.addr,
        "POST",
        "/update_weights_from_disk",
        Some(&body),
        Some("k"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Not numeric: the first update is number 1.
    assert_eq!(r.json()["weight_version"], "1");
    assert_eq!(get(s.addr, "/health").json()["weight_version"], "1");
}
