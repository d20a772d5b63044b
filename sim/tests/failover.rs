//! The failover drill: demote the primary, promote a secondary, move the other secondary and
//! the old primary to it with update-primary, and keep every acknowledged write.

use std::time::Duration;

use serde_json::json;
use sim::failover::update_primary;
use sim::set::{
    ReplicaSet, expect_ok, mount_app, performance_status, wait_converged, wait_converged_to,
};
use sim::{Control, Harness, PRIMARY, SimConfig, seed_or};

const NEW_PRIMARY: &str = "secondary-1";

async fn write_keys(api: &sim::ApiClient, prefix: &str) -> anyhow::Result<()> {
    for n in 0..10 {
        let written = api
            .post(&format!("app/{prefix}-{n}"), &json!({"v": n}))
            .await?;
        expect_ok(
            &written,
            &format!("writing app/{prefix}-{n} on {}", api.host()),
        )?;
    }
    Ok(())
}

async fn check_keys(api: &sim::ApiClient, prefix: &str) -> anyhow::Result<()> {
    for n in 0..10 {
        let read = api.get(&format!("app/{prefix}-{n}")).await?;
        expect_ok(
            &read,
            &format!("reading app/{prefix}-{n} on {}", api.host()),
        )?;
        assert_eq!(
            read.body["data"]["v"],
            json!(n),
            "app/{prefix}-{n} on {}",
            api.host()
        );
    }
    Ok(())
}

/// Issues a token on the new primary for `id`, sends it to `host` as update-primary and
/// returns the response's `data`.
async fn follow_new_primary(
    control: &Control,
    set: &ReplicaSet,
    host: &str,
    id: &str,
) -> anyhow::Result<serde_json::Value> {
    update_primary(control, set, NEW_PRIMARY, host, id).await
}

#[test]
fn failover_drill_keeps_writes() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(8), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        mount_app(&primary).await?;
        write_keys(&primary, "before").await?;
        wait_converged(&control, Duration::from_secs(10)).await?;

        let demoted = primary
            .post("sys/replication/performance/primary/demote", &json!({}))
            .await?;
        expect_ok(&demoted, "demote")?;
        let promoted = set
            .root_api(&control, NEW_PRIMARY)
            .post("sys/replication/performance/secondary/promote", &json!({}))
            .await?;
        expect_ok(&promoted, "promote")?;
        let status = performance_status(&control.api(NEW_PRIMARY)).await?;
        assert_eq!(status["mode"], "primary", "{status}");

        for (host, id) in [("secondary-2", "secondary-2"), (PRIMARY, "old-primary")] {
            let moved = follow_new_primary(&control, &set, host, id).await?;
            assert!(
                moved.get("quarantine_id").is_none(),
                "{host} quarantined writes in a clean failover: {moved}"
            );
        }
        write_keys(&set.root_api(&control, NEW_PRIMARY), "after").await?;
        let followers = [PRIMARY.to_owned(), "secondary-2".to_owned()];
        wait_converged_to(&control, NEW_PRIMARY, &followers, Duration::from_secs(60)).await?;

        for host in [PRIMARY, "secondary-1", "secondary-2"] {
            let api = set.root_api(&control, host);
            check_keys(&api, "before").await?;
            check_keys(&api, "after").await?;
        }
        Ok(())
    });
    harness.run()
}

#[test]
fn isolated_primary_writes_are_quarantined() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(9), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        mount_app(&primary).await?;
        write_keys(&primary, "before").await?;
        wait_converged(&control, Duration::from_secs(10)).await?;

        // The old primary loses its secondaries but not its clients, and keeps accepting writes
        // after secondary-1 took over: a split brain.
        turmoil::partition(PRIMARY, "secondary-1");
        turmoil::partition(PRIMARY, "secondary-2");
        let promoted = set
            .root_api(&control, NEW_PRIMARY)
            .post(
                "sys/replication/performance/secondary/promote",
                &json!({"force": true}),
            )
            .await?;
        expect_ok(&promoted, "promote")?;
        write_keys(&primary, "lost").await?;
        write_keys(&set.root_api(&control, NEW_PRIMARY), "after").await?;

        // The operator fences the old primary, heals the network and moves it to the new one.
        let demoted = primary
            .post("sys/replication/performance/primary/demote", &json!({}))
            .await?;
        expect_ok(&demoted, "demote of the isolated primary")?;
        turmoil::repair(PRIMARY, "secondary-1");
        turmoil::repair(PRIMARY, "secondary-2");
        let moved = follow_new_primary(&control, &set, "secondary-2", "secondary-2").await?;
        assert!(
            moved.get("quarantine_id").is_none(),
            "secondary-2 lost nothing: {moved}"
        );
        let rejoined = follow_new_primary(&control, &set, PRIMARY, "old-primary").await?;
        let quarantine_id = rejoined["quarantine_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !quarantine_id.is_empty(),
            "the lost writes were not quarantined: {rejoined}"
        );
        assert!(
            rejoined["quarantined_writes"].as_u64() >= Some(10),
            "fewer quarantined writes than the 10 lost: {rejoined}"
        );

        let followers = [PRIMARY.to_owned(), "secondary-2".to_owned()];
        wait_converged_to(&control, NEW_PRIMARY, &followers, Duration::from_secs(60)).await?;
        let quarantine = primary
            .get(&format!("sys/replication/quarantine/{quarantine_id}"))
            .await?;
        expect_ok(&quarantine, "reading the quarantine")?;
        let writes = quarantine.body["data"]["writes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            writes.len() >= 10,
            "the quarantine lists {} writes",
            writes.len()
        );
        for host in [PRIMARY, "secondary-1", "secondary-2"] {
            let api = set.root_api(&control, host);
            check_keys(&api, "before").await?;
            check_keys(&api, "after").await?;
            let lost = api.get("app/lost-0").await?;
            assert_eq!(
                lost.status, 404,
                "a write of the isolated primary is live on {host}"
            );
        }
        Ok(())
    });
    harness.run()
}
