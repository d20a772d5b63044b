//! The failover drill: demote the primary, promote a secondary, move the other secondary and
//! the old primary to it with update-primary, and keep every acknowledged write.

use std::time::Duration;

use serde_json::json;
use sim::set::{ReplicaSet, expect_ok, performance_status, wait_converged, wait_converged_to};
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

/// Issues a token on the new primary for `id` and sends it to `host` as update-primary.
async fn follow_new_primary(
    control: &Control,
    set: &ReplicaSet,
    host: &str,
    id: &str,
) -> anyhow::Result<()> {
    let issued = set
        .root_api(control, NEW_PRIMARY)
        .post(
            "sys/replication/performance/primary/secondary-token",
            &json!({ "id": id }),
        )
        .await?;
    expect_ok(&issued, "secondary-token on the new primary")?;
    let token = issued.body["wrap_info"]["token"]
        .as_str()
        .unwrap_or_default();
    let moved = set
        .root_api(control, host)
        .post(
            "sys/replication/performance/secondary/update-primary",
            &json!({ "token": token, "ca_file": control.api_ca_file() }),
        )
        .await?;
    expect_ok(&moved, &format!("update-primary on {host}"))?;
    assert!(
        moved.body["data"].get("quarantine_id").is_none(),
        "{host} quarantined writes in a clean failover: {}",
        moved.body
    );
    Ok(())
}

#[test]
fn failover_drill_keeps_writes() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(8), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        expect_ok(
            &primary
                .post("sys/mounts/app", &json!({"type": "kv"}))
                .await?,
            "mounting app/",
        )?;
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

        follow_new_primary(&control, &set, "secondary-2", "secondary-2").await?;
        follow_new_primary(&control, &set, PRIMARY, "old-primary").await?;
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
