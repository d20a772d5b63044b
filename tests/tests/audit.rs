//! The file audit device on a primary and a secondary: every node writes its own entries, no
//! secret reaches the file in clear, and a secondary that cannot write a replicated device's
//! file refuses requests.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_tests::cluster::{ReplicaSet, wait_until};
use coffer_tests::{Api, random_marker, string_at};
use serde_json::{Value, json};

fn enable_file_device(api: &Api, file: &Path) -> anyhow::Result<()> {
    let body = json!({"type": "file", "options": {"file_path": file.to_string_lossy()}});
    api.post("sys/audit/file", &body)?.success()?;
    Ok(())
}

fn read_entries(file: &Path) -> anyhow::Result<(String, Vec<Value>)> {
    let text = std::fs::read_to_string(file)?;
    let entries = text
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok((text, entries))
}

#[test]
fn audit_file_holds_no_secret_in_clear() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let file = directory.path().join("audit.log");
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    enable_file_device(&primary, &file)?;

    let kv_secret = format!("kv-{}", random_marker(20));
    let password = format!("pw-{}", random_marker(20));
    let plaintext = format!("pt-{}", random_marker(20));
    primary.enable_kv("secret", "2")?;
    primary
        .post("secret/data/app", &json!({"data": {"api_key": kv_secret}}))?
        .success()?;
    primary
        .post("sys/auth/userpass", &json!({"type": "userpass"}))?
        .success()?;
    primary
        .post(
            "auth/userpass/users/alice",
            &json!({ "password": password }),
        )?
        .success()?;
    primary
        .post("sys/mounts/transit", &json!({"type": "transit"}))?
        .success()?;
    primary.post("transit/keys/orders", &json!({}))?.success()?;
    set.wait_converged()?;

    let secondary = &set.secondaries[0];
    let secondary_root = secondary.root_token.clone();
    let on_secondary = secondary.server.api(&secondary_root)?;
    let login = on_secondary
        .with_token("")
        .post(
            "auth/userpass/login/alice",
            &json!({ "password": password }),
        )?
        .success()?;
    let user_token = string_at(&login, "/auth/client_token")?;
    let user_accessor = string_at(&login, "/auth/accessor")?;
    let read = on_secondary.get("secret/data/app")?.success()?;
    assert_eq!(read["data"]["data"]["api_key"], json!(kv_secret));
    let encoded = STANDARD.encode(&plaintext);
    let encrypted = on_secondary
        .post("transit/encrypt/orders", &json!({ "plaintext": encoded }))?
        .success()?;
    let ciphertext = string_at(&encrypted, "/data/ciphertext")?;
    let wrapped = on_secondary
        .post_wrapped("sys/wrapping/wrap", &json!({"pin": kv_secret}), "1m")?
        .success()?;
    let wrapping_token = string_at(&wrapped, "/wrap_info/token")?;
    let unwrapped = on_secondary
        .post("sys/wrapping/unwrap", &json!({ "token": wrapping_token }))?
        .success()?;
    assert_eq!(unwrapped["data"]["pin"], json!(kv_secret));
    let decrypted = primary
        .post(
            "transit/decrypt/orders",
            &json!({ "ciphertext": ciphertext }),
        )?
        .success()?;
    assert_eq!(decrypted["data"]["plaintext"], json!(encoded));

    let (text, entries) = read_entries(&file)?;
    let secrets = [
        ("the primary's root token", set.root().to_owned()),
        ("the secondary's root token", secondary_root),
        ("the userpass password", password),
        ("the login token", user_token.clone()),
        ("the login token's accessor", user_accessor),
        ("the KV secret", kv_secret),
        ("the transit plaintext", plaintext),
        ("the base64 transit plaintext", encoded),
        ("the wrapping token", wrapping_token),
    ];
    for (name, secret) in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{name} is in the audit file in clear"
        );
    }

    // The login ran only on the secondary, so its entries show that the secondary writes the
    // replicated device's file.
    let logins: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["request"]["path"] == "auth/userpass/login/alice")
        .collect();
    let kinds: Vec<&str> = logins
        .iter()
        .filter_map(|entry| entry["type"].as_str())
        .collect();
    assert_eq!(kinds, ["request", "response"]);
    let hashed = logins[1]["response"]["auth"]["client_token"].clone();
    let expected = primary
        .post("sys/audit-hash/file", &json!({ "input": user_token }))?
        .success()?;
    assert_eq!(hashed, expected["data"]["hash"], "the device key is shared");

    for entry in &entries {
        assert!(entry["time"].is_string(), "{entry}");
        assert!(entry["request"]["id"].is_string(), "{entry}");
    }
    Ok(())
}

