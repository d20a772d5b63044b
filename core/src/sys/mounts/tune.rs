//! `sys/mounts/<path>/tune` and `sys/auth/<path>/tune`: reading and changing a mount's
//! TTLs, description, options and passthrough settings.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::{self, MountEntry, TableKind};
use crate::request::{Operation, Request, Response};
use crate::storage::Transaction;

use super::config::{self, mount_path, parse_options};
use super::enable::{half_of, missing};
use super::upgrade;

/// Serves a tune read or write for the mount at `path`.
pub(super) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    kind: TableKind,
    path: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let path = mount_path(path)?;
    let tables = core.mounts.tables(core, txn)?;
    let entry = tables
        .find(kind, &path)
        .or_else(|| tables.longest_match(kind, &path))
        .cloned()
        .ok_or_else(|| missing(kind, &path))?;
    match request.operation {
        Operation::Read => Ok(Response::data(describe(core, &entry))),
        Operation::Update => {
            let mut tuned = entry.clone();
            apply(&mut tuned, &request.data)?;
            if !entry.is_kv_v2() && tuned.is_kv_v2() {
                upgrade::to_kv_v2(ctx, core, &mut tuned, txn)?;
            }
            let half: Vec<MountEntry> = half_of(&tables, kind, entry.local)
                .into_iter()
                .map(|other| {
                    if other.path == entry.path {
                        tuned.clone()
                    } else {
                        other
                    }
                })
                .collect();
            let mut view = core.barrier.view(txn, ctx.rng)?;
            mounts::save_table(&mut view, kind, entry.local, &half)?;
            Ok(Response::NoContent)
        }
        _ => Err(Error::unsupported_operation()),
    }
}

/// Builds the tune read. TTLs are effective values: the system's when the mount sets none.
fn describe(core: &Core, entry: &MountEntry) -> Map<String, Value> {
    let effective = |own: u64, system: u64| if own == 0 { system } else { own };
    let mut data = entry.config.passthrough.clone();
    data.insert(
        "default_lease_ttl".into(),
        json!(effective(
            entry.config.default_lease_ttl,
            core.config.default_lease_ttl.as_secs()
        )),
    );
    data.insert(
        "max_lease_ttl".into(),
        json!(effective(
            entry.config.max_lease_ttl,
            core.config.max_lease_ttl.as_secs()
        )),
    );
    data.insert("force_no_cache".into(), json!(entry.config.force_no_cache));
    data.insert("description".into(), json!(entry.description));
    let options = if entry.options.is_empty() {
        Value::Null
    } else {
        json!(entry.options)
    };
    data.insert("options".into(), options);
    data
}

/// Applies the fields of a tune request to `entry`.
fn apply(entry: &mut MountEntry, data: &Map<String, Value>) -> Result<(), Error> {
    config::apply(&mut entry.config, data)?;
    if let Some(description) = params::string(data, "description")? {
        entry.description = description;
    }
    for (key, value) in parse_options(data)? {
        if key == "version" {
            check_version_change(entry, &value)?;
        }
        entry.options.insert(key, value);
    }
    Ok(())
}

/// Allows a KV mount to move from version 1 to 2, and nothing else.
fn check_version_change(entry: &MountEntry, version: &str) -> Result<(), Error> {
    if entry.kind != "kv" {
        return Err(Error::bad_request(format!(
            "secrets engine {:?} does not allow setting a version",
            entry.kind
        )));
    }
    let current = entry.options.get("version").map_or("1", String::as_str);
    match (current, version) {
        (_, "1" | "2") if current == version => Ok(()),
        ("1", "2") => Ok(()),
        ("2", "1") => Err(Error::bad_request(
            "cannot downgrade a KV mount from version 2 to version 1",
        )),
        _ => Err(Error::bad_request(format!(
            "invalid KV version {version:?}: use \"1\" or \"2\""
        ))),
    }
}
