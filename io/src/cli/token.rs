//! `token create|lookup|revoke` against the token store at `auth/token/`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::error::CliError;
use super::generic::print_secret;
use super::output::print_line;
use super::{CommonArgs, Session};

/// Options of `coffer token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Creates a token, a child of the calling token unless `-orphan`.
    Create(CreateArgs),
    /// Looks up a token, or the calling token when none is given.
    Lookup(LookupArgs),
    /// Revokes a token and all of its children.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// A policy to attach; repeat for several. Defaults to the calling token's policies.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Time to live, such as `30m` or `1h`.
    #[arg(long)]
    ttl: Option<String>,
    /// Creates the token without a parent, so revoking the caller leaves it alone.
    #[arg(long)]
    orphan: bool,
    /// Number of requests the token may make; 0 is unlimited.
    #[arg(long)]
    num_uses: Option<u64>,
    /// Name shown in the token's lookup and in audit logs.
    #[arg(long)]
    display_name: Option<String>,
    /// Prints only this field, such as `token`.
    #[arg(long)]
    field: Option<String>,
}

#[derive(Args, Debug)]
struct LookupArgs {
    /// The token to look up.
    token: Option<String>,
}

#[derive(Args, Debug)]
struct RevokeArgs {
    /// The token to revoke.
    token: String,
}

/// Runs one `coffer token` subcommand.
pub(crate) fn run(args: TokenArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    match args.command {
        TokenCommand::Create(create) => {
            let response = session
                .client
                .post("auth/token/create", &create_body(&create))?;
            print_secret(&session, response.body(), create.field.as_deref())?;
        }
        TokenCommand::Lookup(lookup) => {
            let response = match lookup.token {
                Some(token) => session
                    .client
                    .post("auth/token/lookup", &json!({"token": token}))?,
                None => session.client.read("auth/token/lookup-self")?,
            };
            print_secret(&session, response.body(), None)?;
        }
        TokenCommand::Revoke(revoke) => {
            let body = json!({"token": revoke.token});
            session.client.post("auth/token/revoke", &body)?;
            print_line("Success! Revoked token (if it existed)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_body(args: &CreateArgs) -> Value {
    let mut body = Map::new();
    if !args.policies.is_empty() {
        body.insert("policies".to_owned(), json!(args.policies));
    }
    if let Some(ttl) = &args.ttl {
        body.insert("ttl".to_owned(), json!(ttl));
    }
    if args.orphan {
        body.insert("no_parent".to_owned(), json!(true));
    }
    if let Some(num_uses) = args.num_uses {
        body.insert("num_uses".to_owned(), json!(num_uses));
    }
    if let Some(name) = &args.display_name {
        body.insert("display_name".to_owned(), json!(name));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_sends_only_given_options() {
        let args = CreateArgs {
            policies: vec!["web".to_owned(), "db".to_owned()],
            ttl: Some("1h".to_owned()),
            orphan: true,
            num_uses: Some(3),
            display_name: None,
            field: None,
        };
        let expected = json!({"policies": ["web", "db"], "ttl": "1h", "no_parent": true,
                              "num_uses": 3});
        assert_eq!(create_body(&args), expected);
    }
}
