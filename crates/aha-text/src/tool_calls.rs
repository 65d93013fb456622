//! Tool calls as chat templates write them, parsed back into OpenAI's shape.
//!
//! Two formats, recognised from the chat template's source:
//! * DeepSeek (R1, V3): `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`
//!   then the arguments in a ```json fence, `<｜tool▁call▁end｜>`, more calls, and
//!   `<｜tool▁calls▁end｜>`;
//! * Hermes (Qwen2/2.5 and many others): `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>`,
//!   repeated.

use serde::{Deserialize, Serialize};

/// One call: the function's name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    DeepSeek,
    Hermes,
}

const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
const DS_SEP: &str = "<｜tool▁sep｜>";
const HERMES_BEGIN: &str = "<tool_call>";
const HERMES_END: &str = "</tool_call>";

/// A model's output split into its text and its tool calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedToolCalls {
    /// The text before the first call.
    pub content: String,
    pub calls: Vec<ToolCall>,
}

impl ToolCallFormat {
    /// The format a chat template renders tool calls in, if it renders them at all.
    pub fn detect(template_source: &str) -> Option<Self> {
        if template_source.contains(DS_CALLS_BEGIN) || template_source.contains(DS_CALL_BEGIN) {
            Some(ToolCallFormat::DeepSeek)
        } else if template_source.contains(HERMES_BEGIN) {
            Some(ToolCallFormat::Hermes)
        } else {
            None
        }
    }

    /// Where the first call starts in `text`, if one does.
    pub fn find_start(self, text: &str) -> Option<usize> {
        match self {
            ToolCallFormat::DeepSeek => [DS_CALLS_BEGIN, DS_CALL_BEGIN]
                .iter()
                .filter_map(|m| text.find(m))
                .min(),
            ToolCallFormat::Hermes => text.find(HERMES_BEGIN),
        }
    }

    /// Split `text` into the content before the first call and the calls. A call whose
    /// arguments are not a JSON object, or that is cut off, is not a call: the text from it
    /// on stays content, so that nothing the model wrote is lost.
    pub fn parse(self, text: &str) -> ParsedToolCalls {
        let Some(start) = self.find_start(text) else {
            return ParsedToolCalls {
                content: text.to_string(),
                calls: Vec::new(),
            };
        };
        let calls = match self {
            ToolCallFormat::DeepSeek => deepseek_calls(&text[start..]),
            ToolCallFormat::Hermes => hermes_calls(&text[start..]),
        };
        match calls {
            Some(calls) if !calls.is_empty() => ParsedToolCalls {
                content: text[..start].trim_end().to_string(),
                calls,
            },
            _ => ParsedToolCalls {
                content: text.to_string(),
                calls: Vec::new(),
            },
        }
    }
}

/// Arguments as compact JSON text, if they are a JSON object.
fn object_text(v: &serde_json::Value) -> Option<String> {
    v.is_object().then(|| v.to_string())
}

fn deepseek_calls(mut s: &str) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    while let Some(i) = s.find(DS_CALL_BEGIN) {
        let rest = &s[i + DS_CALL_BEGIN.len()..];
        let end = rest.find(DS_CALL_END)?;
        let body = &rest[..end];
        // `function<｜tool▁sep｜>NAME\n```json\nARGS\n````
        let (_kind, after) = body.split_once(DS_SEP)?;
        let (name, args) = after.split_once('\n').unwrap_or((after, ""));
        let args = args.trim();
        let args = args
            .strip_prefix("```json")
            .or_else(|| args.strip_prefix("```"))
            .unwrap_or(args);
        let args = args.strip_suffix("```").unwrap_or(args).trim();
        let value: serde_json::Value = serde_json::from_str(args).ok()?;
        let name = name.trim();
        if name.is_empty() || !value.is_object() {
            return None;
        }
        // The template writes the arguments text as given: keep it as written.
        calls.push(ToolCall {
            name: name.to_string(),
            arguments: args.to_string(),
        });
        s = &rest[end + DS_CALL_END.len()..];
    }
    Some(calls)
}

