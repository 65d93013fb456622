//! The server over loopback with a tiny random model: chat and completions (whole and
//! streamed), models, health, metrics, errors, API keys and disconnecting clients.

use crate::common;

use aha_serve::{Assets, Running, ServeConfig};
use common::{chat_stream_text, get, post, request};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CTX: usize = 200;

fn start(api_key: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let cfg = aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::default());
    let (model, tokenizer) = aha_train::pretrain::prepare(&cfg, dir.path()).unwrap();
    let template = aha_text::ChatTemplate::from_dir(dir.path()).unwrap();
    let assets = Assets {
        eos_token_ids: tokenizer.eos_token_ids().to_vec(),
        vocab_size: model.vocab_size(),
        tokenizer,
        template: Some(template),
        logits_processor: None,
        constrainer: None,
    };
    let cfg = ServeConfig {
        model_name: "tiny".into(),
        api_key: api_key.map(String::from),
        max_batch: 8,
        context: CTX,
        max_queue: 16,
        default_max_tokens: 16,
        ..Default::default()
    };
    aha_serve::spawn(model, assets, cfg, "127.0.0.1", 0).unwrap()
}

fn server() -> SocketAddr {
    static S: OnceLock<Running> = OnceLock::new();
    S.get_or_init(|| start(None)).addr
}

