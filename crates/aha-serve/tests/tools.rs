//! R1 tool calls with the real DeepSeek-R1 tokenizer and chat template: a conversation with
//! calls and tool results renders through the template and parses back to the same calls;
//! a scripted model's calls come back as OpenAI `tool_calls`, whole and streamed, including
//! a call written before `</think>`.

use crate::common::{asset_dir, chat_stream_text, post};
use crate::reasoning::{start, Server};
use aha_text::{ChatTemplate, ToolCall, ToolCallFormat};
use serde_json::{json, Value};

fn calls() -> Vec<ToolCall> {
    vec![
        ToolCall {
            name: "add".into(),
            arguments: r#"{"a": 2, "b": 3}"#.into(),
        },
        ToolCall {
            name: "lookup".into(),
            arguments: r#"{"query": "größte Zahl", "limit": [1, 2]}"#.into(),
        },
    ]
}

fn openai_calls(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect()
}

#[test]
fn r1_template_renders_calls_that_parse_back() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let t = ChatTemplate::from_dir(&dir).unwrap();
    let f = t.tool_call_format();
    assert_eq!(f, Some(ToolCallFormat::DeepSeek));
    let f = f.unwrap();
    let msgs = json!([
        {"role": "user", "content": "Add 2 and 3, then look it up."},
        {"role": "assistant", "content": null, "tool_calls": openai_calls(&calls())},
        {"role": "tool", "tool_call_id": "call_0", "content": "5"},
        {"role": "tool", "tool_call_id": "call_1", "content": "nothing found"},
    ]);
    let msgs: Vec<Value> = msgs.as_array().unwrap().clone();
    let text = t.render_with(&msgs, true, &serde_json::Map::new()).unwrap();
    // The assistant turn, as the template wrote it, parses back to the same calls.
    let turn = text.split("<｜Assistant｜>").nth(1).unwrap();
    let turn = turn.split("<｜end▁of▁sentence｜>").next().unwrap();
    let p = f.parse(turn);
    assert_eq!(p.calls, calls(), "{turn}");
    assert_eq!(p.content, "");
    // The tool results follow in the template's own tokens.
    assert!(
        text.contains("<｜tool▁output▁begin｜>5<｜tool▁output▁end｜>"),
        "{text}"
    );
    assert!(text.ends_with("<｜tool▁outputs▁end｜>"), "{text}");
}

fn script(server: &Server, text: &str) {
    *server.script.lock().unwrap() = server.tok.encode(text, false).unwrap();
}

