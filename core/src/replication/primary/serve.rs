//! The primary's side of a Merkle diff: page hashes, bucket members and values, all read from
//! the snapshot pinned for the sync.

use super::{Phase, PrimarySession, PrimaryView};
use crate::replication::merkle::{BucketId, Fingerprint, Merkle, PAGES, fingerprint};
use crate::replication::message::{BUCKETS_PER_REQUEST, BucketDelta, ErrorCode, Message};
use crate::storage::{Partition, StorageError, Transaction};

impl PrimarySession {
    pub(super) fn serve_pages(
        &mut self,
        sync: u64,
        pages: &[u8],
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let Some(snapshot) = self.snapshot_for(sync, pages.len() <= PAGES, view) else {
            return Ok(());
        };
        let mut answer = Vec::with_capacity(pages.len());
        for page in pages {
            answer.push((*page, Merkle::page(snapshot, *page)?));
        }
        self.send(&Message::MerklePagesResponse {
            sync,
            pages: answer,
        });
        Ok(())
    }

    pub(super) fn serve_buckets(
        &mut self,
        sync: u64,
        buckets: &[(BucketId, Vec<Fingerprint>)],
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let Some(snapshot) = self.snapshot_for(sync, buckets.len() <= BUCKETS_PER_REQUEST, view)
        else {
            return Ok(());
        };
        let root = Merkle::root(snapshot)?;
        // The response may be a prefix of the request, as for keys, because a secondary that
        // lacks many members can request buckets whose members exceed the message limit.
        let budget = self.config.max_message_size / 2;
        let mut answer = Vec::with_capacity(buckets.len());
        let mut bytes = 0;
        for (bucket, theirs) in buckets {
            let members = Merkle::bucket(snapshot, *bucket)?;
            let delta = BucketDelta::between(members, theirs, |key, leaf| {
                fingerprint(&root, sync, key, leaf)
            });
            bytes += delta.encoded_size_bound();
            if bytes > budget && !answer.is_empty() {
                break;
            }
            answer.push((*bucket, delta));
        }
        self.send(&Message::BucketResponse {
            sync,
            buckets: answer,
        });
        Ok(())
    }

    pub(super) fn serve_keys(
        &mut self,
        sync: u64,
        keys: &[String],
        view: &PrimaryView<'_>,
    ) -> Result<(), StorageError> {
        let allowed = keys.len() <= self.config.fetch_batch_keys.max(1) * 4;
        let Some(snapshot) = self.snapshot_for(sync, allowed, view) else {
            return Ok(());
        };
        // Only the shared partition is read: nothing local can reach the wire, whatever key
        // the secondary requests.
        // The response may be a prefix of the request, so one message stays under the limit
        // whatever the value sizes. The secondary requests the rest again.
        let budget = self.config.max_message_size / 2;
        let mut values = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        for key in keys {
            let value = snapshot.get(Partition::Shared, key)?;
            bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            if bytes > budget && !values.is_empty() {
                break;
            }
            values.push((key.clone(), value));
        }
        self.send(&Message::KeyValues { sync, values });
        Ok(())
    }

    /// Returns the pinned snapshot for a request of `sync`, or `None` when the request is
    /// stale, and also after failing the session when it is too large or no snapshot is pinned.
    fn snapshot_for<'v>(
        &mut self,
        sync: u64,
        within_limits: bool,
        view: &PrimaryView<'v>,
    ) -> Option<&'v dyn Transaction> {
        let Phase::Syncing { sync: current, .. } = &self.phase else {
            return None;
        };
        if *current != sync {
            return None;
        }
        if !within_limits {
            self.fail(
                ErrorCode::Protocol,
                "merkle request exceeds its limit".into(),
            );
            return None;
        }
        if view.snapshot.is_none() {
            self.fail(
                ErrorCode::Storage,
                format!("no snapshot pinned for sync {sync}"),
            );
        }
        view.snapshot
    }
}
