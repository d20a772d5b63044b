//! Failover on the core side. This module keeps the demoted primary's record and the quarantine
//! of writes that a newly promoted primary lacks. It also switches a secondary or demoted primary
//! to a new primary of the same replication set without a wipe (`update-primary`).
//!
//! A promoted secondary starts its epoch at the position it had applied (the fork point) and
//! continues the chain from there, so a follower whose own entries after the fork point are in an
//! older epoch contains writes the new primary never received. The Merkle diff that follows
//! replaces them with the new primary's state, so they are copied to a quarantine in the local
//! partition first, with their keys and positions, and logged.

use std::collections::BTreeMap;
use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::replication::activation::{BootstrapBundle, PrivateKey};
use crate::replication::keys::{KeyOffer, open_key_offer};
use crate::replication::position::{Epoch, Position};
use crate::replication::role::{SecondaryRecord, load_secondary, save_secondary};
use crate::replication::wal::{Entry, Op, Wal};
use crate::storage::{Partition, Transaction};
use crate::sys::replication::state;
use crate::time::Timestamp;

/// Local key of a demoted primary's record.
pub const DEMOTED_KEY: &str = "core/replication/performance/demoted";

/// Prefix of the local keys of quarantined writes, one key per reconciliation.
pub const QUARANTINE_PREFIX: &str = "core/replication-quarantine/";

/// The most WAL entries one quarantine reads. The WAL keeps at most `wal_retain` entries, so
/// this bound only matters for a configuration with a larger `wal_retain`.
pub const MAX_QUARANTINE_ENTRIES: usize = 65_536;

/// The replication state a demoted primary keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemotedRecord {
    /// The replication set's cluster id, kept so the node can rejoin the set.
    pub cluster_id: String,
    /// The WAL head when the node was demoted: the last write it accepted as a primary.
    pub final_position: Position,
    /// When the node was demoted.
    pub demoted_at: Timestamp,
}

/// Reads the demoted primary's record, if this node is one.
pub(crate) fn load_demoted(view: &SecureView<'_>) -> Result<Option<DemotedRecord>, Error> {
    view.get_json(Partition::Local, DEMOTED_KEY)
}

/// Stores the demoted primary's record.
pub(crate) fn save_demoted(view: &mut SecureView<'_>, record: &DemotedRecord) -> Result<(), Error> {
    view.put_json(Partition::Local, DEMOTED_KEY, record)
}

/// One quarantined write: the last operation of this node's diverged entries on one key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedWrite {
    /// The shared storage key.
    pub key: String,
    /// Position of the entry that last wrote the key.
    pub position: Position,
    /// The barrier ciphertext the entry stored, or `None` when it deleted the key.
    pub value: Option<Vec<u8>>,
}

// The value is ciphertext, but it still stays out of logs.
impl fmt::Debug for QuarantinedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantinedWrite")
            .field("key", &self.key)
            .field("position", &self.position)
            .field("deleted", &self.value.is_none())
            .finish()
    }
}

/// The writes one reconciliation set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The id under [`QUARANTINE_PREFIX`].
    pub id: String,
    /// When the writes were set aside.
    pub quarantined_at: Timestamp,
    /// The epoch number of the primary the node switched to.
    pub new_epoch_number: u64,
    /// The position where the new primary's epoch starts.
    pub fork: Position,
    /// This node's head when it switched.
    pub local_head: Position,
    /// Whether every entry after the fork point was still in this node's WAL and chained to
    /// the fork point. When `false`, older diverged writes exist that are not listed.
    pub complete: bool,
    /// The writes, by position, then key.
    pub writes: Vec<QuarantinedWrite>,
}

/// Returns the writes of `entries` that the new primary lacks: those after `fork_index` in an
/// epoch numbered below `new_epoch_number`. Each key appears once, with the last operation on
/// it; the result is ordered by position, then key.
pub fn quarantined_writes(
    entries: &[Entry],
    fork_index: u64,
    new_epoch_number: u64,
) -> Vec<QuarantinedWrite> {
    let mut by_key: BTreeMap<&str, QuarantinedWrite> = BTreeMap::new();
    let diverged = entries
        .iter()
        .filter(|entry| entry.index > fork_index && entry.epoch.number < new_epoch_number);
    for entry in diverged {
        for op in &entry.ops {
            let value = match op {
                Op::Put { value, .. } => Some(value.clone()),
                Op::Delete { .. } => None,
            };
            let write = QuarantinedWrite {
                key: op.key().to_owned(),
                position: entry.position(),
                value,
            };
            by_key.insert(op.key(), write);
        }
    }
    let mut writes: Vec<QuarantinedWrite> = by_key.into_values().collect();
    writes.sort_by(|a, b| (a.position.index, &a.key).cmp(&(b.position.index, &b.key)));
    writes
}

