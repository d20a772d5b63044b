//! Transit, logins, response wrapping, leases and audit on a primary and a secondary: which
//! state crosses clusters and which stays on the node that made it.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_tests::cluster::{ReplicaSet, wait_until};
use coffer_tests::{Api, ApiResponse, random_marker, string_at};
use serde_json::{Value, json};

fn encrypt(api: &Api, key: &str, plaintext: &str) -> anyhow::Result<String> {
    let body = json!({ "plaintext": STANDARD.encode(plaintext) });
    let response = api
        .post(&format!("transit/encrypt/{key}"), &body)?
        .success()?;
    string_at(&response, "/data/ciphertext")
}

fn decrypt(api: &Api, key: &str, ciphertext: &str) -> anyhow::Result<String> {
    let body = json!({ "ciphertext": ciphertext });
    let response = api
        .post(&format!("transit/decrypt/{key}"), &body)?
        .success()?;
    let plaintext = STANDARD.decode(string_at(&response, "/data/plaintext")?)?;
    Ok(String::from_utf8(plaintext)?)
}

fn set_up_transit(set: &ReplicaSet) -> anyhow::Result<(Api, Api)> {
    let primary = set.primary.api(set.root())?;
    primary
        .post("sys/mounts/transit", &json!({"type": "transit"}))?
        .success()?;
    primary.post("transit/keys/orders", &json!({}))?.success()?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    Ok((primary, secondary.server.api(&secondary.root_token)?))
}

#[test]
fn transit_works_across_clusters() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let (primary, secondary) = set_up_transit(&set)?;

    let from_secondary = encrypt(&secondary, "orders", "card 4111-1111")?;
    assert!(from_secondary.starts_with("vault:v1:"), "{from_secondary}");
    assert_eq!(
        decrypt(&primary, "orders", &from_secondary)?,
        "card 4111-1111"
    );
    let from_primary = encrypt(&primary, "orders", "iban DE89")?;
    assert_eq!(decrypt(&secondary, "orders", &from_primary)?, "iban DE89");

    primary
        .post("transit/keys/orders/rotate", &json!({}))?
        .success()?;
    set.wait_converged()?;
    let rotated = encrypt(&secondary, "orders", "after rotation")?;
    assert!(rotated.starts_with("vault:v2:"), "{rotated}");
    assert_eq!(decrypt(&primary, "orders", &rotated)?, "after rotation");
    assert_eq!(
        decrypt(&secondary, "orders", &from_secondary)?,
        "card 4111-1111"
    );

    // The secondary forwards the key creation to the primary.
    let create = secondary.post("transit/keys/invoices", &json!({}))?;
    assert_eq!(create.status, 200, "{}", create.text);
    primary.get("transit/keys/invoices")?.success()?;
    Ok(())
}

fn enable_userpass(primary: &Api, ttl: &str) -> anyhow::Result<()> {
    primary
        .post("sys/auth/userpass", &json!({"type": "userpass"}))?
        .success()?;
    primary
        .post(
            "auth/userpass/users/alice",
            &json!({"password": "alice-password-7c1", "token_ttl": ttl}),
        )?
        .success()?;
    Ok(())
}

fn login_userpass(api: &Api) -> anyhow::Result<String> {
    let body = json!({"password": "alice-password-7c1"});
    let response = api.post("auth/userpass/login/alice", &body)?.success()?;
    string_at(&response, "/auth/client_token")
}

fn lookup_self_status(api: &Api, token: &str) -> anyhow::Result<u16> {
    Ok(api.with_token(token).get("auth/token/lookup-self")?.status)
}

fn enable_approle(primary: &Api) -> anyhow::Result<()> {
    primary
        .post("sys/auth/approle", &json!({"type": "approle"}))?
        .success()?;
    primary
        .post(
            "auth/approle/role/batch",
            &json!({"secret_id_num_uses": 1, "token_ttl": "10m"}),
        )?
        .success()?;
    primary
        .post(
            "auth/approle/role/edge",
            &json!({"local_secret_ids": true, "token_ttl": "10m"}),
        )?
        .success()?;
    Ok(())
}

fn role_id(api: &Api, role: &str) -> anyhow::Result<String> {
    let response = api
        .get(&format!("auth/approle/role/{role}/role-id"))?
        .success()?;
    string_at(&response, "/data/role_id")
}

fn secret_id(api: &Api, role: &str) -> anyhow::Result<String> {
    let response = api
        .post(&format!("auth/approle/role/{role}/secret-id"), &json!({}))?
        .success()?;
    string_at(&response, "/data/secret_id")
}

fn approle_login(api: &Api, role_id: &str, secret_id: &str) -> anyhow::Result<ApiResponse> {
    api.with_token("").post(
        "auth/approle/login",
        &json!({"role_id": role_id, "secret_id": secret_id}),
    )
}

