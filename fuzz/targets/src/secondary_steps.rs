//! The `secondary_state_machine` target: a replication secondary over [`MemStorage`] driven by
//! a sequence of connection events, timer firings and received bytes.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use coffer_core::Timestamp;
use coffer_core::replication::ReplicationConfig;
use coffer_core::replication::frame::encode_message;
use coffer_core::replication::message::Message;
use coffer_core::replication::secondary::Secondary;
use coffer_core::replication::wal::{Entry, Op};
use coffer_core::replication::{Epoch, Position};
use coffer_core::storage::{MemStorage, Storage};

use crate::FUZZ_LIMITS;

const CLUSTER: &str = "fuzz-cluster";
const MAX_STEPS: usize = 64;

/// One input to the secondary.
#[derive(Arbitrary, Debug)]
enum Step {
    Start,
    Connected,
    Disconnected,
    /// Moves the clock forward and fires the timers.
    Advance {
        millis: u16,
    },
    /// Raw bytes from the connection.
    Bytes(Vec<u8>),
    /// Message bytes wrapped in valid frames, so the decoder reaches the message handlers.
    Message(Vec<u8>),
    /// `StreamStart` at the secondary's own position.
    StreamStart {
        skip: u8,
    },
    /// `WalBatch` of one entry; `chained` makes it follow the secondary's position.
    Batch {
        writes: Vec<(u8, Option<u8>)>,
        chained: bool,
    },
    /// `Heartbeat` at the secondary's position, or `ahead` entries past it.
    Heartbeat {
        ahead: u8,
    },
    /// `Goodbye` from the primary.
    Goodbye,
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        max_frame_payload: FUZZ_LIMITS.max_frame_payload,
        max_message_size: FUZZ_LIMITS.max_message_size,
        wal_retain: 8,
        batch_entries: 4,
        fetch_batch_keys: 4,
        sync_retain_entries: 8,
        ..ReplicationConfig::default()
    }
}

fn open(storage: &MemStorage) -> Secondary {
    storage
        .read(|txn| Secondary::new(config(), CLUSTER, "s0", txn))
        .expect("MemStorage opens a read transaction")
        .expect("MemStorage reads succeed")
}

fn frames(message: &Message) -> Vec<u8> {
    encode_message(message, FUZZ_LIMITS)
        .map(|frames| frames.concat())
        .unwrap_or_default()
}

fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![1, 0];
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn ahead_of(position: &Position, count: u8) -> Position {
    let mut position = position.clone();
    for _ in 0..count {
        position = Entry::next(&position, epoch(&position), Vec::new()).position();
    }
    position
}

fn epoch(position: &Position) -> Epoch {
    if position.index == 0 {
        Epoch::new(1, CLUSTER)
    } else {
        position.epoch.clone()
    }
}

/// Runs the steps the input encodes, checking the invariants after each one.
pub fn secondary_state_machine(data: &[u8]) {
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let storage = MemStorage::new();
    let mut secondary = open(&storage);
    let mut now = Timestamp::from_secs(1_000);
    for step in steps.into_iter().take(MAX_STEPS) {
        let position = secondary.position().clone();
        let received = match step {
            Step::Start => {
                secondary.start(now);
                Vec::new()
            }
            Step::Connected => {
                secondary.handle_connected(now);
                Vec::new()
            }
            Step::Disconnected => {
                secondary.handle_disconnected(now, "fuzz");
                Vec::new()
            }
            Step::Advance { millis } => {
                now = now.saturating_add(Duration::from_millis(u64::from(millis) * 4));
                secondary.handle_timeout(now);
                Vec::new()
            }
            Step::Bytes(bytes) => bytes,
            Step::Message(bytes) => wrap(&bytes),
            Step::StreamStart { skip } => frames(&Message::StreamStart {
                from: position.index + 1 + u64::from(skip % 3),
                head: position.clone(),
                root: secondary.root(),
            }),
            Step::Batch { writes, chained } => {
                let ops = writes
                    .into_iter()
                    .take(8)
                    .map(|(key, value)| {
                        let key = format!("logical/fuzz/{}", key % 16);
                        match value {
                            Some(byte) => Op::Put {
                                key,
                                value: vec![byte; 3],
                            },
                            None => Op::Delete { key },
                        }
                    })
                    .collect();
                let prev = if chained {
                    position.clone()
                } else {
                    ahead_of(&position, 1)
                };
                let entry = Entry::next(&prev, epoch(&prev), ops);
                frames(&Message::WalBatch {
                    entries: vec![entry],
                })
            }
            Step::Heartbeat { ahead } => frames(&Message::Heartbeat {
                head: ahead_of(&position, ahead % 4),
                root: secondary.root(),
            }),
            Step::Goodbye => frames(&Message::Goodbye {
                reason: "fuzz".into(),
            }),
        };
        if !received.is_empty() {
            let written = storage.write(|txn| secondary.handle_bytes(now, &received, txn));
            if written.is_err() {
                // As the driver does: the cached position may be ahead of storage.
                secondary = open(&storage);
            }
        }
        while secondary.poll_transmit().is_some() {}
        while secondary.poll_event().is_some() {}
        let _ = secondary.poll_timeout();
        if let Err(error) = secondary.validate() {
            panic!("secondary invariant broken: {error}");
        }
        let stored = storage
            .read(|txn| secondary.validate_storage(txn))
            .expect("MemStorage opens a read transaction");
        if let Err(error) = stored {
            panic!("secondary disagrees with its storage: {error}");
        }
    }
}
