//! The write-ahead log: hash-chained entries stored in [`Partition::Wal`], and the head position
//! in [`Partition::Meta`].
//!
//! Each entry's hash covers its epoch, index, the previous entry's hash and its operations, so a
//! secondary that checks `prev_hash` against its own last hash applies only a continuation of
//! its own chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::replication::position::{Digest, Epoch, Position};
use crate::storage::{Partition, StorageError, Transaction};

/// Meta key of the position of the newest entry.
pub const HEAD_KEY: &str = "replication/wal-head";
/// Meta key of the index of the oldest entry still stored.
pub const TAIL_KEY: &str = "replication/wal-tail";

/// One write to the shared partition. Values are barrier ciphertext, opaque here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Stores `value` at `key`.
    Put {
        /// Storage key.
        key: String,
        /// Ciphertext.
        value: Vec<u8>,
    },
    /// Removes `key`; a missing key is not an error.
    Delete {
        /// Storage key.
        key: String,
    },
}

impl Op {
    /// Returns the key the operation writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }

    /// Approximate size in bytes, used to bound buffers.
    pub fn size(&self) -> usize {
        match self {
            Op::Put { key, value } => key.len() + value.len() + 8,
            Op::Delete { key } => key.len() + 4,
        }
    }
}

// Values are ciphertext but still large and uninteresting in logs, so Debug prints sizes only.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Put { key, value } => write!(f, "Put({key:?}, {} bytes)", value.len()),
            Op::Delete { key } => write!(f, "Delete({key:?})"),
        }
    }
}

/// One WAL entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Epoch of the primary that wrote the entry.
    pub epoch: Epoch,
    /// Index on the chain, starting at 1.
    pub index: u64,
    /// Hash of the entry at `index - 1`.
    pub prev_hash: Digest,
    /// Hash of this entry, see [`Entry::compute_hash`].
    pub hash: Digest,
    /// The writes, applied in order.
    pub ops: Vec<Op>,
}

impl Entry {
    /// Builds the entry that follows `prev` in `epoch`.
    pub fn next(prev: &Position, epoch: Epoch, ops: Vec<Op>) -> Entry {
        let index = prev.index + 1;
        let hash = Entry::compute_hash(&epoch, index, &prev.hash, &ops);
        Entry {
            epoch,
            index,
            prev_hash: prev.hash,
            hash,
            ops,
        }
    }

    /// SHA-256 over a canonical, length-prefixed encoding of the entry's fields.
    pub fn compute_hash(epoch: &Epoch, index: u64, prev_hash: &Digest, ops: &[Op]) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(b"coffer-wal-v1");
        hasher.update(epoch.number.to_be_bytes());
        put_bytes(&mut hasher, epoch.cluster_id.as_bytes());
        hasher.update(index.to_be_bytes());
        hasher.update(prev_hash);
        hasher.update((ops.len() as u64).to_be_bytes());
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    hasher.update([1]);
                    put_bytes(&mut hasher, key.as_bytes());
                    put_bytes(&mut hasher, value);
                }
                Op::Delete { key } => {
                    hasher.update([2]);
                    put_bytes(&mut hasher, key.as_bytes());
                }
            }
        }
        hasher.finalize().into()
    }

    /// Returns whether the stored hash matches the entry's contents.
    pub fn hash_is_valid(&self) -> bool {
        Entry::compute_hash(&self.epoch, self.index, &self.prev_hash, &self.ops) == self.hash
    }

    /// Returns the position right after this entry.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            index: self.index,
            hash: self.hash,
        }
    }

    /// Approximate size in bytes, used to bound buffers and batches.
    pub fn size(&self) -> usize {
        96 + self.epoch.cluster_id.len() + self.ops.iter().map(Op::size).sum::<usize>()
    }
}

fn put_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// The on-disk WAL, bounded to the newest `retain` entries.
#[derive(Clone, Debug)]
pub struct Wal {
    retain: u64,
}

