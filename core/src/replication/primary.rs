//! The primary's session with one connected secondary.

mod serve;

use std::collections::VecDeque;

use crate::Timestamp;
use crate::replication::config::ReplicationConfig;
use crate::replication::frame::{FrameDecoder, FrameError, FrameLimits, encode_message};
use crate::replication::keys::KeyOffer;
use crate::replication::merkle::Merkle;
use crate::replication::message::{ErrorCode, Message};
use crate::replication::position::{Digest, Epoch, Position};
use crate::replication::shipper::LogShipper;
use crate::replication::wal::{Entry, Wal};
use crate::storage::{StorageError, Transaction};

/// Storage views the driver lends a session for one input.
pub struct PrimaryView<'a> {
    /// The primary's current committed state.
    pub live: &'a dyn Transaction,
    /// The log shipper holding the newest entries.
    pub shipper: &'a LogShipper,
    /// The snapshot pinned after [`PrimaryEvent::PinSnapshot`], until
    /// [`PrimaryEvent::ReleaseSnapshot`].
    pub snapshot: Option<&'a dyn Transaction>,
}

/// A timer of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrimaryTimer {
    /// Time to send a heartbeat.
    Heartbeat,
    /// The secondary has been silent too long.
    PeerSilence,
}

/// The session's externally visible state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, waiting for the secondary's `Hello`.
    AwaitHello,
    /// Streaming entries.
    Streaming,
    /// Serving a Merkle diff and sync from a pinned snapshot.
    Syncing,
    /// Closed; the driver drops the connection.
    Closed,
}

/// An output of a session for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryEvent {
    /// Keep a read view equal to the `live` view passed with the input that produced this
    /// event, and pass it as `snapshot` until the matching release.
    PinSnapshot {
        /// Sync id.
        sync: u64,
        /// The snapshot's position.
        position: Position,
    },
    /// The pinned snapshot is no longer needed.
    ReleaseSnapshot {
        /// Sync id.
        sync: u64,
    },
    /// The session changed state.
    StateChanged {
        /// Previous state.
        from: SessionState,
        /// New state.
        to: SessionState,
        /// Why.
        reason: String,
        /// The secondary's position as it reported it.
        secondary: Option<Position>,
        /// The secondary's Merkle root as it reported it.
        secondary_root: Option<Digest>,
        /// The primary's head.
        primary: Position,
        /// The primary's root.
        root: Digest,
    },
    /// Close the connection.
    Close {
        /// Why.
        reason: String,
    },
}

enum Phase {
    AwaitHello,
    Streaming { next: u64, acked: u64 },
    Syncing { sync: u64, position: Position },
    Closed,
}

/// The primary's state machine for one connected secondary.
///
/// Inputs: [`handle_bytes`](Self::handle_bytes) for received bytes,
/// [`handle_commit`](Self::handle_commit) after every commit that appended entries,
/// [`handle_timeout`](Self::handle_timeout) when the instant of
/// [`poll_timeout`](Self::poll_timeout) passes. Outputs: drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) after every
/// input. Storage is read through the [`PrimaryView`] the driver passes; a session never writes.
pub struct PrimarySession {
    config: ReplicationConfig,
    limits: FrameLimits,
    cluster_id: String,
    epoch: Epoch,
    decoder: FrameDecoder,
    phase: Phase,
    secondary_id: Option<String>,
    secondary_position: Option<Position>,
    secondary_root: Option<Digest>,
    next_sync: u64,
    // Entries committed since the snapshot of the current or last sync, kept until the
    // secondary acknowledges them, because the shipper and the WAL may drop them meanwhile.
    retained: VecDeque<Entry>,
    // Keys waiting for the secondary's first valid `Hello`.
    key_offer: Option<KeyOffer>,
    // The id the connection authenticated, which every `Hello` must carry.
    expected_id: Option<String>,
    last_heard: Timestamp,
    next_heartbeat: Timestamp,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<PrimaryEvent>,
}

