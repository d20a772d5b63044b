//! Client commands that talk to a server through `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_CACERT`.
//!
//! The commands, their flags, their requests and their exit codes follow the Vault CLI. The exit
//! code is 0 on success and 2 for an error the server returned, a sealed server in `status` or
//! a read that finds nothing. It is 1 for a local error such as a missing file or an unreachable
//! server.

mod args;
mod client;
mod error;
mod generate_root;
mod generic;
mod kv;
mod kv_args;
mod operator;
mod output;
mod policy;
mod secret_table;
mod secrets;
mod token;

use std::process::ExitCode;

pub use args::normalize_args;
pub use output::Format;

use client::Client;
use error::CliError;

/// The client subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Prints the seal status of the server (exit code 0 unsealed, 2 sealed, 1 error).
    Status(StatusArgs),
    /// Initializes, unseals and seals the server, and generates a new root token.
    Operator(operator::OperatorArgs),
    /// Reads the secret or data at a path.
    Read(generic::ReadArgs),
    /// Writes `key=value` pairs to a path.
    Write(generic::WriteArgs),
    /// Lists the keys under a path.
    List(generic::PathArgs),
    /// Deletes the data at a path.
    Delete(generic::PathArgs),
    /// Reads and writes key/value secrets on KV version 1 and 2 mounts.
    Kv(kv::KvArgs),
    /// Creates, looks up and revokes tokens.
    Token(token::TokenArgs),
    /// Writes, reads, lists and deletes ACL policies.
    Policy(policy::PolicyArgs),
    /// Enables, disables and lists secrets engines.
    Secrets(secrets::SecretsArgs),
}

/// Options that every client command accepts, before or after its subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Output format: `table` or `json`. Defaults to VAULT_FORMAT, else `table`.
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Server address such as `https://127.0.0.1:8200`. Overrides VAULT_ADDR.
    #[arg(long, global = true)]
    pub address: Option<String>,
}

/// Options of `coffer status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Prints `Coffer v<version>`.
pub fn print_version() {
    output::print_line(&format!("Coffer v{}", env!("CARGO_PKG_VERSION")));
}

/// Runs one client command and returns its exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    match dispatch(command) {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error.to_string());
            error.exit_code()
        }
    }
}

fn dispatch(command: ClientCommand) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::Status(args) => operator::status(&Session::new(&args.common)?),
        ClientCommand::Operator(args) => operator::run(args),
        ClientCommand::Read(args) => generic::read(args),
        ClientCommand::Write(args) => generic::write(args),
        ClientCommand::List(args) => generic::list(args),
        ClientCommand::Delete(args) => generic::delete(args),
        ClientCommand::Kv(args) => kv::run(args),
        ClientCommand::Token(args) => token::run(args),
        ClientCommand::Policy(args) => policy::run(args),
        ClientCommand::Secrets(args) => secrets::run(args),
    }
}

/// The client and the output format one command uses.
pub(crate) struct Session {
    client: Client,
    format: Format,
}

impl Session {
    fn new(common: &CommonArgs) -> Result<Session, CliError> {
        let client = Client::from_env(common.address.as_deref())?;
        let format = output::resolve_format(common.format)?;
        Ok(Session { client, format })
    }
}

/// Reads the whole of standard input, for `-` arguments.
fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|error| CliError::Local(format!("failed to read standard input: {error}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> ClientCommand {
        let args = normalize_args(args.iter().map(std::ffi::OsString::from));
        match TestCli::try_parse_from(args.clone()) {
            Ok(cli) => cli.command,
            Err(error) => panic!("{args:?} did not parse: {error}"),
        }
    }

    fn kv_format(command: ClientCommand) -> Option<Format> {
        match command {
            ClientCommand::Kv(args) => args.common.format,
            other => panic!("expected kv, got {other:?}"),
        }
    }

    #[test]
    fn format_after_nested_subcommand_reaches_group() {
        let command = parse(&["coffer", "kv", "get", "-format=json", "secret/x"]);
        assert_eq!(kv_format(command), Some(Format::Json));
    }

    #[test]
    fn format_before_subcommand_is_accepted() {
        let command = parse(&["coffer", "-format=json", "kv", "get", "secret/x"]);
        assert_eq!(kv_format(command), Some(Format::Json));
        let command = parse(&["coffer", "-format=json", "read", "secret/x"]);
        assert!(matches!(command, ClientCommand::Read(_)));
    }

    #[test]
    fn vault_style_flags_parse() {
        parse(&[
            "coffer",
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
        ]);
        parse(&["coffer", "write", "-f", "secret/x"]);
        parse(&["coffer", "write", "secret/x", "a=1", "-"]);
        parse(&[
            "coffer",
            "token",
            "create",
            "-policy=a",
            "-policy=b",
            "-ttl=1h",
            "-orphan",
        ]);
        parse(&[
            "coffer",
            "secrets",
            "enable",
            "-path=kv2",
            "-version=2",
            "-local",
            "kv",
        ]);
        parse(&[
            "coffer",
            "kv",
            "put",
            "-mount=secret",
            "-cas=0",
            "app",
            "a=1",
        ]);
        parse(&[
            "coffer",
            "operator",
            "generate-root",
            "-decode=abc",
            "-otp=xyz",
        ]);
        parse(&["coffer", "policy", "write", "reader", "-"]);
    }
}
