//! Storage traits over named partitions, and the in-memory implementation.
//!
//! A node's data lives in five partitions. `Shared` replicates to secondaries; `Local` never
//! leaves the node; `Wal`, `Merkle` and `Meta` hold the replication log, the Merkle index and
//! bookkeeping. Every logical write is one [`Transaction`], committed atomically by a
//! [`Storage`].
//!
//! [`Overlay`] buffers writes over any transaction, which gives savepoints (run a request, keep
//! or drop its writes) without help from the backend. [`Guarded`] makes chosen partitions
//! read-only, which is how a secondary detects that a request must be forwarded.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// One of a node's storage partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Partition {
    /// Replicated data: secrets in non-local mounts, policies, the shared mount tables, the
    /// keyring.
    Shared,
    /// Data that never leaves this node: tokens, leases, local mounts, replication identity.
    Local,
    /// The replication write-ahead log.
    Wal,
    /// Pages of the Merkle index over the shared partition.
    Merkle,
    /// Replication bookkeeping: positions, epochs, pending activations.
    Meta,
}

impl Partition {
    /// Every partition, in a fixed order.
    pub const ALL: [Partition; 5] = [
        Partition::Shared,
        Partition::Local,
        Partition::Wal,
        Partition::Merkle,
        Partition::Meta,
    ];

    /// The name used for the partition's LMDB database and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Shared => "shared",
            Partition::Local => "local",
            Partition::Wal => "wal",
            Partition::Merkle => "merkle",
            Partition::Meta => "meta",
        }
    }
}

/// The longest key, in bytes, that every backend stores: LMDB's default limit. Writes of longer
/// keys fail with [`StorageError::KeyTooLong`] before they reach a backend, so one oversized
/// request cannot fail the other writes committed with it.
pub const MAX_KEY_LEN: usize = 511;

/// An error from a storage operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A write reached a partition that this transaction may only read.
    #[error("cannot write to read-only storage: the {} partition", partition.name())]
    ReadOnly {
        /// The partition the write was aimed at.
        partition: Partition,
    },
    /// A key is longer than [`MAX_KEY_LEN`].
    #[error(
        "the storage key for this path is {length} bytes, longer than the maximum of {max}; use a shorter path or key"
    )]
    KeyTooLong {
        /// The key's length in bytes.
        length: usize,
        /// The maximum, [`MAX_KEY_LEN`].
        max: usize,
    },
    /// The storage backend failed.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A stored value could not be decoded or authenticated.
    #[error("stored value at {key:?} in the {} partition is corrupt: {reason}", partition.name())]
    Corrupt {
        /// The partition holding the value.
        partition: Partition,
        /// The key of the value.
        key: String,
        /// The problem found with it.
        reason: String,
    },
}

/// Reads and writes inside one atomic transaction.
///
/// Keys are UTF-8 paths such as `logical/<mount uuid>/foo`. Values are opaque bytes; the barrier
/// decides what they contain.
pub trait Transaction {
    /// Returns the value stored at `key`, if any.
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores `value` at `key`, replacing any earlier value.
    fn put(&mut self, partition: Partition, key: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Removes `key`. Deleting a missing key is not an error, and it is still a write: a
    /// read-only partition rejects it either way.
    fn delete(&mut self, partition: Partition, key: &str) -> Result<(), StorageError>;

    /// Returns every key that starts with `prefix`, sorted, with at most `limit` entries when a
    /// limit is given, starting after `start_after` when given.
    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError>;
}

/// A storage backend that runs transactions and commits them atomically and durably.
pub trait Storage: Send + Sync {
    /// Runs `body` against a consistent read-only snapshot.
    fn read<R>(&self, body: impl FnOnce(&dyn Transaction) -> R) -> Result<R, StorageError>;

