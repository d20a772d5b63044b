//! A partition longer than the primary's WAL buffers sends the secondary through a Merkle
//! diff and sync, after which it contains the primary's state.

use std::time::Duration;

use serde_json::json;
use sim::random::SMALL_BUFFERS;
use sim::set::{ReplicaSet, expect_ok, mount_app, wait_converged};
use sim::{Harness, PRIMARY, SimConfig, seed_or};

#[test]
fn long_partition_catches_up_by_merkle() -> anyhow::Result<()> {
    let config = SimConfig::new(seed_or(3), 2).with_replication(SMALL_BUFFERS);
    let mut harness = Harness::new(config)?;
    let control = harness.control();
    let trace = harness.trace().clone();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        mount_app(&primary).await?;
        wait_converged(&control, Duration::from_secs(10)).await?;
        let diffs_before = merkle_diffs(&trace.lines());

        turmoil::partition(PRIMARY, "secondary-1");
        // Far more entries than the 16 the primary keeps for catch-up.
        for n in 0..60 {
            let written = primary.post(&format!("app/k{n}"), &json!({"v": n})).await?;
            expect_ok(&written, "a write during the partition")?;
        }
        primary.delete("app/k0").await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        turmoil::repair(PRIMARY, "secondary-1");
        wait_converged(&control, Duration::from_secs(30)).await?;

        let diffs_after = merkle_diffs(&trace.lines());
        assert!(
            diffs_after > diffs_before,
            "secondary-1 caught up without a Merkle diff ({diffs_before} before, {diffs_after} after)"
        );
        let secondary = set.root_api(&control, "secondary-1");
        let read = secondary.get("app/k59").await?;
        expect_ok(&read, "reading the last write on secondary-1")?;
        assert_eq!(read.body["data"]["v"], json!(59));
        let deleted = secondary.get("app/k0").await?;
        assert_eq!(deleted.status, 404, "a key deleted during the partition is still there");
        Ok(())
    });
    harness.run()
}

/// Counts secondary-1's entries into the merkle-diff state.
fn merkle_diffs(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| line.contains(" secondary-1 ") && line.contains("to=merkle-diff"))
        .count()
}
