//! `herald listen` (to be written).
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct ListenArgs {}
pub async fn listen(_args: ListenArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not written yet") }
