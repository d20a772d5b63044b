use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::Outcome;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request};
use crate::storage::{Partition, Storage};
use crate::token::testing::Node;

const WINDOW: Duration = Duration::from_secs(600);

fn node_with_kv() -> Node {
    let mut node = Node::new();
    let mount = node.root_request(
        Operation::Update,
        "sys/mounts/secret",
        json!({"type": "kv-v2"}),
    );
    node.ok(mount);
    let local = node.root_request(
        Operation::Update,
        "sys/mounts/local-kv",
        json!({"type": "kv", "local": true}),
    );
    node.ok(local);
    node
}

fn root_identity() -> ForwardedIdentity {
    ForwardedIdentity {
        accessor: "accessor-1".into(),
        policies: vec!["root".into()],
        display_name: "root".into(),
        token_path: "auth/token/root".into(),
    }
}

fn forwarded(id: &str, operation: Operation, path: &str, data: Value) -> ForwardedRequest {
    ForwardedRequest {
        request_id: id.into(),
        operation,
        path: path.into(),
        data_json: data.to_string(),
        identity: root_identity(),
    }
}

fn kv_put(id: &str, value: &str) -> ForwardedRequest {
    forwarded(
        id,
        Operation::Update,
        "secret/data/app",
        json!({"data": {"password": value}}),
    )
}

/// Runs the executor in one transaction, which commits only when it succeeds.
fn execute(
    node: &mut Node,
    secondary: &str,
    request: &ForwardedRequest,
) -> Result<ForwardedResult, Error> {
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    node.storage.write(|txn| {
        let mut ctx = Ctx::new(now, &mut *rng);
        execute_forwarded(core, &mut ctx, secondary, request, WINDOW, txn)
    })
}

fn version_of(result: &ForwardedResult) -> u64 {
    let ForwardedResult::Logical { data_json, .. } = result else {
        panic!("expected an envelope, got {result:?}");
    };
    let data: Value = serde_json::from_str(data_json.as_deref().unwrap()).unwrap();
    data["version"].as_u64().unwrap()
}

fn status_of(result: Result<ForwardedResult, Error>) -> u16 {
    result.unwrap_err().status()
}

fn message_of(error: &Error) -> String {
    match error {
        Error::Api { messages, .. } => messages.join("; "),
        other => other.to_string(),
    }
}

fn record_count(node: &Node) -> usize {
    node.storage
        .read(|txn| {
            txn.scan(Partition::Shared, "core/forwarded/requests/", None, None)
                .unwrap()
                .len()
        })
        .unwrap()
}

#[test]
fn secondary_write_becomes_forward() {
    let mut node = node_with_kv();
    node.core
        .set_secondary_primary_addr(Some("https://127.0.0.1:8200".into()));
    let write = node.root_request(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v"}}),
    );
    let Outcome::Forward(Some(caller)) = node.run(&write) else {
        panic!("a shared write on a secondary is forwarded");
    };
    assert!(caller.is_root());
    assert!(!caller.accessor.is_empty());
}

#[test]
fn secondary_blind_delete_becomes_forward() {
    let mut node = node_with_kv();
    node.core
        .set_secondary_primary_addr(Some("https://127.0.0.1:8200".into()));
    let delete = node.root_request(
        Operation::Delete,
        "secret/metadata/never-written",
        json!({}),
    );
    assert!(matches!(node.run(&delete), Outcome::Forward(Some(_))));
}

/// Returns a node whose `secret/data/app` is at version 1.
fn node_with_app_v1() -> Node {
    let mut node = node_with_kv();
    let written = node.root_request(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v1"}}),
    );
    node.ok(written);
    node
}

#[test]
fn secondary_stale_cas_write_becomes_forward() {
    let mut node = node_with_app_v1();
    node.core
        .set_secondary_primary_addr(Some("https://127.0.0.1:8200".into()));
    // This node has version 1; the primary may have version 2 already, so only the primary
    // can tell whether cas=2 matches.
    let ahead = node.root_request(
        Operation::Update,
        "secret/data/app",
        json!({"options": {"cas": 2}, "data": {"k": "v3"}}),
    );
    assert!(matches!(node.run(&ahead), Outcome::Forward(Some(_))));
    let patch = node.root_request(
        Operation::Patch,
        "secret/data/not-here-yet",
        json!({"data": {"k": "v"}}),
    );
    assert!(matches!(node.run(&patch), Outcome::Forward(Some(_))));
}

