//! Listing, reading, enabling and disabling secrets engines and auth methods.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Core;
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::{self, MountEntry, TableKind, Tables};
use crate::request::Response;
use crate::storage::Transaction;

use super::config::{mount_path, parse_config, parse_options};

/// Secrets engine paths the core owns; nothing may be mounted at or below them.
const RESERVED_SECRETS: &[&str] = &["sys/", "auth/", "cubbyhole/", "identity/"];

/// Auth method types accepted for mount bookkeeping; their login endpoints come separately.
const AUTH_TYPES: &[&str] = &[
    "alicloud",
    "approle",
    "aws",
    "azure",
    "cert",
    "cf",
    "gcp",
    "github",
    "jwt",
    "kerberos",
    "kubernetes",
    "ldap",
    "oci",
    "oidc",
    "okta",
    "radius",
    "userpass",
];

/// Lists every entry of one table as a map from path to entry.
pub(super) fn list(core: &Core, kind: TableKind, txn: &dyn Transaction) -> Result<Response, Error> {
    let tables = core.mounts.tables(core, txn)?;
    let data: Map<String, Value> = tables
        .entries(kind)
        .iter()
        .map(|entry| (entry.path.clone(), entry.to_json()))
        .collect();
    Ok(Response::data(data))
}

/// Returns the entry mounted at `path`.
pub(super) fn read(
    core: &Core,
    kind: TableKind,
    path: &str,
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    let path = mount_path(path)?;
    let tables = core.mounts.tables(core, txn)?;
    let entry = tables
        .find(kind, &path)
        .ok_or_else(|| missing(kind, &path))?;
    Ok(Response::data_value(entry.to_json()))
}

/// Mounts a new secrets engine or auth method at `path`.
pub(super) fn enable(
    core: &Core,
    ctx: &mut Ctx<'_>,
    kind: TableKind,
    path: &str,
    data: &Map<String, Value>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let path = mount_path(path)?;
    let mut options = parse_options(data)?;
    let requested = params::string(data, "type")?.ok_or_else(|| {
        Error::bad_request("missing type: name the engine or method type, such as \"kv\"")
    })?;
    let engine = match kind {
        TableKind::Secrets => secrets_type(&requested, &mut options)?,
        TableKind::Auth => auth_type(&requested)?,
    };
    let tables = core.mounts.tables(core, txn)?;
    check_path_free(&tables, kind, &path)?;

    let local = params::boolean(data, "local")?.unwrap_or(false);
    let mut entry = MountEntry::new(kind, &path, &engine, local, ctx.rng);
    entry.description = params::string(data, "description")?.unwrap_or_default();
    entry.seal_wrap = params::boolean(data, "seal_wrap")?.unwrap_or(false);
    entry.external_entropy_access =
        params::boolean(data, "external_entropy_access")?.unwrap_or(false);
    entry.config = parse_config(data, kind)?;
    entry.options = options;

    let mut half = half_of(&tables, kind, local);
    half.push(entry);
    let mut view = core.barrier.view(txn, ctx.rng)?;
    mounts::save_table(&mut view, kind, local, &half)?;
    Ok(Response::NoContent)
}

/// Unmounts the entry at `path` and deletes all of its data. A missing mount is not an error,
/// but the shared table is still rewritten so the request counts as a write everywhere.
pub(super) fn disable(
    core: &Core,
    ctx: &mut Ctx<'_>,
    kind: TableKind,
    path: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let path = mount_path(path)?;
    check_removable(kind, &path)?;
    let tables = core.mounts.tables(core, txn)?;
    let Some(entry) = tables.find(kind, &path).cloned() else {
        let half = half_of(&tables, kind, false);
        let mut view = core.barrier.view(txn, ctx.rng)?;
        mounts::save_table(&mut view, kind, false, &half)?;
        return Ok(Response::NoContent);
    };
    mounts::purge_prefix(txn, entry.data_partition(), &entry.data_prefix(kind))?;
    let half: Vec<MountEntry> = half_of(&tables, kind, entry.local)
        .into_iter()
        .filter(|other| other.path != path)
        .collect();
    let mut view = core.barrier.view(txn, ctx.rng)?;
    mounts::save_table(&mut view, kind, entry.local, &half)?;
    Ok(Response::NoContent)
}

