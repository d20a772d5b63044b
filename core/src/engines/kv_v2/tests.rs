use serde_json::{Value, json};

use crate::engines::testing::Harness;
use crate::request::Operation::{Delete, List, Patch, Read, Update};
use crate::request::Response;

fn with_v2_mount() -> Harness {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/secret", json!({"type": "kv-v2"}));
    harness
}

fn put(harness: &mut Harness, path: &str, data: Value) -> u64 {
    let body = json!({"data": data, "options": {}});
    let written = harness.data(Update, &format!("secret/data/{path}"), body);
    written["version"].as_u64().unwrap()
}

fn cas_put(harness: &mut Harness, path: &str, cas: u64) -> Result<Response, crate::Error> {
    let body = json!({"data": {"k": "v"}, "options": {"cas": cas}});
    harness.run(Update, &format!("secret/data/{path}"), body)
}

const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

#[test]
fn versions_count_up_and_read_by_number() {
    let mut harness = with_v2_mount();
    assert_eq!(put(&mut harness, "foo", json!({"v": 1})), 1);
    assert_eq!(put(&mut harness, "foo", json!({"v": 2})), 2);
    let latest = harness.data(Read, "secret/data/foo", json!({}));
    assert_eq!(latest["data"], json!({"v": 2}));
    assert_eq!(latest["metadata"]["version"], json!(2));
    assert_eq!(latest["metadata"]["deletion_time"], json!(""));
    assert_eq!(latest["metadata"]["destroyed"], json!(false));
    let first = harness.data(Read, "secret/data/foo", json!({"version": "1"}));
    assert_eq!(first["data"], json!({"v": 1}));
}

#[test]
fn read_carries_mount_type_kv() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    assert_eq!(
        harness
            .logical(Read, "secret/data/foo", json!({}))
            .mount_type,
        "kv"
    );
}

#[test]
fn missing_key_and_version_are_plain_404() {
    let mut harness = with_v2_mount();
    assert_eq!(
        harness.fail(Read, "secret/data/nope", json!({})),
        (404, vec![])
    );
    put(&mut harness, "foo", json!({"v": 1}));
    let missing = harness.fail(Read, "secret/data/foo", json!({"version": 7}));
    assert_eq!(missing, (404, vec![]));
}

#[test]
fn write_without_data_is_rejected() {
    let mut harness = with_v2_mount();
    let (status, messages) = harness.fail(Update, "secret/data/foo", json!({"options": {}}));
    assert_eq!(status, 400);
    assert_eq!(messages, vec!["no data provided".to_string()]);
}

#[test]
fn cas_zero_only_creates() {
    let mut harness = with_v2_mount();
    assert!(cas_put(&mut harness, "foo", 0).is_ok());
    let second = cas_put(&mut harness, "foo", 0).unwrap_err();
    assert_eq!(second.status(), 400);
    assert_eq!(second, crate::Error::bad_request(CAS_MISMATCH));
}

#[test]
fn cas_must_name_current_version() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    assert_eq!(
        cas_put(&mut harness, "foo", 2).unwrap_err(),
        crate::Error::bad_request(CAS_MISMATCH)
    );
    assert!(cas_put(&mut harness, "foo", 1).is_ok());
}

#[test]
fn cas_required_rejects_write_without_cas() {
    let mut harness = with_v2_mount();
    harness.ok(Update, "secret/config", json!({"cas_required": true}));
    let (status, messages) = harness.fail(Update, "secret/data/foo", json!({"data": {"a": 1}}));
    assert_eq!(status, 400);
    assert_eq!(
        messages,
        vec!["check-and-set parameter required for this call".to_string()]
    );
    assert!(cas_put(&mut harness, "foo", 0).is_ok());
}

#[test]
fn key_cas_required_applies_to_that_key() {
    let mut harness = with_v2_mount();
    harness.ok(Update, "secret/metadata/foo", json!({"cas_required": true}));
    assert_eq!(
        harness
            .fail(Update, "secret/data/foo", json!({"data": {}}))
            .0,
        400
    );
    put(&mut harness, "other", json!({"a": 1}));
}

