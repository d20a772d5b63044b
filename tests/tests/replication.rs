//! Replication between real processes: activation, streaming, storage classes, catch-up after a
//! long absence and a crashed primary.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

use coffer_tests::cluster::{
    CONVERGE_TIMEOUT, ReplicaSet, activate, generate_root, last_wal, performance_status,
    read_marker, secondary_token, update_primary, wait_for_state, wait_until,
};
use coffer_tests::{ServerOptions, runtime, vault_client};
use serde_json::{Value, json};

/// A shipper and an on-disk WAL small enough that a short absence falls behind both.
const SMALL_BUFFERS: &str = "replication {\n  logshipper_buffer_length = 8\n  wal_retain = 16\n}";

fn write_secrets(set: &ReplicaSet, prefix: &str, count: usize) -> anyhow::Result<()> {
    let api = set.primary.api(set.root())?;
    for number in 0..count {
        api.post(
            &format!("secret/data/{prefix}/{number}"),
            &json!({"data": {"number": number, "marker": format!("{prefix}-{number}")}}),
        )?
        .expect_status(200)?;
    }
    Ok(())
}

#[test]
fn secrets_reach_both_secondaries() -> anyhow::Result<()> {
    let set = ReplicaSet::start(2)?;
    set.primary.api(set.root())?.enable_kv("secret", "2")?;
    write_secrets(&set, "bulk", 1000)?;
    set.wait_converged()?;

    for secondary in &set.secondaries {
        let token = &secondary.root_token;
        for number in 0..1000 {
            let marker = read_marker(&secondary.server, token, &format!("bulk/{number}"))?;
            assert_eq!(marker, Some(format!("bulk-{number}")), "{}", secondary.id);
        }
        let rt = runtime();
        let client = vault_client(&secondary.server, token)?;
        let read: HashMap<String, Value> =
            rt.block_on(vaultrs::kv2::read(&client, "secret", "bulk/999"))?;
        assert_eq!(read["marker"], "bulk-999");
    }

    let primary = performance_status(&set.primary)?;
    assert_eq!(primary["mode"], "primary");
    assert_eq!(primary["known_secondaries"], json!(["s1", "s2"]));
    let secondary = performance_status(&set.secondaries[0].server)?;
    assert_eq!(secondary["mode"], "secondary");
    assert_eq!(secondary["cluster_id"], primary["cluster_id"]);
    assert_eq!(secondary["secondary_id"], "s1");
    assert_eq!(secondary["connection_state"], "ready");
    assert_eq!(secondary["merkle_root"], primary["merkle_root"]);
    Ok(())
}

#[test]
fn primary_policy_enforced_on_secondary() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    primary
        .put(
            "sys/policies/acl/reader",
            &json!({"policy": "path \"secret/data/open/*\" { capabilities = [\"read\"] }"}),
        )?
        .expect_status(204)?;
    primary
        .post("secret/data/open/a", &json!({"data": {"marker": "open-a"}}))?
        .expect_status(200)?;
    primary
        .post(
            "secret/data/closed/a",
            &json!({"data": {"marker": "closed-a"}}),
        )?
        .expect_status(200)?;
    set.wait_converged()?;

    let secondary = &set.secondaries[0];
    let created = secondary
        .server
        .api(&secondary.root_token)?
        .post("auth/token/create", &json!({"policies": ["reader"]}))?;
    created.expect_status(200)?;
    let reader = created.body["auth"]["client_token"]
        .as_str()
        .expect("token create returns a client token")
        .to_owned();
    let api = secondary.server.api(&reader)?;
    assert_eq!(api.get("secret/data/open/a")?.status, 200);
    assert_eq!(api.get("secret/data/closed/a")?.status, 403);

    primary
        .put(
            "sys/policies/acl/reader",
            &json!({"policy": "path \"secret/data/other/*\" { capabilities = [\"read\"] }"}),
        )?
        .expect_status(204)?;
    set.wait_converged()?;
    assert_eq!(api.get("secret/data/open/a")?.status, 403);
    Ok(())
}

