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
    write_ops(txn, ops, &mut changed)?;
    Merkle::apply(txn, ops)?;
    Ok(changed)
}

/// Writes `ops` to the shared partition and adds their keys to `changed`.
fn write_ops(
    txn: &mut dyn Transaction,
    ops: &[Op],
    changed: &mut BTreeSet<String>,
) -> Result<(), StorageError> {
    for op in ops {
        match op {
            Op::Put { key, value } => txn.put(Partition::Shared, key, value)?,
            Op::Delete { key } => txn.delete(Partition::Shared, key)?,
        }
        changed.insert(op.key().to_owned());
    }
    Ok(())
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
        write_ops(txn, &entry.ops, &mut changed)?;
        wal.store(txn, entry)?;
    }
    // One index update for all entries hashes each touched page and the root once, where an
    // update per entry would hash them again for every entry. The ops keep their order.
    Merkle::apply(txn, entries.iter().flat_map(|entry| &entry.ops))?;
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::replication::position::Position;
    use crate::storage::{MemStorage, Storage};

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let key = "[a-c]{1,2}";
        prop_oneof![
            (key, "[x-z]{0,2}").prop_map(|(key, value)| put(&key, &value)),
            key.prop_map(|key| Op::Delete { key }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Keys that repeat across the entries of one batch (put, delete, put) leave the same
        /// index as a rebuild, and the same data as applying one entry at a time.
        #[test]
        fn batched_entries_match_rebuild(
            batches in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(op_strategy(), 1..5), 1..6),
                1..4,
            )
        ) {
            let epoch = Epoch::new(1, "cluster");
            let mut position = Position::genesis(epoch.clone());
            let batched = MemStorage::new();
            let single = MemStorage::new();
            let wal = Wal::new(64);
            for batch in batches {
                let mut entries = Vec::new();
                for ops in batch {
                    let entry = Entry::next(&position, epoch.clone(), ops);
                    position = entry.position();
                    entries.push(entry);
                }
                batched.write(|txn| apply_entries(txn, &wal, &entries)).unwrap();
                for entry in &entries {
                    let entry = std::slice::from_ref(entry);
                    single.write(|txn| apply_entries(txn, &wal, entry)).unwrap();
                }
            }
            let check = batched.read(|txn| Merkle::check(txn)).unwrap().unwrap();
            prop_assert!(!check.is_corrupted(), "{:?}", check);
            let root = |storage: &MemStorage| storage.read(|txn| Merkle::root(txn)).unwrap().unwrap();
            prop_assert_eq!(root(&batched), root(&single));
            prop_assert_eq!(batched.dump(Partition::Shared), single.dump(Partition::Shared));
        }
    }

    #[test]
    fn batched_entries_index_in_order() {
        let epoch = Epoch::new(1, "cluster");
        let first = Entry::next(
            &Position::genesis(epoch.clone()),
            epoch.clone(),
            vec![put("a", "1"), put("b", "1")],
        );
        let second = Entry::next(
            &first.position(),
            epoch.clone(),
            vec![Op::Delete { key: "a".into() }, put("b", "2"), put("c", "1")],
        );
        let third = Entry::next(&second.position(), epoch, vec![put("a", "3")]);
        let storage = MemStorage::new();
        let wal = Wal::new(16);

        storage
            .write(|txn| apply_entries(txn, &wal, &[first, second, third]))
            .unwrap();

        let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
        assert!(!check.is_corrupted(), "{check:?}");
        let value = storage.read(|txn| txn.get(Partition::Shared, "a")).unwrap();
        assert_eq!(value.unwrap(), Some(b"3".to_vec()));
    }
}
