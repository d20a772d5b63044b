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

    /// Returns the tables as `txn` stores them, from the cache when it is current.
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
    route_in(core, txn, TableKind::Secrets, path)
}

/// Finds the auth method serving a path such as `auth/userpass/login/alice`. The token store
/// at `auth/token/` is routed by the core itself and is not returned here.
pub fn route_auth(core: &Core, txn: &dyn Transaction, path: &str) -> Result<Option<Route>, Error> {
    let Some(rest) = path.strip_prefix("auth/") else {
        return Ok(None);
    };
    let found = route_in(core, txn, TableKind::Auth, rest)?;
    Ok(found.filter(|route| route.entry.kind != "token"))
}

fn route_in(
    core: &Core,
    txn: &dyn Transaction,
    kind: TableKind,
    path: &str,
) -> Result<Option<Route>, Error> {
    let tables = core.mounts.tables(core, txn)?;
    Ok(tables.longest_match(kind, path).map(|entry| Route {
        rest: path.get(entry.path.len()..).unwrap_or_default().to_owned(),
        entry: entry.clone(),
    }))
}

/// Writes the mount and auth tables of a newly initialised barrier: `cubbyhole/` (local),
/// `identity/`, `sys/` and the `token/` auth method.
pub fn initialize(_core: &Core, view: &mut SecureView<'_>, _now: Timestamp) -> Result<(), Error> {
    let mut cubbyhole = MountEntry::new(
        TableKind::Secrets,
        "cubbyhole/",
        "cubbyhole",
        true,
        view.rng(),
    );
    cubbyhole.description = "per-token private secret storage".into();
    let mut identity = MountEntry::new(
        TableKind::Secrets,
        "identity/",
        "identity",
        false,
        view.rng(),
    );
    identity.description = "identity store".into();
    let mut system = MountEntry::new(TableKind::Secrets, "sys/", "system", false, view.rng());
    system.description = "system endpoints used for control, policy and debugging".into();
    let mut token = MountEntry::new(TableKind::Auth, "token/", "token", false, view.rng());
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engines::testing::Harness;
    use crate::request::Operation;
    use crate::request::Operation::Update;
    use crate::request::Request;
    use crate::storage::Storage;

    fn route_of(harness: &Harness, path: &str) -> Option<Route> {
        harness
            .storage
            .read(|txn| route(&harness.core, txn, path))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn initialize_writes_builtin_tables() {
        let harness = Harness::new();
        let tables = harness
            .storage
            .read(|txn| harness.core.mounts.tables(&harness.core, txn))
            .unwrap()
            .unwrap();
        let secrets: Vec<&str> = tables.secrets.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(secrets, vec!["identity/", "sys/", "cubbyhole/"]);
        assert_eq!(tables.auth.len(), 1);
        assert_eq!(tables.auth[0].path, "token/");
        let local = harness.storage.dump(Partition::Local);
        assert!(local.iter().any(|(key, _)| key == "core/local-mounts"));
        let shared = harness.storage.dump(Partition::Shared);
        assert!(shared.iter().any(|(key, _)| key == "core/mounts"));
        assert!(shared.iter().any(|(key, _)| key == "core/auth"));
    }

    #[test]
    fn routing_picks_longest_prefix() {
        let mut harness = Harness::new();
        harness.ok(Update, "sys/mounts/a", json!({"type": "kv"}));
        harness.ok(Update, "sys/mounts/ab/c", json!({"type": "kv"}));
        let short = route_of(&harness, "a/b").unwrap();
        assert_eq!(short.entry.path, "a/");
        assert_eq!(short.rest, "b");
        let long = route_of(&harness, "ab/c/d/e").unwrap();
        assert_eq!(long.entry.path, "ab/c/");
        assert_eq!(long.rest, "d/e");
        assert_eq!(route_of(&harness, "ab/x"), None);
        assert_eq!(route_of(&harness, "a").unwrap().rest, "");
    }

    #[test]
    fn auth_routing_skips_token_store() {
        let mut harness = Harness::new();
        harness.ok(Update, "sys/auth/userpass", json!({"type": "userpass"}));
        let found = harness
            .storage
            .read(|txn| route_auth(&harness.core, txn, "auth/userpass/login/alice"))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(found.entry.path, "userpass/");
        assert_eq!(found.rest, "login/alice");
        let token = harness
            .storage
            .read(|txn| route_auth(&harness.core, txn, "auth/token/create"))
            .unwrap()
            .unwrap();
        assert_eq!(token, None);
    }

    #[test]
    fn purge_deletes_past_one_batch() {
        let storage = crate::storage::MemStorage::new();
        storage
            .write(|txn| -> Result<(), Error> {
                for i in 0..2500 {
                    txn.put(Partition::Shared, &format!("logical/u/{i:05}"), b"x")?;
                }
                txn.put(Partition::Shared, "logical/v/keep", b"x")?;
                Ok(())
            })
            .unwrap();
        storage
            .write(|txn| purge_prefix(txn, Partition::Shared, "logical/u/"))
            .unwrap();
        let left: Vec<String> = storage
            .dump(Partition::Shared)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(left, vec![String::from("logical/v/keep")]);
    }

    #[test]
    fn cache_follows_storage_without_reload() {
        let mut harness = Harness::new();
        assert!(route_of(&harness, "secret/x").is_none());
        harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
        assert!(route_of(&harness, "secret/x").is_some());
    }

    #[test]
    fn reload_ignores_unrelated_keys() {
        let harness = Harness::new();
        let changed = [(Partition::Shared, String::from("logical/x/y"))];
        let result = harness
            .storage
            .read(|txn| {
                harness
                    .core
                    .mounts
                    .reload(&harness.core, txn, Some(&changed))
            })
            .unwrap();
        assert_eq!(result, Ok(()));
        assert!(table::is_table_key(Partition::Local, "core/local-auth"));
        assert!(!table::is_table_key(Partition::Shared, "core/local-auth"));
    }

    #[test]
    fn existence_check_follows_engine() {
        let mut harness = Harness::new();
        harness.ok(Update, "sys/mounts/v1", json!({"type": "kv"}));
        harness.ok(Update, "sys/mounts/v2", json!({"type": "kv-v2"}));
        harness.ok(Update, "v1/a", json!({"x": 1}));
        harness.data(Update, "v2/data/a", json!({"data": {"x": 1}}));
        let exists = |path: &str| {
            let request = Request::new(Operation::Update, path);
            harness
                .storage
                .read(|txn| crate::engines::exists(&harness.core, &request, txn))
                .unwrap()
                .unwrap()
        };
        assert_eq!(exists("v1/a"), Some(true));
        assert_eq!(exists("v1/b"), Some(false));
        assert_eq!(exists("v2/data/a"), Some(true));
        assert_eq!(exists("v2/metadata/a"), Some(true));
        assert_eq!(exists("v2/data/b"), Some(false));
        assert_eq!(exists("v2/config"), None);
        assert_eq!(exists("nowhere/a"), None);
    }
}
