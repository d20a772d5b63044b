use std::time::Duration;

use serde_json::{Value, json};

use crate::request::Operation::{List, Update};
use crate::request::{Request, Response};
use crate::storage::{Partition, Storage, StorageError};
use crate::token::testing::{Node, auth_of, data_of, logical};
use crate::{Ctx, Timestamp};

/// Creates a token with `ttl` as root and returns it with its lease id.
fn token_with_lease(node: &mut Node, ttl: &str, max: &str) -> (String, String) {
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"ttl": ttl, "explicit_max_ttl": max}));
    let token = auth.client_token.expose().to_owned();
    let keys = lease_ids(node, "auth/token/create/");
    assert_eq!(keys.len(), 1, "one lease per token: {keys:?}");
    (token, format!("auth/token/create/{}", keys[0]))
}

fn lease_ids(node: &mut Node, prefix: &str) -> Vec<String> {
    let request = node.root_request(List, &format!("sys/leases/lookup/{prefix}"), json!({}));
    let data = data_of(node.ok(request));
    data["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect()
}

fn lookup(node: &mut Node, lease_id: &str) -> serde_json::Map<String, Value> {
    let request = node.root_request(Update, "sys/leases/lookup", json!({ "lease_id": lease_id }));
    data_of(node.ok(request))
}

fn token_works(node: &mut Node, token: &str) -> bool {
    let request =
        Request::new(crate::request::Operation::Read, "auth/token/lookup-self").with_token(token);
    matches!(node.run(&request), crate::Outcome::Response(_))
}

fn poll_timeout(node: &Node) -> Option<Timestamp> {
    node.storage
        .read(|txn| node.core.poll_timeout(txn))
        .unwrap()
        .unwrap()
}

fn handle_timeout(node: &mut Node) -> usize {
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    node.storage
        .write(|txn| core.handle_timeout(&mut Ctx::new(now, &mut *rng), txn))
        .unwrap()
}

#[test]
fn token_with_ttl_gets_lease() {
    let mut node = Node::new();
    let created = node.now;
    let (_, lease_id) = token_with_lease(&mut node, "1h", "0");
    assert!(lease_id.starts_with("auth/token/create/h"), "{lease_id}");

    let data = lookup(&mut node, &lease_id);
    assert_eq!(data["id"], json!(lease_id));
    assert_eq!(data["issue_time"], json!(created.to_rfc3339()));
    let expire = created.saturating_add(Duration::from_secs(3600));
    assert_eq!(data["expire_time"], json!(expire.to_rfc3339()));
    assert_eq!(data["last_renewal"], Value::Null);
    assert_eq!(data["renewable"], json!(true));
    assert_eq!(data["ttl"], json!(3600));
}

#[test]
fn root_token_has_no_lease() {
    let mut node = Node::new();
    let request = node.root_request(List, "sys/leases/lookup/", json!({}));
    assert_eq!(node.fail(request).status(), 404);
    assert_eq!(poll_timeout(&node), None);
}

#[test]
fn lookup_of_unknown_lease_fails() {
    let mut node = Node::new();
    let request = node.root_request(
        Update,
        "sys/leases/lookup",
        json!({"lease_id": "auth/x/h1"}),
    );
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("invalid lease"), "{error}");
    let missing = node.root_request(Update, "sys/leases/lookup", json!({}));
    assert!(node.fail(missing).to_string().contains("lease_id"));
}

#[test]
fn renew_extends_within_max_ttl() {
    let mut node = Node::new();
    let (_, lease_id) = token_with_lease(&mut node, "10m", "30m");
    node.advance(Duration::from_secs(300));

    let renew = node.root_request(
        Update,
        "sys/leases/renew",
        json!({"lease_id": lease_id, "increment": "20m"}),
    );
    let renewed = logical(node.ok(renew));
    assert_eq!(renewed.lease_id, lease_id);
    assert!(renewed.renewable);
    assert_eq!(renewed.lease_duration, 1200);
    let data = lookup(&mut node, &lease_id);
    assert_eq!(data["last_renewal"], json!(node.now.to_rfc3339()));
    assert_eq!(data["ttl"], json!(1200));

    // 1300s after creation, the explicit maximum of 1800s leaves 500s.
    node.advance(Duration::from_secs(1000));
    let again = node.root_request(
        Update,
        &format!("sys/leases/renew/{lease_id}"),
        json!({"increment": 3600}),
    );
    assert_eq!(logical(node.ok(again)).lease_duration, 500);
    assert_eq!(
        poll_timeout(&node),
        Some(node.now.saturating_add(Duration::from_secs(500)))
    );
}

#[test]
fn renew_of_unknown_lease_fails() {
    let mut node = Node::new();
    let request = node.root_request(Update, "sys/renew/auth/token/create/hnone", json!({}));
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("lease not found"), "{error}");
}

