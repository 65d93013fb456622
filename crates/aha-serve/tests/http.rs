//! The server over loopback with a tiny random model: chat and completions (whole and
//! streamed), models, health, metrics, errors, API keys, disconnecting clients and shutdown.

use crate::common;

use aha_serve::{Assets, Running, ServeConfig};
use common::{chat_stream_text, get, metric, post, request};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CTX: usize = 200;

fn start(api_key: Option<&str>) -> Running {
    start_with(api_key, |_, _| {})
}

/// A server whose assets and settings `edit` changes first.
fn start_with(api_key: Option<&str>, edit: impl FnOnce(&mut Assets, &mut ServeConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let cfg = aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::default());
    let (model, tokenizer) = aha_train::pretrain::prepare(&cfg, dir.path()).unwrap();
    let template = aha_text::ChatTemplate::from_dir(dir.path()).unwrap();
    let mut assets = Assets {
        eos_token_ids: tokenizer.eos_token_ids().to_vec(),
        vocab_size: model.vocab_size(),
        tokenizer,
        template: Some(template),
        logits_processor: None,
        constrainer: None,
    };
    let mut cfg = ServeConfig {
        model_name: "tiny".into(),
        api_key: api_key.map(String::from),
        max_batch: 8,
        context: CTX,
        max_queue: 16,
        default_max_tokens: 16,
        ..Default::default()
    };
    edit(&mut assets, &mut cfg);
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

/// The error of a refused request, checked to be OpenAI's shape with this status.
fn error(r: &common::Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let e = r.json()["error"].clone();
    assert!(e["message"].is_string() && e["type"].is_string(), "{e}");
    e
}

#[test]
fn wrong_methods_and_oversized_bodies_get_openai_errors() {
    let a = server();
    let r = get(a, "/v1/chat/completions");
    let e = error(&r, 405);
    assert_eq!(e["code"], "method_not_allowed");
    assert!(e["message"].as_str().unwrap().contains("GET"), "{e}");
    assert!(r.header("allow").unwrap_or_default().contains("POST"));
    let e = error(&request(a, "POST", "/health", Some("{}"), None), 405);
    assert_eq!(e["code"], "method_not_allowed");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("POST is not allowed on /health"),
        "{e}"
    );
    // An unknown path: 404, the same error shape, naming the method and the path.
    for (method, path) in [("GET", "/v1/nothing"), ("POST", "/nowhere")] {
        let e = error(&request(a, method, path, None, None), 404);
        assert_eq!(e["code"], "not_found");
        assert_eq!(e["type"], "invalid_request_error");
        let want = format!("no route for {method} {path}");
        assert_eq!(e["message"].as_str(), Some(want.as_str()), "{e}");
    }
    // One byte over the limit: the server reads it all, so the client sees the answer.
    let big = "x".repeat(aha_serve::api::MAX_BODY + 1);
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let e = error(&request(a, "POST", path, Some(&big), None), 413);
        assert!(e["message"].as_str().unwrap().contains("larger"), "{e}");
    }
}

#[test]
fn settings_aha_does_not_implement_are_refused() {
    let a = server();
    let body = |extra: Value| {
        let mut b = json!({"prompt": "1 + 1 =", "max_tokens": 2, "temperature": 0});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, param) in [
        (json!({"echo": true}), "echo"),
        (json!({"best_of": 2}), "best_of"),
        (json!({"best_of": 3, "n": 2}), "best_of"),
        (json!({"suffix": " = 2"}), "suffix"),
    ] {
        let e = error(&post(a, "/v1/completions", &body(extra.clone())), 400);
        assert_eq!(e["param"], param, "{extra}: {e}");
        assert_eq!(e["type"], "invalid_request_error");
    }
    // Penalties are not implemented either, on both endpoints.
    for (extra, param) in [
        (json!({"presence_penalty": 0.5}), "presence_penalty"),
        (json!({"frequency_penalty": -1}), "frequency_penalty"),
        (json!({"repetition_penalty": 1.2}), "repetition_penalty"),
    ] {
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let mut b = body(extra.clone());
            b["messages"] = json!([{"role": "user", "content": "hi"}]);
            let e = error(&post(a, path, &b), 400);
            assert_eq!(e["param"], param, "{path} {extra}: {e}");
        }
    }
    // What they would mean anyway is fine, and so are fields aha does not know.
    for extra in [
        json!({"echo": false, "suffix": null, "best_of": 1}),
        json!({"best_of": 2, "n": 2, "suffix": ""}),
        json!({"user": "someone", "metadata": {"x": 1}}),
        json!({"presence_penalty": 0, "frequency_penalty": 0.0, "repetition_penalty": 1}),
    ] {
        let r = post(a, "/v1/completions", &body(extra.clone()));
        assert_eq!(r.status, 200, "{extra}: {}", r.body);
    }
}

