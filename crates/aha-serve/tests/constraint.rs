//! Constrained decoding through the server, with the real DeepSeek-R1 tokenizer and chat
//! template and a random model of R1's vocabulary: whatever such a model would write, the
//! answer after `</think>` must match the schema, regex or choice, and the reasoning before
//! it stays free.

use crate::common::{self, asset_dir, post};

use aha_serve::{Assets, Running, ServeConfig};
use aha_text::{ChatTemplate, Tokenizer};
use serde_json::{json, Value};
use std::path::Path;

pub(crate) fn start(dir: &Path) -> Running {
    let tok = Tokenizer::from_dir(dir).unwrap();
    let template = ChatTemplate::from_dir(dir).unwrap();
    let (model, eos, vocab) = common::random_r1_model(&tok);
    let assets = Assets {
        eos_token_ids: vec![eos],
        vocab_size: vocab,
        constrainer: Some(aha_engine::Constrainer::new(&tok).unwrap()),
        tokenizer: tok,
        template: Some(template),
        logits_processor: None,
    };
    let cfg = ServeConfig {
        model_name: "r1-random".into(),
        context: 1024,
        max_batch: 8,
        ..Default::default()
    };
    aha_serve::spawn(model, assets, cfg, "127.0.0.1", 0).unwrap()
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "answer": {"type": "integer", "minimum": 0, "maximum": 999},
            "unit": {"enum": ["apples", "pears"]}
        },
        "required": ["answer", "unit"],
        "additionalProperties": false
    })
}

/// Valid under [`schema`], checked by hand.
fn valid(content: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(content).map_err(|e| format!("not JSON ({e})"))?;
    let o = v.as_object().ok_or("not an object")?;
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    if keys != ["answer", "unit"] {
        return Err(format!("keys {keys:?}"));
    }
    match o["answer"].as_i64() {
        Some(0..=999) if o["answer"].is_i64() || o["answer"].is_u64() => {}
        _ => return Err(format!("answer {}", o["answer"])),
    }
    match o["unit"].as_str() {
        Some("apples" | "pears") => Ok(()),
        _ => Err(format!("unit {}", o["unit"])),
    }
}

#[test]
fn json_schema_after_free_reasoning() {
    let Some(dir) = asset_dir() else { return };
    let server = start(&dir);
    let compiles = || common::metric(server.addr, "aha_constraint_compiles_total");
    let before = compiles();
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "How many apples?"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "count", "schema": schema(), "strict": true}},
            "thinking_budget": 12,
            "n": 4,
            "temperature": 1.0,
            "seed": 7,
            "max_tokens": 200,
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for c in choices {
        let m = &c["message"];
        let content = m["content"].as_str().unwrap_or_default();
        let reasoning = m["reasoning_content"].as_str().unwrap_or_default();
        // The random model never closes its reasoning by itself: the budget does, and the
        // closing words are forced before the tag.
        assert!(reasoning.contains("Time to answer."), "{reasoning:?}");
        assert_eq!(c["finish_reason"], "stop", "{c}");
        if let Err(e) = valid(content.trim()) {
            panic!("content {content:?} is not valid: {e}");
        }
    }
    // Whitespace is free, so the 4 samples write different answers (a constraint, not a
    // template).
    let contents: std::collections::HashSet<&str> = choices
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap_or_default())
        .collect();
    assert!(contents.len() > 1, "{contents:?}");
    // The schema was compiled once, with the reasoning gate, and checked on that: a schema
    // no value satisfies is still refused, seen past the gate.
    assert_eq!(compiles() - before, 1.0);
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "How many apples?"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": {"$ref": "#"}}},
        }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["param"], "response_format", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("no JSON value"),
        "{e}"
    );
}

