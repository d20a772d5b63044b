//! Write forwarding from a secondary to the primary, read-your-writes and `X-Vault-Index`,
//! between real processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coffer_tests::cluster::{CONVERGE_TIMEOUT, ReplicaSet, performance_status, wait_until};
use coffer_tests::{runtime, vault_client};
use reqwest::Method;
use serde_json::json;

/// A policy that lets a token write and read `secret/`.
const WRITER_POLICY: &str = r#"path "secret/*" { capabilities = ["create", "update", "read"] }"#;

fn set_with_kv() -> anyhow::Result<ReplicaSet> {
    let set = ReplicaSet::start(1)?;
    set.primary.api(set.root())?.enable_kv("secret", "2")?;
    set.wait_converged()?;
    Ok(set)
}

#[test]
fn secondary_write_reads_back_there() -> anyhow::Result<()> {
    let set = set_with_kv()?;
    let secondary = &set.secondaries[0];
    let client = vault_client(&secondary.server, &secondary.root_token)?;
    runtime().block_on(async {
        for round in 0..5 {
            let value = format!("value-{round}");
            let data = HashMap::from([("key", value.as_str())]);
            vaultrs::kv2::set(&client, "secret", "ryw", &data).await?;
            let read: HashMap<String, String> =
                vaultrs::kv2::read(&client, "secret", "ryw").await?;
            assert_eq!(read["key"], value, "round {round} reads its own write");
        }
        anyhow::Ok(())
    })?;

    let primary = set.primary.api(set.root())?.get("secret/data/ryw")?;
    primary.expect_status(200)?;
    assert_eq!(primary.body["data"]["data"]["key"], "value-4");
    assert_eq!(primary.body["data"]["metadata"]["version"], 5);
    Ok(())
}

#[test]
fn primary_logs_forwarding_client_not_token() -> anyhow::Result<()> {
    let set = set_with_kv()?;
    let primary_api = set.primary.api(set.root())?;
    primary_api
        .put("sys/policy/writer", &json!({ "policy": WRITER_POLICY }))?
        .expect_status(204)?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let created = secondary.server.api(&secondary.root_token)?.post(
        "auth/token/create",
        &json!({"policies": ["writer"], "display_name": "alice-ops", "no_default_policy": true}),
    )?;
    created.expect_status(200)?;
    let token = created.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let accessor = created.body["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();

    secondary
        .server
        .api(&token)?
        .post(
            "secret/data/audited",
            &json!({"data": {"password": "hunter2-e2e"}}),
        )?
        .expect_status(200)?;

    let log = set.primary.log();
    let line = log
        .lines()
        .find(|line| line.contains("forwarded request") && line.contains(&accessor))
        .unwrap_or_else(|| panic!("no forwarded request line names {accessor}:\n{log}"));
    assert!(line.contains("token-alice-ops"), "{line}");
    assert!(line.contains("secret/data/audited"), "{line}");
    assert!(line.contains(&secondary.id), "{line}");
    assert!(
        !log.contains(&token),
        "the primary's log contains the client token"
    );
    assert!(
        !log.contains("hunter2-e2e"),
        "the primary's log contains the written value"
    );
    Ok(())
}

#[test]
fn forward_without_grant_on_primary_is_denied() -> anyhow::Result<()> {
    let set = set_with_kv()?;
    let secondary = &set.secondaries[0];
    // `default` exists on both clusters and grants nothing on secret/.
    let created = secondary
        .server
        .api(&secondary.root_token)?
        .post("auth/token/create", &json!({"policies": ["default"]}))?;
    created.expect_status(200)?;
    let token = created.body["auth"]["client_token"].as_str().unwrap();
    let response = secondary
        .server
        .api(token)?
        .post("secret/data/denied", &json!({"data": {"a": "b"}}))?;
    assert_eq!(response.status, 403, "{}", response.text);
    Ok(())
}

#[test]
fn vault_index_round_trip_and_412() -> anyhow::Result<()> {
    let set = set_with_kv()?;
    let primary_api = set.primary.api(set.root())?;
    let secondary = &set.secondaries[0];
    let secondary_api = secondary.server.api(&secondary.root_token)?;

    let written = primary_api.post("secret/data/indexed", &json!({"data": {"n": 1}}))?;
    written.expect_status(200)?;
    let index = written
        .index
        .clone()
        .expect("a write returns X-Vault-Index");
    let read = secondary_api.send_with_headers(
        Method::GET,
        "secret/data/indexed",
        &[("X-Vault-Index", &index)],
        None,
    )?;
    read.expect_status(200)?;
    assert_eq!(read.body["data"]["data"]["n"], 1);

    let forwarded = secondary_api.post("secret/data/indexed", &json!({"data": {"n": 2}}))?;
    forwarded.expect_status(200)?;
    let forwarded_index = forwarded
        .index
        .clone()
        .expect("a forwarded write returns X-Vault-Index");
    let on_primary = primary_api.send_with_headers(
        Method::GET,
        "secret/data/indexed",
        &[("X-Vault-Index", &forwarded_index)],
        None,
    )?;
    on_primary.expect_status(200)?;
    assert_eq!(on_primary.body["data"]["data"]["n"], 2);

    let mut tampered = index.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    let rejected = secondary_api.send_with_headers(
        Method::GET,
        "secret/data/indexed",
        &[("X-Vault-Index", &tampered)],
        None,
    )?;
    assert_eq!(rejected.status, 400, "{}", rejected.text);
    assert!(
        rejected.errors().join(" ").contains("X-Vault-Index"),
        "{}",
        rejected.text
    );

    // Revoking the secondary stops its stream, so the primary's next state never arrives.
    primary_api
        .post(
            "sys/replication/performance/primary/revoke-secondary",
            &json!({"id": secondary.id}),
        )?
        .expect_status(204)?;
    wait_until(CONVERGE_TIMEOUT, || {
        Ok(performance_status(&secondary.server)?["connection_state"] != "ready")
    })?;
    let ahead = primary_api.post("secret/data/indexed", &json!({"data": {"n": 3}}))?;
    ahead.expect_status(200)?;
    let ahead_index = ahead.index.clone().expect("a write returns X-Vault-Index");
    let started = Instant::now();
    let stale = secondary_api.send_with_headers(
        Method::GET,
        "secret/data/indexed",
        &[("X-Vault-Index", &ahead_index)],
        None,
    )?;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the secondary waited first"
    );
    Ok(())
}

