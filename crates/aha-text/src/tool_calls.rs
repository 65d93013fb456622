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
const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
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

/// A finished answer's tool calls, with the reasoning they ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCalls {
    pub reasoning: String,
    /// The text before the first call.
    pub content: String,
    pub calls: Vec<ToolCall>,
}

impl ToolCallFormat {
    /// The tool calls of a finished answer, given its reasoning and content as the
    /// reasoning parser split them. A call written before `</think>` ends the reasoning
    /// there; a mere mention of the call marker does not. None when there are no calls.
    pub fn answer_calls(self, reasoning: &str, content: &str) -> Option<AnswerCalls> {
        let (reasoning, text) = match self.find_start(reasoning) {
            Some(i) if !self.parse(&reasoning[i..]).calls.is_empty() => (
                reasoning[..i].to_string(),
                format!("{}{content}", &reasoning[i..]),
            ),
            _ => (reasoning.to_string(), content.to_string()),
        };
        let p = self.parse(&text);
        (!p.calls.is_empty()).then_some(AnswerCalls {
            reasoning,
            content: p.content,
            calls: p.calls,
        })
    }

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

    /// A system prompt that lists `tools` (OpenAI's `[{"type": "function", "function": ..}]`)
    /// and shows the call syntax, for templates that do not show tools themselves.
    pub fn system_prompt(self, tools: &serde_json::Value) -> String {
        let syntax = match self {
            ToolCallFormat::DeepSeek => format!(
                "{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}NAME\n```json\nARGUMENTS\n```{DS_CALL_END}{DS_CALLS_END}"
            ),
            ToolCallFormat::Hermes => {
                format!("{HERMES_BEGIN}\n{{\"name\": NAME, \"arguments\": ARGUMENTS}}\n{HERMES_END}")
            }
        };
        let list = serde_json::to_string_pretty(tools).unwrap_or_default();
        format!(
            "You may call the functions below. To call one, write the call (ARGUMENTS is a JSON \
             object) after your reasoning, exactly as\n{syntax}\nand stop; the result comes back \
             in the next message.\n\nFunctions:\n{list}"
        )
    }

    /// A Lark grammar (llguidance's dialect) for the calls a forced `tool_choice` allows:
    /// `tools` as (name, JSON Schema text of the arguments); one call (`one`, a named
    /// function) or one or more (`"required"`). The schema texts go in as `%json` rules.
    pub fn lark(self, tools: &[(String, String)], one: bool) -> String {
        let lit = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut g = String::new();
        let calls = if one { "call" } else { "call+" };
        let alternatives: Vec<String> = (0..tools.len()).map(|i| format!("fn_{i}")).collect();
        let alternatives = alternatives.join(" | ");
        match self {
            ToolCallFormat::DeepSeek => {
                g += &format!(
                    "start: {} {calls} {}\n",
                    lit(DS_CALLS_BEGIN),
                    lit(DS_CALLS_END)
                );
                g += &format!(
                    "call: {} ({alternatives}) {}\n",
                    lit(&format!("{DS_CALL_BEGIN}function{DS_SEP}")),
                    lit(DS_CALL_END)
                );
                for (i, (name, _)) in tools.iter().enumerate() {
                    g += &format!(
                        "fn_{i}: {} args_{i} {}\n",
                        lit(&format!("{name}\n```json\n")),
                        lit("\n```")
                    );
                }
            }
            ToolCallFormat::Hermes => {
                let calls = if one { "call" } else { "call (\"\\n\" call)*" };
                g += &format!("start: {calls}\n");
                g += &format!(
                    "call: {} ({alternatives}) {}\n",
                    lit(&format!("{HERMES_BEGIN}\n")),
                    lit(&format!("\n{HERMES_END}"))
                );
                for (i, (name, _)) in tools.iter().enumerate() {
                    let head = format!("{{\"name\": {}, \"arguments\": ", lit(name));
                    g += &format!("fn_{i}: {} args_{i} \"}}\"\n", lit(&head));
                }
            }
        }
        for (i, (_, schema)) in tools.iter().enumerate() {
            g += &format!("args_{i}: %json {schema}\n");
        }
        g
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

    /// Split `text` into its content (the text before the first call and any after the last)
    /// and the calls. A call whose arguments are not a JSON object, or that is cut off, is not
    /// a call: the text from it on stays content, so that nothing the model wrote is lost.
    pub fn parse(self, text: &str) -> ParsedToolCalls {
        let whole = || ParsedToolCalls {
            content: text.to_string(),
            calls: Vec::new(),
        };
        let Some(start) = self.find_start(text) else {
            return whole();
        };
        let parsed = match self {
            ToolCallFormat::DeepSeek => deepseek_calls(&text[start..]),
            ToolCallFormat::Hermes => hermes_calls(&text[start..]),
        };
        match parsed {
            Some((calls, used)) if !calls.is_empty() => {
                let before = text[..start].trim_end();
                let after = text[start + used..].trim();
                let content = match (before.is_empty(), after.is_empty()) {
                    (_, true) => before.to_string(),
                    (true, false) => after.to_string(),
                    (false, false) => format!("{before}\n{after}"),
                };
                ParsedToolCalls { content, calls }
            }
            _ => whole(),
        }
    }
}

/// Arguments as compact JSON text, if they are a JSON object.
fn object_text(v: &serde_json::Value) -> Option<String> {
    v.is_object().then(|| v.to_string())
}

/// The calls at the start of `text` and the bytes they take (with the closing marker).
fn deepseek_calls(text: &str) -> Option<(Vec<ToolCall>, usize)> {
    let mut calls = Vec::new();
    let mut s = text;
    while let Some(i) = s.find(DS_CALL_BEGIN) {
        // Only calls in the run: text after the last one is not a call.
        if !s[..i]
            .trim()
            .trim_start_matches(DS_CALLS_BEGIN)
            .trim()
            .is_empty()
        {
            break;
        }
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
    let tail = s.trim_start();
    let s = tail.strip_prefix(DS_CALLS_END).unwrap_or(s);
    Some((calls, text.len() - s.len()))
}

fn hermes_calls(text: &str) -> Option<(Vec<ToolCall>, usize)> {
    #[derive(Deserialize)]
    struct Call {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    }
    let mut calls = Vec::new();
    let mut s = text;
    while let Some(i) = s.find(HERMES_BEGIN) {
        if !s[..i].trim().is_empty() {
            break;
        }
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
    Some((calls, text.len() - s.len()))
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
    fn text_after_the_calls_stays_content() {
        let call = "<tool_call>\n{\"name\": \"add\", \"arguments\": {}}\n</tool_call>";
        let p = ToolCallFormat::Hermes.parse(&format!("Hi.{call}\nThen I multiply."));
        assert_eq!(p.content, "Hi.\nThen I multiply.");
        assert_eq!(p.calls.len(), 1);
        let ds = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n{}<｜tool▁call▁end｜><｜tool▁calls▁end｜> done";
        let p = ToolCallFormat::DeepSeek.parse(ds);
        assert_eq!((p.content.as_str(), p.calls.len()), ("done", 1));
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
        // What the model writes: the turn's body, up to its end-of-turn token.
        let body = text.trim_start_matches("<|im_start|>assistant\n");
        let body = body.trim_end().trim_end_matches("<|im_end|>");
        let p = f.parse(body);
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
