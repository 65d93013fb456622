//! `aha chat`: a multi-turn conversation in the terminal through the model's chat
//! template, streamed, with the reasoning shown dimmed apart from the answer; with
//! `--tools`, the model may call tools, whose results go back into the conversation.

use super::common;
use aha_engine::{generate, GenerateOptions, Grammar, SamplingParams};
use aha_text::{ChatTemplate, StreamingReasoningParser, ToolCall, ToolCallFormat};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ChatArgs {
    /// Model directory with tokenizer.json and a chat template, or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter directory to chat with (a .gguf model is then dequantized to f32).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// An optional system message.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// DeepSeek recommends 0.6 for R1 models.
    #[arg(long, default_value_t = 0.6, value_parser = super::common::range::temperature)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95, value_parser = super::common::range::top_p)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tools the model may call: a JSON file with OpenAI's `tools` list
    /// (`[{"type": "function", "function": {"name", "description", "parameters"}}]`). A tool
    /// whose only parameter is `expression` is a calculator that aha evaluates itself (exact
    /// arithmetic); for any other tool you type its result. See examples/tools/calculator.json.
    #[arg(long, value_name = "FILE")]
    tools: Option<PathBuf>,
    /// auto (the model decides), none, required (at least one call), or a tool's name (that
    /// call); a forced choice holds the first answer of each turn to valid calls.
    #[arg(long, default_value = "auto", requires = "tools")]
    tool_choice: String,
    #[command(flatten)]
    constraint: common::ConstraintArgs,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";
/// Model answers per user message: each tool round is one more.
const MAX_TOOL_ROUNDS: usize = 8;

/// The tools offered, and how the first answer of a turn is forced.
struct Tools {
    list: Value,
    format: ToolCallFormat,
    forced: Option<Grammar>,
}

/// Read and check the tools file: JSON, a list of functions, and (unless the choice is
/// "none") a template that writes calls and each function's `parameters` a schema the
/// constraint compiler takes, as a forced call of it would compile.
fn read_tools(
    path: &Path,
    choice: &str,
    template: &ChatTemplate,
    tok: &aha_text::Tokenizer,
) -> Result<Option<Tools>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = match v {
        Value::Object(mut o) if o.contains_key("tools") => o.remove("tools").unwrap_or_default(),
        v => v,
    };
    let tools = list
        .as_array()
        .filter(|a| !a.is_empty())
        .with_context(|| format!("{}: expected a non-empty list of tools", path.display()))?;
    let mut schemas = Vec::with_capacity(tools.len());
    for t in tools {
        let name = t["function"]["name"].as_str().with_context(|| {
            format!(
                "{}: each tool is {{\"type\": \"function\", \"function\": {{\"name\": ..}}}}",
                path.display()
            )
        })?;
        let params = &t["function"]["parameters"];
        let schema = if params.is_object() {
            params.clone()
        } else {
            json!({"type": "object"})
        };
        schemas.push((name.to_string(), schema));
    }
    if choice == "none" {
        return Ok(None);
    }
    let format = template.tool_call_format().context(
        "this model's chat template does not write tool calls, so it cannot use --tools",
    )?;
    let constrainer = aha_engine::Constrainer::new(tok)?;
    for (name, schema) in &schemas {
        let call = Grammar::ToolCalls {
            format,
            tools: vec![(name.clone(), schema.clone())],
            one: true,
        };
        constrainer.compile(Some(&call), None).with_context(|| {
            format!(
                "{}: tool {name:?}: its name or `parameters` schema cannot constrain a call",
                path.display()
            )
        })?;
    }
    let forced = match choice {
        "auto" => None,
        "required" => Some((schemas, false)),
        name => {
            let one = schemas
                .into_iter()
                .find(|(n, _)| n == name)
                .with_context(|| format!("--tool-choice {name}: no such tool in the file"))?;
            Some((vec![one], true))
        }
    };
    Ok(Some(Tools {
        list,
        format,
        forced: forced.map(|(tools, one)| Grammar::ToolCalls { format, tools, one }),
    }))
}

