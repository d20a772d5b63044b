//! `sys/replication/status` and the per-type status paths, in Vault's shapes.
//!
//! `merkle_root` shows the first 40 hex digits of the SHA-256 Merkle root, the length Vault
//! shows. A secondary's fields come with secondary activation.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::merkle::Merkle;
use crate::replication::wal::Wal;
use crate::request::Response;
use crate::storage::Transaction;

use super::state::{self, PrimaryIdentity};

/// Hex digits of the Merkle root that status shows.
const MERKLE_ROOT_HEX_LEN: usize = 40;

/// Go's zero time in Unix seconds: a corruption check never ran.
const NEVER_CHECKED: &str = "-62135596800";

/// `{"dr": ..., "performance": ...}`.
pub(super) fn combined(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut data = Map::new();
    data.insert("dr".into(), Value::Object(disabled()));
    data.insert(
        "performance".into(),
        Value::Object(performance_status(core, ctx, txn)?),
    );
    Ok(Response::data(data))
}

/// The performance status alone.
pub(super) fn performance(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    Ok(Response::data(performance_status(core, ctx, txn)?))
}

/// The DR status, always disabled: Coffer has no DR replication.
pub(super) fn dr(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    Ok(Response::data(disabled()))
}

fn disabled() -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("mode".into(), json!("disabled"));
    data
}

fn performance_status(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Map<String, Value>, Error> {
    // NOTE: the identity is behind the barrier, so a sealed node returns 503 here.
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let Some(identity) = state::load_primary(&view)? else {
        return Ok(disabled());
    };
    let registry = state::load_registry(&view)?;
    let known: Vec<&str> = registry.secondary_ids().into_iter().collect();
    drop(view);
    let last_wal = Wal::head(txn)?.index;
    let merkle_root = merkle_root_prefix(&Merkle::root(txn)?);
    Ok(primary_fields(&identity, last_wal, merkle_root, &known))
}

/// The first [`MERKLE_ROOT_HEX_LEN`] hex digits of `root`.
pub(super) fn merkle_root_prefix(root: &[u8]) -> String {
    let mut hex = hex::encode(root);
    hex.truncate(MERKLE_ROOT_HEX_LEN);
    hex
}

fn primary_fields(
    identity: &PrimaryIdentity,
    last_wal: u64,
    merkle_root: String,
    known_secondaries: &[&str],
) -> Map<String, Value> {
    let status = json!({
        "cluster_id": identity.cluster_id,
        "mode": "primary",
        "state": "running",
        "last_wal": last_wal,
        "last_performance_wal": last_wal,
        "last_dr_wal": 0,
        "merkle_root": merkle_root,
        "known_secondaries": known_secondaries,
        "secondaries": [],
        "primary_cluster_addr": identity.primary_cluster_addr,
        "corrupted_merkle_tree": false,
        "last_reindex_epoch": "0",
        "last_corruption_check_epoch": NEVER_CHECKED,
        "ssct_generation_counter": 0,
    });
    match status {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
