//! Replication control and status, `sys/replication/...`, and the unwrap of the activation
//! bundle a secondary fetches from `sys/wrapping/unwrap`.
//!
//! Everything the primary keeps (its replication identity, the CA and signing keys, the list of
//! secondaries) is written through the barrier to `Partition::Local`, so none of it replicates.
//! The epoch that secondaries need reaches them through the WAL head and their bundle, so
//! nothing here writes the shared partition.
//!
//! The 0.7-era paths `sys/replication/primary/...` and `sys/replication/secondary/...` are
//! aliases of the performance paths. Every control path needs `sudo` (see the ACL's
//! root-protected list); the three status paths need no token.
//!
//! NOTE: once secondaries forward requests, every endpoint here that changes replication state
//! must reject a forwarded request.

mod enable;
mod failover;
mod params;
mod revoke;
mod secondary;
pub(crate) mod state;
mod status;
mod token;
mod unwrap;

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

pub(crate) use token::CREATION_PATH as ACTIVATION_TOKEN_PATH;
pub(super) use unwrap::{
    is_activation_wrapping, jwt_of as activation_jwt, lookup_activation, unwrap_activation,
};

/// The unwrap path, which serves activation tokens and plain wrapping tokens.
const UNWRAP_PATH: &str = "sys/wrapping/unwrap";

/// Whether `request` unwraps an activation JWT, which needs no client token: the primary's
/// signature on the JWT authenticates it.
pub(super) fn is_activation_unwrap(request: &Request) -> bool {
    request.path.trim_end_matches('/') == UNWRAP_PATH
        && request.operation == Operation::Update
        && unwrap::jwt_of(request).is_some()
}

/// Serves `sys/replication/...`, or returns `None` for other paths.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let path = request.path.trim_end_matches('/');
    let rest = path.strip_prefix("sys/replication/")?;
    Some(dispatch(core, ctx, request, &canonical(rest), txn))
}

/// Maps the 0.7-era aliases to the performance paths.
fn canonical(rest: &str) -> String {
    if rest.starts_with("primary/") || rest.starts_with("secondary/") {
        format!("performance/{rest}")
    } else {
        rest.to_owned()
    }
}

fn dispatch(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    rest: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let read = match rest {
        "status" => Some(status::combined as StatusHandler),
        "performance/status" => Some(status::performance as StatusHandler),
        "dr/status" => Some(status::dr as StatusHandler),
        _ => None,
    };
    if let Some(handler) = read {
        return match request.operation {
            Operation::Read => handler(core, ctx, txn),
            _ => Err(Error::unsupported_operation()),
        };
    }
    if let Some(id) = quarantine_id(rest) {
        return match (request.operation, id) {
            (Operation::List, None) => failover::list_quarantine(core, ctx, txn),
            (Operation::Read, Some(id)) => failover::read_quarantine(core, ctx, id, txn),
            _ => Err(Error::unsupported_operation()),
        };
    }
    let write = match rest {
        "performance/primary/enable" => enable::enable as WriteHandler,
        "performance/primary/secondary-token" => token::secondary_token as WriteHandler,
        "performance/primary/revoke-secondary" => revoke::revoke_secondary as WriteHandler,
        "performance/secondary/generate-public-key" => {
            secondary::generate_public_key as WriteHandler
        }
        "performance/secondary/enable" | "performance/secondary/update-primary" => {
            secondary::enable_unreachable as WriteHandler
        }
        "performance/primary/demote" => failover::demote as WriteHandler,
        "performance/primary/disable" => failover::disable_primary as WriteHandler,
        "performance/secondary/promote" => failover::promote as WriteHandler,
        "performance/secondary/disable" => failover::disable_secondary as WriteHandler,
        "reindex" => failover::reindex as WriteHandler,
        "merkle-check" => failover::merkle_check as WriteHandler,
        "recover" | "performance/secondary/recover" => failover::recover as WriteHandler,
        _ => return Err(Error::no_handler(&request.path)),
    };
    match request.operation {
        Operation::Update => write(core, ctx, request, txn),
        _ => Err(Error::unsupported_operation()),
    }
}

/// Returns `Some(None)` for the quarantine list path, `Some(Some(id))` for one quarantine, and
/// `None` for other paths.
fn quarantine_id(rest: &str) -> Option<Option<&str>> {
    if rest == "quarantine" {
        return Some(None);
    }
    rest.strip_prefix("quarantine/")
        .map(|id| Some(id).filter(|id| !id.is_empty()))
}

type StatusHandler = fn(&Core, &mut Ctx<'_>, &mut dyn Transaction) -> Result<Response, Error>;

type WriteHandler =
    fn(&Core, &mut Ctx<'_>, &Request, &mut dyn Transaction) -> Result<Response, Error>;

#[cfg(test)]
mod tests;
