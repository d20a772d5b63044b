//! Policies and capability queries.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

/// Serves `sys/policy`, `sys/policies/acl` and `sys/capabilities*`, or returns `None` for any other path.
pub(super) fn route(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    None
}
