//! `sys/leases/...` and the older `sys/renew`, `sys/revoke`, `sys/revoke-prefix` and
//! `sys/revoke-force` aliases.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::Core;
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Logical, Operation, Request, Response};
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;
use crate::token::TokenEntry;

use super::{ID_PREFIX, get, ids_with_prefix, revoke};

/// The maximum number of leases one revoke-prefix call revokes. A larger prefix fails before
/// revoking anything, so one request cannot grow into an unbounded transaction.
const MAX_REVOKED_BY_PREFIX: usize = 10_000;

/// The lease operation a path under `sys/` requests.
enum Action<'p> {
    Lookup,
    List(&'p str),
    Renew(Option<&'p str>),
    Revoke(Option<&'p str>),
    RevokePrefix(&'p str),
}

/// Serves the lease paths, or returns `None` for other paths.
pub(crate) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let rest = request.path.strip_prefix("sys/")?;
    let rest = rest.strip_prefix("leases/").unwrap_or(rest);
    let operation = request.operation;
    let action = match parse(rest)? {
        Action::Lookup if operation == Operation::List => Action::List(""),
        action => action,
    };
    let allowed = match action {
        Action::List(_) => operation == Operation::List,
        _ => operation == Operation::Update,
    };
    if !allowed {
        return Some(Err(Error::unsupported_operation()));
    }
    let now = ctx.now;
    let mut view = match core.barrier.view(txn, &mut *ctx.rng) {
        Ok(view) => view,
        Err(error) => return Some(Err(error)),
    };
    Some(match action {
        Action::Lookup => lookup(&view, request, now),
        Action::List(prefix) => list(&view, prefix),
        Action::Renew(id) => renew(core, &mut view, request, id, now),
        Action::Revoke(id) => revoke_one(&mut view, request, id),
        Action::RevokePrefix(prefix) => revoke_prefix(&mut view, prefix),
    })
}

/// Parses the part of the path after `sys/` or `sys/leases/`.
fn parse(rest: &str) -> Option<Action<'_>> {
    let split = |name: &str| -> Option<Option<&str>> {
        if rest == name {
            return Some(None);
        }
        let id = rest.strip_prefix(name)?.strip_prefix('/')?;
        Some(Some(id).filter(|id| !id.is_empty()))
    };
    if rest == "lookup" {
        return Some(Action::Lookup);
    }
    if let Some(prefix) = rest.strip_prefix("lookup/") {
        return Some(Action::List(prefix));
    }
    if let Some(id) = split("renew") {
        return Some(Action::Renew(id));
    }
    if let Some(id) = split("revoke") {
        return Some(Action::Revoke(id));
    }
    for name in ["revoke-prefix", "revoke-force"] {
        if let Some(prefix) = split(name) {
            return Some(Action::RevokePrefix(prefix.unwrap_or_default()));
        }
    }
    None
}

/// Returns the lease id from the path, or else from the body's `lease_id` (or the older `url_lease_id`).
fn lease_id(request: &Request, from_path: Option<&str>) -> Result<String, Error> {
    if let Some(id) = from_path {
        return Ok(id.to_owned());
    }
    let id = params::string(&request.data, "lease_id")?
        .filter(|id| !id.is_empty())
        .or(params::string(&request.data, "url_lease_id")?);
    id.filter(|id| !id.is_empty()).ok_or_else(|| {
        Error::bad_request("missing lease_id: send the id of the lease in the lease_id field")
    })
}

fn invalid_lease() -> Error {
    Error::bad_request("invalid lease")
}

/// Reads a lease and the token entry it belongs to.
fn find(view: &SecureView<'_>, lease_id: &str) -> Result<(String, TokenEntry), Error> {
    let lease = get(view, lease_id)?.ok_or_else(invalid_lease)?;
    let entry = crate::token::get_entry(view, &lease.token_hash)?.ok_or_else(invalid_lease)?;
    Ok((lease.token_hash, entry))
}

/// `sys/leases/lookup`: the lease's times, TTL and whether it renews.
fn lookup(view: &SecureView<'_>, request: &Request, now: Timestamp) -> Result<Response, Error> {
    let id = lease_id(request, None)?;
    let (_, entry) = find(view, &id)?;
    let time = |time: Option<Timestamp>| time.map_or(Value::Null, |t| json!(t.to_rfc3339()));
    let mut data = Map::new();
    data.insert("id".into(), json!(id));
    data.insert("issue_time".into(), json!(entry.creation_time.to_rfc3339()));
    data.insert("expire_time".into(), time(entry.expire_time));
    data.insert("last_renewal".into(), time(entry.last_renewal_time));
    data.insert("renewable".into(), json!(entry.renewable));
    data.insert("ttl".into(), json!(entry.remaining_ttl(now)));
    Ok(Response::data(data))
}

/// `LIST sys/leases/lookup/<prefix>`: the names directly below the prefix.
fn list(view: &SecureView<'_>, prefix: &str) -> Result<Response, Error> {
    let mut folder = format!("{ID_PREFIX}{prefix}");
    if !folder.ends_with('/') {
        folder.push('/');
    }
    let keys = view.list(Partition::Local, &folder)?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

/// `sys/leases/renew`: extends a token lease by `increment` seconds, within the token's maximum
/// TTL.
///
/// NOTE: Vault 1.15 rejects token leases here ("tokens cannot be renewed through this
/// endpoint"); this server renews them as `auth/token/renew-accessor` would.
fn renew(
    core: &Core,
    view: &mut SecureView<'_>,
    request: &Request,
    from_path: Option<&str>,
    now: Timestamp,
) -> Result<Response, Error> {
    let id = lease_id(request, from_path)?;
    let increment: Option<Duration> = params::duration(&request.data, "increment")?;
    let lease = get(view, &id)?.ok_or_else(|| {
        Error::bad_request(format!("lease not found: no lease has the id {id:?}"))
    })?;
    let entry = crate::token::renew_by_hash(core, view, &lease.token_hash, increment, now)?;
    Ok(Response::logical(Logical {
        status: 200,
        lease_id: id,
        renewable: entry.renewable,
        lease_duration: entry.ttl,
        ..Logical::default()
    }))
}

/// `sys/leases/revoke`: revokes one lease and its token. A lease that is already gone is no
/// error, as in Vault.
fn revoke_one(
    view: &mut SecureView<'_>,
    request: &Request,
    from_path: Option<&str>,
) -> Result<Response, Error> {
    let id = lease_id(request, from_path)?;
    revoke(view, &id)?;
    Ok(Response::NoContent)
}

/// `sys/leases/revoke-prefix/<prefix>`: revokes every lease whose id starts with the prefix.
fn revoke_prefix(view: &mut SecureView<'_>, prefix: &str) -> Result<Response, Error> {
    if prefix.is_empty() {
        return Err(Error::bad_request(
            "missing prefix: name the lease id prefix in the path, such as sys/leases/revoke-prefix/auth/userpass/",
        ));
    }
    let ids = ids_with_prefix(view, prefix)?;
    if ids.len() > MAX_REVOKED_BY_PREFIX {
        return Err(Error::bad_request(format!(
            "prefix {prefix:?} matches {} leases, more than the {MAX_REVOKED_BY_PREFIX} one request may revoke; revoke a longer prefix first",
            ids.len()
        )));
    }
    for id in ids {
        revoke(view, &id)?;
    }
    Ok(Response::NoContent)
}