#[test]
fn logins_on_secondary_stay_there() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    enable_userpass(&primary, "10m")?;
    enable_approle(&primary)?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let secondary = secondary.server.api(&secondary.root_token)?;
    let anonymous_secondary = secondary.with_token("");
    let anonymous_primary = primary.with_token("");

    let token = login_userpass(&anonymous_secondary)?;
    assert_eq!(lookup_self_status(&secondary, &token)?, 200);
    assert_eq!(lookup_self_status(&primary, &token)?, 403);

    let role = role_id(&primary, "edge")?;
    let local_secret = secret_id(&secondary, "edge")?;
    let login = approle_login(&anonymous_secondary, &role, &local_secret)?.success()?;
    let approle_token = string_at(&login, "/auth/client_token")?;
    assert_eq!(lookup_self_status(&secondary, &approle_token)?, 200);
    assert_eq!(lookup_self_status(&primary, &approle_token)?, 403);
    let elsewhere = approle_login(&anonymous_primary, &role, &local_secret)?;
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.text);
    Ok(())
}

#[test]
fn single_use_secret_id_works_once() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    enable_approle(&primary)?;
    let role = role_id(&primary, "batch")?;
    let secret = secret_id(&primary, "batch")?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0].server.api("")?;
    let anonymous_primary = primary.with_token("");

    // The secondary cannot spend a replicated use itself, and logins are never forwarded.
    let rejected = approle_login(secondary, &role, &secret)?;
    assert_eq!(rejected.status, 400, "{}", rejected.text);
    assert!(
        rejected.text.contains(&set.primary.address()),
        "{}",
        rejected.text
    );

    approle_login(&anonymous_primary, &role, &secret)?.success()?;
    set.wait_converged()?;
    let again_primary = approle_login(&anonymous_primary, &role, &secret)?;
    assert_eq!(again_primary.status, 400, "{}", again_primary.text);
    let again_secondary = approle_login(secondary, &role, &secret)?;
    assert_eq!(again_secondary.status, 400, "{}", again_secondary.text);
    assert!(
        !again_secondary.text.contains(&set.primary.address()),
        "a spent secret-id is invalid, not forwarded: {}",
        again_secondary.text
    );
    Ok(())
}

#[test]
fn wrapped_response_unwraps_once() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let (primary, secondary) = set_up_transit(&set)?;
    let marker = random_marker(24);
    let wrapped = secondary
        .post_wrapped(
            "transit/encrypt/orders",
            &json!({ "plaintext": STANDARD.encode(&marker) }),
            "5m",
        )?
        .success()?;
    let wrapping_token = string_at(&wrapped, "/wrap_info/token")?;
    assert_eq!(wrapped["data"], Value::Null);

    let unwrap = |api: &Api| api.post("sys/wrapping/unwrap", &json!({ "token": wrapping_token }));
    let on_primary = unwrap(&primary)?;
    assert_eq!(
        on_primary.status, 400,
        "wrapping tokens are local: {}",
        on_primary.text
    );
    let first = unwrap(&secondary)?.success()?;
    let ciphertext = string_at(&first, "/data/ciphertext")?;
    assert_eq!(decrypt(&primary, "orders", &ciphertext)?, marker);
    let second = unwrap(&secondary)?;
    assert_eq!(second.status, 400, "{}", second.text);
    Ok(())
}

#[test]
fn lease_expires_on_time() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    enable_userpass(&primary, "3s")?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let secondary = secondary.server.api(&secondary.root_token)?;

    let token = login_userpass(&secondary.with_token(""))?;
    let listed = secondary
        .list("sys/leases/lookup/auth/userpass/login/alice/")?
        .success()?;
    let lease_id = format!(
        "auth/userpass/login/alice/{}",
        string_at(&listed, "/data/keys/0")?
    );
    let lookup = secondary
        .put("sys/leases/lookup", &json!({ "lease_id": lease_id }))?
        .success()?;
    let ttl = lookup["data"]["ttl"].as_u64().context("lookup has a ttl")?;
    assert!((1..=3).contains(&ttl), "{lookup}");
    assert_eq!(lookup_self_status(&secondary, &token)?, 200);
    let on_primary = primary.put("sys/leases/lookup", &json!({ "lease_id": lease_id }))?;
    assert_eq!(
        on_primary.status, 400,
        "leases are local: {}",
        on_primary.text
    );

    // The timer revokes the lease within its one-second poll of the expiry; give it five.
    wait_until(Duration::from_secs(8), || {
        let lookup = secondary.put("sys/leases/lookup", &json!({ "lease_id": lease_id }))?;
        Ok(lookup.status == 400)
    })?;
    assert_eq!(lookup_self_status(&secondary, &token)?, 403);
    Ok(())
}
