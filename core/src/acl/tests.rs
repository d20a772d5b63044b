use serde_json::json;

use crate::request::{Operation, Request};
use crate::token::testing::{Node, data_of};

/// The status of a request with `token`: 403 is an ACL denial, and the 404 of a path no
/// handler serves shows that the ACL let it through.
fn status(node: &mut Node, token: &str, operation: Operation, path: &str) -> u16 {
    let request = Request::new(operation, path).with_token(token);
    match node.run(&request) {
        crate::Outcome::Response(_) => 200,
        crate::Outcome::Error(error) => error.status(),
        other => panic!("{path} did not finish: {other:?}"),
    }
}

fn token_with(node: &mut Node, policies: serde_json::Value) -> String {
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({ "policies": policies }));
    auth.client_token.expose().to_owned()
}

#[test]
fn default_policy_allows_self_service() {
    let mut node = Node::new();
    let token = token_with(&mut node, json!(["default"]));
    assert_eq!(
        status(&mut node, &token, Operation::Read, "auth/token/lookup-self"),
        200
    );
    assert_eq!(
        status(&mut node, &token, Operation::Update, "auth/token/lookup"),
        403
    );
    assert_eq!(
        status(&mut node, &token, Operation::Read, "cubbyhole/x"),
        404
    );
}

#[test]
fn token_without_default_cannot_look_itself_up() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "no_default_policy": true}));
    assert_eq!(auth.policies, ["a"]);
    let token = auth.client_token.expose();
    assert_eq!(
        status(&mut node, token, Operation::Read, "auth/token/lookup-self"),
        403
    );
}

#[test]
fn operations_map_to_capabilities() {
    let mut node = Node::new();
    node.put_policy(
        "reader",
        r#"path "secret/*" { capabilities = ["read", "list"] }
           path "secret/open" { capabilities = ["update", "delete", "patch"] }"#,
    );
    let token = token_with(&mut node, json!(["reader"]));
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/a"), 404);
    assert_eq!(status(&mut node, &token, Operation::List, "secret/"), 404);
    assert_eq!(
        status(&mut node, &token, Operation::Update, "secret/a"),
        403
    );
    assert_eq!(
        status(&mut node, &token, Operation::Delete, "secret/a"),
        403
    );
    assert_eq!(
        status(&mut node, &token, Operation::Update, "secret/open"),
        404
    );
    assert_eq!(
        status(&mut node, &token, Operation::Delete, "secret/open"),
        404
    );
    assert_eq!(
        status(&mut node, &token, Operation::Patch, "secret/open"),
        404
    );
    assert_eq!(
        status(&mut node, &token, Operation::Read, "secret/open"),
        403
    );
    assert_eq!(status(&mut node, &token, Operation::Read, "other/a"), 403);
}

#[test]
fn root_protected_paths_need_sudo() {
    let mut node = Node::new();
    node.put_policy(
        "audit-read",
        r#"path "sys/audit" { capabilities = ["read"] }"#,
    );
    node.put_policy(
        "audit-sudo",
        r#"path "sys/audit" { capabilities = ["read", "sudo"] }"#,
    );
    let plain = token_with(&mut node, json!(["audit-read"]));
    let sudo = token_with(&mut node, json!(["audit-sudo"]));
    assert_eq!(status(&mut node, &plain, Operation::Read, "sys/audit"), 403);
    assert_eq!(status(&mut node, &sudo, Operation::Read, "sys/audit"), 200);
}