#[test]
fn deleted_version_reads_as_404_with_envelope() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    harness.ok(Delete, "secret/data/foo", json!({}));
    let logical = harness.logical(Read, "secret/data/foo", json!({}));
    assert_eq!(logical.status, 404);
    let data = logical.data.unwrap();
    assert_eq!(data["data"], Value::Null);
    assert_ne!(data["metadata"]["deletion_time"], json!(""));
    assert_eq!(data["metadata"]["version"], json!(1));
}

#[test]
fn undelete_restores_version() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    put(&mut harness, "foo", json!({"v": 2}));
    harness.ok(Update, "secret/delete/foo", json!({"versions": [1, 2]}));
    assert_eq!(
        harness
            .logical(Read, "secret/data/foo", json!({"version": 1}))
            .status,
        404
    );
    harness.ok(Update, "secret/undelete/foo", json!({"versions": [1]}));
    let first = harness.data(Read, "secret/data/foo", json!({"version": 1}));
    assert_eq!(first["data"], json!({"v": 1}));
    assert_eq!(
        harness.logical(Read, "secret/data/foo", json!({})).status,
        404
    );
}

#[test]
fn destroy_is_permanent() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    harness.ok(Update, "secret/destroy/foo", json!({"versions": [1]}));
    harness.ok(Update, "secret/undelete/foo", json!({"versions": [1]}));
    let logical = harness.logical(Read, "secret/data/foo", json!({}));
    assert_eq!(logical.status, 404);
    let data = logical.data.unwrap();
    assert_eq!(data["metadata"]["destroyed"], json!(true));
    assert_eq!(data["data"], Value::Null);
}

#[test]
fn version_operations_need_versions() {
    let mut harness = with_v2_mount();
    let (status, messages) = harness.fail(Update, "secret/delete/foo", json!({}));
    assert_eq!(status, 400);
    assert_eq!(messages, vec!["no version number provided".to_string()]);
}

#[test]
fn metadata_lists_versions_and_settings() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    put(&mut harness, "foo", json!({"v": 2}));
    let body = json!({"max_versions": 5, "delete_version_after": "30m", "custom_metadata": {"owner": "jdoe"}});
    harness.ok(Update, "secret/metadata/foo", body);
    let meta = harness.data(Read, "secret/metadata/foo", json!({}));
    assert_eq!(meta["current_version"], json!(2));
    assert_eq!(meta["oldest_version"], json!(0));
    assert_eq!(meta["max_versions"], json!(5));
    assert_eq!(meta["delete_version_after"], json!("30m0s"));
    assert_eq!(meta["cas_required"], json!(false));
    assert_eq!(meta["custom_metadata"], json!({"owner": "jdoe"}));
    assert_eq!(meta["versions"]["1"]["destroyed"], json!(false));
    assert_eq!(
        meta["created_time"],
        json!("2023-11-14T22:13:20.000000000Z")
    );
    let read = harness.data(Read, "secret/data/foo", json!({}));
    assert_eq!(
        read["metadata"]["custom_metadata"],
        json!({"owner": "jdoe"})
    );
}

