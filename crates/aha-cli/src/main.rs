//! `aha`: load, run, train, verify and evaluate DeepSeek-R1-family models.

// Doc comments here are clap's --help text, where `<think>` and `<model>` read as written.
#![allow(rustdoc::invalid_html_tags)]

mod cmd;
mod plot;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

#[derive(Parser)]
#[command(
    name = "aha",
    version,
    about = "The DeepSeek-R1 system: run, train, verify and evaluate reasoning models"
)]
struct Cli {
    /// Worker threads for the numeric kernels, 1 to 1024 (default: all cores).
    #[arg(long, global = true, value_parser = cmd::common::range::threads)]
    threads: Option<usize>,
    /// Kernels for the weights a GGUF file keeps quantized: aha's own (Q4_0/Q4_1/Q5_x/Q8_0/
    /// K-quants; AVX-512 VNNI or AVX2, whichever the CPU has), aha's own with AVX2 at most, or
    /// candle's for every type (the baselines of the kernel benchmarks).
    #[arg(long, global = true, value_enum, default_value_t = cmd::common::QuantKernels::Aha)]
    quant_kernels: cmd::common::QuantKernels,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: R1-Zero end to end on a built-in task (pretrain a tiny base, GRPO, evaluate).
    Zero(cmd::zero::ZeroArgs),
    /// The whole R1 recipe on a built-in task: base, R1-Zero, cold start, reasoning RL,
    /// rejection sampling + SFT, R1, and distillation into a smaller student vs RL alone.
    Pipeline(cmd::pipeline::PipelineArgs),
    /// Generate completions for one or more prompts (batched).
    Generate(cmd::generate::GenerateArgs),
    /// Score a sequence: the log-probability of each token given the ones before it.
    Logprobs(cmd::logprobs::LogprobsArgs),
    /// Chat with a model in the terminal, its reasoning shown apart from the answer.
    Chat(cmd::chat::ChatArgs),
    /// Train a policy with GRPO on a dataset with rule-based rewards.
    Grpo(cmd::grpo::GrpoArgs),
    /// Supervised fine-tuning (full or LoRA) on chat, prompt/completion or GSM8K data.
    Sft(cmd::sft::SftArgs),
    /// Distil a teacher into a student sharing its tokenizer: SFT on the teacher's samples
    /// (sequence level) or matching its next-token distributions (logit level, JSD).
    Distill(cmd::distill::DistillArgs),
    /// Pretrain a tiny base model from scratch on the built-in tasks' corpus.
    Pretrain(cmd::pretrain::PretrainArgs),
    /// Write a Llama/Qwen2 model directory as a quantized GGUF file (q8_0, q4_k, f16, ...).
    Quantize(cmd::quantize::QuantizeArgs),
    /// Write a .gguf file (dequantized) or a model plus a LoRA adapter (merged) as an HF directory.
    Convert(cmd::convert::ConvertArgs),
    /// Measure throughput (JSON lines, for side-by-side benchmarks).
    Bench(cmd::bench::BenchArgs),
    /// Check model answers against gold answers with aha's rule-based math verifier.
    Verify(cmd::verify::VerifyArgs),
    /// Evaluate a model as the R1 paper does: k samples per problem, pass@1, cons@k, pass@k.
    Eval(cmd::eval::EvalArgs),
    /// Rejection sampling: k completions per prompt, scored and filtered (correct, readable).
    Sample(cmd::sample::SampleArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (continuous batching).
    Serve(cmd::serve::ServeArgs),
}

/// mimalloc, not glibc's malloc: a training step allocates and frees thousands of tensors,
/// on two worker threads at once when pretraining, where glibc's arenas (locks,
/// consolidation) slowed a tiny model's pretraining (`aha pretrain --steps 1000`: 0.95x the
/// time with this, docs/benchmarks.md of 2026-12-06).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v3): how long freed memory waits before
/// it goes back to the system, in ms; -1: never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory in the process instead of returning it to the system: a step's large
/// buffers (logits are hundreds of MB) would otherwise be faulted in and zeroed by the kernel
/// again on every step (with glibc's defaults over half of a GRPO step's wall time). The cost
/// is that the resident size stays at its peak.
///
/// `aha serve` does not: a server's resident size would stay at its busiest moment's (a
/// 10-minute soak under glibc saw it climb in steps as rarer, larger batches set new peaks).
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's options, read whenever it considers purging.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        keep_freed_memory();
    }
    if let Some(n) = cli.threads {
        // candle's kernels size their pools from this variable; set it before any runs.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    cmd::common::set_quant_kernels(cli.quant_kernels);
    let command = cli.command;
    let run = move || match command {
        Command::Zero(args) => cmd::zero::run(args),
        Command::Pipeline(args) => cmd::pipeline::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Logprobs(args) => cmd::logprobs::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Grpo(args) => cmd::grpo::run(args),
        Command::Sft(args) => cmd::sft::run(args),
        Command::Distill(args) => cmd::distill::run(args),
        Command::Pretrain(args) => cmd::pretrain::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Sample(args) => cmd::sample::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    // Run the command on one of rayon's threads, so that parallel kernels split work with
    // the thread that asks for them instead of handing it over and sleeping until it is done.
    let result = match rayon::ThreadPoolBuilder::new().stack_size(64 << 20).build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, joined by ": ", leaving out a cause its wrapper already ends
/// with (library errors name the path and the I/O error; the chain would say the latter
/// twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        // As the libraries' errors are: the path and the I/O error said, the latter the source.
        #[derive(Debug)]
        struct Wrapped {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "{}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "not there");
        let e = anyhow::Error::new(Wrapped {
            path: "/x".into(),
            source: io(),
        });
        assert_eq!(error_chain(&e), "/x: not there");
        let e = anyhow::Error::new(io()).context("reading /y");
        assert_eq!(error_chain(&e), "reading /y: not there");
        let e = e.context("loading the dataset");
        assert_eq!(
            error_chain(&e),
            "loading the dataset: reading /y: not there"
        );
    }

    #[test]
    fn purge_delay_is_the_option_we_set() {
        // SAFETY: reads and sets mimalloc options.
        unsafe {
            // mimalloc v3's default purge delay is 1000 ms: a wrong index reads another option.
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            }
            keep_freed_memory();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), -1);
        }
    }
}