#[test]
fn regex_and_choice_on_completions_and_errors() {
    let Some(dir) = asset_dir() else { return };
    let server = start(&dir);
    // /v1/completions has no reasoning phase: the constraint starts at the first token.
    for seed in 0..3 {
        let r = post(
            server.addr,
            "/v1/completions",
            &json!({"prompt": "Code:", "regex": "[0-9]{3}-[a-z]{2}", "temperature": 1.0,
                    "seed": seed, "max_tokens": 32}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
        let b = text.as_bytes();
        assert!(
            b.len() == 6
                && b[..3].iter().all(u8::is_ascii_digit)
                && b[3] == b'-'
                && b[4..].iter().all(u8::is_ascii_lowercase),
            "{text:?}"
        );
    }
    let r = post(
        server.addr,
        "/v1/completions",
        &json!({"prompt": "Pick:", "choice": ["yes", "no", "maybe (later)"],
                "temperature": 1.0, "n": 6, "seed": 1, "max_tokens": 16}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for c in r.json()["choices"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert!(["yes", "no", "maybe (later)"].contains(&t), "{t:?}");
    }
    // An unsupported schema keyword is named, never ignored.
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "List"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "l",
                    "schema": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true}}}}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("uniqueItems"), "{}", r.body);
    // Two constraints at once, and a bad regex: clear 400s.
    let r = post(
        server.addr,
        "/v1/completions",
        &json!({"prompt": "x", "regex": "a+", "choice": ["a"]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(
        server.addr,
        "/v1/completions",
        &json!({"prompt": "x", "regex": "(unclosed"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Cut off while still thinking: `finish_reason` says so, and no content is passed off as
/// a valid answer.
#[test]
fn cut_off_while_thinking_has_no_content() {
    let Some(dir) = asset_dir() else { return };
    let server = start(&dir);
    let r = post(
        server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "How many?"}],
                "response_format": {"type": "json_object"},
                "temperature": 1.0, "seed": 3, "max_tokens": 10}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = &r.json()["choices"][0];
    assert_eq!(c["finish_reason"], "length", "{c}");
    assert_eq!(
        c["message"]["content"].as_str().unwrap_or_default(),
        "",
        "{c}"
    );
    let _ = common::get(server.addr, "/health");
}

/// A random JSON Schema the walk below can finish: an object of 1-4 bounded fields (integer,
/// string, enum, boolean, array of integers, nested object), some optional.
fn random_schema(rng: &mut impl rand::Rng, depth: usize) -> Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for i in 0..rng.random_range(1..=4) {
        let name = format!("f{i}");
        let kind = rng.random_range(0..if depth > 0 { 5 } else { 6 });
        let field = match kind {
            0 => {
                let lo = rng.random_range(-50..50);
                json!({"type": "integer", "minimum": lo, "maximum": lo + rng.random_range(0..200)})
            }
            1 => json!({"type": "string", "maxLength": rng.random_range(0..12)}),
            2 => json!({"enum": ["red", "green", 3, null]}),
            3 => json!({"type": "boolean"}),
            4 => json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                        "maxItems": rng.random_range(0..4)}),
            _ => random_schema(rng, depth + 1),
        };
        if rng.random::<bool>() {
            required.push(name.clone());
        }
        props.insert(name, field);
    }
    json!({"type": "object", "properties": props, "required": required,
           "additionalProperties": false})
}

/// Whether every integer or number in `schema` has both a minimum and a maximum.
fn numbers_bounded(schema: &Value) -> bool {
    match schema {
        Value::Object(o) => {
            let numeric = matches!(
                o.get("type").and_then(Value::as_str),
                Some("integer" | "number")
            );
            (!numeric || (o.contains_key("minimum") && o.contains_key("maximum")))
                && o.values().all(numbers_bounded)
        }
        Value::Array(a) => a.iter().all(numbers_bounded),
        _ => true,
    }
}

/// The property the constraint engine must have, against an adversarial sampler: a walk
/// that appends uniformly random tokens the mask allows (so every token is allowed by
/// construction) ends, whenever it ends, in JSON valid under the schema, as judged by an
/// independent validator (the `jsonschema` crate). The benchmark schemas with bounded
/// numbers and 20 random ones, 3 walks each, with the real DeepSeek-R1 tokenizer (129k tokens).
#[test]
fn random_walks_under_the_mask_end_in_valid_json() {
    use rand::SeedableRng;
    let Some(dir) = asset_dir() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let constrainer = aha_engine::Constrainer::new(&tok).unwrap();
    let bench =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/mask_schemas.json");
    // Only schemas whose numbers are bounded: JSON numbers have no length limit, and the
    // walk does write 300-digit integers where nothing bounds them (valid JSON that
    // serde_json, the test's parser, cannot hold).
    let mut schemas: Vec<Value> =
        serde_json::from_str::<Vec<Value>>(&std::fs::read_to_string(bench).unwrap())
            .unwrap()
            .into_iter()
            .filter(numbers_bounded)
            .collect();
    assert!(
        schemas.len() >= 8,
        "{} bounded benchmark schemas",
        schemas.len()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    schemas.extend((0..20).map(|_| random_schema(&mut rng, 0)));
    let (mut finished, mut walks) = (0, 0);
    for (i, schema) in schemas.iter().enumerate() {
        let validator = jsonschema::validator_for(schema).unwrap();
        let c = constrainer
            .compile(Some(&aha_engine::Grammar::JsonSchema(schema.clone())), None)
            .unwrap();
        for seed in 0..3u64 {
            walks += 1;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 100 + i as u64);
            let (out, ended) = c.random_walk(200, &mut rng, |_| {});
            assert!(
                ended || out.len() == 200,
                "schema {i}: nothing allowed after {out:?}"
            );
            if ended {
                finished += 1;
                let text = tok.decode(&out, false).unwrap();
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("schema {i}: {text:?} is not JSON: {e}"));
                if let Err(e) = validator.validate(&v) {
                    panic!("schema {i} {schema}: {text} is invalid: {e}");
                }
            }
        }
    }
    eprintln!("{finished} of {walks} walks finished within 200 tokens, all valid");
    assert!(
        finished * 2 > walks,
        "too few walks finished: {finished} of {walks}"
    );
}

