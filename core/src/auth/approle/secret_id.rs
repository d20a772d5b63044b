//! Secret-ids: generation, listing by accessor, lookup and destruction.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Salt;
use super::role::{self, RoleEntry};
use crate::auth::Mount;
use crate::auth::cidr;
use crate::auth::fields::string_list;
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::request::{Response, Secret};
use crate::time::Timestamp;

/// The expiration time Vault reports for a secret-id that never expires: Go's zero time.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// A stored secret-id, kept under the HMAC of the secret-id itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SecretIdEntry {
    pub(super) accessor: String,
    /// Logins left; 0 for unlimited.
    pub(super) num_uses: u64,
    /// Seconds the secret-id lives; 0 for ever.
    pub(super) ttl: u64,
    pub(super) creation_time: Timestamp,
    pub(super) expiration_time: Option<Timestamp>,
    pub(super) last_updated_time: Timestamp,
    pub(super) metadata: BTreeMap<String, String>,
    /// CIDR blocks a login with this secret-id must come from; empty for anywhere.
    pub(super) cidr_list: Vec<String>,
}

impl SecretIdEntry {
    /// Whether the secret-id has expired at `now`.
    pub(super) fn is_expired(&self, now: Timestamp) -> bool {
        self.expiration_time.is_some_and(|expiry| now >= expiry)
    }

    fn to_json(&self) -> Map<String, Value> {
        let expiration = self
            .expiration_time
            .map_or_else(|| NEVER.to_owned(), Timestamp::to_rfc3339);
        let fields = [
            ("cidr_list", json!(self.cidr_list)),
            ("creation_time", json!(self.creation_time.to_rfc3339())),
            ("expiration_time", json!(expiration)),
            (
                "last_updated_time",
                json!(self.last_updated_time.to_rfc3339()),
            ),
            ("metadata", json!(self.metadata)),
            ("secret_id_accessor", json!(self.accessor)),
            ("secret_id_num_uses", json!(self.num_uses)),
            ("secret_id_ttl", json!(self.ttl)),
            ("token_bound_cidrs", json!([])),
        ];
        fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }
}

/// The storage index from an accessor to its secret-id's HMAC.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AccessorEntry {
    secret_id_hmac: String,
}

impl fmt::Debug for AccessorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessorEntry(..)")
    }
}

pub(super) fn secret_key(mount: &Mount, role: &RoleEntry, secret_hmac: &str) -> String {
    mount
        .location
        .key(&format!("secret_id/{}/{secret_hmac}", role.uuid))
}

pub(super) fn accessor_key(mount: &Mount, role: &RoleEntry, accessor: &str) -> String {
    mount
        .location
        .key(&format!("accessor/{}/{accessor}", role.uuid))
}

/// Reads the secret-id with `secret_hmac` of `role`.
pub(super) fn load(
    mount: &Mount,
    view: &SecureView<'_>,
    role: &RoleEntry,
    secret_hmac: &str,
) -> Result<Option<SecretIdEntry>, Error> {
    let key = secret_key(mount, role, secret_hmac);
    view.get_json(role.secret_partition(mount), &key)
}

/// Stores a secret-id and its accessor index.
pub(super) fn save(
    mount: &Mount,
    view: &mut SecureView<'_>,
    role: &RoleEntry,
    secret_hmac: &str,
    entry: &SecretIdEntry,
) -> Result<(), Error> {
    let partition = role.secret_partition(mount);
    view.put_json(partition, &secret_key(mount, role, secret_hmac), entry)
}

/// Deletes a secret-id and its accessor index. Both deletes are blind.
pub(super) fn remove(
    mount: &Mount,
    view: &mut SecureView<'_>,
    role: &RoleEntry,
    secret_hmac: &str,
    accessor: &str,
) -> Result<(), Error> {
    let partition = role.secret_partition(mount);
    view.delete(partition, &secret_key(mount, role, secret_hmac))?;
    view.delete(partition, &accessor_key(mount, role, accessor))
}

/// The `secret_id` of a `custom-secret-id` request.
pub(super) fn custom_value(data: &Map<String, Value>) -> Result<Secret, Error> {
    match params::string(data, "secret_id")? {
        Some(text) if !text.trim().is_empty() => Ok(Secret::new(text)),
        _ => Err(Error::bad_request("missing secret_id")),
    }
}

