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

/// The status of an update of `cubbyhole/x` with `data`, by a token holding only `rules` (HCL
/// or JSON) as policy `p1` and `other` as policy `p2`.
fn write_status(rules: &str, other: Option<&str>, data: serde_json::Value) -> (u16, String) {
    write_status_wrapped(rules, other, data, None)
}

fn write_status_wrapped(
    rules: &str,
    other: Option<&str>,
    data: serde_json::Value,
    wrap_ttl: Option<std::time::Duration>,
) -> (u16, String) {
    let mut node = Node::new();
    node.put_policy("p1", rules);
    let mut policies = vec!["p1"];
    if let Some(other) = other {
        node.put_policy("p2", other);
        policies.push("p2");
    }
    let token = token_with(&mut node, json!(policies));
    let mut request = Request::new(Operation::Update, "cubbyhole/x")
        .with_data(data)
        .with_token(token);
    request.wrap_ttl = wrap_ttl;
    match node.run(&request) {
        crate::Outcome::Response(_) => (200, String::new()),
        crate::Outcome::Error(error) => (error.status(), error.to_string()),
        other => panic!("the write did not finish: {other:?}"),
    }
}

/// The test node mounts nothing at `cubbyhole/`, so a write the ACL lets through ends in the
/// 404 of a path no handler serves.
const ALLOWED: u16 = 404;

const WRITE: &str = r#"capabilities = ["create", "update", "read"]"#;

#[test]
fn denied_parameter_is_rejected() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
denied_parameters = {{ "is_admin" = [] }}
}}"#
    );
    let (status, message) = write_status(&rules, None, json!({"is_admin": true}));
    assert_eq!(status, 403);
    assert!(message.contains("\"is_admin\""), "{message}");
    assert!(message.contains("cubbyhole/*"), "{message}");
    assert_eq!(write_status(&rules, None, json!({"name": "a"})).0, ALLOWED);
}

#[test]
fn denied_value_list_rejects_listed_values() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
denied_parameters = {{ "role" = ["admin", "root"] }}
}}"#
    );
    assert_eq!(write_status(&rules, None, json!({"role": "admin"})).0, 403);
    assert_eq!(
        write_status(&rules, None, json!({"role": ["dev", "root"]})).0,
        403
    );
    assert_eq!(
        write_status(&rules, None, json!({"role": "dev"})).0,
        ALLOWED
    );
}

#[test]
fn denied_star_rejects_every_parameter() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
denied_parameters = {{ "*" = [] }}
}}"#
    );
    assert_eq!(write_status(&rules, None, json!({"any": 1})).0, 403);
    assert_eq!(write_status(&rules, None, json!({})).0, ALLOWED);
}

#[test]
fn allowed_parameters_limit_keys_and_values() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
allowed_parameters = {{ "name" = [], "size" = ["s", "m"] }}
}}"#
    );
    assert_eq!(
        write_status(&rules, None, json!({"name": "x", "size": "m"})).0,
        ALLOWED
    );
    let (status, message) = write_status(&rules, None, json!({"size": "xl"}));
    assert_eq!(status, 403);
    assert!(message.contains("\"size\""), "{message}");
    assert_eq!(write_status(&rules, None, json!({"other": 1})).0, 403);
}

#[test]
fn allowed_star_admits_unlisted_keys() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
allowed_parameters = {{ "*" = [], "size" = ["s"] }}
}}"#
    );
    assert_eq!(write_status(&rules, None, json!({"other": 1})).0, ALLOWED);
    assert_eq!(write_status(&rules, None, json!({"size": "m"})).0, 403);
}

#[test]
fn required_parameter_must_be_sent() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
required_parameters = ["owner"]
}}"#
    );
    let (status, message) = write_status(&rules, None, json!({"a": 1}));
    assert_eq!(status, 403);
    assert!(message.contains("missing parameter \"owner\""), "{message}");
    assert_eq!(
        write_status(&rules, None, json!({"Owner": "me"})).0,
        ALLOWED
    );
}

#[test]
fn parameter_rules_merge_across_policies() {
    let first = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
allowed_parameters = {{ "size" = ["s"] }}
}}"#
    );
    let second = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
allowed_parameters = {{ "size" = ["m"] }}
}}"#
    );
    assert_eq!(
        write_status(&first, Some(&second), json!({"size": "m"})).0,
        ALLOWED
    );
    assert_eq!(
        write_status(&first, Some(&second), json!({"size": "l"})).0,
        403
    );
    let any = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
allowed_parameters = {{ "size" = [] }}
}}"#
    );
    assert_eq!(
        write_status(&first, Some(&any), json!({"size": "l"})).0,
        ALLOWED
    );
    let deny = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
denied_parameters = {{ "size" = ["s"] }}
}}"#
    );
    assert_eq!(
        write_status(&first, Some(&deny), json!({"size": "s"})).0,
        403
    );
}

#[test]
fn parameter_rules_apply_only_on_their_pattern() {
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
}}
           path "cubbyhole/locked" {{
{WRITE}
denied_parameters = {{ "a" = [] }}
}}"#
    );
    assert_eq!(write_status(&rules, None, json!({"a": 1})).0, ALLOWED);
}

#[test]
fn json_policy_parameters_are_enforced() {
    let rules = r#"{"path": {"cubbyhole/*": {"capabilities": ["create", "update"],
        "denied_parameters": {"is_admin": []}}}}"#;
    assert_eq!(write_status(rules, None, json!({"is_admin": true})).0, 403);
}

#[test]
fn wrapping_ttl_bounds_are_enforced() {
    use std::time::Duration;
    let rules = format!(
        r#"path "cubbyhole/*" {{
{WRITE}
min_wrapping_ttl = "1m"
max_wrapping_ttl = 3600
}}"#
    );
    let (status, message) = write_status(&rules, None, json!({"a": 1}));
    assert_eq!(status, 403);
    assert!(message.contains("X-Vault-Wrap-TTL"), "{message}");
    let short = Some(Duration::from_secs(30));
    assert_eq!(
        write_status_wrapped(&rules, None, json!({"a": 1}), short).0,
        403
    );
    let long = Some(Duration::from_secs(7200));
    assert_eq!(
        write_status_wrapped(&rules, None, json!({"a": 1}), long).0,
        403
    );
    let within = Some(Duration::from_secs(600));
    assert_eq!(
        write_status_wrapped(&rules, None, json!({"a": 1}), within).0,
        ALLOWED
    );
}

#[test]
fn malformed_parameter_rule_is_rejected() {
    for rule in [
        "path \"a/*\" {\n allowed_parameters = [\"x\"]\n}",
        "path \"a/*\" {\n required_parameters = \"x\"\n}",
        "path \"a/*\" {\n min_wrapping_ttl = \"soon\"\n}",
    ] {
        let error = crate::acl::parse_policy("p", rule).unwrap_err();
        assert!(
            matches!(error, crate::acl::PolicyError::InvalidValue { .. }),
            "{rule}: {error}"
        );
    }
}