#[test]
fn revoke_removes_lease_and_token() {
    let mut node = Node::new();
    let (token, lease_id) = token_with_lease(&mut node, "1h", "0");
    let child = auth_of(
        node.ok(Request::new(Update, "auth/token/create")
            .with_data(json!({"ttl": "2h"}))
            .with_token(token.clone())),
    );
    assert!(token_works(&mut node, child.client_token.expose()));

    let revoke = node.root_request(Update, "sys/leases/revoke", json!({ "lease_id": lease_id }));
    assert_eq!(node.ok(revoke), Response::NoContent);
    assert!(!token_works(&mut node, &token));
    assert!(!token_works(&mut node, child.client_token.expose()));
    let request = node.root_request(Update, "sys/leases/lookup", json!({ "lease_id": lease_id }));
    assert_eq!(node.fail(request).status(), 400);
    assert_eq!(poll_timeout(&node), None, "the child's lease went with it");

    let again = node.root_request(Update, &format!("sys/revoke/{lease_id}"), json!({}));
    assert_eq!(node.ok(again), Response::NoContent);
}

#[test]
fn revoke_prefix_revokes_matching_leases() {
    let mut node = Node::new();
    let (first, _) = token_with_lease(&mut node, "1h", "0");
    let root = node.root.clone();
    let orphan = Request::new(Update, "auth/token/create-orphan")
        .with_data(json!({"ttl": "1h"}))
        .with_token(root);
    let second = auth_of(node.ok(orphan)).client_token.expose().to_owned();
    assert_eq!(lease_ids(&mut node, "auth/token/").len(), 2);

    let revoke = node.root_request(
        Update,
        "sys/leases/revoke-prefix/auth/token/create-orphan",
        json!({}),
    );
    assert_eq!(node.ok(revoke), Response::NoContent);
    assert!(token_works(&mut node, &first));
    assert!(!token_works(&mut node, &second));

    let legacy = node.root_request(Update, "sys/revoke-prefix/auth/token/", json!({}));
    assert_eq!(node.ok(legacy), Response::NoContent);
    assert!(!token_works(&mut node, &first));
}

#[test]
fn revoke_prefix_needs_prefix_and_sudo() {
    let mut node = Node::new();
    let empty = node.root_request(Update, "sys/leases/revoke-prefix/", json!({}));
    assert_eq!(node.fail(empty).status(), 400);

    node.put_policy(
        "leases",
        r#"path "sys/leases/*" { capabilities = ["update"] }"#,
    );
    let root = node.root.clone();
    let limited = node.create_token(&root, json!({"policies": ["leases"]}));
    let request = Request::new(Update, "sys/leases/revoke-prefix/auth/token/")
        .with_token(limited.client_token.expose());
    assert_eq!(node.fail(request).status(), 403);
}

#[test]
fn expiry_revokes_at_the_right_now() {
    let mut node = Node::new();
    let (token, lease_id) = token_with_lease(&mut node, "90s", "0");
    let expires = node.now.saturating_add(Duration::from_secs(90));
    assert_eq!(poll_timeout(&node), Some(expires));

    node.now = Timestamp::from_nanos(expires.as_nanos() - 1);
    assert_eq!(handle_timeout(&mut node), 0, "one nanosecond early");
    assert!(token_works(&mut node, &token));

    node.now = expires;
    assert_eq!(handle_timeout(&mut node), 1);
    assert_eq!(poll_timeout(&node), None);
    let request = node.root_request(Update, "sys/leases/lookup", json!({ "lease_id": lease_id }));
    assert_eq!(node.fail(request).status(), 400);
    let stored = node.storage.dump(Partition::Local);
    assert!(
        !stored.iter().any(|(key, _)| key.starts_with("lease/")),
        "no lease key is left behind"
    );
    assert!(!token_works(&mut node, &token));
}

#[test]
fn expiry_is_bounded_per_call() {
    let mut node = Node::new();
    let root = node.root.clone();
    let count = crate::lease::MAX_EXPIRED_PER_CALL + 3;
    for _ in 0..count {
        node.create_token(&root, json!({"ttl": "1m", "no_parent": true}));
    }
    node.advance(Duration::from_secs(60));
    assert_eq!(
        handle_timeout(&mut node),
        crate::lease::MAX_EXPIRED_PER_CALL
    );
    assert!(poll_timeout(&node).is_some_and(|next| next <= node.now));
    assert_eq!(handle_timeout(&mut node), 3);
    assert_eq!(poll_timeout(&node), None);
}

#[test]
fn sealed_core_has_no_timeout() {
    let mut node = Node::new();
    token_with_lease(&mut node, "1m", "0");
    node.core.barrier.seal();
    assert_eq!(poll_timeout(&node), None);
    node.advance(Duration::from_secs(60));
    let result: Result<usize, StorageError> = node.storage.write(|txn| {
        let mut ctx = Ctx::new(node.now, &mut node.rng);
        Ok(node.core.handle_timeout(&mut ctx, txn).unwrap())
    });
    assert_eq!(result, Ok(0));
}