#[test]
fn logit_bias_is_applied_and_checked() {
    let a = server();
    let vocab = {
        let r = post(
            a,
            "/v1/completions",
            &json!({"prompt": [1], "max_tokens": 1, "logit_bias": {"99999999": 1}}),
        );
        let e = error(&r, 400);
        assert_eq!(e["param"], "logit_bias");
        let m = e["message"].as_str().unwrap().to_string();
        assert!(m.contains("99999999"), "{m}");
        // "... (0 to LAST)"
        m.rsplit(' ')
            .next()
            .and_then(|l| l.trim_end_matches(')').parse::<u32>().ok())
            .unwrap()
            + 1
    };
    for (bias, named) in [
        (json!({vocab.to_string(): 1}), vocab.to_string()),
        (json!({"-3": 1}), "\"-3\"".to_string()),
        (json!({"two": 1}), "\"two\"".to_string()),
        (json!({"5": 100.5}), "token 5".to_string()),
        (json!({"5": -101}), "token 5".to_string()),
    ] {
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let body = json!({"prompt": "1", "messages": [{"role": "user", "content": "1"}],
                              "max_tokens": 2, "logit_bias": bias});
            let e = error(&post(a, path, &body), 400);
            assert_eq!(e["param"], "logit_bias", "{path} {bias}");
            assert!(
                e["message"].as_str().unwrap().contains(&named),
                "{bias}: {e}"
            );
        }
    }
    // A bias of 100 makes a token all but certain: greedy decoding writes only it.
    let r = post(
        a,
        "/v1/completions",
        &json!({"prompt": "1 + 1 =", "max_tokens": 5, "temperature": 0, "ignore_eos": true,
                "return_token_ids": true, "logit_bias": {"7": 100}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["choices"][0]["token_ids"], json!([7, 7, 7, 7, 7]));
}

/// Sleeps in each step of the request it is given to, so the request outlasts a short grace.
struct Slow;

impl aha_engine::LogitsProcessor for Slow {
    fn process(&mut self, _: usize, _: &[u32], _: &mut [f32]) {
        std::thread::sleep(Duration::from_millis(40));
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stopping_cancels_what_outlasts_the_grace() {
    let grace = Duration::from_millis(500);
    let s = start_with(None, |assets, cfg| {
        assets.logits_processor = Some(std::sync::Arc::new(|_: &[u32]| {
            Some(Box::new(Slow) as Box<dyn aha_engine::LogitsProcessor>)
        }));
        cfg.max_batch = 2;
        cfg.shutdown_grace = grace;
    });
    let a = s.addr;
    // 150 tokens at 40 ms or more each: far longer than the grace.
    let body = |stream: bool| {
        json!({"prompt": "1 2 3", "max_tokens": 150, "temperature": 0, "ignore_eos": true,
               "stream": stream})
    };
    let streamed = std::thread::spawn(move || post(a, "/v1/completions", &body(true)));
    wait_for("the stream's start", || metric(a, "aha_batch_size") >= 1.0);
    let whole = std::thread::spawn(move || post(a, "/v1/completions", &body(false)));
    wait_for("the whole one's start", || {
        metric(a, "aha_batch_size") >= 2.0
    });
    // The batch is full: this one waits, and never starts.
    let waiting = std::thread::spawn(move || post(a, "/v1/completions", &body(false)));
    wait_for("the third request", || {
        metric(a, "aha_requests_running") >= 3.0
    });
    std::thread::sleep(Duration::from_millis(200));

    let t = Instant::now();
    s.stop();
    let took = t.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(3),
        "stopping took {took:?} with a grace of {grace:?}"
    );
    assert!(std::net::TcpStream::connect(a).is_err(), "still listening");

    let streamed = streamed.join().unwrap();
    assert_eq!(streamed.status, 200);
    let events = streamed.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
    assert!((2..150).contains(&chunks.len()), "{} chunks", chunks.len());

    let whole = whole.join().unwrap();
    assert_eq!(whole.status, 200, "{}", whole.body);
    let v = whole.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..150).contains(&tokens), "{tokens} tokens");

    let e = error(&waiting.join().unwrap(), 503);
    assert_eq!(e["code"], "server_shutting_down");
}

