//! Replication status that only the driver observes: connection states, heartbeats and sync
//! progress. The driver writes it through plain setters; the status handlers read a copy.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::Timestamp;
use crate::replication::position::Position;
use crate::replication::secondary::SecondaryState;

/// The state of a secondary's connection to its primary, named as gRPC names connectivity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connection and none being opened.
    #[default]
    Idle,
    /// A connection is being opened.
    Connecting,
    /// Connected and replicating.
    Ready,
    /// The last attempt failed; a retry follows.
    TransientFailure,
    /// Replication is stopping.
    Shutdown,
}

impl ConnectionState {
    /// Returns the name status output uses.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionState::Idle => "idle",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Ready => "ready",
            ConnectionState::TransientFailure => "transient_failure",
            ConnectionState::Shutdown => "shutdown",
        }
    }
}

/// Progress of a Merkle sync: keys to fetch or delete, and how many are done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Keys the sync must fetch or delete.
    pub total_keys: u64,
    /// Keys done so far.
    pub done: u64,
}

/// One peer node as status lists it: a primary in a secondary's `primaries`, or a secondary
/// in a primary's `secondaries`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's API address, `""` when unknown.
    pub api_address: String,
    /// The peer's cluster address, `""` when unknown.
    pub cluster_address: String,
    /// Whether a session with the peer is open.
    pub connected: bool,
    /// When the last message arrived from the peer.
    pub last_heartbeat: Option<Timestamp>,
    /// The last WAL index the peer acknowledged (secondaries only).
    pub acked: Option<u64>,
}

/// The status a secondary's driver reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryLive {
    /// The state machine's state.
    pub state: SecondaryState,
    /// The connection to the primary.
    pub connection_state: ConnectionState,
    /// When the last message arrived from the primary.
    pub last_heartbeat: Option<Timestamp>,
    /// The running Merkle sync, if any.
    pub merkle_sync_progress: Option<SyncCounts>,
    /// The primary nodes this secondary is configured with or has seen.
    pub primaries: Vec<PeerStatus>,
    /// When replication last started.
    pub last_start: Option<Timestamp>,
    /// Bytes received from the primary on the cluster port since this process started.
    pub bytes_received: u64,
    /// Bytes queued for the primary on the cluster port since this process started.
    pub bytes_sent: u64,
    /// The primary's head as of its last `StreamStart` or heartbeat.
    pub primary_head: Option<Position>,
    /// The reason the last connection to the primary ended or failed, for status.
    pub last_error: Option<String>,
}

impl Default for SecondaryLive {
    fn default() -> SecondaryLive {
        SecondaryLive {
            state: SecondaryState::Idle,
            connection_state: ConnectionState::Idle,
            last_heartbeat: None,
            merkle_sync_progress: None,
            primaries: Vec::new(),
            last_start: None,
            bytes_received: 0,
            bytes_sent: 0,
            primary_head: None,
            last_error: None,
        }
    }
}

/// A copy of the live status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// The secondary's status, when this node runs as a secondary.
    pub secondary: Option<SecondaryLive>,
    /// The primary's sessions, by secondary id.
    pub secondaries: BTreeMap<String, PeerStatus>,
    /// How many times `sys/replication/recover` asked the driver to restart the secondary.
    pub recover_requests: u64,
}

/// The live status a [`Core`](crate::Core) holds. Every method takes a short lock.
#[derive(Debug, Default)]
pub struct LiveStatus {
    inner: Mutex<LiveSnapshot>,
}

impl LiveStatus {
    /// Creates an empty status: no secondary driver, no sessions.
    pub fn new() -> LiveStatus {
        LiveStatus::default()
    }

    /// Returns a copy of everything.
    pub fn snapshot(&self) -> LiveSnapshot {
        self.lock().clone()
    }

    /// Changes the secondary's status, creating it with defaults when absent.
    pub fn update_secondary(&self, change: impl FnOnce(&mut SecondaryLive)) {
        let mut inner = self.lock();
        change(inner.secondary.get_or_insert_with(SecondaryLive::default));
    }

    /// Sets the secondary's state.
    pub fn set_secondary_state(&self, state: SecondaryState) {
        self.update_secondary(|live| live.state = state);
    }

    /// Sets the secondary's connection state.
    pub fn set_connection_state(&self, connection_state: ConnectionState) {
        self.update_secondary(|live| live.connection_state = connection_state);
    }

    /// Records a message from the primary at `now`.
    pub fn set_last_heartbeat(&self, now: Timestamp) {
        self.update_secondary(|live| live.last_heartbeat = Some(now));
    }

    /// Sets the byte counters of the replication traffic with the primary.
    pub fn set_traffic(&self, bytes_received: u64, bytes_sent: u64) {
        self.update_secondary(|live| {
            live.bytes_received = bytes_received;
            live.bytes_sent = bytes_sent;
        });
    }

    /// Sets or clears the Merkle sync progress.
    pub fn set_merkle_sync_progress(&self, progress: Option<SyncCounts>) {
        self.update_secondary(|live| live.merkle_sync_progress = progress);
    }

    /// Replaces the list of primary nodes.
    pub fn set_primaries(&self, primaries: Vec<PeerStatus>) {
        self.update_secondary(|live| live.primaries = primaries);
    }

    /// Asks the driver to close the secondary's session and start a new one.
    pub fn request_recover(&self) {
        let mut inner = self.lock();
        inner.recover_requests = inner.recover_requests.wrapping_add(1);
    }

    /// Forgets the secondary's status, as when its driver stops.
    pub fn clear_secondary(&self) {
        self.lock().secondary = None;
    }

    /// Changes the status of the session with `secondary_id`, creating it when absent.
    pub fn update_session(&self, secondary_id: &str, change: impl FnOnce(&mut PeerStatus)) {
        let mut inner = self.lock();
        change(
            inner
                .secondaries
                .entry(secondary_id.to_owned())
                .or_default(),
        );
    }

    /// Forgets the session with `secondary_id`.
    pub fn remove_session(&self, secondary_id: &str) {
        self.lock().secondaries.remove(secondary_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveSnapshot> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_create_the_secondary_status() {
        let live = LiveStatus::new();
        assert_eq!(live.snapshot().secondary, None);
        live.set_secondary_state(SecondaryState::MerkleSync);
        live.set_merkle_sync_progress(Some(SyncCounts {
            total_keys: 10,
            done: 4,
        }));
        let secondary = live.snapshot().secondary.unwrap();
        assert_eq!(secondary.state, SecondaryState::MerkleSync);
        assert_eq!(secondary.connection_state, ConnectionState::Idle);
        assert_eq!(secondary.merkle_sync_progress.unwrap().done, 4);
        live.clear_secondary();
        assert_eq!(live.snapshot().secondary, None);
    }

    #[test]
    fn sessions_are_kept_per_secondary() {
        let live = LiveStatus::new();
        live.update_session("s1", |peer| peer.connected = true);
        live.update_session("s2", |peer| peer.acked = Some(7));
        live.remove_session("s1");
        let snapshot = live.snapshot();
        assert_eq!(snapshot.secondaries.len(), 1);
        assert_eq!(snapshot.secondaries["s2"].acked, Some(7));
    }
}
