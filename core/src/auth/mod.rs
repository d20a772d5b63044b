//! Auth methods other than the token store: `userpass` and `approle`.
//!
//! Each auth mount keeps its data below `auth/<uuid>/` in the mount's data partition: the shared
//! partition for an ordinary mount, the local one for a mount enabled with `local=true`. Users
//! and roles are configuration, so they replicate. The tokens a login issues live in the local
//! partition, as every token does.

mod approle;
mod cidr;
mod fields;
#[cfg(test)]
mod testing;
mod token_fields;
mod userpass;

use crate::Core;
use crate::engines::Location;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::{self, MountEntry, Route, TableKind};
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

/// The auth mount serving a request, as its handler needs it.
pub(crate) struct Mount {
    /// The location of the mount's data.
    pub(crate) location: Location,
    /// The mount's table entry, for its path and TTL settings.
    pub(crate) entry: MountEntry,
}

impl Mount {
    fn of_route(route: &Route) -> Mount {
        Mount {
            location: Location {
                partition: route.entry.data_partition(),
                prefix: route.entry.data_prefix(TableKind::Auth),
            },
            entry: route.entry.clone(),
        }
    }

    /// The login path prefix tokens record, such as `auth/userpass/`.
    pub(crate) fn request_prefix(&self) -> String {
        format!("auth/{}", self.entry.path)
    }

    /// The display name prefix Vault gives tokens of this mount: the mount path with `/`
    /// turned into `-`, such as `userpass-`.
    pub(crate) fn display_prefix(&self) -> String {
        self.entry.path.replace('/', "-")
    }
}

/// Whether `path` is the login path of a mounted userpass or approle method, which needs no
/// token. A sealed barrier or an unreadable table counts as "no", so the request goes on to
/// the seal and token checks and gets their error.
pub(crate) fn is_login_path(core: &Core, txn: &dyn Transaction, path: &str) -> bool {
    if core.barrier.is_sealed() {
        return false;
    }
    match mounts::route_auth(core, txn, path) {
        Ok(Some(route)) => is_login(&route),
        Ok(None) | Err(_) => false,
    }
}

fn is_login(route: &Route) -> bool {
    match route.entry.kind.as_str() {
        "userpass" => route.rest.starts_with("login/"),
        "approle" => route.rest == "login",
        _ => false,
    }
}

/// Whether the user or role a write targets exists, for the ACL's choice between `create` and
/// `update`. `None` means the path has no existence check.
pub(crate) fn exists(
    core: &Core,
    request: &Request,
    txn: &dyn Transaction,
) -> Result<Option<bool>, Error> {
    let Some(route) = mounts::route_auth(core, txn, &request.path)? else {
        return Ok(None);
    };
    let mount = Mount::of_route(&route);
    let key = match route.entry.kind.as_str() {
        "userpass" => userpass::existence_key(&mount, &route.rest),
        "approle" => approle::existence_key(&mount, &route.rest),
        _ => None,
    };
    match key {
        Some(key) => Ok(Some(txn.get(mount.location.partition, &key)?.is_some())),
        None => Ok(None),
    }
}

/// Serves a request below `auth/` (other than `auth/token/`). Without a caller only a login
/// path is served; anything else is Vault's 403, as for a login at a path nothing is mounted.
pub(crate) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let route = mounts::route_auth(core, txn, &request.path)?;
    let Some(route) = route else {
        return match caller {
            Some(_) => Err(Error::no_handler(&request.path)),
            None => Err(Error::permission_denied()),
        };
    };
    if caller.is_none() && !is_login(&route) {
        return Err(Error::permission_denied());
    }
    let mount = Mount::of_route(&route);
    match route.entry.kind.as_str() {
        "userpass" => userpass::handle(core, ctx, request, &route.rest, &mount, txn),
        "approle" => approle::handle(core, ctx, request, &route.rest, &mount, txn),
        _ => Err(Error::no_handler(&request.path)),
    }
}
