//! `aha chat`: a multi-turn conversation in the terminal through the model's chat
//! template, streamed, with the reasoning shown dimmed apart from the answer.

use super::common;
use aha_engine::{generate, GenerateOptions, SamplingParams};
use aha_text::{ChatMessage, StreamingReasoningParser};
use anyhow::Result;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

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
    #[arg(long, default_value_t = 0.6)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    constraint: common::ConstraintArgs,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub fn run(args: ChatArgs) -> Result<()> {
    let loaded = common::load_with(&args.model, args.adapter.as_deref(), false)?;
    let tok = loaded.tokenizer()?;
    let template = common::chat_template(&args.model)?;
    let color = std::io::stdout().is_terminal();
    let (dim, reset) = if color { (DIM, RESET) } else { ("", "") };
    let mut history: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::system(s.as_str()))
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
                history.retain(|m| m.role == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(line));
        let prompt = template.render(&history, true)?;
        let ids = tok.encode(&prompt, false)?;
        let mut parser = StreamingReasoningParser::for_prompt(&prompt);
        let constraint = args
            .constraint
            .build(tok, aha_text::prompt_opens_reasoning(&prompt))?;
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
        history.push(ChatMessage::assistant(completion.text.unwrap_or_default()));
        turn += 1;
    }
    Ok(())
}
