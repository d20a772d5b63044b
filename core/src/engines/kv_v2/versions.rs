//! `delete/`, `undelete/`, `destroy/` and `DELETE data/`: changing the state of versions.
//!
//! Each of these always writes: when the key is missing it issues a blind delete of the
//! metadata key, so a node that holds the mount read-only still forwards the request.

use serde_json::{Map, Value};

use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::request::Response;
use crate::time::Timestamp;

use super::super::Location;
use super::model::{KeyMetadata, metadata_key, version_key};

/// Soft-deletes the latest version of `path`.
pub(super) fn delete_latest(
    now: Timestamp,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let Some(mut metadata) = KeyMetadata::load(location, path, view)? else {
        return blind_delete(path, location, view);
    };
    let current = metadata.current_version;
    soft_delete(now, &mut metadata, &[current]);
    metadata.save(location, path, view)?;
    Ok(Response::NoContent)
}

/// Soft-deletes the versions listed in `versions`.
pub(super) fn delete(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let versions = params::versions(body)?;
    let Some(mut metadata) = KeyMetadata::load(location, path, view)? else {
        return blind_delete(path, location, view);
    };
    soft_delete(now, &mut metadata, &versions);
    metadata.save(location, path, view)?;
    Ok(Response::NoContent)
}

/// Clears the soft delete of the listed versions; destroyed versions stay destroyed.
pub(super) fn undelete(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let versions = params::versions(body)?;
    let Some(mut metadata) = KeyMetadata::load(location, path, view)? else {
        return blind_delete(path, location, view);
    };
    for version in versions {
        if let Some(meta) = metadata.versions.get_mut(&version) {
            if !meta.destroyed {
                meta.deletion_time = None;
            }
        }
    }
    metadata.updated_time = now;
    metadata.save(location, path, view)?;
    Ok(Response::NoContent)
}

/// Permanently removes the data of the listed versions and marks them destroyed.
pub(super) fn destroy(
    now: Timestamp,
    body: &Map<String, Value>,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let versions = params::versions(body)?;
    for version in &versions {
        view.delete(location.partition, &version_key(location, path, *version))?;
    }
    let Some(mut metadata) = KeyMetadata::load(location, path, view)? else {
        return Ok(Response::NoContent);
    };
    for version in versions {
        if let Some(meta) = metadata.versions.get_mut(&version) {
            meta.destroyed = true;
        }
    }
    metadata.updated_time = now;
    metadata.save(location, path, view)?;
    Ok(Response::NoContent)
}

/// Marks the listed live versions deleted at `now`; earlier deletion times are kept.
fn soft_delete(now: Timestamp, metadata: &mut KeyMetadata, versions: &[u64]) {
    for version in versions {
        let Some(meta) = metadata.versions.get_mut(version) else {
            continue;
        };
        if !meta.is_gone(now) {
            meta.deletion_time = Some(now);
        }
    }
    metadata.updated_time = now;
}

fn blind_delete(
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    view.delete(location.partition, &metadata_key(location, path))?;
    Ok(Response::NoContent)
}
