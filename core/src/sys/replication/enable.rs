//! `primary/enable`: the replication identity and a fresh WAL epoch.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::{Epoch, PrivateKey, ReplicationCa, SecondaryRegistry};
use crate::replication::position::{self, Position};
use crate::replication::wal::Wal;
use crate::request::{Logical, Request, Response};
use crate::storage::Transaction;
use crate::time::Timestamp;

use super::params::optional_string;
use super::state::{self, PrimaryIdentity};

const ENABLED_WARNING: &str = "This cluster is being enabled as a primary for replication. \
     Issue an activation token for each secondary with \
     sys/replication/performance/primary/secondary-token.";

/// The addresses `primary/enable` takes from its body.
pub(super) struct Addresses {
    primary_cluster_addr: String,
    cluster_addrs: Vec<String>,
    api_addr: Option<String>,
}

/// Makes this node a primary. The body's `cluster_addr` and `api_addr` are the node's own
/// addresses, which core cannot know: the server passes them in.
pub(super) fn enable(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let addresses = addresses(request)?;
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    if state::load_primary(&view)?.is_some() {
        return Err(Error::bad_request(
            "this cluster is already a performance replication primary",
        ));
    }
    if state::is_secondary(&view)? {
        return Err(Error::bad_request(
            "this cluster is a performance replication secondary; disable or promote it \
             before enabling it as a primary",
        ));
    }
    let number = Wal::head(view.raw())?.epoch.number.saturating_add(1);
    let cluster_id = crate::ids::uuid(view.rng());
    let epoch = Epoch {
        number,
        cluster_id: cluster_id.clone(),
    };
    let mut identity = generate(view.rng(), now, addresses, cluster_id, epoch)?;
    identity.epoch_start = Some(start_epoch(view.raw(), &identity.epoch)?);
    state::save_primary(&mut view, &identity)?;
    state::save_registry(&mut view, &SecondaryRegistry::new())?;
    Ok(Response::logical(Logical {
        status: 200,
        warnings: vec![ENABLED_WARNING.to_owned()],
        ..Logical::default()
    }))
}

pub(super) fn addresses(request: &Request) -> Result<Addresses, Error> {
    let primary_cluster_addr = optional_string(&request.data, "primary_cluster_addr")?;
    let cluster_addr = optional_string(&request.data, "cluster_addr")?;
    let cluster_addrs = primary_cluster_addr
        .clone()
        .or(cluster_addr)
        .into_iter()
        .collect();
    Ok(Addresses {
        primary_cluster_addr: primary_cluster_addr.unwrap_or_default(),
        cluster_addrs,
        api_addr: optional_string(&request.data, "api_addr")?,
    })
}

/// Generates a primary identity for replication set `cluster_id` in `epoch`: a new CA, the
/// primary's cluster certificate and the token signing key.
pub(super) fn generate(
    rng: &mut dyn rand_core::CryptoRngCore,
    now: Timestamp,
    addresses: Addresses,
    cluster_id: String,
    epoch: Epoch,
) -> Result<PrimaryIdentity, Error> {
    let invalid =
        |error: crate::replication::activation::CaError| Error::bad_request(error.to_string());
    let ca = ReplicationCa::generate(rng, now, &cluster_id).map_err(invalid)?;
    let addrs: Vec<&str> = addresses.cluster_addrs.iter().map(String::as_str).collect();
    let primary_cert = ca.issue_primary_cert(rng, now, &addrs).map_err(invalid)?;
    let signing_key = PrivateKey::generate(rng);
    Ok(PrimaryIdentity {
        epoch,
        cluster_id,
        ca,
        primary_cert,
        signing_key,
        primary_cluster_addr: addresses.primary_cluster_addr,
        cluster_addrs: addresses.cluster_addrs,
        api_addr: addresses.api_addr,
        epoch_start: None,
    })
}

/// Moves the WAL head into the new epoch at the same index and hash, so the next entry carries
/// the epoch and continues the chain. Returns the position where the epoch starts.
pub(super) fn start_epoch(txn: &mut dyn Transaction, epoch: &Epoch) -> Result<Position, Error> {
    let epoch = position::Epoch::new(epoch.number, epoch.cluster_id.clone());
    Ok(Wal::raise_epoch(txn, &epoch)?)
}
