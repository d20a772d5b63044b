//! Failover between real processes: demote the primary, promote a secondary, move the other
//! clusters to it with update-primary, and keep what a split brain wrote in a quarantine.

use coffer_tests::Server;
use coffer_tests::cluster::{
    CONVERGE_TIMEOUT, ReplicaSet, demote, enable_primary, performance_status, promote, read_marker,
    secondary_token, update_primary, wait_caught_up, wait_for_state, wait_until,
};
use serde_json::{Value, json};

fn write_markers(server: &Server, token: &str, prefix: &str, count: usize) -> anyhow::Result<()> {
    let api = server.api(token)?;
    for number in 0..count {
        api.post(
            &format!("secret/data/{prefix}/{number}"),
            &json!({"data": {"marker": format!("{prefix}-{number}")}}),
        )?
        .expect_status(200)?;
    }
    Ok(())
}

/// Checks that every marker `prefix/0..count` reads back on `server`.
fn assert_markers(
    server: &Server,
    token: &str,
    name: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<()> {
    for number in 0..count {
        let marker = read_marker(server, token, &format!("{prefix}/{number}"))?;
        assert_eq!(
            marker,
            Some(format!("{prefix}-{number}")),
            "{name} {prefix}/{number}"
        );
    }
    Ok(())
}

fn unseal(server: &Server, keys: &[String]) -> anyhow::Result<()> {
    let shares: Vec<&str> = keys.iter().take(3).map(String::as_str).collect();
    let status = server.unseal(&shares)?;
    anyhow::ensure!(status["sealed"] == false, "still sealed: {status}");
    Ok(())
}

#[test]
fn failover_drill_keeps_data_everywhere() -> anyhow::Result<()> {
    let mut set = ReplicaSet::start(2)?;
    let p_root = set.root().to_owned();
    set.primary.api(&p_root)?.enable_kv("secret", "2")?;
    write_markers(&set.primary, &p_root, "before", 20)?;
    set.wait_converged()?;

    // Demote P: it reports its final position and keeps it across a restart.
    let last = performance_status(&set.primary)?["last_wal"].clone();
    let demoted = demote(&set.primary, &p_root)?;
    assert_eq!(demoted["final_position"]["index"], last, "{demoted}");
    set.primary.restart()?;
    unseal(&set.primary, &set.keys.keys)?;
    let status = performance_status(&set.primary)?;
    assert_eq!(status["mode"], "secondary", "{status}");
    assert_eq!(status["demoted"], true, "{status}");
    assert_eq!(status["final_position"], demoted["final_position"]);

    // A write sent to the demoted P is rejected and never applied there.
    let rejected_write = set.primary.api(&p_root)?.post(
        "secret/data/after-demote",
        &json!({"data": {"marker": "after-demote"}}),
    )?;
    assert_eq!(rejected_write.status, 400, "{:?}", rejected_write.body);
    assert!(
        rejected_write
            .errors()
            .join(" ")
            .contains("does not accept writes"),
        "{:?}",
        rejected_write.errors()
    );
    assert_eq!(read_marker(&set.primary, &p_root, "after-demote")?, None);

    // Promote S1, then move S2 and P to it with new tokens.
    let s1_root = set.secondaries[0].root_token.clone();
    promote(&set.secondaries[0].server, &s1_root, &json!({}))?;
    let promoted = performance_status(&set.secondaries[0].server)?;
    assert!(promoted["epoch"].as_u64() >= Some(2), "{promoted}");

    let s2_token = secondary_token(&set.secondaries[0].server, &s1_root, "s2")?;
    let s2_root = set.secondaries[1].root_token.clone();
    let moved = update_primary(&set.secondaries[1].server, &s2_root, &s2_token)?;
    moved.expect_status(200)?;
    assert!(
        moved.body["data"].get("quarantine_id").is_none(),
        "{:?}",
        moved.body
    );

    let p_token = secondary_token(&set.secondaries[0].server, &s1_root, "p")?;
    let rejoined = update_primary(&set.primary, &p_root, &p_token)?;
    rejoined.expect_status(200)?;
    assert!(
        rejoined.body["data"].get("quarantine_id").is_none(),
        "{:?}",
        rejoined.body
    );

    write_markers(&set.secondaries[0].server, &s1_root, "after", 20)?;
    let new_primary = &set.secondaries[0].server;
    wait_caught_up(&set.secondaries[1].server, new_primary)?;
    wait_caught_up(&set.primary, new_primary)?;

    let clusters = [
        ("P", &set.primary, p_root.as_str()),
        ("S1", &set.secondaries[0].server, s1_root.as_str()),
        ("S2", &set.secondaries[1].server, s2_root.as_str()),
    ];
    for (name, server, token) in clusters {
        assert_markers(server, token, name, "before", 20)?;
        assert_markers(server, token, name, "after", 20)?;
        assert_eq!(read_marker(server, token, "after-demote")?, None, "{name}");
    }
    let root_of = |server: &Server| -> anyhow::Result<Value> {
        Ok(performance_status(server)?["merkle_root"].clone())
    };
    assert_eq!(root_of(&set.primary)?, root_of(new_primary)?);
    assert_eq!(root_of(&set.secondaries[1].server)?, root_of(new_primary)?);

    // The promoted S1 is still the primary after a restart, and the others follow it again.
    set.secondaries[0].server.restart()?;
    unseal(&set.secondaries[0].server, &set.keys.keys)?;
    let restarted = performance_status(&set.secondaries[0].server)?;
    assert_eq!(restarted["mode"], "primary", "{restarted}");
    assert_eq!(restarted["epoch"], promoted["epoch"]);
    write_markers(&set.secondaries[0].server, &s1_root, "restarted", 3)?;
    wait_caught_up(&set.primary, &set.secondaries[0].server)?;
    wait_caught_up(&set.secondaries[1].server, &set.secondaries[0].server)?;
    assert_markers(&set.primary, &p_root, "P", "restarted", 3)?;
    Ok(())
}

#[test]
fn old_primary_writes_go_to_quarantine() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let p_root = set.root().to_owned();
    set.primary.api(&p_root)?.enable_kv("secret", "2")?;
    write_markers(&set.primary, &p_root, "shared", 3)?;
    set.wait_converged()?;

    // S1 takes over while P, not yet demoted, still accepts a write: a split brain.
    let s1 = &set.secondaries[0];
    promote(&s1.server, &s1.root_token, &json!({}))?;
    write_markers(&set.primary, &p_root, "split", 1)?;
    write_markers(&s1.server, &s1.root_token, "new", 2)?;
    demote(&set.primary, &p_root)?;

    let token = secondary_token(&s1.server, &s1.root_token, "p")?;
    let rejoined = update_primary(&set.primary, &p_root, &token)?;
    rejoined.expect_status(200)?;
    let data = &rejoined.body["data"];
    let id = data["quarantine_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no quarantine in {data}"))
        .to_owned();
    assert!(data["quarantined_writes"].as_u64() >= Some(1), "{data}");

    let api = set.primary.api(&p_root)?;
    let listed = api.list("sys/replication/quarantine")?;
    listed.expect_status(200)?;
    assert_eq!(listed.body["data"]["keys"], json!([id]));
    let read = api.get(&format!("sys/replication/quarantine/{id}"))?;
    read.expect_status(200)?;
    let quarantine = &read.body["data"];
    assert_eq!(quarantine["complete"], true, "{quarantine}");
    let writes = quarantine["writes"].as_array().cloned().unwrap_or_default();
    assert!(!writes.is_empty(), "{quarantine}");
    for write in &writes {
        assert_eq!(write["position"]["epoch"], 1, "{write}");
    }
    assert!(set.primary.log().contains("quarantined write"));

    // P now has the new primary's state: the split write is gone from its data.
    wait_caught_up(&set.primary, &s1.server)?;
    assert_eq!(read_marker(&set.primary, &p_root, "split/0")?, None);
    assert_markers(&set.primary, &p_root, "P", "new", 2)?;
    assert_markers(&set.primary, &p_root, "P", "shared", 3)?;
    Ok(())
}

