//! `aha grpo` (in progress).
use clap::Args;

#[derive(Args)]
pub struct GrpoArgs {}

pub fn run(_args: GrpoArgs) -> anyhow::Result<()> {
    anyhow::bail!("aha grpo is not built yet")
}
