//! The secondary's side of the WAL stream: check each entry against this node's chain and
//! apply the ones that continue it.

use super::{Phase, Secondary, SecondaryEvent};
use crate::Timestamp;
use crate::replication::apply::apply_entries;
use crate::replication::merkle::Merkle;
use crate::replication::message::{ErrorCode, Message};
use crate::replication::position::Epoch;
use crate::replication::wal::Entry;
use crate::storage::{StorageError, Transaction};

impl Secondary {
    pub(super) fn handle_batch(
        &mut self,
        now: Timestamp,
        entries: &[Entry],
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        if !matches!(self.phase, Phase::Streaming { .. }) {
            return Ok(());
        }
        let (accepted, problem) = self.check_batch(entries);
        if !accepted.is_empty() {
            self.apply(txn, &accepted)?;
            self.send(&Message::Ack {
                applied: self.position.index,
            });
        }
        match problem {
            None => {}
            Some(BatchProblem::OlderEpoch(epoch)) => self.reject_epoch(now, &epoch),
            Some(BatchProblem::Gap { expected, found }) => {
                self.reject(format!(
                    "gap in the WAL: expected entry {expected}, got {found}"
                ));
                self.resync(now, "gap in the WAL");
            }
            Some(BatchProblem::PrevHash { index }) => {
                self.reject(format!(
                    "entry {index} does not follow this node's last hash"
                ));
                self.resync(now, "prev_hash mismatch");
            }
            Some(BatchProblem::BadHash { index }) => {
                let message = format!("entry {index} fails its hash check");
                self.fail(now, ErrorCode::Protocol, message);
            }
        }
        Ok(())
    }

    /// Splits a batch into the entries that continue this node's chain, and the first problem.
    fn check_batch(&self, entries: &[Entry]) -> (Vec<Entry>, Option<BatchProblem>) {
        let mut accepted = Vec::new();
        let mut cursor = self.position.clone();
        for entry in entries {
            if entry.epoch < cursor.epoch {
                return (
                    accepted,
                    Some(BatchProblem::OlderEpoch(entry.epoch.clone())),
                );
            }
            if entry.index <= cursor.index {
                continue;
            }
            if entry.index > cursor.index + 1 {
                let expected = cursor.index + 1;
                let found = entry.index;
                return (accepted, Some(BatchProblem::Gap { expected, found }));
            }
            if entry.prev_hash != cursor.hash {
                let index = entry.index;
                return (accepted, Some(BatchProblem::PrevHash { index }));
            }
            if !entry.hash_is_valid() {
                let index = entry.index;
                return (accepted, Some(BatchProblem::BadHash { index }));
            }
            cursor = entry.position();
            accepted.push(entry.clone());
        }
        (accepted, None)
    }

    fn apply(&mut self, txn: &mut dyn Transaction, entries: &[Entry]) -> Result<(), StorageError> {
        let changed = apply_entries(txn, &self.wal, entries)?;
        let root = Merkle::root(txn)?;
        let position = entries
            .last()
            .map_or_else(|| self.position.clone(), Entry::position);
        self.position = position.clone();
        self.root = root;
        self.events.push_back(SecondaryEvent::Applied {
            position,
            changed_keys: changed.into_iter().collect(),
        });
        Ok(())
    }
}

enum BatchProblem {
    OlderEpoch(Epoch),
    Gap { expected: u64, found: u64 },
    PrevHash { index: u64 },
    BadHash { index: u64 },
}
