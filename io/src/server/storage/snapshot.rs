//! Pinned read snapshots: an owned, `Send` read view of one committed state that a task keeps
//! across awaits. A primary's replication session pins one for the length of a Merkle sync, so
//! the secondary diffs against a state that later commits do not move.

use coffer_core::storage::{MemSnapshot, MemStorage, Storage, StorageError, Transaction};

use super::lmdb::{LmdbSnapshot, LmdbStorage};

/// A storage backend that can pin its committed state.
pub trait PinSnapshot: Storage {
    /// The pinned view: reads see the state at the pin, and writes fail with
    /// [`StorageError::ReadOnly`].
    type Snapshot: Transaction + Send + 'static;

    /// Pins the newest committed state.
    fn pin_snapshot(&self) -> Result<Self::Snapshot, StorageError>;
}

impl PinSnapshot for MemStorage {
    type Snapshot = MemSnapshot;

    fn pin_snapshot(&self) -> Result<MemSnapshot, StorageError> {
        Ok(self.pin())
    }
}

impl PinSnapshot for LmdbStorage {
    type Snapshot = LmdbSnapshot;

    fn pin_snapshot(&self) -> Result<LmdbSnapshot, StorageError> {
        self.pin()
    }
}
