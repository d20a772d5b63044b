//! `primary/demote`, `secondary/promote`, `primary/disable`, `secondary/disable`, `reindex`,
//! `merkle-check`, `recover` and the quarantine of writes set aside by `update-primary`.
//!
//! `update-primary` needs the network (it unwraps a token at the new primary), so the server
//! runs it and calls [`crate::replication::failover::adopt_new_primary`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::{Epoch, SecondaryRegistry};
use crate::replication::failover::{
    DEMOTED_KEY, DemotedRecord, QUARANTINE_PREFIX, Quarantine, load_demoted, promoted_epoch,
    save_demoted,
};
use crate::replication::merkle::Merkle;
use crate::replication::position::Position;
use crate::replication::role::load_secondary;
use crate::replication::secondary::UNSYNCED_HASH;
use crate::replication::wal::Wal;
use crate::request::{Logical, Request, Response};
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;

use super::enable::{addresses, generate, start_epoch};
use super::state::{self, PRIMARY_KEY, REGISTRY_KEY, SECONDARY_STATE_KEY};
use super::status::merkle_root_prefix;

const DEMOTED_WARNING: &str = "This cluster was demoted: it no longer accepts writes to \
     replicated data and serves no secondaries. Promote a secondary, then run \
     sys/replication/performance/secondary/update-primary here with a token from the new \
     primary.";

const PROMOTED_WARNING: &str = "This cluster is now the performance primary with a new \
     replication CA. Issue new activation tokens on it and run update-primary on every other \
     cluster of the set, including the old primary after its demotion.";

/// Demotes the primary: it keeps its data and cluster id, becomes read-only for shared data and
/// stops serving replication. Returns its final position.
///
/// NOTE: the sessions close without sending the final position, so a secondary has only the
/// head of the last heartbeat it received, and `promote` waits for that head, not this one.
pub(super) fn demote(
    core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let identity = state::require_primary(&view)?;
    let final_position = Wal::head(view.raw())?;
    let record = DemotedRecord {
        cluster_id: identity.cluster_id,
        final_position,
        demoted_at: now,
    };
    save_demoted(&mut view, &record)?;
    view.delete(Partition::Local, PRIMARY_KEY)?;
    view.delete(Partition::Local, REGISTRY_KEY)?;
    tracing::info!(
        cluster_id = %record.cluster_id,
        final_position = %record.final_position,
        "demoted the performance primary"
    );
    let mut data = Map::new();
    data.insert("cluster_id".into(), json!(record.cluster_id));
    data.insert(
        "final_position".into(),
        position_json(&record.final_position),
    );
    Ok(Response::logical(Logical {
        warnings: vec![DEMOTED_WARNING.to_owned()],
        ..Logical::with_data(data)
    }))
}

/// Promotes this secondary or demoted primary to primary of its replication set, with a new CA
/// and an epoch above every one it has seen, continuing its WAL chain. Without `force` it
/// rejects the promotion while it has not applied the old primary's last known position. The
/// server waits for that position before it calls this handler.
pub(super) fn promote(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let force = crate::engines::params::boolean(&request.data, "force")?.unwrap_or(false);
    let addresses = addresses(request)?;
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let (cluster_id, followed) = promotable(&view)?;
    let head = Wal::head(view.raw())?;
    if head.hash == UNSYNCED_HASH {
        return Err(Error::bad_request(
            "this secondary is in the middle of a Merkle sync, so its data is not the state of \
             any position; wait until its state is stream-wals and promote it again",
        ));
    }
    if !force {
        check_caught_up(core, &head)?;
    }

    let epoch_cluster_id = crate::ids::uuid(view.rng());
    let epoch = promoted_epoch(&head.epoch, followed, epoch_cluster_id);
    let epoch = Epoch {
        number: epoch.number,
        cluster_id: epoch.cluster_id,
    };
    let mut identity = generate(view.rng(), now, addresses, cluster_id, epoch)?;
    let start = start_epoch(view.raw(), &identity.epoch)?;
    identity.epoch_start = Some(start.clone());
    state::save_primary(&mut view, &identity)?;
    state::save_registry(&mut view, &SecondaryRegistry::new())?;
    view.delete(Partition::Local, SECONDARY_STATE_KEY)?;
    view.delete(Partition::Local, DEMOTED_KEY)?;
    tracing::info!(
        cluster_id = %identity.cluster_id,
        epoch = %start.epoch,
        position = %start,
        force,
        "promoted to performance primary"
    );
    let mut data = Map::new();
    data.insert("cluster_id".into(), json!(identity.cluster_id));
    data.insert("epoch_start".into(), position_json(&start));
    Ok(Response::logical(Logical {
        warnings: vec![PROMOTED_WARNING.to_owned()],
        ..Logical::with_data(data)
    }))
}