#[test]
fn stopped_primary_fails_writes_serves_reads() -> anyhow::Result<()> {
    let mut set = set_with_kv()?;
    set.primary
        .api(set.root())?
        .post("secret/data/before", &json!({"data": {"kept": "yes"}}))?
        .expect_status(200)?;
    set.wait_converged()?;
    set.primary.stop()?;

    let secondary = &set.secondaries[0];
    let api = secondary.server.api(&secondary.root_token)?;
    let started = Instant::now();
    let write = api.post("secret/data/after", &json!({"data": {"a": "b"}}))?;
    let elapsed = started.elapsed();
    assert_eq!(write.status, 503, "{}", write.text);
    assert!(
        elapsed < Duration::from_secs(8),
        "the write failed after {elapsed:?}"
    );
    let message = write.errors().join(" ");
    assert!(
        message.contains("forwarding the write to the primary at"),
        "{message}"
    );
    assert!(message.contains("127.0.0.1:"), "{message}");

    let read = api.get("secret/data/before")?;
    read.expect_status(200)?;
    assert_eq!(read.body["data"]["data"]["kept"], "yes");
    Ok(())
}

#[test]
fn forwarded_write_is_wrapped_on_secondary() -> anyhow::Result<()> {
    let set = set_with_kv()?;
    let secondary = &set.secondaries[0];
    let api = secondary.server.api(&secondary.root_token)?;
    let body = json!({"data": {"a": "b"}});
    let wrapped = api.send_with_headers(
        Method::POST,
        "secret/data/wrapped",
        &[("X-Vault-Wrap-TTL", "60s")],
        Some(&body),
    )?;
    wrapped.expect_status(200)?;
    assert_eq!(
        wrapped.body["data"],
        serde_json::Value::Null,
        "{}",
        wrapped.text
    );
    let token = wrapped.body["wrap_info"]["token"]
        .as_str()
        .expect("the response is wrapped")
        .to_owned();

    let unwrapped = api.post("sys/wrapping/unwrap", &json!({ "token": token }))?;
    unwrapped.expect_status(200)?;
    assert_eq!(unwrapped.body["data"]["version"], 1, "{}", unwrapped.text);
    let on_primary = set.primary.api(set.root())?.get("secret/data/wrapped")?;
    on_primary.expect_status(200)?;
    assert_eq!(on_primary.body["data"]["data"]["a"], "b");
    Ok(())
}