#[test]
fn update_primary_rejects_other_set() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let other = Server::start()?;
    let other_keys = other.init_and_unseal()?;
    enable_primary(&other, &other_keys.root_token)?;
    let token = secondary_token(&other, &other_keys.root_token, "s1")?;

    let secondary = &set.secondaries[0];
    let response = update_primary(&secondary.server, &secondary.root_token, &token)?;
    assert_eq!(response.status, 400, "{:?}", response.body);
    let message = response.errors().join(" ");
    assert!(message.contains("secondary/enable"), "{message}");
    assert!(message.contains("wipes"), "{message}");
    // The secondary still follows its own primary.
    let status = performance_status(&secondary.server)?;
    assert_eq!(status["state"], "stream-wals", "{status}");

    // recover closes the session and opens a new one, which the primary logs as a new session.
    let sessions = || {
        set.primary
            .log()
            .matches("replication session started")
            .count()
    };
    let before = sessions();
    secondary
        .server
        .api(&secondary.root_token)?
        .post("sys/replication/recover", &json!({}))?
        .expect_status(204)?;
    wait_until(CONVERGE_TIMEOUT, || Ok(sessions() > before))?;
    wait_for_state(&secondary.server, "stream-wals", CONVERGE_TIMEOUT)?;
    Ok(())
}
