use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::state::{self, PrimaryIdentity};
use super::status::merkle_root_prefix;
use super::{ACTIVATION_TOKEN_PATH, unwrap};
use crate::error::Error;
use crate::replication::activation::token::{self, Claims};
use crate::replication::activation::{PrivateKey, cert, check_unwrapped_bundle};
use crate::replication::apply::log_shared_writes;
use crate::replication::merkle::Merkle;
use crate::replication::wal::Wal;
use crate::request::{Logical, Operation, Request, Response, WrapInfo};
use crate::storage::{Partition, Storage};
use crate::token::testing::{Node, data_of, logical};

const ENABLE: &str = "sys/replication/performance/primary/enable";
const SECONDARY_TOKEN: &str = "sys/replication/performance/primary/secondary-token";
const REVOKE: &str = "sys/replication/performance/primary/revoke-secondary";
const UNWRAP: &str = "sys/wrapping/unwrap";
const API_ADDR: &str = "https://127.0.0.1:8200";

fn enable(node: &mut Node) -> Logical {
    let body = json!({"primary_cluster_addr": "127.0.0.1:8201", "api_addr": API_ADDR});
    let request = node.root_request(Operation::Update, ENABLE, body);
    logical(node.ok(request))
}

fn secondary_token(node: &mut Node, body: Value) -> WrapInfo {
    let request = node.root_request(Operation::Update, SECONDARY_TOKEN, body);
    let logical = logical(node.ok(request));
    assert_eq!(logical.data, None);
    logical
        .wrap_info
        .expect("secondary-token answers in wrap_info")
}

fn jwt_of(node: &mut Node, id: &str) -> String {
    let wrap_info = secondary_token(node, json!({ "id": id }));
    wrap_info.token.expose().to_owned()
}

fn unwrap_request(jwt: &str) -> Request {
    Request::new(Operation::Update, UNWRAP).with_data(json!({ "token": jwt }))
}

fn message(error: &Error) -> String {
    match error {
        Error::Api { messages, .. } => messages.join("; "),
        other => other.to_string(),
    }
}

pub(super) fn identity(node: &mut Node) -> PrimaryIdentity {
    let (core, rng) = (&node.core, &mut node.rng);
    node.storage
        .write(|txn| {
            let view = core.barrier.view(txn, rng)?;
            state::require_primary(&view)
        })
        .unwrap()
}

fn claims_of(jwt: &str) -> Claims {
    token::parse_unverified(jwt).unwrap()
}

fn status(node: &mut Node, path: &str) -> Map<String, Value> {
    data_of(node.ok(Request::new(Operation::Read, path)))
}

#[test]
fn enabling_twice_fails() {
    let mut node = Node::new();
    let enabled = enable(&mut node);
    assert!(enabled.warnings[0].starts_with("This cluster is being enabled as a primary"));
    let request = node.root_request(Operation::Update, ENABLE, json!({}));
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(message(&error).contains("already a performance replication primary"));
}

#[test]
fn secondary_token_carries_claims_in_wrap_info() {
    let mut node = Node::new();
    enable(&mut node);
    let wrap_info = secondary_token(&mut node, json!({"id": "east", "ttl": "10m"}));
    assert_eq!(wrap_info.ttl, 600);
    assert_eq!(wrap_info.creation_path, SECONDARY_TOKEN);
    assert_eq!(wrap_info.wrapped_accessor, "");
    assert_eq!(wrap_info.creation_time, node.now.to_rfc3339());
    assert!(!wrap_info.accessor.is_empty());
    let claims = claims_of(wrap_info.token.expose());
    let identity = identity(&mut node);
    assert_eq!(claims.id, "east");
    assert_eq!(claims.cluster_id, identity.cluster_id);
    assert_eq!(claims.ca_sha256, identity.ca.ca_sha256());
    assert_eq!(claims.addr.as_deref(), Some(API_ADDR));
    assert_eq!(claims.exp - claims.iat, 600);
}

#[test]
fn unwrap_needs_no_client_token() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    let bundle = data_of(node.ok(unwrap_request(&jwt)));
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let checked = check_unwrapped_bundle(&jwt, &bytes, None).unwrap();
    assert_eq!(checked.secondary_id, "east");
    assert_eq!(checked.primary_cluster_addrs, ["127.0.0.1:8201"]);
    assert!(checked.secondary_key.is_some());
}

#[test]
fn second_unwrap_reports_already_used() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    node.ok(unwrap_request(&jwt));
    let error = node.fail(unwrap_request(&jwt));
    assert_eq!(error.status(), 400);
    let message = message(&error);
    assert!(message.starts_with(unwrap::ALREADY_USED), "{message}");
    // Clients that match Vault's message still find it.
    assert!(
        message.ends_with("wrapping token is not valid or does not exist"),
        "{message}"
    );
}

