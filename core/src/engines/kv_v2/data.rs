//! `data/` and `subkeys/`: reading, writing and patching versions.

use serde_json::{Map, Value, json};

use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::request::{Logical, Response};
use crate::time::Timestamp;

use super::super::Location;
use super::model::{KeyMetadata, Settings, VersionMeta, version_key, versions_prefix};

/// Reads a version of `path`: the one named by `?version=`, or the latest.
pub(super) fn read(
    now: Timestamp,
    query: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let (metadata, version, meta) = find_version(query, path, location, view)?;
    let data = if meta.is_gone(now) {
        Value::Null
    } else {
        Value::Object(load_version(location, path, version, view)?)
    };
    let mut body = Map::new();
    body.insert("data".into(), data);
    body.insert("metadata".into(), metadata.version_json(version, &meta));
    Ok(Response::logical(envelope(body, meta.is_gone(now))))
}

/// Returns the key tree of a version with every leaf replaced by `null`, to `?depth=` levels.
pub(super) fn subkeys(
    now: Timestamp,
    query: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let depth = params::uint(query, "depth")?.unwrap_or(0);
    let (metadata, version, meta) = find_version(query, path, location, view)?;
    let tree = if meta.is_gone(now) {
        Value::Null
    } else {
        let data = load_version(location, path, version, view)?;
        key_tree(&data, depth, 1)
    };
    let mut body = Map::new();
    body.insert("subkeys".into(), tree);
    body.insert("metadata".into(), metadata.version_json(version, &meta));
    Ok(Response::logical(envelope(body, meta.is_gone(now))))
}

/// Writes `data` as a new version of `path`, subject to `options.cas`.
pub(super) fn write(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let data = match body.get("data") {
        Some(Value::Object(data)) => data.clone(),
        Some(Value::Null) | None => return Err(Error::bad_request("no data provided")),
        Some(_) => return Err(Error::bad_request("invalid data: expected a JSON object")),
    };
    let settings = Settings::load(location, view)?;
    let metadata = KeyMetadata::load(location, path, view)?;
    if let Err(error) = check_cas(body, &settings, metadata.as_ref()) {
        let current = metadata.as_ref().map_or(0, |meta| meta.current_version);
        return fail_after_write(error, current, path, location, view);
    }
    let metadata = metadata.unwrap_or_else(|| KeyMetadata::new(now));
    store_version(now, data, metadata, &settings, path, location, view)
}

/// Applies a JSON merge patch (RFC 7386) to the latest version and writes the result as a
/// new version. A missing, deleted or destroyed latest version is a 404.
pub(super) fn patch(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let patch = match body.get("data") {
        Some(Value::Object(patch)) => patch.clone(),
        _ => return Err(Error::bad_request("no data provided")),
    };
    let settings = Settings::load(location, view)?;
    let Some(metadata) = KeyMetadata::load(location, path, view)? else {
        return fail_after_write(Error::not_found(), 0, path, location, view);
    };
    let current = metadata.current_version;
    let live = metadata
        .versions
        .get(&current)
        .is_some_and(|meta| !meta.is_gone(now));
    if !live {
        return fail_after_write(Error::not_found(), current, path, location, view);
    }
    if let Err(error) = check_cas(body, &settings, Some(&metadata)) {
        return fail_after_write(error, current, path, location, view);
    }
    let mut data = Value::Object(load_version(location, path, current, view)?);
    merge_patch(&mut data, &Value::Object(patch));
    let Value::Object(data) = data else {
        return Err(Error::internal(
            "a merge patch of an object must stay an object",
        ));
    };
    store_version(now, data, metadata, &settings, path, location, view)
}

/// Returns `error` after a blind delete of version `current + 1` of `path`, which does not
/// exist yet, so the delete changes nothing, and the handler's error drops it anyway.
///
/// The delete is there for a secondary, whose copy of `path` may lag the primary's. There it is
/// a refused write to replicated data, so the request is forwarded. The primary then decides it
/// on its current state, and this node returns no error drawn from stale state.
fn fail_after_write(
    error: Error,
    current: u64,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let next = version_key(location, path, current.saturating_add(1));
    view.delete(location.partition, &next)?;
    Err(error)
}