#[test]
fn local_mounts_stay_on_their_cluster() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary
        .post("sys/mounts/here", &json!({"type": "kv", "local": true}))?
        .expect_status(204)?;
    primary
        .post("here/item", &json!({"marker": "primary-local"}))?
        .expect_status(204)?;
    primary.enable_kv("secret", "2")?;
    primary
        .post("secret/data/after", &json!({"data": {"marker": "after"}}))?
        .expect_status(200)?;
    set.wait_converged()?;

    let secondary = &set.secondaries[0];
    let api = secondary.server.api(&secondary.root_token)?;
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "after")?,
        Some("after".to_owned())
    );
    let mounts = api.get("sys/mounts")?;
    mounts.expect_status(200)?;
    assert!(
        mounts.body["data"].get("here/").is_none(),
        "{}",
        mounts.body
    );
    assert_ne!(api.get("here/item")?.status, 200);

    api.post("sys/mounts/there", &json!({"type": "kv", "local": true}))?
        .expect_status(204)?;
    api.post("there/item", &json!({"marker": "secondary-local"}))?
        .expect_status(204)?;
    primary
        .post("secret/data/later", &json!({"data": {"marker": "later"}}))?
        .expect_status(200)?;
    set.wait_converged()?;
    assert_eq!(api.get("there/item")?.status, 200);
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "later")?,
        Some("later".to_owned())
    );
    let primary_mounts = primary.get("sys/mounts")?;
    assert!(
        primary_mounts.body["data"].get("there/").is_none(),
        "{}",
        primary_mounts.body
    );
    Ok(())
}

#[test]
fn primary_token_rejected_on_secondary() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let secondary = &set.secondaries[0].server;
    let response = secondary.api(set.root())?.get("sys/mounts")?;
    assert_eq!(response.status, 403, "{}", response.text);
    Ok(())
}

#[test]
fn secondary_write_is_forwarded_to_primary() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    set.primary.api(set.root())?.enable_kv("secret", "2")?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let response = secondary
        .server
        .api(&secondary.root_token)?
        .post("secret/data/x", &json!({"data": {"a": "b"}}))?;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["data"]["version"], 1);
    let on_primary = set.primary.api(set.root())?.get("secret/data/x")?;
    on_primary.expect_status(200)?;
    assert_eq!(on_primary.body["data"]["data"]["a"], "b");
    Ok(())
}

