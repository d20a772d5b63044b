//! `sys/internal/ui/mounts`: the mount lookup the `vault kv` CLI runs before each command to
//! learn a path's mount and KV version.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::error::Error;
use crate::mounts::{MountEntry, TableKind};
use crate::request::Response;
use crate::storage::Transaction;

/// Lists secrets engines under `secret` and auth methods under `auth`.
pub(super) fn list(core: &Core, txn: &dyn Transaction) -> Result<Response, Error> {
    let tables = core.mounts.tables(core, txn)?;
    let table = |kind: TableKind| -> Map<String, Value> {
        tables
            .entries(kind)
            .iter()
            .map(|entry| (entry.path.clone(), entry.to_json()))
            .collect()
    };
    let mut data = Map::new();
    data.insert("secret".into(), Value::Object(table(TableKind::Secrets)));
    data.insert("auth".into(), Value::Object(table(TableKind::Auth)));
    Ok(Response::data(data))
}

/// Returns the mount serving `path` with its `path` field; 404 when no mount matches, which
/// the CLI reads as "KV version 1".
pub(super) fn read(core: &Core, txn: &dyn Transaction, path: &str) -> Result<Response, Error> {
    let tables = core.mounts.tables(core, txn)?;
    let found = match path.strip_prefix("auth/") {
        Some(rest) => tables
            .longest_match(TableKind::Auth, rest)
            .map(|entry| (entry, format!("auth/{}", entry.path))),
        None => tables
            .longest_match(TableKind::Secrets, path)
            .map(|entry| (entry, entry.path.clone())),
    };
    let Some((entry, mount_path)) = found else {
        return Err(Error::api(
            404,
            format!("no mount serves the path {path:?}"),
        ));
    };
    Ok(Response::data_value(with_path(entry, &mount_path)))
}

fn with_path(entry: &MountEntry, mount_path: &str) -> Value {
    let mut value = entry.to_json();
    if let Value::Object(map) = &mut value {
        map.insert("path".into(), json!(mount_path));
    }
    value
}
