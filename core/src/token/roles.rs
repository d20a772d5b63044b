//! Token roles (`auth/token/roles/:name`): named presets for `auth/token/create/:name`.
//!
//! Roles are configuration, so they live in the shared partition and replicate.

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::params;
use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Operation, Request, Response};
use crate::storage::{Partition, Transaction};

const ROLE_PREFIX: &str = "token/role/";

/// A stored role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRole {
    pub(crate) name: String,
    /// Policies tokens of this role may have; empty means the parent's policies rule.
    pub(crate) allowed_policies: Vec<String>,
    /// Policies tokens of this role may never have.
    pub(crate) disallowed_policies: Vec<String>,
    /// Whether tokens of this role have no parent. It needs no sudo.
    pub(crate) orphan: bool,
    pub(crate) renewable: bool,
    /// Seconds; 0 for tokens that are not periodic.
    pub(crate) period: u64,
    /// Seconds; 0 for none.
    pub(crate) explicit_max_ttl: u64,
    /// Appended to the token's path, for revoking by prefix.
    pub(crate) path_suffix: String,
}

impl TokenRole {
    fn new(name: &str) -> TokenRole {
        TokenRole {
            name: name.to_owned(),
            allowed_policies: Vec::new(),
            disallowed_policies: Vec::new(),
            orphan: false,
            renewable: true,
            period: 0,
            explicit_max_ttl: 0,
            path_suffix: String::new(),
        }
    }
}

/// Reads the role called `name`, if it exists.
pub(crate) fn get(view: &SecureView<'_>, name: &str) -> Result<Option<TokenRole>, Error> {
    view.get_json(Partition::Shared, &format!("{ROLE_PREFIX}{name}"))
}

/// Routes `auth/token/roles` and `auth/token/roles/:name`.
pub(super) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    name: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    match (request.operation, name) {
        (Operation::List, "") => list(&view),
        (_, "") => Err(Error::unsupported_operation()),
        (Operation::Read, name) => {
            let role = get(&view, name)?.ok_or_else(Error::not_found)?;
            Ok(Response::data(role_data(&role)))
        }
        (Operation::Update, name) => write(&mut view, request, name),
        (Operation::Delete, name) => {
            view.delete(Partition::Shared, &format!("{ROLE_PREFIX}{name}"))?;
            Ok(Response::NoContent)
        }
        _ => Err(Error::unsupported_operation()),
    }
}

fn list(view: &SecureView<'_>) -> Result<Response, Error> {
    let keys = view.list(Partition::Shared, ROLE_PREFIX)?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

/// Creates or updates a role; fields the request leaves out keep their value.
fn write(view: &mut SecureView<'_>, request: &Request, name: &str) -> Result<Response, Error> {
    if name.contains('/') {
        return Err(Error::bad_request(format!(
            "invalid role name {name:?}: it may not contain '/'"
        )));
    }
    let data = &request.data;
    let mut role = get(view, name)?.unwrap_or_else(|| TokenRole::new(name));

    if let Some(policies) = params::string_list(data, "allowed_policies")? {
        role.allowed_policies = sanitize(policies)?;
    }
    if let Some(policies) = params::string_list(data, "disallowed_policies")? {
        role.disallowed_policies = sanitize(policies)?;
    }
    if let Some(orphan) = params::boolean(data, "orphan")? {
        role.orphan = orphan;
    }
    if let Some(renewable) = params::boolean(data, "renewable")? {
        role.renewable = renewable;
    }

    let period = params::duration(data, "token_period")?;
    if let Some(period) = period.or(params::duration(data, "period")?) {
        role.period = period.as_secs();
    }
    let max = params::duration(data, "token_explicit_max_ttl")?;
    if let Some(max) = max.or(params::duration(data, "explicit_max_ttl")?) {
        role.explicit_max_ttl = max.as_secs();
    }
    if let Some(suffix) = params::string(data, "path_suffix")? {
        role.path_suffix = suffix.trim_matches('/').to_owned();
    }

    view.put_json(Partition::Shared, &format!("{ROLE_PREFIX}{name}"), &role)?;
    Ok(Response::NoContent)
}

fn sanitize(policies: Vec<String>) -> Result<Vec<String>, Error> {
    let mut policies = super::create::policy_names(&policies)?;
    policies.retain(|name| !name.is_empty());
    policies.sort();
    policies.dedup();
    Ok(policies)
}

fn role_data(role: &TokenRole) -> Map<String, serde_json::Value> {
    let fields = [
        ("name", json!(role.name)),
        ("allowed_policies", json!(role.allowed_policies)),
        ("disallowed_policies", json!(role.disallowed_policies)),
        ("orphan", json!(role.orphan)),
        ("renewable", json!(role.renewable)),
        ("period", json!(role.period)),
        ("token_period", json!(role.period)),
        ("explicit_max_ttl", json!(role.explicit_max_ttl)),
        ("token_explicit_max_ttl", json!(role.explicit_max_ttl)),
        ("path_suffix", json!(role.path_suffix)),
        ("token_type", json!("service")),
    ];
    fields
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}
