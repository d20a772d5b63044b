use std::time::Duration;

use serde_json::{Value, json};

use super::INVALID_TOKEN;
use crate::Ctx;
use crate::Outcome;
use crate::error::Error;
use crate::request::{Logical, Operation, Request, WrapInfo};
use crate::storage::{Partition, ReadOnly, Storage};
use crate::token::testing::{Node, auth_of, data_of, logical};

const SECRET: &str = "hunter2-wrapped";
const UNWRAP: &str = "sys/wrapping/unwrap";
const LOOKUP: &str = "sys/wrapping/lookup";
const REWRAP: &str = "sys/wrapping/rewrap";

/// A node with the built-in mounts and a kv mount at `secret/` holding `secret/foo`.
fn node_with_secret() -> Node {
    let mut node = Node::new();
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    node.storage
        .write(|txn| {
            let mut view = core.barrier.view(txn, rng)?;
            crate::mounts::initialize(core, &mut view, now)
        })
        .unwrap();
    let mount = node.root_request(
        Operation::Update,
        "sys/mounts/secret",
        json!({"type": "kv"}),
    );
    node.ok(mount);
    let write = node.root_request(
        Operation::Update,
        "secret/foo",
        json!({ "password": SECRET }),
    );
    node.ok(write);
    node
}

fn wrapped(mut request: Request, ttl: u64) -> Request {
    request.wrap_ttl = Some(Duration::from_secs(ttl));
    request
}

fn wrapped_read(node: &Node, ttl: u64) -> Request {
    wrapped(
        node.root_request(Operation::Read, "secret/foo", json!({})),
        ttl,
    )
}

fn wrap_info(logical: Logical) -> WrapInfo {
    logical.wrap_info.expect("a wrapped response has wrap_info")
}

fn token_of(wrap_info: &WrapInfo) -> String {
    wrap_info.token.expose().to_owned()
}

fn with_token_body(node: &Node, path: &str, token: &str) -> Request {
    node.root_request(Operation::Update, path, json!({ "token": token }))
}

fn message(error: &Error) -> String {
    match error {
        Error::Api { messages, .. } => messages.join("; "),
        other => other.to_string(),
    }
}

fn assert_invalid(error: &Error) {
    assert_eq!(error.status(), 400);
    assert_eq!(message(error), INVALID_TOKEN);
}

fn accessors(node: &mut Node) -> Vec<Value> {
    let list = node.root_request(Operation::List, "auth/token/accessors", json!({}));
    data_of(node.ok(list))["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn wrapped_kv_read_returns_only_wrap_info_and_unwraps_once() {
    let mut node = node_with_secret();
    let response = logical(node.ok(wrapped_read(&node, 300)));
    assert_eq!(response.data, None);
    assert_eq!(response.auth, None);
    let info = wrap_info(response);
    assert_eq!(info.ttl, 300);
    assert_eq!(info.creation_path, "secret/foo");
    assert_eq!(info.creation_time, node.now.to_rfc3339());
    assert_eq!(info.wrapped_accessor, "");
    assert!(!info.accessor.is_empty());

    let unwrap = with_token_body(&node, UNWRAP, &token_of(&info));
    assert_eq!(data_of(node.ok(unwrap.clone()))["password"], SECRET);
    assert_invalid(&node.fail(unwrap));
}

#[test]
fn wrapping_token_as_client_token_unwraps_once() {
    let mut node = node_with_secret();
    let token = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 300)))));
    let unwrap = Request::new(Operation::Update, UNWRAP).with_token(token);
    assert_eq!(data_of(node.ok(unwrap.clone()))["password"], SECRET);
    assert_invalid(&node.fail(unwrap));
}

#[test]
fn expired_wrapping_token_fails() {
    let mut node = node_with_secret();
    let token = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 60)))));
    node.advance(Duration::from_secs(61));
    assert_invalid(&node.fail(with_token_body(&node, UNWRAP, &token)));
    assert_invalid(&node.fail(with_token_body(&node, LOOKUP, &token)));
    let own = Request::new(Operation::Update, UNWRAP).with_token(token);
    assert_invalid(&node.fail(own));
}

#[test]
fn lookup_does_not_consume_the_token() {
    let mut node = node_with_secret();
    let token = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 300)))));
    let lookup = Request::new(Operation::Update, LOOKUP).with_data(json!({ "token": token }));
    for _ in 0..2 {
        let data = data_of(node.ok(lookup.clone()));
        assert_eq!(data["creation_ttl"], 300);
        assert_eq!(data["creation_path"], "secret/foo");
        assert_eq!(data["creation_time"], node.now.to_rfc3339());
    }
    let unwrap = with_token_body(&node, UNWRAP, &token);
    assert_eq!(data_of(node.ok(unwrap))["password"], SECRET);
    assert_invalid(&node.fail(lookup));
}