impl PrimarySession {
    /// Creates a session for a connection accepted at `now`.
    pub fn new(
        config: ReplicationConfig,
        cluster_id: impl Into<String>,
        epoch: Epoch,
        now: Timestamp,
    ) -> PrimarySession {
        let limits = FrameLimits {
            max_frame_payload: config.max_frame_payload,
            max_message_size: config.max_message_size,
        };
        PrimarySession {
            next_heartbeat: now.saturating_add(config.heartbeat_interval),
            config,
            limits,
            cluster_id: cluster_id.into(),
            epoch,
            decoder: FrameDecoder::new(limits),
            phase: Phase::AwaitHello,
            secondary_id: None,
            secondary_position: None,
            secondary_root: None,
            next_sync: 1,
            retained: VecDeque::new(),
            key_offer: None,
            expected_id: None,
            last_heard: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Returns the session's state.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::AwaitHello => SessionState::AwaitHello,
            Phase::Streaming { .. } => SessionState::Streaming,
            Phase::Syncing { .. } => SessionState::Syncing,
            Phase::Closed => SessionState::Closed,
        }
    }

    /// Returns the secondary's id, once its `Hello` arrived.
    pub fn secondary_id(&self) -> Option<&str> {
        self.secondary_id.as_deref()
    }

    /// Returns the last index the secondary acknowledged while streaming.
    pub fn acked(&self) -> Option<u64> {
        match self.phase {
            Phase::Streaming { acked, .. } => Some(acked),
            _ => None,
        }
    }

    /// Requires every `Hello` to carry `secondary_id`, the id the connection's client
    /// certificate proved. A `Hello` with another id closes the session.
    pub fn expect_secondary(&mut self, secondary_id: impl Into<String>) {
        self.expected_id = Some(secondary_id.into());
    }

    /// Hands the session the keys sealed to its secondary. Before the secondary's first valid
    /// `Hello` the session keeps them and sends them right after that `Hello`, ahead of the
    /// answer to it; afterwards (as after a rekey) it sends them at once. A closed session
    /// drops them.
    pub fn offer_keys(&mut self, offer: KeyOffer) {
        match self.phase {
            Phase::AwaitHello => self.key_offer = Some(offer),
            Phase::Streaming { .. } | Phase::Syncing { .. } => {
                self.send(&Message::KeyOffer(offer));
            }
            Phase::Closed => {}
        }
    }

    /// Handles bytes received from the secondary.
    pub fn handle_bytes(&mut self, now: Timestamp, bytes: &[u8], view: &PrimaryView<'_>) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.last_heard = now;
        self.decoder.push(bytes);
        loop {
            match self.decoder.poll_message() {
                Ok(Some(message)) => self.handle_message(message, view),
                Ok(None) => break,
                Err(error) => {
                    self.fail(ErrorCode::Protocol, error.to_string());
                    break;
                }
            }
            if matches!(self.phase, Phase::Closed) {
                break;
            }
        }
    }

    /// Handles new entries in the log shipper and the WAL after a commit.
    pub fn handle_commit(&mut self, _now: Timestamp, view: &PrimaryView<'_>) {
        if let Err(error) = self.after_commit(view) {
            self.fail(ErrorCode::Storage, error.to_string());
        }
    }