#[test]
fn primary_cas_mismatch_writes_nothing() {
    let mut node = node_with_app_v1();
    let before = node.storage.dump(Partition::Shared);
    let mismatch = node.root_request(
        Operation::Update,
        "secret/data/app",
        json!({"options": {"cas": 2}, "data": {"k": "v3"}}),
    );
    let Outcome::Error(error) = node.run(&mismatch) else {
        panic!("a cas mismatch on the primary is an error");
    };
    assert_eq!(error.status(), 400);
    assert!(message_of(&error).contains("check-and-set"), "{error}");
    assert_eq!(node.storage.dump(Partition::Shared), before);
}

#[test]
fn secondary_read_and_local_write_run_locally() {
    let mut node = node_with_kv();
    node.core
        .set_secondary_primary_addr(Some("https://127.0.0.1:8200".into()));
    let read = node.root_request(Operation::Read, "sys/mounts", json!({}));
    assert!(matches!(node.run(&read), Outcome::Response(_)));
    let local = node.root_request(Operation::Update, "local-kv/note", json!({"a": "b"}));
    assert!(matches!(node.run(&local), Outcome::Response(_)));
}

#[test]
fn standalone_write_is_not_forwarded() {
    let mut node = node_with_kv();
    let write = node.root_request(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v"}}),
    );
    assert!(matches!(node.run(&write), Outcome::Response(_)));
}

#[test]
fn executor_runs_request_id_once() {
    let mut node = node_with_kv();
    let first = execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    let retry = execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    assert_eq!(version_of(&first), 1);
    assert_eq!(retry, first, "a retry gets the recorded response");

    let next = execute(&mut node, "east", &kv_put("r2", "two")).unwrap();
    assert_eq!(version_of(&next), 2, "a new request id runs again");
    let other_secondary = execute(&mut node, "west", &kv_put("r1", "three")).unwrap();
    assert_eq!(
        version_of(&other_secondary),
        3,
        "request ids are per secondary"
    );
}

#[test]
fn executor_rejects_reused_id_with_other_request() {
    let mut node = node_with_kv();
    execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    let error = execute(&mut node, "east", &kv_put("r1", "changed")).unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(message_of(&error).contains("already used"), "{error}");
}

#[test]
fn executor_record_is_ciphertext() {
    let mut node = node_with_kv();
    execute(&mut node, "east", &kv_put("r1", "hunter2-secret")).unwrap();
    let stored = node.storage.dump(Partition::Shared);
    let record = stored
        .iter()
        .find(|(key, _)| key.starts_with("core/forwarded/requests/east/r1"))
        .expect("the record is stored in the shared partition");
    let text = String::from_utf8_lossy(&record.1);
    assert!(!text.contains("version"), "the record is encrypted");
}

#[test]
fn executor_records_expire_after_window() {
    let mut node = node_with_kv();
    execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    assert_eq!(record_count(&node), 1);

    node.advance(WINDOW + Duration::from_secs(1));
    execute(&mut node, "east", &kv_put("r2", "two")).unwrap();
    assert_eq!(
        record_count(&node),
        1,
        "the later write deleted the expired record"
    );

    let rerun = execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    assert_eq!(version_of(&rerun), 3, "an expired id runs again");
}

#[test]
fn executor_cleanup_is_bounded() {
    let mut node = node_with_kv();
    for number in 0..(executor::CLEANUP_BATCH + 4) {
        execute(&mut node, "east", &kv_put(&format!("r{number}"), "v")).unwrap();
    }
    node.advance(WINDOW + Duration::from_secs(1));
    let now = node.now;
    let deleted = node
        .storage
        .write(|txn| executor::delete_expired(txn, now))
        .unwrap();
    assert_eq!(deleted, executor::CLEANUP_BATCH);
    assert_eq!(record_count(&node), 4);
}

