//! `coffer server`: configuration, storage, the HTTP API and the node's tasks.

use std::process::ExitCode;

/// Options of `coffer server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Path of the configuration file (HCL or JSON).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Runs a single unsealed development node on a temporary LMDB directory.
    #[arg(long)]
    pub dev: bool,
}

/// Runs the server until it is stopped.
pub fn run(_args: ServerArgs) -> ExitCode {
    ExitCode::FAILURE
}
