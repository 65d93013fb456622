//! `aha verify` (filled in by the rewards work).
use clap::Args;

#[derive(Args)]
pub struct VerifyArgs {}

pub fn run(_args: VerifyArgs) -> anyhow::Result<()> {
    anyhow::bail!("aha verify is not built yet")
}