fn hermes_calls(mut s: &str) -> Option<Vec<ToolCall>> {
    #[derive(Deserialize)]
    struct Call {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    }
    let mut calls = Vec::new();
    while let Some(i) = s.find(HERMES_BEGIN) {
        let rest = &s[i + HERMES_BEGIN.len()..];
        let end = rest.find(HERMES_END)?;
        let call: Call = serde_json::from_str(rest[..end].trim()).ok()?;
        let arguments = match &call.arguments {
            serde_json::Value::Null => "{}".to_string(),
            // Some models write the arguments as a JSON string.
            serde_json::Value::String(t) => {
                object_text(&serde_json::from_str::<serde_json::Value>(t).ok()?)?
            }
            v => object_text(v)?,
        };
        if call.name.is_empty() {
            return None;
        }
        calls.push(ToolCall {
            name: call.name,
            arguments,
        });
        s = &rest[end + HERMES_END.len()..];
    }
    Some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepseek_calls_with_and_without_fences() {
        let text = "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\": 1, \"b\": 2}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        let p = ToolCallFormat::DeepSeek.parse(text);
        assert_eq!(p.content, "Let me check.");
        assert_eq!(
            p.calls,
            vec![
                ToolCall {
                    name: "add".into(),
                    arguments: r#"{"a": 1, "b": 2}"#.into()
                },
                ToolCall {
                    name: "now".into(),
                    arguments: "{}".into()
                }
            ]
        );
    }

    #[test]
    fn broken_or_cut_off_calls_stay_text() {
        for text in [
            "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\": 1",
            "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n[1, 2]<｜tool▁call▁end｜>",
            "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>\n{}<｜tool▁call▁end｜>",
        ] {
            let p = ToolCallFormat::DeepSeek.parse(text);
            assert!(p.calls.is_empty(), "{text}");
            assert_eq!(p.content, text);
        }
        let p = ToolCallFormat::Hermes.parse("a <tool_call>{\"name\": \"f\"");
        assert!(p.calls.is_empty());
        assert_eq!(ToolCallFormat::Hermes.parse("no calls").content, "no calls");
    }

    #[test]
    fn hermes_calls_with_object_or_string_arguments() {
        let text = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"mul\", \"arguments\": \"{\\\"b\\\": 2}\"}\n</tool_call>";
        let p = ToolCallFormat::Hermes.parse(text);
        assert_eq!(p.content, "");
        assert_eq!(
            p.calls
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str()))
                .collect::<Vec<_>>(),
            vec![("add", r#"{"a":1}"#), ("mul", r#"{"b":2}"#)]
        );
    }

    /// A Hermes-style template (as Qwen2.5's writes calls) renders OpenAI-shaped calls that
    /// parse back to the same names and arguments.
    #[test]
    fn hermes_template_round_trip() {
        let src = "{% for m in messages %}<|im_start|>{{ m.role }}\n\
                   {% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n\
                   {\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments }}}\n\
                   </tool_call>\n{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}";
        let t = crate::ChatTemplate::new(src, Default::default()).unwrap();
        let f = t.tool_call_format().unwrap();
        assert_eq!(f, ToolCallFormat::Hermes);
        let args = [r#"{"a": 2, "b": [1, 2]}"#, r#"{"q": "größte \"Zahl\""}"#];
        let msgs = vec![
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "add", "arguments": args[0]}},
                {"id": "c1", "type": "function", "function": {"name": "find", "arguments": args[1]}},
            ]}),
        ];
        let text = t
            .render_with(&msgs, false, &serde_json::Map::new())
            .unwrap();
        let p = f.parse(text.trim_start_matches("<|im_start|>assistant\n"));
        let got: Vec<(String, serde_json::Value)> = p
            .calls
            .iter()
            .map(|c| (c.name.clone(), serde_json::from_str(&c.arguments).unwrap()))
            .collect();
        let want: Vec<(String, serde_json::Value)> = ["add", "find"]
            .iter()
            .zip(args)
            .map(|(n, a)| (n.to_string(), serde_json::from_str(a).unwrap()))
            .collect();
        assert_eq!(got, want, "{text}");
        assert_eq!(p.content, "");
    }

    #[test]
    fn formats_are_detected_from_templates() {
        assert_eq!(
            ToolCallFormat::detect("{{'<｜tool▁calls▁begin｜>'}}"),
            Some(ToolCallFormat::DeepSeek)
        );
        assert_eq!(
            ToolCallFormat::detect("{{- '<tool_call>\\n' }}"),
            Some(ToolCallFormat::Hermes)
        );
        assert_eq!(ToolCallFormat::detect("{{ messages }}"), None);
    }
}
