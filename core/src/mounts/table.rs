//! Reading and writing the four stored tables.

use std::sync::Arc;

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, StorageError, Transaction};

use super::entry::{MountEntry, StoredTable, TableKind};

/// How many keys one scan returns while a mount's data is removed.
const PURGE_BATCH: usize = 1000;

/// Each table half, in the order a [`Snapshot`] keeps their ciphertext.
const HALVES: [(TableKind, bool); 4] = [
    (TableKind::Secrets, false),
    (TableKind::Secrets, true),
    (TableKind::Auth, false),
    (TableKind::Auth, true),
];

/// The merged mount and auth tables, shared entries first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tables {
    /// Secrets engines.
    pub secrets: Vec<MountEntry>,
    /// Auth methods.
    pub auth: Vec<MountEntry>,
}

impl Tables {
    /// The entries of one table.
    pub fn entries(&self, kind: TableKind) -> &[MountEntry] {
        match kind {
            TableKind::Secrets => &self.secrets,
            TableKind::Auth => &self.auth,
        }
    }

    /// The entry mounted exactly at `path` (with its trailing slash).
    pub fn find(&self, kind: TableKind, path: &str) -> Option<&MountEntry> {
        self.entries(kind).iter().find(|entry| entry.path == path)
    }

    /// The entry with the longest path that prefixes `path`. A bare mount name without its
    /// slash, such as `secret`, matches `secret/` too.
    pub fn longest_match(&self, kind: TableKind, path: &str) -> Option<&MountEntry> {
        self.entries(kind)
            .iter()
            .filter(|entry| path.starts_with(&entry.path) || entry.path == format!("{path}/"))
            .max_by_key(|entry| entry.path.len())
    }
}

/// The decoded tables and the ciphertext they came from.
pub(super) struct Snapshot {
    raw: [Option<Vec<u8>>; 4],
    pub(super) tables: Arc<Tables>,
}

impl Snapshot {
    /// Reads and decrypts all four table halves.
    pub(super) fn load(core: &Core, txn: &dyn Transaction) -> Result<Snapshot, Error> {
        let keyring = core.barrier.keyring()?;
        let mut raw: [Option<Vec<u8>>; 4] = Default::default();
        let mut tables = Tables::default();
        for (slot, (kind, local)) in HALVES.into_iter().enumerate() {
            let (partition, key) = kind.location(local);
            let Some(ciphertext) = txn.get(partition, key)? else {
                continue;
            };
            let plaintext = keyring
                .decrypt(partition, key, &ciphertext)
                .map_err(|error| corrupt(partition, key, error.to_string()))?;
            let stored: StoredTable = serde_json::from_slice(&plaintext)
                .map_err(|error| corrupt(partition, key, format!("invalid JSON: {error}")))?;
            match kind {
                TableKind::Secrets => tables.secrets.extend(stored.entries),
                TableKind::Auth => tables.auth.extend(stored.entries),
            }
            raw[slot] = Some(ciphertext);
        }
        Ok(Snapshot {
            raw,
            tables: Arc::new(tables),
        })
    }

    /// Whether `txn` still stores exactly the ciphertext this snapshot decoded.
    pub(super) fn is_current(&self, txn: &dyn Transaction) -> Result<bool, Error> {
        for (slot, (kind, local)) in HALVES.into_iter().enumerate() {
            let (partition, key) = kind.location(local);
            if txn.get(partition, key)? != self.raw[slot] {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether `key` is one of the stored tables.
pub(super) fn is_table_key(partition: Partition, key: &str) -> bool {
    HALVES
        .into_iter()
        .any(|(kind, local)| kind.location(local) == (partition, key))
}

/// Replaces one table half with `entries`.
pub fn save_table(
    view: &mut SecureView<'_>,
    kind: TableKind,
    local: bool,
    entries: &[MountEntry],
) -> Result<(), Error> {
    let (partition, key) = kind.location(local);
    let stored = StoredTable {
        entries: entries.to_vec(),
    };
    view.put_json(partition, key, &stored)
}

/// Deletes every key below `prefix` in `partition`, reading the keys in bounded batches.
pub fn purge_prefix(
    txn: &mut dyn Transaction,
    partition: Partition,
    prefix: &str,
) -> Result<(), Error> {
    let mut after: Option<String> = None;
    loop {
        let keys = txn.scan(partition, prefix, after.as_deref(), Some(PURGE_BATCH))?;
        for key in &keys {
            txn.delete(partition, key)?;
        }
        if keys.len() < PURGE_BATCH {
            return Ok(());
        }
        after = keys.last().cloned();
    }
}

fn corrupt(partition: Partition, key: &str, reason: String) -> Error {
    Error::Storage(StorageError::Corrupt {
        partition,
        key: key.to_owned(),
        reason,
    })
}
