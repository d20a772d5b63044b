//! Secrets engines and auth methods, each a pure handler over a transaction.
//!
//! [`handle`] routes a request to the secrets engine mounted at the longest prefix of its path.
//! KV version 1 and `generic` mounts are served by `kv_v1`, KV version 2 by `kv_v2` and the
//! per-token `cubbyhole/` by `cubbyhole` and `transit` mounts by `transit`.

mod cubbyhole;
mod kv_v1;
mod kv_v2;
pub mod params;
mod transit;

#[cfg(test)]
pub(crate) mod testing;

use serde_json::{Map, Value};

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::{self, Route, TableKind};
use crate::request::{Caller, Request, Response};
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;

/// Where one engine keeps its keys: a partition and a key prefix ending in `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    /// The partition of every key.
    pub(crate) partition: Partition,
    /// The prefix of every key.
    pub(crate) prefix: String,
}

impl Location {
    /// The location of a secrets engine's data.
    fn of_mount(route: &Route) -> Location {
        Location {
            partition: route.entry.data_partition(),
            prefix: route.entry.data_prefix(TableKind::Secrets),
        }
    }

    /// The storage key of `path` below this location.
    pub(crate) fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// Whether `path` is served without a token, such as a login path of an auth method.
pub fn is_unauthenticated(core: &Core, txn: &dyn Transaction, path: &str) -> bool {
    crate::auth::is_login_path(core, txn, path)
}

/// Whether the request's target exists, for the ACL's choice between `create` and `update`.
/// `None` means the engine has no existence check, and every write counts as `update`.
///
/// The cubbyhole has no check here because its keys depend on the caller's token hash, which
/// the request alone does not carry.
pub fn exists(
    core: &Core,
    request: &Request,
    txn: &dyn Transaction,
) -> Result<Option<bool>, Error> {
    if request.path.starts_with("auth/") {
        return crate::auth::exists(core, request, txn);
    }
    let Some(route) = mounts::route(core, txn, &request.path)? else {
        return Ok(None);
    };
    let location = Location::of_mount(&route);
    let key = match route.entry.kind.as_str() {
        "kv" if route.entry.is_kv_v2() => kv_v2::existence_key(&location, &route.rest),
        "kv" | "generic" => kv_v1::existence_key(&location, &route.rest),
        "transit" => transit::existence_key(&location, &route.rest),
        _ => None,
    };
    match key {
        Some(key) => Ok(Some(txn.get(location.partition, &key)?.is_some())),
        None => Ok(None),
    }
}

/// Routes a request to the mount that serves its path.
pub fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if request.path.starts_with("auth/") {
        return crate::auth::handle(core, ctx, request, caller, txn);
    }
    let Some(route) = mounts::route(core, txn, &request.path)? else {
        return Err(Error::no_handler(&request.path));
    };
    let now = ctx.now;
    let location = Location::of_mount(&route);
    let mut view = core.barrier.view(txn, ctx.rng)?;
    match route.entry.kind.as_str() {
        "kv" if route.entry.is_kv_v2() => {
            kv_v2::handle(now, request, &route.rest, &location, &mut view)
        }
        "kv" | "generic" => {
            let ttl = lease_ttl(core, &route);
            let mount_type = route.entry.kind.as_str();
            kv_v1::handle(request, &route.rest, &location, mount_type, ttl, &mut view)
        }
        "cubbyhole" => cubbyhole::handle(request, &route.rest, caller, &mut view),
        "transit" => transit::handle(now, request, &route.rest, &location, &mut view),
        _ => Err(Error::no_handler(&request.path)),
    }
}

/// Deletes the cubbyhole of the token whose salted hash is `token_hash`; the token store calls
/// it when the token is revoked. Cubbyhole data lives in the local partition under
/// `cubbyhole/<token_hash>/`.
pub fn destroy_cubbyhole(view: &mut SecureView<'_>, token_hash: &str) -> Result<(), Error> {
    let location = cubbyhole::location(token_hash)?;
    mounts::purge_prefix(view.raw(), location.partition, &location.prefix)
}

/// Writes one secret of a KV version 1 mount into the version 2 layout below `prefix` in
/// `partition`, as version 1 of `path`. Upgrading a mount through its tune endpoint calls it.
pub fn migrate_kv_v1_key(
    now: Timestamp,
    partition: Partition,
    prefix: &str,
    path: &str,
    data: Map<String, Value>,
    view: &mut SecureView<'_>,
) -> Result<(), Error> {
    let location = Location {
        partition,
        prefix: prefix.to_owned(),
    };
    kv_v2::import(now, data, path, &location, view)
}

/// The mount's default lease TTL in seconds, or the system default when it has none.
fn lease_ttl(core: &Core, route: &Route) -> u64 {
    match route.entry.config.default_lease_ttl {
        0 => core.config.default_lease_ttl.as_secs(),
        seconds => seconds,
    }
}