#[test]
fn lookup_without_a_token_is_a_400() {
    let mut node = Node::new();
    let error = node.fail(Request::new(Operation::Update, LOOKUP));
    assert_eq!(error.status(), 400);
    assert_eq!(message(&error), "missing \"token\" value in input");
}

#[test]
fn rewrap_invalidates_the_old_token() {
    let mut node = node_with_secret();
    let old = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 300)))));
    node.advance(Duration::from_secs(10));
    let rewrap = with_token_body(&node, REWRAP, &old);
    let new = wrap_info(logical(node.ok(rewrap.clone())));
    assert_ne!(token_of(&new), old);
    assert_eq!(new.ttl, 300);
    assert_eq!(new.creation_path, "secret/foo");
    assert_eq!(new.creation_time, node.now.to_rfc3339());

    assert_invalid(&node.fail(rewrap));
    assert_invalid(&node.fail(with_token_body(&node, UNWRAP, &old)));
    let lookup = with_token_body(&node, LOOKUP, &token_of(&new));
    assert_eq!(data_of(node.ok(lookup))["creation_path"], "secret/foo");
    let unwrap = with_token_body(&node, UNWRAP, &token_of(&new));
    assert_eq!(data_of(node.ok(unwrap))["password"], SECRET);
}

#[test]
fn rewrap_keeps_the_shorter_requested_ttl() {
    let mut node = node_with_secret();
    let old = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 300)))));
    let rewrap = wrapped(with_token_body(&node, REWRAP, &old), 30);
    assert_eq!(wrap_info(logical(node.ok(rewrap))).ttl, 30);
}

#[test]
fn wrapping_a_token_create_wraps_the_auth_block() {
    let mut node = Node::new();
    let create = wrapped(
        node.root_request(
            Operation::Update,
            "auth/token/create",
            json!({"policies": ["web"], "ttl": "1h"}),
        ),
        120,
    );
    let response = logical(node.ok(create));
    assert_eq!(response.auth, None);
    let info = wrap_info(response);
    assert_eq!(info.creation_path, "auth/token/create");
    assert!(!info.wrapped_accessor.is_empty());

    let unwrapped = logical(node.ok(with_token_body(&node, UNWRAP, &token_of(&info))));
    let auth = unwrapped
        .auth
        .expect("the unwrapped response has the auth block");
    assert_eq!(auth.accessor, info.wrapped_accessor);
    assert_eq!(auth.policies, ["default", "web"]);
    assert_eq!(auth.lease_duration, 3600);
    let lookup = Request::new(Operation::Read, "auth/token/lookup-self")
        .with_token(auth.client_token.expose());
    assert_eq!(data_of(node.ok(lookup))["accessor"], json!(auth.accessor));
}

#[test]
fn wrapped_token_revoked_by_accessor_before_unwrap_stops_working() {
    let mut node = Node::new();
    let create = wrapped(
        node.root_request(Operation::Update, "auth/token/create", json!({})),
        120,
    );
    let info = wrap_info(logical(node.ok(create)));
    let revoke = node.root_request(
        Operation::Update,
        "auth/token/revoke-accessor",
        json!({ "accessor": info.wrapped_accessor }),
    );
    node.ok(revoke);
    let auth = auth_of(node.ok(with_token_body(&node, UNWRAP, &token_of(&info))));
    let lookup = Request::new(Operation::Read, "auth/token/lookup-self")
        .with_token(auth.client_token.expose());
    assert_eq!(node.fail(lookup).status(), 403);
}

#[test]
fn wrap_ttl_out_of_bounds_is_a_400() {
    let mut node = node_with_secret();
    let before = accessors(&mut node);
    let max = node.core.config.max_lease_ttl;
    for ttl in [Duration::from_millis(500), max + Duration::from_secs(1)] {
        let mut request = node.root_request(Operation::Read, "secret/foo", json!({}));
        request.wrap_ttl = Some(ttl);
        let error = node.fail(request);
        assert_eq!(error.status(), 400, "{ttl:?}");
        assert!(message(&error).contains("X-Vault-Wrap-TTL"), "{ttl:?}");
    }
    let mut request = node.root_request(Operation::Read, "secret/foo", json!({}));
    request.wrap_ttl = Some(max);
    assert_eq!(wrap_info(logical(node.ok(request))).ttl, max.as_secs());
    assert_eq!(accessors(&mut node).len(), before.len() + 1);
}

