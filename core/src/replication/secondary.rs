//! The secondary's state machine: connect, catch up by WAL stream or Merkle diff, apply.

mod stream;
mod sync;

use std::collections::VecDeque;
use std::time::Duration;

use crate::Timestamp;
use crate::replication::config::ReplicationConfig;
use crate::replication::frame::{FrameDecoder, FrameLimits, encode_message};
use crate::replication::keys::KeyOffer;
use crate::replication::merkle::Merkle;
use crate::replication::message::{ErrorCode, Message};
use crate::replication::position::{Digest, Epoch, Position};
use crate::replication::wal::Wal;
use crate::storage::{StorageError, Transaction};

use self::sync::SyncProgress;

/// Hash of the position a secondary reports while a Merkle sync is half done. No entry has it,
/// so no primary takes that position for a point on its chain and a new diff follows.
pub const UNSYNCED_HASH: Digest = [0xff; 32];

/// The secondary's replication state, as status output names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondaryState {
    /// Not replicating: no primary, or waiting to reconnect.
    Idle,
    /// Opening a connection or waiting for the primary's response to `Hello`.
    Connecting,
    /// Connected for the first time with no data yet.
    Bootstrapping,
    /// Comparing Merkle pages and buckets with the primary's snapshot.
    MerkleDiff,
    /// Fetching and deleting the keys that differ.
    MerkleSync,
    /// Applying streamed entries.
    StreamWals,
}

impl SecondaryState {
    /// Returns the name status output uses.
    pub fn name(self) -> &'static str {
        match self {
            SecondaryState::Idle => "idle",
            SecondaryState::Connecting => "connecting",
            SecondaryState::Bootstrapping => "bootstrapping",
            SecondaryState::MerkleDiff => "merkle-diff",
            SecondaryState::MerkleSync => "merkle-sync",
            SecondaryState::StreamWals => "stream-wals",
        }
    }
}

/// A timer of the secondary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecondaryTimer {
    /// The reconnect backoff is over.
    Reconnect,
    /// The response to `Hello` or to a Merkle request is overdue.
    Response,
    /// The primary has been silent too long.
    PrimarySilence,
}

/// The values two nodes compare to tell whether their states match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Position of the node.
    pub position: Position,
    /// Merkle root of the node.
    pub root: Digest,
}

/// An output of the secondary for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondaryEvent {
    /// Open a connection to the primary, then call `handle_connected` or `handle_disconnected`.
    Connect,
    /// Close the connection to the primary.
    Disconnect {
        /// Why.
        reason: String,
    },
    /// The state changed.
    StateChanged {
        /// Previous state.
        from: SecondaryState,
        /// New state.
        to: SecondaryState,
        /// Why.
        reason: String,
        /// This node's guard values.
        local: Guard,
        /// The primary's last known guard values.
        remote: Option<Guard>,
    },
    /// Data was written; caches fed by these keys must reload.
    Applied {
        /// The position after the write.
        position: Position,
        /// Every key written.
        changed_keys: Vec<String>,
    },
    /// Received entries were not applied.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The primary sent its keys sealed to this secondary. The driver opens the offer with the
    /// bundle's private key and installs the keys before it handles the events that follow.
    KeyOffer(KeyOffer),
}

enum Phase {
    Idle { reconnect_at: Option<Timestamp> },
    Connecting,
    Handshake,
    Syncing(SyncProgress),
    Streaming { stalled_at: Option<u64> },
}

/// A secondary's replication state machine.
///
/// Inputs: [`start`](Self::start), [`handle_connected`](Self::handle_connected),
/// [`handle_disconnected`](Self::handle_disconnected), [`handle_bytes`](Self::handle_bytes)
/// and [`handle_timeout`](Self::handle_timeout). Outputs: drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) after every
/// input, then arm [`poll_timeout`](Self::poll_timeout). `handle_bytes` writes through the
/// transaction it is given, and the driver commits it when the call returns `Ok`. When the call
/// returns `Err` or the commit fails, the driver discards the transaction and rebuilds the
/// secondary with [`Secondary::new`], because the cached position may be ahead of storage.
pub struct Secondary {
    config: ReplicationConfig,
    limits: FrameLimits,
    cluster_id: String,
    secondary_id: String,
    wal: Wal,
    position: Position,
    root: Digest,
    phase: Phase,
    state: SecondaryState,
    decoder: FrameDecoder,
    remote: Option<Guard>,
    // The lowest epoch number a primary may have: the epoch of the bundle this node follows,
    // which can be newer than its last applied entry right after `update-primary`.
    fence: u64,
    backoff: Duration,
    last_heard: Timestamp,
    response_due: Option<Timestamp>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<SecondaryEvent>,
}