/// A chat template that writes Hermes tool calls (`<tool_call>`), which the tiny model's own
/// does not.
const HERMES: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}\
                      {% if add_generation_prompt %}<|assistant|>{% endif %}\
                      {# calls: <tool_call>{..}</tool_call> #}";

#[test]
fn broken_schemas_are_refused_when_the_request_comes() {
    let s = start_with(None, |assets, cfg| {
        // Room for the system turn that lists the tools.
        cfg.context = 1024;
        assets.template = Some(aha_text::ChatTemplate::new(HERMES, Default::default()).unwrap());
        assets.constrainer = Some(aha_engine::Constrainer::new(&assets.tokenizer).unwrap());
    });
    let a = s.addr;
    let tool = |parameters: Value| json!({"type": "function", "function": {"name": "f", "parameters": parameters}});
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let broken = [
        (
            json!({"type": "integer", "minimum": 5, "maximum": 2}),
            "minimum",
        ),
        (json!({"type": "array", "uniqueItems": true}), "uniqueItems"),
        (json!({"$ref": "#"}), "no JSON value"),
    ];
    for (schema, named) in &broken {
        // Offered with "auto", where no grammar uses it, as well as forced.
        for choice in ["auto", "required"] {
            let body = chat(json!({"tools": [tool(schema.clone())], "tool_choice": choice}));
            let e = error(&post(a, "/v1/chat/completions", &body), 400);
            assert_eq!(e["param"], "tools", "{schema} {choice}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains(named),
                "{schema} {choice}: {e}"
            );
        }
        let format = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        for (path, body) in [
            (
                "/v1/chat/completions",
                chat(json!({"response_format": format})),
            ),
            (
                "/v1/completions",
                json!({"prompt": "x", "max_tokens": 4, "response_format": format}),
            ),
        ] {
            let e = error(&post(a, path, &body), 400);
            assert_eq!(e["param"], "response_format", "{path} {schema}: {e}");
            assert!(e["message"].as_str().unwrap().contains(named), "{e}");
        }
    }
    let body = chat(json!({"tools": [tool(json!("object"))]}));
    let e = error(&post(a, "/v1/chat/completions", &body), 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("JSON Schema object"),
        "{e}"
    );
    // Good schemas pass, and tools with tool_choice "none" are not used, so not looked at.
    let good = json!({"type": "object", "properties": {"a": {"type": "number"}}});
    for body in [
        chat(json!({"tools": [tool(good.clone())]})),
        chat(json!({"tools": [tool(json!({"$ref": "#"}))], "tool_choice": "none"})),
        chat(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": good}}}),
        ),
    ] {
        let r = post(a, "/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    }
    // One compile per request: a response_format schema is checked on the constraint that
    // decodes it, not compiled again for the check; an offered tool ("auto") is compiled
    // for its check only.
    let compiles = || metric(a, "aha_constraint_compiles_total");
    let json_schema = |schema: Value| json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
    for body in [
        chat(json!({"response_format": json_schema(good.clone())})),
        chat(json!({"response_format": {"type": "json_object"}})),
        chat(json!({"tools": [tool(good.clone())]})),
    ] {
        let before = compiles();
        let r = post(a, "/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(compiles() - before, 1.0, "{body}");
    }
    let before = compiles();
    let body = json!({"prompt": "x", "max_tokens": 4, "response_format": json_schema(good)});
    assert_eq!(post(a, "/v1/completions", &body).status, 200);
    assert_eq!(compiles() - before, 1.0);
}

#[test]
fn a_second_stop_request_cancels_without_waiting_for_the_grace() {
    let s = start_with(None, |assets, cfg| {
        assets.logits_processor = Some(std::sync::Arc::new(|_: &[u32]| {
            Some(Box::new(Slow) as Box<dyn aha_engine::LogitsProcessor>)
        }));
        cfg.shutdown_grace = Duration::from_secs(600);
    });
    let a = s.addr;
    let body = json!({"prompt": "1 2 3", "max_tokens": 150, "temperature": 0,
                      "ignore_eos": true});
    let whole = std::thread::spawn(move || post(a, "/v1/completions", &body));
    wait_for("the request's start", || metric(a, "aha_batch_size") >= 1.0);
    let shutdown = s.shutdown();
    let t = Instant::now();
    let stopping = std::thread::spawn(move || s.stop());
    // The first request closes the listener and starts the (long) grace.
    wait_for("the listener's close", || {
        std::net::TcpStream::connect(a).is_err()
    });
    assert_eq!(shutdown.requests(), 1);
    shutdown.request();
    stopping.join().unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    let whole = whole.join().unwrap();
    assert_eq!(whole.status, 200, "{}", whole.body);
    let v = whole.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..150).contains(&tokens), "{tokens} tokens");
}