    /// Runs `body` in one write transaction, committing it when `body` returns `Ok` and
    /// discarding it otherwise. Commits are durable when this returns.
    fn write<R, E>(&self, body: impl FnOnce(&mut dyn Transaction) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StorageError>;
}

/// Returns the names directly below `prefix`, the way Vault lists: a key below a sub-folder
/// appears once as `name/`. The result is sorted and has no duplicates.
pub fn list_children(
    txn: &dyn Transaction,
    partition: Partition,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    let mut children: Vec<String> = Vec::new();
    for key in txn.scan(partition, prefix, None, None)? {
        let rest = &key[prefix.len()..];
        let child = match rest.find('/') {
            Some(slash) => &rest[..=slash],
            None => rest,
        };
        if child.is_empty() {
            continue;
        }
        if children.last().map(String::as_str) != Some(child) {
            children.push(child.to_owned());
        }
    }
    children.dedup();
    Ok(children)
}

/// Every write recorded by an [`Overlay`]: `Some` is a put, `None` a delete.
pub type WriteSet = BTreeMap<(Partition, String), Option<Vec<u8>>>;

/// Applies recorded writes to a transaction, in key order.
pub fn apply_writes(txn: &mut dyn Transaction, writes: &WriteSet) -> Result<(), StorageError> {
    for ((partition, key), value) in writes {
        match value {
            Some(value) => txn.put(*partition, key, value)?,
            None => txn.delete(*partition, key)?,
        }
    }
    Ok(())
}

/// A transaction that buffers its writes in memory over a parent it only reads.
///
/// Reads see the buffered writes first. [`Overlay::into_writes`] hands the writes back so the
/// caller can apply them to the parent, or drop them to roll back.
pub struct Overlay<'p> {
    parent: &'p dyn Transaction,
    writes: WriteSet,
}

impl<'p> Overlay<'p> {
    /// Starts an empty overlay over `parent`.
    pub fn new(parent: &'p dyn Transaction) -> Overlay<'p> {
        Overlay {
            parent,
            writes: WriteSet::new(),
        }
    }

    /// The writes buffered so far.
    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }

    /// Ends the overlay and returns its writes.
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

impl Transaction for Overlay<'_> {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.writes.get(&(partition, key.to_owned())) {
            Some(value) => Ok(value.clone()),
            None => self.parent.get(partition, key),
        }
    }

    fn put(&mut self, partition: Partition, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.writes
            .insert((partition, key.to_owned()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, partition: Partition, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.writes.insert((partition, key.to_owned()), None);
        Ok(())
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        // Scanning the parent without a limit keeps the merge simple; a limit is applied after.
        let mut keys: std::collections::BTreeSet<String> = self
            .parent
            .scan(partition, prefix, start_after, None)?
            .into_iter()
            .collect();
        let lower = (partition, prefix.to_owned());
        for ((_, key), value) in self
            .writes
            .range((Bound::Included(lower), Bound::Unbounded))
            .take_while(|((p, k), _)| *p == partition && k.starts_with(prefix))
        {
            if start_after.is_some_and(|after| key.as_str() <= after) {
                continue;
            }
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        let mut keys: Vec<String> = keys.into_iter().collect();
        if let Some(limit) = limit {
            keys.truncate(limit);
        }
        Ok(keys)
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::KeyTooLong {
            length: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// A transaction wrapper that rejects writes to some partitions with
/// [`StorageError::ReadOnly`], and remembers that it did, so a caller can tell the refusal
/// apart however the handler treated the error.
pub struct Guarded<'t> {
    inner: &'t mut dyn Transaction,
    read_only: &'static [Partition],
    refused: bool,
}

impl<'t> Guarded<'t> {
    /// Wraps `inner` so that writes to any partition in `read_only` fail.
    pub fn new(inner: &'t mut dyn Transaction, read_only: &'static [Partition]) -> Guarded<'t> {
        Guarded {
            inner,
            read_only,
            refused: false,
        }
    }

    /// Returns whether a write to a guarded partition was attempted.
    pub fn refused(&self) -> bool {
        self.refused
    }

    fn check(&mut self, partition: Partition) -> Result<(), StorageError> {
        if self.read_only.contains(&partition) {
            self.refused = true;
            return Err(StorageError::ReadOnly { partition });
        }
        Ok(())
    }
}

impl Transaction for Guarded<'_> {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(partition, key)
    }

    fn put(&mut self, partition: Partition, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check(partition)?;
        self.inner.put(partition, key, value)
    }

    fn delete(&mut self, partition: Partition, key: &str) -> Result<(), StorageError> {
        self.check(partition)?;
        self.inner.delete(partition, key)
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.scan(partition, prefix, start_after, limit)
    }
}

/// A read-only view of any transaction: every write fails with [`StorageError::ReadOnly`].
pub struct ReadOnly<'t>(pub &'t dyn Transaction);