fn ask(server: &Server, stream: bool) -> (u16, Value, Vec<String>) {
    let body = json!({
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "tools": [{"type": "function", "function": {"name": "add", "description": "a + b",
                   "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                  "b": {"type": "number"}}}}}],
        "temperature": 0, "max_tokens": 200, "stream": stream,
    });
    let r = post(server.running.addr, "/v1/chat/completions", &body);
    if stream {
        (r.status, Value::Null, r.events())
    } else {
        (r.status, r.json(), Vec::new())
    }
}

/// The tool calls of a stream, joined from its deltas.
fn streamed_calls(events: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if let Some(calls) = v["choices"][0]["delta"]["tool_calls"].as_array() {
            for c in calls {
                out.push((
                    c["function"]["name"].as_str().unwrap().to_string(),
                    c["function"]["arguments"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn scripted_r1_tool_calls_through_the_server() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let server = start(&dir, false);
    let call = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\": 2, \"b\": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    let want = vec![("add".to_string(), r#"{"a": 2, "b": 3}"#.to_string())];
    // After the reasoning, and written before `</think>` (the call ends the reasoning).
    for (text, reasoning, content) in [
        (
            format!("<think>\nI should add.\n</think>\n\nLet me add.{call}"),
            "\nI should add.\n",
            "\n\nLet me add.",
        ),
        (
            format!("<think>\nI should add.\n{call}"),
            "\nI should add.\n",
            "",
        ),
    ] {
        script(&server, &text);
        let (status, w, _) = ask(&server, false);
        assert_eq!(status, 200, "{w}");
        let c = &w["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls", "{w}");
        let m = &c["message"];
        assert_eq!(m["reasoning_content"].as_str(), Some(reasoning), "{w}");
        let calls: Vec<(String, String)> = m["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["type"], "function");
                assert!(c["id"].as_str().unwrap().starts_with("call_"));
                (
                    c["function"]["name"].as_str().unwrap().to_string(),
                    c["function"]["arguments"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(calls, want, "{w}");
        assert_eq!(m["content"].as_str().unwrap_or(""), content, "{w}");
        assert!(m["tool_calls"][0].get("index").is_none(), "{w}");

        let (status, _, events) = ask(&server, true);
        assert_eq!(status, 200);
        assert_eq!(streamed_calls(&events), want);
        let parts = chat_stream_text(&events, 1);
        assert_eq!(parts[0].0, content);
        assert_eq!(parts[0].1, reasoning);
        assert_eq!(parts[0].2.as_deref(), Some("tool_calls"));
        assert!(
            events.iter().all(|e| !e.contains("tool▁call▁begin")),
            "{events:?}"
        );
    }
    // No call: plain content, finish "stop"; a broken call stays text; a marker mentioned in
    // the reasoning is reasoning.
    for text in [
        "<think>\nEasy.\n</think>\n\nIt is 5.",
        "<think>\nI could write <｜tool▁calls▁begin｜> but no.\n</think>\n\nIt is 5.",
        "<think>\nx\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n{\"a\": ",
    ] {
        script(&server, text);
        let (_, w, _) = ask(&server, false);
        let c = &w["choices"][0];
        assert_eq!(c["finish_reason"], "stop", "{w}");
        assert!(c["message"].get("tool_calls").is_none(), "{w}");
        let (_, _, events) = ask(&server, true);
        let parts = chat_stream_text(&events, 1);
        assert_eq!(Some(parts[0].0.as_str()), c["message"]["content"].as_str());
        assert_eq!(
            Some(parts[0].1.as_str()),
            c["message"]["reasoning_content"].as_str()
        );
    }
    // R1's template never shows the model its tools: the server adds them as a system turn.
    script(&server, "<think>\nx\n</think>\n\ny");
    let a = server.running.addr;
    let plain =
        json!({"messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 5});
    let without = post(a, "/v1/chat/completions", &plain).json()["usage"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    let (_, with, _) = ask(&server, false);
    let with = with["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(with > without + 50, "{with} vs {without}");
    // Errors: a forced tool_choice on a model without constrained decoding (this scripted
    // one), an unknown tool_choice, and a malformed tool.
    let base = json!({"messages": [{"role": "user", "content": "hi"}],
                      "tools": [{"type": "function", "function": {"name": "add"}}]});
    let mut b = base.clone();
    b["tool_choice"] = json!("required");
    let r = post(a, "/v1/chat/completions", &b);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("constrained decoding"), "{}", r.body);
    b["tool_choice"] = json!("always");
    assert_eq!(post(a, "/v1/chat/completions", &b).status, 400);
    let mut b = base.clone();
    b["tools"] = json!([{"type": "function"}]);
    assert_eq!(post(a, "/v1/chat/completions", &b).status, 400);
}

/// Arguments valid under the forced tools' schemas (checked by hand): `get_weather` {city in
/// Paris/Oslo, days 1..=7}, `add` {a, b in 0..=99}, nothing else.
fn valid_call(name: &str, arguments: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(arguments).map_err(|e| format!("not JSON ({e})"))?;
    let o = v.as_object().ok_or("not an object")?;
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    let int_in = |k: &str, lo: i64, hi: i64| match o[k].as_i64() {
        Some(x) if (lo..=hi).contains(&x) && !o[k].is_f64() => Ok(()),
        _ => Err(format!("{k} = {}", o[k])),
    };
    match name {
        "get_weather" if keys == ["city", "days"] => {
            match o["city"].as_str() {
                Some("Paris" | "Oslo") => {}
                _ => return Err(format!("city = {}", o["city"])),
            }
            int_in("days", 1, 7)
        }
        "add" if keys == ["a", "b"] => int_in("a", 0, 99).and(int_in("b", 0, 99)),
        _ => Err(format!("{name} with keys {keys:?}")),
    }
}

fn forced_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "add", "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                           "b": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["a", "b"], "additionalProperties": false}}}
    ])
}

/// A forced `tool_choice` ("required", or a named function) with a random model of R1's
/// vocabulary and the real R1 tokenizer and template: whatever it writes after its (free,
/// budgeted) reasoning, the answer is calls of the allowed tools with valid arguments.
#[test]
fn forced_tool_choice_gives_valid_calls() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let server = crate::constraint::start(&dir);
    let ask = |choice: Value, n: usize, seed: u64| {
        post(
            server.addr,
            "/v1/chat/completions",
            &json!({
                "messages": [{"role": "user", "content": "Weather in Oslo for 3 days?"}],
                "tools": forced_tools(),
                "tool_choice": choice,
                "thinking_budget": 8,
                "n": n,
                "temperature": 1.0,
                "seed": seed,
                "max_tokens": 300,
            }),
        )
    };
    for (choice, names) in [
        (json!("required"), vec!["get_weather", "add"]),
        (
            json!({"type": "function", "function": {"name": "add"}}),
            vec!["add"],
        ),
    ] {
        let r = ask(choice.clone(), 4, 11);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        for c in v["choices"].as_array().unwrap() {
            assert_eq!(c["finish_reason"], "tool_calls", "{choice}: {c}");
            let calls = c["message"]["tool_calls"].as_array().unwrap();
            assert!(!calls.is_empty(), "{c}");
            if names.len() == 1 {
                assert_eq!(calls.len(), 1, "a named choice is one call: {c}");
            }
            for call in calls {
                let name = call["function"]["name"].as_str().unwrap();
                let args = call["function"]["arguments"].as_str().unwrap();
                assert!(names.contains(&name), "{choice}: called {name}");
                valid_call(name, args).unwrap_or_else(|e| panic!("{name}({args}): {e}"));
            }
            assert!(
                c["message"]["reasoning_content"].as_str().is_some(),
                "the reasoning stays free: {c}"
            );
        }
    }
    // Errors: a named tool that is not offered; a forced call and a JSON answer at once.
    let r = ask(
        json!({"type": "function", "function": {"name": "nope"}}),
        1,
        0,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nope"), "{}", r.body);
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "hi"}],
            "tools": forced_tools(),
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
        }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("tool_choice"), "{}", r.body);
}

/// The Hermes/Qwen call grammar, in the engine directly (R1's tokenizer, a random model, no
/// reasoning phase): 8 samples of "required" calls, each parsed back by the Hermes parser into
/// calls of the offered tools with valid arguments.
#[test]
fn forced_hermes_calls_parse_back() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let tok = aha_text::Tokenizer::from_dir(&dir).unwrap();
    let (model, eos, _) = crate::common::random_r1_model(&tok);
    let tools: Vec<(String, Value)> = forced_tools()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["function"]["name"].as_str().unwrap().to_string(),
                t["function"]["parameters"].clone(),
            )
        })
        .collect();
    let grammar = aha_engine::Grammar::ToolCalls {
        format: ToolCallFormat::Hermes,
        tools,
        one: false,
    };
    let constraint = aha_engine::Constrainer::new(&tok)
        .unwrap()
        .compile(Some(&grammar), None)
        .unwrap();
    let opts = aha_engine::GenerateOptions {
        max_tokens: 300,
        seed: 3,
        stop_token_ids: vec![eos],
        constraint: Some(std::sync::Arc::new(constraint)),
        ..Default::default()
    };
    let prompt = tok.encode("Call a tool.", false).unwrap();
    let out = aha_engine::generate_n(&model, Some(&tok), &[prompt], 8, &opts, |_| {}).unwrap();
    for c in out {
        let text = c.text.unwrap();
        let parsed = ToolCallFormat::Hermes.parse(&text);
        assert!(!parsed.calls.is_empty(), "no calls in {text:?}");
        assert_eq!(parsed.content, "", "{text:?}");
        for call in &parsed.calls {
            valid_call(&call.name, &call.arguments)
                .unwrap_or_else(|e| panic!("{}({}): {e}", call.name, call.arguments));
        }
    }
}

/// `parallel_tool_calls: false` with a forced choice: the grammar allows exactly one call.
#[test]
fn parallel_tool_calls_false_forces_one_call() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let server = crate::constraint::start(&dir);
    // Each of 8 random samples is one valid call (that the grammar takes one call only is
    // checked on the grammar itself, in routes.rs: a random model rarely writes a second).
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "Weather in Oslo for 3 days?"}],
            "tools": forced_tools(),
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "thinking_budget": 8,
            "n": 8,
            "temperature": 1.0,
            "seed": 5,
            "max_tokens": 300,
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for c in r.json()["choices"].as_array().unwrap() {
        assert_eq!(c["finish_reason"], "tool_calls", "{c}");
        let calls = c["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{c}");
        let f = &calls[0]["function"];
        let (name, args) = (
            f["name"].as_str().unwrap(),
            f["arguments"].as_str().unwrap(),
        );
        valid_call(name, args).unwrap_or_else(|e| panic!("{name}({args}): {e}"));
    }
}

