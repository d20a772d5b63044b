//! The steps of a failover that need the network or a wait. `secondary/update-primary` unwraps
//! a token at the new primary and proves its cluster port before anything changes.
//! `secondary/promote` first waits until the old primary's last known position is applied.

use std::time::Duration;

use coffer_core::error::Error;
use coffer_core::replication::failover::{self, Reconciled};
use coffer_core::replication::wal::Wal;
use coffer_core::replication::{activate, role};
use coffer_core::request::{Logical, Request, Response};
use coffer_core::storage::{ReadOnly, Storage};
use serde_json::{Map, json};

use super::{Activator, authorize};
use crate::server::environment::Environment;
use crate::server::net::Network;

/// The paths of `secondary/update-primary`, current and 0.7-era.
pub(super) const UPDATE_PRIMARY_PATHS: [&str; 2] = [
    "sys/replication/performance/secondary/update-primary",
    "sys/replication/secondary/update-primary",
];

/// The paths of `secondary/promote`, current and 0.7-era.
pub(super) const PROMOTE_PATHS: [&str; 2] = [
    "sys/replication/performance/secondary/promote",
    "sys/replication/secondary/promote",
];

/// How long `promote` waits for the old primary's last known position before the core
/// rejects it. Longer waits are the operator's choice: promote again, or pass `force`.
const PROMOTE_WAIT: Duration = Duration::from_secs(10);

/// How often `promote` checks its position while it waits.
const PROMOTE_POLL: Duration = Duration::from_millis(50);

impl<S, E, N> Activator<S, E, N>
where
    S: Storage + 'static,
    E: Environment,
    N: Network,
{
    /// Runs `update-primary`: the same three checks as activation, then the switch in one
    /// transaction, without a wipe.
    pub(super) async fn update_primary(&self, request: &Request) -> Result<Response, Error> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| Error::internal("the node is shutting down"))?;
        let Ok(_running) = self.in_progress.try_lock() else {
            return Err(Error::bad_request(
                "another secondary/enable or update-primary is in progress on this node; wait \
                 for it to finish and try again",
            ));
        };
        authorize(&node, request)?;
        let update = activate::parse_enable(request)?;
        let own_set = {
            let core = node.core();
            let mut rng = node.rng();
            let role = node
                .storage()
                .read(|txn| role::load_role(core, &mut ReadOnly(txn), &mut rng))??;
            follower_set(&role)?
        };
        // Checked before the token is spent, so a token of another set stays usable.
        failover::require_same_set(&own_set, &update.claims.cluster_id)?;

        let (bundle, key, offer) = self.prove_primary(&node, &update, "update-primary").await?;

        let core = node.core();
        let now = node.environment().now();
        let mut rng = node.rng();
        let reconciled = node.storage().write(|txn| {
            failover::adopt_new_primary(core, txn, &mut rng, now, &bundle, &key, &offer)
        })?;
        node.storage().read(|txn| {
            activate::accept_key_offer(core, txn, &bundle, &key, &offer)?;
            core.reload(txn, None)
        })??;
        log_reconciled(&bundle.cluster_id, &bundle.secondary_id, &reconciled);
        Ok(reconciled_response(&reconciled))
    }

    /// Runs `promote` in the core once this node has applied the old primary's last known
    /// position, or after [`PROMOTE_WAIT`]; `force` skips the wait.
    pub(super) async fn promote(&self, request: &Request) -> Result<Response, Error> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| Error::internal("the node is shutting down"))?;
        authorize(&node, request)?;
        let force = coffer_core::engines::params::boolean(&request.data, "force")?;
        if force != Some(true) {
            let deadline = tokio::time::Instant::now() + PROMOTE_WAIT;
            while !caught_up(&node)? && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(PROMOTE_POLL).await;
            }
        }
        self.enable_primary(request).await
    }
}

/// Returns whether this node has applied the old primary's last known head, or has none.
fn caught_up<S: Storage + 'static, E: Environment>(
    node: &crate::server::node::Node<S, E>,
) -> Result<bool, Error> {
    let known = node
        .core()
        .replication_live
        .snapshot()
        .secondary
        .and_then(|live| live.primary_head);
    let Some(known) = known else {
        return Ok(true);
    };
    let head = node.storage().read(|txn| Wal::head(txn))??;
    Ok(head.index >= known.index)
}

/// Returns the replication set a secondary or demoted primary belongs to, or a 400 that names
/// the call to run instead.
fn follower_set(role: &role::Role) -> Result<String, Error> {
    match role {
        role::Role::Secondary(credentials) => Ok(credentials.bundle.cluster_id.clone()),
        role::Role::Demoted(record) => Ok(record.cluster_id.clone()),
        role::Role::Primary(_) => Err(Error::bad_request(
            "this cluster is a performance replication primary; demote it with \
             sys/replication/performance/primary/demote before it follows another primary; \
             the activation token was not used",
        )),
        role::Role::Standalone => Err(Error::bad_request(
            "this cluster is not a performance replication secondary; activate it with \
             sys/replication/performance/secondary/enable, which wipes its data; the \
             activation token was not used",
        )),
    }
}

fn log_reconciled(cluster_id: &str, secondary_id: &str, reconciled: &Reconciled) {
    let Some(quarantine) = &reconciled.quarantine else {
        tracing::info!(
            %cluster_id,
            %secondary_id,
            position = %reconciled.position,
            "following the new primary; no local writes are missing from it"
        );
        return;
    };
    tracing::warn!(
        %cluster_id,
        %secondary_id,
        quarantine_id = %quarantine.id,
        writes = quarantine.writes.len(),
        complete = quarantine.complete,
        fork = %quarantine.fork,
        local_head = %quarantine.local_head,
        "this node has writes the new primary lacks; they are kept in \
         sys/replication/quarantine and will be replaced by the primary's data"
    );
    for write in &quarantine.writes {
        tracing::warn!(
            quarantine_id = %quarantine.id,
            key = %write.key,
            position = %write.position,
            deleted = write.value.is_none(),
            "quarantined write"
        );
    }
}

fn reconciled_response(reconciled: &Reconciled) -> Response {
    let mut data = Map::new();
    data.insert("last_wal".into(), json!(reconciled.position.index));
    let mut warnings = vec![
        "This cluster now follows the new primary without a wipe: it streams on where its \
         WAL lies on the new primary's chain and runs a Merkle diff otherwise."
            .to_owned(),
    ];
    if let Some(quarantine) = &reconciled.quarantine {
        data.insert("quarantine_id".into(), json!(quarantine.id));
        data.insert("quarantined_writes".into(), json!(quarantine.writes.len()));
        warnings.push(format!(
            "{} write(s) this cluster accepted are missing on the new primary; they are kept \
             at sys/replication/quarantine/{} for review and are not applied",
            quarantine.writes.len(),
            quarantine.id
        ));
    }
    Response::logical(Logical {
        warnings,
        ..Logical::with_data(data)
    })
}
