//! The token store: tokens kept by salted hash in the local partition, and `auth/token/`.
//!
//! Storage never contains a token, only hex(HMAC-SHA256(salt, token)) with a per-node salt, so a
//! copy of the local partition cannot be used to authenticate.

mod create;
mod issue;
mod params;
mod paths;
mod response;
mod roles;
mod routes;
mod store;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use issue::{TokenInfo, TokenParams, issue_token, revoke_accessor, revoke_token, token_info};
pub(crate) use paths::acl_path;
pub use paths::redact_path;
pub(crate) use routes::{policies_of_accessor, policies_of_token, renew_by_hash};
pub(crate) use store::{TokenEntry, get as get_entry};

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response, Secret};
use crate::storage::Transaction;
use crate::time::Timestamp;

/// Token store settings and helpers.
#[derive(Default)]
pub struct TokenStore {}

impl TokenStore {
    /// A token store with default settings.
    pub fn new() -> TokenStore {
        TokenStore::default()
    }
}

/// Looks up the request's token and spends one use when it has a limit.
///
/// A missing, unknown or expired token is a 403, and an expired one is revoked on the way. So is
/// a token with a missing or expired ancestor, or more than 256 ancestors. The
/// request that spends a token's last use still runs with the token intact (a response-wrapping
/// token needs its cubbyhole to unwrap); the token is revoked when it is next presented.
pub fn authenticate(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Caller, Error> {
    let Some(token) = &request.token else {
        return Err(Error::permission_denied());
    };
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let Some((token_hash, mut entry)) = store::find(&view, token.expose())? else {
        return Err(Error::permission_denied());
    };
    if !entry.is_live(ctx.now) {
        store::revoke_tree(&mut view, &token_hash)?;
        return Err(Error::permission_denied());
    }
    // A dead ancestor is left for its own next use or `tidy` to revoke, so this check stays a
    // read.
    if store::live_ancestors(&view, &entry, ctx.now)?.is_none() {
        return Err(Error::permission_denied());
    }
    if entry.path == crate::sys::ACTIVATION_TOKEN_PATH {
        // The raw token behind an activation JWT never authenticates a request, so it can
        // neither read its cubbyhole past the JWT unwrap's checks nor spend its single use.
        return Err(Error::permission_denied());
    }
    if entry.num_uses > 0 {
        entry.num_uses -= 1;
        entry.revoke_pending = entry.num_uses == 0;
        store::save(&mut view, &token_hash, &entry)?;
    }
    Ok(entry.caller(&token_hash))
}

/// Finds the stored entry of `token`, if the token exists, without checking that it is live.
pub(crate) fn find_entry(view: &SecureView<'_>, token: &str) -> Result<Option<TokenEntry>, Error> {
    Ok(store::find(view, token)?.map(|(_, entry)| entry))
}

/// Returns the caller `token` authenticates at `now`, or `None` when it is unknown or no longer
/// valid. Unlike [`authenticate`], it spends no use and writes nothing.
pub(crate) fn peek_caller(
    view: &SecureView<'_>,
    token: &str,
    now: Timestamp,
) -> Result<Option<Caller>, Error> {
    let Some((token_hash, entry)) = store::find(view, token)? else {
        return Ok(None);
    };
    if !store::is_valid(view, &entry, now)? {
        return Ok(None);
    }
    Ok(Some(entry.caller(&token_hash)))
}

/// Revokes the token with `token_hash` and every child it has. Revoking a missing token does
/// nothing.
pub(crate) fn revoke_tree_by_hash(
    view: &mut SecureView<'_>,
    token_hash: &str,
) -> Result<(), Error> {
    store::revoke_tree(view, token_hash)
}

/// Handles `auth/token/...`.
pub fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let Some(caller) = caller else {
        return Err(Error::permission_denied());
    };
    let rest = request
        .path
        .strip_prefix("auth/token")
        .unwrap_or_default()
        .trim_matches('/');
    routes::dispatch(core, ctx, request, caller, rest, txn)
}

/// Creates a root token (policy `root`, no TTL, orphan) and returns it. `sys/init` and
/// `sys/generate-root` call it.
pub fn create_root_token(
    _core: &Core,
    view: &mut SecureView<'_>,
    now: Timestamp,
) -> Result<Secret, Error> {
    create::root_token(view, now)
}
