//! Crashes and restarts: acknowledged writes survive, and the set converges again.

use std::time::Duration;

use serde_json::json;
use sim::set::{ReplicaSet, expect_ok, mount_app, wait_converged};
use sim::{Control, Harness, PRIMARY, SimConfig, seed_or};

async fn write_keys(set: &ReplicaSet, control: &Control, prefix: &str) -> anyhow::Result<()> {
    let primary = set.root_api(control, PRIMARY);
    for n in 0..10 {
        let written = primary
            .post(&format!("app/{prefix}-{n}"), &json!({"v": n}))
            .await?;
        expect_ok(&written, "a write")?;
    }
    Ok(())
}

async fn check_keys(
    set: &ReplicaSet,
    control: &Control,
    host: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let api = set.root_api(control, host);
    for n in 0..10 {
        let read = api.get(&format!("app/{prefix}-{n}")).await?;
        expect_ok(&read, &format!("reading app/{prefix}-{n} on {host}"))?;
        assert_eq!(
            read.body["data"]["v"],
            json!(n),
            "app/{prefix}-{n} on {host}"
        );
    }
    Ok(())
}

#[test]
fn primary_crash_keeps_acknowledged_writes() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(4), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        mount_app(&set.root_api(&control, PRIMARY)).await?;
        write_keys(&set, &control, "before").await?;

        control.crash(PRIMARY).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.restart(PRIMARY).await;
        set.unseal(&control, PRIMARY).await?;

        check_keys(&set, &control, PRIMARY, "before").await?;
        write_keys(&set, &control, "after").await?;
        wait_converged(&control, Duration::from_secs(30)).await?;
        for host in control.secondaries() {
            check_keys(&set, &control, &host, "before").await?;
            check_keys(&set, &control, &host, "after").await?;
        }
        Ok(())
    });
    harness.run()
}

#[test]
fn secondary_crash_catches_up() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(5), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        mount_app(&set.root_api(&control, PRIMARY)).await?;
        write_keys(&set, &control, "before").await?;
        wait_converged(&control, Duration::from_secs(10)).await?;

        control.crash("secondary-1").await;
        write_keys(&set, &control, "during").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        control.restart("secondary-1").await;
        set.unseal(&control, "secondary-1").await?;

        wait_converged(&control, Duration::from_secs(30)).await?;
        check_keys(&set, &control, "secondary-1", "before").await?;
        check_keys(&set, &control, "secondary-1", "during").await?;
        Ok(())
    });
    harness.run()
}
