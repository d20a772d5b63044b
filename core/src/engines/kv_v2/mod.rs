//! KV version 2: versioned secrets with check-and-set, soft delete, destroy and metadata.
//!
//! The first segment below the mount picks the endpoint: `config`, `data/`, `subkeys/`,
//! `delete/`, `undelete/`, `destroy/` or `metadata/`. Any other path is the v1 form, and a
//! v2 mount returns a 404 with a warning for it.

mod data;
mod metadata;
mod model;
mod versions;

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Logical, Operation, Request, Response};
use crate::time::Timestamp;

use super::Location;

pub(crate) use data::import;

/// The warning Vault gives for a v1-style path on a v2 mount.
const INVALID_PATH_WARNING: &str = "Invalid path for a versioned K/V secrets engine. See the API \
    docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' \
    for this operation.";

/// Serves a request for `path` below the v2 mount at `location`.
pub(crate) fn handle(
    now: Timestamp,
    request: &Request,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let mut response = route(now, request, path, location, view)?;
    if let Response::Logical(logical) = &mut response {
        logical.mount_type = "kv".into();
    }
    Ok(response)
}

fn route(
    now: Timestamp,
    request: &Request,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let (endpoint, key) = split_endpoint(path);
    let key = key.trim_end_matches('/');
    let operation = request.operation;
    match (endpoint, operation) {
        ("config", _) if !key.is_empty() => Err(invalid_path()),
        ("config", Operation::Read) => metadata::read_config(location, view),
        ("config", Operation::Update) => metadata::write_config(&request.data, location, view),
        ("metadata", Operation::List) => metadata::list(path, location, view),
        ("data" | "subkeys" | "delete" | "undelete" | "destroy" | "metadata", _)
            if key.is_empty() =>
        {
            Err(Error::bad_request(format!(
                "missing secret path: use {endpoint}/<path>"
            )))
        }
        ("data", Operation::Read) => data::read(now, &request.data, key, location, view),
        ("data", Operation::Update) => data::write(now, &request.data, key, location, view),
        ("data", Operation::Patch) => data::patch(now, &request.data, key, location, view),
        ("data", Operation::Delete) => versions::delete_latest(now, key, location, view),
        ("subkeys", Operation::Read) => data::subkeys(now, &request.data, key, location, view),
        ("delete", Operation::Update) => versions::delete(now, &request.data, key, location, view),
        ("undelete", Operation::Update) => {
            versions::undelete(now, &request.data, key, location, view)
        }
        ("destroy", Operation::Update) => {
            versions::destroy(now, &request.data, key, location, view)
        }
        ("metadata", Operation::Read) => metadata::read(key, location, view),
        ("metadata", Operation::Update) => metadata::write(now, &request.data, key, location, view),
        ("metadata", Operation::Patch) => metadata::patch(now, &request.data, key, location, view),
        ("metadata", Operation::Delete) => metadata::delete(key, location, view),
        ("config" | "data" | "subkeys" | "delete" | "undelete" | "destroy", _) => {
            Err(Error::unsupported_operation())
        }
        _ => Ok(Response::logical(invalid_path_response())),
    }
}

/// Returns the key whose presence decides whether a write to `path` creates or updates it.
pub(crate) fn existence_key(location: &Location, path: &str) -> Option<String> {
    let (endpoint, key) = split_endpoint(path);
    let key = key.trim_end_matches('/');
    match endpoint {
        "data" | "metadata" if !key.is_empty() => Some(model::metadata_key(location, key)),
        _ => None,
    }
}

/// Splits `data/foo/bar` into `("data", "foo/bar")`.
fn split_endpoint(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

fn invalid_path_response() -> Logical {
    Logical {
        status: 404,
        warnings: vec![INVALID_PATH_WARNING.to_owned()],
        ..Logical::default()
    }
}

fn invalid_path() -> Error {
    Error::api(404, INVALID_PATH_WARNING)
}

#[cfg(test)]
mod tests;
