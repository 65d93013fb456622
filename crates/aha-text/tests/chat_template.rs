//! Chat template behaviour with hand-written templates (expected outputs
//! recorded from transformers/jinja2 in the fixture) and bad inputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aha_text::{ChatMessage, ChatTemplate, SpecialTokens, TextError};
use serde_json::{json, Value};

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek_r1_text.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn temp_dir(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "aha-text-tmpl-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join(name), body).unwrap();
    }
    dir
}

fn msgs() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("sys"),
        ChatMessage::user("hi"),
        ChatMessage::assistant("yo"),
    ]
}

#[test]
fn hand_written_templates_match_jinja2() {
    let fx = fixture();
    let cases = fx["templates"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let tmpl = ChatTemplate::new(case["template"].as_str().unwrap(), SpecialTokens::default())
            .unwrap();
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let got = tmpl.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
        match (&case["text"], &case["error"]) {
            (Value::String(want), _) => assert_eq!(&got.unwrap(), want, "{name}"),
            (_, Value::String(err)) => {
                let e = got.expect_err(name);
                assert!(matches!(e, TextError::TemplateRender { .. }), "{e:?}");
                assert!(e.to_string().contains(err.as_str()), "{e}");
            }
            _ => panic!("bad fixture case {case}"),
        }
    }
}

#[test]
fn special_tokens_and_generation_prompt_are_visible() {
    let special = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..Default::default()
    };
    let t = ChatTemplate::new(
        "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}\
         {% if add_generation_prompt %}assistant:{% endif %}{{ pad_token is none }}",
        special,
    )
    .unwrap();
    let msgs = [ChatMessage::user("a")];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        "<s>user:a</s>assistant:True"
    );
    assert_eq!(t.render(&msgs, false).unwrap(), "<s>user:a</s>True");
}