impl Wal {
    /// Creates a WAL that keeps at most `retain` entries (at least one).
    pub fn new(retain: u64) -> Wal {
        Wal {
            retain: retain.max(1),
        }
    }

    /// Appends an entry holding `ops` after the head, in the caller's transaction, and trims
    /// the oldest entries beyond the bound. The caller writes the data in the same transaction.
    pub fn append(
        &self,
        txn: &mut dyn Transaction,
        epoch: &Epoch,
        ops: Vec<Op>,
    ) -> Result<Entry, StorageError> {
        let head = Wal::head(txn)?;
        let entry = Entry::next(&head, epoch.clone(), ops);
        self.store(txn, &entry)?;
        Ok(entry)
    }

    /// Stores an entry that continues the head, as a secondary does with what it applies.
    pub fn store(&self, txn: &mut dyn Transaction, entry: &Entry) -> Result<(), StorageError> {
        txn.put(Partition::Wal, &entry_key(entry.index), &encode(entry)?)?;
        Wal::set_head(txn, &entry.position())?;
        if Wal::tail(txn)?.is_none() {
            txn.put(Partition::Meta, TAIL_KEY, &encode(&entry.index)?)?;
        }
        self.trim(txn, entry.index)
    }

    /// Returns the position of the newest entry, or genesis in the default epoch before any.
    pub fn head(txn: &dyn Transaction) -> Result<Position, StorageError> {
        match txn.get(Partition::Meta, HEAD_KEY)? {
            Some(bytes) => decode(HEAD_KEY, &bytes),
            None => Ok(Position::default()),
        }
    }

    /// Moves the head to `position` without storing an entry: a secondary adopting the
    /// primary's position after a Merkle sync, or the first position of a fresh chain. Stored
    /// entries are dropped because they no longer lead to the head.
    pub fn reset(txn: &mut dyn Transaction, position: &Position) -> Result<(), StorageError> {
        for key in txn.scan(Partition::Wal, "", None, None)? {
            txn.delete(Partition::Wal, &key)?;
        }
        txn.delete(Partition::Meta, TAIL_KEY)?;
        Wal::set_head(txn, position)
    }

    /// Moves the head into `epoch` at the same index and hash and keeps the stored entries, so
    /// the next entry continues the chain in the new epoch and followers that are a few entries
    /// behind can still stream. A promotion and `primary/enable` start their epoch this way.
    pub fn raise_epoch(txn: &mut dyn Transaction, epoch: &Epoch) -> Result<Position, StorageError> {
        let head = Wal::head(txn)?;
        let raised = Position {
            epoch: epoch.clone(),
            index: head.index,
            hash: head.hash,
        };
        Wal::set_head(txn, &raised)?;
        Ok(raised)
    }