/// What a constraint forces, so the engine can append it without sampling: the rest of the
/// opening tag, the closing phrase once the thinking budget is spent, then the start of the
/// JSON; each forced token is one the mask allows at its place.
#[test]
fn forced_tokens_follow_the_phases_and_the_mask() {
    use aha_engine::{Grammar, LogitsProcessor, Reasoning};
    let Some(dir) = asset_dir() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let constrainer = aha_engine::Constrainer::new(&tok).unwrap();
    let reasoning = Reasoning::think(&tok, Some(4), false).unwrap();
    let c = constrainer
        .compile(
            Some(&Grammar::JsonSchema(schema())),
            Some(reasoning.clone()),
        )
        .unwrap();
    let mut p = c.processor();
    let vocab = tok.vocab_size();
    let allowed = |p: &mut Box<dyn LogitsProcessor>, out: &[u32]| -> Vec<u32> {
        let mut logits = vec![0f32; vocab];
        p.process(0, out, &mut logits);
        (0..vocab as u32)
            .filter(|&t| logits[t as usize].is_finite())
            .collect()
    };
    let mut out: Vec<u32> = Vec::new();
    let append = |p: &mut Box<dyn LogitsProcessor>, out: &mut Vec<u32>, forced: &[u32]| {
        for &t in forced {
            assert!(allowed(p, out).contains(&t), "{t} forced but masked out");
            out.push(t);
        }
    };
    // The mask forces the first token of `<think>\n`, `forced` the rest.
    assert_eq!(allowed(&mut p, &out), vec![reasoning.open[0]]);
    out.push(reasoning.open[0]);
    let rest = p.forced(0, &out);
    assert_eq!(rest, reasoning.open[1..]);
    append(&mut p, &mut out, &rest);
    // Free thinking forces nothing, until the budget of 4 tokens is spent.
    for t in tok
        .encode("one two three four", false)
        .unwrap()
        .into_iter()
        .take(4)
    {
        assert!(p.forced(0, &out).is_empty());
        assert!(allowed(&mut p, &out).len() > 1000, "thinking is free");
        out.push(t);
    }
    let closing = p.forced(0, &out);
    assert_eq!(closing, reasoning.forced);
    append(&mut p, &mut out, &closing);
    // The answer opens with `{`, but three tokens start so (`{`, `{"`, `{` and a line
    // break): nothing is forced until the model picks one; after `{"` the first key is.
    assert!(p.forced(0, &out).is_empty());
    let opening = allowed(&mut p, &out);
    assert!(opening.len() > 1);
    for &t in &opening {
        assert!(tok.decode(&[t], false).unwrap().starts_with('{'));
    }
    out.extend(tok.encode("{\"", false).unwrap());
    let key = p.forced(0, &out);
    assert_eq!(tok.decode(&key, false).unwrap(), "answer");
    append(&mut p, &mut out, &key);
}