#[test]
fn lookup_of_activation_token_reports_creation() {
    let mut node = Node::new();
    enable(&mut node);
    let wrap_info = secondary_token(&mut node, json!({"id": "east", "ttl": 600}));
    let jwt = wrap_info.token.expose().to_owned();
    let lookup =
        Request::new(Operation::Update, "sys/wrapping/lookup").with_data(json!({ "token": jwt }));
    let data = data_of(node.ok(lookup.clone()));
    assert_eq!(data["creation_ttl"], json!(600));
    assert_eq!(data["creation_path"], json!(ACTIVATION_TOKEN_PATH));
    assert!(data["creation_time"].is_string(), "{data:?}");

    // Lookup leaves the token valid, and after its unwrap the lookup fails as a replay does.
    node.ok(unwrap_request(&jwt));
    let error = node.fail(lookup);
    assert!(message(&error).starts_with(unwrap::ALREADY_USED));
}

#[test]
fn lookup_of_forged_activation_token_fails() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    let forged = token::issue(&PrivateKey::generate(&mut node.rng), &claims_of(&jwt));
    let lookup = Request::new(Operation::Update, "sys/wrapping/lookup")
        .with_data(json!({ "token": forged }));
    let error = node.fail(lookup);
    assert_eq!(error.status(), 400);
    assert!(message(&error).contains("signature"));
}

#[test]
fn expired_activation_token_fails_to_unwrap() {
    let mut node = Node::new();
    enable(&mut node);
    let wrap_info = secondary_token(&mut node, json!({"id": "east", "ttl": 60}));
    // Within the JWT's clock leeway the wrapping token has already expired.
    node.advance(Duration::from_secs(61));
    let error = node.fail(unwrap_request(wrap_info.token.expose()));
    assert_eq!(error.status(), 400);
    node.advance(token::LEEWAY);
    let error = node.fail(unwrap_request(wrap_info.token.expose()));
    assert_eq!(error.status(), 400);
    assert!(message(&error).contains("expired"));
}

#[test]
fn forged_token_fails_and_spends_nothing() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    let forged = token::issue(&PrivateKey::generate(&mut node.rng), &claims_of(&jwt));
    let error = node.fail(unwrap_request(&forged));
    assert_eq!(error.status(), 400);
    assert!(message(&error).contains("signature"));
    node.ok(unwrap_request(&jwt));
}

fn active_serial(node: &mut Node, id: &str) -> Option<String> {
    let (core, rng) = (&node.core, &mut node.rng);
    let registry = node
        .storage
        .write(|txn| {
            let view = core.barrier.view(txn, rng)?;
            state::load_registry(&view)
        })
        .unwrap();
    registry.active_cert(id).map(|cert| cert.serial.clone())
}

#[test]
fn revoke_voids_token_and_reissue_renews_serial() {
    let mut node = Node::new();
    enable(&mut node);
    let first = jwt_of(&mut node, "east");
    let first_serial = active_serial(&mut node, "east").unwrap();
    let request = node.root_request(Operation::Update, REVOKE, json!({"id": "east"}));
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(active_serial(&mut node, "east"), None);
    let error = node.fail(unwrap_request(&first));
    assert!(message(&error).starts_with(unwrap::ALREADY_USED));

    let second = jwt_of(&mut node, "east");
    let bundle = data_of(node.ok(unwrap_request(&second)));
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let checked = check_unwrapped_bundle(&second, &bytes, None).unwrap();
    let cert = cert::parse_certificate(&checked.secondary_cert_der).unwrap();
    assert_eq!(active_serial(&mut node, "east"), Some(cert.serial.clone()));
    assert_ne!(cert.serial, first_serial);
}