    /// Returns the stored entries after `index` in index order, at most `max` of them.
    pub fn entries_after(
        txn: &dyn Transaction,
        index: u64,
        max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = entry_key(index);
        let keys = txn.scan(Partition::Wal, "", Some(&start), Some(max))?;
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(bytes) = txn.get(Partition::Wal, &key)? {
                entries.push(decode(&key, &bytes)?);
            }
        }
        Ok(entries)
    }

    /// Returns the entry at `index`, if it is still stored.
    pub fn entry(txn: &dyn Transaction, index: u64) -> Result<Option<Entry>, StorageError> {
        let key = entry_key(index);
        match txn.get(Partition::Wal, &key)? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Index of the oldest stored entry, if any is stored.
    pub fn tail(txn: &dyn Transaction) -> Result<Option<u64>, StorageError> {
        match txn.get(Partition::Meta, TAIL_KEY)? {
            Some(bytes) => decode(TAIL_KEY, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn set_head(txn: &mut dyn Transaction, position: &Position) -> Result<(), StorageError> {
        txn.put(Partition::Meta, HEAD_KEY, &encode(position)?)
    }

    fn trim(&self, txn: &mut dyn Transaction, head: u64) -> Result<(), StorageError> {
        let Some(mut tail) = Wal::tail(txn)? else {
            return Ok(());
        };
        let keep_from = head.saturating_sub(self.retain - 1).max(1);
        while tail < keep_from {
            txn.delete(Partition::Wal, &entry_key(tail))?;
            tail += 1;
        }
        txn.put(Partition::Meta, TAIL_KEY, &encode(&tail)?)
    }
}

/// Storage key of the entry at `index`: zero-padded so keys sort by index.
pub fn entry_key(index: u64) -> String {
    format!("{index:020}")
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(value).map_err(|error| StorageError::Backend(error.to_string()))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|error| StorageError::Corrupt {
        partition: Partition::Meta,
        key: key.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemStorage, Storage};

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            value: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn append_chains_entries() {
        let storage = MemStorage::new();
        let wal = Wal::new(10);
        let epoch = Epoch::new(1, "c");
        let first = storage
            .write(|txn| wal.append(txn, &epoch, vec![put("a")]))
            .unwrap();
        let second = storage
            .write(|txn| wal.append(txn, &epoch, vec![put("b")]))
            .unwrap();
        assert_eq!(first.index, 1);
        assert_eq!(second.index, 2);
        assert_eq!(second.prev_hash, first.hash);
        assert!(second.hash_is_valid());
        let head = storage.read(|txn| Wal::head(txn)).unwrap().unwrap();
        assert_eq!(head, second.position());
    }

    #[test]
    fn append_trims_beyond_retain() {
        let storage = MemStorage::new();
        let wal = Wal::new(3);
        let epoch = Epoch::new(1, "c");
        for _ in 0..5 {
            storage
                .write(|txn| wal.append(txn, &epoch, vec![put("a")]))
                .unwrap();
        }
        let (tail, oldest, kept) = storage
            .read(|txn| {
                (
                    Wal::tail(txn).unwrap(),
                    Wal::entry(txn, 2).unwrap(),
                    Wal::entry(txn, 3).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(tail, Some(3));
        assert!(oldest.is_none());
        assert!(kept.is_some());
        assert_eq!(storage.dump(Partition::Wal).len(), 3);
    }

    #[test]
    fn raised_epoch_keeps_entries_and_chain() {
        let storage = MemStorage::new();
        let wal = Wal::new(10);
        let old = Epoch::new(1, "a");
        let new = Epoch::new(2, "b");
        for _ in 0..3 {
            storage
                .write(|txn| wal.append(txn, &old, vec![put("a")]))
                .unwrap();
        }
        let before = storage.read(|txn| Wal::head(txn)).unwrap().unwrap();
        let raised = storage.write(|txn| Wal::raise_epoch(txn, &new)).unwrap();
        assert_eq!(raised.index, before.index);
        assert_eq!(raised.hash, before.hash);
        assert_eq!(raised.epoch, new);
        let next = storage
            .write(|txn| wal.append(txn, &new, vec![put("b")]))
            .unwrap();
        assert_eq!(next.prev_hash, before.hash);
        let after = storage
            .read(|txn| Wal::entries_after(txn, 1, 10))
            .unwrap()
            .unwrap();
        let indexes: Vec<u64> = after.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![2, 3, 4]);
    }

    #[test]
    fn changed_op_changes_hash() {
        let epoch = Epoch::new(1, "c");
        let head = Position::genesis(epoch.clone());
        let a = Entry::next(&head, epoch.clone(), vec![put("a")]);
        let b = Entry::next(&head, epoch, vec![put("b")]);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn tampered_entry_fails_hash_check() {
        let epoch = Epoch::new(1, "c");
        let mut entry = Entry::next(&Position::genesis(epoch.clone()), epoch, vec![put("a")]);
        entry.ops.push(put("b"));
        assert!(!entry.hash_is_valid());
    }
}
