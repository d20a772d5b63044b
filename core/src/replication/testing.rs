//! A runtime-free harness: one primary and N secondaries, each with its own `MemStorage`,
//! over an in-memory network with virtual time, latency, loss, duplication, reordering and
//! disconnects.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::Timestamp;
use crate::replication::apply::commit_primary_write;
use crate::replication::config::ReplicationConfig;
use crate::replication::frame::{FrameDecoder, FrameLimits, decode_frame, encode_message};
use crate::replication::merkle::Merkle;
use crate::replication::message::Message;
use crate::replication::position::{Digest, Epoch, Position};
use crate::replication::primary::{PrimaryEvent, PrimarySession, PrimaryView};
use crate::replication::secondary::{Secondary, SecondaryEvent, SecondaryState};
use crate::replication::shipper::LogShipper;
use crate::replication::wal::{Op, Wal};
use crate::storage::{MemStorage, Partition, Storage, StorageError, Transaction};

pub(crate) const CLUSTER: &str = "cluster-a";

/// Fault rates, each a probability per frame or per step.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) disconnect: f64,
}

pub(crate) struct PrimaryNode {
    pub(crate) storage: MemStorage,
    pub(crate) wal: Wal,
    pub(crate) shipper: LogShipper,
    pub(crate) epoch: Epoch,
}

struct Session {
    conn: u64,
    machine: PrimarySession,
    snapshot: Option<MemStorage>,
}

pub(crate) struct SecondaryNode {
    pub(crate) storage: MemStorage,
    pub(crate) machine: Secondary,
    conn: Option<u64>,
    last_applied: u64,
    pub(crate) states: Vec<SecondaryState>,
    pub(crate) changed_keys: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Primary(usize),
    Secondary(usize),
}

struct Packet {
    at: Timestamp,
    seq: u64,
    conn: u64,
    to: Target,
    bytes: Vec<u8>,
}

/// Counts of what the primary sent, decoded from its frames.
#[derive(Clone, Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) messages: BTreeMap<&'static str, u64>,
    pub(crate) keys_sent: u64,
    pub(crate) members_sent: u64,
    pub(crate) payload: Vec<u8>,
}

pub(crate) struct Cluster {
    pub(crate) now: Timestamp,
    pub(crate) config: ReplicationConfig,
    pub(crate) faults: Faults,
    pub(crate) latency: Duration,
    rng: ChaCha20Rng,
    pub(crate) primary: PrimaryNode,
    sessions: BTreeMap<usize, Session>,
    pub(crate) secondaries: Vec<SecondaryNode>,
    packets: Vec<Packet>,
    next_seq: u64,
    next_conn: u64,
    decoders: BTreeMap<u64, FrameDecoder>,
    pub(crate) traffic: Traffic,
}

impl Cluster {
    pub(crate) fn new(config: ReplicationConfig, secondaries: usize, seed: u64) -> Cluster {
        let stores = (0..secondaries).map(|_| MemStorage::new()).collect();
        Cluster::with_storage(
            config,
            MemStorage::new(),
            stores,
            Epoch::new(1, CLUSTER),
            seed,
        )
    }

    pub(crate) fn with_storage(
        config: ReplicationConfig,
        primary: MemStorage,
        secondaries: Vec<MemStorage>,
        epoch: Epoch,
        seed: u64,
    ) -> Cluster {
        let primary = PrimaryNode {
            storage: primary,
            wal: Wal::new(config.wal_retain),
            shipper: LogShipper::new(
                config.logshipper_buffer_length,
                config.logshipper_buffer_size,
            ),
            epoch,
        };
        let secondaries = secondaries
            .into_iter()
            .enumerate()
            .map(|(number, storage)| {
                let machine = storage
                    .read(|txn| Secondary::new(config.clone(), CLUSTER, format!("s{number}"), txn))
                    .unwrap()
                    .unwrap();
                SecondaryNode {
                    storage,
                    machine,
                    conn: None,
                    last_applied: 0,
                    states: Vec::new(),
                    changed_keys: Vec::new(),
                }
            })
            .collect();
        Cluster {
            now: Timestamp::from_secs(1_000),
            config,
            faults: Faults::default(),
            latency: Duration::from_millis(5),
            rng: ChaCha20Rng::seed_from_u64(seed),
            primary,
            sessions: BTreeMap::new(),
            secondaries,
            packets: Vec::new(),
            next_seq: 0,
            next_conn: 1,
            decoders: BTreeMap::new(),
            traffic: Traffic::default(),
        }
    }

