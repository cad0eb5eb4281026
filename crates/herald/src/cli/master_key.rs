//! `herald master-key generate|rotate`: the master key that seals signing
//! secrets (and Herald's own signing keys) at rest (see README, "Secrets
//! at rest", for the operator's steps).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::serve::ServeArgs;
use crate::domain::secret::MasterKey;

#[derive(Args)]
pub struct MasterKeyArgs {
    #[command(subcommand)]
    command: MasterKeyCommand,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
enum MasterKeyCommand {
    /// Print a new random master key (base64 of 32 bytes) and its id.
    Generate,
    /// Make HERALD_MASTER_KEY the key in force and seal every signing
    /// secret, and Herald's own signing keys, under it anew (keys it replaces go in
    /// HERALD_PREVIOUS_MASTER_KEYS). PostgreSQL: run it beside the running
    /// nodes, once each holds both keys. SQLite: stop Herald first; without
    /// HERALD_MASTER_KEY a new key replaces `<data-dir>/master.key`.
    Rotate(ServeArgs),
}

pub async fn master_key(args: &MasterKeyArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        MasterKeyCommand::Generate => {
            let key = MasterKey::generate().map_err(anyhow::Error::msg)?;
            println!("{}", key.expose_secret().as_str());
            eprintln!("master key id: {}", key.id());
            Ok(ExitCode::SUCCESS)
        }
        MasterKeyCommand::Rotate(args) => {
            let config = args.effective_config()?;
            crate::telemetry::init_tracing(&config.log);
            let rotation = crate::store::rotate_master_key(&config.storage_config()).await?;
            let from = rotation.from.map_or_else(|| "none".to_owned(), |id| id.to_string());
            println!(
                "master key in force: {} (was {from}); sealed {} signing secrets and keys anew",
                rotation.to, rotation.resealed
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
