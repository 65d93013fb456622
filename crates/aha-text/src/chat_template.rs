//! HF-compatible chat templates rendered with minijinja.

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::config::{SpecialTokens, TokenizerConfig};
use crate::error::{Result, TextError};
use crate::tool_calls::ToolCallFormat;

const TEMPLATE_NAME: &str = "chat_template";

/// One chat turn. Templates see it as `{"role": ..., "content": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template plus the special tokens it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    source_name: String,
    special: SpecialTokens,
    tool_calls: Option<ToolCallFormat>,
    /// Whether the template reads the `tools` variable (DeepSeek-R1's does not).
    reads_tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_name", &self.source_name)
            .field("special", &self.special)
            .finish()
    }
}

/// Template instructions one render may execute: far more than any real chat template needs
/// for a long conversation (a few seconds of rendering), far less than a hang.
const TEMPLATE_FUEL: u64 = 20_000_000;

impl ChatTemplate {
    /// Load the template of a model directory: `chat_template.jinja` if
    /// present (newer HF layout, it takes precedence), else `chat_template`
    /// from `tokenizer_config.json`. Special tokens come from the latter.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let (cfg_path, cfg) = TokenizerConfig::load(dir)?;
        let cfg = cfg.unwrap_or_default();
        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            let source = std::fs::read_to_string(&jinja_path).map_err(|source| TextError::Io {
                path: jinja_path.clone(),
                source,
            })?;
            return Self::compile(source, jinja_path.display().to_string(), cfg.special);
        }
        let source = match cfg.chat_template {
            None => {
                return Err(TextError::MissingChatTemplate {
                    path: dir.to_path_buf(),
                })
            }
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Array(items)) => {
                pick_default(&items).map_err(|message| TextError::InvalidConfig {
                    path: cfg_path.clone(),
                    message,
                })?
            }
            Some(other) => {
                return Err(TextError::InvalidConfig {
                    path: cfg_path,
                    message: format!(
                        "`chat_template` must be a string or a list of {{name, template}}, got {}",
                        json_kind(&other)
                    ),
                })
            }
        };
        Self::compile(source, cfg_path.display().to_string(), cfg.special)
    }

    /// Compile a template given as a string.
    pub fn new(source: impl Into<String>, special: SpecialTokens) -> Result<Self> {
        Self::compile(source.into(), "<inline template>".to_string(), special)
    }

    fn compile(source: String, source_name: String, special: SpecialTokens) -> Result<Self> {
        let tool_calls = ToolCallFormat::detect(&source);
        let reads_tools = source.contains("tools");
        let mut env = Environment::new();
        // Same whitespace handling as transformers' jinja environment.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Python string/dict methods (`.strip()`, `.split()`, `.items()`...).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_function("strftime_now", strftime_now);
        // Templates come with model files (GGUF, tokenizer_config.json): bound the work one
        // render may do, so that a hostile template errors instead of hanging.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| to_text_error(&source_name, &e))?;
        Ok(Self {
            env,
            source_name,
            special,
            tool_calls,
            reads_tools,
        })
    }

    /// Whether the template shows the model the `tools` it is given.
    pub fn reads_tools(&self) -> bool {
        self.reads_tools
    }

    /// How this template writes an assistant's tool calls, if it writes them.
    pub fn tool_call_format(&self) -> Option<ToolCallFormat> {
        self.tool_calls
    }

    /// Render OpenAI-shaped messages (JSON objects, possibly with `tool_calls` or a
    /// `tool_call_id`) offering `tools` (`[{"type": "function", "function": ..}]`): through
    /// the template's own `tools` variable when it reads one, else (DeepSeek-R1's template
    /// never shows the model its tools) as a first system turn that lists them with the
    /// template's call syntax. Tools with a template that writes no calls are an error.
    pub fn render_with_tools(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut extra = serde_json::Map::new();
        let Some(tools) = tools else {
            return self.render_with(messages, add_generation_prompt, &extra);
        };
        let format = self.tool_calls.ok_or_else(|| TextError::TemplateRender {
            source_name: self.source_name.clone(),
            line: None,
            message: "tools given, but this template does not write tool calls".into(),
        })?;
        if self.reads_tools {
            extra.insert("tools".into(), tools.clone());
            return self.render_with(messages, add_generation_prompt, &extra);
        }
        let mut with_system = Vec::with_capacity(messages.len() + 1);
        with_system
            .push(serde_json::json!({"role": "system", "content": format.system_prompt(tools)}));
        with_system.extend(messages.iter().cloned());
        self.render_with(&with_system, add_generation_prompt, &extra)
    }

    /// Render `messages`, optionally ending with the assistant-turn opener.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Like [`ChatTemplate::render`] but with arbitrary message objects
    /// (e.g. carrying `tool_calls`) and extra template variables (`tools`,
    /// `enable_thinking`, ...) that override the defaults.
    pub fn render_with<M: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| to_text_error(&self.source_name, &e))?;
        let tok = |t: &Option<String>| t.as_deref().map(Value::from).unwrap_or(Value::from(()));
        // transformers passes tools/documents as None; templates test
        // `tools is not none`, which is true for an undefined value here.
        let ctx = context! {
            ..Value::from_serialize(extra),
            ..context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => tok(&self.special.bos),
                eos_token => tok(&self.special.eos),
                pad_token => tok(&self.special.pad),
                unk_token => tok(&self.special.unk),
                tools => Value::from(()),
                documents => Value::from(()),
            }
        };
        tmpl.render(ctx)
            .map_err(|e| to_text_error(&self.source_name, &e))
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }
}

