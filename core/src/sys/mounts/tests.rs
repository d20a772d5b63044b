use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::handler::Outcome;
use crate::request::Request;
use crate::token::testing::{Node, data_of};

use crate::engines::testing::Harness;
use crate::request::Operation::{Delete, List, Read, Update};
use crate::storage::Partition;

fn shared_contains(harness: &Harness, needle: &str) -> bool {
    harness
        .storage
        .dump(Partition::Shared)
        .iter()
        .any(|(key, _)| key.contains(needle))
}

#[test]
fn fresh_server_lists_builtin_mounts() {
    let mut harness = Harness::new();
    let mounts = harness.data(Read, "sys/mounts", json!({}));
    let paths: Vec<&String> = mounts.keys().collect();
    assert_eq!(paths, vec!["cubbyhole/", "identity/", "sys/"]);
    assert_eq!(mounts["cubbyhole/"]["local"], json!(true));
    assert_eq!(mounts["cubbyhole/"]["type"], json!("cubbyhole"));
    assert_eq!(mounts["sys/"]["type"], json!("system"));
    let auth = harness.data(Read, "sys/auth", json!({}));
    assert_eq!(auth["token/"]["type"], json!("token"));
    assert_eq!(
        auth["token/"]["config"]["token_type"],
        json!("default-service")
    );
}

#[test]
fn mount_tables_are_ciphertext() {
    let mut harness = Harness::new();
    harness.ok(
        Update,
        "sys/mounts/marker-mount-4471",
        json!({"type": "kv"}),
    );
    for (key, value) in harness.storage.dump(Partition::Shared) {
        let text = String::from_utf8_lossy(&value);
        assert!(
            !text.contains("marker-mount-4471"),
            "mount path in clear at {key}"
        );
        assert!(
            !text.contains("identity/"),
            "builtin path in clear at {key}"
        );
    }
}

#[test]
fn listed_entry_has_client_fields() {
    let mut harness = Harness::new();
    harness.ok(
        Update,
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": 2}}),
    );
    let entry = harness.data(Read, "sys/mounts", json!({}))["secret/"].clone();
    for field in [
        "accessor",
        "description",
        "external_entropy_access",
        "local",
        "seal_wrap",
        "type",
        "uuid",
        "plugin_version",
        "running_plugin_version",
        "running_sha256",
    ] {
        assert!(entry.get(field).is_some(), "missing {field}");
    }
    assert_eq!(entry["config"]["default_lease_ttl"], json!(0));
    assert_eq!(entry["config"]["max_lease_ttl"], json!(0));
    assert_eq!(entry["config"]["force_no_cache"], json!(false));
    assert_eq!(entry["options"], json!({"version": "2"}));
    assert!(entry["accessor"].as_str().unwrap().starts_with("kv_"));
    assert_eq!(entry["accessor"].as_str().unwrap().len(), 11);
}

#[test]
fn kv_aliases_set_version() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/two", json!({"type": "kv-v2"}));
    harness.ok(Update, "sys/mounts/one", json!({"type": "kv-v1"}));
    harness.ok(Update, "sys/mounts/old", json!({"type": "generic"}));
    let mounts = harness.data(Read, "sys/mounts", json!({}));
    assert_eq!(mounts["two/"]["type"], json!("kv"));
    assert_eq!(mounts["two/"]["options"], json!({"version": "2"}));
    assert_eq!(mounts["one/"]["options"], json!({"version": "1"}));
    assert_eq!(mounts["old/"]["type"], json!("generic"));
}

#[test]
fn version_on_non_kv_is_rejected() {
    let mut harness = Harness::new();
    let body = json!({"type": "generic", "options": {"version": "2"}});
    let (status, messages) = harness.fail(Update, "sys/mounts/x", body);
    assert_eq!(status, 400);
    assert_eq!(
        messages,
        vec!["secrets engine \"generic\" does not allow setting a version".to_string()]
    );
}

#[test]
fn unknown_engine_type_is_rejected() {
    let mut harness = Harness::new();
    let (status, messages) = harness.fail(Update, "sys/mounts/x", json!({"type": "pki"}));
    assert_eq!(status, 400);
    assert_eq!(
        messages,
        vec!["unknown secrets engine type \"pki\"".to_string()]
    );
}

