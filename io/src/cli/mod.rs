//! Client commands that talk to a server through `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_CACERT`.

use std::ffi::OsString;
use std::process::ExitCode;

/// The client subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Prints the seal status of the server.
    Status,
}

/// Rewrites Vault-style single-dash long options (`-config=FILE`, `-format=json`) to the
/// double-dash form clap parses.
pub fn normalize_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    args.collect()
}

/// Prints `Coffer v<version>`.
pub fn print_version() {
    #[allow(clippy::print_stdout)]
    {
        println!("Coffer v{}", env!("CARGO_PKG_VERSION"));
    }
}

/// Runs one client command and returns its exit code.
pub fn run(_command: ClientCommand) -> ExitCode {
    ExitCode::FAILURE
}
