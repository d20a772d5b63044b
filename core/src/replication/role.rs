//! A node's replication role, as the driver reads it from storage.
//!
//! A primary's identity and a secondary's activation record live in `Partition::Local`
//! behind the barrier, so the role can only be read while unsealed.

use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::error::Error;
use crate::replication::activation::{BootstrapBundle, PrivateKey};
use crate::replication::failover::{DEMOTED_KEY, DemotedRecord, load_demoted};
use crate::replication::position::Epoch;
use crate::storage::{Partition, StorageError, Transaction};
use crate::sys::replication::state;
use crate::time::Timestamp;

/// Prefix of every local key that contains replication state.
pub const ROLE_KEY_PREFIX: &str = "core/replication/";

/// Local key of a secondary's activation record, encrypted by the barrier.
pub const SECONDARY_RECORD_KEY: &str = "core/replication/performance/secondary";

/// This node's role in performance replication.
#[derive(Debug)]
pub enum Role {
    /// Neither a primary nor a secondary.
    Standalone,
    /// A primary, with what its cluster port serves.
    Primary(PrimaryCredentials),
    /// A secondary, activated or with its activation pending.
    Secondary(SecondaryCredentials),
    /// A demoted primary: a secondary with no primary, read-only for shared data, until
    /// `update-primary` gives it one or `promote` makes it a primary again.
    Demoted(DemotedRecord),
}

/// The identity and keys a primary's cluster port needs. `Debug` hides the key.
#[derive(Debug)]
pub struct PrimaryCredentials {
    /// The replication set's cluster id.
    pub cluster_id: String,
    /// The epoch this primary started.
    pub epoch: Epoch,
    /// The replication CA certificate in DER.
    pub ca_cert_der: Vec<u8>,
    /// The primary's cluster certificate in DER (server authentication only).
    pub cert_der: Vec<u8>,
    /// The private key of `cert_der`.
    pub key: PrivateKey,
    /// The active secondary certificates: id and serial.
    pub active: Vec<(String, String)>,
    /// The cluster addresses the primary's certificate and bundles carry.
    pub cluster_addrs: Vec<String>,
}

/// The bundle and key a secondary's driver needs. `Debug` hides the key.
#[derive(Debug)]
pub struct SecondaryCredentials {
    /// The bundle the secondary was activated with.
    pub bundle: BootstrapBundle,
    /// The secondary's private key, which its client certificate certifies.
    pub key: PrivateKey,
    /// Whether the first sync after activation finished.
    pub activated: bool,
}

/// The secondary's activation record as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct SecondaryRecord {
    /// The bundle, with its key when the primary generated it.
    pub(crate) bundle: BootstrapBundle,
    /// The secondary's private key.
    pub(crate) key: PrivateKey,
    /// Whether the first sync finished.
    pub(crate) activated: bool,
    /// When the activation adopted the primary's keys.
    pub(crate) adopted_at: Timestamp,
}

impl fmt::Debug for SecondaryRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondaryRecord")
            .field("bundle", &self.bundle)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

/// Reads this node's role. Fails with 503 while sealed.
pub fn load_role(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
) -> Result<Role, Error> {
    let view = core.barrier.view(txn, rng)?;
    if let Some(record) = load_secondary(&view)? {
        return Ok(Role::Secondary(SecondaryCredentials {
            bundle: record.bundle,
            key: record.key,
            activated: record.activated,
        }));
    }
    if let Some(record) = load_demoted(&view)? {
        return Ok(Role::Demoted(record));
    }
    let Some(identity) = state::load_primary(&view)? else {
        return Ok(Role::Standalone);
    };
    let registry = state::load_registry(&view)?;
    let active = registry
        .secondary_ids()
        .into_iter()
        .filter_map(|id| {
            registry
                .active_cert(id)
                .map(|cert| (id.to_owned(), cert.serial.clone()))
        })
        .collect();
    let key = identity.primary_cert.key.clone().ok_or_else(|| {
        Error::internal("the primary's cluster certificate is stored without its key")
    })?;
    Ok(Role::Primary(PrimaryCredentials {
        epoch: Epoch::new(identity.epoch.number, identity.epoch.cluster_id.clone()),
        ca_cert_der: identity.ca.cert_der().to_vec(),
        cert_der: identity.primary_cert.cert_der.clone(),
        key,
        active,
        cluster_addrs: identity.cluster_addrs.clone(),
        cluster_id: identity.cluster_id,
    }))
}

/// Returns the role's name as status output shows it in `mode`: `primary`, `secondary` or
/// `disabled`.
pub fn mode_name(role: &Role) -> &'static str {
    match role {
        Role::Standalone => "disabled",
        Role::Primary(_) => "primary",
        Role::Secondary(_) | Role::Demoted(_) => "secondary",
    }
}

