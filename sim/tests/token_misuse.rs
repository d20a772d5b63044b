//! Misused activation tokens and cluster credentials: each attempt fails with a clear error
//! and changes the state of no node of the replica set.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use sim::attack::{
    connect_with_alpn, connect_with_bundle, jwt_claims, resign_claims, tamper_claims, unwrap_bundle,
};
use sim::set::{ReplicaSet, activate, expect_ok, init_and_unseal};
use sim::snapshot::NodeState;
use sim::{ApiResponse, Control, Harness, PRIMARY, SimConfig, seed_or};

/// The standalone node that misconfigured or stolen tokens are tried on.
const SPARE: &str = "spare";
/// A second, unrelated primary with its own CA.
const IMPOSTOR: &str = "impostor";
const REVOKE: &str = "sys/replication/performance/primary/revoke-secondary";

/// The replica set after setup: a primary with `secondary-1`, a standalone spare node and an
/// impostor primary.
#[derive(Clone)]
struct Scene {
    control: Control,
    set: ReplicaSet,
    spare_root: String,
    impostor: ReplicaSet,
}

async fn build_scene(control: Control) -> anyhow::Result<Scene> {
    let set = ReplicaSet::establish(&control).await?;
    let (_, spare_root) = init_and_unseal(&control.api(SPARE)).await?;
    let (impostor_keys, impostor_root) = init_and_unseal(&control.api(IMPOSTOR)).await?;
    let enabled = control
        .api(IMPOSTOR)
        .with_token(&impostor_root)
        .post("sys/replication/performance/primary/enable", &json!({}))
        .await?;
    expect_ok(&enabled, "primary/enable on the impostor")?;
    let impostor = ReplicaSet {
        keys: impostor_keys,
        root: impostor_root,
        secondary_roots: Default::default(),
        used_tokens: Default::default(),
    };
    Ok(Scene {
        control,
        set,
        spare_root,
        impostor,
    })
}

/// Runs `attack` from the `attacker` host once `client` has built the scene.
fn run_attack<F, Fut>(seed: u64, attack: F) -> anyhow::Result<()>
where
    F: FnOnce(Scene) -> Fut + 'static,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let config = SimConfig::new(seed, 1).with_extra_hosts(&[SPARE, IMPOSTOR]);
    let mut harness = Harness::new(config)?;
    let control = harness.control();
    let scene: Rc<RefCell<Option<Scene>>> = Rc::default();
    let built = Rc::clone(&scene);
    harness.client("client", async move {
        *built.borrow_mut() = Some(build_scene(control).await?);
        Ok(())
    });
    harness.client("attacker", async move {
        let scene = loop {
            if let Some(scene) = scene.borrow().clone() {
                break scene;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        attack(scene).await
    });
    harness.run()
}

/// Runs `attempt` and fails unless the primary, `secondary-1` and the spare node hold exactly
/// the same state afterwards.
async fn without_change<T>(scene: &Scene, attempt: impl Future<Output = T>) -> anyhow::Result<T> {
    let hosts = [PRIMARY, "secondary-1", SPARE];
    let before: Vec<NodeState> = hosts
        .iter()
        .map(|h| NodeState::of(&scene.control, h))
        .collect();
    let result = attempt.await;
    for (host, earlier) in hosts.iter().zip(&before) {
        let later = NodeState::of(&scene.control, host);
        anyhow::ensure!(
            *earlier == later,
            "the rejected attempt changed {host}: {:?}",
            earlier.changed_keys(&later)
        );
    }
    Ok(result)
}

/// Fails unless `response` is a 400 naming the activation step `step`.
fn expect_refused(response: &ApiResponse, step: u8) -> anyhow::Result<()> {
    anyhow::ensure!(
        response.status == 400,
        "the activation was not refused with 400: {} {}",
        response.status,
        response.body
    );
    let message = response.errors();
    anyhow::ensure!(
        message.contains(&format!("step {step} of 4")) && message.contains("not changed"),
        "the error does not name step {step} and say nothing changed: {message}"
    );
    Ok(())
}

/// Sends `secondary/enable` with `body` to the spare node.
async fn enable_on_spare(scene: &Scene, body: serde_json::Value) -> anyhow::Result<ApiResponse> {
    scene
        .control
        .api(SPARE)
        .with_token(&scene.spare_root)
        .post("sys/replication/performance/secondary/enable", &body)
        .await
}

/// Issues an activation token for `id` on the impostor primary.
async fn impostor_token(scene: &Scene, id: &str) -> anyhow::Result<String> {
    let issued = scene
        .control
        .api(IMPOSTOR)
        .with_token(&scene.impostor.root)
        .post(
            "sys/replication/performance/primary/secondary-token",
            &json!({ "id": id }),
        )
        .await?;
    expect_ok(&issued, "secondary-token on the impostor")?;
    Ok(issued.body["wrap_info"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Tries `token` on the spare node and expects a refusal at `step` that changes nothing.
async fn spare_rejects(scene: &Scene, token: &str, step: u8) -> anyhow::Result<()> {
    let attempt = activate(&scene.control, SPARE, &scene.spare_root, token);
    let response = without_change(scene, attempt).await??;
    expect_refused(&response, step)
}

#[test]
fn replayed_token_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(11), |scene| async move {
        let used = scene.set.used_tokens["secondary-1"].clone();
        spare_rejects(&scene, &used, 1).await
    })
}

#[test]
fn expired_token_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(12), |scene| async move {
        let issued = scene
            .set
            .root_api(&scene.control, PRIMARY)
            .post(
                "sys/replication/performance/primary/secondary-token",
                &json!({"id": SPARE, "ttl": "2s"}),
            )
            .await?;
        expect_ok(&issued, "secondary-token")?;
        let token = issued.body["wrap_info"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        tokio::time::sleep(Duration::from_secs(5)).await;
        spare_rejects(&scene, &token, 1).await
    })
}

#[test]
fn forged_claims_are_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(13), |scene| async move {
        let token = scene.set.secondary_token(&scene.control, SPARE).await?;
        // A token for another id: the claims name secondary-1 and live longer.
        let forged = tamper_claims(&token, |claims| {
            claims["id"] = json!("secondary-1");
            claims["exp"] = json!(claims["exp"].as_u64().unwrap_or(0) + 86_400);
        })?;
        spare_rejects(&scene, &forged, 1).await?;
        // The genuine token still works afterwards: the forgery did not use it up.
        let response = activate(&scene.control, SPARE, &scene.spare_root, &token).await?;
        expect_ok(&response, "the genuine token after the forgery")
    })
}

