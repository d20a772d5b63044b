//! Promotion, fencing, quarantine and reconciliation of followers after a failover.

use proptest::prelude::*;

use super::*;
use crate::replication::apply::commit_primary_write;
use crate::replication::merkle::Merkle;
use crate::replication::message::Message;
use crate::replication::secondary::{Secondary, SecondaryEvent, SecondaryState};
use crate::replication::testing::{
    CLUSTER, Cluster, copy_storage, delete, feed, put, small_config, write_numbered,
};
use crate::storage::{MemStorage, Storage};

/// Writes `ops` as a primary in `epoch` on `storage`, one entry per op.
fn commit_each(storage: &MemStorage, epoch: &Epoch, ops: Vec<Op>) {
    let wal = Wal::new(1_000);
    for op in ops {
        storage
            .write(|txn| commit_primary_write(txn, &wal, epoch, vec![op]))
            .unwrap();
    }
}

fn head_of(storage: &MemStorage) -> Position {
    storage.read(|txn| Wal::head(txn)).unwrap().unwrap()
}

/// Promotes `storage` the way `secondary/promote` does: the head moves into a higher epoch at
/// the same index and hash. Returns the new epoch and the fork point.
fn promote(storage: &MemStorage, cluster_id: &str) -> (Epoch, Position) {
    let head = head_of(storage);
    let epoch = promoted_epoch(&head.epoch, 0, cluster_id.to_owned());
    let fork = storage.write(|txn| Wal::raise_epoch(txn, &epoch)).unwrap();
    (epoch, fork)
}

#[test]
fn promoted_epoch_exceeds_every_seen_epoch() {
    let head = Epoch::new(3, CLUSTER);
    assert_eq!(promoted_epoch(&head, 1, "b".into()), Epoch::new(4, "b"));
    assert_eq!(promoted_epoch(&head, 7, "b".into()), Epoch::new(8, "b"));
    assert!(promoted_epoch(&head, 0, "a".into()) > head);
}

#[test]
fn quarantine_keeps_last_op_per_key_after_fork() {
    let old = Epoch::new(1, CLUSTER);
    let fork = Position::genesis(old.clone());
    let first = Entry::next(&fork, old.clone(), vec![put("a", "1")]);
    let second = Entry::next(&first.position(), old.clone(), vec![put("b", "2")]);
    let third = Entry::next(&second.position(), old, vec![delete("a")]);
    let entries = [first, second, third];

    let all = quarantined_writes(&entries, 0, 2);
    let keys: Vec<&str> = all.iter().map(|write| write.key.as_str()).collect();
    assert_eq!(keys, vec!["b", "a"]);
    assert_eq!(all[0].value.as_deref(), Some(&b"2"[..]));
    assert_eq!(all[0].position.index, 2);
    assert_eq!(all[1].value, None);
    assert_eq!(all[1].position.index, 3);

    let after_second = quarantined_writes(&entries, 2, 2);
    assert_eq!(after_second.len(), 1);
    assert_eq!(after_second[0].key, "a");
}

#[test]
fn quarantine_skips_entries_of_new_epoch() {
    let new = Epoch::new(2, "b");
    let fork = Position::genesis(new.clone());
    let entry = Entry::next(&fork, new, vec![put("a", "1")]);
    assert!(quarantined_writes(&[entry], 0, 2).is_empty());
}

#[test]
fn quarantine_debug_hides_values() {
    let write = QuarantinedWrite {
        key: "logical/k".into(),
        position: Position::default(),
        value: Some(b"SECRET-CIPHERTEXT".to_vec()),
    };
    assert!(!format!("{write:?}").contains("SECRET"));
}

proptest! {
    #[test]
    fn quarantine_lists_each_key_written_after_fork(
        keys in prop::collection::vec(0u8..6, 1..30),
        fork_at in 0usize..30,
    ) {
        let old = Epoch::new(1, CLUSTER);
        let mut head = Position::genesis(old.clone());
        let mut entries = Vec::new();
        for (number, key) in keys.iter().enumerate() {
            let op = put(&format!("k{key}"), &number.to_string());
            let entry = Entry::next(&head, old.clone(), vec![op]);
            head = entry.position();
            entries.push(entry);
        }
        let fork_index = fork_at.min(keys.len()) as u64;
        let writes = quarantined_writes(&entries, fork_index, 2);

        let expected: std::collections::BTreeSet<String> = keys
            .iter()
            .skip(fork_at.min(keys.len()))
            .map(|key| format!("k{key}"))
            .collect();
        let listed: std::collections::BTreeSet<String> =
            writes.iter().map(|write| write.key.clone()).collect();
        prop_assert_eq!(listed, expected);
        for write in &writes {
            let last = keys
                .iter()
                .rposition(|key| format!("k{key}") == write.key)
                .unwrap();
            prop_assert_eq!(write.position.index, last as u64 + 1);
            prop_assert_eq!(write.value.clone(), Some(last.to_string().into_bytes()));
        }
    }
}

