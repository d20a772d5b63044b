//! `sys/internal/ui/mounts`: the mount lookup the `vault kv` CLI runs before each command to
//! learn a path's mount and KV version.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::acl::has_mount_access;
use crate::error::Error;
use crate::mounts::{MountEntry, TableKind};
use crate::request::{Caller, Response};
use crate::storage::Transaction;

/// Lists the secrets engines (under `secret`) and auth methods (under `auth`) on which
/// `caller` has some capability.
pub(super) fn list(core: &Core, caller: &Caller, txn: &dyn Transaction) -> Result<Response, Error> {
    let tables = core.mounts.tables(core, txn)?;
    let mut data = Map::new();
    for (kind, key, prefix) in [
        (TableKind::Secrets, "secret", ""),
        (TableKind::Auth, "auth", "auth/"),
    ] {
        let mut visible = Map::new();
        for entry in tables.entries(kind) {
            let mount_path = format!("{prefix}{}", entry.path);
            if has_mount_access(core, caller, &mount_path, txn)? {
                visible.insert(entry.path.clone(), entry.to_json());
            }
        }
        data.insert(key.into(), Value::Object(visible));
    }
    Ok(Response::data(data))
}

/// Returns the mount serving `path` with its `path` field; 404 when no mount matches, which
/// the CLI reads as "KV version 1", and 403 when `caller` has no capability on the mount.
pub(super) fn read(
    core: &Core,
    caller: &Caller,
    txn: &dyn Transaction,
    path: &str,
) -> Result<Response, Error> {
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
    if !has_mount_access(core, caller, &mount_path, txn)? {
        return Err(Error::api(
            403,
            format!(
                "permission denied: the token has no capability on the mount {mount_path:?} \
                 that serves {path:?}; ask for a policy that grants access to a path under it"
            ),
        ));
    }
    Ok(Response::data_value(with_path(entry, &mount_path)))
}

fn with_path(entry: &MountEntry, mount_path: &str) -> Value {
    let mut value = entry.to_json();
    if let Value::Object(map) = &mut value {
        map.insert("path".into(), json!(mount_path));
    }
    value
}
