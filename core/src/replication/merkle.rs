//! The Merkle index over [`Partition::Shared`], kept in [`Partition::Merkle`].
//!
//! The tree has a fixed shape: a key's bucket is the first two bytes of SHA-256(key), whose
//! high byte picks one of [`PAGES`] pages and whose low byte one of [`BUCKETS_PER_PAGE`]
//! buckets in it. A leaf is SHA-256(length-prefixed key, value). A bucket stores its members
//! (key and leaf, sorted by key) and hashes them; a page hashes its bucket hashes; the root
//! hashes the page hashes. A page's bucket hashes and the root's page hashes are each stored as
//! eight records of 32 digests. One write rewrites one bucket, one record of its page and one
//! record of the root, so an update costs the same whatever the size of the data set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::replication::position::Digest;
use crate::replication::wal::{Op, decode, encode};
use crate::storage::{Partition, StorageError, Transaction};

/// Number of pages under the root.
pub const PAGES: usize = 256;
/// Number of buckets in each page.
pub const BUCKETS_PER_PAGE: usize = 256;

/// Index of a bucket: the page in the high byte, the slot in the low byte.
pub type BucketId = u16;

/// Members of one bucket: each key with its leaf hash, sorted by key.
pub type Members = Vec<(String, Digest)>;

/// A short digest of one bucket member, which a secondary sends in a Merkle diff in place of
/// the member's key and leaf.
pub type Fingerprint = [u8; 8];

/// Returns the bucket that contains `key`.
pub fn bucket_of(key: &str) -> BucketId {
    let digest = Sha256::digest(key.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]])
}

/// Returns the page a bucket belongs to.
pub fn page_of(bucket: BucketId) -> u8 {
    (bucket >> 8) as u8
}

/// Returns the leaf hash of `key` holding `value`.
pub fn leaf(key: &str, value: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer-leaf-v1");
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update(value);
    hasher.finalize().into()
}

/// Returns the fingerprint of the member `key` with `leaf` in Merkle sync `sync` of the
/// snapshot with root `root`.
///
/// The sync and root salt every fingerprint, so a writer who picks keys and values cannot
/// prepare two members with one fingerprint ahead of a sync. A collision that happens anyway
/// (about one in 2^64 per pair of members) leaves the root unmatched, and the next sync has
/// another salt.
pub fn fingerprint(root: &Digest, sync: u64, key: &str, leaf: &Digest) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer-member-v1");
    hasher.update(root);
    hasher.update(sync.to_be_bytes());
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update(leaf);
    let digest = hasher.finalize();
    let mut short = [0u8; 8];
    short.copy_from_slice(&digest[..8]);
    short
}

/// Returns the hash of a bucket with these members.
pub fn bucket_hash(members: &[(String, Digest)]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer-bucket-v1");
    for (key, leaf) in members {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update(leaf);
    }
    hasher.finalize().into()
}

fn hash_children(tag: &[u8], children: &[Digest]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    for child in children {
        hasher.update(child);
    }
    hasher.finalize().into()
}

/// Returns the hash of a page with these bucket hashes.
pub fn page_hash(buckets: &[Digest]) -> Digest {
    hash_children(b"coffer-page-v1", buckets)
}

/// Returns the root hash over these page hashes.
pub fn root_hash(pages: &[Digest]) -> Digest {
    hash_children(b"coffer-root-v1", pages)
}

fn empty_page() -> Vec<Digest> {
    vec![bucket_hash(&[]); BUCKETS_PER_PAGE]
}

/// Returns the hash of a page whose buckets are all empty.
fn empty_page_hash() -> Digest {
    static EMPTY: std::sync::OnceLock<Digest> = std::sync::OnceLock::new();
    *EMPTY.get_or_init(|| page_hash(&empty_page()))
}

fn empty_root() -> Vec<Digest> {
    vec![empty_page_hash(); PAGES]
}

fn bucket_key(bucket: BucketId) -> String {
    format!("bucket/{bucket:04x}")
}

/// Digests per stored record of a page or of the root. Such a record (1 KiB) fits inside one
/// LMDB page of 4 KiB beside others, where a whole page's 8 KiB would take a run of overflow
/// pages that every update copies anew.
pub(crate) const DIGESTS_PER_RECORD: usize = 32;

/// Merkle key prefix of the records of one page's bucket hashes.
fn page_prefix(page: u8) -> String {
    format!("page/{page:02x}")
}