/// Returns the entries of the shared or the local half of a table, in their stored order.
pub(super) fn half_of(tables: &Tables, kind: TableKind, local: bool) -> Vec<MountEntry> {
    tables
        .entries(kind)
        .iter()
        .filter(|entry| entry.local == local)
        .cloned()
        .collect()
}

/// Builds the 400 for a path with no mount.
pub(super) fn missing(kind: TableKind, path: &str) -> Error {
    match kind {
        TableKind::Secrets => Error::bad_request(format!("no secrets engine is mounted at {path}")),
        TableKind::Auth => Error::bad_request(format!("no auth method is mounted at auth/{path}")),
    }
}

/// Maps a requested secrets engine type to the stored one, applying the KV aliases.
fn secrets_type(requested: &str, options: &mut BTreeMap<String, String>) -> Result<String, Error> {
    let engine = match requested {
        "kv-v2" => {
            options.insert("version".into(), "2".into());
            "kv"
        }
        "kv-v1" => {
            options.insert("version".into(), "1".into());
            "kv"
        }
        "kv" | "generic" | "transit" => requested,
        "cubbyhole" | "identity" | "system" => {
            return Err(Error::bad_request(format!(
                "secrets engine {requested:?} is built in and cannot be mounted again"
            )));
        }
        other => {
            return Err(Error::bad_request(format!(
                "unknown secrets engine type {other:?}"
            )));
        }
    };
    match options.get("version").map(String::as_str) {
        None => Ok(engine.to_owned()),
        Some(_) if engine != "kv" => Err(Error::bad_request(format!(
            "secrets engine {engine:?} does not allow setting a version"
        ))),
        Some("1" | "2") => Ok(engine.to_owned()),
        Some(other) => Err(Error::bad_request(format!(
            "invalid KV version {other:?}: use \"1\" or \"2\""
        ))),
    }
}

fn auth_type(requested: &str) -> Result<String, Error> {
    if requested == "token" {
        return Err(Error::bad_request(
            "the token auth method is built in at auth/token/ and cannot be enabled again",
        ));
    }
    if !AUTH_TYPES.contains(&requested) {
        return Err(Error::bad_request(format!(
            "unknown auth method type {requested:?}"
        )));
    }
    Ok(requested.to_owned())
}

/// Rejects reserved paths and paths that overlap an existing mount.
fn check_path_free(tables: &Tables, kind: TableKind, path: &str) -> Result<(), Error> {
    if kind == TableKind::Secrets {
        if let Some(reserved) = RESERVED_SECRETS
            .iter()
            .find(|reserved| path.starts_with(**reserved))
        {
            return Err(Error::bad_request(format!(
                "cannot mount at {path}: {reserved} is reserved"
            )));
        }
    }
    let taken = tables
        .entries(kind)
        .iter()
        .find(|entry| path.starts_with(&entry.path) || entry.path.starts_with(path));
    match taken {
        Some(entry) => {
            let shown = match kind {
                TableKind::Secrets => entry.path.clone(),
                TableKind::Auth => format!("auth/{}", entry.path),
            };
            Err(Error::bad_request(format!(
                "path is already in use at {shown}"
            )))
        }
        None => Ok(()),
    }
}

fn check_removable(kind: TableKind, path: &str) -> Result<(), Error> {
    let builtin = match kind {
        TableKind::Secrets => RESERVED_SECRETS.contains(&path),
        TableKind::Auth => path == "token/",
    };
    if builtin {
        return Err(Error::bad_request(format!(
            "cannot disable {path}: it is built in"
        )));
    }
    Ok(())
}
