//! Secrets engines and auth methods, each a pure handler over a transaction.

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

/// Whether `path` is served without a token, such as a login path of an auth method.
pub fn is_unauthenticated(_core: &Core, _path: &str) -> bool {
    false
}

/// Whether the request's target exists, for the ACL's choice between `create` and `update`.
/// `None` means the engine has no existence check, and every write counts as `update`.
pub fn exists(
    _core: &Core,
    _request: &Request,
    _txn: &dyn Transaction,
) -> Result<Option<bool>, Error> {
    Ok(None)
}

/// Routes a request to the mount that serves its path.
pub fn handle(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    Err(Error::no_handler(&request.path))
}

/// Deletes the cubbyhole of the token whose salted hash is `token_hash`; the token store calls
/// it when the token is revoked. Cubbyhole data lives in the local partition under
/// `cubbyhole/<token_hash>/`.
pub fn destroy_cubbyhole(_view: &mut SecureView<'_>, _token_hash: &str) -> Result<(), Error> {
    Ok(())
}
