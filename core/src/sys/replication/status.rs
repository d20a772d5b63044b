//! `sys/replication/status` and the per-type status paths, in Vault's shapes.
//!
//! `merkle_root` shows the first 40 hex digits of the SHA-256 Merkle root, the length Vault
//! shows. Connection states, heartbeats and sync progress come from the live status the
//! replication driver reports; identities and positions come from storage.
//!
//! NOTE: heartbeat round trips and clock skew are not measured, so
//! `last_heartbeat_duration_ms` and `clock_skew_ms` are always `"0"`.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::Timestamp;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::failover::{DemotedRecord, load_demoted};
use crate::replication::live::{ConnectionState, PeerStatus, SecondaryLive};
use crate::replication::merkle::Merkle;
use crate::replication::role::{SecondaryRecord, load_secondary};
use crate::replication::secondary::SecondaryState;
use crate::replication::wal::Wal;
use crate::request::Response;
use crate::storage::Transaction;

use super::failover::IndexChecks;
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
    let mut fields = role_fields(core, ctx, txn)?;
    if fields.get("mode") != Some(&json!("disabled")) {
        add_index_checks(&mut fields, &IndexChecks::load(txn)?);
    }
    Ok(fields)
}

/// Replaces the defaults of `last_reindex_epoch`, `last_corruption_check_epoch` and
/// `corrupted_merkle_tree` with what the last reindex and Merkle check recorded.
fn add_index_checks(fields: &mut Map<String, Value>, checks: &IndexChecks) {
    if let Some(at) = checks.last_reindex {
        fields.insert("last_reindex_epoch".into(), json!(at.as_secs().to_string()));
    }
    if let Some(at) = checks.last_check {
        let seconds = at.as_secs().to_string();
        fields.insert("last_corruption_check_epoch".into(), json!(seconds));
    }
    fields.insert("corrupted_merkle_tree".into(), json!(checks.corrupted));
}

fn role_fields(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Map<String, Value>, Error> {
    // NOTE: the identity is behind the barrier, so a sealed node returns 503 here.
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    if let Some(record) = load_secondary(&view)? {
        drop(view);
        let last_wal = Wal::head(txn)?.index;
        let merkle_root = merkle_root_prefix(&Merkle::root(txn)?);
        let live = core.replication_live.snapshot().secondary;
        return Ok(secondary_fields(
            &record,
            live.as_ref(),
            last_wal,
            merkle_root,
        ));
    }
    if let Some(record) = load_demoted(&view)? {
        drop(view);
        let head = Wal::head(txn)?;
        let merkle_root = merkle_root_prefix(&Merkle::root(txn)?);
        return Ok(demoted_fields(&record, &head, merkle_root));
    }
    let Some(identity) = state::load_primary(&view)? else {
        return Ok(disabled());
    };
    let registry = state::load_registry(&view)?;
    let known: Vec<&str> = registry.secondary_ids().into_iter().collect();
    drop(view);
    let last_wal = Wal::head(txn)?.index;
    let merkle_root = merkle_root_prefix(&Merkle::root(txn)?);
    let mut fields = primary_fields(&identity, last_wal, merkle_root, &known);
    let sessions = core.replication_live.snapshot().secondaries;
    let secondaries: Vec<Value> = sessions
        .iter()
        .map(|(id, peer)| {
            let mut info = cluster_info(peer);
            info.insert("node_id".into(), json!(id));
            Value::Object(info)
        })
        .collect();
    fields.insert("secondaries".into(), Value::Array(secondaries));
    Ok(fields)
}

fn secondary_fields(
    record: &SecondaryRecord,
    live: Option<&SecondaryLive>,
    last_wal: u64,
    merkle_root: String,
) -> Map<String, Value> {
    let bundle = &record.bundle;
    let default = SecondaryLive::default();
    let live = live.unwrap_or(&default);
    let state = match live.state {
        SecondaryState::Connecting if !record.activated => SecondaryState::Bootstrapping.name(),
        other => other.name(),
    };
    let primaries: Vec<Value> = if live.primaries.is_empty() {
        let peer = PeerStatus {
            api_address: bundle.primary_api_addr.clone(),
            cluster_address: bundle
                .primary_cluster_addrs
                .first()
                .cloned()
                .unwrap_or_default(),
            connected: live.connection_state == ConnectionState::Ready,
            last_heartbeat: live.last_heartbeat,
            acked: None,
        };
        vec![Value::Object(cluster_info(&peer))]
    } else {
        live.primaries
            .iter()
            .map(|peer| Value::Object(cluster_info(peer)))
            .collect()
    };
    let mut status = json!({
        "cluster_id": bundle.cluster_id,
        "secondary_id": bundle.secondary_id,
        "mode": "secondary",
        "state": state,
        "connection_state": live.connection_state.name(),
        "primary_cluster_addr": bundle.primary_cluster_addrs.first().cloned().unwrap_or_default(),
        "known_primary_cluster_addrs": bundle.primary_cluster_addrs,
        "primaries": primaries,
        "last_remote_wal": last_wal,
        "last_wal": last_wal,
        "merkle_root": merkle_root,
        "corrupted_merkle_tree": false,
        "last_reindex_epoch": "0",
        "last_corruption_check_epoch": NEVER_CHECKED,
        "ssct_generation_counter": 0,
        "bytes_received": live.bytes_received,
        "bytes_sent": live.bytes_sent,
    });
    if let Some(progress) = live.merkle_sync_progress {
        status["merkle_sync_progress"] = json!({
            "sync_total_keys": progress.total_keys,
            "sync_progress": progress.done,
        });
    }
    if let Some(start) = live.last_start {
        status["last_start"] = json!(start.to_rfc3339_seconds());
    }
    if let Some(error) = &live.last_error {
        status["last_error"] = json!(error);
    }
    match status {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Builds the status of a demoted primary: a secondary with no primary, with its final position.
fn demoted_fields(
    record: &DemotedRecord,
    head: &crate::replication::position::Position,
    merkle_root: String,
) -> Map<String, Value> {
    let status = json!({
        "cluster_id": record.cluster_id,
        "mode": "secondary",
        "state": "idle",
        "connection_state": "idle",
        "demoted": true,
        "final_position": super::failover::position_json(&record.final_position),
        "primaries": [],
        "known_primary_cluster_addrs": [],
        "primary_cluster_addr": "",
        "last_remote_wal": head.index,
        "last_wal": head.index,
        "merkle_root": merkle_root,
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

/// Vault's `ClusterInfo` of one peer node.
fn cluster_info(peer: &PeerStatus) -> Map<String, Value> {
    let connection_status = if peer.connected {
        "connected"
    } else {
        "disconnected"
    };
    let mut info = Map::new();
    info.insert("api_address".into(), json!(peer.api_address));
    info.insert("cluster_address".into(), json!(peer.cluster_address));
    info.insert("connection_status".into(), json!(connection_status));
    let last_heartbeat = peer
        .last_heartbeat
        .map(Timestamp::to_rfc3339_seconds)
        .unwrap_or_default();
    info.insert("last_heartbeat".into(), json!(last_heartbeat));
    info.insert("last_heartbeat_duration_ms".into(), json!("0"));
    info.insert("clock_skew_ms".into(), json!("0"));
    info.insert("replication_primary_canary_age_ms".into(), json!("0"));
    info
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
        "epoch": identity.epoch.number,
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