#[test]
fn lagging_secondary_catches_up_by_merkle_sync() -> anyhow::Result<()> {
    let options = ServerOptions::default().extra_config(SMALL_BUFFERS);
    let mut set = ReplicaSet::start_with(1, &options)?;
    set.primary.api(set.root())?.enable_kv("secret", "2")?;
    write_secrets(&set, "before", 10)?;
    set.wait_converged()?;

    let transitions = |log: &str, state: &str| log.matches(&format!("to=\"{state}\"")).count();
    set.secondaries[0].server.stop()?;
    let before = set.secondaries[0].server.log();
    write_secrets(&set, "absent", 100)?;
    let secondary = &mut set.secondaries[0];
    secondary.server.restart()?;
    let shares: Vec<&str> = set.keys.keys.iter().take(3).map(String::as_str).collect();
    secondary.server.unseal(&shares)?;

    // Status is polled, so it may miss a short state; the log records every transition once.
    let mut states = Vec::new();
    let server = &secondary.server;
    wait_until(CONVERGE_TIMEOUT, || {
        let state = performance_status(server)?["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        let log = server.log();
        Ok(state == "stream-wals"
            && transitions(&log, "merkle-sync") > transitions(&before, "merkle-sync"))
    })
    .map_err(|error| error.context(format!("states seen in status: {states:?}")))?;
    let log = server.log();
    for state in ["merkle-diff", "merkle-sync", "stream-wals"] {
        assert!(
            transitions(&log, state) > transitions(&before, state),
            "after the restart the log never shows {state}"
        );
    }
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    for number in 0..100 {
        let marker = read_marker(
            &secondary.server,
            &secondary.root_token,
            &format!("absent/{number}"),
        )?;
        assert_eq!(marker, Some(format!("absent-{number}")));
    }
    let primary = performance_status(&set.primary)?;
    let caught_up = performance_status(&secondary.server)?;
    assert_eq!(caught_up["merkle_root"], primary["merkle_root"]);
    Ok(())
}

#[test]
fn killed_primary_keeps_acknowledged_writes() -> anyhow::Result<()> {
    let mut set = ReplicaSet::start(1)?;
    set.primary.api(set.root())?.enable_kv("secret", "2")?;
    let address = set.primary.address();
    let root = set.root().to_owned();
    let writer = std::thread::spawn(move || {
        let Ok(api) = coffer_tests::Api::new(&address, &root, None) else {
            return Vec::new();
        };
        let mut acknowledged = Vec::new();
        for number in 0..10_000 {
            let body = json!({"data": {"marker": format!("crash-{number}")}});
            match api.post(&format!("secret/data/crash/{number}"), &body) {
                Ok(response) if response.status == 200 => acknowledged.push(number),
                _ => break,
            }
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(1500));
    set.primary.kill_and_restart()?;
    let acknowledged = writer.join().expect("the writer thread does not panic");
    assert!(!acknowledged.is_empty(), "no write was acknowledged");
    let shares: Vec<&str> = set.keys.keys.iter().take(3).map(String::as_str).collect();
    set.primary.unseal(&shares)?;
    for number in &acknowledged {
        let marker = read_marker(&set.primary, set.root(), &format!("crash/{number}"))?;
        assert_eq!(marker, Some(format!("crash-{number}")));
    }

    wait_for_state(&set.secondaries[0].server, "stream-wals", CONVERGE_TIMEOUT)?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    for number in &acknowledged {
        let marker = read_marker(
            &secondary.server,
            &secondary.root_token,
            &format!("crash/{number}"),
        )?;
        assert_eq!(marker, Some(format!("crash-{number}")));
    }
    assert!(last_wal(&set.primary)? > 0);
    Ok(())
}

#[test]
fn revoked_secondary_is_cut_off() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    primary
        .post("secret/data/before", &json!({"data": {"marker": "before"}}))?
        .expect_status(200)?;
    set.wait_converged()?;

    primary
        .post(
            "sys/replication/performance/primary/revoke-secondary",
            &json!({"id": "s1"}),
        )?
        .expect_status(204)?;
    let secondary = &set.secondaries[0];
    wait_until(Duration::from_secs(1), || {
        Ok(performance_status(&secondary.server)?["connection_state"] != "ready")
    })
    .context("the revoked secondary was still connected a second after its revocation")?;
    // Each reconnect fails, and status and log give the reason.
    wait_until(CONVERGE_TIMEOUT, || {
        let status = performance_status(&secondary.server)?;
        Ok(status["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("TLS handshake")))
    })
    .with_context(|| {
        let status = performance_status(&secondary.server).unwrap_or(Value::Null);
        format!("status never named the failed handshake: {status}")
    })?;
    let log = secondary.server.log();
    assert!(
        log.contains("TLS handshake with the primary"),
        "{}",
        secondary.server.log_tail(30)
    );
    primary
        .post("secret/data/after", &json!({"data": {"marker": "after"}}))?
        .expect_status(200)?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "after")?,
        None,
        "a revoked secondary still receives writes"
    );
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "before")?,
        Some("before".to_owned())
    );
    let status = performance_status(&secondary.server)?;
    assert_ne!(status["connection_state"], "ready", "{status}");
    Ok(())
}

#[test]
fn secondary_reads_after_rekey_and_rotate() -> anyhow::Result<()> {
    let mut set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    primary
        .post("secret/data/old", &json!({"data": {"marker": "old"}}))?
        .expect_status(200)?;
    set.wait_converged()?;

    let unauthenticated = set.primary.api("")?;
    let started = unauthenticated.put(
        "sys/rekey/init",
        &json!({"secret_shares": 3, "secret_threshold": 2, "rotate_root_key": true}),
    )?;
    started.expect_status(200)?;
    let nonce = started.body["nonce"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut new_keys = Vec::new();
    for key in set.keys.keys.iter().take(3) {
        let update =
            unauthenticated.put("sys/rekey/update", &json!({"key": key, "nonce": nonce}))?;
        update.expect_status(200)?;
        if update.body["complete"] == true {
            new_keys = update.body["keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .filter_map(|key| key.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            break;
        }
    }
    assert_eq!(new_keys.len(), 3, "the rekey completed with three new keys");
    primary.put("sys/rotate", &json!({}))?.expect_status(204)?;
    primary
        .post("secret/data/new", &json!({"data": {"marker": "new"}}))?
        .expect_status(200)?;
    set.wait_converged()?;

    let secondary = &set.secondaries[0];
    for (path, marker) in [("old", "old"), ("new", "new")] {
        let read = read_marker(&secondary.server, &secondary.root_token, path)?;
        assert_eq!(read.as_deref(), Some(marker), "{path}");
    }

    // After a restart the secondary unseals with the primary's new keys.
    set.secondaries[0].server.restart()?;
    let shares: Vec<&str> = new_keys.iter().take(2).map(String::as_str).collect();
    let status = set.secondaries[0].server.unseal(&shares)?;
    assert_eq!(status["sealed"], false, "{status}");
    set.keys.keys = new_keys;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "new")?.as_deref(),
        Some("new")
    );
    Ok(())
}