fn pick_default(items: &[serde_json::Value]) -> std::result::Result<String, String> {
    let mut names = Vec::new();
    for item in items {
        let name = item.get("name").and_then(|v| v.as_str());
        let template = item.get("template").and_then(|v| v.as_str());
        match (name, template) {
            (Some("default"), Some(t)) => return Ok(t.to_string()),
            (Some(n), Some(_)) => names.push(n.to_string()),
            _ => return Err(
                "`chat_template` list entries must be objects with string `name` and `template`"
                    .into(),
            ),
        }
    }
    Err(format!(
        "`chat_template` list has no template named \"default\" (found: {})",
        names.join(", ")
    ))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn to_text_error(source_name: &str, e: &JinjaError) -> TextError {
    let mut message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    // Errors raised inside filters/functions keep the cause in the chain.
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    let source_name = source_name.to_string();
    let line = e.line();
    if e.kind() == ErrorKind::SyntaxError {
        TextError::TemplateSyntax {
            source_name,
            line,
            message,
        }
    } else {
        TextError::TemplateRender {
            source_name,
            line,
            message,
        }
    }
}

/// `raise_exception(msg)`: templates use it to reject bad conversations.
fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("template raised an exception: {message}"),
    ))
}

/// `strftime_now(fmt)`: the current UTC date/time (transformers uses local
/// time; templates only use it for a "Today is ..." line). Supports the
/// common `%d %m %Y %y %b %B %H %M %S %%` directives.
fn strftime_now(format: String) -> std::result::Result<Value, JinjaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Value::from(format_utc(secs, &format)))
}

pub(crate) fn format_utc(unix_secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (unix_secs / 86_400) as i64;
    let tod = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = MONTHS[(month - 1) as usize];

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent, sort_keys=sort_keys)`, i.e. Python's `", "`/`": "`
/// separators and no HTML escaping (minijinja's built-in differs in both).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    // Accepted for compatibility; output is always non-ASCII-preserving.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_py_json(value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(Value::from(out))
}

// Walks the minijinja value directly (not via serde_json::Value, whose
// maps would reorder keys) so dicts keep insertion order like Python.
fn write_py_json(
    v: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_py_json(item, indent, sort_keys, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                // JSON keys are strings; Python also stringifies scalar keys.
                let k = key
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| key.to_string());
                out.push_str(&serde_json::Value::String(k).to_string());
                out.push_str(": ");
                write_py_json(&v.get_item(key)?, indent, sort_keys, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        _ => {
            let json = serde_json::to_string(v).map_err(|e| {
                JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "cannot serialize value to JSON",
                )
                .with_source(e)
            })?;
            out.push_str(&json);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{format_utc, ChatMessage, ChatTemplate, SpecialTokens};

    #[test]
    fn a_runaway_template_errors_instead_of_hanging() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            SpecialTokens::default(),
        )
        .unwrap();
        let start = std::time::Instant::now();
        let err = t.render(&[ChatMessage::user("hi")], true).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        assert!(start.elapsed().as_secs() < 30);
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0, "%Y-%m-%d %H:%M:%S"), "1970-01-01 00:00:00");
        // 2024-02-29 13:05:09 UTC (leap day).
        assert_eq!(
            format_utc(1_709_211_909, "%d %b %Y, %B %y %H:%M:%S %% %q"),
            "29 Feb 2024, February 24 13:05:09 % %q"
        );
        assert_eq!(format_utc(1_735_689_599, "%Y-%m-%d"), "2024-12-31");
    }
}
