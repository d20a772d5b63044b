//! What a primary keeps about replication, all in `Partition::Local` through the barrier.

use serde::{Deserialize, Serialize};

use crate::barrier::SecureView;
use crate::error::Error;
use crate::replication::activation::{
    Epoch, IssuedCert, PrivateKey, ReplicationCa, SecondaryRegistry,
};
use crate::replication::failover::DEMOTED_KEY;
use crate::replication::position::Position;
use crate::storage::Partition;

/// Local key of the primary's replication identity.
pub(crate) const PRIMARY_KEY: &str = "core/replication/performance/primary";
/// Local key of the registry of secondary certificates and activation tokens.
pub(crate) const REGISTRY_KEY: &str = "core/replication/performance/secondaries";
/// Local key of the key pair a future secondary generated for its activation.
pub(crate) const SECONDARY_KEY_KEY: &str = "core/replication/performance/secondary-key";
/// Local key of a secondary's activation state. Secondary activation writes it, and enabling a
/// primary is rejected while it exists.
pub(crate) const SECONDARY_STATE_KEY: &str = crate::replication::role::SECONDARY_RECORD_KEY;

/// The primary's replication identity, created by `primary/enable`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PrimaryIdentity {
    /// The replication set's cluster id.
    pub(crate) cluster_id: String,
    /// The replication CA with its key.
    pub(crate) ca: ReplicationCa,
    /// The primary's cluster certificate and key.
    pub(crate) primary_cert: IssuedCert,
    /// The key that signs activation tokens.
    pub(crate) signing_key: PrivateKey,
    /// The epoch the primary started.
    pub(crate) epoch: Epoch,
    /// `primary_cluster_addr` as given, `""` when not overridden.
    pub(crate) primary_cluster_addr: String,
    /// The cluster addresses secondaries dial, in the certificate and every bundle.
    pub(crate) cluster_addrs: Vec<String>,
    /// The API address secondaries unwrap at, the `addr` claim; `None` when unknown.
    pub(crate) api_addr: Option<String>,
    /// The WAL position where this primary's epoch starts; `None` for an identity stored
    /// before positions were recorded.
    #[serde(default)]
    pub(crate) epoch_start: Option<Position>,
}

/// The primary's identity, or `None` when this node is not a primary.
pub(crate) fn load_primary(view: &SecureView<'_>) -> Result<Option<PrimaryIdentity>, Error> {
    view.get_json(Partition::Local, PRIMARY_KEY)
}

/// The primary's identity, or a 400 that says to enable replication first, or that a
/// secondary cannot act as a primary.
pub(crate) fn require_primary(view: &SecureView<'_>) -> Result<PrimaryIdentity, Error> {
    if is_secondary(view)? {
        return Err(Error::bad_request(
            "this cluster is a performance replication secondary; issue activation tokens and \
             revoke secondaries on its primary",
        ));
    }
    load_primary(view)?.ok_or_else(|| {
        Error::bad_request(
            "this cluster is not a performance replication primary; enable it with \
             sys/replication/performance/primary/enable first",
        )
    })
}

/// Stores the primary's identity.
pub(crate) fn save_primary(
    view: &mut SecureView<'_>,
    identity: &PrimaryIdentity,
) -> Result<(), Error> {
    view.put_json(Partition::Local, PRIMARY_KEY, identity)
}

/// The registry, empty when none is stored.
pub(crate) fn load_registry(view: &SecureView<'_>) -> Result<SecondaryRegistry, Error> {
    Ok(view
        .get_json(Partition::Local, REGISTRY_KEY)?
        .unwrap_or_default())
}

/// Stores the registry.
pub(crate) fn save_registry(
    view: &mut SecureView<'_>,
    registry: &SecondaryRegistry,
) -> Result<(), Error> {
    view.put_json(Partition::Local, REGISTRY_KEY, registry)
}

/// Whether this node is, or is becoming, a secondary, or is a demoted primary.
pub(crate) fn is_secondary(view: &SecureView<'_>) -> Result<bool, Error> {
    Ok(view.get(Partition::Local, SECONDARY_STATE_KEY)?.is_some()
        || view.get(Partition::Local, DEMOTED_KEY)?.is_some())
}