    /// Starts every secondary.
    pub(crate) fn start(&mut self) {
        for index in 0..self.secondaries.len() {
            let now = self.now;
            self.secondaries[index].machine.start(now);
            self.drain_secondary(index);
        }
    }

    /// Writes `ops` on the primary: data, Merkle index and WAL entry in one transaction.
    pub(crate) fn write(&mut self, ops: Vec<Op>) {
        let primary = &mut self.primary;
        let entry = primary
            .storage
            .write(|txn| commit_primary_write(txn, &primary.wal, &primary.epoch, ops))
            .unwrap();
        primary.shipper.push(entry);
        for index in self.sessions.keys().copied().collect::<Vec<_>>() {
            let now = self.now;
            self.with_session(index, |session, view| session.handle_commit(now, view));
        }
    }

    /// Writes a value to the primary's local partition, which must never travel.
    pub(crate) fn write_local(&mut self, key: &str, value: &[u8]) {
        self.primary
            .storage
            .write(|txn| txn.put(Partition::Local, key, value))
            .unwrap();
    }

    /// Advances to the next packet or timer and handles everything due. Returns false when
    /// nothing is scheduled.
    pub(crate) fn step(&mut self) -> bool {
        let Some(next) = self.next_instant() else {
            return false;
        };
        self.now = self.now.max(next);
        self.inject_disconnect();
        self.deliver_due();
        self.fire_timers();
        self.validate();
        true
    }