/// Issues a secret-id for the role `name`: a fresh UUID, or `custom` when given.
pub(super) fn generate(
    mount: &Mount,
    view: &mut SecureView<'_>,
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
    custom: Option<Secret>,
) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    if !role.bind_secret_id {
        return Err(Error::bad_request(format!(
            "bind_secret_id is not set on role {name:?}, so it takes no secret-ids"
        )));
    }
    let num_uses = num_uses(&role, data)?;
    let ttl = ttl(&role, data)?;
    let cidr_list = cidr_list(&role, data)?;
    let metadata = metadata(data)?;
    if string_list(data, "token_bound_cidrs")?.is_some_and(|list| !list.is_empty()) {
        return Err(Error::bad_request(
            "token_bound_cidrs is not supported by this server: tokens cannot be bound to CIDR \
             blocks; remove the field",
        ));
    }

    let secret = match custom {
        Some(secret) => secret,
        None => Secret::new(crate::ids::uuid(view.rng())),
    };
    let salt = Salt::load(mount, view)?
        .ok_or_else(|| Error::internal("the approle mount has a role but no salt"))?;
    let secret_hmac = salt.hmac(secret.expose());
    if load(mount, view, &role, &secret_hmac)?.is_some() {
        return Err(Error::bad_request(
            "this secret_id is already registered for the role: choose another",
        ));
    }
    let entry = SecretIdEntry {
        accessor: crate::ids::uuid(view.rng()),
        num_uses,
        ttl,
        creation_time: now,
        expiration_time: (ttl > 0).then(|| now.saturating_add(Duration::from_secs(ttl))),
        last_updated_time: now,
        metadata,
        cidr_list,
    };
    save(mount, view, &role, &secret_hmac, &entry)?;
    let index = AccessorEntry {
        secret_id_hmac: secret_hmac,
    };
    let partition = role.secret_partition(mount);
    view.put_json(
        partition,
        &accessor_key(mount, &role, &entry.accessor),
        &index,
    )?;

    let mut out = Map::new();
    out.insert("secret_id".into(), json!(secret.expose()));
    out.insert("secret_id_accessor".into(), json!(entry.accessor));
    out.insert("secret_id_ttl".into(), json!(entry.ttl));
    out.insert("secret_id_num_uses".into(), json!(entry.num_uses));
    Ok(Response::data(out))
}

/// `num_uses`, defaulting to the role's; a role with a limit allows no more than it.
fn num_uses(role: &RoleEntry, data: &Map<String, Value>) -> Result<u64, Error> {
    let limit = role.secret_id_num_uses;
    let Some(uses) = params::uint(data, "num_uses")? else {
        return Ok(limit);
    };
    if limit > 0 && (uses == 0 || uses > limit) {
        return Err(Error::bad_request(format!(
            "num_uses cannot be higher than the role's secret_id_num_uses ({limit})"
        )));
    }
    Ok(uses)
}

/// `ttl` in seconds, defaulting to the role's; a role with a TTL allows no longer one.
fn ttl(role: &RoleEntry, data: &Map<String, Value>) -> Result<u64, Error> {
    let limit = role.secret_id_ttl;
    let Some(ttl) = params::duration(data, "ttl")?.map(|ttl| ttl.as_secs()) else {
        return Ok(limit);
    };
    if limit > 0 && (ttl == 0 || ttl > limit) {
        return Err(Error::bad_request(format!(
            "ttl cannot be longer than the role's secret_id_ttl ({limit}s)"
        )));
    }
    Ok(ttl)
}

/// `cidr_list`, which must lie inside the role's `secret_id_bound_cidrs` when it has any.
fn cidr_list(role: &RoleEntry, data: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let requested = string_list(data, "cidr_list")?.unwrap_or_default();
    let list = cidr::normalize("cidr_list", &requested)?;
    let bound = &role.secret_id_bound_cidrs;
    if !bound.is_empty() && !cidr::is_subset(&list, bound) {
        return Err(Error::bad_request(format!(
            "cidr_list {list:?} is not a subset of the role's secret_id_bound_cidrs {bound:?}"
        )));
    }
    Ok(list)
}

/// `metadata`: a JSON object of strings, or that object encoded as a string, as Vault's
/// clients send it.
fn metadata(data: &Map<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    let invalid = || {
        Error::bad_request(
            "invalid value for metadata: expected a JSON object of string values, or such an \
             object encoded as a string",
        )
    };
    let object = match data.get("metadata") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|_| invalid())?,
        Some(value) => value.clone(),
    };
    serde_json::from_value(object).map_err(|_| invalid())
}

