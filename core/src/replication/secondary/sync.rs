//! The secondary's side of a Merkle diff and sync: compare pages top-down against the
//! primary's snapshot, fetch the keys that differ, delete the keys the primary lacks, adopt
//! the snapshot's position.

use std::collections::VecDeque;

use super::{Phase, Secondary, SecondaryEvent, SecondaryState, UNSYNCED_HASH};
use crate::Timestamp;
use crate::replication::apply::apply_ops;
use crate::replication::live::SyncCounts;
use crate::replication::merkle::{
    BUCKETS_PER_PAGE, BucketId, Fingerprint, Members, Merkle, PAGES, bucket_of, fingerprint,
};
use crate::replication::message::{BUCKETS_PER_REQUEST, BucketDelta, ErrorCode, Message};
use crate::replication::position::{Digest, Position};
use crate::replication::wal::{Op, Wal};
use crate::storage::{StorageError, Transaction};

/// Prefixes of the system keys (keyring, mount and auth tables, policies) that are synced
/// before the rest, so the node can always decrypt and route what it holds.
const SYSTEM_PREFIXES: [&str; 2] = ["core/", "sys/"];

/// Returns whether `key` is a system key, synced first.
pub(super) fn is_system_key(key: &str) -> bool {
    SYSTEM_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// One step of the sync: a key to fetch from the snapshot or to delete locally.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Work {
    system_last: bool,
    key: String,
    delete: bool,
}

enum Stage {
    Pages {
        pending: VecDeque<u8>,
        in_flight: Vec<u8>,
        buckets: Vec<BucketId>,
    },
    Buckets {
        pending: VecDeque<BucketId>,
        in_flight: Vec<BucketId>,
        work: Vec<Work>,
    },
    Keys {
        queue: VecDeque<Work>,
        in_flight: Vec<String>,
    },
}

/// A Merkle diff or sync in progress.
pub(super) struct SyncProgress {
    sync: u64,
    position: Position,
    root: Digest,
    stage: Stage,
    keys_fetched: u64,
}

impl SyncProgress {
    pub(super) fn validate(&self) -> Result<(), String> {
        if let Stage::Keys { queue, .. } = &self.stage {
            let sorted = queue.iter().zip(queue.iter().skip(1)).all(|(a, b)| a < b);
            if !sorted {
                return Err("sync queue is not in system-first key order".into());
            }
        }
        Ok(())
    }

    /// Puts the requested keys after the first `answered` back at the front of the queue.
    fn requeue_unanswered(&mut self, answered: usize) {
        if let Stage::Keys { queue, in_flight } = &mut self.stage {
            for key in in_flight.drain(answered..).rev() {
                queue.push_front(Work {
                    system_last: !is_system_key(&key),
                    key,
                    delete: false,
                });
            }
        }
    }

    /// Number of keys fetched so far.
    pub(super) fn keys_fetched(&self) -> u64 {
        self.keys_fetched
    }

    /// Returns the keys to sync and those done, once the diff has listed them.
    pub(super) fn counts(&self) -> Option<SyncCounts> {
        let Stage::Keys { queue, in_flight } = &self.stage else {
            return None;
        };
        let pending = (queue.len() + in_flight.len()) as u64;
        Some(SyncCounts {
            total_keys: self.keys_fetched + pending,
            done: self.keys_fetched,
        })
    }
}

impl Secondary {
    pub(super) fn handle_sync_start(
        &mut self,
        now: Timestamp,
        sync: u64,
        position: Position,
        root: Digest,
        pages: &[Digest],
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        // A primary that no longer has the next entries switches a stream to a sync.
        if !matches!(self.phase, Phase::Handshake | Phase::Streaming { .. }) {
            return Ok(());
        }
        if self.is_stale(&position.epoch) {
            self.reject_epoch(now, &position.epoch);
            return Ok(());
        }
        if pages.len() != PAGES {
            let message = format!(
                "sync start carries {} page hashes, not {PAGES}",
                pages.len()
            );
            self.fail(now, ErrorCode::Protocol, message);
            return Ok(());
        }
        self.remote = Some(super::Guard {
            position: position.clone(),
            root,
        });
        let own = Merkle::pages(txn)?;
        let differing: Vec<u8> = (0..PAGES)
            .filter(|page| own[*page] != pages[*page])
            .map(|page| page as u8)
            .collect();
        let progress = SyncProgress {
            sync,
            position,
            root,
            stage: Stage::Pages {
                pending: differing.into(),
                in_flight: Vec::new(),
                buckets: Vec::new(),
            },
            keys_fetched: 0,
        };
        self.phase = Phase::Syncing(progress);
        self.set_state(
            SecondaryState::MerkleDiff,
            "primary lacks the entries this node needs",
        );
        self.next_pages(now, txn)
    }

