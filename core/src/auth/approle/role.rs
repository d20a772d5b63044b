//! AppRole roles: `role/<name>`, its role-id and its per-field endpoints.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Salt;
use crate::auth::Mount;
use crate::auth::cidr;
use crate::auth::fields::{check_name, string_list};
use crate::auth::token_fields::TokenFields;
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::request::{Operation, Response};
use crate::storage::Partition;

/// A stored role.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RoleEntry {
    /// A random id that names the storage of this role's secret-ids.
    pub(super) uuid: String,
    /// The role-id, a credential: it is never logged and appears in storage keys only as an
    /// HMAC.
    pub(super) role_id: String,
    pub(super) bind_secret_id: bool,
    pub(super) secret_id_bound_cidrs: Vec<String>,
    pub(super) secret_id_num_uses: u64,
    /// Seconds; 0 for secret-ids that never expire.
    pub(super) secret_id_ttl: u64,
    pub(super) local_secret_ids: bool,
    #[serde(flatten)]
    pub(super) token: TokenFields,
}

impl fmt::Debug for RoleEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleEntry")
            .field("uuid", &self.uuid)
            .field("role_id", &"..")
            .field("bind_secret_id", &self.bind_secret_id)
            .field("local_secret_ids", &self.local_secret_ids)
            .finish_non_exhaustive()
    }
}

impl RoleEntry {
    /// The partition of this role's secret-ids.
    pub(super) fn secret_partition(&self, mount: &Mount) -> Partition {
        if self.local_secret_ids {
            Partition::Local
        } else {
            mount.location.partition
        }
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut data = Map::new();
        self.token.write_json(&mut data);
        let fields = [
            ("bind_secret_id", json!(self.bind_secret_id)),
            ("secret_id_bound_cidrs", json!(self.secret_id_bound_cidrs)),
            ("secret_id_num_uses", json!(self.secret_id_num_uses)),
            ("secret_id_ttl", json!(self.secret_id_ttl)),
            ("local_secret_ids", json!(self.local_secret_ids)),
            ("policies", json!(self.token.token_policies)),
            ("period", json!(self.token.token_period)),
        ];
        for (key, value) in fields {
            data.insert(key.to_owned(), value);
        }
        data
    }
}

/// The per-field endpoints `role/<name>/<path>` and the request fields each one reads and
/// writes, the current name first.
const FIELD_PATHS: [(&str, &[&str]); 11] = [
    ("policies", &["token_policies", "policies"]),
    ("period", &["token_period", "period"]),
    ("bind-secret-id", &["bind_secret_id"]),
    ("secret-id-bound-cidrs", &["secret_id_bound_cidrs"]),
    (
        "bound-cidr-list",
        &["secret_id_bound_cidrs", "bound_cidr_list"],
    ),
    ("secret-id-num-uses", &["secret_id_num_uses"]),
    ("secret-id-ttl", &["secret_id_ttl"]),
    ("token-ttl", &["token_ttl"]),
    ("token-max-ttl", &["token_max_ttl"]),
    ("token-num-uses", &["token_num_uses"]),
    ("local-secret-ids", &["local_secret_ids"]),
];

/// Whether `path` below `role/<name>/` is a per-field endpoint.
pub(super) fn is_field_path(path: &str) -> bool {
    FIELD_PATHS.iter().any(|(name, _)| *name == path)
}

pub(super) fn role_key(mount: &Mount, name: &str) -> String {
    mount.location.key(&format!("role/{name}"))
}

fn role_id_key(mount: &Mount, role_id_hmac: &str) -> String {
    mount.location.key(&format!("role_id/{role_id_hmac}"))
}

/// Reads the role `name` (already lowercased).
pub(super) fn load(
    mount: &Mount,
    view: &SecureView<'_>,
    name: &str,
) -> Result<Option<RoleEntry>, Error> {
    view.get_json(mount.location.partition, &role_key(mount, name))
}

/// Reads the role `name`, or fails with 400 as Vault does for a missing role.
pub(super) fn existing(
    mount: &Mount,
    view: &SecureView<'_>,
    name: &str,
) -> Result<RoleEntry, Error> {
    load(mount, view, &name.to_lowercase())?
        .ok_or_else(|| Error::bad_request(format!("role {name:?} does not exist")))
}

