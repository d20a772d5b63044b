//! `kv get|put|delete|list`: key/value secrets on KV version 1 and 2 mounts.
//!
//! Each command first reads `sys/internal/ui/mounts/<path>` to learn which mount contains the
//! path and its KV version. A 404 there means KV version 1 and the path is used as it is. For version 2 the
//! path is rewritten to `<mount>/data/<rest>` (`metadata/` for list) and a write's data is
//! wrapped as `{"data": {...}, "options": {}}`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::found;
use super::error::CliError;
use super::generic::{print_list, print_secret};
use super::kv_args::{ProcessSources, parse_pairs};
use super::output::{Format, key_value_table, object_rows, print_json, print_line};
use super::secret_table::field_value;
use super::{CommonArgs, Session};

/// Options of `coffer kv`.
#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// Reads a secret (the latest version, or `-version`).
    Get(KvGetArgs),
    /// Writes a secret, as a new version on KV version 2.
    Put(KvPutArgs),
    /// Deletes a secret (soft-deletes its latest version on KV version 2).
    Delete(KvPathArgs),
    /// Lists the keys under a path.
    List(KvPathArgs),
}

#[derive(Args, Debug)]
struct KvPathArgs {
    /// The mount path; PATH is then relative to it.
    #[arg(long)]
    mount: Option<String>,
    /// The secret's path.
    path: String,
}

#[derive(Args, Debug)]
struct KvGetArgs {
    #[command(flatten)]
    target: KvPathArgs,
    /// The version to read (KV version 2); 0 is the latest.
    #[arg(long)]
    version: Option<u64>,
    /// Prints only this field of the secret's data.
    #[arg(long)]
    field: Option<String>,
}

#[derive(Args, Debug)]
struct KvPutArgs {
    #[command(flatten)]
    target: KvPathArgs,
    /// Writes only if the current version is this one; 0 writes only if the secret is absent.
    #[arg(long)]
    cas: Option<u64>,
    /// The data: `key=value`, `key=@FILE`, `key=-`, or `-`/`@FILE` for a JSON object.
    data: Vec<String>,
}

/// Location of a KV path: the whole path for version 1, the mount and the rest for version 2.
#[derive(Debug, PartialEq, Eq)]
enum KvTarget {
    V1 { path: String },
    V2 { mount: String, rest: String },
}

/// Runs one `coffer kv` subcommand.
pub(crate) fn run(args: KvArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    match args.command {
        KvCommand::Get(get) => get_secret(&session, get),
        KvCommand::Put(put) => put_secret(&session, put),
        KvCommand::Delete(target) => delete_secret(&session, &target),
        KvCommand::List(target) => list_secrets(&session, &target),
    }
}