/// `parallel_tool_calls: false` in "auto": of an answer that writes two calls only the first
/// is kept (whole and streamed); by default, or with true, both are.
#[test]
fn parallel_tool_calls_false_keeps_the_first_call() {
    let Some(dir) = asset_dir() else {
        return;
    };
    let server = start(&dir, false);
    let call = |a: u32| {
        format!(
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{{\"a\": {a}, \"b\": 3}}\n```<｜tool▁call▁end｜>"
        )
    };
    script(
        &server,
        &format!(
            "<think>\nx\n</think>\n\n<｜tool▁calls▁begin｜>{}{}<｜tool▁calls▁end｜>",
            call(1),
            call(2)
        ),
    );
    let first = ("add".to_string(), r#"{"a": 1, "b": 3}"#.to_string());
    let second = ("add".to_string(), r#"{"a": 2, "b": 3}"#.to_string());
    for (parallel, want) in [
        (Some(false), vec![first.clone()]),
        (Some(true), vec![first.clone(), second.clone()]),
        (None, vec![first, second]),
    ] {
        for stream in [false, true] {
            let mut body = json!({
                "messages": [{"role": "user", "content": "What is 1 + 3 and 2 + 3?"}],
                "tools": [{"type": "function", "function": {"name": "add", "parameters": {
                    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}],
                "temperature": 0, "max_tokens": 200, "stream": stream,
            });
            if let Some(p) = parallel {
                body["parallel_tool_calls"] = json!(p);
            }
            let r = post(server.running.addr, "/v1/chat/completions", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            let got = if stream {
                streamed_calls(&r.events())
            } else {
                let v = r.json();
                assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
                v["choices"][0]["message"]["tool_calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let f = &c["function"];
                        (
                            f["name"].as_str().unwrap().to_string(),
                            f["arguments"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            };
            assert_eq!(got, want, "parallel {parallel:?}, stream {stream}");
        }
    }
}