/// Lists the accessors of a role's secret-ids.
pub(super) fn list(mount: &Mount, view: &SecureView<'_>, name: &str) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    let prefix = mount.location.key(&format!("accessor/{}/", role.uuid));
    let keys = view.list(role.secret_partition(mount), &prefix)?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

/// Finds the live secret-id named by the `secret_id` field: its HMAC and entry.
fn find_by_secret(
    mount: &Mount,
    view: &SecureView<'_>,
    now: Timestamp,
    role: &RoleEntry,
    data: &Map<String, Value>,
) -> Result<Option<(String, SecretIdEntry)>, Error> {
    let secret = custom_value(data)?;
    let Some(salt) = Salt::load(mount, view)? else {
        return Ok(None);
    };
    let secret_hmac = salt.hmac(secret.expose());
    let entry = load(mount, view, role, &secret_hmac)?;
    Ok(entry
        .filter(|entry| !entry.is_expired(now))
        .map(|entry| (secret_hmac, entry)))
}

/// Finds the secret-id named by the `secret_id_accessor` field: its HMAC and entry.
fn find_by_accessor(
    mount: &Mount,
    view: &SecureView<'_>,
    role: &RoleEntry,
    accessor: &str,
) -> Result<Option<(String, SecretIdEntry)>, Error> {
    let key = accessor_key(mount, role, accessor);
    let partition = role.secret_partition(mount);
    let Some(index) = view.get_json::<AccessorEntry>(partition, &key)? else {
        return Ok(None);
    };
    let entry = load(mount, view, role, &index.secret_id_hmac)?;
    Ok(entry.map(|entry| (index.secret_id_hmac, entry)))
}

fn accessor_field(data: &Map<String, Value>) -> Result<String, Error> {
    match params::string(data, "secret_id_accessor")? {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(Error::bad_request("missing secret_id_accessor")),
    }
}

fn accessor_not_found(accessor: &str) -> Error {
    Error::api(
        404,
        format!("failed to find accessor entry for secret_id_accessor: {accessor:?}"),
    )
}

/// Returns a secret-id's properties; an unknown or expired one is Vault's empty 204.
pub(super) fn lookup(
    mount: &Mount,
    view: &SecureView<'_>,
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    match find_by_secret(mount, view, now, &role, data)? {
        Some((_, entry)) => Ok(Response::data(entry.to_json())),
        None => Ok(Response::NoContent),
    }
}

/// Destroys a secret-id; destroying an unknown one succeeds.
pub(super) fn destroy(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    let secret = custom_value(data)?;
    let Some(salt) = Salt::load(mount, view)? else {
        return Ok(Response::NoContent);
    };
    let secret_hmac = salt.hmac(secret.expose());
    let entry = load(mount, view, &role, &secret_hmac)?;
    let partition = role.secret_partition(mount);
    view.delete(partition, &secret_key(mount, &role, &secret_hmac))?;
    if let Some(entry) = entry {
        view.delete(partition, &accessor_key(mount, &role, &entry.accessor))?;
    }
    Ok(Response::NoContent)
}

/// Returns the properties of the secret-id with an accessor.
pub(super) fn lookup_accessor(
    mount: &Mount,
    view: &SecureView<'_>,
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    let accessor = accessor_field(data)?;
    match find_by_accessor(mount, view, &role, &accessor)? {
        Some((_, entry)) if !entry.is_expired(now) => Ok(Response::data(entry.to_json())),
        _ => Err(accessor_not_found(&accessor)),
    }
}

/// Destroys the secret-id with an accessor. The accessor's index is deleted even when it is
/// unknown, so the write reaches the cluster that stores it.
pub(super) fn destroy_accessor(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let role = role::existing(mount, view, name)?;
    let accessor = accessor_field(data)?;
    let found = find_by_accessor(mount, view, &role, &accessor)?;
    let partition = role.secret_partition(mount);
    view.delete(partition, &accessor_key(mount, &role, &accessor))?;
    let Some((secret_hmac, _)) = found else {
        return Err(accessor_not_found(&accessor));
    };
    view.delete(partition, &secret_key(mount, &role, &secret_hmac))?;
    Ok(Response::NoContent)
}
