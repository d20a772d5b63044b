//! `read`, `write`, `list` and `delete`: raw requests to any path.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::client::found;
use super::error::CliError;
use super::kv_args::{ProcessSources, parse_pairs};
use super::output::{Format, key_list, key_value_table, list_keys, print_json, print_line};
use super::secret_table::{field_value, secret_rows};
use super::{CommonArgs, Session};

/// Options of `coffer read`.
#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Prints only this field's value.
    #[arg(long)]
    field: Option<String>,
    /// The path to read, such as `secret/foo` or `sys/mounts`.
    path: String,
}

/// Options of `coffer write`.
#[derive(Args, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Sends the request even without any data.
    #[arg(short = 'f', long)]
    force: bool,
    /// Prints only this field's value of the response.
    #[arg(long)]
    field: Option<String>,
    /// The path to write to.
    path: String,
    /// The data: `key=value`, `key=@FILE`, `key=-` (standard input), or `-`/`@FILE` for a JSON
    /// object.
    data: Vec<String>,
}

/// Options of the commands that take only a path.
#[derive(Args, Debug)]
pub struct PathArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// The path.
    path: String,
}

/// Runs `coffer read PATH`.
pub(crate) fn read(args: ReadArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    let response = found(session.client.read(&args.path)?, &args.path)?;
    print_secret(&session, response.body(), args.field.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `coffer write PATH DATA...`.
pub(crate) fn write(args: WriteArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    let data = parse_pairs(&args.data, &mut ProcessSources::new())?;
    if data.is_empty() && !args.force {
        return Err(CliError::Local(
            "no data to write: give key=value pairs, or -f to write without data".to_owned(),
        ));
    }
    let response = found(
        session.client.write(&args.path, &Value::Object(data))?,
        &args.path,
    )?;
    let empty = response
        .body
        .as_ref()
        .is_none_or(|body| secret_rows(body).is_empty());
    if empty && args.field.is_none() && session.format == Format::Table {
        // A response with only warnings prints them, then the success line Vault prints.
        if let Some(warnings) = response.body.as_ref().and_then(|body| body.get("warnings")) {
            let warnings: Vec<&str> = warnings
                .as_array()
                .map(|all| all.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !warnings.is_empty() {
                let listed: Vec<String> =
                    warnings.iter().map(|text| format!("  * {text}")).collect();
                print_line(&format!(
                    "WARNING! The following warnings were returned from Vault:\n\n{}\n",
                    listed.join("\n\n")
                ));
            }
        }
        print_line(&format!("Success! Data written to: {}", args.path));
    } else {
        print_secret(&session, response.body(), args.field.as_deref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `coffer list PATH`.
pub(crate) fn list(args: PathArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    let response = found(session.client.list(&args.path)?, &args.path)?;
    print_list(&session, response.body());
    Ok(ExitCode::SUCCESS)
}

/// Runs `coffer delete PATH`.
pub(crate) fn delete(args: PathArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    session.client.delete(&args.path)?;
    print_line(&format!(
        "Success! Data deleted (if it existed) at: {}",
        args.path
    ));
    Ok(ExitCode::SUCCESS)
}

/// Prints a response envelope as a table, one field, or JSON.
pub(crate) fn print_secret(
    session: &Session,
    body: &Value,
    field: Option<&str>,
) -> Result<(), CliError> {
    let rows = secret_rows(body);
    match (field, session.format) {
        (Some(field), _) => print_line(&field_value(&rows, field)?),
        (None, Format::Json) => print_json(body),
        (None, Format::Table) => print_line(&key_value_table(&rows)),
    }
    Ok(())
}

/// Prints a list response as a `Keys` table or JSON.
pub(crate) fn print_list(session: &Session, body: &Value) {
    match session.format {
        Format::Json => print_json(body),
        Format::Table => {
            let keys = list_keys(body.get("data").unwrap_or(&Value::Null));
            print_line(&key_list(&keys));
        }
    }
}
