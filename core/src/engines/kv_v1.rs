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

/// Returns the key whose presence decides whether a write to `path` creates or updates it.
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

/// Returns the lease duration a secret sets with its own `ttl` or `lease` field.
fn stored_ttl(data: &Map<String, Value>) -> Option<u64> {
    let value = data.get("ttl").or_else(|| data.get("lease"))?;
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => parse_duration(text).ok().map(|ttl| ttl.as_secs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engines::testing::Harness;
    use crate::request::Operation::{Delete, List, Read, Update};
    use crate::storage::Partition;

    fn with_v1_mount() -> Harness {
        let mut harness = Harness::new();
        harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
        harness
    }

    #[test]
    fn read_returns_written_map() {
        let mut harness = with_v1_mount();
        harness.ok(Update, "secret/foo", json!({"a": "b", "n": 1}));
        let logical = harness.logical(Read, "secret/foo", json!({}));
        assert_eq!(logical.data, json!({"a": "b", "n": 1}).as_object().cloned());
        assert_eq!(logical.lease_duration, 2_764_800);
    }

    #[test]
    fn stored_ttl_sets_lease_duration() {
        let mut harness = with_v1_mount();
        harness.ok(Update, "secret/foo", json!({"ttl": "1h"}));
        assert_eq!(
            harness
                .logical(Read, "secret/foo", json!({}))
                .lease_duration,
            3600
        );
    }

    #[test]
    fn missing_secret_is_plain_404() {
        let mut harness = with_v1_mount();
        assert_eq!(harness.fail(Read, "secret/nope", json!({})), (404, vec![]));
    }

    #[test]
    fn empty_write_is_rejected() {
        let mut harness = with_v1_mount();
        let (status, messages) = harness.fail(Update, "secret/foo", json!({}));
        assert_eq!(status, 400);
        assert_eq!(messages, vec!["missing data fields".to_string()]);
    }

    #[test]
    fn delete_removes_secret() {
        let mut harness = with_v1_mount();
        harness.ok(Update, "secret/foo", json!({"a": "b"}));
        harness.ok(Delete, "secret/foo", json!({}));
        assert_eq!(harness.fail(Read, "secret/foo", json!({})).0, 404);
    }

    #[test]
    fn delete_of_missing_secret_still_writes() {
        let mut harness = with_v1_mount();
        harness.ok(Delete, "secret/never", json!({}));
    }

    #[test]
    fn list_shows_folders_sorted() {
        let mut harness = with_v1_mount();
        harness.ok(Update, "secret/foo", json!({"a": "b"}));
        harness.ok(Update, "secret/bar/baz", json!({"a": "b"}));
        let data = harness.data(List, "secret/", json!({}));
        assert_eq!(data["keys"], json!(["bar/", "foo"]));
        let data = harness.data(List, "secret/bar", json!({}));
        assert_eq!(data["keys"], json!(["baz"]));
    }

    #[test]
    fn empty_folder_lists_as_404() {
        let mut harness = with_v1_mount();
        assert_eq!(harness.fail(List, "secret/none/", json!({})).0, 404);
    }

    #[test]
    fn keys_may_contain_colons() {
        let mut harness = with_v1_mount();
        harness.ok(Update, "secret/http:/test.com", json!({"a": "b"}));
        let data = harness.data(Read, "secret/http:/test.com", json!({}));
        assert_eq!(data["a"], json!("b"));
    }

    #[test]
    fn stored_values_are_ciphertext() {
        let mut harness = with_v1_mount();
        harness.ok(
            Update,
            "secret/foo",
            json!({"needle": "plaintext-marker-7731"}),
        );
        for (key, value) in harness.storage.dump(Partition::Shared) {
            let text = String::from_utf8_lossy(&value);
            assert!(
                !text.contains("plaintext-marker-7731"),
                "plaintext at {key}"
            );
            assert!(!text.contains("needle"), "field name in clear at {key}");
        }
    }

    #[test]
    fn generic_mount_behaves_as_v1() {
        let mut harness = Harness::new();
        harness.ok(Update, "sys/mounts/old", json!({"type": "generic"}));
        harness.ok(Update, "old/foo", json!({"a": "b"}));
        let logical = harness.logical(Read, "old/foo", json!({}));
        assert_eq!(logical.mount_type, "generic");
        assert_eq!(logical.data.unwrap()["a"], json!("b"));
    }
}
