//! `config` and `metadata/`: settings of the mount and of each key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::barrier::SecureView;
use crate::engines::{kv_v1, params};
use crate::error::Error;
use crate::request::Response;
use crate::time::Timestamp;

use super::super::Location;
use super::data::{merge_patch, prune};
use super::model::{KeyMetadata, Settings, metadata_key, versions_prefix};

/// The maximum number of `custom_metadata` keys per secret.
const MAX_CUSTOM_KEYS: usize = 64;
/// The maximum length in bytes of a `custom_metadata` key.
const MAX_CUSTOM_KEY_LEN: usize = 128;
/// The maximum length in bytes of a `custom_metadata` value.
const MAX_CUSTOM_VALUE_LEN: usize = 512;

/// Returns the mount's settings.
pub(super) fn read_config(location: &Location, view: &SecureView<'_>) -> Result<Response, Error> {
    Ok(Response::data(Settings::load(location, view)?.to_json()))
}

/// Updates the mount's settings with the fields present in `body`.
pub(super) fn write_config(
    body: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let mut settings = Settings::load(location, view)?;
    if let Some(max) = params::uint(body, "max_versions")? {
        settings.max_versions = max;
    }
    if let Some(required) = params::boolean(body, "cas_required")? {
        settings.cas_required = required;
    }
    if let Some(after) = params::duration(body, "delete_version_after")? {
        settings.delete_version_after = after;
    }
    settings.save(location, view)?;
    Ok(Response::NoContent)
}

/// Lists the keys and folders below `metadata/<path>`.
pub(super) fn list(
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    kv_v1::list(path, location, view)
}

/// Returns the metadata of `path`.
pub(super) fn read(
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let metadata = KeyMetadata::load(location, path, view)?.ok_or_else(Error::not_found)?;
    Ok(Response::data(metadata.to_json()))
}

/// Sets the metadata fields present in `body`, creating the key's metadata when needed.
pub(super) fn write(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let metadata =
        KeyMetadata::load(location, path, view)?.unwrap_or_else(|| KeyMetadata::new(now));
    let custom = params::string_map(body, "custom_metadata")?;
    let custom = custom.map(|map| to_string_map(&map));
    update(now, body, metadata, custom, path, location, view)
}

/// Merge-patches the metadata of an existing key; `null` in `custom_metadata` removes a key.
pub(super) fn patch(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let metadata = KeyMetadata::load(location, path, view)?.ok_or_else(Error::not_found)?;
    let custom = match body.get("custom_metadata") {
        None => None,
        Some(patch) => {
            let mut merged = serde_json::to_value(&metadata.custom_metadata)?;
            merge_patch(&mut merged, patch);
            let mut wrapper = Map::new();
            wrapper.insert("custom_metadata".into(), merged);
            params::string_map(&wrapper, "custom_metadata")?.map(|map| to_string_map(&map))
        }
    };
    update(now, body, metadata, custom, path, location, view)
}

/// Deletes every version and the metadata of `path`.
pub(super) fn delete(
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let prefix = versions_prefix(location, path);
    crate::mounts::purge_prefix(view.raw(), location.partition, &prefix)?;
    view.delete(location.partition, &metadata_key(location, path))?;
    Ok(Response::NoContent)
}

fn update(
    now: Timestamp,
    body: &Map<String, Value>,
    mut metadata: KeyMetadata,
    custom: Option<BTreeMap<String, String>>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    if let Some(max) = params::uint(body, "max_versions")? {
        metadata.max_versions = max;
    }
    if let Some(required) = params::boolean(body, "cas_required")? {
        metadata.cas_required = required;
    }
    if let Some(after) = params::duration(body, "delete_version_after")? {
        metadata.delete_version_after = after;
    }
    if let Some(custom) = custom {
        check_custom_metadata(&custom)?;
        metadata.custom_metadata = Some(custom);
    }
    metadata.updated_time = now;
    let settings = Settings::load(location, view)?;
    prune(&mut metadata, &settings, path, location, view)?;
    metadata.save(location, path, view)?;
    Ok(Response::NoContent)
}

fn to_string_map(map: &Map<String, Value>) -> BTreeMap<String, String> {
    map.iter()
        .filter_map(|(key, value)| value.as_str().map(|text| (key.clone(), text.to_owned())))
        .collect()
}

/// Applies Vault's limits on `custom_metadata`: at most 64 keys, keys of at most 128 bytes
/// and values of at most 512 bytes.
fn check_custom_metadata(custom: &BTreeMap<String, String>) -> Result<(), Error> {
    if custom.len() > MAX_CUSTOM_KEYS {
        return Err(Error::bad_request(format!(
            "invalid custom_metadata: {} keys, at most {MAX_CUSTOM_KEYS} are allowed",
            custom.len()
        )));
    }
    for (key, value) in custom {
        if key.is_empty() || key.len() > MAX_CUSTOM_KEY_LEN {
            return Err(Error::bad_request(format!(
                "invalid custom_metadata key {key:?}: keys need 1 to {MAX_CUSTOM_KEY_LEN} bytes"
            )));
        }
        if value.len() > MAX_CUSTOM_VALUE_LEN {
            return Err(Error::bad_request(format!(
                "invalid custom_metadata value for {key:?}: at most {MAX_CUSTOM_VALUE_LEN} bytes"
            )));
        }
    }
    Ok(())
}