impl Secondary {
    /// Creates an idle secondary of `cluster_id` named `secondary_id`, at the stored position.
    pub fn new(
        config: ReplicationConfig,
        cluster_id: impl Into<String>,
        secondary_id: impl Into<String>,
        txn: &dyn Transaction,
    ) -> Result<Secondary, StorageError> {
        let limits = FrameLimits {
            max_frame_payload: config.max_frame_payload,
            max_message_size: config.max_message_size,
        };
        Ok(Secondary {
            wal: Wal::new(config.wal_retain),
            backoff: config.reconnect_initial,
            config,
            limits,
            cluster_id: cluster_id.into(),
            secondary_id: secondary_id.into(),
            position: Wal::head(txn)?,
            root: Merkle::root(txn)?,
            phase: Phase::Idle { reconnect_at: None },
            state: SecondaryState::Idle,
            decoder: FrameDecoder::new(limits),
            remote: None,
            fence: 0,
            last_heard: Timestamp::EPOCH,
            response_due: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Rejects every primary whose epoch number is below `number`, on top of the epoch of the
    /// last applied entry. The driver passes the epoch of the bundle it follows, so a node that
    /// moved to a promoted primary never streams from the old one again.
    pub fn with_epoch_fence(mut self, number: u64) -> Secondary {
        self.fence = number;
        self
    }

    /// Returns the primary's head as of its last `StreamStart` or heartbeat. `promote` waits
    /// until this node has applied it.
    pub fn primary_head(&self) -> Option<&Position> {
        self.remote.as_ref().map(|guard| &guard.position)
    }

    /// Returns the state.
    pub fn state(&self) -> SecondaryState {
        self.state
    }

    /// Returns the last applied position.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// Returns the Merkle root of the local shared partition.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// Returns the progress of the running Merkle sync once its keys are known, for status.
    pub fn sync_counts(&self) -> Option<crate::replication::live::SyncCounts> {
        match &self.phase {
            Phase::Syncing(progress) => progress.counts(),
            _ => None,
        }
    }

    /// Returns the current delay before a reconnect.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Starts replicating: requests a connection from the driver.
    pub fn start(&mut self, now: Timestamp) {
        self.connect(now);
    }

    /// Handles an open connection: sends `Hello`.
    pub fn handle_connected(&mut self, now: Timestamp) {
        if !matches!(self.phase, Phase::Connecting) {
            return;
        }
        self.decoder = FrameDecoder::new(self.limits);
        self.last_heard = now;
        self.send_hello(now, "connected to the primary");
    }

    /// Handles a closed or failed connection: waits, then reconnects.
    pub fn handle_disconnected(&mut self, now: Timestamp, reason: &str) {
        if matches!(self.phase, Phase::Idle { .. }) {
            return;
        }
        self.back_off(now, reason);
    }

    /// Handles bytes received from the primary, writing through `txn`.
    pub fn handle_bytes(
        &mut self,
        now: Timestamp,
        bytes: &[u8],
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        if matches!(self.phase, Phase::Idle { .. } | Phase::Connecting) {
            return Ok(());
        }
        self.last_heard = now;
        self.decoder.push(bytes);
        loop {
            match self.decoder.poll_message() {
                Ok(Some(message)) => self.handle_message(now, message, txn)?,
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.fail(now, ErrorCode::Protocol, error.to_string());
                    return Ok(());
                }
            }
            if matches!(self.phase, Phase::Idle { .. }) {
                return Ok(());
            }
        }
    }

    /// Handles the passing of the instant [`poll_timeout`](Self::poll_timeout) returned.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Idle {
                reconnect_at: Some(at),
            } if now >= at => self.connect(now),
            Phase::Idle { .. } => {}
            _ if now.saturating_since(self.last_heard) >= self.config.heartbeat_timeout => {
                let silence = self.config.heartbeat_timeout;
                self.disconnect(now, format!("primary silent for {silence:?}"));
            }
            _ if self.response_due.is_some_and(|due| now >= due) => {
                self.resync(now, "response from the primary timed out");
            }
            _ => {}
        }
    }

    /// Returns the next frame to send.
    #[must_use = "a frame to send must be written to the connection"]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// Returns the next event for the driver.
    #[must_use = "an event must be handled"]
    pub fn poll_event(&mut self) -> Option<SecondaryEvent> {
        self.events.pop_front()
    }

    /// Returns when [`handle_timeout`](Self::handle_timeout) is due, and for which timer.
    #[must_use = "the timer must be armed"]
    pub fn poll_timeout(&self) -> Option<(Timestamp, SecondaryTimer)> {
        match self.phase {
            Phase::Idle { reconnect_at } => reconnect_at.map(|at| (at, SecondaryTimer::Reconnect)),
            _ => {
                let silence = self
                    .last_heard
                    .saturating_add(self.config.heartbeat_timeout);
                match self.response_due {
                    Some(due) if due < silence => Some((due, SecondaryTimer::Response)),
                    _ => Some((silence, SecondaryTimer::PrimarySilence)),
                }
            }
        }
    }

    /// Checks the internal invariants.
    pub fn validate(&self) -> Result<(), String> {
        let expected = match &self.phase {
            Phase::Idle { .. } => vec![SecondaryState::Idle],
            Phase::Connecting | Phase::Handshake => {
                vec![SecondaryState::Connecting, SecondaryState::Bootstrapping]
            }
            Phase::Syncing(_) => vec![SecondaryState::MerkleDiff, SecondaryState::MerkleSync],
            Phase::Streaming { .. } => vec![SecondaryState::StreamWals],
        };
        if !expected.contains(&self.state) {
            return Err(format!(
                "state {} does not match the phase",
                self.state.name()
            ));
        }
        if let Phase::Syncing(progress) = &self.phase {
            progress.validate()?;
        }
        if self.backoff > self.config.reconnect_max.max(self.config.reconnect_initial) {
            return Err(format!("backoff {:?} exceeds its cap", self.backoff));
        }
        Ok(())
    }

    /// Checks that the cached position and root equal what `txn` holds.
    pub fn validate_storage(&self, txn: &dyn Transaction) -> Result<(), String> {
        let head = Wal::head(txn).map_err(|error| error.to_string())?;
        let root = Merkle::root(txn).map_err(|error| error.to_string())?;
        if head != self.position {
            return Err(format!(
                "cached position {} but stored {head}",
                self.position
            ));
        }
        if root != self.root {
            return Err("cached Merkle root differs from the stored root".into());
        }
        Ok(())
    }

    fn handle_message(
        &mut self,
        now: Timestamp,
        message: Message,
        txn: &mut dyn Transaction,
    ) -> Result<(), StorageError> {
        match message {
            Message::StreamStart { from, head, root } => {
                self.handle_stream_start(now, from, head, root)
            }
            Message::WalBatch { entries } => return self.handle_batch(now, &entries, txn),
            Message::Heartbeat { head, root } => self.handle_heartbeat(now, head, root),
            Message::SyncStart {
                sync,
                position,
                root,
                pages,
            } => return self.handle_sync_start(now, sync, position, root, &pages, txn),
            Message::Error { code, message } => {
                let reason = format!("primary reported {code:?}: {message}");
                self.disconnect(now, reason);
            }
            Message::Goodbye { reason } => {
                self.disconnect(now, format!("primary said goodbye: {reason}"));
            }
            Message::KeyOffer(offer) => self.events.push_back(SecondaryEvent::KeyOffer(offer)),
            message @ (Message::MerklePagesResponse { .. }
            | Message::BucketResponse { .. }
            | Message::KeyValues { .. }) => return self.handle_sync_message(now, message, txn),
            other => {
                let kind = other.kind();
                self.fail(
                    now,
                    ErrorCode::Protocol,
                    format!("unexpected {kind} from the primary"),
                );
            }
        }
        Ok(())
    }

    fn handle_stream_start(&mut self, now: Timestamp, from: u64, head: Position, root: Digest) {
        if !matches!(self.phase, Phase::Handshake) {
            return;
        }
        if self.is_stale(&head.epoch) {
            self.reject_epoch(now, &head.epoch);
            return;
        }
        self.remote = Some(Guard {
            position: head,
            root,
        });
        if from != self.position.index + 1 {
            self.resync(now, "stream does not start after this position");
            return;
        }
        self.response_due = None;
        self.backoff = self.config.reconnect_initial;
        self.phase = Phase::Streaming { stalled_at: None };
        self.set_state(
            SecondaryState::StreamWals,
            "primary streams from this position",
        );
    }

    fn handle_heartbeat(&mut self, now: Timestamp, head: Position, root: Digest) {
        if self.is_stale(&head.epoch) {
            self.reject_epoch(now, &head.epoch);
            return;
        }
        let behind = head.index > self.position.index;
        self.remote = Some(Guard {
            position: head,
            root,
        });
        let applied = self.position.index;
        let Phase::Streaming { stalled_at } = &mut self.phase else {
            return;
        };
        // Entries in flight arrive before the next heartbeat, so being behind at two
        // heartbeats in a row without progress means entries or acknowledgements were lost.
        let stalled = behind && *stalled_at == Some(applied);
        *stalled_at = behind.then_some(applied);
        if stalled {
            self.resync(now, "no progress while behind the primary");
            return;
        }
        self.send(&Message::Ack { applied });
    }

    fn connect(&mut self, now: Timestamp) {
        self.phase = Phase::Connecting;
        // The silence timer doubles as the connect timeout.
        self.last_heard = now;
        self.response_due = None;
        self.set_state(SecondaryState::Connecting, "connecting to the primary");
        self.events.push_back(SecondaryEvent::Connect);
    }

    fn send_hello(&mut self, now: Timestamp, reason: &str) {
        self.phase = Phase::Handshake;
        self.response_due = Some(now.saturating_add(self.config.heartbeat_timeout));
        let state = if self.position.is_genesis() {
            SecondaryState::Bootstrapping
        } else {
            SecondaryState::Connecting
        };
        self.set_state(state, reason);
        self.send(&Message::Hello {
            cluster_id: self.cluster_id.clone(),
            secondary_id: self.secondary_id.clone(),
            position: self.position.clone(),
            root: self.root,
        });
    }

    /// Asks the primary again where to continue, on the same connection.
    fn resync(&mut self, now: Timestamp, reason: &str) {
        self.send_hello(now, reason);
    }

    fn reject(&mut self, reason: String) {
        tracing::warn!(%reason, position = %self.position, "replicated entries rejected");
        self.events.push_back(SecondaryEvent::Rejected { reason });
    }

    /// Returns whether a primary in `epoch` is older than what this node has seen.
    fn is_stale(&self, epoch: &Epoch) -> bool {
        *epoch < self.position.epoch || epoch.number < self.fence
    }

    fn reject_epoch(&mut self, now: Timestamp, epoch: &Epoch) {
        let own = &self.position.epoch;
        let fence = self.fence;
        let reason = format!(
            "primary is at epoch {epoch}, but this node has applied epoch {own} and follows \
             only a primary of epoch number {fence} or newer; it may be a demoted or isolated \
             old primary, so this node does not follow it"
        );
        self.reject(reason.clone());
        self.send(&Message::Goodbye {
            reason: reason.clone(),
        });
        self.disconnect(now, reason);
    }

    fn fail(&mut self, now: Timestamp, code: ErrorCode, message: String) {
        self.send(&Message::Error {
            code,
            message: message.clone(),
        });
        self.disconnect(now, message);
    }

    fn disconnect(&mut self, now: Timestamp, reason: String) {
        self.events.push_back(SecondaryEvent::Disconnect {
            reason: reason.clone(),
        });
        self.back_off(now, &reason);
    }

    fn back_off(&mut self, now: Timestamp, reason: &str) {
        // NOTE: the delay has no jitter, so secondaries that lost the primary together retry
        // together.
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.reconnect_max);
        self.response_due = None;
        self.phase = Phase::Idle {
            reconnect_at: Some(now.saturating_add(delay)),
        };
        self.set_state(SecondaryState::Idle, reason);
    }

    fn set_state(&mut self, to: SecondaryState, reason: &str) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        let local = Guard {
            position: self.position.clone(),
            root: self.root,
        };
        tracing::info!(
            from = from.name(),
            to = to.name(),
            reason,
            position = %local.position,
            root = %hex::encode(local.root),
            primary_position = ?self.remote.as_ref().map(|guard| guard.position.to_string()),
            primary_root = ?self.remote.as_ref().map(|guard| hex::encode(guard.root)),
            "replication state changed"
        );
        self.events.push_back(SecondaryEvent::StateChanged {
            from,
            to,
            reason: reason.to_owned(),
            local,
            remote: self.remote.clone(),
        });
    }

    fn send(&mut self, message: &Message) {
        match encode_message(message, self.limits) {
            Ok(frames) => self.transmits.extend(frames),
            Err(error) => {
                tracing::error!(kind = message.kind(), %error, "cannot encode replication message");
            }
        }
    }
}
