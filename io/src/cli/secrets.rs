//! `secrets enable|disable|list` on `sys/mounts`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::error::CliError;
use super::output::{Format, columns_table, print_json, print_line, value_cell};
use super::{CommonArgs, Session};

/// Options of `coffer secrets`.
#[derive(Args, Debug)]
pub struct SecretsArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Enables a secrets engine, such as `kv` or `transit`.
    Enable(EnableArgs),
    /// Disables the secrets engine at a path and deletes its data.
    Disable {
        /// The mount path.
        path: String,
    },
    /// Lists the enabled secrets engines.
    List,
}

#[derive(Args, Debug)]
struct EnableArgs {
    /// The mount path. Defaults to the engine's type.
    #[arg(long)]
    path: Option<String>,
    /// The KV version, `1` or `2`.
    #[arg(long)]
    version: Option<String>,
    /// Keeps the mount out of replication.
    #[arg(long)]
    local: bool,
    /// A description shown in `secrets list`.
    #[arg(long)]
    description: Option<String>,
    /// The engine's type.
    engine: String,
}

/// Runs one `coffer secrets` subcommand.
pub(crate) fn run(args: SecretsArgs) -> Result<ExitCode, CliError> {
    let session = Session::new(&args.common)?;
    match args.command {
        SecretsCommand::Enable(enable) => {
            let path = mount_path(enable.path.as_deref().unwrap_or(&enable.engine));
            let mount = format!("sys/mounts/{}", path.trim_end_matches('/'));
            session.client.post(&mount, &enable_body(&enable))?;
            print_line(&format!(
                "Success! Enabled the {} secrets engine at: {path}",
                enable.engine
            ));
        }
        SecretsCommand::Disable { path } => {
            let path = mount_path(&path);
            let mount = format!("sys/mounts/{}", path.trim_end_matches('/'));
            session.client.delete(&mount)?;
            print_line(&format!(
                "Success! Disabled the secrets engine (if it existed) at: {path}"
            ));
        }
        SecretsCommand::List => {
            let response = session.client.read("sys/mounts")?;
            match session.format {
                Format::Json => print_json(response.body()),
                Format::Table => print_line(&mounts_table(response.data())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mount_path(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

fn enable_body(args: &EnableArgs) -> Value {
    let mut body = Map::new();
    body.insert("type".to_owned(), json!(args.engine));
    body.insert(
        "description".to_owned(),
        json!(args.description.clone().unwrap_or_default()),
    );
    body.insert("local".to_owned(), json!(args.local));
    if let Some(version) = &args.version {
        body.insert("options".to_owned(), json!({"version": version}));
    }
    Value::Object(body)
}

fn mounts_table(data: &Value) -> String {
    let mut rows = Vec::new();
    if let Some(mounts) = data.as_object() {
        for (path, mount) in mounts {
            let field = |name: &str| value_cell(mount.get(name).unwrap_or(&Value::Null));
            rows.push(vec![
                path.clone(),
                field("type"),
                field("accessor"),
                field("description"),
            ]);
        }
    }
    rows.sort();
    columns_table(&["Path", "Type", "Accessor", "Description"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_body_sets_kv_version() {
        let args = EnableArgs {
            path: Some("kv2".to_owned()),
            version: Some("2".to_owned()),
            local: true,
            description: None,
            engine: "kv".to_owned(),
        };
        let expected = json!({"type": "kv", "description": "", "local": true,
                              "options": {"version": "2"}});
        assert_eq!(enable_body(&args), expected);
    }

    #[test]
    fn mount_path_has_one_trailing_slash() {
        assert_eq!(mount_path("secret"), "secret/");
        assert_eq!(mount_path("/team/kv/"), "team/kv/");
    }

    #[test]
    fn mounts_table_is_sorted_by_path() {
        let data = json!({"sys/": {"type": "system", "accessor": "system_1", "description": "s"},
                          "cubbyhole/": {"type": "cubbyhole", "accessor": "c_1",
                                         "description": ""}});
        let table = mounts_table(&data);
        let lines = table.lines().collect::<Vec<_>>();
        assert!(lines[2].starts_with("cubbyhole/"), "{table}");
        assert!(lines[3].starts_with("sys/"), "{table}");
    }
}
