//! `primary/revoke-secondary`: ends a secondary's certificate and voids its unused tokens.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Request, Response};
use crate::storage::Transaction;
use crate::token::revoke_accessor;

use super::params::secondary_id;
use super::state;

/// Revokes the secondary `id`. Its unused activation tokens lose their wrapping tokens, so
/// their bundles are gone too.
pub(super) fn revoke_secondary(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let id = secondary_id(&request.data)?;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    state::require_primary(&view)?;
    let mut registry = state::load_registry(&view)?;
    if registry.active_cert(&id).is_none() {
        return Err(Error::bad_request(format!(
            "no active secondary has id {id:?}; read sys/replication/performance/status for \
             the known_secondaries"
        )));
    }
    let voided = registry.revoke(&id);
    state::save_registry(&mut view, &registry)?;
    for accessor in &voided.tokens {
        revoke_accessor(&mut view, accessor)?;
    }
    // NOTE: open replication and forwarding sessions of this serial must close here once the
    // cluster port exists.
    Ok(Response::NoContent)
}