#[test]
fn resigned_token_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(14), |scene| async move {
        let token = scene.set.secondary_token(&scene.control, SPARE).await?;
        let resigned = resign_claims(&token, [7; 32], |claims| {
            claims["id"] = json!("mallory");
        })?;
        spare_rejects(&scene, &resigned, 1).await
    })
}

#[test]
fn other_primary_token_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(15), |scene| async move {
        let token = impostor_token(&scene, SPARE).await?;
        // The token is sent to the real primary, which never issued it.
        let primary_addr = format!("https://{}:8200", turmoil::lookup(PRIMARY));
        let body = json!({
            "token": token,
            "primary_api_addr": primary_addr,
            "ca_file": scene.control.api_ca_file(),
        });
        let attempt = enable_on_spare(&scene, body);
        let response = without_change(&scene, attempt).await??;
        expect_refused(&response, 1)
    })
}

#[test]
fn impostor_primary_with_own_ca_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(16), |scene| async move {
        let genuine = scene.set.secondary_token(&scene.control, "mallory").await?;
        let real_ca = jwt_claims(&genuine)?["ca_sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let token = impostor_token(&scene, SPARE).await?;
        // The operator pins the real primary's CA; the impostor's bundle carries its own.
        let body = json!({
            "token": token,
            "ca_sha256": real_ca,
            "ca_file": scene.control.api_ca_file(),
        });
        let attempt = enable_on_spare(&scene, body);
        let response = without_change(&scene, attempt).await??;
        // The pin is checked against the token's claims before the token is sent anywhere.
        anyhow::ensure!(
            response.status == 400,
            "the activation was not refused: {}",
            response.body
        );
        anyhow::ensure!(
            response.errors().contains("does not match") && response.errors().contains("not used"),
            "the error does not say the CA does not match: {}",
            response.errors()
        );

        // A secondary's credentials refuse the impostor's cluster port: it is not the pinned
        // primary and its CA is not the bundle's.
        let bundle = unwrap_bundle(&scene.control.api(PRIMARY), &genuine).await?;
        let refused = without_change(&scene, connect_with_bundle(&bundle, IMPOSTOR)).await?;
        let error = refused.expect_err("the impostor primary was accepted");
        anyhow::ensure!(
            format!("{error:#}").contains("certificate"),
            "the refusal does not name the certificate: {error:#}"
        );
        Ok(())
    })
}

#[test]
fn secondary_cert_at_secondary_port_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(17), |scene| async move {
        let token = scene.set.secondary_token(&scene.control, "mallory").await?;
        let mut bundle = unwrap_bundle(&scene.control.api(PRIMARY), &token).await?;
        bundle.primary_cluster_addrs =
            vec![format!("https://{}:8201", turmoil::lookup("secondary-1"))];
        let refused = without_change(&scene, connect_with_bundle(&bundle, "secondary-1")).await?;
        let error = refused.expect_err("secondary-1's cluster port accepted a connection");
        anyhow::ensure!(
            format!("{error:#}").contains("not a primary")
                || format!("{error:#}").contains("primary"),
            "the refusal does not say the node is not a primary: {error:#}"
        );
        Ok(())
    })
}

#[test]
fn unknown_alpn_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(18), |scene| async move {
        // The empty list sends no ALPN extension at all.
        for alpn in [&[&b"h2"[..]][..], &[b"coffer-replication-v0"], &[]] {
            let refused = without_change(&scene, connect_with_alpn(PRIMARY, alpn)).await?;
            let error = refused.expect_err("the cluster port accepted an unknown ALPN");
            anyhow::ensure!(
                format!("{error:#}").to_lowercase().contains("protocol"),
                "the refusal of ALPN {alpn:?} does not name the protocol: {error:#}"
            );
        }
        Ok(())
    })
}

#[test]
fn revoked_client_cert_is_rejected() -> anyhow::Result<()> {
    run_attack(seed_or(19), |scene| async move {
        let primary = scene.set.root_api(&scene.control, PRIMARY);
        let token = scene.set.secondary_token(&scene.control, "mallory").await?;
        let bundle = unwrap_bundle(&scene.control.api(PRIMARY), &token).await?;
        connect_with_bundle(&bundle, PRIMARY)
            .await
            .map_err(|error| error.context("the unrevoked certificate was refused"))?;

        let revoked = primary.post(REVOKE, &json!({"id": "mallory"})).await?;
        expect_ok(&revoked, "revoke-secondary")?;
        // No pause: the revocation must be in force as soon as revoke-secondary returns.
        let refused = without_change(&scene, connect_with_bundle(&bundle, PRIMARY)).await?;
        let error = refused.expect_err("the primary accepted a revoked certificate");
        anyhow::ensure!(
            format!("{error:#}").contains("rejected this secondary's certificate"),
            "the refusal does not say the certificate was rejected: {error:#}"
        );
        Ok(())
    })
}