#[test]
fn metadata_patch_merges_custom_metadata() {
    let mut harness = with_v2_mount();
    let body = json!({"custom_metadata": {"a": "1", "b": "2"}});
    harness.ok(Update, "secret/metadata/foo", body);
    let patch = json!({"custom_metadata": {"a": null, "c": "3"}, "max_versions": 3});
    harness.ok(Patch, "secret/metadata/foo", patch);
    let meta = harness.data(Read, "secret/metadata/foo", json!({}));
    assert_eq!(meta["custom_metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!(meta["max_versions"], json!(3));
    assert_eq!(
        harness.fail(Patch, "secret/metadata/none", json!({})).0,
        404
    );
}

#[test]
fn metadata_write_creates_no_version() {
    let mut harness = with_v2_mount();
    harness.ok(Update, "secret/metadata/foo", json!({"max_versions": 2}));
    let meta = harness.data(Read, "secret/metadata/foo", json!({}));
    assert_eq!(meta["current_version"], json!(0));
    assert_eq!(harness.fail(Read, "secret/data/foo", json!({})).0, 404);
}

#[test]
fn metadata_delete_removes_everything() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    put(&mut harness, "foo", json!({"v": 2}));
    harness.ok(Delete, "secret/metadata/foo", json!({}));
    assert_eq!(harness.fail(Read, "secret/metadata/foo", json!({})).0, 404);
    assert_eq!(
        harness
            .fail(Read, "secret/data/foo", json!({"version": 1}))
            .0,
        404
    );
    let uuid_prefix = mount_prefix(&mut harness);
    let left: Vec<String> = harness
        .storage
        .dump(crate::storage::Partition::Shared)
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with(&uuid_prefix))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

fn mount_prefix(harness: &mut Harness) -> String {
    let entry = harness.data(Read, "sys/mounts/secret", json!({}));
    format!("logical/{}/", entry["uuid"].as_str().unwrap())
}

#[test]
fn metadata_list_shows_key_tree() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"v": 1}));
    put(&mut harness, "dir/bar", json!({"v": 1}));
    let root = harness.data(List, "secret/metadata/", json!({}));
    assert_eq!(root["keys"], json!(["dir/", "foo"]));
    let dir = harness.data(List, "secret/metadata/dir", json!({}));
    assert_eq!(dir["keys"], json!(["bar"]));
    assert_eq!(
        harness.fail(List, "secret/metadata/none/", json!({})).0,
        404
    );
}

#[test]
fn versions_beyond_max_are_pruned() {
    let mut harness = with_v2_mount();
    harness.ok(Update, "secret/metadata/foo", json!({"max_versions": 2}));
    for value in 1..=4 {
        put(&mut harness, "foo", json!({"v": value}));
    }
    let meta = harness.data(Read, "secret/metadata/foo", json!({}));
    let versions: Vec<&String> = meta["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, vec!["3", "4"]);
    assert_eq!(meta["oldest_version"], json!(3));
    assert_eq!(
        harness
            .fail(Read, "secret/data/foo", json!({"version": 1}))
            .0,
        404
    );
    let third = harness.data(Read, "secret/data/foo", json!({"version": 3}));
    assert_eq!(third["data"], json!({"v": 3}));
}

#[test]
fn default_keeps_ten_versions() {
    let mut harness = with_v2_mount();
    for value in 1..=12 {
        put(&mut harness, "foo", json!({"v": value}));
    }
    let meta = harness.data(Read, "secret/metadata/foo", json!({}));
    assert_eq!(meta["versions"].as_object().unwrap().len(), 10);
    assert_eq!(meta["oldest_version"], json!(3));
}

#[test]
fn patch_merges_into_new_version() {
    let mut harness = with_v2_mount();
    put(&mut harness, "foo", json!({"a": 1, "b": {"c": 2, "d": 3}}));
    let body = json!({"data": {"a": null, "b": {"c": 5}, "e": "x"}, "options": {"cas": 1}});
    let written = harness.data(Patch, "secret/data/foo", body);
    assert_eq!(written["version"], json!(2));
    let read = harness.data(Read, "secret/data/foo", json!({}));
    assert_eq!(read["data"], json!({"b": {"c": 5, "d": 3}, "e": "x"}));
}

#[test]
fn patch_of_missing_key_is_404() {
    let mut harness = with_v2_mount();
    assert_eq!(
        harness
            .fail(Patch, "secret/data/none", json!({"data": {"a": 1}}))
            .0,
        404
    );
    put(&mut harness, "foo", json!({"a": 1}));
    harness.ok(Delete, "secret/data/foo", json!({}));
    assert_eq!(
        harness
            .fail(Patch, "secret/data/foo", json!({"data": {"a": 2}}))
            .0,
        404
    );
}

#[test]
fn subkeys_replace_leaves_with_null() {
    let mut harness = with_v2_mount();
    put(
        &mut harness,
        "foo",
        json!({"foo": 1, "bar": {"baz": 2, "deep": {"x": 1}}}),
    );
    let all = harness.data(Read, "secret/subkeys/foo", json!({}));
    assert_eq!(
        all["subkeys"],
        json!({"foo": null, "bar": {"baz": null, "deep": {"x": null}}})
    );
    assert_eq!(all["metadata"]["version"], json!(1));
    let shallow = harness.data(Read, "secret/subkeys/foo", json!({"depth": "1"}));
    assert_eq!(shallow["subkeys"], json!({"foo": null, "bar": null}));
}

#[test]
fn config_round_trips_with_go_durations() {
    let mut harness = with_v2_mount();
    let fresh = harness.data(Read, "secret/config", json!({}));
    assert_eq!(
        fresh,
        json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0})
            .as_object()
            .cloned()
            .unwrap()
    );
    let body = json!({"max_versions": 4, "delete_version_after": "3h25m19s"});
    harness.ok(Update, "secret/config", body);
    let tuned = harness.data(Read, "secret/config", json!({}));
    assert_eq!(tuned["max_versions"], json!(4));
    assert_eq!(tuned["delete_version_after"], json!("3h25m19s"));
}