    /// Requests the next pages to compare, or moves on to the buckets when none are left.
    fn next_pages(
        &mut self,
        now: Timestamp,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        // A page response is 32 bytes per bucket; half the message limit leaves room for
        // encoding overhead.
        let per_request = (self.config.max_message_size / 2 / (BUCKETS_PER_PAGE * 32 + 16)).max(1);
        let Phase::Syncing(SyncProgress {
            stage:
                Stage::Pages {
                    pending,
                    in_flight,
                    buckets,
                },
            ..
        }) = &mut self.phase
        else {
            return Ok(());
        };
        let count = pending.len().min(per_request);
        *in_flight = pending.drain(..count).collect();
        if in_flight.is_empty() {
            let buckets = std::mem::take(buckets);
            self.set_stage(Stage::Buckets {
                pending: buckets.into(),
                in_flight: Vec::new(),
                work: Vec::new(),
            });
            return self.next_buckets(now, txn);
        }
        let pages = in_flight.clone();
        let sync = self.current_sync();
        self.request(now, &Message::MerklePagesRequest { sync, pages });
        Ok(())
    }

    pub(super) fn handle_sync_message(
        &mut self,
        now: Timestamp,
        message: Message,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let Phase::Syncing(progress) = &self.phase else {
            return Ok(());
        };
        let current = progress.sync;
        match message {
            Message::MerklePagesResponse { sync, pages } if sync == current => {
                self.handle_pages(now, &pages, txn)
            }
            Message::BucketResponse { sync, buckets } if sync == current => {
                self.handle_buckets(now, buckets, txn)
            }
            Message::KeyValues { sync, values } if sync == current => {
                self.handle_values(now, values, txn)
            }
            _ => Ok(()),
        }
    }

    fn handle_pages(
        &mut self,
        now: Timestamp,
        pages: &[(u8, Vec<Digest>)],
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let Phase::Syncing(SyncProgress {
            stage:
                Stage::Pages {
                    in_flight: requested,
                    ..
                },
            ..
        }) = &self.phase
        else {
            return Ok(());
        };
        let matches = pages.len() == requested.len()
            && pages
                .iter()
                .zip(requested)
                .all(|((page, hashes), wanted)| page == wanted && hashes.len() == BUCKETS_PER_PAGE);
        if !matches {
            self.fail(
                now,
                ErrorCode::Protocol,
                "merkle pages response does not match the request".into(),
            );
            return Ok(());
        }
        let mut found = Vec::new();
        for (page, hashes) in pages {
            let own = Merkle::page(txn, *page)?;
            for slot in 0..BUCKETS_PER_PAGE {
                if own[slot] != hashes[slot] {
                    found.push((u16::from(*page) << 8) | slot as u16);
                }
            }
        }
        if let Phase::Syncing(SyncProgress {
            stage: Stage::Pages { buckets, .. },
            ..
        }) = &mut self.phase
        {
            buckets.extend(found);
        }
        self.next_pages(now, txn)
    }

    /// Requests the next buckets to compare, or starts on the keys when none are left.
    fn next_buckets(
        &mut self,
        now: Timestamp,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let (sync, root) = (self.current_sync(), self.sync_root());
        // A fingerprint takes 8 bytes, and a bucket id with its list length at most 8 more.
        // Half the message limit leaves room for the encoding overhead.
        let budget = self.config.max_message_size / 2;
        let Phase::Syncing(SyncProgress {
            stage:
                Stage::Buckets {
                    pending,
                    in_flight,
                    work,
                },
            ..
        }) = &mut self.phase
        else {
            return Ok(());
        };
        in_flight.clear();
        let mut buckets = Vec::new();
        let mut bytes = 0;
        while buckets.len() < BUCKETS_PER_REQUEST {
            let Some(bucket) = pending.pop_front() else {
                break;
            };
            let prints: Vec<Fingerprint> = Merkle::bucket(txn, bucket)?
                .iter()
                .map(|(key, leaf)| fingerprint(&root, sync, key, leaf))
                .collect();
            bytes += 8 + 8 * prints.len();
            if bytes > budget && !buckets.is_empty() {
                pending.push_front(bucket);
                break;
            }
            in_flight.push(bucket);
            buckets.push((bucket, prints));
        }
        if in_flight.is_empty() {
            let mut work = std::mem::take(work);
            work.sort();
            work.dedup();
            if work.is_empty() {
                return self.finish_sync(now, txn);
            }
            self.set_stage(Stage::Keys {
                queue: work.into(),
                in_flight: Vec::new(),
            });
            self.set_state(SecondaryState::MerkleSync, "differing keys found");
            return self.next_keys(now, txn);
        }
        self.request(now, &Message::BucketRequest { sync, buckets });
        Ok(())
    }