/// Reads the secondary's activation record, if this node is or is becoming a secondary.
pub(crate) fn load_secondary(
    view: &crate::barrier::SecureView<'_>,
) -> Result<Option<SecondaryRecord>, Error> {
    view.get_json(Partition::Local, state::SECONDARY_STATE_KEY)
}

/// Stores the secondary's activation record.
pub(crate) fn save_secondary(
    view: &mut crate::barrier::SecureView<'_>,
    record: &SecondaryRecord,
) -> Result<(), Error> {
    view.put_json(Partition::Local, state::SECONDARY_STATE_KEY, record)
}

/// Returns the primary's cluster id, or a 400 when this node is not a primary.
pub(crate) fn primary_cluster_id(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
) -> Result<String, Error> {
    let view = core.barrier.view(txn, rng)?;
    Ok(state::require_primary(&view)?.cluster_id)
}

/// Returns whether a reload of `changed` may have changed the role: `None` (everything), or a local
/// key below [`ROLE_KEY_PREFIX`].
pub fn touches_role(changed: Option<&[(Partition, String)]>) -> bool {
    let Some(changed) = changed else {
        return true;
    };
    changed
        .iter()
        .any(|(partition, key)| *partition == Partition::Local && key.starts_with(ROLE_KEY_PREFIX))
}

/// Returns the performance replication mode from which records exist, without decrypting
/// them, so it works while sealed: `secondary`, `primary` or `disabled`.
pub fn stored_mode(txn: &dyn Transaction) -> Result<&'static str, Error> {
    if txn
        .get(Partition::Local, state::SECONDARY_STATE_KEY)?
        .is_some()
    {
        return Ok("secondary");
    }
    if txn.get(Partition::Local, DEMOTED_KEY)?.is_some() {
        return Ok("secondary");
    }
    if txn.get(Partition::Local, state::PRIMARY_KEY)?.is_some() {
        return Ok("primary");
    }
    Ok("disabled")
}

/// Returns whether this node has a secondary activation record, without decrypting it. A
/// secondary's driver checks it in each transaction that applies replicated data, so nothing
/// is applied after a `promote` or `disable` committed, even before the driver stops.
pub fn is_following(txn: &dyn Transaction) -> Result<bool, StorageError> {
    Ok(txn
        .get(Partition::Local, state::SECONDARY_STATE_KEY)?
        .is_some())
}

/// Reads the primary's API address from the secondary's activation record without writing,
/// `Some("")` on a demoted primary, which has no primary but is read-only all the same, or
/// `None` when this node is neither. Fails with 503 while sealed.
pub(crate) fn secondary_primary_addr(
    core: &Core,
    txn: &dyn Transaction,
) -> Result<Option<String>, Error> {
    let Some(ciphertext) = txn.get(Partition::Local, state::SECONDARY_STATE_KEY)? else {
        let demoted = txn.get(Partition::Local, DEMOTED_KEY)?.is_some();
        return Ok(demoted.then(String::new));
    };
    let keyring = core.barrier.keyring()?;
    let corrupt = |reason: String| StorageError::Corrupt {
        partition: Partition::Local,
        key: state::SECONDARY_STATE_KEY.to_owned(),
        reason,
    };
    let plaintext = keyring
        .decrypt(Partition::Local, state::SECONDARY_STATE_KEY, &ciphertext)
        .map_err(|error| corrupt(error.to_string()))?;
    let record: SecondaryRecord = serde_json::from_slice(&plaintext)
        .map_err(|error| corrupt(format!("invalid JSON: {error}")))?;
    Ok(Some(record.bundle.primary_api_addr.clone()))
}

#[cfg(test)]
mod tests {
    use crate::Core;
    use crate::handler::CoreConfig;
    use crate::storage::{MemStorage, Partition, Storage};

    #[test]
    fn reload_raises_generation_only_for_replication_keys() {
        let core = Core::new(CoreConfig::default());
        let storage = MemStorage::new();
        let before = core.replication_generation();
        let other = [(Partition::Local, "core/token/salt".to_owned())];
        let shared = [(Partition::Shared, "core/replication/x".to_owned())];
        storage
            .read(|txn| {
                core.reload(txn, Some(&other)).unwrap();
                core.reload(txn, Some(&shared)).unwrap();
            })
            .unwrap();
        assert_eq!(core.replication_generation(), before);
        let role = [(
            Partition::Local,
            "core/replication/performance/secondary".to_owned(),
        )];
        storage
            .read(|txn| core.reload(txn, Some(&role)).unwrap())
            .unwrap();
        assert_eq!(core.replication_generation(), before + 1);
        storage.read(|txn| core.reload(txn, None).unwrap()).unwrap();
        assert_eq!(core.replication_generation(), before + 2);
    }
}