/// Finds the name of the role whose role-id has `role_id_hmac`.
pub(super) fn name_for_role_id(
    mount: &Mount,
    view: &SecureView<'_>,
    role_id_hmac: &str,
) -> Result<Option<String>, Error> {
    view.get_json(mount.location.partition, &role_id_key(mount, role_id_hmac))
}

pub(super) fn list(mount: &Mount, view: &SecureView<'_>) -> Result<Response, Error> {
    let keys = view.list(mount.location.partition, &mount.location.key("role/"))?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

pub(super) fn read(mount: &Mount, view: &SecureView<'_>, name: &str) -> Result<Response, Error> {
    match load(mount, view, &name.to_lowercase())? {
        Some(role) => Ok(Response::data(role.to_json())),
        None => Err(Error::not_found()),
    }
}

/// Creates or updates a role.
pub(super) fn write(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    check_name("role", &name)?;
    let existing = load(mount, view, &name)?;
    let old_role_id = existing.as_ref().map(|role| role.role_id.clone());
    let mut role = match existing {
        Some(role) => {
            if params::boolean(data, "local_secret_ids")?
                .is_some_and(|local| local != role.local_secret_ids)
            {
                return Err(Error::bad_request(
                    "local_secret_ids can only be set when the role is created",
                ));
            }
            role
        }
        None => new_role(view, data)?,
    };
    if let Some(role_id) = params::string(data, "role_id")? {
        role.role_id = checked_role_id(role_id)?;
    }
    apply(&mut role, data)?;
    save(mount, view, &name, &role, old_role_id.as_deref())?;
    Ok(Response::NoContent)
}

fn new_role(view: &mut SecureView<'_>, data: &Map<String, Value>) -> Result<RoleEntry, Error> {
    Ok(RoleEntry {
        uuid: crate::ids::uuid(view.rng()),
        role_id: crate::ids::uuid(view.rng()),
        bind_secret_id: true,
        secret_id_bound_cidrs: Vec::new(),
        secret_id_num_uses: 0,
        secret_id_ttl: 0,
        local_secret_ids: params::boolean(data, "local_secret_ids")?.unwrap_or(false),
        token: TokenFields::default(),
    })
}

/// Applies the role settings present in `data`.
fn apply(role: &mut RoleEntry, data: &Map<String, Value>) -> Result<(), Error> {
    if let Some(bind) = params::boolean(data, "bind_secret_id")? {
        role.bind_secret_id = bind;
    }
    let cidrs = match string_list(data, "secret_id_bound_cidrs")? {
        Some(list) => Some(list),
        None => string_list(data, "bound_cidr_list")?,
    };
    if let Some(list) = cidrs {
        role.secret_id_bound_cidrs = cidr::normalize("secret_id_bound_cidrs", &list)?;
    }
    if let Some(uses) = params::uint(data, "secret_id_num_uses")? {
        role.secret_id_num_uses = uses;
    }
    if let Some(ttl) = params::duration(data, "secret_id_ttl")? {
        role.secret_id_ttl = ttl.as_secs();
    }
    role.token.update(data)?;
    if !role.bind_secret_id && role.secret_id_bound_cidrs.is_empty() {
        return Err(Error::bad_request(
            "at least one constraint should be enabled on the role: set bind_secret_id or \
             secret_id_bound_cidrs",
        ));
    }
    Ok(())
}

fn checked_role_id(role_id: String) -> Result<String, Error> {
    if role_id.trim().is_empty() {
        return Err(Error::bad_request("missing role_id: it must not be empty"));
    }
    Ok(role_id)
}

/// Stores `role` and its role-id index, replacing the index of `old_role_id`.
fn save(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    role: &RoleEntry,
    old_role_id: Option<&str>,
) -> Result<(), Error> {
    let salt = Salt::load_or_create(mount, view)?;
    let new_hmac = salt.hmac(&role.role_id);
    if old_role_id != Some(role.role_id.as_str()) {
        if let Some(owner) = name_for_role_id(mount, view, &new_hmac)? {
            if owner != name {
                return Err(Error::bad_request(
                    "role_id is already in use by another role: choose another role_id",
                ));
            }
        }
    }
    view.put_json(mount.location.partition, &role_key(mount, name), role)?;
    if let Some(old) = old_role_id.filter(|old| *old != role.role_id) {
        view.delete(
            mount.location.partition,
            &role_id_key(mount, &salt.hmac(old)),
        )?;
    }
    view.put_json(
        mount.location.partition,
        &role_id_key(mount, &new_hmac),
        &name,
    )
}

/// Deletes a role, its role-id index and its secret-ids.
///
/// NOTE: the local secret-ids of a role with `local_secret_ids` on a replicated mount stay in
/// the local partition of every cluster, because this request may run on the primary for a
/// secondary. They cannot be used: they are keyed by the deleted role's uuid.
pub(super) fn delete(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    let role = load(mount, view, &name)?;
    view.delete(mount.location.partition, &role_key(mount, &name))?;
    let Some(role) = role else {
        return Ok(Response::NoContent);
    };
    if let Some(salt) = Salt::load(mount, view)? {
        let key = role_id_key(mount, &salt.hmac(&role.role_id));
        view.delete(mount.location.partition, &key)?;
    }
    if role.secret_partition(mount) == mount.location.partition {
        for folder in ["secret_id", "accessor"] {
            let prefix = mount.location.key(&format!("{folder}/{}/", role.uuid));
            crate::mounts::purge_prefix(view.raw(), mount.location.partition, &prefix)?;
        }
    }
    Ok(Response::NoContent)
}

pub(super) fn read_role_id(
    mount: &Mount,
    view: &SecureView<'_>,
    name: &str,
) -> Result<Response, Error> {
    let Some(role) = load(mount, view, &name.to_lowercase())? else {
        return Err(Error::not_found());
    };
    let mut data = Map::new();
    data.insert("role_id".into(), json!(role.role_id));
    Ok(Response::data(data))
}

pub(super) fn write_role_id(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    let mut role = existing(mount, view, &name)?;
    let Some(role_id) = params::string(data, "role_id")? else {
        return Err(Error::bad_request("missing role_id"));
    };
    let old_role_id = role.role_id.clone();
    role.role_id = checked_role_id(role_id)?;
    save(mount, view, &name, &role, Some(&old_role_id))?;
    Ok(Response::NoContent)
}

/// Serves `role/<name>/<path>` for one setting: read it, set it, or reset it to its default.
pub(super) fn field(
    mount: &Mount,
    view: &mut SecureView<'_>,
    operation: Operation,
    name: &str,
    path: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let names = FIELD_PATHS
        .iter()
        .find(|(candidate, _)| *candidate == path)
        .map(|(_, names)| *names)
        .unwrap_or_default();
    let name = name.to_lowercase();
    let Some(mut role) = load(mount, view, &name)? else {
        return match operation {
            Operation::Read => Err(Error::not_found()),
            _ => Err(Error::bad_request(format!("role {name:?} does not exist"))),
        };
    };
    let body: Map<String, Value> = match operation {
        Operation::Read => {
            let all = role.to_json();
            let data = names
                .iter()
                .filter_map(|key| {
                    all.get(*key)
                        .map(|value| ((*key).to_owned(), value.clone()))
                })
                .collect();
            return Ok(Response::data(data));
        }
        Operation::Delete => default_body(names[0]),
        _ => data
            .iter()
            .filter(|(key, _)| names.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    };
    if body.is_empty() {
        return Err(Error::bad_request(format!("missing {}", names[0])));
    }
    if names[0] == "local_secret_ids" {
        return Err(Error::bad_request(
            "local_secret_ids can only be set when the role is created",
        ));
    }
    apply(&mut role, &body)?;
    let role_id = role.role_id.clone();
    save(mount, view, &name, &role, Some(&role_id))?;
    Ok(Response::NoContent)
}

/// The request body that resets `field` to its default.
fn default_body(field: &str) -> Map<String, Value> {
    let value = match field {
        "bind_secret_id" => json!(true),
        "local_secret_ids" => json!(false),
        "token_policies" | "secret_id_bound_cidrs" => json!([]),
        _ => json!(0),
    };
    let mut body = Map::new();
    body.insert(field.to_owned(), value);
    body
}