    fn handle_buckets(
        &mut self,
        now: Timestamp,
        buckets: Vec<(BucketId, BucketDelta)>,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let Phase::Syncing(SyncProgress {
            stage: Stage::Buckets { in_flight, .. },
            ..
        }) = &self.phase
        else {
            return Ok(());
        };
        // The primary may respond to a prefix of the request to bound the message size.
        let matches = !buckets.is_empty()
            && buckets.len() <= in_flight.len()
            && buckets
                .iter()
                .zip(in_flight)
                .all(|((bucket, _), wanted)| bucket == wanted);
        if !matches {
            self.fail(
                now,
                ErrorCode::Protocol,
                "bucket response does not match the request".into(),
            );
            return Ok(());
        }
        let mut found = Vec::new();
        for (bucket, delta) in &buckets {
            let own = Merkle::bucket(txn, *bucket)?;
            if let Err(reason) = diff_members(*bucket, &own, delta, &mut found) {
                self.fail(
                    now,
                    ErrorCode::Protocol,
                    format!("bucket {bucket:04x}: {reason}"),
                );
                return Ok(());
            }
        }
        if let Phase::Syncing(SyncProgress {
            stage:
                Stage::Buckets {
                    pending,
                    in_flight,
                    work,
                },
            ..
        }) = &mut self.phase
        {
            work.extend(found);
            for bucket in in_flight.drain(buckets.len()..).rev() {
                pending.push_front(bucket);
            }
        }
        self.next_buckets(now, txn)
    }