/// Enforces `options.cas` and the `cas_required` setting against the current version.
fn check_cas(
    body: &Map<String, Value>,
    settings: &Settings,
    metadata: Option<&KeyMetadata>,
) -> Result<(), Error> {
    let cas = match body.get("options") {
        Some(Value::Object(options)) => params::uint(options, "cas")?,
        _ => None,
    };
    let required = settings.cas_required || metadata.is_some_and(|meta| meta.cas_required);
    let current = metadata.map_or(0, |meta| meta.current_version);
    match cas {
        None if required => Err(Error::bad_request(
            "check-and-set parameter required for this call",
        )),
        Some(expected) if expected != current => Err(Error::bad_request(
            "check-and-set parameter did not match the current version",
        )),
        _ => Ok(()),
    }
}

/// Stores `data` as the next version, prunes versions beyond the maximum, and saves the
/// metadata.
fn store_version(
    now: Timestamp,
    data: Map<String, Value>,
    mut metadata: KeyMetadata,
    settings: &Settings,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let version = metadata.current_version + 1;
    let delete_after = metadata.effective_delete_after(settings);
    let meta = VersionMeta {
        created_time: now,
        deletion_time: (!delete_after.is_zero()).then(|| now.saturating_add(delete_after)),
        destroyed: false,
    };
    view.put_json(
        location.partition,
        &version_key(location, path, version),
        &data,
    )?;
    metadata.current_version = version;
    metadata.updated_time = now;
    metadata.versions.insert(version, meta.clone());
    prune(&mut metadata, settings, path, location, view)?;
    metadata.save(location, path, view)?;
    let Value::Object(body) = metadata.version_json(version, &meta) else {
        return Err(Error::internal("version metadata must be a JSON object"));
    };
    Ok(Response::data(body))
}

/// Drops the oldest versions until at most the effective maximum remain.
pub(super) fn prune(
    metadata: &mut KeyMetadata,
    settings: &Settings,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<(), Error> {
    let max = metadata.effective_max_versions(settings);
    let mut pruned = false;
    while u64::try_from(metadata.versions.len()).unwrap_or(u64::MAX) > max {
        let Some((oldest, _)) = metadata.versions.pop_first() else {
            break;
        };
        view.delete(location.partition, &version_key(location, path, oldest))?;
        pruned = true;
    }
    if pruned {
        metadata.oldest_version = metadata.versions.keys().next().copied().unwrap_or(0);
    }
    Ok(())
}

/// Finds the version `?version=` names (0 or absent for the latest). A missing key or version
/// is a plain 404.
fn find_version(
    query: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<(KeyMetadata, u64, VersionMeta), Error> {
    let Some(metadata) = KeyMetadata::load(location, path, view)? else {
        return Err(Error::not_found());
    };
    let version = match params::uint(query, "version")? {
        None | Some(0) => metadata.current_version,
        Some(version) => version,
    };
    let meta = metadata
        .versions
        .get(&version)
        .cloned()
        .ok_or_else(Error::not_found)?;
    Ok((metadata, version, meta))
}

fn load_version(
    location: &Location,
    path: &str,
    version: u64,
    view: &SecureView<'_>,
) -> Result<Map<String, Value>, Error> {
    let key = version_key(location, path, version);
    view.get_json(location.partition, &key)?.ok_or_else(|| {
        Error::internal(format!(
            "version {version} is listed in the metadata but its data is missing below {}",
            versions_prefix(location, path)
        ))
    })
}

/// A 200 envelope, or the 404 envelope Vault sends for a deleted or destroyed version.
fn envelope(body: Map<String, Value>, gone: bool) -> Logical {
    let mut logical = Logical::with_data(body);
    if gone {
        logical.status = 404;
    }
    logical
}

/// Builds the key tree of `data` with leaves as `null`, expanding nested objects while `level`
/// is within `depth` (0 for no limit).
fn key_tree(data: &Map<String, Value>, depth: u64, level: u64) -> Value {
    let tree: Map<String, Value> = data
        .iter()
        .map(|(key, value)| {
            let child = match value {
                Value::Object(inner) if depth == 0 || level < depth => {
                    key_tree(inner, depth, level + 1)
                }
                _ => Value::Null,
            };
            (key.clone(), child)
        })
        .collect();
    json!(tree)
}

/// Applies `patch` to `target` as RFC 7386 describes: objects merge key by key, `null`
/// removes a key, and any other value replaces the target.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Stores `data` as version 1 of a new key, as the upgrade of a version 1 mount does.
pub(crate) fn import(
    now: Timestamp,
    data: Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<(), Error> {
    let metadata = KeyMetadata::new(now);
    store_version(
        now,
        data,
        metadata,
        &Settings::default(),
        path,
        location,
        view,
    )?;
    Ok(())
}
