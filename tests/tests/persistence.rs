//! Data survives restarts and crashes, and never reaches the disk or the log in plaintext.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_tests::{Server, random_marker, runtime, vault_client};
use serde_json::json;

#[test]
fn restart_keeps_data_and_starts_sealed() -> anyhow::Result<()> {
    let mut server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("secret", "2")?;
    api.enable_kv("kv1", "1")?;
    api.put("kv1/app", &json!({"user": "alice"}))?
        .expect_status(204)?;
    let rt = runtime();
    let client = vault_client(&server, &keys.root_token)?;
    rt.block_on(vaultrs::kv2::set(
        &client,
        "secret",
        "app",
        &json!({"v": "one"}),
    ))?;
    rt.block_on(vaultrs::kv2::set(
        &client,
        "secret",
        "app",
        &json!({"v": "two"}),
    ))?;

    server.restart()?;

    let status = api.get("sys/seal-status")?;
    assert_eq!(status.body["initialized"], json!(true));
    assert_eq!(status.body["sealed"], json!(true));
    server.unseal(&[&keys.keys[4], &keys.keys[2], &keys.keys[0]])?;

    let v1 = api.get("kv1/app")?;
    assert_eq!(v1.status, 200, "{}", v1.text);
    assert_eq!(v1.body["data"], json!({"user": "alice"}));
    let latest: serde_json::Value = rt.block_on(vaultrs::kv2::read(&client, "secret", "app"))?;
    assert_eq!(latest, json!({"v": "two"}));
    let old: serde_json::Value =
        rt.block_on(vaultrs::kv2::read_version(&client, "secret", "app", 1))?;
    assert_eq!(old, json!({"v": "one"}));
    let lookup = rt.block_on(vaultrs::token::lookup_self(&client))?;
    assert_eq!(
        lookup.policies,
        ["root"],
        "the root token survives a restart"
    );
    Ok(())
}

#[test]
fn kill_9_keeps_acknowledged_writes() -> anyhow::Result<()> {
    let mut server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("kv", "1")?;
    for index in 0..20 {
        api.put(&format!("kv/item{index}"), &json!({"n": index.to_string()}))?
            .expect_status(204)?;
    }

    server.kill_and_restart()?;
    server.unseal(&[&keys.keys[0], &keys.keys[1], &keys.keys[2]])?;

    for index in 0..20 {
        let read = api.get(&format!("kv/item{index}"))?;
        assert_eq!(read.status, 200, "kv/item{index}: {}", read.text);
        assert_eq!(read.body["data"]["n"], json!(index.to_string()));
    }
    Ok(())
}

#[test]
fn secret_never_stored_in_plaintext() -> anyhow::Result<()> {
    let mut server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("secret", "2")?;
    api.enable_kv("kv1", "1")?;
    let marker = random_marker(48);
    api.put(
        "secret/data/app",
        &json!({"data": {"password": marker}, "options": {}}),
    )?
    .expect_status(200)?;
    api.put("kv1/app", &json!({"password": marker}))?
        .expect_status(204)?;
    let read = api.get("kv1/app")?;
    assert_eq!(read.body["data"]["password"], json!(marker));

    server.stop()?;

    let files = files_under(server.data_dir())?;
    assert!(!files.is_empty(), "the LMDB directory has files");
    let needles = needles_for(&marker);
    for file in &files {
        let bytes = std::fs::read(file)?;
        for needle in &needles {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{} contains the secret as {needle:?}",
                file.display()
            );
        }
    }
    let log = server.log();
    for needle in &needles {
        assert!(
            !log.contains(needle.as_str()),
            "the log contains the secret"
        );
    }
    assert!(
        !log.contains(&keys.root_token),
        "the log contains the root token"
    );
    for key in &keys.keys {
        assert!(
            !log.contains(key.as_str()),
            "the log contains an unseal key"
        );
    }
    Ok(())
}

/// Returns the marker itself and its base64 forms at each of the three byte alignments, with
/// the edge characters that depend on neighbouring bytes cut off.
fn needles_for(marker: &str) -> Vec<String> {
    let mut needles = vec![marker.to_owned()];
    for offset in 0..3 {
        let padded = format!("{}{marker}", "\"".repeat(offset));
        let encoded = STANDARD.encode(padded.as_bytes());
        let inner = &encoded[4..encoded.len() - 4];
        needles.push(inner.to_owned());
    }
    needles
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn needles_cover_every_base64_alignment() {
    let marker = "abcdefghijklmnopqrstuvwxyz0123456789";
    let needles = needles_for(marker);
    for prefix in ["", "x", "xy", "xyz"] {
        let encoded = STANDARD.encode(format!("{prefix}{marker}suffix"));
        assert!(
            needles[1..]
                .iter()
                .any(|needle| encoded.contains(needle.as_str())),
            "no needle matches the encoding after {prefix:?}"
        );
    }
}