    fn handle_values(
        &mut self,
        now: Timestamp,
        values: Vec<(String, Option<Vec<u8>>)>,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let Phase::Syncing(SyncProgress {
            stage: Stage::Keys { in_flight, .. },
            ..
        }) = &self.phase
        else {
            return Ok(());
        };
        // The primary may return a prefix of the request to bound the message size.
        let matches = !values.is_empty()
            && values.len() <= in_flight.len()
            && values
                .iter()
                .zip(in_flight)
                .all(|((key, _), wanted)| key == wanted);
        if !matches {
            self.fail(
                now,
                ErrorCode::Protocol,
                "key values do not match the request".into(),
            );
            return Ok(());
        }
        let ops: Vec<Op> = values
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => Op::Put { key, value },
                None => Op::Delete { key },
            })
            .collect();
        if let Phase::Syncing(progress) = &mut self.phase {
            progress.keys_fetched += ops.len() as u64;
            progress.requeue_unanswered(ops.len());
        }
        self.write_sync_ops(txn, &ops)?;
        self.next_keys(now, txn)
    }

    /// Applies local deletes from the front of the queue and requests the next keys to fetch.
    fn next_keys(&mut self, now: Timestamp, txn: &mut dyn Transaction) -> Result<(), StorageError> {
        let batch = self.config.fetch_batch_keys.max(1);
        let Phase::Syncing(SyncProgress {
            stage: Stage::Keys { queue, in_flight },
            ..
        }) = &mut self.phase
        else {
            return Ok(());
        };
        in_flight.clear();
        let mut deletes = Vec::new();
        while in_flight.len() < batch {
            let Some(work) = queue.pop_front() else {
                break;
            };
            if work.delete {
                deletes.push(Op::Delete { key: work.key });
            } else {
                in_flight.push(work.key);
            }
        }
        let keys = in_flight.clone();
        if !deletes.is_empty() {
            self.write_sync_ops(txn, &deletes)?;
        }
        if keys.is_empty() {
            return self.finish_sync(now, txn);
        }
        let sync = self.current_sync();
        self.request(now, &Message::FetchKeys { sync, keys });
        Ok(())
    }

    /// Writes synced data. The first write marks the position unsynced in the same
    /// transaction, so a sync cut short is redone rather than streamed over.
    fn write_sync_ops(
        &mut self,
        txn: &mut dyn Transaction,
        ops: &[Op],
    ) -> Result<(), StorageError> {
        let unsynced = Position {
            epoch: self.position.epoch.clone(),
            index: 0,
            hash: UNSYNCED_HASH,
        };
        if self.position != unsynced {
            Wal::reset(txn, &unsynced)?;
        }
        let changed = apply_ops(txn, ops)?;
        let root = Merkle::root(txn)?;
        self.position = unsynced;
        self.root = root;
        self.events.push_back(SecondaryEvent::Applied {
            position: self.position.clone(),
            changed_keys: changed.into_iter().collect(),
        });
        Ok(())
    }

    fn finish_sync(
        &mut self,
        now: Timestamp,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        let Phase::Syncing(progress) = &self.phase else {
            return Ok(());
        };
        let (sync, position, expected) = (progress.sync, progress.position.clone(), progress.root);
        let fetched = progress.keys_fetched();
        let mut root = Merkle::root(txn)?;
        if root != expected {
            // Every differing key has been fetched, so the index likely disagrees with this
            // node's data. Rebuilding it from the data ends the loop of diffs that would follow.
            let stale = hex::encode(root);
            tracing::warn!(sync, root = %stale, "merkle sync missed the snapshot root, reindexing");
            root = Merkle::reindex(txn)?;
            self.root = root;
        }
        if root != expected {
            let reason = format!(
                "merkle sync {sync} ended with root {} but the snapshot root is {}",
                hex::encode(root),
                hex::encode(expected)
            );
            self.reject(reason);
            self.resync(now, "merkle sync did not reach the snapshot root");
            return Ok(());
        }
        Wal::reset(txn, &position)?;
        self.position = position.clone();
        self.root = root;
        self.response_due = None;
        self.backoff = self.config.reconnect_initial;
        self.send(&Message::SyncDone { sync, position });
        self.phase = Phase::Streaming { stalled_at: None };
        tracing::info!(sync, keys_fetched = fetched, "merkle sync finished");
        self.set_state(
            SecondaryState::StreamWals,
            "merkle sync reached the snapshot",
        );
        Ok(())
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Phase::Syncing(progress) = &mut self.phase {
            progress.stage = stage;
        }
    }

    /// Returns the snapshot root of the running sync, which salts member fingerprints.
    fn sync_root(&self) -> Digest {
        match &self.phase {
            Phase::Syncing(progress) => progress.root,
            _ => Digest::default(),
        }
    }

    fn current_sync(&self) -> u64 {
        match &self.phase {
            Phase::Syncing(progress) => progress.sync,
            _ => 0,
        }
    }

    fn request(&mut self, now: Timestamp, message: &Message) {
        self.response_due = Some(now.saturating_add(self.config.heartbeat_timeout));
        self.send(message);
    }
}