/// Merkle key prefix of the records of the page hashes.
pub(crate) const ROOT_PREFIX: &str = "root";

pub(crate) fn record_key(prefix: &str, record: usize) -> String {
    format!("{prefix}/{record}")
}

/// Reads `count` digests stored under `prefix`. A missing record reads as `empty` digests.
fn read_digests(
    txn: &dyn Transaction,
    prefix: &str,
    count: usize,
    empty: Digest,
) -> Result<Vec<Digest>, StorageError> {
    let mut digests = Vec::with_capacity(count);
    for record in 0..count.div_ceil(DIGESTS_PER_RECORD) {
        let expected = DIGESTS_PER_RECORD.min(count - digests.len());
        let key = record_key(prefix, record);
        match txn.get(Partition::Merkle, &key)? {
            Some(bytes) => digests.extend(digests_from_bytes(&key, &bytes, expected)?),
            None => digests.extend(std::iter::repeat_n(empty, expected)),
        }
    }
    Ok(digests)
}

/// Stores `digests` under `prefix`, writing only the records that differ from `stored`, or
/// every record when `stored` is `None`.
fn write_digests(
    txn: &mut dyn Transaction,
    prefix: &str,
    stored: Option<&[Digest]>,
    digests: &[Digest],
) -> Result<(), StorageError> {
    for (record, chunk) in digests.chunks(DIGESTS_PER_RECORD).enumerate() {
        let start = record * DIGESTS_PER_RECORD;
        let unchanged =
            stored.is_some_and(|stored| stored.get(start..start + chunk.len()) == Some(chunk));
        if !unchanged {
            txn.put(
                Partition::Merkle,
                &record_key(prefix, record),
                &chunk.concat(),
            )?;
        }
    }
    Ok(())
}

fn digests_from_bytes(key: &str, bytes: &[u8], count: usize) -> Result<Vec<Digest>, StorageError> {
    if bytes.len() != count * 32 {
        return Err(StorageError::Corrupt {
            partition: Partition::Merkle,
            key: key.to_owned(),
            reason: format!("expected {} bytes, found {}", count * 32, bytes.len()),
        });
    }
    let digests = bytes
        .chunks_exact(32)
        .map(|chunk| {
            chunk
                .try_into()
                .expect("chunks_exact yields 32-byte chunks")
        })
        .collect();
    Ok(digests)
}

/// Reads and updates of the index inside a caller's transaction.
pub struct Merkle;