#[test]
fn path_in_use_is_rejected() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    let (status, messages) = harness.fail(Update, "sys/mounts/secret/", json!({"type": "kv"}));
    assert_eq!(status, 400);
    assert_eq!(
        messages,
        vec!["path is already in use at secret/".to_string()]
    );
    assert_eq!(
        harness
            .fail(Update, "sys/mounts/secret/inner", json!({"type": "kv"}))
            .0,
        400
    );
}

#[test]
fn reserved_paths_are_rejected() {
    let mut harness = Harness::new();
    for path in ["sys", "auth/x", "cubbyhole", "identity/y"] {
        let (status, _) =
            harness.fail(Update, &format!("sys/mounts/{path}"), json!({"type": "kv"}));
        assert_eq!(status, 400, "{path}");
    }
    assert_eq!(harness.fail(Delete, "sys/mounts/sys", json!({})).0, 400);
    assert_eq!(
        harness.fail(Delete, "sys/mounts/cubbyhole", json!({})).0,
        400
    );
}

#[test]
fn disable_removes_mount_and_data() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    let uuid = harness.data(Read, "sys/mounts/secret", json!({}))["uuid"].clone();
    let uuid = uuid.as_str().unwrap().to_owned();
    harness.ok(Update, "secret/a", json!({"x": 1}));
    harness.ok(Update, "secret/b/c", json!({"x": 1}));
    assert!(shared_contains(&harness, &uuid));
    harness.ok(Delete, "sys/mounts/secret", json!({}));
    assert!(!shared_contains(&harness, &uuid));
    assert!(
        harness
            .data(Read, "sys/mounts", json!({}))
            .get("secret/")
            .is_none()
    );
    assert_eq!(harness.fail(Read, "sys/mounts/secret", json!({})).0, 400);
    assert_eq!(harness.fail(Read, "secret/a", json!({})).0, 404);
}

#[test]
fn disable_of_missing_mount_succeeds() {
    let mut harness = Harness::new();
    harness.ok(Delete, "sys/mounts/never", json!({}));
}

#[test]
fn remount_after_disable_starts_empty() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    harness.ok(Update, "secret/a", json!({"x": 1}));
    harness.ok(Delete, "sys/mounts/secret", json!({}));
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    assert_eq!(harness.fail(Read, "secret/a", json!({})).0, 404);
}

#[test]
fn local_mount_stays_out_of_shared_partition() {
    let mut harness = Harness::new();
    harness.ok(
        Update,
        "sys/mounts/mine",
        json!({"type": "kv", "local": true}),
    );
    harness.ok(Update, "mine/secret", json!({"x": 1}));
    let entry = harness.data(Read, "sys/mounts/mine", json!({}));
    assert_eq!(entry["local"], json!(true));
    let uuid = entry["uuid"].as_str().unwrap().to_owned();
    for (key, value) in harness.storage.dump(Partition::Shared) {
        assert!(
            !key.contains(&uuid),
            "shared key {key} names the local mount"
        );
        let stored = harness.core.barrier.keyring().unwrap();
        if let Ok(plain) = stored.decrypt(Partition::Shared, &key, &value) {
            let text = String::from_utf8_lossy(&plain);
            assert!(
                !text.contains("mine/"),
                "shared key {key} holds the local path"
            );
            assert!(
                !text.contains(&uuid),
                "shared key {key} holds the local uuid"
            );
        }
    }
    let local = harness.storage.dump(Partition::Local);
    assert!(local.iter().any(|(key, _)| key.contains(&uuid)));
}

#[test]
fn tune_reads_effective_ttls() {
    let mut harness = Harness::new();
    harness.ok(
        Update,
        "sys/mounts/secret",
        json!({"type": "kv", "description": "d"}),
    );
    let tune = harness.data(Read, "sys/mounts/secret/tune", json!({}));
    assert_eq!(tune["default_lease_ttl"], json!(2_764_800));
    assert_eq!(tune["max_lease_ttl"], json!(2_764_800));
    assert_eq!(tune["force_no_cache"], json!(false));
    assert_eq!(tune["description"], json!("d"));
}

#[test]
fn tune_sets_ttls_and_description() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    let body = json!({"default_lease_ttl": "3600s", "max_lease_ttl": 8600, "description": "new"});
    harness.ok(Update, "sys/mounts/secret/tune", body);
    let tune = harness.data(Read, "sys/mounts/secret/tune", json!({}));
    assert_eq!(tune["default_lease_ttl"], json!(3600));
    assert_eq!(tune["max_lease_ttl"], json!(8600));
    assert_eq!(tune["description"], json!("new"));
    harness.ok(Update, "secret/a", json!({"x": 1}));
    assert_eq!(
        harness.logical(Read, "secret/a", json!({})).lease_duration,
        3600
    );
}

