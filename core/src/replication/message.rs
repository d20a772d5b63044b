//! The typed messages of the replication protocol. [`crate::replication::frame`] carries them.

use serde::{Deserialize, Serialize};

use crate::replication::keys::KeyOffer;
use crate::replication::merkle::{BucketId, Members};
use crate::replication::position::{Digest, Position};
use crate::replication::wal::Entry;

/// One protocol message. Messages of a Merkle sync carry the `sync` id the primary chose, so
/// an answer from an abandoned sync is recognised and ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Secondary to primary, first on a connection and after any anomaly: its position and root.
    Hello {
        /// Replication set the secondary belongs to.
        cluster_id: String,
        /// The secondary's id.
        secondary_id: String,
        /// The secondary's last applied position.
        position: Position,
        /// The secondary's Merkle root.
        root: Digest,
    },
    /// Primary to secondary: the secondary's position is on the chain and entries from `from`
    /// follow.
    StreamStart {
        /// First index that will be sent.
        from: u64,
        /// The primary's head.
        head: Position,
        /// The primary's Merkle root at `head`.
        root: Digest,
    },
    /// Primary to secondary: consecutive entries.
    WalBatch {
        /// Entries in index order.
        entries: Vec<Entry>,
    },
    /// Primary to secondary, periodically.
    Heartbeat {
        /// The primary's head.
        head: Position,
        /// The primary's Merkle root at `head`.
        root: Digest,
    },
    /// Secondary to primary: everything up to `applied` is committed.
    Ack {
        /// Index of the last applied entry.
        applied: u64,
    },
    /// Primary to secondary: the entries the secondary needs are gone or its position is off
    /// the chain, so it must diff against the snapshot at `position`.
    SyncStart {
        /// Id of this sync.
        sync: u64,
        /// Position of the snapshot.
        position: Position,
        /// Root of the snapshot.
        root: Digest,
        /// Hash of every page of the snapshot.
        pages: Vec<Digest>,
    },
    /// Secondary to primary: bucket hashes of some pages, requested.
    MerklePagesRequest {
        /// Id of the sync.
        sync: u64,
        /// Pages requested.
        pages: Vec<u8>,
    },
    /// Primary to secondary: bucket hashes of the requested pages.
    MerklePagesResponse {
        /// Id of the sync.
        sync: u64,
        /// Each page with its bucket hashes.
        pages: Vec<(u8, Vec<Digest>)>,
    },
    /// Secondary to primary: members of some buckets, requested.
    BucketRequest {
        /// Id of the sync.
        sync: u64,
        /// Buckets requested.
        buckets: Vec<BucketId>,
    },
    /// Primary to secondary: keys with their leaf hashes in the requested buckets.
    BucketResponse {
        /// Id of the sync.
        sync: u64,
        /// Each bucket with its members.
        buckets: Vec<(BucketId, Members)>,
    },
    /// Secondary to primary: values of some keys, requested.
    FetchKeys {
        /// Id of the sync.
        sync: u64,
        /// Keys requested.
        keys: Vec<String>,
    },
    /// Primary to secondary: the requested values; `None` marks a key the snapshot lacks.
    KeyValues {
        /// Id of the sync.
        sync: u64,
        /// Each key with its ciphertext.
        values: Vec<(String, Option<Vec<u8>>)>,
    },
    /// Secondary to primary: the secondary has reached the snapshot's state and adopted its
    /// position.
    SyncDone {
        /// Id of the sync.
        sync: u64,
        /// The adopted position.
        position: Position,
    },
    /// Either side: the peer did something wrong or incompatible; the connection closes.
    Error {
        /// Failure category.
        code: ErrorCode,
        /// A description for the log.
        message: String,
    },
    /// Either side: the connection closes on purpose.
    Goodbye {
        /// Why.
        reason: String,
    },
    /// Primary to secondary, after a valid `Hello` and before the primary's answer to it, and
    /// again after a rekey: the root key sealed to this secondary, with the barrier records.
    KeyOffer(KeyOffer),
}

impl Message {
    /// Short name for logs and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::StreamStart { .. } => "stream-start",
            Message::WalBatch { .. } => "wal-batch",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Ack { .. } => "ack",
            Message::SyncStart { .. } => "sync-start",
            Message::MerklePagesRequest { .. } => "merkle-pages-request",
            Message::MerklePagesResponse { .. } => "merkle-pages-response",
            Message::BucketRequest { .. } => "bucket-request",
            Message::BucketResponse { .. } => "bucket-response",
            Message::FetchKeys { .. } => "fetch-keys",
            Message::KeyValues { .. } => "key-values",
            Message::SyncDone { .. } => "sync-done",
            Message::Error { .. } => "error",
            Message::Goodbye { .. } => "goodbye",
            Message::KeyOffer(_) => "key-offer",
        }
    }
}

/// Category of a protocol [`Message::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The peer sent a frame or message that does not decode or breaks the protocol.
    Protocol,
    /// The peer belongs to another replication set.
    WrongCluster,
    /// The peer's epoch is older than one this side has seen.
    StaleEpoch,
    /// This side failed to read or write its storage.
    Storage,
}