impl Merkle {
    /// Updates the index for `ops`, in order, which the caller writes to the shared partition
    /// in the same transaction. Each touched bucket, page record and root record is written
    /// once, however many ops touch it.
    pub fn apply<'a>(
        txn: &mut dyn Transaction,
        ops: impl IntoIterator<Item = &'a Op>,
    ) -> Result<(), StorageError> {
        let mut buckets: BTreeMap<BucketId, Members> = BTreeMap::new();
        for op in ops {
            let bucket = bucket_of(op.key());
            let members = match buckets.entry(bucket) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(Merkle::bucket(txn, bucket)?)
                }
            };
            update_members(members, op);
        }
        Merkle::store_buckets(txn, &buckets)
    }

    fn store_buckets(
        txn: &mut dyn Transaction,
        buckets: &BTreeMap<BucketId, Members>,
    ) -> Result<(), StorageError> {
        let mut pages: BTreeMap<u8, (Vec<Digest>, Vec<Digest>)> = BTreeMap::new();
        for (bucket, members) in buckets {
            let key = bucket_key(*bucket);
            if members.is_empty() {
                txn.delete(Partition::Merkle, &key)?;
            } else {
                txn.put(Partition::Merkle, &key, &encode(members)?)?;
            }
            let page = page_of(*bucket);
            let (_, hashes) = match pages.entry(page) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    let stored = Merkle::page(txn, page)?;
                    entry.insert((stored.clone(), stored))
                }
            };
            hashes[usize::from(*bucket as u8)] = bucket_hash(members);
        }
        let stored_root = Merkle::pages(txn)?;
        let mut root = stored_root.clone();
        for (page, (stored, hashes)) in &pages {
            write_digests(txn, &page_prefix(*page), Some(stored), hashes)?;
            root[usize::from(*page)] = page_hash(hashes);
        }
        write_digests(txn, ROOT_PREFIX, Some(&stored_root), &root)
    }

    /// Returns the root hash.
    pub fn root(txn: &dyn Transaction) -> Result<Digest, StorageError> {
        Ok(root_hash(&Merkle::pages(txn)?))
    }

    /// Returns the hash of every page, in page order.
    pub fn pages(txn: &dyn Transaction) -> Result<Vec<Digest>, StorageError> {
        read_digests(txn, ROOT_PREFIX, PAGES, empty_page_hash())
    }

    /// Returns the bucket hashes of one page, in slot order.
    pub fn page(txn: &dyn Transaction, page: u8) -> Result<Vec<Digest>, StorageError> {
        read_digests(txn, &page_prefix(page), BUCKETS_PER_PAGE, bucket_hash(&[]))
    }

    /// Returns the members of one bucket.
    pub fn bucket(txn: &dyn Transaction, bucket: BucketId) -> Result<Members, StorageError> {
        let key = bucket_key(bucket);
        match txn.get(Partition::Merkle, &key)? {
            Some(bytes) => decode(&key, &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Rebuilds the index when it is stored in the layout before page and root records were
    /// split, where a page was one record `page/xx` and the root one record `root`. That layout
    /// would read as an empty index. Returns whether it rebuilt.
    pub fn upgrade_layout(txn: &mut dyn Transaction) -> Result<bool, StorageError> {
        let old_root = txn.get(Partition::Merkle, "root")?.is_some();
        let old_page = txn
            .scan(Partition::Merkle, "page/", None, None)?
            .iter()
            .any(|key| !key["page/".len()..].contains('/'));
        if !old_root && !old_page {
            return Ok(false);
        }
        Merkle::reindex(txn)?;
        Ok(true)
    }

    /// Rebuilds the whole index from the shared partition, replacing what is stored.
    pub fn reindex(txn: &mut dyn Transaction) -> Result<Digest, StorageError> {
        for key in txn.scan(Partition::Merkle, "", None, None)? {
            txn.delete(Partition::Merkle, &key)?;
        }
        let rebuilt = Rebuilt::from_shared(txn)?;
        for (bucket, members) in &rebuilt.buckets {
            txn.put(Partition::Merkle, &bucket_key(*bucket), &encode(members)?)?;
        }
        for (page, hashes) in &rebuilt.pages {
            write_digests(txn, &page_prefix(*page), None, hashes)?;
        }
        write_digests(txn, ROOT_PREFIX, None, &rebuilt.root)?;
        Ok(root_hash(&rebuilt.root))
    }

    /// Compares the stored index with one rebuilt from the shared partition, without writing.
    /// A bucket is corrupted when its stored hash or its stored members differ from the rebuilt
    /// ones, or its members record does not decode.
    pub fn check(txn: &dyn Transaction) -> Result<MerkleCheck, StorageError> {
        let rebuilt = Rebuilt::from_shared(txn)?;
        let stored_pages = Merkle::pages(txn)?;
        let mut corrupted_pages = BTreeMap::new();
        for (page, stored_page) in stored_pages.iter().enumerate() {
            let page_number = page as u8;
            let stored = Merkle::page(txn, page_number)?;
            let expected = rebuilt.page(page_number);
            let mut buckets = Vec::new();
            for slot in 0..BUCKETS_PER_PAGE {
                let bucket = (u16::from(page_number) << 8) | slot as u16;
                let members_match = match Merkle::bucket(txn, bucket) {
                    Ok(members) => rebuilt.members(bucket) == members.as_slice(),
                    Err(StorageError::Corrupt { .. }) => false,
                    Err(error) => return Err(error),
                };
                if stored[slot] != expected[slot] || !members_match {
                    buckets.push(slot as u8);
                }
            }
            if !buckets.is_empty() || *stored_page != page_hash(&expected) {
                corrupted_pages.insert(page_number, buckets);
            }
        }
        Ok(MerkleCheck {
            stored_root: root_hash(&stored_pages),
            rebuilt_root: root_hash(&rebuilt.root),
            corrupted_pages,
        })
    }
}

fn update_members(members: &mut Members, op: &Op) {
    let key = op.key();
    let found = members.binary_search_by(|(member, _)| member.as_str().cmp(key));
    match (op, found) {
        (Op::Put { value, .. }, Ok(at)) => members[at].1 = leaf(key, value),
        (Op::Put { value, .. }, Err(at)) => members.insert(at, (key.to_owned(), leaf(key, value))),
        (Op::Delete { .. }, Ok(at)) => {
            members.remove(at);
        }
        (Op::Delete { .. }, Err(_)) => {}
    }
}

/// A tree computed in memory from the shared partition.
struct Rebuilt {
    buckets: BTreeMap<BucketId, Members>,
    pages: BTreeMap<u8, Vec<Digest>>,
    root: Vec<Digest>,
}

impl Rebuilt {
    fn from_shared(txn: &dyn Transaction) -> Result<Rebuilt, StorageError> {
        let mut buckets: BTreeMap<BucketId, Members> = BTreeMap::new();
        for key in txn.scan(Partition::Shared, "", None, None)? {
            let Some(value) = txn.get(Partition::Shared, &key)? else {
                continue;
            };
            let leaf = leaf(&key, &value);
            buckets
                .entry(bucket_of(&key))
                .or_default()
                .push((key, leaf));
        }
        let mut pages: BTreeMap<u8, Vec<Digest>> = BTreeMap::new();
        for (bucket, members) in &mut buckets {
            members.sort();
            let hashes = pages.entry(page_of(*bucket)).or_insert_with(empty_page);
            hashes[usize::from(*bucket as u8)] = bucket_hash(members);
        }
        let mut root = empty_root();
        for (page, hashes) in &pages {
            root[usize::from(*page)] = page_hash(hashes);
        }
        Ok(Rebuilt {
            buckets,
            pages,
            root,
        })
    }

    fn members(&self, bucket: BucketId) -> &[(String, Digest)] {
        self.buckets.get(&bucket).map_or(&[], Vec::as_slice)
    }

    fn page(&self, page: u8) -> Vec<Digest> {
        self.pages.get(&page).cloned().unwrap_or_else(empty_page)
    }
}

/// The result of [`Merkle::check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleCheck {
    /// Root of the stored index.
    pub stored_root: Digest,
    /// Root of the index rebuilt from the data.
    pub rebuilt_root: Digest,
    /// Pages whose stored hashes differ from the rebuilt ones, each with its differing bucket
    /// slots.
    pub corrupted_pages: BTreeMap<u8, Vec<u8>>,
}

impl MerkleCheck {
    /// Returns whether the stored index matches the data.
    pub fn is_corrupted(&self) -> bool {
        self.stored_root != self.rebuilt_root || !self.corrupted_pages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::storage::{MemStorage, Storage};

    fn write(storage: &MemStorage, ops: Vec<Op>) {
        storage
            .write(|txn| {
                for op in &ops {
                    match op {
                        Op::Put { key, value } => txn.put(Partition::Shared, key, value)?,
                        Op::Delete { key } => txn.delete(Partition::Shared, key)?,
                    }
                }
                Merkle::apply(txn, &ops)
            })
            .unwrap();
    }

    fn root(storage: &MemStorage) -> Digest {
        storage.read(|txn| Merkle::root(txn)).unwrap().unwrap()
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn empty_index_root_is_fixed() {
        assert_eq!(root(&MemStorage::new()), root_hash(&empty_root()));
    }

    #[test]
    fn put_then_delete_restores_root() {
        let storage = MemStorage::new();
        let empty = root(&storage);
        write(&storage, vec![put("a", "1")]);
        assert_ne!(root(&storage), empty);
        write(&storage, vec![Op::Delete { key: "a".into() }]);
        assert_eq!(root(&storage), empty);
    }

    /// Returns every Merkle record with its value.
    fn records(storage: &MemStorage) -> BTreeMap<String, Vec<u8>> {
        storage
            .read(|txn| {
                let keys = txn.scan(Partition::Merkle, "", None, None).unwrap();
                keys.into_iter()
                    .map(|key| {
                        let value = txn.get(Partition::Merkle, &key).unwrap().unwrap();
                        (key, value)
                    })
                    .collect()
            })
            .unwrap()
    }

    #[test]
    fn put_rewrites_one_record_per_level() {
        let storage = MemStorage::new();
        let ops = (0..500)
            .map(|n| put(&format!("key-{n}"), "value"))
            .collect();
        write(&storage, ops);
        let before = records(&storage);
        write(&storage, vec![put("key-7", "changed")]);
        let after = records(&storage);
        let changed: Vec<&String> = after
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(value))
            .map(|(key, _)| key)
            .collect();
        let bucket = bucket_of("key-7");
        let page = page_of(bucket);
        let slot = usize::from(bucket as u8);
        let expected = [
            bucket_key(bucket),
            record_key(&page_prefix(page), slot / DIGESTS_PER_RECORD),
            record_key(ROOT_PREFIX, usize::from(page) / DIGESTS_PER_RECORD),
        ];
        let mut expected: Vec<&String> = expected.iter().collect();
        expected.sort();
        assert_eq!(changed, expected);
        for (key, value) in &after {
            if !key.starts_with("bucket/") {
                assert_eq!(value.len(), DIGESTS_PER_RECORD * 32, "record {key}");
            }
        }
    }

    #[test]
    fn check_finds_tampered_bucket() {
        let storage = MemStorage::new();
        write(&storage, vec![put("a", "1"), put("b", "2")]);
        storage
            .write(|txn| txn.put(Partition::Shared, "a", b"tampered"))
            .unwrap();
        let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
        assert!(check.is_corrupted());
        let page = page_of(bucket_of("a"));
        let slot = bucket_of("a") as u8;
        assert_eq!(check.corrupted_pages.get(&page), Some(&vec![slot]));
    }

    #[test]
    fn check_finds_tampered_bucket_record() {
        let storage = MemStorage::new();
        write(&storage, vec![put("a", "1"), put("b", "2")]);
        let bucket = bucket_of("a");
        let tampered_records: [&[u8]; 2] = [&encode(&Members::new()).unwrap(), b"\xff\xff"];
        for tampered in tampered_records {
            // The page and root records stay as they are, so only the bucket record is wrong.
            storage
                .write(|txn| txn.put(Partition::Merkle, &bucket_key(bucket), tampered))
                .unwrap();
            let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
            assert!(check.is_corrupted(), "{tampered:?} passed the check");
            let slots = check.corrupted_pages.get(&page_of(bucket));
            assert_eq!(slots, Some(&vec![bucket as u8]));
        }
        storage
            .write(|txn| Merkle::reindex(txn).map(|_| ()))
            .unwrap();
        let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
        assert!(!check.is_corrupted(), "{check:?}");
    }

    #[test]
    fn upgrade_layout_rebuilds_old_records() {
        let storage = MemStorage::new();
        write(&storage, vec![put("a", "1"), put("b", "2")]);
        let expected = root(&storage);
        let upgraded = storage.write(|txn| Merkle::upgrade_layout(txn)).unwrap();
        assert!(!upgraded, "the current layout was rebuilt");

        storage
            .write(|txn| {
                let pages = Merkle::pages(txn)?;
                for key in txn.scan(Partition::Merkle, "root/", None, None)? {
                    txn.delete(Partition::Merkle, &key)?;
                }
                txn.put(Partition::Merkle, "root", &pages.concat())
            })
            .unwrap();
        assert_ne!(root(&storage), expected);

        let upgraded = storage.write(|txn| Merkle::upgrade_layout(txn)).unwrap();
        assert!(upgraded);
        assert_eq!(root(&storage), expected);
        let records = records(&storage);
        assert!(!records.contains_key("root"), "the old root record is left");
    }

    #[test]
    fn reindex_repairs_tampered_index() {
        let storage = MemStorage::new();
        write(&storage, vec![put("a", "1")]);
        storage
            .write(|txn| txn.put(Partition::Shared, "a", b"tampered"))
            .unwrap();
        storage
            .write(|txn| Merkle::reindex(txn).map(|_| ()))
            .unwrap();
        let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
        assert!(!check.is_corrupted());
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let key = "[a-d]{1,3}";
        prop_oneof![
            (key, "[x-z]{0,3}").prop_map(|(key, value)| put(&key, &value)),
            key.prop_map(|key| Op::Delete { key }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn incremental_root_equals_rebuilt_root(
            batches in prop::collection::vec(prop::collection::vec(op_strategy(), 1..6), 1..12)
        ) {
            let storage = MemStorage::new();
            for batch in batches {
                write(&storage, batch);
            }
            let check = storage.read(|txn| Merkle::check(txn)).unwrap().unwrap();
            prop_assert_eq!(check.stored_root, check.rebuilt_root);
            prop_assert!(check.corrupted_pages.is_empty());
        }
    }
}
