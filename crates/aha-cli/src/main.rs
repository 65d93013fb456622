//! `aha`: load, run, train, verify and evaluate DeepSeek-R1-family models.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "aha", version, about = "The DeepSeek-R1 system: run, train, verify and evaluate reasoning models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check model answers against gold answers with aha's rule-based math verifier.
    Verify(cmd::verify::VerifyArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => cmd::verify::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