#[test]
fn error_response_is_not_wrapped() {
    let mut node = node_with_secret();
    let before = accessors(&mut node);
    let missing = wrapped(
        node.root_request(Operation::Read, "secret/missing", json!({})),
        300,
    );
    assert_eq!(node.fail(missing).status(), 404);

    let limited = node.create_token(&node.root.clone(), json!({"policies": ["nothing"]}));
    let denied = wrapped(
        Request::new(Operation::Read, "secret/foo").with_token(limited.client_token.expose()),
        300,
    );
    assert_eq!(node.fail(denied).status(), 403);

    let after = accessors(&mut node);
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the limited token was added"
    );
}

#[test]
fn wrapped_empty_list_is_a_404() {
    let mut node = node_with_secret();
    let list = wrapped(
        node.root_request(Operation::List, "secret/nothing-here/", json!({})),
        300,
    );
    assert_eq!(node.fail(list).status(), 404);
}

#[test]
fn sys_wrapping_wrap_needs_a_wrap_ttl() {
    let mut node = Node::new();
    let body = json!({"foo": "bar", "n": 3});
    let bare = node.root_request(Operation::Update, "sys/wrapping/wrap", body.clone());
    let error = node.fail(bare.clone());
    assert_eq!(error.status(), 400);
    assert_eq!(
        message(&error),
        "endpoint requires response wrapping to be used"
    );

    let info = wrap_info(logical(node.ok(wrapped(bare, 90))));
    assert_eq!(info.ttl, 90);
    assert_eq!(info.creation_path, "sys/wrapping/wrap");
    let data = data_of(node.ok(with_token_body(&node, UNWRAP, &token_of(&info))));
    assert_eq!(Value::Object(data), body);
}

#[test]
fn unwrap_of_a_token_that_is_not_a_wrapping_token_is_a_400() {
    let mut node = Node::new();
    let other = node.create_token(&node.root.clone(), json!({}));
    let body = with_token_body(&node, UNWRAP, other.client_token.expose());
    assert_invalid(&node.fail(body));
    let own = Request::new(Operation::Update, UNWRAP).with_token(other.client_token.expose());
    assert_invalid(&node.fail(own));
    assert_invalid(&node.fail(with_token_body(&node, UNWRAP, "hvs.unknown")));
}

#[test]
fn wrapped_request_on_a_read_only_snapshot_asks_for_the_writer() {
    let mut node = node_with_secret();
    let request = wrapped_read(&node, 300);
    let before = accessors(&mut node);
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    let outcome = node
        .storage
        .read(|txn| {
            let mut snapshot = ReadOnly(txn);
            core.handle_request(&mut Ctx::new(now, &mut *rng), &request, &mut snapshot)
        })
        .unwrap();
    assert!(
        matches!(outcome, Outcome::ReadOnly(Partition::Local)),
        "{outcome:?}"
    );
    assert_eq!(accessors(&mut node), before);
}

#[test]
fn wrapped_response_is_encrypted_in_the_local_partition() {
    let mut node = node_with_secret();
    let info = wrap_info(logical(node.ok(wrapped_read(&node, 300))));
    let local = node.storage.dump(Partition::Local);
    let responses: Vec<&String> = local
        .iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("cubbyhole/") && key.ends_with("/response"))
        .collect();
    assert_eq!(responses.len(), 1);
    for partition in Partition::ALL {
        for (key, value) in node.storage.dump(partition) {
            assert!(!contains(&value, SECRET.as_bytes()), "{partition:?} {key}");
        }
    }
    assert!(
        node.storage
            .dump(Partition::Shared)
            .iter()
            .all(|(key, _)| !key.starts_with("cubbyhole/"))
    );
    let unwrap = with_token_body(&node, UNWRAP, &token_of(&info));
    node.ok(unwrap);
    assert!(
        node.storage
            .dump(Partition::Local)
            .iter()
            .all(|(key, _)| !key.starts_with("cubbyhole/"))
    );
}

#[test]
fn wrapped_reply_debug_shows_neither_token_nor_data() {
    let mut node = node_with_secret();
    let response = node.ok(wrapped_read(&node, 300));
    let Some(info) = logical(response.clone()).wrap_info else {
        panic!("a wrapped response has wrap_info");
    };
    let debug = format!("{response:?}");
    assert!(!debug.contains(SECRET));
    assert!(!debug.contains(info.token.expose()));
}

#[test]
fn legacy_cubbyhole_response_read_gives_the_envelope_as_text() {
    let mut node = node_with_secret();
    let token = token_of(&wrap_info(logical(node.ok(wrapped_read(&node, 300)))));
    let read = Request::new(Operation::Read, "cubbyhole/response").with_token(token);
    let data = data_of(node.ok(read));
    let text = data["response"].as_str().expect("response is JSON text");
    let envelope: Value = serde_json::from_str(text).unwrap();
    assert_eq!(envelope["data"]["password"], SECRET);
    assert_eq!(envelope["wrap_info"], Value::Null);
}
