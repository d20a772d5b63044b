//! Demote, promote, disable, reindex, merkle-check and the quarantine endpoints on one node.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::replication::apply::log_shared_writes;
use crate::replication::failover::{QUARANTINE_PREFIX, Quarantine, QuarantinedWrite};
use crate::replication::merkle::Merkle;
use crate::replication::position::Position;
use crate::replication::role::{Role, load_role};
use crate::replication::wal::{Entry, Wal};
use crate::request::{Logical, Operation, Request, Response};
use crate::storage::{Partition, ReadOnly, Storage};
use crate::sys::replication::tests::identity;
use crate::token::testing::{Node, data_of, logical};
use crate::{Core, CoreConfig, Timestamp};

const ENABLE: &str = "sys/replication/performance/primary/enable";
const DEMOTE: &str = "sys/replication/performance/primary/demote";
const PROMOTE: &str = "sys/replication/performance/secondary/promote";
const STATUS: &str = "sys/replication/performance/status";

fn post(node: &mut Node, path: &str, body: Value) -> Logical {
    let request = node.root_request(Operation::Update, path, body);
    logical(node.ok(request))
}

fn fail(node: &mut Node, path: &str, body: Value) -> String {
    let request = node.root_request(Operation::Update, path, body);
    node.fail(request).to_string()
}

fn status(node: &mut Node) -> serde_json::Map<String, Value> {
    data_of(node.ok(Request::new(Operation::Read, STATUS)))
}

fn enable(node: &mut Node) {
    let body =
        json!({"primary_cluster_addr": "127.0.0.1:8201", "api_addr": "https://127.0.0.1:8200"});
    post(node, ENABLE, body);
}

/// Writes `key` to the shared partition and logs it, as the writer does on a primary.
fn log_write(node: &mut Node, key: &str) -> Entry {
    node.storage
        .write(|txn| {
            txn.put(Partition::Shared, key, b"ciphertext")?;
            log_shared_writes(txn, &Wal::new(100), &[key.to_owned()])
        })
        .unwrap()
        .unwrap()
}

fn reload(node: &Node) {
    node.storage
        .read(|txn| node.core.reload(txn, None))
        .unwrap()
        .unwrap();
}

/// Returns the role a restarted node reads: a new core with the same keyring and storage.
fn role_after_restart(node: &mut Node) -> Role {
    let core = Core::new(CoreConfig::default());
    core.barrier
        .set_keyring(Some(Arc::clone(&node.core.barrier.keyring().unwrap())));
    let rng = &mut node.rng;
    node.storage
        .read(|txn| load_role(&core, &mut ReadOnly(txn), rng))
        .unwrap()
        .unwrap()
}

#[test]
fn demote_reports_final_position() {
    let mut node = Node::new();
    enable(&mut node);
    let entry = log_write(&mut node, "logical/a");
    let demoted = post(&mut node, DEMOTE, json!({}));
    let data = demoted.data.unwrap();
    assert_eq!(data["final_position"]["index"], json!(entry.index));
    assert_eq!(
        data["final_position"]["hash"],
        json!(hex::encode(entry.hash))
    );
    assert_eq!(data["final_position"]["epoch"], json!(entry.epoch.number));

    let shown = status(&mut node);
    assert_eq!(shown["mode"], "secondary");
    assert_eq!(shown["state"], "idle");
    assert_eq!(shown["demoted"], true);
    assert_eq!(shown["final_position"], data["final_position"]);
    assert_eq!(shown["cluster_id"], data["cluster_id"]);
    assert!(matches!(role_after_restart(&mut node), Role::Demoted(_)));
}

#[test]
fn demoted_node_rejects_shared_writes() {
    let mut node = Node::new();
    enable(&mut node);
    post(&mut node, DEMOTE, json!({}));
    reload(&node);
    let policy = json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"});
    let error = fail(&mut node, "sys/policy/reader", policy);
    assert!(error.contains("does not accept writes"), "{error}");
    let again = fail(&mut node, DEMOTE, json!({}));
    assert!(again.contains("secondary"), "{again}");
}