/// Returns the replication set id and the epoch number this node followed, or a 400 when it
/// is neither a secondary nor a demoted primary.
fn promotable(view: &SecureView<'_>) -> Result<(String, u64), Error> {
    if let Some(record) = load_secondary(view)? {
        if !record.activated {
            return Err(Error::bad_request(
                "this secondary has not finished its first sync after activation, so it holds \
                 no complete copy of the data; wait until its state is stream-wals",
            ));
        }
        return Ok((record.bundle.cluster_id, record.bundle.epoch.number));
    }
    if let Some(record) = load_demoted(view)? {
        return Ok((record.cluster_id, record.final_position.epoch.number));
    }
    if state::load_primary(view)?.is_some() {
        return Err(Error::bad_request(
            "this cluster is already the performance replication primary",
        ));
    }
    Err(Error::bad_request(
        "this cluster is not a performance replication secondary; only a secondary or a \
         demoted primary can be promoted",
    ))
}

/// Rejects a promotion while this node is behind the old primary's last known head.
fn check_caught_up(core: &Core, head: &Position) -> Result<(), Error> {
    let known = core
        .replication_live
        .snapshot()
        .secondary
        .and_then(|live| live.primary_head);
    let Some(known) = known else {
        return Ok(());
    };
    if head.index >= known.index {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "this secondary has applied WAL index {} but the old primary's last known position is \
         {known}; wait until last_remote_wal reaches {}, or pass force=true to promote now \
         and drop the entries it has not received",
        head.index, known.index
    )))
}

/// Turns the primary back into a standalone cluster. The replication identity, CA and
/// secondary registry are deleted, but data, tokens and the WAL stay.
pub(super) fn disable_primary(
    core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let identity = state::require_primary(&view)?;
    view.delete(Partition::Local, PRIMARY_KEY)?;
    view.delete(Partition::Local, REGISTRY_KEY)?;
    tracing::info!(cluster_id = %identity.cluster_id, "disabled performance replication primary");
    Ok(Response::logical(Logical {
        warnings: vec![
            "Replication is disabled on this cluster. Its secondaries can no longer connect; \
             enabling replication again creates a new replication set, and each secondary \
             needs secondary/enable, which wipes it."
                .to_owned(),
        ],
        ..Logical::default()
    }))
}

/// Turns a secondary or demoted primary into a standalone cluster by deleting its activation
/// record. It keeps the replicated data, its own tokens, the quarantine, and the primary's
/// keyring and seal, so the primary's unseal keys still unseal it.
pub(super) fn disable_secondary(
    core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    if !state::is_secondary(&view)? {
        return Err(Error::bad_request(
            "this cluster is not a performance replication secondary",
        ));
    }
    view.delete(Partition::Local, SECONDARY_STATE_KEY)?;
    view.delete(Partition::Local, DEMOTED_KEY)?;
    tracing::info!("disabled performance replication secondary");
    Ok(Response::logical(Logical {
        warnings: vec![
            "Replication is disabled on this cluster. It keeps the replicated data and the \
             primary's unseal keys, and now accepts writes as a standalone cluster."
                .to_owned(),
        ],
        ..Logical::default()
    }))
}

/// Rebuilds the Merkle index from the shared partition.
pub(super) fn reindex(
    _core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let root = Merkle::reindex(txn)?;
    let mut record = IndexChecks::load(txn)?;
    record.last_reindex = Some(ctx.now);
    record.corrupted = false;
    record.save(txn)?;
    tracing::info!(root = %hex::encode(root), "rebuilt the Merkle index");
    let mut data = Map::new();
    data.insert("merkle_root".into(), json!(merkle_root_prefix(&root)));
    Ok(Response::data(data))
}

/// Compares the stored Merkle index with one rebuilt from the data.
pub(super) fn merkle_check(
    _core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let check = Merkle::check(txn)?;
    let corrupted = check.is_corrupted();
    let mut record = IndexChecks::load(txn)?;
    record.last_check = Some(ctx.now);
    record.corrupted = corrupted;
    record.save(txn)?;
    if corrupted {
        tracing::warn!(
            stored = %hex::encode(check.stored_root),
            rebuilt = %hex::encode(check.rebuilt_root),
            pages = check.corrupted_pages.len(),
            "the Merkle index does not match the data; run sys/replication/reindex"
        );
    }
    let pages: Vec<u8> = check.corrupted_pages.keys().copied().collect();
    let mut data = Map::new();
    data.insert("corrupted_merkle_tree".into(), json!(corrupted));
    data.insert(
        "stored_root".into(),
        json!(merkle_root_prefix(&check.stored_root)),
    );
    data.insert(
        "rebuilt_root".into(),
        json!(merkle_root_prefix(&check.rebuilt_root)),
    );
    data.insert("corrupted_pages".into(), json!(pages));
    Ok(Response::data(data))
}

