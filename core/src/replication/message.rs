//! The typed messages of the replication protocol. [`crate::replication::frame`] carries them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::replication::keys::KeyOffer;
use crate::replication::merkle::{BucketId, Fingerprint, Members};
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
    /// Secondary to primary: some differing buckets, each with the fingerprints of the
    /// secondary's members in key order (see [`crate::replication::merkle::fingerprint`]).
    BucketRequest {
        /// Id of the sync.
        sync: u64,
        /// Each bucket with the secondary's member fingerprints.
        buckets: Vec<(BucketId, Vec<Fingerprint>)>,
    },
    /// Primary to secondary: how each requested bucket differs.
    BucketResponse {
        /// Id of the sync.
        sync: u64,
        /// Each bucket with its difference, in the order of the request. It may be a non-empty
        /// prefix of the request, so one message stays under the limit, and the secondary
        /// requests the rest again.
        buckets: Vec<(BucketId, BucketDelta)>,
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

/// Maximum number of buckets in one [`Message::BucketRequest`]. A primary fails a session that
/// requests more, so one request costs it at most this many bucket reads.
pub const BUCKETS_PER_REQUEST: usize = 1024;

/// The difference between the primary's members of one bucket and the fingerprints a
/// secondary sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDelta {
    /// The primary's members whose fingerprints the secondary did not send, sorted by key.
    pub missing: Members,
    /// Positions, in the secondary's list, of the fingerprints the primary has no member for,
    /// in increasing order.
    pub unmatched: Vec<u32>,
}

impl BucketDelta {
    /// Compares the primary's `members` of a bucket with the secondary's fingerprints
    /// `theirs`, each member fingerprinted by `print`.
    pub fn between(
        members: Members,
        theirs: &[Fingerprint],
        print: impl Fn(&str, &Digest) -> Fingerprint,
    ) -> BucketDelta {
        let prints: Vec<Fingerprint> = members.iter().map(|(key, leaf)| print(key, leaf)).collect();
        let ours: BTreeSet<&Fingerprint> = prints.iter().collect();
        let known: BTreeSet<&Fingerprint> = theirs.iter().collect();
        let missing = members
            .into_iter()
            .zip(&prints)
            .filter(|(_, print)| !known.contains(print))
            .map(|(member, _)| member)
            .collect();
        let unmatched = (0u32..)
            .zip(theirs)
            .filter(|(_, print)| !ours.contains(print))
            .map(|(position, _)| position)
            .collect();
        BucketDelta { missing, unmatched }
    }

    /// Returns an upper bound of this delta's size in an encoded message, in bytes, counting
    /// each length and integer at its widest varint.
    pub fn encoded_size_bound(&self) -> usize {
        let members: usize = self
            .missing
            .iter()
            .map(|(key, _)| VARINT_MAX + key.len() + 32)
            .sum();
        // The bucket id and the two list lengths.
        3 * VARINT_MAX + members + 5 * self.unmatched.len()
    }
}

/// Maximum size of a postcard varint of a `u64` or `usize`, in bytes.
const VARINT_MAX: usize = 10;

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
