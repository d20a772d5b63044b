//! Stored policies and the cache of their parsed form.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::policy::{Policy, parse_policy};
use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, StorageError, Transaction};

/// The key prefix of policies in the shared partition: `sys/policy/<name>`.
pub(crate) const POLICY_PREFIX: &str = "sys/policy/";

/// The stock `default` policy, written at initialisation.
pub(crate) const DEFAULT_POLICY_TEXT: &str = include_str!("default_policy.hcl");

/// The internal policy of response-wrapping tokens. It is built in, never stored, and not
/// listed.
pub(crate) const RESPONSE_WRAPPING_POLICY: &str = "response-wrapping";

const RESPONSE_WRAPPING_TEXT: &str = r#"
path "cubbyhole/response" {
    capabilities = ["create", "read"]
}

path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}
"#;

/// A policy as stored: its name and the text exactly as written.
#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    raw: String,
}

/// A parsed policy with the ciphertext it was parsed from.
struct CachedPolicy {
    ciphertext: Vec<u8>,
    policy: Arc<Policy>,
}

/// The parsed policies, cached and reloaded when their storage changes.
///
/// Each lookup compares the cached ciphertext with the one in the caller's transaction, so a
/// stale cache entry is never used: reloading only frees memory and saves a parse.
#[derive(Default)]
pub struct PolicyStore {
    cache: RwLock<BTreeMap<String, CachedPolicy>>,
}

impl PolicyStore {
    /// An empty store.
    pub fn new() -> PolicyStore {
        PolicyStore::default()
    }

    /// Reloads policies whose keys are in `changed`, or all of them for `None`.
    pub fn reload(
        &self,
        core: &Core,
        txn: &dyn Transaction,
        changed: Option<&[(Partition, String)]>,
    ) -> Result<(), Error> {
        let names: Vec<String> = match changed {
            Some(changed) => changed
                .iter()
                .filter(|(partition, _)| *partition == Partition::Shared)
                .filter_map(|(_, key)| key.strip_prefix(POLICY_PREFIX))
                .map(str::to_owned)
                .collect(),
            None => {
                self.write_cache().clear();
                self.names(txn)?
            }
        };
        for name in names {
            self.invalidate(&name);
            // A policy that fails to load must not block the reload of the others: requests
            // that need it get the error when they look it up.
            if let Err(error) = self.get(core, txn, &name) {
                tracing::warn!(policy = %name, %error, "failed to load policy");
            }
        }
        Ok(())
    }

    /// Returns the parsed policy called `name` as stored in `txn`, or `None` when it does not
    /// exist.
    /// `root` is built in and never stored, so it is `None` here too.
    pub fn get(
        &self,
        core: &Core,
        txn: &dyn Transaction,
        name: &str,
    ) -> Result<Option<Arc<Policy>>, Error> {
        if name == RESPONSE_WRAPPING_POLICY {
            return Ok(Some(response_wrapping_policy()));
        }
        let key = policy_key(name);
        let Some(ciphertext) = txn.get(Partition::Shared, &key)? else {
            return Ok(None);
        };
        if let Some(cached) = self.read_cache().get(name) {
            if cached.ciphertext == ciphertext {
                return Ok(Some(Arc::clone(&cached.policy)));
            }
        }
        let policy = Arc::new(decode(core, &key, &ciphertext)?);
        let cached = CachedPolicy {
            ciphertext,
            policy: Arc::clone(&policy),
        };
        self.write_cache().insert(name.to_owned(), cached);
        Ok(Some(policy))
    }

    /// Lists the names of every stored policy, sorted. `root` is not among them.
    pub fn names(&self, txn: &dyn Transaction) -> Result<Vec<String>, Error> {
        let keys = txn.scan(Partition::Shared, POLICY_PREFIX, None, None)?;
        Ok(keys
            .iter()
            .filter_map(|key| key.strip_prefix(POLICY_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    /// Stores a parsed policy, then drops its cache entry. The name must already be normalized
    /// (see `normalize_policy_name`).
    pub fn put(&self, view: &mut SecureView<'_>, policy: &Policy) -> Result<(), Error> {
        if normalize_policy_name(&policy.name)? != policy.name {
            return Err(Error::bad_request(format!(
                "invalid policy name {:?}: it must be lowercase without surrounding whitespace",
                policy.name
            )));
        }
        let stored = StoredPolicy {
            name: policy.name.clone(),
            raw: policy.raw.clone(),
        };
        view.put_json(Partition::Shared, &policy_key(&policy.name), &stored)?;
        self.invalidate(&policy.name);
        Ok(())
    }

    /// Deletes a policy (a blind delete), then drops its cache entry.
    pub fn delete(&self, view: &mut SecureView<'_>, name: &str) -> Result<(), Error> {
        view.delete(Partition::Shared, &policy_key(name))?;
        self.invalidate(name);
        Ok(())
    }

    fn invalidate(&self, name: &str) {
        self.write_cache().remove(name);
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, CachedPolicy>> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, CachedPolicy>> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Normalizes a policy name as Vault does: surrounding whitespace trimmed, lowercased. A name
/// with a control character (NUL, newline, ...) is rejected, so two names that print alike
/// cannot name different policies.
pub(crate) fn normalize_policy_name(name: &str) -> Result<String, Error> {
    if name.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "invalid policy name {name:?}: it contains a control character; use printable \
             characters only"
        )));
    }
    Ok(name.trim().to_lowercase())
}

fn response_wrapping_policy() -> Arc<Policy> {
    static POLICY: OnceLock<Arc<Policy>> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let policy = parse_policy(RESPONSE_WRAPPING_POLICY, RESPONSE_WRAPPING_TEXT)
            .expect("the built-in response-wrapping policy parses");
        Arc::new(policy)
    });
    Arc::clone(policy)
}

fn policy_key(name: &str) -> String {
    format!("{POLICY_PREFIX}{name}")
}

fn decode(core: &Core, key: &str, ciphertext: &[u8]) -> Result<Policy, Error> {
    let corrupt = |reason: String| StorageError::Corrupt {
        partition: Partition::Shared,
        key: key.to_owned(),
        reason,
    };
    let plaintext = core
        .barrier
        .keyring()?
        .decrypt(Partition::Shared, key, ciphertext)
        .map_err(|error| corrupt(error.to_string()))?;
    let stored: StoredPolicy = serde_json::from_slice(&plaintext)
        .map_err(|error| corrupt(format!("invalid JSON: {error}")))?;
    parse_policy(&stored.name, &stored.raw)
        .map_err(|error| Error::from(corrupt(format!("stored policy does not parse: {error}"))))
}