#[test]
fn secondary_refuses_requests_it_cannot_audit() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let file = directory.path().join("audit.log");
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    enable_file_device(&primary, &file)?;
    primary.get("auth/token/lookup-self")?.success()?;

    // The primary keeps its open file, while the secondary finds a directory at the path it
    // must open.
    std::fs::rename(&file, directory.path().join("audit.log.primary"))?;
    std::fs::create_dir(&file)?;

    let secondary = &set.secondaries[0];
    let health = secondary.server.api("")?;
    wait_until(Duration::from_secs(30), || {
        let response = health.get("sys/health")?;
        Ok(response.body["audit_device_failures"]["file/"].is_string())
    })?;
    let rejected = secondary
        .server
        .api(&secondary.root_token)?
        .get("auth/token/lookup-self")?;
    assert_eq!(rejected.status, 500, "{}", rejected.text);
    assert!(rejected.text.contains("audit"), "{}", rejected.text);
    assert!(secondary.server.log().contains("audit device failed"));
    primary.get("auth/token/lookup-self")?.success()?;

    primary.delete("sys/audit/file")?.success()?;
    let served = secondary.server.api(&secondary.root_token)?;
    wait_until(Duration::from_secs(30), || {
        Ok(served.get("auth/token/lookup-self")?.status == 200)
    })?;
    let response = health.get("sys/health")?;
    assert!(
        response.body.get("audit_device_failures").is_none(),
        "{}",
        response.text
    );
    Ok(())
}

#[test]
fn enable_rejects_unopenable_file() -> anyhow::Result<()> {
    let server = coffer_tests::Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    let missing = Path::new("/nonexistent-coffer-directory/audit.log");
    let body = json!({"type": "file", "options": {"file_path": missing.to_string_lossy()}});
    let response = api.post("sys/audit/file", &body)?;
    assert_eq!(response.status, 400, "{}", response.text);
    assert!(
        response.text.contains("failed to open"),
        "{}",
        response.text
    );
    let listed = api.get("sys/audit")?.success()?;
    assert!(listed["data"].get("file/").is_none(), "{listed}");

    let anonymous = server.api("")?.post("sys/audit/file", &body)?;
    assert_eq!(anonymous.status, 403, "{}", anonymous.text);
    Ok(())
}

#[test]
fn local_device_stays_on_its_cluster() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let file = directory.path().join("secondary.log");
    let set = ReplicaSet::start(1)?;
    let secondary = &set.secondaries[0];
    let on_secondary = secondary.server.api(&secondary.root_token)?;
    let path = file.to_string_lossy();

    let shared = on_secondary.post(
        "sys/audit/file",
        &json!({"type": "file", "options": {"file_path": path}}),
    )?;
    assert_eq!(shared.status, 400, "{}", shared.text);
    assert!(
        shared
            .text
            .contains("enable a shared device on the primary"),
        "{}",
        shared.text
    );
    on_secondary
        .post(
            "sys/audit/here",
            &json!({"type": "file", "local": true, "options": {"file_path": path}}),
        )?
        .success()?;

    let listed = on_secondary.get("sys/audit")?.success()?;
    assert_eq!(listed["data"]["here/"]["local"], json!(true));
    let primary = set.primary.api(set.root())?;
    let on_primary = primary.get("sys/audit")?.success()?;
    assert!(on_primary["data"].get("here/").is_none(), "{on_primary}");

    on_secondary.get("auth/token/lookup-self")?.success()?;
    let (_, entries) = read_entries(&file)?;
    let paths: Vec<&str> = entries
        .iter()
        .filter_map(|entry| entry["request"]["path"].as_str())
        .collect();
    assert!(paths.contains(&"auth/token/lookup-self"), "{paths:?}");
    Ok(())
}