#[test]
fn tune_upgrades_kv_v1_to_v2() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv"}));
    harness.ok(Update, "secret/a", json!({"x": 1}));
    harness.ok(Update, "secret/config", json!({"y": 2}));
    harness.ok(
        Update,
        "sys/mounts/secret/tune",
        json!({"options": {"version": 2}}),
    );
    let data = harness.data(Read, "secret/data/a", json!({}));
    assert_eq!(data["data"], json!({"x": 1}));
    assert_eq!(data["metadata"]["version"], json!(1));
    let config_key = harness.data(Read, "secret/data/config", json!({}));
    assert_eq!(config_key["data"], json!({"y": 2}));
    let body = json!({"options": {"version": "1"}});
    assert_eq!(harness.fail(Update, "sys/mounts/secret/tune", body).0, 400);
}

#[test]
fn auth_methods_enable_tune_and_disable() {
    let mut harness = Harness::new();
    harness.ok(
        Update,
        "sys/auth/userpass",
        json!({"type": "userpass", "description": "u"}),
    );
    harness.ok(Update, "sys/auth/my-gcp", json!({"type": "gcp"}));
    let auth = harness.data(Read, "sys/auth", json!({}));
    assert_eq!(auth["userpass/"]["type"], json!("userpass"));
    assert_eq!(
        auth["userpass/"]["config"]["token_type"],
        json!("default-service")
    );
    assert!(
        auth["my-gcp/"]["accessor"]
            .as_str()
            .unwrap()
            .starts_with("auth_gcp_")
    );
    harness.ok(
        Update,
        "sys/auth/userpass/tune",
        json!({"max_lease_ttl": 12_345_678}),
    );
    let tune = harness.data(Read, "sys/auth/userpass/tune", json!({}));
    assert_eq!(tune["max_lease_ttl"], json!(12_345_678));
    assert_eq!(tune["token_type"], json!("default-service"));
    let same = harness.data(Read, "sys/mounts/auth/userpass/tune", json!({}));
    assert_eq!(same["max_lease_ttl"], json!(12_345_678));
    harness.ok(Delete, "sys/auth/userpass", json!({}));
    assert!(
        harness
            .data(Read, "sys/auth", json!({}))
            .get("userpass/")
            .is_none()
    );
}

#[test]
fn token_auth_cannot_be_disabled_or_duplicated() {
    let mut harness = Harness::new();
    assert_eq!(harness.fail(Delete, "sys/auth/token", json!({})).0, 400);
    assert_eq!(
        harness
            .fail(Update, "sys/auth/other", json!({"type": "token"}))
            .0,
        400
    );
    assert_eq!(
        harness
            .fail(Update, "sys/auth/x", json!({"type": "nope"}))
            .0,
        400
    );
}

#[test]
fn ui_mounts_returns_entry_with_path() {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv-v2"}));
    let entry = harness.data(Read, "sys/internal/ui/mounts/secret/foo/bar", json!({}));
    assert_eq!(entry["path"], json!("secret/"));
    assert_eq!(entry["options"]["version"], json!("2"));
    assert_eq!(entry["type"], json!("kv"));
    assert_eq!(
        harness
            .fail(Read, "sys/internal/ui/mounts/nothing/here", json!({}))
            .0,
        404
    );
    let all = harness.data(Read, "sys/internal/ui/mounts", json!({}));
    assert!(all["secret"].get("secret/").is_some());
    assert!(all["auth"].get("token/").is_some());
}

/// A node with KV version 2 mounts at `secret/` and `other/`, and a token whose only rule
/// outside the default policy is `rule` (HCL). Returns the node and the token.
fn node_with_rule(rule: &str) -> (Node, String) {
    let mut node = Node::new();
    for mount in ["secret", "other"] {
        let request = node.root_request(
            Update,
            &format!("sys/mounts/{mount}"),
            json!({"type": "kv-v2"}),
        );
        node.ok(request);
    }
    node.put_policy("reader", rule);
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["reader"]}));
    (node, auth.client_token.expose().to_owned())
}