fn get_secret(session: &Session, args: KvGetArgs) -> Result<ExitCode, CliError> {
    let target = locate(session, &args.target)?;
    let path = match (&target, args.version) {
        (KvTarget::V2 { .. }, Some(version)) => {
            format!("{}?version={version}", api_path(&target, "data"))
        }
        _ => api_path(&target, "data"),
    };
    let response = found(session.client.read(&path)?, &api_path(&target, "data"))?;
    let body = response.body();
    match target {
        KvTarget::V1 { .. } => print_secret(session, body, args.field.as_deref())?,
        KvTarget::V2 { .. } => print_versioned(session, body, args.field.as_deref())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_versioned(session: &Session, body: &Value, field: Option<&str>) -> Result<(), CliError> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let secret = data.get("data").unwrap_or(&Value::Null);
    if let Some(field) = field {
        print_line(&field_value(&object_rows(secret), field)?);
        return Ok(());
    }
    if session.format == Format::Json {
        print_json(body);
        return Ok(());
    }
    let metadata = data.get("metadata").unwrap_or(&Value::Null);
    print_line("====== Metadata ======");
    print_line(&key_value_table(&object_rows(metadata)));
    print_line("\n====== Data ======");
    print_line(&key_value_table(&object_rows(secret)));
    Ok(())
}

fn put_secret(session: &Session, args: KvPutArgs) -> Result<ExitCode, CliError> {
    let data = parse_pairs(&args.data, &mut ProcessSources::new())?;
    if data.is_empty() {
        return Err(CliError::Local(
            "no data to write: give key=value pairs".to_owned(),
        ));
    }
    let target = locate(session, &args.target)?;
    let path = api_path(&target, "data");
    let body = match &target {
        KvTarget::V1 { .. } => Value::Object(data),
        KvTarget::V2 { .. } => versioned_body(Value::Object(data), args.cas),
    };
    let response = found(session.client.write(&path, &body)?, &path)?;
    match (&target, &response.body) {
        (KvTarget::V2 { .. }, Some(body)) if session.format == Format::Table => {
            print_line(&format!(
                "== Secret Path ==\n{path}\n\n======= Metadata ======="
            ));
            print_line(&key_value_table(&object_rows(
                body.get("data").unwrap_or(&Value::Null),
            )));
        }
        (_, Some(body)) => print_json(body),
        (_, None) => print_line(&format!("Success! Data written to: {path}")),
    }
    Ok(ExitCode::SUCCESS)
}

fn versioned_body(data: Value, cas: Option<u64>) -> Value {
    let options = match cas {
        Some(cas) => json!({"cas": cas}),
        None => json!({}),
    };
    json!({"data": data, "options": options})
}

fn delete_secret(session: &Session, args: &KvPathArgs) -> Result<ExitCode, CliError> {
    let target = locate(session, args)?;
    let path = api_path(&target, "data");
    session.client.delete(&path)?;
    print_line(&format!("Success! Data deleted (if it existed) at: {path}"));
    Ok(ExitCode::SUCCESS)
}

fn list_secrets(session: &Session, args: &KvPathArgs) -> Result<ExitCode, CliError> {
    let target = locate(session, args)?;
    let path = api_path(&target, "metadata");
    let response = found(session.client.list(&path)?, &path)?;
    print_list(session, response.body());
    Ok(ExitCode::SUCCESS)
}

/// Requests from the server which mount contains the path and which KV version it runs.
fn locate(session: &Session, args: &KvPathArgs) -> Result<KvTarget, CliError> {
    let path = full_path(args.mount.as_deref(), &args.path);
    let response = session
        .client
        .read(&format!("sys/internal/ui/mounts/{path}"))?;
    if response.status == 404 {
        return Ok(KvTarget::V1 { path });
    }
    target_from_mount(path, response.data())
}

fn full_path(mount: Option<&str>, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match mount {
        Some(mount) => format!("{}/{path}", mount.trim_matches('/')),
        None => path.to_owned(),
    }
}

fn target_from_mount(path: String, mount: &Value) -> Result<KvTarget, CliError> {
    let version = mount
        .get("options")
        .and_then(|options| options.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("1");
    if version != "2" {
        return Ok(KvTarget::V1 { path });
    }
    let Some(mount_path) = mount.get("path").and_then(Value::as_str) else {
        return Err(CliError::Local(format!(
            "the server's mount information for {path} has no `path` field"
        )));
    };
    let mount_path = format!("{}/", mount_path.trim_end_matches('/'));
    let rest = path
        .strip_prefix(&mount_path)
        .or_else(|| path.strip_prefix(mount_path.trim_end_matches('/')))
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    Ok(KvTarget::V2 {
        mount: mount_path,
        rest,
    })
}

/// Returns the API path: the path itself on version 1, `<mount><prefix>/<rest>` on version 2.
fn api_path(target: &KvTarget, prefix: &str) -> String {
    match target {
        KvTarget::V1 { path } => path.clone(),
        KvTarget::V2 { mount, rest } => format!("{mount}{prefix}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_2_mount_rewrites_path() {
        let mount = json!({"path": "secret/", "type": "kv", "options": {"version": "2"}});
        let target = target_from_mount("secret/app/db".to_owned(), &mount).ok();
        let expected = KvTarget::V2 {
            mount: "secret/".to_owned(),
            rest: "app/db".to_owned(),
        };
        assert_eq!(target.as_ref(), Some(&expected));
        assert_eq!(api_path(&expected, "data"), "secret/data/app/db");
        assert_eq!(api_path(&expected, "metadata"), "secret/metadata/app/db");
    }

    #[test]
    fn nested_mount_keeps_its_whole_path() {
        let mount = json!({"path": "team/kv/", "options": {"version": "2"}});
        let target = target_from_mount("team/kv/x".to_owned(), &mount).ok();
        let path = target.map(|target| api_path(&target, "data"));
        assert_eq!(path.as_deref(), Some("team/kv/data/x"));
    }

    #[test]
    fn mount_without_version_is_version_1() {
        let mount = json!({"path": "kv/", "options": null});
        let target = target_from_mount("kv/a".to_owned(), &mount).ok();
        assert_eq!(
            target,
            Some(KvTarget::V1 {
                path: "kv/a".to_owned()
            })
        );
    }

    #[test]
    fn mount_flag_prefixes_path() {
        assert_eq!(full_path(Some("secret"), "foo"), "secret/foo");
        assert_eq!(full_path(Some("/secret/"), "/foo"), "secret/foo");
        assert_eq!(full_path(None, "secret/foo"), "secret/foo");
    }

    #[test]
    fn versioned_body_wraps_data_and_cas() {
        let body = versioned_body(json!({"a": "1"}), Some(3));
        assert_eq!(body, json!({"data": {"a": "1"}, "options": {"cas": 3}}));
        let body = versioned_body(json!({"a": "1"}), None);
        assert_eq!(body, json!({"data": {"a": "1"}, "options": {}}));
    }
}
