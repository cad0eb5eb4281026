//! The `herald` command line: one binary for the server and the developer
//! tools. Each subcommand lives in its own module; this file only parses and
//! dispatches.

mod keys;
mod listen;
mod master_key;
mod serve;
mod signing_keys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Push notifications for long-running jobs, as signed Standard Webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Herald server (API and delivery engine) on the embedded
    /// database, or on PostgreSQL with --database-url.
    Serve(serve::ServeArgs),
    /// Apply pending schema migrations to the configured database and exit.
    Migrate(serve::ServeArgs),
    /// Print the effective configuration (defaults, file, environment, flags).
    Config(serve::ServeArgs),
    /// Print a new signing key (secret and public form).
    Keygen(keys::KeygenArgs),
    /// Sign a payload and print the three Standard Webhooks headers.
    Sign(keys::SignArgs),
    /// Verify a signed payload; exits 0 when valid, non-zero with the reason otherwise.
    Verify(keys::VerifyArgs),
    /// Run a local webhook receiver that verifies and prints every delivery.
    Listen(listen::ListenArgs),
    /// Generate or rotate the master key that seals signing secrets at rest.
    MasterKey(master_key::MasterKeyArgs),
    /// List or rotate Herald's own signing keys (per-job webhooks, JWKS)
    /// through a running server's admin API.
    SigningKeys(signing_keys::SigningKeysArgs),
}

/// Entry point of the binary: parses arguments, runs the subcommand on a
/// Tokio runtime and turns errors into a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(&args).await,
            Command::Config(args) => serve::config(&args),
            Command::Migrate(args) => serve::migrate(&args).await,
            Command::Keygen(args) => keys::keygen(args),
            Command::Sign(args) => keys::sign(args),
            Command::Verify(args) => keys::verify(args).await,
            Command::Listen(args) => listen::listen(args).await,
            Command::MasterKey(args) => master_key::master_key(&args).await,
            Command::SigningKeys(args) => signing_keys::signing_keys(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}
