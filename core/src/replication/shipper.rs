//! The log shipper: the primary's in-memory buffer of the newest entries, which serves catch-up
//! without reading the on-disk WAL.

use std::collections::VecDeque;

use crate::replication::wal::Entry;

/// A buffer of consecutive entries, bounded by entry count and by total size in bytes. Pushing
/// past a bound drops the oldest entries.
#[derive(Clone, Debug)]
pub struct LogShipper {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_length: usize,
    max_bytes: usize,
}

impl LogShipper {
    /// Creates an empty buffer with the given bounds (each at least one).
    pub fn new(max_length: usize, max_bytes: usize) -> LogShipper {
        LogShipper {
            entries: VecDeque::new(),
            bytes: 0,
            max_length: max_length.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds the entry that follows the newest one. An entry that does not follow (after a reset
    /// of the chain) clears the buffer first, so the buffer stays consecutive.
    pub fn push(&mut self, entry: Entry) {
        let follows = self
            .entries
            .back()
            .is_none_or(|last| last.index + 1 == entry.index && last.hash == entry.prev_hash);
        if !follows {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += entry.size();
        self.entries.push_back(entry);
        while self.entries.len() > self.max_length
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.size();
            }
        }
    }

    /// Returns the entry at `index`, if buffered.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.front()?.index;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(offset)
    }

    /// Index of the oldest buffered entry.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|entry| entry.index)
    }

    /// Number of buffered entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size of the buffered entries in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::position::{Epoch, Position};
    use crate::replication::wal::Op;

    fn chain(count: usize, value_size: usize) -> Vec<Entry> {
        let epoch = Epoch::new(1, "c");
        let mut head = Position::genesis(epoch.clone());
        let mut entries = Vec::new();
        for _ in 0..count {
            let op = Op::Put {
                key: "k".into(),
                value: vec![0; value_size],
            };
            let entry = Entry::next(&head, epoch.clone(), vec![op]);
            head = entry.position();
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn shipper_drops_oldest_beyond_length() {
        let mut shipper = LogShipper::new(3, usize::MAX);
        for entry in chain(5, 1) {
            shipper.push(entry);
        }
        assert_eq!(shipper.len(), 3);
        assert_eq!(shipper.first_index(), Some(3));
        assert!(shipper.get(2).is_none());
        assert_eq!(shipper.get(5).map(|entry| entry.index), Some(5));
    }

    #[test]
    fn shipper_drops_oldest_beyond_bytes() {
        let mut shipper = LogShipper::new(100, 2500);
        for entry in chain(5, 1000) {
            shipper.push(entry);
        }
        assert_eq!(shipper.len(), 2);
        assert!(shipper.bytes() <= 2500);
    }

    #[test]
    fn shipper_clears_on_discontinuity() {
        let mut shipper = LogShipper::new(100, usize::MAX);
        let entries = chain(3, 1);
        shipper.push(entries[0].clone());
        shipper.push(entries[2].clone());
        assert_eq!(shipper.len(), 1);
        assert_eq!(shipper.first_index(), Some(3));
    }
}