#[test]
fn executor_keeps_local_partition_read_only() {
    let mut node = node_with_kv();
    let local = forwarded("r1", Operation::Update, "local-kv/note", json!({"a": "b"}));
    let error = execute(&mut node, "east", &local).unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(message_of(&error).contains("local state"), "{error}");
    assert_eq!(record_count(&node), 0);
}

#[test]
fn executor_refuses_control_paths() {
    let mut node = node_with_kv();
    let paths = [
        "sys/replication/performance/primary/revoke-secondary",
        "sys/seal",
        "sys/unseal",
        "sys/rekey/init",
        "sys/rekey-recovery-key/init",
        "sys/generate-root/attempt",
        "auth/token/create",
        "auth/userpass/login/alice",
        "auth/approle/login",
        "sys/audit/file",
    ];
    for path in paths {
        let request = forwarded("r1", Operation::Update, path, json!({}));
        let error = execute(&mut node, "east", &request).unwrap_err();
        assert_eq!(error.status(), 400, "{path}");
        assert!(
            message_of(&error).contains("cannot be forwarded"),
            "{path}: {error}"
        );
    }
    assert!(check_forwardable("secret/data/login").is_ok());
    assert!(check_forwardable("sys/policy/ops").is_ok());
}

#[test]
fn executor_denies_unknown_policy() {
    let mut node = node_with_kv();
    let mut request = kv_put("r1", "one");
    request.identity.policies = vec!["made-up".into()];
    assert_eq!(status_of(execute(&mut node, "east", &request)), 403);
}

#[test]
fn executor_denies_insufficient_policy() {
    let mut node = node_with_kv();
    node.put_policy("reader", r#"path "secret/*" { capabilities = ["read"] }"#);
    node.put_policy(
        "writer",
        r#"path "secret/*" { capabilities = ["create", "update"] }"#,
    );
    let mut request = kv_put("r1", "one");
    request.identity.policies = vec!["reader".into()];
    assert_eq!(status_of(execute(&mut node, "east", &request)), 403);

    request.identity.policies = vec!["writer".into()];
    let allowed = execute(&mut node, "east", &request).unwrap();
    assert_eq!(version_of(&allowed), 1);
}

#[test]
fn executor_rejects_invalid_request_id() {
    let mut node = node_with_kv();
    for id in ["", "a/b", &"x".repeat(65)] {
        let error = execute(&mut node, "east", &kv_put(id, "one")).unwrap_err();
        assert_eq!(error.status(), 400, "{id:?}");
        assert!(message_of(&error).contains("request id"), "{error}");
    }
}

#[test]
fn forwarded_request_carries_no_token() {
    let request = Request::new(Operation::Update, "secret/data/app")
        .with_data(json!({"data": {"password": "p"}}))
        .with_token("s.client-token");
    let caller = Caller {
        accessor: "acc".into(),
        token_hash: "hash".into(),
        policies: vec!["default".into()],
        display_name: "token-alice".into(),
        token_path: "auth/token/create".into(),
    };
    let forwarded = ForwardedRequest::new("r1".into(), &request, &caller);
    let bytes = postcard::to_allocvec(&ForwardMessage::Request(forwarded.clone())).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("s.client-token"));
    assert!(!text.contains("hash"));
    assert!(!format!("{forwarded:?}").contains("password"));
    assert_eq!(forwarded.caller().accessor, "acc");
    assert!(forwarded.to_request().unwrap().token.is_none());
}

#[test]
fn forwarded_result_round_trips() {
    let mut node = node_with_kv();
    let result = execute(&mut node, "east", &kv_put("r1", "one")).unwrap();
    let bytes = postcard::to_allocvec(&result).unwrap();
    let decoded: ForwardedResult = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, result);
    let response = decoded.into_result().unwrap();
    let crate::request::Response::Logical(logical) = response else {
        panic!("expected an envelope");
    };
    assert_eq!(logical.data.unwrap()["version"], json!(1));
}
