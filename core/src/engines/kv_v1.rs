//! KV version 1 (and `generic`): one unversioned JSON object per key.

use serde_json::{Map, Value, json};

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Logical, Operation, Request, Response};
use crate::time::parse_duration;

use super::Location;

/// Serves a request for `path` below the mount at `location`. Reads report `ttl` seconds as
/// their lease duration unless the secret stores its own `ttl` or `lease`.
pub(crate) fn handle(
    request: &Request,
    path: &str,
    location: &Location,
    mount_type: &str,
    ttl: u64,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    if request.operation == Operation::List {
        return list(path, location, view);
    }
    if path.is_empty() || path.ends_with('/') {
        return Err(Error::bad_request(format!(
            "invalid secret path {path:?}: a secret needs a name that does not end in \"/\""
        )));
    }
    let key = location.key(path);
    match request.operation {
        Operation::Read => read(&key, location, mount_type, ttl, view),
        Operation::Update => write(&key, location, &request.data, view),
        Operation::Delete => {
            view.delete(location.partition, &key)?;
            Ok(Response::NoContent)
        }
        Operation::List | Operation::Patch => Err(Error::unsupported_operation()),
    }
}

/// The key whose presence decides whether a write to `path` creates or updates it.
pub(crate) fn existence_key(location: &Location, path: &str) -> Option<String> {
    (!path.is_empty() && !path.ends_with('/')).then(|| location.key(path))
}

/// Lists the names directly below `path`; an empty folder is a 404, as in Vault.
pub(crate) fn list(
    path: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let mut folder = location.key(path);
    if !folder.ends_with('/') && !path.is_empty() {
        folder.push('/');
    }
    let keys = view.list(location.partition, &folder)?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

/// Reads the secret at `key` with its lease duration.
pub(crate) fn read(
    key: &str,
    location: &Location,
    mount_type: &str,
    ttl: u64,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let Some(data) = view.get_json::<Map<String, Value>>(location.partition, key)? else {
        return Err(Error::not_found());
    };
    let lease_duration = stored_ttl(&data).unwrap_or(ttl);
    let mut logical = Logical::with_data(data);
    logical.lease_duration = lease_duration;
    logical.mount_type = mount_type.to_owned();
    Ok(Response::logical(logical))
}

/// Stores the request body as the secret at `key`.
pub(crate) fn write(
    key: &str,
    location: &Location,
    data: &Map<String, Value>,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    if data.is_empty() {
        return Err(Error::bad_request("missing data fields"));
    }
    view.put_json(location.partition, key, data)?;
    Ok(Response::NoContent)
}

/// The lease duration a secret asks for with its own `ttl` or `lease` field.
fn stored_ttl(data: &Map<String, Value>) -> Option<u64> {
    let value = data.get("ttl").or_else(|| data.get("lease"))?;
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => parse_duration(text).ok().map(|ttl| ttl.as_secs()),
        _ => None,
    }
}
