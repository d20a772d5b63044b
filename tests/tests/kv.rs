//! KV version 1 and 2 round trips through vaultrs.

use std::collections::HashMap;

use coffer_tests::{Server, runtime, vault_client};
use serde_json::json;
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use vaultrs::error::ClientError;

fn api_status(result: Result<impl std::fmt::Debug, ClientError>) -> Option<u16> {
    match result {
        Err(ClientError::APIError { code, .. }) => Some(code),
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(value) => panic!("expected an API error, got {value:?}"),
    }
}

#[test]
fn kv1_round_trip() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    server.api(&keys.root_token)?.enable_kv("kv1", "1")?;
    let rt = runtime();
    let client = vault_client(&server, &keys.root_token)?;

    let data = HashMap::from([("user", "alice"), ("password", "s3cret")]);
    rt.block_on(vaultrs::kv1::set(&client, "kv1", "app/db", &data))?;
    rt.block_on(vaultrs::kv1::set(&client, "kv1", "app/web", &data))?;
    rt.block_on(vaultrs::kv1::set(&client, "kv1", "app/sub/x", &data))?;

    let read: HashMap<String, String> = rt.block_on(vaultrs::kv1::get(&client, "kv1", "app/db"))?;
    assert_eq!(read.get("user").map(String::as_str), Some("alice"));
    assert_eq!(read.get("password").map(String::as_str), Some("s3cret"));

    let listed = rt.block_on(vaultrs::kv1::list(&client, "kv1", "app"))?;
    assert_eq!(listed.data.keys, ["db", "sub/", "web"]);

    rt.block_on(vaultrs::kv1::delete(&client, "kv1", "app/db"))?;
    let gone = rt.block_on(vaultrs::kv1::get::<HashMap<String, String>>(
        &client, "kv1", "app/db",
    ));
    assert_eq!(api_status(gone), Some(404));
    Ok(())
}

#[test]
fn kv2_versions_and_cas() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("secret", "2")?;
    let rt = runtime();
    let client = vault_client(&server, &keys.root_token)?;

    let first = rt.block_on(vaultrs::kv2::set(
        &client,
        "secret",
        "app",
        &json!({"v": "one"}),
    ))?;
    assert_eq!(first.version, 1);
    let second = rt.block_on(vaultrs::kv2::set(
        &client,
        "secret",
        "app",
        &json!({"v": "two"}),
    ))?;
    assert_eq!(second.version, 2);

    let latest: serde_json::Value = rt.block_on(vaultrs::kv2::read(&client, "secret", "app"))?;
    assert_eq!(latest, json!({"v": "two"}));
    let old: serde_json::Value =
        rt.block_on(vaultrs::kv2::read_version(&client, "secret", "app", 1))?;
    assert_eq!(old, json!({"v": "one"}));

    let stale = rt.block_on(vaultrs::kv2::set_with_options(
        &client,
        "secret",
        "app",
        &json!({"v": "stale"}),
        SetSecretRequestOptions { cas: 1 },
    ));
    assert_eq!(api_status(stale), Some(400));
    let raw_stale = api.put(
        "secret/data/app",
        &json!({"data": {"v": "stale"}, "options": {"cas": 1}}),
    )?;
    assert_eq!(raw_stale.status, 400);
    assert!(
        raw_stale
            .errors()
            .iter()
            .any(|e| e.contains("check-and-set parameter did not match")),
        "{}",
        raw_stale.text
    );

    let third = rt.block_on(vaultrs::kv2::set_with_options(
        &client,
        "secret",
        "app",
        &json!({"v": "three"}),
        SetSecretRequestOptions { cas: 2 },
    ))?;
    assert_eq!(third.version, 3);

    let metadata = rt.block_on(vaultrs::kv2::read_metadata(&client, "secret", "app"))?;
    assert_eq!(metadata.current_version, 3);
    assert_eq!(metadata.versions.len(), 3);

    rt.block_on(vaultrs::kv2::delete_latest(&client, "secret", "app"))?;
    let deleted = api.get("secret/data/app")?;
    assert_eq!(deleted.status, 404, "{}", deleted.text);
    assert_eq!(deleted.body["data"]["data"], serde_json::Value::Null);
    let deletion_time = deleted.body["data"]["metadata"]["deletion_time"].as_str();
    assert!(
        deletion_time.is_some_and(|time| !time.is_empty()),
        "{}",
        deleted.text
    );

    let still_there: serde_json::Value =
        rt.block_on(vaultrs::kv2::read_version(&client, "secret", "app", 2))?;
    assert_eq!(still_there, json!({"v": "two"}));
    Ok(())
}

#[test]
fn kv2_cas_zero_only_creates() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("secret", "2")?;

    let body = json!({"data": {"a": "1"}, "options": {"cas": 0}});
    let created = api.put("secret/data/once", &body)?;
    created.expect_status(200)?;
    assert_eq!(created.body["data"]["version"], json!(1));
    let again = api.put("secret/data/once", &body)?;
    assert_eq!(again.status, 400, "{}", again.text);
    Ok(())
}