/// Asks the replication driver to close the secondary's session and open a new one.
pub(super) fn recover(
    core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    if load_secondary(&view)?.is_none() {
        return Err(Error::bad_request(
            "this cluster is not a performance replication secondary with a primary; recover \
             restarts a secondary's replication session",
        ));
    }
    core.replication_live.request_recover();
    tracing::info!("restarting the secondary's replication session on request");
    Ok(Response::NoContent)
}

/// Lists the ids of the stored quarantines.
pub(super) fn list_quarantine(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let ids = view.list(Partition::Local, QUARANTINE_PREFIX)?;
    if ids.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(ids));
    Ok(Response::data(data))
}

/// Returns one quarantine with its writes and their decrypted values in base64.
pub(super) fn read_quarantine(
    core: &Core,
    ctx: &mut Ctx<'_>,
    id: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let key = format!("{QUARANTINE_PREFIX}{id}");
    let Some(quarantine): Option<Quarantine> = view.get_json(Partition::Local, &key)? else {
        return Err(Error::not_found());
    };

    let mut writes = Vec::with_capacity(quarantine.writes.len());
    for write in &quarantine.writes {
        let value = match &write.value {
            Some(ciphertext) => {
                let plaintext = view
                    .keyring()
                    .decrypt(Partition::Shared, &write.key, ciphertext)
                    .map_err(|error| {
                        Error::internal(format!(
                            "cannot decrypt the quarantined value of {}: {error}",
                            write.key
                        ))
                    })?;
                Value::String(STANDARD.encode(plaintext))
            }
            None => Value::Null,
        };
        writes.push(json!({
            "key": write.key,
            "operation": if write.value.is_some() { "put" } else { "delete" },
            "position": position_json(&write.position),
            "value": value,
        }));
    }

    let mut data = Map::new();
    data.insert("id".into(), json!(quarantine.id));
    data.insert(
        "quarantined_at".into(),
        json!(quarantine.quarantined_at.to_rfc3339_seconds()),
    );
    data.insert("new_epoch".into(), json!(quarantine.new_epoch_number));
    data.insert("fork_position".into(), position_json(&quarantine.fork));
    data.insert(
        "local_position".into(),
        position_json(&quarantine.local_head),
    );
    data.insert("complete".into(), json!(quarantine.complete));
    data.insert("writes".into(), Value::Array(writes));
    Ok(Response::data(data))
}

/// Meta key of the times of the last reindex and Merkle check.
const INDEX_CHECKS_KEY: &str = "replication/index-checks";

/// The last reindex and Merkle check of this node, for status. Kept in the meta partition, so
/// each node has its own.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct IndexChecks {
    /// When `sys/replication/reindex` last ran.
    pub(super) last_reindex: Option<Timestamp>,
    /// When `sys/replication/merkle-check` last ran.
    pub(super) last_check: Option<Timestamp>,
    /// Whether the last check found the index out of step with the data.
    pub(super) corrupted: bool,
}

impl IndexChecks {
    /// Reads the record, or the default before the first reindex or check.
    pub(super) fn load(txn: &dyn Transaction) -> Result<IndexChecks, Error> {
        match txn.get(Partition::Meta, INDEX_CHECKS_KEY)? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|error| {
                Error::internal(format!("invalid {INDEX_CHECKS_KEY} record: {error}"))
            })?),
            None => Ok(IndexChecks::default()),
        }
    }

    fn save(&self, txn: &mut dyn Transaction) -> Result<(), Error> {
        let bytes = serde_json::to_vec(self).map_err(|error| {
            Error::internal(format!("cannot encode {INDEX_CHECKS_KEY}: {error}"))
        })?;
        txn.put(Partition::Meta, INDEX_CHECKS_KEY, &bytes)?;
        Ok(())
    }
}

/// Formats a position as status and responses show it: epoch number and cluster, index and
/// hash.
pub(super) fn position_json(position: &Position) -> Value {
    json!({
        "epoch": position.epoch.number,
        "epoch_cluster_id": position.epoch.cluster_id,
        "index": position.index,
        "hash": hex::encode(position.hash),
    })
}

#[cfg(test)]
mod tests;