#[test]
fn promote_raises_epoch_with_new_ca() {
    let mut node = Node::new();
    enable(&mut node);
    let before = identity(&mut node);
    let last = log_write(&mut node, "logical/a");
    post(&mut node, DEMOTE, json!({}));
    let promoted = post(&mut node, PROMOTE, json!({}));
    assert!(promoted.warnings[0].contains("new replication CA"));

    let after = identity(&mut node);
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_ne!(after.ca.ca_sha256(), before.ca.ca_sha256());
    assert_eq!(after.epoch.number, before.epoch.number + 1);
    assert_ne!(after.epoch.cluster_id, before.epoch.cluster_id);
    let start = after.epoch_start.clone().unwrap();
    assert_eq!(start.index, last.index);
    assert_eq!(start.hash, last.hash);

    // The next write continues the chain in the new epoch.
    let next = log_write(&mut node, "logical/b");
    assert_eq!(next.index, last.index + 1);
    assert_eq!(next.prev_hash, last.hash);
    assert_eq!(next.epoch.number, after.epoch.number);
    assert_eq!(next.epoch.cluster_id, after.epoch.cluster_id);

    let Role::Primary(credentials) = role_after_restart(&mut node) else {
        panic!("a promoted node is a primary after a restart");
    };
    assert_eq!(credentials.epoch.number, after.epoch.number);
    assert_eq!(status(&mut node)["mode"], "primary");
}

#[test]
fn promote_waits_for_known_primary_head() {
    let mut node = Node::new();
    enable(&mut node);
    let last = log_write(&mut node, "logical/a");
    post(&mut node, DEMOTE, json!({}));
    let ahead = Position {
        index: last.index + 5,
        ..last.position()
    };
    node.core
        .replication_live
        .update_secondary(|live| live.primary_head = Some(ahead));
    let error = fail(&mut node, PROMOTE, json!({}));
    assert!(error.contains("force=true"), "{error}");
    assert!(
        error.contains(&format!("reaches {}", last.index + 5)),
        "{error}"
    );
    assert!(matches!(role_after_restart(&mut node), Role::Demoted(_)));

    post(&mut node, PROMOTE, json!({"force": true}));
    assert!(matches!(role_after_restart(&mut node), Role::Primary(_)));
}

#[test]
fn promote_needs_a_secondary() {
    let mut node = Node::new();
    let standalone = fail(&mut node, PROMOTE, json!({}));
    assert!(
        standalone.contains("not a performance replication secondary"),
        "{standalone}"
    );
    enable(&mut node);
    let primary = fail(&mut node, PROMOTE, json!({}));
    assert!(
        primary.contains("already the performance replication primary"),
        "{primary}"
    );
}

#[test]
fn disable_primary_returns_to_standalone() {
    let mut node = Node::new();
    enable(&mut node);
    log_write(&mut node, "logical/a");
    post(
        &mut node,
        "sys/replication/performance/primary/disable",
        json!({}),
    );
    assert_eq!(status(&mut node)["mode"], "disabled");
    assert!(matches!(role_after_restart(&mut node), Role::Standalone));
    let data = node.storage.dump(Partition::Shared);
    assert!(data.iter().any(|(key, _)| key == "logical/a"));
}

#[test]
fn disable_secondary_accepts_writes_again() {
    let mut node = Node::new();
    enable(&mut node);
    post(&mut node, DEMOTE, json!({}));
    post(
        &mut node,
        "sys/replication/performance/secondary/disable",
        json!({}),
    );
    reload(&node);
    assert_eq!(status(&mut node)["mode"], "disabled");
    let policy = json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"});
    let request = node.root_request(Operation::Update, "sys/policy/reader", policy);
    assert_eq!(node.ok(request), Response::NoContent);
    let again = fail(
        &mut node,
        "sys/replication/performance/secondary/disable",
        json!({}),
    );
    assert!(
        again.contains("not a performance replication secondary"),
        "{again}"
    );
}

