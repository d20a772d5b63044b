//! Mount and auth tables: shared entries in the shared partition, `local=true` entries in the
//! local partition, and routing of request paths to mounts.
//!
//! The tables live at `core/mounts` and `core/auth` (shared) and `core/local-mounts` and
//! `core/local-auth` (local), each a JSON [`StoredTable`] behind the barrier. A local mount
//! exists only in the local table, so neither its entry nor its data ever replicates.

mod entry;
mod table;

pub use entry::{MountConfig, MountEntry, StoredTable, TableKind};
pub use table::{Tables, purge_prefix, save_table};

use std::sync::{Arc, PoisonError, RwLock};

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;

use table::Snapshot;

/// The cached mount and auth tables.
///
/// The cache remembers the ciphertext it decoded, and every lookup compares it with what the
/// transaction stores now. A changed or missing table is read again, so routing is correct
/// whether or not [`MountTables::reload`] has run since the last write.
#[derive(Default)]
pub struct MountTables {
    cache: RwLock<Option<Arc<Snapshot>>>,
}

impl MountTables {
    /// Empty tables.
    pub fn new() -> MountTables {
        MountTables::default()
    }

    /// Reloads the tables when their keys are in `changed`, or always for `None`.
    pub fn reload(
        &self,
        core: &Core,
        txn: &dyn Transaction,
        changed: Option<&[(Partition, String)]>,
    ) -> Result<(), Error> {
        let touched = match changed {
            None => true,
            Some(keys) => keys
                .iter()
                .any(|(partition, key)| table::is_table_key(*partition, key)),
        };
        if touched {
            let snapshot = Snapshot::load(core, txn)?;
            self.store(Arc::new(snapshot));
        }
        Ok(())
    }

    /// The tables as `txn` stores them, from the cache when it is current.
    pub fn tables(&self, core: &Core, txn: &dyn Transaction) -> Result<Arc<Tables>, Error> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(snapshot) = cached {
            if snapshot.is_current(txn)? {
                return Ok(Arc::clone(&snapshot.tables));
            }
        }
        let snapshot = Arc::new(Snapshot::load(core, txn)?);
        let tables = Arc::clone(&snapshot.tables);
        self.store(snapshot);
        Ok(tables)
    }

    fn store(&self, snapshot: Arc<Snapshot>) {
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }
}

/// A request path matched to the secrets engine that serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The mount's entry.
    pub entry: MountEntry,
    /// The path below the mount, without a leading slash.
    pub rest: String,
}

/// Finds the secrets engine with the longest mount path that prefixes `path`.
pub fn route(core: &Core, txn: &dyn Transaction, path: &str) -> Result<Option<Route>, Error> {
    let tables = core.mounts.tables(core, txn)?;
    Ok(tables
        .longest_match(TableKind::Secrets, path)
        .map(|entry| Route {
            rest: path[entry.path.len().min(path.len())..].to_owned(),
            entry: entry.clone(),
        }))
}

/// Writes the mount and auth tables of a newly initialised barrier: `cubbyhole/` (local),
/// `identity/`, `sys/` and the `token/` auth method.
pub fn initialize(_core: &Core, view: &mut SecureView<'_>, _now: Timestamp) -> Result<(), Error> {
    let mut cubbyhole = MountEntry::new("cubbyhole/", "cubbyhole", true, view.rng());
    cubbyhole.description = "per-token private secret storage".into();
    let mut identity = MountEntry::new("identity/", "identity", false, view.rng());
    identity.description = "identity store".into();
    let mut system = MountEntry::new("sys/", "system", false, view.rng());
    system.description = "system endpoints used for control, policy and debugging".into();
    let mut token = MountEntry::new("token/", "token", false, view.rng());
    token.description = "token based credentials".into();
    token
        .config
        .passthrough
        .insert("token_type".into(), "default-service".into());

    save_table(view, TableKind::Secrets, true, &[cubbyhole])?;
    save_table(view, TableKind::Secrets, false, &[identity, system])?;
    save_table(view, TableKind::Auth, true, &[])?;
    save_table(view, TableKind::Auth, false, &[token])
}