fn ui_read(node: &mut Node, token: &str, path: &str) -> Result<Map<String, Value>, Error> {
    let request = Request::new(Read, path).with_token(token);
    match node.run(&request) {
        Outcome::Response(response) => Ok(data_of(response)),
        Outcome::Error(error) => Err(error),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn ui_mount_read_needs_only_access_under_it() {
    let rule = r#"path "secret/data/public/*" { capabilities = ["read"] }"#;
    let (mut node, token) = node_with_rule(rule);
    let entry = ui_read(&mut node, &token, "sys/internal/ui/mounts/secret/public/a").unwrap();
    assert_eq!(entry["path"], json!("secret/"));
    assert_eq!(entry["options"]["version"], json!("2"));

    let error = ui_read(&mut node, &token, "sys/internal/ui/mounts/other/a").unwrap_err();
    assert_eq!(error.status(), 403);
    assert!(error.to_string().contains("\"other/\""), "{error}");
}

#[test]
fn ui_mount_read_ignores_deny_rules() {
    let rule = r#"path "secret/*" { capabilities = ["deny"] }"#;
    let (mut node, token) = node_with_rule(rule);
    let error = ui_read(&mut node, &token, "sys/internal/ui/mounts/secret/a").unwrap_err();
    assert_eq!(error.status(), 403);
}

#[test]
fn ui_mount_read_accepts_segment_wildcards() {
    let rule = r#"path "+/data/team" { capabilities = ["list"] }"#;
    let (mut node, token) = node_with_rule(rule);
    for path in ["secret/team", "other/team"] {
        let uri = format!("sys/internal/ui/mounts/{path}");
        assert!(ui_read(&mut node, &token, &uri).is_ok(), "{path}");
    }
}

#[test]
fn ui_mount_list_shows_accessible_mounts() {
    let rule = r#"path "secret/data/public/*" { capabilities = ["read"] }"#;
    let (mut node, token) = node_with_rule(rule);
    let all = ui_read(&mut node, &token, "sys/internal/ui/mounts").unwrap();
    assert!(all["secret"].get("secret/").is_some(), "{all:?}");
    assert!(all["secret"].get("other/").is_none(), "{all:?}");

    let root = node.root.clone();
    let everything = ui_read(&mut node, &root, "sys/internal/ui/mounts").unwrap();
    assert!(everything["secret"].get("other/").is_some());
}

#[test]
fn ui_mounts_are_read_only() {
    let (mut node, token) = node_with_rule(r#"path "secret/*" { capabilities = ["update"] }"#);
    let write = Request::new(Update, "sys/internal/ui/mounts/secret/a");
    // A write is checked against the ACL on its own path first, which grants nothing here.
    let error = node.fail(write.clone().with_token(token));
    assert_eq!(error.status(), 403);
    let root = node.root.clone();
    let error = node.fail(write.with_token(root));
    assert_eq!(error.status(), 405);
}

#[test]
fn random_bytes_have_requested_length() {
    let mut harness = Harness::new();
    let data = harness.data(Update, "sys/tools/random", json!({}));
    let text = data["random_bytes"].as_str().unwrap();
    assert_eq!(text.len(), 44);
    let data = harness.data(Update, "sys/tools/random/8", json!({"format": "hex"}));
    assert_eq!(data["random_bytes"].as_str().unwrap().len(), 16);
    let too_many = json!({"bytes": 1024 * 1024 + 1});
    assert_eq!(harness.fail(Update, "sys/tools/random", too_many).0, 400);
}

#[test]
fn hash_matches_known_digest() {
    let mut harness = Harness::new();
    // "abc" in base64; its SHA-256 is the FIPS 180-2 example digest.
    let data = harness.data(Update, "sys/tools/hash", json!({"input": "YWJj"}));
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(data["sum"], json!(expected));
    let data = harness.data(
        Update,
        "sys/tools/hash/sha2-512",
        json!({"input": "YWJj", "format": "base64"}),
    );
    assert_eq!(data["sum"].as_str().unwrap().len(), 88);
    let bad = json!({"input": "YWJj", "algorithm": "md5"});
    assert_eq!(harness.fail(Update, "sys/tools/hash", bad).0, 400);
}

#[test]
fn list_verb_on_mounts_lists() {
    let mut harness = Harness::new();
    let data = harness.data(List, "sys/mounts", json!({}));
    assert!(data.values().all(Value::is_object));
}