/// Computes the quarantine of this node's writes against a new primary whose epoch
/// `new_epoch_number` starts at `fork`. Returns `None` when the node has nothing the new
/// primary lacks: its head is at or before the fork point.
///
/// NOTE: a node whose head is before the fork point but off the new chain, because it diverged
/// in an older epoch, is not detected here. The Merkle diff replaces those writes unlisted.
pub fn plan_quarantine(
    txn: &dyn Transaction,
    fork: &Position,
    new_epoch_number: u64,
    id: String,
    now: Timestamp,
) -> Result<Option<Quarantine>, Error> {
    let head = Wal::head(txn)?;
    if head.index <= fork.index || head.epoch.number >= new_epoch_number {
        return Ok(None);
    }
    let entries = Wal::entries_after(txn, fork.index, MAX_QUARANTINE_ENTRIES)?;
    let chained = entries
        .first()
        .is_some_and(|first| first.index == fork.index + 1 && first.prev_hash == fork.hash);
    let reaches_head = entries.last().is_some_and(|last| last.index == head.index);
    let writes = quarantined_writes(&entries, fork.index, new_epoch_number);
    Ok(Some(Quarantine {
        id,
        quarantined_at: now,
        new_epoch_number,
        fork: fork.clone(),
        local_head: head,
        complete: chained && reaches_head,
        writes,
    }))
}

/// The outcome of [`adopt_new_primary`], for the response and the log.
#[derive(Debug)]
pub struct Reconciled {
    /// The quarantine it stored, if this node had writes the new primary lacks.
    pub quarantine: Option<Quarantine>,
    /// This node's position when it switched; the new primary decides from it whether the node
    /// streams on or runs a Merkle diff.
    pub position: Position,
}

/// Makes this secondary or demoted primary follow the primary of `bundle`, in `txn`, without
/// a wipe. It checks the replication set and opens `offer` with `key` to prove the bundle's
/// keys. Then it quarantines what the new primary lacks and stores the new activation record.
/// The caller commits, then installs the offered keys with
/// [`accept_key_offer`](crate::replication::activate::accept_key_offer).
#[allow(clippy::too_many_arguments)]
pub fn adopt_new_primary(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
    now: Timestamp,
    bundle: &BootstrapBundle,
    key: &PrivateKey,
    offer: &KeyOffer,
) -> Result<Reconciled, Error> {
    let mut view = core.barrier.view(txn, rng)?;
    let own_set = follower_cluster_id(&view)?;
    require_same_set(&own_set, &bundle.cluster_id)?;
    // A secondary still in its first sync keeps that mark, so it cannot be promoted with
    // partial data. A demoted primary has all of its data.
    let activated = load_secondary(&view)?.is_none_or(|record| record.activated);
    open_key_offer(offer, key, &bundle.cluster_id, &bundle.secondary_id)?;

    let position = Wal::head(view.raw())?;
    if position.epoch.number > bundle.epoch.number {
        return Err(Error::bad_request(format!(
            "this node has applied entries of epoch {}, newer than the epoch {} of the primary \
             that issued the token; issue the token on the newest primary",
            position.epoch, bundle.epoch.number
        )));
    }
    let quarantine = match &bundle.epoch_start {
        Some(fork) => {
            let id = format!("epoch-{}-index-{}", bundle.epoch.number, position.index);
            plan_quarantine(view.raw(), fork, bundle.epoch.number, id, now)?
        }
        None => None,
    };
    if let Some(quarantine) = &quarantine {
        let key = format!("{QUARANTINE_PREFIX}{}", quarantine.id);
        view.put_json(Partition::Local, &key, quarantine)?;
    }
    save_secondary(
        &mut view,
        &SecondaryRecord {
            bundle: bundle.clone(),
            key: key.clone(),
            activated,
            adopted_at: now,
        },
    )?;
    view.delete(Partition::Local, DEMOTED_KEY)?;
    Ok(Reconciled {
        quarantine,
        position,
    })
}

/// Returns the replication set this node follows or followed as a secondary or demoted
/// primary, or a 400 for a primary and for a node without replication.
pub(crate) fn follower_cluster_id(view: &SecureView<'_>) -> Result<String, Error> {
    if let Some(record) = load_secondary(view)? {
        return Ok(record.bundle.cluster_id);
    }
    if let Some(record) = load_demoted(view)? {
        return Ok(record.cluster_id);
    }
    if state::load_primary(view)?.is_some() {
        return Err(Error::bad_request(
            "this cluster is a performance replication primary; demote it with \
             sys/replication/performance/primary/demote before it follows another primary",
        ));
    }
    Err(Error::bad_request(
        "this cluster is not a performance replication secondary; activate it with \
         sys/replication/performance/secondary/enable, which wipes its data",
    ))
}

/// Returns the 400 for a token of another replication set.
pub fn require_same_set(own: &str, token: &str) -> Result<(), Error> {
    if own == token {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "the activation token is for replication set {token}, but this cluster belongs to \
         replication set {own}; update-primary only follows a primary of the same set, so \
         activate this cluster with sys/replication/performance/secondary/enable, which wipes \
         its data"
    )))
}

/// Returns the epoch a promotion of this node starts: a number above every epoch it has seen
/// (its own head and the bundle it followed), with `cluster_id` naming the promoted cluster.
pub fn promoted_epoch(head: &Epoch, followed: u64, cluster_id: String) -> Epoch {
    let number = head.number.max(followed).saturating_add(1);
    Epoch::new(number, cluster_id)
}

#[cfg(test)]
mod tests;
