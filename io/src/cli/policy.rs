//! `policy write|read|list|delete` on `sys/policies/acl/`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::found;
use super::error::CliError;
use super::generic::print_list;
use super::output::{Format, print_json, print_line};
use super::{CommonArgs, Session, read_stdin};

/// Options of `coffer policy`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Creates or replaces a policy from a file, or from standard input with `-`.
    Write {
        /// The policy's name.
        name: String,
        /// The HCL or JSON file with the rules, or `-` for standard input.
        file: String,
    },
    /// Prints a policy's rules.
    Read {
        /// The policy's name.
        name: String,
    },
    /// Lists the policies.
    List,
    /// Deletes a policy.
    Delete {
        /// The policy's name.
        name: String,
    },
}

/// Runs one `coffer policy` subcommand.
pub(crate) fn run(args: PolicyArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    match args.command {
        PolicyCommand::Write { name, file } => {
            let rules = read_rules(&file)?;
            let path = format!("sys/policies/acl/{name}");
            session.client.write(&path, &json!({"policy": rules}))?;
            print_line(&format!("Success! Uploaded policy: {name}"));
        }
        PolicyCommand::Read { name } => {
            let path = format!("sys/policies/acl/{name}");
            let response = found(session.client.read(&path)?, &path)?;
            print_rules(&session, response.body());
        }
        PolicyCommand::List => {
            let response = session.client.list("sys/policies/acl")?;
            print_list(&session, response.body());
        }
        PolicyCommand::Delete { name } => {
            session.client.delete(&format!("sys/policies/acl/{name}"))?;
            print_line(&format!("Success! Deleted policy: {name}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_rules(file: &str) -> Result<String, CliError> {
    if file == "-" {
        return read_stdin();
    }
    std::fs::read_to_string(file)
        .map_err(|error| CliError::Local(format!("failed to read policy file {file}: {error}")))
}

fn print_rules(session: &Session, body: &Value) {
    if session.format == Format::Json {
        print_json(body);
        return;
    }
    let rules = body
        .get("data")
        .and_then(|data| data.get("policy").or_else(|| data.get("rules")))
        .and_then(Value::as_str)
        .unwrap_or("");
    print_line(rules);
}