#[test]
fn revoke_of_unknown_secondary_is_rejected() {
    let mut node = Node::new();
    enable(&mut node);
    let request = node.root_request(Operation::Update, REVOKE, json!({"id": "west"}));
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn secondary_token_for_active_id_rejected() {
    let mut node = Node::new();
    enable(&mut node);
    jwt_of(&mut node, "east");
    let request = node.root_request(Operation::Update, SECONDARY_TOKEN, json!({"id": "east"}));
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(message(&error).contains("revoke-secondary"));
}

#[test]
fn secondary_token_rejects_missing_or_bad_id() {
    let mut node = Node::new();
    enable(&mut node);
    for body in [json!({}), json!({"id": "not a label"})] {
        let request = node.root_request(Operation::Update, SECONDARY_TOKEN, body);
        assert_eq!(node.fail(request).status(), 400);
    }
}

#[test]
fn secondary_token_needs_sudo() {
    let mut node = Node::new();
    enable(&mut node);
    let path = format!("path \"{SECONDARY_TOKEN}\" {{ capabilities = [\"update\"] }}");
    node.put_policy("issuer", &path);
    let sudo = format!("path \"{SECONDARY_TOKEN}\" {{ capabilities = [\"update\", \"sudo\"] }}");
    node.put_policy("issuer-sudo", &sudo);
    let root = node.root.clone();
    let plain = node.create_token(&root, json!({"policies": ["issuer"]}));
    let with_sudo = node.create_token(&root, json!({"policies": ["issuer-sudo"]}));
    let body = json!({"id": "east"});
    let denied = Request::new(Operation::Update, SECONDARY_TOKEN)
        .with_data(body.clone())
        .with_token(plain.client_token.expose());
    assert_eq!(node.fail(denied).status(), 403);
    let allowed = Request::new(Operation::Update, SECONDARY_TOKEN)
        .with_data(body)
        .with_token(with_sudo.client_token.expose());
    assert!(logical(node.ok(allowed)).wrap_info.is_some());
}

#[test]
fn status_shows_wal_head_and_root() {
    let mut node = Node::new();
    enable(&mut node);
    jwt_of(&mut node, "east");
    node.storage
        .write(|txn| {
            txn.put(Partition::Shared, "logical/marker", b"ciphertext")?;
            log_shared_writes(txn, &Wal::new(100), &["logical/marker".to_owned()])
        })
        .unwrap();
    let (head, root) = node
        .storage
        .read(|txn| (Wal::head(txn).unwrap(), Merkle::root(txn).unwrap()))
        .unwrap();
    let performance = status(&mut node, "sys/replication/performance/status");
    assert_eq!(performance["mode"], "primary");
    assert_eq!(performance["state"], "running");
    assert_eq!(performance["last_wal"], json!(head.index));
    assert_eq!(performance["merkle_root"], json!(merkle_root_prefix(&root)));
    assert_eq!(performance["known_secondaries"], json!(["east"]));
    assert_eq!(performance["primary_cluster_addr"], "127.0.0.1:8201");
    assert_eq!(performance["last_corruption_check_epoch"], "-62135596800");
    assert_eq!(head.epoch.cluster_id, performance["cluster_id"]);
    assert_eq!(head.index, 1);
}

#[test]
fn enable_epoch_continues_chain() {
    let mut node = Node::new();
    let wal = Wal::new(100);
    let log = |node: &mut Node, key: &str| {
        node.storage
            .write(|txn| {
                txn.put(Partition::Shared, key, b"ciphertext")?;
                log_shared_writes(txn, &wal, &[key.to_owned()])
            })
            .unwrap()
            .unwrap()
    };
    let before = log(&mut node, "logical/a");
    enable(&mut node);
    let after = log(&mut node, "logical/b");
    let identity = identity(&mut node);
    assert_eq!(after.index, before.index + 1);
    assert_eq!(after.prev_hash, before.hash);
    assert_eq!(after.epoch.number, 1);
    assert_eq!(after.epoch.cluster_id, identity.cluster_id);
}

#[test]
fn status_needs_no_token() {
    let mut node = Node::new();
    let combined = status(&mut node, "sys/replication/status");
    assert_eq!(combined["performance"], json!({"mode": "disabled"}));
    assert_eq!(combined["dr"], json!({"mode": "disabled"}));
    enable(&mut node);
    let combined = status(&mut node, "sys/replication/status");
    assert_eq!(combined["performance"]["mode"], "primary");
    let dr = status(&mut node, "sys/replication/dr/status");
    assert_eq!(dr, *json!({"mode": "disabled"}).as_object().unwrap());
}

#[test]
fn control_paths_without_token_are_denied() {
    let mut node = Node::new();
    let request = Request::new(Operation::Update, ENABLE);
    assert_eq!(node.fail(request).status(), 403);
}

#[test]
fn old_paths_reach_performance_endpoints() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "sys/replication/primary/enable",
        json!({}),
    );
    node.ok(request);
    let request = node.root_request(
        Operation::Update,
        "sys/replication/primary/secondary-token",
        json!({"id": "east"}),
    );
    assert!(logical(node.ok(request)).wrap_info.is_some());
    let performance = status(&mut node, "sys/replication/performance/status");
    assert_eq!(performance["known_secondaries"], json!(["east"]));
}