/// Run one call: a calculator (a tool whose only parameter is `expression`) is evaluated
/// here; for any other tool the user types the result.
fn run_tool(call: &ToolCall, tools: &Value) -> Result<String> {
    let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
    let spec = tools.as_array().and_then(|a| {
        a.iter()
            .find(|t| t["function"]["name"] == call.name.as_str())
    });
    let params = spec.and_then(|t| t["function"]["parameters"]["properties"].as_object());
    let is_calculator = params.is_some_and(|p| p.len() == 1 && p.contains_key("expression"));
    if is_calculator {
        let expr = args["expression"].as_str().unwrap_or_default();
        return Ok(match aha_reward::evaluate(expr) {
            Some(v) => v,
            None => format!("error: cannot evaluate {expr:?}"),
        });
    }
    eprint!("result of {}({})> ", call.name, call.arguments);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub fn run(args: ChatArgs) -> Result<()> {
    // The template and the tools first: a mistake in them is said before a long model load.
    let template = common::chat_template(&args.model)?;
    let tools = match &args.tools {
        Some(p) => read_tools(
            p,
            &args.tool_choice,
            &template,
            &common::tokenizer(&args.model)?,
        )?,
        None => None,
    };
    let loaded = common::load_with(&args.model, args.adapter.as_deref(), false)?;
    let tok = loaded.tokenizer()?;
    let color = std::io::stdout().is_terminal();
    let (dim, reset) = if color { (DIM, RESET) } else { ("", "") };
    let mut history: Vec<Value> = args
        .system
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect();
    eprintln!("aha chat: type a message; /reset clears the conversation, /exit or Ctrl-D quits.");
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut turn = 0u64;
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.retain(|m| m["role"] == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": line}));
        for round in 0..MAX_TOOL_ROUNDS {
            let prompt =
                template.render_with_tools(&history, tools.as_ref().map(|t| &t.list), true)?;
            let ids = tok.encode(&prompt, false)?;
            let opened = aha_text::prompt_opens_reasoning(&prompt);
            let mut parser = StreamingReasoningParser::for_prompt(&prompt);
            // A forced tool choice holds the turn's first answer only: after the results
            // the model answers in words.
            let forced = tools
                .as_ref()
                .and_then(|t| t.forced.clone())
                .filter(|_| round == 0);
            let constraint = match forced {
                Some(g) => args.constraint.build_for(tok, opened, Some(g))?,
                None => args.constraint.build(tok, opened)?,
            };
            let opts = GenerateOptions {
                sampling: SamplingParams {
                    temperature: args.temperature,
                    top_p: args.top_p,
                    ..Default::default()
                },
                max_tokens: args.max_tokens,
                seed: args.seed.wrapping_add(turn),
                stop_token_ids: loaded.eos_ids(),
                constraint,
                ..Default::default()
            };
            let mut shown_reasoning = false;
            let mut print_delta = |d: aha_text::ReasoningDelta, out: &mut std::io::Stdout| {
                if !d.reasoning.is_empty() {
                    if !shown_reasoning {
                        let _ = write!(out, "{dim}[thinking] ");
                        shown_reasoning = true;
                    }
                    let _ = write!(out, "{dim}{}{reset}", d.reasoning);
                }
                if !d.content.is_empty() {
                    let _ = write!(out, "{reset}{}", d.content);
                }
                let _ = out.flush();
            };
            let completion = generate(&loaded.model, Some(tok), &[ids], &opts, |e| {
                print_delta(parser.push(e.text), &mut out)
            })?
            .remove(0);
            print_delta(parser.finish(), &mut out);
            writeln!(out, "{reset}")?;
            turn += 1;
            let text = completion.text.unwrap_or_default();
            let split = aha_text::split_reasoning(&text, opened);
            let answer = tools
                .as_ref()
                .and_then(|t| t.format.answer_calls(&split.reasoning, &split.content));
            let (Some(answer), Some(tools)) = (answer, &tools) else {
                history.push(json!({"role": "assistant", "content": text}));
                break;
            };
            let ids: Vec<String> = (0..answer.calls.len())
                .map(|k| format!("call_{turn}_{k}"))
                .collect();
            let calls: Vec<Value> = answer
                .calls
                .iter()
                .zip(&ids)
                .map(|(c, id)| {
                    json!({"id": id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            history
                .push(json!({"role": "assistant", "content": answer.content, "tool_calls": calls}));
            for (call, id) in answer.calls.iter().zip(&ids) {
                let result = run_tool(call, &tools.list)?;
                // On one line, however the model spaced its JSON.
                let shown = serde_json::from_str::<Value>(&call.arguments)
                    .map_or_else(|_| call.arguments.clone(), |v| v.to_string());
                writeln!(out, "[tool] {}({shown}) -> {result}", call.name)?;
                history.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
            }
            if round + 1 == MAX_TOOL_ROUNDS {
                eprintln!("(stopped after {MAX_TOOL_ROUNDS} tool rounds)");
            }
        }
    }
    Ok(())
}
