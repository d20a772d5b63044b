//! `status` and `operator init|unseal|seal|generate-root`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::error::CliError;
use super::generate_root::decode_token;
use super::output::{Format, key_value_table, print_error, print_json, print_line, value_cell};
use super::{CommonArgs, Session};

/// Options of `coffer operator`.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Initializes the server: creates the unseal key shares and the root token.
    Init(InitArgs),
    /// Submits one unseal key share.
    Unseal(UnsealArgs),
    /// Seals the server. Needs a root or sudo token.
    Seal,
    /// Generates a new root token from a threshold of unseal key shares.
    GenerateRoot(GenerateRootArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Number of unseal key shares to create.
    #[arg(long, default_value_t = 5)]
    key_shares: u32,
    /// Number of shares needed to unseal.
    #[arg(long, default_value_t = 3)]
    key_threshold: u32,
}

#[derive(Args, Debug)]
struct UnsealArgs {
    /// Discards the shares submitted so far.
    #[arg(long)]
    reset: bool,
    /// The key share (hex or base64). Read from standard input when absent.
    key: Option<String>,
}

#[derive(Args, Debug)]
struct GenerateRootArgs {
    /// Starts an attempt.
    #[arg(long)]
    init: bool,
    /// The one-time password to start an attempt with, or to decode with.
    #[arg(long)]
    otp: Option<String>,
    /// Decodes this encoded root token locally with `-otp`, sending no request.
    #[arg(long)]
    decode: Option<String>,
    /// The nonce of the attempt a key share is for.
    #[arg(long)]
    nonce: Option<String>,
    /// Cancels the current attempt.
    #[arg(long)]
    cancel: bool,
    /// Prints the progress of the current attempt.
    #[arg(long)]
    status: bool,
    /// An unseal key share to submit to the current attempt.
    key: Option<String>,
}

/// Runs `coffer status`: exit code 0 when unsealed, 2 when sealed.
pub(crate) fn status(session: &Session) -> Result<ExitCode, CliError> {
    let response = session.client.read("sys/seal-status")?;
    let body = response.body().clone();
    let sealed = body.get("sealed").and_then(Value::as_bool).unwrap_or(true);
    match session.format {
        Format::Json => print_json(&body),
        Format::Table => print_line(&key_value_table(&seal_status_rows(&body))),
    }
    Ok(if sealed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs one `coffer operator` subcommand.
pub(crate) fn run(args: OperatorArgs) -> Result<ExitCode, CliError> {
    if let OperatorCommand::GenerateRoot(generate) = &args.command {
        if let Some(encoded) = &generate.decode {
            return decode(&args.common, encoded, generate.otp.as_deref());
        }
    }
    let session = Session::new(&args.common)?;
    match args.command {
        OperatorCommand::Init(init) => initialize(&session, &init),
        OperatorCommand::Unseal(unseal) => submit_unseal_key(&session, unseal),
        OperatorCommand::Seal => seal(&session),
        OperatorCommand::GenerateRoot(generate) => generate_root(&session, generate),
    }
}

fn initialize(session: &Session, args: &InitArgs) -> Result<ExitCode, CliError> {
    let request = json!({
        "secret_shares": args.key_shares,
        "secret_threshold": args.key_threshold,
        "pgp_keys": null,
        "root_token_pgp_key": "",
        "stored_shares": 0,
        "recovery_shares": 0,
        "recovery_threshold": 0,
        "recovery_pgp_keys": null,
    });
    let response = session.client.write("sys/init", &request)?;
    let body = response.body();
    if session.format == Format::Json {
        print_json(body);
        return Ok(ExitCode::SUCCESS);
    }
    print_line(&init_text(body, args));
    Ok(ExitCode::SUCCESS)
}

fn init_text(body: &Value, args: &InitArgs) -> String {
    let keys = body.get("keys_base64").and_then(Value::as_array);
    let mut lines = keys
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, key)| format!("Unseal Key {}: {}", index + 1, value_cell(key)))
        .collect::<Vec<_>>();
    let root = body.get("root_token").unwrap_or(&Value::Null);
    lines.push(String::new());
    lines.push(format!("Initial Root Token: {}", value_cell(root)));
    lines.push(String::new());
    lines.push(format!(
        "The server is initialized. After every restart, unseal it with {} of these {} key \
         shares. Store the shares apart from each other.",
        args.key_threshold, args.key_shares
    ));
    lines.join("\n")
}