#[test]
fn v1_path_on_v2_mount_warns() {
    let mut harness = with_v2_mount();
    let logical = harness.logical(Read, "secret/foo", json!({}));
    assert_eq!(logical.status, 404);
    assert!(logical.warnings[0].starts_with("Invalid path for a versioned K/V secrets engine."));
    assert!(logical.warnings[0].ends_with("use 'vault kv get' for this operation."));
}

#[test]
fn data_is_stored_as_ciphertext() {
    let mut harness = with_v2_mount();
    put(
        &mut harness,
        "foo",
        json!({"needle": "plaintext-marker-9924"}),
    );
    for (key, value) in harness.storage.dump(crate::storage::Partition::Shared) {
        assert!(
            !String::from_utf8_lossy(&value).contains("plaintext-marker-9924"),
            "{key}"
        );
    }
}

#[test]
fn delete_version_after_expires_reads() {
    let mut harness = with_v2_mount();
    harness.ok(
        Update,
        "secret/config",
        json!({"delete_version_after": "1h"}),
    );
    put(&mut harness, "foo", json!({"v": 1}));
    assert_eq!(
        harness.logical(Read, "secret/data/foo", json!({})).status,
        200
    );
    harness.now = harness
        .now
        .saturating_add(std::time::Duration::from_secs(3601));
    assert_eq!(
        harness.logical(Read, "secret/data/foo", json!({})).status,
        404
    );
}

#[test]
fn custom_metadata_limits_are_enforced() {
    let mut harness = with_v2_mount();
    let long_key = "k".repeat(129);
    let body = json!({"custom_metadata": {long_key: "v"}});
    assert_eq!(harness.fail(Update, "secret/metadata/foo", body).0, 400);
    let body = json!({"custom_metadata": {"k": "v".repeat(513)}});
    assert_eq!(harness.fail(Update, "secret/metadata/foo", body).0, 400);
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = json!({"custom_metadata": many});
    assert_eq!(harness.fail(Update, "secret/metadata/foo", body).0, 400);
}

#[test]
fn shorter_delete_version_after_wins() {
    let mut harness = with_v2_mount();
    harness.ok(
        Update,
        "secret/config",
        json!({"delete_version_after": "2h"}),
    );
    harness.ok(
        Update,
        "secret/metadata/foo",
        json!({"delete_version_after": "1h"}),
    );
    put(&mut harness, "foo", json!({"v": 1}));
    harness.now = harness
        .now
        .saturating_add(std::time::Duration::from_secs(3601));
    assert_eq!(
        harness.logical(Read, "secret/data/foo", json!({})).status,
        404
    );
    put(&mut harness, "bar", json!({"v": 1}));
    harness.now = harness
        .now
        .saturating_add(std::time::Duration::from_secs(3601));
    assert_eq!(
        harness.logical(Read, "secret/data/bar", json!({})).status,
        200
    );
}