impl Transaction for ReadOnly<'_> {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.get(partition, key)
    }

    fn put(&mut self, partition: Partition, _key: &str, _value: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn delete(&mut self, partition: Partition, _key: &str) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        self.0.scan(partition, prefix, start_after, limit)
    }
}

type MemMap = BTreeMap<(Partition, String), Vec<u8>>;

/// In-memory storage for tests and the simulation.
///
/// It behaves like LMDB across a simulated crash: what was committed stays, and a transaction
/// that had not committed leaves no trace. Clones share the same data, so a "restarted" node can
/// open the storage its previous incarnation committed to.
#[derive(Clone, Default)]
pub struct MemStorage {
    data: Arc<Mutex<Arc<MemMap>>>,
}

impl MemStorage {
    /// Makes an empty store.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    fn snapshot(&self) -> Arc<MemMap> {
        Arc::clone(&self.data.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Pins the committed state: the returned view keeps reading it while later writes commit.
    /// It shares the map with the store, so pinning costs one reference count.
    pub fn pin(&self) -> MemSnapshot {
        MemSnapshot(self.snapshot())
    }

    /// Every committed key and value of one partition, in key order. Tests use it to compare
    /// nodes.
    pub fn dump(&self, partition: Partition) -> Vec<(String, Vec<u8>)> {
        self.snapshot()
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// A read-only view of one committed state of a [`MemStorage`], from [`MemStorage::pin`]. Writes
/// committed after the pin do not change it; its own writes fail with
/// [`StorageError::ReadOnly`].
#[derive(Clone)]
pub struct MemSnapshot(Arc<MemMap>);

impl Transaction for MemSnapshot {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(&(partition, key.to_owned())).cloned())
    }

    fn put(&mut self, partition: Partition, _key: &str, _value: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn delete(&mut self, partition: Partition, _key: &str) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        let lower = match start_after {
            Some(after) => Bound::Excluded((partition, after.to_owned())),
            None => Bound::Included((partition, prefix.to_owned())),
        };
        let keys = self
            .0
            .range((lower, Bound::Unbounded))
            .map(|((p, key), _)| (*p, key))
            .take_while(|(p, key)| *p == partition && key.starts_with(prefix))
            .map(|(_, key)| key.clone())
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        Ok(keys)
    }
}

impl Storage for MemStorage {
    fn read<R>(&self, body: impl FnOnce(&dyn Transaction) -> R) -> Result<R, StorageError> {
        let snapshot = MemSnapshot(self.snapshot());
        Ok(body(&snapshot))
    }