#[test]
fn public_key_activation_bundles_no_private_key() {
    let mut node = Node::new();
    enable(&mut node);
    let request = node.root_request(
        Operation::Update,
        "sys/replication/performance/secondary/generate-public-key",
        json!({}),
    );
    let data = data_of(node.ok(request));
    let public_key = data["secondary_public_key"].as_str().unwrap().to_owned();
    let wrap_info = secondary_token(
        &mut node,
        json!({"id": "east", "secondary_public_key": public_key}),
    );
    let jwt = wrap_info.token.expose().to_owned();
    let bundle = data_of(node.ok(unwrap_request(&jwt)));
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let checked = check_unwrapped_bundle(&jwt, &bytes, None).unwrap();
    assert!(checked.secondary_key.is_none());
}

fn response_text(response: &Response) -> String {
    match response {
        Response::Logical(logical) => format!(
            "{} {} {:?}",
            serde_json::to_string(&logical.data).unwrap(),
            serde_json::to_string(&logical.wrap_info).unwrap(),
            logical.warnings
        ),
        Response::Raw { body, .. } => body.to_string(),
        Response::NoContent => String::new(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn ca_key_never_stored_or_returned() {
    let mut node = Node::new();
    let mut texts = vec![format!("{:?}", enable(&mut node))];
    let jwt = jwt_of(&mut node, "east");
    texts.push(response_text(&node.ok(unwrap_request(&jwt))));
    texts.push(response_text(
        &node.ok(Request::new(Operation::Read, "sys/replication/status")),
    ));
    let request = node.root_request(Operation::Update, SECONDARY_TOKEN, json!({"id": "west"}));
    texts.push(response_text(&node.ok(request)));

    let stored = serde_json::to_value(&identity(&mut node).ca).unwrap();
    let key_base64 = stored["key"].as_str().unwrap().to_owned();
    let key_der = STANDARD.decode(&key_base64).unwrap();
    let seed = &key_der[key_der.len() - 32..];
    for text in &texts {
        assert!(!text.contains(&key_base64));
    }
    for partition in Partition::ALL {
        for (key, value) in node.storage.dump(partition) {
            assert!(!contains(&value, seed), "{partition:?} {key}");
            assert!(
                !contains(&value, key_base64.as_bytes()),
                "{partition:?} {key}"
            );
        }
    }
    assert!(
        node.storage
            .dump(Partition::Shared)
            .iter()
            .all(|(key, _)| !key.contains("replication"))
    );
}

#[test]
fn plain_wrapping_token_unwraps_once() {
    let mut node = Node::new();
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    let token = node
        .storage
        .write(|txn| {
            let mut view = core.barrier.view(txn, rng)?;
            let wrapping = crate::wrapping::issue(
                core,
                &mut view,
                now,
                Duration::from_secs(300),
                "sys/wrapping/wrap",
            )?;
            let data = json!({"secret": "wrapped-value"});
            let response =
                crate::wrapping::WrappedResponse::data(data.as_object().unwrap().clone())?;
            crate::wrapping::store(&mut view, &wrapping, &response)?;
            Ok::<_, Error>(wrapping.token)
        })
        .unwrap();
    let token = token.expose().to_owned();
    let root = node.root.clone();
    let request = Request::new(Operation::Update, UNWRAP)
        .with_data(json!({ "token": token }))
        .with_token(root.clone());
    assert_eq!(data_of(node.ok(request.clone()))["secret"], "wrapped-value");
    let error = node.fail(request);
    assert_eq!(
        message(&error),
        "wrapping token is not valid or does not exist"
    );
}

#[test]
fn raw_activation_wrapping_token_is_not_a_plain_token() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    let raw = claims_of(&jwt).jti;
    for path in [UNWRAP, "sys/wrapping/rewrap"] {
        let request = node.root_request(Operation::Update, path, json!({ "token": raw }));
        let error = node.fail(request);
        assert_eq!(error.status(), 400, "{path}");
        assert!(message(&error).contains("JWT form"), "{path}");
    }
    let bundle = data_of(node.ok(unwrap_request(&jwt)));
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let checked = check_unwrapped_bundle(&jwt, &bytes, None).unwrap();
    assert_eq!(checked.secondary_id, "east");
}

#[test]
fn raw_activation_token_reads_no_cubbyhole() {
    let mut node = Node::new();
    enable(&mut node);
    let jwt = jwt_of(&mut node, "east");
    let raw = claims_of(&jwt).jti;
    let read = Request::new(Operation::Read, "cubbyhole/response").with_token(raw);
    let error = node.fail(read);
    assert_eq!(error.status(), 403, "{error}");
    let bundle = data_of(node.ok(unwrap_request(&jwt)));
    assert_eq!(bundle["secondary_id"], "east");
}
