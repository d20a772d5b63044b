//! Epochs and positions: where a node is on the replicated chain.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The hash that precedes the first entry of a chain.
pub const GENESIS_HASH: Digest = [0; 32];

/// The term of one primary: a promotion raises the number, and the cluster id keeps two
/// clusters promoted at once apart. Epochs order by number, then by cluster id.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// Promotion counter.
    pub number: u64,
    /// Id of the cluster that has the primary role in this epoch.
    pub cluster_id: String,
}

impl Epoch {
    /// Makes an epoch.
    pub fn new(number: u64, cluster_id: impl Into<String>) -> Epoch {
        Epoch {
            number,
            cluster_id: cluster_id.into(),
        }
    }

    /// Returns the epoch a promotion of `cluster_id` after this one starts.
    pub fn next(&self, cluster_id: impl Into<String>) -> Epoch {
        Epoch::new(self.number.saturating_add(1), cluster_id)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.cluster_id)
    }
}

/// A point on the chain: the epoch of the last entry, its index and its hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Epoch of the entry at `index`.
    pub epoch: Epoch,
    /// Index of the last entry; 0 before the first one.
    pub index: u64,
    /// Hash of the entry at `index`, or [`GENESIS_HASH`] at index 0.
    pub hash: Digest,
}

impl Position {
    /// Returns the position before any entry, in `epoch`.
    pub fn genesis(epoch: Epoch) -> Position {
        Position {
            epoch,
            index: 0,
            hash: GENESIS_HASH,
        }
    }

    /// Returns whether no entry precedes this position.
    pub fn is_genesis(&self) -> bool {
        self.index == 0 && self.hash == GENESIS_HASH
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = hex::encode(&self.hash[..4]);
        write!(f, "{}@{}:{}", self.epoch, self.index, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_order_by_number_then_cluster() {
        assert!(Epoch::new(1, "b") < Epoch::new(2, "a"));
        assert!(Epoch::new(2, "a") < Epoch::new(2, "b"));
    }

    #[test]
    fn next_epoch_raises_number() {
        let next = Epoch::new(3, "a").next("b");
        assert_eq!(next, Epoch::new(4, "b"));
    }
}
