//! The `coffer` binary: the server and the client commands.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "A Vault-compatible secrets server with replication"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a server.
    Server(coffer_io::server::ServerArgs),
    /// Prints the version.
    Version,
    #[command(flatten)]
    Client(coffer_io::cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(coffer_io::cli::normalize_args(std::env::args_os()));
    match cli.command {
        Command::Server(args) => coffer_io::server::run(args),
        Command::Version => {
            coffer_io::cli::print_version();
            std::process::ExitCode::SUCCESS
        }
        Command::Client(command) => coffer_io::cli::run(command),
    }
}