#[test]
fn merkle_check_finds_and_reindex_repairs() {
    let mut node = Node::new();
    // The test node writes its initial policies without the index, so index them first.
    post(&mut node, "sys/replication/reindex", json!({}));
    log_write(&mut node, "logical/a");
    let clean = post(&mut node, "sys/replication/merkle-check", json!({}));
    assert_eq!(clean.data.unwrap()["corrupted_merkle_tree"], false);

    // A write that bypasses the index leaves it behind the data.
    node.storage
        .write(|txn| txn.put(Partition::Shared, "logical/unindexed", b"x"))
        .unwrap();
    let broken = post(&mut node, "sys/replication/merkle-check", json!({}));
    assert_eq!(broken.data.unwrap()["corrupted_merkle_tree"], true);

    let reindexed = post(&mut node, "sys/replication/reindex", json!({}));
    let root = node.storage.read(|txn| Merkle::root(txn)).unwrap().unwrap();
    let shown = reindexed.data.unwrap()["merkle_root"].clone();
    assert_eq!(shown, json!(super::merkle_root_prefix(&root)));
    let repaired = post(&mut node, "sys/replication/merkle-check", json!({}));
    assert_eq!(repaired.data.unwrap()["corrupted_merkle_tree"], false);

    // Status shows when both last ran, once replication is enabled.
    enable(&mut node);
    let shown = status(&mut node);
    let seconds = json!(node.now.as_secs().to_string());
    assert_eq!(shown["last_reindex_epoch"], seconds);
    assert_eq!(shown["last_corruption_check_epoch"], seconds);
    assert_eq!(shown["corrupted_merkle_tree"], false);
}

#[test]
fn recover_needs_a_secondary() {
    let mut node = Node::new();
    let error = fail(&mut node, "sys/replication/recover", json!({}));
    assert!(
        error.contains("not a performance replication secondary"),
        "{error}"
    );
    assert_eq!(node.core.replication_live.snapshot().recover_requests, 0);
}

#[test]
fn quarantine_lists_and_reads_values() {
    let mut node = Node::new();
    let list =
        Request::new(Operation::List, "sys/replication/quarantine").with_token(node.root.clone());
    assert_eq!(node.fail(list.clone()).status(), 404);

    let (core, rng) = (&node.core, &mut node.rng);
    node.storage
        .write(|txn| {
            let mut view = core.barrier.view(txn, rng)?;
            view.put(Partition::Shared, "logical/kept", b"quarantined-value")?;
            let ciphertext = view.raw().get(Partition::Shared, "logical/kept")?.unwrap();
            let quarantine = Quarantine {
                id: "epoch-2-index-4".into(),
                quarantined_at: Timestamp::from_secs(1_700_000_000),
                new_epoch_number: 2,
                fork: Position::default(),
                local_head: Position::default(),
                complete: true,
                writes: vec![
                    QuarantinedWrite {
                        key: "logical/kept".into(),
                        position: Position::default(),
                        value: Some(ciphertext),
                    },
                    QuarantinedWrite {
                        key: "logical/gone".into(),
                        position: Position::default(),
                        value: None,
                    },
                ],
            };
            let key = format!("{QUARANTINE_PREFIX}{}", quarantine.id);
            view.put_json(Partition::Local, &key, &quarantine)
        })
        .unwrap();

    let listed = data_of(node.ok(list));
    assert_eq!(listed["keys"], json!(["epoch-2-index-4"]));
    let read = Request::new(
        Operation::Read,
        "sys/replication/quarantine/epoch-2-index-4",
    )
    .with_token(node.root.clone());
    let data = data_of(node.ok(read));
    assert_eq!(data["complete"], true);
    assert_eq!(data["writes"][0]["key"], "logical/kept");
    assert_eq!(data["writes"][0]["operation"], "put");
    assert_eq!(
        data["writes"][0]["value"],
        json!(STANDARD.encode("quarantined-value"))
    );
    assert_eq!(data["writes"][1]["operation"], "delete");
    assert_eq!(data["writes"][1]["value"], Value::Null);
}

#[test]
fn quarantine_needs_sudo() {
    let mut node = Node::new();
    let auth = node.create_token(&node.root.clone(), json!({"policies": ["default"]}));
    let list = Request::new(Operation::List, "sys/replication/quarantine")
        .with_token(auth.client_token.expose());
    assert_eq!(node.fail(list).status(), 403);
}
