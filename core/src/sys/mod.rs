//! The system backend, `sys/`.
//!
//! Each submodule serves a family of paths and returns `None` for paths it does not serve.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

mod audit;
mod mounts;
mod policy;
pub(crate) mod replication;
mod seal;
mod wrapping;

/// Paths under `sys/` that need no token, as in Vault.
const UNAUTHENTICATED: &[&str] = &[
    "sys/init",
    "sys/seal-status",
    "sys/unseal",
    "sys/leader",
    "sys/health",
    "sys/generate-root/attempt",
    "sys/generate-root/update",
    "sys/rekey/init",
    "sys/rekey/update",
    "sys/rekey/verify",
    "sys/wrapping/lookup",
    "sys/replication/status",
    "sys/replication/performance/status",
    "sys/replication/dr/status",
];

/// Whether `path` is a `sys/` path served without a token.
pub fn is_unauthenticated(path: &str) -> bool {
    UNAUTHENTICATED.contains(&path.trim_end_matches('/'))
}

/// Whether the handler of `request` checks the caller's access itself, in place of the ACL check
/// on the request path. Reads of `sys/internal/ui/mounts` show a token only the mounts it has
/// some capability on, as Vault does.
pub(crate) fn checks_own_access(request: &Request) -> bool {
    request.operation == Operation::Read && mounts::is_ui_mounts_path(&request.path)
}

/// Whether `request` unwraps a replication activation token at `sys/wrapping/unwrap`. It needs
/// no client token, because the primary's signature on the token authenticates it.
pub fn is_activation_unwrap(request: &Request) -> bool {
    replication::is_activation_unwrap(request)
}

/// The creation path of the wrapping tokens that hold activation bundles.
pub(crate) const ACTIVATION_TOKEN_PATH: &str = replication::ACTIVATION_TOKEN_PATH;

/// Rejects an unwrap or rewrap whose wrapping token is not valid, with Vault's 400, before the
/// token is checked as a client token.
pub(crate) fn check_wrapping_token(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<(), Error> {
    wrapping::check_wrapping_token(core, ctx, request, txn)
}

/// Handles a `sys/` request. `caller` is `None` only for unauthenticated paths.
pub fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let routes = [
        seal::route,
        policy::route,
        mounts::route,
        replication::route,
        wrapping::route,
        crate::lease::route,
        audit::route,
    ];
    for route in routes {
        if let Some(result) = route(core, ctx, request, caller, txn) {
            return result;
        }
    }
    Err(Error::no_handler(&request.path))
}