fn seal_and_unseal_primary(set: &ReplicaSet) -> anyhow::Result<()> {
    set.primary
        .api(set.root())?
        .put("sys/seal", &json!({}))?
        .expect_status(204)?;
    // Long enough for the node to notice the seal and close its sessions.
    std::thread::sleep(Duration::from_millis(500));
    let shares: Vec<&str> = set.keys.keys.iter().take(3).map(String::as_str).collect();
    set.primary.unseal(&shares)?;
    Ok(())
}

#[test]
fn revocation_after_reseal_stops_stream() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    set.wait_converged()?;
    seal_and_unseal_primary(&set)?;
    primary
        .post(
            "secret/data/between",
            &json!({"data": {"marker": "between"}}),
        )?
        .expect_status(200)?;
    set.wait_converged()?;

    primary
        .post(
            "sys/replication/performance/primary/revoke-secondary",
            &json!({"id": "s1"}),
        )?
        .expect_status(204)?;
    std::thread::sleep(Duration::from_secs(1));
    primary
        .post("secret/data/after", &json!({"data": {"marker": "after"}}))?
        .expect_status(200)?;
    std::thread::sleep(Duration::from_secs(2));
    let secondary = &set.secondaries[0];
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "after")?,
        None,
        "a revoked secondary received a write made after its revocation"
    );
    let status = performance_status(&set.primary)?;
    let session = status["secondaries"]
        .as_array()
        .and_then(|all| all.iter().find(|peer| peer["node_id"] == "s1").cloned());
    if let Some(session) = session {
        assert_ne!(session["connection_status"], "connected", "{status}");
    }
    Ok(())
}

#[test]
fn revoked_secondary_rejoins_with_new_token() -> anyhow::Result<()> {
    let mut set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    set.wait_converged()?;
    primary
        .post(
            "sys/replication/performance/primary/revoke-secondary",
            &json!({"id": "s1"}),
        )?
        .expect_status(204)?;
    let token = secondary_token(&set.primary, set.root(), "s1")?;
    let secondary = &set.secondaries[0];
    activate(&secondary.server, &secondary.root_token, &token)?.expect_status(200)?;
    wait_for_state(&secondary.server, "stream-wals", CONVERGE_TIMEOUT)?;
    let root_token = generate_root(&secondary.server, &set.keys.keys)?;
    set.secondaries[0].root_token = root_token;

    primary
        .post(
            "secret/data/rejoined",
            &json!({"data": {"marker": "rejoined"}}),
        )?
        .expect_status(200)?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    assert_eq!(
        read_marker(&secondary.server, &secondary.root_token, "rejoined")?.as_deref(),
        Some("rejoined")
    );

    // Revoked again, it rejoins with update-primary, which keeps its data and root token.
    primary
        .post(
            "sys/replication/performance/primary/revoke-secondary",
            &json!({"id": "s1"}),
        )?
        .expect_status(204)?;
    primary
        .post(
            "secret/data/while-revoked",
            &json!({"data": {"marker": "while-revoked"}}),
        )?
        .expect_status(200)?;
    let token = secondary_token(&set.primary, set.root(), "s1")?;
    update_primary(&secondary.server, &secondary.root_token, &token)?.expect_status(200)?;
    set.wait_converged()?;
    for marker in ["rejoined", "while-revoked"] {
        let read = read_marker(&secondary.server, &secondary.root_token, marker)?;
        assert_eq!(read.as_deref(), Some(marker));
    }
    Ok(())
}