    fn write<R, E>(&self, body: impl FnOnce(&mut dyn Transaction) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StorageError>,
    {
        // Holding the lock for the whole transaction makes writers serial, as in LMDB.
        let mut guard = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = MemSnapshot(Arc::clone(&guard));
        let mut overlay = Overlay::new(&snapshot);
        let result = body(&mut overlay)?;
        let writes = overlay.into_writes();
        // The snapshot shares the map; dropping it first lets `make_mut` update in place
        // instead of copying the whole store on every write.
        drop(snapshot);
        let map = Arc::make_mut(&mut guard);
        for ((partition, key), value) in writes {
            match value {
                Some(value) => map.insert((partition, key), value),
                None => map.remove(&(partition, key)),
            };
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(storage: &MemStorage, key: &str, value: &str) {
        storage
            .write(|txn| txn.put(Partition::Shared, key, value.as_bytes()))
            .unwrap();
    }

    #[test]
    fn committed_write_is_visible() {
        let storage = MemStorage::new();
        put(&storage, "a", "1");
        let value = storage
            .read(|txn| txn.get(Partition::Shared, "a"))
            .unwrap()
            .unwrap();
        assert_eq!(value.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn failed_write_leaves_no_trace() {
        let storage = MemStorage::new();
        let result: Result<(), StorageError> = storage.write(|txn| {
            txn.put(Partition::Shared, "a", b"1")?;
            Err(StorageError::Backend("stop".into()))
        });
        assert!(result.is_err());
        let value = storage.read(|txn| txn.get(Partition::Shared, "a")).unwrap();
        assert_eq!(value.unwrap(), None);
    }

    #[test]
    fn partitions_are_separate() {
        let storage = MemStorage::new();
        put(&storage, "a", "1");
        let local = storage.read(|txn| txn.get(Partition::Local, "a")).unwrap();
        assert_eq!(local.unwrap(), None);
    }

    #[test]
    fn overlay_scan_merges_puts_and_deletes() {
        let storage = MemStorage::new();
        put(&storage, "p/a", "1");
        put(&storage, "p/b", "2");
        put(&storage, "q/c", "3");
        storage
            .read(|txn| {
                let mut overlay = Overlay::new(txn);
                overlay.delete(Partition::Shared, "p/a").unwrap();
                overlay.put(Partition::Shared, "p/c", b"4").unwrap();
                let keys = overlay.scan(Partition::Shared, "p/", None, None).unwrap();
                assert_eq!(keys, vec!["p/b".to_owned(), "p/c".to_owned()]);
                let after = overlay
                    .scan(Partition::Shared, "p/", Some("p/b"), Some(1))
                    .unwrap();
                assert_eq!(after, vec!["p/c".to_owned()]);
            })
            .unwrap();
    }

    #[test]
    fn guarded_rejects_blind_delete() {
        let storage = MemStorage::new();
        storage
            .write(|txn| {
                let mut guarded = Guarded::new(txn, &[Partition::Shared]);
                let error = guarded.delete(Partition::Shared, "missing").unwrap_err();
                assert_eq!(
                    error,
                    StorageError::ReadOnly {
                        partition: Partition::Shared
                    }
                );
                guarded.put(Partition::Local, "ok", b"1")
            })
            .unwrap();
    }

    #[test]
    fn overlong_key_is_rejected_before_the_backend() {
        let storage = MemStorage::new();
        let key = "k".repeat(MAX_KEY_LEN + 1);
        let error = storage
            .write(|txn| txn.put(Partition::Shared, &key, b"1"))
            .unwrap_err();
        assert_eq!(
            error,
            StorageError::KeyTooLong {
                length: MAX_KEY_LEN + 1,
                max: MAX_KEY_LEN
            }
        );
        let longest = "k".repeat(MAX_KEY_LEN);
        storage
            .write(|txn| txn.put(Partition::Shared, &longest, b"1"))
            .unwrap();
    }

    #[test]
    fn pinned_view_keeps_state_after_later_writes() {
        let storage = MemStorage::new();
        put(&storage, "a", "1");
        let pinned = storage.pin();
        put(&storage, "a", "2");
        put(&storage, "b", "3");
        assert_eq!(
            pinned.get(Partition::Shared, "a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(pinned.get(Partition::Shared, "b").unwrap(), None);
        let live = storage.read(|txn| txn.get(Partition::Shared, "a")).unwrap();
        assert_eq!(live.unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn children_list_folders_once() {
        let storage = MemStorage::new();
        put(&storage, "m/foo", "1");
        put(&storage, "m/bar/x", "2");
        put(&storage, "m/bar/y", "3");
        let children = storage
            .read(|txn| list_children(txn, Partition::Shared, "m/"))
            .unwrap()
            .unwrap();
        assert_eq!(children, vec!["bar/".to_owned(), "foo".to_owned()]);
    }
}
