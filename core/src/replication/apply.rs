//! Writes of replicated operations on a node: the data, the Merkle index and the WAL copy,
//! always together in one caller's transaction.

use std::collections::BTreeSet;

use crate::replication::merkle::Merkle;
use crate::replication::position::Epoch;
use crate::replication::wal::{Entry, Op, Wal};
use crate::storage::{Partition, StorageError, Transaction};

/// Applies `ops` to the shared partition and the Merkle index. Returns the keys written.
pub fn apply_ops(txn: &mut dyn Transaction, ops: &[Op]) -> Result<BTreeSet<String>, StorageError> {
    let mut changed = BTreeSet::new();
    for op in ops {
        match op {
            Op::Put { key, value } => txn.put(Partition::Shared, key, value)?,
            Op::Delete { key } => txn.delete(Partition::Shared, key)?,
        }
        changed.insert(op.key().to_owned());
    }
    Merkle::apply(txn, ops)?;
    Ok(changed)
}

/// Applies consecutive entries that continue the WAL head: their data, Merkle updates, a copy
/// of each entry in the node's own WAL, and the new head. Returns the keys written.
pub fn apply_entries(
    txn: &mut dyn Transaction,
    wal: &Wal,
    entries: &[Entry],
) -> Result<BTreeSet<String>, StorageError> {
    let mut changed = BTreeSet::new();
    for entry in entries {
        changed.extend(apply_ops(txn, &entry.ops)?);
        wal.store(txn, entry)?;
    }
    Ok(changed)
}

/// Records what a primary's handlers already wrote to the shared partition: the Merkle index
/// and one WAL entry that continues the head's chain, in the caller's transaction, so the log
/// and the index can never disagree with the data. `keys` are the shared keys the commit wrote;
/// each becomes a put of its current value or a delete. Returns the entry for the log shipper,
/// or `None` when nothing shared was written.
pub fn log_shared_writes(
    txn: &mut dyn Transaction,
    wal: &Wal,
    keys: &[String],
) -> Result<Option<Entry>, StorageError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let mut ops = Vec::with_capacity(keys.len());
    for key in keys {
        let op = match txn.get(Partition::Shared, key)? {
            Some(value) => Op::Put {
                key: key.clone(),
                value,
            },
            None => Op::Delete { key: key.clone() },
        };
        ops.push(op);
    }
    Merkle::apply(txn, &ops)?;
    let epoch = Wal::head(txn)?.epoch;
    wal.append(txn, &epoch, ops).map(Some)
}

/// Writes `ops` as the primary does: data and Merkle index, then a new WAL entry after the
/// head, all in the caller's transaction. Returns the entry to hand to the log shipper.
pub fn commit_primary_write(
    txn: &mut dyn Transaction,
    wal: &Wal,
    epoch: &Epoch,
    ops: Vec<Op>,
) -> Result<Entry, StorageError> {
    apply_ops(txn, &ops)?;
    wal.append(txn, epoch, ops)
}
