//! Revoking a secondary while it streams cuts it off at once, and it cannot come back.

use std::time::Duration;

use serde_json::json;
use sim::set::{ReplicaSet, expect_ok, merkle_state, mount_app, wait_hosts_converged};
use sim::snapshot::NodeState;
use sim::{Harness, PRIMARY, SimConfig, seed_or};

const REVOKE: &str = "sys/replication/performance/primary/revoke-secondary";

#[test]
fn revoked_secondary_stops_receiving() -> anyhow::Result<()> {
    let mut harness = Harness::new(SimConfig::new(seed_or(6), 2))?;
    let control = harness.control();
    harness.client("client", async move {
        let set = ReplicaSet::establish(&control).await?;
        let primary = set.root_api(&control, PRIMARY);
        mount_app(&primary).await?;

        let writer = tokio::task::spawn_local({
            let primary = primary.clone();
            async move {
                for n in 0..60 {
                    let written = primary.post(&format!("app/w{n}"), &json!({"v": n})).await?;
                    expect_ok(&written, "a write while streaming")?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                anyhow::Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let revoked = primary.post(REVOKE, &json!({"id": "secondary-1"})).await?;
        expect_ok(&revoked, "revoke-secondary")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, cut_at) = merkle_state(&control, "secondary-1")?;

        writer.await??;
        wait_hosts_converged(
            &control,
            &["secondary-2".to_owned()],
            Duration::from_secs(30),
        )
        .await?;
        let (primary_root, primary_head) = merkle_state(&control, PRIMARY)?;
        let (revoked_root, revoked_head) = merkle_state(&control, "secondary-1")?;
        assert_eq!(
            revoked_head, cut_at,
            "secondary-1 received entries after its revocation"
        );
        assert!(
            primary_head > revoked_head,
            "the primary wrote nothing after the revocation"
        );
        assert_ne!(revoked_root, primary_root);

        // The revoked secondary restarts and tries to reconnect with its old certificate.
        let primary_before = NodeState::of(&control, PRIMARY);
        control.restart("secondary-1").await;
        set.unseal(&control, "secondary-1").await?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (_, head_after_restart) = merkle_state(&control, "secondary-1")?;
        assert_eq!(
            head_after_restart, cut_at,
            "the revoked secondary caught up after a restart"
        );
        let primary_after = NodeState::of(&control, PRIMARY);
        assert!(
            primary_before == primary_after,
            "the revoked secondary's reconnection attempts changed the primary: {:?}",
            primary_before.changed_keys(&primary_after)
        );
        let status = sim::set::performance_status(&control.api(PRIMARY)).await?;
        let sessions = status["secondaries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !sessions
                .iter()
                .any(|peer| peer["node_id"] == "secondary-1"
                    && peer["connection_status"] == "connected"),
            "the primary shows a connected session of the revoked secondary: {status}"
        );
        Ok(())
    });
    harness.run()
}
