//! Replication: the WAL, the Merkle index, the wire protocol and the state machines of the
//! primary's sessions and of a secondary.
//!
//! Every write to [`Partition::Shared`](crate::storage::Partition::Shared) on the primary
//! appends a hash-chained [`wal::Entry`] and updates the [`merkle`] index in the same
//! transaction. A [`primary::PrimarySession`] serves one connected secondary: it streams entries
//! when the secondary's [`position::Position`] lies on its chain and otherwise runs a Merkle diff
//! against a pinned snapshot. A [`secondary::Secondary`] applies what it receives, strictly in
//! index order. Both are sans-IO: `handle_*` inputs take `now`, and after any input the driver
//! drains `poll_transmit`, `poll_event` and `poll_timeout` until each returns `None`.
//!
//! A write on the primary goes through [`apply::commit_primary_write`], which writes the data,
//! the Merkle index and the WAL entry in the caller's transaction. A secondary applies a batch,
//! its Merkle updates, its WAL copy and its position in one transaction, so its state is always
//! the primary's state at the position it reports, except while a Merkle sync is writing; then
//! it reports a position that no chain contains, so an interrupted sync is redone.

pub mod activate;
pub mod activation;
pub mod apply;
pub mod config;
pub mod failover;
pub mod frame;
pub mod keys;
pub mod live;
pub mod merkle;
pub mod message;
pub mod position;
pub mod primary;
pub mod role;
pub mod secondary;
pub mod shipper;
pub mod wal;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use config::ReplicationConfig;
pub use position::{Digest, Epoch, Position};

/// Hex form of a digest, as status output and events show it.
pub fn digest_hex(digest: &Digest) -> String {
    hex::encode(digest)
}
