//! Seal, unseal, init, generate-root, rekey, key rotation, health and leader.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

/// Serves `sys/init`, `sys/seal-status`, `sys/unseal`, `sys/seal`, `sys/generate-root/*`, `sys/rekey/*`, `sys/rotate`, `sys/key-status`, `sys/health` and `sys/leader`, or returns `None` for any other path.
pub(super) fn route(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    None
}