#[test]
fn plan_finds_nothing_at_or_before_fork() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    commit_each(&storage, &old, vec![put("a", "1"), put("b", "2")]);
    let fork = head_of(&storage);
    let plan = storage
        .read(|txn| plan_quarantine(txn, &fork, 2, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap();
    assert_eq!(plan, None);
}

#[test]
fn plan_lists_writes_after_fork() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    commit_each(&storage, &old, vec![put("a", "1")]);
    let fork = head_of(&storage);
    commit_each(&storage, &old, vec![put("b", "2"), delete("a")]);
    let plan = storage
        .read(|txn| plan_quarantine(txn, &fork, 2, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(plan.complete);
    assert_eq!(plan.fork, fork);
    assert_eq!(plan.local_head.index, 3);
    let keys: Vec<&str> = plan.writes.iter().map(|write| write.key.as_str()).collect();
    assert_eq!(keys, vec!["b", "a"]);
}

#[test]
fn plan_is_incomplete_when_wal_was_trimmed() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    let wal = Wal::new(2);
    for number in 0..6 {
        let op = put(&format!("k{number}"), "v");
        storage
            .write(|txn| commit_primary_write(txn, &wal, &old, vec![op]))
            .unwrap();
    }
    let fork = Position {
        epoch: old,
        index: 1,
        hash: [7; 32],
    };
    let plan = storage
        .read(|txn| plan_quarantine(txn, &fork, 2, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!plan.complete);
    assert_eq!(plan.writes.len(), 2);
}

#[test]
fn plan_is_incomplete_when_chain_forks_earlier() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    commit_each(&storage, &old, vec![put("a", "1"), put("b", "2")]);
    let mut fork = storage
        .read(|txn| Wal::entry(txn, 1))
        .unwrap()
        .unwrap()
        .unwrap()
        .position();
    fork.hash = [9; 32];
    let plan = storage
        .read(|txn| plan_quarantine(txn, &fork, 2, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!plan.complete);
    assert_eq!(plan.writes.len(), 1);
}

#[test]
fn followers_stream_on_when_chains_agree() {
    let mut cluster = Cluster::new(small_config(), 2, 31);
    write_numbered(&mut cluster, 0..10);
    cluster.start();
    assert!(cluster.drive());

    let old_primary = cluster.primary.storage.clone();
    let promoted = cluster.secondaries[0].storage.clone();
    let other = cluster.secondaries[1].storage.clone();
    let (epoch, fork) = promote(&promoted, "cluster-b");
    assert_eq!(fork.index, 10);
    let planned = old_primary
        .read(|txn| plan_quarantine(txn, &fork, epoch.number, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap();
    assert_eq!(planned, None);

    let mut next = Cluster::with_storage(
        small_config(),
        promoted,
        vec![old_primary, other],
        epoch.clone(),
        32,
    );
    write_numbered(&mut next, 10..15);
    next.start();
    assert!(next.drive());
    for follower in &next.secondaries {
        assert!(!follower.states.contains(&SecondaryState::MerkleDiff));
        assert_eq!(follower.machine.position().epoch, epoch);
    }
}

#[test]
fn diverged_old_primary_quarantines_then_diffs() {
    let mut cluster = Cluster::new(small_config(), 1, 33);
    write_numbered(&mut cluster, 0..10);
    cluster.start();
    assert!(cluster.drive());

    // The secondary is promoted while the old primary, cut off, accepts three more writes.
    let old_primary = cluster.primary.storage.clone();
    let promoted = cluster.secondaries[0].storage.clone();
    let old_epoch = cluster.primary.epoch.clone();
    let (epoch, fork) = promote(&promoted, "cluster-b");
    commit_each(
        &old_primary,
        &old_epoch,
        vec![
            put("logical/lost-1", "x"),
            put("logical/k1", "changed"),
            delete("logical/k2"),
        ],
    );

    let quarantine = old_primary
        .read(|txn| plan_quarantine(txn, &fork, epoch.number, "q".into(), Timestamp::EPOCH))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(quarantine.complete);
    let keys: Vec<&str> = quarantine.writes.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, vec!["logical/lost-1", "logical/k1", "logical/k2"]);
    assert_eq!(quarantine.writes[1].position.epoch, old_epoch);

    let mut next = Cluster::with_storage(
        small_config(),
        promoted.clone(),
        vec![old_primary.clone()],
        epoch,
        34,
    );
    write_numbered(&mut next, 10..12);
    next.start();
    assert!(next.drive());
    assert!(
        next.secondaries[0]
            .states
            .contains(&SecondaryState::MerkleDiff)
    );
    assert_eq!(
        old_primary.dump(Partition::Shared),
        promoted.dump(Partition::Shared)
    );
    let root = |storage: &MemStorage| storage.read(|txn| Merkle::root(txn)).unwrap().unwrap();
    assert_eq!(root(&old_primary), root(&promoted));
}

#[test]
fn concurrent_promotions_get_distinct_epochs() {
    // Two clusters promoted from the same position get different epochs, so neither
    // follows the other silently.
    let mut cluster = Cluster::new(small_config(), 2, 35);
    write_numbered(&mut cluster, 0..3);
    cluster.start();
    assert!(cluster.drive());
    let a = copy_storage(&cluster.secondaries[0].storage);
    let b = copy_storage(&cluster.secondaries[1].storage);
    let (epoch_a, _) = promote(&a, "cluster-b");
    let (epoch_b, _) = promote(&b, "cluster-c");
    assert_eq!(epoch_a.number, epoch_b.number);
    assert_ne!(epoch_a, epoch_b);
}

#[test]
fn fenced_secondary_rejects_older_primary() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    commit_each(&storage, &old, vec![put("a", "1")]);
    let head = head_of(&storage);
    let mut secondary = storage
        .read(|txn| Secondary::new(small_config(), CLUSTER, "s0", txn))
        .unwrap()
        .unwrap()
        .with_epoch_fence(2);
    let now = Timestamp::from_secs(1);
    secondary.start(now);
    secondary.handle_connected(now);
    while secondary.poll_transmit().is_some() {}
    while secondary.poll_event().is_some() {}

    // The old primary still streams in epoch 1, which the bundle's epoch 2 fences off.
    let start = Message::StreamStart {
        from: head.index + 1,
        head: head.clone(),
        root: [0; 32],
    };
    feed(&mut secondary, &storage, &start);
    let mut rejected = None;
    while let Some(event) = secondary.poll_event() {
        if let SecondaryEvent::Rejected { reason } = event {
            rejected = Some(reason);
        }
    }
    let reason = rejected.expect("the stream start is rejected");
    assert!(reason.contains("epoch number 2 or newer"), "{reason}");
    assert_eq!(secondary.state(), SecondaryState::Idle);
}

#[test]
fn fenced_secondary_accepts_newer_primary() {
    let storage = MemStorage::new();
    let old = Epoch::new(1, CLUSTER);
    commit_each(&storage, &old, vec![put("a", "1")]);
    let mut head = head_of(&storage);
    let mut secondary = storage
        .read(|txn| Secondary::new(small_config(), CLUSTER, "s0", txn))
        .unwrap()
        .unwrap()
        .with_epoch_fence(2);
    let now = Timestamp::from_secs(1);
    secondary.start(now);
    secondary.handle_connected(now);
    head.epoch = Epoch::new(2, "cluster-b");
    let start = Message::StreamStart {
        from: head.index + 1,
        head: head.clone(),
        root: [0; 32],
    };
    feed(&mut secondary, &storage, &start);
    assert_eq!(secondary.state(), SecondaryState::StreamWals);
    assert_eq!(secondary.primary_head(), Some(&head));
}

#[test]
fn token_of_other_set_needs_wipe() {
    assert!(require_same_set("set-a", "set-a").is_ok());
    let message = require_same_set("set-a", "set-b").unwrap_err().to_string();
    assert!(message.contains("set-b"), "{message}");
    assert!(message.contains("set-a"), "{message}");
    assert!(message.contains("secondary/enable"), "{message}");
    assert!(message.contains("wipes"), "{message}");
}
