//! `herald keygen`, `herald sign`, `herald verify` (to be written).
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {}
#[derive(Debug, clap::Args)]
pub struct SignArgs {}
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}
pub fn keygen(_args: KeygenArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not written yet") }
pub fn sign(_args: SignArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not written yet") }
pub async fn verify(_args: VerifyArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not written yet") }