    /// Steps until `done` holds, at most `max_steps` times. Returns whether it held.
    pub(crate) fn drive_bounded(
        &mut self,
        max_steps: usize,
        done: impl Fn(&Cluster) -> bool,
    ) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if !self.step() {
                break;
            }
        }
        done(self)
    }

    /// Steps until every secondary has converged, within a generous bound.
    pub(crate) fn drive(&mut self) -> bool {
        self.drive_bounded(20_000, Cluster::converged)
    }

    pub(crate) fn primary_head(&self) -> Position {
        self.primary
            .storage
            .read(|txn| Wal::head(txn))
            .unwrap()
            .unwrap()
    }

    pub(crate) fn primary_root(&self) -> Digest {
        self.primary
            .storage
            .read(|txn| Merkle::root(txn))
            .unwrap()
            .unwrap()
    }

    /// Returns whether every secondary streams at the primary's head with equal data and root.
    pub(crate) fn converged(&self) -> bool {
        let head = self.primary_head();
        let root = self.primary_root();
        let data = self.primary.storage.dump(Partition::Shared);
        self.secondaries.iter().all(|node| {
            node.machine.state() == SecondaryState::StreamWals
                && *node.machine.position() == head
                && node.machine.root() == root
                && node.storage.dump(Partition::Shared) == data
        })
    }

    fn next_instant(&self) -> Option<Timestamp> {
        let packet = self.packets.iter().map(|packet| packet.at).min();
        let sessions = self
            .sessions
            .values()
            .filter_map(|session| session.machine.poll_timeout().map(|(at, _)| at));
        let secondaries = self
            .secondaries
            .iter()
            .filter_map(|node| node.machine.poll_timeout().map(|(at, _)| at));
        packet.into_iter().chain(sessions).chain(secondaries).min()
    }

    fn deliver_due(&mut self) {
        loop {
            let due = self
                .packets
                .iter()
                .enumerate()
                .filter(|(_, packet)| packet.at <= self.now)
                .min_by_key(|(_, packet)| (packet.at, packet.seq))
                .map(|(at, _)| at);
            let Some(position) = due else {
                return;
            };
            let packet = self.packets.remove(position);
            self.deliver(packet);
        }
    }

    fn deliver(&mut self, packet: Packet) {
        let now = self.now;
        match packet.to {
            Target::Primary(index) => {
                if self
                    .sessions
                    .get(&index)
                    .is_none_or(|session| session.conn != packet.conn)
                {
                    return;
                }
                self.with_session(index, |session, view| {
                    session.handle_bytes(now, &packet.bytes, view)
                });
            }
            Target::Secondary(index) => {
                let node = &mut self.secondaries[index];
                if node.conn != Some(packet.conn) {
                    return;
                }
                let machine = &mut node.machine;
                node.storage
                    .write(|txn| machine.handle_bytes(now, &packet.bytes, txn))
                    .unwrap();
                self.drain_secondary(index);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        for index in self.sessions.keys().copied().collect::<Vec<_>>() {
            let due = self.sessions[&index]
                .machine
                .poll_timeout()
                .is_some_and(|(at, _)| at <= now);
            if due {
                self.with_session(index, |session, view| session.handle_timeout(now, view));
            }
        }
        for index in 0..self.secondaries.len() {
            let due = self.secondaries[index]
                .machine
                .poll_timeout()
                .is_some_and(|(at, _)| at <= now);
            if due {
                self.secondaries[index].machine.handle_timeout(now);
                self.drain_secondary(index);
            }
        }
    }

    fn inject_disconnect(&mut self) {
        if self.faults.disconnect <= 0.0 || self.secondaries.is_empty() {
            return;
        }
        if self.chance(self.faults.disconnect) {
            let index = (self.rng.next_u32() as usize) % self.secondaries.len();
            if self.secondaries[index].conn.is_some() {
                self.close(index, "injected disconnect");
            }
        }
    }

    /// Runs `body` on the session of secondary `index` with a view of the primary's storage,
    /// then drains the session's outputs.
    fn with_session(
        &mut self,
        index: usize,
        body: impl FnOnce(&mut PrimarySession, &PrimaryView<'_>),
    ) {
        let Some(session) = self.sessions.get_mut(&index) else {
            return;
        };
        let primary = &self.primary;
        let snapshot = session.snapshot.clone();
        let machine = &mut session.machine;
        primary
            .storage
            .read(|live| match &snapshot {
                Some(snapshot) => snapshot
                    .read(|pinned| {
                        let view = PrimaryView {
                            live,
                            shipper: &primary.shipper,
                            snapshot: Some(pinned),
                        };
                        body(machine, &view)
                    })
                    .unwrap(),
                None => {
                    let view = PrimaryView {
                        live,
                        shipper: &primary.shipper,
                        snapshot: None,
                    };
                    body(machine, &view)
                }
            })
            .unwrap();
        self.drain_session(index);
    }

    fn drain_session(&mut self, index: usize) {
        let Some(session) = self.sessions.get_mut(&index) else {
            return;
        };
        let conn = session.conn;
        let mut frames = Vec::new();
        while let Some(frame) = session.machine.poll_transmit() {
            frames.push(frame);
        }
        let mut close = None;
        while let Some(event) = session.machine.poll_event() {
            match event {
                PrimaryEvent::PinSnapshot { .. } => {
                    session.snapshot = Some(copy_storage(&self.primary.storage));
                }
                PrimaryEvent::ReleaseSnapshot { .. } => session.snapshot = None,
                PrimaryEvent::Close { reason } => close = Some(reason),
                PrimaryEvent::StateChanged { .. } => {}
            }
        }
        for frame in frames {
            self.record_traffic(conn, &frame);
            self.send(conn, Target::Secondary(index), frame);
        }
        if let Some(reason) = close {
            self.close(index, &reason);
        }
    }

    fn drain_secondary(&mut self, index: usize) {
        let node = &mut self.secondaries[index];
        let mut frames = Vec::new();
        while let Some(frame) = node.machine.poll_transmit() {
            frames.push(frame);
        }
        let mut events = Vec::new();
        while let Some(event) = node.machine.poll_event() {
            events.push(event);
        }
        let conn = node.conn;
        for frame in frames {
            if let Some(conn) = conn {
                self.send(conn, Target::Primary(index), frame);
            }
        }
        for event in events {
            self.handle_secondary_event(index, event);
        }
    }

    fn handle_secondary_event(&mut self, index: usize, event: SecondaryEvent) {
        match event {
            SecondaryEvent::Connect => self.connect(index),
            SecondaryEvent::Disconnect { reason } => self.close(index, &reason),
            SecondaryEvent::StateChanged { to, .. } => self.secondaries[index].states.push(to),
            SecondaryEvent::Applied {
                position,
                changed_keys,
            } => {
                let node = &mut self.secondaries[index];
                if position.index == 0 {
                    node.last_applied = 0;
                } else {
                    assert!(
                        position.index > node.last_applied,
                        "secondary {index} applied {} after {}",
                        position.index,
                        node.last_applied
                    );
                    node.last_applied = position.index;
                }
                node.changed_keys.extend(changed_keys);
            }
            SecondaryEvent::Rejected { .. } | SecondaryEvent::KeyOffer(_) => {}
        }
    }

    fn connect(&mut self, index: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = PrimarySession::new(
            self.config.clone(),
            CLUSTER,
            self.primary.epoch.clone(),
            self.now,
        );
        self.sessions.insert(
            index,
            Session {
                conn,
                machine: session,
                snapshot: None,
            },
        );
        self.secondaries[index].conn = Some(conn);
        let now = self.now;
        self.secondaries[index].machine.handle_connected(now);
        self.drain_secondary(index);
    }

    fn close(&mut self, index: usize, reason: &str) {
        let Some(conn) = self.secondaries[index].conn.take() else {
            return;
        };
        self.sessions.remove(&index);
        self.decoders.remove(&conn);
        self.packets.retain(|packet| packet.conn != conn);
        let now = self.now;
        self.secondaries[index]
            .machine
            .handle_disconnected(now, reason);
        self.drain_secondary(index);
    }

    fn send(&mut self, conn: u64, to: Target, bytes: Vec<u8>) {
        if self.chance(self.faults.loss) {
            return;
        }
        let copies = if self.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.latency;
            if self.chance(self.faults.reorder) {
                delay += Duration::from_millis(u64::from(self.rng.next_u32() % 20));
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.packets.push(Packet {
                at: self.now.saturating_add(delay),
                seq,
                conn,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    fn record_traffic(&mut self, conn: u64, frame: &[u8]) {
        if let Ok(Some((decoded, _))) = decode_frame(frame, usize::MAX) {
            self.traffic.payload.extend_from_slice(decoded.payload);
        }
        let limits = FrameLimits {
            max_frame_payload: self.config.max_frame_payload,
            max_message_size: self.config.max_message_size,
        };
        let decoder = self
            .decoders
            .entry(conn)
            .or_insert_with(|| FrameDecoder::new(limits));
        decoder.push(frame);
        while let Ok(Some(message)) = decoder.poll_message() {
            *self.traffic.messages.entry(message.kind()).or_default() += 1;
            match &message {
                Message::KeyValues { values, .. } => self.traffic.keys_sent += values.len() as u64,
                Message::BucketResponse { buckets, .. } => {
                    let members: usize = buckets.iter().map(|(_, delta)| delta.missing.len()).sum();
                    self.traffic.members_sent += members as u64;
                }
                _ => {}
            }
        }
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < probability
    }

    fn validate(&self) {
        for (index, session) in &self.sessions {
            session
                .machine
                .validate()
                .unwrap_or_else(|error| panic!("session {index}: {error}"));
        }
        for (index, node) in self.secondaries.iter().enumerate() {
            node.machine
                .validate()
                .unwrap_or_else(|error| panic!("secondary {index}: {error}"));
            node.storage
                .read(|txn| node.machine.validate_storage(txn))
                .unwrap()
                .unwrap_or_else(|error| panic!("secondary {index}: {error}"));
        }
    }
}

/// Returns a copy of every partition of `source`, standing in for a pinned read snapshot.
pub(crate) fn copy_storage(source: &MemStorage) -> MemStorage {
    let copy = MemStorage::new();
    copy.write(|txn: &mut dyn Transaction| {
        for partition in Partition::ALL {
            for (key, value) in source.dump(partition) {
                txn.put(partition, &key, &value)?;
            }
        }
        Ok::<(), StorageError>(())
    })
    .unwrap();
    copy
}

/// Returns a configuration with small frames and fetch batches, so tests cross those bounds.
pub(crate) fn small_config() -> ReplicationConfig {
    ReplicationConfig {
        max_frame_payload: 512,
        fetch_batch_keys: 8,
        ..ReplicationConfig::default()
    }
}

/// Writes `logical/k{n}` = `v{n}` on the primary for each `n` in `range`, one entry each.
pub(crate) fn write_numbered(cluster: &mut Cluster, range: std::ops::Range<usize>) {
    for number in range {
        cluster.write(vec![put(
            &format!("logical/k{number}"),
            &format!("v{number}"),
        )]);
    }
}

/// Hands `message` to `secondary` frame by frame, each in its own transaction.
pub(crate) fn feed(secondary: &mut Secondary, storage: &MemStorage, message: &Message) {
    let limits = FrameLimits {
        max_frame_payload: 512,
        max_message_size: 1 << 20,
    };
    for frame in encode_message(message, limits).unwrap() {
        let now = Timestamp::from_secs(2);
        storage
            .write(|txn| secondary.handle_bytes(now, &frame, txn))
            .unwrap();
    }
}

pub(crate) fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

pub(crate) fn delete(key: &str) -> Op {
    Op::Delete {
        key: key.to_owned(),
    }
}