    /// Handles the passing of the instant [`poll_timeout`](Self::poll_timeout) returned.
    pub fn handle_timeout(&mut self, now: Timestamp, view: &PrimaryView<'_>) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        if now.saturating_since(self.last_heard) >= self.config.heartbeat_timeout {
            let silence = self.config.heartbeat_timeout;
            self.close(format!("secondary silent for {silence:?}"));
            return;
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.saturating_add(self.config.heartbeat_interval);
            match heartbeat(view.live) {
                Ok(message) => self.send(&message),
                Err(error) => self.fail(ErrorCode::Storage, error.to_string()),
            }
        }
    }

    /// Returns the next frame to send.
    #[must_use = "a frame to send must be written to the connection"]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// Returns the next event for the driver.
    #[must_use = "an event must be handled"]
    pub fn poll_event(&mut self) -> Option<PrimaryEvent> {
        self.events.pop_front()
    }

    /// Returns when [`handle_timeout`](Self::handle_timeout) is due, and for which timer.
    #[must_use = "the timer must be armed"]
    pub fn poll_timeout(&self) -> Option<(Timestamp, PrimaryTimer)> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        let silence = self
            .last_heard
            .saturating_add(self.config.heartbeat_timeout);
        if silence < self.next_heartbeat {
            return Some((silence, PrimaryTimer::PeerSilence));
        }
        Some((self.next_heartbeat, PrimaryTimer::Heartbeat))
    }

    /// Checks the session's internal invariants.
    pub fn validate(&self) -> Result<(), String> {
        match &self.phase {
            Phase::Streaming { next, acked } if *acked >= *next => Err(format!(
                "acknowledged index {acked} is not below the next index {next}"
            )),
            Phase::Syncing { position, .. } => validate_retained(&self.retained, position),
            _ => Ok(()),
        }
    }

    fn handle_message(&mut self, message: Message, view: &PrimaryView<'_>) {
        let result = match message {
            Message::Hello {
                cluster_id,
                secondary_id,
                position,
                root,
            } => {
                self.secondary_root = Some(root);
                self.handle_hello(cluster_id, secondary_id, position, view)
            }
            Message::Ack { applied } => self.handle_ack(applied, view),
            Message::MerklePagesRequest { sync, pages } => self.serve_pages(sync, &pages, view),
            Message::BucketRequest { sync, buckets } => self.serve_buckets(sync, &buckets, view),
            Message::FetchKeys { sync, keys } => self.serve_keys(sync, &keys, view),
            Message::SyncDone { sync, position } => self.handle_sync_done(sync, position, view),
            Message::Goodbye { reason } => {
                self.close(format!("secondary said goodbye: {reason}"));
                Ok(())
            }
            Message::Error { code, message } => {
                self.close(format!("secondary reported {code:?}: {message}"));
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.fail(
                    ErrorCode::Protocol,
                    format!("unexpected {kind} from a secondary"),
                );
                Ok(())
            }
        };
        if let Err(error) = result {
            self.fail(ErrorCode::Storage, error.to_string());
        }
    }

    fn handle_hello(
        &mut self,
        cluster_id: String,
        secondary_id: String,
        position: Position,
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        if cluster_id != self.cluster_id {
            let expected = &self.cluster_id;
            let message = format!("secondary belongs to cluster {cluster_id}, not {expected}");
            self.fail(ErrorCode::WrongCluster, message);
            return Ok(());
        }
        if let Some(expected) = &self.expected_id {
            if *expected != secondary_id {
                let message = format!(
                    "secondary introduced itself as {secondary_id}, but its certificate is for \
                     {expected}"
                );
                self.fail(ErrorCode::Protocol, message);
                return Ok(());
            }
        }
        if position.epoch > self.epoch {
            let message = format!(
                "secondary has seen epoch {}, newer than this primary's epoch {}",
                position.epoch, self.epoch
            );
            self.fail(ErrorCode::StaleEpoch, message);
            return Ok(());
        }
        self.release_snapshot();
        if let Some(offer) = self.key_offer.take() {
            self.send(&Message::KeyOffer(offer));
        }
        self.secondary_id = Some(secondary_id);
        self.secondary_position = Some(position.clone());
        let head = Wal::head(view.live)?;
        if is_on_chain(&position, &head, view)? {
            self.start_streaming(
                position.index + 1,
                "secondary position is on the chain",
                view,
            )
        } else {
            self.start_sync(&head, view, "secondary position is not on the chain")
        }
    }

    fn start_streaming(
        &mut self,
        from: u64,
        reason: &str,
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let head = Wal::head(view.live)?;
        let root = Merkle::root(view.live)?;
        if !matches!(self.phase, Phase::Syncing { .. }) {
            self.retained.clear();
        }
        self.transition(
            Phase::Streaming {
                next: from,
                acked: from - 1,
            },
            reason,
            view,
        )?;
        self.send(&Message::StreamStart { from, head, root });
        self.fill(view)
    }

    fn start_sync(
        &mut self,
        head: &Position,
        view: &PrimaryView<'_>,
        reason: &str,
    ) -> Result<(), StorageError> {
        let sync = self.next_sync;
        self.next_sync += 1;
        let root = Merkle::root(view.live)?;
        let pages = Merkle::pages(view.live)?;
        self.retained.clear();
        let phase = Phase::Syncing {
            sync,
            position: head.clone(),
        };
        self.transition(phase, reason, view)?;
        self.events.push_back(PrimaryEvent::PinSnapshot {
            sync,
            position: head.clone(),
        });
        self.send(&Message::SyncStart {
            sync,
            position: head.clone(),
            root,
            pages,
        });
        Ok(())
    }

    fn handle_ack(&mut self, applied: u64, view: &PrimaryView<'_>) -> Result<(), StorageError> {
        if let Phase::Streaming { next, acked } = &mut self.phase {
            // An acknowledgement beyond what was sent comes from a confused peer; it is capped
            // so the window never opens wider than the entries in flight.
            *acked = (*acked).max(applied.min(*next - 1));
            let acked = *acked;
            while self
                .retained
                .front()
                .is_some_and(|entry| entry.index <= acked)
            {
                self.retained.pop_front();
            }
            return self.fill(view);
        }
        Ok(())
    }

    fn handle_sync_done(
        &mut self,
        sync: u64,
        position: Position,
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let Phase::Syncing {
            sync: current,
            position: pinned,
            ..
        } = &self.phase
        else {
            return Ok(());
        };
        if *current != sync {
            return Ok(());
        }
        if position != *pinned {
            let message =
                format!("sync {sync} ended at {position}, but the snapshot is at {pinned}");
            self.fail(ErrorCode::Protocol, message);
            return Ok(());
        }
        self.release_snapshot();
        self.secondary_position = Some(position.clone());
        self.start_streaming(position.index + 1, "merkle sync finished", view)
    }

    fn after_commit(&mut self, view: &PrimaryView<'_>) -> Result<(), StorageError> {
        match &self.phase {
            Phase::Streaming { .. } => self.fill(view),
            Phase::Syncing { position, .. } => {
                let head = Wal::head(view.live)?;
                let limit = self.config.sync_retain_entries;
                retain_entries(position, &mut self.retained, limit, &head, view)
            }
            _ => Ok(()),
        }
    }

    /// Sends batches while entries are available and the window allows.
    fn fill(&mut self, view: &PrimaryView<'_>) -> Result<(), StorageError> {
        let head = Wal::head(view.live)?;
        loop {
            let Phase::Streaming { next, acked } = &mut self.phase else {
                return Ok(());
            };
            let window_end = acked
                .saturating_add(self.config.max_in_flight)
                .min(head.index);
            if *next > window_end {
                return Ok(());
            }
            let budget = self.config.max_message_size / 2;
            let mut entries = Vec::new();
            let mut bytes = 0;
            while *next <= window_end && entries.len() < self.config.batch_entries {
                let Some(entry) = find_entry(*next, &self.retained, view)? else {
                    let head = head.clone();
                    return self.start_sync(&head, view, "WAL entries are no longer retained");
                };
                if !entries.is_empty() && bytes + entry.size() > budget {
                    break;
                }
                bytes += entry.size();
                entries.push(entry);
                *next += 1;
            }
            let batch = Message::WalBatch { entries };
            match encode_message(&batch, self.limits) {
                Ok(frames) => self.transmits.extend(frames),
                // One entry alone can pass the message limit (several large writes committed
                // together); Merkle sync then moves its keys one bounded message at a time.
                Err(FrameError::MessageTooLarge { .. }) => {
                    let head = head.clone();
                    return self.start_sync(&head, view, "a WAL entry exceeds the message size");
                }
                Err(error) => {
                    self.close(format!("cannot encode a wal-batch message: {error}"));
                    return Ok(());
                }
            }
        }
    }

    fn transition(
        &mut self,
        phase: Phase,
        reason: &str,
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let from = self.state();
        self.phase = phase;
        let to = self.state();
        let primary = Wal::head(view.live)?;
        let root = Merkle::root(view.live)?;
        tracing::info!(
            from = ?from,
            to = ?to,
            reason,
            secondary = ?self.secondary_id,
            secondary_position = ?self.secondary_position.as_ref().map(ToString::to_string),
            secondary_root = ?self.secondary_root.map(hex::encode),
            primary_position = %primary,
            primary_root = %hex::encode(root),
            "replication session state changed"
        );
        self.events.push_back(PrimaryEvent::StateChanged {
            from,
            to,
            reason: reason.to_owned(),
            secondary: self.secondary_position.clone(),
            secondary_root: self.secondary_root,
            primary,
            root,
        });
        Ok(())
    }

    fn release_snapshot(&mut self) {
        if let Phase::Syncing { sync, .. } = self.phase {
            self.events
                .push_back(PrimaryEvent::ReleaseSnapshot { sync });
        }
    }

    fn send(&mut self, message: &Message) {
        match encode_message(message, self.limits) {
            Ok(frames) => self.transmits.extend(frames),
            Err(error) => {
                tracing::error!(kind = message.kind(), %error, "cannot encode replication message");
                self.close(format!(
                    "cannot encode a {} message: {error}",
                    message.kind()
                ));
            }
        }
    }

    fn fail(&mut self, code: ErrorCode, message: String) {
        let secondary = self.secondary_id.as_deref();
        tracing::warn!(?code, %message, ?secondary, "replication session failed");
        self.send(&Message::Error {
            code,
            message: message.clone(),
        });
        self.close(message);
    }

    fn close(&mut self, reason: String) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.release_snapshot();
        self.phase = Phase::Closed;
        self.events.push_back(PrimaryEvent::Close { reason });
    }
}

