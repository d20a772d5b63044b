//! Tuning knobs of replication, with Vault's names where Vault has the same knob.

use std::time::Duration;

/// Limits and timers shared by the primary's sessions and the secondary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Maximum number of entries the primary's log shipper keeps in memory.
    pub logshipper_buffer_length: usize,
    /// Maximum total encoded size, in bytes, of the entries in the log shipper.
    pub logshipper_buffer_size: usize,
    /// Number of newest entries kept in the on-disk WAL; older ones are trimmed on append.
    pub wal_retain: u64,
    /// Maximum payload of one frame, in bytes; larger messages travel in chunks.
    pub max_frame_payload: usize,
    /// Maximum size of one reassembled message, in bytes. It must exceed the largest WAL entry
    /// and the 8 KiB of page hashes a sync starts with, so keep it at 64 KiB or more.
    pub max_message_size: usize,
    /// Maximum number of entries in one `WalBatch`.
    pub batch_entries: usize,
    /// Maximum number of entries sent but not yet acknowledged.
    pub max_in_flight: u64,
    /// Maximum number of keys requested in one `FetchKeys`.
    pub fetch_batch_keys: usize,
    /// Maximum number of entries a session keeps for a secondary during a Merkle sync; past it
    /// the secondary has to diff again.
    pub sync_retain_entries: usize,
    /// Interval between the primary's heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which either side drops the connection.
    pub heartbeat_timeout: Duration,
    /// First reconnect delay of a secondary; it doubles after each failed attempt.
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay.
    pub reconnect_max: Duration,
    /// Maximum time a secondary waits to apply the primary's write after forwarding it, or to
    /// reach the state an `X-Vault-Index` names (`best_effort_wal_wait_duration`, as in Vault).
    pub best_effort_wal_wait_duration: Duration,
    /// Maximum number of forwarded requests in flight on one forwarding connection.
    pub forwarding_max_in_flight: usize,
}

impl Default for ReplicationConfig {
    fn default() -> ReplicationConfig {
        ReplicationConfig {
            logshipper_buffer_length: 16_384,
            logshipper_buffer_size: 64 * 1024 * 1024,
            wal_retain: 65_536,
            max_frame_payload: 1024 * 1024,
            max_message_size: 64 * 1024 * 1024,
            batch_entries: 256,
            max_in_flight: 4096,
            fetch_batch_keys: 256,
            sync_retain_entries: 65_536,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            best_effort_wal_wait_duration: Duration::from_secs(2),
            forwarding_max_in_flight: 64,
        }
    }
}
