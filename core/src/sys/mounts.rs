//! The mount and auth tables and small tools.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

/// Serves `sys/mounts`, `sys/auth`, `sys/internal/ui/mounts` and `sys/tools/*`, or returns `None` for any other path.
pub(super) fn route(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    None
}
