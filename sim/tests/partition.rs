//! A secondary cut off from the primary catches up from the WAL once the partition heals.

use std::time::Duration;

use serde_json::json;
use sim::set::{ReplicaSet, expect_ok, mount_app, wait_converged};
use sim::{Harness, PRIMARY, SimConfig, seed_or};

#[test]
fn partition_then_heal_converges() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(1), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        mount_app(&primary).await?;
        for n in 0..5 {
            let written = primary
                .post(&format!("app/before-{n}"), &json!({"v": n}))
                .await?;
            expect_ok(&written, "write before the partition")?;
        }
        wait_converged(&control, Duration::from_secs(10)).await?;

        turmoil::partition(PRIMARY, "secondary-1");
        for n in 0..5 {
            let written = primary
                .post(&format!("app/during-{n}"), &json!({"v": n}))
                .await?;
            expect_ok(&written, "write during the partition")?;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        turmoil::repair(PRIMARY, "secondary-1");
        wait_converged(&control, Duration::from_secs(30)).await?;

        let read = set
            .root_api(&control, "secondary-1")
            .get("app/during-4")
            .await?;
        expect_ok(
            &read,
            "reading a write made during the partition on secondary-1",
        )?;
        assert_eq!(read.body["data"]["v"], json!(4));
        Ok(())
    });
    harness.run()
}
