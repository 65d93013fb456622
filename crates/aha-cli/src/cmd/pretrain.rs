//! `aha pretrain` (in progress).
use clap::Args;

#[derive(Args)]
pub struct PretrainArgs {}

pub fn run(_args: PretrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("aha pretrain is not built yet")
}