#[test]
fn deny_in_another_policy_wins() {
    let mut node = Node::new();
    node.put_policy("allow", r#"path "secret/x" { capabilities = ["read"] }"#);
    node.put_policy("block", r#"path "secret/x" { capabilities = ["deny"] }"#);
    let token = token_with(&mut node, json!(["allow", "block"]));
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/x"), 403);
}

#[test]
fn policy_changes_apply_at_once() {
    let mut node = Node::new();
    node.put_policy("p", r#"path "secret/x" { capabilities = ["read"] }"#);
    let token = token_with(&mut node, json!(["p"]));
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/x"), 404);
    node.put_policy("p", r#"path "secret/x" { capabilities = ["list"] }"#);
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/x"), 403);
    let request = node.root_request(Operation::Delete, "sys/policy/p", json!({}));
    node.ok(request);
    assert_eq!(status(&mut node, &token, Operation::List, "secret/x"), 403);
}

#[test]
fn capabilities_self_reports_per_path() {
    let mut node = Node::new();
    node.put_policy(
        "p",
        r#"path "secret/*" { capabilities = ["update", "read"] }"#,
    );
    let token = token_with(&mut node, json!(["p"]));
    let request = Request::new(Operation::Update, "sys/capabilities-self")
        .with_data(json!({"paths": ["secret/a", "other"]}))
        .with_token(token.clone());
    let data = data_of(node.ok(request));
    assert_eq!(data["secret/a"], json!(["read", "update"]));
    assert_eq!(data["other"], json!(["deny"]));
    assert!(!data.contains_key("capabilities"));

    let request = Request::new(Operation::Update, "sys/capabilities-self")
        .with_data(json!({"path": "secret/a"}))
        .with_token(token);
    let data = data_of(node.ok(request));
    assert_eq!(data["capabilities"], json!(["read", "update"]));

    let request = node.root_request(
        Operation::Update,
        "sys/capabilities-self",
        json!({"paths": ["anything"]}),
    );
    assert_eq!(data_of(node.ok(request))["capabilities"], json!(["root"]));
}

#[test]
fn capabilities_of_another_token() {
    let mut node = Node::new();
    node.put_policy("p", r#"path "secret/*" { capabilities = ["read"] }"#);
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["p"]}));
    let request = node.root_request(
        Operation::Update,
        "sys/capabilities",
        json!({"token": auth.client_token.expose(), "paths": ["secret/a"]}),
    );
    assert_eq!(data_of(node.ok(request))["secret/a"], json!(["read"]));
    let request = node.root_request(
        Operation::Update,
        "sys/capabilities-accessor",
        json!({"accessor": auth.accessor, "paths": ["secret/a"]}),
    );
    assert_eq!(data_of(node.ok(request))["capabilities"], json!(["read"]));
    let request = node.root_request(
        Operation::Update,
        "sys/capabilities-accessor",
        json!({"accessor": "nope", "paths": ["secret/a"]}),
    );
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn replicated_policy_write_applies_without_reload() {
    let mut node = Node::new();
    node.put_policy("p", r#"path "secret/x" { capabilities = ["read"] }"#);
    let token = token_with(&mut node, json!(["p"]));
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/x"), 404);

    // A write that arrives by replication bypasses the policy handler and its cache update.
    let stored = json!({"name": "p", "raw": r#"path "secret/x" { capabilities = ["list"] }"#});
    let (core, rng) = (&node.core, &mut node.rng);
    crate::storage::Storage::write(&node.storage, |txn| {
        let mut view = core.barrier.view(txn, rng)?;
        view.put_json(crate::storage::Partition::Shared, "sys/policy/p", &stored)
    })
    .unwrap();
    assert_eq!(status(&mut node, &token, Operation::Read, "secret/x"), 403);
    assert_eq!(status(&mut node, &token, Operation::List, "secret/x"), 404);

    let changed = [(
        crate::storage::Partition::Shared,
        String::from("sys/policy/p"),
    )];
    crate::storage::Storage::read(&node.storage, |txn| {
        node.core.policies.reload(&node.core, txn, Some(&changed))
    })
    .unwrap()
    .unwrap();
    crate::storage::Storage::read(&node.storage, |txn| node.core.reload(txn, None))
        .unwrap()
        .unwrap();
    assert_eq!(status(&mut node, &token, Operation::List, "secret/x"), 404);
}