fn chat_body(extra: Value) -> Value {
    let mut b = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "temperature": 0,
        "max_tokens": 12,
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn health_and_models() {
    let a = server();
    let h = get(a, "/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    let m = get(a, "/v1/models").json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "tiny");
    let page = get(a, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("/v1/chat/completions"));
    // Self-contained: nothing fetched from elsewhere.
    assert!(!page.body.contains("src=\"http") && !page.body.contains("href=\"http"));
    let nf = get(a, "/nope");
    assert_eq!(nf.status, 404);
    assert!(nf.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nope"));
}

#[test]
fn chat_whole_and_streamed_agree() {
    let a = server();
    let whole = post(a, "/v1/chat/completions", &chat_body(json!({})));
    assert_eq!(whole.status, 200, "{}", whole.body);
    let w = whole.json();
    assert_eq!(w["object"], "chat.completion");
    let choice = &w["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let usage = &w["usage"];
    let tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&tokens), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + tokens
    );
    match choice["finish_reason"].as_str().unwrap() {
        "length" => assert_eq!(tokens, 12),
        "stop" => assert!(tokens <= 12),
        other => panic!("finish_reason {other}"),
    }

    let streamed = post(
        a,
        "/v1/chat/completions",
        &chat_body(json!({"stream": true, "stream_options": {"include_usage": true}})),
    );
    assert_eq!(streamed.status, 200);
    assert!(streamed
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let parts = chat_stream_text(&events, 1);
    assert_eq!(parts[0].0, choice["message"]["content"].as_str().unwrap());
    assert_eq!(
        parts[0].1,
        choice["message"]["reasoning_content"]
            .as_str()
            .unwrap_or_default()
    );
    assert_eq!(parts[0].2.as_deref(), choice["finish_reason"].as_str());
    // The usage chunk comes last, with no choices, and counts the same.
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"], *usage);
}

#[test]
fn n_samples_and_logprobs() {
    let a = server();
    let r = post(
        a,
        "/v1/chat/completions",
        &chat_body(
            json!({"n": 3, "temperature": 1.0, "seed": 7, "logprobs": true, "top_logprobs": 2}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let mut total = 0;
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let lp = c["logprobs"]["content"].as_array().unwrap();
        total += lp.len();
        for e in lp {
            assert!(e["logprob"].as_f64().unwrap() <= 0.0);
            assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
        }
    }
    assert_eq!(
        v["usage"]["completion_tokens"].as_u64().unwrap(),
        total as u64
    );
    // Same seed, same samples.
    let again = post(
        a,
        "/v1/chat/completions",
        &chat_body(
            json!({"n": 3, "temperature": 1.0, "seed": 7, "logprobs": true, "top_logprobs": 2}),
        ),
    )
    .json();
    // Same tokens; log-probs may differ in the last bits with other requests in the batch.
    for (x, y) in again["choices"].as_array().unwrap().iter().zip(choices) {
        assert_eq!(x["message"], y["message"]);
    }
}

#[test]
fn completions_text_and_ids() {
    let a = server();
    let body = json!({"prompt": "12 + 30 =", "max_tokens": 10, "temperature": 0});
    let r = post(a, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let s = post(a, "/v1/completions", &sb);
    let events = s.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut joined = String::new();
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).unwrap();
        joined.push_str(c["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(joined, text);
    let ids = post(
        a,
        "/v1/completions",
        &json!({"prompt": [5, 6, 7], "max_tokens": 4, "temperature": 0, "logprobs": 1}),
    );
    assert_eq!(ids.status, 200, "{}", ids.body);
    let v = ids.json();
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[test]
fn concurrent_requests_match_sequential_ones() {
    let a = server();
    let prompts = [
        "1 + 1 =",
        "What is 17 * 3? Think step by step.",
        "9",
        "abc abc abc abc abc",
    ];
    let body = |p: &str| json!({"prompt": p, "max_tokens": 16, "temperature": 0});
    let sequential: Vec<Value> = prompts
        .iter()
        .map(|p| post(a, "/v1/completions", &body(p)).json()["choices"][0].clone())
        .collect();
    let threads: Vec<_> = prompts
        .iter()
        .map(|p| {
            let b = body(p);
            std::thread::spawn(move || post(a, "/v1/completions", &b).json()["choices"][0].clone())
        })
        .collect();
    let concurrent: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(concurrent, sequential);
}

#[test]
fn bad_requests_get_openai_errors() {
    let a = server();
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("{not json", "invalid request body", None),
        (
            r#"{"messages": []}"#,
            "messages must not be empty",
            Some("messages"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#,
            "invalid request body",
            None,
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}"#,
            "exceeds the context",
            Some("max_tokens"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "n": 99}"#,
            "n must be between",
            Some("n"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}"#,
            "top_p",
            Some("top_p"),
        ),
        (r#"{"messages": "hi"}"#, "invalid request body", None),
        (
            r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#,
            "unknown message role",
            Some("messages"),
        ),
    ];
    for (body, msg, param) in cases {
        let r = request(a, "POST", "/v1/chat/completions", Some(body), None);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = &r.json()["error"];
        assert!(e["message"].as_str().unwrap().contains(msg), "{body}: {e}");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"].as_str(), param, "{body}");
    }
    let long = "word ".repeat(CTX * 2);
    let r = post(
        a,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": long}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    let r = post(
        a,
        "/v1/completions",
        &json!({"prompt": [100000], "max_tokens": 2}),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("outside the vocabulary"));
    // The server is still fine.
    assert_eq!(get(a, "/health").status, 200);
}

#[test]
fn api_key_is_required_when_set() {
    let s = start(Some("sekrit"));
    let body = chat_body(json!({"max_tokens": 2})).to_string();
    let no = request(s.addr, "POST", "/v1/chat/completions", Some(&body), None);
    assert_eq!(no.status, 401);
    assert_eq!(no.json()["error"]["code"], "invalid_api_key");
    let wrong = request(s.addr, "GET", "/v1/models", None, Some("nope"));
    assert_eq!(wrong.status, 401);
    let ok = request(
        s.addr,
        "POST",
        "/v1/chat/completions",
        Some(&body),
        Some("sekrit"),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Health stays open for probes.
    assert_eq!(get(s.addr, "/health").status, 200);
}

fn metric(a: SocketAddr, name: &str) -> f64 {
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    m.body
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{}", m.body))
}

#[test]
fn a_client_that_leaves_mid_stream_frees_its_slot() {
    // Its own server, so other tests' traffic does not blur the counts.
    let s = start(None);
    let a = s.addr;
    let body =
        json!({"prompt": "1", "max_tokens": 150, "temperature": 1.0, "stream": true, "seed": 1})
            .to_string();
    let mut conn = std::net::TcpStream::connect(a).unwrap();
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 256];
    let got = conn.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..got]).contains("200"));
    drop(conn);
    let t = Instant::now();
    while metric(a, "aha_requests_running") > 0.0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the request never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let batch_settled = Instant::now();
    while metric(a, "aha_batch_size") > 0.0 {
        assert!(batch_settled.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric(a, "aha_requests_total{endpoint=\"completions\"}"),
        1.0
    );
    let m = get(a, "/metrics").body;
    assert!(m.contains("# TYPE aha_time_to_first_token_seconds histogram"));
    assert!(m.contains("aha_time_to_first_token_seconds_count "));
}