/// Adds the work that makes `own`, this node's members of `bucket`, equal to the primary's:
/// fetch the members it reports missing, delete the unmatched ones it has no member of that key
/// for. Fails, before adding anything, when the missing members are not in strict key order or
/// not in `bucket`, or the unmatched positions are not strictly increasing within `own`.
fn diff_members(
    bucket: BucketId,
    own: &Members,
    delta: &BucketDelta,
    work: &mut Vec<Work>,
) -> Result<(), String> {
    let missing = &delta.missing;
    if let Some(pair) = missing.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
        return Err(format!(
            "missing member {:?} does not follow {:?} in key order",
            pair[1].0, pair[0].0
        ));
    }
    if let Some((key, _)) = missing.iter().find(|(key, _)| bucket_of(key) != bucket) {
        return Err(format!("missing member {key:?} is not in this bucket"));
    }
    let unmatched = &delta.unmatched;
    if let Some(pair) = unmatched.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!(
            "unmatched position {} does not follow position {}",
            pair[1], pair[0]
        ));
    }
    // The positions increase, so the last one is the largest.
    if let Some(last) = unmatched.last() {
        if usize::try_from(*last).map_or(true, |last| last >= own.len()) {
            return Err(format!(
                "unmatched position {last} is past this node's {} members",
                own.len()
            ));
        }
    }
    for (key, _) in missing {
        work.push(Work {
            system_last: !is_system_key(key),
            key: key.clone(),
            delete: false,
        });
    }
    for position in unmatched {
        let key = &own[*position as usize].0;
        let replaced = missing
            .binary_search_by(|(missing, _)| missing.as_str().cmp(key))
            .is_ok();
        if !replaced {
            work.push(Work {
                system_last: !is_system_key(key),
                key: key.clone(),
                delete: true,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn system_keys_sort_first() {
        let mut work = [
            Work {
                system_last: !is_system_key("a/x"),
                key: "a/x".into(),
                delete: false,
            },
            Work {
                system_last: !is_system_key("sys/policy/p"),
                key: "sys/policy/p".into(),
                delete: false,
            },
            Work {
                system_last: !is_system_key("core/keyring"),
                key: "core/keyring".into(),
                delete: false,
            },
        ];
        work.sort();
        let keys: Vec<&str> = work.iter().map(|work| work.key.as_str()).collect();
        assert_eq!(keys, vec!["core/keyring", "sys/policy/p", "a/x"]);
    }

    fn print(key: &str, leaf: &Digest) -> Fingerprint {
        fingerprint(&[9; 32], 4, key, leaf)
    }

    /// Returns six keys of one bucket in key order, with that bucket.
    fn bucket_keys() -> &'static (BucketId, Vec<String>) {
        static KEYS: std::sync::OnceLock<(BucketId, Vec<String>)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let bucket = bucket_of("k0");
            let mut keys: Vec<String> = (0..)
                .map(|number| format!("k{number}"))
                .filter(|key| bucket_of(key) == bucket)
                .take(6)
                .collect();
            keys.sort();
            (bucket, keys)
        })
    }

    /// Returns the members of one bucket: the key at each index with its leaf.
    fn members(entries: &[(usize, u8)]) -> Members {
        let (_, keys) = bucket_keys();
        let mut members: Members = entries
            .iter()
            .map(|(index, leaf)| (keys[*index].clone(), [*leaf; 32]))
            .collect();
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        members
    }

    /// Returns the steps that make `own` equal to `remote`, through the fingerprint exchange.
    fn steps(own: &Members, remote: &Members) -> Vec<(String, bool)> {
        steps_salted(own, remote, print)
    }

    /// Returns the steps of [`steps`] when the secondary fingerprints its members with
    /// `own_print`, whose salt may differ from the primary's.
    fn steps_salted(
        own: &Members,
        remote: &Members,
        own_print: impl Fn(&str, &Digest) -> Fingerprint,
    ) -> Vec<(String, bool)> {
        let theirs: Vec<Fingerprint> = own.iter().map(|(key, leaf)| own_print(key, leaf)).collect();
        let delta = BucketDelta::between(remote.clone(), &theirs, print);
        let mut work = Vec::new();
        diff_members(bucket_keys().0, own, &delta, &mut work).unwrap();
        work.sort();
        work.into_iter()
            .map(|work| (work.key, work.delete))
            .collect()
    }

    #[test]
    fn member_diff_fetches_changed_and_deletes_missing() {
        let keys = &bucket_keys().1;
        let own = members(&[(0, 1), (1, 2), (3, 5)]);
        let remote = members(&[(1, 3), (2, 4), (3, 5)]);
        let expected = vec![
            (keys[0].clone(), true),
            (keys[1].clone(), false),
            (keys[2].clone(), false),
        ];
        assert_eq!(steps(&own, &remote), expected);
    }

    #[test]
    fn member_diff_of_equal_buckets_is_empty() {
        let own = members(&[(0, 1), (1, 2)]);
        assert!(steps(&own, &own).is_empty());
    }

    #[test]
    fn member_diff_with_other_salt_refetches() {
        let keys = &bucket_keys().1;
        let own = members(&[(0, 1), (1, 2), (2, 3)]);
        let remote = members(&[(1, 2), (2, 4), (3, 5)]);
        let other_salt = |key: &str, leaf: &Digest| fingerprint(&[8; 32], 4, key, leaf);
        // No fingerprint matches, so every remote member is fetched and only keys the primary
        // lacks are deleted: more traffic, the same result.
        let expected = vec![
            (keys[0].clone(), true),
            (keys[1].clone(), false),
            (keys[2].clone(), false),
            (keys[3].clone(), false),
        ];
        assert_eq!(steps_salted(&own, &remote, other_salt), expected);
    }

    #[test]
    fn delta_lists_only_differing_members() {
        let own = members(&[(0, 1), (1, 2)]);
        let remote = members(&[(0, 1), (1, 7)]);
        let theirs: Vec<Fingerprint> = own.iter().map(|(key, leaf)| print(key, leaf)).collect();
        let delta = BucketDelta::between(remote.clone(), &theirs, print);
        assert_eq!(delta.missing, vec![remote[1].clone()]);
        assert_eq!(delta.unmatched, vec![1]);
    }

    /// Returns the error of a diff of `own` with `delta`, checking that it added no work.
    fn diff_error(own: &Members, delta: &BucketDelta) -> String {
        let mut work = Vec::new();
        let error = diff_members(bucket_keys().0, own, delta, &mut work).unwrap_err();
        assert!(work.is_empty(), "a rejected delta added {work:?}");
        error
    }

    #[test]
    fn member_diff_rejects_position_past_the_bucket() {
        let own = members(&[(0, 1)]);
        let delta = BucketDelta {
            missing: Vec::new(),
            unmatched: vec![1],
        };
        let error = diff_error(&own, &delta);
        assert!(error.contains("position 1"), "{error}");
    }

    #[test]
    fn member_diff_rejects_repeated_positions() {
        let own = members(&[(0, 1), (1, 2)]);
        for unmatched in [vec![0, 0], vec![1, 0]] {
            let delta = BucketDelta {
                missing: Vec::new(),
                unmatched,
            };
            let error = diff_error(&own, &delta);
            assert!(error.contains("does not follow"), "{error}");
        }
    }

    #[test]
    fn member_diff_rejects_unsorted_missing() {
        let own = members(&[(0, 1)]);
        let sorted = members(&[(1, 2), (2, 3)]);
        let cases = [
            vec![sorted[1].clone(), sorted[0].clone()],
            vec![sorted[0].clone(), sorted[0].clone()],
        ];
        for missing in cases {
            let delta = BucketDelta {
                missing,
                unmatched: Vec::new(),
            };
            let error = diff_error(&own, &delta);
            assert!(error.contains("key order"), "{error}");
        }
    }

    #[test]
    fn member_diff_rejects_member_of_other_bucket() {
        let (bucket, _) = bucket_keys();
        let stranger = (0..)
            .map(|number| format!("other{number}"))
            .find(|key| bucket_of(key) != *bucket)
            .unwrap();
        let delta = BucketDelta {
            missing: vec![(stranger, [1; 32])],
            unmatched: Vec::new(),
        };
        let error = diff_error(&members(&[]), &delta);
        assert!(error.contains("not in this bucket"), "{error}");
    }

    fn entries_strategy() -> impl Strategy<Value = Vec<(usize, u8)>> {
        prop::collection::vec((0usize..6, 0u8..3), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Carrying out the steps of a diff turns the secondary's bucket into the primary's,
        /// and fetches only keys whose leaves differ.
        #[test]
        fn member_diff_steps_reach_remote(
            own in entries_strategy(),
            remote in entries_strategy(),
        ) {
            let (own, remote) = (members(&own), members(&remote));
            let mut result: std::collections::BTreeMap<String, Digest> =
                own.iter().cloned().collect();
            for (key, delete) in steps(&own, &remote) {
                if delete {
                    prop_assert!(result.remove(&key).is_some(), "deleted absent {}", key);
                } else {
                    let wanted = remote.iter().find(|(member, _)| *member == key);
                    let Some((_, leaf)) = wanted else {
                        return Err(TestCaseError::fail(format!("fetched {key} the primary lacks")));
                    };
                    prop_assert_ne!(result.get(&key), Some(leaf), "fetched unchanged {}", key);
                    result.insert(key, *leaf);
                }
            }
            let result: Members = result.into_iter().collect();
            prop_assert_eq!(result, remote);
        }
    }

    #[test]
    fn fingerprint_depends_on_sync_and_root() {
        let leaf = [1; 32];
        let base = fingerprint(&[9; 32], 4, "a", &leaf);
        assert_ne!(base, fingerprint(&[9; 32], 5, "a", &leaf));
        assert_ne!(base, fingerprint(&[8; 32], 4, "a", &leaf));
    }
}
