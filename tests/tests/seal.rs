//! Initialization, unsealing with any threshold subset, and sealing.

use coffer_tests::{Server, runtime, vault_client};
use serde_json::{Value, json};

#[test]
fn unseal_with_any_threshold_subset() -> anyhow::Result<()> {
    let server = Server::start()?;
    let rt = runtime();
    let client = vault_client(&server, "")?;

    let init = rt.block_on(vaultrs::sys::start_initialization(&client, 5, 3, None))?;
    assert_eq!(init.keys.len(), 5);
    assert_eq!(init.keys_base64.len(), 5);
    assert!(!init.root_token.is_empty());

    let status = server.api("")?.get("sys/seal-status")?;
    assert_eq!(status.body["sealed"], json!(true));
    assert_eq!(status.body["t"], json!(3));
    assert_eq!(status.body["n"], json!(5));
    assert_eq!(status.body["progress"], json!(0));

    let unseal =
        |key: &String| rt.block_on(vaultrs::sys::unseal(&client, Some(key.clone()), None, None));
    let first = unseal(&init.keys[1])?;
    assert!(first.sealed);
    assert_eq!(first.progress, 1);
    let second = unseal(&init.keys[2])?;
    assert!(second.sealed);
    assert_eq!(second.progress, 2);
    let third = unseal(&init.keys[0])?;
    assert!(!third.sealed);
    assert_eq!(third.threshold, 3);
    assert_eq!(third.n_shares, 5);

    let extra = unseal(&init.keys[3])?;
    assert!(
        !extra.sealed,
        "a key sent to an unsealed server returns the status"
    );

    let root = vault_client(&server, &init.root_token)?;
    let lookup = rt.block_on(vaultrs::token::lookup_self(&root))?;
    assert_eq!(lookup.policies, ["root"]);
    Ok(())
}

#[test]
fn unseal_reset_discards_progress() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init(5, 3)?;
    let api = server.api("")?;

    let status = server.unseal(&[&keys.keys[4], &keys.keys[3]])?;
    assert_eq!(status["progress"], json!(2));
    let reset = api.put("sys/unseal", &json!({"reset": true}))?;
    reset.expect_status(200)?;
    assert_eq!(reset.body["progress"], json!(0));
    assert_eq!(reset.body["sealed"], json!(true));

    let status = server.unseal(&[&keys.keys[4], &keys.keys[3], &keys.keys[2]])?;
    assert_eq!(status["sealed"], json!(false));
    Ok(())
}

#[test]
fn unseal_accepts_base64_shares() -> anyhow::Result<()> {
    let server = Server::start()?;
    let api = server.api("")?;
    let init = api.put(
        "sys/init",
        &json!({"secret_shares": 3, "secret_threshold": 2}),
    )?;
    init.expect_status(200)?;
    let shares = init.body["keys_base64"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(shares.len(), 3);

    let mut status = Value::Null;
    for share in &shares[1..] {
        status = api.put("sys/unseal", &json!({"key": share}))?.body;
    }
    assert_eq!(status["sealed"], json!(false), "{status}");
    Ok(())
}

#[test]
fn second_init_is_rejected() -> anyhow::Result<()> {
    let server = Server::start()?;
    server.init(1, 1)?;
    let again = server.api("")?.put(
        "sys/init",
        &json!({"secret_shares": 1, "secret_threshold": 1}),
    )?;
    assert_eq!(again.status, 400);
    assert!(
        again
            .errors()
            .iter()
            .any(|error| error.contains("Vault is already initialized")),
        "{}",
        again.text
    );
    let initialized = server.api("")?.get("sys/init")?;
    assert_eq!(initialized.body["initialized"], json!(true));
    Ok(())
}

#[test]
fn sealed_server_returns_503() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("kv", "1")?;
    api.put("kv/x", &json!({"a": "1"}))?.expect_status(204)?;

    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;
    rt.block_on(vaultrs::sys::seal(&root))?;

    let read = api.get("kv/x")?;
    assert_eq!(read.status, 503, "{}", read.text);
    assert!(
        read.errors()
            .iter()
            .any(|error| error.contains("Vault is sealed")),
        "{}",
        read.text
    );
    assert_eq!(read.content_type.as_deref(), Some("application/json"));

    let status = api.get("sys/seal-status")?;
    assert_eq!(status.body["sealed"], json!(true));
    let health = api.get("sys/health")?;
    assert_eq!(health.status, 503);
    Ok(())
}

#[test]
fn seal_without_token_is_denied() -> anyhow::Result<()> {
    let server = Server::start()?;
    server.init_and_unseal()?;
    let seal = server.api("")?.put("sys/seal", &json!({}))?;
    assert_eq!(seal.status, 403, "{}", seal.text);
    let status = server.api("")?.get("sys/seal-status")?;
    assert_eq!(status.body["sealed"], json!(false));
    Ok(())
}