fn submit_unseal_key(session: &Session, args: UnsealArgs) -> Result<ExitCode, CliError> {
    let key = match (args.reset, args.key) {
        (true, _) => String::new(),
        (false, Some(key)) => key,
        (false, None) => prompt_key("Unseal Key (will be hidden): ")?,
    };
    let request = json!({"key": key, "reset": args.reset, "migrate": false});
    let response = session.client.write("sys/unseal", &request)?;
    match session.format {
        Format::Json => print_json(response.body()),
        Format::Table => print_line(&key_value_table(&seal_status_rows(response.body()))),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads one line from standard input.
// NOTE: the terminal still echoes the key; turning echo off needs a terminal library.
fn prompt_key(prompt: &str) -> Result<String, CliError> {
    print_error(prompt);
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|error| CliError::Local(format!("failed to read the key: {error}")))?;
    let key = line.trim().to_owned();
    if key.is_empty() {
        return Err(CliError::Local("no key given on standard input".to_owned()));
    }
    Ok(key)
}

fn seal(session: &Session) -> Result<ExitCode, CliError> {
    session.client.write("sys/seal", &json!({}))?;
    print_line("Success! Coffer is sealed.");
    Ok(ExitCode::SUCCESS)
}

fn generate_root(session: &Session, args: GenerateRootArgs) -> Result<ExitCode, CliError> {
    let response = if args.cancel {
        session.client.delete("sys/generate-root/attempt")?;
        print_line("Success! Root token generation canceled (if it was started)");
        return Ok(ExitCode::SUCCESS);
    } else if args.init {
        let request = match &args.otp {
            Some(otp) => json!({"otp": otp}),
            None => json!({}),
        };
        session
            .client
            .write("sys/generate-root/attempt", &request)?
    } else if let Some(key) = args.key {
        let nonce = args.nonce.ok_or_else(|| {
            CliError::Local("-nonce is required to submit a key share".to_owned())
        })?;
        let request = json!({"key": key, "nonce": nonce});
        session.client.write("sys/generate-root/update", &request)?
    } else {
        session.client.read("sys/generate-root/attempt")?
    };
    match session.format {
        Format::Json => print_json(response.body()),
        Format::Table => print_line(&key_value_table(&generate_root_rows(response.body()))),
    }
    Ok(ExitCode::SUCCESS)
}

fn decode(common: &CommonArgs, encoded: &str, otp: Option<&str>) -> Result<ExitCode, CliError> {
    let otp = otp.ok_or_else(|| CliError::Local("-decode needs -otp".to_owned()))?;
    let token = decode_token(encoded, otp)?;
    match super::output::resolve_format(common.format)? {
        Format::Json => print_json(&json!({"token": token})),
        Format::Table => print_line(&token),
    }
    Ok(ExitCode::SUCCESS)
}

fn generate_root_rows(body: &Value) -> Vec<(String, String)> {
    let fields = [
        ("Nonce", "nonce"),
        ("Started", "started"),
        ("Progress", "progress"),
        ("Required", "required"),
        ("Complete", "complete"),
        ("OTP", "otp"),
        ("OTP Length", "otp_length"),
        ("Encoded Token", "encoded_token"),
    ];
    present_rows(body, &fields)
}

/// Returns the `vault status` rows of a seal-status response.
fn seal_status_rows(body: &Value) -> Vec<(String, String)> {
    let fields = [
        ("Seal Type", "type"),
        ("Initialized", "initialized"),
        ("Sealed", "sealed"),
        ("Total Shares", "n"),
        ("Threshold", "t"),
        ("Unseal Progress", "progress"),
        ("Unseal Nonce", "nonce"),
        ("Version", "version"),
        ("Build Date", "build_date"),
        ("Storage Type", "storage_type"),
        ("Cluster Name", "cluster_name"),
        ("Cluster ID", "cluster_id"),
    ];
    present_rows(body, &fields)
}

fn present_rows(body: &Value, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    let present = fields.iter().filter_map(|(title, key)| {
        let value = body.get(*key).filter(|value| !value.is_null())?;
        Some((title.to_string(), value_cell(value)))
    });
    present.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_status_rows_skip_absent_fields() {
        let body = json!({"type": "shamir", "initialized": true, "sealed": true, "t": 3, "n": 5,
                          "progress": 2, "version": "0.1.0"});
        let rows = seal_status_rows(&body);
        let titles = rows
            .iter()
            .map(|(title, _)| title.as_str())
            .collect::<Vec<_>>();
        assert_eq!(
            titles,
            [
                "Seal Type",
                "Initialized",
                "Sealed",
                "Total Shares",
                "Threshold",
                "Unseal Progress",
                "Version"
            ]
        );
        assert_eq!(rows[4].1, "3");
    }

    #[test]
    fn init_text_numbers_keys_from_one() {
        let body = json!({"keys_base64": ["a", "b"], "root_token": "hvs.root"});
        let args = InitArgs {
            key_shares: 2,
            key_threshold: 2,
        };
        let text = init_text(&body, &args);
        assert!(
            text.starts_with("Unseal Key 1: a\nUnseal Key 2: b\n"),
            "{text}"
        );
        assert!(text.contains("Initial Root Token: hvs.root"), "{text}");
    }
}