fn heartbeat(live: &dyn Transaction) -> Result<Message, StorageError> {
    Ok(Message::Heartbeat {
        head: Wal::head(live)?,
        root: Merkle::root(live)?,
    })
}

/// Returns whether entries after `position` can be served: it is the head, or a stored entry.
fn is_on_chain(
    position: &Position,
    head: &Position,
    view: &PrimaryView<'_>,
) -> Result<bool, StorageError> {
    if position.index == head.index {
        return Ok(position.hash == head.hash);
    }
    if position.index > head.index {
        return Ok(false);
    }
    if position.is_genesis() {
        let first = find_entry(1, &VecDeque::new(), view)?;
        return Ok(first.is_some_and(|entry| entry.prev_hash == position.hash));
    }
    let entry = find_entry(position.index, &VecDeque::new(), view)?;
    Ok(entry.is_some_and(|entry| entry.hash == position.hash))
}

fn find_entry(
    index: u64,
    retained: &VecDeque<Entry>,
    view: &PrimaryView<'_>,
) -> Result<Option<Entry>, StorageError> {
    if let Some(entry) = retained.iter().find(|entry| entry.index == index) {
        return Ok(Some(entry.clone()));
    }
    if let Some(entry) = view.shipper.get(index) {
        return Ok(Some(entry.clone()));
    }
    Wal::entry(view.live, index)
}

/// Copies the entries committed after the snapshot, so they survive a long sync even when the
/// shipper and the WAL drop them.
/// Past `limit` entries the copy stops; streaming then falls back to the shipper and the WAL,
/// and to a new sync when those lack an entry.
fn retain_entries(
    position: &Position,
    retained: &mut VecDeque<Entry>,
    limit: usize,
    head: &Position,
    view: &PrimaryView<'_>,
) -> Result<(), StorageError> {
    let mut next = retained
        .back()
        .map_or(position.index + 1, |last| last.index + 1);
    while next <= head.index && retained.len() < limit {
        let Some(entry) = find_entry(next, &VecDeque::new(), view)? else {
            break;
        };
        retained.push_back(entry);
        next += 1;
    }
    Ok(())
}

fn validate_retained(retained: &VecDeque<Entry>, position: &Position) -> Result<(), String> {
    for (expected, entry) in (position.index + 1..).zip(retained) {
        if entry.index != expected {
            let found = entry.index;
            return Err(format!(
                "retained entry {found} where {expected} was expected"
            ));
        }
    }
    Ok(())
}