#[test]
fn absent_optional_fields_and_extra_context() {
    // `tool_calls` absent on plain messages; present on a JSON message.
    let src = "{% for m in messages %}{% if 'tool_calls' in m %}{{ m.tool_calls[0].function.name }}\
               {% elif m.tool_calls is defined %}BAD{% else %}{{ m.content }}{% endif %};{% endfor %}\
               {% if tools is not none %}{{ tools|length }} tools{% endif %}{{ enable_thinking|default('x') }}";
    let t = ChatTemplate::new(src, SpecialTokens::default()).unwrap();
    assert_eq!(t.render(&msgs(), false).unwrap(), "sys;hi;yo;x");
    let with_tool = vec![
        json!({"role": "user", "content": "weather?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}),
    ];
    let mut extra = serde_json::Map::new();
    extra.insert("tools".into(), json!([{"name": "get_weather"}]));
    extra.insert("enable_thinking".into(), json!(false));
    assert_eq!(
        t.render_with(&with_tool, false, &extra).unwrap(),
        "weather?;get_weather;1 toolsFalse"
    );
}

#[test]
fn syntax_error_reports_line() {
    let src = "{% for m in messages %}\n{{ m.content }}\n{% if %}\n{% endfor %}";
    let e = ChatTemplate::new(src, SpecialTokens::default()).unwrap_err();
    match &e {
        TextError::TemplateSyntax { line, .. } => assert_eq!(*line, Some(3)),
        other => panic!("expected syntax error, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains("syntax error at line 3"), "{shown}");

    let e =
        ChatTemplate::new("{% for m in messages %}{{ m }}", SpecialTokens::default()).unwrap_err();
    assert!(matches!(e, TextError::TemplateSyntax { .. }), "{e:?}");
}

#[test]
fn render_errors_are_errors_not_panics() {
    for src in [
        "{{ messages|no_such_filter }}",
        "{{ messages[0].content.no_such_method() }}",
        "{{ undefined_thing.attr }}",
        "{{ messages[0].content|tojson(bogus=1) }}",
    ] {
        let t = ChatTemplate::new(src, SpecialTokens::default());
        let r = t.and_then(|t| t.render(&msgs(), true));
        assert!(r.is_err(), "{src} rendered: {r:?}");
    }
}

#[test]
fn from_dir_template_sources() {
    // Plain string.
    let dir = temp_dir(&[(
        "tokenizer_config.json",
        r#"{"chat_template": "A{{ messages|length }}"}"#,
    )]);
    assert_eq!(
        ChatTemplate::from_dir(&dir)
            .unwrap()
            .render(&msgs(), false)
            .unwrap(),
        "A3"
    );

    // List of named templates: pick "default".
    let dir = temp_dir(&[(
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
            "eos_token": {"content": "</s>", "lstrip": false}}"#,
    )]);
    let t = ChatTemplate::from_dir(&dir).unwrap();
    assert_eq!(t.render(&msgs(), false).unwrap(), "D");
    assert_eq!(t.special_tokens().eos.as_deref(), Some("</s>"));

    // chat_template.jinja takes precedence.
    let dir = temp_dir(&[
        ("tokenizer_config.json", r#"{"chat_template": "old"}"#),
        ("chat_template.jinja", "new\n"),
    ]);
    assert_eq!(
        ChatTemplate::from_dir(&dir)
            .unwrap()
            .render(&msgs(), false)
            .unwrap(),
        "new"
    );
}

#[test]
fn from_dir_bad_inputs() {
    let dir = temp_dir(&[(
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#,
    )]);
    let e = ChatTemplate::from_dir(&dir).unwrap_err();
    assert!(matches!(e, TextError::InvalidConfig { .. }));
    assert!(
        e.to_string()
            .contains("no template named \"default\" (found: tool_use)"),
        "{e}"
    );

    let dir = temp_dir(&[("tokenizer_config.json", r#"{"chat_template": 7}"#)]);
    let e = ChatTemplate::from_dir(&dir).unwrap_err();
    assert!(
        e.to_string().contains("tokenizer_config.json") && e.to_string().contains("a number"),
        "{e}"
    );

    let dir = temp_dir(&[("tokenizer_config.json", r#"{"bos_token": "<s>"}"#)]);
    assert!(matches!(
        ChatTemplate::from_dir(&dir),
        Err(TextError::MissingChatTemplate { .. })
    ));

    let dir = temp_dir(&[]);
    assert!(matches!(
        ChatTemplate::from_dir(&dir),
        Err(TextError::MissingChatTemplate { .. })
    ));

    let dir = temp_dir(&[("tokenizer_config.json", r#"{"chat_template": "x""#)]);
    let e = ChatTemplate::from_dir(&dir).unwrap_err();
    assert!(matches!(e, TextError::Json { .. }));
    assert!(
        e.to_string()
            .contains("tokenizer_config.json is not valid JSON"),
        "{e}"
    );

    let dir = temp_dir(&[(
        "tokenizer_config.json",
        r#"{"chat_template": "{% if x %}"}"#,
    )]);
    let e = ChatTemplate::from_dir(&dir).unwrap_err();
    assert!(matches!(e, TextError::TemplateSyntax { .. }));
    assert!(e.to_string().contains("tokenizer_config.json"), "{e}");
}

#[test]
fn tojson_options_and_strftime() {
    let t = ChatTemplate::new(
        "{{ {'b': 1, 'a': [], 'c': {}}|tojson }}|{{ {'b': 1, 'a': 'x'}|tojson(sort_keys=true) }}|\
         {{ [1, {'k': 'v'}]|tojson(indent=1) }}|{{ 'q\"<'|tojson }}|{{ strftime_now('%Y')|length }}",
        SpecialTokens::default(),
    )
    .unwrap();
    assert_eq!(
        t.render(&msgs(), false).unwrap(),
        "{\"b\": 1, \"a\": [], \"c\": {}}|{\"a\": \"x\", \"b\": 1}|[\n 1,\n {\n  \"k\": \"v\"\n }\n]|\"q\\\"<\"|4"
    );
}
